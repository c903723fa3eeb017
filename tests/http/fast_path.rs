//! The plain HTTP/1.1 fast path (`fast_h1`) and its hand-over to hyper: simple GET/HEAD requests
//! are answered by the fast path, and the first request it leaves to hyper (another method,
//! HTTP/1.0, a body, an oversized head, ...) moves the connection to hyper with the bytes
//! already read, so pipelined requests on either side of the switch are answered in order.

use crate::common::*;

use std::io::{Read, Write};

#[test]
fn pipelined_requests_across_the_hand_over_are_answered_in_order() {
    let s = Server::start();
    let data = pattern(300_000);
    s.file("f.bin", &data);
    let etag = etag_of(&data);
    let mut c = s.connect();
    // Five requests in one write: four simple ones, then a POST (hyper's), then a GET that
    // hyper serves because the connection is its own from the POST on.
    let reqs = format!(
        "GET /f.bin HTTP/1.1\r\nHost: t\r\n\r\n\
         HEAD /f.bin HTTP/1.1\r\nHost: t\r\n\r\n\
         GET /f.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=100-199,-50\r\n\r\n\
         GET /f.bin HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\n\r\n\
         POST /f.bin HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc\
         GET /f.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=299990-\r\n\r\n"
    );
    c.write_all(reqs.as_bytes()).unwrap();
    let mut buf = Vec::new();

    let full = read_one(&mut c, &mut buf, false);
    assert_eq!(full.status, 200);
    assert_eq!(full.body, data);
    assert_eq!(full.header("etag"), Some(etag.as_str()));

    let head = read_one(&mut c, &mut buf, true);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("300000"));
    assert!(head.body.is_empty());

    let multi = read_one(&mut c, &mut buf, false);
    assert_eq!(multi.status, 206);
    let ct = multi.header("content-type").unwrap();
    let parts = multipart::parse(&multi.body, &multipart::boundary_of(ct));
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].body, &data[100..200]);
    assert_eq!(parts[1].body, &data[300_000 - 50..]);

    let not_modified = read_one(&mut c, &mut buf, false);
    assert_eq!(not_modified.status, 304);
    assert!(not_modified.body.is_empty());

    let post = read_one(&mut c, &mut buf, false);
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD, OPTIONS"));

    let tail = read_one(&mut c, &mut buf, false);
    assert_eq!(tail.status, 206);
    assert_eq!(
        tail.header("content-range"),
        Some("bytes 299990-299999/300000")
    );
    assert_eq!(tail.body, &data[299_990..]);
    assert!(buf.is_empty(), "bytes after the last response: {buf:?}");
}

#[test]
fn a_head_that_arrives_a_byte_at_a_time_is_answered() {
    let s = Server::start();
    let data = pattern(70_000);
    s.file("slow.bin", &data);
    let mut c = s.connect();
    c.set_nodelay(true).unwrap();
    for b in b"GET /slow.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=5-9\r\n\r\n" {
        c.write_all(&[*b]).unwrap();
    }
    let mut buf = Vec::new();
    let r = read_one(&mut c, &mut buf, false);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &data[5..10]);
    // And the connection stays usable.
    c.write_all(b"GET /slow.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let r = read_one(&mut c, &mut buf, false);
    assert_eq!(r.body, data);
}

