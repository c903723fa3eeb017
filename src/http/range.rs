//! `Range` parsing and planning (RFC 9110 §14): a pure function from a header value and a
//! representation length to what the response carries.

use http::HeaderValue;

/// A non-empty run of bytes `[start, end)` inside the representation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// The first byte.
    pub start: u64,
    /// Exclusive.
    pub end: u64,
}

impl ByteRange {
    /// How many bytes.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Whether it holds no byte.
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// The inclusive last position, as `Content-Range` writes it.
    pub fn last(&self) -> u64 {
        self.end - 1
    }
}

/// What to send for a GET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangePlan {
    /// 200 with the whole representation: no Range, an unparseable one, or one we refuse to honour.
    Full,
    /// 206 with one `Content-Range`.
    Single(ByteRange),
    /// 206 `multipart/byteranges`, parts in the order first requested, disjoint and not adjacent.
    Multi(Vec<ByteRange>),
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// One `range-spec` as written by the client (§14.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spec {
    /// `first-` or `first-last`; `last` may lie past the end (it is clipped).
    Int { first: u64, last: Option<u64> },
    /// `-suffix`.
    Suffix(u64),
}

/// Plan the response to a GET with this `Range` header over `len` bytes.
pub fn plan(header: Option<&HeaderValue>, len: u64, max_ranges: usize) -> RangePlan {
    let Some(specs) = header.and_then(|h| parse(h.as_bytes())) else {
        return RangePlan::Full;
    };
    // Abuse guard: a request never costs more than the file plus multipart framing.
    if specs.len() > max_ranges {
        return RangePlan::Full;
    }
    // The common case, one range: nothing to merge (and no vectors to merge it in).
    if let [only] = specs[..] {
        return satisfiable(only, len).map_or(RangePlan::Unsatisfiable, RangePlan::Single);
    }
    let ranges: Vec<ByteRange> = specs
        .into_iter()
        .filter_map(|spec| satisfiable(spec, len))
        .collect();
    if ranges.is_empty() {
        return RangePlan::Unsatisfiable;
    }
    // Overlapping ranges asking for more than the whole file are an attack or a confused
    // client (Go, nginx and Apache agree): send the whole file once.
    // Summed in u128: a saturating u64 sum could equal a length of u64::MAX (found by fuzzing).
    let total: u128 = ranges.iter().map(|r| u128::from(r.len())).sum();
    if total > u128::from(len) {
        return RangePlan::Full;
    }
    let mut merged = coalesce(ranges);
    if merged.len() == 1 {
        RangePlan::Single(merged.remove(0))
    } else {
        RangePlan::Multi(merged)
    }
}

/// The part of a `len`-byte representation that `spec` asks for, if any. §14.1.1: an
/// int-range is satisfiable when first < len; a suffix when its length is > 0. The RFC also
/// allows a non-zero suffix on an empty representation, but `Content-Range` cannot express an
/// empty range, so every range of an empty file is answered with 416.
fn satisfiable(spec: Spec, len: u64) -> Option<ByteRange> {
    match spec {
        Spec::Int { first, last } if first < len => Some(ByteRange {
            start: first,
            end: last.map_or(len, |l| l.saturating_add(1).min(len)),
        }),
        Spec::Suffix(n) if n > 0 && len > 0 => Some(ByteRange {
            start: len - n.min(len),
            end: len,
        }),
        _ => None,
    }
}

/// Merge overlapping and adjacent ranges (§14.2 allows it). Each merged range takes the place of
/// the earliest request it absorbed, so parts keep the order they were asked for (§15.3.7.2).
fn coalesce(ranges: Vec<ByteRange>) -> Vec<ByteRange> {
    let mut by_start: Vec<(ByteRange, usize)> = ranges
        .into_iter()
        .enumerate()
        .map(|(i, r)| (r, i))
        .collect();
    by_start.sort_unstable_by_key(|(r, _)| r.start);
    let mut groups: Vec<(ByteRange, usize)> = Vec::with_capacity(by_start.len());
    for (r, i) in by_start {
        match groups.last_mut() {
            Some((g, first)) if r.start <= g.end => {
                g.end = g.end.max(r.end);
                *first = (*first).min(i);
            }
            _ => groups.push((r, i)),
        }
    }
    groups.sort_unstable_by_key(|&(_, first)| first);
    groups.into_iter().map(|(r, _)| r).collect()
}

