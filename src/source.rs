//! Representations: what the range and precondition engine serves, whatever the bytes come from.
//! A file on disk is one source; other sources (generated files) plug in through [`Source`].

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use bytes::{Bytes, BytesMut};

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
    pub etag: Option<String>,
    pub modified: Option<SystemTime>,
    /// Full `Content-Type` value (with charset where it applies).
    pub content_type: String,
    pub source: Arc<dyn Source>,
}

/// The most bytes read into memory at once for one response.
pub const CHUNK: usize = 128 * 1024;

/// A piece of a response body: literal bytes (multipart framing) or a run of the source.
pub enum Piece {
    Literal(Bytes),
    Range(ByteRange),
}

/// A body that streams the pieces in order, reading the source a chunk at a time on the
/// blocking pool. A read error or a source that ends early fails the stream, which makes hyper
/// abort the connection: a client never takes a short body for a complete one.
pub fn body(source: Arc<dyn Source>, pieces: Vec<Piece>) -> Body {
    let state = (source, VecDeque::from(pieces));
    let stream = futures_util::stream::unfold(state, |(source, mut pieces)| async move {
        let item = match pieces.pop_front()? {
            Piece::Literal(b) => Ok(b),
            Piece::Range(r) => {
                let want = (r.len() as usize).min(CHUNK);
                let src = source.clone();
                let read = tokio::task::spawn_blocking(move || {
                    let mut buf = BytesMut::zeroed(want);
                    let n = src.read_at(&mut buf, r.start)?;
                    buf.truncate(n);
                    Ok::<_, io::Error>(buf.freeze())
                })
                .await
                .map_err(io::Error::other)
                .and_then(|r| r);
                match read {
                    Ok(b) if b.is_empty() => Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file is shorter than when the response started",
                    )),
                    Ok(b) => {
                        let rest = ByteRange {
                            start: r.start + b.len() as u64,
                            end: r.end,
                        };
                        if !rest.is_empty() {
                            pieces.push_front(Piece::Range(rest));
                        }
                        Ok(b)
                    }
                    Err(e) => Err(e),
                }
            }
        };
        if let Err(e) = &item {
            tracing::warn!("aborting response body: {e}");
            // End the stream after the error.
            pieces.clear();
        }
        Some((item, (source, pieces)))
    });
    Body::from_stream(stream)
}

/// `Content-Type` for a path, from its extension; text types say they are UTF-8.
pub fn content_type_for(path: &std::path::Path) -> String {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let essence = mime.essence_str();
    let texty = mime.type_() == mime_guess::mime::TEXT
        || matches!(
            essence,
            "application/javascript" | "application/json" | "application/xml" | "image/svg+xml"
        );
    if texty && mime.get_param("charset").is_none() {
        format!("{essence}; charset=utf-8")
    } else {
        mime.to_string()
    }
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
    }
}
