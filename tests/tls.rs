//! TLS and HTTP/2: the server with a self-signed certificate made at test time, driven by curl
//! (`--http2` and `--http1.1` over TLS with `--cacert`, `--http2-prior-knowledge` on plain
//! TCP) and by an in-process hyper HTTP/2 client; the same ranges, multipart bodies and
//! conditionals over every protocol, each body compared with the file's bytes. Then the
//! redirect listener, the handshake timeout, shutdown, and configuration errors.
//!
//! Without curl (or a curl without HTTP2 and SSL), its tests say "skipped"; with `CI` set they
//! fail instead.
mod common;
use common::multipart;
use common::process::{self, port_is_open, start, Running};
use common::tls::{self_signed, CertFiles};
use common::{pattern, Server};

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rangeserve::transport::tls::Tls;

/// Larger than every buffer on the way (hyper's per-stream send buffer, the HTTP/2 flow-control
/// windows, the server's read chunk), so bodies cross many frames and window updates.
const BIG: usize = 3 * 1024 * 1024 + 12345;

// ------------------------------------------------------------------------------------------
// curl

struct Curl {
    exe: PathBuf,
    /// Scratch: HOME, the header and body files of each run.
    dir: tempfile::TempDir,
    cacert: PathBuf,
}

/// What one curl run got.
#[derive(Debug)]
struct Got {
    /// `%{http_version}`: "2" or "1.1".
    version: String,
    status: u16,
    /// Lower-cased names, in order, of the last response (after any redirect).
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        let mut found = self.headers.iter().filter(|(k, _)| k == name);
        let v = found.next().map(|(_, v)| v.as_str());
        assert!(
            found.next().is_none(),
            "{name} sent twice: {:?}",
            self.headers
        );
        v
    }
}

static RUN: AtomicUsize = AtomicUsize::new(0);

/// curl, when installed with HTTP2 and TLS support; else "skipped" (or a failure under CI).
fn curl(cacert: &Path) -> Option<Curl> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("curl"))
            .find(|p| p.is_file())
    });
    let usable = found.filter(|exe| {
        let out = Command::new(exe).arg("-V").output();
        let text = out
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let features = text
            .lines()
            .find_map(|l| l.strip_prefix("Features:"))
            .unwrap_or("");
        let has = |f: &str| features.split_whitespace().any(|x| x == f);
        has("HTTP2") && has("SSL")
    });
    match usable {
        Some(exe) => Some(Curl {
            exe,
            dir: tempfile::tempdir().unwrap(),
            cacert: cacert.to_path_buf(),
        }),
        None if std::env::var_os("CI").is_some() => {
            panic!("curl with HTTP2 and SSL is not installed and CI is set (apt-get install curl)")
        }
        None => {
            eprintln!("skipped: curl with HTTP2 and SSL not installed");
            None
        }
    }
}

