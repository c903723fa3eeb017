//! Files that change under the server while a download is in flight. A response either carries
//! exactly the bytes of the version its headers (ETag, Content-Length) describe, or the
//! connection is aborted so the client knows to retry; new requests see the new version.
use crate::common::*;

use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

const LEN: usize = 64 << 20;

/// A download of `/f.bin` that has started: the head is read, the server is blocked on a full
/// socket far from the end of the body.
struct Download {
    conn: TcpStream,
    head: String,
    body: Vec<u8>,
}

fn start_download(s: &Server) -> Download {
    let mut conn = connect(s.addr, Duration::from_secs(60));
    conn.write_all(b"GET /f.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (head, body) = read_head(&mut conn);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    Download { conn, head, body }
}

impl Download {
    /// Read to the end; the body received (an abort shows as EOF or a reset before the end).
    fn finish(mut self) -> Vec<u8> {
        let mut rest = Vec::new();
        if let Err(e) = self.conn.read_to_end(&mut rest) {
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
        }
        self.body.extend_from_slice(&rest);
        self.body
    }

    fn etag(&self) -> String {
        Response::parse_head(&self.head)
            .header("etag")
            .unwrap()
            .to_string()
    }
}

fn old_and_new() -> (Vec<u8>, Vec<u8>) {
    let old = pattern(LEN);
    let new: Vec<u8> = old.iter().map(|b| b ^ 0x5a).collect();
    (old, new)
}

/// Overwrite the file's bytes where they are (same inode, same size).
fn rewrite_in_place(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.write_all(bytes).unwrap();
    f.sync_data().unwrap();
}

fn in_place_rewrite_aborts(sendfile: bool) {
    let s = Server::start_with(|c| c.sendfile = sendfile);
    let (old, new) = old_and_new();
    let path = s.file("f.bin", &old);
    let d = start_download(&s);
    let old_etag = d.etag();
    rewrite_in_place(&path, &new);
    let body = d.finish();
    assert!(
        body.len() < LEN,
        "a download whose file was rewritten in place must be aborted, not completed"
    );
    // A new request sees the new version under a new ETag (the hash of the new bytes).
    let r = s.get("/f.bin", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("etag").unwrap(), etag_of(&new));
    assert_ne!(r.header("etag").unwrap(), old_etag);
    assert!(r.body == new);
    // A resume with the old ETag gets the whole new file, never a 206 of mixed bytes.
    let r = s.get(
        "/f.bin",
        &[("Range", "bytes=1000-"), ("If-Range", &old_etag)],
    );
    assert_eq!(r.status, 200);
    assert!(r.body == new);
}

#[test]
fn a_file_rewritten_in_place_mid_download_aborts_it() {
    in_place_rewrite_aborts(true);
}

#[test]
fn a_file_rewritten_in_place_mid_download_aborts_it_without_sendfile() {
    in_place_rewrite_aborts(false);
}

#[test]
fn a_file_replaced_by_rename_mid_download_completes_with_the_old_bytes() {
    let s = Server::start();
    let (old, new) = old_and_new();
    let path = s.file("f.bin", &old);
    let d = start_download(&s);
    assert_eq!(d.etag(), etag_of(&old));
    let tmp = s.root.join("f.bin.tmp");
    std::fs::write(&tmp, &new).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    // New requests: the new file, its own ETag.
    let r = s.get("/f.bin", &[]);
    assert_eq!(r.header("etag").unwrap(), etag_of(&new));
    assert!(r.body == new);
    // The download in flight reads the file it opened: the old bytes, whole.
    let body = d.finish();
    assert_eq!(body.len(), LEN);
    assert!(body == old);
}

#[test]
fn a_file_deleted_mid_download_completes_and_then_is_gone() {
    let s = Server::start();
    let (old, _) = old_and_new();
    let path = s.file("f.bin", &old);
    let d = start_download(&s);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(s.get("/f.bin", &[]).status, 404);
    let body = d.finish();
    assert_eq!(body.len(), LEN);
    assert!(body == old);
}

#[test]
fn a_small_file_rewritten_between_requests_never_keeps_its_old_etag() {
    let s = Server::start();
    let path = s.file("s.txt", b"first version");
    let r = s.get("/s.txt", &[]);
    assert_eq!(r.header("etag").unwrap(), etag_of(b"first version"));
    // Same size, rewritten in place (same inode), mtime set back to the old one: ctime differs.
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    rewrite_in_place(&path, b"other version");
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let r = s.get("/s.txt", &[]);
    assert_eq!(r.body, b"other version");
    assert_eq!(r.header("etag").unwrap(), etag_of(b"other version"));
}
