//! Precompressed sidecars (`precompressed = true`): `name.br`, `name.zst`, `name.gz` beside a file
//! are served to clients whose Accept-Encoding allows them (RFC 9110 §12.5.3), each as its own
//! representation (§8.8.3) with its own ETag, ranges over its encoded bytes, and `Vary:
//! Accept-Encoding` on every response of a file that has sidecars.
//!
//! The sidecars are made here with the flate2, zstd and brotli crates; expected ETags are the
//! SHA-256 of the bytes written, and every encoded body is decoded back to the original.

use crate::common::codings::*;
use crate::common::*;

use std::io::Write;

/// A file and the sidecars asked for; returns the original and each coding's bytes.
struct Fixture {
    original: Vec<u8>,
    br: Vec<u8>,
    zstd: Vec<u8>,
    gz: Vec<u8>,
}

impl Fixture {
    fn bytes(&self, enc: Enc) -> &[u8] {
        match enc {
            Enc::Identity => &self.original,
            Enc::Br => &self.br,
            Enc::Zstd => &self.zstd,
            Enc::Gzip => &self.gz,
        }
    }
}

fn make(s: &Server, rel: &str, seed: u32, sidecars: &[Enc]) -> Fixture {
    let original = text(seed);
    let f = Fixture {
        br: brotli(&original),
        zstd: zstd(&original),
        gz: gzip(&original),
        original,
    };
    assert!(f.gz != f.zstd && f.gz != f.br && f.gz.len() < f.original.len());
    s.file(rel, &f.original);
    for &enc in sidecars {
        let suffix = match enc {
            Enc::Br => ".br",
            Enc::Zstd => ".zst",
            Enc::Gzip => ".gz",
            Enc::Identity => unreachable!(),
        };
        s.file(&format!("{rel}{suffix}"), f.bytes(enc));
    }
    f
}

fn server() -> Server {
    Server::start_with(|c| c.precompressed = true)
}

const ALL: &[Enc] = &[Enc::Br, Enc::Zstd, Enc::Gzip];

/// A full 200 of `enc`'s representation of `f`, whose type is `ctype` and which varies.
fn assert_served(r: &Response, f: &Fixture, enc: Enc, ctype: &str, what: &str) {
    assert_eq!(r.status, 200, "{what}: {:?}", r.headers);
    let bytes = f.bytes(enc);
    assert!(r.body == bytes, "{what}: body is not the {enc:?} file");
    assert_eq!(decode(enc, &r.body), f.original, "{what}: decodes");
    let ce = match enc {
        Enc::Identity => None,
        Enc::Br => Some("br"),
        Enc::Zstd => Some("zstd"),
        Enc::Gzip => Some("gzip"),
    };
    assert_eq!(r.header("content-encoding"), ce, "{what}");
    assert_eq!(r.header("etag"), Some(etag_of(bytes).as_str()), "{what}");
    assert_eq!(
        r.header("content-length"),
        Some(bytes.len().to_string().as_str()),
        "{what}"
    );
    assert_eq!(r.header("content-type"), Some(ctype), "{what}");
    assert_eq!(r.header("vary"), Some("Accept-Encoding"), "{what}");
    assert_eq!(r.header("accept-ranges"), Some("bytes"), "{what}");
}

fn get_ae(s: &Server, path: &str, ae: &str, more: &[(&str, &str)]) -> Response {
    let mut h = vec![("Accept-Encoding", ae)];
    h.extend_from_slice(more);
    s.get(path, &h)
}

const TXT: &str = "text/plain; charset=utf-8";

#[test]
fn absent_accept_encoding_gets_identity_with_vary() {
    let s = server();
    let f = make(&s, "doc.txt", 1, ALL);
    let r = s.get("/doc.txt", &[]);
    assert_served(&r, &f, Enc::Identity, TXT, "no Accept-Encoding");
}

#[test]
fn each_coding_is_served_from_its_sidecar() {
    let s = server();
    let f = make(&s, "doc.txt", 1, ALL);
    for (ae, enc) in [
        ("br", Enc::Br),
        ("zstd", Enc::Zstd),
        ("gzip", Enc::Gzip),
        ("x-gzip", Enc::Gzip),
        ("GZip", Enc::Gzip),
    ] {
        let r = get_ae(&s, "/doc.txt", ae, &[]);
        assert_served(&r, &f, enc, TXT, ae);
    }
}

