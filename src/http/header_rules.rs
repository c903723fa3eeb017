//! `[[headers]]`: response headers by path. Each rule is a glob over the path and the headers
//! it sets; the first rule whose glob matches wins (rules are tried in the order of the config
//! file), and only that rule applies. Files no rule matches get the default `cache_control`.
//!
//! The path matched is the path of the file served as the request named it, percent-decoded:
//! `/dir/a%20b.iso` is matched as `/dir/a b.iso`, `.` and empty segments are dropped, and a
//! directory request (`/dir/`) is matched as its index file (`/dir/index.html`). Globs follow
//! `globset`: `*` and `?` stay within one segment, `**` crosses segments, `{a,b}` and `[ab]`
//! work; matching is case-sensitive.

use std::path::Path;
use std::sync::Arc;

use globset::{GlobBuilder, GlobMatcher};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::disposition;

/// Headers the server sets itself: a rule may not change them.
const RESERVED: &[&str] = &[
    "accept-ranges",
    "connection",
    "content-digest",
    "content-encoding",
    "content-length",
    "content-range",
    "content-type",
    "date",
    "etag",
    "keep-alive",
    "last-modified",
    "proxy-connection",
    "repr-digest",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "vary",
    "x-content-type-options",
];

/// One `[[headers]]` entry as written in the config file.
#[derive(Debug, Clone)]
pub struct RuleSpec {
    /// The glob over the decoded path (`/downloads/**/*.iso`).
    pub path: String,
    /// Header name -> value; an empty value means the header is not sent (useful for
    /// `Cache-Control = ""`, which drops the default).
    pub set: Vec<(String, String)>,
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    glob: GlobMatcher,
    /// Headers to send; `None`: the header is not sent.
    set: Vec<(HeaderName, Option<HeaderValue>)>,
    /// Whether the rule says anything about `Cache-Control` (then the default is not sent).
    cache_control: bool,
}

/// The compiled `[[headers]]` rules, in order.
#[derive(Debug, Default, Clone)]
pub struct HeaderRules {
    rules: Vec<Arc<Rule>>,
}

impl HeaderRules {
    /// Compile the rules; the error is one line naming the rule (`headers[N]`, from 1) and key.
    pub fn new(specs: &[RuleSpec]) -> Result<HeaderRules, String> {
        let mut rules = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            let at = format!("headers[{}]", i + 1);
            if !spec.path.starts_with('/') {
                return Err(format!(
                    "{at}.path: {:?} must start with / (e.g. \"/downloads/**\" or \"/**/*.iso\")",
                    spec.path
                ));
            }
            let glob = GlobBuilder::new(&spec.path)
                .literal_separator(true)
                .build()
                .map_err(|e| format!("{at}.path: {:?}: {}", spec.path, e.kind()))?
                .compile_matcher();
            let mut set: Vec<(HeaderName, Option<HeaderValue>)> = Vec::new();
            for (name, value) in &spec.set {
                let n = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| format!("{at}.set: {name:?} is not a header name"))?;
                if RESERVED.contains(&n.as_str()) || n.as_str().starts_with("access-control-") {
                    let why = if n.as_str().starts_with("access-control-") {
                        "use [cors]"
                    } else {
                        "the server sets it"
                    };
                    return Err(format!("{at}.set: {name} cannot be configured ({why})"));
                }
                if set.iter().any(|(m, _)| *m == n) {
                    return Err(format!("{at}.set: {name} is set twice"));
                }
                let v = if value.is_empty() {
                    None
                } else {
                    Some(HeaderValue::from_str(value).map_err(|_| {
                        format!("{at}.set: {name} = {value:?} is not a valid header value")
                    })?)
                };
                set.push((n, v));
            }
            let cache_control = set.iter().any(|(n, _)| n == header::CACHE_CONTROL);
            rules.push(Arc::new(Rule {
                glob,
                set,
                cache_control,
            }));
        }
        Ok(HeaderRules { rules })
    }

    /// Whether there is no rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The first rule whose glob matches `path` (decoded, starting with `/`).
    pub fn find(&self, path: &str) -> Option<Arc<Rule>> {
        self.rules.iter().find(|r| r.glob.is_match(path)).cloned()
    }
}

