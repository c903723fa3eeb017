//! Parsing a request head (`httparse`) into a request, if it is one the fast path serves.

use std::mem::MaybeUninit;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Uri, Version};

use crate::http::response::{spare_extensions, spare_header_map};

/// Header fields a simple request may have (hyper's own default limit for HTTP/1).
pub const MAX_HEADERS: usize = 100;

// The request is the common case: boxing it would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
pub enum Parsed {
    /// A simple request (its head taken off the buffer), and whether the client asked to
    /// close the connection after it (`Connection: close`).
    Simple(Request<Body>, bool),
    /// Not all of the head yet.
    Partial,
    /// Anything this path leaves to hyper (including what hyper will refuse), with the head
    /// if it was already taken off the buffer (empty if not).
    Other(Bytes),
}

/// `max_buf`: a longer head is hyper's to refuse (431), even when all of it has arrived.
pub fn parse(buf: &mut BytesMut, max_buf: usize) -> Parsed {
    if buf.is_empty() {
        return Parsed::Partial;
    }
    // Uninitialised slots: filling 100 empty headers first cost more than the parse.
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut []);
    let len = match parsed.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(len)) if len <= max_buf => len,
        Ok(httparse::Status::Complete(_)) => return Parsed::Other(Bytes::new()),
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Other(Bytes::new()),
    };
    let method = match parsed.method {
        Some("GET") => Method::GET,
        Some("HEAD") => Method::HEAD,
        _ => return Parsed::Other(Bytes::new()),
    };
    let (Some(path), Some(1)) = (parsed.path, parsed.version) else {
        return Parsed::Other(Bytes::new());
    };
    if !path.starts_with('/') {
        return Parsed::Other(Bytes::new());
    }
    // Where the target and each field lie in the head, to take them from it without copies.
    let base = buf.as_ptr() as usize;
    let at = |s: &[u8]| (s.as_ptr() as usize - base, s.len());
    let target = at(path.as_bytes());
    // On the stack for the usual handful of fields (a Vec was an allocation per request), and
    // pushed in place (collecting moved the whole inline array).
    let mut fields = smallvec::SmallVec::<[((usize, usize), (usize, usize)); 16]>::new();
    for h in parsed.headers.iter() {
        fields.push((at(h.name.as_bytes()), at(h.value)));
    }
    let head = buf.split_to(len).freeze();
    let Ok(uri) = Uri::from_maybe_shared(head.slice(target.0..target.0 + target.1)) else {
        return Parsed::Other(head);
    };
    // Recycled maps (`http::response`): the engine gives a request's maps back when it has
    // answered it.
    let mut map = spare_header_map();
    let mut close = false;
    for &((n, nl), (v, vl)) in &fields {
        let Ok(name) = HeaderName::from_bytes(&head[n..n + nl]) else {
            return Parsed::Other(head);
        };
        // Framing and connection management stay hyper's: a body (RFC 9112 §6.3), 100-continue,
        // upgrades (h2c), and any Connection option but keep-alive (the default in 1.1).
        let value = &head[v..v + vl];
        let simple = match name {
            header::CONTENT_LENGTH
            | header::TRANSFER_ENCODING
            | header::EXPECT
            | header::UPGRADE
            | header::TE => false,
            header::CONNECTION if value.eq_ignore_ascii_case(b"close") => {
                close = true;
                true
            }
            header::CONNECTION => value.eq_ignore_ascii_case(b"keep-alive"),
            _ => true,
        };
        if !simple {
            return Parsed::Other(head);
        }
        // A slice of the head, not a copy; not checked again: httparse accepts exactly the
        // bytes a HeaderValue may hold (HTAB, SP through `~`, obs-text 0x80-0xFF; RFC 9110
        // §5.5), and debug builds (the tests) check each value anyway.
        // SAFETY: the bytes were validated by httparse as a field value (see above).
        let value = unsafe { HeaderValue::from_maybe_shared_unchecked(head.slice(v..v + vl)) };
        map.append(name, value);
    }
    let mut req = Request::new(Body::empty());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = map;
    *req.extensions_mut() = spare_extensions();
    Parsed::Simple(req, close)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn simple(raw: &str) -> bool {
        matches!(parse(&mut BytesMut::from(raw), 16384), Parsed::Simple(..))
    }

    #[test]
    fn only_plain_gets_and_heads_are_simple() {
        assert!(simple("GET /a HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(simple(
            "HEAD /a?b HTTP/1.1\r\nConnection: Keep-Alive\r\n\r\n"
        ));
        assert!(simple("GET /a HTTP/1.1\r\nConnection: close\r\n\r\n"));
        for other in [
            "POST /a HTTP/1.1\r\n\r\n",
            "OPTIONS * HTTP/1.1\r\n\r\n",
            "GET /a HTTP/1.0\r\n\r\n",
            "GET http://x/a HTTP/1.1\r\n\r\n",
            "GET /a HTTP/1.1\r\nConnection: close, te\r\n\r\n",
            "GET /a HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "GET /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /a HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            "GET /a HTTP/1.1\r\nUpgrade: h2c\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET /a HTTP/1.1\r\nBad Name: x\r\n\r\n",
        ] {
            assert!(!simple(other), "{other:?}");
        }
        let mut partial = BytesMut::from("GET /a HTTP/1.1\r\nHost");
        assert!(matches!(parse(&mut partial, 16384), Parsed::Partial));
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(16384));
        assert!(!simple(&big));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
        assert!(!simple(&format!("GET / HTTP/1.1\r\n{many}\r\n")));
    }
}
