//! The connection layer: accept on the listener, serve each connection with hyper (or, for
//! simple HTTP/1.1 requests, the fast path in `h1`), and on shutdown stop
//! accepting at once and give in-flight responses a grace period. Generic over the service it
//! serves: it knows nothing about files, beyond handing each plain connection's `sendfile`
//! queue to the task that serves it (`fs::sendfile`).
//!
//! Written against hyper directly (rather than `axum::serve`) for the knobs a download server
//! needs: how much of a response hyper may queue per connection, and header-size limits.
//!
//! Each connection speaks HTTP/1.1, or HTTP/2 when it opens with the HTTP/2 preface: chosen by
//! ALPN over TLS, and "prior knowledge" (h2c, RFC 9113 §3.3) on plain TCP. With TLS, the
//! handshake runs in the connection's own task, never in the accept loop, and is bounded by
//! [`tls::HANDSHAKE_TIMEOUT`]. An HTTP/2 connection's streams run on that task too, and the
//! responses they have ready at once go out in one write ([`batch`]).

pub mod batch;
pub mod congestion;
pub mod h1;
pub mod interim;
pub mod limits;
pub mod sendfile;
pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::Method;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::fs::sendfile as handoff;
use crate::ops;
use batch::ConnExec;
use limits::{Activity, Deadline, Gate, Limits};
use sendfile::SendfileStream;

/// What the transport can serve: a tower service from requests (with any body) to responses,
/// always ready, that never fails (errors are responses).
pub trait App:
    tower::Service<
        http::Request<Body>,
        Response = http::Response<Self::Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
    /// The response body.
    type Body: http_body::Body<Data = Bytes, Error: Into<BoxError> + Send + Sync>
        + Send
        + Unpin
        + 'static;
}

