//! The protocol rules, as pure functions: no I/O, no types beyond `http`'s and a response body.

pub mod cors;
pub mod dates;
pub mod disposition;
pub mod encoding;
pub mod header_rules;
pub mod mime;
pub mod multipart;
pub mod preconditions;
pub mod range;
pub mod repr_digest;
pub mod response;
#[cfg(feature = "server")]
pub mod upload;
