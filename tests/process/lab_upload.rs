//! The lab's upload endpoint (`{prefix}/upload/`) against the binary over TCP, with a raw tus
//! (and IETF-draft) client written here: no token, its own store under `TMPDIR` (removed at
//! exit), published files under `{prefix}/uploaded/`, and each upload fault (`cut_after`,
//! `fail`/`fail_times`, `lose`, `rate`, `stall`) seen by the client and in `/requests`.
//! (Real clients against it: `clients/uploads.rs`.)

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::common::process::*;
use crate::common::*;
use crate::upload::{head_bytes, send};

/// The binary with the lab on (uploads off), its temporary directory inside the site.
fn serve_lab(site: &Site) -> Running {
    let tmp = tmp_dir(site);
    site.serve(|c| {
        c.arg("--lab").env("TMPDIR", &tmp);
    })
}

fn tmp_dir(site: &Site) -> PathBuf {
    let tmp = site.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    tmp
}

fn metadata(filename: &str) -> String {
    use base64::Engine as _;
    format!(
        "filename {}",
        base64::engine::general_purpose::STANDARD.encode(filename)
    )
}

/// Create a tus upload of `len` bytes named `name` at the endpoint with `query`; its URL
/// (path and query).
fn create(port: u16, query: &str, len: usize, name: &str) -> String {
    let (m, l) = (metadata(name), len.to_string());
    let r = send(
        port,
        "POST",
        &format!("/_lab/upload/{query}"),
        &[
            ("Tus-Resumable", "1.0.0"),
            ("Upload-Length", &l),
            ("Upload-Metadata", &m),
        ],
        b"",
    );
    assert_eq!(r.status, 201, "{r:?}");
    r.header("location").unwrap().to_string()
}

fn patch_head(url: &str, offset: u64, len: usize) -> Vec<u8> {
    let o = offset.to_string();
    head_bytes(
        "PATCH",
        url,
        &[
            ("Tus-Resumable", "1.0.0"),
            ("Content-Type", "application/offset+octet-stream"),
            ("Upload-Offset", &o),
        ],
        len,
    )
}

fn patch(port: u16, url: &str, offset: u64, body: &[u8]) -> Response {
    let mut req = patch_head(url, offset, body.len());
    req.extend_from_slice(body);
    Response::parse(&exchange(addr(port), &req, Duration::from_secs(60)), false)
}

/// A PATCH whose connection the server is to close: what came back before it did (nothing,
/// when the cut is clean).
fn patch_cut(port: u16, url: &str, offset: u64, body: &[u8]) -> Vec<u8> {
    let mut s = connect(addr(port), Duration::from_secs(60));
    s.write_all(&patch_head(url, offset, body.len())).unwrap();
    // The server may close before it has all of it: that is the fault.
    let _ = s.write_all(body);
    wait_closed(&mut s, Duration::from_secs(30)).0
}

fn head(port: u16, url: &str) -> Response {
    send(port, "HEAD", url, &[("Tus-Resumable", "1.0.0")], b"")
}

fn offset(port: u16, url: &str) -> u64 {
    let r = head(port, url);
    assert_eq!(r.status, 200, "{r:?}");
    r.header("upload-offset").unwrap().parse().unwrap()
}

/// The path of `url` without its query: the upload without faults.
fn plain(url: &str) -> &str {
    url.split('?').next().unwrap()
}

/// What `/requests` saw under `key`.
fn requests(port: u16, key: &str) -> Vec<Value> {
    let r = get_at(port, &format!("/_lab/requests?key={key}"), &[]);
    assert_eq!(r.status, 200);
    let doc: Value = serde_json::from_slice(&r.body).unwrap();
    doc["requests"].as_array().unwrap().clone()
}

/// (method, status, upload_offset, answer_offset, received, faults) of each request.
type Seen = (String, Value, Value, Value, u64, Vec<String>);

