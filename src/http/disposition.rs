//! `?download`: `Content-Disposition: attachment` with the file's name (RFC 6266). Pure.

use http::HeaderValue;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Whether the query asks for a download: a parameter named exactly `download`, with or
/// without a value (`?download`, `?download=1`, `?a=b&download`).
pub fn wanted(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        q.split('&')
            .any(|pair| pair.split_once('=').map_or(pair, |(k, _)| k) == "download")
    })
}

/// RFC 8187 §3.2.1 `attr-char`: everything else in `filename*` is percent-encoded.
const NOT_ATTR_CHAR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// `attachment; filename="..."` and, when the name is not plain printable ASCII,
/// `; filename*=UTF-8''...` with the exact name (RFC 6266 §4.3: a recipient that understands
/// `filename*` prefers it; older ones use `filename`).
///
/// The `filename` fallback is a quoted-string (RFC 9110 §5.6.4) in which every character that is
/// not printable ASCII, and `"`, `\` and `%`, becomes `_`: no escapes for a recipient to get
/// wrong, and no `%XX` that some recipients would decode (RFC 6266 Appendix D).
pub fn attachment(name: &str) -> HeaderValue {
    let fallback: String = name
        .chars()
        .map(|c| match c {
            '"' | '\\' | '%' => '_',
            ' '..='~' => c,
            _ => '_',
        })
        .collect();
    let mut v = format!("attachment; filename=\"{fallback}\"");
    if fallback != name {
        v.push_str("; filename*=UTF-8''");
        v.extend(utf8_percent_encode(name, NOT_ATTR_CHAR));
    }
    HeaderValue::from_str(&v).expect("printable ASCII is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_parameter() {
        for q in [
            "download",
            "download=1",
            "a=b&download",
            "download&a",
            "x=1&download=",
        ] {
            assert!(wanted(Some(q)), "{q}");
        }
        for q in ["", "downloads", "xdownload", "a=download", "Download"] {
            assert!(!wanted(Some(q)), "{q}");
        }
        assert!(!wanted(None));
    }

    #[test]
    fn names() {
        assert_eq!(
            attachment("report.pdf"),
            "attachment; filename=\"report.pdf\""
        );
        assert_eq!(
            attachment("a b;c.txt"),
            "attachment; filename=\"a b;c.txt\""
        );
        assert_eq!(
            attachment("Grüße €.txt"),
            "attachment; filename=\"Gr__e _.txt\"; filename*=UTF-8''Gr%C3%BC%C3%9Fe%20%E2%82%AC.txt"
        );
        assert_eq!(
            attachment("a\"b\\c%41.txt"),
            "attachment; filename=\"a_b_c_41.txt\"; filename*=UTF-8''a%22b%5Cc%2541.txt"
        );
        assert_eq!(
            attachment("tab\there"),
            "attachment; filename=\"tab_here\"; filename*=UTF-8''tab%09here"
        );
        assert_eq!(
            attachment("日本.zip"),
            "attachment; filename=\"__.zip\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC.zip"
        );
    }
}
