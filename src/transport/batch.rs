//! HTTP/2 responses that are ready together go out together.
//!
//! hyper's HTTP/2 server hands each stream (an `H2Stream`: the handler's future, then the
//! piping of its body) to the connection's executor, and the h2 crate writes what the streams
//! queued whenever the connection's task runs. Two things made that one `writev` per response
//! (bench/README.md, T3; issue 18):
//!
//! - With `TokioExecutor` each stream is a tokio task of its own. A stream that queues its
//!   response wakes the connection's task, which runs next (tokio's LIFO slot) and writes that
//!   one response before the next stream has run.
//! - Even with every response queued, h2's encoder keeps a DATA frame of 256 bytes or more as a
//!   separate buffer (it is written without a copy, by `writev`), and holds only one such frame
//!   at a time: it must write out before it takes the next. So a 1 KiB response is a `writev`
//!   of its own, however many are waiting.
//!
//! Here, on the connection's own task (it is HTTP/2 once a stream is spawned; HTTP/1 is left
//! as it was):
//!
//! - [`ConnExec`] is the executor: a stream spawned while [`serve`] polls its connection joins
//!   that connection's set of streams instead of becoming a task. [`serve`] polls the streams
//!   that are ready, then the connection, and again while the connection spawned new streams.
//!   A stream that waits (a cold read on the blocking pool, a client's flow control) is polled
//!   again only when it is woken, so it does not hold up the others; a large body is still
//!   bounded by h2's send buffer (`MAX_BUF` a stream) and the flow-control windows.
//! - [`BatchIo`], the connection's I/O as hyper sees it, holds small writes while the
//!   connection is polled "corked": h2's flushes in the middle of a pass only move bytes into
//!   its buffer (at most [`HOLD`]: more is written at once). After the pass [`serve`] polls
//!   the connection once more uncorked, and its flush writes everything that pass produced in
//!   one call (over TLS, in one run of records).
//!
//! Writes of [`BIG`] or more (the frames of a large body) are not copied: what is held goes out
//! in front of them in the same `writev`.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most [`BatchIo`] holds before it writes: about 15 responses of 1 KiB with their frame
/// heads, or a few small ones in front of a full-size DATA frame.
pub const HOLD: usize = 32 * 1024;

/// A write of this many bytes or more is not copied into the held bytes (see the module docs).
pub const BIG: usize = 8 * 1024;

/// Passes of one poll of [`serve`] in which the connection spawned new streams, before it
/// lets other tasks run (a client that keeps sending requests must not keep the thread).
const MAX_ROUNDS: usize = 8;

type Stream = Pin<Box<dyn Future<Output = ()> + Send>>;

thread_local! {
    /// While [`serve`] polls a connection: where the streams it spawns go.
    static SPAWNED: RefCell<Option<Vec<Stream>>> = const { RefCell::new(None) };
}

/// The executor hyper is given. Inside [`serve`]'s poll of a connection (HTTP/2 streams), the
/// future joins that connection's set; anywhere else, it is spawned as a tokio task.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnExec;

impl<F> hyper::rt::Executor<F> for ConnExec
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, fut: F) {
        SPAWNED.with(move |spawned| match &mut *spawned.borrow_mut() {
            // A panic in one stream ends that stream only, as it would as a task of its own.
            Some(streams) => {
                streams.push(Box::pin(AssertUnwindSafe(fut).catch_unwind().map(|r| {
                    if r.is_err() {
                        tracing::error!("an HTTP/2 stream panicked");
                    }
                })))
            }
            None => {
                tokio::spawn(fut);
            }
        });
    }
}

/// Run `f` with the streams spawned meanwhile pushed onto `spawned`.
fn spawning<R>(spawned: &mut Vec<Stream>, f: impl FnOnce() -> R) -> R {
    struct Restore<'a>(&'a mut Vec<Stream>);
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            if let Some(v) = SPAWNED.with(|s| s.borrow_mut().take()) {
                *self.0 = v;
            }
        }
    }
    SPAWNED.with(|s| {
        let mut s = s.borrow_mut();
        debug_assert!(s.is_none(), "connections are not polled inside one another");
        *s = Some(std::mem::take(spawned));
    });
    let restore = Restore(spawned);
    let r = f();
    drop(restore);
    r
}

/// What a connection's [`BatchIo`] and its [`serve`] share.
#[derive(Default)]
pub struct Cork {
    /// Flushes leave small writes held (set by `serve` while it polls the connection).
    corked: AtomicBool,
    /// Bytes are held.
    held: AtomicBool,
}

