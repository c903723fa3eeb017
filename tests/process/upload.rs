//! Uploads (`[upload]`) against the binary over TCP: tus 1.0.0 and plain PUT, tokens, path rules,
//! overwrite, SIGKILL and resume, one writer per upload, expiry, limits, checksums, HTTP/2, and
//! the ETag of a published file known without hashing. (Real clients: `clients/uploads.rs`.)

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;

use crate::common::process::*;
use crate::common::*;

pub(crate) const TOKEN: &str = "alice-0123456789abcdef";
pub(crate) const OTHER: &str = "bob-0123456789abcdef";

pub(crate) fn auth(token: &str) -> String {
    format!("Bearer {token}")
}

/// The binary serving `site` with uploads on for TOKEN and OTHER, JSON logs, metrics on their
/// own port (returned), and whatever `more` adds.
pub(crate) fn serve(site: &Site, more: impl Fn(&mut Command)) -> (Running, u16) {
    let metrics = free_port();
    let run = site.serve(|c| {
        c.arg("--upload-enabled")
            .env("RANGESERVE_UPLOAD_TOKENS", format!("{TOKEN},{OTHER}"))
            .args(["--log-format", "json"])
            .arg("--metrics-listen")
            .arg(format!("127.0.0.1:{metrics}"));
        more(c);
    });
    (run, metrics)
}

/// The request head `METHOD path` with these headers and a Content-Length of `len`.
pub(crate) fn head_bytes(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    len: usize,
) -> Vec<u8> {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {len}\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.into_bytes()
}

/// `METHOD path` with `body` on a fresh connection; the response.
pub(crate) fn send(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut req = head_bytes(method, path, headers, body.len());
    req.extend_from_slice(body);
    let raw = exchange(addr(port), &req, Duration::from_secs(60));
    Response::parse(&raw, method == "HEAD")
}

/// A `PUT` of `body` to `path` with `TOKEN`'s credentials and `headers`.
fn put(port: u16, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let a = auth(TOKEN);
    let mut all = vec![("Authorization", a.as_str())];
    all.extend_from_slice(headers);
    send(port, "PUT", path, &all, body)
}

/// A tus client speaking to one server with one token.
struct Tus<'a> {
    port: u16,
    token: &'a str,
}

fn metadata(filename: &str) -> String {
    format!(
        "filename {},filetype dGV4dC9wbGFpbg==",
        base64::engine::general_purpose::STANDARD.encode(filename)
    )
}

impl Tus<'_> {
    fn headers<'h>(
        &'h self,
        auth: &'h str,
        more: &[(&'h str, &'h str)],
    ) -> Vec<(&'h str, &'h str)> {
        let mut h = vec![("Authorization", auth), ("Tus-Resumable", "1.0.0")];
        h.extend_from_slice(more);
        h
    }

    /// POST the creation; the response.
    fn post(&self, length: Option<u64>, filename: &str) -> Response {
        let (a, m, l) = (
            auth(self.token),
            metadata(filename),
            length.map(|l| l.to_string()),
        );
        let mut more = vec![("Upload-Metadata", m.as_str())];
        match &l {
            Some(l) => more.push(("Upload-Length", l.as_str())),
            None => more.push(("Upload-Defer-Length", "1")),
        }
        send(
            self.port,
            "POST",
            "/_upload/",
            &self.headers(&a, &more),
            b"",
        )
    }

    /// Create an upload; its URL (path).
    fn create(&self, length: Option<u64>, filename: &str) -> String {
        let r = self.post(length, filename);
        assert_eq!(r.status, 201, "{r:?}");
        assert_eq!(r.header("tus-resumable"), Some("1.0.0"));
        let loc = r.header("location").unwrap().to_string();
        assert!(
            loc.starts_with("/_upload/") && loc.len() == "/_upload/".len() + 32,
            "{loc}"
        );
        loc
    }

    fn head(&self, url: &str) -> Response {
        let a = auth(self.token);
        send(self.port, "HEAD", url, &self.headers(&a, &[]), b"")
    }

    fn offset(&self, url: &str) -> u64 {
        let r = self.head(url);
        assert_eq!(r.status, 200, "{r:?}");
        r.header("upload-offset").unwrap().parse().unwrap()
    }

    fn patch_with(&self, url: &str, offset: u64, body: &[u8], more: &[(&str, &str)]) -> Response {
        let (a, o) = (auth(self.token), offset.to_string());
        let mut h = vec![
            ("Content-Type", "application/offset+octet-stream"),
            ("Upload-Offset", o.as_str()),
        ];
        h.extend_from_slice(more);
        send(self.port, "PATCH", url, &self.headers(&a, &h), body)
    }

    fn patch(&self, url: &str, offset: u64, body: &[u8]) -> Response {
        self.patch_with(url, offset, body, &[])
    }
}

fn id_of(url: &str) -> &str {
    url.rsplit('/').next().unwrap()
}

pub(crate) fn part(dir: &Path, url: &str) -> PathBuf {
    dir.join(".rangeserve-uploads")
        .join(format!("{}.part", id_of(url)))
}

pub(crate) fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// The value of `series` on the metrics page.
pub(crate) fn metric(port: u16, series: &str) -> f64 {
    let page = String::from_utf8(get_at(port, "/metrics", &[]).body).unwrap();
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in:\n{page}"))
        .parse()
        .unwrap()
}

