//! Small response builders shared by the engine and the application: plain-text statuses,
//! redirects, `Content-Range`, and a per-thread pool of header maps.

use axum::body::Body;
use axum::response::Response;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;

use crate::http::range::ByteRange;

/// `X-Content-Type-Options: nosniff`, on everything whose type we state.
pub static NOSNIFF: (HeaderName, HeaderValue) = (
    HeaderName::from_static("x-content-type-options"),
    HeaderValue::from_static("nosniff"),
);

/// A response with this status, headers and body.
pub fn with_headers(status: StatusCode, headers: HeaderMap, body: Body) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

/// A one-line plain-text response (errors, redirects, a 400 naming the bad parameter, ...).
pub fn plain_text(status: StatusCode, body: impl Into<String>) -> Response {
    let body: String = body.into();
    let len = body.len();
    plain(status, Body::from(body), len)
}

/// The preconditions of a GET or HEAD of a body made here and known by its ETag alone (a
/// listing, a built-in page), RFC 9110 §13.2.2: the `304` (with the headers `h`) or `412` to
/// answer, or `None` to go on.
pub fn etag_preconditions(
    method: &http::Method,
    req_headers: &HeaderMap,
    etag: &str,
    h: &HeaderMap,
) -> Option<Response> {
    use crate::http::preconditions::{decide, Decision, Validators};
    let validators = Validators {
        etag: Some(etag),
        last_modified: None,
        last_modified_is_strong: false,
    };
    match decide(method, req_headers, &validators) {
        Decision::NotModified => {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            *r.headers_mut() = h.clone();
            Some(r)
        }
        Decision::PreconditionFailed => {
            let mut r = text(StatusCode::PRECONDITION_FAILED, "412 Precondition Failed\n");
            r.headers_mut().extend(h.clone());
            Some(r)
        }
        // A Range is ignored (§14.2): such a body is not something one resumes.
        Decision::Proceed { .. } => None,
    }
}

/// A small plain-text response from a static text.
pub fn text(status: StatusCode, body: &'static str) -> Response {
    plain(status, Body::from(body), body.len())
}

fn plain(status: StatusCode, body: Body, len: usize) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(NOSNIFF.0.clone(), NOSNIFF.1.clone());
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    r
}

/// `301 Moved Permanently` to `to` (a path we built, or the request's own with a slash added).
pub fn moved_permanently(to: &str) -> Response {
    let mut r = text(StatusCode::MOVED_PERMANENTLY, "301 Moved Permanently\n");
    r.headers_mut().insert(header::LOCATION, value(to));
    r
}

/// A Content-Security-Policy source that allows exactly this inline script or style:
/// `sha256-` and the base64 of its SHA-256 (CSP Level 3, "hash-source"), without the quotes.
pub fn csp_hash(inline: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let sum = sha2::Sha256::digest(inline.as_bytes());
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(sum)
    )
}

/// The 500 of a bug or a failure the client cannot do anything about.
pub fn internal_error() -> Response {
    text(
        StatusCode::INTERNAL_SERVER_ERROR,
        "500 Internal Server Error\n",
    )
}

/// A header value from text we built; anything a header may not hold (never expected: every
/// value is visible ASCII, config values were checked at load time) becomes `invalid`.
pub fn value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// `bytes FIRST-LAST/LEN`, or `bytes */LEN` for a 416 (RFC 9110 §14.4), written with `itoa`
/// (`format!` and the copy into a `HeaderValue` showed in the profile of 64 KiB ranges).
pub fn content_range(r: Option<&ByteRange>, len: u64) -> HeaderValue {
    let mut digits = itoa::Buffer::new();
    let mut s = bytes::BytesMut::with_capacity(6 + 3 * 20 + 2);
    s.extend_from_slice(b"bytes ");
    match r {
        Some(r) => {
            s.extend_from_slice(digits.format(r.start).as_bytes());
            s.extend_from_slice(b"-");
            s.extend_from_slice(digits.format(r.last()).as_bytes());
        }
        None => s.extend_from_slice(b"*"),
    }
    s.extend_from_slice(b"/");
    s.extend_from_slice(digits.format(len).as_bytes());
    // SAFETY: only ASCII letters, digits, space, `-`, `*` and `/`: all valid in a field value.
    unsafe { HeaderValue::from_maybe_shared_unchecked(s.freeze()) }
}

