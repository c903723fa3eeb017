//! The headers of the upload protocols, pure: tus 1.0.0 (<https://tus.io/protocols/resumable-upload>)
//! header names and values, and the parsing of its numbers, `Upload-Metadata` and
//! `Upload-Checksum`; the fields of the IETF draft (draft-ietf-httpbis-resumable-upload,
//! interop version 8), which are Structured Fields (RFC 9651); and the bearer credentials of
//! RFC 6750.

use base64::Engine as _;
use http::header::{HeaderMap, HeaderName, HeaderValue};

/// The tus version spoken (the only one).
pub const TUS_VERSION: &str = "1.0.0";
/// The tus extensions offered (`Tus-Extension`).
pub const TUS_EXTENSIONS: &str =
    "creation,creation-with-upload,creation-defer-length,termination,expiration,checksum";
/// The media type of tus's `PATCH` bodies (and of a creation's body, creation-with-upload).
pub const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";

/// `Tus-Resumable`: the version a request or response speaks (every one but OPTIONS).
pub static TUS_RESUMABLE: HeaderName = HeaderName::from_static("tus-resumable");
/// `Tus-Version`: the versions the server speaks.
pub static TUS_VERSION_H: HeaderName = HeaderName::from_static("tus-version");
/// `Tus-Extension`: the extensions the server offers.
pub static TUS_EXTENSION: HeaderName = HeaderName::from_static("tus-extension");
/// `Tus-Max-Size`: the largest upload taken.
pub static TUS_MAX_SIZE: HeaderName = HeaderName::from_static("tus-max-size");
/// `Tus-Checksum-Algorithm`: the checksum algorithms offered.
pub static TUS_CHECKSUM_ALGORITHM: HeaderName = HeaderName::from_static("tus-checksum-algorithm");
/// `Upload-Offset`: the bytes stored (response), or where the body starts (request).
pub static UPLOAD_OFFSET: HeaderName = HeaderName::from_static("upload-offset");
/// `Upload-Length`: the length of the whole upload.
pub static UPLOAD_LENGTH: HeaderName = HeaderName::from_static("upload-length");
/// `Upload-Defer-Length: 1`: the length will come later.
pub static UPLOAD_DEFER_LENGTH: HeaderName = HeaderName::from_static("upload-defer-length");
/// `Upload-Metadata`: the client's key/base64 pairs.
pub static UPLOAD_METADATA: HeaderName = HeaderName::from_static("upload-metadata");
/// `Upload-Expires`: when an unfinished upload will be removed.
pub static UPLOAD_EXPIRES: HeaderName = HeaderName::from_static("upload-expires");
/// `Upload-Checksum`: the checksum of a request's body.
pub static UPLOAD_CHECKSUM: HeaderName = HeaderName::from_static("upload-checksum");
/// `Upload-Concat` (concatenation, not offered).
pub static UPLOAD_CONCAT: HeaderName = HeaderName::from_static("upload-concat");
/// `X-HTTP-Method-Override`: the method a client could not send.
pub static X_HTTP_METHOD_OVERRIDE: HeaderName = HeaderName::from_static("x-http-method-override");

/// The draft's interop version implemented (draft-ietf-httpbis-resumable-upload, "Draft
/// Version Identification").
pub const INTEROP_VERSION: i64 = 8;
/// The media type of the draft's appends (`PATCH`).
pub const PARTIAL_UPLOAD: &str = "application/partial-upload";
/// `Upload-Complete` (draft): whether a request carries the end of the upload, or whether a
/// response comes from processing the whole upload.
pub static UPLOAD_COMPLETE: HeaderName = HeaderName::from_static("upload-complete");
/// `Upload-Limit` (draft): the server's limits, a Dictionary.
pub static UPLOAD_LIMIT: HeaderName = HeaderName::from_static("upload-limit");
/// `Upload-Draft-Interop-Version` (draft): the iteration of the draft a message speaks.
pub static UPLOAD_DRAFT_INTEROP_VERSION: HeaderName =
    HeaderName::from_static("upload-draft-interop-version");

