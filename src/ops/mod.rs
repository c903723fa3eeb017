//! Operations: what the server tells its operators. Metrics are process-wide counters that the
//! layers above push to as things happen (this module reads nothing from them); the access log
//! and the healthcheck belong to the binary.

#[cfg(feature = "server")]
pub mod access_log;
#[cfg(feature = "server")]
pub mod healthcheck;
pub mod metrics;
