//! The product around the engine: the binary's application is an axum `Router` with
//! [`ServeFiles`] as its fallback service, the download-client lab nested under its prefix, and
//! uploads when they are on (tus under their prefix, `PUT` beside the engine: `upload`),
//! wrapped in the layers every response goes through: metrics and the access log
//! ([`observe`]), request ids (tower-http), CORS ([`cors`]), and catching a handler's panic as
//! a 500 (tower-http).

pub mod cors;
pub mod lab;
pub mod observe;
pub mod panic;
pub mod redirect;
pub mod upload;

use std::future::Future;
use std::sync::Arc;

use axum::body::Body;
use axum::Router;
use http::{HeaderValue, Request, Response};
use tower_http::request_id::{MakeRequestId, RequestId, SetRequestIdLayer};

use crate::config::Config;
use crate::files::{Bucket, Names, ServeFiles, Storage};
use crate::http::response::internal_error;
use crate::ops::{metrics, AbortOnDrop};
use crate::transport::{self, congestion::TcpCongestion, limits::Limits};

/// The file engine with the configuration's settings, for the directory `root`.
pub fn files(config: &Config) -> ServeFiles {
    configure(
        ServeFiles::new(&config.root).follow_symlinks(config.follow_symlinks),
        config,
    )
}

/// The file engine with the configuration's settings, for the bucket `url`.
pub fn bucket_files(config: &Config, url: &str) -> ServeFiles<Bucket> {
    configure(ServeFiles::bucket(url, config.s3.clone()), config)
}

/// The settings every storage has.
fn configure<S: Storage + Clone + Names>(files: ServeFiles<S>, config: &Config) -> ServeFiles<S> {
    // With uploads on, the listings of their directory link to the upload page.
    let files = match &config.upload {
        Some(up) => files.upload_link(&up.dir_name, &format!("{}/", up.prefix)),
        None => files,
    };
    files
        .index_files(config.index_files.clone())
        .show_hidden(config.show_hidden)
        .listing(config.listing)
        .max_ranges(config.max_ranges)
        .cache_control(config.cache_control.clone())
        .state_dir(config.state_dir.clone())
        .prehash(config.prehash)
        .watch(config.watch)
        .sendfile(config.sendfile)
        .precompressed(config.precompressed)
        .repr_digest(config.repr_digest)
        .header_rules((*config.header_rules).clone())
}

/// The routes: `files` for every path, the lab under its prefix when it is on (with its
/// upload endpoint when `lab_uploads` are given), and uploads when given (tus under their
/// prefix, `PUT` elsewhere), through a fallback that sends GET straight to `files` and every
/// other request that is not an upload to it too.
pub fn router<S: Storage + Clone>(
    config: &Config,
    files: ServeFiles<S>,
    uploads: Option<&upload::Uploads<S>>,
    lab_uploads: Option<&lab::upload::LabUploads>,
) -> Router {
    let mut router = Router::new();
    if config.lab_enabled {
        router = router.nest_service(
            &config.lab_prefix,
            lab::Lab::service(files.clone(), &config.lab_prefix, lab_uploads.cloned()),
        );
    }
    match uploads {
        Some(uploads) => router.fallback_service(uploads.dispatch()),
        None => router.fallback_service(files),
    }
}

/// The application the binary serves: the [`router`] in its layers. Outermost first: each
/// request gets an id (when access lines are written), is counted and logged as it was
/// received, and each response as it
/// left, CORS headers and a panic's 500 included. The layers wrap the Router rather than each
/// of its routes (`Router::layer`), which would box each of them once more per request.
pub fn app<S: Storage + Clone>(
    config: &Config,
    files: ServeFiles<S>,
    uploads: Option<&upload::Uploads<S>>,
    lab_uploads: Option<&lab::upload::LabUploads>,
) -> impl transport::App {
    // With uploads on, pages of allowed origins may upload too.
    let cors = config.cors.as_ref().map(|c| match uploads {
        Some(_) => c.clone().with_uploads(),
        None => c.clone(),
    });
    tower::ServiceBuilder::new()
        .option_layer(access_log_on().then(|| SetRequestIdLayer::x_request_id(Sequential)))
        .layer(observe::ObserveLayer {
            trusted_proxies: config.trusted_proxies.clone().into(),
        })
        .option_layer(cors.map(|c| cors::CorsLayer(Arc::new(c))))
        .layer(panic::CatchPanicLayer { on_panic: panicked })
        .service(router(config, files, uploads, lab_uploads))
}

