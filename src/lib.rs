//! rangeserve: a static file server that gets HTTP byte ranges and conditional requests right.
//!
//! Every file response goes through the same steps (see `serve`): resolve the path under the
//! root (`fs::resolve`), open a representation with its strong content-hash ETag (`source`,
//! `fs::digest`), decide the preconditions (`http::preconditions`), plan the ranges
//! (`http::range`, `http::multipart`), and stream the planned bytes.

pub mod access_log;
pub mod config;
pub mod fast_h1;
pub mod fs;
pub mod healthcheck;
pub mod http;
pub mod lab;
pub mod limits;
pub mod listing;
pub mod metrics;
pub mod redirect;
pub mod sendfile;
pub mod serve;
pub mod server;
pub mod source;
pub mod tls;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::FutureExt;

pub use config::Config;

/// The whole application: every path goes to the file handler (which logs each response), and a
/// bug that panics in a handler becomes a 500 for that request instead of a dropped connection.
/// Fails when the root cannot be opened.
pub fn app(config: Arc<Config>) -> std::io::Result<App> {
    Ok(App::new(Arc::new(serve::AppState::new(config)?)))
}

/// The file handler as a hyper service. Not an axum `Router`: there is one route (everything),
/// and the router's layers of boxed services and futures were a fifth of the instructions of a
/// `304` (callgrind); this costs one boxed future per request.
#[derive(Clone)]
pub struct App(Arc<serve::AppState>);

impl App {
    /// The application over a state built by the caller (who may keep it, e.g. to look at the
    /// digest cache).
    pub fn new(state: Arc<serve::AppState>) -> App {
        App(state)
    }

    /// The response to `req`; a panic in the handler (a bug) becomes a 500.
    pub fn answer(
        &self,
        req: ::http::Request<axum::body::Body>,
    ) -> impl Future<Output = axum::response::Response> + Send + 'static {
        let state = self.0.clone();
        async move {
            let answer = AssertUnwindSafe(serve::handle(state, req)).catch_unwind();
            answer.await.unwrap_or_else(|_| serve::panicked())
        }
    }
}

impl hyper::service::Service<::http::Request<hyper::body::Incoming>> for App {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn call(&self, req: ::http::Request<hyper::body::Incoming>) -> Self::Future {
        let answer = self.answer(req.map(axum::body::Body::new));
        Box::pin(async move { Ok(answer.await) })
    }
}

/// Serve until `shutdown` completes, then stop accepting and give in-flight responses up to
/// `config.shutdown_grace` to finish before returning.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: Arc<Config>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Loading the persisted digests reads a file: not on an async worker.
    let state = tokio::task::spawn_blocking(move || serve::AppState::new(config))
        .await
        .map_err(std::io::Error::other)??;
    serve_state(listener, Arc::new(state), shutdown).await
}

/// [`serve`] over a state built by the caller. Starts the background hashers the configuration
/// asks for (`prehash`, `watch`) and stops them when serving ends.
pub async fn serve_state(
    listener: tokio::net::TcpListener,
    state: Arc<serve::AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = state.config.clone();
    let onoff = |b: bool| if b { "on" } else { "off" };
    tracing::info!(
        "file hashes: persistence {}, prehash {}, watch {}",
        match &config.state_dir {
            Some(dir) => format!("in {}", dir.join(fs::digest::STATE_FILE).display()),
            None => "off".to_string(),
        },
        onoff(config.prehash),
        onoff(config.watch)
    );
    if config.lab_enabled {
        tracing::warn!(
            "THE DOWNLOAD-CLIENT LAB IS ON: generated files and fault injection (cut connections, \
             throttling, errors, corrupted bytes) under {}/ for anyone who asks. For testing \
             download clients only; never enable it on a production server.",
            config.lab_prefix
        );
    }
    let _background = fs::prehash::start(
        &state.digests,
        &config.root,
        config.show_hidden,
        config.prehash,
        config.watch,
    );
    let _metrics = match config.metrics_listen {
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                std::io::Error::new(e.kind(), format!("metrics_listen {addr}: {e}"))
            })?;
            tracing::info!("metrics on http://{}/metrics", l.local_addr()?);
            Some(AbortOnDrop(tokio::spawn(metrics::serve(l))))
        }
        None => None,
    };
    let redirect = match config.tls_redirect_listen {
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                std::io::Error::new(e.kind(), format!("tls.redirect_listen {addr}: {e}"))
            })?;
            let https_port = listener.local_addr()?.port();
            tracing::info!("redirecting http://{}/ to https", l.local_addr()?);
            Some((l, redirect::router(https_port)))
        }
        None => None,
    };
    let opts = server::Options {
        grace: config.shutdown_grace,
        tls: config.tls.as_ref().map(tls::Tls::acceptor),
        redirect,
        limits: limits::Limits::from(&*config),
    };
    server::run_with(listener, App::new(state), opts, shutdown).await
}

/// Stops a background task when serving ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
