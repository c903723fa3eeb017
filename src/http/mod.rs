//! The protocol rules, as pure functions: no I/O, no axum types beyond `http`'s.

pub mod cors;
pub mod disposition;
pub mod encoding;
pub mod header_rules;
pub mod multipart;
pub mod preconditions;
pub mod range;
pub mod repr_digest;