/// Parse `bytes=...` (§14.1.2); `None` means the header is to be ignored.
fn parse(value: &[u8]) -> Option<Vec<Spec>> {
    let value = trim_ows(value);
    let eq = value.iter().position(|&b| b == b'=')?;
    let (unit, set) = (&value[..eq], &value[eq + 1..]);
    // Range units are case-insensitive (§14.1); any other unit is ignored (§14.2).
    if !unit.eq_ignore_ascii_case(b"bytes") {
        return None;
    }
    let mut specs = Vec::new();
    // §5.6.1: a list allows empty elements and OWS around the commas.
    for element in set.split(|&b| b == b',') {
        let element = trim_ows(element);
        if element.is_empty() {
            continue;
        }
        specs.push(parse_spec(element)?);
    }
    // range-set = 1#range-spec: at least one.
    if specs.is_empty() {
        None
    } else {
        Some(specs)
    }
}

fn parse_spec(spec: &[u8]) -> Option<Spec> {
    let dash = spec.iter().position(|&b| b == b'-')?;
    let (first, last) = (&spec[..dash], &spec[dash + 1..]);
    if first.is_empty() {
        return Some(Spec::Suffix(digits(last)?));
    }
    let first = digits(first)?;
    let last = if last.is_empty() {
        None
    } else {
        Some(digits(last)?)
    };
    // §14.1.1: a last-pos below first-pos makes the range-spec invalid.
    if last.is_some_and(|l| l < first) {
        return None;
    }
    Some(Spec::Int { first, last })
}

