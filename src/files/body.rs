//! The streaming body of a file response: the planned pieces (runs of the source, multipart
//! framing) read a chunk at a time, from memory when the bytes are there, through the source's
//! own read otherwise, or handed to `sendfile`; and the check, before the last bytes go out,
//! that the source is still the version the headers describe.

use std::collections::VecDeque;
use std::io;
use std::mem::MaybeUninit;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};

use crate::files::storage::{Piped, PipedFuture, ReadFuture, Source};
use crate::fs::file::ended_early;
use crate::fs::sendfile::{self, Sink};
use crate::http::range::ByteRange;
use crate::ops::metrics::METRICS;

/// The most bytes one read brings into memory; a streaming response holds one such chunk at a
/// time (plus what the connection queues), whatever the file size.
pub const CHUNK: usize = 256 * 1024;

/// The least: below this the per-read overhead dominates.
pub const MIN_CHUNK: usize = 16 * 1024;

/// Read buffers of all streaming responses together aim to stay within this: with few
/// downloads each gets full chunks; with many, chunks shrink (down to MIN_CHUNK) so that memory
/// stays flat as concurrency grows.
pub const READ_BUDGET: usize = 4 << 20;

/// Bodies up to this size are read before the response starts, when they are in memory, so the
/// head and body leave in one write.
pub const INLINE_MAX: u64 = 128 * 1024;

/// Runs of a file at least this long go out with `sendfile` when the connection allows it
/// (see `sendfile`); shorter ones are cheaper to copy along with the head.
pub const SENDFILE_MIN: u64 = 16 * 1024;

/// How much of the end of a response is copied rather than sent by sendfile (see `placeholder`).
const TAIL: u64 = 4096;

/// The widest gap between two ranges of a response that a streaming source reads through
/// rather than asking again (about what a second request costs in transfer time).
pub const COALESCE_GAP: u64 = 256 * 1024;

/// Streaming bodies alive now.
static STREAMING: AtomicUsize = AtomicUsize::new(0);

/// The chunk size for the next read, given how many responses are streaming.
fn chunk_size() -> u64 {
    let active = STREAMING.load(Ordering::Relaxed).max(1);
    (READ_BUDGET / active).clamp(MIN_CHUNK, CHUNK) as u64
}

/// Whose response a body is: named in the log when it has to be aborted.
#[derive(Clone, Copy, Default)]
pub struct Origin<'a> {
    /// The request's path.
    pub path: &'a str,
    /// The request's extensions: a client named by a trusted proxy (`ops::ClientAddr`) is
    /// there (looked up only when a body streams); otherwise the connection's peer is.
    pub extensions: Option<&'a http::Extensions>,
}

impl Origin<'_> {
    fn forwarded_client(&self) -> Option<IpAddr> {
        self.extensions?
            .get::<crate::ops::ClientAddr>()
            .map(|c| c.0)
    }
}

/// A piece of a response body: literal bytes (multipart framing) or a run of the source.
pub enum Piece {
    Literal(Bytes),
    Range(ByteRange),
}

impl Piece {
    fn len(&self) -> u64 {
        match self {
            Piece::Literal(b) => b.len() as u64,
            Piece::Range(r) => r.len(),
        }
    }
}

/// Where the run of ranges that starts with the first range of `pieces` ends (see
/// `Streamed::run_end`).
fn run_end<'a>(pieces: impl IntoIterator<Item = &'a Piece>) -> u64 {
    let mut end = 0;
    for piece in pieces {
        if let Piece::Range(r) = piece {
            if end != 0 && (r.start < end || r.start - end > COALESCE_GAP) {
                break;
            }
            end = r.end;
        }
    }
    end
}

/// The first run of the source a body of these pieces reads: the start of its first range and
/// where the run of ranges read through with it ends (what its first read passes as `until`).
pub fn first_run(pieces: &[Piece]) -> Option<(u64, u64)> {
    let from = pieces.iter().position(|p| matches!(p, Piece::Range(_)))?;
    let Piece::Range(first) = &pieces[from] else {
        unreachable!()
    };
    Some((first.start, run_end(&pieces[from..])))
}

