//! The handler: resolve -> open -> decide -> plan -> respond. Each RFC rule lives in
//! `crate::http`; this module is glue between them, the file system and axum.

use std::fs::{File, Metadata};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};

use crate::access_log;
use crate::config::Config;
use crate::fs::digest::{DigestCache, FileId};
use crate::fs::resolve::{self, Found, Policy, ResolveError, Root};
use crate::fs::sidecar;
use crate::http::cors::Cors;
use crate::http::encoding::{self, Negotiated};
use crate::http::header_rules::PathHeaders;
use crate::http::multipart::Multipart;
use crate::http::preconditions::{self, Decision, Validators};
use crate::http::range::{self, RangePlan};
use crate::http::repr_digest;
use crate::lab::{self, Lab};
use crate::listing;
use crate::metrics::METRICS;
use crate::sendfile::{self, Sink};
use crate::source::{self, Piece, Representation};

/// Shared by every request.
pub struct AppState {
    pub config: Arc<Config>,
    /// Shared with the background hashers (`fs::prehash`).
    pub digests: Arc<DigestCache>,
    root: Arc<Root>,
    policy: Policy,
    /// Counters and caches of the download-client lab (idle when it is off).
    pub(crate) lab: Lab,
}

impl AppState {
    /// Fails when the root cannot be opened. With a `state_dir`, loads the persisted hashes
    /// (blocking file I/O: call it at start-up).
    pub fn new(config: Arc<Config>) -> std::io::Result<AppState> {
        let policy = Policy {
            show_hidden: config.show_hidden,
            follow_symlinks: config.follow_symlinks,
        };
        let root = Arc::new(Root::open(&config.root)?);
        let digests = DigestCache::with_state(DIGEST_CACHE_ENTRIES, config.state_dir.as_deref());
        Ok(AppState {
            root,
            config,
            digests: Arc::new(digests),
            policy,
            lab: Lab::default(),
        })
    }
}

/// How many file versions keep their hash in memory (about 100 bytes each).
const DIGEST_CACHE_ENTRIES: usize = 16_384;

const ALLOW: &str = "GET, HEAD, OPTIONS";

pub async fn handle(state: Arc<AppState>, req: Request) -> Response {
    let _handling = METRICS.handling();
    let log = access_log::begin(&req);
    let resp = match &state.config.cors {
        Some(cors) => answer_cors(&state, cors, req).await,
        None => answer(&state, req).await,
    };
    METRICS.response(resp.status());
    access_log::finish(log, resp)
}

/// The answer when the handler panicked (a bug): a 500 for this request; the connection and the
/// server carry on.
pub fn panicked() -> Response {
    tracing::error!("the handler panicked; answered 500");
    METRICS.response(StatusCode::INTERNAL_SERVER_ERROR);
    text(
        StatusCode::INTERNAL_SERVER_ERROR,
        "500 Internal Server Error\n",
    )
    .unwrap()
}

/// `answer` with CORS (`http::cors`): a preflight from an allowed origin is answered here, and
/// every other response gets the CORS headers for the request's origin, whatever its status.
async fn answer_cors(state: &AppState, cors: &Cors, req: Request) -> Response {
    if let Some((status, h)) = cors.preflight(req.method(), req.headers()) {
        return with_headers(status, h, Body::empty());
    }
    let origin = req.headers().get(header::ORIGIN).cloned();
    let mut resp = answer(state, req).await;
    cors.decorate(origin.as_ref(), resp.headers_mut());
    resp
}

