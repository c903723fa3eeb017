//! Directory listings (`listing = true`): a directory asked for with a trailing slash that has
//! none of the index files is answered with one page of its entries, as HTML or, for
//! `Accept: application/json` or `?format=json`, as JSON.
//!
//! - What is listed is what a request would serve (`fs::listdir`): no hidden names unless
//!   `show_hidden`, no symlink that the resolver would refuse (out of the root without
//!   `follow_symlinks`, dangling, to a hidden name); a symlink that is kept shows its target.
//! - `?sort=name|size|mtime&order=asc|desc` (Caddy's names), directories first; a page is
//!   `?limit=` entries (default 1000, at most 10,000) from `?offset=`, with prev/next links.
//! - Reading the directory is the storage's job (on disk: blocking I/O on the blocking pool,
//!   `fs::listdir::MAX_ENTRIES` entries at most); [`READERS`] directories are read at a time.
//! - Each file's SHA-256 (its ETag) is shown when the storage already knows it (on disk: in
//!   its digest cache, from an earlier request, `prehash`, `watch`, `state_dir` or an upload);
//!   a listing never hashes a file, so the others show `-`. In HTML, a small inline script
//!   (allowed by its hash) adds a "copy" button beside each hash; without it the page is the
//!   same, less the buttons.
//! - With an upload link (`ServeFiles::upload_link`), the listings of the upload directory and
//!   of the directories inside it link to the upload page.
//! - A listing is not a file: it has a weak ETag (of the body; `If-None-Match` gives 304s),
//!   `Cache-Control: no-cache`, `Vary: Accept`, `Accept-Ranges: none`, and a `Range` is ignored
//!   (200 with the whole page), as RFC 9110 §14.2 allows.

mod query;
pub(crate) mod render;

use std::path::{Component, Path};
use std::sync::LazyLock;
use std::time::SystemTime;

use axum::body::Body;
use axum::response::Response;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use sha2::Digest;
use tokio::sync::Semaphore;

use crate::files::storage::Storage;
use crate::http::response::etag_preconditions;
use crate::http::response::{add_vary, csp_hash, internal_error, plain_text, text, value};
use query::{Format, Params};

/// Directories read at once: each read holds a blocking-pool thread and its entries in memory.
pub const READERS: usize = 2;
static READING: Semaphore = Semaphore::const_new(READERS);

/// HTML loads nothing; its inline style, and its one inline script (by its hash), are all
/// it runs.
static CSP: LazyLock<HeaderValue> = LazyLock::new(|| {
    value(&format!(
        "default-src 'none'; style-src 'unsafe-inline'; script-src '{}'; base-uri 'none'; \
         form-action 'none'",
        csp_hash(render::SCRIPT)
    ))
});

/// Where a listed directory is: the prefix the service is mounted under (empty at the root of
/// the site) and its name relative to the storage's root (empty for the root); and the URL of
/// the upload page its listing links to, if any.
pub struct Location<'a> {
    pub base: &'a str,
    pub name: &'a Path,
    pub upload: Option<String>,
}

/// The listing of `dir` for this request (GET or HEAD).
pub async fn answer<S: Storage>(
    storage: &S,
    method: &Method,
    req_headers: &HeaderMap,
    query: Option<&str>,
    dir: S::Dir,
    at: Location<'_>,
) -> Response {
    let params = match Params::parse(query) {
        Ok(p) => p,
        Err(why) => {
            return plain_text(StatusCode::BAD_REQUEST, format!("400 Bad Request: {why}\n"))
        }
    };
    let json = match params.format {
        Some(Format::Json) => true,
        Some(Format::Html) => false,
        None => query::wants_json(req_headers),
    };

    let (body, etag) = {
        let _permit = READING.acquire().await.expect("never closed");
        let page = storage
            .list(dir, params.sort, params.order, params.offset, params.limit)
            .await;
        let page = match page {
            Ok(page) => page,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return text(StatusCode::FORBIDDEN, "403 Forbidden\n")
            }
            Err(e) => {
                tracing::error!(path = %at.name.display(), "listing: {e}");
                return internal_error();
            }
        };
        let (path, url, parent) = locations(at.base, at.name);
        let upload = at.upload;
        // Rendering a page of up to MAX_LIMIT entries and hashing it: not on an async worker.
        let work = tokio::task::spawn_blocking(move || {
            let view = render::View {
                path: &path,
                url: &url,
                parent: parent.as_deref(),
                params: &params,
                upload: upload.as_deref(),
            };
            let body = if json {
                render::json(&page, &view)
            } else {
                render::html(&page, &view).into_bytes()
            };
            // Weak (RFC 9110 §8.8.1): the same listing, not the same bytes of a file.
            let hash = sha2::Sha256::digest(&body);
            let etag = format!("W/\"{}\"", hex::encode(&hash[..16]));
            (body, etag)
        });
        match work.await {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(path = %at.name.display(), "listing: {e}");
                return internal_error();
            }
        }
    };

    let mut h = HeaderMap::with_capacity(12);
    h.insert(
        header::DATE,
        value(&httpdate::fmt_http_date(SystemTime::now())),
    );
    h.insert(header::ETAG, value(&etag));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    add_vary(&mut h, "Accept");
    if let Some(answer) = etag_preconditions(method, req_headers, &etag, &h) {
        return answer;
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(if json {
            "application/json"
        } else {
            "text/html; charset=utf-8"
        }),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("none"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !json {
        h.insert(header::CONTENT_SECURITY_POLICY, CSP.clone());
    }
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(body)
    };
    let mut r = Response::new(body);
    *r.headers_mut() = h;
    r
}

/// The directory's path (decoded), its URL (each segment percent-encoded, after the mount
/// prefix `base`), and its parent's URL (none for the root), all ending in `/`.
fn locations(base: &str, name: &Path) -> (String, String, Option<String>) {
    let segments: Vec<&str> = name
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => s.to_str(),
            _ => None,
        })
        .collect();
    let join = |segs: &[&str], encode: bool| {
        let mut s = String::from(if encode { base } else { "" });
        s.push('/');
        for seg in segs {
            if encode {
                s.push_str(&render::segment(seg));
            } else {
                s.push_str(seg);
            }
            s.push('/');
        }
        s
    };
    let parent = segments.split_last().map(|(_, up)| join(up, true));
    (join(&segments, false), join(&segments, true), parent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_encode_each_segment() {
        let (p, u, up) = locations("", Path::new(""));
        assert_eq!((p.as_str(), u.as_str(), up), ("/", "/", None));
        let (p, u, up) = locations("", Path::new("a b/é#"));
        assert_eq!(p, "/a b/é#/");
        assert_eq!(u, "/a%20b/%C3%A9%23/");
        assert_eq!(up.as_deref(), Some("/a%20b/"));
        let (_, _, up) = locations("", Path::new("x"));
        assert_eq!(up.as_deref(), Some("/"));
        // Under a mount prefix, every URL keeps it; the path shown does not.
        let (p, u, up) = locations("/files", Path::new("a b"));
        assert_eq!(p, "/a b/");
        assert_eq!(u, "/files/a%20b/");
        assert_eq!(up.as_deref(), Some("/files/"));
    }
}
