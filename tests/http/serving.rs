//! Serving, black-box: methods, headers, directories and redirects, odd requests and odd files.

use crate::common::*;

use std::io::{Read, Write};
use std::time::{Duration, Instant, SystemTime};

/// `Date` is present and is an IMF-fixdate within a few seconds of now.
fn assert_date(r: &Response, what: &str) {
    let d = r
        .header("date")
        .unwrap_or_else(|| panic!("{what}: no Date header"));
    let t = httpdate::parse_http_date(d).unwrap_or_else(|e| panic!("{what}: Date {d:?}: {e}"));
    let now = SystemTime::now();
    let skew = match now.duration_since(t) {
        Ok(d) => d,
        Err(e) => e.duration(),
    };
    assert!(skew < Duration::from_secs(5), "{what}: Date {d:?} is off");
}

#[test]
fn get_and_head_agree_on_headers() {
    let s = Server::start();
    let data = pattern(5000);
    s.file("f.bin", &data);
    let g = s.get("/f.bin", &[]);
    assert_eq!(g.status, 200);
    assert_eq!(g.body, data);
    assert_eq!(g.header("content-length"), Some("5000"));
    let h = s.request("HEAD", "/f.bin", &[]);
    assert_eq!(h.status, 200);
    assert!(h.body.is_empty());
    assert_eq!(h.header("content-length"), Some("5000"));
    // Same headers apart from Date, which may tick over between the two requests.
    let strip = |r: &Response| {
        let mut m = r.headers.clone();
        m.remove("date");
        m
    };
    assert_eq!(strip(&g), strip(&h));
    assert_date(&g, "GET");
    assert_date(&h, "HEAD");
}

#[test]
fn options_lists_the_allowed_methods() {
    let s = Server::start();
    s.file("f.txt", b"x");
    for p in ["/f.txt", "/", "/missing", "*"] {
        let r = s.request("OPTIONS", p, &[]);
        assert_eq!(r.status, 204, "{p}");
        assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"), "{p}");
        assert!(r.body.is_empty());
        assert_date(&r, "OPTIONS");
    }
}

#[test]
fn other_methods_get_405_with_allow() {
    let s = Server::start();
    s.file("f.txt", b"unchanged");
    for m in ["POST", "PUT", "DELETE", "PATCH"] {
        let r = s.request(m, "/f.txt", &[("Content-Length", "0")]);
        assert_eq!(r.status, 405, "{m}");
        assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"), "{m}");
        assert!(!r.body.is_empty(), "{m}");
        assert_date(&r, m);
    }
    // A PUT with a body did not write anything.
    let raw = s.raw(
        b"PUT /f.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 7\r\n\r\nchanged",
    );
    assert_eq!(Response::parse(&raw, false).status, 405);
    assert_eq!(std::fs::read(s.root.join("f.txt")).unwrap(), b"unchanged");
    let r = s.request("DELETE", "/f.txt", &[]);
    assert_eq!(r.status, 405);
    assert!(s.root.join("f.txt").exists());
}

#[test]
fn content_type_from_extension() {
    let s = Server::start();
    let cases = [
        ("a.html", "text/html; charset=utf-8"),
        ("a.txt", "text/plain; charset=utf-8"),
        ("a.css", "text/css; charset=utf-8"),
        ("a.json", "application/json; charset=utf-8"),
        ("a.png", "image/png"),
        ("a.bin", "application/octet-stream"),
    ];
    for (name, _) in cases {
        s.file(name, b"{}");
    }
    for (name, want) in cases {
        let r = s.get(&format!("/{name}"), &[]);
        assert_eq!(r.status, 200, "{name}");
        assert_eq!(r.header("content-type"), Some(want), "{name}");
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{name}"
        );
        assert_eq!(r.header("accept-ranges"), Some("bytes"), "{name}");
    }
}

#[test]
fn every_response_has_a_date() {
    let s = Server::start();
    let data = pattern(100);
    s.file("f.bin", &data);
    s.file("sub/x.txt", b"x");
    let r = s.get("/f.bin", &[]);
    assert_eq!(r.status, 200);
    assert_date(&r, "200");
    let etag = r.header("etag").unwrap().to_string();
    let r = s.get("/f.bin", &[("Range", "bytes=0-9")]);
    assert_eq!(r.status, 206);
    assert_date(&r, "206");
    let r = s.get("/f.bin", &[("If-None-Match", &etag)]);
    assert_eq!(r.status, 304);
    assert_date(&r, "304");
    let r = s.get("/f.bin", &[("If-Match", "\"nope\"")]);
    assert_eq!(r.status, 412);
    assert_date(&r, "412");
    let r = s.get("/f.bin", &[("Range", "bytes=500-")]);
    assert_eq!(r.status, 416);
    assert_date(&r, "416");
    let r = s.get("/missing", &[]);
    assert_eq!(r.status, 404);
    assert_date(&r, "404");
    let r = s.request("POST", "/f.bin", &[]);
    assert_eq!(r.status, 405);
    assert_date(&r, "405");
    let r = s.get("/sub", &[]);
    assert_eq!(r.status, 301);
    assert_date(&r, "301");
    let r = s.get("/%2e%2e/x", &[]);
    assert_eq!(r.status, 400);
    assert_date(&r, "400");
}

