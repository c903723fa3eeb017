//! rangeserve in front of a real SeaweedFS cluster (`root = "s3://test"`): the binary as a
//! process, reached over TCP, every byte checked against the bytes put into the store and
//! against a disk-backed rangeserve serving the same bytes.

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use crate::common::multipart;
use crate::common::process::{self, Running, Site};
use crate::common::seaweed::Cluster;
use crate::common::{assert_206, assert_full, etag_of, pattern, repr_digest, Response};

/// The binary serving the cluster's bucket (`prefix` under it), with `setup` adding flags.
pub fn serve_bucket(
    c: &Cluster,
    site: &Site,
    prefix: &str,
    setup: impl Fn(&mut Command),
) -> Running {
    let home = site.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    process::start(site.path(), &site.logs(), |port, cmd| {
        crate::common::programs::clean_env(cmd, &home);
        for (k, v) in c.env() {
            cmd.env(k, v);
        }
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--root")
            .arg(format!("s3://{}/{prefix}", c.bucket));
        setup(cmd);
    })
}

fn get(r: &Running, path: &str, headers: &[(&str, &str)]) -> Response {
    r.get(path, headers)
}

/// Every range and conditional behaviour of the disk, over the store, with the same bytes and
/// the same validators as a disk-backed server.
#[test]
fn ranges_and_conditionals_match_the_disk() {
    let Some(c) = Cluster::start() else { return };
    let data = pattern((3 << 20) + 5);
    c.put("files/dir/data.bin", &data);
    c.put("files/hello.txt", b"hello\n");
    c.put("files/.hidden", b"secret");
    c.put("files/dir/sub/x.txt", b"x");

    let site = Site::empty();
    site.write("root/dir/data.bin", &data);
    let disk = site.serve(|_| {});
    let s3 = serve_bucket(&c, &site, "files", |cmd| {
        cmd.args(["--listing", "true"]);
    });

    // The whole object, with the content hash as its ETag: the disk's, byte for byte.
    let whole = get(&s3, "/dir/data.bin", &[]);
    assert_full(&whole, &data);
    let etag = etag_of(&data);
    assert_eq!(whole.header("etag"), Some(etag.as_str()));
    let on_disk = get(&disk, "/dir/data.bin", &[]);
    assert_eq!(on_disk.header("etag"), whole.header("etag"));
    assert_eq!(
        whole.header("repr-digest"),
        Some(repr_digest(&data).as_str())
    );
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    let modified = whole
        .header("last-modified")
        .expect("Last-Modified")
        .to_string();

    // Single ranges, suffixes, clipping, 416.
    let n = data.len();
    assert_206(
        &get(&s3, "/dir/data.bin", &[("range", "bytes=10-19")]),
        &data,
        10,
        19,
    );
    assert_206(
        &get(&s3, "/dir/data.bin", &[("range", "bytes=-100")]),
        &data,
        n - 100,
        n - 1,
    );
    assert_206(
        &get(&s3, "/dir/data.bin", &[("range", "bytes=3000000-")]),
        &data,
        3_000_000,
        n - 1,
    );
    assert_206(
        &get(&s3, "/dir/data.bin", &[("range", "bytes=5-999999999")]),
        &data,
        5,
        n - 1,
    );
    let r = get(&s3, "/dir/data.bin", &[("range", "bytes=999999999-")]);
    assert_eq!(r.status, 416);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes */{n}").as_str())
    );

    // Multipart: near ranges (read through in one request) and far ones, part by part.
    let ranges = "bytes=0-9,100-199,2000000-2000099,-5";
    let r = get(&s3, "/dir/data.bin", &[("range", ranges)]);
    assert_eq!(r.status, 206);
    let boundary = multipart::boundary_of(r.header("content-type").unwrap());
    let parts = multipart::parse(&r.body, &boundary);
    let want = [(0, 9), (100, 199), (2_000_000, 2_000_099), (n - 5, n - 1)];
    assert_eq!(parts.len(), want.len());
    for (p, (a, b)) in parts.iter().zip(want) {
        assert_eq!(
            p.content_range.as_deref(),
            Some(format!("bytes {a}-{b}/{n}").as_str())
        );
        assert_eq!(p.body, &data[a..=b]);
    }
    // The disk answers the same parts (the boundary aside).
    let d = get(&disk, "/dir/data.bin", &[("range", ranges)]);
    let dparts = multipart::parse(
        &d.body,
        &multipart::boundary_of(d.header("content-type").unwrap()),
    );
    assert_eq!(
        dparts.iter().map(|p| &p.body).collect::<Vec<_>>(),
        parts.iter().map(|p| &p.body).collect::<Vec<_>>()
    );

    // If-Range by ETag and by date; a mismatch gets the whole object.
    assert_206(
        &get(
            &s3,
            "/dir/data.bin",
            &[("range", "bytes=10-19"), ("if-range", &etag)],
        ),
        &data,
        10,
        19,
    );
    // A date is a strong validator only once it is a second older than the response's Date
    // (RFC 9110 §13.1.5), and this object was just written: wait for the clock (bounded).
    let lm = httpdate::parse_http_date(&modified).unwrap();
    crate::common::wait_until(
        "Last-Modified 2 s in the past",
        Duration::from_secs(5),
        || std::time::SystemTime::now() >= lm + Duration::from_secs(2),
    );
    assert_206(
        &get(
            &s3,
            "/dir/data.bin",
            &[("range", "bytes=10-19"), ("if-range", &modified)],
        ),
        &data,
        10,
        19,
    );
    let r = get(
        &s3,
        "/dir/data.bin",
        &[("range", "bytes=10-19"), ("if-range", "\"other\"")],
    );
    assert_full(&r, &data);

    // Preconditions.
    assert_eq!(
        get(&s3, "/dir/data.bin", &[("if-none-match", &etag)]).status,
        304
    );
    assert_eq!(
        get(&s3, "/dir/data.bin", &[("if-modified-since", &modified)]).status,
        304
    );
    assert_eq!(
        get(&s3, "/dir/data.bin", &[("if-match", "\"other\"")]).status,
        412
    );
    let r = get(
        &s3,
        "/dir/data.bin",
        &[("if-match", &etag), ("range", "bytes=0-0")],
    );
    assert_206(&r, &data, 0, 0);
    let old = "Thu, 01 Jan 2015 00:00:00 GMT";
    assert_eq!(
        get(&s3, "/dir/data.bin", &[("if-unmodified-since", old)]).status,
        412
    );

    // HEAD: the headers of a GET, no body.
    let h = crate::common::request_at(process::addr(s3.port), "HEAD", "/dir/data.bin", &[]);
    assert_eq!(h.status, 200);
    assert_eq!(h.header("content-length"), Some(n.to_string().as_str()));
    assert_eq!(h.header("etag"), Some(etag.as_str()));
    assert!(h.body.is_empty());

    // ?download names the file.
    let r = get(&s3, "/hello.txt?download", &[]);
    assert_eq!(r.body, b"hello\n");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert!(
        r.header("content-disposition")
            .unwrap()
            .contains("hello.txt"),
        "{:?}",
        r.headers
    );

    // Names: hidden keys, absent keys, `..`, prefixes as directories.
    assert_eq!(get(&s3, "/.hidden", &[]).status, 404);
    assert_eq!(get(&s3, "/nope.bin", &[]).status, 404);
    assert_eq!(get(&s3, "/dir/%2e%2e/hello.txt", &[]).status, 400);
    let r = get(&s3, "/dir", &[]);
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/dir/"));
    let r = get(&s3, "/dir/?format=json", &[]);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let listing: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let names: Vec<&str> = listing["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sub", "data.bin"]);
    assert_eq!(listing["entries"][1]["size"], n as u64);
    let root: serde_json::Value =
        serde_json::from_slice(&get(&s3, "/?format=json", &[]).body).unwrap();
    let names: Vec<&str> = root["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dir", "hello.txt"], "hidden keys are not listed");
}