#[test]
fn q_values_choose_the_coding() {
    let s = server();
    let f = make(&s, "doc.txt", 1, ALL);
    for (ae, enc) in [
        // A browser's list: equal q, br first.
        ("gzip, deflate, br, zstd", Enc::Br),
        ("gzip;q=1.0, br;q=0.5", Enc::Gzip),
        ("br;q=0.2, zstd;q=0.8, gzip;q=0.5", Enc::Zstd),
        ("br;q=0, zstd;q=0, gzip", Enc::Gzip),
        ("gzip ; q=0.9 , zstd;Q=0.95", Enc::Zstd),
        // Identity named with a higher q than the codings wins; a tie goes to the coding.
        ("gzip;q=0.5, identity", Enc::Identity),
        ("gzip;q=0.5, identity;q=0.5", Enc::Gzip),
        ("identity;q=0, gzip", Enc::Gzip),
        // `*` covers what is not listed, identity included.
        ("*", Enc::Br),
        ("*;q=0.5, gzip", Enc::Gzip),
        ("br;q=0, *", Enc::Zstd),
        ("gzip;q=0.3, br;q=0.2, zstd;q=0.1, *;q=0.5", Enc::Identity),
        // Nothing we have, or nothing at all.
        ("deflate, compress", Enc::Identity),
        ("", Enc::Identity),
        // Malformed q: that element is refused, the rest counts.
        ("br;q=high, zstd", Enc::Zstd),
        ("br;q=1.5, gzip;q=0.1", Enc::Gzip),
        // Listed twice: the lower q.
        ("br, br;q=0, gzip", Enc::Gzip),
    ] {
        let r = get_ae(&s, "/doc.txt", ae, &[]);
        assert_served(&r, &f, enc, TXT, ae);
    }
    // Two Accept-Encoding lines are one list.
    let r = s.get(
        "/doc.txt",
        &[
            ("Accept-Encoding", "br;q=0.1"),
            ("Accept-Encoding", "zstd;q=0.2"),
        ],
    );
    assert_served(&r, &f, Enc::Zstd, TXT, "two lines");
}

#[test]
fn only_existing_sidecars_are_chosen() {
    let s = server();
    let f = make(&s, "app.js", 2, &[Enc::Gzip]);
    let js = "text/javascript; charset=utf-8";
    let r = get_ae(&s, "/app.js", "br, zstd, gzip", &[]);
    assert_served(&r, &f, Enc::Gzip, js, "br, zstd, gzip");
    let r = get_ae(&s, "/app.js", "br, gzip;q=0.1", &[]);
    assert_served(&r, &f, Enc::Gzip, js, "br, gzip;q=0.1");
    // An acceptable coding without a sidecar: identity, still varying.
    let r = get_ae(&s, "/app.js", "br, zstd", &[]);
    assert_served(&r, &f, Enc::Identity, js, "br, zstd");
}

#[test]
fn identity_refused_without_an_acceptable_sidecar_still_gets_identity() {
    // §12.5.3 allows 406/415 or identity; like nginx and Caddy, identity.
    let s = server();
    let f = make(&s, "app.js", 2, &[Enc::Gzip]);
    let js = "text/javascript; charset=utf-8";
    for ae in ["br, identity;q=0", "*;q=0", "gzip;q=0, identity;q=0"] {
        let r = get_ae(&s, "/app.js", ae, &[]);
        assert_served(&r, &f, Enc::Identity, js, ae);
    }
    let r = get_ae(&s, "/app.js", "gzip;q=0.001, identity;q=0", &[]);
    assert_served(&r, &f, Enc::Gzip, js, "gzip;q=0.001");
}

/// The `Content-Range` of a single-range 206, as (first, last, complete length).
fn content_range(r: &Response) -> (u64, u64, u64) {
    let v = r.header("content-range").expect("Content-Range");
    let rest = v.strip_prefix("bytes ").unwrap();
    let (span, len) = rest.split_once('/').unwrap();
    let (a, b) = span.split_once('-').unwrap();
    (a.parse().unwrap(), b.parse().unwrap(), len.parse().unwrap())
}

