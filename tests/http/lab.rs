//! The download-client lab: generated files (checked against a reimplementation of the byte
//! function written here, not the server's) and each fault's observable effect, over real TCP.

use crate::common::*;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn lab() -> Server {
    Server::start_with(|c| c.lab_enabled = true)
}

/// A raw GET whose body may be shorter than its Content-Length: (head, body, time to the
/// head, time to the first body byte, total time).
struct Raw {
    head: String,
    body: Vec<u8>,
    to_head: Duration,
    to_body: Option<Duration>,
    total: Duration,
}

impl Raw {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
    fn status(&self) -> u16 {
        self.head[9..12].parse().unwrap()
    }
}

fn raw_get(s: &Server, path: &str, headers: &[(&str, &str)]) -> Raw {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let t0 = Instant::now();
    let mut c = connect(s.addr, Duration::from_secs(30));
    c.write_all(req.as_bytes()).unwrap();
    let mut all = Vec::new();
    let mut buf = [0u8; 65536];
    let mut head_end = None;
    let mut to_head = Duration::ZERO;
    let mut to_body = None;
    loop {
        let n = match c.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        all.extend_from_slice(&buf[..n]);
        if head_end.is_none() {
            if let Some(i) = all.windows(4).position(|w| w == b"\r\n\r\n") {
                head_end = Some(i + 4);
                to_head = t0.elapsed();
            }
        }
        if let Some(h) = head_end {
            if to_body.is_none() && all.len() > h {
                to_body = Some(t0.elapsed());
            }
        }
    }
    let h = head_end.expect("a complete response head");
    Raw {
        head: String::from_utf8(all[..h].to_vec()).unwrap(),
        body: all[h..].to_vec(),
        to_head,
        to_body,
        total: t0.elapsed(),
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let i = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..i]).unwrap().trim(), 16).unwrap();
        b = &b[i + 2..];
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[..n]);
        b = &b[n + 2..];
    }
}

#[test]
fn lab_off_means_plain_files() {
    let s = Server::start();
    assert_eq!(s.get("/_lab/gen/10", &[]).status, 404);
    // A real file under the prefix is a file like any other, and fault parameters do nothing.
    s.file("_lab/gen/10", b"just a file");
    let r = s.get("/_lab/gen/10?cut=2&fail=503", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"just a file");
}

#[test]
fn generated_sizes_units_and_seeds() {
    let s = lab();
    for (size, len) in [
        ("0", 0u64),
        ("1", 1),
        ("13", 13),
        ("7B", 7),
        ("2KiB", 2048),
        ("3kb", 3000),
        ("1MiB", 1 << 20),
    ] {
        let r = s.get(&format!("/_lab/gen/{size}"), &[]);
        assert_eq!(r.status, 200, "{size}");
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
        assert_eq!(r.header("content-length"), Some(len.to_string().as_str()));
        assert!(r.body == lab_bytes(0, 0, len), "{size}: bytes differ");
    }
    let r = s.get("/_lab/gen/1000?seed=42", &[]);
    assert!(r.body == lab_bytes(42, 0, 1000));
    assert_ne!(r.body, lab_bytes(0, 0, 1000));
    // Same (size, seed): same strong ETag; another seed or size: another.
    let e = |p: &str| s.get(p, &[]).header("etag").unwrap().to_string();
    assert_eq!(e("/_lab/gen/1000?seed=42"), e("/_lab/gen/1000?seed=42"));
    assert_eq!(e("/_lab/gen/1000"), e("/_lab/gen/1000B"));
    assert_ne!(e("/_lab/gen/1000?seed=42"), e("/_lab/gen/1000?seed=43"));
    assert_ne!(e("/_lab/gen/1000"), e("/_lab/gen/1001"));
    assert!(e("/_lab/gen/1000").starts_with('"'));
    assert_eq!(
        s.get("/_lab/gen/1", &[]).header("last-modified"),
        Some("Wed, 01 Jan 2020 00:00:00 GMT")
    );
    for bad in [
        "/_lab/gen/10XB",
        "/_lab/gen/abc",
        "/_lab/gen/",
        "/_lab/gen/1.5MiB",
        "/_lab/gen/2PiB",
        "/_lab/gen/99999999999999999999999",
    ] {
        let r = s.get(bad, &[]);
        assert_eq!(r.status, 400, "{bad}");
        let text = String::from_utf8(r.body).unwrap();
        assert_eq!(text.lines().count(), 1, "{bad}: {text}");
    }
    assert_eq!(s.get("/_lab/nothing", &[]).status, 404);
    assert_eq!(s.get("/_lab/gen/10?nonsense=1", &[]).status, 400);
}

