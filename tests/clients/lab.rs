//! Real download clients against the lab: they must recover from the faults it injects, and the
//! bytes they end with must hash to what `{size}.sha256` says.
use crate::common::process::*;
use crate::common::sha256_file;

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use crate::support::{heavy, require, scratch, Client, Tool};

fn lab_server(dir: &Path) -> Running {
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    serve(dir, dir, &root, |c| {
        c.arg("--lab");
    })
}

/// What the lab says the whole generated file hashes to.
fn lab_sha256(run: &Running, size: &str) -> String {
    let r = run.get(&format!("/_lab/gen/{size}.sha256"), &[]);
    assert_eq!(r.status, 200);
    String::from_utf8(r.body).unwrap().trim().to_string()
}

/// The (status, range) of each request the lab recorded for `key`.
fn recorded(run: &Running, key: &str) -> Vec<(u64, String)> {
    let r = run.get(&format!("/_lab/requests?key={key}"), &[]);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let list = v
        .as_array()
        .or_else(|| v["requests"].as_array())
        .unwrap_or_else(|| panic!("no request list in {v}"));
    list.iter()
        .map(|e| {
            (
                e["status"].as_u64().unwrap(),
                e["range"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect()
}

/// curl (or `None`: skipped), a lab server in a fresh directory, the output file, and the URL
/// of `path` on it.
fn curl_lab(path: &str) -> Option<(Tool, tempfile::TempDir, Running, PathBuf, String)> {
    let dir = scratch();
    let curl = require(Client::Curl, dir.path())?;
    let run = lab_server(dir.path());
    let out = dir.path().join("f.bin");
    let url = format!("http://127.0.0.1:{}{path}", run.port);
    Some((curl, dir, run, out, url))
}

/// `curl ARGS` to its end.
fn curl(tool: &Tool, args: &[&str]) -> ExitStatus {
    tool.command().args(args).status().unwrap()
}

#[test]
fn curl_retry_recovers_from_503s() {
    let Some((tool, _dir, run, out, url)) =
        curl_lab("/_lab/gen/300KiB?fail=503&fail_times=2&key=r503")
    else {
        return;
    };
    // 503 carries Retry-After: 1, which curl honours: two retries, about two seconds.
    let st = curl(&tool, &["--retry", "3", "-o", out.to_str().unwrap(), &url]);
    assert!(st.success(), "curl: {st}");
    assert_eq!(sha256_file(&out), lab_sha256(&run, "300KiB"));
    let statuses: Vec<u64> = recorded(&run, "r503").into_iter().map(|(s, _)| s).collect();
    assert_eq!(statuses, [503, 503, 200]);
}

#[test]
fn curl_retry_recovers_from_truncated_bodies() {
    let Some((tool, _dir, run, out, url)) =
        curl_lab("/_lab/gen/1MiB?fail=truncate&fail_times=2&key=rtrunc")
    else {
        return;
    };
    let st = curl(
        &tool,
        &[
            "--retry",
            "3",
            "--retry-all-errors",
            "--retry-delay",
            "0",
            "-o",
            out.to_str().unwrap(),
            &url,
        ],
    );
    assert!(st.success(), "curl: {st}");
    assert_eq!(sha256_file(&out), lab_sha256(&run, "1MiB"));
    assert_eq!(recorded(&run, "rtrunc").len(), 3);
}

#[test]
fn curl_continue_recovers_from_cuts_one_piece_at_a_time() {
    // Every response is cut after 300,000 body bytes: each `curl -C -` gets the next piece.
    let Some((tool, _dir, run, out, url)) = curl_lab("/_lab/gen/1MiB?cut=300000&key=rcut") else {
        return;
    };
    let mut attempts = 0;
    loop {
        attempts += 1;
        let st = curl(&tool, &["-C", "-", "-o", out.to_str().unwrap(), &url]);
        if st.success() {
            break;
        }
        assert_eq!(st.code(), Some(18), "a cut is a partial transfer");
        assert!(attempts < 10, "no end after {attempts} attempts");
    }
    assert_eq!(attempts, 4); // 1,048,576 bytes in pieces of 300,000
    assert_eq!(sha256_file(&out), lab_sha256(&run, "1MiB"));
    let ranges: Vec<String> = recorded(&run, "rcut").into_iter().map(|(_, r)| r).collect();
    assert_eq!(
        ranges,
        ["-", "bytes=300000-", "bytes=600000-", "bytes=900000-"]
    );
}

#[test]
fn aria2c_completes_a_2gib_generated_file_in_segments_under_cuts_and_a_rate_limit() {
    // 2 GiB written under target/tmp (scratch), not /tmp, which may be a small tmpfs: a CI run
    // once ended here with aria2c's exit 9 (no space left). One heavy transfer at a time.
    let _heavy = heavy();
    let dir = scratch();
    let Some(aria2c) = require(Client::Aria2c, dir.path()) else {
        return;
    };
    let run = lab_server(dir.path());
    // Each response is cut after 256 MiB and throttled to 60 MB/s (a quarter of what aria2c
    // reaches here unthrottled, so the limit shows in the time).
    let url = format!(
        "http://127.0.0.1:{}/_lab/gen/2GiB?cut=268435456&rate=60000000&key=aria",
        run.port
    );
    let started = Instant::now();
    let st = aria2c
        .command()
        .args([
            "--max-tries=0",
            "--retry-wait=0",
            "-x4",
            "-s4",
            "-k1M",
            "-d",
        ])
        .arg(dir.path())
        .args(["-o", "gen.bin", &url])
        .status()
        .unwrap();
    assert!(st.success(), "aria2c: {st}");
    let took = started.elapsed();
    let out = dir.path().join("gen.bin");
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 2 << 30);
    assert_eq!(sha256_file(&out), lab_sha256(&run, "2GiB"));
    let seen = recorded(&run, "aria");
    let ranged = seen.iter().filter(|(s, _)| *s == 206).count();
    assert!(ranged >= 4, "segments: {seen:?}");
    // 2 GiB in pieces of at most 256 MiB: at least 8 responses.
    assert!(seen.len() >= 8, "{seen:?}");
    // The rate limit held: four connections at 60 MB/s need at least 8.9 s for 2 GiB.
    assert!(took >= Duration::from_secs(8), "{took:?}");
}