#[test]
fn ranges_apply_to_the_encoded_bytes() {
    let s = server();
    let f = make(&s, "doc.txt", 1, ALL);
    for (ae, enc) in [("gzip", Enc::Gzip), ("br", Enc::Br), ("zstd", Enc::Zstd)] {
        let bytes = f.bytes(enc);
        let len = bytes.len() as u64;
        for (range, first, last) in [
            ("bytes=10-99", 10, 99),
            ("bytes=0-0", 0, 0),
            ("bytes=-7", len - 7, len - 1),
            ("bytes=100-", 100, len - 1),
            ("bytes=5-99999999", 5, len - 1),
        ] {
            let r = get_ae(&s, "/doc.txt", ae, &[("Range", range)]);
            let what = format!("{ae} {range}");
            assert_eq!(r.status, 206, "{what}");
            assert_eq!(content_range(&r), (first, last, len), "{what}");
            assert!(
                r.body == bytes[first as usize..=last as usize],
                "{what}: not the slice of the sidecar"
            );
            assert_eq!(r.header("content-encoding"), Some(enc_token(enc)), "{what}");
            assert_eq!(r.header("etag"), Some(etag_of(bytes).as_str()), "{what}");
            assert_eq!(r.header("content-type"), Some(TXT), "{what}");
            assert_eq!(r.header("vary"), Some("Accept-Encoding"), "{what}");
        }
    }
    // Resuming an encoded download piece by piece reassembles the sidecar, which decodes.
    let mut got = Vec::new();
    let len = f.gz.len();
    let mut at = 0;
    while at < len {
        let range = format!("bytes={at}-{}", (at + 999).min(len - 1));
        let r = get_ae(&s, "/doc.txt", "gzip", &[("Range", &range)]);
        assert_eq!(r.status, 206);
        got.extend_from_slice(&r.body);
        at += 1000;
    }
    assert!(got == f.gz);
    assert_eq!(decode(Enc::Gzip, &got), f.original);
}

fn enc_token(enc: Enc) -> &'static str {
    match enc {
        Enc::Br => "br",
        Enc::Zstd => "zstd",
        Enc::Gzip => "gzip",
        Enc::Identity => unreachable!(),
    }
}

#[test]
fn multiple_ranges_of_the_encoded_bytes() {
    let s = server();
    let f = make(&s, "doc.txt", 1, ALL);
    let len = f.gz.len();
    let r = get_ae(&s, "/doc.txt", "gzip", &[("Range", "bytes=0-9,50-59,-5")]);
    assert_eq!(r.status, 206);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("multipart/byteranges; boundary="));
    // Representation metadata of the 206 (§15.3.7): the coding applies to the ranges' source.
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    assert_eq!(r.header("etag"), Some(etag_of(&f.gz).as_str()));
    let mut from = 0;
    for (a, b) in [(0, 9), (50, 59), (len - 5, len - 1)] {
        let head = format!("Content-Type: {TXT}\r\nContent-Range: bytes {a}-{b}/{len}\r\n\r\n");
        let mut want = head.into_bytes();
        want.extend_from_slice(&f.gz[a..=b]);
        let at = find(&r.body[from..], &want).unwrap_or_else(|| panic!("part {a}-{b}"));
        from += at + want.len();
    }
}

#[test]
fn if_range_never_crosses_representations() {
    let s = server();
    let f = make(&s, "doc.txt", 1, ALL);
    let id_tag = etag_of(&f.original);
    let gz_tag = etag_of(&f.gz);
    // A resume of an identity download, asked with gzip accepted: the whole gzip representation.
    let r = get_ae(
        &s,
        "/doc.txt",
        "gzip",
        &[("Range", "bytes=100-"), ("If-Range", &id_tag)],
    );
    assert_served(&r, &f, Enc::Gzip, TXT, "If-Range identity tag, gzip");
    // The reverse: a gzip tag, no coding accepted: the whole identity representation.
    let r = s.get(
        "/doc.txt",
        &[("Range", "bytes=100-"), ("If-Range", &gz_tag)],
    );
    assert_served(&r, &f, Enc::Identity, TXT, "If-Range gzip tag, identity");
    // br's own tag asked with br: the range.
    let r = get_ae(
        &s,
        "/doc.txt",
        "br",
        &[("Range", "bytes=100-"), ("If-Range", &etag_of(&f.br))],
    );
    assert_eq!(r.status, 206);
    assert!(r.body == f.br[100..]);
    assert_eq!(r.header("content-encoding"), Some("br"));
    // gzip's tag asked with br preferred: br is selected, the gzip tag does not match it.
    let r = get_ae(
        &s,
        "/doc.txt",
        "br, gzip",
        &[("Range", "bytes=100-"), ("If-Range", &gz_tag)],
    );
    assert_served(&r, &f, Enc::Br, TXT, "If-Range gzip tag, br selected");
}