impl Curl {
    /// `curl ARGS URL` with these request headers; the last response.
    fn get(&self, args: &[&str], url: &str, headers: &[(&str, &str)]) -> Got {
        let n = RUN.fetch_add(1, Ordering::SeqCst);
        let head = self.dir.path().join(format!("head-{n}"));
        let body = self.dir.path().join(format!("body-{n}"));
        let mut c = Command::new(&self.exe);
        // -q first: no .curlrc.
        c.arg("-q")
            .args(["-sS", "--max-time", "60", "--cacert"])
            .arg(&self.cacert)
            .arg("-D")
            .arg(&head)
            .arg("-o")
            .arg(&body)
            .args(["-w", "%{http_version}"])
            .args(args);
        for (k, v) in headers {
            c.arg("-H").arg(format!("{k}: {v}"));
        }
        c.arg(url);
        for v in [
            "http_proxy",
            "https_proxy",
            "HTTPS_PROXY",
            "all_proxy",
            "ALL_PROXY",
            "no_proxy",
            "NO_PROXY",
            "CURL_HOME",
            "CURL_CA_BUNDLE",
            "SSL_CERT_FILE",
            "SSL_CERT_DIR",
        ] {
            c.env_remove(v);
        }
        c.env("HOME", self.dir.path());
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "curl {args:?} {url} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(std::fs::read(&head).unwrap()).unwrap();
        // One block per response (several after redirects): the last is the one that counts.
        let block = text
            .split("\r\n\r\n")
            .filter(|b| !b.trim().is_empty())
            .last()
            .expect("a response head");
        let mut lines = block.split("\r\n");
        let status_line = lines.next().unwrap();
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("status line {status_line:?}"));
        let headers = lines
            .map(|l| {
                let (k, v) = l.split_once(':').expect("name: value");
                (k.trim().to_ascii_lowercase(), v.trim().to_string())
            })
            .collect();
        Got {
            version: String::from_utf8(out.stdout).unwrap(),
            status,
            headers,
            body: std::fs::read(&body).unwrap_or_default(),
        }
    }
}

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
    assert_eq!(etag, format!("\"{}\"", common::sha256_hex(&data)));

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
    let out = Command::new(&curl.exe)
        .arg("-q")
        .args(["-sS", "--max-time", "30", "--cacert"])
        .arg(&other.cert)
        .arg(format!("https://localhost:{}/f", server.addr.port()))
        .env("HOME", curl.dir.path())
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

// ------------------------------------------------------------------------------------------
// The binary: redirect listener, shutdown, configuration errors

/// Wait until `cond` holds, at most `limit`.
fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "not after {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A connection to 127.0.0.1:`port` is refused: nothing listens there. (Not merely "does not
/// connect": a listener that no longer accepts still completes connections until its backlog is
/// full, and then lets them time out.)
fn refused(port: u16) -> bool {
    match TcpStream::connect_timeout(&process::addr(port), Duration::from_secs(2)) {
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionRefused,
        Ok(_) => false,
    }
}

/// The binary serving `root` over TLS, with its redirect listener on a free port (configured
/// in a config file, so the `[tls]` section is what is proven here).
fn tls_binary(dir: &Path, files: &CertFiles, extra: &[&str]) -> (Running, u16) {
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let redirect_port = process::free_port();
    let cfg = dir.join("rangeserve.toml");
    std::fs::write(
        &cfg,
        format!(
            "root = {:?}\n\n[tls]\ncert = {:?}\nkey = {:?}\nredirect_listen = \"127.0.0.1:{redirect_port}\"\n",
            root, files.cert, files.key
        ),
    )
    .unwrap();
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    let run = start(dir, dir, |port, c| {
        c.arg("--config")
            .arg(&cfg)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(&extra);
    });
    wait_until(
        "the redirect listener accepts",
        Duration::from_secs(10),
        || port_is_open(redirect_port),
    );
    (run, redirect_port)
}

