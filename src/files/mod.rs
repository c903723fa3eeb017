//! The engine as a tower `Service`: [`ServeFiles`] answers GET and HEAD (and OPTIONS, and 405
//! for the rest) for the files of a [`Storage`], by the pipeline of the crate docs:
//! resolve (the storage) -> open (a [`Representation`] with its validators) -> decide and plan
//! (`http::preconditions`, `http::range`, in `respond`) -> respond (a streaming body that
//! reads only the planned bytes, `body`). Directories without an index file are listed when
//! listings are on (`listing`).
//!
//! It knows nothing about connections, beyond the `sendfile` hand-off that a plain HTTP/1.x
//! connection may offer it (`fs::sendfile`), and nothing about the application around it.

mod body;
#[cfg(feature = "s3")]
mod bucket;
mod disk;
pub(crate) mod listing;
mod options;
mod respond;
pub mod storage;

use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use axum::body::Body;
use axum::response::Response;
use http::header::{self, HeaderValue};
use http::{Method, Request, StatusCode, Uri};

#[cfg(feature = "s3")]
pub use bucket::{Bucket, S3Options};
pub use disk::Disk;
pub(crate) use options::Options;
pub use options::{DEFAULT_CACHE_CONTROL, DEFAULT_MAX_RANGES};
pub use storage::{Found, NameSettings, Names, OpenError, Representation, Source, Storage};

use crate::fs::sendfile;
use crate::http::encoding::{Accept, Coding, Negotiated};
use crate::http::header_rules::{HeaderRules, PathHeaders};
use crate::http::response::{moved_permanently, recycle_extensions, recycle_header_map, text};
pub(crate) use body::Origin;

/// Serves the files of a [`Storage`] (by default a directory on disk) with every range and
/// conditional behaviour of RFC 9110. Cheap to clone: clones share one state.
///
/// ```no_run
/// # async fn run() {
/// use rangeserve::ServeFiles;
/// let app = axum::Router::new().nest_service("/files", ServeFiles::new("www"));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await.unwrap();
/// axum::serve(listener, app).await.unwrap();
/// # }
/// ```
pub struct ServeFiles<S = Disk> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for ServeFiles<S> {
    fn clone(&self) -> Self {
        ServeFiles {
            inner: self.inner.clone(),
        }
    }
}

#[derive(Clone)]
struct Inner<S> {
    storage: S,
    opts: Options,
}

const ALLOW: &str = "GET, HEAD, OPTIONS";

impl ServeFiles<Disk> {
    /// Serve the files under `root`. Never fails: a root that cannot be opened is logged once
    /// (at [`start`](Self::start) or the first request) and every request is answered 500.
    pub fn new(root: impl AsRef<std::path::Path>) -> ServeFiles<Disk> {
        ServeFiles::with_storage(Disk::new(root))
    }

    /// Follow symlinks whose target lies outside the root (default: no, they are 404).
    pub fn follow_symlinks(self, yes: bool) -> Self {
        self.storage(|d| d.follow_symlinks = yes)
    }
}

#[cfg(feature = "s3")]
impl ServeFiles<Bucket> {
    /// Serve the objects of an S3-compatible bucket under a prefix (`s3://BUCKET/PREFIX`),
    /// reached with the standard `AWS_*` variables and `options` over them. Never fails: a
    /// bucket that cannot be reached is an error at [`start`](Self::start), or a 500 for every
    /// request (logged once).
    pub fn bucket(url: impl Into<String>, options: S3Options) -> ServeFiles<Bucket> {
        ServeFiles::with_storage(Bucket::new(url, options))
    }
}

impl<S: Storage + Clone + Names> ServeFiles<S> {
    fn storage(mut self, edit: impl FnOnce(&mut S)) -> Self {
        edit(&mut Arc::make_mut(&mut self.inner).storage);
        self
    }

