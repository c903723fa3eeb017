//! Representations: what the range and precondition engine serves, whatever the bytes come from.
//! A file on disk is one source; other sources (generated files) plug in through [`Source`].

use std::collections::VecDeque;

use foldhash::{HashMap, HashMapExt};
use std::fs::File;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http::HeaderValue;
use http_body::{Frame, SizeHint};

use crate::fs::digest::FileId;
use crate::http::header_rules::PathHeaders;
use crate::http::range::ByteRange;
use crate::metrics::METRICS;
use crate::sendfile::{self, Sink};

/// Positional reads of a representation's bytes. Called on the blocking pool.
pub trait Source: Send + Sync + 'static {
    /// Read up to `buf.len()` bytes at `offset`; 0 means the source ended early. May block.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;

    /// Like `read_at`, but only if it will not block (the bytes are in memory): `None` means
    /// "use `read_at` on the blocking pool". Sources whose reads never block read here.
    /// The buffer may be uninitialized: the bytes read are initialized, the rest untouched,
    /// which spares zeroing memory that is about to be overwritten.
    fn read_at_nowait(
        &self,
        buf: &mut [MaybeUninit<u8>],
        offset: u64,
    ) -> Option<io::Result<usize>> {
        let _ = (buf, offset);
        None
    }

    /// The open descriptor the bytes can be sent from with `sendfile`, if there is one.
    fn raw_fd(&self) -> Option<RawFd> {
        None
    }

    /// Whether the bytes are still the version the response describes (its ETag, length and
    /// Last-Modified). Checked after the last byte of a response was read and before it goes
    /// out; `false` aborts the response. Sources that never change need not override it.
    fn unchanged(&self) -> io::Result<bool> {
        Ok(true)
    }
}

/// A file as it was when its response was decided: the open file and its identity then.
pub struct FileVersion {
    pub file: Arc<File>,
    pub id: FileId,
    /// Its link count then: a name removed since (deleted, renamed over) changes the ctime too.
    pub links: u64,
}

impl Source for FileVersion {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        Source::read_at(&*self.file, buf, offset)
    }

    fn read_at_nowait(
        &self,
        buf: &mut [MaybeUninit<u8>],
        offset: u64,
    ) -> Option<io::Result<usize>> {
        self.file.read_at_nowait(buf, offset)
    }

    fn raw_fd(&self) -> Option<RawFd> {
        Some(self.file.as_raw_fd())
    }

    /// A write, truncation or `touch` changes the ctime (and usually mtime and size), which
    /// the identity includes. Removing a name (a delete, a rename over it) changes the ctime
    /// too but not the bytes: with fewer links than at the start, the ctime is not compared.
    /// (A write within the same clock tick as the previous change can escape the check on
    /// kernels with coarse timestamps.)
    fn unchanged(&self) -> io::Result<bool> {
        let meta = self.file.metadata()?;
        let now = FileId::of(&meta);
        Ok(now == self.id || (meta.nlink() < self.links && now.same_but_ctime(&self.id)))
    }
}

impl Source for File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        FileExt::read_at(self, buf, offset)
    }

    /// `preadv2(RWF_NOWAIT)`: served from the page cache, or EAGAIN at once. A page-cached read
    /// on the async worker costs microseconds; a hand-off to the blocking pool costs a context
    /// switch or two, which dominated the profile with many concurrent downloads.
    fn read_at_nowait(
        &self,
        buf: &mut [MaybeUninit<u8>],
        offset: u64,
    ) -> Option<io::Result<usize>> {
        let iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let offset = libc::off_t::try_from(offset).ok()?;
        // SAFETY: one iovec over `buf`, valid for writes of its length (the kernel only writes,
        // so uninitialized memory is fine), on our own descriptor.
        let n = unsafe { libc::preadv2(self.as_raw_fd(), &iov, 1, offset, libc::RWF_NOWAIT) };
        if n >= 0 {
            return Some(Ok(n as usize));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            // Not cached (EAGAIN), or no RWF_NOWAIT here: take the blocking path.
            Some(libc::EAGAIN | libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL) => None,
            Some(libc::EINTR) => None,
            _ => Some(Err(e)),
        }
    }

    fn raw_fd(&self) -> Option<RawFd> {
        Some(self.as_raw_fd())
    }
}

/// Everything the engine needs to answer a GET or HEAD.
#[derive(Clone)]
pub struct Representation {
    pub len: u64,
    /// Strong entity-tag, quoted.
    pub etag: Option<HeaderValue>,
    pub modified: Option<SystemTime>,
    /// Full `Content-Type` value (with charset where it applies).
    pub content_type: HeaderValue,
    pub source: Arc<dyn Source>,
    /// `Repr-Digest` of the whole representation (`sha-256=:...:`), when its hash is known.
    pub repr_digest: Option<HeaderValue>,
    /// Headers from the configuration for this path and from the query (`?download`).
    pub path_headers: PathHeaders,
}

/// The most bytes one read brings into memory; a streaming response holds one such chunk at a
/// time (plus what hyper queues, see `server::MAX_BUF`), whatever the file size.
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

/// Streaming bodies alive now.
static STREAMING: AtomicUsize = AtomicUsize::new(0);

/// Streaming bodies alive now (for the in-flight gauge).
pub fn streaming() -> usize {
    STREAMING.load(Ordering::Relaxed)
}

