//! Byte ranges (RFC 9110 §14, §15.3.7, §15.5.17) against the real server.
//! Every body is compared byte for byte with the slice of the file it claims to be.

use crate::common::*;

const BIN: &str = "application/octet-stream";
const TXT: &str = "text/plain; charset=utf-8";

/// `bytes F-L/LEN` -> (F, L, LEN), parsed here, not by the server's code.
fn parse_content_range(v: &str) -> (u64, u64, u64) {
    let rest = v
        .strip_prefix("bytes ")
        .unwrap_or_else(|| panic!("Content-Range {v:?} lacks the bytes unit"));
    let (span, len) = rest.split_once('/').expect("Content-Range has a /");
    let (first, last) = span.split_once('-').expect("Content-Range has a -");
    (
        first.parse().unwrap(),
        last.parse().unwrap(),
        len.parse().unwrap(),
    )
}

/// A single-part 206 carrying exactly `data[first..=last]` ([`assert_206`]), labelled as such:
/// its type, and its Content-Range read back independently of the request.
fn assert_206_of_type(r: &Response, data: &[u8], first: u64, last: u64, ctype: &str) {
    assert_206(r, data, first as usize, last as usize);
    let cr = r.header("content-range").unwrap();
    assert_eq!(parse_content_range(cr), (first, last, data.len() as u64));
    assert_eq!(r.header("content-type"), Some(ctype));
}

/// 416 with `Content-Range: bytes */LEN` and nothing in the body.
fn assert_416(r: &Response, len: usize) {
    assert_eq!(r.status, 416, "headers: {:?}", r.headers);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes */{len}").as_str())
    );
    assert!(r.body.is_empty(), "416 with a body");
}

/// A 206 multipart/byteranges whose parts are exactly `want` (inclusive first, last), in that
/// order, each carrying the file's Content-Type and the slice its Content-Range names.
fn assert_multipart(r: &Response, data: &[u8], ctype: &str, want: &[(u64, u64)]) {
    assert_eq!(r.status, 206, "headers: {:?}", r.headers);
    // §14.6: no Content-Range in the header section of a multipart response.
    assert_eq!(r.header("content-range"), None);
    let ct = r.header("content-type").expect("Content-Type");
    let boundary = multipart::boundary_of(ct);
    // Content-Length = body length is checked by the harness; it must be there.
    assert_eq!(
        r.header("content-length"),
        Some(r.body.len().to_string().as_str())
    );
    let parts = multipart::parse(&r.body, &boundary);
    let got: Vec<(u64, u64)> = parts
        .iter()
        .map(|p| {
            let (f, l, len) = parse_content_range(p.content_range.as_deref().expect("part CR"));
            assert_eq!(len, data.len() as u64);
            (f, l)
        })
        .collect();
    assert_eq!(got, want, "parts or their order");
    for (p, &(f, l)) in parts.iter().zip(want) {
        assert_eq!(p.content_type.as_deref(), Some(ctype));
        assert!(
            p.body == data[f as usize..=l as usize],
            "part {f}-{l} body differs from the file"
        );
        assert!(
            find(&p.body, boundary.as_bytes()).is_none(),
            "boundary occurs inside part {f}-{l}"
        );
    }
}

fn alphabet() -> Vec<u8> {
    b"abcdefghijklmnopqrstuvwxyz".to_vec()
}

// ---- single ranges ---------------------------------------------------------------------------

#[test]
fn single_range_forms() {
    let s = Server::start();
    let data = pattern(1000);
    s.file("a.bin", &data);
    let get = |v: &str| s.get("/a.bin", &[("Range", v)]);
    assert_206_of_type(&get("bytes=10-19"), &data, 10, 19, BIN);
    assert_206_of_type(&get("bytes=0-0"), &data, 0, 0, BIN);
    assert_206_of_type(&get("bytes=999-999"), &data, 999, 999, BIN);
    assert_206_of_type(&get("bytes=990-"), &data, 990, 999, BIN);
    assert_206_of_type(&get("bytes=-7"), &data, 993, 999, BIN);
    assert_206_of_type(&get("bytes=-1"), &data, 999, 999, BIN);
}

