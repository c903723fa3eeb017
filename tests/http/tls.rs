//! TLS and HTTP/2: the server with a self-signed certificate made at test time, driven by curl
//! (`--http2` and `--http1.1` over TLS with `--cacert`, `--http2-prior-knowledge` on plain
//! TCP) and by an in-process hyper HTTP/2 client; the same ranges, multipart bodies and
//! conditionals over every protocol, each body compared with the file's bytes; and the
//! handshake timeout. (The binary's TLS: `process/tls.rs`.)
//!
//! Without curl (or a curl without HTTP2 and SSL), its tests say "skipped"; with `CI` set they
//! fail instead.

use crate::common::curl::{curl, Curl};
use crate::common::multipart;
use crate::common::tls::{self_signed, CertFiles};
use crate::common::{etag_of, pattern, Server};

use std::io::Read;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rangeserve::transport::tls::Tls;

/// Larger than every buffer on the way (hyper's per-stream send buffer, the HTTP/2 flow-control
/// windows, the server's read chunk), so bodies cross many frames and window updates.
const BIG: usize = 3 * 1024 * 1024 + 12345;

/// A temporary directory holding a fresh certificate and key.
fn certs() -> (tempfile::TempDir, CertFiles) {
    let dir = tempfile::tempdir().unwrap();
    let files = self_signed(dir.path());
    (dir, files)
}

/// The in-process server over TLS with `files`.
fn tls_server(files: &CertFiles) -> Server {
    let tls = Tls::load(&files.cert, &files.key).unwrap();
    Server::start_with(move |c| c.tls = Some(tls))
}

/// Full body, a single range, a multipart range, If-None-Match, If-Range and 416: all with
/// `args` (the protocol), all answered over `version`, every body compared with the file.
fn same_semantics(curl: &Curl, server: &Server, args: &[&str], base: &str, version: &str) {
    let data = pattern(BIG);
    server.file("dir/data.bin", &data);
    let len = data.len();
    let url = format!("{base}/dir/data.bin");
    let at = |what: &str| format!("{args:?} {what}");

    let full = curl.get(args, &url, &[]);
    assert_eq!(full.version, version, "{}", at("full"));
    assert_eq!(full.status, 200, "{}", at("full"));
    assert_eq!(full.header("content-length"), Some(&*len.to_string()));
    assert_eq!(full.header("accept-ranges"), Some("bytes"));
    assert!(full.body == data, "{}: body differs", at("full"));
    let etag = full.header("etag").expect("an ETag").to_string();
    assert_eq!(etag, etag_of(&data));

    // One range, across the server's read chunks and the HTTP/2 windows.
    let (first, last) = (100_000, 2_500_000);
    let one = curl.get(args, &url, &[("Range", &format!("bytes={first}-{last}"))]);
    assert_eq!((one.version.as_str(), one.status), (version, 206));
    assert_eq!(
        one.header("content-range"),
        Some(&*format!("bytes {first}-{last}/{len}"))
    );
    assert_eq!(
        one.header("content-length"),
        Some(&*(last - first + 1).to_string())
    );
    assert!(one.body == data[first..=last], "{}: 206 body", at("range"));

    // Several ranges: multipart/byteranges, parts in the order asked, each the right slice.
    let want = [(0, 9), (50_000, 50_009), (len - 5, len - 1)];
    let multi = curl.get(args, &url, &[("Range", "bytes=0-9,50000-50009,-5")]);
    assert_eq!((multi.version.as_str(), multi.status), (version, 206));
    assert_eq!(
        multi.header("content-length"),
        Some(&*multi.body.len().to_string())
    );
    let ctype = multi.header("content-type").unwrap();
    let parts = multipart::parse(&multi.body, &multipart::boundary_of(ctype));
    assert_eq!(parts.len(), want.len(), "{}", at("multipart"));
    for (part, (a, b)) in parts.iter().zip(want) {
        assert_eq!(
            part.content_range.as_deref(),
            Some(&*format!("bytes {a}-{b}/{len}"))
        );
        assert_eq!(
            part.content_type.as_deref(),
            Some("application/octet-stream")
        );
        assert!(
            part.body == data[a..=b],
            "{}: part {a}-{b}",
            at("multipart")
        );
    }

    // If-None-Match with the current ETag: 304, no body, the validator repeated.
    let not_modified = curl.get(args, &url, &[("If-None-Match", &etag)]);
    assert_eq!(
        (not_modified.version.as_str(), not_modified.status),
        (version, 304)
    );
    assert_eq!(not_modified.header("etag"), Some(&*etag));
    assert!(not_modified.body.is_empty());

    // If-Range with another ETag: the range is ignored, the whole file is sent (RFC 9110 §13.1.5).
    let stale = curl.get(
        args,
        &url,
        &[("Range", "bytes=0-9"), ("If-Range", "\"not-this-one\"")],
    );
    assert_eq!((stale.version.as_str(), stale.status), (version, 200));
    assert_eq!(stale.header("content-range"), None);
    assert!(
        stale.body == data,
        "{}: If-Range mismatch body",
        at("if-range")
    );

    // A range past the end: 416 with the current length.
    let past = curl.get(args, &url, &[("Range", &format!("bytes={len}-"))]);
    assert_eq!((past.version.as_str(), past.status), (version, 416));
    assert_eq!(
        past.header("content-range"),
        Some(&*format!("bytes */{len}"))
    );
}