/// Headers a representation carries because of its path and the request's query: the matching
/// rule (if any) and `?download`'s `Content-Disposition`.
#[derive(Debug, Clone, Default)]
pub struct PathHeaders {
    /// The first rule that matches the path.
    pub rule: Option<Arc<Rule>>,
    /// `Content-Disposition` for `?download`.
    pub disposition: Option<HeaderValue>,
}

impl PathHeaders {
    /// For the file `name` (relative to the root, as the resolver found it: segments decoded
    /// and checked) asked for with `query`.
    pub fn new(rules: &HeaderRules, name: &Path, query: Option<&str>) -> PathHeaders {
        let rule = if rules.is_empty() {
            None
        } else {
            let mut path = String::with_capacity(name.as_os_str().len() + 1);
            for part in name.iter() {
                path.push('/');
                path.push_str(&part.to_string_lossy());
            }
            if path.is_empty() {
                path.push('/');
            }
            rules.find(&path)
        };
        let disposition = disposition::wanted(query).then(|| {
            let file_name = name.file_name().unwrap_or_default().to_string_lossy();
            disposition::attachment(&file_name)
        });
        PathHeaders { rule, disposition }
    }

    /// Set `Cache-Control` (the rule's, else `default_cache_control` if any), the rule's
    /// headers, and `Content-Disposition` (`?download` wins over a rule's).
    pub fn apply(&self, h: &mut HeaderMap, default_cache_control: Option<&HeaderValue>) {
        let rule = self.rule.as_deref();
        if let Some(v) = default_cache_control.filter(|_| !rule.is_some_and(|r| r.cache_control)) {
            h.insert(header::CACHE_CONTROL, v.clone());
        }
        for (name, value) in rule.map_or(&[][..], |r| &r.set[..]) {
            if let Some(v) = value {
                h.insert(name.clone(), v.clone());
            }
        }
        if let Some(d) = &self.disposition {
            h.insert(header::CONTENT_DISPOSITION, d.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(path: &str, set: &[(&str, &str)]) -> RuleSpec {
        RuleSpec {
            path: path.into(),
            set: set
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn applied(rules: &HeaderRules, path: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        PathHeaders {
            rule: rules.find(path),
            disposition: None,
        }
        .apply(&mut h, Some(&HeaderValue::from_static("no-cache")));
        h
    }

    #[test]
    fn first_match_wins_and_globs_respect_segments() {
        let rules = HeaderRules::new(&[
            spec(
                "/dl/*.iso",
                &[("Cache-Control", "max-age=60"), ("X-A", "1")],
            ),
            spec("/dl/**", &[("X-B", "2")]),
            spec("/**/*.txt", &[("Cache-Control", "")]),
        ])
        .unwrap();
        let h = applied(&rules, "/dl/a.iso");
        assert_eq!(h["cache-control"], "max-age=60");
        assert_eq!(h["x-a"], "1");
        assert!(!h.contains_key("x-b"));
        // `*` does not cross a slash: the second rule.
        let h = applied(&rules, "/dl/sub/a.iso");
        assert_eq!(h["cache-control"], "no-cache");
        assert_eq!(h["x-b"], "2");
        // `/**/` matches zero or more directories; an empty value drops the default.
        for p in ["/a.txt", "/x/y/a.txt"] {
            let h = applied(&rules, p);
            assert!(h.is_empty(), "{p}: {h:?}");
        }
        // No rule: the default.
        let h = applied(&rules, "/other.bin");
        assert_eq!(h.len(), 1);
        assert_eq!(h["cache-control"], "no-cache");
    }

    #[test]
    fn bad_rules_are_named() {
        for (s, needle) in [
            (spec("dl/*", &[]), "headers[1].path"),
            (spec("/dl/[", &[]), "headers[1].path"),
            (spec("/a", &[("Bad Name", "x")]), "headers[1].set"),
            (spec("/a", &[("X-A", "line\nbreak")]), "headers[1].set"),
            (spec("/a", &[("Content-Length", "1")]), "Content-Length"),
            (spec("/a", &[("ETag", "\"x\"")]), "ETag"),
            (
                spec("/a", &[("Access-Control-Allow-Origin", "*")]),
                "[cors]",
            ),
            (spec("/a", &[("X-A", "1"), ("x-a", "2")]), "twice"),
        ] {
            let e = HeaderRules::new(&[spec("/ok", &[]), s.clone()])
                .map(|_| ())
                .unwrap_err();
            let needle = needle.replace("headers[1]", "headers[2]");
            assert!(e.contains(&needle), "{s:?}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
