//! Zero-copy file bodies for plain-TCP HTTP/1.x connections, with `sendfile(2)`.
//!
//! hyper writes a response by handing its queue of buffers to the connection's I/O object in one
//! `poll_write_vectored` call. A body that wants bytes of a file sent without copying them through
//! user space yields a *placeholder*: a slice of [`placeholder`], a zeroed region that is never
//! read, whose length is the number of file bytes it stands for, after recording the file, offset
//! and length in the connection's [`SendQueue`]. [`SendfileStream`], the connection's I/O object,
//! recognises placeholder slices by address when hyper writes them and sends the recorded file
//! range with `sendfile` instead; ordinary slices before a placeholder (a response head,
//! multipart framing) are written first, as they are. (Holding the head back with `MSG_MORE` so
//! it shares a packet with the file bytes cost CPU instead of saving it: measured 66 against 40
//! µs per 64 KiB range.)
//!
//! This only holds while hyper passes body buffers through untouched: HTTP/1.x with a
//! Content-Length (every file response here) and the `writev` ("queue") write strategy, which
//! `server` forces. HTTP/2 and TLS connections get no [`Sink`], so their bodies never yield
//! placeholders. Any mismatch between a placeholder and the queue fails the write, which aborts
//! the connection: a client can get a cut response, never wrong bytes.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{ready, Context, Poll, Waker};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

use crate::metrics::METRICS;
use crate::source::Source;

/// The most file bytes one placeholder stands for.
pub const MAX_SPAN: usize = 1 << 20;

/// The placeholder region: allocated zeroed and never written or read, so the kernel never
/// backs it with memory (it costs address space, not RSS).
fn placeholder() -> &'static [u8] {
    static REGION: OnceLock<&'static [u8]> = OnceLock::new();
    REGION.get_or_init(|| vec![0u8; MAX_SPAN].leak())
}

/// Where in the placeholder region `buf` starts, if it lies inside it.
fn placeholder_offset(buf: &[u8]) -> Option<usize> {
    let region = placeholder();
    let base = region.as_ptr() as usize;
    let start = buf.as_ptr() as usize;
    (!buf.is_empty() && start >= base && start + buf.len() <= base + region.len())
        .then(|| start - base)
}

/// One file range waiting to be sent.
struct Span {
    /// Keeps the descriptor open until the bytes are sent.
    _source: Arc<dyn Source>,
    fd: RawFd,
    offset: u64,
    len: usize,
    sent: usize,
}

/// The file ranges of one connection, in the order their placeholders were yielded.
#[derive(Default)]
pub struct SendQueue {
    spans: Mutex<VecDeque<Span>>,
    /// A body waiting for every queued span to be sent (see [`Sink::poll_drained`]).
    drained: Mutex<Option<Waker>>,
}

/// The connection's queue, for bodies that may yield placeholders (see the module docs).
#[derive(Clone)]
pub struct Sink(Arc<SendQueue>);

tokio::task_local! {
    /// Set for the task that serves one plain HTTP/1.x connection: hyper polls the handler and
    /// the body inside it. HTTP/2 streams run in tasks of their own, without it.
    static SINK: Sink;
}

/// The sink of the connection being served by this task, if it has one.
pub fn current() -> Option<Sink> {
    SINK.try_with(Sink::clone).ok()
}

/// Serve a connection (`conn`) with `sink` as its sink.
pub async fn scope<F: std::future::Future>(sink: Sink, conn: F) -> F::Output {
    SINK.scope(sink, conn).await
}

impl Sink {
    /// A placeholder for `len` bytes (at most [`MAX_SPAN`]) of `source` at `offset`; `fd` is
    /// `source`'s descriptor.
    pub fn placeholder(
        &self,
        source: Arc<dyn Source>,
        fd: RawFd,
        offset: u64,
        len: usize,
    ) -> Bytes {
        debug_assert!(len > 0 && len <= MAX_SPAN);
        let len = len.min(MAX_SPAN);
        self.0.spans.lock().unwrap().push_back(Span {
            _source: source,
            fd,
            offset,
            len,
            sent: 0,
        });
        Bytes::from_static(&placeholder()[..len])
    }

