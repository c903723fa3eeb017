//! The crate as a library: the engine mounted in axum applications and called through
//! `oneshot`, the architecture of the tree, and the documentation of the configuration.

mod common;

#[path = "library/architecture.rs"]
mod architecture;
#[path = "library/docs.rs"]
mod docs;
#[path = "library/mounted.rs"]
mod mounted;
