//! Bodies stream from the open file, and a file that ends early aborts the connection instead of
//! passing a short body off as a whole one.
use crate::common::*;

use std::io::{Read, Write};
use std::time::Duration;

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
    let mut c = connect(s.addr, Duration::from_secs(30));
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