/// A connection with an upload request under way: its head and the first `first` body bytes
/// sent, the rest to come.
pub(crate) fn begin(port: u16, head: Vec<u8>, body: &[u8]) -> TcpStream {
    let mut s = connect(addr(port), Duration::from_secs(60));
    s.write_all(&head).unwrap();
    s.write_all(body).unwrap();
    s
}

pub(crate) fn finish_response(mut s: TcpStream, rest: &[u8]) -> Response {
    s.write_all(rest).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    Response::parse(&out, false)
}

#[test]
fn start_up_refuses_uploads_without_tokens_or_a_disk_root_and_logs_where_they_go() {
    let site = Site::new();
    let err = config_error(site.path(), |c| {
        c.args(["--root", "root", "--upload-enabled"]);
    });
    assert!(
        err.contains("upload.enabled") && err.contains("token"),
        "{err}"
    );
    let err = config_error(site.path(), |c| {
        c.args([
            "--root",
            "s3://bucket/x",
            "--upload-enabled",
            "--upload-allow-anonymous",
        ]);
    });
    assert!(err.contains("disk root"), "{err}");
    let err = config_error(site.path(), |c| {
        c.args([
            "--root",
            "root",
            "--upload-enabled",
            "--upload-tokens",
            "has space",
        ]);
    });
    assert!(
        err.contains("upload.tokens") && !err.contains("has space"),
        "{err}"
    );
    let err = config_error(site.path(), |c| {
        c.args([
            "--root",
            "root",
            "--upload-enabled",
            "--upload-allow-anonymous",
        ])
        .args(["--upload-dir", "../elsewhere"]);
    });
    assert!(err.contains("upload.dir"), "{err}");
    // The start-up line: on, where, never the tokens.
    let (run, _) = serve(&site, |c| {
        c.args(["--upload-dir", "incoming"]);
    });
    let log = run.log_shows("uploads on");
    assert!(
        log.contains("/_upload/") && log.contains("incoming"),
        "{log}"
    );
    assert!(!log.contains(TOKEN) && !log.contains(OTHER), "{log}");
    // Without uploads, PUT is still 405.
    let plain = site.serve(|_| {});
    let r = send(
        plain.port,
        "PUT",
        "/new.txt",
        &[("Authorization", &auth(TOKEN))],
        b"x",
    );
    assert_eq!(r.status, 405);
}

#[test]
fn a_tus_upload_is_published_with_its_sha256_etag_and_nothing_is_hashed() {
    let site = Site::empty();
    let (run, metrics) = serve(&site, |_| {});
    let tus = Tus {
        port: run.port,
        token: TOKEN,
    };
    let data = pattern(3 << 20);
    let url = tus.create(Some(data.len() as u64), "dir/sub/data.bin");
    let r = tus.head(&url);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("upload-offset"), Some("0"));
    assert_eq!(r.header("upload-length"), Some("3145728"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(
        r.header("upload-metadata"),
        Some(metadata("dir/sub/data.bin").as_str())
    );
    assert!(r.header("upload-expires").unwrap().ends_with(" GMT"));
    // Two appends; nothing visible at the path until the last.
    let r = tus.patch(&url, 0, &data[..1_000_000]);
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.header("upload-offset"), Some("1000000"));
    assert!(r.header("upload-expires").is_some());
    assert_eq!(run.get("/dir/sub/data.bin", &[]).status, 404);
    let r = tus.patch(&url, 1_000_000, &data[1_000_000..]);
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.header("upload-offset"), Some("3145728"));
    assert!(r.header("upload-expires").is_none(), "completed: no expiry");
    // A HEAD after completion still answers (a client whose last response was lost).
    assert_eq!(tus.offset(&url), data.len() as u64);
    // Downloaded with no token; its ETag is the SHA-256 computed here, and no hash was made.
    let got = run.get("/dir/sub/data.bin", &[]);
    assert_eq!(got.status, 200);
    assert!(got.body == data);
    assert_eq!(got.header("etag"), Some(etag_of(&data).as_str()));
    assert_eq!(metric(metrics, "rangeserve_hashed_bytes_total"), 0.0);
    assert_eq!(metric(metrics, "rangeserve_digest_cache_misses_total"), 0.0);
    assert_eq!(metric(metrics, "rangeserve_uploads_created_total"), 1.0);
    assert_eq!(metric(metrics, "rangeserve_uploads_completed_total"), 1.0);
    assert_eq!(
        metric(metrics, "rangeserve_upload_bytes_total"),
        data.len() as f64
    );
    // The access log counts what uploads received, and never shows a token.
    let lines = run.json_access_lines(7);
    let patches: Vec<_> = lines
        .iter()
        .filter(|l| l["fields"]["method"] == "PATCH")
        .map(|l| l["fields"]["received"].as_u64().unwrap())
        .collect();
    assert_eq!(patches, [1_000_000, 2_145_728]);
    let log = run.log();
    assert!(
        !log.contains(TOKEN) && !log.contains("Authorization"),
        "{log}"
    );
}