/// One raw HTTP/1.1 exchange on 127.0.0.1:`port`, read to EOF.
fn raw(port: u16, request: &str) -> common::Response {
    let mut s = TcpStream::connect(process::addr(port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    common::Response::parse(&out, false)
}

#[test]
fn redirect_listener_answers_308_to_the_same_path_on_https() {
    let dir = tempfile::tempdir().unwrap();
    let files = self_signed(dir.path());
    let (run, rport) = tls_binary(dir.path(), &files, &[]);
    let port = run.port;
    let r = raw(
        rport,
        &format!("GET /dir/a%20b.txt?x=1&y=%2F HTTP/1.1\r\nHost: LocalHost:{rport}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location"),
        Some(&*format!(
            "https://localhost:{port}/dir/a%20b.txt?x=1&y=%2F"
        ))
    );
    // Any method: 308 makes the client repeat it as it was (RFC 9110 §15.4.9).
    let r = raw(
        rport,
        "POST /upload HTTP/1.1\r\nHost: files.example\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location"),
        Some(&*format!("https://files.example:{port}/upload"))
    );
    // No Host, or one that is not a host: 400, no Location.
    for host in [
        "",
        "Host: a b\r\n",
        "Host: evil.example/x\r\n",
        "Host: u@a.example\r\n",
    ] {
        let r = raw(
            rport,
            &format!("GET /x HTTP/1.1\r\n{host}Connection: close\r\n\r\n"),
        );
        assert_eq!(r.status, 400, "{host:?}");
        assert_eq!(r.header("location"), None);
    }

    // curl follows it to the file over HTTP/2 (and over h2c to the redirect listener).
    let Some(curl) = curl(&files.cert) else {
        return;
    };
    let data = pattern(100_000);
    std::fs::write(dir.path().join("root/f.bin"), &data).unwrap();
    let got = curl.get(
        &["--http2", "-L"],
        &format!("http://localhost:{rport}/f.bin"),
        &[],
    );
    assert_eq!((got.version.as_str(), got.status), ("2", 200));
    assert!(got.body == data);
    let got = curl.get(
        &["--http2-prior-knowledge"],
        &format!("http://localhost:{rport}/f.bin?v=2"),
        &[],
    );
    assert_eq!((got.version.as_str(), got.status), ("2", 308));
    assert_eq!(
        got.header("location"),
        Some(&*format!("https://localhost:{port}/f.bin?v=2"))
    );
}

#[test]
fn shutdown_closes_the_redirect_listener_and_skips_silent_handshakes() {
    let dir = tempfile::tempdir().unwrap();
    let files = self_signed(dir.path());
    let Some(curl) = curl(&files.cert) else {
        return;
    };
    let (mut run, rport) = tls_binary(dir.path(), &files, &["--shutdown-grace", "60"]);
    std::fs::write(dir.path().join("root/big.bin"), pattern(64 << 20)).unwrap();
    // A client that connects and says nothing, accepted before the download below.
    let _silent = TcpStream::connect(process::addr(run.port)).unwrap();
    // A slow download: a response in flight during shutdown.
    let out = dir.path().join("partial.bin");
    let mut slow = Command::new(&curl.exe)
        .arg("-q")
        .args(["-sS", "--http2", "--limit-rate", "200K", "--cacert"])
        .arg(&files.cert)
        .arg("-o")
        .arg(&out)
        .arg(format!("https://localhost:{}/big.bin", run.port))
        .env("HOME", curl.dir.path())
        .spawn()
        .unwrap();
    let len = || std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    wait_until("the download started", Duration::from_secs(30), || {
        len() > 0
    });
    run.sigterm();
    // Both listeners close at once, while the download still runs in its grace period.
    wait_until("listeners closed", Duration::from_secs(10), || {
        refused(rport) && refused(run.port)
    });
    assert!(
        run.child.try_wait().unwrap().is_none(),
        "exited during grace"
    );
    let before = len();
    wait_until("the download goes on", Duration::from_secs(10), || {
        len() > before
    });
    // Once the download is gone, nothing holds the server: not the silent client's handshake
    // (whose timeout is 10 s), not the grace period (60 s).
    slow.kill().unwrap();
    slow.wait().unwrap();
    let stopped = Instant::now();
    let st = run.wait_exit(Duration::from_secs(20));
    assert!(st.success(), "{st}");
    assert!(
        stopped.elapsed() < rangeserve::transport::tls::HANDSHAKE_TIMEOUT / 2,
        "took {:?}",
        stopped.elapsed()
    );
}

/// Run the binary with `args` (in a scratch directory) to its exit: code and stderr.
fn fails(dir: &Path, args: &[&std::ffi::OsStr], env: &[(&str, &Path)]) -> (Option<i32>, String) {
    let mut c = process::command(dir);
    c.args(["--root", "."]).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let (st, _out, err) = process::run_to_exit(c, &dir.join("logs"));
    (st.code(), err)
}

fn assert_one_line(code: Option<i32>, err: &str, has: &[&str]) {
    assert_eq!(code, Some(2), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    for h in has {
        assert!(lines[0].contains(h), "{h:?} not in {err:?}");
    }
}

#[test]
fn config_errors_are_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let files = self_signed(d);
    let other = tempfile::tempdir().unwrap();
    let other = self_signed(other.path());
    let garbage = d.join("garbage.pem");
    std::fs::write(&garbage, "not pem at all\n").unwrap();
    let missing = d.join("missing.pem");
    let os = |s: &str| std::ffi::OsString::from(s);
    let (cert_flag, key_flag) = (os("--tls-cert"), os("--tls-key"));

    // Only the certificate: the key is named as missing.
    let (code, err) = fails(d, &[&cert_flag, files.cert.as_os_str()], &[]);
    assert_one_line(code, &err, &["tls.key: missing"]);
    // Only the key, from the environment.
    let (code, err) = fails(d, &[], &[("RANGESERVE_TLS_KEY", &files.key)]);
    assert_one_line(code, &err, &["tls.cert: missing"]);
    // Not PEM; a file that is not there; a key of another certificate.
    let (code, err) = fails(
        d,
        &[],
        &[
            ("RANGESERVE_TLS_CERT", &garbage),
            ("RANGESERVE_TLS_KEY", &files.key),
        ],
    );
    assert_one_line(
        code,
        &err,
        &["tls.cert", &garbage.display().to_string(), "no certificate"],
    );
    let (code, err) = fails(
        d,
        &[
            &cert_flag,
            files.cert.as_os_str(),
            &key_flag,
            garbage.as_os_str(),
        ],
        &[],
    );
    assert_one_line(code, &err, &["tls.key", "garbage.pem", "no private key"]);
    let (code, err) = fails(
        d,
        &[
            &cert_flag,
            missing.as_os_str(),
            &key_flag,
            files.key.as_os_str(),
        ],
        &[],
    );
    assert_one_line(code, &err, &["tls.cert", "missing.pem", "No such file"]);
    let (code, err) = fails(
        d,
        &[
            &cert_flag,
            files.cert.as_os_str(),
            &key_flag,
            other.key.as_os_str(),
        ],
        &[],
    );
    assert_one_line(
        code,
        &err,
        &["tls.key", "is not the key of the certificate"],
    );
    // A redirect to https without TLS; a redirect address that is not one.
    let (code, err) = fails(d, &[&os("--tls-redirect-listen"), &os("127.0.0.1:1")], &[]);
    assert_one_line(
        code,
        &err,
        &["tls.redirect_listen", "needs tls.cert and tls.key"],
    );
    let (code, err) = fails(
        d,
        &[
            &cert_flag,
            files.cert.as_os_str(),
            &key_flag,
            files.key.as_os_str(),
            &os("--tls-redirect-listen"),
            &os("nowhere"),
        ],
        &[],
    );
    assert_one_line(code, &err, &["tls.redirect_listen", "\"nowhere\""]);
    // An unknown key in [tls].
    let cfg = d.join("bad.toml");
    std::fs::write(&cfg, "[tls]\ncertificate = \"x.pem\"\n").unwrap();
    let (code, err) = fails(d, &[&os("--config"), cfg.as_os_str()], &[]);
    assert_one_line(code, &err, &["line 2", "certificate"]);
}

#[test]
fn tls_from_the_environment_serves_https() {
    let dir = tempfile::tempdir().unwrap();
    let files = self_signed(dir.path());
    let Some(curl) = curl(&files.cert) else {
        return;
    };
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let data = pattern(5000);
    std::fs::write(root.join("f"), &data).unwrap();
    let run = start(dir.path(), dir.path(), |port, c| {
        c.env("RANGESERVE_LISTEN", format!("127.0.0.1:{port}"))
            .env("RANGESERVE_ROOT", &root)
            .env("RANGESERVE_TLS_CERT", &files.cert)
            .env("RANGESERVE_TLS_KEY", &files.key);
    });
    let got = curl.get(
        &["--http2"],
        &format!("https://localhost:{}/f", run.port),
        &[("Range", "bytes=10-19")],
    );
    assert_eq!((got.version.as_str(), got.status), ("2", 206));
    assert!(got.body == data[10..20]);
    assert!(
        run.log()
            .contains(&format!("listening on https://127.0.0.1:{}/", run.port)),
        "{}",
        run.log()
    );
}
