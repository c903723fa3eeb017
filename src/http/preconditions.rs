//! Conditional requests: RFC 9110 §13.2.2, as one pure function of the request headers and the
//! representation's validators.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{
    IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, RANGE,
};
use http::{HeaderMap, HeaderName, Method};

/// The validators of the selected representation.
#[derive(Debug, Clone)]
pub struct Validators<'a> {
    /// The strong entity-tag, quotes included: `"…"`; `None` when the source has none.
    pub etag: Option<&'a str>,
    /// Whole seconds since the epoch, as `Last-Modified` says it.
    pub last_modified: Option<SystemTime>,
    /// §8.8.2.2: Last-Modified is strong only when at least a second older than the Date sent.
    pub last_modified_is_strong: bool,
}

/// What the preconditions of a request decide (RFC 9110 §13.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// 304: for GET and HEAD when If-None-Match or If-Modified-Since says the client has it.
    NotModified,
    /// 412.
    PreconditionFailed,
    /// Perform the method; `use_range` is false when If-Range did not match (send the 200).
    Proceed {
        /// Whether a `Range` applies (false when `If-Range` did not match).
        use_range: bool,
    },
}

/// One header's outcome, as in Go's `condNone / condTrue / condFalse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cond {
    /// Absent, or to be ignored.
    None,
    True,
    False,
}

/// The §13.2.2 steps, in their order.
pub fn decide(method: &Method, headers: &HeaderMap, v: &Validators) -> Decision {
    let get_or_head = method == Method::GET || method == Method::HEAD;
    let has = present(headers);
    // Absent headers are Cond::None without a lookup.
    let cond = |bit: u8, f: fn(&HeaderMap, &Validators) -> Cond| match has & bit {
        0 => Cond::None,
        _ => f(headers, v),
    };
    // 1. If-Match; 2. If-Unmodified-Since only when If-Match is absent.
    match cond(HAS_IF_MATCH, if_match) {
        Cond::False => return Decision::PreconditionFailed,
        Cond::True => {}
        Cond::None => {
            if cond(HAS_IF_UNMODIFIED_SINCE, if_unmodified_since) == Cond::False {
                return Decision::PreconditionFailed;
            }
        }
    }
    // 3. If-None-Match; 4. If-Modified-Since only when If-None-Match is absent, on GET/HEAD.
    match cond(HAS_IF_NONE_MATCH, if_none_match) {
        Cond::False if get_or_head => return Decision::NotModified,
        Cond::False => return Decision::PreconditionFailed,
        Cond::True => {}
        Cond::None => {
            if get_or_head && cond(HAS_IF_MODIFIED_SINCE, if_modified_since) == Cond::False {
                return Decision::NotModified;
            }
        }
    }
    // 5. If-Range, only for a GET that carries Range (§13.1.5: ignored without Range).
    let use_range =
        method == Method::GET && has & HAS_RANGE != 0 && if_range(headers, v) != Cond::False;
    Decision::Proceed { use_range }
}

const HAS_IF_MATCH: u8 = 1;
const HAS_IF_UNMODIFIED_SINCE: u8 = 2;
const HAS_IF_NONE_MATCH: u8 = 4;
const HAS_IF_MODIFIED_SINCE: u8 = 8;
const HAS_RANGE: u8 = 16;

/// Which of the fields `decide` reads the request has: one pass over its field names instead
/// of a hash lookup for each field, most of which a request does not carry.
fn present(headers: &HeaderMap) -> u8 {
    headers.keys().fold(0, |has, name| {
        has | match *name {
            IF_MATCH => HAS_IF_MATCH,
            IF_UNMODIFIED_SINCE => HAS_IF_UNMODIFIED_SINCE,
            IF_NONE_MATCH => HAS_IF_NONE_MATCH,
            IF_MODIFIED_SINCE => HAS_IF_MODIFIED_SINCE,
            RANGE => HAS_RANGE,
            _ => 0,
        }
    })
}

/// §13.1.1: `*` matches any current representation; otherwise a strong comparison.
fn if_match(headers: &HeaderMap, v: &Validators) -> Cond {
    if is_just_our_tag(headers, &IF_MATCH, v) {
        return Cond::True;
    }
    let Some(list) = joined(headers, &IF_MATCH) else {
        return Cond::None;
    };
    if list.trim() == "*" {
        return Cond::True;
    }
    // A list we cannot parse matches nothing: failing a write-guard is the safe side.
    match v.etag {
        Some(ours) if any_tag(&list, |t| strong_eq(t, ours)) == Some(true) => Cond::True,
        _ => Cond::False,
    }
}