    /// Serve names that start with a dot (default: no, they are 404).
    pub fn show_hidden(self, yes: bool) -> Self {
        self.storage(|s| s.names().show_hidden = yes)
    }

    /// Names tried, in order, for a directory asked for with a trailing slash (default:
    /// `index.html`). Each must be a plain file name.
    pub fn index_files<I, T>(self, names: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        let names = names.into_iter().map(Into::into).collect();
        self.storage(|s| s.names().index_files = names)
    }

    /// Keep the content hashes (the ETags) in this directory across restarts, so that no file
    /// is hashed twice (default: none). It must not be inside the root.
    pub fn state_dir(self, dir: Option<PathBuf>) -> Self {
        self.storage(|s| s.names().state_dir = dir)
    }

    /// Hash every file under the root in the background when the service starts (default: no).
    pub fn prehash(self, yes: bool) -> Self {
        self.storage(|s| s.names().prehash = yes)
    }

    /// Hash new or changed files before they are asked for (default: no): on disk, by watching
    /// the root; in a bucket, by listing it every few seconds.
    pub fn watch(self, yes: bool) -> Self {
        self.storage(|s| s.names().watch = yes)
    }
}

impl<S: Storage> ServeFiles<S> {
    /// Open the root (or reach the bucket), load the hashes kept in `state_dir`, and start
    /// `prehash` and `watch` now, rather than at the first request; the error says why
    /// nothing can be served. Needs a tokio runtime. Calling it again does nothing.
    pub async fn start(&self) -> std::io::Result<()> {
        self.inner.storage.start().await
    }

    /// Content hashes computed so far by this service (hashes loaded from `state_dir` do not
    /// count): what a test or an operator checks to see that a file was hashed once.
    pub fn hash_computations(&self) -> u64 {
        self.inner.storage.hash_computations()
    }

    /// See [`Storage::remember_hash`]: an upload publishes a file whose hash it computed.
    #[doc(hidden)]
    pub fn remember_hash(
        &self,
        meta: &std::fs::Metadata,
        sha256: crate::fs::digest::Sha256Sum,
    ) -> bool {
        self.inner.storage.remember_hash(meta, sha256)
    }
}

impl<S: Storage + Clone> ServeFiles<S> {
    /// Serve the files of `storage` with the default settings.
    pub fn with_storage(storage: S) -> ServeFiles<S> {
        ServeFiles {
            inner: Arc::new(Inner {
                storage,
                opts: Options::default(),
            }),
        }
    }

    fn opts(mut self, edit: impl FnOnce(&mut Options)) -> Self {
        edit(&mut Arc::make_mut(&mut self.inner).opts);
        self
    }

    /// Requests with more ranges than this get the whole file as a 200 (default: 100; at least
    /// 1, which refuses multipart answers).
    pub fn max_ranges(self, n: usize) -> Self {
        self.opts(|o| o.max_ranges = n.max(1))
    }

    /// List a directory asked for with a trailing slash that has no index file, as HTML or
    /// JSON, with each file's SHA-256 when the storage already knows it (a listing never
    /// hashes a file) (default: no, it is 404).
    pub fn listing(self, yes: bool) -> Self {
        self.opts(|o| o.listing = yes)
    }

    /// Serve `name.br`, `name.zst` or `name.gz` beside `name` to clients whose
    /// `Accept-Encoding` allows it, each as its own representation (default: no).
    pub fn precompressed(self, yes: bool) -> Self {
        self.opts(|o| o.precompressed = yes)
    }

    /// The `Cache-Control` sent with files that no header rule gives one (default:
    /// `no-cache`); `None` sends none.
    pub fn cache_control(self, value: Option<HeaderValue>) -> Self {
        self.opts(|o| o.cache_control = value)
    }

    /// Send `Repr-Digest` (RFC 9530, sha-256) with files; a request's `Want-Repr-Digest`
    /// overrides it either way (default: yes).
    pub fn repr_digest(self, yes: bool) -> Self {
        self.opts(|o| o.repr_digest = yes)
    }