/// The body made of these pieces. A read error or a source that ends early fails the body,
/// which makes hyper abort the connection: a client never takes a short body for a whole one.
/// With a `sink` (plain HTTP/1.x), long runs of a file are sent with `sendfile`.
pub fn body(
    source: Arc<dyn Source>,
    pieces: Vec<Piece>,
    sink: Option<Sink>,
    origin: &Origin<'_>,
) -> Body {
    let total: u64 = pieces.iter().map(Piece::len).sum();
    let pipes = pipes(&*source, total);
    let sink = sink.filter(|_| {
        (source.raw_fd().is_some() || pipes)
            && pieces
                .iter()
                .any(|p| matches!(p, Piece::Range(r) if r.len() >= SENDFILE_MIN))
    });
    let nowait = source.reads_nowait();
    let piped = sink.is_some() && pipes;
    if total <= INLINE_MAX && sink.is_none() && nowait {
        if let Some(whole) = read_all_nowait(&*source, &pieces, total) {
            // Changed since the response was decided: the streaming path meets the same check
            // at its end and aborts the connection (and logs it).
            if matches!(source.unchanged(), Ok(true)) {
                METRICS.body_bytes(total);
                return Body::from(whole);
            }
        }
    }
    STREAMING.fetch_add(1, Ordering::Relaxed);
    METRICS.streaming_started();
    Body::new(Streamed {
        source,
        pieces: VecDeque::from(pieces),
        nowait,
        piped,
        inflight: None,
        remaining: total,
        sink,
        last: None,
        origin: Box::new((origin.path.to_owned(), origin.forwarded_client())),
    })
}

/// Whether a body of `total` bytes of `source` reads through the source's pipe
/// (`Source::read_piped`) on a connection with a sink. Not a body `read_ahead` takes whole:
/// its frames are kept, not written as they come.
pub fn pipes(source: &dyn Source, total: u64) -> bool {
    source.pipes() && total > INLINE_MAX
}

/// `resp` with its body read now when it is at most [`INLINE_MAX`] bytes: its pieces are then
/// all at hand when the response goes out, so its head and body leave in one write. For a
/// source whose reads wait (an object store), once its first read is open. A read that fails
/// here fails before anything is sent: the error, for another answer.
pub async fn read_ahead(resp: Response<Body>) -> io::Result<Response<Body>> {
    match http_body::Body::size_hint(resp.body()).exact() {
        Some(n) if n > 0 && n <= INLINE_MAX => {}
        _ => return Ok(resp),
    }
    let (parts, mut body) = resp.into_parts();
    let mut frames = VecDeque::new();
    let mut len = 0;
    let mut next = |cx: &mut Context<'_>| {
        let _ahead = ReadingAhead::set();
        http_body::Body::poll_frame(Pin::new(&mut body), cx)
    };
    while let Some(frame) = std::future::poll_fn(&mut next).await {
        let frame = frame.map_err(|e| match e.into_inner().downcast::<io::Error>() {
            Ok(e) => *e,
            Err(e) => io::Error::other(e),
        })?;
        if let Ok(data) = frame.into_data() {
            len += data.len() as u64;
            frames.push_back(data);
        }
    }
    Ok(Response::from_parts(
        parts,
        Body::new(Frames { frames, len }),
    ))
}

thread_local! {
    /// Set while `read_ahead` polls a body: a read that fails then aborts nothing.
    static READING_AHEAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// [`READING_AHEAD`] set until it is dropped (a panicking poll included).
struct ReadingAhead;

impl ReadingAhead {
    fn set() -> ReadingAhead {
        READING_AHEAD.set(true);
        ReadingAhead
    }
}

impl Drop for ReadingAhead {
    fn drop(&mut self) {
        READING_AHEAD.set(false);
    }
}

/// A body whose frames are all read already.
struct Frames {
    frames: VecDeque<Bytes>,
    /// The bytes left.
    len: u64,
}

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let next = self.frames.pop_front();
        if let Some(b) = &next {
            self.len -= b.len() as u64;
        }
        Poll::Ready(next.map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.len == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len)
    }
}

