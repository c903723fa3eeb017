//! Limits against slow, greedy and broken clients: per-connection deadlines and the
//! connection cap.
//!
//! Every accepted connection's I/O is wrapped in a [`Deadline`], and its requests are counted in
//! an [`Activity`] shared by the wrapper and the service (a request is in flight from the
//! moment hyper hands it to the router until its response body has ended or been dropped):
//!
//! - **Reading a request head** (`header_read_timeout`): from the connection's start, or from
//!   the first byte after an idle keep-alive gap, the whole head must have arrived within the
//!   timeout (slowloris). Like nginx's `client_header_timeout`, it is a deadline, not an
//!   inactivity timer: one byte every few seconds does not extend it.
//! - **Idle keep-alive** (`keepalive_timeout`): a connection with no request in flight that has
//!   sent nothing since its last response is closed after the timeout.
//! - **Write stall** (`send_timeout`): a write that makes no progress for the timeout (the
//!   client stopped reading and the socket buffer is full) fails, which ends the connection and
//!   drops its response body, and with it the file handle and buffers (nginx's `send_timeout`).
//!
//! hyper's own HTTP/1 `header_read_timeout` is not used: in hyper 1.x its timer starts when
//! hyper begins waiting for the next head, right after the previous response, so it would
//! also cap the idle keep-alive time at the (shorter) header timeout.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The limits one listener enforces on its connections.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time for a whole request head, from the connection's start or from its first byte.
    pub header_read_timeout: Duration,
    /// Idle time allowed between requests; zero turns keep-alive off.
    pub keepalive_timeout: Duration,
    /// Time a write may make no progress before the connection is dropped.
    pub send_timeout: Duration,
    /// Connections served at once; more are accepted and closed at once.
    pub max_connections: usize,
    /// Header fields in one HTTP/1 request head; more are answered 431.
    pub max_headers: usize,
}

pub const DEFAULT_HEADER_READ_TIMEOUT: u64 = 10;
pub const DEFAULT_KEEPALIVE_TIMEOUT: u64 = 75;
pub const DEFAULT_SEND_TIMEOUT: u64 = 60;
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// Above this, hyper's per-request header array alone would cost megabytes.
pub const MAX_MAX_HEADERS: usize = 10_000;

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(DEFAULT_HEADER_READ_TIMEOUT),
            keepalive_timeout: Duration::from_secs(DEFAULT_KEEPALIVE_TIMEOUT),
            send_timeout: Duration::from_secs(DEFAULT_SEND_TIMEOUT),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_headers: DEFAULT_MAX_HEADERS,
        }
    }
}

/// What one connection is doing, as far as its deadlines care.
pub struct Activity {
    state: Mutex<State>,
    /// Requests in flight on every connection of the server (for the shutdown report).
    server: Arc<AtomicUsize>,
}

struct State {
    /// Requests handed to the service whose response body has not ended yet.
    in_flight: usize,
    /// When the last request in flight ended (or the connection started).
    idle_since: Instant,
    /// No request has been started on this connection yet.
    fresh: bool,
    /// When the first byte arrived after going idle.
    first_byte: Option<Instant>,
    /// The latest request's response has been returned by the service (its head may be on
    /// the wire: `interim`).
    answered: bool,
    /// A read that waited while a request was in flight (hyper reads ahead while it writes
    /// a response), to be woken when the connection goes idle so that it arms its deadline.
    reader: Option<std::task::Waker>,
}

impl Activity {
    /// A new connection's activity; its requests also count in `server`.
    pub fn new(server: Arc<AtomicUsize>) -> Arc<Activity> {
        Arc::new(Activity {
            server,
            state: Mutex::new(State {
                in_flight: 0,
                idle_since: Instant::now(),
                fresh: true,
                first_byte: None,
                answered: false,
                reader: None,
            }),
        })
    }

