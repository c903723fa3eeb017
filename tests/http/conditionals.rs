//! Validators and conditional requests (RFC 9110 §8.8, §13) against the real server.
//! Expected validators are computed here: ETag = quoted SHA-256 of the bytes we wrote,
//! Last-Modified = the mtime we set, written out by hand.

use crate::common::*;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

// MTIME_SECS (2024-01-02T03:04:05Z, `common`) is the mtime given to most files here.
const RFC850: &str = "Tuesday, 02-Jan-24 03:04:05 GMT";
const ASCTIME: &str = "Tue Jan  2 03:04:05 2024";

/// IMF-fixdate of a whole second, for dates near MTIME_SECS.
fn date(secs: u64) -> String {
    httpdate::fmt_http_date(at(secs))
}

fn weak(bytes: &[u8]) -> String {
    format!("W/\"{}\"", sha256_hex(bytes))
}

/// A file whose mtime is MTIME_SECS.
fn fixed_file(s: &Server, rel: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = s.file(rel, bytes);
    set_mtime(&p, at(MTIME_SECS));
    p
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A Date field in IMF-fixdate form, naming a second within [lo, hi]; returns that second.
fn assert_date_between(r: &Response, lo: u64, hi: u64) -> u64 {
    let d = r
        .header("date")
        .unwrap_or_else(|| panic!("{} without Date", r.status));
    assert!(
        d.len() == 29 && d.ends_with(" GMT") && d.as_bytes()[3] == b',',
        "Date is not an IMF-fixdate: {d:?}"
    );
    let secs = httpdate::parse_http_date(d)
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(lo <= secs && secs <= hi, "Date {d} outside [{lo}, {hi}]");
    secs
}

/// 304: no body (the harness checks), the validators and the cache headers a 200 would carry.
fn assert_304(r: &Response, data: &[u8], last_modified: &str, cache_control: Option<&str>) {
    assert_eq!(r.status, 304, "headers: {:?}", r.headers);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some(etag_of(data).as_str()));
    assert_eq!(r.header("last-modified"), Some(last_modified));
    assert_eq!(r.header("cache-control"), cache_control);
    assert!(r.header("date").is_some(), "304 without Date");
    assert_eq!(r.header("content-range"), None);
}

fn assert_412(r: &Response) {
    assert_eq!(r.status, 412, "headers: {:?}", r.headers);
    assert_eq!(r.header("content-range"), None);
}

// ---- validators ------------------------------------------------------------------------------

#[test]
fn etag_and_last_modified_on_200_206_304_and_head() {
    let s = Server::start();
    let data = pattern(500);
    fixed_file(&s, "a.bin", &data);
    let tag = etag_of(&data);
    let lo = now_secs();

    let r = s.get("/a.bin", &[]);
    assert_full(&r, &data);
    let responses = [
        r,
        s.get("/a.bin", &[("Range", "bytes=5-9")]),
        s.get("/a.bin", &[("If-None-Match", &tag)]),
        s.request("HEAD", "/a.bin", &[]),
    ];
    let hi = now_secs();
    assert_206(&responses[1], &data, 5, 9);
    assert_eq!(responses[2].status, 304);
    assert_eq!(responses[3].status, 200);
    assert_eq!(responses[3].header("content-length"), Some("500"));
    for r in &responses {
        assert_eq!(r.header("etag"), Some(tag.as_str()), "{}", r.status);
        assert_eq!(r.header("last-modified"), Some(MTIME_STR), "{}", r.status);
        assert_date_between(r, lo, hi);
    }
}

#[test]
fn last_modified_drops_fractions_of_a_second() {
    let s = Server::start();
    let data = pattern(50);
    let p = s.file("a.bin", &data);
    set_mtime(&p, at(MTIME_SECS) + Duration::from_millis(750));
    let r = s.get("/a.bin", &[]);
    assert_eq!(r.header("last-modified"), Some(MTIME_STR));
    // The client can only echo whole seconds: that second counts as "not modified since".
    assert_304(
        &s.get("/a.bin", &[("If-Modified-Since", MTIME_STR)]),
        &data,
        MTIME_STR,
        Some("no-cache"),
    );
    // And as "unmodified since" for If-Unmodified-Since.
    assert_full(
        &s.get("/a.bin", &[("If-Unmodified-Since", MTIME_STR)]),
        &data,
    );
}