#[test]
fn if_range_dates_never_match_a_file_with_sidecars() {
    // `gzip -k` keeps the original's mtime: both representations show the same Last-Modified,
    // so the date cannot say which bytes the client holds.
    let s = server();
    let f = make(&s, "doc.txt", 1, &[Enc::Gzip]);
    set_mtime(&s.root.join("doc.txt"), at(MTIME_SECS));
    set_mtime(&s.root.join("doc.txt.gz"), at(MTIME_SECS));
    let plain = s.file("plain.txt", &f.original);
    set_mtime(&plain, at(MTIME_SECS));
    let range = [("Range", "bytes=100-"), ("If-Range", MTIME_STR)];
    // Control: without sidecars the same date validates the range.
    let r = s.get("/plain.txt", &range);
    assert_eq!(r.status, 206, "{:?}", r.headers);
    assert_eq!(r.header("last-modified"), Some(MTIME_STR));
    let r = get_ae(&s, "/doc.txt", "gzip", &range);
    assert_served(&r, &f, Enc::Gzip, TXT, "date If-Range, gzip");
    assert_eq!(r.header("last-modified"), Some(MTIME_STR));
    let r = s.get("/doc.txt", &range);
    assert_served(&r, &f, Enc::Identity, TXT, "date If-Range, identity");
    assert_eq!(r.header("last-modified"), Some(MTIME_STR));
}

#[test]
fn if_none_match_never_crosses_representations() {
    let s = server();
    let f = make(&s, "doc.txt", 1, ALL);
    let id_tag = etag_of(&f.original);
    let gz_tag = etag_of(&f.gz);
    let r = get_ae(&s, "/doc.txt", "gzip", &[("If-None-Match", &id_tag)]);
    assert_served(&r, &f, Enc::Gzip, TXT, "INM identity tag, gzip");
    let r = s.get("/doc.txt", &[("If-None-Match", &gz_tag)]);
    assert_served(&r, &f, Enc::Identity, TXT, "INM gzip tag, identity");
    let r = get_ae(&s, "/doc.txt", "zstd", &[("If-None-Match", &gz_tag)]);
    assert_served(&r, &f, Enc::Zstd, TXT, "INM gzip tag, zstd");
    // Its own tag: 304 with that tag and Vary, without Content-Encoding (§15.4.5).
    let r = get_ae(&s, "/doc.txt", "gzip", &[("If-None-Match", &gz_tag)]);
    assert_eq!(r.status, 304);
    assert_eq!(r.header("etag"), Some(gz_tag.as_str()));
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    assert_eq!(r.header("content-encoding"), None);
    // A cache holding several variants lists their tags: the selected one matches.
    let both = format!("{id_tag}, {gz_tag}");
    let r = get_ae(&s, "/doc.txt", "gzip", &[("If-None-Match", &both)]);
    assert_eq!(r.status, 304);
    assert_eq!(r.header("etag"), Some(gz_tag.as_str()));
    let r = s.get("/doc.txt", &[("If-None-Match", &both)]);
    assert_eq!(r.status, 304);
    assert_eq!(r.header("etag"), Some(id_tag.as_str()));
    // If-Match is strong and per representation too.
    let r = get_ae(&s, "/doc.txt", "gzip", &[("If-Match", &id_tag)]);
    assert_eq!(r.status, 412);
}

#[test]
fn vary_on_every_status() {
    let s = server();
    let f = make(&s, "doc.txt", 1, ALL);
    for (ae, enc) in [("gzip", Enc::Gzip), ("identity", Enc::Identity)] {
        let bytes = f.bytes(enc);
        let tag = etag_of(bytes);
        let cases: [(&[(&str, &str)], u16); 5] = [
            (&[], 200),
            (&[("Range", "bytes=0-4")], 206),
            (&[("If-None-Match", &tag)], 304),
            (&[("If-Match", "\"other\"")], 412),
            (&[("Range", "bytes=99999999-")], 416),
        ];
        for (more, status) in cases {
            let r = get_ae(&s, "/doc.txt", ae, more);
            let what = format!("{ae} {more:?}");
            assert_eq!(r.status, status, "{what}");
            assert_eq!(r.header("vary"), Some("Accept-Encoding"), "{what}");
            let encoded = enc != Enc::Identity && (status == 200 || status == 206);
            assert_eq!(
                r.header("content-encoding"),
                encoded.then(|| enc_token(enc)),
                "{what}"
            );
            if status == 416 {
                // The length of the selected representation: the encoded one.
                let want = format!("bytes */{}", bytes.len());
                assert_eq!(r.header("content-range"), Some(want.as_str()), "{what}");
            }
        }
    }
}