#[test]
fn directory_without_slash_redirects() {
    let s = Server::start();
    s.file("sub/index.html", b"<p>sub</p>");
    s.file("sub/deeper/index.html", b"<p>deeper</p>");
    let cases = [
        ("/sub", "/sub/"),
        ("/sub?x=1", "/sub/?x=1"),
        ("/sub?a=1&b=%2F", "/sub/?a=1&b=%2F"),
        ("//sub", "/sub/"),
        ("//sub?x=1", "/sub/?x=1"),
        ("///sub//deeper", "/sub/deeper/"),
        ("/sub/deeper", "/sub/deeper/"),
    ];
    for (from, to) in cases {
        let r = s.get(from, &[]);
        assert_eq!(r.status, 301, "{from}");
        assert_eq!(r.header("location"), Some(to), "{from}");
        assert!(!r.body.is_empty(), "{from}");
    }
    // The redirect target is a single-slash path: never protocol-relative.
    for from in ["//sub", "///sub", "//sub/deeper"] {
        let r = s.get(from, &[]);
        let loc = r.header("location").unwrap();
        assert!(!loc.starts_with("//"), "{from} -> {loc}");
    }
}

#[test]
fn directory_with_slash_serves_its_index() {
    let s = Server::start();
    s.file("sub/index.html", b"<p>sub index</p>");
    s.file("index.html", b"<p>top index</p>");
    let r = s.get("/sub/", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"<p>sub index</p>");
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let r = s.get("/", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"<p>top index</p>");
    let r = s.get("/sub/?q=1", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"<p>sub index</p>");
}

#[test]
fn index_files_are_tried_in_order() {
    let s = Server::start_with(|c| c.index_files = vec!["index.htm".into(), "index.html".into()]);
    s.file("both/index.htm", b"htm wins");
    s.file("both/index.html", b"html loses");
    s.file("only-html/index.html", b"html fallback");
    let r = s.get("/both/", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"htm wins");
    let r = s.get("/only-html/", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"html fallback");
}

#[test]
fn index_order_reversed_picks_the_other_file() {
    let s = Server::start_with(|c| c.index_files = vec!["index.html".into(), "index.htm".into()]);
    s.file("both/index.htm", b"htm");
    s.file("both/index.html", b"html");
    let r = s.get("/both/", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"html");
}

#[test]
fn directory_without_index_is_404() {
    let s = Server::start();
    s.file("noindex/other.html", b"not an index");
    // An index name that is a directory does not count.
    std::fs::create_dir_all(s.root.join("noindex/index.html")).unwrap();
    std::fs::create_dir(s.root.join("empty")).unwrap();
    for p in ["/empty/", "/noindex/"] {
        let r = s.get(p, &[]);
        assert_eq!(r.status, 404, "{p}");
        assert!(!r.body.windows(12).any(|w| w == b"not an index"), "{p}");
    }
}

#[test]
fn missing_file_is_404_with_a_small_body() {
    let s = Server::start();
    for p in ["/missing.txt", "/no/such/dir/file", "/missing/"] {
        let r = s.get(p, &[]);
        assert_eq!(r.status, 404, "{p}");
        assert!(!r.body.is_empty(), "{p}: empty body");
        assert!(r.body.len() < 512, "{p}: body of {} bytes", r.body.len());
        assert_eq!(
            r.header("content-length"),
            Some(r.body.len().to_string().as_str()),
            "{p}"
        );
    }
    // A path below a regular file is not found either.
    s.file("file.txt", b"x");
    assert_eq!(s.get("/file.txt/more", &[]).status, 404);
}

#[test]
fn empty_file_is_200_with_zero_length() {
    let s = Server::start();
    s.file("empty.txt", b"");
    let r = s.get("/empty.txt", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("0"));
    assert!(r.body.is_empty());
    let r = s.request("HEAD", "/empty.txt", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("0"));
}