#[test]
fn last_modified_is_never_later_than_date() {
    let s = Server::start();
    let data = pattern(50);
    let p = s.file("future.bin", &data);
    let future = now_secs() + 24 * 3600;
    set_mtime(&p, at(future));
    let lo = now_secs();
    let r = s.get("/future.bin", &[]);
    let hi = now_secs();
    assert_full(&r, &data);
    let d = assert_date_between(&r, lo, hi);
    // §8.8.2.1: a modification date in the future is replaced by the Date.
    assert_eq!(r.header("last-modified"), Some(date(d).as_str()));
}

#[test]
fn date_on_every_response() {
    let s = Server::start();
    let data = pattern(100);
    fixed_file(&s, "a.bin", &data);
    let tag = etag_of(&data);
    let lo = now_secs();
    let rs = [
        s.get("/a.bin", &[]),
        s.get("/a.bin", &[("Range", "bytes=0-0")]),
        s.get("/a.bin", &[("Range", "bytes=0-0,5-5")]),
        s.get("/a.bin", &[("If-None-Match", &tag)]),
        s.get("/a.bin", &[("If-Match", "\"nope\"")]),
        s.get("/a.bin", &[("Range", "bytes=100-")]),
        s.request("HEAD", "/a.bin", &[]),
        s.get("/missing.bin", &[]),
    ];
    let hi = now_secs();
    let statuses: Vec<u16> = rs.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 206, 206, 304, 412, 416, 200, 404]);
    for r in &rs {
        assert_date_between(r, lo, hi);
    }
}

#[test]
fn same_content_gives_same_etag() {
    let s = Server::start();
    let data = pattern(777);
    fixed_file(&s, "one.bin", &data);
    let p2 = s.file("two.bin", &data);
    set_mtime(&p2, at(MTIME_SECS + 1000));
    let p3 = s.root.join("three.dat");
    std::fs::copy(s.root.join("one.bin"), &p3).unwrap();
    set_mtime(&p3, at(MTIME_SECS - 5000));
    let want = etag_of(&data);
    for (path, lm) in [
        ("/one.bin", date(MTIME_SECS)),
        ("/two.bin", date(MTIME_SECS + 1000)),
        ("/three.dat", date(MTIME_SECS - 5000)),
    ] {
        let r = s.get(path, &[]);
        assert_full(&r, &data);
        assert_eq!(r.header("etag"), Some(want.as_str()), "{path}");
        assert_eq!(r.header("last-modified"), Some(lm.as_str()), "{path}");
    }
    // Different content, different tag.
    let other = pattern(778);
    s.file("four.bin", &other);
    let r = s.get("/four.bin", &[]);
    assert_eq!(r.header("etag"), Some(etag_of(&other).as_str()));
    assert_ne!(etag_of(&other), want);
}

// ---- If-Match / If-Unmodified-Since ----------------------------------------------------------

#[test]
fn if_match_uses_strong_comparison() {
    let s = Server::start();
    let data = pattern(100);
    fixed_file(&s, "a.bin", &data);
    let tag = etag_of(&data);
    let get = |v: &str| s.get("/a.bin", &[("If-Match", v)]);
    assert_full(&get(&tag), &data);
    assert_full(&get("*"), &data);
    assert_full(&get(&format!("\"x\", {tag}")), &data);
    assert_full(&get(&format!("{tag},\"y\"")), &data);
    assert_412(&get("\"nope\""));
    assert_412(&get(&etag_of(b"other")));
    assert_412(&get(&weak(&data)));
    assert_412(&get(&format!("\"x\", {}", weak(&data))));
}