    /// Ready once every span queued so far has been sent: the kernel has read those bytes of
    /// the file. (hyper keeps flushing while the body waits, which sends them and wakes it.)
    pub fn poll_drained(&self, cx: &mut Context<'_>) -> Poll<()> {
        let spans = self.0.spans.lock().unwrap();
        if spans.is_empty() {
            return Poll::Ready(());
        }
        // Registered under the spans lock: the sender empties the queue under it, then wakes.
        *self.0.drained.lock().unwrap() = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// A TCP connection whose writes turn placeholders into `sendfile` calls.
pub struct SendfileStream {
    tcp: TcpStream,
    queue: Arc<SendQueue>,
}

impl SendfileStream {
    pub fn new(tcp: TcpStream) -> SendfileStream {
        SendfileStream {
            tcp,
            queue: Arc::default(),
        }
    }

    /// The sink to serve this connection with (see [`scope`]).
    pub fn sink(&self) -> Sink {
        Sink(self.queue.clone())
    }

    /// Run a non-blocking socket call once the socket is writable.
    fn poll_io<R>(
        &self,
        cx: &mut Context<'_>,
        mut call: impl FnMut() -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        loop {
            ready!(self.tcp.poll_write_ready(cx))?;
            match self.tcp.try_io(Interest::WRITABLE, &mut call) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                result => return Poll::Ready(result),
            }
        }
    }

    /// Send the file bytes that the placeholder slice `buf` (at `at` in the region) stands for.
    fn poll_send_span(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        at: usize,
    ) -> Poll<io::Result<usize>> {
        let mut spans = self.queue.spans.lock().unwrap();
        let Some(span) = spans.front_mut() else {
            return Poll::Ready(Err(mismatch("no file range is queued")));
        };
        // hyper advances through a placeholder as it is written: the slice must start where
        // the front span stands and cover exactly what is left of it.
        if at != span.sent || buf.len() != span.len - span.sent {
            return Poll::Ready(Err(mismatch("placeholder does not match the queued range")));
        }
        let sock = self.tcp.as_raw_fd();
        let (fd, start) = (span.fd, span.offset + span.sent as u64);
        let n = ready!(self.poll_io(cx, || {
            let mut off = libc::off_t::try_from(start).map_err(io::Error::other)?;
            // SAFETY: both descriptors are open (the span holds the file), `off` is ours.
            let n = unsafe { libc::sendfile(sock, fd, &mut off, buf.len()) };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        }))?;
        if n == 0 {
            // The file ended before the range did: it shrank after the response started.
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file is shorter than when the response started",
            )));
        }
        span.sent += n;
        METRICS.sendfile_bytes(n as u64);
        if span.sent == span.len {
            spans.pop_front();
            if spans.is_empty() {
                if let Some(waker) = self.queue.drained.lock().unwrap().take() {
                    waker.wake();
                }
            }
        }
        Poll::Ready(Ok(n))
    }
}

fn mismatch(what: &str) -> io::Error {
    tracing::error!("sendfile: {what}; aborting the connection");
    io::Error::other(format!("sendfile: {what}"))
}

impl AsyncRead for SendfileStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for SendfileStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match placeholder_offset(buf) {
            Some(at) => self.poll_send_span(cx, buf, at),
            None => Pin::new(&mut self.tcp).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match bufs.iter().position(|b| placeholder_offset(b).is_some()) {
            None => Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs),
            Some(0) => {
                let at = placeholder_offset(&bufs[0]).unwrap_or_default();
                self.poll_send_span(cx, &bufs[0], at)
            }
            // What comes before the placeholder first (a response head, multipart framing).
            Some(k) => Pin::new(&mut self.tcp).poll_write_vectored(cx, &bufs[..k]),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_recognised_by_address_only() {
        let p = &placeholder()[10..20];
        assert_eq!(placeholder_offset(p), Some(10));
        assert_eq!(placeholder_offset(&[0u8; 10]), None);
        assert_eq!(placeholder_offset(&placeholder()[5..5]), None);
    }
}