/// Whether access lines are written (with the log level fixed at start-up, this does not
/// change): request ids are only made for them.
fn access_log_on() -> bool {
    tracing::enabled!(target: "rangeserve::access", tracing::Level::INFO)
}

/// Request ids for requests that come without an `X-Request-Id`: the process's start time and
/// a counter, unique per server and cheap (no randomness per request).
#[derive(Clone, Copy)]
struct Sequential;

impl MakeRequestId for Sequential {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::sync::OnceLock;
        static NEXT: AtomicU64 = AtomicU64::new(1);
        static EPOCH: OnceLock<u64> = OnceLock::new();
        let epoch = EPOCH
            .get_or_init(|| crate::http::preconditions::unix_secs(std::time::SystemTime::now()));
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("{epoch:x}-{n}"))
            .ok()
            .map(RequestId::new)
    }
}

/// The answer when a handler panicked (a bug): a 500 for this request; the connection and the
/// server carry on.
fn panicked(_: Box<dyn std::any::Any + Send>) -> Response<Body> {
    tracing::error!("the handler panicked; answered 500");
    internal_error()
}

/// The sockets the server listens on, bound before anything says "listening", so that a port
/// in use is a one-line start-up error.
pub struct Listeners {
    /// `listen`.
    pub main: tokio::net::TcpListener,
    /// `metrics_listen`.
    pub metrics: Option<tokio::net::TcpListener>,
    /// `[tls] redirect_listen`.
    pub redirect: Option<tokio::net::TcpListener>,
}

/// How many connections the kernel may hold complete but not yet accepted. tokio's (mio's)
/// `bind` asks for 128, std's number: when a client opens a few hundred connections at once
/// (a segmented download, a load test) while the server is busy, the rest overflow the queue,
/// their SYNs are dropped and they connect a second later (256 range downloads at once: 1.03 s
/// to connect, against nginx's 0.01 s with its 511). The kernel caps this at
/// `net.core.somaxconn`, as it does Go's servers, which ask for that value.
const LISTEN_BACKLOG: u32 = 4096;

fn bind(
    key: &str,
    addr: std::net::SocketAddr,
    cc: &TcpCongestion,
) -> Result<tokio::net::TcpListener, String> {
    listen(addr, cc).map_err(|e| format!("{key} {addr}: {e}"))
}