#[test]
fn tokens_are_required_and_bind_uploads_to_their_creator() {
    let site = Site::new();
    let (run, _) = serve(&site, |_| {});
    let port = run.port;
    for a in [
        None,
        Some("Bearer wrong-token"),
        Some("Basic YTpi"),
        Some("Bearer"),
    ] {
        let mut h = vec![("Tus-Resumable", "1.0.0"), ("Upload-Length", "1")];
        h.extend(a.map(|a| ("Authorization", a)));
        let r = send(port, "POST", "/_upload/", &h, b"");
        assert_eq!(r.status, 401, "{a:?}");
        assert!(
            r.header("www-authenticate").unwrap().starts_with("Bearer"),
            "{a:?}"
        );
        assert_eq!(r.header("tus-resumable"), Some("1.0.0"));
        let mut h = vec![];
        h.extend(a.map(|a| ("Authorization", a)));
        assert_eq!(send(port, "PUT", "/x.txt", &h, b"x").status, 401, "{a:?}");
    }
    assert!(!site.root().join("x.txt").exists());
    // Downloads never need one.
    assert_eq!(run.get("/f.txt", &[]).status, 200);
    // Another valid token does not see, extend or delete someone else's upload.
    let alice = Tus { port, token: TOKEN };
    let bob = Tus { port, token: OTHER };
    let url = alice.create(Some(4), "mine.txt");
    assert_eq!(bob.head(&url).status, 404);
    assert_eq!(bob.patch(&url, 0, b"evil").status, 404);
    let a = auth(OTHER);
    let del = send(
        port,
        "DELETE",
        &url,
        &[("Authorization", &a), ("Tus-Resumable", "1.0.0")],
        b"",
    );
    assert_eq!(del.status, 404);
    assert_eq!(alice.patch(&url, 0, b"mine").status, 204);
    assert_eq!(
        std::fs::read(site.root().join("mine.txt")).unwrap(),
        b"mine"
    );
}

#[test]
fn names_follow_the_download_rules_and_the_work_directory_is_never_served() {
    let site = Site::new();
    let outside = site.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, site.root().join("out")).unwrap();
    let (run, _) = serve(&site, |c| {
        c.args(["--show-hidden", "--listing"]);
    });
    let tus = Tus {
        port: run.port,
        token: TOKEN,
    };
    for bad in [
        "../x",
        "a/../../x",
        "a\\b",
        ".rangeserve-uploads/x",
        "a/",
        "",
    ] {
        assert_eq!(tus.post(Some(1), bad).status, 400, "{bad:?}");
    }
    // A symlink on the way is refused, whatever it points at.
    assert_eq!(tus.post(Some(1), "out/x.txt").status, 409);
    for bad in ["/%2e%2e/x", "/a/..%2fx", "/a%5cb", "/.rangeserve-uploads/x"] {
        let r = put(run.port, bad, &[], b"x");
        assert_eq!(r.status, 400, "{bad}");
    }
    assert_eq!(put(run.port, "/out/x.txt", &[], b"x").status, 409);
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    // Hidden names are allowed here (show_hidden); the work directory never is.
    let url = tus.create(Some(3), ".hidden/ok.txt");
    assert_eq!(tus.patch(&url, 0, b"abc").status, 204);
    let pending = tus.create(Some(3), "pending.txt");
    assert_eq!(tus.patch(&pending, 0, b"ab").status, 204);
    assert_eq!(run.get("/.hidden/ok.txt", &[]).body, b"abc");
    let id = id_of(&pending);
    for path in [
        "/.rangeserve-uploads/".to_string(),
        format!("/.rangeserve-uploads/{id}.part"),
        format!("/.rangeserve-uploads/{id}.info"),
        format!("/%2erangeserve-uploads/{id}.part"),
    ] {
        assert_eq!(run.get(&path, &[]).status, 404, "{path}");
    }
    let listing = run.get("/?format=json", &[]);
    assert_eq!(listing.status, 200);
    let text = String::from_utf8(listing.body).unwrap();
    assert!(
        text.contains(".hidden") && !text.contains("rangeserve-uploads"),
        "{text}"
    );
}

#[test]
fn existing_files_are_kept_unless_overwrite_and_put_preconditions_hold() {
    let site = Site::new();
    let old = pattern(8 << 20);
    std::fs::write(site.root().join("big.bin"), &old).unwrap();
    let (run, _) = serve(&site, |_| {});
    let port = run.port;
    let tus = Tus { port, token: TOKEN };
    assert_eq!(tus.post(Some(1), "f.txt").status, 409);
    let r = put(port, "/f.txt", &[], b"new");
    assert_eq!(r.status, 409);
    assert_eq!(
        std::fs::read(site.root().join("f.txt")).unwrap(),
        b"hello from root\n"
    );
    // A new file: 201 with its location and its ETag.
    let r = put(port, "/d/new.txt", &[], b"new file");
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.header("location"), Some("/d/new.txt"));
    assert_eq!(r.header("etag"), Some(etag_of(b"new file").as_str()));
    drop(run);

    let (run, _) = serve(&site, |c| {
        c.arg("--upload-overwrite");
    });
    let port = run.port;
    let r = put(port, "/f.txt", &[("If-None-Match", "*")], b"x");
    assert_eq!(r.status, 412);
    let r = put(port, "/f.txt", &[("If-Match", "\"nope\"")], b"x");
    assert_eq!(r.status, 412);
    let r = put(port, "/none.txt", &[("If-Match", "*")], b"x");
    assert_eq!(r.status, 412);
    let current = etag_of(b"hello from root\n");
    let r = put(port, "/f.txt", &[("If-Match", &current)], b"v2");
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(run.get("/f.txt", &[]).body, b"v2");
    let r = put(port, "/new.txt", &[("If-None-Match", "*")], b"n");
    assert_eq!(r.status, 201);
    // A directory is never replaced.
    assert_eq!(put(port, "/d", &[], b"x").status, 409);
    // A download in flight of a replaced file ends with the old bytes (or is cut), never mixed.
    let mut dl = connect(addr(port), Duration::from_secs(60));
    dl.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut first = vec![0u8; 64 * 1024];
    dl.read_exact(&mut first).unwrap();
    let new = pattern(1 << 20).into_iter().rev().collect::<Vec<u8>>();
    let r = put(port, "/big.bin", &[], &new);
    assert_eq!(r.status, 204);
    let mut rest = Vec::new();
    let _ = dl.read_to_end(&mut rest);
    first.extend_from_slice(&rest);
    let got = Response::parse(&first, false);
    assert!(
        got.body == old,
        "the download in flight mixed versions or was cut short"
    );
    assert!(run.get("/big.bin", &[]).body == new);
}

