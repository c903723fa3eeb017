//! CORS, black-box: preflights (a multi-range Range is not CORS-safelisted), allowed and
//! refused origins, and CORS headers on every status a downloader sees.

use crate::common::*;

const EXPOSE: &str = "Content-Range, Content-Length, Accept-Ranges, ETag, Last-Modified, Repr-Digest, Content-Disposition";
const ALLOW_HEADERS: &str = "Range, If-Range, If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since, Want-Repr-Digest";
const PAGE: &str = "https://app.example";
const OTHER_PAGE: &str = "http://localhost:3000";
const EVIL: &str = "https://evil.example";

fn with_list() -> Server {
    let s = Server::start_toml(&format!(
        "[cors]\nallowed_origins = [\"{PAGE}\", \"{OTHER_PAGE}\"]\nmax_age = 600\n"
    ));
    s.file("f.bin", &pattern(1000));
    s
}

fn cors_headers(r: &Response) -> Vec<(&str, &str)> {
    let mut v: Vec<(&str, &str)> = r
        .headers
        .iter()
        .filter(|(k, _)| k.starts_with("access-control-"))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    v.sort();
    v
}

/// What a browser checks after a preflight (Fetch, "CORS-preflight fetch"): the origin, the
/// method, and every requested header in Access-Control-Allow-Headers (case-insensitively).
fn browser_accepts_preflight(r: &Response, origin: &str, method: &str, headers: &[&str]) -> bool {
    let allowed = |list: Option<&str>, item: &str| {
        list.unwrap_or("")
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case(item))
    };
    (200..300).contains(&r.status)
        && r.header("access-control-allow-origin") == Some(origin)
        && allowed(r.header("access-control-allow-methods"), method)
        && headers
            .iter()
            .all(|h| allowed(r.header("access-control-allow-headers"), h))
}

fn preflight(s: &Server, origin: &str, request_headers: &str) -> Response {
    s.request(
        "OPTIONS",
        "/f.bin",
        &[
            ("Origin", origin),
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", request_headers),
        ],
    )
}

#[test]
fn off_by_default() {
    let s = Server::start();
    s.file("f.bin", b"x");
    let r = s.get("/f.bin", &[("Origin", PAGE)]);
    assert_eq!(r.status, 200);
    assert!(cors_headers(&r).is_empty(), "{:?}", r.headers);
    assert_eq!(r.header("vary"), None);
    // A preflight is a plain OPTIONS: no CORS headers, so the browser refuses.
    let r = preflight(&s, PAGE, "range");
    assert_eq!(r.status, 204);
    assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"));
    assert!(cors_headers(&r).is_empty());
    assert!(!browser_accepts_preflight(&r, PAGE, "GET", &["range"]));
}

#[test]
fn preflight_for_a_multi_range_request_then_the_request() {
    let s = with_list();
    let r = preflight(&s, PAGE, "range");
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    assert_eq!(r.header("content-length"), None);
    assert_eq!(
        cors_headers(&r),
        vec![
            ("access-control-allow-headers", ALLOW_HEADERS),
            ("access-control-allow-methods", "GET, HEAD"),
            ("access-control-allow-origin", PAGE),
            ("access-control-max-age", "600"),
        ]
    );
    assert_eq!(r.header("vary"), Some("Origin"));
    assert!(browser_accepts_preflight(&r, PAGE, "GET", &["range"]));
    // Every header a resuming, verifying downloader sends passes too.
    let all = "range,if-range,want-repr-digest,if-none-match";
    let r = preflight(&s, OTHER_PAGE, all);
    assert!(browser_accepts_preflight(
        &r,
        OTHER_PAGE,
        "GET",
        &all.split(',').collect::<Vec<_>>()
    ));
    // A header the server does not read is not allowed.
    let r = preflight(&s, PAGE, "x-custom");
    assert!(!browser_accepts_preflight(&r, PAGE, "GET", &["x-custom"]));

    // The request itself.
    let data = pattern(1000);
    let r = s.get(
        "/f.bin",
        &[("Origin", PAGE), ("Range", "bytes=0-9,100-109")],
    );
    assert_eq!(r.status, 206);
    assert!(r.headers["content-type"].starts_with("multipart/byteranges; boundary="));
    assert!(r.body.windows(10).any(|w| w == &data[100..110]));
    assert_eq!(
        cors_headers(&r),
        vec![
            ("access-control-allow-origin", PAGE),
            ("access-control-expose-headers", EXPOSE),
        ]
    );
    assert_eq!(r.header("vary"), Some("Origin"));
}