/// A prefix with more objects than one listing page of the store (1,000) is listed whole,
/// and paged by rangeserve.
#[test]
fn listings_of_more_than_one_store_page() {
    let Some(c) = Cluster::start() else { return };
    let count = 1_100;
    let store = c.store();
    c.block_on(async {
        use futures_util::stream::{self, StreamExt};
        use object_store::ObjectStore;
        stream::iter(0..count)
            .map(|i| async move {
                let key = object_store::path::Path::from(format!("many/f{i:05}.txt"));
                store
                    .put(&key, format!("{i}").into_bytes().into())
                    .await
                    .unwrap();
            })
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await;
    });
    let site = Site::empty();
    let s3 = serve_bucket(&c, &site, "", |cmd| {
        cmd.args(["--listing", "true"]);
    });
    let r = get(&s3, "/many/?format=json&offset=1050&limit=100", &[]);
    assert_eq!(r.status, 200);
    let page: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(page["total"], count);
    let names: Vec<String> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    let want: Vec<String> = (1050..count).map(|i| format!("f{i:05}.txt")).collect();
    assert_eq!(names, want);
    let r = get(&s3, "/many/f01099.txt", &[]);
    assert_eq!(r.body, b"1099");
}

/// Two instances on one bucket give the same ETag; a download started on one resumes on the
/// other with If-Range. The hash persists in `state_dir`: a restart hashes nothing again.
#[test]
fn two_instances_agree_and_a_restart_does_not_rehash() {
    let Some(c) = Cluster::start() else { return };
    let data = pattern((5 << 20) + 11);
    c.put("big.bin", &data);
    let site = Site::empty();
    let state = site.path().join("state");
    let a = serve_bucket(&c, &site, "", |cmd| {
        cmd.arg("--state-dir").arg(&state);
    });
    let b = serve_bucket(&c, &site, "", |_| {});
    let half = data.len() / 2;
    let first = get(
        &a,
        "/big.bin",
        &[("range", &format!("bytes=0-{}", half - 1))],
    );
    assert_206(&first, &data, 0, half - 1);
    let etag = first.header("etag").unwrap().to_string();
    assert_eq!(etag, etag_of(&data));
    let rest = get(
        &b,
        "/big.bin",
        &[("range", &format!("bytes={half}-")), ("if-range", &etag)],
    );
    assert_206(&rest, &data, half, data.len() - 1);
    let mut joined = first.body.clone();
    joined.extend_from_slice(&rest.body);
    assert!(joined == data);

    // Restarted on the same state_dir: the ETag is known without reading the object again.
    drop(a);
    let again = serve_bucket(&c, &site, "", |cmd| {
        cmd.arg("--state-dir").arg(&state);
    });
    let r = get(&again, "/big.bin", &[("if-none-match", &etag)]);
    assert_eq!(r.status, 304);
    let text = std::fs::read_to_string(state.join("objects-v1")).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains(&etag.trim_matches('"').to_string()), "{text}");
}

