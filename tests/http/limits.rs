//! Slow, greedy and broken clients, over real sockets: the header and keep-alive deadlines, the
//! write-stall timeout, the connection cap, the header count, and bodies sent with GET.
use crate::common::*;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// Read one response (head and Content-Length body, [`read_one`]) from a keep-alive
/// connection: all the connection has sent so far, so what comes next is read afresh.
fn read_response(s: &mut TcpStream) -> Response {
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = Vec::new();
    let r = read_one(s, &mut buf, false);
    assert!(buf.is_empty(), "bytes after the response: {buf:?}");
    r
}

/// Open descriptors of this process (the in-process server's included) whose target is
/// `target` exactly.
fn fds_to(target: &str) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|l| l.to_str() == Some(target))
        .count()
}

#[test]
fn a_partial_head_is_cut_after_header_read_timeout_while_others_are_served() {
    let s = Server::start_with(|c| c.header_read_timeout = Duration::from_secs(1));
    let data = pattern(1000);
    s.file("f.bin", &data);
    let mut slow = TcpStream::connect(s.addr).unwrap();
    let started = Instant::now();
    slow.write_all(b"GET /f.bin HTTP/1.1\r\nHost: te").unwrap();
    // Meanwhile another client is served.
    let r = s.get("/f.bin", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, data);
    let (got, _) = wait_closed(&mut slow, Duration::from_secs(10));
    let took = started.elapsed();
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    assert!(took >= Duration::from_millis(900), "closed after {took:?}");
    assert!(took < Duration::from_secs(5), "closed after {took:?}");
}

