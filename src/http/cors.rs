//! CORS (the Fetch standard's "CORS protocol", §3.2), so that a web page on another origin can
//! download with ranges, resume, and verify. Off unless `[cors] allowed_origins` lists origins.
//!
//! - A preflight is an `OPTIONS` request with `Origin` and `Access-Control-Request-Method`.
//!   From an allowed origin it gets `204` with `Access-Control-Allow-Origin`, `-Allow-Methods`,
//!   `-Allow-Headers` and `-Max-Age`. A `Range` with several ranges is not a CORS-safelisted
//!   request header (only a single `bytes=N-` or `bytes=N-M` is), so a page that asks for
//!   several ranges is preflighted first.
//! - Every other response to an allowed origin (200, 206, 304, 412, 416, errors) carries
//!   `Access-Control-Allow-Origin` and `Access-Control-Expose-Headers`, so the page can read the
//!   range, validator and digest headers, whatever the status.
//! - With `*`, every response carries them, whether or not the request had an `Origin`, and no
//!   `Vary` (Fetch §3.2.5 "CORS protocol and HTTP caches": a response whose CORS headers do not
//!   depend on the request can be cached for everyone).
//! - With a list, an allowed `Origin` is echoed, and every response (allowed, refused or without
//!   `Origin`) says `Vary: Origin` (same section: otherwise a cache could hand one origin's
//!   answer to another).
//! - A disallowed origin gets no CORS headers at all; its preflight is a plain `OPTIONS`.
//!
//! tower-http's `CorsLayer` was considered; it answers every `OPTIONS` as a preflight with `200`,
//! adds headers for disallowed origins too, and replaces an existing `Vary` instead of adding to
//! it, so this module implements the few rules above itself.

use std::collections::HashSet;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};

use crate::http::response::add_vary;

/// The methods a preflight allows: the only ones the server answers with content.
const ALLOW_METHODS: &str = "GET, HEAD";

/// The request headers a page may send (those the server reads), beyond the safelisted ones.
const ALLOW_HEADERS: &str =
    "Range, If-Range, If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since, Want-Repr-Digest";

/// What a page may read, beyond the safelisted response headers: enough to resume (ranges,
/// validators) and to verify (`Repr-Digest`), and the name of a `?download`.
pub const EXPOSE_HEADERS: &str =
    "Content-Range, Content-Length, Accept-Ranges, ETag, Last-Modified, Repr-Digest, Content-Disposition";

/// [`ALLOW_HEADERS`], and what tus clients and PUT send (a unit test checks it extends it).
const ALLOW_HEADERS_UPLOADS: &str = "Range, If-Range, If-Match, If-None-Match, If-Modified-Since, \
     If-Unmodified-Since, Want-Repr-Digest, Authorization, Content-Type, Tus-Resumable, \
     Upload-Length, Upload-Offset, Upload-Metadata, Upload-Defer-Length, Upload-Checksum, \
     Upload-Concat, X-HTTP-Method-Override, X-Requested-With";
/// [`EXPOSE_HEADERS`], and what a tus client reads.
const EXPOSE_HEADERS_UPLOADS: &str = "Content-Range, Content-Length, Accept-Ranges, ETag, \
     Last-Modified, Repr-Digest, Content-Disposition, Location, Upload-Offset, Upload-Length, \
     Upload-Metadata, Upload-Defer-Length, Upload-Expires, Tus-Resumable, Tus-Version, \
     Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm";

/// The CORS policy from `[cors]`.
#[derive(Debug, Clone)]
pub struct Cors {
    origins: Origins,
    max_age: HeaderValue,
    /// Uploads are on: pages may also upload (tus and PUT, with a token).
    uploads: bool,
}

/// With uploads: the methods and request headers of tus and PUT, and the response headers a
/// tus client reads (`Location`, `Upload-Offset`, ...).
const ALLOW_METHODS_UPLOADS: &str = "GET, HEAD, POST, PATCH, PUT, DELETE, OPTIONS";

#[derive(Debug, Clone)]
enum Origins {
    Any,
    /// Serialized origins, lowercase (`https://example.com:8443`).
    List(HashSet<String>),
}

