//! `Repr-Digest` (RFC 9530 §3) and the client's `Want-Repr-Digest` (§4): whether a response
//! carries the digest, and its value. Pure.
//!
//! One algorithm is supported: `sha-256`, the same SHA-256 that backs the strong ETag, so the
//! value is built once per file version and costs nothing per request.

use base64::Engine as _;
use http::header::{HeaderMap, HeaderName, HeaderValue};

/// `Repr-Digest` (RFC 9530 §3).
pub static REPR_DIGEST: HeaderName = HeaderName::from_static("repr-digest");
/// `Want-Repr-Digest` (RFC 9530 §4).
pub static WANT_REPR_DIGEST: HeaderName = HeaderName::from_static("want-repr-digest");
/// `Content-Digest` (RFC 9530 §2): the digest of one message's content.
pub static CONTENT_DIGEST: HeaderName = HeaderName::from_static("content-digest");

/// The only algorithm we send (RFC 9530 §5: `sha-256`, "standard").
pub const ALGORITHM: &str = "sha-256";

/// `sha-256=:BASE64:`, a Dictionary with one Byte Sequence member (RFC 9530 §3, RFC 9651 §3.3.5).
pub fn value(sha256: &[u8; 32]) -> HeaderValue {
    let b64 = base64::engine::general_purpose::STANDARD.encode(sha256);
    HeaderValue::from_str(&format!("{ALGORITHM}=:{b64}:")).expect("base64 is a valid header value")
}

/// Whether a response to a request with these headers carries `Repr-Digest`, when the server
/// sends it by default (`configured`) or not.
///
/// RFC 9530 §4: `Want-Repr-Digest` is a Dictionary of algorithm = preference (Integer 0..=10,
/// 0 meaning "not acceptable"), and "only a hint": the server may send any algorithm or none.
/// - `sha-256` with a preference above 0: sent, even when switched off in the configuration.
/// - `sha-256=0`: not sent, even when on (the client said it cannot use it).
/// - only other algorithms, some above 0: sent as `sha-256` (the client wants integrity, and
///   §4 allows an algorithm it did not list); all 0: the configuration decides.
/// - absent or malformed (not a Dictionary, a preference that is not an Integer in 0..=10): the
///   field is ignored (RFC 9651 §4.2: a field that fails to parse is ignored), the
///   configuration decides.
pub fn wanted(req: &HeaderMap, configured: bool) -> bool {
    match preference(req) {
        Some(Want::Sha256(p)) => p > 0,
        Some(Want::Others { any_acceptable }) if any_acceptable => true,
        Some(Want::Others { .. }) | None => configured,
    }
}

/// The `sha-256` member of a digest field a client sent (`Repr-Digest` or `Content-Digest`,
/// RFC 9530 §2-3: a Dictionary of algorithm = Byte Sequence), when it has one. Other
/// algorithms are ignored (§2: "the recipient MAY ignore" an algorithm it does not support),
/// and so is a field that is not a Dictionary (RFC 9651 §4.2); a `sha-256` member that is not
/// 32 bytes is an error, as the client then asked for a check that cannot pass.
pub fn sha256_sent(req: &HeaderMap, name: &HeaderName) -> Result<Option<[u8; 32]>, &'static str> {
    let mut lines = req.get_all(name).iter();
    let Some(first) = lines.next() else {
        return Ok(None);
    };
    let mut joined = first.as_bytes().to_vec();
    for more in lines {
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(more.as_bytes());
    }
    let Ok(dict) = sfv::Parser::new(&joined).parse::<sfv::Dictionary>() else {
        return Ok(None);
    };
    for (key, entry) in &dict {
        if key.as_str() != ALGORITHM {
            continue;
        }
        return match entry {
            sfv::ListEntry::Item(sfv::Item {
                bare_item: sfv::BareItem::ByteSequence(b),
                ..
            }) => <[u8; 32]>::try_from(b.as_slice())
                .map(Some)
                .map_err(|_| "the sha-256 digest is not 32 bytes"),
            _ => Err("the sha-256 digest is not a Byte Sequence"),
        };
    }
    Ok(None)
}

#[derive(Debug, PartialEq)]
enum Want {
    /// The client's preference for sha-256.
    Sha256(i64),
    /// sha-256 not named; whether any other algorithm has a preference above 0.
    Others { any_acceptable: bool },
}

