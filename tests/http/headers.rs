//! Headers by path (`[[headers]]`, first match wins) and `?download`, black-box.

use crate::common::*;

const RULES: &str = r#"
[[headers]]
path = "/dl/*.iso"
set = { "Cache-Control" = "public, max-age=86400, immutable", "X-Robots-Tag" = "noindex" }

[[headers]]
path = "/dl/**"
set = { "Cache-Control" = "max-age=60", "X-Mirror" = "eu-1" }

[[headers]]
path = "/private/**"
[headers.set]
Cache-Control = ""
X-Frame-Options = "DENY"

[[headers]]
path = "/**/*.html"
set = { "Content-Security-Policy" = "default-src 'self'" }

[[headers]]
path = "/inline/*"
set = { "Content-Disposition" = "inline" }
"#;

/// The headers a rule may set, to check that exactly the right ones are present.
const RULE_HEADERS: &[&str] = &[
    "x-robots-tag",
    "x-mirror",
    "x-frame-options",
    "content-security-policy",
    "content-disposition",
];

/// `(name, value)` of the rule headers in `r`, and its Cache-Control.
fn rule_headers(r: &Response) -> (Vec<(&str, &str)>, Option<&str>) {
    let set = RULE_HEADERS
        .iter()
        .filter_map(|n| r.header(n).map(|v| (*n, v)))
        .collect();
    (set, r.header("cache-control"))
}

fn site(toml: &str) -> Server {
    let s = Server::start_toml(toml);
    for f in [
        "dl/a.iso",
        "dl/c d.iso",
        "dl/sub/b.iso",
        "dl/notes.txt",
        "other.txt",
        "private/x.bin",
        "docs/index.html",
        "inline/pic.png",
    ] {
        s.file(f, f.as_bytes());
    }
    s
}

#[test]
fn the_first_matching_rule_wins_and_unmatched_files_get_the_default() {
    let s = site(RULES);
    let first = (
        vec![("x-robots-tag", "noindex")],
        Some("public, max-age=86400, immutable"),
    );
    let second = (vec![("x-mirror", "eu-1")], Some("max-age=60"));
    for (path, want) in [
        ("/dl/a.iso", first.clone()),
        // Matched on the decoded, normalized path.
        ("/dl/c%20d.iso", first.clone()),
        ("//dl/./a.iso", first.clone()),
        ("/dl/%61.iso", first.clone()),
        // `*` stays within a segment: the second rule, which `**` matches.
        ("/dl/sub/b.iso", second.clone()),
        ("/dl/notes.txt", second.clone()),
        // An empty value sends none (here: no Cache-Control at all).
        ("/private/x.bin", (vec![("x-frame-options", "DENY")], None)),
        // No rule: the default cache_control.
        ("/other.txt", (vec![], Some("no-cache"))),
        // A directory is matched as its index file.
        (
            "/docs/",
            (
                vec![("content-security-policy", "default-src 'self'")],
                Some("no-cache"),
            ),
        ),
        (
            "/inline/pic.png",
            (vec![("content-disposition", "inline")], Some("no-cache")),
        ),
    ] {
        let r = s.get(path, &[]);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(rule_headers(&r), want, "{path}");
    }
}

#[test]
fn rule_order_is_the_file_order() {
    // The same two rules the other way round: `/dl/**` now shadows `/dl/*.iso`.
    let s = site(
        r#"
[[headers]]
path = "/dl/**"
set = { "Cache-Control" = "max-age=60", "X-Mirror" = "eu-1" }
[[headers]]
path = "/dl/*.iso"
set = { "Cache-Control" = "public, max-age=86400, immutable", "X-Robots-Tag" = "noindex" }
"#,
    );
    let r = s.get("/dl/a.iso", &[]);
    assert_eq!(
        rule_headers(&r),
        (vec![("x-mirror", "eu-1")], Some("max-age=60"))
    );
}

#[test]
fn the_default_cache_control_is_the_cache_control_key() {
    let s = site(&format!("cache_control = \"max-age=5\"\n{RULES}"));
    assert_eq!(
        s.get("/other.txt", &[]).header("cache-control"),
        Some("max-age=5")
    );
    assert_eq!(
        s.get("/dl/notes.txt", &[]).header("cache-control"),
        Some("max-age=60")
    );
    let s = site("cache_control = \"\"\n");
    assert_eq!(s.get("/other.txt", &[]).header("cache-control"), None);
}