#[test]
fn if_unmodified_since() {
    let s = Server::start();
    let data = pattern(100);
    fixed_file(&s, "a.bin", &data);
    let tag = etag_of(&data);
    let get = |hs: &[(&str, &str)]| s.get("/a.bin", hs);
    assert_412(&get(&[("If-Unmodified-Since", &date(MTIME_SECS - 1))]));
    assert_412(&get(&[("If-Unmodified-Since", &date(MTIME_SECS - 86400))]));
    assert_full(&get(&[("If-Unmodified-Since", MTIME_STR)]), &data);
    assert_full(
        &get(&[("If-Unmodified-Since", &date(MTIME_SECS + 1))]),
        &data,
    );
    // Ignored when If-Match is present and true.
    assert_full(
        &get(&[
            ("If-Match", &tag),
            ("If-Unmodified-Since", &date(MTIME_SECS - 1)),
        ]),
        &data,
    );
    // If-Match false wins over a fresh date.
    assert_412(&get(&[
        ("If-Match", "\"nope\""),
        ("If-Unmodified-Since", &date(MTIME_SECS + 1)),
    ]));
    // An invalid date is ignored.
    assert_full(&get(&[("If-Unmodified-Since", "yesterday")]), &data);
    assert_full(
        &get(&[("If-Unmodified-Since", "2024-01-01T00:00:00Z")]),
        &data,
    );
}

// ---- If-None-Match / If-Modified-Since -------------------------------------------------------

#[test]
fn if_none_match_gives_304_with_validators() {
    let s = Server::start();
    let data = pattern(100);
    fixed_file(&s, "a.bin", &data);
    let tag = etag_of(&data);
    let nc = Some("no-cache");
    let get = |v: &str| s.get("/a.bin", &[("If-None-Match", v)]);
    assert_304(&get(&tag), &data, MTIME_STR, nc);
    assert_304(&get(&weak(&data)), &data, MTIME_STR, nc);
    assert_304(&get("*"), &data, MTIME_STR, nc);
    assert_304(&get(&format!("\"x\", {tag}")), &data, MTIME_STR, nc);
    assert_304(
        &s.request("HEAD", "/a.bin", &[("If-None-Match", &tag)]),
        &data,
        MTIME_STR,
        nc,
    );
    assert_304(
        &s.request("HEAD", "/a.bin", &[("If-None-Match", &weak(&data))]),
        &data,
        MTIME_STR,
        nc,
    );
    let r = get("\"nope\", W/\"other\"");
    assert_full(&r, &data);
    assert_eq!(r.header("etag"), Some(tag.as_str()));
}

#[test]
fn cache_control_is_configurable_and_sent_with_304() {
    let s = Server::start_with(|c| {
        c.cache_control = Some(http::HeaderValue::from_static("public, max-age=60"))
    });
    let data = pattern(100);
    fixed_file(&s, "a.bin", &data);
    let r = s.get("/a.bin", &[]);
    assert_full(&r, &data);
    assert_eq!(r.header("cache-control"), Some("public, max-age=60"));
    assert_304(
        &s.get("/a.bin", &[("If-None-Match", &etag_of(&data))]),
        &data,
        MTIME_STR,
        Some("public, max-age=60"),
    );

    let s = Server::start_with(|c| c.cache_control = None);
    fixed_file(&s, "a.bin", &data);
    assert_eq!(s.get("/a.bin", &[]).header("cache-control"), None);
    assert_304(
        &s.get("/a.bin", &[("If-Modified-Since", MTIME_STR)]),
        &data,
        MTIME_STR,
        None,
    );
}

#[test]
fn if_modified_since() {
    let s = Server::start();
    let data = pattern(100);
    fixed_file(&s, "a.bin", &data);
    let nc = Some("no-cache");
    let get = |v: &str| s.get("/a.bin", &[("If-Modified-Since", v)]);
    assert_304(&get(MTIME_STR), &data, MTIME_STR, nc);
    assert_304(&get(&date(MTIME_SECS + 3600)), &data, MTIME_STR, nc);
    assert_304(
        &s.request("HEAD", "/a.bin", &[("If-Modified-Since", MTIME_STR)]),
        &data,
        MTIME_STR,
        nc,
    );
    assert_full(&get(&date(MTIME_SECS - 1)), &data);
    assert_full(&get("not a date"), &data);
    assert_full(&get("Tue, 02 Jan 2024 03:04:05"), &data);
}