/// The parsed `Want-Repr-Digest` (several field lines are one list, RFC 9110 §5.3), or `None`
/// when absent or malformed.
fn preference(req: &HeaderMap) -> Option<Want> {
    let mut lines = req.get_all(&WANT_REPR_DIGEST).iter();
    let first = lines.next()?;
    let mut joined = first.as_bytes().to_vec();
    for more in lines {
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(more.as_bytes());
    }
    let dict: sfv::Dictionary = sfv::Parser::new(&joined).parse().ok()?;
    let mut sha256 = None;
    let mut any_acceptable = false;
    for (key, entry) in &dict {
        let sfv::ListEntry::Item(item) = entry else {
            return None;
        };
        let sfv::BareItem::Integer(p) = item.bare_item else {
            return None;
        };
        let p = i64::from(p);
        if !(0..=10).contains(&p) {
            return None;
        }
        if key.as_str() == ALGORITHM {
            sha256 = Some(p);
        } else if p > 0 {
            any_acceptable = true;
        }
    }
    Some(match sha256 {
        Some(p) => Want::Sha256(p),
        None => Want::Others { any_acceptable },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(&WANT_REPR_DIGEST, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn sha256_sent_takes_the_sha256_member_only() {
        let sum = [7u8; 32];
        let b64 = base64::engine::general_purpose::STANDARD.encode(sum);
        let mut h = HeaderMap::new();
        assert_eq!(sha256_sent(&h, &REPR_DIGEST), Ok(None));
        h.insert(
            &REPR_DIGEST,
            HeaderValue::from_str(&format!("md5=:AAAA:, sha-256=:{b64}:")).unwrap(),
        );
        assert_eq!(sha256_sent(&h, &REPR_DIGEST), Ok(Some(sum)));
        // Only other algorithms, or not a Dictionary: ignored.
        h.insert(&REPR_DIGEST, HeaderValue::from_static("md5=:AAAA:"));
        assert_eq!(sha256_sent(&h, &REPR_DIGEST), Ok(None));
        h.insert(
            &REPR_DIGEST,
            HeaderValue::from_static("sha-256=:not base64"),
        );
        assert_eq!(sha256_sent(&h, &REPR_DIGEST), Ok(None));
        // A sha-256 that cannot be one: an error.
        h.insert(&REPR_DIGEST, HeaderValue::from_static("sha-256=:AAAA:"));
        assert!(sha256_sent(&h, &REPR_DIGEST).is_err());
        h.insert(&REPR_DIGEST, HeaderValue::from_static("sha-256=5"));
        assert!(sha256_sent(&h, &REPR_DIGEST).is_err());
    }

    #[test]
    fn value_of_the_empty_string() {
        // SHA-256("") = e3b0c442...b855, base64 as in RFC 9530 Appendix B examples' style.
        let sum: [u8; 32] =
            hex::decode("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
                .unwrap()
                .try_into()
                .unwrap();
        assert_eq!(
            value(&sum),
            "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"
        );
    }

    #[test]
    fn preferences() {
        for (fields, on, off) in [
            (vec![], true, false),
            (vec!["sha-256=1"], true, true),
            (vec!["sha-256=10"], true, true),
            (vec!["sha-256=0"], false, false),
            (vec!["sha-512=3, sha-256=10, unixsum=0"], true, true),
            (vec!["sha-512=3, sha-256=0"], false, false),
            (vec!["sha-512=3"], true, true),
            (vec!["sha-512=0, md5=0"], true, false),
            // Two field lines are one dictionary.
            (vec!["sha-512=3", "sha-256=0"], false, false),
            // Malformed: ignored.
            (vec!["sha-256"], true, false),
            (vec!["sha-256=11"], true, false),
            (vec!["sha-256=-1"], true, false),
            (vec!["sha-256=1.5"], true, false),
            (vec!["sha-256=(1 2)"], true, false),
            (vec!["???"], true, false),
            (vec!["SHA-256=5"], true, false),
        ] {
            let h = want(&fields);
            assert_eq!(wanted(&h, true), on, "{fields:?} with repr_digest on");
            assert_eq!(wanted(&h, false), off, "{fields:?} with repr_digest off");
        }
    }
}