#[test]
fn connection_close_is_answered_and_the_connection_closed() {
    let s = Server::start();
    s.file("a.txt", b"hello");
    let raw = s.raw(b"GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let r = Response::parse(&raw, false);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"hello");
    assert_eq!(r.header("connection"), Some("close"));
    // After a keep-alive request first: the second response is the last.
    let raw = s.raw(
        b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\nHEAD /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    let text = String::from_utf8(raw).unwrap();
    let responses: Vec<&str> = text.split_inclusive("hello").collect();
    assert_eq!(responses.len(), 2, "{text}");
    assert!(responses[0].starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(!responses[0].contains("connection:"), "{text}");
    // The HEAD's response, the last one: no body, and it says the connection closes.
    assert!(responses[1].starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(responses[1].contains("\r\nconnection: close\r\n"), "{text}");
    assert!(responses[1].ends_with("\r\n\r\n"), "{text}");
}

#[test]
fn requests_the_fast_path_leaves_to_hyper_are_still_answered() {
    // The fast path on whatever RANGESERVE_FAST_PATH says: the 431 below is its limit, which
    // hyper alone applies only while a head is incomplete (tests/http/equivalence.rs).
    let s = Server::start_with(|c| c.fast_path = true);
    let data = pattern(10_000);
    s.file("f.bin", &data);
    // HTTP/1.0: hyper answers in HTTP/1.0 and closes.
    let raw = s.raw(b"GET /f.bin HTTP/1.0\r\n\r\n");
    assert!(
        raw.starts_with(b"HTTP/1.0 200 OK\r\n"),
        "{:?}",
        String::from_utf8_lossy(&raw[..40])
    );
    assert_eq!(Response::parse(&raw, false).body, data);
    // An absolute-form target.
    let mut c = s.connect();
    c.write_all(b"GET http://t/f.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=0-9\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let r = read_one(&mut c, &mut buf, false);
    assert_eq!((r.status, r.body.as_slice()), (206, &data[..10]));
    // A malformed head: hyper's 400.
    let raw = s.raw(b"GET /f.bin HTTP/1.1\r\nBad Header\r\n\r\n");
    assert!(
        raw.starts_with(b"HTTP/1.1 400 "),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
    // A head larger than the 16 KiB buffer: 431, after a simple request on the connection.
    let mut c = s.connect();
    let big = format!(
        "GET /f.bin HTTP/1.1\r\nHost: t\r\n\r\nGET /f.bin HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    c.write_all(big.as_bytes()).unwrap();
    let mut buf = Vec::new();
    assert_eq!(read_one(&mut c, &mut buf, false).body, data);
    let mut rest = buf;
    let _ = c.read_to_end(&mut rest);
    assert!(
        rest.starts_with(b"HTTP/1.1 431 "),
        "{:?}",
        String::from_utf8_lossy(&rest)
    );
    // More header fields than the limit (100): 431.
    let many: String = (0..120).map(|i| format!("X-{i}: v\r\n")).collect();
    let raw = s.raw(format!("GET /f.bin HTTP/1.1\r\nHost: t\r\n{many}\r\n").as_bytes());
    assert!(
        raw.starts_with(b"HTTP/1.1 431 "),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
}

#[test]
fn a_304_after_richer_responses_carries_only_its_own_headers() {
    // Response header maps are reused from one response to the next on a thread: nothing of a
    // 206, a multipart 206 or an attachment 200 may show up on the 304 that follows them.
    let s = Server::start();
    let data = pattern(10_000);
    s.file("f.bin", &data);
    let etag = etag_of(&data);
    let mut c = s.connect();
    let mut buf = Vec::new();
    for _ in 0..3 {
        let reqs = format!(
            "GET /f.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=0-9\r\n\r\n\
             GET /f.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=0-1,5-6\r\n\r\n\
             GET /f.bin?download HTTP/1.1\r\nHost: t\r\n\r\n\
             GET /f.bin HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\n\r\n"
        );
        c.write_all(reqs.as_bytes()).unwrap();
        let single = read_one(&mut c, &mut buf, false);
        assert_eq!(single.status, 206);
        assert_eq!(single.body, &data[..10]);
        let multi = read_one(&mut c, &mut buf, false);
        assert_eq!(multi.status, 206);
        let download = read_one(&mut c, &mut buf, false);
        assert_eq!(download.status, 200);
        assert!(download.header("content-disposition").is_some());
        let not_modified = read_one(&mut c, &mut buf, true);
        assert_eq!(not_modified.status, 304);
        let mut names: Vec<&str> = not_modified.headers.keys().map(|k| k.as_str()).collect();
        names.sort();
        // RFC 9110 §15.4.5: what a 200 would carry of Date, ETag, Last-Modified, Cache-Control.
        assert_eq!(
            names,
            ["cache-control", "date", "etag", "last-modified"],
            "{:?}",
            not_modified.headers
        );
    }
}

#[test]
fn field_values_are_taken_as_httparse_checked_them() {
    // The fast path builds header values from the head without checking them again: httparse
    // accepts HTAB, visible ASCII and obs-text (RFC 9110 §5.5), exactly what a HeaderValue may
    // hold; a control character is refused before that (hyper then answers 400).
    let s = Server::start();
    let data = pattern(1000);
    s.file("f.bin", &data);
    let mut buf = Vec::new();

    let mut c = s.connect();
    c.write_all(b"GET /f.bin HTTP/1.1\r\nHost: t\r\nX-Odd: a\tb \xe9\xff~\r\n\r\n")
        .unwrap();
    let r = read_one(&mut c, &mut buf, false);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, data);

    for bad in [&b"\x01"[..], b"\x7f", b"\x00"] {
        let mut c = s.connect();
        let mut req = b"GET /f.bin HTTP/1.1\r\nHost: t\r\nX-Bad: a".to_vec();
        req.extend_from_slice(bad);
        req.extend_from_slice(b"b\r\n\r\n");
        c.write_all(&req).unwrap();
        buf.clear();
        let r = read_one(&mut c, &mut buf, false);
        assert_eq!(r.status, 400, "{bad:?}");
    }
}

#[test]
fn a_client_that_half_closes_after_its_request_gets_the_whole_response() {
    // `printf 'GET ...' | nc -N` and HTTP/1.0-era clients shut down their sending side once
    // the request is out. That is no abort: the response must still come, whole, whichever
    // of the fast path or hyper serves the request. Each request names a file not served
    // before, so its answer waits for the file's hash: time in which the server reads the
    // client's EOF.
    let data = pattern(100_000);
    for fast_path in [true, false] {
        let s = Server::start_with(|c| c.fast_path = fast_path);
        let forms: [(&str, &[u8]); 4] = [
            (
                "GET /{f} HTTP/1.1\r\nHost: t\r\n\r\n",
                b"HTTP/1.1 200 OK\r\n",
            ),
            ("GET /{f} HTTP/1.0\r\n\r\n", b"HTTP/1.0 200 OK\r\n"),
            (
                "GET http://t/{f} HTTP/1.1\r\nHost: t\r\n\r\n",
                b"HTTP/1.1 200 OK\r\n",
            ),
            (
                "GET /{f} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                b"HTTP/1.1 200 OK\r\n",
            ),
        ];
        for round in 0..5 {
            for (i, (form, status_line)) in forms.iter().enumerate() {
                let name = format!("half-{round}-{i}.bin");
                s.file(&name, &data);
                let request = form.replace("{f}", &name);
                let mut c = s.connect();
                c.write_all(request.as_bytes()).unwrap();
                c.shutdown(std::net::Shutdown::Write).unwrap();
                let mut raw = Vec::new();
                c.read_to_end(&mut raw)
                    .unwrap_or_else(|e| panic!("{request:?} (fast path {fast_path}): {e}"));
                assert!(
                    raw.starts_with(status_line),
                    "{request:?} (fast path {fast_path}): {:?}",
                    String::from_utf8_lossy(&raw[..raw.len().min(200)])
                );
                assert_eq!(
                    Response::parse(&raw, false).body,
                    data,
                    "{request:?} (fast path {fast_path})"
                );
            }
        }
    }
}
