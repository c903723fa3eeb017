//! The upload page: `GET {prefix}/`, a self-contained HTML page (its CSS and JavaScript
//! inline) from which a person with a token uploads files over tus, and `GET
//! {prefix}/tus.min.js`, the browser build of tus-js-client it uses (vendored in `assets/`,
//! embedded in the binary). Neither needs a token (the page asks for it; every upload request
//! carries it) and the page loads nothing from anywhere else: its `Content-Security-Policy`
//! allows the script beside it and the inline style and script by their hashes, requests to
//! this origin only.
//!
//! Both are built once, when uploads open, with strong ETags (the SHA-256 of their bytes, as
//! for files), so `If-None-Match` gets a 304. `{prefix}` without the slash redirects to the
//! page.

use std::sync::LazyLock;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};
use http::header::{self, HeaderMap, HeaderValue};
use http::Method;
use sha2::{Digest as _, Sha256};

use crate::config::UploadConfig;
use crate::http::response::{csp_hash, etag_preconditions, moved_permanently, value, NOSNIFF};

/// The version of tus-js-client in `assets/tus.min.js` (also in the script's URL, so that a
/// new one is never taken from a cache).
pub const TUS_JS_VERSION: &str = "4.3.1";
/// `dist/tus.min.js` of the npm package tus-js-client, byte for byte (MIT, see
/// `assets/LICENSE-tus-js-client`).
pub const TUS_JS: &[u8] = include_bytes!("assets/tus.min.js");

const TEMPLATE: &str = include_str!("assets/page.html");
const STYLE: &str = include_str!("assets/page.css");
const SCRIPT: &str = include_str!("assets/page.js");

/// The script's path under the prefix.
const SCRIPT_PATH: &str = "/tus.min.js";

/// What the page may load: the script beside it (same origin), its inline style and script by
/// hash, requests to this origin (the uploads, the HEAD of a published file), nothing else.
static CSP: LazyLock<HeaderValue> = LazyLock::new(|| {
    value(&format!(
        "default-src 'none'; script-src 'self' '{}'; style-src '{}'; connect-src 'self'; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        csp_hash(SCRIPT),
        csp_hash(STYLE)
    ))
});

/// One embedded response body with the headers that describe it.
struct Asset {
    body: Bytes,
    /// `"<sha256 hex>"`.
    etag: String,
    content_type: &'static str,
    cache_control: &'static str,
    csp: bool,
}

impl Asset {
    fn new(
        body: Bytes,
        content_type: &'static str,
        cache_control: &'static str,
        csp: bool,
    ) -> Asset {
        let etag = format!("\"{}\"", hex::encode(Sha256::digest(&body)));
        Asset {
            body,
            etag,
            content_type,
            cache_control,
            csp,
        }
    }

    fn respond(&self, method: &Method, req_headers: &HeaderMap) -> Response {
        let mut h = HeaderMap::with_capacity(8);
        h.insert(header::ETAG, value(&self.etag));
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(self.cache_control),
        );
        if let Some(answer) = etag_preconditions(method, req_headers, &self.etag, &h) {
            return answer;
        }
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(self.body.len()));
        h.insert(NOSNIFF.0.clone(), NOSNIFF.1.clone());
        if self.csp {
            h.insert(header::CONTENT_SECURITY_POLICY, CSP.clone());
        }
        let body = if method == Method::HEAD {
            Body::empty()
        } else {
            Body::from(self.body.clone())
        };
        let mut r = Response::new(body);
        *r.headers_mut() = h;
        r
    }
}

/// The page and its script, for one upload configuration.
pub struct Page {
    prefix: String,
    html: Asset,
    script: Asset,
}

impl Page {
    /// The page for uploads under `config.prefix` published into `config.dir_name`.
    pub fn new(config: &UploadConfig) -> Page {
        Page {
            prefix: config.prefix.clone(),
            html: Asset::new(
                Bytes::from(html(&config.prefix, &config.dir_name)),
                "text/html; charset=utf-8",
                "no-cache",
                true,
            ),
            script: Asset::new(
                Bytes::from_static(TUS_JS),
                "text/javascript; charset=utf-8",
                "public, max-age=86400",
                false,
            ),
        }
    }

    /// The answer to a GET or HEAD whose path under the prefix is `rest`, when it asks for the
    /// page (`/`, or `""`: a redirect to it) or its script; `None` for every other path.
    pub fn answer(
        &self,
        method: &Method,
        headers: &HeaderMap,
        rest: &str,
        query: Option<&str>,
    ) -> Option<Response> {
        match rest {
            "/" => Some(self.html.respond(method, headers)),
            SCRIPT_PATH => Some(self.script.respond(method, headers)),
            "" => Some(match query {
                Some(q) => moved_permanently(&format!("{}/?{q}", self.prefix)),
                None => moved_permanently(&format!("{}/", self.prefix)),
            }),
            _ => None,
        }
    }
}

/// The page's HTML: the template with its style, script and URLs in place. `dir_name` is the
/// upload directory under the root (`/`-separated, empty for the root).
fn html(prefix: &str, dir_name: &str) -> String {
    let mut dir_url = String::from("/");
    let mut dir_text = String::from("/");
    for seg in dir_name.split('/').filter(|s| !s.is_empty()) {
        dir_url.push_str(&crate::files::listing::render::segment(seg));
        dir_url.push('/');
        dir_text.push_str(seg);
        dir_text.push('/');
    }
    let endpoint = format!("{prefix}/");
    let tus = format!("{prefix}{SCRIPT_PATH}?v={TUS_JS_VERSION}");
    TEMPLATE
        .replace("@STYLE@", STYLE)
        .replace("@SCRIPT@", SCRIPT)
        .replace("@ENDPOINT@", &attr(&endpoint))
        .replace("@TUS@", &attr(&tus))
        .replace("@DIR@", &attr(&dir_url))
        .replace("@DIR_TEXT@", &text(&dir_text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_style_and_script_are_the_hashed_ones_and_cannot_end_early() {
        let page = html("/_upload", "in coming/x");
        let inline = |open: &str, close: &str| {
            let start = page.find(open).unwrap() + open.len();
            let end = start + page[start..].find(close).unwrap();
            page[start..end].to_string()
        };
        assert_eq!(inline("<style>", "</style>"), STYLE);
        assert_eq!(inline("<script>", "</script>"), SCRIPT);
        assert!(!SCRIPT.contains("</script") && !STYLE.contains("</style"));
        assert!(!page.contains('@'), "a placeholder left in the page");
        assert!(page.contains("data-endpoint=\"/_upload/\" data-dir=\"/in%20coming/x/\""));
        assert!(page.contains("<script src=\"/_upload/tus.min.js?v=4.3.1\"></script>"));
        let csp = CSP.to_str().unwrap();
        assert!(csp.contains(&format!("'{}'", csp_hash(SCRIPT))), "{csp}");
        assert!(
            csp.contains(&format!("style-src '{}'", csp_hash(STYLE))),
            "{csp}"
        );
        // A known value (`printf 'alert(1)' | openssl dgst -sha256 -binary | base64`).
        assert_eq!(
            csp_hash("alert(1)"),
            "sha256-bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI="
        );
    }

    #[test]
    fn the_vendored_script_is_tus_js_client_4_3_1() {
        assert_eq!(
            hex::encode(Sha256::digest(TUS_JS)),
            "8cbb1b63fccc3bba0ae73ad1deb160ce046c3750851d0c3e94921ae3ef070eb8"
        );
    }
}
