//! The IETF resumable-upload draft (interop version 8) against the binary over raw HTTP/1.1:
//! `104 (Upload Resumption Supported)` before the body is read, a creation cut off and
//! resumed from the offset the server reports, appends, problem details, digests, limits.

use std::io::{Read, Write};
use std::time::Duration;

use base64::Engine as _;
use sha2::Digest as _;

use crate::common::process::*;
use crate::common::*;
use crate::upload::{auth, begin, file_len, head_bytes, metric, part, send, serve, H2, TOKEN};

const DRAFT: (&str, &str) = ("Upload-Draft-Interop-Version", "8");

/// The interim (1xx) responses at the start of `raw`, and the final response after them.
fn with_interims(raw: &[u8], head: bool) -> (Vec<Response>, Response) {
    let mut rest = raw;
    let mut interims = Vec::new();
    while rest.starts_with(b"HTTP/1.1 1") {
        let end = find(rest, b"\r\n\r\n").expect("a whole interim head") + 4;
        interims.push(Response::parse(&rest[..end], true));
        rest = &rest[end..];
    }
    (interims, Response::parse(rest, head))
}

/// `METHOD path` with the token, `headers` and `body`; the interim and final responses.
fn draft(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (Vec<Response>, Response) {
    let a = auth(TOKEN);
    let mut req = head_bytes(
        method,
        path,
        &[&[("Authorization", a.as_str())], headers].concat(),
        body.len(),
    );
    req.extend_from_slice(body);
    let raw = exchange(addr(port), &req, Duration::from_secs(60));
    with_interims(&raw, method == "HEAD")
}

fn repr_digest(bytes: &[u8]) -> String {
    let sum = sha2::Sha256::digest(bytes);
    format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode(sum)
    )
}

fn json(r: &Response) -> serde_json::Value {
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    serde_json::from_slice(&r.body).unwrap()
}

/// An upload URL as the server gives it: the prefix and 32 hex digits.
fn assert_upload_url(loc: &str) {
    let id = loc
        .strip_prefix("/_upload/")
        .unwrap_or_else(|| panic!("{loc}"));
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{loc}"
    );
}