/// All the pieces, if every byte is in memory now.
fn read_all_nowait(source: &dyn Source, pieces: &[Piece], total: u64) -> Option<Bytes> {
    let mut out = BytesMut::with_capacity(total as usize);
    for piece in pieces {
        match piece {
            Piece::Literal(b) => out.extend_from_slice(b),
            Piece::Range(r) => {
                let end = out.len() + r.len() as usize;
                while out.len() < end {
                    let offset = r.end - (end - out.len()) as u64;
                    let want = end - out.len();
                    match read_nowait_into(source, &mut out, want, offset) {
                        Some(Ok(n)) if n > 0 => {}
                        // Short, failed or would block: the streaming path reports or waits.
                        _ => return None,
                    }
                }
            }
        }
    }
    Some(out.freeze())
}

/// Append up to `want` bytes read at `offset` to `buf` (whose capacity must allow it), if they
/// are in memory now.
fn read_nowait_into(
    source: &dyn Source,
    buf: &mut BytesMut,
    want: usize,
    offset: u64,
) -> Option<io::Result<usize>> {
    let spare = &mut buf.spare_capacity_mut()[..want];
    let result = source.read_at_nowait(spare, offset);
    if let Some(Ok(n)) = result {
        // SAFETY: read_at_nowait initialized the first n bytes of the spare capacity.
        unsafe { buf.set_len(buf.len() + n.min(want)) };
    }
    result
}

/// A streaming body. Each chunk is read on the async worker when it is in memory (the page
/// cache), and with the source's own read (the blocking pool, for a file) when it is not.
struct Streamed {
    source: Arc<dyn Source>,
    pieces: VecDeque<Piece>,
    /// Whether the source may serve reads from memory (`Source::reads_nowait`).
    nowait: bool,
    /// Whether long runs are read through the source's pipe (`Source::read_piped`).
    piped: bool,
    /// The read under way, and how many bytes it asked for.
    inflight: Option<(Inflight, usize)>,
    remaining: u64,
    sink: Option<Sink>,
    /// The final frame, held until the file is known to be unchanged (see `release_last`).
    last: Option<Bytes>,
    /// The request's path and client, for the log line of an abort.
    origin: Box<(String, Option<IpAddr>)>,
}

/// A read under way.
enum Inflight {
    Read(ReadFuture),
    Piped(PipedFuture),
}

impl Streamed {
    fn fail(&mut self, e: io::Error) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let (path, client) = &*self.origin;
        if READING_AHEAD.get() {
            // Nothing was sent: `read_ahead`'s caller answers otherwise.
            tracing::debug!(path = %path, "reading a short body ahead failed: {e}");
            return self.failed(e);
        }
        // The connection's peer is known here: this body runs in its connection's task (HTTP/2
        // streams too: `transport::batch`).
        let client = client.or_else(|| crate::ops::peer().map(|p| p.ip()));
        match client {
            Some(client) => tracing::warn!(path = %path, %client, "aborting response body: {e}"),
            None => tracing::warn!(path = %path, "aborting response body: {e}"),
        }
        self.failed(e)
    }

    fn failed(&mut self, e: io::Error) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.pieces.clear();
        self.inflight = None;
        self.last = None;
        self.remaining = 0;
        Poll::Ready(Some(Err(e)))
    }

    /// Move the front range on by `n` bytes (handed out or being read).
    fn advance(&mut self, n: u64) {
        if let Some(Piece::Range(r)) = self.pieces.front_mut() {
            r.start += n;
            if r.is_empty() {
                self.pieces.pop_front();
            }
        }
    }

    /// Where the run of ranges that starts with the front one ends: the following ranges join
    /// it while each starts at most [`COALESCE_GAP`] bytes after the previous one ends (a
    /// multipart response's nearby parts), so a source that streams reads them in one request.
    fn run_end(&self) -> u64 {
        run_end(&self.pieces)
    }

    /// A `sendfile` placeholder for the front range (`len` bytes left at `start`), when the
    /// connection allows it, the run is long enough and its bytes are in the page cache
    /// (`sendfile` would otherwise block the worker on the disk; the read path brings them in).
    fn placeholder(&mut self, start: u64, len: u64) -> Option<Bytes> {
        let sink = self.sink.as_ref()?;
        if len < SENDFILE_MIN {
            return None;
        }
        let fd = self.source.raw_fd()?;
        let mut span = len.min(sendfile::MAX_SPAN as u64);
        if span == self.remaining {
            // The last bytes of the response are copied, never sent by sendfile: the check
            // that the file did not change must come after they were read (`release_last`).
            span -= TAIL;
            if span < SENDFILE_MIN {
                return None;
            }
        }
        let mut probe = [MaybeUninit::uninit()];
        if !matches!(
            self.source.read_at_nowait(&mut probe, start + span - 1),
            Some(Ok(1))
        ) {
            return None;
        }
        let p = sink.placeholder(self.source.clone(), fd, start, span as usize);
        self.advance(span);
        Some(p)
    }

    fn data(
        &mut self,
        cx: &mut Context<'_>,
        b: Bytes,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if b.len() as u64 == self.remaining {
            self.last = Some(b);
            return self.release_last(cx);
        }
        self.remaining -= b.len() as u64;
        METRICS.body_bytes(b.len() as u64);
        Poll::Ready(Some(Ok(Frame::data(b))))
    }
}

