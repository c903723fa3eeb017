//! A page of entries as HTML (small, valid, no external asset; one inline script, only when a
//! hash is shown, for its copy buttons) or as JSON.
//!
//! Every name is escaped for where it lands: `html_escape` for text and attribute values,
//! percent-encoding of everything but the unreserved characters (RFC 3986 §2.3) for a name in a
//! URL, so `#`, `?`, `%`, spaces and non-ASCII never change what a link points at.

use std::fmt::Write;
use std::time::{Duration, UNIX_EPOCH};

use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Serialize;

use super::query::{Order, Params, Sort};
use crate::fs::listdir::{Entry, Page};

/// Bytes of a name kept as they are in a URL: RFC 3986's unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Where the listed directory is.
pub struct View<'a> {
    /// The directory's path under the root, segments decoded: `/a b/` (`/` for the root).
    pub path: &'a str,
    /// The same path as a URL: `/a%20b/`.
    pub url: &'a str,
    /// The parent's URL; `None` for the root.
    pub parent: Option<&'a str>,
    pub params: &'a Params,
    /// The upload page to link to, if any.
    pub upload: Option<&'a str>,
}

/// The inline script of a listing that shows a hash: shows the copy buttons (hidden without
/// it) and copies the hash before each one, or selects it where there is no clipboard (a page
/// not on https or localhost).
pub const SCRIPT: &str = "for(const b of document.querySelectorAll('td>button')){b.hidden=false;\
b.onclick=()=>{const c=b.previousElementSibling,s=()=>getSelection().selectAllChildren(c);\
navigator.clipboard?navigator.clipboard.writeText(c.textContent).then(()=>b.textContent='copied',s):s()}}";

/// A name as a URL path segment.
pub fn segment(name: &str) -> String {
    utf8_percent_encode(name, SEGMENT).to_string()
}

/// RFC 3339 in UTC to the second; `None` for a time before 1970 or after 9999, which the
/// format (and `humantime`) cannot say.
pub fn rfc3339((secs, _): (i64, u32)) -> Option<String> {
    const YEAR_10000: i64 = 253_402_300_800;
    if !(0..YEAR_10000).contains(&secs) {
        return None;
    }
    let t = UNIX_EPOCH + Duration::from_secs(secs as u64);
    Some(humantime::format_rfc3339_seconds(t).to_string())
}

fn href(e: &Entry) -> String {
    let slash = if e.is_dir { "/" } else { "" };
    format!("./{}{slash}", segment(&e.name))
}

/// Offsets of the previous and next pages, when there are such pages.
fn neighbours(page: &Page, p: &Params) -> (Option<usize>, Option<usize>) {
    let prev = (p.offset > 0).then(|| p.offset.min(page.total).saturating_sub(p.limit));
    let next = (p.offset.saturating_add(p.limit) < page.total).then(|| p.offset + p.limit);
    (prev, next)
}