#[test]
fn text_file_range_has_its_type() {
    let s = Server::start();
    let data = alphabet();
    s.file("a.txt", &data);
    let r = s.get("/a.txt", &[("Range", "bytes=3-5")]);
    assert_206_of_type(&r, &data, 3, 5, TXT);
    assert_eq!(r.body, b"def");
}

#[test]
fn unit_is_case_insensitive() {
    let s = Server::start();
    let data = pattern(64);
    s.file("a.bin", &data);
    assert_206_of_type(
        &s.get("/a.bin", &[("Range", "BYTES=0-0")]),
        &data,
        0,
        0,
        BIN,
    );
    assert_206_of_type(
        &s.get("/a.bin", &[("Range", "Bytes=5-9")]),
        &data,
        5,
        9,
        BIN,
    );
}

#[test]
fn whitespace_and_empty_list_elements_are_accepted() {
    let s = Server::start();
    let data = pattern(64);
    s.file("a.bin", &data);
    // OWS around the whole value.
    assert_206_of_type(
        &s.get("/a.bin", &[("Range", "\tbytes=2-3 \t")]),
        &data,
        2,
        3,
        BIN,
    );
    // Empty elements and OWS around commas.
    let r = s.get("/a.bin", &[("Range", "bytes=0-1, ,4-5")]);
    assert_multipart(&r, &data, BIN, &[(0, 1), (4, 5)]);
    let r = s.get("/a.bin", &[("Range", "bytes=,0-1 ,\t, 4-5 ,")]);
    assert_multipart(&r, &data, BIN, &[(0, 1), (4, 5)]);
    // A single range with a trailing empty element is still one plain range.
    assert_206_of_type(
        &s.get("/a.bin", &[("Range", "bytes=6-8 , ")]),
        &data,
        6,
        8,
        BIN,
    );
}

#[test]
fn last_position_past_the_end_is_clipped() {
    let s = Server::start();
    let data = alphabet();
    s.file("a.bin", &data);
    let get = |v: &str| s.get("/a.bin", &[("Range", v)]);
    assert_206_of_type(&get("bytes=10-1000"), &data, 10, 25, BIN);
    assert_206_of_type(&get("bytes=25-26"), &data, 25, 25, BIN);
    assert_206_of_type(&get("bytes=0-99999999999999999999999"), &data, 0, 25, BIN);
}

#[test]
fn suffix_longer_than_file_and_open_range_give_whole_file_as_206() {
    let s = Server::start();
    let data = alphabet();
    s.file("a.bin", &data);
    for v in ["bytes=-1000", "bytes=-26", "bytes=0-", "bytes=0-25"] {
        let r = s.get("/a.bin", &[("Range", v)]);
        assert_206_of_type(&r, &data, 0, 25, BIN);
        assert_eq!(r.body, data, "{v}");
    }
}

// ---- ignored Range fields --------------------------------------------------------------------

#[test]
fn unparseable_range_is_ignored() {
    let s = Server::start();
    let data = pattern(100);
    s.file("a.bin", &data);
    for v in [
        "bytes=abc",
        "bytes=+1-2",
        "bytes=5-2",
        "bytes = 0-1",
        "items=0-5",
        "bytes=",
        "bytes=0-1,x",
        "bytes=1-2-3",
        "bytes=--5",
        "0-5",
    ] {
        let r = s.get("/a.bin", &[("Range", v)]);
        assert_full(&r, &data);
        assert_eq!(r.header("content-type"), Some(BIN), "{v}");
    }
}

