//! `multipart/byteranges` framing (RFC 9110 §14.6, RFC 2046 §5.1.1) and its exact length,
//! known before the first byte is sent.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::range::ByteRange;

/// The framing of one multipart response: a header before each part and a closing delimiter.
/// The part bodies themselves come from the representation.
#[derive(Debug, Clone)]
pub struct Multipart {
    /// The boundary between parts (RFC 2046 §5.1.1), new for each response.
    pub boundary: String,
    /// `(range, the delimiter and part headers that precede its bytes)`.
    pub parts: Vec<(ByteRange, Bytes)>,
    /// The closing delimiter, after the last part.
    pub closing: Bytes,
}

impl Multipart {
    /// The framing for `ranges` of a representation of `complete_len` bytes and this type,
    /// with a fresh random boundary.
    pub fn new(ranges: &[ByteRange], complete_len: u64, content_type: &str) -> Multipart {
        Self::with_boundary(new_boundary(), ranges, complete_len, content_type)
    }

    /// [`Multipart::new`] with a given boundary (tests, fuzzing).
    pub fn with_boundary(
        boundary: String,
        ranges: &[ByteRange],
        complete_len: u64,
        content_type: &str,
    ) -> Multipart {
        let parts = ranges
            .iter()
            .enumerate()
            .map(|(i, r)| {
                // The first delimiter needs no leading CRLF: the preamble is empty.
                let lead = if i == 0 { "" } else { "\r\n" };
                let head = format!(
                    "{lead}--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: bytes {}-{}/{complete_len}\r\n\r\n",
                    r.start,
                    r.last()
                );
                (*r, Bytes::from(head))
            })
            .collect();
        let closing = Bytes::from(format!("\r\n--{boundary}--\r\n"));
        Multipart {
            boundary,
            parts,
            closing,
        }
    }

    /// The `Content-Type` of the whole response.
    pub fn content_type(&self) -> String {
        format!("multipart/byteranges; boundary={}", self.boundary)
    }

    /// The exact body length: framing plus every part's bytes.
    pub fn content_length(&self) -> u64 {
        self.parts
            .iter()
            .map(|(r, head)| head.len() as u64 + r.len())
            .sum::<u64>()
            + self.closing.len() as u64
    }
}

/// 32 hex digits, different for every response, unpredictable enough that a file's content
/// cannot be crafted to contain the boundary of the response that carries it.
fn new_boundary() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // RandomState is seeded from the OS once per process and then varies per instance.
    let mut a = std::collections::hash_map::RandomState::new().build_hasher();
    a.write_u64(n);
    let mut b = std::collections::hash_map::RandomState::new().build_hasher();
    b.write_u64(!n);
    format!("{:016x}{:016x}", a.finish(), b.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_and_length() {
        let rs = [
            ByteRange { start: 0, end: 2 },
            ByteRange { start: 10, end: 13 },
        ];
        let m = Multipart::with_boundary("B".into(), &rs, 26, "text/plain");
        let data = b"abcdefghijklmnopqrstuvwxyz";
        let mut body = Vec::new();
        for (r, head) in &m.parts {
            body.extend_from_slice(head);
            body.extend_from_slice(&data[r.start as usize..r.end as usize]);
        }
        body.extend_from_slice(&m.closing);
        let want = "--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/26\r\n\r\nab\
                    \r\n--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 10-12/26\r\n\r\nklm\
                    \r\n--B--\r\n";
        assert_eq!(String::from_utf8(body.clone()).unwrap(), want);
        assert_eq!(m.content_length(), body.len() as u64);
        assert_eq!(m.content_type(), "multipart/byteranges; boundary=B");
    }

    #[test]
    fn boundaries_differ() {
        let a = new_boundary();
        let b = new_boundary();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
    }
}
