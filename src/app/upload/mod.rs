//! Uploads (`[upload]`): the protocols around the store (`fs::upload`).
//!
//! - tus 1.0.0 under the prefix: `{prefix}/` is the creation endpoint, `{prefix}/{id}` an
//!   upload (`tus`).
//! - The IETF resumable-upload draft (`ietf`): a `POST {prefix}/` or a `PUT` to a file's path
//!   with `Upload-Complete` creates an upload at `{prefix}/{id}`. Under the prefix a request
//!   with `Tus-Resumable` is tus's, one without it the draft's, but for a `POST` or `PATCH`
//!   without `Upload-Complete` (which the draft requires): tus's, refused with 412.
//!   `OPTIONS` answers for both.
//! - A plain `PUT` of a whole file to its path (`put`).
//! - The upload page, `{prefix}/`, and the tus-js-client it runs, `{prefix}/tus.min.js`
//!   (`page`), from which a person with a token uploads in the browser.
//!
//! All are reached through [`Dispatch`], the Router's fallback when uploads are on: a GET or
//! HEAD of the page's two paths gets them; any other GET goes to the file engine (but the
//! draft's offset retrieval: a GET under the prefix with `Upload-Draft-Interop-Version`), a
//! HEAD after a comparison of its path's first bytes with the prefix, as before; under the
//! prefix, tus or the draft as above; a `PUT` elsewhere to the draft with `Upload-Complete`,
//! else to `put`; the rest to the engine (its OPTIONS and 405).
//!
//! Every upload request needs a bearer token from the configuration (`auth`); downloads never
//! do. A published file's SHA-256, computed as its bytes arrived, is handed to the engine's
//! digest cache, so its first download has its ETag without hashing.

mod auth;
mod ietf;
mod page;
mod put;
mod tus;

use futures_util::future::Either;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use futures_util::StreamExt as _;
use http::header::{self, HeaderValue};
use http::{Method, StatusCode};

use crate::config::UploadConfig;
use crate::files::{ServeFiles, Storage};
use crate::fs::upload::{Id, Owner, Published, Settings, Store, StoreError};
use crate::http::response::plain_text;
use crate::http::upload::{TUS_RESUMABLE, UPLOAD_COMPLETE, UPLOAD_DRAFT_INTEROP_VERSION};
use crate::ops::access_log::Received;
use crate::ops::metrics::METRICS;
use crate::ops::AbortOnDrop;

