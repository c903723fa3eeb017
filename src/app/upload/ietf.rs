//! The IETF resumable-upload draft (draft-ietf-httpbis-resumable-upload, interop version 8)
//! over the same store as tus (`fs::upload`): an upload made one way can be continued only
//! that way by its client, but both keep the same guarantees.
//!
//! - Creation: a request with `Upload-Complete` (`?1`: the body is the whole file; `?0`: more
//!   to come), either `POST {prefix}/` named by `Content-Disposition`'s filename, or `PUT` to
//!   the path the file is to appear at. The upload resource is `{prefix}/{id}`, announced
//!   before any byte is read by a `104 (Upload Resumption Supported)` with `Location` and
//!   `Upload-Limit` (HTTP/1.1 only, and only to a client that sent the interop version we
//!   speak: "Draft Version Identification"); a `?0` creation answers `201` with it too.
//! - Offset retrieval: `HEAD` (or `GET` with `Upload-Draft-Interop-Version`) of the upload:
//!   `Upload-Offset`, `Upload-Complete`, `Upload-Length` when known, `Upload-Limit`,
//!   `Cache-Control: no-store`.
//! - Append: `PATCH` with `application/partial-upload`, `Upload-Offset` and `Upload-Complete`;
//!   a wrong offset is `409` with the problem type `mismatching-upload-offset`, lengths that
//!   disagree `400` with `inconsistent-upload-length` (RFC 9457 problem details).
//! - Cancellation: `DELETE` of the upload.
//! - `Repr-Digest: sha-256=...` at creation is checked before the file is published (draft,
//!   "Representation Digests"); `Content-Digest: sha-256=...` on a request, against that
//!   request's bytes, which are not kept if it does not match ("Content Digests").
//!
//! The response that completes an upload is the one the target would give a whole upload:
//! `201 Created` with the published file's `Location` (`204` when it replaced one), its ETag
//! and `Repr-Digest`, and `Upload-Complete: ?1`. Two requests appending to one upload at once:
//! the second is refused (`409`) rather than the first cut off (the draft's "simpler approach",
//! "Concurrency").

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};

use super::{
    body_stream, content_length, error_offset, finish, has_body, not_allowed, put, store_error,
    stored, stored_before, Uploads,
};
use crate::files::Storage;
use crate::fs::upload::{
    Algorithm, Append, Checksum, Id, New, Owner, Published, StoreError, Upload,
};
use crate::http::repr_digest::{self, sha256_sent, CONTENT_DIGEST, REPR_DIGEST};
use crate::http::response::{plain_text, value};
use crate::http::upload::{
    self as h, INTEROP_VERSION, UPLOAD_COMPLETE, UPLOAD_DRAFT_INTEROP_VERSION, UPLOAD_LENGTH,
    UPLOAD_LIMIT, UPLOAD_OFFSET,
};
use crate::transport::interim::Interim;

/// `104 (Upload Resumption Supported)`.
const UPLOAD_RESUMPTION_SUPPORTED: u16 = 104;

/// Answer a draft request to the upload prefix; `rest` is its path after the prefix.
pub async fn handle<S: Storage>(uploads: &Uploads<S>, req: Request, rest: &str) -> Response {
    let (resp, received) = answer(uploads, req, rest).await;
    finish(resp, received)
}

/// Answer a `PUT` with `Upload-Complete` to the path a file is to appear at.
pub async fn create_at<S: Storage>(uploads: &Uploads<S>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let (resp, received) = match uploads.owner(&parts.headers) {
        Err(refused) => (refused.response(), 0),
        Ok(owner) => match put::target_of(uploads, parts.uri.path()) {
            Err(r) => (*r, 0),
            Ok(target) => create(uploads, &parts, body, owner, target).await,
        },
    };
    finish(resp, received)
}