thread_local! {
    /// Header maps of answered requests and written responses, emptied, for the next ones
    /// built on this thread (allocating and freeing them per request showed in the profile of
    /// 304s).
    static SPARE_HEADER_MAPS: std::cell::RefCell<Vec<HeaderMap>> =
        const { std::cell::RefCell::new(Vec::new()) };
    /// The same for requests' extension maps (axum's Router inserts two per request).
    static SPARE_EXTENSIONS: std::cell::RefCell<Vec<http::Extensions>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Room for every header a file response (or a usual request) carries without growing.
const RESPONSE_HEADERS: usize = 16;

/// Spare maps kept per thread.
const SPARES: usize = 8;

/// An empty header map for a request or a response: a recycled one when there is one.
pub fn spare_header_map() -> HeaderMap {
    take_spare(&SPARE_HEADER_MAPS).unwrap_or_else(|| HeaderMap::with_capacity(RESPONSE_HEADERS))
}

/// Give the header map of an answered request or a written response back for reuse (emptied;
/// a few per thread, and none that grew large, or too small to hold a response's headers: an
/// HTTP/2 request's map, filled by h2 as the fields came, would grow again, with a rehash,
/// while the response is built).
pub fn recycle_header_map(mut h: HeaderMap) {
    if !(RESPONSE_HEADERS..=2 * RESPONSE_HEADERS).contains(&h.capacity()) {
        return;
    }
    h.clear();
    give_spare(&SPARE_HEADER_MAPS, h);
}

/// An empty extension map for a request: a recycled one (its table already allocated) when
/// there is one.
pub fn spare_extensions() -> http::Extensions {
    take_spare(&SPARE_EXTENSIONS).unwrap_or_default()
}

/// Give the extension map of an answered request back for reuse (emptied, a few per thread).
pub fn recycle_extensions(mut e: http::Extensions) {
    if e.is_empty() {
        // Nothing allocated (or nothing worth keeping).
        return;
    }
    e.clear();
    give_spare(&SPARE_EXTENSIONS, e);
}

type Spares<T> = std::thread::LocalKey<std::cell::RefCell<Vec<T>>>;

/// A spare from this thread's pool, if it has one. `try_with`: a thread being torn down just
/// allocates (or drops) maps.
fn take_spare<T: 'static>(pool: &'static Spares<T>) -> Option<T> {
    pool.try_with(|spare| spare.borrow_mut().pop())
        .ok()
        .flatten()
}

/// Keep an emptied `item` in this thread's pool, unless it holds [`SPARES`] already.
fn give_spare<T: 'static>(pool: &'static Spares<T>, item: T) {
    let _ = pool.try_with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.len() < SPARES {
            spare.push(item);
        }
    });
}

/// Append `name` to `Vary` unless a Vary field already lists it (or `*`). Appends, never
/// replaces: other features add their own names.
pub fn add_vary(headers: &mut HeaderMap, name: &'static str) {
    let listed = headers.get_all(header::VARY).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .map(|t| t.trim_matches([' ', '\t']))
                .any(|t| t == "*" || t.eq_ignore_ascii_case(name))
        })
    });
    if !listed {
        headers.append(header::VARY, HeaderValue::from_static(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spare_header_map_holds_a_response_without_growing() {
        // Each test runs on a thread of its own: the pool starts empty.
        let fresh = spare_header_map();
        assert!(fresh.capacity() >= RESPONSE_HEADERS);
        // A map as h2 leaves a request's (grown field by field) is not kept.
        let mut small = HeaderMap::new();
        small.insert(header::HOST, HeaderValue::from_static("a"));
        assert!(small.capacity() < RESPONSE_HEADERS);
        recycle_header_map(small);
        // One that grew large is not kept either.
        let mut large = HeaderMap::with_capacity(4 * RESPONSE_HEADERS);
        large.insert(header::HOST, HeaderValue::from_static("a"));
        recycle_header_map(large);
        assert!(take_spare(&SPARE_HEADER_MAPS).is_none());
        // A response's map comes back emptied, its room kept.
        let mut used = fresh;
        used.insert(header::ETAG, HeaderValue::from_static("\"x\""));
        let room = used.capacity();
        recycle_header_map(used);
        let again = spare_header_map();
        assert!(again.is_empty());
        assert_eq!(again.capacity(), room);
    }
}