/// An object overwritten while a response is being sent aborts that response: the client gets
/// fewer bytes than announced, and the bytes it got are all the old version's.
#[test]
fn an_overwrite_during_a_slow_download_aborts_it() {
    let Some(c) = Cluster::start() else { return };
    let mib = 1 << 20;
    let old = pattern(48 * mib);
    c.put("moving.bin", &old);
    let site = Site::empty();
    let s3 = serve_bucket(&c, &site, "", |_| {});
    // Two far-apart ranges: each is its own read of the store, tied to the version.
    let last = 32 * mib - 1;
    let req = format!(
        "GET /moving.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=0-{last},{}-{}\r\n\r\n",
        40 * mib,
        40 * mib + 99
    );
    let mut conn = crate::common::connect(process::addr(s3.port), Duration::from_secs(20));
    conn.write_all(req.as_bytes()).unwrap();
    let mut got = vec![0u8; 64 * 1024];
    let n = conn.read(&mut got).unwrap();
    got.truncate(n);
    // The client stalls; meanwhile the object changes (same length, other bytes).
    let new: Vec<u8> = old.iter().map(|b| b ^ 0xff).collect();
    c.put("moving.bin", &new);
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest);
    got.extend_from_slice(&rest);
    let head_end = crate::common::find(&got, b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&got[..head_end]).to_string();
    assert!(head.starts_with("HTTP/1.1 206"), "{head}");
    let announced: usize = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("content-length: ")
                .or_else(|| l.strip_prefix("Content-Length: "))
        })
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let body = &got[head_end..];
    assert!(
        body.len() < announced,
        "the response was not aborted: {} of {announced}",
        body.len()
    );
    // The first part's bytes, as far as they came, are the old version's.
    let first_part_start = crate::common::find(body, b"\r\n\r\n").unwrap() + 4;
    let sent = &body[first_part_start..];
    let sent = &sent[..sent.len().min(last + 1)];
    assert!(
        sent == &old[..sent.len()],
        "mixed bytes in the aborted response"
    );
    s3.log_shows("aborting response body");
}