#[test]
fn head_matches_get() {
    let s = server();
    let f = make(&s, "doc.txt", 1, ALL);
    for (ae, enc) in [("br", Enc::Br), ("", Enc::Identity)] {
        let bytes = f.bytes(enc);
        let r = s.request("HEAD", "/doc.txt", &[("Accept-Encoding", ae)]);
        assert_eq!(r.status, 200);
        assert!(r.body.is_empty());
        assert_eq!(
            r.header("content-length"),
            Some(bytes.len().to_string().as_str())
        );
        assert_eq!(r.header("etag"), Some(etag_of(bytes).as_str()));
        assert_eq!(
            r.header("content-encoding"),
            (enc != Enc::Identity).then(|| enc_token(enc))
        );
        assert_eq!(r.header("vary"), Some("Accept-Encoding"));
        assert_eq!(r.header("content-type"), Some(TXT));
    }
}

#[test]
fn a_file_without_sidecars_does_not_vary() {
    let s = server();
    let data = text(3);
    s.file("plain.txt", &data);
    let tag = etag_of(&data);
    for more in [
        &[][..],
        &[("Range", "bytes=0-4")][..],
        &[("If-None-Match", tag.as_str())][..],
        &[("Range", "bytes=99999999-")][..],
    ] {
        let r = get_ae(&s, "/plain.txt", "gzip, br, zstd", more);
        assert!(matches!(r.status, 200 | 206 | 304 | 416), "{more:?}");
        assert_eq!(r.header("vary"), None, "{more:?}");
        assert_eq!(r.header("content-encoding"), None, "{more:?}");
    }
    let r = get_ae(&s, "/plain.txt", "gzip", &[]);
    assert!(r.body == data);
}

#[test]
fn off_by_default() {
    let s = Server::start();
    assert!(!s.config.precompressed);
    let f = make(&s, "doc.txt", 1, ALL);
    let r = get_ae(&s, "/doc.txt", "gzip, br, zstd", &[]);
    assert_eq!(r.status, 200);
    assert!(r.body == f.original);
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.header("vary"), None);
    assert_eq!(r.header("etag"), Some(etag_of(&f.original).as_str()));
}

#[test]
fn a_sidecar_asked_for_by_name_is_a_plain_file() {
    let s = server();
    let f = make(&s, "doc.txt", 1, ALL);
    let r = get_ae(&s, "/doc.txt.gz", "gzip", &[]);
    assert_eq!(r.status, 200);
    assert!(r.body == f.gz);
    assert_eq!(r.header("content-type"), Some("application/gzip"));
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.header("vary"), None);
    assert_eq!(r.header("etag"), Some(etag_of(&f.gz).as_str()));
}

#[test]
fn sidecars_must_be_regular_files_inside_the_root() {
    let s = server();
    // A directory named like a sidecar is none.
    let f = make(&s, "dir.txt", 4, &[]);
    std::fs::create_dir(s.root.join("dir.txt.gz")).unwrap();
    let r = get_ae(&s, "/dir.txt", "gzip", &[]);
    assert!(r.body == f.original);
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.header("vary"), None);
    // A symlink that leaves the root is none (follow_symlinks is off).
    let f = make(&s, "out.txt", 5, &[]);
    let outside = s.dir.path().join("outside.gz");
    std::fs::write(&outside, gzip(&f.original)).unwrap();
    std::os::unix::fs::symlink(&outside, s.root.join("out.txt.gz")).unwrap();
    let r = get_ae(&s, "/out.txt", "gzip", &[]);
    assert!(r.body == f.original);
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.header("vary"), None);
    // A symlink inside the root is followed, as for files.
    let f = make(&s, "in.txt", 6, &[]);
    s.file("store/in.gz", &f.gz);
    std::os::unix::fs::symlink(s.root.join("store/in.gz"), s.root.join("in.txt.gz")).unwrap();
    let r = get_ae(&s, "/in.txt", "gzip", &[]);
    assert_served(&r, &f, Enc::Gzip, TXT, "symlinked sidecar inside the root");
}

