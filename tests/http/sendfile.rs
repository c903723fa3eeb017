//! The zero-copy path (`sendfile`): file bytes that skip user space must still be exactly the
//! file's bytes, in the right order on a keep-alive connection, and only where hyper passes body
//! buffers through untouched (plain HTTP/1.x; not HTTP/2).
//!
//! The sendfile byte counter is process-wide, so each test here has the process to itself
//! (`alone`): no other test's server runs while it counts.
use crate::common::*;

use std::io::{Read, Write};
use std::time::Duration;

use rangeserve::ops::metrics::METRICS;

/// Responses read off one connection, in order; nothing may follow the last one.
fn read_responses(raw: &[u8], heads: &[bool]) -> Vec<Response> {
    let mut rest = raw.to_vec();
    let out: Vec<Response> = heads
        .iter()
        .enumerate()
        .map(|(i, &head)| {
            split_one(&mut rest, head).unwrap_or_else(|| panic!("response {} cut short", i + 1))
        })
        .collect();
    assert!(rest.is_empty(), "bytes after the last response");
    out
}

/// Each `(first, last)` part of a multipart/byteranges body carries exactly those file bytes.
fn assert_parts(body: &[u8], data: &[u8], parts: &[(usize, usize)]) {
    for &(a, b) in parts {
        let tag = format!("Content-Range: bytes {a}-{b}/{}\r\n\r\n", data.len());
        let i = body
            .windows(tag.len())
            .position(|w| w == tag.as_bytes())
            .unwrap_or_else(|| panic!("no part {a}-{b}"));
        let start = i + tag.len();
        assert_eq!(
            &body[start..start + (b - a + 1)],
            &data[a..=b],
            "part {a}-{b}"
        );
        assert!(
            body[start + (b - a + 1)..].starts_with(b"\r\n--"),
            "part {a}-{b} end"
        );
    }
}

#[test]
fn pipelined_responses_mix_sendfile_and_copied_bodies_in_order() {
    let _alone = alone();
    let s = Server::start();
    let big = pattern(3 << 20); // three placeholder spans and a bit
    let small = pattern(1000);
    s.file("big.bin", &big);
    s.file("small.bin", &small);
    let etag = s.get("/small.bin", &[]).header("etag").unwrap().to_string();
    let before = METRICS.sendfile_bytes_total();

    let multi = "bytes=0-99,100000-299999,-100";
    let reqs = [
        "GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n".to_string(),
        "GET /big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=1000000-1065535\r\n\r\n".to_string(),
        "GET /small.bin HTTP/1.1\r\nHost: t\r\n\r\n".to_string(),
        format!("GET /big.bin HTTP/1.1\r\nHost: t\r\nRange: {multi}\r\n\r\n"),
        "HEAD /big.bin HTTP/1.1\r\nHost: t\r\n\r\n".to_string(),
        format!("GET /small.bin HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\n\r\n"),
        "GET /big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=-40000\r\nConnection: close\r\n\r\n"
            .to_string(),
    ];
    let mut c = connect(s.addr, Duration::from_secs(30));
    // All at once: responses queue up behind each other on the connection.
    c.write_all(reqs.concat().as_bytes()).unwrap();
    let mut raw = Vec::new();
    c.read_to_end(&mut raw).unwrap();
    let r = read_responses(&raw, &[false, false, false, false, true, false, false]);

    assert_eq!(r[0].status, 200);
    assert_eq!(r[0].body, big);
    assert_eq!(r[1].status, 206);
    assert_eq!(r[1].body, &big[1_000_000..1_065_536]);
    assert_eq!(r[2].status, 200);
    assert_eq!(r[2].body, small);
    assert_eq!(r[3].status, 206);
    let len = big.len();
    assert_parts(
        &r[3].body,
        &big,
        &[(0, 99), (100000, 299999), (len - 100, len - 1)],
    );
    assert_eq!(r[4].status, 200);
    assert_eq!(r[4].header("content-length"), Some(&*len.to_string()));
    assert_eq!(r[5].status, 304);
    assert_eq!(r[6].status, 206);
    assert_eq!(r[6].body, &big[len - 40000..]);

    // The long runs went out by sendfile (freshly written files are in the page cache): the
    // whole file, the 64 KiB range, the 200000-byte part and the 40000-byte suffix, except the
    // last 4 KiB of each response that ends with file bytes (copied after the file's identity
    // is checked again; the multipart part is followed by its closing boundary).
    let sent = METRICS.sendfile_bytes_total() - before;
    let tail = 4096;
    assert_eq!(
        sent as usize,
        (len - tail) + (65536 - tail) + 200000 + (40000 - tail)
    );
}

#[test]
fn sendfile_off_copies_every_byte() {
    let _alone = alone();
    let s = Server::start_with(|c| c.sendfile = false);
    let big = pattern(2 << 20);
    s.file("big.bin", &big);
    let before = METRICS.sendfile_bytes_total();
    let r = s.get("/big.bin", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, big);
    let r = s.get("/big.bin", &[("Range", "bytes=5-70004")]);
    assert_eq!(r.body, &big[5..70005]);
    assert_eq!(METRICS.sendfile_bytes_total(), before);
}

/// HTTP/2 (h2c with prior knowledge) copies body buffers into frames: no placeholder may reach
/// it. curl is the HTTP/2 client; missing curl fails under CI.
#[test]
fn http2_bodies_never_use_sendfile() {
    let _alone = alone();
    let Some(curl) = programs::require("curl") else {
        return;
    };
    let s = Server::start();
    let big = pattern(3 << 20);
    s.file("big.bin", &big);
    let out = s.dir.path().join("out.bin");
    let before = METRICS.sendfile_bytes_total();
    for (range, want) in [
        (None, &big[..]),
        (Some("100000-299999"), &big[100000..300000]),
    ] {
        let mut cmd = programs::curl(&curl, s.dir.path());
        cmd.arg("--http2-prior-knowledge")
            .args(["-w", "%{http_version} %{http_code}", "-o"])
            .arg(&out)
            .arg(format!("http://{}/big.bin", s.addr));
        if let Some(r) = range {
            cmd.args(["-r", r]);
        }
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let code = if range.is_some() { "2 206" } else { "2 200" };
        assert_eq!(String::from_utf8_lossy(&o.stdout), code);
        assert_eq!(std::fs::read(&out).unwrap(), want);
    }
    assert_eq!(METRICS.sendfile_bytes_total(), before);
}
