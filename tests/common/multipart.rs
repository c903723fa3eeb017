//! An independent multipart/byteranges reader (RFC 2046 §5.1.1, RFC 9110 §14.6) for tests that
//! check multipart bodies however they arrived (raw HTTP/1.1, curl over HTTP/2, ...).

use super::find;

#[derive(Debug)]
pub struct Part {
    pub content_type: Option<String>,
    pub content_range: Option<String>,
    pub body: Vec<u8>,
}

/// The boundary parameter of a `multipart/byteranges` Content-Type (quotes removed).
pub fn boundary_of(content_type: &str) -> String {
    let mut params = content_type.split(';');
    let essence = params.next().unwrap().trim();
    assert!(
        essence.eq_ignore_ascii_case("multipart/byteranges"),
        "not multipart/byteranges: {content_type:?}"
    );
    for p in params {
        let (k, v) = p.trim().split_once('=').expect("parameter with =");
        if k.trim().eq_ignore_ascii_case("boundary") {
            let b = v.trim().trim_matches('"').to_string();
            assert!(!b.is_empty() && b.len() <= 70, "bad boundary length: {b:?}");
            return b;
        }
    }
    panic!("no boundary in {content_type:?}");
}

/// Every part of `body`: each delimiter is CRLF "--" boundary (the first may open the body),
/// each part is headers, an empty line, then bytes up to the next delimiter, and the body ends
/// with the close delimiter "--" boundary "--". Panics on anything else.
pub fn parse(body: &[u8], boundary: &str) -> Vec<Part> {
    let delim = format!("\r\n--{boundary}").into_bytes();
    let mut buf = b"\r\n".to_vec();
    buf.extend_from_slice(body);
    let mut segments: Vec<&[u8]> = Vec::new();
    let mut rest: &[u8] = &buf;
    while let Some(at) = find(rest, &delim) {
        segments.push(&rest[..at]);
        rest = &rest[at + delim.len()..];
    }
    segments.push(rest);
    assert!(segments.len() >= 2, "no delimiter in the multipart body");
    assert!(segments[0].is_empty(), "unexpected preamble");
    let last = segments.len() - 1;
    let mut parts = Vec::new();
    for (i, seg) in segments.iter().enumerate().skip(1) {
        if let Some(epilogue) = seg.strip_prefix(b"--") {
            assert_eq!(i, last, "close delimiter is not the last delimiter");
            assert!(
                epilogue.is_empty() || epilogue == b"\r\n",
                "unexpected epilogue"
            );
            return parts;
        }
        let seg = seg
            .strip_prefix(b"\r\n")
            .expect("delimiter line ends with CRLF");
        let end = find(seg, b"\r\n\r\n").expect("part headers end with an empty line");
        let mut part = Part {
            content_type: None,
            content_range: None,
            body: seg[end + 4..].to_vec(),
        };
        for line in std::str::from_utf8(&seg[..end]).unwrap().split("\r\n") {
            let (name, value) = line.split_once(':').expect("header line with a colon");
            let value = Some(value.trim().to_string());
            if name.eq_ignore_ascii_case("content-type") {
                part.content_type = value;
            } else if name.eq_ignore_ascii_case("content-range") {
                part.content_range = value;
            }
        }
        parts.push(part);
    }
    panic!("no close delimiter --{boundary}--");
}