#[test]
fn curl_http2_over_tls_ranges_multipart_conditionals() {
    let (_d, files) = certs();
    let Some(curl) = curl(&files.cert) else {
        return;
    };
    let server = tls_server(&files);
    let base = format!("https://localhost:{}", server.addr.port());
    same_semantics(&curl, &server, &["--http2"], &base, "2");
    // By IP address too (the certificate names 127.0.0.1).
    let base = format!("https://127.0.0.1:{}", server.addr.port());
    let got = curl.get(&["--http2"], &format!("{base}/dir/data.bin"), &[]);
    assert_eq!((got.version.as_str(), got.status), ("2", 200));
}

#[test]
fn curl_http1_1_over_tls_ranges_multipart_conditionals() {
    let (_d, files) = certs();
    let Some(curl) = curl(&files.cert) else {
        return;
    };
    let server = tls_server(&files);
    let base = format!("https://localhost:{}", server.addr.port());
    same_semantics(&curl, &server, &["--http1.1"], &base, "1.1");
}

#[test]
fn curl_h2c_prior_knowledge_on_plain_tcp_ranges_multipart_conditionals() {
    let (_d, files) = certs();
    let Some(curl) = curl(&files.cert) else {
        return;
    };
    let server = Server::start();
    let base = format!("http://127.0.0.1:{}", server.addr.port());
    same_semantics(&curl, &server, &["--http2-prior-knowledge"], &base, "2");
    // Plain HTTP/1.1 is still served on the same listener.
    same_semantics(&curl, &server, &["--http1.1"], &base, "1.1");
}

#[test]
fn a_certificate_the_client_does_not_trust_is_refused_by_curl() {
    // The check that --cacert is what makes the other tests pass: another certificate fails.
    let (_d, files) = certs();
    let (_d2, other) = certs();
    let Some(curl) = curl(&other.cert) else {
        return;
    };
    let server = tls_server(&files);
    server.file("f", b"x");
    let out = curl
        .command()
        .args(["--max-time", "30"])
        .arg(format!("https://localhost:{}/f", server.addr.port()))
        .output()
        .unwrap();
    // 60: peer certificate cannot be authenticated with given CA certificates.
    assert_eq!(out.status.code(), Some(60), "{out:?}");
}