#[test]
fn a_sigkill_mid_upload_keeps_an_intact_offset_and_the_upload_resumes() {
    let site = Site::empty();
    let (run, _) = serve(&site, |_| {});
    let tus = Tus {
        port: run.port,
        token: TOKEN,
    };
    let data = pattern(16 << 20);
    let url = tus.create(Some(data.len() as u64), "resumed.bin");
    let a = auth(TOKEN);
    let head = head_bytes(
        "PATCH",
        &url,
        &[
            ("Authorization", &a),
            ("Tus-Resumable", "1.0.0"),
            ("Content-Type", "application/offset+octet-stream"),
            ("Upload-Offset", "0"),
        ],
        data.len(),
    );
    let conn = begin(run.port, head, &data[..6 << 20]);
    let part = part(&site.root(), &url);
    wait_until("bytes on disk", Duration::from_secs(20), || {
        file_len(&part) >= 4 << 20
    });
    let mut run = run;
    run.child.kill().unwrap();
    run.wait_exit(Duration::from_secs(10));
    drop(conn);

    let (run, metrics) = serve(&site, |_| {});
    let tus = Tus {
        port: run.port,
        token: TOKEN,
    };
    let offset = tus.offset(&url);
    assert!((4 << 20..=6 << 20).contains(&offset), "{offset}");
    let stored = std::fs::read(&part).unwrap();
    assert!(
        stored[..] == data[..offset as usize],
        "the stored bytes are not the first {offset}"
    );
    let r = tus.patch(&url, offset, &data[offset as usize..]);
    assert_eq!(r.status, 204, "{r:?}");
    let got = run.get("/resumed.bin", &[]);
    assert!(got.body == data);
    assert_eq!(got.header("etag"), Some(etag_of(&data).as_str()));
    assert_eq!(metric(metrics, "rangeserve_uploads_resumed_total"), 1.0);
    assert_eq!(metric(metrics, "rangeserve_hashed_bytes_total"), 0.0);
}

#[test]
fn one_writer_per_upload_and_wrong_offsets_are_409_with_the_offset() {
    let site = Site::empty();
    let (run, _) = serve(&site, |_| {});
    let tus = Tus {
        port: run.port,
        token: TOKEN,
    };
    let data = pattern(4 << 20);
    let url = tus.create(Some(data.len() as u64), "one.bin");
    let r = tus.patch(&url, 5, b"xyz");
    assert_eq!(r.status, 409);
    assert_eq!(r.header("upload-offset"), Some("0"));
    let a = auth(TOKEN);
    let head = head_bytes(
        "PATCH",
        &url,
        &[
            ("Authorization", &a),
            ("Tus-Resumable", "1.0.0"),
            ("Content-Type", "application/offset+octet-stream"),
            ("Upload-Offset", "0"),
        ],
        data.len(),
    );
    let first = begin(run.port, head, &data[..2 << 20]);
    let part = part(&site.root(), &url);
    wait_until("the first append writing", Duration::from_secs(20), || {
        file_len(&part) >= 1 << 20
    });
    // A second append meanwhile, at the offset it was given: refused, never interleaved.
    let r = tus.patch(&url, 0, &data[..1000]);
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(r.header("upload-offset"), Some("0"));
    let r = finish_response(first, &data[2 << 20..]);
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.header("upload-offset"), Some("4194304"));
    assert!(std::fs::read(site.root().join("one.bin")).unwrap() == data);
}

#[test]
fn unfinished_uploads_expire_with_their_parts() {
    let site = Site::empty();
    let (run, metrics) = serve(&site, |c| {
        c.args(["--upload-max-age", "1"]);
    });
    let tus = Tus {
        port: run.port,
        token: TOKEN,
    };
    let url = tus.create(Some(10), "late.bin");
    assert_eq!(tus.patch(&url, 0, b"abc").status, 204);
    let part = part(&site.root(), &url);
    assert!(part.exists());
    // The sweep runs every second; the part goes once a second passed without bytes.
    wait_until("the part to be removed", Duration::from_secs(20), || {
        !part.exists()
    });
    let r = tus.head(&url);
    assert!(matches!(r.status, 404 | 410), "{r:?}");
    assert!(r.header("upload-offset").is_none());
    assert_eq!(tus.patch(&url, 3, b"d").status / 10, 40);
    assert_eq!(metric(metrics, "rangeserve_uploads_expired_total"), 1.0);
    let work = site.root().join(".rangeserve-uploads");
    assert_eq!(std::fs::read_dir(work).unwrap().count(), 0);
}