/// §13.1.2: `*` matches; otherwise a weak comparison. Condition is False when one matches.
fn if_none_match(headers: &HeaderMap, v: &Validators) -> Cond {
    if is_just_our_tag(headers, &IF_NONE_MATCH, v) {
        return Cond::False;
    }
    let Some(list) = joined(headers, &IF_NONE_MATCH) else {
        return Cond::None;
    };
    if list.trim() == "*" {
        return Cond::False;
    }
    // Unparseable: nothing matches, so the full response is sent (the safe side for a read).
    match v.etag {
        Some(ours) if any_tag(&list, |t| weak_eq(t, ours)) == Some(true) => Cond::False,
        _ => Cond::True,
    }
}

/// §13.1.4: False when the representation was modified after the date.
fn if_unmodified_since(headers: &HeaderMap, v: &Validators) -> Cond {
    match (single_date(headers, &IF_UNMODIFIED_SINCE), v.last_modified) {
        (Some(date), Some(lm)) if lm > date => Cond::False,
        (Some(_), Some(_)) => Cond::True,
        _ => Cond::None,
    }
}

/// §13.1.3: False (not modified) when the last modification is at or before the date.
fn if_modified_since(headers: &HeaderMap, v: &Validators) -> Cond {
    match (single_date(headers, &IF_MODIFIED_SINCE), v.last_modified) {
        (Some(date), Some(lm)) if lm <= date => Cond::False,
        (Some(_), Some(_)) => Cond::True,
        _ => Cond::None,
    }
}

/// §13.1.5: an entity-tag matches by strong comparison (a `W/` tag never does); a date matches
/// only when it equals a strong Last-Modified exactly; anything else is a mismatch.
fn if_range(headers: &HeaderMap, v: &Validators) -> Cond {
    let values: Vec<_> = headers.get_all(IF_RANGE).iter().collect();
    let [value] = values.as_slice() else {
        // Several If-Range fields cannot be evaluated: treat as no match (send the 200).
        return if values.is_empty() {
            Cond::None
        } else {
            Cond::False
        };
    };
    let Ok(text) = value.to_str() else {
        return Cond::False;
    };
    let text = text.trim_matches([' ', '\t']);
    if text.starts_with('"') || text.starts_with("W/") {
        // Exactly one entity-tag (a list of them is not an If-Range value).
        return match (next_tag(text), v.etag) {
            (Some(Some((tag, rest))), Some(ours))
                if matches!(next_tag(rest), Some(None)) && strong_eq(&tag, ours) =>
            {
                Cond::True
            }
            _ => Cond::False,
        };
    }
    match (httpdate::parse_http_date(text), v.last_modified) {
        (Ok(date), Some(lm)) if v.last_modified_is_strong && date == lm => Cond::True,
        _ => Cond::False,
    }
}

/// The field is one line holding exactly our entity-tag, as a client that revalidates sends it:
/// a one-element list whose tag matches ours by the strong comparison, hence by the weak one too
/// (§8.8.3.2). Answered by comparing bytes, without parsing the list.
fn is_just_our_tag(headers: &HeaderMap, name: &HeaderName, v: &Validators) -> bool {
    // A weak tag of ours (`W/"…"`) never matches by the strong comparison: left to the parse.
    let Some(ours) = v
        .etag
        .filter(|t| t.len() >= 2 && t.starts_with('"') && t.ends_with('"'))
    else {
        return false;
    };
    let mut lines = headers.get_all(name).iter();
    matches!((lines.next(), lines.next()), (Some(line), None) if line.as_bytes() == ours.as_bytes())
}

/// All field lines of a list header joined with commas (§5.3), or None when absent or not text.
fn joined<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<Cow<'h, str>> {
    let mut out: Option<Cow<'h, str>> = None;
    for v in headers.get_all(name) {
        let s = v.to_str().ok()?;
        match &mut out {
            None => out = Some(Cow::Borrowed(s)),
            Some(o) => {
                let o = o.to_mut();
                o.push(',');
                o.push_str(s);
            }
        }
    }
    out
}

