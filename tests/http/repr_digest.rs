//! Repr-Digest (RFC 9530), black-box: the SHA-256 of the whole representation on every 200,
//! 206 and HEAD, computed here independently; Want-Repr-Digest; reassembly from ranges.

use crate::common::*;

use base64::Engine as _;
use sha2::Digest as _;

/// The 32 bytes a `Repr-Digest: sha-256=:...:` value carries.
fn decode(value: &str) -> Vec<u8> {
    let b64 = value
        .strip_prefix("sha-256=:")
        .and_then(|v| v.strip_suffix(':'))
        .unwrap_or_else(|| panic!("not a sha-256 Repr-Digest: {value:?}"));
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

#[test]
fn every_200_206_and_head_carries_the_whole_files_digest() {
    let s = Server::start();
    let data = pattern(300_000);
    s.file("f.bin", &data);
    let want = repr_digest(&data);

    let r = s.get("/f.bin", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, data);
    assert_eq!(r.header("repr-digest"), Some(want.as_str()));

    let r = s.request("HEAD", "/f.bin", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("repr-digest"), Some(want.as_str()));

    // RFC 9530 §3: the whole representation's digest on a 206, not the part's.
    let r = s.get("/f.bin", &[("Range", "bytes=100-199")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &data[100..200]);
    assert_eq!(r.header("repr-digest"), Some(want.as_str()));
    assert_ne!(want, repr_digest(&data[100..200]));

    let r = s.get("/f.bin", &[("Range", "bytes=0-9,1000-1009")]);
    assert_eq!(r.status, 206);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("multipart/byteranges"));
    assert_eq!(r.header("repr-digest"), Some(want.as_str()));

    // A 206 through If-Range, and the 200 an outdated If-Range gets.
    let etag = s.get("/f.bin", &[]).headers["etag"].clone();
    let r = s.get("/f.bin", &[("Range", "bytes=5-"), ("If-Range", &etag)]);
    assert_eq!(r.status, 206);
    assert_eq!(r.header("repr-digest"), Some(want.as_str()));
    let r = s.get("/f.bin", &[("Range", "bytes=5-"), ("If-Range", "\"old\"")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("repr-digest"), Some(want.as_str()));
}

#[test]
fn empty_and_small_files() {
    let s = Server::start();
    s.file("empty", b"");
    s.file("a.txt", b"abc");
    let r = s.get("/empty", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("repr-digest"),
        Some("sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:")
    );
    // SHA-256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad.
    let r = s.get("/a.txt", &[]);
    assert_eq!(
        r.header("repr-digest"),
        Some("sha-256=:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=:")
    );
    assert_eq!(r.header("repr-digest").unwrap(), repr_digest(b"abc"));
}

#[test]
fn a_file_assembled_from_ranges_verifies_against_repr_digest() {
    let s = Server::start();
    let data = pattern(1_300_001);
    s.file("big.bin", &data);
    // Uneven pieces, fetched out of order, the last one open-ended: as a segmented downloader.
    let cuts = [
        (700_000, Some(1_099_999)),
        (0, Some(0)),
        (1, Some(262_143)),
        (1_100_000, None),
        (262_144, Some(699_999)),
    ];
    let mut pieces = Vec::new();
    let mut digests = Vec::new();
    for (start, end) in cuts {
        let range = match end {
            Some(e) => format!("bytes={start}-{e}"),
            None => format!("bytes={start}-"),
        };
        let r = s.get("/big.bin", &[("Range", &range)]);
        assert_eq!(r.status, 206, "{range}");
        digests.push(r.headers["repr-digest"].clone());
        pieces.push((start, r.body));
    }
    // Every piece names the same digest.
    assert!(digests.iter().all(|d| *d == digests[0]), "{digests:?}");
    pieces.sort_by_key(|p| p.0);
    let assembled: Vec<u8> = pieces.into_iter().flat_map(|p| p.1).collect();
    assert_eq!(assembled.len(), data.len());
    assert_eq!(
        decode(&digests[0]),
        sha2::Sha256::digest(&assembled).to_vec()
    );
    assert_eq!(assembled, data);

    // A piece that is wrong (here: one byte off) does not verify.
    let mut wrong = assembled.clone();
    wrong[123_456] ^= 1;
    assert_ne!(decode(&digests[0]), sha2::Sha256::digest(&wrong).to_vec());
}

#[test]
fn a_resume_after_a_change_sees_another_digest() {
    let s = Server::start();
    let old = pattern(10_000);
    s.file("f.bin", &old);
    let first = s.get("/f.bin", &[("Range", "bytes=0-4999")]);
    assert_eq!(first.header("repr-digest").unwrap(), repr_digest(&old));
    let mut new = old.clone();
    new[9_000] ^= 0xff;
    s.file("f.bin", &new);
    let rest = s.get("/f.bin", &[("Range", "bytes=5000-")]);
    assert_eq!(rest.status, 206);
    assert_eq!(rest.header("repr-digest").unwrap(), repr_digest(&new));
    assert_ne!(first.headers["repr-digest"], rest.headers["repr-digest"]);
}

#[test]
fn not_on_304_412_or_416() {
    let s = Server::start();
    let data = pattern(1000);
    s.file("f.bin", &data);
    let etag = s.get("/f.bin", &[]).headers["etag"].clone();
    for (headers, status) in [
        (vec![("If-None-Match", etag.as_str())], 304),
        (vec![("If-Match", "\"other\"")], 412),
        (vec![("Range", "bytes=5000-")], 416),
    ] {
        let r = s.get("/f.bin", &headers);
        assert_eq!(r.status, status, "{headers:?}");
        assert_eq!(r.header("repr-digest"), None, "{status}");
        // Even when asked for.
        let mut asked = headers.clone();
        asked.push(("Want-Repr-Digest", "sha-256=10"));
        let r = s.get("/f.bin", &asked);
        assert_eq!(r.status, status);
        assert_eq!(r.header("repr-digest"), None, "{status} when asked");
    }
    // Nor on errors.
    let r = s.get("/missing", &[("Want-Repr-Digest", "sha-256=10")]);
    assert_eq!(r.status, 404);
    assert_eq!(r.header("repr-digest"), None);
}

#[test]
fn want_repr_digest_and_the_config_switch() {
    let data = pattern(5000);
    let want = repr_digest(&data);
    let on = Server::start();
    let off = Server::start_toml("repr_digest = false\n");
    for s in [&on, &off] {
        s.file("f.bin", &data);
    }
    // (Want-Repr-Digest field lines, sent when on, sent when off)
    let cases: &[(&[&str], bool, bool)] = &[
        (&[], true, false),
        (&["sha-256=1"], true, true),
        (&["sha-512=3, sha-256=10, unixsum=0"], true, true),
        // Not acceptable: not sent even when on.
        (&["sha-256=0"], false, false),
        (&["sha-512=3, sha-256=0"], false, false),
        // Only algorithms we lack: sha-256 anyway (RFC 9530 §4: preferences are a hint).
        (&["sha-512=5"], true, true),
        (&["sha-512=0"], true, false),
        // Two field lines are one dictionary.
        (&["sha-512=3", "sha-256=0"], false, false),
        // Malformed: ignored.
        (&["sha-256=11"], true, false),
        (&["sha-256"], true, false),
        (&["@@@"], true, false),
    ];
    for (fields, when_on, when_off) in cases {
        let headers: Vec<(&str, &str)> = fields.iter().map(|f| ("Want-Repr-Digest", *f)).collect();
        for (s, sent) in [(&on, *when_on), (&off, *when_off)] {
            for (method, range) in [("GET", None), ("HEAD", None), ("GET", Some("bytes=1-2"))] {
                let mut h = headers.clone();
                if let Some(r) = range {
                    h.push(("Range", r));
                }
                let r = s.request(method, "/f.bin", &h);
                assert!(r.status == 200 || r.status == 206);
                let expect = sent.then_some(want.as_str());
                assert_eq!(
                    r.header("repr-digest"),
                    expect,
                    "{fields:?} {method} {range:?}, server {}",
                    if std::ptr::eq(s, &on) { "on" } else { "off" }
                );
            }
        }
    }
}

#[test]
fn lab_generated_files_carry_it_when_cheap() {
    let s = Server::start_with(|c| c.lab_enabled = true);
    // Small: hashed on the first request. The expectation is the hash of the bytes received.
    let r = s.get("/_lab/gen/100000?seed=7", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 100_000);
    assert_eq!(r.header("repr-digest").unwrap(), repr_digest(&r.body));
    let part = s.get("/_lab/gen/100000?seed=7", &[("Range", "bytes=10-19")]);
    assert_eq!(part.status, 206);
    assert_eq!(part.headers["repr-digest"], r.headers["repr-digest"]);

    // Large (over 1 MiB): not until its hash is known, here through its .sha256.
    let big = "/_lab/gen/3MiB?seed=2";
    assert_eq!(s.request("HEAD", big, &[]).header("repr-digest"), None);
    let hex = s.get("/_lab/gen/3MiB.sha256?seed=2", &[]);
    assert_eq!(hex.status, 200);
    let r = s.get(big, &[]);
    assert_eq!(r.body.len(), 3 << 20);
    let body_sum = sha2::Sha256::digest(&r.body).to_vec();
    assert_eq!(
        String::from_utf8(hex.body).unwrap().trim(),
        hex::encode(&body_sum)
    );
    assert_eq!(decode(r.header("repr-digest").unwrap()), body_sum);
    // Another seed is another file, still unhashed.
    assert_eq!(
        s.request("HEAD", "/_lab/gen/3MiB?seed=3", &[])
            .header("repr-digest"),
        None
    );

    // A corrupted byte: the digest is still the true file's, so the client can tell.
    let r = s.get("/_lab/gen/100000?seed=7&corrupt=500", &[]);
    assert_eq!(r.status, 200);
    assert_ne!(repr_digest(&r.body), r.headers["repr-digest"]);
    assert_eq!(
        r.headers["repr-digest"],
        s.get("/_lab/gen/100000?seed=7", &[]).headers["repr-digest"]
    );

    // Files of the root through the lab: as when served directly.
    let data = pattern(2000);
    s.file("x.bin", &data);
    let r = s.get("/_lab/files/x.bin", &[]);
    assert_eq!(r.body, data);
    assert_eq!(r.header("repr-digest").unwrap(), repr_digest(&data));
}