#[test]
fn rule_headers_are_on_every_file_response_but_not_on_errors() {
    let s = site(RULES);
    let etag = s.get("/dl/a.iso", &[]).headers["etag"].clone();
    let first = (
        vec![("x-robots-tag", "noindex")],
        Some("public, max-age=86400, immutable"),
    );
    for (method, headers, status) in [
        ("HEAD", vec![], 200),
        ("GET", vec![("Range", "bytes=0-1")], 206),
        ("GET", vec![("Range", "bytes=0-1,3-4")], 206),
        ("GET", vec![("If-None-Match", etag.as_str())], 304),
        ("GET", vec![("If-Match", "\"x\"")], 412),
        ("GET", vec![("Range", "bytes=999-")], 416),
    ] {
        let r = s.request(method, "/dl/a.iso", &headers);
        assert_eq!(r.status, status, "{headers:?}");
        assert_eq!(rule_headers(&r), first, "{status}");
    }
    // A missing file and a redirect under a rule's glob: no rule headers.
    for (path, status) in [("/dl/missing.iso", 404), ("/dl/sub", 301)] {
        let r = s.get(path, &[]);
        assert_eq!(r.status, status);
        assert_eq!(rule_headers(&r), (vec![], None), "{path}");
    }
}

#[test]
fn download_gives_an_attachment_with_the_files_name() {
    let s = site(RULES);
    s.file("report 2024.pdf", b"%PDF");
    for q in ["download", "download=1", "x=1&download", "download="] {
        let r = s.get(&format!("/report%202024.pdf?{q}"), &[]);
        assert_eq!(r.status, 200, "{q}");
        assert_eq!(r.body, b"%PDF");
        assert_eq!(
            r.header("content-disposition"),
            Some("attachment; filename=\"report 2024.pdf\""),
            "{q}"
        );
    }
    for q in ["", "?", "?downloads", "?xdownload=1", "?a=download"] {
        let r = s.get(&format!("/report%202024.pdf{q}"), &[]);
        assert_eq!(r.header("content-disposition"), None, "{q}");
    }
    // The index of a directory is downloaded under its own name.
    let r = s.get("/docs/?download", &[]);
    assert_eq!(
        r.header("content-disposition"),
        Some("attachment; filename=\"index.html\"")
    );
    // ?download wins over a rule's Content-Disposition.
    let r = s.get("/inline/pic.png?download", &[]);
    assert_eq!(
        r.header("content-disposition"),
        Some("attachment; filename=\"pic.png\"")
    );
}

#[test]
fn download_of_non_ascii_and_awkward_names() {
    let s = Server::start();
    s.file("Grüße €.txt", b"1");
    s.file("日本語.zip", b"2");
    s.file("a\"b%41.txt", b"3");
    s.file("tab\there", b"4");
    for (path, want) in [
        (
            "/Gr%C3%BC%C3%9Fe%20%E2%82%AC.txt?download",
            "attachment; filename=\"Gr__e _.txt\"; filename*=UTF-8''Gr%C3%BC%C3%9Fe%20%E2%82%AC.txt",
        ),
        (
            "/%E6%97%A5%E6%9C%AC%E8%AA%9E.zip?download",
            "attachment; filename=\"___.zip\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC%E8%AA%9E.zip",
        ),
        // Quote and percent sign replaced in the fallback, kept (encoded) in filename*.
        (
            "/a%22b%2541.txt?download",
            "attachment; filename=\"a_b_41.txt\"; filename*=UTF-8''a%22b%2541.txt",
        ),
        (
            "/tab%09here?download",
            "attachment; filename=\"tab_here\"; filename*=UTF-8''tab%09here",
        ),
    ] {
        let r = s.get(path, &[]);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-disposition"), Some(want), "{path}");
    }
    // The encoded name decodes back to the file's name (checked with the percent-encoding crate).
    let r = s.get("/Gr%C3%BC%C3%9Fe%20%E2%82%AC.txt?download", &[]);
    let star = r.headers["content-disposition"]
        .split("filename*=UTF-8''")
        .nth(1)
        .unwrap()
        .to_string();
    assert_eq!(
        percent_encoding::percent_decode_str(&star)
            .decode_utf8()
            .unwrap(),
        "Grüße €.txt"
    );
    // A backslash never reaches a file name: the path is refused.
    assert_eq!(s.get("/a%5Cb.txt?download", &[]).status, 400);
}

#[test]
fn download_works_with_ranges_and_revalidation() {
    let s = Server::start();
    let data = pattern(1000);
    s.file("f.bin", &data);
    let want = "attachment; filename=\"f.bin\"";
    let r = s.get("/f.bin?download", &[("Range", "bytes=10-19")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &data[10..20]);
    assert_eq!(r.header("content-disposition"), Some(want));
    let etag = r.headers["etag"].clone();
    let r = s.get("/f.bin?download", &[("If-None-Match", &etag)]);
    assert_eq!(r.status, 304);
    assert_eq!(r.header("content-disposition"), Some(want));
}
