//! Graceful shutdown of the binary: SIGTERM stops new connections at once, lets an in-flight
//! response finish within the grace period, and the process exits 0; a stalled client cannot
//! hold it past the grace period.

use crate::common::process::*;
use crate::common::{connect, pattern, read_head, wait_until, Response};

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Large enough that the kernel's socket buffers (a few MiB on loopback) cannot hold the whole
/// response, small enough that the server's first SHA-256 pass stays quick in a debug build.
const BIG: usize = 16 * 1024 * 1024;

/// Start the binary serving `site` with this grace period.
fn start_server(site: &Site, grace_secs: u64) -> Running {
    site.serve(|c| {
        c.arg("--shutdown-grace")
            .arg(grace_secs.to_string())
            .arg("--log-level")
            .arg("info");
    })
}

/// Send `GET path` (keep-alive) and read until the response head is in; returns the stream,
/// the Content-Length and the body bytes that came with the head.
fn start_download(port: u16, path: &str) -> (TcpStream, usize, Vec<u8>) {
    let mut s = connect(addr(port), Duration::from_secs(10));
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let (head, body) = read_head(&mut s);
    let r = Response::parse_head(&head);
    assert_eq!(r.status, 200);
    let cl = r
        .header("content-length")
        .expect("Content-Length")
        .parse()
        .unwrap();
    (s, cl, body)
}

#[test]
fn sigterm_lets_the_in_flight_response_finish() {
    let site = Site::empty();
    let root = site.root();
    let data = pattern(BIG);
    std::fs::write(root.join("big.bin"), &data).unwrap();
    let mut run = start_server(&site, 10);

    let (mut s, len, mut body) = start_download(run.port, "/big.bin");
    assert_eq!(len, BIG);
    // A little of the body, then stop reading: the socket buffers fill and the server stalls.
    let mut chunk = vec![0u8; 65536];
    while body.len() < 65536 {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0);
        body.extend_from_slice(&chunk[..n]);
    }
    assert!(body.len() < BIG / 2);
    // The response is still in flight: its access line (written when the body ends) is absent.
    assert!(
        !run.log().contains("/big.bin"),
        "response already finished before SIGTERM: {}",
        run.log()
    );

    run.sigterm();
    let signalled = Instant::now();
    wait_until(
        "new connections refused after SIGTERM",
        Duration::from_secs(3),
        || refused(run.port),
    );
    assert!(
        run.child.try_wait().unwrap().is_none(),
        "exited while a response was in flight"
    );

    // The rest of the body arrives, byte for byte.
    let mut rest = vec![0u8; len - body.len()];
    s.read_exact(&mut rest).unwrap();
    body.extend_from_slice(&rest);
    assert!(body == data, "body differs from the file");
    // The keep-alive connection is then closed by the server.
    let mut after = Vec::new();
    s.read_to_end(&mut after).unwrap();
    assert!(after.is_empty(), "{} bytes after the body", after.len());

    // Exit 0 as soon as the response is done, well before the 10 s grace period.
    let st = run.wait_exit(Duration::from_secs(8));
    assert_eq!(st.code(), Some(0), "{st}");
    assert!(signalled.elapsed() < Duration::from_secs(8));
    let log = run.log();
    let line = log
        .lines()
        .find(|l| l.contains("/big.bin"))
        .unwrap_or_else(|| panic!("no access line: {log}"));
    assert!(line.contains(&format!("bytes={BIG}")), "{line}");
    assert!(line.contains("complete=true"), "{line}");
}

#[test]
fn stalled_client_cannot_hold_the_server_past_the_grace_period() {
    let site = Site::empty();
    let root = site.root();
    let data = pattern(BIG);
    std::fs::write(root.join("big.bin"), &data).unwrap();
    let mut run = start_server(&site, 1);

    // Read the head (so the response is surely in flight), then never read again.
    let (mut s, len, mut body) = start_download(run.port, "/big.bin");
    assert_eq!(len, BIG);

    run.sigterm();
    let signalled = Instant::now();
    let st = run.wait_exit(Duration::from_secs(5));
    let took = signalled.elapsed();
    assert_eq!(st.code(), Some(0), "{st}");
    // It waited for the grace period (the response could not finish), then gave up.
    assert!(took >= Duration::from_millis(900), "exited after {took:?}");
    assert!(took < Duration::from_secs(4), "exited after {took:?}");

    // The client sees a truncated body (never a complete one), and what it got is right.
    let _ = s.read_to_end(&mut body);
    assert!(body.len() < len, "got the whole body");
    assert!(body[..] == data[..body.len()], "received bytes differ");
}

#[test]
fn idle_keep_alive_connections_are_closed_at_once() {
    let site = Site::empty();
    let root = site.root();
    std::fs::write(root.join("a.txt"), b"hello").unwrap();
    // A long grace period: only closing the idle connection lets the server exit early.
    let mut run = start_server(&site, 30);

    let (mut s, len, mut body) = start_download(run.port, "/a.txt");
    assert_eq!(len, 5);
    while body.len() < len {
        let mut chunk = [0u8; 64];
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0);
        body.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(body, b"hello");
    // A second request on the connection: its wait for shutdown, armed on the first idle read,
    // has to outlive the requests that follow.
    s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut second = Vec::new();
    while !(second.ends_with(b"\r\n\r\nhello")) {
        let mut chunk = [0u8; 256];
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&second));
        second.extend_from_slice(&chunk[..n]);
    }
    assert!(second.starts_with(b"HTTP/1.1 200"));

    // The connection is idle (keep-alive, nothing in flight) when the signal comes.
    run.sigterm();
    let signalled = Instant::now();
    let mut after = Vec::new();
    s.read_to_end(&mut after).unwrap();
    assert!(after.is_empty(), "{} bytes after the response", after.len());
    let st = run.wait_exit(Duration::from_secs(10));
    assert_eq!(st.code(), Some(0), "{st}");
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "the idle connection held shutdown for {:?}",
        signalled.elapsed()
    );
}