fn seen(port: u16, key: &str) -> Vec<Seen> {
    requests(port, key)
        .iter()
        .map(|e| {
            (
                e["method"].as_str().unwrap().to_string(),
                e["status"].clone(),
                e["upload_offset"].clone(),
                e["answer_offset"].clone(),
                e["received"].as_u64().unwrap(),
                e["faults"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect()
}

fn row(
    method: &str,
    status: Option<u16>,
    asked: Option<u64>,
    answer: Option<u64>,
    received: u64,
    faults: &[&str],
) -> Seen {
    (
        method.to_string(),
        status.into(),
        asked.into(),
        answer.into(),
        received,
        faults.iter().map(|f| f.to_string()).collect(),
    )
}

/// The published file: its bytes are `data` and its ETag their SHA-256.
fn assert_published(port: u16, name: &str, data: &[u8]) {
    let r = get_at(port, &format!("/_lab/uploaded/{name}"), &[]);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body == data, "the published bytes differ");
    assert_eq!(r.header("etag"), Some(etag_of(data).as_str()));
}

#[test]
fn lab_uploads_take_no_token_and_publish_under_the_lab() {
    let site = Site::new();
    let mut run = serve_lab(&site);
    let port = run.port;
    let log = run.log_shows("lab uploads:");
    assert!(log.contains("/_lab/upload/"), "{log}");
    // The store: one directory of its own under TMPDIR.
    let dirs: Vec<_> = std::fs::read_dir(tmp_dir(&site)).unwrap().collect();
    assert_eq!(dirs.len(), 1);
    let store = dirs[0].as_ref().unwrap().path();

    let r = send(port, "OPTIONS", "/_lab/upload/", &[], b"");
    assert_eq!(r.status, 204);
    assert_eq!(r.header("tus-max-size"), Some("4294967296"));
    assert!(r.header("tus-extension").unwrap().contains("creation"));

    // tus, without a token (a token is ignored, not refused).
    let data = pattern(100_000);
    let url = create(port, "", data.len(), "dir/a.bin");
    assert!(
        url.starts_with("/_lab/upload/") && !url.contains('?'),
        "{url}"
    );
    let r = send(
        port,
        "HEAD",
        &url,
        &[("Tus-Resumable", "1.0.0"), ("Authorization", "Bearer nope")],
        b"",
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("upload-offset"), Some("0"));
    let r = patch(port, &url, 0, &data);
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.header("upload-offset"), Some("100000"));
    assert_published(port, "dir/a.bin", &data);
    assert!(store.join("dir/a.bin").is_file());
    // Not in the root, not served there.
    assert_eq!(run.get("/dir/a.bin", &[]).status, 404);

    // The IETF draft: the whole file at creation; Location is where it is published.
    let doc = b"draft bytes\n";
    let r = send(
        port,
        "POST",
        "/_lab/upload/",
        &[
            ("Upload-Complete", "?1"),
            ("Content-Disposition", "inline; filename=\"d.txt\""),
        ],
        doc,
    );
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.header("location"), Some("/_lab/uploaded/d.txt"));
    assert_eq!(r.header("etag"), Some(etag_of(doc).as_str()));
    assert_published(port, "d.txt", doc);
    // Overwrite is on: the same name again replaces it.
    let r = send(
        port,
        "POST",
        "/_lab/upload/",
        &[
            ("Upload-Complete", "?1"),
            ("Content-Disposition", "inline; filename=\"d.txt\""),
        ],
        b"again",
    );
    assert_eq!(r.status, 204, "{r:?}");
    assert_published(port, "d.txt", b"again");

    // Bounded: more than 4 GiB is refused at creation.
    let r = send(
        port,
        "POST",
        "/_lab/upload/",
        &[
            ("Tus-Resumable", "1.0.0"),
            ("Upload-Length", "4294967297"),
            ("Upload-Metadata", &metadata("big.bin")),
        ],
        b"",
    );
    assert_eq!(r.status, 413, "{r:?}");
    // Plain PUT is not taken under the lab.
    assert_eq!(send(port, "PUT", "/_lab/upload/", &[], b"x").status, 405);

    // Removed when the server stops.
    run.sigterm();
    assert!(run.wait_exit(Duration::from_secs(30)).success());
    assert!(!store.exists(), "{} is left", store.display());

    // Killed, it cannot: the next lab server removes what it left.
    let run = serve_lab(&site);
    run.log_shows("lab uploads:");
    let left: Vec<_> = std::fs::read_dir(tmp_dir(&site)).unwrap().collect();
    assert_eq!(left.len(), 1);
    drop(run); // SIGKILL
    let run = serve_lab(&site);
    run.log_shows("lab uploads:");
    let now: Vec<PathBuf> = std::fs::read_dir(tmp_dir(&site))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now[0], left[0].as_ref().unwrap().path());
    run.log_shows("left by a server that is gone");
}

