//! The connection loop: accept on the listener, serve each connection with hyper, and on
//! shutdown stop accepting at once and give in-flight responses a grace period.
//!
//! Written against hyper directly (rather than `axum::serve`) for the knobs a download server
//! needs: how much of a response hyper may queue per connection, and header-size limits.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;

use crate::sendfile::{self, SendfileStream};

/// The most a connection buffers in user space: hyper stops asking the body for more once this
/// much is queued, so a slow reader costs about this much memory, not a whole file (256
/// concurrent 8 MiB downloads: 27 MB peak RSS at 16 KiB, 30 MB at 32 KiB, 400 MB with hyper's
/// default). It also caps the request head: a larger one is answered 431 (nginx allows 8 KiB a
/// line).
pub const MAX_BUF: usize = 16 * 1024;

/// Serve `router` on `listener` until `shutdown` completes; then close the listener (new
/// connections are refused), let open connections finish their current response for up to
/// `grace`, and return.
pub async fn run(
    listener: tokio::net::TcpListener,
    router: Router,
    grace: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .max_buf_size(MAX_BUF)
        // Body buffers go to the socket as they are (no copy into hyper's buffer): required by
        // the `sendfile` placeholders.
        .writev(true)
        .timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and friends: say so and back off, rather than spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Headers and small bodies go out in one write anyway; don't hold back what remains.
        let _ = stream.set_nodelay(true);
        let io = SendfileStream::new(stream);
        let sink = io.sink();
        let service = TowerToHyperService::new(router.clone());
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(sendfile::scope(sink, async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection ended with an error: {e}");
            }
        }));
    }
    drop(listener);
    tracing::info!("shutting down: no new connections; in-flight responses have {grace:?}");
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!("grace period of {grace:?} over: closing the connections still open");
        }
    }
    Ok(())
}