async fn answer(state: &AppState, req: Request) -> Response {
    match *req.method() {
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

    if state.config.lab_enabled {
        if let Some(rest) = lab::under(&state.config.lab_prefix, req.uri().path()) {
            let rest = rest.to_owned();
            return lab::answer(state, req, &rest).await;
        }
    }
    // Taken apart rather than cloned (the URI's clone and drop showed in the profile of 304s).
    let (
        http::request::Parts {
            method,
            uri,
            version,
            headers,
            ..
        },
        _,
    ) = req.into_parts();
    // With `precompressed`, every file is checked for sidecars (its responses vary on them).
    let accept = state
        .config
        .precompressed
        .then(|| encoding::Accept::parse(&headers));
    let (rep, negotiated) = match open_target(state, uri.path(), "", uri.query(), accept).await {
        Ok(Target::File(rep, negotiated)) => (rep, negotiated),
        Ok(Target::Dir { dir, name }) if state.config.listing => {
            let dir = listing::Dir {
                root: state.root.clone(),
                policy: state.policy.clone(),
                dir,
                name,
            };
            return listing::answer(&method, &headers, uri.query(), dir).await;
        }
        Ok(Target::Dir { .. }) => return error_response(ResolveError::NotFound, uri.path()),
        Err(resp) => return resp,
    };
    // Zero-copy bodies only where hyper passes body buffers through as they are (`sendfile`).
    let sink = match version {
        http::Version::HTTP_10 | http::Version::HTTP_11 if state.config.sendfile => {
            sendfile::current()
        }
        _ => None,
    };
    let headers = negotiated.request_headers(&headers);
    let mut resp = respond(
        &method,
        &headers,
        &rep,
        &state.config,
        SystemTime::now(),
        sink,
    );
    negotiated.apply(resp.status(), resp.headers_mut());
    resp
}

/// The representation of the file at `path` (a URL path under the root), or the response that
/// says why there is none (a redirect to `redirect_base` + the path with a slash, 403, 404, ...).
/// A directory without an index file is a 404 here (listings are only at the directory's own URL).
pub(crate) async fn open(
    state: &AppState,
    path: &str,
    redirect_base: &str,
    query: Option<&str>,
) -> Result<Representation, Response> {
    match open_target(state, path, redirect_base, query, None).await? {
        Target::File(rep, _) => Ok(rep),
        Target::Dir { .. } => Err(error_response(ResolveError::NotFound, path)),
    }
}

/// What a URL path leads to: a file (in the negotiated coding), or a directory that has no
/// index file.
enum Target {
    File(Representation, Negotiated),
    Dir { dir: File, name: PathBuf },
}

/// [`open`], but a directory without an index file is returned for listing; with `accept`, the
/// file in the best acceptable precompressed coding (`fs::sidecar`): its own bytes and ETag, the
/// original name's Content-Type.
async fn open_target(
    state: &AppState,
    path: &str,
    redirect_base: &str,
    query: Option<&str>,
    accept: Option<encoding::Accept>,
) -> Result<Target, Response> {
    // File system metadata work (path lookup, open, fstat) runs inline: on a warm dentry cache
    // it costs a few microseconds, far less than a round trip through the blocking pool, which
    // dominated the profile of small-file requests. Reads of page-cached bytes run inline too;
    // only reads that would wait for the disk go to the blocking pool (`source`).
    let found = resolve::find(&state.root, path, &state.config.index_files, &state.policy);
    let (file, meta, name, content_type) = match found {
        Ok(Found::File {
            file,
            meta,
            name,
            content_type,
        }) => (file, meta, name, content_type),
        Ok(Found::AddSlash(to)) => {
            let mut to = format!("{redirect_base}{to}");
            if let Some(q) = query {
                to.push('?');
                to.push_str(q);
            }
            return Err(redirect(&to));
        }
        Ok(Found::Dir { dir, name }) => return Ok(Target::Dir { dir, name }),
        Err(e) => return Err(error_response(e, path)),
    };
    let (file, meta, negotiated) = match accept {
        Some(accept) => sidecar::select(&state.root, &state.policy, &name, &accept, file, meta),
        None => (file, meta, Negotiated::default()),
    };

    let path_headers = PathHeaders::new(&state.config.header_rules, &name, query);
    match representation(&state.digests, file, &meta, content_type).await {
        Ok(rep) => Ok(Target::File(
            Representation {
                path_headers,
                ..rep
            },
            negotiated,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
            // The file changed while it was hashed: the client may simply ask again.
            tracing::warn!(path = %name.display(), "{e}");
            let mut r = text(StatusCode::SERVICE_UNAVAILABLE, "503 File Is Changing\n").unwrap();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            Err(r)
        }
        Err(e) => Err(error_response(e.into(), path)),
    }
}

/// The representation of an open file; the ETag comes from the digest cache.
async fn representation(
    digests: &DigestCache,
    file: Arc<File>,
    meta: &Metadata,
    content_type: HeaderValue,
) -> std::io::Result<Representation> {
    let id = FileId::of(meta);
    let digest = digests.digest(file.clone(), id).await?;
    Ok(Representation {
        len: meta.len(),
        etag: Some(digest.etag),
        modified: meta.modified().ok(),
        content_type,
        source: Arc::new(source::FileVersion {
            file,
            id,
            links: std::os::unix::fs::MetadataExt::nlink(meta),
        }),
        repr_digest: Some(digest.repr_digest),
        path_headers: PathHeaders::default(),
    })
}

/// decide -> plan -> respond, for one representation. Pure but for the body's reads.
pub fn respond(
    method: &Method,
    req_headers: &HeaderMap,
    rep: &Representation,
    config: &Config,
    now: SystemTime,
    sink: Option<Sink>,
) -> Response {
    // Each time converted to seconds once (the conversion showed in the profile of 304s).
    let now_secs = preconditions::unix_secs(now);
    let (lm_secs, last_modified_is_strong) = match rep.modified {
        Some(m) => {
            let (lm, strong) =
                preconditions::last_modified_secs(preconditions::unix_secs(m), now_secs);
            (Some(lm), strong)
        }
        None => (None, false),
    };
    let last_modified = lm_secs.map(|s| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s));
    let validators = Validators {
        etag: rep.etag.as_ref().and_then(|e| e.to_str().ok()),
        last_modified,
        last_modified_is_strong,
    };

    // Headers every file response carries, 304 included (§15.4.5).
    let mut h = spare_header_map();
    h.insert(header::DATE, http_date(&DATE, now_secs));
    if let Some(etag) = &rep.etag {
        h.insert(header::ETAG, etag.clone());
    }
    if let Some(lm) = lm_secs {
        h.insert(header::LAST_MODIFIED, http_date(&LAST_MODIFIED, lm));
    }
    rep.path_headers
        .apply(&mut h, config.cache_control.as_ref());

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
    if !use_range && method == Method::GET && req_headers.contains_key(header::RANGE) {
        // Only If-Range turns a GET with Range into a full response at this point.
        if req_headers.contains_key(header::IF_RANGE) {
            METRICS.if_range_fallback();
        }
    }
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
            h.insert(header::CONTENT_RANGE, content_range(Some(&r), rep.len));
            (
                StatusCode::PARTIAL_CONTENT,
                rep.content_type.clone(),
                vec![Piece::Range(r)],
                r.len(),
            )
        }
        RangePlan::Multi(ranges) => {
            METRICS.multipart();
            let m = Multipart::new(&ranges, rep.len, rep.content_type.to_str().unwrap_or(""));
            let length = m.content_length();
            let mut pieces = Vec::with_capacity(2 * m.parts.len() + 1);
            for (r, head) in m.parts.iter() {
                pieces.push(Piece::Literal(head.clone()));
                pieces.push(Piece::Range(*r));
            }
            pieces.push(Piece::Literal(m.closing.clone()));
            (
                StatusCode::PARTIAL_CONTENT,
                value(&m.content_type()),
                pieces,
                length,
            )
        }
        RangePlan::Unsatisfiable => {
            // §15.5.17: say how long the representation is. An empty body, so that a naive
            // resumer has nothing to append.
            h.insert(header::CONTENT_RANGE, content_range(None, rep.len));
            h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
            return with_headers(StatusCode::RANGE_NOT_SATISFIABLE, h, Body::empty());
        }
    };
    // RFC 9530 §3: the digest of the whole selected representation, on a 206 too. Not on a
    // 304 (RFC 9110 §15.4.5: no representation metadata that does not guide a cache update;
    // the matching ETag already says the stored digest holds), nor on a 412 or 416.
    if let Some(d) = &rep.repr_digest {
        if repr_digest::wanted(req_headers, config.repr_digest) {
            h.insert(repr_digest::REPR_DIGEST.clone(), d.clone());
        }
    }
    h.insert(header::CONTENT_TYPE, content_type);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    let body = if method == Method::HEAD || length == 0 {
        Body::empty()
    } else {
        source::body(rep.source.clone(), pieces, sink)
    };
    with_headers(status, h, body)
}