async fn answer<S: Storage>(uploads: &Uploads<S>, req: Request, rest: &str) -> (Response, u64) {
    let (parts, body) = req.into_parts();
    let owner = match uploads.owner(&parts.headers) {
        Ok(owner) => owner,
        Err(refused) => return (refused.response(), 0),
    };
    if matches!(rest, "" | "/") {
        if parts.method != Method::POST {
            return (not_allowed("OPTIONS, POST"), 0);
        }
        let named = parts
            .headers
            .get(header::CONTENT_DISPOSITION)
            .and_then(|v| v.to_str().ok())
            .and_then(h::disposition_filename);
        let Some(target) = named else {
            return bad(
                "Content-Disposition with a filename is required: the name to publish the file as",
            );
        };
        return create(uploads, &parts, body, owner, target).await;
    }
    let Some(id) = Id::parse(rest.trim_start_matches('/')) else {
        return (store_error(&StoreError::NotFound), 0);
    };
    match parts.method {
        Method::HEAD | Method::GET => (offset(uploads, id, owner).await, 0),
        Method::PATCH => append(uploads, &parts, body, id, owner).await,
        Method::DELETE => match uploads.inner.store.delete(id, owner).await {
            Ok(()) => (status(StatusCode::NO_CONTENT), 0),
            Err(e) => (store_error(&e), 0),
        },
        _ => (not_allowed("OPTIONS, HEAD, GET, PATCH, DELETE"), 0),
    }
}

fn status(s: StatusCode) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = s;
    r
}

fn bad(why: &str) -> (Response, u64) {
    (
        plain_text(StatusCode::BAD_REQUEST, format!("400 Bad Request: {why}\n")),
        0,
    )
}

