//! What operators see: Prometheus metrics on their own listener, and JSON access logs.
use crate::common::process::*;
use crate::common::*;

use std::time::Duration;

/// The value of one sample line `name{labels} value` in a Prometheus text page.
fn sample(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in:\n{page}"))
        .parse()
        .unwrap()
}

#[test]
fn metrics_count_what_was_served_and_logs_are_json() {
    let site = Site::empty();
    let root = site.root();
    let data = pattern(10_000);
    std::fs::write(root.join("f.bin"), &data).unwrap();
    let metrics_port = free_port();
    let run = site.serve(|c| {
        c.arg("--metrics-listen")
            .arg(format!("127.0.0.1:{metrics_port}"))
            .arg("--log-format")
            .arg("json");
    });
    let etag = etag_of(&data);

    let mut body_bytes = 0;
    let mut expect = |r: Response, status: u16| {
        assert_eq!(r.status, status);
        body_bytes += r.body.len();
        r
    };
    expect(run.get("/f.bin", &[]), 200);
    expect(run.get("/f.bin", &[("Range", "bytes=0-9")]), 206);
    let multi = expect(run.get("/f.bin", &[("Range", "bytes=0-9,100-109")]), 206);
    assert!(multi
        .header("content-type")
        .unwrap()
        .starts_with("multipart/byteranges"));
    expect(run.get("/f.bin", &[("If-None-Match", &etag)]), 304);
    expect(run.get("/f.bin", &[("If-Match", "\"other\"")]), 412);
    expect(run.get("/f.bin", &[("Range", "bytes=20000-")]), 416);
    expect(
        run.get(
            "/f.bin",
            &[("Range", "bytes=5-"), ("If-Range", "\"other\"")],
        ),
        200,
    );
    expect(run.get("/missing", &[]), 404);
    // Error pages are not file bodies.
    body_bytes -= "404 Not Found\n".len() + "412 Precondition Failed\n".len();

    let page = get_at(metrics_port, "/metrics", &[]);
    assert_eq!(page.status, 200);
    let page = String::from_utf8(page.body).unwrap();
    let status = |s: &str| {
        sample(
            &page,
            &format!("rangeserve_responses_total{{status=\"{s}\"}}"),
        )
    };
    assert_eq!(status("200"), 2.0);
    assert_eq!(status("206"), 2.0);
    assert_eq!(status("304"), 1.0);
    assert_eq!(status("412"), 1.0);
    assert_eq!(status("416"), 1.0);
    assert_eq!(status("404"), 1.0);
    assert_eq!(sample(&page, "rangeserve_if_range_fallbacks_total"), 1.0);
    assert_eq!(sample(&page, "rangeserve_multipart_responses_total"), 1.0);
    assert_eq!(
        sample(&page, "rangeserve_body_bytes_total"),
        body_bytes as f64
    );
    // One hash for the one file, then the cache: 7 file requests in all.
    assert_eq!(sample(&page, "rangeserve_digest_cache_misses_total"), 1.0);
    assert_eq!(sample(&page, "rangeserve_digest_cache_hits_total"), 6.0);
    assert_eq!(
        sample(&page, "rangeserve_hashed_bytes_total"),
        data.len() as f64
    );
    assert!(sample(&page, "rangeserve_hashing_seconds_total") > 0.0);
    assert_eq!(sample(&page, "rangeserve_responses_in_flight"), 0.0);

    // Every log line is one JSON object; the access lines carry the response's facts. They are
    // written as each response ends, so wait for the last one.
    let mut seen = 0;
    let access = poll(Duration::from_secs(10), || {
        let lines: Vec<serde_json::Value> = run
            .log()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        let access: Vec<serde_json::Value> = lines
            .into_iter()
            .filter(|v| v["target"] == "rangeserve::access")
            .collect();
        seen = access.len();
        (access.len() == 8).then_some(access)
    })
    .unwrap_or_else(|| panic!("{seen} access lines"));
    let first = &access[0]["fields"];
    assert_eq!(first["method"], "GET");
    assert_eq!(first["path"], "/f.bin");
    assert_eq!(first["status"], 200);
    assert_eq!(first["bytes"], data.len());
    // Absent in the request: null in JSON (a text line says `-`).
    assert_eq!(first["range"], serde_json::Value::Null);
    assert_eq!(first["complete"], true);
    assert!(first["ms"].is_number());
    let ranged = &access[1]["fields"];
    assert_eq!(ranged["status"], 206);
    assert_eq!(ranged["range"], "bytes=0-9");
    assert_eq!(ranged["bytes"], 10);
}

#[test]
fn a_bad_metrics_address_is_a_config_error() {
    let site = Site::empty();
    let err = config_error(site.path(), |c| {
        c.args(["--root", ".", "--metrics-listen", "nowhere"]);
    });
    assert!(err.contains("metrics_listen"), "{err}");
}