#[test]
fn sizes_over_max_size_are_413_and_checksum_mismatches_keep_nothing() {
    let site = Site::empty();
    let (run, _) = serve(&site, |c| {
        c.args(["--upload-max-size", "10"]);
    });
    let port = run.port;
    let tus = Tus { port, token: TOKEN };
    let a = auth(TOKEN);
    let r = send(port, "OPTIONS", "/_upload/", &[("Authorization", &a)], b"");
    assert_eq!(r.status, 204);
    assert_eq!(r.header("tus-version"), Some("1.0.0"));
    assert_eq!(r.header("tus-max-size"), Some("10"));
    assert_eq!(r.header("tus-checksum-algorithm"), Some("sha256,sha1,md5"));
    let ext = r.header("tus-extension").unwrap();
    for e in [
        "creation",
        "creation-with-upload",
        "creation-defer-length",
        "termination",
        "expiration",
        "checksum",
    ] {
        assert!(ext.split(',').any(|x| x == e), "{e} in {ext}");
    }
    assert_eq!(tus.post(Some(11), "big").status, 413);
    assert_eq!(put(port, "/big", &[], &[0; 11]).status, 413);
    // A deferred length: an append past max_size is undone.
    let url = tus.create(None, "deferred");
    assert_eq!(tus.head(&url).header("upload-defer-length"), Some("1"));
    assert_eq!(tus.patch(&url, 0, b"12345678").status, 204);
    assert_eq!(tus.patch(&url, 8, b"9abc").status, 413);
    assert_eq!(tus.offset(&url), 8);
    // Checksums: a mismatch is 460 and the chunk is not kept.
    let sum = |b: &[u8]| {
        use sha2::Digest as _;
        format!(
            "sha256 {}",
            base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(b))
        )
    };
    let wrong = sum(b"something else");
    let r = tus.patch_with(
        &url,
        8,
        b"90",
        &[("Upload-Checksum", &wrong), ("Upload-Length", "10")],
    );
    assert_eq!(r.status, 460, "{r:?}");
    assert_eq!(r.header("upload-offset"), Some("8"));
    assert_eq!(tus.offset(&url), 8);
    assert_eq!(
        tus.head(&url).header("upload-defer-length"),
        Some("1"),
        "nothing changed"
    );
    // sha1 (the one tus requires): SHA-1("hello world") is not that of "90".
    let r = tus.patch_with(
        &url,
        8,
        b"90",
        &[("Upload-Checksum", "sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=")],
    );
    assert_eq!(r.status, 460);
    // An algorithm not offered, or a checksum of the wrong length: 400.
    for bad in ["crc32 AAAAAA==", "sha1 AAAA"] {
        let r = tus.patch_with(&url, 8, b"90", &[("Upload-Checksum", bad)]);
        assert_eq!(r.status, 400, "{bad}");
    }
    assert_eq!(tus.offset(&url), 8);
    // SHA-1("90"), computed elsewhere (Python's hashlib).
    let right = "sha1 LQyK+AfvRawXyvspc9hmuo84yqk=";
    let r = tus.patch_with(
        &url,
        8,
        b"90",
        &[("Upload-Checksum", right), ("Upload-Length", "10")],
    );
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(run.get("/deferred", &[]).body, b"1234567890");
}

#[test]
fn tus_core_rules_versions_methods_and_termination() {
    let site = Site::empty();
    let (run, _) = serve(&site, |_| {});
    let port = run.port;
    let tus = Tus { port, token: TOKEN };
    let a = auth(TOKEN);
    let url = tus.create(Some(5), "t.txt");
    // No or another Tus-Resumable: 412 with Tus-Version, nothing done.
    for v in [None, Some("0.2.2")] {
        let mut h = vec![
            ("Authorization", a.as_str()),
            ("Content-Type", "application/offset+octet-stream"),
            ("Upload-Offset", "0"),
        ];
        h.extend(v.map(|v| ("Tus-Resumable", v)));
        let r = send(port, "PATCH", &url, &h, b"hello");
        assert_eq!(r.status, 412, "{v:?}");
        assert_eq!(r.header("tus-version"), Some("1.0.0"));
    }
    assert_eq!(tus.offset(&url), 0);
    // Another media type: 415. No Upload-Offset: 400.
    let h = [
        ("Authorization", a.as_str()),
        ("Tus-Resumable", "1.0.0"),
        ("Upload-Offset", "0"),
        ("Content-Type", "application/octet-stream"),
    ];
    assert_eq!(send(port, "PATCH", &url, &h, b"hello").status, 415);
    let h = [
        ("Authorization", a.as_str()),
        ("Tus-Resumable", "1.0.0"),
        ("Content-Type", "application/offset+octet-stream"),
    ];
    assert_eq!(send(port, "PATCH", &url, &h, b"hello").status, 400);
    // X-HTTP-Method-Override: a POST that is a PATCH.
    let h = [
        ("Authorization", a.as_str()),
        ("Tus-Resumable", "1.0.0"),
        ("X-HTTP-Method-Override", "PATCH"),
        ("Content-Type", "application/offset+octet-stream"),
        ("Upload-Offset", "0"),
    ];
    let r = send(port, "POST", &url, &h, b"he");
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.header("upload-offset"), Some("2"));
    // Unknown uploads, methods.
    let unknown = format!("/_upload/{}", "0".repeat(32));
    assert_eq!(tus.head(&unknown).status, 404);
    assert_eq!(tus.head("/_upload/not-an-id").status, 404);
    let r = send(
        port,
        "PUT",
        &url,
        &[("Authorization", &a), ("Tus-Resumable", "1.0.0")],
        b"",
    );
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("OPTIONS, HEAD, PATCH, DELETE"));
    // A GET is a download, whatever its path (tus has no GET): there is no such file.
    assert_eq!(run.get(&url, &[("Authorization", &a)]).status, 404);
    // creation-with-upload, and an empty upload completed at once.
    let m = metadata("with-body.txt");
    let h = [
        ("Authorization", a.as_str()),
        ("Tus-Resumable", "1.0.0"),
        ("Upload-Length", "4"),
        ("Upload-Metadata", m.as_str()),
        ("Content-Type", "application/offset+octet-stream"),
    ];
    let r = send(port, "POST", "/_upload/", &h, b"body");
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.header("upload-offset"), Some("4"));
    assert_eq!(run.get("/with-body.txt", &[]).body, b"body");
    let empty = tus.create(Some(0), "empty.txt");
    assert_eq!(tus.offset(&empty), 0);
    assert_eq!(run.get("/empty.txt", &[]).status, 200);
    // No filename, both lengths, a bad Defer-Length: 400.
    let h = [
        ("Authorization", a.as_str()),
        ("Tus-Resumable", "1.0.0"),
        ("Upload-Length", "1"),
    ];
    assert_eq!(send(port, "POST", "/_upload/", &h, b"").status, 400);
    let m = metadata("x");
    let h = [
        ("Authorization", a.as_str()),
        ("Tus-Resumable", "1.0.0"),
        ("Upload-Length", "1"),
        ("Upload-Defer-Length", "1"),
        ("Upload-Metadata", m.as_str()),
    ];
    assert_eq!(send(port, "POST", "/_upload/", &h, b"").status, 400);
    // Termination: gone with its bytes; 404 afterwards.
    let del = |u: &str| {
        send(
            port,
            "DELETE",
            u,
            &[("Authorization", &a), ("Tus-Resumable", "1.0.0")],
            b"",
        )
    };
    assert_eq!(del(&url).status, 204);
    assert_eq!(tus.head(&url).status, 404);
    assert!(!part(&site.root(), &url).exists());
    assert!(!site.root().join("t.txt").exists());
}

