//! The local disk: turning a request path into an open file under the root (`resolve`,
//! `sidecar`), reading its bytes (`file`), the content hashes behind the ETags (`digest`), and
//! hashing ahead of requests (`prehash`, `watch`, over `walk`); listing a directory
//! (`listdir`); the hand-off of file spans to `sendfile` (`sendfile`); and, in the binary,
//! the store of uploads (`upload`).
//!
//! Nothing here builds HTTP values: this layer returns bytes, identities and hashes, and the
//! engine (`files`) turns them into headers.

pub mod digest;
pub mod file;
pub mod listdir;
pub mod prehash;
pub mod resolve;
pub mod sendfile;
pub mod sidecar;
#[cfg(feature = "server")]
pub mod upload;
pub mod walk;
pub mod watch;
