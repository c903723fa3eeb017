//! Precondition evaluation (`rangeserve::http::preconditions::decide`, RFC 9110 §13.2.2) over
//! arbitrary header sets.
//!
//! Two inputs: raw header sets (any names among the conditional ones and a few others, any
//! bytes as values), checked against invariants and metamorphic relations; and header sets
//! built from parts whose outcome is known by construction (our tag or another one, strong or
//! weak, a date before, at or after Last-Modified in any of the three date formats, several
//! field lines, garbage), checked against a model of the §13.2.2 steps.
#![no_main]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;
use rangeserve::http::preconditions::{decide, Decision, Validators};

const TAG: &str = "\"5d41402abc4b2a76\"";
/// The last second whose two-digit RFC 850 year still reads back as itself (2069-12-31).
const MAX_SECS: i64 = 3_155_759_999;

#[derive(Arbitrary, Debug)]
enum Input {
    Raw(Raw),
    Built(Built),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum MethodIn {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
}

impl MethodIn {
    fn get(self) -> Method {
        match self {
            MethodIn::Get => Method::GET,
            MethodIn::Head => Method::HEAD,
            MethodIn::Post => Method::POST,
            MethodIn::Put => Method::PUT,
            MethodIn::Delete => Method::DELETE,
            MethodIn::Options => Method::OPTIONS,
        }
    }
}

// ---- Raw header sets ---------------------------------------------------------------------------

const NAMES: [&str; 8] = [
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "if-range",
    "range",
    "accept",
    "x-other",
];
const CONDITIONAL: [&str; 5] = [
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "if-range",
];

#[derive(Arbitrary, Debug)]
struct Raw {
    method: MethodIn,
    headers: Vec<(u8, Vec<u8>)>,
    etag: Option<String>,
    last_modified: Option<u64>,
    strong: bool,
}

fn without(h: &HeaderMap, names: &[&str]) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (k, v) in h {
        if !names.contains(&k.as_str()) {
            out.append(k.clone(), v.clone());
        }
    }
    out
}

fn raw(input: Raw) {
    let mut h = HeaderMap::new();
    for (n, v) in &input.headers {
        if let Ok(v) = HeaderValue::from_bytes(v) {
            h.append(
                HeaderName::from_static(NAMES[usize::from(*n) % NAMES.len()]),
                v,
            );
        }
    }
    let v = Validators {
        etag: input.etag.as_deref(),
        last_modified: input
            .last_modified
            .and_then(|s| UNIX_EPOCH.checked_add(Duration::from_secs(s))),
        last_modified_is_strong: input.strong,
    };
    let method = input.method.get();
    let get_or_head = method == Method::GET || method == Method::HEAD;
    let d = decide(&method, &h, &v);
    let has = |n: &str| h.contains_key(n);

    // Without any conditional header the method is always performed, ranged when asked.
    if !CONDITIONAL.iter().any(|n| has(n)) {
        assert_eq!(
            d,
            Decision::Proceed {
                use_range: method == Method::GET && has("range")
            }
        );
    }
    if d == Decision::NotModified {
        assert!(get_or_head, "304 for {method}");
    }
    if let Decision::Proceed { use_range: true } = d {
        assert!(method == Method::GET && has("range"), "ranged {method}");
    }
    // Other fields never matter.
    assert_eq!(d, decide(&method, &without(&h, &["accept", "x-other"]), &v));
    // §13.2.2 step 2 and step 4 run only when the field of step 1 or 3 is absent.
    if has("if-match") {
        assert_eq!(
            d,
            decide(&method, &without(&h, &["if-unmodified-since"]), &v)
        );
    }
    if has("if-none-match") {
        assert_eq!(d, decide(&method, &without(&h, &["if-modified-since"]), &v));
    }
    // If-Range is evaluated only for a GET with Range (§13.1.5).
    if method != Method::GET || !has("range") {
        assert_eq!(d, decide(&method, &without(&h, &["if-range"]), &v));
    }
    // HEAD decides exactly as GET, but never for a range.
    if method == Method::GET {
        let head = match d {
            Decision::Proceed { .. } => Decision::Proceed { use_range: false },
            other => other,
        };
        assert_eq!(head, decide(&Method::HEAD, &h, &v));
    }
    // If-None-Match `*` alone, with no step-1/2 field: 304 on GET/HEAD, 412 otherwise.
    if !has("if-match") && !has("if-unmodified-since") {
        let inm: Vec<_> = h.get_all("if-none-match").iter().collect();
        if let [only] = inm.as_slice() {
            if only.as_bytes().trim_ascii() == b"*" {
                let want = if get_or_head {
                    Decision::NotModified
                } else {
                    Decision::PreconditionFailed
                };
                assert_eq!(d, want);
            }
        }
    }
}

// ---- Built header sets, with a model -----------------------------------------------------------