/// The one field line of `name`, parsed as a Structured Field Item; `None` when absent,
/// repeated, or not an Item.
fn sf_item(headers: &HeaderMap, name: &HeaderName) -> Option<sfv::BareItem> {
    let mut all = headers.get_all(name).iter();
    let v = all.next()?;
    if all.next().is_some() {
        return None;
    }
    let item: sfv::Item = sfv::Parser::new(v.as_bytes()).parse().ok()?;
    Some(item.bare_item)
}

/// A draft Boolean field (`Upload-Complete`): `?1` or `?0`. Any other value "MUST cause the
/// entire header field to be ignored" (draft, "Completeness"): `None`, as when absent.
pub fn sf_boolean(headers: &HeaderMap, name: &HeaderName) -> Option<bool> {
    match sf_item(headers, name)? {
        sfv::BareItem::Boolean(b) => Some(b),
        _ => None,
    }
}

/// A draft non-negative Integer field (`Upload-Offset`, `Upload-Length`,
/// `Upload-Draft-Interop-Version`); other values are ignored, as when absent (draft, "Offset").
pub fn sf_integer(headers: &HeaderMap, name: &HeaderName) -> Option<u64> {
    match sf_item(headers, name)? {
        sfv::BareItem::Integer(i) => u64::try_from(i64::from(i)).ok(),
        _ => None,
    }
}

/// `Upload-Limit` (draft, "Limits"): `max-size` when there is one, and `max-age`, the seconds
/// an upload has left, when known; with neither, `min-size=0` ("If the server does not apply
/// any limits, it MUST use `min-size=0` instead of an empty header value").
pub fn upload_limit(max_size: Option<u64>, max_age: Option<u64>) -> HeaderValue {
    let mut parts = Vec::new();
    if let Some(n) = max_size {
        parts.push(format!("max-size={n}"));
    }
    if let Some(s) = max_age {
        parts.push(format!("max-age={s}"));
    }
    if parts.is_empty() {
        return HeaderValue::from_static("min-size=0");
    }
    HeaderValue::from_str(&parts.join(", ")).expect("digits and names are a valid header value")
}

/// Whether the request's `Content-Type` is `application/partial-upload` (parameters allowed,
/// case-insensitive).
pub fn is_partial_upload(headers: &HeaderMap) -> bool {
    media_type_is(headers, PARTIAL_UPLOAD)
}

/// The file name of a `Content-Disposition` field value (RFC 6266 §4.1; the draft's way to
/// name an upload created at the endpoint): `filename*` (RFC 8187, UTF-8 only) when present
/// and valid, else `filename` (a token or a quoted-string). `None` without either.
pub fn disposition_filename(value: &str) -> Option<String> {
    let mut plain = None;
    let mut extended = None;
    let mut rest = value.split_once(';')?.1;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        let (name, after) = rest.split_once('=')?;
        let name = name.trim();
        let after = after.trim_start();
        // The value: a quoted-string (with `\` escapes), or a token up to the next `;`.
        let (val, next) = if let Some(q) = after.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => out.push(chars.next()?.1),
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => out.push(c),
                }
            }
            let after_quote = &q[end?..];
            let next = after_quote.split_once(';').map_or("", |(_, n)| n);
            (out, next)
        } else {
            let (v, n) = after.split_once(';').unwrap_or((after, ""));
            (v.trim().to_owned(), n)
        };
        if name.eq_ignore_ascii_case("filename*") {
            // RFC 8187 §3.2: charset'language'value-chars.
            let mut parts = val.splitn(3, '\'');
            let (charset, _lang, enc) = (parts.next()?, parts.next(), parts.next());
            if let (true, Some(enc)) = (charset.eq_ignore_ascii_case("utf-8"), enc) {
                if let Ok(s) = percent_encoding::percent_decode_str(enc).decode_utf8() {
                    extended = Some(s.into_owned());
                }
            }
        } else if name.eq_ignore_ascii_case("filename") {
            plain = Some(val);
        }
        rest = next;
    }
    extended.or(plain).filter(|n| !n.is_empty())
}

/// A tus number (`Upload-Offset`, `Upload-Length`): a non-negative integer, digits only.
pub fn number(headers: &HeaderMap, name: &HeaderName) -> Result<Option<u64>, &'static str> {
    let mut all = headers.get_all(name).iter();
    let Some(v) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some() {
        return Err("the header is repeated");
    }
    let b = v.as_bytes();
    if b.is_empty() || b.len() > 20 || !b.iter().all(u8::is_ascii_digit) {
        return Err("not a non-negative integer");
    }
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Some)
        .ok_or("not a non-negative integer")
}

