//! rangeserve: static files over HTTP with byte ranges and conditional requests exactly as RFC
//! 9110 has them, for files of any size.
//!
//! [`ServeFiles`] is the engine, a tower `Service` that any axum `Router` mounts:
//!
//! ```no_run
//! use axum::Router;
//! use rangeserve::ServeFiles;
//!
//! # async fn run() -> std::io::Result<()> {
//! let app = Router::new()
//!     .route("/", axum::routing::get(|| async { "hello" }))
//!     .nest_service("/downloads", ServeFiles::new("www").listing(true));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await
//! # }
//! ```
//!
//! What it does for each GET or HEAD:
//!
//! ```text
//! request
//!   -> resolve   the path -> a file under the root (no `..`, no escape through symlinks, hidden
//!                names refused, a directory -> its index file or its listing)   [Storage::find]
//!   -> open      the file -> a Representation: length, strong ETag (SHA-256 of the content,
//!                computed once per file version), Last-Modified, type          [Storage::open]
//!   -> decide    the preconditions of RFC 9110 §13.2.2: 304, 412, or go on     [http::preconditions]
//!   -> plan      the Range: whole, one range, several (multipart/byteranges),
//!                or 416 with `Content-Range: bytes */LEN`; If-Range decides
//!                whether a Range applies at all                                [http::range]
//!   -> respond   the headers, and a body that reads only the planned bytes and
//!                is cut (never completed wrongly) if the file changes meanwhile
//! ```
//!
//! The layers, each using only those below it: [`http`] (protocol rules, pure), [`fs`] (the
//! local disk), [`ops`] (metrics), [`files`] (the engine); and, with the default feature
//! `server`, the binary's own: `app` (the axum Router and its layers, the download-client
//! lab), `transport` (connections: hyper, the HTTP/1 fast path, TLS, limits) and `config`.
//! `docs/architecture.md` walks one request through them.
//!
//! With `default-features = false` the crate is the engine alone, without the binary's
//! dependencies (CLI, logging set-up, TLS, hyper's server, the allocator).

#![warn(missing_docs)]

pub mod files;
pub mod http;

// Public for the binary and the tests, not part of the library's API.
#[doc(hidden)]
pub mod fs;
#[doc(hidden)]
pub mod ops;
#[cfg(feature = "s3")]
#[doc(hidden)]
pub mod store;

#[cfg(feature = "server")]
#[doc(hidden)]
pub mod app;
#[cfg(feature = "server")]
#[doc(hidden)]
pub mod config;
#[cfg(feature = "server")]
#[doc(hidden)]
pub mod transport;

pub use files::ServeFiles;