#[test]
fn a_creation_announced_by_104_is_cut_off_and_resumed_from_the_offset_reported() {
    let site = Site::empty();
    let (run, metrics) = serve(&site, |_| {});
    let data = pattern(8 << 20);
    let (a, len, digest) = (auth(TOKEN), data.len().to_string(), repr_digest(&data));
    let head = head_bytes(
        "POST",
        "/_upload/",
        &[
            ("Authorization", &a),
            ("Upload-Complete", "?1"),
            DRAFT,
            ("Content-Disposition", "inline; filename=\"ietf/data.bin\""),
            ("Repr-Digest", &digest),
        ],
        data.len(),
    );
    // The 104 comes before any byte of the body is needed.
    let mut conn = begin(run.port, head, b"");
    let (interim, _) = read_head(&mut conn);
    let interim = Response::parse_head(&interim);
    assert_eq!(interim.status, 104);
    let url = interim.header("location").unwrap().to_string();
    assert_upload_url(&url);
    assert_eq!(interim.header("upload-draft-interop-version"), Some("8"));
    let limit = interim.header("upload-limit").unwrap();
    assert!(limit.starts_with("max-age="), "{limit}");
    // Part of the body, then the connection is cut.
    conn.write_all(&data[..3 << 20]).unwrap();
    let part = part(&site.root(), &url);
    wait_until("bytes on disk", Duration::from_secs(20), || {
        file_len(&part) >= 2 << 20
    });
    drop(conn);
    assert_eq!(run.get("/ietf/data.bin", &[]).status, 404);

    // Resume: ask the offset, and append from there. While the cut request is still being
    // wound up, an append is refused with 409 (the draft's answer to a concurrent append): an
    // empty append shows when the upload is free, then the rest goes.
    let mut offset = 0;
    wait_until("the cut append wound up", Duration::from_secs(30), || {
        let (i, r) = draft(run.port, "HEAD", &url, &[DRAFT], b"");
        assert!(i.is_empty());
        assert_eq!(r.status, 204, "{r:?}");
        assert_eq!(r.header("upload-complete"), Some("?0"));
        assert_eq!(r.header("upload-length"), Some(len.as_str()));
        assert_eq!(r.header("cache-control"), Some("no-store"));
        assert!(r.header("upload-limit").unwrap().starts_with("max-age="));
        offset = r.header("upload-offset").unwrap().parse().unwrap();
        let o = offset.to_string();
        let (_, r) = draft(
            run.port,
            "PATCH",
            &url,
            &[
                ("Content-Type", "application/partial-upload"),
                ("Upload-Offset", &o),
                ("Upload-Complete", "?0"),
            ],
            b"",
        );
        assert!(r.status == 204 || r.status == 409, "{r:?}");
        r.status == 204
    });
    assert!((2 << 20..=3 << 20).contains(&offset), "{offset}");
    let stored = std::fs::read(&part).unwrap();
    assert!(
        stored[..] == data[..offset],
        "the stored bytes are not the first {offset}"
    );
    let o = offset.to_string();
    let (i, r) = draft(
        run.port,
        "PATCH",
        &url,
        &[
            ("Content-Type", "application/partial-upload"),
            ("Upload-Offset", &o),
            ("Upload-Complete", "?1"),
            DRAFT,
        ],
        &data[offset..],
    );
    assert!(i.is_empty(), "no 104 announces an append");
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.header("upload-complete"), Some("?1"));
    assert_eq!(r.header("location"), Some("/ietf/data.bin"));
    assert_eq!(r.header("etag"), Some(etag_of(&data).as_str()));
    assert_eq!(r.header("repr-digest"), Some(digest.as_str()));
    let got = run.get("/ietf/data.bin", &[]);
    assert!(got.body == data);
    assert_eq!(got.header("etag"), Some(etag_of(&data).as_str()));
    // The upload resource still answers, complete.
    let (_, r) = draft(run.port, "HEAD", &url, &[DRAFT], b"");
    assert_eq!(r.header("upload-complete"), Some("?1"));
    assert_eq!(r.header("upload-offset"), Some(len.as_str()));
    // ... by GET too (with the draft's header; without it a GET is a download).
    let (_, r) = draft(run.port, "GET", &url, &[DRAFT], b"");
    assert_eq!(
        (r.status, r.header("upload-offset")),
        (204, Some(len.as_str()))
    );
    assert_eq!(run.get(&url, &[]).status, 404);
    assert_eq!(metric(metrics, "rangeserve_hashed_bytes_total"), 0.0);
    // The access log counts the bytes the cut creation stored, and the rest.
    let lines = run.json_access_lines(1);
    let received = |method: &str| -> Vec<u64> {
        lines
            .iter()
            .filter(|l| l["fields"]["method"] == method)
            .map(|l| l["fields"]["received"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(received("POST"), [offset as u64]);
    let patches = received("PATCH");
    assert_eq!(patches.last(), Some(&((data.len() - offset) as u64)));
    assert!(patches[..patches.len() - 1].iter().all(|&n| n == 0));
}

#[test]
fn a_put_creation_in_parts_with_offsets_lengths_and_media_types_checked() {
    let site = Site::empty();
    let (run, _) = serve(&site, |_| {});
    let port = run.port;
    let (i, r) = draft(
        port,
        "PUT",
        "/parts.bin",
        &[("Upload-Complete", "?0"), ("Upload-Length", "10"), DRAFT],
        b"01234",
    );
    assert_eq!(i.len(), 1, "one 104");
    assert_eq!(i[0].status, 104);
    assert_eq!(r.status, 201, "{r:?}");
    let url = r.header("location").unwrap().to_string();
    assert_upload_url(&url);
    assert_eq!(i[0].header("location"), Some(url.as_str()));
    assert_eq!(r.header("upload-complete"), Some("?0"));
    assert_eq!(r.header("upload-offset"), Some("5"));
    assert!(r.header("upload-limit").is_some());
    assert_eq!(run.get("/parts.bin", &[]).status, 404, "not visible yet");
    let patch = |offset: &str, complete: &str, more: &[(&str, &str)], body: &[u8]| {
        let mut h = vec![
            ("Content-Type", "application/partial-upload"),
            ("Upload-Offset", offset),
            ("Upload-Complete", complete),
        ];
        h.extend_from_slice(more);
        draft(port, "PATCH", &url, &h, body).1
    };
    // A wrong offset: 409, the problem type, the offset.
    let r = patch("3", "?0", &[], b"xx");
    assert_eq!(r.status, 409);
    assert_eq!(r.header("upload-offset"), Some("5"));
    assert_eq!(r.header("upload-complete"), Some("?0"));
    let p = json(&r);
    assert_eq!(
        p["type"],
        "https://iana.org/assignments/http-problem-types#mismatching-upload-offset"
    );
    assert_eq!(
        (p["expected-offset"].as_u64(), p["provided-offset"].as_u64()),
        (Some(5), Some(3))
    );
    // Lengths that disagree: Content-Length 5 at offset 5 completes at 10, not 11.
    let r = patch("5", "?1", &[("Upload-Length", "11")], b"56789");
    assert_eq!(r.status, 400);
    assert_eq!(
        json(&r)["type"],
        "https://iana.org/assignments/http-problem-types#inconsistent-upload-length"
    );
    // Not the draft's media type; a bad Upload-Complete; a bad offset.
    let r = draft(
        port,
        "PATCH",
        &url,
        &[("Upload-Offset", "5"), ("Upload-Complete", "?1")],
        b"5",
    )
    .1;
    assert_eq!(r.status, 415);
    let r = draft(
        port,
        "PATCH",
        &url,
        &[
            ("Content-Type", "application/partial-upload"),
            ("Upload-Offset", "5"),
            ("Upload-Complete", "yes"),
        ],
        b"5",
    )
    .1;
    assert_eq!(r.status, 400);
    // Without Upload-Complete at all, a PATCH is a tus request that lacks Tus-Resumable.
    let r = draft(
        port,
        "PATCH",
        &url,
        &[
            ("Content-Type", "application/partial-upload"),
            ("Upload-Offset", "5"),
        ],
        b"5",
    )
    .1;
    assert_eq!(r.status, 412);
    let r = patch("five", "?1", &[], b"5");
    assert_eq!(r.status, 400);
    // None of that changed the upload.
    let (_, r) = draft(port, "HEAD", &url, &[], b"");
    assert_eq!(r.header("upload-offset"), Some("5"));
    // A Content-Digest that the bytes do not have: not kept.
    let wrong = repr_digest(b"other");
    let r = patch("5", "?0", &[("Content-Digest", &wrong)], b"56");
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.header("upload-offset"), Some("5"));
    let right = repr_digest(b"56");
    let r = patch("5", "?0", &[("Content-Digest", &right)], b"56");
    assert_eq!((r.status, r.header("upload-offset")), (204, Some("7")));
    assert_eq!(r.header("upload-complete"), Some("?0"));
    // The end; without the interop version, no 104.
    let (i, r) = draft(
        port,
        "PATCH",
        &url,
        &[
            ("Content-Type", "application/partial-upload"),
            ("Upload-Offset", "7"),
            ("Upload-Complete", "?1"),
        ],
        b"789",
    );
    assert!(i.is_empty());
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.header("location"), Some("/parts.bin"));
    assert_eq!(r.header("etag"), Some(etag_of(b"0123456789").as_str()));
    assert_eq!(run.get("/parts.bin", &[]).body, b"0123456789");
    // A repeat of the completing request with no bytes (its response was lost): complete.
    let r = patch("10", "?1", &[], b"");
    assert_eq!((r.status, r.header("upload-complete")), (204, Some("?1")));
    // A creation with no content and ?0: the upload resource before any byte.
    let (_, r) = draft(port, "PUT", "/later.bin", &[("Upload-Complete", "?0")], b"");
    assert_eq!((r.status, r.header("upload-offset")), (201, Some("0")));
    let later = r.header("location").unwrap().to_string();
    // Cancellation.
    let (_, r) = draft(port, "DELETE", &later, &[], b"");
    assert_eq!(r.status, 204);
    let (_, r) = draft(port, "HEAD", &later, &[], b"");
    assert_eq!(r.status, 404);
    // An HTTP/1.1 PUT to an existing file is refused as for tus (overwrite is off).
    let (_, r) = draft(
        port,
        "PUT",
        "/parts.bin",
        &[("Upload-Complete", "?1")],
        b"new",
    );
    assert_eq!(r.status, 409);
    assert_eq!(run.get("/parts.bin", &[]).body, b"0123456789");
}

