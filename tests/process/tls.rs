//! The binary over TLS: the redirect listener, shutdown with a silent handshake pending,
//! configuration errors, and TLS from the environment. Driven by curl (`--http2` over TLS with
//! `--cacert`); without it (or a curl without HTTP2 and SSL) those tests say "skipped", and with
//! `CI` set they fail instead.

use crate::common::curl::curl;
use crate::common::process::{self, port_is_open, refused, start, Running, Site};
use crate::common::tls::{self_signed, CertFiles};
use crate::common::{free_port, pattern, raw_at, wait_until, Response};

use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// The binary serving `root` over TLS, with its redirect listener on a free port (configured
/// in a config file, so the `[tls]` section is what is proven here).
fn tls_binary(dir: &Path, files: &CertFiles, extra: &[&str]) -> (Running, u16) {
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let redirect_port = free_port();
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
fn raw(port: u16, request: &str) -> Response {
    Response::parse(&raw_at(process::addr(port), request.as_bytes()), false)
}

/// Run the binary with `args` and `env` (in a scratch directory), expecting a configuration
/// error ([`process::config_error`]) whose line contains each of `has`.
fn assert_fails(dir: &Path, args: &[&std::ffi::OsStr], env: &[(&str, &Path)], has: &[&str]) {
    let err = process::config_error(dir, |c| {
        c.args(["--root", "."]).args(args);
        for (k, v) in env {
            c.env(k, v);
        }
    });
    for h in has {
        assert!(err.contains(h), "{h:?} not in {err:?}");
    }
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
    let mut slow = curl
        .command()
        .args(["--http2", "--limit-rate", "200K", "-o"])
        .arg(&out)
        .arg(format!("https://localhost:{}/big.bin", run.port))
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
    assert_fails(
        d,
        &[&cert_flag, files.cert.as_os_str()],
        &[],
        &["tls.key: missing"],
    );
    // Only the key, from the environment.
    assert_fails(
        d,
        &[],
        &[("RANGESERVE_TLS_KEY", &files.key)],
        &["tls.cert: missing"],
    );
    // Not PEM; a file that is not there; a key of another certificate.
    assert_fails(
        d,
        &[],
        &[
            ("RANGESERVE_TLS_CERT", &garbage),
            ("RANGESERVE_TLS_KEY", &files.key),
        ],
        &["tls.cert", &garbage.display().to_string(), "no certificate"],
    );
    assert_fails(
        d,
        &[
            &cert_flag,
            files.cert.as_os_str(),
            &key_flag,
            garbage.as_os_str(),
        ],
        &[],
        &["tls.key", "garbage.pem", "no private key"],
    );
    assert_fails(
        d,
        &[
            &cert_flag,
            missing.as_os_str(),
            &key_flag,
            files.key.as_os_str(),
        ],
        &[],
        &["tls.cert", "missing.pem", "No such file"],
    );
    assert_fails(
        d,
        &[
            &cert_flag,
            files.cert.as_os_str(),
            &key_flag,
            other.key.as_os_str(),
        ],
        &[],
        &["tls.key", "is not the key of the certificate"],
    );
    // A redirect to https without TLS; a redirect address that is not one.
    assert_fails(
        d,
        &[&os("--tls-redirect-listen"), &os("127.0.0.1:1")],
        &[],
        &["tls.redirect_listen", "needs tls.cert and tls.key"],
    );
    assert_fails(
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
        &["tls.redirect_listen", "\"nowhere\""],
    );
    // An unknown key in [tls].
    let cfg = d.join("bad.toml");
    std::fs::write(&cfg, "[tls]\ncertificate = \"x.pem\"\n").unwrap();
    assert_fails(
        d,
        &[&os("--config"), cfg.as_os_str()],
        &[],
        &["line 2", "certificate"],
    );
}

#[test]
fn tls_from_the_environment_serves_https() {
    let site = Site::empty();
    let files = self_signed(site.path());
    let Some(curl) = curl(&files.cert) else {
        return;
    };
    let root = site.root();
    let data = pattern(5000);
    std::fs::write(root.join("f"), &data).unwrap();
    let run = start(site.path(), &site.logs(), |port, c| {
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

/// A TLS 1.2-style ClientHello whose server_name extension (RFC 6066 §3) holds `name`: enough
/// for rustls to parse the hello (and warn about the name) before it refuses the handshake.
fn client_hello_with_server_name(name: &str) -> Vec<u8> {
    let n = name.as_bytes();
    let mut sni = vec![0x00, 0x00]; // extension type: server_name
    let list_len = 3 + n.len();
    sni.extend((list_len as u16 + 2).to_be_bytes());
    sni.extend((list_len as u16).to_be_bytes());
    sni.push(0x00); // host_name
    sni.extend((n.len() as u16).to_be_bytes());
    sni.extend(n);
    let mut body = vec![0x03, 0x03]; // legacy_version
    body.extend([7u8; 32]); // random
    body.push(0); // no session id
    body.extend([0x00, 0x02, 0x13, 0x01]); // one suite: TLS_AES_128_GCM_SHA256
    body.extend([0x01, 0x00]); // null compression
    body.extend((sni.len() as u16).to_be_bytes());
    body.extend(sni);
    let mut hs = vec![0x01]; // ClientHello
    hs.extend(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend(body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend((hs.len() as u16).to_be_bytes());
    record.extend(hs);
    record
}

#[test]
fn ip_addresses_sent_as_server_names_are_counted_not_logged_per_connection() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let files = self_signed(dir.path());
    let metrics_port = crate::common::free_port();
    let metrics = format!("127.0.0.1:{metrics_port}");
    let (run, _) = tls_binary(dir.path(), &files, &["--metrics-listen", &metrics]);
    for _ in 0..3 {
        let mut s = TcpStream::connect(process::addr(run.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&client_hello_with_server_name("127.0.0.1"))
            .unwrap();
        // The server answers with an alert and closes: read to the end.
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
    }
    let page = process::get_at(metrics_port, "/metrics", &[]);
    let page = String::from_utf8(page.body).unwrap();
    assert!(
        page.lines()
            .any(|l| l == "rangeserve_tls_client_warnings_total 3"),
        "{page}"
    );
    // No line per such connection in the log.
    let log = run.log();
    assert!(!log.contains("Illegal SNI"), "{log}");
    assert!(!log.contains("127.0.0.1 presented"), "{log}");
}
