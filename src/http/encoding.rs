//! Content codings of precompressed files: parsing `Accept-Encoding` (RFC 9110 §12.5.3), choosing
//! among the codings a file has sidecars for, and the response headers that follow from the
//! choice (`Content-Encoding`, `Vary`). Pure: the sidecars are found in `fs::sidecar`.
//!
//! Each coding is its own representation (§8.8.3): its own bytes, length and ETag, to which
//! `Range` and `If-Range` apply. Nothing is compressed on the fly.

use std::borrow::Cow;

use http::header::{CONTENT_ENCODING, IF_RANGE};
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::http::response::add_vary;

/// A content coding we serve from a sidecar file (`name.br`, `name.zst`, `name.gz`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// Brotli (RFC 7932), `name.br`.
    Br,
    /// Zstandard (RFC 8878), `name.zst`.
    Zstd,
    /// gzip (RFC 9110 §8.4.1.3), `name.gz`.
    Gzip,
}

impl Coding {
    /// All codings, in the order that breaks ties between equal q-values.
    pub const ALL: [Coding; 3] = [Coding::Br, Coding::Zstd, Coding::Gzip];

    /// The content-coding token (§8.4.1, RFC 7932, RFC 8878).
    pub fn token(self) -> &'static str {
        match self {
            Coding::Br => "br",
            Coding::Zstd => "zstd",
            Coding::Gzip => "gzip",
        }
    }

    /// What the sidecar's name adds to the file's name.
    pub fn suffix(self) -> &'static str {
        match self {
            Coding::Br => ".br",
            Coding::Zstd => ".zst",
            Coding::Gzip => ".gz",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// q-values in thousandths (0..=1000), as `qvalue` allows three decimals (§12.4.2).
type Q = u16;

/// What a request's `Accept-Encoding` says, per coding; `None` where the field says nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accept {
    /// No `Accept-Encoding` at all, or one with no usable element: identity only.
    absent: bool,
    codings: [Option<Q>; 3],
    identity: Option<Q>,
    star: Option<Q>,
}

impl Accept {
    /// Parse every `Accept-Encoding` field line of the request (§5.3: they form one list).
    /// Never fails: a line that is not visible ASCII is skipped, an element that is not a token
    /// is skipped, and an element whose q-value is malformed counts as `q=0` (refused), so a
    /// garbled header can only lead to the identity response.
    pub fn parse(headers: &HeaderMap) -> Accept {
        let mut accept = Accept::default();
        let mut any = false;
        for line in headers.get_all(http::header::ACCEPT_ENCODING) {
            let Ok(line) = line.to_str() else { continue };
            for element in line.split(',') {
                if let Some((name, q)) = element_of(element) {
                    any = true;
                    accept.note(name, q);
                }
            }
        }
        // §12.5.3: an empty field value means "no coding please"; so does no field here.
        accept.absent = !any;
        accept
    }

    fn note(&mut self, name: &str, q: Q) {
        let slot = if name.eq_ignore_ascii_case("identity") {
            &mut self.identity
        } else if name == "*" {
            &mut self.star
        } else if let Some(c) = coding_named(name) {
            &mut self.codings[c.index()]
        } else {
            return; // a coding we have no sidecars for (deflate, compress, ...)
        };
        // Listed twice: the lower q wins, so a refusal is never overridden by order.
        *slot = Some(slot.map_or(q, |old| old.min(q)));
    }

    /// q of a coding: its own entry, else `*`, else not acceptable.
    fn q(&self, c: Coding) -> Q {
        if self.absent {
            return 0;
        }
        self.codings[c.index()].or(self.star).unwrap_or(0)
    }

    /// q of identity: its own entry, else `*`. Not listed at all, it is acceptable (§12.5.3)
    /// but comes after every coding the client names (q = 0.001). Identity is also what is sent
    /// when it is refused and no acceptable sidecar exists: like nginx and Caddy, we prefer a
    /// response the client may not want over a 406 (§12.5.3 allows either).
    fn identity_q(&self) -> Q {
        if self.absent {
            return 1000;
        }
        self.identity.or(self.star).unwrap_or(1)
    }