pub fn html(page: &Page, view: &View) -> String {
    let p = view.params;
    let mut out = String::with_capacity(1024 + 300 * page.entries.len());
    let title = text(view.path);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Index of {title}</title>\n<style>\n\
         body{{font-family:system-ui,sans-serif;margin:1.5em}}\n\
         table{{border-collapse:collapse}}\n\
         th,td{{padding:.15em .8em;text-align:left;white-space:nowrap}}\n\
         td.n{{text-align:right;font-variant-numeric:tabular-nums}}\n\
         tbody tr:nth-child(even){{background:#f3f3f3}}\n\
         td code{{font-size:.8em}}\n\
         </style>\n</head>\n<body>\n<h1>Index of {title}</h1>\n"
    );
    if let Some(page) = view.upload {
        let _ = writeln!(out, "<p><a href=\"{}\">Upload files</a></p>", attr(page));
    }

    let first = p.offset.min(page.total);
    let last = (p.offset.saturating_add(page.entries.len())).min(page.total);
    let _ = write!(out, "<p>{} entries", page.total);
    if first > 0 || last < page.total {
        let _ = write!(out, ", {}&ndash;{} shown", first + 1, last);
    }
    out.push('.');
    if page.truncated {
        let _ = write!(
            out,
            " The directory has more entries than a listing reads ({}); only those were sorted.",
            crate::fs::listdir::MAX_ENTRIES
        );
    }
    out.push_str("</p>\n");

    let (prev, next) = neighbours(page, p);
    let nav = |out: &mut String| {
        if prev.is_none() && next.is_none() {
            return;
        }
        out.push_str("<nav>");
        if let Some(o) = prev {
            let _ = write!(
                out,
                "<a href=\"{}\" rel=\"prev\">&laquo; previous</a> ",
                attr(&p.link(p.sort, p.order, o, false))
            );
        }
        if let Some(o) = next {
            let _ = write!(
                out,
                "<a href=\"{}\" rel=\"next\">next &raquo;</a>",
                attr(&p.link(p.sort, p.order, o, false))
            );
        }
        out.push_str("</nav>\n");
    };
    nav(&mut out);

    out.push_str("<table>\n<thead><tr>");
    for (sort, label) in [
        (Sort::Name, "Name"),
        (Sort::Size, "Size"),
        (Sort::Mtime, "Modified (UTC)"),
    ] {
        // The current column's link flips the order; another column starts ascending.
        let (order, mark) = match (sort == p.sort, p.order) {
            (true, Order::Asc) => (Order::Desc, " &#9650;"),
            (true, Order::Desc) => (Order::Asc, " &#9660;"),
            (false, _) => (Order::Asc, ""),
        };
        let _ = write!(
            out,
            "<th><a href=\"{}\">{label}</a>{mark}</th>",
            attr(&p.link(sort, order, 0, false))
        );
        if sort == Sort::Size {
            out.push_str("<th>Bytes</th>");
        }
    }
    out.push_str("<th>SHA-256</th></tr></thead>\n<tbody>\n");
    if view.parent.is_some() {
        out.push_str(
            "<tr><td><a href=\"../\">../</a></td><td></td><td></td><td></td><td></td></tr>\n",
        );
    }
    let mut hashes = false;
    for e in &page.entries {
        let slash = if e.is_dir { "/" } else { "" };
        let _ = write!(
            out,
            "<tr><td><a href=\"{}\">{}{slash}</a></td>",
            attr(&href(e)),
            text(&e.name)
        );
        match e.size {
            Some(n) => {
                let human = bytesize::ByteSize::b(n).display().iec().to_string();
                let _ = write!(out, "<td class=\"n\">{human}</td><td class=\"n\">{n}</td>");
            }
            None => out.push_str("<td class=\"n\">-</td><td class=\"n\">-</td>"),
        }
        match rfc3339(e.mtime) {
            Some(t) => {
                let shown = t.replacen('T', " ", 1);
                let _ = write!(
                    out,
                    "<td><time datetime=\"{t}\">{}</time></td>",
                    shown.trim_end_matches('Z')
                );
            }
            None => out.push_str("<td>-</td>"),
        }
        match (e.is_dir, &e.sha256) {
            (true, _) => out.push_str("<td></td></tr>\n"),
            (false, None) => out.push_str("<td>-</td></tr>\n"),
            (false, Some(sum)) => {
                hashes = true;
                let _ = writeln!(
                    out,
                    "<td><code>{}</code> <button type=\"button\" hidden>copy</button></td></tr>",
                    hex::encode(sum)
                );
            }
        }
    }
    out.push_str("</tbody>\n</table>\n");
    nav(&mut out);
    if hashes {
        let _ = writeln!(out, "<script>{SCRIPT}</script>");
    }
    out.push_str("</body>\n</html>\n");
    out
}

#[derive(Serialize)]
struct JsonListing<'a> {
    path: &'a str,
    url: &'a str,
    parent: Option<&'a str>,
    sort: &'static str,
    order: &'static str,
    offset: usize,
    limit: usize,
    total: usize,
    truncated: bool,
    prev: Option<String>,
    next: Option<String>,
    entries: Vec<JsonEntry<'a>>,
}

#[derive(Serialize)]
struct JsonEntry<'a> {
    name: &'a str,
    url: String,
    is_dir: bool,
    size: Option<u64>,
    mtime: Option<String>,
    /// Lowercase hex, when known (never for a directory).
    sha256: Option<String>,
}

pub fn json(page: &Page, view: &View) -> Vec<u8> {
    let p = view.params;
    let (prev, next) = neighbours(page, p);
    let link = |o: usize| format!("{}{}", view.url, p.link(p.sort, p.order, o, true));
    let listing = JsonListing {
        path: view.path,
        url: view.url,
        parent: view.parent,
        sort: p.sort.as_str(),
        order: p.order.as_str(),
        offset: p.offset,
        limit: p.limit,
        total: page.total,
        truncated: page.truncated,
        prev: prev.map(link),
        next: next.map(link),
        entries: page
            .entries
            .iter()
            .map(|e| JsonEntry {
                name: &e.name,
                url: format!(
                    "{}{}{}",
                    view.url,
                    segment(&e.name),
                    if e.is_dir { "/" } else { "" }
                ),
                is_dir: e.is_dir,
                size: e.size,
                mtime: rfc3339(e.mtime),
                sha256: e.sha256.map(hex::encode),
            })
            .collect(),
    };
    let mut out = serde_json::to_vec(&listing).unwrap_or_default();
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_keep_only_unreserved_bytes() {
        assert_eq!(segment("a-b.c_d~e"), "a-b.c_d~e");
        assert_eq!(segment("a b#c?d%e"), "a%20b%23c%3Fd%25e");
        assert_eq!(segment("<a&\"b>"), "%3Ca%26%22b%3E");
        assert_eq!(segment("é"), "%C3%A9");
        assert_eq!(segment("x:y/z"), "x%3Ay%2Fz");
    }

    #[test]
    fn times_out_of_range_are_none() {
        assert_eq!(rfc3339((0, 0)).as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(
            rfc3339((1_700_000_000, 999)).as_deref(),
            Some("2023-11-14T22:13:20Z")
        );
        assert_eq!(rfc3339((-1, 0)), None);
        assert_eq!(rfc3339((253_402_300_800, 0)), None);
        assert_eq!(rfc3339((i64::MAX, 0)), None);
    }
}