thread_local! {
    /// Header maps of written responses, emptied, for the next ones built on this thread
    /// (allocating and freeing one per response showed in the profile of 304s).
    static SPARE_HEADER_MAPS: std::cell::RefCell<Vec<HeaderMap>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Room for every header a file response carries without growing.
const RESPONSE_HEADERS: usize = 16;

/// An empty header map for a file response: a recycled one when there is one.
fn spare_header_map() -> HeaderMap {
    // `try_with`: a thread being torn down just allocates (or drops) maps.
    SPARE_HEADER_MAPS
        .try_with(|spare| spare.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_else(|| HeaderMap::with_capacity(RESPONSE_HEADERS))
}

/// Give the header map of a written response back for reuse (emptied; a few per thread, and
/// none that grew large).
pub fn recycle_header_map(mut h: HeaderMap) {
    if h.capacity() > 2 * RESPONSE_HEADERS {
        return;
    }
    h.clear();
    let _ = SPARE_HEADER_MAPS.try_with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.len() < 8 {
            spare.push(h);
        }
    });
}

type DateCache = std::cell::RefCell<(u64, HeaderValue)>;

thread_local! {
    /// The last `Date` formatted on this thread (it changes once a second).
    static DATE: DateCache = const { DateCache::new((u64::MAX, HeaderValue::from_static(""))) };
    /// The last `Last-Modified` (repeated requests for one file format the same one).
    static LAST_MODIFIED: DateCache =
        const { DateCache::new((u64::MAX, HeaderValue::from_static(""))) };
}