#[test]
fn a_put_is_published_whole_or_not_at_all() {
    let site = Site::empty();
    let (run, _) = serve(&site, |_| {});
    let a = auth(TOKEN);
    // A body cut short: nothing appears, nothing is left behind.
    let head = head_bytes("PUT", "/cut.bin", &[("Authorization", &a)], 100_000);
    let conn = begin(run.port, head, &pattern(50_000));
    drop(conn);
    let work = site.root().join(".rangeserve-uploads");
    wait_until("the temporary file to go", Duration::from_secs(10), || {
        std::fs::read_dir(&work)
            .map(|d| d.count() == 0)
            .unwrap_or(true)
    });
    assert!(!site.root().join("cut.bin").exists());
    assert_eq!(run.get("/cut.bin", &[]).status, 404);
    let data = pattern(2 << 20);
    let r = send(
        run.port,
        "PUT",
        "/whole.bin",
        &[("Authorization", &a)],
        &data,
    );
    assert_eq!(r.status, 201);
    let got = run.get("/whole.bin", &[]);
    assert!(got.body == data);
    assert_eq!(got.header("etag"), Some(etag_of(&data).as_str()));
}

#[test]
fn uploads_over_http2() {
    use http_body_util::BodyExt;

    let site = Site::empty();
    let (run, metrics) = serve(&site, |_| {});
    let port = run.port;
    let data = pattern(3 << 20);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let h2 = H2::connect(port, &[("tus-resumable", "1.0.0")]).await;
        let m = metadata("h2.bin");
        let len = data.len().to_string();
        let resp = h2
            .send(
                "POST",
                "/_upload/",
                &[("upload-length", &len), ("upload-metadata", &m)],
                vec![],
            )
            .await;
        assert_eq!(resp.version(), http::Version::HTTP_2);
        assert_eq!(resp.status(), 201);
        let url = resp.headers()["location"].to_str().unwrap().to_string();
        let resp = h2
            .send(
                "PATCH",
                &url,
                &[
                    ("content-type", "application/offset+octet-stream"),
                    ("upload-offset", "0"),
                ],
                data.clone(),
            )
            .await;
        assert_eq!(resp.status(), 204);
        assert_eq!(resp.headers()["upload-offset"], len.as_str());
        let _ = resp.into_body().collect().await;
        // A plain PUT too.
        let resp = h2
            .send("PUT", "/h2-put.bin", &[], data[..1000].to_vec())
            .await;
        assert_eq!(resp.status(), 201);
        h2.close().await;
    });
    let got = run.get("/h2.bin", &[]);
    assert!(got.body == data);
    assert_eq!(got.header("etag"), Some(etag_of(&data).as_str()));
    assert_eq!(run.get("/h2-put.bin", &[]).body, &data[..1000]);
    assert_eq!(metric(metrics, "rangeserve_hashed_bytes_total"), 0.0);
}

/// The text between `open` and the next `close` in `page`.
fn between<'a>(page: &'a str, open: &str, close: &str) -> &'a str {
    let start = page.find(open).unwrap_or_else(|| panic!("no {open}")) + open.len();
    let len = page[start..]
        .find(close)
        .unwrap_or_else(|| panic!("no {close}"));
    &page[start..start + len]
}