    /// A request starts; it ends when the returned guard drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.server.fetch_add(1, Ordering::Relaxed);
        let mut s = self.state.lock().unwrap();
        s.in_flight += 1;
        s.fresh = false;
        s.first_byte = None;
        s.answered = false;
        InFlight(self.clone())
    }

    /// Requests started on this connection whose response body has not ended.
    pub fn in_flight(&self) -> usize {
        self.state.lock().unwrap().in_flight
    }

    /// Whether the latest request's response has been returned by the service.
    pub fn answered(&self) -> bool {
        self.state.lock().unwrap().answered
    }

    /// When reading must have made the connection busy again, if it is idle now; if it is
    /// not, `waker` is woken when it becomes idle.
    fn read_deadline(&self, limits: &Limits, waker: &std::task::Waker) -> Option<Instant> {
        let mut s = self.state.lock().unwrap();
        if s.in_flight > 0 {
            if !s.reader.as_ref().is_some_and(|w| w.will_wake(waker)) {
                s.reader = Some(waker.clone());
            }
            return None;
        }
        Some(match s.first_byte {
            Some(t) => t + limits.header_read_timeout,
            None if s.fresh || limits.keepalive_timeout.is_zero() => {
                s.idle_since + limits.header_read_timeout
            }
            None => s.idle_since + limits.keepalive_timeout,
        })
    }

    fn bytes_read(&self) {
        let mut s = self.state.lock().unwrap();
        if s.in_flight == 0 && s.first_byte.is_none() {
            s.first_byte = Some(Instant::now());
        }
    }
}

/// One request in flight (see [`Activity::begin`]).
pub struct InFlight(Arc<Activity>);

impl InFlight {
    /// The service returned this request's response.
    pub(crate) fn answered(&self) {
        self.0.state.lock().unwrap().answered = true;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.server.fetch_sub(1, Ordering::Relaxed);
        let mut s = self.0.state.lock().unwrap();
        s.in_flight -= 1;
        if s.in_flight == 0 {
            s.idle_since = Instant::now();
            s.first_byte = None;
            if let Some(w) = s.reader.take() {
                w.wake();
            }
        }
    }
}

/// A response body that keeps its request in flight until it ends or is dropped.
pub struct TrackedBody<B> {
    inner: B,
    guard: Option<InFlight>,
}

