//! `Range` parsing and planning (`rangeserve::http::range::plan`) against an independent
//! model: the header is parsed again here with plain `str` functions, and the plan is checked
//! to be exactly the connected components of the satisfiable requested ranges, in request
//! order, never past the end of the representation and never more parts than allowed.
#![no_main]

use arbitrary::Arbitrary;
use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use rangeserve::http::range::{plan, ByteRange, RangePlan};

#[derive(Arbitrary, Debug)]
enum Input {
    /// Any header value at all.
    Raw { header: Vec<u8>, len: Len, max: u16 },
    /// A well-formed header built from specs, spelled with random whitespace and case.
    Specs {
        specs: Vec<SpecIn>,
        len: Len,
        max: u16,
        spelling: Vec<u8>,
    },
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Len {
    Small(u8),
    Any(u64),
}

impl Len {
    fn get(self) -> u64 {
        match self {
            Len::Small(n) => u64::from(n),
            Len::Any(n) => n,
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum SpecIn {
    FirstLast(u64, u64),
    From(u64),
    Suffix(u64),
    SmallFirstLast(u8, u8),
    SmallFrom(u8),
    SmallSuffix(u8),
}

fn render(specs: &[SpecIn], spelling: &[u8]) -> String {
    let pick = |i: usize| spelling.get(i).copied().unwrap_or(0);
    let pad = |i: usize| [" ", "", "\t", "  ", "", ",", " , "][usize::from(pick(i)) % 7];
    let unit = ["bytes", "BYTES", "Bytes", "bYtEs"][usize::from(pick(0)) % 4];
    let parts: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let body = match *s {
                SpecIn::FirstLast(a, b) => format!("{}-{}", a.min(b), a.max(b)),
                SpecIn::SmallFirstLast(a, b) => format!("{}-{}", a.min(b), a.max(b)),
                SpecIn::From(a) => format!("{a}-"),
                SpecIn::SmallFrom(a) => format!("{a}-"),
                SpecIn::Suffix(n) => format!("-{n}"),
                SpecIn::SmallSuffix(n) => format!("-{n}"),
            };
            format!("{}{}{}", pad(2 * i + 1), body, pad(2 * i + 2))
        })
        .collect();
    format!("{unit}={}", parts.join(","))
}

/// One range-spec as this model reads it.
#[derive(Debug, Clone, Copy)]
enum Spec {
    Int(u64, Option<u64>),
    Suffix(u64),
}

/// RFC 9110 §14.1.2 re-read with `str` tools: `None` when the header must be ignored.
fn model_parse(h: &HeaderValue) -> Option<Vec<Spec>> {
    // Non-ASCII (obs-text) can never be part of a valid byte-range set.
    let s = h.to_str().ok()?.trim_matches([' ', '\t']);
    let (unit, set) = s.split_once('=')?;
    if !unit.eq_ignore_ascii_case("bytes") {
        return None;
    }
    let num = |t: &str| -> Option<u64> {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // All digits: the only way to fail is overflow, and huge is past any end anyway.
        Some(t.parse::<u64>().unwrap_or(u64::MAX))
    };
    let mut out = Vec::new();
    for el in set.split(',') {
        let el = el.trim_matches([' ', '\t']);
        if el.is_empty() {
            continue;
        }
        let (a, b) = el.split_once('-')?;
        if a.is_empty() {
            out.push(Spec::Suffix(num(b)?));
        } else {
            let a = num(a)?;
            let b = if b.is_empty() { None } else { Some(num(b)?) };
            if b.is_some_and(|b| b < a) {
                return None;
            }
            out.push(Spec::Int(a, b));
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The satisfiable requests as half-open intervals, with their request index.
fn satisfiable(specs: &[Spec], len: u64) -> Vec<(u64, u64, usize)> {
    let mut out = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        match *s {
            Spec::Int(a, b) if a < len => {
                let end = match b {
                    Some(b) if b < len => b + 1,
                    _ => len,
                };
                out.push((a, end, i));
            }
            Spec::Suffix(n) if n > 0 && len > 0 => out.push((len - n.min(len), len, i)),
            _ => {}
        }
    }
    out
}

fn check(h: &HeaderValue, len: u64, max: usize) {
    let got = plan(Some(h), len, max);
    // Invariants that hold whatever the header: nothing past the end, no empty part.
    let parts: Vec<ByteRange> = match &got {
        RangePlan::Full | RangePlan::Unsatisfiable => Vec::new(),
        RangePlan::Single(r) => vec![*r],
        RangePlan::Multi(rs) => {
            assert!(rs.len() >= 2, "a Multi plan of {} part(s)", rs.len());
            rs.clone()
        }
    };
    for r in &parts {
        assert!(r.start < r.end && r.end <= len, "{r:?} over len {len}");
    }
    assert!(
        parts.len() <= max,
        "{} parts, max_ranges {max}",
        parts.len()
    );
    let total: u64 = parts.iter().map(|r| r.end - r.start).sum();
    assert!(total <= len, "{total} bytes planned over {len}");

    // The model's answer.
    let Some(specs) = model_parse(h) else {
        assert_eq!(got, RangePlan::Full, "an ignorable header planned");
        return;
    };
    if specs.len() > max {
        assert_eq!(got, RangePlan::Full, "{} specs over max {max}", specs.len());
        return;
    }
    let sat = satisfiable(&specs, len);
    if sat.is_empty() {
        assert_eq!(got, RangePlan::Unsatisfiable);
        return;
    }
    let asked: u128 = sat.iter().map(|&(a, b, _)| u128::from(b - a)).sum();
    if asked > u128::from(len) {
        assert_eq!(got, RangePlan::Full, "{asked} bytes asked of {len}");
        return;
    }
    assert!(
        !parts.is_empty(),
        "satisfiable ranges {sat:?} of {len} gave {got:?}"
    );
    // The parts are exactly the connected components (overlap or adjacency) of the requests:
    // (a) parts never touch each other;
    for (i, p) in parts.iter().enumerate() {
        for q in &parts[i + 1..] {
            assert!(p.end < q.start || q.end < p.start, "{p:?} touches {q:?}");
        }
    }
    // (b) every request lies inside one part;
    let owner = |&(a, b, _): &(u64, u64, usize)| {
        parts
            .iter()
            .position(|p| p.start <= a && b <= p.end)
            .unwrap_or_else(|| panic!("request {a}..{b} is in no part of {parts:?}"))
    };
    // (c) every part is covered by the requests inside it, with no hole;
    for (k, p) in parts.iter().enumerate() {
        let mut inside: Vec<(u64, u64)> = sat
            .iter()
            .filter(|r| owner(r) == k)
            .map(|&(a, b, _)| (a, b))
            .collect();
        inside.sort_unstable();
        let mut reach = p.start;
        for (a, b) in inside {
            assert!(a <= reach, "hole {reach}..{a} in part {p:?}");
            reach = reach.max(b);
        }
        assert_eq!(reach, p.end, "part {p:?} covered only to {reach}");
    }
    // (d) parts come in the order of their earliest request.
    let firsts: Vec<usize> = (0..parts.len())
        .map(|k| {
            sat.iter()
                .filter(|r| owner(r) == k)
                .map(|r| r.2)
                .min()
                .unwrap()
        })
        .collect();
    assert!(
        firsts.windows(2).all(|w| w[0] < w[1]),
        "parts out of request order: {firsts:?}"
    );
}

fuzz_target!(|input: Input| {
    let (header, len, max) = match input {
        Input::Raw { header, len, max } => (header, len, max),
        Input::Specs {
            specs,
            len,
            max,
            spelling,
        } => (render(&specs, &spelling).into_bytes(), len, max),
    };
    let Ok(h) = HeaderValue::from_bytes(&header) else {
        return;
    };
    check(&h, len.get(), usize::from(max));
    assert_eq!(plan(None, len.get(), usize::from(max)), RangePlan::Full);
});