    /// Send long runs of files with `sendfile(2)` when the connection offers it (default:
    /// yes). Only rangeserve's own transport offers it; elsewhere this changes nothing.
    pub fn sendfile(self, yes: bool) -> Self {
        self.opts(|o| o.sendfile = yes)
    }

    /// Response headers by path (`[[headers]]` in the binary's config): the first rule whose
    /// glob matches the file's path sets its headers (default: none).
    pub fn header_rules(self, rules: HeaderRules) -> Self {
        self.opts(|o| o.header_rules = Arc::new(rules))
    }

    /// Answer `?download` with `Content-Disposition: attachment` and the file's name
    /// (default: yes).
    pub fn download_query(self, yes: bool) -> Self {
        self.opts(|o| o.download = yes)
    }

    /// In the listings of `dir` (a directory under the root, `/`-separated; `""` for the
    /// root) and of every directory inside it, link to an upload page at `page` (a URL path,
    /// e.g. `/_upload/`): "Upload files", with `?dir=` and the listed directory's path
    /// relative to `dir` when it is deeper (default: no link). The engine serves no such page:
    /// the application around it does (the binary, with `[upload]` on).
    pub fn upload_link(self, dir: &str, page: &str) -> Self {
        let link = options::UploadLink {
            dir: dir.split('/').filter(|s| !s.is_empty()).collect(),
            page: page.to_string(),
        };
        self.opts(|o| o.upload_link = Some(Arc::new(link)))
    }
}

impl<S, B> tower::Service<Request<B>> for ServeFiles<S>
where
    S: Storage,
    B: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The body is never read: dropped here, so the future does not hold it.
        let (parts, _) = req.into_parts();
        // Most requests are answered here and now (a file whose hash is known): the future
        // then only hands the response over, and nothing large is moved into a box.
        match answer_now(&self.inner, parts) {
            Now::Answered(resp) => ResponseFuture(Answer::Now(std::future::ready(Ok(resp)))),
            Now::Later(parts) => {
                let inner = self.inner.clone();
                ResponseFuture(Answer::Later(Box::pin(async move {
                    Ok(answer(&inner, parts).await)
                })))
            }
        }
    }
}

/// The future of a [`ServeFiles`] response: most are answered at once (a file whose hash is
/// known), without a boxed future for them (an allocation per request).
pub struct ResponseFuture(Answer);

// The response is the common case: boxing it would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Answer {
    Now(std::future::Ready<Result<Response, Infallible>>),
    Later(Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>),
}

impl Future for ResponseFuture {
    type Output = Result<Response, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            Answer::Now(ready) => Pin::new(ready).poll(cx),
            Answer::Later(fut) => fut.as_mut().poll(cx),
        }
    }
}

/// Where the service is mounted: the prefix that axum's `nest_service` stripped from the path
/// (known from its `OriginalUri` extension; empty when the service was not nested), and
/// whether the request named the mount point itself without its slash (`/files`, which axum
/// hands on as `/`).
fn mount<'a>(uri: &'a Uri, extensions: &'a http::Extensions) -> (&'a str, bool) {
    let Some(original) = extensions.get::<axum::extract::OriginalUri>() else {
        return ("", false);
    };
    let (path, full) = (uri.path(), original.0.path());
    if path == "/" && !full.ends_with('/') {
        return (full, true);
    }
    (full.strip_suffix(path).unwrap_or(""), false)
}

/// What [`answer_now`] could do.
// Either is the common case: boxing would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Now {
    Answered(Response),
    /// The request back, for [`answer`].
    Later(http::request::Parts),
}