impl<B> TrackedBody<B> {
    pub fn new(inner: B, guard: InFlight) -> TrackedBody<B> {
        TrackedBody {
            inner,
            guard: Some(guard),
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for TrackedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.guard = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A tower service as hyper's: each request counted in flight on an [`Activity`] until its
/// response body ends.
///
/// This replaces hyper-util's `TowerToHyperService`, whose future is a `Oneshot` holding a
/// clone of the whole service stack and the request until its first poll: moved into every
/// HTTP/2 stream's future, that was a copy of 600 bytes per request at each step. Here the
/// clone is asked for readiness at once (the application is always ready, see `App`) and
/// dropped after `call`; a service that is not ready is waited for as `Oneshot` would.
#[derive(Clone)]
pub struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

/// Wrap `service` so that each request is counted in flight on `activity`.
pub fn track<S>(service: S, activity: Arc<Activity>) -> Tracked<S> {
    Tracked {
        inner: service,
        activity,
    }
}

impl<S, ReqBody, B> hyper::service::Service<http::Request<ReqBody>> for Tracked<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn call(&self, req: http::Request<ReqBody>) -> Self::Future {
        use tower::ServiceExt as _;
        let guard = self.activity.begin();
        let mut svc = self.inner.clone();
        let fut = match svc.poll_ready(&mut Context::from_waker(std::task::Waker::noop())) {
            Poll::Ready(Ok(())) => futures_util::future::Either::Left(svc.call(req)),
            Poll::Ready(Err(e)) => return Box::pin(std::future::ready(Err(e))),
            Poll::Pending => futures_util::future::Either::Right(Box::pin(svc.oneshot(req))),
        };
        Box::pin(async move {
            let resp = fut.await?;
            guard.answered();
            Ok(resp.map(|b| TrackedBody::new(b, guard)))
        })
    }
}

/// A connection's I/O with the read deadlines and the write-stall timeout (see the module
/// docs). Applied alike to plain TCP (around the sendfile stream) and TLS.
pub struct Deadline<IO> {
    io: IO,
    limits: Limits,
    activity: Arc<Activity>,
    read_timer: Pin<Box<Sleep>>,
    read_at: Option<Instant>,
    write_timer: Pin<Box<Sleep>>,
    write_armed: bool,
}

impl<IO> Deadline<IO> {
    pub fn new(io: IO, limits: Limits, activity: Arc<Activity>) -> Deadline<IO> {
        let now = Instant::now();
        Deadline {
            io,
            limits,
            activity,
            read_timer: Box::pin(tokio::time::sleep_until(now)),
            read_at: None,
            write_timer: Box::pin(tokio::time::sleep_until(now)),
            write_armed: false,
        }
    }

    /// Turn a write's `Pending` into an error once the socket has accepted nothing for
    /// `send_timeout`.
    fn stall<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(r) => {
                self.write_armed = false;
                Poll::Ready(r)
            }
            Poll::Pending => {
                if !self.write_armed {
                    self.write_armed = true;
                    let at = Instant::now() + self.limits.send_timeout;
                    self.write_timer.as_mut().reset(at);
                }
                if self.write_timer.as_mut().poll(cx).is_ready() {
                    tracing::debug!(
                        "client accepted no bytes for send_timeout ({:?}): closing the connection",
                        self.limits.send_timeout
                    );
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "send_timeout: the client stopped reading",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Deadline<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if !polled.is_pending() {
            if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
                this.activity.bytes_read();
            }
            return polled;
        }
        // The timer matters only while the read waits: a head that keeps arriving is bounded
        // by the head size limit, and a client that pauses between pieces meets the timer
        // here, at its absolute deadline (from the head's first byte, not from the last read).
        // Polling it on every read that returned bytes showed in the profile of 304s.
        if let Some(at) = this.activity.read_deadline(&this.limits, cx.waker()) {
            // The timer is only ever moved earlier here. A later deadline (the next keep-alive
            // wait, after every request) waits for the armed timer to fire, which then re-arms
            // it: resetting tokio's timer once per request showed in the profile of 304s.
            if this.read_at.is_none_or(|armed| armed > at) {
                this.read_at = Some(at);
                this.read_timer.as_mut().reset(at);
            }
            while this.read_timer.as_mut().poll(cx).is_ready() {
                if Instant::now() >= at {
                    tracing::debug!("no request within the header or keep-alive timeout: closing");
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "header_read_timeout or keepalive_timeout",
                    )));
                }
                this.read_at = Some(at);
                this.read_timer.as_mut().reset(at);
            }
        }
        Poll::Pending
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Deadline<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.stall(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.stall(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.stall(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_shutdown(cx);
        this.stall(cx, polled)
    }
}

/// The connection cap: a permit per connection, and log lines when the cap is hit and left.
pub struct Gate {
    permits: Arc<tokio::sync::Semaphore>,
    max: usize,
    /// Connections closed since the cap was hit; `None` while under it.
    refused: Option<u64>,
}

impl Gate {
    pub fn new(max: usize) -> Gate {
        Gate {
            permits: Arc::new(tokio::sync::Semaphore::new(max)),
            max,
            refused: None,
        }
    }

    /// A permit for a connection just accepted, or `None` when `max_connections` are open (the
    /// caller closes it). One WARN when the cap is first hit, one INFO when a connection is
    /// admitted again: not a line per refused connection.
    pub fn admit(&mut self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                if let Some(n) = self.refused.take() {
                    tracing::info!(
                        "back under max_connections ({}): accepting again ({n} connections were closed at the cap)",
                        self.max
                    );
                }
                Some(permit)
            }
            Err(_) => {
                match &mut self.refused {
                    Some(n) => *n += 1,
                    None => {
                        tracing::warn!(
                            "max_connections ({}) reached: closing new connections at once until some end",
                            self.max
                        );
                        self.refused = Some(1);
                    }
                }
                None
            }
        }
    }
}