#[test]
fn hidden_files_stay_hidden_with_their_sidecars() {
    let s = server();
    make(&s, ".secret.txt", 7, ALL);
    for ae in ["gzip", ""] {
        let r = get_ae(&s, "/.secret.txt", ae, &[]);
        assert_eq!(r.status, 404, "{ae}");
    }
    let r = get_ae(&s, "/.secret.txt.gz", "gzip", &[]);
    assert_eq!(r.status, 404);
}

#[test]
fn index_files_use_their_sidecars() {
    let s = server();
    let f = make(&s, "site/index.html", 8, &[Enc::Br]);
    let r = get_ae(&s, "/site/", "br", &[]);
    assert_served(&r, &f, Enc::Br, "text/html; charset=utf-8", "index");
}

#[test]
fn sidecars_that_appear_or_change_are_seen_at_once() {
    let s = server();
    let f = make(&s, "doc.txt", 1, &[]);
    let r = get_ae(&s, "/doc.txt", "gzip", &[]);
    assert!(r.body == f.original);
    assert_eq!(r.header("vary"), None);
    // Appears: served from the next request on (absence is not cached).
    s.file("doc.txt.gz", &f.gz);
    let r = get_ae(&s, "/doc.txt", "gzip", &[]);
    assert_served(&r, &f, Enc::Gzip, TXT, "new sidecar");
    // Rewritten with other bytes (another compression level): a new ETag.
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(&f.original).unwrap();
    let fast = e.finish().unwrap();
    assert!(fast != f.gz);
    s.file("doc.txt.gz", &fast);
    let r = get_ae(&s, "/doc.txt", "gzip", &[]);
    assert_eq!(r.status, 200);
    assert!(r.body == fast);
    assert_eq!(r.header("etag"), Some(etag_of(&fast).as_str()));
    assert_eq!(decode(Enc::Gzip, &r.body), f.original);
    // Removed: identity, and no Vary.
    std::fs::remove_file(s.root.join("doc.txt.gz")).unwrap();
    let r = get_ae(&s, "/doc.txt", "gzip", &[]);
    assert!(r.body == f.original);
    assert_eq!(r.header("vary"), None);
}

#[test]
fn hostile_accept_encoding_never_fails() {
    let s = server();
    let f = make(&s, "doc.txt", 1, ALL);
    let long = "gzip;q=0.5,".repeat(1000);
    for ae in [
        ";;;",
        ",,,",
        "gzip;q=",
        "gzip;q",
        "gzip;q=0.5;q=abc",
        "br;q=-1",
        "\"gzip\"",
        "gzip=1",
        "*;q=0.0001",
        long.as_str(),
    ] {
        let r = get_ae(&s, "/doc.txt", ae, &[]);
        assert_eq!(r.status, 200, "{ae:.40}");
        let enc = match r.header("content-encoding") {
            None => Enc::Identity,
            Some("gzip") => Enc::Gzip,
            Some(other) => panic!("{ae:.40}: {other}"),
        };
        assert_served(&r, &f, enc, TXT, ae);
    }
    // The long list is gzip at q=0.5 over an implicit identity.
    let r = get_ae(&s, "/doc.txt", &long, &[]);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    // Non-ASCII bytes in the field: ignored, identity.
    let raw = b"GET /doc.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\nAccept-Encoding: gz\xffip\r\n\r\n";
    let r = Response::parse(&s.raw(raw), false);
    assert_served(&r, &f, Enc::Identity, TXT, "non-ASCII");
}

/// A sidecar read through its cached handle (and kept in memory once read whole) is served as
/// it is now once it is replaced: its new bytes, under their own ETag.
#[test]
fn a_replaced_sidecar_is_served_new() {
    let s = server();
    let f = make(&s, "doc.txt", 1, &[Enc::Gzip]);
    for _ in 0..2 {
        let r = get_ae(&s, "/doc.txt", "gzip", &[]);
        assert_served(&r, &f, Enc::Gzip, TXT, "gzip");
    }
    let new = gzip(&text(2));
    s.file("doc.txt.gz.tmp", &new);
    std::fs::rename(s.root.join("doc.txt.gz.tmp"), s.root.join("doc.txt.gz")).unwrap();
    let r = get_ae(&s, "/doc.txt", "gzip", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, new);
    assert_ne!(r.header("etag"), Some(etag_of(&f.gz).as_str()));
}