/// The answer, if it needs no waiting: another method than GET and HEAD, the mount point
/// without its slash, or a file the storage has at hand (`Storage::open_now`).
fn answer_now<S: Storage>(inner: &Inner<S>, parts: http::request::Parts) -> Now {
    match parts.method {
        Method::GET | Method::HEAD => {}
        Method::OPTIONS => {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::NO_CONTENT;
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(ALLOW));
            return Now::Answered(r);
        }
        _ => {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed\n");
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(ALLOW));
            return Now::Answered(r);
        }
    }
    let (base, at_mount_point) = mount(&parts.uri, &parts.extensions);
    if at_mount_point {
        // The root is a directory: its URL ends with a slash, as any other directory's.
        return Now::Answered(redirect_with_query(&format!("{base}/"), parts.uri.query()));
    }
    // Sidecars are looked for through the storage's asynchronous interface.
    if inner.opts.precompressed {
        return Now::Later(parts);
    }
    let (rep, name) = match inner.storage.open_now(parts.uri.path()) {
        Some(Ok(found)) => found,
        Some(Err(e)) => return Now::Answered(respond::open_error(e, parts.uri.path())),
        None => return Now::Later(parts),
    };
    let query = if inner.opts.download {
        parts.uri.query()
    } else {
        None
    };
    let rep = Representation {
        path_headers: PathHeaders::new(&inner.opts.header_rules, &name, query),
        ..rep
    };
    let resp = file_response(inner, &parts, &rep, Negotiated::default(), &parts.headers);
    recycle(parts);
    Now::Answered(resp)
}

/// Give an answered request's header and extension maps back for the next request parsed on
/// this thread (`http::response`'s spare maps).
fn recycle(parts: http::request::Parts) {
    let http::request::Parts {
        headers,
        extensions,
        ..
    } = parts;
    recycle_header_map(headers);
    recycle_extensions(extensions);
}

/// The response for `rep`, the representation `parts` asked for (in the `negotiated` coding;
/// `headers` are the request's, as the preconditions should see them).
fn file_response<S>(
    inner: &Inner<S>,
    parts: &http::request::Parts,
    rep: &Representation,
    negotiated: Negotiated,
    headers: &http::HeaderMap,
) -> Response {
    file_response_planned(inner, parts, rep, negotiated, headers).0
}

/// [`file_response`], the first run of the source its body reads (`respond_planned`), and
/// whether the body reads it through the source's pipe (`Source::read_piped`).
fn file_response_planned<S>(
    inner: &Inner<S>,
    parts: &http::request::Parts,
    rep: &Representation,
    negotiated: Negotiated,
    headers: &http::HeaderMap,
) -> (Response, Option<(u64, u64)>, bool) {
    // Zero-copy bodies only where the connection passes body buffers through as they are.
    let sink = match parts.version {
        http::Version::HTTP_10 | http::Version::HTTP_11 if inner.opts.sendfile => {
            sendfile::current()
        }
        _ => None,
    };
    let has_sink = sink.is_some();
    let (mut resp, first) = respond::respond_planned(
        &parts.method,
        headers,
        rep,
        &inner.opts,
        SystemTime::now(),
        sink,
        &Origin {
            path: parts.uri.path(),
            extensions: Some(&parts.extensions),
        },
    );
    negotiated.apply(resp.status(), resp.headers_mut());
    let total = http_body::Body::size_hint(resp.body()).exact().unwrap_or(0);
    let piped = has_sink && body::pipes(&*rep.source, total);
    (resp, first, piped)
}

/// What became of a response built for a representation that the store may have replaced since.
// The response is the common case: boxing it would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Checked {
    /// The response to send: its body's first read is under way, tied to the version its head
    /// describes (or the source has nothing to check), or the error that read met.
    Ready(Response),
    /// Not to be sent: the file changed before its first read (or, for a remembered
    /// representation, no read would confirm it): ask the storage afresh.
    Again,
}

