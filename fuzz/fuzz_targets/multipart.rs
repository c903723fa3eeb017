//! `multipart/byteranges` framing (`rangeserve::http::multipart::Multipart`): the body is
//! built the way the server builds it (part heads, range bytes, closing delimiter, as
//! `serve::respond` lays out its pieces) over a file of any length, and
//! - the sum of the pieces is exactly `content_length()`;
//! - parsing the body back as a client does (delimiter search with the boundary taken from
//!   `content_type()`, RFC 2046 §5.1.1; part headers with httparse) gives back every range, in
//!   order, with its `Content-Type`, its `Content-Range` and exactly the file's bytes.
//!
//! The file is virtual (byte `p` is a function of `p`), so its length can be anything up to
//! `u64::MAX` while the parts stay small.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use rangeserve::http::multipart::Multipart;
use rangeserve::http::range::{plan, ByteRange, RangePlan};

#[derive(Arbitrary, Debug)]
struct Input {
    len: u64,
    seed: u8,
    content_type: ContentType,
    ranges: Ranges,
}

#[derive(Arbitrary, Debug)]
enum ContentType {
    Known(u8),
    Any(String),
}

#[derive(Arbitrary, Debug)]
enum Ranges {
    /// Any ranges inside the file, possibly overlapping: (start, length) scaled into the file.
    Any(Vec<(u64, u16)>),
    /// What the planner makes of a Range header, as the server would use it.
    Planned(String),
}

const TYPES: [&str; 5] = [
    "text/plain; charset=utf-8",
    "application/octet-stream",
    "",
    "image/svg+xml",
    "text/html; charset=\"x\"",
];

fn byte_at(p: u64, seed: u8) -> u8 {
    // Includes CR, LF and '-' often: content that looks like framing must not confuse a parser.
    let x = p.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) ^ u64::from(seed);
    b"\r\n-ab-\r\n--\r\n\r\nxyz0123"[(x % 19) as usize]
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

fuzz_target!(|input: Input| {
    let len = input.len;
    if len == 0 {
        return;
    }
    let ranges: Vec<ByteRange> = match input.ranges {
        Ranges::Any(rs) => rs
            .iter()
            .take(64)
            .map(|&(s, l)| {
                let start = s % len;
                let end = start + u64::from(l % 2048).clamp(1, len - start);
                ByteRange { start, end }
            })
            .collect(),
        Ranges::Planned(h) => {
            let Ok(h) = http::HeaderValue::from_str(&h) else {
                return;
            };
            match plan(Some(&h), len, 64) {
                // Parts can be huge here: keep what a fuzzer can materialize.
                RangePlan::Multi(rs) if rs.iter().map(|r| r.len()).sum::<u64>() <= 1 << 20 => rs,
                _ => return,
            }
        }
    };
    if ranges.is_empty() {
        return;
    }
    let content_type = match &input.content_type {
        ContentType::Known(i) => TYPES[usize::from(*i) % TYPES.len()].to_string(),
        // The server passes a HeaderValue's text: visible ASCII, space and tab.
        ContentType::Any(s) => match http::HeaderValue::from_str(s) {
            Ok(_) => s.clone(),
            Err(_) => return,
        },
    };

    let m = Multipart::new(&ranges, len, &content_type);
    // The body, piece by piece as serve::respond lays it out.
    let mut body = Vec::new();
    let mut pieces_len = 0u64;
    for (r, head) in &m.parts {
        body.extend_from_slice(head);
        pieces_len += head.len() as u64;
        body.extend((r.start..r.end).map(|p| byte_at(p, input.seed)));
        pieces_len += r.len();
    }
    body.extend_from_slice(&m.closing);
    pieces_len += m.closing.len() as u64;
    assert_eq!(pieces_len, m.content_length());
    assert_eq!(body.len() as u64, m.content_length());
    assert_eq!(m.parts.len(), ranges.len());

    // Parse it back, with the boundary the Content-Type announces.
    let ct = m.content_type();
    let params = ct
        .strip_prefix("multipart/byteranges;")
        .unwrap_or_else(|| panic!("content type {ct:?}"));
    let boundary = params
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .unwrap_or_else(|| panic!("no boundary in {ct:?}"));
    // RFC 2046 §5.1.1: 1 to 70 characters, and a token here (not quoted).
    assert!((1..=70).contains(&boundary.len()), "boundary {boundary:?}");
    assert!(
        boundary.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{boundary:?}"
    );
    let dash = format!("--{boundary}");
    let delim = format!("\r\n--{boundary}");
    // The first delimiter opens the body (no preamble); the others are CRLF-prefixed.
    assert!(body.starts_with(dash.as_bytes()));
    let mut at = dash.len();
    let mut got = Vec::new();
    loop {
        // After a delimiter: "--" closes, CRLF opens a part.
        if body[at..].starts_with(b"--") {
            assert_eq!(&body[at..], b"--\r\n", "epilogue after the close");
            break;
        }
        assert!(
            body[at..].starts_with(b"\r\n"),
            "delimiter not followed by CRLF"
        );
        at += 2;
        let next = find(&body, delim.as_bytes(), at).expect("an unterminated part");
        let part = &body[at..next];
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let (head_len, hs) = match httparse::parse_headers(part, &mut headers) {
            Ok(httparse::Status::Complete(x)) => x,
            other => panic!("part headers: {other:?}"),
        };
        let value = |name: &str| {
            let vs: Vec<&[u8]> = hs
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| h.value)
                .collect();
            assert_eq!(vs.len(), 1, "{name}");
            String::from_utf8(vs[0].to_vec()).unwrap()
        };
        assert_eq!(value("content-type").trim(), content_type.trim());
        let cr = value("content-range");
        let spec = cr.strip_prefix("bytes ").expect("Content-Range unit");
        let (span, complete) = spec.split_once('/').unwrap();
        let (first, last) = span.split_once('-').unwrap();
        let (first, last): (u64, u64) = (first.parse().unwrap(), last.parse().unwrap());
        assert_eq!(complete.parse::<u64>().unwrap(), len);
        assert!(first <= last && last < len, "{cr}");
        let data = &part[head_len..];
        assert_eq!(data.len() as u64, last - first + 1, "{cr}");
        assert!(
            data.iter()
                .zip(first..)
                .all(|(&b, p)| b == byte_at(p, input.seed)),
            "{cr}: bytes differ"
        );
        got.push(ByteRange {
            start: first,
            end: last + 1,
        });
        at = next + delim.len();
    }
    assert_eq!(got, ranges);
});