/// Uploads: the store, who may upload, and the engine that serves what they publish. Cheap to
/// clone.
pub struct Uploads<S> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for Uploads<S> {
    fn clone(&self) -> Self {
        Uploads {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<S> {
    store: Store,
    config: UploadConfig,
    show_hidden: bool,
    files: ServeFiles<S>,
    /// The upload page (not for the lab's endpoint).
    page: Option<page::Page>,
    kind: Kind,
}

/// Whose endpoint the handlers serve: the real one, or the lab's.
enum Kind {
    /// `[upload]`: bearer tokens, published files under `dir`.
    Main,
    /// The lab's (`app::lab`): no token (any `Authorization` is ignored), the creation's
    /// query kept on the upload's URL (so that a client that only knows the endpoint's URL
    /// sends its faults with every request), published files served under `published`.
    Lab { published: String },
}

/// The owner of every upload of the lab's endpoint.
const LAB_OWNER: Owner = [0; 32];

/// On the answer to a request that stored bytes of an upload: which one, the offset it is
/// at, and whether it completed (for the lab's `lose` fault).
#[derive(Debug, Clone, Copy)]
pub struct Stored {
    pub id: Id,
    pub offset: u64,
    pub complete: bool,
}

/// Mark `resp` as the answer to an append that left `up` as it is.
fn stored(mut resp: Response, up: &crate::fs::upload::Upload) -> Response {
    resp.extensions_mut().insert(Stored {
        id: up.id,
        offset: up.offset,
        complete: up.completed,
    });
    resp
}

impl<S: Storage> Uploads<S> {
    /// Uploads into `config.dir`, published files served by `files` (started: its digest
    /// cache is where their hashes go). Opens the store (blocking, briefly: call at start-up).
    pub fn open(
        config: &UploadConfig,
        show_hidden: bool,
        files: ServeFiles<S>,
    ) -> io::Result<Self> {
        Self::open_as(config, show_hidden, files, Kind::Main)
    }

    /// The lab's endpoint (`app::lab`): uploads without a token into `config.dir`, at
    /// `config.prefix`, published files served under `published` (a URL path) by `files`.
    /// Blocking, briefly.
    pub fn open_lab(
        config: &UploadConfig,
        files: ServeFiles<S>,
        published: &str,
    ) -> io::Result<Self> {
        let kind = Kind::Lab {
            published: published.to_owned(),
        };
        Self::open_as(config, false, files, kind)
    }

    fn open_as(
        config: &UploadConfig,
        show_hidden: bool,
        files: ServeFiles<S>,
        kind: Kind,
    ) -> io::Result<Self> {
        let store = Store::open(
            &config.dir,
            Settings {
                max_size: config.max_size,
                max_age: config.max_age,
                overwrite: config.overwrite,
                show_hidden,
            },
        )?;
        let page = matches!(kind, Kind::Main).then(|| page::Page::new(config));
        Ok(Uploads {
            inner: Arc::new(Inner {
                store,
                config: config.clone(),
                show_hidden,
                files,
                page,
                kind,
            }),
        })
    }

    /// The Router's fallback: uploads, and everything else to `files` as before.
    pub fn dispatch(&self) -> Dispatch<S> {
        Dispatch {
            files: self.inner.files.clone(),
            uploads: self.clone(),
        }
    }

    /// Remove expired uploads every so often (at most a minute, at least a second, apart;
    /// half of `max_age` when shorter), until the returned guard is dropped.
    pub fn sweeper(&self) -> AbortOnDrop {
        let store = self.inner.store.clone();
        let every =
            (self.inner.config.max_age / 2).clamp(Duration::from_secs(1), Duration::from_secs(60));
        AbortOnDrop(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let s = store.clone();
                match tokio::task::spawn_blocking(move || s.sweep()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!("uploads: {n} expired unfinished uploads removed"),
                    Err(e) => tracing::warn!("uploads: the sweep failed: {e}"),
                }
            }
        }))
    }
}

impl<S: Storage> Uploads<S> {
    /// Answer a request under the prefix (`rest` is its path after it): tus's when it says
    /// `Tus-Resumable`, or is an `OPTIONS`, or a `POST` or `PATCH` without `Upload-Complete`
    /// (which the draft requires: tus's, then refused with 412); the draft's otherwise.
    pub async fn handle(&self, req: Request, rest: &str) -> Response {
        let hs = req.headers();
        if req.method() == Method::OPTIONS
            || hs.contains_key(&TUS_RESUMABLE)
            || (matches!(*req.method(), Method::POST | Method::PATCH)
                && !hs.contains_key(&UPLOAD_COMPLETE))
        {
            tus::handle(self, req, rest).await
        } else {
            ietf::handle(self, req, rest).await
        }
    }
}

impl<S> Uploads<S> {
    /// The store (the lab reaches it for its `lose` fault).
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Who is asking: the owner its token stands for, or why it may not upload. The lab's
    /// endpoint takes anyone, token or not.
    fn owner(&self, headers: &http::HeaderMap) -> Result<Owner, auth::Refused> {
        match self.inner.kind {
            Kind::Main => auth::check(headers, &self.inner.config),
            Kind::Lab { .. } => Ok(LAB_OWNER),
        }
    }

    /// The URL of the upload `id`, created by a request with `query`: `{prefix}/{id}`, and
    /// for the lab `?{query}` after it.
    fn location(&self, id: Id, query: Option<&str>) -> HeaderValue {
        let prefix = &self.inner.config.prefix;
        match (&self.inner.kind, query) {
            (Kind::Lab { .. }, Some(q)) if !q.is_empty() => {
                crate::http::response::value(&format!("{prefix}/{id}?{q}"))
            }
            _ => crate::http::response::value(&format!("{prefix}/{id}")),
        }
    }