/// One volume server killed: downloads go on (replication 001). The whole store down: a clean
/// 502/504, and the same bytes once it is back.
#[test]
fn survives_a_volume_server_and_fails_cleanly_while_the_store_is_down() {
    let Some(mut c) = Cluster::start() else {
        return;
    };
    let data = pattern((6 << 20) + 1);
    c.put("r.bin", &data);
    let site = Site::empty();
    let s3 = serve_bucket(&c, &site, "", |cmd| {
        cmd.args(["--s3-request-timeout", "2", "--s3-retries", "1"]);
    });
    assert_full(&get(&s3, "/r.bin", &[]), &data);
    // A download under way when a volume server dies goes on from the other replica.
    let big = pattern(40 << 20);
    c.put("big.bin", &big);
    assert_eq!(get(&s3, "/big.bin", &[("range", "bytes=0-0")]).status, 206); // hashed
    let mut conn = crate::common::connect(process::addr(s3.port), Duration::from_secs(20));
    conn.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut got = vec![0u8; 1 << 20];
    conn.read_exact(&mut got).unwrap();
    c.kill_volume(0);
    conn.read_to_end(&mut got).unwrap();
    let head_end = crate::common::find(&got, b"\r\n\r\n").unwrap() + 4;
    assert!(got.starts_with(b"HTTP/1.1 200"));
    assert!(
        got[head_end..] == big[..],
        "{} of {} bytes",
        got.len() - head_end,
        big.len()
    );
    assert_full(&get(&s3, "/r.bin", &[]), &data);
    assert_206(
        &get(&s3, "/r.bin", &[("range", "bytes=4194300-4194400")]),
        &data,
        4_194_300,
        4_194_400,
    );
    c.kill_all_but_master();
    let r = get(&s3, "/r.bin", &[]);
    assert!(
        matches!(r.status, 502 | 504),
        "{} {:?}",
        r.status,
        r.headers
    );
    c.restart();
    assert_full(&get(&s3, "/r.bin", &[]), &data);
}

