//! The headers of the upload protocols, pure: tus 1.0.0 (<https://tus.io/protocols/resumable-upload>)
//! header names and values, and the parsing of its numbers, `Upload-Metadata` and
//! `Upload-Checksum`; and the bearer credentials of RFC 6750.

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
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case(OFFSET_OCTET_STREAM)
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