    /// The URL a published file is served at.
    fn published_url(&self, target: &str) -> HeaderValue {
        let (mut url, dir) = match &self.inner.kind {
            Kind::Main => (String::new(), self.inner.config.dir_name.as_str()),
            Kind::Lab { published } => (published.clone(), ""),
        };
        for seg in dir.split('/').chain(target.split('/')) {
            if !seg.is_empty() {
                url.push('/');
                url.push_str(&crate::files::listing::render::segment(seg));
            }
        }
        crate::http::response::value(&url)
    }

    /// Tell the engine the hash of a file just published (so no request hashes it).
    async fn remember(&self, published: &Published)
    where
        S: Storage,
    {
        let (files, meta, sum) = (
            self.inner.files.clone(),
            published.meta.clone(),
            published.sha256,
        );
        let _ = tokio::task::spawn_blocking(move || files.remember_hash(&meta, sum)).await;
    }
}

/// A request body as the store reads it: its data frames, errors as I/O errors.
fn body_stream(
    body: Body,
) -> impl futures_util::Stream<Item = io::Result<bytes::Bytes>> + Unpin + Send + 'static {
    body.into_data_stream().map(|r| r.map_err(io::Error::other))
}

/// Whether the request has a body (a Content-Length above zero, or a body of unknown length).
fn has_body(body: &Body) -> bool {
    !http_body::Body::is_end_stream(body)
}

