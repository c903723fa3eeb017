//! rangeserve's engine in an axum application of your own: routes of yours beside the files,
//! `ServeFiles` mounted under `/downloads`, and tower-http layers in front.
//!
//! ```sh
//! cargo run --example axum -- 127.0.0.1:3000 www
//! curl -r 0-99 http://127.0.0.1:3000/downloads/index.html
//! ```
//!
//! The layers below leave ranges and validators alone: they add headers, trace, or bound the
//! time to the response head. One that does not belong in front of `ServeFiles` is response
//! compression (`tower_http::compression::CompressionLayer`): it compresses 200s on the fly,
//! which drops `Accept-Ranges` and `Content-Length` and keeps the strong ETag of the
//! uncompressed bytes on different bytes (RFC 9110 §8.8.3), so a resumed download asks for
//! ranges of one representation and appends them to another. Serve precompressed files
//! instead (`ServeFiles::precompressed`): each coding is its own representation, with its own
//! ETag, and ranges of it are exact.

use std::time::Duration;

use axum::routing::get;
use axum::Router;
use http::header::{HeaderValue, SERVER};
use rangeserve::ServeFiles;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// The example's application: its own routes, and the files of `root` under `/downloads`.
fn app(root: &str) -> Router {
    let files = ServeFiles::new(root).listing(true).max_ranges(16);
    Router::new()
        .route("/", get(|| async { "see /downloads/\n" }))
        .route("/health", get(|| async { "ok\n" }))
        .nest_service("/downloads", files)
        .layer(TraceLayer::new_for_http())
        // Bounds the time to the response head, not the body: a long download is not cut.
        .layer(TimeoutLayer::with_status_code(
            http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            SERVER,
            HeaderValue::from_static("example"),
        ))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:3000".to_string());
    let root = args.next().unwrap_or_else(|| "www".to_string());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}/", listener.local_addr()?);
    axum::serve(listener, app(&root)).await
}