/// Whether the request's `Content-Type` is `application/offset+octet-stream` (parameters
/// allowed, case-insensitive as media types are, RFC 9110 §8.3.1).
pub fn is_offset_octet_stream(headers: &HeaderMap) -> bool {
    media_type_is(headers, OFFSET_OCTET_STREAM)
}

/// Whether the request's `Content-Type` is `media_type`, parameters aside.
fn media_type_is(headers: &HeaderMap, media_type: &str) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case(media_type)
        })
}

/// `Upload-Metadata`: comma-separated `key base64value` pairs (the value and its space may be
/// left out); keys non-empty, without spaces, unique. The values decoded.
pub fn metadata(value: &str) -> Result<Vec<(String, Vec<u8>)>, &'static str> {
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let mut pairs: Vec<(String, Vec<u8>)> = Vec::new();
    for element in value.split(',') {
        let element = element.trim_matches([' ', '\t']);
        let (key, val) = element.split_once(' ').unwrap_or((element, ""));
        if key.is_empty() {
            return Err("Upload-Metadata: an empty key");
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("Upload-Metadata: a key is not visible ASCII");
        }
        if pairs.iter().any(|(k, _)| k == key) {
            return Err("Upload-Metadata: a key is repeated");
        }
        let decoded = engine
            .decode(val.trim_matches([' ', '\t']))
            .map_err(|_| "Upload-Metadata: a value is not base64")?;
        pairs.push((key.to_owned(), decoded));
    }
    Ok(pairs)
}

/// `Upload-Checksum: ALGORITHM BASE64`: the algorithm's name and the checksum's bytes.
pub fn checksum(value: &str) -> Result<(&str, Vec<u8>), &'static str> {
    let (alg, sum) = value
        .trim()
        .split_once(' ')
        .ok_or("Upload-Checksum: not `algorithm base64`")?;
    let sum = base64::engine::general_purpose::STANDARD
        .decode(sum.trim())
        .map_err(|_| "Upload-Checksum: the checksum is not base64")?;
    Ok((alg, sum))
}

/// An `Authorization` field that is not one bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotBearer;

/// The token of `Authorization: Bearer TOKEN` (RFC 6750 §2.1; the scheme is case-insensitive,
/// RFC 9110 §11.1): `Ok(None)` without the header, `Err` when it is another scheme or malformed.
pub fn bearer(headers: &HeaderMap) -> Result<Option<&[u8]>, NotBearer> {
    let mut all = headers.get_all(http::header::AUTHORIZATION).iter();
    let Some(v) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some() {
        return Err(NotBearer);
    }
    let b = v.as_bytes();
    if b.len() < 7 || !b[..7].eq_ignore_ascii_case(b"bearer ") {
        return Err(NotBearer);
    }
    let token = b[7..].trim_ascii();
    if token.is_empty() {
        return Err(NotBearer);
    }
    Ok(Some(token))
}