/// A request's `Content-Length`, when it has a valid one.
fn content_length(req: &http::request::Parts) -> Option<u64> {
    req.headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Count a refused or failed upload request, and log the bytes received with the response.
fn finish(mut resp: Response, received: u64) -> Response {
    if resp.status().is_client_error() || resp.status().is_server_error() {
        METRICS.upload_rejected();
    }
    resp.extensions_mut().insert(Received(received));
    resp
}

/// The answer to a store error; `offset` headers are added by the protocol.
fn store_error(e: &StoreError) -> Response {
    let (status, text): (StatusCode, String) = match e {
        StoreError::NotFound => (StatusCode::NOT_FOUND, "404 Not Found: no such upload\n".into()),
        StoreError::Gone => (StatusCode::GONE, "410 Gone: the upload expired and was removed\n".into()),
        StoreError::Busy { offset } => (
            StatusCode::CONFLICT,
            format!("409 Conflict: another request is appending to this upload; {offset} bytes are stored\n"),
        ),
        StoreError::Offset { offset } => (
            StatusCode::CONFLICT,
            format!("409 Conflict: the upload is at offset {offset}\n"),
        ),
        StoreError::Length(why) => (StatusCode::BAD_REQUEST, format!("400 Bad Request: {why}\n")),
        StoreError::TooLarge => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "413 Content Too Large: larger than upload.max_size or than the upload's length\n".into(),
        ),
        StoreError::NoSpace { .. } => (
            StatusCode::INSUFFICIENT_STORAGE,
            "507 Insufficient Storage: not enough disk space\n".into(),
        ),
        StoreError::Exists => (
            StatusCode::CONFLICT,
            "409 Conflict: a file or directory of that name exists (upload.overwrite is off, or it is a directory)\n".into(),
        ),
        StoreError::InTheWay => (
            StatusCode::CONFLICT,
            "409 Conflict: a file or a symlink stands where a directory of the name would be\n".into(),
        ),
        StoreError::BadName(why) => (StatusCode::BAD_REQUEST, format!("400 Bad Request: {why}\n")),
        StoreError::Checksum { .. } => (
            StatusCode::from_u16(460).expect("a valid status"),
            "460 Checksum Mismatch: the bytes were not kept\n".into(),
        ),
        StoreError::Incomplete { .. } => (
            StatusCode::BAD_REQUEST,
            "400 Bad Request: the body ended early\n".into(),
        ),
        StoreError::Precondition => (
            StatusCode::PRECONDITION_FAILED,
            "412 Precondition Failed\n".into(),
        ),
        StoreError::Digest => (
            StatusCode::BAD_REQUEST,
            "400 Bad Request: the bytes do not have the SHA-256 of the Repr-Digest sent; nothing was published\n".into(),
        ),
        StoreError::Io(e) => {
            tracing::error!("upload failed: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, "500 Internal Server Error\n".into())
        }
    };
    plain_text(status, text)
}

/// The offset a store error leaves the upload at, when it says.
fn error_offset(e: &StoreError) -> Option<u64> {
    match e {
        StoreError::Busy { offset }
        | StoreError::Offset { offset }
        | StoreError::NoSpace { offset }
        | StoreError::Checksum { offset }
        | StoreError::Incomplete { offset } => Some(*offset),
        _ => None,
    }
}

/// The bytes an append that failed with `e` still stored, when it began at `start` (a cut body
/// or a full disk keep what arrived), for the access log.
fn stored_before(e: &StoreError, start: u64) -> u64 {
    match e {
        StoreError::Incomplete { offset } | StoreError::NoSpace { offset } => {
            offset.saturating_sub(start)
        }
        _ => 0,
    }
}

/// `405 Method Not Allowed` with `Allow`.
fn not_allowed(allow: &'static str) -> Response {
    let mut r = plain_text(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed\n");
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

/// The Router's fallback with uploads on: tus under the prefix, `PUT` anywhere else, and the
/// file engine for the rest.
pub struct Dispatch<S> {
    files: ServeFiles<S>,
    uploads: Uploads<S>,
}

impl<S> Clone for Dispatch<S> {
    fn clone(&self) -> Self {
        Dispatch {
            files: self.files.clone(),
            uploads: self.uploads.clone(),
        }
    }
}

impl<S> Dispatch<S> {
    /// The path under the tus prefix (`""`, `/`, `/{id}`), if the request is for it.
    fn under_prefix<'a>(&self, path: &'a str) -> Option<&'a str> {
        let rest = path.strip_prefix(self.uploads.inner.config.prefix.as_str())?;
        (rest.is_empty() || rest.starts_with('/')).then_some(rest)
    }

    /// The upload page or its script (`page`), for a GET or HEAD of one of their paths.
    fn page(&self, req: &Request) -> Option<Response> {
        let method = req.method();
        if method != Method::GET && method != Method::HEAD {
            return None;
        }
        let rest = self.under_prefix(req.uri().path())?;
        let page = self.uploads.inner.page.as_ref()?;
        page.answer(method, req.headers(), rest, req.uri().query())
    }
}

impl<S: Storage> tower::Service<Request> for Dispatch<S> {
    type Response = Response;
    type Error = Infallible;
    // Downloads keep the engine's own future (no box for an answer made at once); the rest
    // are boxed.
    type Future = Either<crate::files::ResponseFuture, BoxFuture>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // The upload page and its script: no token (the page asks for it).
        if let Some(page) = self.page(&req) {
            return Either::Right(Box::pin(std::future::ready(Ok(page))));
        }
        // Downloads first, as they were: only the draft's offset retrieval is a GET (under the
        // prefix, with the draft's header), and a HEAD is an upload's only under the prefix.
        if req.method() == Method::GET
            && !(req.headers().contains_key(&UPLOAD_DRAFT_INTEROP_VERSION)
                && self.under_prefix(req.uri().path()).is_some())
        {
            return Either::Left(self.files.call(req));
        }
        let under = self.under_prefix(req.uri().path()).map(str::to_owned);
        let uploads = self.uploads.clone();
        let hs = req.headers();
        match under {
            Some(rest) => boxed(async move { uploads.handle(req, &rest).await }),
            None if req.method() == Method::PUT && hs.contains_key(&UPLOAD_COMPLETE) => {
                boxed(async move { ietf::create_at(&uploads, req).await })
            }
            None if req.method() == Method::PUT => {
                boxed(async move { put::handle(&uploads, req).await })
            }
            None => Either::Left(self.files.call(req)),
        }
    }
}

/// An upload's answer as [`Dispatch`]'s future.
fn boxed(
    answer: impl Future<Output = Response> + Send + 'static,
) -> Either<crate::files::ResponseFuture, BoxFuture> {
    Either::Right(Box::pin(async move { Ok(answer.await) }))
}