#[test]
fn if_modified_since_accepts_obsolete_date_formats() {
    let s = Server::start();
    let data = pattern(100);
    fixed_file(&s, "a.bin", &data);
    let get = |v: &str| s.get("/a.bin", &[("If-Modified-Since", v)]);
    assert_304(&get(RFC850), &data, MTIME_STR, Some("no-cache"));
    assert_304(&get(ASCTIME), &data, MTIME_STR, Some("no-cache"));
    // Parsed as dates, not merely accepted: a second earlier is "modified".
    assert_full(&get("Tuesday, 02-Jan-24 03:04:04 GMT"), &data);
    assert_full(&get("Tue Jan  2 03:04:04 2024"), &data);
}

#[test]
fn if_modified_since_is_ignored_with_if_none_match() {
    let s = Server::start();
    let data = pattern(100);
    fixed_file(&s, "a.bin", &data);
    // Tag does not match, date says "not modified": the date is not evaluated.
    assert_full(
        &s.get(
            "/a.bin",
            &[
                ("If-None-Match", "\"old\""),
                ("If-Modified-Since", MTIME_STR),
            ],
        ),
        &data,
    );
    // Tag matches, date says "modified": still 304.
    assert_304(
        &s.get(
            "/a.bin",
            &[
                ("If-None-Match", &etag_of(&data)),
                ("If-Modified-Since", &date(MTIME_SECS - 100)),
            ],
        ),
        &data,
        MTIME_STR,
        Some("no-cache"),
    );
}

// ---- preconditions before ranges -------------------------------------------------------------

#[test]
fn preconditions_are_evaluated_before_range() {
    let s = Server::start();
    let data = pattern(100);
    fixed_file(&s, "a.bin", &data);
    let range = ("Range", "bytes=0-9");
    let tag = etag_of(&data);
    let nc = Some("no-cache");
    assert_304(
        &s.get("/a.bin", &[("If-None-Match", &tag), range]),
        &data,
        MTIME_STR,
        nc,
    );
    assert_412(&s.get("/a.bin", &[("If-Match", "\"nope\""), range]));
    assert_412(&s.get(
        "/a.bin",
        &[("If-Unmodified-Since", &date(MTIME_SECS - 1)), range],
    ));
    assert_304(
        &s.get("/a.bin", &[("If-Modified-Since", MTIME_STR), range]),
        &data,
        MTIME_STR,
        nc,
    );
    // Preconditions that pass let the range through.
    assert_206(&s.get("/a.bin", &[("If-Match", &tag), range]), &data, 0, 9);
    assert_206(
        &s.get("/a.bin", &[("If-None-Match", "\"nope\""), range]),
        &data,
        0,
        9,
    );
    // A precondition failure wins over an unsatisfiable range too.
    assert_412(&s.get(
        "/a.bin",
        &[("If-Match", "\"nope\""), ("Range", "bytes=500-")],
    ));
}

// ---- If-Range --------------------------------------------------------------------------------

#[test]
fn if_range_with_entity_tag() {
    let s = Server::start();
    let data = pattern(100);
    fixed_file(&s, "a.bin", &data);
    let range = ("Range", "bytes=10-19");
    let ir = |v: &str| s.get("/a.bin", &[range, ("If-Range", v)]);
    let r = ir(&etag_of(&data));
    assert_206(&r, &data, 10, 19);
    assert_eq!(r.header("etag"), Some(etag_of(&data).as_str()));
    assert_full(&ir("\"nope\""), &data);
    assert_full(&ir(&etag_of(b"x")), &data);
    // Weak tags never match for If-Range.
    assert_full(&ir(&weak(&data)), &data);
    // Garbage.
    assert_full(&ir("garbage"), &data);
    assert_full(&ir(""), &data);
    // Multi-range honoured under a matching If-Range as well.
    let r = s.get(
        "/a.bin",
        &[("Range", "bytes=0-1,50-51"), ("If-Range", &etag_of(&data))],
    );
    assert_eq!(r.status, 206);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("multipart/byteranges;"));
}

#[test]
fn if_range_without_range_is_a_plain_200() {
    let s = Server::start();
    let data = pattern(100);
    fixed_file(&s, "a.bin", &data);
    for v in [
        etag_of(&data),
        "\"nope\"".to_string(),
        MTIME_STR.to_string(),
    ] {
        let r = s.get("/a.bin", &[("If-Range", &v)]);
        assert_full(&r, &data);
        assert_eq!(r.header("content-length"), Some("100"));
    }
}

