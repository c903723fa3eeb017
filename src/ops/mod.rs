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
    /// each connection; its HTTP/2 streams run on its task, so they see it too).
    static PEER: std::net::SocketAddr;
}

/// Run `conn`, the serving of one connection from `peer`, with [`peer`] telling it.
///
/// Not an `async fn`: that would hold `conn` twice (as its argument and inside the scope it
/// awaits), and so would the task of every connection (11.5 KiB instead of 4 KiB).
pub fn with_peer<F: std::future::Future>(
    peer: std::net::SocketAddr,
    conn: F,
) -> impl std::future::Future<Output = F::Output> {
    PEER.scope(peer, conn)
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

#[cfg(test)]
mod tests {
    /// A connection's future of 4 KiB stays about 4 KiB with its peer (as an `async fn`,
    /// `with_peer` held it twice), and the peer is seen inside.
    #[test]
    fn with_peer_holds_the_connection_once() {
        let peer: std::net::SocketAddr = "127.0.0.1:8".parse().unwrap();
        let conn = async {
            let buf = [7u8; 4096];
            std::future::ready(()).await;
            (buf.len(), super::peer())
        };
        let alone = std::mem::size_of_val(&conn);
        let scoped = super::with_peer(peer, conn);
        assert!(alone >= 4096);
        assert!(std::mem::size_of_val(&scoped) < alone + 256, "{alone}");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(rt.block_on(scoped), (4096, Some(peer)));
        assert_eq!(super::peer(), None);
    }
}