#[test]
fn a_head_that_keeps_trickling_is_cut_at_header_read_timeout_from_its_first_byte() {
    // Slowloris: bytes keep arriving (one every 100 ms), but the head never ends. The deadline
    // runs from the head's first byte, so the server closes after ~1 s however busy the
    // connection looks.
    let s = Server::start_with(|c| c.header_read_timeout = Duration::from_secs(1));
    s.file("f.bin", b"abc");
    let mut slow = TcpStream::connect(s.addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let started = Instant::now();
    let head = b"GET /f.bin HTTP/1.1\r\nX-Long: ";
    let mut sent = 0usize;
    let closed_after = loop {
        let took = started.elapsed();
        assert!(took < Duration::from_secs(10), "still open after {took:?}");
        let byte = head.get(sent).copied().unwrap_or(b'a');
        if slow.write_all(&[byte]).is_err() {
            break took;
        }
        sent += 1;
        // Waiting for the reply (at most 100 ms) paces the bytes.
        let mut buf = [0u8; 1024];
        match slow.read(&mut buf) {
            Ok(0) => break started.elapsed(),
            Ok(n) => panic!("a reply to an unfinished head: {:?}", &buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break started.elapsed(),
            Err(_) => {} // timed out: still open
        }
    };
    assert!(sent >= 5, "only {sent} bytes went out");
    assert!(
        closed_after >= Duration::from_millis(900),
        "closed after {closed_after:?}"
    );
    assert!(
        closed_after < Duration::from_secs(5),
        "closed after {closed_after:?}"
    );
}

#[test]
fn a_connection_that_sends_nothing_is_cut_after_header_read_timeout() {
    let s = Server::start_with(|c| c.header_read_timeout = Duration::from_secs(1));
    let mut idle = TcpStream::connect(s.addr).unwrap();
    let (got, took) = wait_closed(&mut idle, Duration::from_secs(10));
    assert!(got.is_empty());
    assert!(took < Duration::from_secs(5), "closed after {took:?}");
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_keepalive_timeout_not_before() {
    // Keep-alive longer than the header timeout: the idle gap gets the keep-alive time.
    let s = Server::start_with(|c| {
        c.header_read_timeout = Duration::from_secs(1);
        c.keepalive_timeout = Duration::from_secs(3);
    });
    let data = pattern(5000);
    s.file("f.bin", &data);
    let mut c = TcpStream::connect(s.addr).unwrap();
    for _ in 0..2 {
        c.write_all(b"GET /f.bin HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let r = read_response(&mut c);
        assert_eq!(r.status, 200);
        assert_eq!(sha256_hex(&r.body), sha256_hex(&data));
    }
    let (got, took) = wait_closed(&mut c, Duration::from_secs(15));
    assert!(got.is_empty());
    assert!(took >= Duration::from_millis(2500), "closed after {took:?}");
    assert!(took < Duration::from_secs(8), "closed after {took:?}");
}

#[test]
fn keepalive_timeout_zero_closes_after_each_response() {
    let s = Server::start_with(|c| c.keepalive_timeout = Duration::ZERO);
    s.file("f.bin", b"abc");
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.write_all(b"GET /f.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let r = read_response(&mut c);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    let (got, took) = wait_closed(&mut c, Duration::from_secs(5));
    assert!(got.is_empty());
    assert!(took < Duration::from_secs(2), "{took:?}");
}

/// Start a download of `path` (a 64 MiB file), read its head and some body, then make the
/// server's handle the only one left: the file is removed, and a request for it drops the
/// handle cache's entry. Returns the connection and the path its descriptor now shows.
fn start_download_and_unlink(s: &Server, path: &Path) -> (TcpStream, String) {
    let mut c = connect(s.addr, Duration::from_secs(30));
    c.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut first = vec![0u8; 64 * 1024];
    c.read_exact(&mut first).unwrap();
    assert!(first.starts_with(b"HTTP/1.1 200 OK\r\n"));
    std::fs::remove_file(path).unwrap();
    assert_eq!(s.get("/big.bin", &[]).status, 404);
    (c, format!("{} (deleted)", path.display()))
}

#[test]
fn a_client_that_stops_reading_is_dropped_after_send_timeout_and_the_file_closed() {
    let s = Server::start_with(|c| c.send_timeout = Duration::from_secs(1));
    let data = pattern(64 << 20);
    let path = s.file("big.bin", &data);
    let (mut c, deleted) = start_download_and_unlink(&s, &path);
    assert_eq!(fds_to(&deleted), 1, "the download holds the file");
    // The client reads nothing more: the server's writes stall, and after send_timeout it
    // drops the response, and the file with it.
    wait_until(
        "file closed after send_timeout",
        Duration::from_secs(15),
        || fds_to(&deleted) == 0,
    );
    // The client got a cut response: the connection ends before the 64 MiB.
    let (rest, _) = wait_closed(&mut c, Duration::from_secs(15));
    assert!(rest.len() + 64 * 1024 < data.len(), "{} bytes", rest.len());
}

#[test]
fn a_client_that_disconnects_mid_body_frees_the_file_at_once() {
    // The default send_timeout (60 s) is far beyond the bound polled here.
    let s = Server::start();
    let data = pattern(64 << 20);
    let path = s.file("big.bin", &data);
    let (c, deleted) = start_download_and_unlink(&s, &path);
    assert_eq!(fds_to(&deleted), 1, "the download holds the file");
    drop(c);
    let took = wait_until(
        "file closed after disconnect",
        Duration::from_secs(5),
        || fds_to(&deleted) == 0,
    );
    assert!(took < Duration::from_secs(5));
}

#[test]
fn too_many_header_fields_get_431() {
    let s = Server::start_with(|c| c.max_headers = 5);
    s.file("f.bin", b"abc");
    // `get` adds Host and Connection: five fields, allowed; then six, refused.
    let ok = s.get("/f.bin", &[("A", "1"), ("B", "2"), ("C", "3")]);
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body, b"abc");
    let too_many = s.get("/f.bin", &[("A", "1"), ("B", "2"), ("C", "3"), ("D", "4")]);
    assert_eq!(too_many.status, 431);
}

#[test]
fn a_get_with_a_small_body_is_served_and_the_body_discarded() {
    let s = Server::start();
    let data = pattern(3000);
    s.file("f.bin", &data);
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.write_all(b"GET /f.bin HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
        .unwrap();
    let r = read_response(&mut c);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, data);
    // The body was discarded, not taken for the next request: the connection goes on.
    c.write_all(b"GET /f.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=0-9\r\n\r\n")
        .unwrap();
    let r = read_response(&mut c);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &data[..10]);
}

#[test]
fn a_get_whose_body_trickles_is_answered_then_closed() {
    let s = Server::start();
    let data = pattern(3000);
    s.file("f.bin", &data);
    for framing in [
        "Content-Length: 1000000\r\n\r\nonly a little",
        "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    ] {
        let mut c = TcpStream::connect(s.addr).unwrap();
        c.write_all(format!("GET /f.bin HTTP/1.1\r\nHost: t\r\n{framing}").as_bytes())
            .unwrap();
        let r = read_response(&mut c);
        assert_eq!(r.status, 200);
        assert_eq!(r.body, data);
        // The rest of the body never comes: the server does not wait for it.
        let (got, took) = wait_closed(&mut c, Duration::from_secs(5));
        assert!(
            got.is_empty(),
            "{framing}: {:?}",
            String::from_utf8_lossy(&got)
        );
        assert!(took < Duration::from_secs(2), "{framing}: {took:?}");
    }
}
