//! What a listing request asks for: the query parameters (`sort`, `order`, `limit`, `offset`,
//! `format`, as Caddy's browse names the first two) and the `Accept` negotiation. Pure.

use http::header::{HeaderMap, ACCEPT};

pub use crate::fs::listdir::{Order, Sort};

/// Entries on one page unless `limit` says otherwise.
pub const DEFAULT_LIMIT: usize = 1000;
/// The largest page a client may ask for: a page is rendered in memory.
pub const MAX_LIMIT: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Html,
    Json,
}

/// The parameters of one listing request. Unknown parameters are ignored (cache busters); a
/// parameter given twice takes its last value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    pub sort: Sort,
    pub order: Order,
    pub limit: usize,
    pub offset: usize,
    /// `format=`, which wins over `Accept`.
    pub format: Option<Format>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            sort: Sort::Name,
            order: Order::Asc,
            limit: DEFAULT_LIMIT,
            offset: 0,
            format: None,
        }
    }
}

impl Params {
    /// The parameters of `query` (the part after `?`, still encoded), or a one-line reason for
    /// a 400 that names the parameter.
    pub fn parse(query: Option<&str>) -> Result<Params, String> {
        let mut p = Params::default();
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let v = value.as_ref();
            match key.as_ref() {
                "sort" => {
                    p.sort = match v {
                        "name" => Sort::Name,
                        "size" => Sort::Size,
                        // `time` is Caddy's name for it.
                        "mtime" | "time" => Sort::Mtime,
                        _ => return Err(format!("sort: {v:?} is not name, size or mtime")),
                    }
                }
                "order" => {
                    p.order = match v {
                        "asc" => Order::Asc,
                        "desc" => Order::Desc,
                        _ => return Err(format!("order: {v:?} is not asc or desc")),
                    }
                }
                "limit" => {
                    p.limit = match v.parse::<usize>() {
                        Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                        _ => {
                            return Err(format!(
                                "limit: {v:?} is not a number from 1 to {MAX_LIMIT}"
                            ))
                        }
                    }
                }
                "offset" => {
                    p.offset = v
                        .parse::<usize>()
                        .map_err(|_| format!("offset: {v:?} is not a number from 0"))?
                }
                "format" => {
                    p.format = Some(match v {
                        "html" => Format::Html,
                        "json" => Format::Json,
                        _ => return Err(format!("format: {v:?} is not html or json")),
                    })
                }
                _ => {}
            }
        }
        Ok(p)
    }

    /// The query of a link to another page or order of this listing: only what differs from
    /// the defaults, so links stay short; `format=json` when asked, so JSON links stay JSON
    /// without the client's `Accept`.
    pub fn link(&self, sort: Sort, order: Order, offset: usize, json: bool) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("sort", sort.as_str());
        q.append_pair("order", order.as_str());
        if self.limit != DEFAULT_LIMIT {
            q.append_pair("limit", &self.limit.to_string());
        }
        if offset != 0 {
            q.append_pair("offset", &offset.to_string());
        }
        if json {
            q.append_pair("format", "json");
        }
        format!("?{}", q.finish())
    }
}

/// JSON when the client asks for `application/json` with a quality above zero and not below
/// the one it gives `text/html` (RFC 9110 §12.5.1); HTML otherwise (browsers, `*/*`, no Accept).
pub fn wants_json(headers: &HeaderMap) -> bool {
    let (mut json, mut html) = (0.0f32, 0.0f32);
    for value in headers.get_all(ACCEPT) {
        let Ok(value) = value.to_str() else { continue };
        for range in value.split(',') {
            let Ok(m) = range.trim().parse::<mime::Mime>() else {
                continue;
            };
            // §12.4.2: a weight is a number from 0 to 1; a bad one makes the range unusable.
            let q = match m.get_param("q") {
                None => 1.0,
                Some(q) => match q.as_str().parse::<f32>() {
                    Ok(q) if (0.0..=1.0).contains(&q) => q,
                    _ => continue,
                },
            };
            match m.essence_str() {
                "application/json" => json = json.max(q),
                "text/html" => html = html.max(q),
                _ => {}
            }
        }
    }
    json > 0.0 && json >= html
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn defaults_and_values() {
        assert_eq!(Params::parse(None).unwrap(), Params::default());
        let p = Params::parse(Some(
            "sort=size&order=desc&limit=5&offset=10&format=json&x=1",
        ))
        .unwrap();
        assert_eq!(
            p,
            Params {
                sort: Sort::Size,
                order: Order::Desc,
                limit: 5,
                offset: 10,
                format: Some(Format::Json),
            }
        );
        assert_eq!(Params::parse(Some("sort=time")).unwrap().sort, Sort::Mtime);
        assert_eq!(
            Params::parse(Some("sort=size&sort=name")).unwrap().sort,
            Sort::Name
        );
    }

    #[test]
    fn bad_values_name_the_parameter() {
        for (q, key) in [
            ("sort=date", "sort"),
            ("order=up", "order"),
            ("limit=0", "limit"),
            ("limit=10001", "limit"),
            ("limit=-1", "limit"),
            ("offset=x", "offset"),
            ("offset=99999999999999999999999", "offset"),
            ("format=xml", "format"),
        ] {
            let e = Params::parse(Some(q)).unwrap_err();
            assert!(e.starts_with(&format!("{key}: ")), "{q}: {e}");
            assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn links_keep_what_differs() {
        let p = Params::parse(Some("limit=50")).unwrap();
        assert_eq!(
            p.link(Sort::Mtime, Order::Desc, 100, true),
            "?sort=mtime&order=desc&limit=50&offset=100&format=json"
        );
        let p = Params::default();
        assert_eq!(
            p.link(Sort::Name, Order::Asc, 0, false),
            "?sort=name&order=asc"
        );
    }

    #[test]
    fn accept_negotiation() {
        let json = |v: &str| {
            let mut h = HeaderMap::new();
            h.append(ACCEPT, HeaderValue::from_str(v).unwrap());
            wants_json(&h)
        };
        assert!(!wants_json(&HeaderMap::new()));
        assert!(json("application/json"));
        assert!(json("application/json; charset=utf-8"));
        assert!(json("text/html;q=0.5, application/json"));
        assert!(json("application/json, text/html"));
        assert!(!json("text/html, application/json;q=0.9"));
        assert!(!json("application/json;q=0"));
        assert!(!json("application/json;q=2"));
        assert!(!json("*/*"));
        assert!(!json("application/*"));
        assert!(!json(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        ));
        assert!(!json("garbage, ;;;"));
    }
}
