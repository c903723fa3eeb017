//! Operations: what the server tells its operators. Metrics are process-wide counters that the
//! layers above push to as things happen (this module reads nothing from them); the access log
//! and the healthcheck belong to the binary.

#[cfg(feature = "server")]
pub mod access_log;
#[cfg(feature = "server")]
pub mod healthcheck;
pub mod metrics;

tokio::task_local! {
    /// The peer address of the connection the current task serves (set by the transport around
    /// each connection; HTTP/2 streams run in tasks of their own, without it).
    static PEER: std::net::SocketAddr;
}

/// Run `conn`, the serving of one connection from `peer`, with [`peer`] telling it.
pub async fn with_peer<F: std::future::Future>(peer: std::net::SocketAddr, conn: F) -> F::Output {
    PEER.scope(peer, conn).await
}

/// The peer address of the connection this task serves, if it is known here.
pub fn peer() -> Option<std::net::SocketAddr> {
    PEER.try_with(|p| *p).ok()
}

/// A background task that stops when this is dropped (when serving ends, or with the storage
/// that started it).
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The client of a request when it is not the connection's peer (a trusted proxy forwarded for
/// it): a request extension, set by the application, read where a log line names the client.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::IpAddr);