impl Streamed {
    /// Send the final frame only if every byte of the response came from the version of the
    /// file that its headers describe: once the file bytes already handed to sendfile are sent
    /// (read by the kernel), compare the file's identity with the one the response started
    /// with. A file rewritten in place or truncated mid-response aborts the connection, so the
    /// client never takes a mix of old and new bytes for the ETag it was given.
    fn release_last(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if let Some(sink) = &self.sink {
            std::task::ready!(sink.poll_drained(cx));
        }
        match self.source.unchanged() {
            Ok(true) => {
                let b = self.last.take().unwrap_or_default();
                self.remaining -= b.len() as u64;
                METRICS.body_bytes(b.len() as u64);
                Poll::Ready(Some(Ok(Frame::data(b))))
            }
            Ok(false) => self.fail(io::Error::other(
                "the file changed while it was being sent (its identity differs from the start)",
            )),
            Err(e) => self.fail(e),
        }
    }
}

impl Drop for Streamed {
    fn drop(&mut self) {
        STREAMING.fetch_sub(1, Ordering::Relaxed);
        METRICS.streaming_ended();
    }
}

impl http_body::Body for Streamed {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if self.last.is_some() {
            return self.release_last(cx);
        }
        if let Some((read, asked)) = &mut self.inflight {
            let asked = *asked;
            let result = match read {
                Inflight::Read(r) => std::task::ready!(r.as_mut().poll(cx)).map(Piped::Bytes),
                Inflight::Piped(r) => std::task::ready!(r.as_mut().poll(cx)),
            };
            self.inflight = None;
            // A source may hand on fewer bytes than asked for (never none): the next read goes
            // on from where they end.
            let got = match &result {
                Ok(Piped::Bytes(b)) => b.len(),
                Ok(Piped::Pipe { len, .. }) => *len,
                Err(_) => 0,
            };
            return match result {
                Err(e) => self.fail(e),
                Ok(_) if got == 0 => self.fail(ended_early()),
                Ok(_) if got > asked => self.fail(io::Error::other(format!(
                    "the source read {got} bytes where {asked} were asked for"
                ))),
                Ok(Piped::Bytes(bytes)) => {
                    self.advance(got as u64);
                    self.data(cx, bytes)
                }
                Ok(Piped::Pipe { keep, fd, len }) => {
                    let Some(sink) = &self.sink else {
                        return self.fail(io::Error::other("piped bytes without a sink"));
                    };
                    let p = sink.pipe_placeholder(keep, fd, len);
                    self.advance(len as u64);
                    self.data(cx, p)
                }
            };
        }
        let (start, len, until) = match self.pieces.front() {
            None => return Poll::Ready(None),
            Some(Piece::Literal(_)) => {
                let Some(Piece::Literal(b)) = self.pieces.pop_front() else {
                    unreachable!()
                };
                return self.data(cx, b);
            }
            Some(Piece::Range(r)) => {
                let (start, left, until) = (r.start, r.len(), self.run_end());
                if let Some(p) = self.placeholder(start, left) {
                    return self.data(cx, p);
                }
                // Through the pipe: never the response's last bytes (see `release_last`).
                let room = left
                    .min(self.remaining.saturating_sub(TAIL))
                    .min(sendfile::MAX_SPAN as u64);
                if self.piped && room >= SENDFILE_MIN {
                    if let Some(sink) = &self.sink {
                        // The pipe is empty once what was moved into it has been sent.
                        std::task::ready!(sink.poll_drained(cx));
                    }
                    let read = self.source.clone().read_piped(start, room as usize, until);
                    self.inflight = Some((Inflight::Piped(read), room as usize));
                    return self.poll_frame(cx);
                }
                (start, left.min(chunk_size()) as usize, until)
            }
        };
        if self.nowait {
            let mut buf = BytesMut::with_capacity(len);
            match read_nowait_into(&*self.source, &mut buf, len, start) {
                Some(Ok(0)) => return self.fail(ended_early()),
                Some(Ok(n)) => {
                    self.advance(n as u64);
                    return self.data(cx, buf.freeze());
                }
                Some(Err(e)) => return self.fail(e),
                None => {}
            }
        }
        self.inflight = Some((
            Inflight::Read(self.source.clone().read(start, len, until)),
            len,
        ));
        // Poll the read once so that its completion wakes us.
        self.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source that streams: every read hands on at most `piece` bytes, never from memory.
    struct Chunky {
        bytes: Vec<u8>,
        piece: usize,
        /// Reads return this many bytes more than asked for (a broken source).
        extra: usize,
    }

