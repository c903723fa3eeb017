//! The file system side: turning a request path into a file under the root, and the content
//! hashes behind the ETags.

pub mod digest;
pub mod resolve;
