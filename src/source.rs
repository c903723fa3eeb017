//! Representations: what the range and precondition engine serves, whatever the bytes come from.
//! A file on disk is one source; other sources (generated files) plug in through [`Source`].

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http::HeaderValue;
use http_body::{Frame, SizeHint};

use crate::http::range::ByteRange;

/// Positional reads of a representation's bytes. Called on the blocking pool.
pub trait Source: Send + Sync + 'static {
    /// Read up to `buf.len()` bytes at `offset`; 0 means the source ended early.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
}

impl Source for File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        FileExt::read_at(self, buf, offset)
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
}

/// The most bytes one read brings into memory. A streaming response holds at most two of
/// these (the chunk being written and the one read ahead), whatever the file size.
pub const CHUNK: usize = 256 * 1024;

/// Bodies up to this size are read at once, inline, before the response is sent: for page-cached
/// files that is cheaper than any hand-off to another thread, and the response goes out in one
/// write.
pub const INLINE_MAX: u64 = 128 * 1024;

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
pub fn body(source: Arc<dyn Source>, pieces: Vec<Piece>) -> Body {
    let total: u64 = pieces.iter().map(Piece::len).sum();
    if total <= INLINE_MAX {
        let mut out = BytesMut::with_capacity(total as usize);
        for piece in &pieces {
            match piece {
                Piece::Literal(b) => out.extend_from_slice(b),
                Piece::Range(r) => match read_exact_at(&*source, *r) {
                    Ok(b) => out.extend_from_slice(&b),
                    Err(e) => {
                        tracing::warn!("aborting response body: {e}");
                        let fail = futures_util::stream::once(async { Err::<Bytes, _>(e) });
                        return Body::from_stream(fail);
                    }
                },
            }
        }
        return Body::from(out.freeze());
    }
    Body::new(Streamed {
        source,
        pieces: VecDeque::from(pieces),
        inflight: None,
        remaining: total,
    })
}

/// Read exactly the bytes of `r`; a source that ends first is an error.
fn read_exact_at(source: &dyn Source, r: ByteRange) -> io::Result<Bytes> {
    let mut buf = BytesMut::zeroed(r.len() as usize);
    let mut done = 0;
    while done < buf.len() {
        match source.read_at(&mut buf[done..], r.start + done as u64) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file is shorter than when the response started",
                ))
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(buf.freeze())
}

/// A streaming body: reads run on the blocking pool, one chunk ahead of what hyper writes.
struct Streamed {
    source: Arc<dyn Source>,
    pieces: VecDeque<Piece>,
    inflight: Option<tokio::task::JoinHandle<io::Result<Bytes>>>,
    remaining: u64,
}

impl Streamed {
    /// Start reading the next chunk if the next piece is a run of the source.
    fn read_ahead(&mut self) {
        let Some(Piece::Range(r)) = self.pieces.front_mut() else {
            return;
        };
        let chunk = ByteRange {
            start: r.start,
            end: r.start + r.len().min(CHUNK as u64),
        };
        r.start = chunk.end;
        if r.is_empty() {
            self.pieces.pop_front();
        }
        let source = self.source.clone();
        self.inflight = Some(tokio::task::spawn_blocking(move || {
            read_exact_at(&*source, chunk)
        }));
    }

    fn fail(&mut self, e: io::Error) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        tracing::warn!("aborting response body: {e}");
        self.pieces.clear();
        self.inflight = None;
        self.remaining = 0;
        Poll::Ready(Some(Err(e)))
    }
}

impl http_body::Body for Streamed {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        loop {
            if let Some(read) = &mut self.inflight {
                let result = std::task::ready!(Pin::new(read).poll(cx));
                self.inflight = None;
                return match result.map_err(io::Error::other).and_then(|r| r) {
                    Ok(bytes) => {
                        self.remaining -= bytes.len() as u64;
                        self.read_ahead();
                        Poll::Ready(Some(Ok(Frame::data(bytes))))
                    }
                    Err(e) => self.fail(e),
                };
            }
            match self.pieces.front() {
                None => return Poll::Ready(None),
                Some(Piece::Literal(_)) => {
                    let Some(Piece::Literal(b)) = self.pieces.pop_front() else {
                        unreachable!()
                    };
                    self.remaining -= b.len() as u64;
                    self.read_ahead();
                    return Poll::Ready(Some(Ok(Frame::data(b))));
                }
                Some(Piece::Range(_)) => self.read_ahead(),
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
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if let Some(v) = BY_EXTENSION
        .read()
        .unwrap()
        .as_ref()
        .and_then(|m| m.get(&ext))
    {
        return v.clone();
    }
    let v = guess(path);
    let mut map = BY_EXTENSION.write().unwrap();
    let map = map.get_or_insert_with(HashMap::new);
    // Bounded: extensions come from request paths, which anyone can invent.
    if map.len() < 4096 {
        map.insert(ext, v.clone());
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