    impl Source for Chunky {
        fn read(self: Arc<Self>, offset: u64, len: usize, _until: u64) -> ReadFuture {
            let start = offset as usize;
            let end = (start + len.min(self.piece) + self.extra).min(self.bytes.len());
            let got = Bytes::copy_from_slice(&self.bytes[start..end]);
            Box::pin(std::future::ready(Ok(got)))
        }
    }

    fn source(n: usize, piece: usize, extra: usize) -> Arc<dyn Source> {
        Arc::new(Chunky {
            bytes: (0..n).map(|i| (i * 7 % 251) as u8).collect(),
            piece,
            extra,
        })
    }

    fn range(start: u64, end: u64) -> Piece {
        Piece::Range(ByteRange { start, end })
    }

    /// Every frame of `body`, or its error.
    async fn collect(mut body: Body) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        while let Some(frame) =
            std::future::poll_fn(|cx| http_body::Body::poll_frame(Pin::new(&mut body), cx)).await
        {
            match frame {
                Ok(f) => out.extend_from_slice(f.data_ref().unwrap()),
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(out)
    }

    #[tokio::test]
    async fn short_reads_of_a_streaming_source_make_the_exact_body() {
        let src = source(1000, 7, 0);
        let pieces = vec![
            Piece::Literal(Bytes::from_static(b"<head>")),
            range(3, 50),
            Piece::Literal(Bytes::from_static(b"<mid>")),
            range(600, 1000),
        ];
        let bytes: Vec<u8> = (0..1000).map(|i| (i * 7 % 251) as u8).collect();
        let mut want = b"<head>".to_vec();
        want.extend_from_slice(&bytes[3..50]);
        want.extend_from_slice(b"<mid>");
        want.extend_from_slice(&bytes[600..1000]);
        // 550 bytes apart: one run, read through.
        assert_eq!(first_run(&pieces), Some((3, 1000)));
        let body = body(src, pieces, None, &Origin::default());
        assert_eq!(collect(body).await.unwrap(), want);
    }

    #[tokio::test]
    async fn a_source_that_reads_more_than_asked_fails_the_body() {
        let body = body(
            source(1000, 100, 3),
            vec![range(0, 20)],
            None,
            &Origin::default(),
        );
        let e = collect(body).await.unwrap_err();
        assert!(e.contains("were asked for"), "{e}");
    }

    #[tokio::test]
    async fn a_short_body_read_ahead_is_all_ready_and_exact() {
        let bytes: Vec<u8> = (0..1000).map(|i| (i * 7 % 251) as u8).collect();
        let body = body(
            source(1000, 64, 0),
            vec![range(100, 900)],
            None,
            &Origin::default(),
        );
        let resp = read_ahead(Response::new(body)).await.unwrap();
        let mut body = resp.into_body();
        let mut got = Vec::new();
        // Every frame is at hand at once: no read is left to wait for.
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        loop {
            match http_body::Body::poll_frame(Pin::new(&mut body), &mut cx) {
                Poll::Ready(Some(Ok(f))) => got.extend_from_slice(f.data_ref().unwrap()),
                Poll::Ready(None) => break,
                other => panic!("not ready at once: {:?}", other.is_pending()),
            }
        }
        assert_eq!(got, bytes[100..900]);
    }
}