/// A date header with exactly one valid HTTP-date (any of the three formats, §5.6.7);
/// anything else is ignored (§13.1.3, §13.1.4).
fn single_date(headers: &HeaderMap, name: &HeaderName) -> Option<SystemTime> {
    let mut all = headers.get_all(name).iter();
    let (first, None) = (all.next()?, all.next()) else {
        return None;
    };
    httpdate::parse_http_date(first.to_str().ok()?.trim_matches([' ', '\t'])).ok()
}

/// An entity-tag as written: `"opaque"` or `W/"opaque"`.
#[derive(Debug, PartialEq, Eq)]
struct Tag<'a> {
    weak: bool,
    opaque: &'a str,
}

#[cfg(test)]
/// Every entity-tag of a list (§8.8.3, §5.6.1: empty elements and OWS allowed); None when it is
/// not such a list.
fn parse_tags(list: &str) -> Option<Vec<Tag<'_>>> {
    let mut tags = Vec::new();
    let mut rest = list;
    while let Some((tag, after)) = next_tag(rest)? {
        tags.push(tag);
        rest = after;
    }
    Some(tags)
}

/// Whether any entity-tag of the list satisfies `hit`, without collecting them; None when the
/// list does not parse (then it matches nothing, whatever came before the bad element).
fn any_tag(list: &str, mut hit: impl FnMut(&Tag<'_>) -> bool) -> Option<bool> {
    let mut found = false;
    let mut rest = list;
    while let Some((tag, after)) = next_tag(rest)? {
        found |= hit(&tag);
        rest = after;
    }
    Some(found)
}

/// The list's next entity-tag and the rest after it; `Some(None)` at the end of the list, None
/// when the next element is not an entity-tag.
fn next_tag(list: &str) -> Option<Option<(Tag<'_>, &str)>> {
    let rest = skip(list, b" \t,");
    if rest.is_empty() {
        return Some(None);
    }
    let (weak, after) = match rest.strip_prefix("W/") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let body = after.strip_prefix('"')?;
    // To the closing quote; every byte before it an etagc = %x21 / %x23-7E / obs-text.
    let close = memchr::memchr(b'"', body.as_bytes())?;
    let valid = body.as_bytes()[..close]
        .iter()
        .fold(true, |ok, &b| ok & (b >= 0x21) & (b != 0x7f));
    if !valid {
        return None;
    }
    let tag = Tag {
        weak,
        opaque: &body[..close],
    };
    let rest = skip(&body[close + 1..], b" \t");
    if !(rest.is_empty() || rest.starts_with(',')) {
        return None;
    }
    Some(Some((tag, rest)))
}

/// `s` without its leading bytes from `set` (ASCII), byte by byte: the generic char-pattern
/// trim showed in the profile of 304s.
fn skip<'a>(s: &'a str, set: &[u8]) -> &'a str {
    let n = s.bytes().take_while(|b| set.contains(b)).count();
    &s[n..]
}

/// Our own entity-tag, `"…"` or `W/"…"`: whether it is weak, and its opaque part.
fn ours_opaque(ours: &str) -> (bool, &str) {
    let (weak, quoted) = match ours.strip_prefix("W/") {
        Some(r) => (true, r),
        None => (false, ours),
    };
    let opaque = quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(quoted);
    (weak, opaque)
}

fn strong_eq(t: &Tag<'_>, ours: &str) -> bool {
    let (weak, opaque) = ours_opaque(ours);
    !t.weak && !weak && t.opaque == opaque
}

fn weak_eq(t: &Tag<'_>, ours: &str) -> bool {
    t.opaque == ours_opaque(ours).1
}

/// `Last-Modified` to send (§8.8.2.1), from the file's mtime and the response's Date in whole
/// seconds since the epoch ([`unix_secs`]): never later than the Date; strong only when at least
/// one second before it (§8.8.2.2).
pub fn last_modified_secs(mtime: u64, date: u64) -> (u64, bool) {
    let lm = mtime.min(date);
    (lm, date > lm)
}

