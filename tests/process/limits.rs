//! Limits of the binary: the connection cap and its log lines, and limit values it refuses to
//! start with. (Slow and greedy clients: `http/limits.rs`.)

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::process::*;
use crate::common::{wait_closed, wait_until, Response};

#[test]
fn max_connections_closes_the_extra_connection_and_logs_once() {
    let site = Site::empty();
    let root = site.root();
    std::fs::write(root.join("f.txt"), b"hello").unwrap();
    let run = site.serve(|c| {
        c.arg("--max-connections").arg("1");
    });
    // The harness's readiness probe may hold the one slot a moment: retry until served.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut held = loop {
        let mut c = TcpStream::connect(addr(run.port)).unwrap();
        c.write_all(b"GET /f.txt HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut first = [0u8; 1];
        if matches!(c.read(&mut first), Ok(1)) {
            break c;
        }
        assert!(Instant::now() < deadline, "never admitted");
        std::thread::sleep(Duration::from_millis(20));
    };
    // What the log says from here on (the probe may have made its own lines).
    let before = run.log().len();
    // The one slot is held (keep-alive): two more connections are closed unanswered.
    for _ in 0..2 {
        let mut extra = TcpStream::connect(addr(run.port)).unwrap();
        let _ = extra.write_all(b"GET /f.txt HTTP/1.1\r\nHost: t\r\n\r\n");
        let (got, _) = wait_closed(&mut extra, Duration::from_secs(5));
        assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    }
    // One line for the cap, not one per connection.
    let log = run.log()[before..].to_string();
    assert_eq!(
        log.matches("max_connections (1) reached").count(),
        1,
        "{log}"
    );
    assert!(log.contains("WARN"), "{log}");
    // The held connection ends; the next one is served and the way back is logged.
    held.write_all(b"GET /f.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    wait_closed(&mut held, Duration::from_secs(5));
    drop(held);
    let r = loop {
        let mut c = TcpStream::connect(addr(run.port)).unwrap();
        c.write_all(b"GET /f.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        let (raw, _) = wait_closed(&mut c, Duration::from_secs(5));
        if !raw.is_empty() {
            break Response::parse(&raw, false);
        }
        assert!(Instant::now() < deadline, "never admitted again");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"hello");
    wait_until("back-under line", Duration::from_secs(5), || {
        run.log()[before..]
            .contains("back under max_connections (1): accepting again (2 connections")
    });
}

#[test]
fn bad_limit_values_are_one_line_config_errors() {
    let site = Site::empty();
    for (flag, value, key) in [
        ("--header-read-timeout", "0", "header_read_timeout"),
        ("--send-timeout", "0", "send_timeout"),
        ("--max-connections", "0", "max_connections"),
        ("--max-headers", "0", "max_headers"),
        ("--max-headers", "100000", "max_headers"),
    ] {
        let err = config_error(site.path(), |c| {
            c.arg("--root").arg(site.root()).arg(flag).arg(value);
        });
        assert!(err.contains(key), "{flag} {value}: {err}");
    }
}

/// A burst of connections the server cannot accept at once waits in the kernel's queue: with
/// the server stopped (SIGSTOP), 300 connections all complete their handshake (std's and
/// tokio's backlog of 128 dropped the SYNs of the rest, which then connected a second later),
/// and each is served once it runs again.
#[test]
fn a_burst_of_connections_waits_in_the_listen_queue() {
    let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .map(|s| s.trim().parse().unwrap())
        .unwrap_or(4096);
    assert!(
        somaxconn >= 512,
        "net.core.somaxconn is {somaxconn}: this test needs 512"
    );
    let site = Site::empty();
    std::fs::write(site.root().join("f.txt"), b"hello").unwrap();
    let run = site.serve(|_| {});
    run.signal(libc::SIGSTOP);
    let mut conns = Vec::new();
    for i in 0..300 {
        // A dropped SYN is sent again after a second: a connection that takes that long was
        // not queued. (On a failure, dropping `run` kills the stopped server.)
        let c = TcpStream::connect_timeout(&addr(run.port), Duration::from_millis(900));
        let mut c = c.unwrap_or_else(|e| panic!("connection {i} not queued: {e}"));
        c.write_all(b"GET /f.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        conns.push(c);
    }
    run.signal(libc::SIGCONT);
    for mut c in conns {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).unwrap();
        let r = Response::parse(&got, false);
        assert_eq!((r.status, &r.body[..]), (200, &b"hello"[..]));
    }
}