#[test]
fn lab_uploads_with_real_uploads_on_and_with_the_lab_off() {
    let site = Site::new();
    let tmp = tmp_dir(&site);
    // Real uploads still need their token; the lab's do not.
    let run = site.serve(|c| {
        c.arg("--lab")
            .arg("--upload-enabled")
            .env("RANGESERVE_UPLOAD_TOKENS", "tok-0123456789")
            .env("TMPDIR", &tmp);
    });
    let m = metadata("x.txt");
    let tus = [
        ("Tus-Resumable", "1.0.0"),
        ("Upload-Length", "3"),
        ("Upload-Metadata", m.as_str()),
    ];
    assert_eq!(send(run.port, "POST", "/_upload/", &tus, b"").status, 401);
    let url = create(run.port, "", 3, "l.txt");
    assert_eq!(patch(run.port, &url, 0, b"abc").status, 204);
    assert_published(run.port, "l.txt", b"abc");
    assert_eq!(run.get("/l.txt", &[]).status, 404);
    drop(run);

    // The lab off: nothing under its prefix takes uploads.
    let run = site.serve(|c| {
        c.env("TMPDIR", &tmp);
    });
    let r = send(run.port, "POST", "/_lab/upload/", &tus, b"");
    assert_eq!(r.status, 405, "{r:?}");
    assert!(!run.log().contains("lab uploads"));
}

#[test]
fn cut_after_keeps_the_bytes_before_and_the_client_resumes() {
    let site = Site::new();
    let run = serve_lab(&site);
    let port = run.port;
    let data = pattern(1000);
    // The creation's query carries over to the upload's URL.
    let url = create(port, "?key=cut1&cut_after=300", data.len(), "cut.bin");
    assert!(url.ends_with("?key=cut1&cut_after=300"), "{url}");
    // The connection is closed after 300 body bytes, with no answer; they are stored.
    assert_eq!(patch_cut(port, &url, 0, &data), b"");
    assert_eq!(offset(port, &url), 300);
    // The resume is cut 300 bytes on too.
    assert_eq!(patch_cut(port, &url, 300, &data[300..]), b"");
    assert_eq!(offset(port, &url), 600);
    // 300 bytes or fewer are not cut; without the fault the rest goes through.
    let r = patch(port, &url, 600, &data[600..900]);
    assert_eq!(r.status, 204, "{r:?}");
    let r = patch(port, plain(&url), 900, &data[900..]);
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.header("upload-offset"), Some("1000"));
    assert_published(port, "cut.bin", &data);
    let cut = ["cut_after=300"];
    assert_eq!(
        seen(port, "cut1"),
        vec![
            row("POST", Some(201), None, None, 0, &[]),
            row("PATCH", None, Some(0), None, 300, &cut),
            row("HEAD", Some(200), None, Some(300), 0, &[]),
            row("PATCH", None, Some(300), None, 300, &cut),
            row("HEAD", Some(200), None, Some(600), 0, &[]),
            row("PATCH", Some(204), Some(600), Some(900), 300, &[]),
        ]
    );
    run.log_shows("faults=cut_after=300");

    // The draft: a creation announced by 104 and cut; resumed from the offset reported.
    let mut s = connect(addr(port), Duration::from_secs(30));
    let head = head_bytes(
        "POST",
        "/_lab/upload/?key=cut2&cut_after=100",
        &[
            ("Upload-Complete", "?1"),
            ("Upload-Draft-Interop-Version", "8"),
            ("Content-Disposition", "inline; filename=\"draft.bin\""),
        ],
        data.len(),
    );
    s.write_all(&head).unwrap();
    let (interim, _) = read_head(&mut s);
    let interim = Response::parse_head(&interim);
    assert_eq!(interim.status, 104);
    let url = interim.header("location").unwrap().to_string();
    assert!(url.ends_with("?key=cut2&cut_after=100"), "{url}");
    let _ = s.write_all(&data);
    assert_eq!(wait_closed(&mut s, Duration::from_secs(30)).0, b"");
    let r = send(port, "HEAD", &url, &[], b"");
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.header("upload-offset"), Some("100"));
    assert_eq!(r.header("upload-complete"), Some("?0"));
    let r = send(
        port,
        "PATCH",
        plain(&url),
        &[
            ("Upload-Offset", "100"),
            ("Upload-Complete", "?1"),
            ("Content-Type", "application/partial-upload"),
        ],
        &data[100..],
    );
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.header("location"), Some("/_lab/uploaded/draft.bin"));
    assert_published(port, "draft.bin", &data);
}