/// `secs` since the epoch as an HTTP-date, formatted only when it differs from the last one
/// formatted through `cache` on this thread.
fn http_date(cache: &'static std::thread::LocalKey<DateCache>, secs: u64) -> HeaderValue {
    cache.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != secs {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
            *last = (secs, value(&httpdate::fmt_http_date(t)));
        }
        last.1.clone()
    })
}

/// The current time as a `Date` value (for responses that did not set one).
pub fn date_now() -> HeaderValue {
    http_date(&DATE, preconditions::unix_secs(SystemTime::now()))
}

static NOSNIFF: (HeaderName, HeaderValue) = (
    HeaderName::from_static("x-content-type-options"),
    HeaderValue::from_static("nosniff"),
);

/// `bytes FIRST-LAST/LEN`, or `bytes */LEN` for a 416 (RFC 9110 §14.4), written with `itoa`
/// (`format!` and the copy into a `HeaderValue` showed in the profile of 64 KiB ranges).
fn content_range(r: Option<&range::ByteRange>, len: u64) -> HeaderValue {
    let mut digits = itoa::Buffer::new();
    let mut s = bytes::BytesMut::with_capacity(6 + 3 * 20 + 2);
    s.extend_from_slice(b"bytes ");
    match r {
        Some(r) => {
            s.extend_from_slice(digits.format(r.start).as_bytes());
            s.extend_from_slice(b"-");
            s.extend_from_slice(digits.format(r.last()).as_bytes());
        }
        None => s.extend_from_slice(b"*"),
    }
    s.extend_from_slice(b"/");
    s.extend_from_slice(digits.format(len).as_bytes());
    // SAFETY: only ASCII letters, digits, space, `-`, `*` and `/`: all valid in a field value.
    unsafe { HeaderValue::from_maybe_shared_unchecked(s.freeze()) }
}

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

/// A one-line plain-text response built at run time (a 400 naming the bad parameter, ...).
pub(crate) fn plain_text(status: StatusCode, body: String) -> Response {
    let len = body.len();
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(NOSNIFF.0.clone(), NOSNIFF.1.clone());
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
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
