//! The file system side: turning a request path into a file under the root, the content
//! hashes behind the ETags, and hashing ahead of requests (at start-up and on changes).

pub mod digest;
pub mod prehash;
pub mod resolve;
pub mod sidecar;
pub mod watch;