impl Cors {
    /// The policy for these origins (`["*"]` or serialized origins); `None` when the list is
    /// empty (CORS off). The error names the offending entry.
    pub fn new(origins: &[String], max_age: u64) -> Result<Option<Cors>, String> {
        if origins.is_empty() {
            return Ok(None);
        }
        let origins = if origins.iter().any(|o| o.trim() == "*") {
            if origins.len() > 1 {
                return Err("\"*\" must be the only entry when present".into());
            }
            Origins::Any
        } else {
            let mut set = HashSet::new();
            for o in origins {
                set.insert(check_origin(o.trim())?);
            }
            Origins::List(set)
        };
        Ok(Some(Cors {
            origins,
            max_age: HeaderValue::from(max_age),
            uploads: false,
        }))
    }

    /// The same policy, letting allowed pages upload too (`[upload]` is on).
    pub fn with_uploads(self) -> Cors {
        Cors {
            uploads: true,
            ..self
        }
    }

    /// The `Access-Control-Allow-Origin` value for a request with this `Origin`, if allowed.
    fn allow_origin(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        match &self.origins {
            Origins::Any => Some(HeaderValue::from_static("*")),
            Origins::List(set) => {
                let o = origin?.to_str().ok()?;
                set.contains(&o.to_ascii_lowercase())
                    .then(|| origin.cloned())?
            }
        }
    }

    fn varies(&self) -> bool {
        matches!(self.origins, Origins::List(_))
    }

    /// The answer to a CORS preflight from an allowed origin; `None` when the request is not a
    /// preflight or its origin is not allowed (it is then answered as a plain `OPTIONS`).
    pub fn preflight(&self, method: &Method, req: &HeaderMap) -> Option<(StatusCode, HeaderMap)> {
        if method != Method::OPTIONS
            || !req.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
            || !req.contains_key(header::ORIGIN)
        {
            return None;
        }
        let allow = self.allow_origin(req.get(header::ORIGIN))?;
        let mut h = HeaderMap::with_capacity(6);
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
        let (methods, headers) = match self.uploads {
            false => (ALLOW_METHODS, ALLOW_HEADERS),
            true => (ALLOW_METHODS_UPLOADS, ALLOW_HEADERS_UPLOADS),
        };
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(methods),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(headers),
        );
        h.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        if self.varies() {
            add_vary(&mut h, "Origin");
        }
        Some((StatusCode::NO_CONTENT, h))
    }

    /// Add the CORS headers of a (non-preflight) response to a request from `origin`.
    pub fn decorate(&self, origin: Option<&HeaderValue>, h: &mut HeaderMap) {
        if self.varies() {
            add_vary(h, "Origin");
        }
        if let Some(allow) = self.allow_origin(origin) {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
            let expose = match self.uploads {
                false => EXPOSE_HEADERS,
                true => EXPOSE_HEADERS_UPLOADS,
            };
            h.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(expose),
            );
        }
    }
}