#[test]
fn keep_alive_serves_two_requests_on_one_connection() {
    let s = Server::start();
    let a = pattern(3000);
    let b: Vec<u8> = pattern(4001).into_iter().rev().collect();
    s.file("a.bin", &a);
    s.file("b.bin", &b);
    let mut c = s.connect();
    let mut buf = Vec::new();
    c.write_all(b"GET /a.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let r1 = read_one(&mut c, &mut buf, false);
    assert_eq!(r1.status, 200);
    assert_eq!(r1.body, a);
    assert!(buf.is_empty(), "bytes after the first response: {buf:?}");
    // Same socket, second request.
    c.write_all(b"GET /b.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let r2 = read_one(&mut c, &mut buf, false);
    assert_eq!(r2.status, 200);
    assert_eq!(r2.body, b);
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert!(buf.is_empty() && rest.is_empty(), "trailing bytes");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let s = Server::start();
    let a = pattern(1234);
    s.file("a.bin", &a);
    s.file("b.txt", b"bee");
    let mut c = s.connect();
    c.write_all(
        b"GET /a.bin HTTP/1.1\r\nHost: t\r\n\r\n\
          HEAD /b.txt HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /b.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut buf = Vec::new();
    let r1 = read_one(&mut c, &mut buf, false);
    assert_eq!((r1.status, &r1.body[..]), (200, &a[..]));
    let r2 = read_one(&mut c, &mut buf, true);
    assert_eq!(r2.status, 200);
    assert_eq!(r2.header("content-length"), Some("3"));
    let r3 = read_one(&mut c, &mut buf, false);
    assert_eq!((r3.status, &r3.body[..]), (200, &b"bee"[..]));
}

#[test]
fn malformed_request_line_is_refused_and_the_server_lives_on() {
    let s = Server::start();
    s.file("ok.txt", b"still here");
    for garbage in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"\x00\x01\x02\xff\r\n\r\n",
    ] {
        let raw = s.raw(garbage);
        if !raw.is_empty() {
            let r = Response::parse(&raw, false);
            assert!(
                r.status == 400 || r.status == 505,
                "{garbage:?}: status {}",
                r.status
            );
        }
        let r = s.get("/ok.txt", &[]);
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"still here");
    }
}

#[test]
fn many_ranges_get_the_whole_file_and_a_huge_header_is_refused() {
    let s = Server::start();
    let data = pattern(2000);
    s.file("f.bin", &data);
    let items = |n: usize| {
        let mut range = String::from("bytes=");
        for i in 0..n {
            if i > 0 {
                range.push(',');
            }
            range.push_str("0-0");
        }
        range
    };
    // 3,000 ranges (12 KiB of header, within the head limit): more than max_ranges, so the
    // whole file.
    let r = s.get("/f.bin", &[("Range", &items(3_000))]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, data);
    assert!(r.header("content-range").is_none());
    // Distinct ranges, still more than the default max_ranges (100): whole file too.
    let many: Vec<String> = (0..200).map(|i| format!("{i}-{i}")).collect();
    let r = s.get("/f.bin", &[("Range", &format!("bytes={}", many.join(",")))]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, data);
    // A 64 KiB header is beyond the 16 KiB request-head limit (nginx's default: 8 KiB a line):
    // 431, and nothing of the file.
    let huge = items(16_000);
    assert!(huge.len() > 60 * 1024);
    let raw = s.raw(format!("GET /f.bin HTTP/1.1\r\nHost: t\r\nRange: {huge}\r\n\r\n").as_bytes());
    let r = Response::parse(&raw, false);
    assert_eq!(r.status, 431);
    assert!(!raw.windows(data.len()).any(|w| w == data.as_slice()));
    // And the server still answers ranges normally afterwards.
    let r = s.get("/f.bin", &[("Range", "bytes=5-9")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &data[5..10]);
}

#[test]
fn fifo_is_not_found_and_does_not_hang() {
    // A short grace, so that even a server stuck on the FIFO lets the test finish.
    let s = Server::start_with(|c| c.shutdown_grace = Duration::from_secs(1));
    let st = std::process::Command::new("mkfifo")
        .arg(s.root.join("pipe"))
        .arg(s.root.join("fdir-index"))
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::create_dir(s.root.join("fdir")).unwrap();
    std::fs::rename(s.root.join("fdir-index"), s.root.join("fdir/index.html")).unwrap();
    s.file("ok.txt", b"ok");
    for (p, fifo) in [("/pipe", "pipe"), ("/fdir/", "fdir/index.html")] {
        for m in ["GET", "HEAD"] {
            let start = Instant::now();
            let mut c = s.connect();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            write!(
                c,
                "{m} {p} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let mut raw = Vec::new();
            if let Err(e) = c.read_to_end(&mut raw) {
                // Stuck opening the FIFO for reading: open it for writing to release the
                // server's thread (so the test ends), then fail.
                use std::os::unix::fs::OpenOptionsExt;
                let _ = std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(s.root.join(fifo));
                panic!("{m} {p}: no answer within 5 s: {e}");
            }
            assert!(start.elapsed() < Duration::from_secs(5), "{m} {p}");
            let r = Response::parse(&raw, m == "HEAD");
            assert_eq!(r.status, 404, "{m} {p}");
        }
    }
    let r = s.get("/ok.txt", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"ok");
}