#[test]
fn generated_files_go_through_the_range_and_precondition_engine() {
    let s = lab();
    let data = lab_bytes(7, 0, 10_000);
    let p = "/_lab/gen/10000?seed=7";
    let etag = s.get(p, &[]).header("etag").unwrap().to_string();

    let r = s.get(p, &[("Range", "bytes=100-199")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 100-199/10000"));
    assert!(r.body == data[100..200]);

    let r = s.get(p, &[("Range", "bytes=-16")]);
    assert!(r.body == data[10_000 - 16..]);

    // Multipart: each part is the right slice.
    let r = s.get(p, &[("Range", "bytes=0-9,5000-5009")]);
    assert_eq!(r.status, 206);
    let ct = r.header("content-type").unwrap();
    assert!(ct.starts_with("multipart/byteranges"), "{ct}");
    let hay = &r.body;
    for (a, b) in [(0usize, 10usize), (5000, 5010)] {
        let label = format!("Content-Range: bytes {a}-{}/10000\r\n\r\n", b - 1);
        let at = hay
            .windows(label.len())
            .position(|w| w == label.as_bytes())
            .unwrap_or_else(|| panic!("no part {a}-{b}"));
        let start = at + label.len();
        assert!(hay[start..start + (b - a)] == data[a..b]);
    }

    // If-Range: the current ETag gets the range, another one the whole file.
    let r = s.get(p, &[("Range", "bytes=10-"), ("If-Range", &etag)]);
    assert_eq!(r.status, 206);
    assert!(r.body == data[10..]);
    let r = s.get(
        p,
        &[("Range", "bytes=10-"), ("If-Range", "\"gen-10000-8\"")],
    );
    assert_eq!(r.status, 200);
    assert!(r.body == data);

    let r = s.get(p, &[("Range", "bytes=10000-")]);
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */10000"));

    let r = s.get(p, &[("If-None-Match", &etag)]);
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(s.get(p, &[("If-Match", "\"nope\"")]).status, 412);

    let r = s.request("HEAD", p, &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("10000"));
    assert!(r.body.is_empty());
}

#[test]
fn a_range_of_a_tebibyte_costs_nothing() {
    let s = lab();
    let t = Instant::now();
    let len = 1u64 << 40;
    let r = s.get("/_lab/gen/1TiB?seed=3", &[("Range", "bytes=-16")]);
    assert_eq!(r.status, 206);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes {}-{}/{len}", len - 16, len - 1).as_str())
    );
    assert!(r.body == lab_bytes(3, len - 16, 16));
    let r = s.get(
        "/_lab/gen/1TiB?seed=3",
        &[("Range", "bytes=549755813885-549755813903")],
    );
    assert!(r.body == lab_bytes(3, 549_755_813_885, 19));
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[test]
fn sha256_of_a_generated_file() {
    let s = lab();
    for (size, seed) in [(0u64, 0u64), (1000, 5), (70_000, 0)] {
        let r = s.get(&format!("/_lab/gen/{size}.sha256?seed={seed}"), &[]);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        let want = format!("{}\n", sha256_hex(&lab_bytes(seed, 0, size)));
        assert_eq!(String::from_utf8(r.body).unwrap(), want);
    }
    // Cached: the same answer again.
    let again = s.get("/_lab/gen/1000.sha256?seed=5", &[]);
    assert_eq!(
        String::from_utf8(again.body).unwrap().trim(),
        sha256_hex(&lab_bytes(5, 0, 1000))
    );
    assert_eq!(s.get("/_lab/gen/1PiB.sha256", &[]).status, 400);
}

#[test]
fn invalid_fault_values_are_400_naming_the_parameter() {
    let s = lab();
    for (q, name) in [
        ("cut=abc", "cut"),
        ("cut=150%", "cut"),
        ("rate=0", "rate"),
        ("delay=soon", "delay"),
        ("ttfb=-5", "ttfb"),
        ("ranges=maybe", "ranges"),
        ("validators=strong", "validators"),
        ("etag=fixed", "etag"),
        ("pause=5", "pause"),
        ("corrupt=x", "corrupt"),
        ("encoding=gzip", "encoding"),
        ("fail=404", "fail"),
        ("fail=503&fail_times=x", "fail_times"),
        ("seed=-1", "seed"),
    ] {
        let r = s.get(&format!("/_lab/gen/100?{q}"), &[]);
        assert_eq!(r.status, 400, "{q}");
        let text = String::from_utf8(r.body).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains(&format!("`{name}`")), "{q}: {text}");
    }
}

#[test]
fn cut_closes_the_connection_after_n_bytes() {
    let s = lab();
    let r = raw_get(&s, "/_lab/gen/100000?cut=100", &[]);
    assert_eq!(r.status(), 200);
    assert_eq!(r.header("content-length").as_deref(), Some("100000"));
    assert!(r.body == lab_bytes(0, 0, 100));
    // Percent of this response's body; a range counts from its first byte.
    let r = raw_get(
        &s,
        "/_lab/gen/100000?cut=10%25",
        &[("Range", "bytes=1000-2999")],
    );
    assert_eq!(r.status(), 206);
    assert_eq!(r.header("content-length").as_deref(), Some("2000"));
    assert!(r.body == lab_bytes(0, 1000, 200));
    // cut=0: the head, then nothing.
    let r = raw_get(&s, "/_lab/gen/1000?cut=0", &[]);
    assert_eq!(r.status(), 200);
    assert!(r.body.is_empty());
    // Past the end: no cut at all.
    let r = raw_get(&s, "/_lab/gen/1000?cut=5000", &[]);
    assert!(r.body == lab_bytes(0, 0, 1000));
}

#[test]
fn rate_throttles_the_body() {
    let s = lab();
    // 6000 bytes at 20000 B/s: at least 0.3 s.
    let r = raw_get(&s, "/_lab/gen/6000?rate=20000", &[]);
    assert!(r.body == lab_bytes(0, 0, 6000));
    assert!(r.total >= Duration::from_millis(290), "{:?}", r.total);
}

#[test]
fn delay_holds_the_head_and_ttfb_the_first_body_byte() {
    let s = lab();
    let r = raw_get(&s, "/_lab/gen/100?delay=300", &[]);
    assert_eq!(r.status(), 200);
    assert!(r.to_head >= Duration::from_millis(300), "{:?}", r.to_head);
    assert!(r.body == lab_bytes(0, 0, 100));

    let r = raw_get(&s, "/_lab/gen/100?ttfb=300", &[]);
    assert_eq!(r.status(), 200);
    assert!(r.body == lab_bytes(0, 0, 100));
    // The head comes first, on its own; the body at least 300 ms after it.
    let gap = r.to_body.unwrap() - r.to_head;
    assert!(gap >= Duration::from_millis(290), "{gap:?}");
}

#[test]
fn pause_stops_the_body_at_an_offset() {
    let s = lab();
    let t = Instant::now();
    let r = s.get("/_lab/gen/5000?pause=1000:300", &[]);
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert!(r.body == lab_bytes(0, 0, 5000));
    // The offset is a file offset: a range that starts past it does not pause.
    let t = Instant::now();
    let r = s.get(
        "/_lab/gen/5000?pause=1000:3000",
        &[("Range", "bytes=2000-")],
    );
    assert!(t.elapsed() < Duration::from_millis(2500));
    assert!(r.body == lab_bytes(0, 2000, 3000));
}

#[test]
fn corrupt_flips_one_byte_at_a_file_offset() {
    let s = lab();
    let r = s.get("/_lab/gen/1000?corrupt=500", &[]);
    let mut want = lab_bytes(0, 0, 1000);
    want[500] ^= 0xFF;
    assert!(r.body == want);
    // In a range, the same file offset.
    let r = s.get("/_lab/gen/1000?corrupt=500", &[("Range", "bytes=490-509")]);
    assert_eq!(r.status, 206);
    assert!(r.body == want[490..510]);
    // Outside the range: nothing changes.
    let r = s.get("/_lab/gen/1000?corrupt=500", &[("Range", "bytes=0-99")]);
    assert!(r.body == lab_bytes(0, 0, 100));
}

#[test]
fn ranges_ignore_and_none() {
    let s = lab();
    let data = lab_bytes(0, 0, 1000);
    let r = s.get("/_lab/gen/1000?ranges=ignore", &[("Range", "bytes=0-9")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    assert_eq!(r.header("content-range"), None);
    assert!(r.body == data);
    let r = s.get("/_lab/gen/1000?ranges=none", &[("Range", "bytes=0-9")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("accept-ranges"), Some("none"));
    assert!(r.body == data);
}

#[test]
fn validators_none_and_weak() {
    let s = lab();
    let data = lab_bytes(0, 0, 1000);
    let strong = s
        .get("/_lab/gen/1000", &[])
        .header("etag")
        .unwrap()
        .to_string();

    let r = s.get("/_lab/gen/1000?validators=none", &[]);
    assert_eq!(r.header("etag"), None);
    assert_eq!(r.header("last-modified"), None);
    let r = s.get(
        "/_lab/gen/1000?validators=none",
        &[("Range", "bytes=5-"), ("If-Range", &strong)],
    );
    assert_eq!(r.status, 200);
    assert!(r.body == data);

    let r = s.get("/_lab/gen/1000?validators=weak", &[]);
    let weak = r.header("etag").unwrap().to_string();
    assert_eq!(weak, format!("W/{strong}"));
    // A weak validator never satisfies If-Range: the whole file.
    for v in [weak.as_str(), r.header("last-modified").unwrap()] {
        let r = s.get(
            "/_lab/gen/1000?validators=weak",
            &[("Range", "bytes=5-"), ("If-Range", v)],
        );
        assert_eq!(r.status, 200, "If-Range {v}");
        assert!(r.body == data);
    }
    // If-None-Match compares weakly: still a 304.
    let r = s.get(
        "/_lab/gen/1000?validators=weak",
        &[("If-None-Match", &weak)],
    );
    assert_eq!(r.status, 304);
}

#[test]
fn etag_rotate_changes_the_etag_every_time() {
    let s = lab();
    let a = s.get("/_lab/gen/1000?etag=rotate", &[]);
    let b = s.get("/_lab/gen/1000?etag=rotate", &[]);
    let (ea, eb) = (a.header("etag").unwrap(), b.header("etag").unwrap());
    assert_ne!(ea, eb);
    assert!(ea.starts_with('"') && eb.starts_with('"'));
    let r = s.get(
        "/_lab/gen/1000?etag=rotate",
        &[("Range", "bytes=100-"), ("If-Range", eb)],
    );
    assert_eq!(r.status, 200);
    assert!(r.body == lab_bytes(0, 0, 1000));
}

#[test]
fn encoding_chunked_has_no_content_length() {
    let s = lab();
    let r = raw_get(&s, "/_lab/gen/100000?encoding=chunked", &[]);
    assert_eq!(r.status(), 200);
    assert_eq!(r.header("content-length"), None);
    assert_eq!(r.header("transfer-encoding").as_deref(), Some("chunked"));
    assert!(dechunk(&r.body) == lab_bytes(0, 0, 100_000));
    let r = raw_get(
        &s,
        "/_lab/gen/100000?encoding=chunked",
        &[("Range", "bytes=10-19")],
    );
    assert_eq!(r.status(), 206);
    assert!(dechunk(&r.body) == lab_bytes(0, 10, 10));
}

#[test]
fn fail_with_a_status_then_recover() {
    let s = lab();
    let p = "/_lab/gen/1000?fail=503&fail_times=2&key=a";
    for _ in 0..2 {
        let r = s.get(p, &[]);
        assert_eq!(r.status, 503);
        assert_eq!(r.header("retry-after"), Some("1"));
    }
    let r = s.get(p, &[]);
    assert_eq!(r.status, 200);
    assert!(r.body == lab_bytes(0, 0, 1000));
    // Counters are per key; the key may come in X-Lab-Key.
    let p = "/_lab/gen/1000?fail=429&fail_times=1";
    let r = s.get(p, &[("X-Lab-Key", "b")]);
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(s.get(p, &[("X-Lab-Key", "b")]).status, 200);
    assert_eq!(s.get(p, &[("X-Lab-Key", "c")]).status, 429);
    // Without fail_times: every time.
    for _ in 0..3 {
        assert_eq!(s.get("/_lab/gen/10?fail=500", &[]).status, 500);
    }
}

#[test]
fn fail_truncate_cuts_half_the_body_then_recovers() {
    let s = lab();
    let p = "/_lab/gen/1000?fail=truncate&fail_times=1&key=t";
    let r = raw_get(&s, p, &[]);
    assert_eq!(r.status(), 200);
    assert_eq!(r.header("content-length").as_deref(), Some("1000"));
    assert!(r.body == lab_bytes(0, 0, 500));
    let r = raw_get(&s, p, &[]);
    assert!(r.body == lab_bytes(0, 0, 1000));
}

#[test]
fn lab_serves_real_files_with_faults() {
    let s = lab();
    let data = pattern(5000);
    s.file("dir/f.bin", &data);
    let r = s.get("/_lab/files/dir/f.bin", &[("Range", "bytes=10-19")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &data[10..20]);
    assert_eq!(r.header("etag"), Some(etag_of(&data).as_str()));
    let r = raw_get(&s, "/_lab/files/dir/f.bin?cut=123", &[]);
    assert_eq!(r.body, &data[..123]);
    let r = s.get("/_lab/files/dir?cut=1", &[]);
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/_lab/files/dir/?cut=1"));
    assert_eq!(s.get("/_lab/files/missing", &[]).status, 404);
    assert!([400, 404].contains(&s.get("/_lab/files/../root", &[]).status));
}

#[test]
fn custom_prefix() {
    let s = Server::start_with(|c| {
        c.lab_enabled = true;
        c.lab_prefix = "/x/lab".into();
    });
    assert!(s.get("/x/lab/gen/10", &[]).body == lab_bytes(0, 0, 10));
    assert_eq!(s.get("/_lab/gen/10", &[]).status, 404);
    assert_eq!(s.get("/x/labgen/10", &[]).status, 404);
}

#[test]
fn requests_lists_what_the_lab_saw_per_key() {
    let s = lab();
    assert_eq!(s.get("/_lab/requests", &[]).status, 400);
    let r = raw_get(
        &s,
        "/_lab/gen/1000?key=k1&cut=100",
        &[("Range", "bytes=0-499")],
    );
    assert!(r.body == lab_bytes(0, 0, 100));
    s.get(
        "/_lab/gen/1000",
        &[
            ("X-Lab-Key", "k1"),
            ("Range", "bytes=100-"),
            ("If-Range", "\"gen-1000-0\""),
        ],
    );
    s.get("/_lab/gen/1000?key=other", &[]);
    s.get("/_lab/gen/1000?fail=503&key=k1", &[]);

    // The byte counts are final once each body is done; poll until they are.
    let mut last = serde_json::Value::Null;
    let list = poll(Duration::from_secs(10), || {
        let r = s.get("/_lab/requests?key=k1", &[]);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/json"));
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["key"], "k1");
        let list = v["requests"].as_array().unwrap().clone();
        assert_eq!(list.len(), 3, "{v}");
        last = v;
        (list[0]["bytes"] == 100 && list[1]["bytes"] == 900).then_some(list)
    })
    .unwrap_or_else(|| panic!("{last}"));
    assert_eq!(list[0]["method"], "GET");
    assert_eq!(list[0]["path"], "/_lab/gen/1000?key=k1&cut=100");
    assert_eq!(list[0]["range"], "bytes=0-499");
    assert_eq!(list[0]["status"], 206);
    assert_eq!(list[0]["faults"], serde_json::json!(["cut=100"]));
    assert_eq!(list[0]["complete"], false);
    assert!(list[0]["start_unix_ms"].as_u64().unwrap() > 1_600_000_000_000);
    assert_eq!(list[1]["if_range"], "\"gen-1000-0\"");
    assert_eq!(list[1]["status"], 206);
    assert_eq!(list[1]["complete"], true);
    assert_eq!(list[1]["faults"], serde_json::json!([]));
    assert_eq!(list[2]["status"], 503);
    assert_eq!(list[2]["faults"], serde_json::json!(["fail=503"]));
    let r = s.get("/_lab/requests?key=nobody", &[]);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["requests"], serde_json::json!([]));
}

/// The faults `/requests` lists for the requests seen under `key`, once their bodies are done.
fn faults_seen(s: &Server, key: &str, n: usize) -> Vec<serde_json::Value> {
    poll(Duration::from_secs(10), || {
        let r = s.get(&format!("/_lab/requests?key={key}"), &[]);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let list = v["requests"].as_array().unwrap().clone();
        (list.len() == n && list.iter().all(|e| e["bytes"].is_number()))
            .then(|| list.iter().map(|e| e["faults"].clone()).collect())
    })
    .unwrap_or_else(|| panic!("not {n} requests under {key}"))
}

#[test]
fn fail_times_counts_per_key_path_and_fault() {
    let s = lab();
    let status = |path: &str| s.get(path, &[]).status;
    // One key, one URL: the first fails, the second does not.
    assert_eq!(status("/_lab/gen/100?fail=503&fail_times=1&key=k"), 503);
    assert_eq!(status("/_lab/gen/100?fail=503&fail_times=1&key=k"), 200);
    // The same key on another path, or with another fault, has failures of its own.
    assert_eq!(status("/_lab/gen/200?fail=503&fail_times=1&key=k"), 503);
    assert_eq!(status("/_lab/gen/100?fail=500&fail_times=1&key=k"), 500);
    // Without a key, one URL does not use up another's failures.
    assert_eq!(status("/_lab/gen/10?fail=503&fail_times=1"), 503);
    assert_eq!(status("/_lab/gen/10?fail=503&fail_times=1"), 200);
    assert_eq!(status("/_lab/gen/20?fail=503&fail_times=1"), 503);
}

#[test]
fn a_key_can_be_reset_and_its_example_run_again() {
    let s = lab();
    let url = "/_lab/gen/1000?fail=truncate&fail_times=1&key=t1";
    let cut = raw_get(&s, url, &[]);
    assert!(cut.body.len() < 1000, "first run: truncated");
    assert_eq!(s.get(url, &[]).body.len(), 1000, "then whole");
    let r = s.get("/_lab/reset?key=t1", &[]);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"reset t1\n"[..]));
    let list = s.get("/_lab/requests?key=t1", &[]);
    let v: serde_json::Value = serde_json::from_slice(&list.body).unwrap();
    assert_eq!(v["requests"], serde_json::json!([]), "{v}");
    // A second run behaves as the first.
    assert!(
        raw_get(&s, url, &[]).body.len() < 1000,
        "after reset: truncated again"
    );
    assert_eq!(s.get("/_lab/reset", &[]).status, 400);
}

#[test]
fn only_faults_that_took_effect_are_listed() {
    let s = lab();
    // 100 bytes: a cut, pause or corrupt offset past them does nothing.
    for q in ["cut=1000", "corrupt=5000", "pause=500:10"] {
        let r = s.get(&format!("/_lab/gen/100?key=past&{q}"), &[]);
        assert_eq!((r.status, r.body.len()), (200, 100), "{q}");
    }
    // Ones that do.
    let cut = raw_get(&s, "/_lab/gen/100?key=past&cut=50", &[]);
    assert_eq!(cut.body.len(), 50);
    s.get("/_lab/gen/100?key=past&corrupt=10", &[]);
    let faults = faults_seen(&s, "past", 5);
    assert_eq!(
        faults,
        [
            serde_json::json!([]),
            serde_json::json!([]),
            serde_json::json!([]),
            serde_json::json!(["cut=50"]),
            serde_json::json!(["corrupt=10"]),
        ]
    );
}

#[test]
fn a_fault_parameter_given_twice_or_contradicted_is_a_400_naming_it() {
    let s = lab();
    for (q, name) in [
        ("seed=1&seed=2", "seed"),
        ("ranges=ignore&ranges=none", "ranges"),
        ("cut=10&cut=20", "cut"),
        ("etag=rotate&validators=none", "etag"),
    ] {
        let r = s.get(&format!("/_lab/gen/100?{q}"), &[]);
        assert_eq!(r.status, 400, "{q}");
        let body = String::from_utf8_lossy(&r.body);
        assert!(body.contains(&format!("`{name}`")), "{q}: {body}");
    }
}