#[derive(Arbitrary, Debug, Clone, Copy)]
enum TagIn {
    Ours,
    OursWeak,
    Other(u8),
    OtherWeak(u8),
}

#[derive(Arbitrary, Debug)]
enum TagHeader {
    Star,
    /// Field lines, each a list of tags.
    Lines(Vec<Vec<TagIn>>),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Format {
    Imf,
    Rfc850,
    Asctime,
}

#[derive(Arbitrary, Debug)]
enum DateHeader {
    /// Last-Modified plus this many seconds.
    One(i16, Format),
    /// Several field lines: the field is ignored.
    Many(Vec<(i16, Format)>),
    Garbage(u8),
}

#[derive(Arbitrary, Debug)]
enum IfRangeHeader {
    Tag(TagIn),
    Date(i16, Format),
    Several(TagIn, TagIn),
    Garbage(u8),
}

#[derive(Arbitrary, Debug)]
struct Built {
    method: MethodIn,
    has_etag: bool,
    last_modified: Option<u32>,
    strong: bool,
    if_match: Option<TagHeader>,
    if_none_match: Option<TagHeader>,
    if_modified_since: Option<DateHeader>,
    if_unmodified_since: Option<DateHeader>,
    if_range: Option<IfRangeHeader>,
    range: bool,
    spelling: Vec<u8>,
}

const GARBAGE: [&str; 8] = [
    "",
    "garbage",
    "W/",
    "\"unterminated",
    "\"a\" \"b\"",
    "\"a\", \"b\"",
    "Tue, 14 Nov 2023 25:61:61 GMT",
    "1700000000",
];

struct Spell<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Spell<'_> {
    fn next(&mut self) -> u8 {
        let b = self.bytes.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }
    fn ows(&mut self) -> &'static str {
        ["", " ", "\t", " \t ", ""][usize::from(self.next()) % 5]
    }
    fn sep(&mut self) -> &'static str {
        [",", ", ", " ,", ",,", " , ,\t"][usize::from(self.next()) % 5]
    }
}

fn tag(t: TagIn) -> String {
    let opaque = TAG.trim_matches('"');
    match t {
        TagIn::Ours => format!("\"{opaque}\""),
        TagIn::OursWeak => format!("W/\"{opaque}\""),
        TagIn::Other(n) => format!("\"o{n}\""),
        TagIn::OtherWeak(n) => format!("W/\"o{n}\""),
    }
}

fn tag_lines(lines: &[Vec<TagIn>], sp: &mut Spell) -> Vec<String> {
    lines
        .iter()
        .map(|tags| {
            let mut s = sp.ows().to_string();
            for (i, t) in tags.iter().enumerate() {
                if i > 0 {
                    s.push_str(sp.sep());
                }
                s.push_str(&tag(*t));
            }
            s.push_str(sp.ows());
            s
        })
        .collect()
}

/// The date as written, from an IMF-fixdate split into its fields.
fn date(secs: i64, f: Format) -> String {
    let imf = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs as u64));
    // "Tue, 14 Nov 2023 22:13:20 GMT"
    let (wd, day, mon, year, time) = (
        &imf[0..3],
        &imf[5..7],
        &imf[8..11],
        &imf[12..16],
        &imf[17..25],
    );
    match f {
        Format::Imf => imf.clone(),
        Format::Rfc850 => {
            let long = match wd {
                "Mon" => "Monday",
                "Tue" => "Tuesday",
                "Wed" => "Wednesday",
                "Thu" => "Thursday",
                "Fri" => "Friday",
                "Sat" => "Saturday",
                _ => "Sunday",
            };
            format!("{long}, {day}-{mon}-{} {time} GMT", &year[2..])
        }
        Format::Asctime => {
            let day = day.trim_start_matches('0');
            format!("{wd} {mon} {day:>2} {time} {year}")
        }
    }
}

fn at(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs as u64)
}