#[test]
fn fail_times_refuses_the_first_appends_then_takes_them() {
    let site = Site::new();
    let run = serve_lab(&site);
    let port = run.port;
    let data = pattern(5000);
    let url = create(
        port,
        "?fail=503&fail_times=2&key=fail1",
        data.len(),
        "f.bin",
    );
    for _ in 0..2 {
        let r = patch(port, &url, 0, &data);
        assert_eq!(r.status, 503, "{r:?}");
        assert_eq!(r.header("retry-after"), Some("1"));
        assert_eq!(r.header("tus-resumable"), Some("1.0.0"));
        // Nothing stored.
        assert_eq!(offset(port, &url), 0);
    }
    let r = patch(port, &url, 0, &data);
    assert_eq!(r.status, 204, "{r:?}");
    assert_published(port, "f.bin", &data);
    let patches: Vec<Seen> = seen(port, "fail1")
        .into_iter()
        .filter(|s| s.0 == "PATCH")
        .collect();
    let failed = ["fail=503"];
    assert_eq!(
        patches,
        vec![
            row("PATCH", Some(503), Some(0), None, 5000, &failed),
            row("PATCH", Some(503), Some(0), None, 5000, &failed),
            row("PATCH", Some(204), Some(0), Some(5000), 5000, &[]),
        ]
    );
    // Per key: another key fails again; without fail_times every append fails; the draft's
    // appends fail too.
    let url = create(port, "?fail=500&key=fail2", 3, "g.bin");
    for _ in 0..3 {
        assert_eq!(patch(port, &url, 0, b"abc").status, 500);
    }
    let r = send(
        port,
        "POST",
        "/_lab/upload/?fail=502&fail_times=1&key=fail3",
        &[
            ("Upload-Complete", "?0"),
            ("Content-Disposition", "inline; filename=\"h.bin\""),
        ],
        b"",
    );
    assert_eq!(r.status, 201, "{r:?}");
    let url = r.header("location").unwrap().to_string();
    let append = |body: &[u8]| {
        send(
            port,
            "PATCH",
            &url,
            &[
                ("Upload-Offset", "0"),
                ("Upload-Complete", "?1"),
                ("Content-Type", "application/partial-upload"),
            ],
            body,
        )
    };
    assert_eq!(append(b"xyz").status, 502);
    assert_eq!(append(b"xyz").status, 201);
    assert_published(port, "h.bin", b"xyz");
    // A failing append is answered its status: the body faults wait for the next one.
    let data = pattern(100);
    let url = create(
        port,
        "?fail=503&fail_times=1&cut_after=10&key=fail4",
        100,
        "i.bin",
    );
    assert_eq!(patch(port, &url, 0, &data).status, 503);
    assert_eq!(patch_cut(port, &url, 0, &data), b"");
    assert_eq!(offset(port, &url), 10);
    // A reset key starts over.
    assert_eq!(
        get_at(port, "/_lab/reset?key=fail1", &[]).status,
        200,
        "reset"
    );
    assert!(requests(port, "fail1").is_empty());
}