impl<S, B> App for S
where
    S: tower::Service<http::Request<Body>, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError> + Send + Sync,
{
    type Body = B;
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The most a connection buffers in user space: hyper stops asking the body for more once this
/// much is queued, so a slow reader costs about this much memory, not a whole file (hyper's
/// default holds far more per connection; bench/README.md, S7). It also caps the request head: a larger one is answered 431 (nginx allows 8 KiB a
/// line).
pub const MAX_BUF: usize = 16 * 1024;

/// hyper's default header-count limit for HTTP/1 (`DEFAULT_MAX_HEADERS` in hyper's h1 parser).
const HYPER_MAX_HEADERS: usize = 100;

/// HTTP/2 streams a client may have open at once on one connection (RFC 9113 §6.5.2 advises no
/// fewer than 100). Each stream queues at most [`MAX_BUF`] of its response plus one body chunk.
pub const H2_MAX_STREAMS: u32 = 100;

/// What a client may send before the handler reads it, per HTTP/2 stream and per connection
/// (the initial flow-control windows, RFC 9113 §6.9.2): these bound what a client can make the
/// server hold. Only uploads read request bodies, and they read them as fast as the disk takes
/// them; over a long round trip these windows, not the disk, bound an HTTP/2 upload's speed.
const H2_STREAM_WINDOW: u32 = 64 * 1024;
const H2_CONN_WINDOW: u32 = 1024 * 1024;

/// How the server listens beyond the main listener's plain HTTP.
#[derive(Default)]
pub struct Options {
    /// How long in-flight responses may run after shutdown begins.
    pub grace: Duration,
    /// Serve the main listener over TLS.
    pub tls: Option<TlsAcceptor>,
    /// A plain-HTTP listener whose connections are served `redirect` (`[tls] redirect_listen`).
    pub redirect: Option<(TcpListener, axum::Router)>,
    /// Timeouts, header count and connection cap (`limits`).
    pub limits: Limits,
    /// Answer simple HTTP/1.1 requests (plain TCP and TLS) with the fast path (`h1`).
    pub fast_path: bool,
}

/// Serve `app` on `listener` (over TLS when `opts.tls` is set, and the redirect listener
/// beside it) until `shutdown` completes; then close the listeners (new connections are
/// refused), let open connections finish their current response for up to `opts.grace`, and
/// return.
pub async fn run<A: App>(
    listener: TcpListener,
    app: A,
    opts: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let Options {
        grace,
        tls,
        redirect,
        limits,
        fast_path,
    } = opts;
    let service = app;
    let (redirect, redirect_service) = match redirect {
        Some((l, r)) => (Some(l), Some(r)),
        None => (None, None),
    };
    let builders = Arc::new(Builders::new(&limits));
    let in_flight = Arc::new(AtomicUsize::new(0));
    // Both listeners count against one cap.
    let mut gate = Gate::new(limits.max_connections);
    let graceful = GracefulShutdown::new();
    // Tells connections still in their TLS handshake to give up: they have no response in
    // flight, and must not hold shutdown for the handshake timeout.
    let (stopping, stop) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let ((stream, peer), redirected) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => (accepted, false),
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            accepted = accept_opt(redirect.as_ref()) => match accepted {
                Ok(accepted) => (accepted, true),
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // At the cap: close at once (the client sees the connection end; nginx does the same
        // when worker_connections run out), rather than leave it unanswered in the backlog.
        let Some(permit) = gate.admit() else {
            drop(stream);
            continue;
        };
        let conn = Conn {
            limits,
            permit,
            in_flight: in_flight.clone(),
        };
        // Headers and small bodies go out in one write anyway; don't hold back what remains.
        let _ = stream.set_nodelay(true);
        let watcher = graceful.watcher();
        if redirected {
            let service = redirect_service
                .clone()
                .expect("a redirect listener has a service");
            let served = serve_io(builders.clone(), stream, service, watcher, conn);
            tokio::spawn(ops::with_peer(peer, served));
            continue;
        }
        let service = service.clone();
        let builders = builders.clone();
        match &tls {
            None => {
                // Plain TCP: long runs of files may go out by sendfile (HTTP/1.x only).
                let io = SendfileStream::new(stream);
                let sink = io.sink();
                let stop = stop.clone();
                let served = serve_fast(builders, io, service, watcher, conn, stop, fast_path);
                tokio::spawn(ops::with_peer(peer, handoff::scope(sink, served)));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let mut stop = stop.clone();
                tokio::spawn(ops::with_peer(peer, async move {
                    let stream = tokio::select! {
                        s = tls::handshake(&acceptor, stream) => s,
                        _ = stop.wait_for(|stopping| *stopping) => None,
                    };
                    let Some(stream) = stream else { return };
                    // HTTP/2 by ALPN: hyper's from the first byte; HTTP/1.1 as on plain TCP.
                    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                    let fast = fast_path && !h2;
                    serve_fast(builders, stream, service, watcher, conn, stop, fast).await;
                }));
            }
        }
    }
    drop(listener);
    drop(redirect);
    let _ = stopping.send(true);
    let at_start = in_flight.load(Ordering::Relaxed);
    tracing::info!(
        "shutting down: no new connections; {at_start} responses in flight have {grace:?} to finish"
    );
    let cut = tokio::select! {
        () = graceful.shutdown() => 0,
        () = tokio::time::sleep(grace) => {
            let open = in_flight.load(Ordering::Relaxed);
            tracing::warn!("grace period of {grace:?} over: closing the connections still open");
            open
        }
    };
    match at_start {
        0 => tracing::info!("stopped: no response was in flight"),
        n => tracing::info!(
            "stopped: {n} responses were in flight at shutdown: {} finished, {cut} cut at the end of the grace period",
            n.saturating_sub(cut)
        ),
    }
    Ok(())
}

/// The connection settings every listener shares: for a new connection, HTTP/1.1 or HTTP/2;
/// for a connection the fast path hands over after it has answered a request, HTTP/1.1 only
/// (RFC 9113 §3.4: the HTTP/2 preface may only be the first bytes of a connection).
struct Builders {
    any: auto::Builder<ConnExec>,
    http1: auto::Builder<ConnExec>,
}

impl Builders {
    fn new(limits: &Limits) -> Builders {
        let any = builder(limits);
        Builders {
            http1: any.clone().http1_only(),
            any,
        }
    }
}

/// The connection settings every listener shares.
fn builder(limits: &Limits) -> auto::Builder<ConnExec> {
    let mut builder = auto::Builder::new(ConnExec);
    builder
        .http1()
        .max_buf_size(MAX_BUF)
        .keep_alive(!limits.keepalive_timeout.is_zero())
        // A client may shut down its sending side once its request is out (`nc -N`, HTTP/1.0
        // scripts); with hyper's default, the EOF it then reads dropped a response still being
        // prepared. The fast path never read it as an abort; a client that is really gone
        // fails the next write instead.
        .half_close(true)
        // The head and keep-alive deadlines are `limits::Deadline`'s (hyper's timer would also
        // cap the idle time between requests at the header timeout).
        .header_read_timeout(None)
        // Body buffers go to the socket as they are (no copy into hyper's buffer): required by
        // the `sendfile` placeholders.
        .writev(true)
        .timer(TokioTimer::new());
    // More header fields than this: 431 (the count; MAX_BUF bounds their size). hyper's own
    // limit is 100, kept in an array on the stack; any other limit costs two heap arrays for every
    // request, so it is only set when it differs.
    if limits.max_headers != HYPER_MAX_HEADERS {
        builder.http1().max_headers(limits.max_headers);
    }
    // The same bounds for HTTP/2: a stream queues at most MAX_BUF of response before hyper
    // stops polling its body (hyper's default is 400 KiB, times every open stream, which
    // clients that stop reading turn into hundreds of MB; a large download is as fast with
    // either), and a request's header list is
    // capped like an HTTP/1.1 head.
    builder
        .http2()
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_send_buf_size(MAX_BUF)
        .max_header_list_size(MAX_BUF as u32)
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONN_WINDOW)
        .timer(TokioTimer::new());
    builder
}