fn built(b: Built) {
    let mut sp = Spell {
        bytes: &b.spelling,
        at: 0,
    };
    let method = b.method.get();
    let get_or_head = method == Method::GET || method == Method::HEAD;
    let lm_secs: Option<i64> = b
        .last_modified
        .map(|s| i64::from(s).min(MAX_SECS - i64::from(i16::MAX)));
    let etag = b.has_etag.then_some(TAG);
    let v = Validators {
        etag,
        last_modified: lm_secs.map(at),
        last_modified_is_strong: b.strong,
    };
    let base = lm_secs.unwrap_or(1_700_000_000);
    let when = |off: i16| (base + i64::from(off)).clamp(0, MAX_SECS);

    let mut h = HeaderMap::new();
    fn add(h: &mut HeaderMap, name: &'static str, value: String) {
        h.append(name, HeaderValue::from_str(&value).unwrap());
    }

    // Each field's outcome, as the construction says: None (absent/ignored), Some(true/false).
    let tags_cond = |th: &TagHeader, sp: &mut Spell, weak: bool| -> (Vec<String>, Option<bool>) {
        match th {
            TagHeader::Star => (vec![format!("{}*{}", sp.ows(), sp.ows())], None),
            TagHeader::Lines(lines) => {
                let lines: Vec<Vec<TagIn>> = if lines.is_empty() {
                    vec![Vec::new()]
                } else {
                    lines.clone()
                };
                let matched = etag.is_some()
                    && lines.iter().flatten().any(|t| match t {
                        TagIn::Ours => true,
                        TagIn::OursWeak => weak,
                        _ => false,
                    });
                (tag_lines(&lines, sp), Some(matched))
            }
        }
    };

    // Step 1: If-Match. `Some(false)` fails; Star and a match pass.
    let if_match: Option<bool> = b.if_match.as_ref().map(|th| {
        let (lines, m) = tags_cond(th, &mut sp, false);
        for l in lines {
            add(&mut h, "if-match", l);
        }
        m.unwrap_or(true)
    });
    // Step 3: If-None-Match. true = the condition holds (no match).
    let if_none_match: Option<bool> = b.if_none_match.as_ref().map(|th| {
        let (lines, m) = tags_cond(th, &mut sp, true);
        for l in lines {
            add(&mut h, "if-none-match", l);
        }
        !m.unwrap_or(true)
    });
    // Dates: Some(secs) when exactly one valid date.
    let date_field =
        |h: &mut HeaderMap, name: &'static str, d: &DateHeader, sp: &mut Spell| -> Option<i64> {
            match d {
                DateHeader::One(off, f) => {
                    let s = when(*off);
                    add(h, name, format!("{}{}{}", sp.ows(), date(s, *f), sp.ows()));
                    Some(s)
                }
                DateHeader::Many(ds) => {
                    let ds: Vec<(i16, Format)> = match ds.len() {
                        0 => vec![(0, Format::Imf), (1, Format::Imf)],
                        1 => vec![ds[0], ds[0]],
                        _ => ds.clone(),
                    };
                    for (off, f) in ds {
                        add(h, name, date(when(off), f));
                    }
                    None
                }
                DateHeader::Garbage(g) => {
                    add(
                        h,
                        name,
                        GARBAGE[usize::from(*g) % GARBAGE.len()].to_string(),
                    );
                    None
                }
            }
        };
    let ims = b
        .if_modified_since
        .as_ref()
        .and_then(|d| date_field(&mut h, "if-modified-since", d, &mut sp));
    let ius = b
        .if_unmodified_since
        .as_ref()
        .and_then(|d| date_field(&mut h, "if-unmodified-since", d, &mut sp));
    // If-Range: true when it matches.
    let if_range: Option<bool> = b.if_range.as_ref().map(|ir| match ir {
        IfRangeHeader::Tag(t) => {
            add(
                &mut h,
                "if-range",
                format!("{}{}{}", sp.ows(), tag(*t), sp.ows()),
            );
            etag.is_some() && matches!(t, TagIn::Ours)
        }
        IfRangeHeader::Date(off, f) => {
            let s = when(*off);
            add(&mut h, "if-range", date(s, *f));
            b.strong && lm_secs == Some(s)
        }
        IfRangeHeader::Several(x, y) => {
            add(&mut h, "if-range", tag(*x));
            add(&mut h, "if-range", tag(*y));
            false
        }
        IfRangeHeader::Garbage(g) => {
            add(
                &mut h,
                "if-range",
                GARBAGE[usize::from(*g) % GARBAGE.len()].to_string(),
            );
            false
        }
    });
    if b.range {
        add(&mut h, "range", "bytes=0-0".to_string());
    }

    // The §13.2.2 steps over the known outcomes.
    let want = (|| {
        match if_match {
            Some(false) => return Decision::PreconditionFailed,
            Some(true) => {}
            None => {
                if let (Some(d), Some(lm)) = (ius, lm_secs) {
                    if lm > d {
                        return Decision::PreconditionFailed;
                    }
                }
            }
        }
        match if_none_match {
            Some(false) if get_or_head => return Decision::NotModified,
            Some(false) => return Decision::PreconditionFailed,
            Some(true) => {}
            None => {
                if let (Some(d), Some(lm), true) = (ims, lm_secs, get_or_head) {
                    if lm <= d {
                        return Decision::NotModified;
                    }
                }
            }
        }
        Decision::Proceed {
            use_range: method == Method::GET && b.range && if_range != Some(false),
        }
    })();
    let got = decide(&method, &h, &v);
    assert_eq!(got, want, "{method} {h:?} over {v:?}");
}

fuzz_target!(|input: Input| {
    match input {
        Input::Raw(r) => raw(r),
        Input::Built(b) => built(b),
    }
});
