//! The handler: resolve -> open -> decide -> plan -> respond. Each RFC rule lives in
//! `crate::http`; this module is glue between them, the file system and axum.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};

use crate::config::Config;
use crate::fs::digest::{DigestCache, FileId};
use crate::fs::resolve::{self, Policy, ResolveError, Target};
use crate::http::multipart::Multipart;
use crate::http::preconditions::{self, Decision, Validators};
use crate::http::range::{self, RangePlan};
use crate::source::{self, Piece, Representation};

/// Shared by every request.
pub struct AppState {
    pub config: Arc<Config>,
    pub digests: DigestCache,
    policy: Policy,
}

impl AppState {
    pub fn new(config: Arc<Config>) -> AppState {
        let policy = Policy {
            show_hidden: config.show_hidden,
            follow_symlinks: config.follow_symlinks,
        };
        AppState {
            config,
            digests: DigestCache::new(DIGEST_CACHE_ENTRIES),
            policy,
        }
    }
}

/// How many file versions keep their hash in memory (about 100 bytes each).
const DIGEST_CACHE_ENTRIES: usize = 16_384;

const ALLOW: &str = "GET, HEAD, OPTIONS";

pub async fn handle(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let method = req.method().clone();
    match method {
        Method::GET | Method::HEAD => {}
        Method::OPTIONS => {
            return builder(StatusCode::NO_CONTENT)
                .header(header::ALLOW, ALLOW)
                .body(Body::empty())
                .unwrap()
        }
        _ => {
            return text(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed\n")
                .map(|mut r| {
                    r.headers_mut()
                        .insert(header::ALLOW, HeaderValue::from_static(ALLOW));
                    r
                })
                .unwrap()
        }
    }

    let uri = req.uri().clone();
    let target = {
        let state = state.clone();
        let path = uri.path().to_owned();
        tokio::task::spawn_blocking(move || locate(&state, &path)).await
    };
    let file_path = match target {
        Ok(Ok(Located::File(p))) => p,
        Ok(Ok(Located::Redirect(mut to))) => {
            if let Some(q) = uri.query() {
                to.push('?');
                to.push_str(q);
            }
            return redirect(&to);
        }
        Ok(Err(e)) => return error_response(e, uri.path()),
        Err(join) => return error_response(ResolveError::Io(std::io::Error::other(join)), ""),
    };

    // A file that changes while it is hashed is retried a few times, then reported busy.
    let mut attempts = 0;
    let rep = loop {
        attempts += 1;
        match open(&state.digests, file_path.clone()).await {
            Ok(rep) => break rep,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted && attempts < 3 => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                tracing::warn!(path = %file_path.display(), "file keeps changing: {e}");
                let mut r =
                    text(StatusCode::SERVICE_UNAVAILABLE, "503 File Is Changing\n").unwrap();
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return r;
            }
            Err(e) => return error_response(e.into(), uri.path()),
        }
    };
    respond(
        &method,
        req.headers(),
        &rep,
        &state.config,
        SystemTime::now(),
    )
}

enum Located {
    File(PathBuf),
    Redirect(String),
}

/// Blocking: path -> file to serve (or a redirect / error).
fn locate(state: &AppState, path: &str) -> Result<Located, ResolveError> {
    let root = &state.config.root;
    match resolve::resolve(root, path, &state.policy)? {
        Target::File(p) => Ok(Located::File(p)),
        Target::AddSlash(to) => Ok(Located::Redirect(to)),
        Target::Directory(dir) => {
            resolve::find_index(root, &dir, &state.config.index_files, &state.policy)?
                .map(Located::File)
                .ok_or(ResolveError::NotFound)
        }
    }
}

/// Open a file and build its representation; the ETag comes from the digest cache.
async fn open(digests: &DigestCache, path: PathBuf) -> std::io::Result<Representation> {
    let (file, meta) = tokio::task::spawn_blocking({
        let path = path.clone();
        move || {
            // O_NONBLOCK: a FIFO swapped in after the resolver's check must not hang a thread.
            let file = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&path)?;
            let meta = file.metadata()?;
            if !meta.is_file() {
                return Err(std::io::Error::from(std::io::ErrorKind::NotFound));
            }
            Ok::<_, std::io::Error>((file, meta))
        }
    })
    .await
    .map_err(std::io::Error::other)??;
    let file: Arc<File> = Arc::new(file);
    let id = FileId::of(&meta);
    let sum = digests.sha256(file.clone(), id).await?;
    Ok(Representation {
        len: meta.len(),
        etag: Some(format!("\"{}\"", hex::encode(sum))),
        modified: meta.modified().ok(),
        content_type: source::content_type_for(&path),
        source: file,
    })
}