/// A serialized origin: `scheme://host[:port]`, no path, no trailing slash; lowercased.
fn check_origin(o: &str) -> Result<String, String> {
    let bad = || {
        format!(
            "{o:?} is not an origin like \"https://example.com\" or \"http://localhost:3000\" \
             (scheme://host[:port], no path, no trailing slash; or \"*\" alone)"
        )
    };
    let lower = o.to_ascii_lowercase();
    let (scheme, rest) = lower.split_once("://").ok_or_else(bad)?;
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_lowercase())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b));
    let (host_ok, port) = if let Some(v6) = rest.strip_prefix('[') {
        match v6.split_once(']') {
            Some((addr, after)) => {
                let port = match after {
                    "" => None,
                    p => Some(p.strip_prefix(':').unwrap_or("x")),
                };
                (addr.parse::<std::net::Ipv6Addr>().is_ok(), port)
            }
            None => (false, None),
        }
    } else {
        let (host, port) = match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        };
        let ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b));
        (ok, port)
    };
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok() && !p.starts_with('+'));
    if scheme_ok && host_ok && port_ok {
        Ok(lower)
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(origins: &[&str]) -> Cors {
        let v: Vec<String> = origins.iter().map(|s| s.to_string()).collect();
        Cors::new(&v, 600).unwrap().unwrap()
    }

    #[test]
    fn origins_are_checked() {
        assert!(Cors::new(&[], 1).unwrap().is_none());
        for ok in [
            "https://example.com",
            "http://localhost:3000",
            "HTTPS://Example.COM",
            "http://[::1]:8080",
            "http://[::1]",
            "chrome-extension://abcdef",
            "http://127.0.0.1:1",
        ] {
            assert!(check_origin(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "example.com",
            "https://example.com/",
            "https://example.com/x",
            "https://",
            "https://a b",
            "https://a:99999",
            "https://a:",
            "null",
            "http://[zz]:1",
            "1http://a",
        ] {
            let e = check_origin(bad).unwrap_err();
            assert!(!e.contains('\n'), "{e}");
        }
        let e = Cors::new(&["*".into(), "https://a".into()], 1).unwrap_err();
        assert!(e.contains("only"), "{e}");
    }

    #[test]
    fn list_echoes_allowed_origins_and_varies() {
        let c = list(&["https://a.example", "http://B.example:8080"]);
        let origin = |s: &str| HeaderValue::from_str(s).unwrap();
        let mut h = HeaderMap::new();
        c.decorate(Some(&origin("https://a.example")), &mut h);
        assert_eq!(h["access-control-allow-origin"], "https://a.example");
        assert_eq!(h["access-control-expose-headers"], EXPOSE_HEADERS);
        assert_eq!(h["vary"], "Origin");
        let mut h = HeaderMap::new();
        c.decorate(Some(&origin("http://b.example:8080")), &mut h);
        assert_eq!(h["access-control-allow-origin"], "http://b.example:8080");
        for refused in [Some(origin("https://evil.example")), None] {
            let mut h = HeaderMap::new();
            c.decorate(refused.as_ref(), &mut h);
            assert_eq!(h.len(), 1, "{h:?}");
            assert_eq!(h["vary"], "Origin");
        }
    }

    #[test]
    fn vary_is_added_once_to_what_is_there() {
        let mut h = HeaderMap::new();
        h.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        add_vary(&mut h, "Origin");
        add_vary(&mut h, "Origin");
        let all: Vec<_> = h.get_all(header::VARY).iter().collect();
        assert_eq!(all, ["Accept-Encoding", "Origin"]);
        let mut h = HeaderMap::new();
        h.append(header::VARY, HeaderValue::from_static("accept, origin"));
        add_vary(&mut h, "Origin");
        assert_eq!(h.get_all(header::VARY).iter().count(), 1);
    }

    #[test]
    fn uploads_extend_what_pages_may_send_and_read() {
        let squash = |s: &str| s.replace(' ', "");
        assert!(squash(ALLOW_HEADERS_UPLOADS).starts_with(&squash(ALLOW_HEADERS)));
        assert!(squash(EXPOSE_HEADERS_UPLOADS).starts_with(&squash(EXPOSE_HEADERS)));
        let cors = list(&["https://a.example"]).with_uploads();
        let mut req = HeaderMap::new();
        req.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://a.example"),
        );
        req.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("PATCH"),
        );
        let (_, h) = cors.preflight(&Method::OPTIONS, &req).unwrap();
        assert!(h[header::ACCESS_CONTROL_ALLOW_METHODS]
            .to_str()
            .unwrap()
            .contains("PATCH"));
        assert!(h[header::ACCESS_CONTROL_ALLOW_HEADERS]
            .to_str()
            .unwrap()
            .contains("Upload-Offset"));
        let mut resp = HeaderMap::new();
        cors.decorate(req.get(header::ORIGIN), &mut resp);
        assert!(resp[header::ACCESS_CONTROL_EXPOSE_HEADERS]
            .to_str()
            .unwrap()
            .contains("Location"));
    }

    #[test]
    fn preflight_needs_origin_and_request_method() {
        let c = list(&["https://a.example"]);
        let mut req = HeaderMap::new();
        assert!(c.preflight(&Method::OPTIONS, &req).is_none());
        req.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://a.example"),
        );
        assert!(c.preflight(&Method::OPTIONS, &req).is_none());
        req.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("GET"),
        );
        assert!(c.preflight(&Method::GET, &req).is_none());
        let (status, h) = c.preflight(&Method::OPTIONS, &req).unwrap();
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(h["access-control-max-age"], "600");
        req.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://b.example"),
        );
        assert!(c.preflight(&Method::OPTIONS, &req).is_none());
    }
}
