//! Directory listings (`listing = true`): HTML and JSON, escaping and link encoding, sorting,
//! hidden files and symlinks, the parent link, index files, paging of a 100,000-entry
//! directory, and the headers of a listing (weak ETag, no-cache, Vary, HEAD, Range ignored).

use crate::common::*;

use std::time::{Duration, UNIX_EPOCH};

use serde_json::Value;

fn listing_server() -> Server {
    Server::start_with(|c| c.listing = true)
}

fn json_of(r: &Response) -> Value {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/json"));
    serde_json::from_slice(&r.body).expect("valid JSON")
}

fn names(v: &Value) -> Vec<String> {
    v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

fn html(r: &Response) -> String {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    String::from_utf8(r.body.clone()).unwrap()
}

/// (href, link text) of every table row's first cell, in document order.
fn rows(page: &str) -> Vec<(String, String)> {
    page.split("<tr><td><a href=\"")
        .skip(1)
        .map(|rest| {
            let (href, rest) = rest.split_once("\">").unwrap();
            let (label, _) = rest.split_once("</a>").unwrap();
            (href.to_string(), label.to_string())
        })
        .collect()
}

#[test]
fn html_lists_names_sizes_times_and_carries_listing_headers() {
    let s = listing_server();
    s.file("d/a.txt", b"hello");
    s.file("d/big.bin", &vec![7u8; 1536]);
    s.file("d/sub/x", b"x");
    set_mtime(&s.root.join("d/a.txt"), at(1_600_000_000));
    set_mtime(&s.root.join("d/big.bin"), at(1_500_000_000));
    set_mtime(&s.root.join("d/sub"), at(1_700_000_000));
    let r = s.get("/d/", &[]);
    let page = html(&r);
    assert_eq!(
        rows(&page),
        [
            ("../", "../"),
            ("./sub/", "sub/"),
            ("./a.txt", "a.txt"),
            ("./big.bin", "big.bin")
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    // Bytes and human units; RFC 3339 UTC times (expected strings from `date -u -d @N`).
    // No file was asked for yet: no hash is known, and the listing computes none.
    assert!(page.contains(
        "<tr><td><a href=\"./a.txt\">a.txt</a></td><td class=\"n\">5 B</td><td class=\"n\">5</td>\
         <td><time datetime=\"2020-09-13T12:26:40Z\">2020-09-13 12:26:40</time></td><td>-</td></tr>"
    ));
    assert!(page.contains(
        "<tr><td><a href=\"./big.bin\">big.bin</a></td><td class=\"n\">1.5 KiB</td><td class=\"n\">1536</td>\
         <td><time datetime=\"2017-07-14T02:40:00Z\">2017-07-14 02:40:00</time></td><td>-</td></tr>"
    ));
    assert!(page.contains(
        "<tr><td><a href=\"./sub/\">sub/</a></td><td class=\"n\">-</td><td class=\"n\">-</td>\
         <td><time datetime=\"2023-11-14T22:13:20Z\">2023-11-14 22:13:20</time></td><td></td></tr>"
    ));
    assert!(page.contains(
        "<th><a href=\"?sort=mtime&amp;order=asc\">Modified (UTC)</a></th><th>SHA-256</th></tr>"
    ));
    assert!(page
        .contains("<tr><td><a href=\"../\">../</a></td><td></td><td></td><td></td><td></td></tr>"));
    assert!(!page.contains("Upload files"));
    assert_eq!(s.files.hash_computations(), 0);
    assert!(page.starts_with("<!DOCTYPE html>\n"));
    assert!(page.contains("<title>Index of /d/</title>"));
    assert!(page.contains("<p>3 entries.</p>"));
    assert!(!page.contains("<script"));
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    assert_eq!(r.header("vary"), Some("Accept"));
    assert_eq!(r.header("accept-ranges"), Some("none"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("last-modified"), None);
    let etag = r.header("etag").unwrap();
    assert!(
        etag.starts_with("W/\"") && etag.ends_with('"'),
        "not weak: {etag}"
    );
    assert!(r
        .header("content-security-policy")
        .unwrap()
        .starts_with("default-src 'none'"));
}

#[test]
fn json_by_accept_or_format_with_size_mtime_and_url() {
    let s = listing_server();
    s.file("d/a.txt", b"hello");
    s.file("d/sub/x", b"x");
    set_mtime(&s.root.join("d/a.txt"), at(1_600_000_000));
    set_mtime(&s.root.join("d/sub"), at(1_700_000_000));
    let by_accept = s.get("/d/", &[("Accept", "application/json")]);
    let by_query = s.get("/d/?format=json", &[]);
    assert_eq!(by_accept.body, by_query.body);
    assert_eq!(by_accept.header("vary"), Some("Accept"));
    let v = json_of(&by_accept);
    assert_eq!(v["path"], "/d/");
    assert_eq!(v["url"], "/d/");
    assert_eq!(v["parent"], "/");
    assert_eq!(v["total"], 2);
    assert_eq!(v["truncated"], false);
    assert_eq!(v["next"], Value::Null);
    assert_eq!(
        v["entries"],
        serde_json::json!([
            {"name": "sub", "url": "/d/sub/", "is_dir": true, "size": null,
             "mtime": "2023-11-14T22:13:20Z", "sha256": null},
            {"name": "a.txt", "url": "/d/a.txt", "is_dir": false, "size": 5,
             "mtime": "2020-09-13T12:26:40Z", "sha256": null},
        ])
    );
    // A browser's Accept, or text/html preferred, gets HTML; format=html wins over Accept.
    let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    html(&s.get("/d/", &[("Accept", browser)]));
    html(&s.get("/d/", &[("Accept", "text/html, application/json;q=0.5")]));
    html(&s.get("/d/?format=html", &[("Accept", "application/json")]));
    // The two representations have different ETags.
    let h = s.get("/d/", &[]);
    assert_ne!(h.header("etag"), by_accept.header("etag"));
}

#[test]
fn names_are_escaped_and_links_lead_to_the_files() {
    let s = listing_server();
    // (name, content, the name escaped for HTML text, its UTF-8 bytes percent-encoded but for
    // unreserved characters): escaped by hand here, not by the code under test.
    let files: [(&str, &[u8], &str, &str); 5] = [
        (
            "<a&\"b>.txt",
            b"one",
            "&lt;a&amp;\"b&gt;.txt",
            "%3Ca%26%22b%3E.txt",
        ),
        (
            "with space #1?.txt",
            b"two",
            "with space #1?.txt",
            "with%20space%20%231%3F.txt",
        ),
        ("100%.txt", b"three", "100%.txt", "100%25.txt"),
        (
            "é ü 日本.txt",
            b"four",
            "é ü 日本.txt",
            "%C3%A9%20%C3%BC%20%E6%97%A5%E6%9C%AC.txt",
        ),
        ("x:y.txt", b"five", "x:y.txt", "x%3Ay.txt"),
    ];
    for (name, bytes, _, _) in files {
        s.file(&format!("d/{name}"), bytes);
    }
    let page = html(&s.get("/d/", &[]));
    assert!(!page.contains("<a&"), "raw name in the page");
    let mut want_rows = vec![("../".to_string(), "../".to_string())];
    let mut sorted = files;
    sorted.sort_by_key(|f| f.0);
    for (_, _, text, encoded) in sorted {
        want_rows.push((format!("./{encoded}"), text.to_string()));
    }
    assert_eq!(rows(&page), want_rows);
    // Following each link (relative to /d/) gets that file's bytes.
    for (name, bytes, _, encoded) in files {
        let r = s.get(&format!("/d/{encoded}"), &[]);
        assert_eq!(r.status, 200, "{name}");
        assert_eq!(r.body, bytes, "{name}");
    }
    // The JSON has the names as they are and the same URLs.
    let v = json_of(&s.get("/d/?format=json", &[]));
    let got: Vec<(String, String)> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["url"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = sorted
        .iter()
        .map(|f| (f.0.to_string(), format!("/d/{}", f.3)))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn directory_names_with_special_characters_are_listed_under_their_encoded_url() {
    let s = listing_server();
    s.file("a b#?/é/f.txt", b"deep");
    let v = json_of(&s.get("/a%20b%23%3F/%C3%A9/?format=json", &[]));
    assert_eq!(v["path"], "/a b#?/é/");
    assert_eq!(v["url"], "/a%20b%23%3F/%C3%A9/");
    assert_eq!(v["parent"], "/a%20b%23%3F/");
    assert_eq!(v["entries"][0]["url"], "/a%20b%23%3F/%C3%A9/f.txt");
    let page = html(&s.get("/a%20b%23%3F/%C3%A9/", &[]));
    assert!(page.contains("<title>Index of /a b#?/é/</title>"));
}

#[test]
fn sorting_by_name_size_and_mtime_both_ways_directories_first() {
    let s = listing_server();
    // name order: a < b < c; size order: c < a < b; time order: b < c < a.
    for (name, size, time) in [
        ("b.bin", 300, 1_000_000_000),
        ("a.bin", 200, 1_300_000_000),
        ("c.bin", 100, 1_100_000_000),
    ] {
        s.file(&format!("d/{name}"), &vec![1u8; size]);
        set_mtime(&s.root.join("d").join(name), at(time));
    }
    s.file("d/zdir/x", b"");
    s.file("d/adir/x", b"");
    set_mtime(&s.root.join("d/zdir"), at(1_000));
    set_mtime(&s.root.join("d/adir"), at(2_000));
    let order = |q: &str| names(&json_of(&s.get(&format!("/d/?format=json&{q}"), &[])));
    assert_eq!(order(""), ["adir", "zdir", "a.bin", "b.bin", "c.bin"]);
    assert_eq!(
        order("sort=name&order=asc"),
        ["adir", "zdir", "a.bin", "b.bin", "c.bin"]
    );
    assert_eq!(
        order("sort=name&order=desc"),
        ["zdir", "adir", "c.bin", "b.bin", "a.bin"]
    );
    assert_eq!(
        order("sort=size&order=asc"),
        ["adir", "zdir", "c.bin", "a.bin", "b.bin"]
    );
    assert_eq!(
        order("sort=size&order=desc"),
        ["zdir", "adir", "b.bin", "a.bin", "c.bin"]
    );
    assert_eq!(
        order("sort=mtime&order=asc"),
        ["zdir", "adir", "b.bin", "c.bin", "a.bin"]
    );
    assert_eq!(
        order("sort=mtime&order=desc"),
        ["adir", "zdir", "a.bin", "c.bin", "b.bin"]
    );
    assert_eq!(order("sort=time"), order("sort=mtime"));
    // The HTML rows follow the same order, and the sorted column's link flips the order.
    let page = html(&s.get("/d/?sort=size&order=desc", &[]));
    let labels: Vec<String> = rows(&page).into_iter().map(|(_, l)| l).collect();
    assert_eq!(labels, ["../", "zdir/", "adir/", "b.bin", "a.bin", "c.bin"]);
    assert!(page.contains("<th><a href=\"?sort=size&amp;order=asc\">Size</a> &#9660;</th>"));
    assert!(page.contains("<th><a href=\"?sort=name&amp;order=asc\">Name</a></th>"));
}

#[test]
fn bad_query_values_are_400_naming_the_parameter() {
    let s = listing_server();
    s.file("d/a", b"a");
    for (q, key) in [
        ("sort=date", "sort"),
        ("order=up", "order"),
        ("limit=0", "limit"),
        ("limit=100000", "limit"),
        ("offset=-1", "offset"),
        ("format=xml", "format"),
    ] {
        let r = s.get(&format!("/d/?{q}"), &[]);
        assert_eq!(r.status, 400, "{q}");
        let body = String::from_utf8(r.body).unwrap();
        assert!(
            body.starts_with(&format!("400 Bad Request: {key}: ")),
            "{q}: {body}"
        );
    }
    // Unknown parameters are ignored.
    assert_eq!(s.get("/d/?v=123", &[]).status, 200);
}

#[test]
fn hidden_entries_only_with_show_hidden() {
    for show in [false, true] {
        let s = Server::start_with(|c| {
            c.listing = true;
            c.show_hidden = show;
        });
        s.file("d/.env", b"secret");
        s.file("d/.git/config", b"x");
        s.file("d/visible", b"v");
        let got = names(&json_of(&s.get("/d/?format=json", &[])));
        if show {
            assert_eq!(got, [".git", ".env", "visible"]);
        } else {
            assert_eq!(got, ["visible"]);
            // And the hidden directory itself is not listed either.
            assert_eq!(s.get("/d/.git/", &[]).status, 404);
        }
    }
}

#[test]
fn symlinks_are_listed_only_when_they_would_be_served() {
    for follow in [false, true] {
        let s = Server::start_with(|c| {
            c.listing = true;
            c.follow_symlinks = follow;
        });
        let outside = s.dir.path().join("outside.txt");
        std::fs::write(&outside, b"outside bytes").unwrap();
        s.file("d/target.txt", b"inside");
        s.file("d/.hidden.txt", b"h");
        s.file("d/sub/x", b"x");
        let d = s.root.join("d");
        std::os::unix::fs::symlink(&outside, d.join("out")).unwrap();
        std::os::unix::fs::symlink("target.txt", d.join("in")).unwrap();
        std::os::unix::fs::symlink("sub", d.join("subl")).unwrap();
        std::os::unix::fs::symlink("missing", d.join("dangling")).unwrap();
        std::os::unix::fs::symlink(".hidden.txt", d.join("tohidden")).unwrap();
        let v = json_of(&s.get("/d/?format=json", &[]));
        let mut want = vec!["sub", "subl", "in"];
        if follow {
            want.push("out");
        }
        want.push("target.txt");
        assert_eq!(names(&v), want, "follow_symlinks = {follow}");
        // A kept link shows its target: type and size.
        let entries = v["entries"].as_array().unwrap();
        let find = |n: &str| entries.iter().find(|e| e["name"] == n).unwrap();
        assert_eq!(find("in")["size"], 6);
        assert_eq!(find("subl")["is_dir"], true);
        assert_eq!(find("subl")["url"], "/d/subl/");
        if follow {
            assert_eq!(find("out")["size"], 13);
        }
        // Each listed URL answers 200; the left-out links do not.
        for e in entries {
            assert_eq!(s.get(e["url"].as_str().unwrap(), &[]).status, 200, "{e}");
        }
        for gone in ["dangling", "tohidden"] {
            assert_eq!(s.get(&format!("/d/{gone}"), &[]).status, 404);
        }
    }
}

#[test]
fn unservable_names_and_special_files_are_left_out() {
    use std::os::unix::ffi::OsStrExt;
    let s = listing_server();
    s.file("d/ok.txt", b"ok");
    let d = s.root.join("d");
    // Names the resolver answers 400 for: not UTF-8, or holding a backslash.
    std::fs::write(d.join(std::ffi::OsStr::from_bytes(b"bad\xff.txt")), b"x").unwrap();
    std::fs::write(d.join("back\\slash.txt"), b"x").unwrap();
    // A socket and a FIFO: neither a file nor a directory.
    let _sock = std::os::unix::net::UnixListener::bind(d.join("sock")).unwrap();
    let fifo = std::ffi::CString::new(d.join("fifo").as_os_str().as_bytes()).unwrap();
    // SAFETY: a NUL-terminated path that lives across the call.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    assert_eq!(names(&json_of(&s.get("/d/?format=json", &[]))), ["ok.txt"]);
    assert_eq!(rows(&html(&s.get("/d/", &[]))).len(), 2);
}

#[test]
fn parent_link_everywhere_but_the_root() {
    let s = listing_server();
    s.file("a/b/c.txt", b"c");
    let root = html(&s.get("/", &[]));
    assert!(!root.contains("href=\"../\""));
    assert_eq!(rows(&root)[0], ("./a/".to_string(), "a/".to_string()));
    let b = html(&s.get("/a/b/", &[]));
    assert_eq!(rows(&b)[0], ("../".to_string(), "../".to_string()));
    assert_eq!(json_of(&s.get("/?format=json", &[]))["parent"], Value::Null);
    assert_eq!(json_of(&s.get("/a/b/?format=json", &[]))["parent"], "/a/");
    // The parent link leads to the parent's listing.
    let up = html(&s.get("/a/", &[]));
    assert_eq!(rows(&up)[1], ("./b/".to_string(), "b/".to_string()));
}

#[test]
fn listing_off_is_404_and_no_slash_still_redirects() {
    let off = Server::start();
    off.file("d/a.txt", b"a");
    let r = off.get("/d/", &[]);
    assert_eq!(r.status, 404);
    assert_eq!(r.body, b"404 Not Found\n");
    assert_eq!(off.get("/", &[]).status, 404);
    let on = listing_server();
    on.file("d/a.txt", b"a");
    let r = on.get("/d?sort=size", &[]);
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/d/?sort=size"));
}

#[test]
fn index_file_wins_over_the_listing() {
    let s = listing_server();
    s.file("d/index.html", b"<p>the index</p>");
    s.file("d/other.txt", b"o");
    let r = s.get("/d/", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"<p>the index</p>");
    assert_eq!(s.get("/d/?format=json", &[]).body, b"<p>the index</p>");
}

#[test]
fn directories_under_the_lab_are_not_listed() {
    let s = Server::start_with(|c| {
        c.listing = true;
        c.lab_enabled = true;
    });
    s.file("d/a.txt", b"a");
    assert_eq!(s.get("/_lab/files/d/", &[]).status, 404);
    assert_eq!(s.get("/d/", &[]).status, 200);
}

#[test]
fn head_range_and_conditionals_on_a_listing() {
    let s = listing_server();
    s.file("d/a.txt", b"a");
    let full = s.get("/d/", &[]);
    let head = s.request("HEAD", "/d/", &[]);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    for h in [
        "content-length",
        "content-type",
        "etag",
        "vary",
        "cache-control",
    ] {
        assert_eq!(head.header(h), full.header(h), "{h}");
    }
    assert_eq!(
        head.header("content-length").unwrap(),
        full.body.len().to_string()
    );
    // Range is ignored: the whole listing, 200, no Content-Range.
    let ranged = s.get("/d/", &[("Range", "bytes=0-9")]);
    assert_eq!(ranged.status, 200);
    assert_eq!(ranged.header("content-range"), None);
    assert_eq!(ranged.body, full.body);
    // If-None-Match with the (weak) ETag: 304 with the ETag and Vary, no body.
    let etag = full.header("etag").unwrap();
    let nm = s.get("/d/", &[("If-None-Match", etag)]);
    assert_eq!(nm.status, 304);
    assert_eq!(nm.header("etag"), Some(etag));
    assert_eq!(nm.header("vary"), Some("Accept"));
    // If-Match compares strongly: a weak tag never matches (RFC 9110 §13.1.1).
    assert_eq!(s.get("/d/", &[("If-Match", etag)]).status, 412);
    // A new entry: another ETag, and the old one no longer gives a 304.
    s.file("d/b.txt", b"b");
    let after = s.get("/d/", &[("If-None-Match", etag)]);
    assert_eq!(after.status, 200);
    assert_ne!(after.header("etag"), Some(etag));
}

#[test]
fn times_outside_rfc3339_are_null_not_a_panic() {
    let s = listing_server();
    s.file("d/old", b"o");
    set_mtime(
        &s.root.join("d/old"),
        UNIX_EPOCH - Duration::from_secs(86_400 * 365 * 10),
    );
    let v = json_of(&s.get("/d/?format=json", &[]));
    assert_eq!(v["entries"][0]["mtime"], Value::Null);
    let page = html(&s.get("/d/", &[]));
    assert!(page.contains("<td class=\"n\">1</td><td>-</td><td>-</td></tr>"));
}

/// 100,000 files: every page is at most `limit` entries, the pages chain through `next` and
/// together hold every name exactly once, in order.
#[test]
fn a_directory_of_100k_files_is_paged() {
    const N: usize = 100_000;
    let s = listing_server();
    let big = s.root.join("big");
    std::fs::create_dir(&big).unwrap();
    // Hard links to a few empty files (ext4 allows 65,000 links to one): 100,000 names at a
    // fraction of the cost of as many file creations; each is a regular file.
    let sources: Vec<_> = (0..4)
        .map(|k| {
            let p = s.dir.path().join(format!("src{k}"));
            std::fs::File::create(&p).unwrap();
            p
        })
        .collect();
    for i in 0..N {
        std::fs::hard_link(&sources[i % 4], big.join(format!("f{i:06}"))).unwrap();
    }
    // The default page: 1000 rows and a next link.
    let page = html(&s.get("/big/", &[]));
    let r = rows(&page);
    assert_eq!(r.len(), 1 + 1000);
    assert_eq!(r[1].1, "f000000");
    assert_eq!(r[1000].1, "f000999");
    assert!(page.contains("<p>100000 entries, 1&ndash;1000 shown.</p>"));
    assert!(page.contains("<a href=\"?sort=name&amp;order=asc&amp;offset=1000\" rel=\"next\">"));
    // All of it, 10,000 at a time, following next.
    let mut url = "/big/?format=json&limit=10000".to_string();
    let mut seen = Vec::with_capacity(N);
    let mut pages = 0;
    loop {
        let v = json_of(&s.get(&url, &[]));
        assert_eq!(v["total"], N);
        let got = names(&v);
        assert!(got.len() <= 10_000);
        seen.extend(got);
        pages += 1;
        match v["next"].as_str() {
            Some(next) => url = next.to_string(),
            None => break,
        }
    }
    assert_eq!(pages, 10);
    let want: Vec<String> = (0..N).map(|i| format!("f{i:06}")).collect();
    assert_eq!(seen, want);
    // Past the end: an empty page with a way back.
    let v = json_of(&s.get("/big/?format=json&offset=200000&limit=10", &[]));
    assert_eq!(names(&v).len(), 0);
    assert_eq!(
        v["prev"],
        "/big/?sort=name&order=asc&limit=10&offset=99990&format=json"
    );
    // Sorting by time stats every entry; still one page.
    let v = json_of(&s.get("/big/?format=json&sort=mtime&order=desc&limit=3", &[]));
    assert_eq!(names(&v).len(), 3);
}

/// `'sha256-BASE64'` of an inline script, computed here (CSP Level 3 hash-source).
fn csp_source(inline: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let sum = sha2::Sha256::digest(inline.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(sum)
    )
}

/// The copy-button script of a listing that shows a hash, as the page carries it.
const COPY_SCRIPT: &str = "for(const b of document.querySelectorAll('td>button')){b.hidden=false;\
b.onclick=()=>{const c=b.previousElementSibling,s=()=>getSelection().selectAllChildren(c);\
navigator.clipboard?navigator.clipboard.writeText(c.textContent).then(()=>b.textContent='copied',s):s()}}";

#[test]
fn known_hashes_are_shown_with_a_copy_button_and_a_listing_computes_none() {
    let s = listing_server();
    s.file("d/a.txt", b"hello");
    s.file("d/b.txt", b"other bytes");
    s.file("d/sub/x", b"x");
    set_mtime(&s.root.join("d/a.txt"), at(1_600_000_000));
    // Nothing known: no hash, no script, and the listing hashed nothing.
    let page = html(&s.get("/d/", &[]));
    assert!(!page.contains("<code>") && !page.contains("<script"));
    assert_eq!(s.files.hash_computations(), 0);
    // A download hashes a.txt (its ETag); from then on its listing row shows that hash.
    let got = s.get("/d/a.txt", &[]);
    let hex = sha256_hex(b"hello");
    assert_eq!(got.header("etag"), Some(format!("\"{hex}\"").as_str()));
    assert_eq!(s.files.hash_computations(), 1);
    let r = s.get("/d/", &[]);
    let page = html(&r);
    assert!(page.contains(&format!(
        "<tr><td><a href=\"./a.txt\">a.txt</a></td><td class=\"n\">5 B</td><td class=\"n\">5</td>\
         <td><time datetime=\"2020-09-13T12:26:40Z\">2020-09-13 12:26:40</time></td>\
         <td><code>{hex}</code> <button type=\"button\" hidden>copy</button></td></tr>\n"
    )));
    assert!(page.contains("<a href=\"./b.txt\">b.txt</a></td>"));
    assert_eq!(page.matches("<td>-</td></tr>").count(), 1, "b.txt: unknown");
    assert_eq!(page.matches("<button").count(), 1);
    // The buttons' script, once, at the end; allowed by its hash and nothing else.
    assert!(page.ends_with(&format!(
        "</tbody>\n</table>\n<script>{COPY_SCRIPT}</script>\n</body>\n</html>\n"
    )));
    assert_eq!(
        r.header("content-security-policy"),
        Some(
            format!(
                "default-src 'none'; style-src 'unsafe-inline'; script-src {}; \
                 base-uri 'none'; form-action 'none'",
                csp_source(COPY_SCRIPT)
            )
            .as_str()
        )
    );
    // JSON: the hash as hex, null where it is not known and for directories.
    let v = json_of(&s.get("/d/?format=json", &[]));
    let sums: Vec<(String, Value)> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_string(), e["sha256"].clone()))
        .collect();
    assert_eq!(
        sums,
        [
            ("sub".to_string(), Value::Null),
            ("a.txt".to_string(), Value::from(hex.as_str())),
            ("b.txt".to_string(), Value::Null),
        ]
    );
    // Listings by size and time stat every entry: the same hashes.
    let v = json_of(&s.get("/d/?format=json&sort=size", &[]));
    assert_eq!(v["entries"][1]["name"], "a.txt");
    assert_eq!(v["entries"][1]["sha256"], hex.as_str());
    assert_eq!(s.files.hash_computations(), 1, "a listing hashed a file");
    // A new version of a.txt is not the hashed one: unknown again until it is asked for.
    std::fs::write(s.root.join("d/a.txt"), b"HELLO").unwrap();
    let page = html(&s.get("/d/", &[]));
    assert!(!page.contains(&hex) && !page.contains("<script"));
    assert_eq!(s.files.hash_computations(), 1);
}

#[test]
fn listings_of_the_upload_directory_link_to_the_upload_page() {
    const TOKEN: &str = "listing-token-0123456789";
    let s = Server::start_with(|c| {
        c.listing = true;
        let up = rangeserve::config::UploadConfig::new(&c.root, &c.root.join("in"), &[TOKEN]);
        c.upload = Some(up.unwrap());
    });
    s.file("in/a b/x", b"x");
    s.file("other/y", b"y");
    let link = |path: &str| {
        let page = html(&s.get(path, &[]));
        let links: Vec<&str> = page
            .lines()
            .filter(|l| l.contains("Upload files"))
            .collect();
        assert!(links.len() <= 1, "{path}: {links:?}");
        links.first().map(|l| l.to_string())
    };
    assert_eq!(link("/"), None);
    assert_eq!(link("/other/"), None);
    assert_eq!(
        link("/in/").as_deref(),
        Some("<p><a href=\"/_upload/\">Upload files</a></p>")
    );
    assert_eq!(
        link("/in/a%20b/").as_deref(),
        Some("<p><a href=\"/_upload/?dir=a+b\">Upload files</a></p>")
    );
    // The link comes right after the title, and leads to the page.
    let page = html(&s.get("/in/", &[]));
    assert!(page.contains(
        "<h1>Index of /in/</h1>\n<p><a href=\"/_upload/\">Upload files</a></p>\n<p>1 entries.</p>"
    ));
    assert_eq!(s.get("/_upload/", &[]).status, 200);
    // A file uploaded is listed with its hash, computed as it arrived: nothing is hashed.
    let body = b"uploaded bytes";
    let mut put = format!(
        "PUT /in/new.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
         Authorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    put.extend_from_slice(body);
    let r = Response::parse(&s.raw(&put), false);
    assert_eq!(r.status, 201, "{r:?}");
    let page = html(&s.get("/in/", &[]));
    assert!(page.contains(&format!(
        "<td><code>{}</code> <button type=\"button\" hidden>copy</button></td></tr>",
        sha256_hex(body)
    )));
    assert_eq!(s.files.hash_computations(), 0);
}