#[test]
fn digests_limits_tokens_and_discovery() {
    let site = Site::empty();
    let (run, _) = serve(&site, |c| {
        c.args(["--upload-max-size", "1000"]);
    });
    let port = run.port;
    // Discovery: OPTIONS shows the limits (and tus's headers beside them).
    let (_, r) = draft(port, "OPTIONS", "/_upload/", &[], b"");
    assert_eq!(r.status, 204);
    assert_eq!(r.header("upload-limit"), Some("max-size=1000"));
    assert_eq!(r.header("tus-max-size"), Some("1000"));
    // Too large: 413 with the limits.
    let (_, r) = draft(
        port,
        "POST",
        "/_upload/",
        &[
            ("Upload-Complete", "?0"),
            ("Upload-Length", "2000"),
            ("Content-Disposition", "inline; filename=big.bin"),
        ],
        b"",
    );
    assert_eq!(r.status, 413);
    assert_eq!(r.header("upload-limit"), Some("max-size=1000"));
    // A Repr-Digest the bytes do not have: nothing published, the upload gone, and the
    // response says the upload is over.
    let wrong = repr_digest(b"something else");
    let (i, r) = draft(
        port,
        "POST",
        "/_upload/",
        &[
            ("Upload-Complete", "?1"),
            ("Content-Disposition", "inline; filename=digest.bin"),
            ("Repr-Digest", &wrong),
            DRAFT,
        ],
        b"hello",
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.header("upload-complete"), Some("?1"));
    let url = i[0].header("location").unwrap().to_string();
    assert_eq!(draft(port, "HEAD", &url, &[], b"").1.status, 404);
    assert_eq!(run.get("/digest.bin", &[]).status, 404);
    // The right one: published; the name from filename* (RFC 8187) over filename.
    let right = repr_digest(b"hello");
    let (_, r) = draft(
        port,
        "POST",
        "/_upload/",
        &[
            ("Upload-Complete", "?1"),
            (
                "Content-Disposition",
                "inline; filename=\"x.bin\"; filename*=UTF-8''h%C3%A9llo.txt",
            ),
            ("Repr-Digest", &right),
        ],
        b"hello",
    );
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.header("location"), Some("/h%C3%A9llo.txt"));
    assert_eq!(run.get("/h%C3%A9llo.txt", &[]).body, b"hello");
    // No name, a hostile name, no token: refused, nothing written.
    let (_, r) = draft(
        port,
        "POST",
        "/_upload/",
        &[("Upload-Complete", "?1")],
        b"x",
    );
    assert_eq!(r.status, 400);
    let (_, r) = draft(
        port,
        "POST",
        "/_upload/",
        &[
            ("Upload-Complete", "?1"),
            ("Content-Disposition", "inline; filename=\"../escape.txt\""),
        ],
        b"x",
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(!site.root().parent().unwrap().join("escape.txt").exists());
    let r = send(
        port,
        "POST",
        "/_upload/",
        &[
            ("Upload-Complete", "?1"),
            ("Content-Disposition", "inline; filename=anon.txt"),
        ],
        b"x",
    );
    assert_eq!(r.status, 401);
    assert_eq!(run.get("/anon.txt", &[]).status, 404);
    // Someone else's upload is not found.
    let (_, r) = draft(port, "PUT", "/mine.bin", &[("Upload-Complete", "?0")], b"");
    let mine = r.header("location").unwrap().to_string();
    let other = auth(crate::upload::OTHER);
    let r = send(port, "HEAD", &mine, &[("Authorization", &other)], b"");
    assert_eq!(r.status, 404);
}