/// `'sha256-BASE64'`, a CSP source for inline text, computed here.
fn csp_source(inline: &str) -> String {
    use sha2::Digest as _;
    let sum = sha2::Sha256::digest(inline.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(sum)
    )
}

#[test]
fn the_upload_page_and_its_script_need_no_token_and_load_nothing_from_elsewhere() {
    let site = Site::empty();
    std::fs::create_dir(site.root().join("in coming")).unwrap();
    let (run, _) = serve(&site, |c| {
        c.args(["--upload-dir", "in coming"]);
    });
    let port = run.port;
    let r = run.get("/_upload/", &[]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("etag"), Some(etag_of(&r.body).as_str()));
    let page = String::from_utf8(r.body.clone()).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>\n"));
    // Where it uploads, where files land, and its one script, all on this server.
    assert!(page.contains("<body data-endpoint=\"/_upload/\" data-dir=\"/in%20coming/\">"));
    assert!(page.contains("<a href=\"/in%20coming/\">/in coming/</a>"));
    assert!(page.contains("<script src=\"/_upload/tus.min.js?v=4.3.1\"></script>"));
    assert_eq!(page.matches("<script").count(), 2);
    assert!(
        !page.contains("http:") && !page.contains("https:"),
        "{page}"
    );
    // The inline style and script are allowed by their hashes, nothing else is loaded.
    let csp = r.header("content-security-policy").unwrap();
    assert_eq!(
        csp,
        format!(
            "default-src 'none'; script-src 'self' {}; style-src {}; connect-src 'self'; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            csp_source(between(&page, "<script>", "</script>")),
            csp_source(between(&page, "<style>", "</style>")),
        )
    );
    // Conditional requests and HEAD.
    let etag = r.header("etag").unwrap();
    let nm = run.get("/_upload/", &[("If-None-Match", etag)]);
    assert_eq!(nm.status, 304);
    assert!(nm.body.is_empty());
    assert_eq!(nm.header("etag"), Some(etag));
    let head = send(port, "HEAD", "/_upload/", &[], b"");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    for h in ["content-type", "content-length", "etag", "cache-control"] {
        assert_eq!(head.header(h), r.header(h), "{h}");
    }

    // The script: tus-js-client's browser build, byte for byte as vendored.
    let vendored = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/app/upload/assets/tus.min.js"),
    )
    .unwrap();
    assert_eq!(
        sha256_hex(&vendored),
        "8cbb1b63fccc3bba0ae73ad1deb160ce046c3750851d0c3e94921ae3ef070eb8",
        "not dist/tus.min.js of tus-js-client 4.3.1"
    );
    for path in ["/_upload/tus.min.js", "/_upload/tus.min.js?v=4.3.1"] {
        let js = run.get(path, &[]);
        assert_eq!(js.status, 200, "{path}");
        assert!(js.body == vendored, "{path}: other bytes");
        assert_eq!(
            js.header("content-type"),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(js.header("etag"), Some(etag_of(&vendored).as_str()));
        assert_eq!(js.header("cache-control"), Some("public, max-age=86400"));
        assert_eq!(js.header("content-security-policy"), None);
    }
    let etag = etag_of(&vendored);
    let nm = run.get("/_upload/tus.min.js", &[("If-None-Match", &etag)]);
    assert_eq!(nm.status, 304);

    // The prefix without its slash leads to the page; other paths under it are what they were.
    let r = run.get("/_upload", &[]);
    assert_eq!((r.status, r.header("location")), (301, Some("/_upload/")));
    let r = run.get("/_upload?dir=a%20b", &[]);
    assert_eq!(r.header("location"), Some("/_upload/?dir=a%20b"));
    assert_eq!(run.get("/_upload/tus.js", &[]).status, 404);
    assert_eq!(run.get("/_upload/page", &[]).status, 404);
    let r = send(
        port,
        "POST",
        "/_upload/",
        &[("Tus-Resumable", "1.0.0")],
        b"",
    );
    assert_eq!(r.status, 401);
    // What the page asks before it uploads: OPTIONS with the token, 401 for a wrong one.
    let r = send(
        port,
        "OPTIONS",
        "/_upload/",
        &[("Authorization", &auth("wrong"))],
        b"",
    );
    assert_eq!(r.status, 401);
    let r = send(
        port,
        "OPTIONS",
        "/_upload/",
        &[("Authorization", &auth(TOKEN))],
        b"",
    );
    assert_eq!(r.status, 204);

    // Without uploads there is no page.
    let plain = site.serve(|_| {});
    assert_eq!(plain.get("/_upload/", &[]).status, 404);
    assert_eq!(plain.get("/_upload/tus.min.js", &[]).status, 404);
}