/// The limits from their config values (missing: the default), each checked with a one-line
/// error naming its key.
pub fn check(
    header_read_timeout: Option<u64>,
    keepalive_timeout: Option<u64>,
    send_timeout: Option<u64>,
    max_connections: Option<usize>,
    max_headers: Option<usize>,
) -> Result<Limits, String> {
    let d = Limits::default();
    let at_least_one = |key: &str, v: Option<u64>, default: Duration| match v {
        Some(0) => Err(format!("{key}: must be at least 1 (seconds)")),
        Some(s) => Ok(Duration::from_secs(s)),
        None => Ok(default),
    };
    let max_headers = max_headers.unwrap_or(d.max_headers);
    if !(1..=MAX_MAX_HEADERS).contains(&max_headers) {
        return Err(format!(
            "max_headers: {max_headers} is not between 1 and {MAX_MAX_HEADERS}"
        ));
    }
    let max_connections = max_connections.unwrap_or(d.max_connections);
    if max_connections == 0 || max_connections > tokio::sync::Semaphore::MAX_PERMITS {
        return Err(format!(
            "max_connections: {max_connections} is not between 1 and {}",
            tokio::sync::Semaphore::MAX_PERMITS
        ));
    }
    Ok(Limits {
        header_read_timeout: at_least_one(
            "header_read_timeout",
            header_read_timeout,
            d.header_read_timeout,
        )?,
        // 0 turns keep-alive off, as in nginx.
        keepalive_timeout: keepalive_timeout.map_or(d.keepalive_timeout, Duration::from_secs),
        send_timeout: at_least_one("send_timeout", send_timeout, d.send_timeout)?,
        max_connections,
        max_headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};
    use hyper::service::Service as _;

    /// Answers with the request's path; not ready until it has been polled `not_ready` times
    /// (waking its caller each time, as a service waiting on a resource would be woken).
    #[derive(Clone)]
    struct Echo {
        not_ready: Arc<AtomicUsize>,
        calls: Arc<AtomicUsize>,
    }

    impl tower::Service<http::Request<()>> for Echo {
        type Response = http::Response<Full<Bytes>>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            let left = self.not_ready.load(Ordering::Relaxed);
            if left == 0 {
                return Poll::Ready(Ok(()));
            }
            self.not_ready.store(left - 1, Ordering::Relaxed);
            cx.waker().wake_by_ref();
            Poll::Pending
        }

        fn call(&mut self, req: http::Request<()>) -> Self::Future {
            assert_eq!(
                self.not_ready.load(Ordering::Relaxed),
                0,
                "called before ready"
            );
            self.calls.fetch_add(1, Ordering::Relaxed);
            let path = Bytes::copy_from_slice(req.uri().path().as_bytes());
            std::future::ready(Ok(http::Response::new(Full::new(path))))
        }
    }

    #[tokio::test]
    async fn a_request_is_in_flight_until_its_body_ends_whether_or_not_the_service_was_ready() {
        for not_ready in [0, 3] {
            let echo = Echo {
                not_ready: Arc::new(AtomicUsize::new(not_ready)),
                calls: Arc::new(AtomicUsize::new(0)),
            };
            let server = Arc::new(AtomicUsize::new(0));
            let activity = Activity::new(server.clone());
            let tracked = track(echo.clone(), activity.clone());
            let req = http::Request::get("/a/b").body(()).unwrap();
            let fut = tracked.call(req);
            assert_eq!(activity.in_flight(), 1);
            assert!(!activity.answered());
            let resp = fut.await.unwrap();
            assert!(activity.answered());
            assert_eq!(echo.calls.load(Ordering::Relaxed), 1);
            assert_eq!(
                (activity.in_flight(), server.load(Ordering::Relaxed)),
                (1, 1)
            );
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], b"/a/b", "not_ready {not_ready}");
            assert_eq!(
                (activity.in_flight(), server.load(Ordering::Relaxed)),
                (0, 0)
            );
        }
    }
}
