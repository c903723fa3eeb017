//! Operations: what the server tells its operators. Metrics are process-wide counters that the
//! layers above push to as things happen (this module reads nothing from them); the access log
//! and the healthcheck belong to the binary.

#[cfg(feature = "server")]
pub mod access_log;
#[cfg(feature = "server")]
pub mod healthcheck;
pub mod metrics;

/// The client of a request when it is not the connection's peer (a trusted proxy forwarded for
/// it): a request extension, set by the application, read where a log line names the client.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::IpAddr);
