//! decide -> plan -> respond, for one representation: the preconditions (`http::preconditions`),
//! the range plan (`http::range`, `http::multipart`), the headers every file response carries,
//! and a body that reads only the planned bytes (`files::body`).

use std::time::SystemTime;

use axum::body::Body;
use axum::response::Response;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};

use crate::files::body::{self, Origin, Piece};
use crate::files::options::Options;
use crate::files::storage::{OpenError, Representation};
use crate::fs::sendfile::Sink;
use crate::http::dates;
use crate::http::multipart::Multipart;
use crate::http::preconditions::{self, Decision, Validators};
use crate::http::range::{self, RangePlan};
use crate::http::repr_digest;
use crate::http::response::{content_range, spare_header_map, text, value, with_headers, NOSNIFF};
use crate::ops::metrics::METRICS;

/// The response to a GET or HEAD (`method`) with `req_headers` for `rep`, at `now`, and the
/// first run of `rep`'s source its body reads (`offset..until`, see `body::first_run`), if the
/// body reads any. Pure but for the body's reads; with a `sink`, long runs of a file may go out
/// by `sendfile`.
pub fn respond_planned(
    method: &Method,
    req_headers: &HeaderMap,
    rep: &Representation,
    opts: &Options,
    now: SystemTime,
    sink: Option<Sink>,
    origin: &Origin<'_>,
) -> (Response, Option<(u64, u64)>) {
    // Each time converted to seconds once (the conversion showed in the profile of 304s).
    let now_secs = preconditions::unix_secs(now);
    let (lm_secs, last_modified_is_strong) = match rep.modified {
        Some(m) => {
            let (lm, strong) =
                preconditions::last_modified_secs(preconditions::unix_secs(m), now_secs);
            (Some(lm), strong)
        }
        None => (None, false),
    };
    let last_modified = lm_secs.map(|s| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s));
    let validators = Validators {
        etag: rep.etag.as_ref().and_then(|e| e.to_str().ok()),
        last_modified,
        last_modified_is_strong,
    };

    // Headers every file response carries, 304 included (RFC 9110 §15.4.5).
    let mut h = spare_header_map();
    h.insert(header::DATE, dates::date(now_secs));
    if let Some(etag) = &rep.etag {
        h.insert(header::ETAG, etag.clone());
    }
    if let Some(lm) = lm_secs {
        h.insert(header::LAST_MODIFIED, dates::last_modified(lm));
    }
    rep.path_headers.apply(&mut h, opts.cache_control.as_ref());

    let use_range = match preconditions::decide(method, req_headers, &validators) {
        Decision::NotModified => {
            return (
                with_headers(StatusCode::NOT_MODIFIED, h, Body::empty()),
                None,
            )
        }
        Decision::PreconditionFailed => {
            let mut r = text(StatusCode::PRECONDITION_FAILED, "412 Precondition Failed\n");
            r.headers_mut().extend(h);
            return (r, None);
        }
        Decision::Proceed { use_range } => use_range,
    };

    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(NOSNIFF.0.clone(), NOSNIFF.1.clone());
    // Only If-Range turns a GET with Range into a full response at this point.
    if !use_range
        && method == Method::GET
        && req_headers.contains_key(header::RANGE)
        && req_headers.contains_key(header::IF_RANGE)
    {
        METRICS.if_range_fallback();
    }
    let plan = if use_range {
        range::plan(req_headers.get(header::RANGE), rep.len, opts.max_ranges)
    } else {
        RangePlan::Full
    };
    let (status, content_type, pieces, length) = match plan {
        RangePlan::Full => (
            StatusCode::OK,
            rep.content_type.clone(),
            vec![Piece::Range(range::ByteRange {
                start: 0,
                end: rep.len,
            })],
            rep.len,
        ),
        RangePlan::Single(r) => {
            h.insert(header::CONTENT_RANGE, content_range(Some(&r), rep.len));
            (
                StatusCode::PARTIAL_CONTENT,
                rep.content_type.clone(),
                vec![Piece::Range(r)],
                r.len(),
            )
        }
        RangePlan::Multi(ranges) => {
            METRICS.multipart();
            let m = Multipart::new(&ranges, rep.len, rep.content_type.to_str().unwrap_or(""));
            let length = m.content_length();
            let mut pieces = Vec::with_capacity(2 * m.parts.len() + 1);
            for (r, head) in m.parts.iter() {
                pieces.push(Piece::Literal(head.clone()));
                pieces.push(Piece::Range(*r));
            }
            pieces.push(Piece::Literal(m.closing.clone()));
            (
                StatusCode::PARTIAL_CONTENT,
                value(&m.content_type()),
                pieces,
                length,
            )
        }
        RangePlan::Unsatisfiable => {
            // §15.5.17: say how long the representation is. An empty body, so that a naive
            // resumer has nothing to append.
            h.insert(header::CONTENT_RANGE, content_range(None, rep.len));
            h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
            return (
                with_headers(StatusCode::RANGE_NOT_SATISFIABLE, h, Body::empty()),
                None,
            );
        }
    };
    // RFC 9530 §3: the digest of the whole selected representation, on a 206 too. Not on a
    // 304 (RFC 9110 §15.4.5: no representation metadata that does not guide a cache update;
    // the matching ETag already says the stored digest holds), nor on a 412 or 416.
    if let Some(d) = &rep.repr_digest {
        if repr_digest::wanted(req_headers, opts.repr_digest) {
            h.insert(repr_digest::REPR_DIGEST.clone(), d.clone());
        }
    }
    h.insert(header::CONTENT_TYPE, content_type);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    let (body, first) = if method == Method::HEAD || length == 0 {
        (Body::empty(), None)
    } else {
        let first = body::first_run(&pieces);
        (body::body(rep.source.clone(), pieces, sink, origin), first)
    };
    (with_headers(status, h, body), first)
}

/// The response that says why there is no representation for `path`.
pub fn open_error(e: OpenError, path: &str) -> Response {
    match e {
        OpenError::BadPath(why) => {
            tracing::debug!(path, "bad path: {why}");
            text(StatusCode::BAD_REQUEST, "400 Bad Request\n")
        }
        OpenError::NotFound => text(StatusCode::NOT_FOUND, "404 Not Found\n"),
        OpenError::Forbidden => text(StatusCode::FORBIDDEN, "403 Forbidden\n"),
        OpenError::Changing => {
            // The file changed while it was hashed, or twice before a body's first read: the
            // client may simply ask again.
            tracing::warn!(path, "file changed while it was hashed or opened");
            let mut r = text(StatusCode::SERVICE_UNAVAILABLE, "503 File Is Changing\n");
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        OpenError::Upstream(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            tracing::error!(path, "store timed out: {e}");
            text(StatusCode::GATEWAY_TIMEOUT, "504 Gateway Timeout\n")
        }
        OpenError::Upstream(e) => {
            tracing::error!(path, "store failed: {e}");
            text(StatusCode::BAD_GATEWAY, "502 Bad Gateway\n")
        }
        OpenError::Io(e) => {
            tracing::error!(path, "i/o error: {e}");
            crate::http::response::internal_error()
        }
    }
}