    /// The codings worth serving instead of identity, best first: q > 0 and at least identity's
    /// q (a tie goes to the coding the client named), higher q first, ties br > zstd > gzip.
    pub fn preferred(&self) -> impl Iterator<Item = Coding> {
        let mut order = Coding::ALL;
        // Stable: equal q keeps the br > zstd > gzip order of ALL.
        order.sort_by_key(|&c| std::cmp::Reverse(self.q(c)));
        let floor = self.identity_q().max(1);
        let q: [Q; 3] = Coding::ALL.map(|c| self.q(c));
        order.into_iter().filter(move |c| q[c.index()] >= floor)
    }
}

/// One list element: `coding [ OWS ";" OWS "q=" qvalue ]`, lenient about other parameters.
/// None when it is empty or its name is not a token.
fn element_of(element: &str) -> Option<(&str, Q)> {
    let mut parts = element.split(';');
    let name = parts.next()?.trim_matches([' ', '\t']);
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return None;
    }
    let mut q = 1000;
    for param in parts {
        let param = param.trim_matches([' ', '\t']);
        if let Some(v) = param
            .strip_prefix("q=")
            .or_else(|| param.strip_prefix("Q="))
        {
            q = qvalue(v).unwrap_or(0);
        }
    }
    Some((name, q))
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )` (§12.4.2), in thousandths.
fn qvalue(s: &str) -> Option<Q> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0, |acc, d| acc * 10 + Q::from(d - b'0'));
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

fn coding_named(name: &str) -> Option<Coding> {
    // §8.4.1.3: x-gzip is gzip.
    if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
        Some(Coding::Gzip)
    } else if name.eq_ignore_ascii_case("br") {
        Some(Coding::Br)
    } else if name.eq_ignore_ascii_case("zstd") {
        Some(Coding::Zstd)
    } else {
        None
    }
}

/// tchar (§5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The outcome of negotiation for one file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Negotiated {
    /// The coding of the representation served; None: the file itself (identity).
    pub coding: Option<Coding>,
    /// The file has at least one sidecar, so the response depends on Accept-Encoding.
    pub vary: bool,
}

impl Negotiated {
    /// The request headers the precondition engine should see. For a file with sidecars, an
    /// `If-Range` date cannot tell the representations apart: `gzip -k` and friends give the
    /// sidecar the original's mtime, so both carry the same Last-Modified, and a resumer that
    /// holds the first bytes of one would get a range of the other appended. Such a date is not
    /// a strong validator for this resource (§8.8.2.2), and §13.1.5 then asks for the whole
    /// representation: the date is replaced by a tag that never matches. Entity-tags differ
    /// per representation and need nothing.
    pub fn request_headers<'h>(&self, headers: &'h HeaderMap) -> Cow<'h, HeaderMap> {
        let date = || {
            headers.get_all(IF_RANGE).iter().any(|v| {
                let v = v.as_bytes().trim_ascii_start();
                !(v.starts_with(b"\"") || v.starts_with(b"W/"))
            })
        };
        if !(self.vary && date()) {
            return Cow::Borrowed(headers);
        }
        let mut h = headers.clone();
        h.insert(
            IF_RANGE,
            HeaderValue::from_static("W/\"date-of-negotiated\""),
        );
        Cow::Owned(h)
    }

    /// Add the headers of the choice to a response built for the chosen representation.
    /// `Vary` on every response of a file with sidecars, 304/412/416 included (§15.4.5, §12.5.5);
    /// `Content-Encoding` only where the body is (a range of) the encoded bytes: 200 and 206,
    /// HEAD included. Not on a 304 (§15.4.5 lists what it carries), nor on the 412's text or
    /// the 416's empty body, which are not encoded.
    pub fn apply(&self, status: StatusCode, headers: &mut HeaderMap) {
        if self.vary {
            add_vary(headers, "Accept-Encoding");
        }
        if let Some(c) = self.coding {
            if status == StatusCode::OK || status == StatusCode::PARTIAL_CONTENT {
                headers.insert(CONTENT_ENCODING, HeaderValue::from_static(c.token()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::VARY;
    use proptest::prelude::*;
    use Coding::*;

    fn accept(lines: &[&str]) -> Accept {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(
                http::header::ACCEPT_ENCODING,
                HeaderValue::from_str(l).unwrap(),
            );
        }
        Accept::parse(&h)
    }

    fn pref(line: &str) -> Vec<Coding> {
        accept(&[line]).preferred().collect()
    }

    #[test]
    fn qvalues() {
        assert_eq!(qvalue("0"), Some(0));
        assert_eq!(qvalue("0."), Some(0));
        assert_eq!(qvalue("0.5"), Some(500));
        assert_eq!(qvalue("0.05"), Some(50));
        assert_eq!(qvalue("0.123"), Some(123));
        assert_eq!(qvalue("1"), Some(1000));
        assert_eq!(qvalue("1.000"), Some(1000));
        for bad in [
            "", ".5", "0.1234", "1.5", "1.001", "2", "-0", "0.x", "01", " 1", "0,5",
        ] {
            assert_eq!(qvalue(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn order_by_q_then_br_zstd_gzip() {
        assert_eq!(pref("gzip, br, zstd"), [Br, Zstd, Gzip]);
        assert_eq!(pref("gzip;q=1, br;q=0.5"), [Gzip, Br]);
        assert_eq!(pref("gzip;q=0.8, zstd;q=0.9, br;q=0.1"), [Zstd, Gzip, Br]);
        assert_eq!(pref("GZIP"), [Gzip]);
        assert_eq!(pref("x-gzip"), [Gzip]);
        assert_eq!(pref("deflate, compress"), []);
        assert_eq!(pref("gzip ; q=0.5 , br;Q=0.6"), [Br, Gzip]);
    }

    #[test]
    fn zero_and_identity() {
        assert_eq!(pref("gzip;q=0, br"), [Br]);
        // A coding less wanted than identity is not worth sending; a tie goes to the coding.
        assert_eq!(pref("gzip;q=0.5, identity;q=0.8"), []);
        assert_eq!(pref("gzip;q=0.8, identity;q=0.8"), [Gzip]);
        assert_eq!(pref("gzip;q=0.1, identity;q=0"), [Gzip]);
        // `*` covers the codings (and identity) not listed.
        assert_eq!(pref("*"), [Br, Zstd, Gzip]);
        assert_eq!(pref("gzip;q=0, *"), [Br, Zstd]);
        assert_eq!(pref("*;q=0.5, gzip"), [Gzip, Br, Zstd]);
        assert_eq!(pref("*;q=0"), []);
        assert_eq!(pref("gzip;q=0.3, *;q=0.5"), [Br, Zstd]);
        assert_eq!(pref("gzip;q=0.3, br;q=0.2, *;q=0.5"), [Zstd]);
        assert_eq!(pref("gzip;q=0.3, br;q=0.2, zstd;q=0.001"), [Gzip, Br, Zstd]);
        assert_eq!(
            pref("gzip;q=0.3, *;q=0.5, identity;q=0.1"),
            [Br, Zstd, Gzip]
        );
    }

    #[test]
    fn absent_or_empty_is_identity() {
        assert_eq!(accept(&[]).preferred().count(), 0);
        assert!(accept(&[]).absent);
        assert_eq!(pref(""), []);
        assert_eq!(pref(" , ,"), []);
    }

    #[test]
    fn malformed_elements() {
        // A bad q refuses that coding; a bad name is skipped; the rest still counts.
        assert_eq!(pref("gzip;q=abc, br"), [Br]);
        assert_eq!(pref("gzip;q=1.5"), []);
        assert_eq!(pref("gzip;q=, zstd;q=0.2"), [Zstd]);
        assert_eq!(pref("g zip, br"), [Br]);
        assert_eq!(pref("gzip;level=9"), [Gzip]);
        assert_eq!(pref(";q=1, gzip"), [Gzip]);
        // Listed twice: the lower q.
        assert_eq!(pref("gzip, gzip;q=0"), []);
        assert_eq!(pref("br;q=0.2, br;q=0.9, gzip;q=0.5"), [Gzip, Br]);
    }

    #[test]
    fn lines_form_one_list() {
        let a = accept(&["gzip;q=0.5", "br;q=0.9"]);
        assert_eq!(a.preferred().collect::<Vec<_>>(), [Br, Gzip]);
        // A line that is not visible ASCII is skipped, the others count.
        let mut h = HeaderMap::new();
        h.append(
            http::header::ACCEPT_ENCODING,
            HeaderValue::from_bytes(b"br\xff").unwrap(),
        );
        h.append(
            http::header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip"),
        );
        assert_eq!(Accept::parse(&h).preferred().collect::<Vec<_>>(), [Gzip]);
    }

    #[test]
    fn vary_appends_once() {
        let mut h = HeaderMap::new();
        h.append(VARY, HeaderValue::from_static("Origin"));
        add_vary(&mut h, "Accept-Encoding");
        add_vary(&mut h, "Accept-Encoding");
        let all: Vec<_> = h.get_all(VARY).iter().collect();
        assert_eq!(all, ["Origin", "Accept-Encoding"]);
        let mut h = HeaderMap::new();
        h.append(VARY, HeaderValue::from_static("origin, accept-encoding"));
        add_vary(&mut h, "Accept-Encoding");
        assert_eq!(h.get_all(VARY).iter().count(), 1);
        let mut h = HeaderMap::new();
        h.append(VARY, HeaderValue::from_static("*"));
        add_vary(&mut h, "Accept-Encoding");
        assert_eq!(h.get_all(VARY).iter().count(), 1);
    }

    #[test]
    fn apply_by_status() {
        let n = Negotiated {
            coding: Some(Zstd),
            vary: true,
        };
        for (status, encoded) in [
            (StatusCode::OK, true),
            (StatusCode::PARTIAL_CONTENT, true),
            (StatusCode::NOT_MODIFIED, false),
            (StatusCode::PRECONDITION_FAILED, false),
            (StatusCode::RANGE_NOT_SATISFIABLE, false),
        ] {
            let mut h = HeaderMap::new();
            n.apply(status, &mut h);
            assert_eq!(h.get(VARY).unwrap(), "Accept-Encoding", "{status}");
            assert_eq!(
                h.get(CONTENT_ENCODING).map(|v| v.to_str().unwrap()),
                encoded.then_some("zstd"),
                "{status}"
            );
        }
        let mut h = HeaderMap::new();
        Negotiated::default().apply(StatusCode::OK, &mut h);
        assert!(h.is_empty());
    }

    #[test]
    fn if_range_dates_never_match_on_negotiated_files() {
        let mut h = HeaderMap::new();
        h.insert(
            IF_RANGE,
            HeaderValue::from_static("Sat, 01 Jan 2000 00:00:00 GMT"),
        );
        let plain = Negotiated::default();
        assert!(matches!(plain.request_headers(&h), Cow::Borrowed(_)));
        let neg = Negotiated {
            coding: None,
            vary: true,
        };
        let out = neg.request_headers(&h);
        assert_eq!(out.get_all(IF_RANGE).iter().count(), 1);
        assert!(out.get(IF_RANGE).unwrap().as_bytes().starts_with(b"W/"));
        // An entity-tag is left alone.
        h.insert(IF_RANGE, HeaderValue::from_static("\"abc\""));
        assert!(matches!(neg.request_headers(&h), Cow::Borrowed(_)));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Any visible-ASCII header parses, and the order is by q then br > zstd > gzip.
        #[test]
        fn never_panics_and_orders(line in "[ -~]{0,80}") {
            if let Ok(v) = HeaderValue::from_str(&line) {
                let mut h = HeaderMap::new();
                h.insert(http::header::ACCEPT_ENCODING, v);
                let a = Accept::parse(&h);
                let p: Vec<Coding> = a.preferred().collect();
                for w in p.windows(2) {
                    let (qa, qb) = (a.q(w[0]), a.q(w[1]));
                    prop_assert!(qa > qb || (qa == qb && w[0].index() < w[1].index()));
                }
                for c in p {
                    prop_assert!(a.q(c) > 0 && a.q(c) >= a.identity_q());
                }
            }
        }

        /// Built from elements with known q-values, the parse finds them.
        #[test]
        fn listed_qs_are_honoured(qs in proptest::array::uniform3(0u16..=1000)) {
            let line = Coding::ALL
                .iter()
                .zip(qs)
                .map(|(c, q)| format!("{};q={}.{:03}", c.token(), q / 1000, q % 1000))
                .collect::<Vec<_>>()
                .join(", ");
            let a = accept(&[&line]);
            for (c, q) in Coding::ALL.iter().zip(qs) {
                prop_assert_eq!(a.q(*c), q);
            }
        }
    }
}