/// What an admitted connection carries: its limits, and its place under the cap (given back
/// when the connection ends).
struct Conn {
    /// Requests in flight on the whole server.
    in_flight: Arc<AtomicUsize>,
    limits: Limits,
    permit: tokio::sync::OwnedSemaphorePermit,
}

/// Serve HTTP/1.1 or HTTP/2 on one accepted connection (plain TCP or TLS) until it ends, or
/// until graceful shutdown has let its current response finish.
async fn serve_io<IO, A: App>(
    builders: Arc<Builders>,
    io: IO,
    service: A,
    watcher: Watcher,
    conn: Conn,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Conn {
        limits,
        permit,
        in_flight,
    } = conn;
    let _permit = permit;
    let activity = Activity::new(in_flight);
    let io = Deadline::new(io, limits, activity.clone());
    hyper_conn(&builders.any, io, service, activity, watcher).await;
}

/// hyper serves `io` (already under its deadlines) to its end, requests counted on `activity`.
async fn hyper_conn<IO, A: App>(
    builder: &auto::Builder<ConnExec>,
    io: IO,
    service: A,
    activity: Arc<Activity>,
    watcher: Watcher,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = interim::InterimIo::new(io, activity.clone());
    let interim = io.handle();
    // HTTP/2's small writes held until its streams have run (`batch`).
    let io = batch::BatchIo::new(io);
    let cork = io.cork();
    // hyper's request body, boxed into the one body type the application takes; requests
    // that carry content over HTTP/1.1 (uploads) get the way to send interim responses.
    let service = tower::util::MapRequest::new(service, move |req: http::Request<Incoming>| {
        let mut req = req.map(Body::new);
        // axum's Router inserts two extensions per request: into a recycled map (its table
        // already allocated, as on the fast path) when hyper gave none.
        if req.extensions().is_empty() {
            *req.extensions_mut() = crate::http::response::spare_extensions();
        }
        if req.version() == http::Version::HTTP_11
            && matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH)
        {
            req.extensions_mut().insert(interim.clone());
        }
        req
    });
    let service = limits::track(service, activity);
    // Without upgrades: the application never answers 101, and only this way does the
    // builder keep to `http1_only` (hyper-util ignores it under `..._with_upgrades`).
    let conn = builder.serve_connection(TokioIo::new(io), service);
    // HTTP/2 streams run on this task, not as tasks of their own (`batch`).
    if let Err(e) = batch::serve(watcher.watch(conn.into_owned()), &cork).await {
        tracing::debug!("connection ended with an error: {e}");
    }
}

/// Serve a connection of the main listener (plain TCP, or TLS once its handshake is done):
/// simple HTTP/1.1 requests on the fast path (`h1`) for as long as they come, then the rest of
/// the connection with hyper, like every other connection, but HTTP/1.1 only. The fast path
/// needs keep-alive on and hyper's own header-count limit (it parses with that many slots);
/// otherwise, or when `fast_path` is false, hyper serves it all.
async fn serve_fast<IO, A: App>(
    builders: Arc<Builders>,
    io: IO,
    app: A,
    watcher: Watcher,
    conn: Conn,
    stop: tokio::sync::watch::Receiver<bool>,
    fast_path: bool,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = conn.limits;
    // hyper's connection futures are boxed where they start: in the connection's task they
    // would make every connection, most of which never leave the fast path, carry their size
    // (3.5 KiB of a 3.5 KiB task, all of it touched when the task is spawned).
    if !fast_path || limits.keepalive_timeout.is_zero() || limits.max_headers != h1::MAX_HEADERS {
        return Box::pin(serve_io(builders, io, app, watcher, conn)).await;
    }
    let Conn {
        limits,
        permit,
        in_flight,
    } = conn;
    let activity = Activity::new(in_flight);
    let mut io = Deadline::new(io, limits, activity.clone());
    let (read, answered) = match h1::serve(&mut io, &app, &activity, MAX_BUF, stop).await {
        h1::End::Closed => {
            // The slot is free before the client sees the connection end, so a client that
            // reconnects at once under `max_connections` is admitted.
            drop(permit);
            let _ = io.shutdown().await;
            return;
        }
        h1::End::Handover { read, answered } => (read, answered),
    };
    let _permit = permit;
    let io = h1::Prefixed::new(read, io);
    // Before any response, the connection is new to hyper in every way (an HTTP/2 preface is
    // its first bytes); after one, it is an HTTP/1.1 connection.
    let builder = if answered {
        &builders.http1
    } else {
        &builders.any
    };
    Box::pin(hyper_conn(builder, io, app, activity, watcher)).await;
}

/// Accept on `listener`, or wait forever when there is none.
async fn accept_opt(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// EMFILE and friends: say so and back off, rather than spin.
async fn accept_failed(e: std::io::Error) {
    tracing::warn!("accept failed: {e}");
    tokio::time::sleep(Duration::from_millis(100)).await;
}