#[test]
fn no_104_to_http_1_0_clients() {
    let site = Site::empty();
    let (run, _) = serve(&site, |_| {});
    let a = auth(TOKEN);
    let req = format!(
        "PUT /old.bin HTTP/1.0\r\nHost: t\r\nAuthorization: {a}\r\nUpload-Complete: ?1\r\n\
         Upload-Draft-Interop-Version: 8\r\nContent-Length: 3\r\n\r\nabc"
    );
    let mut s = connect(addr(run.port), Duration::from_secs(30));
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let (i, r) = with_interims(&raw, false);
    assert!(i.is_empty());
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(run.get("/old.bin", &[]).body, b"abc");
}

#[test]
fn a_104_never_lands_inside_an_earlier_pipelined_response() {
    let site = Site::empty();
    let big = pattern(32 << 20);
    std::fs::write(site.root().join("big.bin"), &big).unwrap();
    for fast_path in ["true", "false"] {
        let (run, _) = serve(&site, |c| {
            c.args(["--fast-path", fast_path]);
        });
        let a = auth(TOKEN);
        let name = format!("/piped-{fast_path}.bin");
        // A download and, right behind it on the same connection, a creation that would be
        // announced by a 104, sent at once: every byte in order on the wire, with the fast
        // path and with hyper. (The rules that keep a 104 out of an earlier response are
        // proven in-process, `transport::interim`'s tests: neither server here lets the two
        // overlap in practice.)
        let mut req = b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n".to_vec();
        req.extend_from_slice(&head_bytes(
            "PUT",
            &name,
            &[("Authorization", &a), ("Upload-Complete", "?1"), DRAFT],
            3,
        ));
        req.extend_from_slice(b"abc");
        let raw = exchange(addr(run.port), &req, Duration::from_secs(60));
        let end = find(&raw, b"\r\n\r\n").unwrap() + 4;
        let first = Response::parse(&raw[..end + big.len()], false);
        assert_eq!(first.status, 200);
        assert!(
            first.body == big,
            "the download's bytes are intact ({fast_path})"
        );
        let (interims, r) = with_interims(&raw[end + big.len()..], false);
        assert!(interims.iter().all(|i| i.status == 104), "{interims:?}");
        assert_eq!(r.status, 201, "{r:?}");
        assert_eq!(run.get(&name, &[]).body, b"abc");
    }
}