/// Whole seconds since the epoch; 0 for a time before it.
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use std::time::Duration;

    const TAG: &str = "\"abc123\"";

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }
    fn date(secs: u64) -> String {
        httpdate::fmt_http_date(at(secs))
    }
    const LM: u64 = 1_700_000_000;

    fn v() -> Validators<'static> {
        Validators {
            etag: Some(TAG),
            last_modified: Some(at(LM)),
            last_modified_is_strong: true,
        }
    }

    fn run(method: Method, hs: &[(&str, &str)], v: &Validators) -> Decision {
        let mut m = HeaderMap::new();
        for (k, val) in hs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(val).unwrap(),
            );
        }
        decide(&method, &m, v)
    }
    fn get(hs: &[(&str, &str)]) -> Decision {
        run(Method::GET, hs, &v())
    }
    const FULL: Decision = Decision::Proceed { use_range: false };
    const RANGED: Decision = Decision::Proceed { use_range: true };
    use Decision::{NotModified as NM, PreconditionFailed as PF};

    #[test]
    fn no_conditions() {
        assert_eq!(get(&[]), FULL);
        assert_eq!(get(&[("range", "bytes=0-1")]), RANGED);
    }

    #[test]
    fn if_match_is_strong_and_star_matches() {
        assert_eq!(get(&[("if-match", TAG)]), FULL);
        assert_eq!(get(&[("if-match", "*")]), FULL);
        assert_eq!(get(&[("if-match", "\"x\", \"abc123\"")]), FULL);
        assert_eq!(get(&[("if-match", "\"x\""), ("if-match", TAG)]), FULL);
        assert_eq!(get(&[("if-match", "W/\"abc123\"")]), PF);
        assert_eq!(get(&[("if-match", "\"nope\"")]), PF);
        assert_eq!(get(&[("if-match", "abc123")]), PF);
    }

    #[test]
    fn if_unmodified_since_only_without_if_match() {
        assert_eq!(get(&[("if-unmodified-since", &date(LM - 10))]), PF);
        assert_eq!(get(&[("if-unmodified-since", &date(LM))]), FULL);
        // If-Match present and true: the stale date is not evaluated (nginx gets this wrong).
        assert_eq!(
            get(&[("if-match", TAG), ("if-unmodified-since", &date(LM - 10))]),
            FULL
        );
        // Unparseable or several dates: ignored.
        assert_eq!(get(&[("if-unmodified-since", "yesterday")]), FULL);
        assert_eq!(
            get(&[
                ("if-unmodified-since", &date(LM - 10)),
                ("if-unmodified-since", &date(LM - 10))
            ]),
            FULL
        );
    }

    #[test]
    fn if_none_match_is_weak_and_304_or_412() {
        assert_eq!(get(&[("if-none-match", TAG)]), NM);
        assert_eq!(get(&[("if-none-match", "W/\"abc123\"")]), NM);
        assert_eq!(get(&[("if-none-match", "*")]), NM);
        assert_eq!(get(&[("if-none-match", "\"a\", \"b\"")]), FULL);
        assert_eq!(run(Method::HEAD, &[("if-none-match", TAG)], &v()), NM);
        assert_eq!(run(Method::POST, &[("if-none-match", TAG)], &v()), PF);
    }

    #[test]
    fn our_tag_alone_is_compared_as_bytes_but_only_alone() {
        // The byte comparison answers one line that is exactly our tag; a second line makes it a
        // list again, parsed as a whole (and an unparseable list matches nothing).
        assert_eq!(
            get(&[("if-none-match", TAG), ("if-none-match", "\"x\"")]),
            NM
        );
        assert_eq!(
            get(&[("if-none-match", TAG), ("if-none-match", "bad")]),
            FULL
        );
        assert_eq!(get(&[("if-match", TAG), ("if-match", "bad")]), PF);
        assert_eq!(get(&[("if-none-match", &format!(" {TAG} "))]), NM);
        // A weak tag of ours never passes If-Match (strong comparison), even written exactly.
        let weak = Validators {
            etag: Some("W/\"abc123\""),
            ..v()
        };
        assert_eq!(run(Method::GET, &[("if-match", "W/\"abc123\"")], &weak), PF);
        assert_eq!(
            run(Method::GET, &[("if-none-match", "W/\"abc123\"")], &weak),
            NM
        );
    }

    #[test]
    fn if_modified_since_only_without_if_none_match() {
        assert_eq!(get(&[("if-modified-since", &date(LM))]), NM);
        assert_eq!(get(&[("if-modified-since", &date(LM + 5))]), NM);
        assert_eq!(get(&[("if-modified-since", &date(LM - 1))]), FULL);
        // If-None-Match present and not matching: the date says "not modified" but is ignored.
        assert_eq!(
            get(&[
                ("if-none-match", "\"old\""),
                ("if-modified-since", &date(LM))
            ]),
            FULL
        );
        // If-None-Match matching, stale date: still 304 (nginx answers 200 here).
        assert_eq!(
            get(&[
                ("if-none-match", TAG),
                ("if-modified-since", &date(LM - 100))
            ]),
            NM
        );
        assert_eq!(
            run(Method::POST, &[("if-modified-since", &date(LM))], &v()),
            FULL
        );
        assert_eq!(get(&[("if-modified-since", "not a date")]), FULL);
        // The obsolete formats are accepted (§5.6.7).
        assert_eq!(
            get(&[("if-modified-since", "Tuesday, 14-Nov-23 22:13:20 GMT")]),
            NM
        );
        assert_eq!(
            get(&[("if-modified-since", "Tue Nov 14 22:13:20 2023")]),
            NM
        );
    }

    #[test]
    fn preconditions_come_before_ranges() {
        assert_eq!(get(&[("if-none-match", TAG), ("range", "bytes=0-1")]), NM);
        assert_eq!(get(&[("if-match", "\"x\""), ("range", "bytes=0-1")]), PF);
        assert_eq!(
            get(&[
                ("if-unmodified-since", &date(LM - 1)),
                ("range", "bytes=0-1")
            ]),
            PF
        );
        assert_eq!(
            get(&[("if-modified-since", &date(LM)), ("range", "bytes=0-1")]),
            NM
        );
        // If-Match succeeds, then If-Range decides the range.
        assert_eq!(
            get(&[
                ("if-match", TAG),
                ("range", "bytes=0-1"),
                ("if-range", "\"x\"")
            ]),
            FULL
        );
    }

    #[test]
    fn if_range_etag_is_strong_only() {
        let r = ("range", "bytes=0-1");
        assert_eq!(get(&[r, ("if-range", TAG)]), RANGED);
        assert_eq!(get(&[r, ("if-range", "\"other\"")]), FULL);
        assert_eq!(get(&[r, ("if-range", "W/\"abc123\"")]), FULL);
        assert_eq!(get(&[r, ("if-range", "\"abc123\", \"x\"")]), FULL);
        assert_eq!(get(&[r, ("if-range", "garbage")]), FULL);
        // Without Range, If-Range is ignored; on HEAD the Range itself is.
        assert_eq!(get(&[("if-range", "\"other\"")]), FULL);
        assert_eq!(run(Method::HEAD, &[r, ("if-range", TAG)], &v()), FULL);
    }

    #[test]
    fn if_range_date_exact_and_strong() {
        let r = ("range", "bytes=0-1");
        assert_eq!(get(&[r, ("if-range", &date(LM))]), RANGED);
        assert_eq!(get(&[r, ("if-range", &date(LM + 1))]), FULL);
        assert_eq!(get(&[r, ("if-range", &date(LM - 1))]), FULL);
        let weak = Validators {
            last_modified_is_strong: false,
            ..v()
        };
        assert_eq!(run(Method::GET, &[r, ("if-range", &date(LM))], &weak), FULL);
    }

    #[test]
    fn tags_parse() {
        assert_eq!(parse_tags(" , \"a\" ,W/\"b\",, ").unwrap().len(), 2);
        assert!(parse_tags("\"a").is_none());
        assert!(parse_tags("\"a\" x").is_none());
        assert!(parse_tags("\"a b\"").is_none());
        assert_eq!(parse_tags("").unwrap().len(), 0);
    }

    fn last_modified_for(mtime: SystemTime, date: SystemTime) -> (SystemTime, bool) {
        let (lm, strong) = last_modified_secs(unix_secs(mtime), unix_secs(date));
        (at(lm), strong)
    }

    #[test]
    fn last_modified_rules() {
        // Older than Date by a second or more: strong.
        assert_eq!(last_modified_for(at(10), at(11)), (at(10), true));
        // Same second: weak. Sub-second parts are dropped.
        let t = at(10) + Duration::from_millis(900);
        assert_eq!(
            last_modified_for(t, at(10) + Duration::from_millis(950)),
            (at(10), false)
        );
        // In the future: replaced by the Date, and weak.
        assert_eq!(last_modified_for(at(100), at(50)), (at(50), false));
    }
}