#[test]
fn lose_takes_back_acknowledged_bytes() {
    let site = Site::new();
    let run = serve_lab(&site);
    let port = run.port;
    let data = pattern(1000);
    let url = create(port, "?key=lose1&lose=100", data.len(), "lost.bin");
    let r = patch(port, &url, 0, &data[..500]);
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.header("upload-offset"), Some("500"), "acknowledged");
    // As after a crash: the upload is 100 bytes short of what was acknowledged.
    assert_eq!(offset(port, &url), 400);
    let r = patch(port, &url, 500, &data[500..]);
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(r.header("upload-offset"), Some("400"));
    // Sent again from there; the append that completes the upload loses nothing.
    let r = patch(port, &url, 400, &data[400..]);
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.header("upload-offset"), Some("1000"));
    assert_published(port, "lost.bin", &data);
    assert_eq!(
        seen(port, "lose1"),
        vec![
            row("POST", Some(201), None, None, 0, &[]),
            row("PATCH", Some(204), Some(0), Some(500), 500, &["lose=100"]),
            row("HEAD", Some(200), None, Some(400), 0, &[]),
            row("PATCH", Some(409), Some(500), Some(400), 0, &[]),
            row("PATCH", Some(204), Some(400), Some(1000), 600, &[]),
        ]
    );
    // A creation with bytes is an append too.
    let (m, body) = (metadata("lost3.bin"), pattern(300));
    let r = send(
        port,
        "POST",
        "/_lab/upload/?lose=50",
        &[
            ("Tus-Resumable", "1.0.0"),
            ("Upload-Length", "1000"),
            ("Upload-Metadata", &m),
            ("Content-Type", "application/offset+octet-stream"),
        ],
        &body,
    );
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.header("upload-offset"), Some("300"));
    assert_eq!(offset(port, r.header("location").unwrap()), 250);
    // More than was stored: back to 0.
    let url = create(port, "?lose=1000", 10, "lost2.bin");
    assert_eq!(patch(port, &url, 0, b"01234").status, 204);
    assert_eq!(offset(port, &url), 0);
}

#[test]
fn rate_and_stall_let_the_request_take_its_course() {
    let site = Site::new();
    let run = serve_lab(&site);
    let port = run.port;
    let data = pattern(64 * 1024);
    let url = create(port, "?key=slow1&rate=400000", data.len(), "slow.bin");
    let r = patch(port, &url, 0, &data);
    assert_eq!(r.status, 204, "{r:?}");
    assert_published(port, "slow.bin", &data);
    let url = create(
        port,
        "?key=slow1&stall=200&stall_after=1000",
        data.len(),
        "stalled.bin",
    );
    let r = patch(port, &url, 0, &data);
    assert_eq!(r.status, 204, "{r:?}");
    assert_published(port, "stalled.bin", &data);
    // A stall past the body's end does not take effect.
    let url = create(port, "?key=slow1&stall=200&stall_after=5000", 10, "s.bin");
    assert_eq!(patch(port, &url, 0, &data[..10]).status, 204);
    let patches: Vec<Seen> = seen(port, "slow1")
        .into_iter()
        .filter(|s| s.0 == "PATCH")
        .collect();
    let n = data.len() as u64;
    assert_eq!(
        patches,
        vec![
            row("PATCH", Some(204), Some(0), Some(n), n, &["rate=400000"]),
            row(
                "PATCH",
                Some(204),
                Some(0),
                Some(n),
                n,
                &["stall=200", "stall_after=1000"]
            ),
            row("PATCH", Some(204), Some(0), Some(10), 10, &[]),
        ]
    );
}

#[test]
fn bad_upload_fault_parameters_are_a_400() {
    let site = Site::new();
    let run = serve_lab(&site);
    let port = run.port;
    let url = create(port, "", 3, "ok.bin");
    for (query, name) in [
        ("cut_after=x", "cut_after"),
        ("cut_after=-5", "cut_after"),
        ("fail=404", "fail"),
        ("fail=truncate", "fail"),
        ("fail_times=3", "fail_times"),
        ("stall=99999999", "stall"),
        ("stall_after=10", "stall_after"),
        ("rate=0", "rate"),
        ("lose=1.5", "lose"),
        ("lose=1&lose=2", "lose"),
        ("cut=10", "cut"),
        ("key=", "key"),
    ] {
        for (method, path) in [
            ("POST", format!("/_lab/upload/?{query}")),
            ("PATCH", format!("{url}?{query}")),
            ("HEAD", format!("{url}?{query}")),
        ] {
            let r = send(port, method, &path, &[("Tus-Resumable", "1.0.0")], b"");
            assert_eq!(r.status, 400, "{method} {path}: {r:?}");
            if method != "HEAD" {
                let text = String::from_utf8(r.body).unwrap();
                assert!(text.contains(&format!("`{name}`")), "{query}: {text}");
                assert_eq!(text.lines().count(), 1, "{text}");
            }
        }
    }
    // An upload fault on a download URL is as unknown as any other parameter.
    assert_eq!(run.get("/_lab/gen/10?lose=5", &[]).status, 400);
    // Still serving, nothing stored.
    assert_eq!(offset(port, &url), 0);
    assert!(!run.log().contains("panicked"));
}
