//! The hand-off behind zero-copy file bodies (plain-TCP HTTP/1.x connections, `sendfile(2)`):
//! the engine queues file spans on the connection's [`Sink`]; the transport's socket wrapper
//! (`transport::sendfile`) sends them. Nothing here knows HTTP or sockets.
//!
//! hyper writes a response by handing its queue of buffers to the connection's I/O object in one
//! `poll_write_vectored` call. A body that wants bytes of a file sent without copying them through
//! user space yields a *placeholder*: a slice of `placeholder()`, a zeroed region that is never
//! read, whose length is the number of file bytes it stands for, after recording the file, offset
//! and length in the connection's [`SendQueue`]. The connection's I/O object (`transport::sendfile::SendfileStream`)
//! recognises placeholder slices by address when hyper writes them and sends the recorded file
//! range with `sendfile` instead; ordinary slices before a placeholder (a response head,
//! multipart framing) are written first, as they are. (Holding the head back with `MSG_MORE` so
//! it shares a packet with the file bytes cost CPU instead of saving it; bench/README.md.)
//!
//! This only holds while hyper passes body buffers through untouched: HTTP/1.x with a
//! Content-Length (every file response here) and the `writev` ("queue") write strategy, which
//! `server` forces. HTTP/2 and TLS connections get no [`Sink`], so their bodies never yield
//! placeholders. Any mismatch between a placeholder and the queue fails the write, which aborts
//! the connection: a client can get a cut response, never wrong bytes.

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{ready, Context, Poll, Waker};

use bytes::Bytes;

use crate::ops::metrics::METRICS;

/// The most file bytes one placeholder stands for.
pub const MAX_SPAN: usize = 1 << 20;

/// The placeholder region: zeros that are never written or read, so the kernel never backs
/// them with memory (they cost address space, not RSS). A mapping of its own, because a zeroed
/// heap block is only free when it is fresh from the kernel: made from memory the allocator
/// had used before (the hashing buffers freed at start-up), it was zeroed by hand, 1 MiB of
/// the idle server's RSS.
fn placeholder() -> &'static [u8] {
    static REGION: OnceLock<&'static [u8]> = OnceLock::new();
    REGION.get_or_init(|| {
        // SAFETY: a new private, anonymous, read-only mapping that nothing else refers to and
        // that is never unmapped, so a `'static` slice of it stays valid; its pages read as
        // zeros.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                MAX_SPAN,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return vec![0u8; MAX_SPAN].leak();
        }
        // SAFETY: `p` is the start of MAX_SPAN readable bytes, valid for the whole program.
        unsafe { std::slice::from_raw_parts(p.cast::<u8>(), MAX_SPAN) }
    })
}

/// Where in the placeholder region `buf` starts, if it lies inside it.
pub fn placeholder_offset(buf: &[u8]) -> Option<usize> {
    let region = placeholder();
    let base = region.as_ptr() as usize;
    let start = buf.as_ptr() as usize;
    (!buf.is_empty() && start >= base && start + buf.len() <= base + region.len())
        .then(|| start - base)
}

/// `splice(2)` of up to `len` bytes from `from` to `to` (one of them a pipe), never blocking:
/// the bytes moved, or the error ("would block" included).
pub fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: a plain system call with no offsets, on descriptors the caller keeps open.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// How a span's bytes are sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// They are in a file, at the span's offset.
    Sendfile,
    /// They are next in a pipe (the offset means nothing).
    Splice,
}

/// One file range (or run of bytes in a pipe) waiting to be sent.
struct Span {
    /// Keeps the descriptor open until the bytes are sent.
    _keep: Arc<dyn Send + Sync>,
    fd: RawFd,
    via: Via,
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

impl SendQueue {
    /// A new, empty queue for one connection, and the sink its bodies queue spans on.
    pub fn pair() -> (Arc<SendQueue>, Sink) {
        let q = Arc::new(SendQueue::default());
        (q.clone(), Sink(q))
    }