#[test]
fn http2_header_list_over_the_limit_is_431() {
    let (_d, files) = certs();
    let Some(curl) = curl(&files.cert) else {
        return;
    };
    let server = tls_server(&files);
    server.file("f", b"x");
    let url = format!("https://localhost:{}/f", server.addr.port());
    let just_under = "a".repeat(8 * 1024);
    let ok = curl.get(&["--http2"], &url, &[("X-Long", &just_under)]);
    assert_eq!((ok.version.as_str(), ok.status), ("2", 200));
    let over = "a".repeat(rangeserve::transport::MAX_BUF + 1);
    let refused = curl.get(&["--http2"], &url, &[("X-Long", &over)]);
    assert_eq!(
        (refused.version.as_str(), refused.status),
        ("2", 431),
        "{refused:?}"
    );
}

// ------------------------------------------------------------------------------------------
// In-process clients (rustls + hyper)

fn client_config(files: &CertFiles, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from(
            files.cert_der.clone(),
        ))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

async fn tls_connect(
    addr: std::net::SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .unwrap()
}

/// Over TLS, too, the HTTP/1.1 fast path is invisible: two servers over the same root, with it
/// and without it (hyper serves everything), are sent the same bytes over TLS (ALPN
/// `http/1.1`, and no ALPN at all) and must send back the same bytes, up to `date:` lines and
/// multipart boundaries: pipelines of simple requests, a request hyper has to serve mid-way,
/// a malformed head, and an HTTP/2 preface after an HTTP/1.1 response (RFC 9113 §3.4: too
/// late, so not HTTP/2).
#[tokio::test]
async fn the_fast_path_over_tls_answers_what_hyper_answers() {
    use crate::equivalence::{normalise, req, simple_requests};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (_d, files) = certs();
    let tls = Tls::load(&files.cert, &files.key).unwrap();
    let fast = Server::start_with(move |c| {
        c.tls = Some(tls);
        c.fast_path = true;
    });
    let tls = Tls::load(&files.cert, &files.key).unwrap();
    let hyper = Server::start_over(&fast.root, move |c| {
        c.tls = Some(tls);
        c.fast_path = false;
    });
    let data = pattern(100_000);
    fast.file("f.bin", &data);
    fast.file("a.txt", b"hello, world\n");
    fast.file("dir/x.txt", b"x\n");
    let close = req("GET", "/a.txt", "Connection: close\r\n");
    // Beyond the usual: a range starting at the end (416) and a whole body.
    let simple = simple_requests(&etag_of(&data))
        + &req("GET", "/f.bin", "Range: bytes=100000-\r\n")
        + &req("GET", "/f.bin", "");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "simple requests, then close",
            (simple.clone() + &close).into_bytes(),
        ),
        (
            "a POST with a body mid-way",
            (simple.clone()
                + &req("POST", "/a.txt", "Content-Length: 11\r\n")
                + "hello world"
                + &simple
                + &close)
                .into_bytes(),
        ),
        (
            "a malformed head mid-way",
            (simple.clone() + "GET /a.txt HTTP/1.1\r\nBad Header\r\n\r\n" + &close).into_bytes(),
        ),
        (
            "the HTTP/2 preface after a response",
            (req("GET", "/a.txt", "") + "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").into_bytes(),
        ),
    ];
    let talk = |addr, alpn: &'static [&'static [u8]], bytes: Vec<u8>| {
        let cfg = client_config(&files, alpn);
        async move {
            let mut s = tls_connect(addr, cfg).await;
            s.write_all(&bytes).await.unwrap();
            s.flush().await.unwrap();
            let mut got = Vec::new();
            // A reset after the last response (bytes of ours left unread) ends it like a close.
            let read = s.read_to_end(&mut got);
            let _ = tokio::time::timeout(Duration::from_secs(10), read)
                .await
                .expect("closed");
            got
        }
    };
    let mut differed = Vec::new();
    const HTTP11: &[&[u8]] = &[b"http/1.1"];
    for alpn in [HTTP11, &[]] {
        for (name, bytes) in &cases {
            let f = talk(fast.addr, alpn, bytes.clone()).await;
            let h = talk(hyper.addr, alpn, bytes.clone()).await;
            assert!(
                f.starts_with(b"HTTP/1.1 200 OK\r\n"),
                "{name}: {:?}",
                String::from_utf8_lossy(&f)
            );
            if normalise(&f) != normalise(&h) {
                differed.push(format!(
                    "{name} (ALPN {alpn:?}):\n fast: {:?}\n hyper: {:?}",
                    String::from_utf8_lossy(&f),
                    String::from_utf8_lossy(&h)
                ));
            }
        }
    }
    assert!(differed.is_empty(), "{}", differed.join("\n"));
}