#[test]
fn if_range_with_last_modified_date() {
    let s = Server::start();
    let data = pattern(100);
    fixed_file(&s, "a.bin", &data);
    let range = ("Range", "bytes=10-");
    let ir = |v: &str| s.get("/a.bin", &[range, ("If-Range", v)]);
    assert_206(&ir(MTIME_STR), &data, 10, 99);
    assert_full(&ir(&date(MTIME_SECS + 1)), &data);
    assert_full(&ir(&date(MTIME_SECS - 1)), &data);
}

#[test]
fn if_range_date_fails_when_last_modified_is_weak() {
    let s = Server::start();
    let data = pattern(100);
    let p = s.file("now.bin", &data);
    let range = ("Range", "bytes=10-19");
    // mtime = the current second: Last-Modified is weak while the Date is that same second
    // (§8.8.2.2), so it cannot validate a range. If the clock ticks between setting the mtime
    // and the response, the date is strong by then; that must give the 206, and we try again.
    let mut saw_weak = false;
    for _ in 0..50 {
        let t = now_secs();
        set_mtime(&p, at(t));
        let r = s.get("/now.bin", &[range, ("If-Range", &date(t))]);
        let d = assert_date_between(&r, t, now_secs());
        assert_eq!(r.header("last-modified"), Some(date(t).as_str()));
        if d == t {
            assert_full(&r, &data);
            saw_weak = true;
            break;
        }
        assert_206(&r, &data, 10, 19);
    }
    assert!(saw_weak, "never got a response within the mtime's second");

    // mtime in the future: Last-Modified is the Date itself, weak, so no date can match.
    set_mtime(&p, at(now_secs() + 3600));
    let mut saw_same_second = false;
    for _ in 0..50 {
        let t = now_secs();
        let r = s.get("/now.bin", &[range, ("If-Range", &date(t))]);
        let d = assert_date_between(&r, t, now_secs());
        assert_eq!(r.header("last-modified"), Some(date(d).as_str()));
        assert_full(&r, &data);
        if d == t {
            saw_same_second = true;
            break;
        }
    }
    assert!(saw_same_second);
}

// ---- a rewrite that keeps size and mtime -----------------------------------------------------

#[test]
fn etag_follows_content_when_size_and_mtime_are_unchanged() {
    let s = Server::start();
    let old = pattern(4096);
    let new: Vec<u8> = old.iter().map(|b| b ^ 0x5a).collect();
    assert_eq!(old.len(), new.len());
    assert_ne!(old, new);
    let p = fixed_file(&s, "k.bin", &old);

    let r = s.get("/k.bin", &[]);
    assert_full(&r, &old);
    let old_tag = r.header("etag").unwrap().to_string();
    assert_eq!(old_tag, etag_of(&old));

    // Rewrite in place (same inode, same size) and put the old mtime back: only ctime moves.
    rewrite_keeping_mtime(&p, &new);

    let r = s.get("/k.bin", &[]);
    assert_full(&r, &new);
    assert_eq!(r.header("etag"), Some(etag_of(&new).as_str()));
    assert_ne!(etag_of(&new), old_tag);
    assert_eq!(r.header("last-modified"), Some(MTIME_STR));

    // A resume against the old version must not splice: the whole new file.
    let r = s.get("/k.bin", &[("Range", "bytes=10-"), ("If-Range", &old_tag)]);
    assert_full(&r, &new);
    assert_eq!(r.header("etag"), Some(etag_of(&new).as_str()));
    // Against the new version: the range of the new content.
    let r = s.get(
        "/k.bin",
        &[("Range", "bytes=10-"), ("If-Range", &etag_of(&new))],
    );
    assert_206(&r, &new, 10, new.len() - 1);
    // A cache holding the old version is not told "not modified".
    assert_full(&s.get("/k.bin", &[("If-None-Match", &old_tag)]), &new);
    assert_412(&s.get("/k.bin", &[("If-Match", &old_tag)]));
}