/// A header value made of visible ASCII (what `Upload-Metadata` is sent back as).
pub fn visible(v: &str) -> Option<HeaderValue> {
    v.bytes()
        .all(|b| b == b' ' || b.is_ascii_graphic())
        .then(|| HeaderValue::from_str(v).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn numbers() {
        let n = |v: &str| number(&headers(&[("upload-offset", v)]), &UPLOAD_OFFSET);
        assert_eq!(n("0"), Ok(Some(0)));
        assert_eq!(n("18446744073709551615"), Ok(Some(u64::MAX)));
        for bad in ["", "-1", "+1", " 1", "1.0", "0x10", "18446744073709551616"] {
            assert!(n(bad).is_err(), "{bad:?}");
        }
        assert_eq!(number(&HeaderMap::new(), &UPLOAD_OFFSET), Ok(None));
        let twice = headers(&[("upload-offset", "1"), ("upload-offset", "1")]);
        assert!(number(&twice, &UPLOAD_OFFSET).is_err());
    }

    #[test]
    fn draft_structured_fields() {
        let b = |v: &str| sf_boolean(&headers(&[("upload-complete", v)]), &UPLOAD_COMPLETE);
        assert_eq!(b("?1"), Some(true));
        assert_eq!(b("?0"), Some(false));
        // Anything else is ignored, as if absent.
        for other in ["1", "true", "?2", "", "?1, ?0"] {
            assert_eq!(b(other), None, "{other:?}");
        }
        let twice = headers(&[("upload-complete", "?1"), ("upload-complete", "?1")]);
        assert_eq!(sf_boolean(&twice, &UPLOAD_COMPLETE), None);
        let i = |v: &str| sf_integer(&headers(&[("upload-offset", v)]), &UPLOAD_OFFSET);
        assert_eq!(i("0"), Some(0));
        assert_eq!(i("999999999999999"), Some(999_999_999_999_999));
        for other in ["-1", "1.5", "?1", "abc", "1000000000000000"] {
            assert_eq!(i(other), None, "{other:?}");
        }
        assert_eq!(upload_limit(None, None), "min-size=0");
        assert_eq!(upload_limit(Some(10), None), "max-size=10");
        assert_eq!(upload_limit(Some(10), Some(60)), "max-size=10, max-age=60");
        assert_eq!(upload_limit(None, Some(60)), "max-age=60");
        let ct = |v: &str| is_partial_upload(&headers(&[("content-type", v)]));
        assert!(ct("application/partial-upload"));
        assert!(ct("Application/Partial-Upload; x=1"));
        assert!(!ct("application/offset+octet-stream"));
    }

    #[test]
    fn disposition_filenames() {
        let f = disposition_filename;
        assert_eq!(f("inline; filename=a.txt"), Some("a.txt".into()));
        assert_eq!(
            f(r#"inline; filename="file name.jpg"; filename*=UTF-8''f%C3%A9%20x.jpg"#),
            Some("fé x.jpg".into())
        );
        assert_eq!(
            f(r#"attachment; filename="q\"uote;d.txt""#),
            Some("q\"uote;d.txt".into())
        );
        // An extended name in another charset, or badly encoded: the plain one.
        assert_eq!(
            f("inline; filename*=ISO-8859-1''a%E9.txt; filename=plain.txt"),
            Some("plain.txt".into())
        );
        assert_eq!(f("inline"), None);
        assert_eq!(f("inline; filename="), None);
        assert_eq!(f(r#"inline; filename="unterminated"#), None);
        assert_eq!(f("inline; size=3"), None);
    }

    #[test]
    fn metadata_pairs() {
        let m = metadata("filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential").unwrap();
        assert_eq!(
            m[0],
            ("filename".into(), b"world_domination_plan.pdf".to_vec())
        );
        assert_eq!(m[1], ("is_confidential".into(), Vec::new()));
        assert_eq!(metadata("a YQ, b Yg").unwrap().len(), 2);
        for bad in ["", "a YQ==,", "a YQ==,a Yg==", "a !!", "a\tb YQ=="] {
            assert!(metadata(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn checksums_and_bearer_tokens() {
        let (alg, sum) = checksum("sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=").unwrap();
        assert_eq!((alg, sum.len()), ("sha1", 20));
        assert!(checksum("sha256").is_err());
        assert!(checksum("sha256 !!").is_err());
        let b = |v: &str| bearer(&headers(&[("authorization", v)])).map(|t| t.map(<[u8]>::to_vec));
        assert_eq!(b("Bearer abc"), Ok(Some(b"abc".to_vec())));
        assert_eq!(b("bearer  abc "), Ok(Some(b"abc".to_vec())));
        assert_eq!(b("Basic abc"), Err(NotBearer));
        assert_eq!(b("Bearer "), Err(NotBearer));
        assert_eq!(bearer(&HeaderMap::new()), Ok(None));
    }

    #[test]
    fn offset_octet_stream() {
        let ct = |v: &str| is_offset_octet_stream(&headers(&[("content-type", v)]));
        assert!(ct("application/offset+octet-stream"));
        assert!(ct("Application/Offset+Octet-Stream; x=1"));
        assert!(!ct("application/octet-stream"));
        assert!(!is_offset_octet_stream(&HeaderMap::new()));
    }
}