/// The response for `rep` as [`file_response`] builds it, once its source's first read is open
/// (`Source::open_run`), before anything of it is sent: so that a version that changed since
/// it was looked up is never described by a head whose body then fails. For a `remembered`
/// representation (`Storage::open_remembered`, from memory, possibly out of date), that read
/// is the only confirmation: a response without a body (304, 412, 416, an empty file) is
/// [`Checked::Again`].
async fn checked<S>(
    inner: &Inner<S>,
    parts: &http::request::Parts,
    rep: &Representation,
    negotiated: Negotiated,
    headers: &http::HeaderMap,
    remembered: bool,
) -> Checked {
    let (resp, first, piped) = file_response_planned(inner, parts, rep, negotiated, headers);
    let Some((offset, until)) = first else {
        return match remembered {
            true => Checked::Again,
            false => Checked::Ready(resp),
        };
    };
    let Some(open) = rep.source.clone().open_run(offset, until, piped) else {
        return Checked::Ready(resp);
    };
    let read = match open.await {
        // A short body is read whole now: it leaves with the head in one write.
        Ok(()) => body::read_ahead(resp).await,
        Err(e) => Err(e),
    };
    match read {
        Ok(resp) => Checked::Ready(resp),
        Err(e) if storage::changed(&e) => {
            tracing::debug!(
                path = parts.uri.path(),
                "changed since it was looked up: {e}"
            );
            Checked::Again
        }
        Err(e) => Checked::Ready(respond::open_error(
            OpenError::Upstream(e),
            parts.uri.path(),
        )),
    }
}

/// The answer to a GET or HEAD that [`answer_now`] could not give.
async fn answer<S: Storage>(inner: &Inner<S>, parts: http::request::Parts) -> Response {
    let (base, _) = mount(&parts.uri, &parts.extensions);
    let (uri, headers) = (&parts.uri, &parts.headers);
    // With `precompressed`, every file is checked for sidecars (its responses vary on them).
    let accept = inner.opts.precompressed.then(|| Accept::parse(headers));
    // At most two looks at the file: if it changes after the first and before its body's first
    // read, it is looked up again; after a second change, 503.
    let mut looks = 2;
    // A GET of a file the storage remembers (with its hash): built from memory, sent only if
    // its first read confirms the version; otherwise looked up as any other.
    if accept.is_none() && parts.method == Method::GET {
        if let Some((rep, name)) = inner.storage.open_remembered(uri.path()) {
            let query = inner.opts.download.then(|| uri.query()).flatten();
            let rep = Representation {
                path_headers: PathHeaders::new(&inner.opts.header_rules, &name, query),
                ..rep
            };
            let fresh = Negotiated::default();
            match checked(inner, &parts, &rep, fresh, headers, true).await {
                Checked::Ready(resp) => return resp,
                Checked::Again => looks -= 1,
            }
        }
    }
    while looks > 0 {
        looks -= 1;
        let target = open_target(inner, uri.path(), base, uri.query(), accept.as_ref()).await;
        let (rep, negotiated) = match target {
            Ok(Target::File(rep, negotiated)) => (rep, negotiated),
            Ok(Target::Dir { dir, name }) if inner.opts.listing => {
                let upload = inner.opts.upload_link.as_ref();
                let at = listing::Location {
                    base,
                    name: &name,
                    upload: upload.and_then(|l| l.for_dir(&name)),
                };
                // Boxed: a listing's future would be most of this one's size.
                let listed =
                    listing::answer(&inner.storage, &parts.method, headers, uri.query(), dir, at);
                return Box::pin(listed).await;
            }
            Ok(Target::Dir { .. }) => return respond::open_error(OpenError::NotFound, uri.path()),
            Err(resp) => return resp,
        };
        let req_headers = negotiated.request_headers(headers);
        if let Checked::Ready(resp) =
            checked(inner, &parts, &rep, negotiated, &req_headers, false).await
        {
            return resp;
        }
    }
    respond::open_error(OpenError::Changing, uri.path())
}

fn redirect_with_query(to: &str, query: Option<&str>) -> Response {
    match query {
        Some(q) => moved_permanently(&format!("{to}?{q}")),
        None => moved_permanently(to),
    }
}

