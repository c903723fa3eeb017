//! Informational (1xx) responses on the HTTP/1.1 connections hyper serves. hyper's server has
//! no way to send one (only `100 Continue`, which it sends itself), and the resumable-upload
//! draft's `104 (Upload Resumption Supported)` tells a client where to resume before the
//! final response. So the connection's I/O is wrapped ([`InterimIo`]) and a handler gets an
//! [`Interim`] in its request's extensions, through which it queues the bytes of an interim
//! response; they go onto the connection at the next moment hyper has nothing of its own
//! half-written.
//!
//! When that is safe: an interim response must come after everything before it on the
//! connection and before its request's final response (RFC 9110 §15.2; RFC 9112 §9.3 on
//! pipelined responses staying in order). hyper writes from a buffer it always drains before
//! it flushes the I/O, so right after a successful flush its buffer is empty; the wrapper
//! writes queued bytes only then, or before hyper's first write after it. A handler may
//! queue only while its request is the only one in flight on the connection (no earlier
//! response still going out, as with pipelining), and its bytes are dropped rather than
//! sent once the final response may have started. Interim responses are optional for the
//! draft ("SHOULD"), so dropping one is allowed; sending one out of order never is.
//!
//! Only HTTP/1.1 requests get an [`Interim`] (RFC 9110 §15.2: none to an HTTP/1.0 client;
//! over HTTP/2 the bytes would be the wrong framing).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use futures_util::task::AtomicWaker;
use http::{HeaderMap, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::limits::Activity;

/// What a connection's I/O and the handlers of its requests share.
#[derive(Default)]
struct Shared {
    /// The bytes of queued interim responses.
    pending: Mutex<Vec<u8>>,
    has_pending: AtomicBool,
    /// The connection's task, woken when bytes are queued from elsewhere.
    waker: AtomicWaker,
}

/// A handler's way to send interim responses before its final one (see the module docs).
#[derive(Clone)]
pub struct Interim {
    shared: Arc<Shared>,
    activity: Arc<Activity>,
}

impl Interim {
    /// Queue an interim response (`status` must be 1xx, not 101) with `reason` and `headers`.
    /// False when it cannot be sent: another request's response is still in flight on the
    /// connection. Call it only before returning the final response.
    pub fn send(&self, status: StatusCode, reason: &str, headers: &HeaderMap) -> bool {
        debug_assert!(status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS);
        if self.activity.in_flight() != 1 || self.activity.answered() {
            return false;
        }
        let mut out = self.shared.pending.lock().unwrap();
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(reason.as_bytes());
        out.extend_from_slice(b"\r\n");
        for (name, value) in headers {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        self.shared.has_pending.store(true, Ordering::Release);
        drop(out);
        self.shared.waker.wake();
        true
    }
}

/// A connection's I/O that writes queued interim responses between hyper's writes.
pub struct InterimIo<IO> {
    io: IO,
    shared: Arc<Shared>,
    activity: Arc<Activity>,
    /// hyper has flushed everything it wrote (its buffer is empty).
    clean: bool,
    /// Interim bytes being written, and how many are out; once started they are finished
    /// before anything else is written.
    out: Vec<u8>,
    at: usize,
}

impl<IO> InterimIo<IO> {
    /// Wrap a new connection's `io`; its requests are counted by `activity`.
    pub fn new(io: IO, activity: Arc<Activity>) -> InterimIo<IO> {
        InterimIo {
            io,
            shared: Arc::default(),
            activity,
            clean: true,
            out: Vec::new(),
            at: 0,
        }
    }

    /// The handle for a request's extensions.
    pub fn handle(&self) -> Interim {
        Interim {
            shared: self.shared.clone(),
            activity: self.activity.clone(),
        }
    }
}

impl<IO: AsyncWrite + Unpin> InterimIo<IO> {
    /// Write the queued interim bytes, if any and if hyper has nothing half-written.
    fn poll_interim(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.at == self.out.len() {
            if !self.clean || !self.shared.has_pending.load(Ordering::Acquire) {
                return Poll::Ready(Ok(()));
            }
            self.out.clear();
            self.at = 0;
            std::mem::swap(&mut self.out, &mut self.shared.pending.lock().unwrap());
            self.shared.has_pending.store(false, Ordering::Release);
        }
        while self.at < self.out.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.out[self.at..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.at += n;
        }
        // A TLS stream holds what it was given until flushed.
        Pin::new(&mut self.io).poll_flush(cx)
    }

    /// hyper flushed: its buffer is empty. Interim bytes queued now may still go out, unless
    /// a final response has been returned since (it may already be out).
    fn flushed(&mut self) {
        if !self.clean {
            self.clean = true;
            if self.activity.in_flight() != 1 || self.activity.answered() {
                self.shared.pending.lock().unwrap().clear();
                self.shared.has_pending.store(false, Ordering::Release);
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for InterimIo<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.shared.waker.register(cx.waker());
        // While a handler reads its request's body, hyper only reads: the moment to send.
        if let Poll::Ready(Err(e)) = self.poll_interim(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for InterimIo<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_interim(cx))?;
        self.clean = false;
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_interim(cx))?;
        self.clean = false;
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.shared.waker.register(cx.waker());
        ready!(self.poll_interim(cx))?;
        ready!(Pin::new(&mut self.io).poll_flush(cx))?;
        self.flushed();
        self.poll_interim(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn poll<T>(f: impl FnOnce(&mut Context<'_>) -> Poll<T>) -> T {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match f(&mut cx) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("pending"),
        }
    }

    fn write(io: &mut InterimIo<Vec<u8>>, bytes: &[u8]) {
        let n = poll(|cx| Pin::new(&mut *io).poll_write(cx, bytes)).unwrap();
        assert_eq!(n, bytes.len());
    }

    fn flush(io: &mut InterimIo<Vec<u8>>) {
        poll(|cx| Pin::new(&mut *io).poll_flush(cx)).unwrap();
    }

    fn send(i: &Interim) -> bool {
        let mut hs = HeaderMap::new();
        hs.insert("location", http::HeaderValue::from_static("/u/1"));
        i.send(
            StatusCode::from_u16(104).unwrap(),
            "Upload Resumption Supported",
            &hs,
        )
    }

    const INTERIM: &[u8] = b"HTTP/1.1 104 Upload Resumption Supported\r\nlocation: /u/1\r\n\r\n";

    #[test]
    fn interim_bytes_go_only_between_whole_messages_before_the_final_response() {
        let activity = Activity::new(Arc::new(AtomicUsize::new(0)));
        let mut io = InterimIo::new(Vec::new(), activity.clone());
        let handle = io.handle();
        // An earlier response still in flight (pipelining): refused.
        let earlier = activity.begin();
        let current = activity.begin();
        assert!(!send(&handle));
        drop(earlier);
        // Alone in flight: queued, and written before hyper's next bytes.
        assert!(send(&handle));
        write(&mut io, b"HTTP/1.1 100 Continue\r\n\r\n");
        assert_eq!(io.io, [INTERIM, b"HTTP/1.1 100 Continue\r\n\r\n"].concat());
        // Queued while hyper has unflushed bytes: held until the flush, then written.
        assert!(send(&handle));
        flush(&mut io);
        assert!(io.io.ends_with(INTERIM));
        let before = io.io.len();
        // Queued, then the final response is returned and hyper writes it without a flush
        // in between: the interim goes first. But queued while hyper's buffer is not empty
        // and the response returned meanwhile: dropped, never after the final head.
        write(&mut io, b"partial");
        assert!(send(&handle));
        current.answered();
        write(&mut io, b" head");
        flush(&mut io);
        assert_eq!(&io.io[before..], b"partial head");
        // Once answered, nothing more is queued.
        assert!(!send(&handle));
        drop(current);
    }
}