    /// Send the file bytes that the placeholder slice `buf` (at `at` in the region) stands
    /// for, with `send(from, fd, offset, len)` (a `sendfile` or a `splice` once the socket is
    /// writable). The slice
    /// must start where the front span stands and cover exactly what is left of it (hyper
    /// advances through a placeholder as it writes it); anything else is an error that aborts
    /// the connection.
    pub fn poll_send(
        &self,
        buf: &[u8],
        at: usize,
        send: impl FnOnce(Via, RawFd, u64, usize) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        let mut spans = self.spans.lock().unwrap();
        let Some(span) = spans.front_mut() else {
            return Poll::Ready(Err(mismatch("no file range is queued")));
        };
        if at != span.sent || buf.len() != span.len - span.sent {
            return Poll::Ready(Err(mismatch("placeholder does not match the queued range")));
        }
        let n = ready!(send(
            span.via,
            span.fd,
            span.offset + span.sent as u64,
            buf.len()
        ))?;
        if n == 0 {
            // The file ended before the range did: it shrank after the response started (a
            // pipe holds what was moved into it, so never for a pipe).
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file is shorter than when the response started",
            )));
        }
        span.sent += n;
        match span.via {
            Via::Sendfile => METRICS.sendfile_bytes(n as u64),
            Via::Splice => METRICS.splice_bytes(n as u64),
        }
        if span.sent == span.len {
            spans.pop_front();
            if spans.is_empty() {
                if let Some(waker) = self.drained.lock().unwrap().take() {
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

tokio::task_local! {
    /// Set for the task that serves one plain-TCP connection: hyper polls the handler and the
    /// body inside it. An h2c connection's streams run there too, so the engine asks for the
    /// sink only for HTTP/1.x requests.
    static SINK: Sink;
}

/// The sink of the connection being served by this task, if it has one.
pub fn current() -> Option<Sink> {
    SINK.try_with(Sink::clone).ok()
}

/// Serve a connection (`conn`) with `sink` as its sink.
/// (Not an `async fn`, for the reason given at `ops::with_peer`.)
pub fn scope<F: std::future::Future>(
    sink: Sink,
    conn: F,
) -> impl std::future::Future<Output = F::Output> {
    SINK.scope(sink, conn)
}

impl Sink {
    /// A placeholder for `len` bytes (at most [`MAX_SPAN`]) of the file open as `fd` at
    /// `offset`; `keep` holds the descriptor open until they are sent.
    pub fn placeholder(
        &self,
        keep: Arc<dyn Send + Sync>,
        fd: RawFd,
        offset: u64,
        len: usize,
    ) -> Bytes {
        self.queue(keep, fd, Via::Sendfile, offset, len)
    }

    /// A placeholder for the next `len` bytes (at most [`MAX_SPAN`]) in the pipe whose read
    /// end is `fd`; `keep` holds it open until they are sent.
    pub fn pipe_placeholder(&self, keep: Arc<dyn Send + Sync>, fd: RawFd, len: usize) -> Bytes {
        self.queue(keep, fd, Via::Splice, 0, len)
    }

    fn queue(
        &self,
        keep: Arc<dyn Send + Sync>,
        fd: RawFd,
        via: Via,
        offset: u64,
        len: usize,
    ) -> Bytes {
        debug_assert!(len > 0 && len <= MAX_SPAN);
        let len = len.min(MAX_SPAN);
        self.0.spans.lock().unwrap().push_back(Span {
            _keep: keep,
            fd,
            via,
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

    /// A connection's future of 4 KiB stays about 4 KiB inside the scope (as an `async fn`,
    /// `scope` held it twice).
    #[test]
    fn the_scope_holds_the_connection_once() {
        let conn = async {
            let buf = [7u8; 4096];
            std::future::ready(()).await;
            buf.iter().map(|&b| b as usize).sum::<usize>()
        };
        let alone = std::mem::size_of_val(&conn);
        let (_queue, sink) = SendQueue::pair();
        let scoped = scope(sink, conn);
        assert!(alone >= 4096);
        assert!(std::mem::size_of_val(&scoped) < alone + 256, "{alone}");
    }
}