/// `1*DIGIT`, nothing else (no sign, no spaces). Values beyond u64 saturate: they are past the
/// end of any representation anyway, and still parse as the grammar says.
fn digits(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |acc, &d| {
        acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(h: &str, len: u64) -> RangePlan {
        plan(Some(&HeaderValue::from_str(h).unwrap()), len, 100)
    }
    fn r(start: u64, end: u64) -> ByteRange {
        ByteRange { start, end }
    }

    #[test]
    fn forms() {
        assert_eq!(p("bytes=0-9", 26), RangePlan::Single(r(0, 10)));
        assert_eq!(p("bytes=20-", 26), RangePlan::Single(r(20, 26)));
        assert_eq!(p("bytes=-5", 26), RangePlan::Single(r(21, 26)));
        assert_eq!(p("BYTES=0-0", 26), RangePlan::Single(r(0, 1)));
        assert_eq!(p("bytes=25-25", 26), RangePlan::Single(r(25, 26)));
    }

    #[test]
    fn clipping_and_suffixes() {
        assert_eq!(p("bytes=10-1000", 26), RangePlan::Single(r(10, 26)));
        assert_eq!(p("bytes=-100", 26), RangePlan::Single(r(0, 26)));
        assert_eq!(p("bytes=0-", 26), RangePlan::Single(r(0, 26)));
        assert_eq!(
            p("bytes=0-99999999999999999999999999", 26),
            RangePlan::Single(r(0, 26))
        );
    }

    #[test]
    fn unsatisfiable() {
        assert_eq!(p("bytes=26-", 26), RangePlan::Unsatisfiable);
        assert_eq!(p("bytes=-0", 26), RangePlan::Unsatisfiable);
        assert_eq!(p("bytes=30-40, 50-", 26), RangePlan::Unsatisfiable);
        assert_eq!(p("bytes=0-0", 0), RangePlan::Unsatisfiable);
        assert_eq!(p("bytes=-5", 0), RangePlan::Unsatisfiable);
        assert_eq!(
            p("bytes=99999999999999999999999-", 26),
            RangePlan::Unsatisfiable
        );
    }

    #[test]
    fn ignored() {
        for h in [
            "bytes=abc",
            "bytes=+1-2",
            "bytes=1-+2",
            "bytes=5-2",
            "bytes = 0-1",
            "bytes=0 -1",
            "items=0-5",
            "bytes=",
            "bytes=,,",
            "bytes=--5",
            "bytes=1-2-3",
            "0-5",
            "bytes=0x1-2",
        ] {
            assert_eq!(p(h, 26), RangePlan::Full, "{h}");
        }
    }

    #[test]
    fn whitespace_and_empty_elements() {
        assert_eq!(
            p(" \tbytes=0-1 ,\t, 4-5 ,", 26),
            RangePlan::Multi(vec![r(0, 2), r(4, 6)])
        );
    }

    #[test]
    fn multi_keeps_request_order_and_merges() {
        assert_eq!(
            p("bytes=20-21,0-1", 26),
            RangePlan::Multi(vec![r(20, 22), r(0, 2)])
        );
        // Adjacent and overlapping collapse to one plain range.
        assert_eq!(p("bytes=0-4,5-9", 26), RangePlan::Single(r(0, 10)));
        assert_eq!(p("bytes=3-8,0-4", 26), RangePlan::Single(r(0, 9)));
        // A merged group sits where its earliest member was asked for.
        assert_eq!(
            p("bytes=20-21,0-1,2-3", 26),
            RangePlan::Multi(vec![r(20, 22), r(0, 4)])
        );
        assert_eq!(
            p("bytes=10-11,20-21,9-9", 26),
            RangePlan::Multi(vec![r(9, 12), r(20, 22)])
        );
        // Unsatisfiable members are dropped.
        assert_eq!(
            p("bytes=100-200,0-1,5-6", 26),
            RangePlan::Multi(vec![r(0, 2), r(5, 7)])
        );
    }

    #[test]
    fn abuse_guards() {
        assert_eq!(p("bytes=0-,0-", 26), RangePlan::Full);
        let many = (0..101)
            .map(|i| format!("{i}-{i}"))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(p(&format!("bytes={many}"), 1000), RangePlan::Full);
        let ok = (0..100)
            .map(|i| format!("{}-{}", 2 * i, 2 * i))
            .collect::<Vec<_>>()
            .join(",");
        assert!(matches!(p(&format!("bytes={ok}"), 1000), RangePlan::Multi(v) if v.len() == 100));
    }

    #[test]
    fn overlap_guard_does_not_saturate_at_the_largest_length() {
        // Found by fuzz/fuzz_targets/range.rs: 255 + 255 + u64::MAX bytes saturated to
        // u64::MAX, which is not more than the length, so the overlap was planned as a 206.
        assert_eq!(p("bytes=-255,-255,0-", u64::MAX), RangePlan::Full);
        assert_eq!(p("bytes=0-,0-", u64::MAX), RangePlan::Full);
        assert_eq!(
            p("bytes=0-0,2-", u64::MAX),
            RangePlan::Multi(vec![r(0, 1), r(2, u64::MAX)])
        );
    }

    #[test]
    fn no_header_or_non_ascii() {
        assert_eq!(plan(None, 26, 100), RangePlan::Full);
        let h = HeaderValue::from_bytes(b"bytes=0-1\xff").unwrap();
        assert_eq!(plan(Some(&h), 26, 100), RangePlan::Full);
    }

    // ---- Property test against an independent model ----------------------------------------

    /// A spec as the model sees it; rendered to text with random spelling below.
    #[derive(Debug, Clone)]
    enum M {
        FirstLast(u64, u64),
        From(u64),
        Suffix(u64),
    }

    fn arb_spec() -> impl Strategy<Value = M> {
        prop_oneof![
            (0u64..40, 0u64..40).prop_map(|(a, b)| M::FirstLast(a.min(b), a.max(b))),
            (0u64..40).prop_map(M::From),
            (0u64..40).prop_map(M::Suffix),
        ]
    }

    fn render(specs: &[M], ws: &[usize], upper: bool) -> String {
        let pad = |i: usize| [" ", "", "\t", "  ", ""][ws[i % ws.len()] % 5];
        let parts: Vec<String> = specs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let body = match s {
                    M::FirstLast(a, b) => format!("{a}-{b}"),
                    M::From(a) => format!("{a}-"),
                    M::Suffix(n) => format!("-{n}"),
                };
                format!("{}{}{}", pad(i), body, pad(i + 1))
            })
            .collect();
        format!(
            "{}={}",
            if upper { "Bytes" } else { "bytes" },
            parts.join(",")
        )
    }

    /// What the response must carry, computed byte by byte with no merging logic.
    /// Returns None for a 200, Some(None) for 416, Some(Some(bytes in order)) for 206.
    fn model(specs: &[M], len: u64, max: usize) -> Option<Option<Vec<u64>>> {
        if specs.len() > max {
            return None;
        }
        let mut sets: Vec<Vec<u64>> = Vec::new();
        for s in specs {
            let (a, b) = match *s {
                M::FirstLast(a, b) => (a, b.min(len.saturating_sub(1))),
                M::From(a) => (a, len.saturating_sub(1)),
                M::Suffix(n) => (len.saturating_sub(n), len.saturating_sub(1)),
            };
            let satisfiable = match *s {
                M::Suffix(n) => n > 0 && len > 0,
                M::FirstLast(a, _) | M::From(a) => a < len,
            };
            if satisfiable {
                sets.push((a..=b).collect());
            }
        }
        if sets.is_empty() {
            return Some(None);
        }
        if sets.iter().map(|s| s.len() as u64).sum::<u64>() > len {
            return None;
        }
        // Bytes covered, each labelled by the earliest request index that touches its
        // connected component (bytes connected through overlap or adjacency).
        let covered: Vec<bool> = (0..len)
            .map(|b| sets.iter().any(|s| s.contains(&b)))
            .collect();
        let mut components: Vec<(usize, Vec<u64>)> = Vec::new();
        let mut b = 0;
        while b < len {
            if covered[b as usize] {
                let start = b;
                while b < len && covered[b as usize] {
                    b += 1;
                }
                let bytes: Vec<u64> = (start..b).collect();
                let first = sets
                    .iter()
                    .position(|s| s.iter().any(|x| bytes.contains(x)))
                    .unwrap();
                components.push((first, bytes));
            } else {
                b += 1;
            }
        }
        components.sort_by_key(|c| c.0);
        Some(Some(components.into_iter().flat_map(|c| c.1).collect()))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn plan_matches_model(
            specs in proptest::collection::vec(arb_spec(), 1..8),
            len in 0u64..60,
            max in 1usize..10,
            ws in proptest::collection::vec(0usize..5, 1..10),
            upper in any::<bool>(),
        ) {
            let header = render(&specs, &ws, upper);
            let got = plan(Some(&HeaderValue::from_str(&header).unwrap()), len, max);
            let bytes_of = |rs: &[ByteRange]| rs.iter().flat_map(|r| r.start..r.end).collect::<Vec<u64>>();
            match (model(&specs, len, max), &got) {
                (None, RangePlan::Full) => {}
                (Some(None), RangePlan::Unsatisfiable) => {}
                (Some(Some(want)), RangePlan::Single(r)) => prop_assert_eq!(bytes_of(&[*r]), want),
                (Some(Some(want)), RangePlan::Multi(rs)) => {
                    prop_assert!(rs.len() >= 2);
                    prop_assert_eq!(bytes_of(rs), want);
                    // Parts never touch: they would have been merged.
                    for (i, a) in rs.iter().enumerate() {
                        for b in &rs[i + 1..] {
                            prop_assert!(a.end < b.start || b.end < a.start, "{:?} {:?}", a, b);
                        }
                    }
                }
                (want, got) => prop_assert!(false, "header {header:?} len {len}: model {want:?}, plan {got:?}"),
            }
        }

        #[test]
        fn arbitrary_headers_never_reach_past_the_end(h in "[ -~\t]{0,40}", len in 0u64..1000) {
            if let Ok(v) = HeaderValue::from_str(&h) {
                match plan(Some(&v), len, 100) {
                    RangePlan::Single(r) => prop_assert!(r.start < r.end && r.end <= len),
                    RangePlan::Multi(rs) => {
                        prop_assert!(rs.len() >= 2);
                        prop_assert!(rs.iter().all(|r| r.start < r.end && r.end <= len));
                        prop_assert!(rs.iter().map(|r| r.len()).sum::<u64>() <= len);
                    }
                    RangePlan::Full | RangePlan::Unsatisfiable => {}
                }
            }
        }

        #[test]
        fn range_like_headers_never_reach_past_the_end(h in "(bytes|BYTES|x)=[0-9, \t-]{0,30}", len in 0u64..50) {
            let v = HeaderValue::from_str(&h).unwrap();
            if let RangePlan::Single(r) = plan(Some(&v), len, 100) {
                prop_assert!(r.start < r.end && r.end <= len);
            }
            if let RangePlan::Multi(rs) = plan(Some(&v), len, 100) {
                prop_assert!(rs.iter().all(|r| r.start < r.end && r.end <= len));
            }
        }
    }
}
