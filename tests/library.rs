//! The crate as a library: the engine mounted in axum applications and called through
//! `oneshot`, the architecture of the tree, and the documentation of the configuration.

mod common;

mod architecture;
mod mounted;