/// The chunk size for the next read, given how many responses are streaming.
fn chunk_size() -> u64 {
    let active = STREAMING.load(Ordering::Relaxed).max(1);
    (READ_BUDGET / active).clamp(MIN_CHUNK, CHUNK) as u64
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

/// The body made of these pieces. A read error or a source that ends early fails the body,
/// which makes hyper abort the connection: a client never takes a short body for a whole one.
/// With a `sink` (plain HTTP/1.x), long runs of a file are sent with `sendfile`.
pub fn body(source: Arc<dyn Source>, pieces: Vec<Piece>, sink: Option<Sink>) -> Body {
    let total: u64 = pieces.iter().map(Piece::len).sum();
    let sink = sink.filter(|_| {
        source.raw_fd().is_some()
            && pieces
                .iter()
                .any(|p| matches!(p, Piece::Range(r) if r.len() >= SENDFILE_MIN))
    });
    if total <= INLINE_MAX && sink.is_none() {
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
    Body::new(Streamed {
        source,
        pieces: VecDeque::from(pieces),
        inflight: None,
        remaining: total,
        sink,
        last: None,
    })
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

/// Read exactly `buf.len()` bytes at `offset`, blocking; a source that ends first is an
/// `UnexpectedEof` error.
pub fn read_exact_at(source: &dyn Source, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match source.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => return Err(ended_early()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn ended_early() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "file is shorter than when the response started",
    )
}

/// A streaming body. Each chunk is read on the async worker when it is in the page cache, and
/// on the blocking pool when it is not. Buffers are allocated here, on the worker, which also
/// frees them once hyper has written them: no per-thread allocator caches fill up.
struct Streamed {
    source: Arc<dyn Source>,
    pieces: VecDeque<Piece>,
    inflight: Option<tokio::task::JoinHandle<io::Result<Bytes>>>,
    remaining: u64,
    sink: Option<Sink>,
    /// The final frame, held until the file is known to be unchanged (see `release_last`).
    last: Option<Bytes>,
}

impl Streamed {
    fn fail(&mut self, e: io::Error) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        tracing::warn!("aborting response body: {e}");
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
        if let Some(read) = &mut self.inflight {
            let result = std::task::ready!(Pin::new(read).poll(cx));
            self.inflight = None;
            return match result.map_err(io::Error::other).and_then(|r| r) {
                Ok(bytes) => self.data(cx, bytes),
                Err(e) => self.fail(e),
            };
        }
        let (start, len) = match self.pieces.front() {
            None => return Poll::Ready(None),
            Some(Piece::Literal(_)) => {
                let Some(Piece::Literal(b)) = self.pieces.pop_front() else {
                    unreachable!()
                };
                return self.data(cx, b);
            }
            Some(Piece::Range(r)) => {
                let (start, left) = (r.start, r.len());
                if let Some(p) = self.placeholder(start, left) {
                    return self.data(cx, p);
                }
                (start, left.min(chunk_size()) as usize)
            }
        };
        let mut buf = BytesMut::with_capacity(len);
        match read_nowait_into(&*self.source, &mut buf, len, start) {
            Some(Ok(0)) => self.fail(ended_early()),
            Some(Ok(n)) => {
                self.advance(n as u64);
                self.data(cx, buf.freeze())
            }
            Some(Err(e)) => self.fail(e),
            None => {
                self.advance(len as u64);
                buf.resize(len, 0);
                let source = self.source.clone();
                self.inflight = Some(tokio::task::spawn_blocking(move || {
                    read_exact_at(&*source, &mut buf, start).map(|()| buf.freeze())
                }));
                // Poll the read once so that its completion wakes us.
                self.poll_frame(cx)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// `Content-Type` for a path, from its extension; text types say they are UTF-8. Looked up once
/// per extension.
pub fn content_type_for(path: &std::path::Path) -> HeaderValue {
    static BY_EXTENSION: RwLock<Option<HashMap<String, HeaderValue>>> = RwLock::new(None);
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let ext = match ext.bytes().any(|b| b.is_ascii_uppercase()) {
        true => std::borrow::Cow::Owned(ext.to_ascii_lowercase()),
        false => std::borrow::Cow::Borrowed(ext),
    };
    if let Some(v) = BY_EXTENSION
        .read()
        .unwrap()
        .as_ref()
        .and_then(|m| m.get(ext.as_ref()))
    {
        return v.clone();
    }
    let v = guess(path);
    let mut map = BY_EXTENSION.write().unwrap();
    let map = map.get_or_insert_with(HashMap::new);
    // Bounded: extensions come from request paths, which anyone can invent.
    if map.len() < 4096 {
        map.insert(ext.into_owned(), v.clone());
    }
    v
}

fn guess(path: &std::path::Path) -> HeaderValue {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let essence = mime.essence_str();
    let texty = mime.type_() == mime_guess::mime::TEXT
        || matches!(
            essence,
            "application/javascript" | "application/json" | "application/xml" | "image/svg+xml"
        );
    let text = if texty && mime.get_param("charset").is_none() {
        format!("{essence}; charset=utf-8")
    } else {
        mime.to_string()
    };
    HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("application/octet-stream"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        let ct = |p: &str| content_type_for(std::path::Path::new(p));
        assert_eq!(ct("a.html"), "text/html; charset=utf-8");
        assert_eq!(ct("a.txt"), "text/plain; charset=utf-8");
        assert_eq!(ct("a.json"), "application/json; charset=utf-8");
        assert_eq!(ct("a.bin"), "application/octet-stream");
        assert_eq!(ct("noext"), "application/octet-stream");
        assert_eq!(ct("a.png"), "image/png");
        assert_eq!(ct("A.TXT"), "text/plain; charset=utf-8");
        assert_eq!(ct("b.txt"), "text/plain; charset=utf-8");
    }
}