/// Bad settings stop the server with one line and exit 2; no secret is printed.
#[test]
fn bad_bucket_settings_exit_2_without_secrets() {
    let Some(c) = Cluster::start() else { return };
    let site = Site::empty();
    let run = |root: &str, extra: &[(&str, &str)]| {
        let mut cmd = process::command(site.path());
        crate::common::programs::clean_env(&mut cmd, site.path());
        for (k, v) in c.env() {
            cmd.env(k, v);
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.args(["--listen", "127.0.0.1:0", "--root", root]);
        let (status, _, err) = process::run_to_exit(cmd, &site.logs());
        (status.code(), err)
    };
    let (code, err) = run("gs://x/y", &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("unknown scheme"), "{err}");
    let (code, err) = run("s3:///y", &[]);
    assert_eq!(code, Some(2), "{err}");
    let (code, err) = run("s3://no-such-bucket/", &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no-such-bucket"), "{err}");
    let (code, err) = run(
        &format!("s3://{}/", c.bucket),
        &[("AWS_SECRET_ACCESS_KEY", "wrong-secret-1234")],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(!err.contains("wrong-secret-1234"), "{err}");
    assert!(!err.contains(&c.secret_key), "{err}");
    let (code, err) = run(
        &format!("s3://{}/", c.bucket),
        &[("AWS_ENDPOINT_URL", "http://127.0.0.1:9")],
    );
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// `s3.anonymous`: a bucket that allows anonymous reads is served with unsigned requests and no
/// credentials at all; the same bytes, ranges and content-hash ETag as with them.
#[test]
fn a_public_bucket_is_read_without_credentials() {
    let Some(c) = Cluster::start() else { return };
    let data = pattern(300_000);
    c.put("public/a.bin", &data);
    let site = Site::empty();
    let run = serve_bucket(&c, &site, "public", |cmd| {
        cmd.env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .arg("--s3-anonymous")
            .args(["--listing", "true"]);
    });
    let r = get(&run, "/a.bin", &[]);
    assert_full(&r, &data);
    assert_eq!(r.header("etag"), Some(etag_of(&data).as_str()));
    let r = get(&run, "/a.bin", &[("Range", "bytes=1000-1999")]);
    assert_206(&r, &data, 1000, 1999);
    let listing = get(&run, "/", &[]);
    assert!(
        String::from_utf8_lossy(&listing.body).contains("a.bin"),
        "{listing:?}"
    );
}

/// The real clients resume and finish downloads from the store through rangeserve: curl -C -,
/// wget -c and aria2c -c -x8 each start from half a file and end with the object's bytes.
#[test]
fn real_clients_resume_downloads_from_the_store() {
    use crate::common::programs;
    let (Some(curl), Some(wget), Some(aria2c)) = (
        programs::require("curl"),
        programs::require("wget"),
        programs::require("aria2c"),
    ) else {
        return;
    };
    let Some(c) = Cluster::start() else { return };
    let data = pattern((9 << 20) + 7);
    c.put("dl/file.bin", &data);
    let site = Site::empty();
    let s3 = serve_bucket(&c, &site, "", |_| {});
    let url = format!("http://127.0.0.1:{}/dl/file.bin", s3.port);
    let home = site.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let runs: [(&std::path::Path, &str, Vec<String>); 3] = [
        (
            &curl,
            "curl",
            vec![
                "-sS".into(),
                "-f".into(),
                "-C".into(),
                "-".into(),
                "-o".into(),
            ],
        ),
        (&wget, "wget", vec!["-q".into(), "-c".into(), "-O".into()]),
        (
            &aria2c,
            "aria2c",
            vec![
                "-q".into(),
                "-c".into(),
                "-x8".into(),
                "-s8".into(),
                "-k1M".into(),
                "--allow-overwrite=false".into(),
                "--auto-file-renaming=false".into(),
                "-o".into(),
            ],
        ),
    ];
    for (exe, name, args) in runs {
        let dir = site.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("file.bin");
        std::fs::write(&out, &data[..data.len() / 2]).unwrap();
        let mut cmd = Command::new(exe);
        programs::clean_env(&mut cmd, &home);
        cmd.current_dir(&dir).args(&args);
        if name == "aria2c" {
            // aria2c resumes only with its control file, or from the partial file with -c.
            cmd.arg("file.bin");
        } else {
            cmd.arg(&out);
        }
        cmd.arg(&url);
        let status = cmd.status().unwrap();
        assert!(status.success(), "{name}: {status}");
        let got = std::fs::read(&out).unwrap();
        assert!(got == data, "{name}: {} bytes, not the object's", got.len());
    }
    // Each resumed with a range, not a whole new download.
    let log = s3.log();
    assert!(log.matches("status=206").count() >= 3, "{log}");
}

/// Precompressed sidecar objects, CORS and the lab work over the store as on disk.
#[test]
fn sidecars_cors_and_the_lab_over_the_store() {
    let Some(c) = Cluster::start() else { return };
    let text = crate::common::codings::text(7);
    let gz = crate::common::codings::gzip(&text);
    c.put("site/page.txt", &text);
    c.put("site/page.txt.gz", &gz);
    let site = Site::empty();
    let s3 = serve_bucket(&c, &site, "", |cmd| {
        cmd.args([
            "--precompressed",
            "true",
            "--lab",
            "--cors-allowed-origins",
            "https://app.example",
        ]);
    });
    // The sidecar, as its own representation, with the original's type.
    let r = get(&s3, "/site/page.txt", &[("accept-encoding", "gzip")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.header("etag"), Some(etag_of(&gz).as_str()));
    assert_eq!(r.body, gz);
    let r = get(&s3, "/site/page.txt", &[]);
    assert_full(&r, &text);
    assert_eq!(r.header("etag"), Some(etag_of(&text).as_str()));
    // CORS.
    let r = get(
        &s3,
        "/site/page.txt",
        &[("origin", "https://app.example"), ("range", "bytes=0-3")],
    );
    assert_206(&r, &text, 0, 3);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    // The lab serves the bucket's objects under /_lab/files/, faults included.
    let r = get(&s3, "/_lab/files/site/page.txt?corrupt=5", &[]);
    let mut corrupted = text.clone();
    corrupted[5] ^= 0xff;
    assert_full(&r, &corrupted);
    let r = get(&s3, "/_lab/files/site/page.txt?fail=503", &[]);
    assert_eq!(r.status, 503);
}

/// `prehash` hashes every object at start-up and `watch` each new one, before anyone asks;
/// the hashes persist in `state_dir`; the store's requests are counted in the metrics.
#[test]
fn prehash_and_watch_hash_objects_before_requests() {
    let Some(c) = Cluster::start() else { return };
    let first = pattern(300_000);
    c.put("a/first.bin", &first);
    c.put("a/.hidden.bin", b"not hashed");
    let site = Site::empty();
    let state = site.path().join("state");
    let metrics = crate::common::free_port();
    let s3 = serve_bucket(&c, &site, "", |cmd| {
        cmd.arg("--state-dir")
            .arg(&state)
            .args(["--prehash", "true", "--watch", "true"])
            .arg("--metrics-listen")
            .arg(format!("127.0.0.1:{metrics}"));
    });
    let hashes = || std::fs::read_to_string(state.join("objects-v1")).unwrap_or_default();
    let hex = |b: &[u8]| etag_of(b).trim_matches('"').to_string();
    crate::common::wait_until("prehash of first.bin", Duration::from_secs(20), || {
        hashes().contains(&hex(&first))
    });
    assert!(
        !hashes().contains(&hex(b"not hashed")),
        "a hidden key was hashed"
    );
    // A new object is found by the next listing (every 10 s) and hashed.
    let second = pattern(200_001);
    c.put("a/b/second.bin", &second);
    crate::common::wait_until("watch of second.bin", Duration::from_secs(30), || {
        hashes().contains(&hex(&second))
    });
    assert_eq!(hashes().lines().count(), 2, "{}", hashes());
    let m = process::get_at(metrics, "/metrics", &[]);
    let text = String::from_utf8_lossy(&m.body).to_string();
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .parse()
            .unwrap()
    };
    // At least the start-up check and the two objects' reads (the background listings are
    // not counted one by one).
    assert!(value("rangeserve_store_requests_total") >= 3.0, "{text}");
    assert!(
        value("rangeserve_store_bytes_total") >= (first.len() + second.len()) as f64,
        "{text}"
    );
    assert!(
        value("rangeserve_store_request_seconds_total") > 0.0,
        "{text}"
    );
    let _ = s3;
}

/// `rangeserve_store_requests_total` from the metrics listener on `port`.
fn store_requests(port: u16) -> u64 {
    metric(port, "rangeserve_store_requests_total")
}

/// The counter `name` from the metrics listener on `port`.
fn metric(port: u16, name: &str) -> u64 {
    let m = process::get_at(port, "/metrics", &[]);
    let text = String::from_utf8_lossy(&m.body).to_string();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .trim()
        .parse()
        .unwrap()
}

/// Long bodies go from the store's socket to the client's by `splice` (counted apart), with
/// exactly the object's bytes: a whole object, and a multipart answer whose parts are each
/// a run of the store. Short ones go through the store client as before.
#[test]
fn long_bodies_are_spliced_from_the_store_with_exact_bytes() {
    let Some(c) = Cluster::start() else { return };
    let mib = 1 << 20;
    let data = pattern(9 * mib + 17);
    c.put("big.bin", &data);
    let site = Site::empty();
    let metrics = crate::common::free_port();
    let s3 = serve_bucket(&c, &site, "", |cmd| {
        cmd.arg("--metrics-listen")
            .arg(format!("127.0.0.1:{metrics}"));
    });
    assert_206(
        &get(&s3, "/big.bin", &[("range", "bytes=0-0")]),
        &data,
        0,
        0,
    ); // hashed
    let spliced = || metric(metrics, "rangeserve_splice_bytes_total");

    let before = spliced();
    assert_full(&get(&s3, "/big.bin", &[]), &data);
    let moved = spliced() - before;
    // All but what came along with the store's response head and the last few KiB.
    assert!(
        moved >= (data.len() - mib) as u64 && moved < data.len() as u64,
        "{moved} of {} bytes spliced",
        data.len()
    );

    let before = spliced();
    let ranges = [(mib + 3, 3 * mib), (5 * mib, 8 * mib + 11)];
    let spec = format!(
        "bytes={}-{},{}-{}",
        ranges[0].0, ranges[0].1, ranges[1].0, ranges[1].1
    );
    assert_parts(&get(&s3, "/big.bin", &[("range", &spec)]), &data, &ranges);
    assert!(
        spliced() - before >= 3 * mib as u64,
        "{}",
        spliced() - before
    );

    // A short range: through the store client, nothing spliced.
    let before = spliced();
    assert_206(
        &get(&s3, "/big.bin", &[("range", "bytes=7-300006")]),
        &data,
        7,
        300_006,
    );
    assert_eq!(spliced(), before);

    // A long download asks the store twice: its first 64 MiB, then (taken at loopback pace)
    // all the rest in one request rather than one per 64 MiB.
    let long = pattern(130 * mib + 1);
    c.put("long.bin", &long);
    assert_206(
        &get(&s3, "/long.bin", &[("range", "bytes=0-0")]),
        &long,
        0,
        0,
    ); // hashed
    let before = store_requests(metrics);
    assert_full(&get(&s3, "/long.bin", &[]), &long);
    assert_eq!(store_requests(metrics) - before, 2);
}

/// A multipart answer's parts, checked against `ranges` (first, last) of `data` of length `n`.
fn assert_parts(r: &Response, data: &[u8], ranges: &[(usize, usize)]) {
    assert_eq!(r.status, 206, "{:?}", r.headers);
    let boundary = multipart::boundary_of(r.header("content-type").unwrap());
    let parts = multipart::parse(&r.body, &boundary);
    assert_eq!(parts.len(), ranges.len());
    let n = data.len();
    for (p, &(a, b)) in parts.iter().zip(ranges) {
        assert_eq!(
            p.content_range.as_deref(),
            Some(format!("bytes {a}-{b}/{n}").as_str())
        );
        assert!(p.body == data[a..=b], "part {a}-{b} has other bytes");
    }
}

/// A range of an object whose version and hash are known costs one request to the store (the
/// ranged read, conditional on that version), not a HEAD and a read. An overwrite (same size,
/// other bytes) between two requests is seen by the next one: the new bytes with the new
/// ETag (the SHA-256 of the new bytes, computed here), never one version's ETag with the
/// other's bytes; for single ranges, multi-ranges, If-Range, If-None-Match, HEAD and a delete.
#[test]
fn a_known_object_costs_one_store_request_per_range_and_overwrites_are_seen() {
    let Some(c) = Cluster::start() else { return };
    let size = (1 << 20) + 3;
    let v1 = pattern(size);
    c.put("ow.bin", &v1);
    let site = Site::empty();
    let metrics = crate::common::free_port();
    let s3 = serve_bucket(&c, &site, "", |cmd| {
        cmd.arg("--metrics-listen")
            .arg(format!("127.0.0.1:{metrics}"));
    });
    let range = |a: usize, b: usize| format!("bytes={a}-{b}");

    // The first request looks the object up and hashes it.
    let r = get(&s3, "/ow.bin", &[("range", "bytes=0-99")]);
    assert_206(&r, &v1, 0, 99);
    assert_eq!(r.header("etag"), Some(etag_of(&v1).as_str()));

    // Then: one store request per single range.
    let before = store_requests(metrics);
    for i in 0..20 {
        let a = (i * 50_021 + 7) % (size - 65_536);
        let r = get(&s3, "/ow.bin", &[("range", &range(a, a + 65_535))]);
        assert_206(&r, &v1, a, a + 65_535);
        assert_eq!(r.header("etag"), Some(etag_of(&v1).as_str()));
    }
    assert_eq!(
        store_requests(metrics) - before,
        20,
        "store requests for 20 ranges"
    );
    // And for a whole GET.
    let before = store_requests(metrics);
    assert_full(&get(&s3, "/ow.bin", &[]), &v1);
    assert_eq!(
        store_requests(metrics) - before,
        1,
        "store requests for a GET"
    );

    // Overwritten with other bytes of the same length: the next request has the new bytes
    // and the new ETag.
    let v2: Vec<u8> = v1.iter().map(|b| b ^ 0x5a).collect();
    assert_ne!(etag_of(&v1), etag_of(&v2));
    c.put("ow.bin", &v2);
    let before = store_requests(metrics);
    let r = get(&s3, "/ow.bin", &[("range", "bytes=1000-1999")]);
    assert_206(&r, &v2, 1000, 1999);
    assert_eq!(r.header("etag"), Some(etag_of(&v2).as_str()));
    assert_eq!(r.header("repr-digest"), Some(repr_digest(&v2).as_str()));
    // The read of the remembered version (refused: 412), a HEAD, the new version's hash, and
    // the range.
    assert_eq!(store_requests(metrics) - before, 4);
    // The new version is known now: one store request again.
    let before = store_requests(metrics);
    let r = get(&s3, "/ow.bin", &[("range", "bytes=5000-70535")]);
    assert_206(&r, &v2, 5000, 70_535);
    assert_eq!(r.header("etag"), Some(etag_of(&v2).as_str()));
    assert_eq!(store_requests(metrics) - before, 1);

    // A multi-range request after an overwrite: every part from the new version.
    let v3: Vec<u8> = v1.iter().map(|b| b.wrapping_add(101)).collect();
    c.put("ow.bin", &v3);
    let ranges = "bytes=0-9,500000-500099,-5";
    let r = get(&s3, "/ow.bin", &[("range", ranges)]);
    assert_parts(&r, &v3, &[(0, 9), (500_000, 500_099), (size - 5, size - 1)]);
    assert_eq!(r.header("etag"), Some(etag_of(&v3).as_str()));

    // If-Range with the ETag of the version replaced since: a 200 of the new content.
    let v4: Vec<u8> = v1.iter().map(|b| b ^ 0xa5).collect();
    c.put("ow.bin", &v4);
    let r = get(
        &s3,
        "/ow.bin",
        &[("range", "bytes=10-19"), ("if-range", &etag_of(&v3))],
    );
    assert_full(&r, &v4);
    assert_eq!(r.header("etag"), Some(etag_of(&v4).as_str()));
    // With the current ETag, the range.
    let r = get(
        &s3,
        "/ow.bin",
        &[("range", "bytes=10-19"), ("if-range", &etag_of(&v4))],
    );
    assert_206(&r, &v4, 10, 19);

    // If-None-Match with the new version's ETag (a content hash: a client may know it), while
    // the replaced version is the one remembered: 304. With the old ETag: the new content.
    let v5: Vec<u8> = v1.iter().map(|b| b ^ 0x33).collect();
    c.put("ow.bin", &v5);
    let r = get(&s3, "/ow.bin", &[("if-none-match", &etag_of(&v5))]);
    assert_eq!(r.status, 304, "{:?}", r.headers);
    assert_eq!(r.header("etag"), Some(etag_of(&v5).as_str()));
    let r = get(&s3, "/ow.bin", &[("if-none-match", &etag_of(&v4))]);
    assert_full(&r, &v5);
    assert_eq!(r.header("etag"), Some(etag_of(&v5).as_str()));

    // A HEAD after an overwrite describes the new version.
    let store_etag_v2 = c.put("ow.bin", &v2);
    let h = crate::common::request_at(process::addr(s3.port), "HEAD", "/ow.bin", &[]);
    assert_eq!(h.status, 200);
    assert_eq!(h.header("etag"), Some(etag_of(&v2).as_str()));

    // Rewritten with the same bytes (the same store ETag) a second later: the store's answer
    // to the read names another Last-Modified, so the object is looked up again, and the
    // response has the new time.
    let before_lm = get(&s3, "/ow.bin", &[("range", "bytes=0-0")]);
    let old_lm = before_lm.header("last-modified").unwrap().to_string();
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        c.put("ow.bin", &v2),
        store_etag_v2,
        "same bytes, same store ETag"
    );
    let r = get(&s3, "/ow.bin", &[("range", "bytes=0-9")]);
    assert_206(&r, &v2, 0, 9);
    assert_eq!(r.header("etag"), Some(etag_of(&v2).as_str()));
    let new_lm = r.header("last-modified").unwrap().to_string();
    let secs = |d: &str| httpdate::parse_http_date(d).unwrap();
    assert!(secs(&new_lm) > secs(&old_lm), "{old_lm} then {new_lm}");

    // Deleted: 404, not the remembered version.
    c.delete("ow.bin");
    assert_eq!(get(&s3, "/ow.bin", &[("range", "bytes=0-9")]).status, 404);
    assert_eq!(get(&s3, "/ow.bin", &[]).status, 404);
}