/// Serve `conn` (hyper's connection future, whose I/O is a [`BatchIo`] sharing `cork` and whose
/// executor is [`ConnExec`]) with its HTTP/2 streams on this task; return when it has ended and
/// the streams it left have finished.
pub async fn serve<C: Future>(conn: C, cork: &Cork) -> C::Output {
    let mut streams = FuturesUnordered::new();
    let mut spawned = Vec::new();
    let mut h2 = false;
    let out = {
        let mut conn = std::pin::pin!(conn);
        poll_fn(|cx| pass(cx, conn.as_mut(), &mut streams, &mut spawned, &mut h2, cork)).await
    };
    // The connection is gone; streams still here get its end as an error and finish.
    streams.extend(spawned);
    while streams.next().await.is_some() {}
    out
}

/// One poll of [`serve`]: the ready streams, then the connection (corked, once it is HTTP/2),
/// again while it spawns streams; then once more uncorked to write what it holds.
fn pass<C: Future>(
    cx: &mut Context<'_>,
    mut conn: Pin<&mut C>,
    streams: &mut FuturesUnordered<Stream>,
    spawned: &mut Vec<Stream>,
    h2: &mut bool,
    cork: &Cork,
) -> Poll<C::Output> {
    let mut rounds = 0;
    loop {
        if !spawned.is_empty() {
            // HTTP/2 (HTTP/1 spawns nothing): from now on its writes are held while corked.
            *h2 = true;
            streams.extend(spawned.drain(..));
        }
        while let Poll::Ready(Some(())) = streams.poll_next_unpin(cx) {}
        cork.corked.store(*h2, Ordering::Relaxed);
        let polled = spawning(spawned, || conn.as_mut().poll(cx));
        cork.corked.store(false, Ordering::Relaxed);
        if polled.is_ready() {
            return polled;
        }
        if spawned.is_empty() && cork.held.load(Ordering::Relaxed) {
            // Write what the pass produced (the flush at the end of h2's poll).
            let polled = spawning(spawned, || conn.as_mut().poll(cx));
            if polled.is_ready() {
                return polled;
            }
        }
        if spawned.is_empty() {
            return Poll::Pending;
        }
        rounds += 1;
        if rounds == MAX_ROUNDS {
            // The new streams are polled on the next poll; what is held is written then too.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
    }
}

/// A connection's I/O that holds small writes while its connection is corked (module docs).
/// Reads and everything else go straight through.
pub struct BatchIo<IO> {
    io: IO,
    cork: Arc<Cork>,
    /// Held bytes; those before `at` are written. Allocated while it holds bytes.
    buf: Vec<u8>,
    at: usize,
}

impl<IO> BatchIo<IO> {
    pub fn new(io: IO) -> BatchIo<IO> {
        BatchIo {
            io,
            cork: Arc::default(),
            buf: Vec::new(),
            at: 0,
        }
    }

    /// What [`serve`] needs to cork this I/O.
    pub fn cork(&self) -> Arc<Cork> {
        self.cork.clone()
    }

    fn held(&self) -> usize {
        self.buf.len() - self.at
    }

    fn hold(&mut self, bufs: &[IoSlice<'_>]) {
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(HOLD);
        }
        for b in bufs {
            self.buf.extend_from_slice(b);
        }
        self.cork.held.store(true, Ordering::Relaxed);
    }

    /// `n` of the held bytes were written.
    fn wrote(&mut self, n: usize) {
        self.at += n;
        if self.at == self.buf.len() {
            // Nothing held: give the buffer back (an idle connection keeps none).
            self.buf = Vec::new();
            self.at = 0;
            self.cork.held.store(false, Ordering::Relaxed);
        }
    }
}

impl<IO: AsyncWrite + Unpin> BatchIo<IO> {
    /// Write out everything held.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.held() > 0 {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.buf[self.at..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.wrote(n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for BatchIo<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for BatchIo<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        if len == 0 {
            return Poll::Ready(Ok(0));
        }
        loop {
            let held = this.held();
            if held == 0 && !this.cork.corked.load(Ordering::Relaxed) {
                return Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
            }
            if len < BIG && held + len <= HOLD && this.cork.corked.load(Ordering::Relaxed) {
                this.hold(bufs);
                return Poll::Ready(Ok(len));
            }
            if held == 0 {
                return Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
            }
            // What is held goes first, with as much of this write as the call takes.
            let mut slices = Vec::with_capacity(bufs.len() + 1);
            slices.push(IoSlice::new(&this.buf[this.at..]));
            slices.extend_from_slice(bufs);
            let n = ready!(Pin::new(&mut this.io).poll_write_vectored(cx, &slices))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            this.wrote(n.min(held));
            if n > held {
                return Poll::Ready(Ok(n - held));
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.cork.corked.load(Ordering::Relaxed) {
            // `serve` polls the connection again, uncorked, before it returns.
            return Poll::Ready(Ok(()));
        }
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records each write call; takes at most `limit` bytes a call.
    #[derive(Default)]
    struct Calls {
        writes: Vec<Vec<u8>>,
        limit: Option<usize>,
    }

    impl AsyncWrite for Calls {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = self.limit.unwrap_or(usize::MAX).min(buf.len());
            self.writes.push(buf[..n].to_vec());
            Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let mut all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            all.truncate(self.limit.unwrap_or(usize::MAX));
            let n = all.len();
            self.writes.push(all);
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn poll<T>(f: impl FnOnce(&mut Context<'_>) -> Poll<T>) -> T {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match f(&mut cx) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("pending"),
        }
    }

    fn write(io: &mut BatchIo<Calls>, parts: &[&[u8]]) -> usize {
        let slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
        poll(|cx| Pin::new(&mut *io).poll_write_vectored(cx, &slices)).unwrap()
    }

    fn flush(io: &mut BatchIo<Calls>) {
        poll(|cx| Pin::new(&mut *io).poll_flush(cx)).unwrap();
    }

    fn corked(io: &BatchIo<Calls>, on: bool) {
        io.cork.corked.store(on, Ordering::Relaxed);
    }

    #[test]
    fn uncorked_writes_go_straight_through() {
        let mut io = BatchIo::new(Calls::default());
        assert_eq!(write(&mut io, &[b"ab", b"c"]), 3);
        flush(&mut io);
        assert_eq!(write(&mut io, &[b"d"]), 1);
        assert_eq!(io.io.writes, [b"abc".to_vec(), b"d".to_vec()]);
        assert!(!io.cork.held.load(Ordering::Relaxed));
    }

    #[test]
    fn corked_small_writes_and_flushes_are_held_until_an_uncorked_flush() {
        let mut io = BatchIo::new(Calls::default());
        corked(&io, true);
        assert_eq!(write(&mut io, &[b""]), 0);
        assert!(!io.cork.held.load(Ordering::Relaxed));
        for i in 0..10u8 {
            assert_eq!(write(&mut io, &[&[i; 9], &[i; 1024]]), 1033);
            flush(&mut io);
        }
        assert!(io.io.writes.is_empty());
        assert!(io.cork.held.load(Ordering::Relaxed));
        corked(&io, false);
        flush(&mut io);
        assert_eq!(io.io.writes.len(), 1);
        let want: Vec<u8> = (0..10u8)
            .flat_map(|i| [vec![i; 9], vec![i; 1024]].concat())
            .collect();
        assert_eq!(io.io.writes[0], want);
        assert!(!io.cork.held.load(Ordering::Relaxed));
        assert_eq!(io.buf.capacity(), 0, "an empty hold keeps no buffer");
    }

    #[test]
    fn past_the_hold_or_big_the_held_bytes_go_first_in_the_same_write() {
        let mut io = BatchIo::new(Calls::default());
        corked(&io, true);
        // Up to HOLD is held; the write that would pass it goes out with what is held.
        let piece = vec![7u8; BIG - 1];
        let mut held = 0;
        while held + piece.len() <= HOLD {
            write(&mut io, &[&piece]);
            held += piece.len();
        }
        assert!(io.io.writes.is_empty());
        assert_eq!(write(&mut io, &[&piece]), piece.len());
        assert_eq!(io.io.writes.len(), 1);
        assert_eq!(io.io.writes[0].len(), held + piece.len());
        // A big write is not copied: with something held, both go out together.
        write(&mut io, &[b"head"]);
        let big = vec![9u8; BIG];
        assert_eq!(write(&mut io, &[b"frame", &big]), 5 + BIG);
        assert_eq!(io.io.writes.len(), 2);
        assert_eq!(io.io.writes[1], [&b"headframe"[..], &big].concat());
        // And alone, it goes straight through.
        assert_eq!(write(&mut io, &[&big]), BIG);
        assert_eq!(io.io.writes.len(), 3);
        assert!(!io.cork.held.load(Ordering::Relaxed));
    }

    #[test]
    fn short_writes_keep_the_order_of_the_bytes() {
        let mut io = BatchIo::new(Calls {
            limit: Some(1000),
            ..Calls::default()
        });
        corked(&io, true);
        let mut want = Vec::new();
        for i in 0..40u32 {
            let part = pattern(i);
            let mut sent = 0;
            while sent < part.len() {
                sent += write(&mut io, &[&part[sent..]]);
            }
            want.extend_from_slice(&part);
            if i % 7 == 0 {
                flush(&mut io);
            }
        }
        let big: Vec<u8> = (0..3 * BIG).map(|k| (k % 251) as u8).collect();
        let mut sent = 0;
        while sent < big.len() {
            sent += write(&mut io, &[&big[sent..]]);
        }
        want.extend_from_slice(&big);
        corked(&io, false);
        flush(&mut io);
        assert_eq!(io.io.writes.concat(), want);
        assert!(io.io.writes.iter().all(|w| w.len() <= 1000));
    }

    fn pattern(i: u32) -> Vec<u8> {
        (0..(i * 97 % 3000)).map(|k| (k * 31 + i) as u8).collect()
    }
}
