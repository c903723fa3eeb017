//! rangeserve: a static file server that gets HTTP byte ranges and conditional requests right.
//!
//! Every file response goes through the same steps (see `serve`): resolve the path under the
//! root (`fs::resolve`), open a representation with its strong content-hash ETag (`source`,
//! `fs::digest`), decide the preconditions (`http::preconditions`), plan the ranges
//! (`http::range`, `http::multipart`), and stream the planned bytes.

pub mod access_log;
pub mod config;
pub mod fs;
pub mod http;
pub mod serve;
pub mod server;
pub mod source;

use std::future::Future;
use std::sync::Arc;

use axum::Router;

pub use config::Config;

/// The whole application: every path goes to the file handler, every response is logged, and a
/// bug that panics in a handler becomes a 500 for that request instead of a dropped connection.
/// Fails when the root cannot be opened.
pub fn app(config: Arc<Config>) -> std::io::Result<Router> {
    let state = Arc::new(serve::AppState::new(config)?);
    Ok(Router::new()
        .fallback(serve::handle)
        .with_state(state)
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        .layer(axum::middleware::from_fn(access_log::layer)))
}

/// Serve until `shutdown` completes, then stop accepting and give in-flight responses up to
/// `config.shutdown_grace` to finish before returning.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: Arc<Config>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let grace = config.shutdown_grace;
    server::run(listener, app(config)?, grace, shutdown).await
}
