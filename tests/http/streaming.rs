//! Bodies stream from the open file, and a file that ends early aborts the connection instead of
//! passing a short body off as a whole one.
use crate::common::*;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Read until the end of the response head; return the head and the body bytes already read.
fn read_head(s: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed before the response head");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8(buf[..i].to_vec()).unwrap();
            return (head, buf[i + 4..].to_vec());
        }
    }
}

#[test]
fn a_file_truncated_mid_body_aborts_the_connection() {
    truncated_mid_body(true);
}

#[test]
fn a_file_truncated_mid_body_aborts_the_connection_without_sendfile() {
    truncated_mid_body(false);
}

/// With `sendfile`, the kernel meets the end of the file; without, a read does.
fn truncated_mid_body(sendfile: bool) {
    let s = Server::start_with(|c| c.sendfile = sendfile);
    let len = 64 << 20;
    let path = s.file("big.bin", &pattern(len));
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (head, mut body) = read_head(&mut c);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains(&format!("content-length: {len}")), "{head}");
    // The server is now blocked on a full socket, far from the end of a 64 MiB body.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    // The connection must end (EOF or reset), not hang until the read timeout.
    if let Err(e) = c.read_to_end(&mut body) {
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    }
    assert!(
        body.len() < len,
        "a truncated file must not produce a complete body ({} bytes)",
        body.len()
    );
    // What did arrive is the file's real prefix.
    assert_eq!(body, pattern(len)[..body.len()]);
}

#[test]
fn a_large_body_streams_whole_and_exact() {
    let s = Server::start();
    let data = pattern(20 << 20);
    s.file("f.bin", &data);
    let r = s.get("/f.bin", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(sha256_hex(&r.body), sha256_hex(&data));
    assert_eq!(r.body, data);
}