#[tokio::test]
async fn alpn_offers_h2_then_http1_1() {
    let (_d, files) = certs();
    let server = tls_server(&files);
    let both = tls_connect(server.addr, client_config(&files, &[b"http/1.1", b"h2"])).await;
    // The server's preference wins when the client offers both.
    assert_eq!(both.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let h1 = tls_connect(server.addr, client_config(&files, &[b"http/1.1"])).await;
    assert_eq!(h1.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let none = tls_connect(server.addr, client_config(&files, &[])).await;
    assert_eq!(none.get_ref().1.alpn_protocol(), None);
}

#[tokio::test]
async fn hyper_http2_client_many_streams_on_one_tls_connection() {
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let (_d, files) = certs();
    let server = tls_server(&files);
    let data = pattern(BIG);
    server.file("big.bin", &data);
    let tls = tls_connect(server.addr, client_config(&files, &[b"h2"])).await;
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let url = format!("https://localhost:{}/big.bin", server.addr.port());
    // Twenty ranges at once, each on its own stream of the same connection.
    let ranges: Vec<(usize, usize)> = (0..20)
        .map(|i| (i * 150_001 % BIG, (i * 150_001 % BIG + 99_999).min(BIG - 1)))
        .collect();
    let tasks: Vec<_> = ranges
        .iter()
        .map(|&(a, b)| {
            let mut send = send.clone();
            let req = http::Request::get(&url)
                .header("range", format!("bytes={a}-{b}"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            tokio::spawn(async move {
                let resp = send.send_request(req).await.unwrap();
                let (parts, body) = resp.into_parts();
                (parts, body.collect().await.unwrap().to_bytes())
            })
        })
        .collect();
    for (task, (a, b)) in tasks.into_iter().zip(ranges) {
        let (parts, body) = task.await.unwrap();
        assert_eq!(parts.version, http::Version::HTTP_2);
        assert_eq!(parts.status, 206);
        assert_eq!(
            parts.headers["content-range"],
            format!("bytes {a}-{b}/{BIG}").as_str()
        );
        assert!(body[..] == data[a..=b], "range {a}-{b}");
    }
    // And the whole file on the same connection.
    let req = http::Request::get(&url)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.clone().send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(body[..] == data[..]);
    // Close the connection before the server stops (it would wait for it).
    drop(send);
    conn.await.unwrap().unwrap();
}

#[test]
fn a_silent_client_neither_blocks_others_nor_stays_past_the_handshake_timeout() {
    let (_d, files) = certs();
    let server = tls_server(&files);
    server.file("f", b"hello");
    let started = Instant::now();
    let mut silent = TcpStream::connect(server.addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    // Another client is served meanwhile (the handshake is not in the accept loop).
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut tls = tls_connect(server.addr, client_config(&files, &[b"http/1.1"])).await;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        tls.write_all(b"GET /f HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        tls.read_to_end(&mut out).await.unwrap();
        assert!(out.starts_with(b"HTTP/1.1 200 OK\r\n"), "{out:?}");
        assert!(out.ends_with(b"\r\n\r\nhello"));
    });
    assert!(started.elapsed() < Duration::from_secs(5));
    // The silent one is closed once the handshake timeout has passed, not before.
    let mut buf = [0u8; 1];
    let n = silent.read(&mut buf).unwrap_or(0);
    let waited = started.elapsed();
    assert_eq!(
        n, 0,
        "the server sent something to a client that said nothing"
    );
    assert!(
        waited >= rangeserve::transport::tls::HANDSHAKE_TIMEOUT - Duration::from_millis(500)
            && waited < rangeserve::transport::tls::HANDSHAKE_TIMEOUT + Duration::from_secs(15),
        "closed after {waited:?}"
    );
}