/// An RFC 9457 problem of a type the draft registers, with its extension members.
fn problem(status: StatusCode, kind: &str, title: &str, members: &[(&str, u64)]) -> Response {
    let mut doc = serde_json::Map::new();
    doc.insert(
        "type".into(),
        format!("https://iana.org/assignments/http-problem-types#{kind}").into(),
    );
    doc.insert("title".into(), title.into());
    for (k, v) in members {
        doc.insert((*k).into(), (*v).into());
    }
    let mut r = Response::new(Body::from(serde_json::Value::Object(doc).to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    r
}

fn inconsistent_length() -> Response {
    problem(
        StatusCode::BAD_REQUEST,
        "inconsistent-upload-length",
        "inconsistent length values for upload",
        &[],
    )
}

/// `Upload-Complete` on a response.
fn complete(mut r: Response, done: bool) -> Response {
    let v = if done { "?1" } else { "?0" };
    r.headers_mut()
        .insert(UPLOAD_COMPLETE.clone(), HeaderValue::from_static(v));
    r
}

/// `Upload-Limit` for `up` (or, before there is one, the server's): `max-size`, and the
/// seconds an unfinished upload has left.
fn limit<S>(uploads: &Uploads<S>, up: Option<&Upload>) -> HeaderValue {
    let max_age = up.filter(|u| !u.completed).map(|u| {
        u.expires
            .duration_since(std::time::SystemTime::now())
            .map_or(0, |d| d.as_secs())
    });
    h::upload_limit(uploads.inner.config.max_size, max_age)
}

/// The `Upload-Limit` an `OPTIONS` answer carries (draft, "Limits": a resource that can
/// create uploads MUST say them).
pub fn options_limit<S>(uploads: &Uploads<S>) -> HeaderValue {
    limit(uploads, None)
}

/// Lengths that disagree.
struct Inconsistent;

/// The length a request gives the upload: `Upload-Length`, or with `Upload-Complete: ?1` the
/// offset plus `Content-Length`; both present must agree (draft, "Length").
fn length(
    parts: &http::request::Parts,
    done: bool,
    offset: u64,
) -> Result<Option<u64>, Inconsistent> {
    let declared = h::sf_integer(&parts.headers, &UPLOAD_LENGTH);
    let implied = done
        .then(|| content_length(parts))
        .flatten()
        .and_then(|n| offset.checked_add(n));
    match (declared, implied) {
        (Some(a), Some(b)) if a != b => Err(Inconsistent),
        (a, b) => Ok(a.or(b)),
    }
}

/// `Content-Digest: sha-256=...` as the store's check of one request's bytes.
fn content_digest(headers: &HeaderMap) -> Result<Option<Checksum>, String> {
    let sum =
        sha256_sent(headers, &CONTENT_DIGEST).map_err(|why| format!("Content-Digest: {why}"))?;
    Ok(sum.map(|s| Checksum {
        algorithm: Algorithm::Sha256,
        expected: s.to_vec(),
    }))
}

/// The URL of the upload `id`, created by the request `parts`.
fn location<S>(uploads: &Uploads<S>, parts: &http::request::Parts, id: Id) -> HeaderValue {
    uploads.location(id, parts.uri.query())
}

/// The answer to the request that completed an upload: what a whole upload to its target
/// gets (see `put`), with `Upload-Complete: ?1`.
fn completed<S>(uploads: &Uploads<S>, up: &Upload, p: &Published) -> Response {
    let mut r = status(if p.replaced {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::CREATED
    });
    let hs = r.headers_mut();
    if !p.replaced {
        hs.insert(header::LOCATION, uploads.published_url(&up.target));
    }
    hs.insert(
        header::ETAG,
        value(&format!("\"{}\"", hex::encode(p.sha256))),
    );
    hs.insert(REPR_DIGEST.clone(), repr_digest::value(&p.sha256));
    complete(r, true)
}

/// The answer to a failed creation or append of the upload `id`: the store's error, where the
/// upload stands, and that it is not complete (but for a digest that did not match: then the
/// upload is over).
fn failed<S>(uploads: &Uploads<S>, e: &StoreError, provided: u64) -> Response {
    let r = match e {
        StoreError::Offset { offset } => problem(
            StatusCode::CONFLICT,
            "mismatching-upload-offset",
            "offset from request does not match offset of resource",
            &[("expected-offset", *offset), ("provided-offset", provided)],
        ),
        StoreError::Length(_) => inconsistent_length(),
        StoreError::Checksum { .. } => plain_text(
            StatusCode::BAD_REQUEST,
            "400 Bad Request: the bytes do not have the Content-Digest sent; they were not kept\n",
        ),
        StoreError::TooLarge => {
            let mut r = store_error(e);
            r.headers_mut()
                .insert(UPLOAD_LIMIT.clone(), limit(uploads, None));
            r
        }
        e => store_error(e),
    };
    let mut r = complete(r, matches!(e, StoreError::Digest));
    if let Some(o) = error_offset(e) {
        r.headers_mut()
            .insert(UPLOAD_OFFSET.clone(), HeaderValue::from(o));
    }
    r
}

/// Send the `104` that announces the upload resource, if the client speaks our interop
/// version and the connection can carry it.
fn announce<S>(uploads: &Uploads<S>, parts: &http::request::Parts, up: &Upload) {
    if h::sf_integer(&parts.headers, &UPLOAD_DRAFT_INTEROP_VERSION) != Some(INTEROP_VERSION as u64)
    {
        return;
    }
    let Some(interim) = parts.extensions.get::<Interim>() else {
        return;
    };
    let mut hs = HeaderMap::new();
    hs.insert(header::LOCATION, location(uploads, parts, up.id));
    hs.insert(UPLOAD_LIMIT.clone(), limit(uploads, Some(up)));
    hs.insert(
        UPLOAD_DRAFT_INTEROP_VERSION.clone(),
        HeaderValue::from(INTEROP_VERSION),
    );
    let status = StatusCode::from_u16(UPLOAD_RESUMPTION_SUPPORTED).expect("a valid status");
    interim.send(status, "Upload Resumption Supported", &hs);
}

async fn create<S: Storage>(
    uploads: &Uploads<S>,
    parts: &http::request::Parts,
    body: Body,
    owner: Owner,
    target: String,
) -> (Response, u64) {
    let hs = &parts.headers;
    let Some(done) = h::sf_boolean(hs, &UPLOAD_COMPLETE) else {
        return bad("Upload-Complete must be ?1 or ?0");
    };
    let length = match length(parts, done, 0) {
        Ok(l) => l,
        Err(Inconsistent) => return (complete(inconsistent_length(), false), 0),
    };
    let repr_sha256 = match sha256_sent(hs, &REPR_DIGEST) {
        Ok(d) => d,
        Err(why) => return bad(&format!("Repr-Digest: {why}")),
    };
    let checksum = match content_digest(hs) {
        Ok(c) => c,
        Err(why) => return bad(&why),
    };
    let store = &uploads.inner.store;
    let new = New {
        length,
        metadata: None,
        target,
        owner,
        repr_sha256,
    };
    let up = match store.create(new).await {
        Ok(up) => up,
        Err(e) => return (failed(uploads, &e, 0), 0),
    };
    announce(uploads, parts, &up);
    let created = |up: &Upload, offset: u64| {
        let mut r = status(StatusCode::CREATED);
        let hs = r.headers_mut();
        hs.insert(header::LOCATION, location(uploads, parts, up.id));
        hs.insert(UPLOAD_OFFSET.clone(), HeaderValue::from(offset));
        hs.insert(UPLOAD_LIMIT.clone(), limit(uploads, Some(up)));
        complete(r, false)
    };
    if !done && !has_body(&body) {
        return (created(&up, 0), 0);
    }
    let append = Append {
        offset: 0,
        length: None,
        body_len: content_length(parts),
        checksum,
        complete: done,
    };
    match store.append(up.id, owner, append, body_stream(body)).await {
        Ok(a) => match &a.published {
            Some(p) => {
                uploads.remember(p).await;
                let r = completed(uploads, &a.upload, p);
                (stored(r, &a.upload), a.received)
            }
            None => {
                let r = created(&a.upload, a.upload.offset);
                (stored(r, &a.upload), a.received)
            }
        },
        Err(e) => {
            // The upload exists: say where, whatever went wrong with its bytes.
            let mut r = failed(uploads, &e, 0);
            if !matches!(e, StoreError::Digest) {
                r.headers_mut()
                    .insert(header::LOCATION, location(uploads, parts, up.id));
            }
            (r, stored_before(&e, 0))
        }
    }
}

async fn offset<S: Storage>(uploads: &Uploads<S>, id: Id, owner: Owner) -> Response {
    let up = match uploads.inner.store.get(id).await {
        Ok(up) if up.owned_by(&owner) => up,
        Ok(_) => return store_error(&StoreError::NotFound),
        Err(e) => return store_error(&e),
    };
    let mut r = status(StatusCode::NO_CONTENT);
    let hs = r.headers_mut();
    hs.insert(UPLOAD_OFFSET.clone(), HeaderValue::from(up.offset));
    if let Some(len) = up.length {
        hs.insert(UPLOAD_LENGTH.clone(), HeaderValue::from(len));
    }
    hs.insert(UPLOAD_LIMIT.clone(), limit(uploads, Some(&up)));
    hs.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    complete(r, up.completed)
}

async fn append<S: Storage>(
    uploads: &Uploads<S>,
    parts: &http::request::Parts,
    body: Body,
    id: Id,
    owner: Owner,
) -> (Response, u64) {
    let hs = &parts.headers;
    if !h::is_partial_upload(hs) {
        let r = plain_text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "415 Unsupported Media Type: appends are {}\n",
                h::PARTIAL_UPLOAD
            ),
        );
        return (r, 0);
    }
    let Some(offset) = h::sf_integer(hs, &UPLOAD_OFFSET) else {
        return bad("Upload-Offset is required (a non-negative Integer)");
    };
    let Some(done) = h::sf_boolean(hs, &UPLOAD_COMPLETE) else {
        return bad("Upload-Complete must be ?1 or ?0");
    };
    let length = match length(parts, done, offset) {
        Ok(l) => l,
        Err(Inconsistent) => return (complete(inconsistent_length(), false), 0),
    };
    let checksum = match content_digest(hs) {
        Ok(c) => c,
        Err(why) => return bad(&why),
    };
    let append = Append {
        offset,
        length,
        body_len: content_length(parts),
        checksum,
        complete: done,
    };
    match uploads
        .inner
        .store
        .append(id, owner, append, body_stream(body))
        .await
    {
        Ok(a) => match &a.published {
            Some(p) => {
                uploads.remember(p).await;
                let r = completed(uploads, &a.upload, p);
                (stored(r, &a.upload), a.received)
            }
            None => {
                let mut r = stored(status(StatusCode::NO_CONTENT), &a.upload);
                r.headers_mut()
                    .insert(UPLOAD_OFFSET.clone(), HeaderValue::from(a.upload.offset));
                (complete(r, a.upload.completed), a.received)
            }
        },
        Err(e) => (failed(uploads, &e, offset), stored_before(&e, offset)),
    }
}