/// decide -> plan -> respond, for one representation. Pure but for the body's reads.
pub fn respond(
    method: &Method,
    req_headers: &HeaderMap,
    rep: &Representation,
    config: &Config,
    now: SystemTime,
) -> Response {
    let (last_modified, last_modified_is_strong) = match rep.modified {
        Some(m) => {
            let (lm, strong) = preconditions::last_modified_for(m, now);
            (Some(lm), strong)
        }
        None => (None, false),
    };
    let validators = Validators {
        etag: rep.etag.clone(),
        last_modified,
        last_modified_is_strong,
    };

    // Headers every file response carries, 304 included (§15.4.5).
    let mut h = HeaderMap::new();
    h.insert(header::DATE, value(&httpdate::fmt_http_date(now)));
    if let Some(etag) = &rep.etag {
        h.insert(header::ETAG, value(etag));
    }
    if let Some(lm) = last_modified {
        h.insert(header::LAST_MODIFIED, value(&httpdate::fmt_http_date(lm)));
    }
    if !config.cache_control.is_empty() {
        h.insert(header::CACHE_CONTROL, value(&config.cache_control));
    }

    let use_range = match preconditions::decide(method, req_headers, &validators) {
        Decision::NotModified => return with_headers(StatusCode::NOT_MODIFIED, h, Body::empty()),
        Decision::PreconditionFailed => {
            let mut r = text(StatusCode::PRECONDITION_FAILED, "412 Precondition Failed\n").unwrap();
            r.headers_mut().extend(h);
            return r;
        }
        Decision::Proceed { use_range } => use_range,
    };

    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(NOSNIFF.0.clone(), NOSNIFF.1.clone());
    let plan = if use_range {
        range::plan(req_headers.get(header::RANGE), rep.len, config.max_ranges)
    } else {
        RangePlan::Full
    };
    let (status, content_type, pieces, length) = match plan {
        RangePlan::Full => (
            StatusCode::OK,
            rep.content_type.clone(),
            vec![Piece::Range(range::ByteRange {
                start: 0,
                end: rep.len,
            })],
            rep.len,
        ),
        RangePlan::Single(r) => {
            h.insert(
                header::CONTENT_RANGE,
                value(&format!("bytes {}-{}/{}", r.start, r.last(), rep.len)),
            );
            (
                StatusCode::PARTIAL_CONTENT,
                rep.content_type.clone(),
                vec![Piece::Range(r)],
                r.len(),
            )
        }
        RangePlan::Multi(ranges) => {
            let m = Multipart::new(&ranges, rep.len, &rep.content_type);
            let length = m.content_length();
            let mut pieces = Vec::with_capacity(2 * m.parts.len() + 1);
            for (r, head) in m.parts.iter() {
                pieces.push(Piece::Literal(head.clone()));
                pieces.push(Piece::Range(*r));
            }
            pieces.push(Piece::Literal(m.closing.clone()));
            (
                StatusCode::PARTIAL_CONTENT,
                m.content_type(),
                pieces,
                length,
            )
        }
        RangePlan::Unsatisfiable => {
            // §15.5.17: say how long the representation is. An empty body, so that a naive
            // resumer has nothing to append.
            h.insert(
                header::CONTENT_RANGE,
                value(&format!("bytes */{}", rep.len)),
            );
            h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
            return with_headers(StatusCode::RANGE_NOT_SATISFIABLE, h, Body::empty());
        }
    };
    h.insert(header::CONTENT_TYPE, value(&content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    let body = if method == Method::HEAD || length == 0 {
        Body::empty()
    } else {
        source::body(rep.source.clone(), pieces)
    };
    with_headers(status, h, body)
}

static NOSNIFF: (HeaderName, HeaderValue) = (
    HeaderName::from_static("x-content-type-options"),
    HeaderValue::from_static("nosniff"),
);

fn value(s: &str) -> HeaderValue {
    // Every value we build is visible ASCII; a config value was checked at load time.
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

fn builder(status: StatusCode) -> http::response::Builder {
    Response::builder().status(status)
}

fn with_headers(status: StatusCode, headers: HeaderMap, body: Body) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

/// A small plain-text response (errors, redirects).
fn text(status: StatusCode, body: &'static str) -> http::Result<Response> {
    builder(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(NOSNIFF.0.clone(), NOSNIFF.1.clone())
        .header(header::CONTENT_LENGTH, body.len())
        .body(Body::from(body))
}

fn redirect(to: &str) -> Response {
    let mut r = text(StatusCode::MOVED_PERMANENTLY, "301 Moved Permanently\n").unwrap();
    r.headers_mut().insert(header::LOCATION, value(to));
    r
}

fn error_response(e: ResolveError, path: &str) -> Response {
    let (status, body) = match e {
        ResolveError::BadPath(why) => {
            tracing::debug!(path, "bad path: {why}");
            (StatusCode::BAD_REQUEST, "400 Bad Request\n")
        }
        ResolveError::NotFound => (StatusCode::NOT_FOUND, "404 Not Found\n"),
        ResolveError::Forbidden => (StatusCode::FORBIDDEN, "403 Forbidden\n"),
        ResolveError::Io(e) => {
            tracing::error!(path, "i/o error: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "500 Internal Server Error\n",
            )
        }
    };
    text(status, body).unwrap()
}