#[test]
fn the_draft_over_http2_without_interim_responses() {
    use http_body_util::BodyExt;

    let site = Site::empty();
    let (run, _) = serve(&site, |_| {});
    let port = run.port;
    let data = pattern(3 << 20);
    let half = data.len() / 2;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let h2 = H2::connect(port, &[DRAFT]).await;
        let len = data.len().to_string();
        // A creation with the first half (over HTTP/2 the server sends no 104: only HTTP/1.1
        // requests get the way to send one), then the rest, then the download.
        let resp = h2
            .send(
                "PUT",
                "/h2/draft.bin",
                &[("upload-complete", "?0"), ("upload-length", &len)],
                data[..half].to_vec(),
            )
            .await;
        assert_eq!(resp.version(), http::Version::HTTP_2);
        assert_eq!(resp.status(), 201);
        assert_eq!(resp.headers()["upload-complete"], "?0");
        assert_eq!(resp.headers()["upload-offset"], half.to_string().as_str());
        let url = resp.headers()["location"].to_str().unwrap().to_string();
        let resp = h2
            .send(
                "PATCH",
                &url,
                &[
                    ("content-type", "application/partial-upload"),
                    ("upload-offset", &half.to_string()),
                    ("upload-complete", "?1"),
                ],
                data[half..].to_vec(),
            )
            .await;
        assert_eq!(resp.status(), 201);
        assert_eq!(resp.headers()["upload-complete"], "?1");
        assert_eq!(resp.headers()["etag"], etag_of(&data).as_str());
        let _ = resp.into_body().collect().await;
        let resp = h2.send("GET", "/h2/draft.bin", &[], vec![]).await;
        let got = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(got[..] == data[..]);
        h2.close().await;
    });
}
