//! The protocol rules, as pure functions: no I/O, no axum types beyond `http`'s.

pub mod encoding;
pub mod multipart;
pub mod preconditions;
pub mod range;