/// `addr` bound and listening with [`LISTEN_BACKLOG`] and the congestion control `cc` asks for
/// (in a tokio runtime, whose reactor the socket joins).
fn listen(
    addr: std::net::SocketAddr,
    cc: &TcpCongestion,
) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match addr {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // As std and mio do: a restarted server can bind while old connections linger.
    socket.set_reuseaddr(true)?;
    cc.apply(&socket, addr)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

impl Listeners {
    /// Bind every listener `config` asks for (in a tokio runtime); the error is one line naming
    /// the key.
    pub fn bind(config: &Config) -> Result<Listeners, String> {
        let main = bind("listen", config.listen, &config.tcp_congestion)?;
        Listeners::beside(main, config)
    }

    /// `main`, and the other listeners `config` asks for.
    pub fn beside(main: tokio::net::TcpListener, config: &Config) -> Result<Listeners, String> {
        let metrics = match config.metrics_listen {
            Some(addr) => Some(bind("metrics_listen", addr, &config.tcp_congestion)?),
            None => None,
        };
        let redirect = match config.tls_redirect_listen {
            Some(addr) => Some(bind("tls.redirect_listen", addr, &config.tcp_congestion)?),
            None => None,
        };
        Ok(Listeners {
            main,
            metrics,
            redirect,
        })
    }
}

/// Serve the application `config` describes on `listener` until `shutdown` completes, with
/// the other listeners `config` asks for (bound here). `listener` is used as it is:
/// `tcp_congestion` applies only to the listeners bound here (set `TCP_CONGESTION` on yours
/// before `listen` for the same effect).
pub async fn serve_files<S: Storage + Clone>(
    listener: tokio::net::TcpListener,
    config: Arc<Config>,
    files: ServeFiles<S>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listeners = Listeners::beside(listener, &config).map_err(std::io::Error::other)?;
    serve(listeners, config, files, shutdown).await
}

/// Serve until `shutdown` completes: the engine started (prehash, watch), the metrics and TLS
/// redirect listeners beside the main one, the connection layer with the configuration's
/// limits.
pub async fn serve<S: Storage + Clone>(
    listeners: Listeners,
    config: Arc<Config>,
    files: ServeFiles<S>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let onoff = |b: bool| if b { "on" } else { "off" };
    tracing::info!(
        "file hashes: persistence {}, prehash {}, watch {}",
        match &config.state_dir {
            Some(dir) => format!("in {}", dir.join(crate::fs::digest::STATE_FILE).display()),
            None => "off".to_string(),
        },
        onoff(config.prehash),
        onoff(config.watch)
    );
    if config.lab_enabled {
        tracing::warn!(
            "THE DOWNLOAD-CLIENT LAB IS ON: generated files, fault injection (cut connections, \
             throttling, errors, corrupted bytes) and uploads without a token under {}/ for \
             anyone who asks. For testing download and upload clients only; never enable it on \
             a production server.",
            config.lab_prefix
        );
    }
    files.start().await?;
    // The lab's upload endpoint: a store of its own, removed when the server stops.
    let lab_uploads = match config.lab_enabled {
        true => {
            let up = lab::upload::LabUploads::open(&config.lab_prefix)
                .await
                .map_err(|e| std::io::Error::other(format!("lab uploads: {e}")))?;
            tracing::info!(
                "lab uploads: tus and the IETF draft at {p}/upload/, no token; stored in {} until the server stops, published at {p}/uploaded/",
                up.dir().display(),
                p = config.lab_prefix,
            );
            Some(up)
        }
        false => None,
    };
    // Uploads: their store opened (and what a crash left cleaned up), expired ones swept.
    let uploads = match &config.upload {
        Some(up) => {
            let (up_config, show_hidden, f) = (up.clone(), config.show_hidden, files.clone());
            let uploads = tokio::task::spawn_blocking(move || {
                upload::Uploads::open(&up_config, show_hidden, f)
            })
            .await
            .map_err(std::io::Error::other)?
            .map_err(|e| std::io::Error::other(format!("upload.dir {}: {e}", up.dir.display())))?;
            let put = match up.dir_name.as_str() {
                "" => "any path".to_string(),
                d => format!("paths under /{d}/"),
            };
            tracing::info!(
                "uploads on: tus at {}/, PUT to {put}; published into {} (max_size {}, max_age {}s, overwrite {}, {} tokens{})",
                up.prefix,
                up.dir.display(),
                up.max_size.map_or("none".to_string(), |m| m.to_string()),
                up.max_age.as_secs(),
                onoff(up.overwrite),
                up.tokens.0.len(),
                if up.allow_anonymous { ", anonymous uploads allowed" } else { "" },
            );
            if up.allow_anonymous {
                tracing::warn!(
                    "upload.allow_anonymous is on: anyone who reaches this server can upload; for a test set-up on loopback only"
                );
            }
            Some(uploads)
        }
        None => None,
    };
    let _sweeper = uploads.as_ref().map(|u| u.sweeper());
    let Listeners {
        main: listener,
        metrics,
        redirect,
    } = listeners;
    let _metrics = match metrics {
        Some(l) => {
            tracing::info!("metrics on http://{}/metrics", l.local_addr()?);
            Some(AbortOnDrop(tokio::spawn(metrics::serve(l))))
        }
        None => None,
    };
    let redirect = match redirect {
        Some(l) => {
            let https_port = listener.local_addr()?.port();
            tracing::info!("redirecting http://{}/ to https", l.local_addr()?);
            Some((l, redirect::router(https_port)))
        }
        None => None,
    };
    let opts = transport::Options {
        grace: config.shutdown_grace,
        tls: config.tls.as_ref().map(transport::tls::Tls::acceptor),
        redirect,
        limits: Limits {
            header_read_timeout: config.header_read_timeout,
            keepalive_timeout: config.keepalive_timeout,
            send_timeout: config.send_timeout,
            max_connections: config.max_connections,
            max_headers: config.max_headers,
        },
        fast_path: config.fast_path,
    };
    transport::run(
        listener,
        app(&config, files, uploads.as_ref(), lab_uploads.as_ref()),
        opts,
        shutdown,
    )
    .await
}