#[test]
fn a_disallowed_origin_gets_no_cors_headers() {
    let s = with_list();
    for origin in [
        EVIL,
        "https://app.example.evil.example",
        "http://app.example",
        "https://app.example:443",
        "null",
        "https://app.example, https://evil.example",
    ] {
        let r = preflight(&s, origin, "range");
        // Answered as a plain OPTIONS.
        assert_eq!(r.status, 204, "{origin}");
        assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"));
        assert!(cors_headers(&r).is_empty(), "{origin}: {:?}", r.headers);
        assert!(!browser_accepts_preflight(&r, origin, "GET", &["range"]));
        let r = s.get("/f.bin", &[("Origin", origin), ("Range", "bytes=0-0")]);
        assert_eq!(r.status, 206);
        assert!(cors_headers(&r).is_empty(), "{origin}: {:?}", r.headers);
        // The answer depends on Origin: caches must know.
        assert_eq!(r.header("vary"), Some("Origin"));
    }
    // No Origin at all: no CORS headers, Vary still.
    let r = s.get("/f.bin", &[]);
    assert!(cors_headers(&r).is_empty());
    assert_eq!(r.header("vary"), Some("Origin"));
}

#[test]
fn cors_headers_are_on_every_status() {
    let s = with_list();
    let etag = s.get("/f.bin", &[]).headers["etag"].clone();
    for (method, path, headers, status) in [
        ("GET", "/f.bin", vec![], 200),
        ("HEAD", "/f.bin", vec![], 200),
        ("GET", "/f.bin", vec![("Range", "bytes=5-")], 206),
        ("GET", "/f.bin", vec![("If-None-Match", etag.as_str())], 304),
        ("GET", "/f.bin", vec![("If-Match", "\"old\"")], 412),
        ("GET", "/f.bin", vec![("Range", "bytes=1000-")], 416),
        ("GET", "/missing", vec![], 404),
        ("GET", "/%2e%2e/etc/passwd", vec![], 400),
        ("POST", "/f.bin", vec![], 405),
        // OPTIONS without Access-Control-Request-Method is not a preflight.
        ("OPTIONS", "/f.bin", vec![], 204),
    ] {
        let mut h = headers.clone();
        h.push(("Origin", PAGE));
        let r = s.request(method, path, &h);
        assert_eq!(r.status, status, "{method} {path} {headers:?}");
        assert_eq!(
            cors_headers(&r),
            vec![
                ("access-control-allow-origin", PAGE),
                ("access-control-expose-headers", EXPOSE),
            ],
            "{status}"
        );
        assert_eq!(r.header("vary"), Some("Origin"), "{status}");
    }
}

#[test]
fn star_allows_every_origin_without_vary() {
    let s = Server::start_toml("[cors]\nallowed_origins = \"*\"\n");
    s.file("f.bin", &pattern(100));
    let want = vec![
        ("access-control-allow-origin", "*"),
        ("access-control-expose-headers", EXPOSE),
    ];
    for origin in [Some(PAGE), Some(EVIL), Some("null"), None] {
        let headers: Vec<(&str, &str)> = origin.map(|o| ("Origin", o)).into_iter().collect();
        let r = s.get("/f.bin", &headers);
        assert_eq!(r.status, 200);
        assert_eq!(cors_headers(&r), want, "{origin:?}");
        assert_eq!(r.header("vary"), None);
    }
    let r = preflight(&s, EVIL, "range");
    assert_eq!(r.status, 204);
    assert!(browser_accepts_preflight(&r, "*", "GET", &["range"]));
    assert_eq!(r.header("access-control-max-age"), Some("7200"));
    assert_eq!(r.header("vary"), None);
}