/// Serve uploads into a `size` tmpfs mounted over the site's root in a mount namespace of the
/// server's own (a user namespace makes that possible without privileges, and the mount goes
/// when the server does). `None` (after saying so) where namespaces are not available, unless
/// `CI` is set: then the test fails.
fn serve_on_small_disk(site: &Site, size: &str) -> Option<(Running, u16)> {
    use std::os::unix::process::CommandExt as _;
    let probe = Command::new("unshare").args(["-Urm", "true"]).status();
    if !probe.is_ok_and(|s| s.success()) {
        assert!(
            std::env::var_os("CI").is_none(),
            "unshare -Urm (user and mount namespaces) is needed for the disk-full test"
        );
        eprintln!("skipped: no user and mount namespaces here");
        return None;
    }
    let root = std::ffi::CString::new(site.root().into_os_string().into_encoded_bytes()).unwrap();
    let opts = std::ffi::CString::new(format!("size={size}")).unwrap();
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let maps = [
        (c"/proc/self/setgroups", "deny".to_string()),
        (c"/proc/self/uid_map", format!("0 {uid} 1")),
        (c"/proc/self/gid_map", format!("0 {gid} 1")),
    ];
    Some(serve(site, move |c| {
        let (root, opts, maps) = (root.clone(), opts.clone(), maps.clone());
        // SAFETY: only system calls between fork and exec, on memory prepared before the fork.
        unsafe {
            c.pre_exec(move || {
                let check = |r: libc::c_int| {
                    if r < 0 {
                        Err(std::io::Error::last_os_error())
                    } else {
                        Ok(())
                    }
                };
                check(libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS))?;
                for (path, text) in &maps {
                    let fd = libc::open(path.as_ptr(), libc::O_WRONLY);
                    check(fd)?;
                    let n = libc::write(fd, text.as_ptr().cast(), text.len());
                    libc::close(fd);
                    check(n as libc::c_int)?;
                }
                let none = std::ptr::null();
                check(libc::mount(
                    none,
                    c"/".as_ptr(),
                    none,
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ))?;
                check(libc::mount(
                    c"tmpfs".as_ptr(),
                    root.as_ptr(),
                    c"tmpfs".as_ptr(),
                    0,
                    opts.as_ptr().cast(),
                ))
            });
        }
    }))
}

#[test]
fn a_full_disk_is_507_with_a_consistent_offset_and_the_upload_continues_once_there_is_room() {
    let site = Site::empty();
    let Some((run, _)) = serve_on_small_disk(&site, "8m") else {
        return;
    };
    let port = run.port;
    let tus = Tus { port, token: TOKEN };
    // A known length that does not fit: refused before a byte is read.
    assert_eq!(tus.post(Some(16 << 20), "too-big.bin").status, 507);
    // An upload that takes 3 MiB of the 8.
    let filler = tus.create(Some(6 << 20), "filler.bin");
    assert_eq!(tus.patch(&filler, 0, &pattern(3 << 20)).status, 204);
    // A length not known, and a body without Content-Length: the disk fills up mid-append.
    let data = pattern(12 << 20);
    let url = tus.create(None, "big.bin");
    let a = auth(TOKEN);
    let mut req = format!(
        "PATCH {url} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nAuthorization: {a}\r\n\
         Tus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n\
         Content-Type: application/offset+octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for chunk in data.chunks(1 << 20) {
        req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend_from_slice(chunk);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let mut s = connect(addr(port), Duration::from_secs(60));
    // The server may answer and close before it has read everything.
    let _ = s.write_all(&req);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let r = Response::parse(&raw, false);
    assert_eq!(r.status, 507, "{r:?}");
    let stored: u64 = r.header("upload-offset").unwrap().parse().unwrap();
    assert!(
        (1 << 20..5 << 20).contains(&stored),
        "{stored}: the bytes before the disk filled up are kept"
    );
    assert_eq!(
        tus.offset(&url),
        stored,
        "the offset answered is the one kept"
    );
    // Room again (the filler goes), and the upload goes on from there to a length it declares.
    assert_eq!(
        send(port, "DELETE", &filler, &tus.headers(&a, &[]), b"").status,
        204
    );
    let total = (stored + (1 << 20)).to_string();
    let rest = &data[stored as usize..stored as usize + (1 << 20)];
    let r = tus.patch_with(&url, stored, rest, &[("Upload-Length", &total)]);
    assert_eq!(r.status, 204, "{r:?}");
    let got = run.get("/big.bin", &[]);
    let want = &data[..stored as usize + (1 << 20)];
    assert!(
        got.body == want,
        "the published bytes are the first {total}"
    );
    assert_eq!(got.header("etag"), Some(etag_of(want).as_str()));
}

/// An h2c connection (HTTP/2 by prior knowledge) to the server on `port`: every request it
/// sends carries `TOKEN`'s credentials and the `base` headers.
pub(crate) struct H2 {
    send: hyper::client::conn::http2::SendRequest<http_body_util::Full<hyper::body::Bytes>>,
    conn: tokio::task::JoinHandle<Result<(), hyper::Error>>,
    port: u16,
    base: Vec<(&'static str, &'static str)>,
}

impl H2 {
    pub(crate) async fn connect(port: u16, base: &[(&'static str, &'static str)]) -> H2 {
        use hyper_util::rt::{TokioExecutor, TokioIo};
        let tcp = tokio::net::TcpStream::connect(addr(port)).await.unwrap();
        let (send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .unwrap();
        H2 {
            send,
            conn: tokio::spawn(conn),
            port,
            base: base.to_vec(),
        }
    }

    /// `method path` with `headers` and `body`; the response.
    pub(crate) async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> http::Response<hyper::body::Incoming> {
        let mut b = http::Request::builder()
            .method(method)
            .uri(format!("http://127.0.0.1:{}{path}", self.port))
            .header("authorization", auth(TOKEN));
        for (k, v) in self.base.iter().chain(headers) {
            b = b.header(*k, *v);
        }
        let req = b.body(http_body_util::Full::new(body.into())).unwrap();
        self.send.clone().send_request(req).await.unwrap()
    }

    /// Close the connection; it must end cleanly.
    pub(crate) async fn close(self) {
        let H2 { send, conn, .. } = self;
        drop(send);
        conn.await.unwrap().unwrap();
    }
}