#[test]
fn range_on_head_is_ignored() {
    let s = Server::start();
    let data = pattern(300);
    s.file("a.bin", &data);
    let r = s.request("HEAD", "/a.bin", &[("Range", "bytes=0-9")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("300"));
    assert_eq!(r.header("content-range"), None);
    assert_eq!(r.header("content-type"), Some(BIN));
    assert!(r.body.is_empty());
    // Same for a multi-range and an unsatisfiable one: HEAD never gets 206 or 416.
    for v in ["bytes=0-1,5-6", "bytes=300-"] {
        let r = s.request("HEAD", "/a.bin", &[("Range", v)]);
        assert_eq!(r.status, 200, "{v}");
        assert_eq!(r.header("content-length"), Some("300"), "{v}");
        assert_eq!(r.header("content-range"), None, "{v}");
    }
}

#[test]
fn full_responses_advertise_byte_ranges() {
    let s = Server::start();
    let data = pattern(10);
    s.file("a.bin", &data);
    let r = s.get("/a.bin", &[]);
    assert_full(&r, &data);
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
}

// ---- unsatisfiable ---------------------------------------------------------------------------

#[test]
fn unsatisfiable_ranges_get_416() {
    let s = Server::start();
    let data = pattern(100);
    s.file("a.bin", &data);
    for v in [
        "bytes=100-",
        "bytes=100-100",
        "bytes=-0",
        "bytes=150-200",
        "bytes=100-150, 200-, 1000-2000",
        "bytes=99999999999999999999999-",
    ] {
        assert_416(&s.get("/a.bin", &[("Range", v)]), 100);
    }
}

#[test]
fn any_range_of_an_empty_file_gets_416() {
    let s = Server::start();
    s.file("empty.bin", b"");
    for v in [
        "bytes=0-0",
        "bytes=0-",
        "bytes=-5",
        "bytes=-0",
        "bytes=0-1,3-4",
    ] {
        assert_416(&s.get("/empty.bin", &[("Range", v)]), 0);
    }
    // Without a Range it is a plain empty 200.
    let r = s.get("/empty.bin", &[]);
    assert_full(&r, b"");
}

#[test]
fn satisfiable_ranges_among_unsatisfiable_ones_are_served() {
    let s = Server::start();
    let data = alphabet();
    s.file("a.bin", &data);
    // One left: a plain 206.
    let r = s.get("/a.bin", &[("Range", "bytes=100-200,0-1,-0")]);
    assert_206_of_type(&r, &data, 0, 1, BIN);
    // Two left: multipart with only those.
    let r = s.get("/a.bin", &[("Range", "bytes=100-200,0-1,30-,5-6")]);
    assert_multipart(&r, &data, BIN, &[(0, 1), (5, 6)]);
}

// ---- multipart/byteranges --------------------------------------------------------------------

#[test]
fn multi_range_binary_parts_in_request_order() {
    let s = Server::start();
    let data = pattern(100);
    s.file("a.bin", &data);
    let r = s.get("/a.bin", &[("Range", "bytes=20-29,0-9")]);
    assert_multipart(&r, &data, BIN, &[(20, 29), (0, 9)]);
    let r = s.get("/a.bin", &[("Range", "bytes=0-9,20-29,-5")]);
    assert_multipart(&r, &data, BIN, &[(0, 9), (20, 29), (95, 99)]);
    // Last position clipped inside a multipart too.
    let r = s.get("/a.bin", &[("Range", "bytes=90-500,10-10")]);
    assert_multipart(&r, &data, BIN, &[(90, 99), (10, 10)]);
}

#[test]
fn multi_range_text_parts_carry_text_type() {
    let s = Server::start();
    // Text that looks like multipart framing, so a parser that cuts at the wrong place fails.
    let mut data = Vec::new();
    for i in 0..40 {
        data.extend_from_slice(format!("line {i}\r\n--\r\n--x--\r\n\r\n").as_bytes());
    }
    s.file("t.txt", &data);
    let len = data.len() as u64;
    let r = s.get(
        "/t.txt",
        &[("Range", &format!("bytes=-30,0-40,100-{}", len / 2))],
    );
    assert_multipart(
        &r,
        &data,
        TXT,
        &[(len - 30, len - 1), (0, 40), (100, len / 2)],
    );
}

#[test]
fn overlapping_or_adjacent_ranges_are_merged() {
    let s = Server::start();
    let data = pattern(100);
    s.file("a.bin", &data);
    // Adjacent: one plain range, not multipart.
    let r = s.get("/a.bin", &[("Range", "bytes=0-4,5-9")]);
    assert_206_of_type(&r, &data, 0, 9, BIN);
    // Overlapping, in either order.
    let r = s.get("/a.bin", &[("Range", "bytes=3-8,0-4")]);
    assert_206_of_type(&r, &data, 0, 8, BIN);
    // Two overlapping plus one apart: two parts.
    let r = s.get("/a.bin", &[("Range", "bytes=0-9,5-14,40-49")]);
    assert_multipart(&r, &data, BIN, &[(0, 14), (40, 49)]);
    // A merged group keeps the place of its earliest member.
    let r = s.get("/a.bin", &[("Range", "bytes=60-69,10-11,12-13")]);
    assert_multipart(&r, &data, BIN, &[(60, 69), (10, 13)]);
}

// ---- abuse guards ----------------------------------------------------------------------------

fn spaced_ranges(n: usize) -> String {
    let list: Vec<String> = (0..n).map(|i| format!("{}-{}", 3 * i, 3 * i)).collect();
    format!("bytes={}", list.join(","))
}

#[test]
fn more_than_max_ranges_gets_the_whole_file() {
    let s = Server::start();
    let data = pattern(1000);
    s.file("a.bin", &data);
    // Default max_ranges is 100.
    assert_full(&s.get("/a.bin", &[("Range", &spaced_ranges(101))]), &data);
    let r = s.get("/a.bin", &[("Range", &spaced_ranges(100))]);
    let want: Vec<(u64, u64)> = (0..100).map(|i| (3 * i, 3 * i)).collect();
    assert_multipart(&r, &data, BIN, &want);
}

#[test]
fn configured_max_ranges_is_honoured() {
    let s = Server::start_with(|c| c.max_ranges = 2);
    let data = pattern(100);
    s.file("a.bin", &data);
    assert_full(
        &s.get("/a.bin", &[("Range", "bytes=0-1,10-11,20-21")]),
        &data,
    );
    let r = s.get("/a.bin", &[("Range", "bytes=20-21,0-1")]);
    assert_multipart(&r, &data, BIN, &[(20, 21), (0, 1)]);
}

#[test]
fn overlapping_ranges_larger_than_the_file_get_the_whole_file() {
    let s = Server::start();
    let data = pattern(100);
    s.file("a.bin", &data);
    for v in ["bytes=0-,0-", "bytes=-100,0-99", "bytes=0-60,40-99"] {
        let r = s.get("/a.bin", &[("Range", v)]);
        assert_full(&r, &data);
    }
}

// ---- a large file ----------------------------------------------------------------------------

#[test]
fn large_file_ranges_and_full_body() {
    const LEN: usize = 5 * 1024 * 1024;
    let s = Server::start();
    let data = pattern(LEN);
    s.file("big.bin", &data);
    let len = LEN as u64;

    // A range in the middle, spanning several read chunks.
    let r = s.get("/big.bin", &[("Range", "bytes=1000001-3999999")]);
    assert_206_of_type(&r, &data, 1_000_001, 3_999_999, BIN);

    // A range that runs past the end: clipped to it.
    let r = s.get("/big.bin", &[("Range", "bytes=5000000-9999999")]);
    assert_206_of_type(&r, &data, 5_000_000, len - 1, BIN);

    // Two large parts, out of order.
    let r = s.get("/big.bin", &[("Range", "bytes=4000000-4400000,100-300000")]);
    assert_multipart(&r, &data, BIN, &[(4_000_000, 4_400_000), (100, 300_000)]);

    // The whole file.
    let r = s.get("/big.bin", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some(LEN.to_string().as_str()));
    assert_eq!(sha256_hex(&r.body), sha256_hex(&data));
}