/// What a URL path leads to: a file (in the negotiated coding), or a directory that has no
/// index file.
enum Target<D> {
    File(Representation, Negotiated),
    Dir { dir: D, name: PathBuf },
}

/// The representation for `path` (a URL path under the storage's root), or the response that
/// says why there is none (a redirect to `redirect_base` + the path with a slash, 403, 404,
/// ...). With `accept`, the file in the best acceptable precompressed coding: its own bytes and
/// ETag, the original name's Content-Type.
async fn open_target<S: Storage>(
    inner: &Inner<S>,
    path: &str,
    redirect_base: &str,
    query: Option<&str>,
    accept: Option<&Accept>,
) -> Result<Target<S::Dir>, Response> {
    let storage = &inner.storage;
    let (file, name) = match storage.find(path).await {
        Ok(Found::File { file, name }) => (file, name),
        Ok(Found::AddSlash(to)) => {
            return Err(redirect_with_query(&format!("{redirect_base}{to}"), query))
        }
        Ok(Found::Dir { dir, name }) => return Ok(Target::Dir { dir, name }),
        Err(e) => return Err(respond::open_error(e, path)),
    };
    let (file, negotiated) = match accept {
        // Boxed: only with `precompressed`, and its future would weigh on every request's.
        Some(accept) => Box::pin(select_coding(storage, file, &name, accept)).await,
        None => (file, Negotiated::default()),
    };
    let query = if inner.opts.download { query } else { None };
    let path_headers = PathHeaders::new(&inner.opts.header_rules, &name, query);
    match storage.open(file).await {
        Ok(rep) => Ok(Target::File(
            Representation {
                path_headers,
                ..rep
            },
            negotiated,
        )),
        Err(e) => Err(respond::open_error(e, path)),
    }
}

/// The file to serve for `name`: the best acceptable sidecar, or the file itself; and whether
/// the file has any sidecar (so that the response varies). At most three lookups: the
/// preferred codings in order until one exists, then, if none was chosen, the others until one
/// exists (only to know whether to send `Vary`).
async fn select_coding<S: Storage>(
    storage: &S,
    file: S::File,
    name: &std::path::Path,
    accept: &Accept,
) -> (S::File, Negotiated) {
    let mut tried = [false; 3];
    for coding in accept.preferred() {
        tried[coding as usize] = true;
        if let Some(f) = storage.sidecar(&file, name, coding.suffix()).await {
            let chosen = Negotiated {
                coding: Some(coding),
                vary: true,
            };
            return (f, chosen);
        }
    }
    let mut vary = false;
    for c in Coding::ALL.into_iter().filter(|c| !tried[*c as usize]) {
        if storage.sidecar(&file, name, c.suffix()).await.is_some() {
            vary = true;
            break;
        }
    }
    (file, Negotiated { coding: None, vary })
}

#[cfg(feature = "server")]
impl<S: Storage> ServeFiles<S> {
    /// The representation of the file at `path` (a URL path), or the response that says why
    /// there is none; a directory without an index file is a 404. For the lab, which serves
    /// the root's files with faults.
    pub(crate) async fn open(
        &self,
        path: &str,
        redirect_base: &str,
        query: Option<&str>,
    ) -> Result<Representation, Response> {
        match open_target(&self.inner, path, redirect_base, query, None).await? {
            Target::File(rep, _) => Ok(rep),
            Target::Dir { .. } => Err(respond::open_error(OpenError::NotFound, path)),
        }
    }
}

#[cfg(feature = "server")]
impl<S> ServeFiles<S> {
    /// The response to a GET or HEAD for `rep`, with this service's settings (the lab's entry).
    pub(crate) fn respond(
        &self,
        method: &Method,
        headers: &http::HeaderMap,
        rep: &Representation,
        now: SystemTime,
        origin: &Origin<'_>,
    ) -> Response {
        respond::respond_planned(method, headers, rep, &self.inner.opts, now, None, origin).0
    }
}
