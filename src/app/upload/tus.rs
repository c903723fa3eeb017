//! tus 1.0.0 (<https://tus.io/protocols/resumable-upload>) under the upload prefix: the core
//! protocol (HEAD, PATCH, OPTIONS) and the extensions creation, creation-with-upload,
//! creation-defer-length, termination, expiration and checksum (`sha256`, `sha1`, `md5`).
//!
//! - `OPTIONS {prefix}/`: `Tus-Version`, `Tus-Extension`, `Tus-Max-Size`,
//!   `Tus-Checksum-Algorithm`.
//! - `POST {prefix}/` creates an upload (`Upload-Length`, or `Upload-Defer-Length: 1`), named by
//!   its `filename` metadata: a path under the upload directory, slashes making directories,
//!   checked like a download path. With `Content-Type: application/offset+octet-stream` the
//!   body is its first bytes. `201` with `Location: {prefix}/{id}`.
//! - `HEAD {prefix}/{id}`: `Upload-Offset` (the bytes stored), `Upload-Length` or
//!   `Upload-Defer-Length: 1`, `Upload-Metadata` as sent, `Cache-Control: no-store`.
//! - `PATCH {prefix}/{id}` appends at `Upload-Offset` (`409` with the offset otherwise).
//! - `DELETE {prefix}/{id}`: `204`; an unfinished upload goes with its bytes, a completed one's
//!   record only (the published file stays).
//!
//! Every response carries `Tus-Resumable: 1.0.0`; a request (but `OPTIONS`) without it, or
//! with another version, is `412` with `Tus-Version` (tus core, "Tus-Resumable"), and
//! `X-HTTP-Method-Override` replaces the method (tus core, for clients that cannot send PATCH
//! or DELETE).

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};

use super::{
    body_stream, content_length, error_offset, finish, has_body, not_allowed, store_error, stored,
    stored_before, Uploads,
};
use crate::files::Storage;
use crate::fs::upload::{Algorithm, Append, Checksum, Id, New, Owner, StoreError, Upload};
use crate::http::dates;
use crate::http::preconditions::unix_secs;
use crate::http::response::plain_text;
use crate::http::upload::{
    self as h, OFFSET_OCTET_STREAM, TUS_CHECKSUM_ALGORITHM, TUS_EXTENSION, TUS_EXTENSIONS,
    TUS_MAX_SIZE, TUS_RESUMABLE, TUS_VERSION, TUS_VERSION_H, UPLOAD_CHECKSUM, UPLOAD_CONCAT,
    UPLOAD_DEFER_LENGTH, UPLOAD_EXPIRES, UPLOAD_LENGTH, UPLOAD_METADATA, UPLOAD_OFFSET,
    X_HTTP_METHOD_OVERRIDE,
};

/// Answer one request to the tus prefix; `rest` is its path after the prefix.
pub async fn handle<S: Storage>(uploads: &Uploads<S>, req: Request, rest: &str) -> Response {
    let (mut resp, received) = answer(uploads, req, rest).await;
    resp.headers_mut()
        .insert(TUS_RESUMABLE.clone(), HeaderValue::from_static(TUS_VERSION));
    finish(resp, received)
}

fn bad(why: &str) -> (Response, u64) {
    (
        plain_text(StatusCode::BAD_REQUEST, format!("400 Bad Request: {why}\n")),
        0,
    )
}

/// What the path under the prefix names.
enum Target {
    /// `{prefix}/` (or `{prefix}`): the creation endpoint.
    Endpoint,
    Upload(Id),
}

async fn answer<S: Storage>(uploads: &Uploads<S>, req: Request, rest: &str) -> (Response, u64) {
    let (parts, body) = req.into_parts();
    // tus core, X-HTTP-Method-Override: it "MUST be interpreted as the request's method".
    let method = match parts.headers.get(&X_HTTP_METHOD_OVERRIDE) {
        None => parts.method.clone(),
        Some(v) => match Method::from_bytes(v.as_bytes()) {
            Ok(m) => m,
            Err(_) => return bad("X-HTTP-Method-Override is not a method"),
        },
    };
    let owner = match uploads.owner(&parts.headers) {
        Ok(owner) => owner,
        Err(refused) => return (refused.response(), 0),
    };
    let target = match rest {
        "" | "/" => Target::Endpoint,
        p => match Id::parse(p.trim_start_matches('/')) {
            Some(id) => Target::Upload(id),
            None => {
                return (
                    plain_text(StatusCode::NOT_FOUND, "404 Not Found: no such upload\n"),
                    0,
                )
            }
        },
    };
    if method == Method::OPTIONS {
        return (options(uploads), 0);
    }
    if parts.headers.get(&TUS_RESUMABLE).map(HeaderValue::as_bytes) != Some(TUS_VERSION.as_bytes())
    {
        let mut r = plain_text(
            StatusCode::PRECONDITION_FAILED,
            "412 Precondition Failed: Tus-Resumable: 1.0.0 is the version spoken here\n",
        );
        r.headers_mut()
            .insert(TUS_VERSION_H.clone(), HeaderValue::from_static(TUS_VERSION));
        return (r, 0);
    }
    match (target, method) {
        (Target::Endpoint, Method::POST) => create(uploads, &parts, body, owner).await,
        (Target::Upload(id), Method::HEAD) => (head(uploads, id, owner).await, 0),
        (Target::Upload(id), Method::PATCH) => patch(uploads, &parts, body, id, owner).await,
        (Target::Upload(id), Method::DELETE) => match uploads.inner.store.delete(id, owner).await {
            Ok(()) => (no_content(), 0),
            Err(e) => (with_offset(store_error(&e), error_offset(&e)), 0),
        },
        (Target::Endpoint, _) => (not_allowed("OPTIONS, POST"), 0),
        (Target::Upload(_), _) => (not_allowed("OPTIONS, HEAD, PATCH, DELETE"), 0),
    }
}

fn no_content() -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

fn options<S>(uploads: &Uploads<S>) -> Response {
    let mut r = no_content();
    let hs = r.headers_mut();
    hs.insert(TUS_VERSION_H.clone(), HeaderValue::from_static(TUS_VERSION));
    hs.insert(
        TUS_EXTENSION.clone(),
        HeaderValue::from_static(TUS_EXTENSIONS),
    );
    hs.insert(
        TUS_CHECKSUM_ALGORITHM.clone(),
        HeaderValue::from_static(Algorithm::NAMES),
    );
    if let Some(max) = uploads.inner.config.max_size {
        hs.insert(TUS_MAX_SIZE.clone(), HeaderValue::from(max));
    }
    // The draft's discovery shares the endpoint (draft, "Limits").
    hs.insert(h::UPLOAD_LIMIT.clone(), super::ietf::options_limit(uploads));
    r
}

/// `Upload-Offset` on an answer, when the offset is known.
fn with_offset(mut r: Response, offset: Option<u64>) -> Response {
    if let Some(o) = offset {
        r.headers_mut()
            .insert(UPLOAD_OFFSET.clone(), HeaderValue::from(o));
    }
    r
}

/// `Upload-Expires` (tus expiration), for an unfinished upload.
fn expires(hs: &mut HeaderMap, up: &Upload) {
    if !up.completed {
        hs.insert(UPLOAD_EXPIRES.clone(), dates::date(unix_secs(up.expires)));
    }
}

/// The bytes' checksum from `Upload-Checksum`, if sent (tus checksum extension: an algorithm
/// we do not offer is a 400).
fn checksum(headers: &HeaderMap) -> Result<Option<Checksum>, &'static str> {
    let Some(v) = headers.get(&UPLOAD_CHECKSUM) else {
        return Ok(None);
    };
    let text = v.to_str().map_err(|_| "Upload-Checksum is not ASCII")?;
    let (name, expected) = h::checksum(text)?;
    let algorithm = Algorithm::from_name(name).ok_or(
        "Upload-Checksum: an algorithm not offered (Tus-Checksum-Algorithm: sha256,sha1,md5)",
    )?;
    let len = match algorithm {
        Algorithm::Sha256 => 32,
        Algorithm::Sha1 => 20,
        Algorithm::Md5 => 16,
    };
    if expected.len() != len {
        return Err("Upload-Checksum: the checksum has the wrong length for its algorithm");
    }
    Ok(Some(Checksum {
        algorithm,
        expected,
    }))
}

async fn create<S: Storage>(
    uploads: &Uploads<S>,
    parts: &http::request::Parts,
    body: Body,
    owner: Owner,
) -> (Response, u64) {
    let hs = &parts.headers;
    if hs.contains_key(&UPLOAD_CONCAT) {
        return bad("Upload-Concat: the concatenation extension is not offered");
    }
    let length = match h::number(hs, &UPLOAD_LENGTH) {
        Ok(l) => l,
        Err(why) => return bad(&format!("Upload-Length: {why}")),
    };
    // tus creation: "If the Upload-Defer-Length header contains any other value than 1 the
    // server should return a 400 Bad Request status."
    let deferred = match hs.get(&UPLOAD_DEFER_LENGTH) {
        None => false,
        Some(v) if v.as_bytes() == b"1" => true,
        Some(_) => return bad("Upload-Defer-Length must be 1"),
    };
    match (length, deferred) {
        (Some(_), true) => return bad("Upload-Length and Upload-Defer-Length are exclusive"),
        (None, false) => return bad("Upload-Length, or Upload-Defer-Length: 1, is required"),
        _ => {}
    }
    let raw_metadata = match hs.get(&UPLOAD_METADATA).map(|v| v.to_str()) {
        None => None,
        Some(Ok(v)) => Some(v.to_owned()),
        Some(Err(_)) => return bad("Upload-Metadata is not ASCII"),
    };
    let pairs = match raw_metadata.as_deref().map(h::metadata) {
        None => Vec::new(),
        Some(Ok(p)) => p,
        Some(Err(why)) => return bad(why),
    };
    // The published name: `filename`, a path under the upload directory (slashes make
    // directories), checked by the store like a download path.
    let Some(filename) = pairs.iter().find(|(k, _)| k == "filename").map(|(_, v)| v) else {
        return bad("Upload-Metadata needs a filename (the name to publish the file as)");
    };
    let Ok(filename) = String::from_utf8(filename.clone()) else {
        return bad("the filename is not UTF-8");
    };
    let with_body = h::is_offset_octet_stream(hs);
    if !with_body && has_body(&body) {
        let r = plain_text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "415 Unsupported Media Type: a creation's body must be {OFFSET_OCTET_STREAM}\n"
            ),
        );
        return (r, 0);
    }
    let sum = match checksum(hs) {
        Ok(s) => s,
        Err(why) => return bad(why),
    };
    let store = &uploads.inner.store;
    let new = New {
        length,
        metadata: raw_metadata,
        target: filename,
        owner,
        repr_sha256: None,
    };
    let up = match store.create(new).await {
        Ok(up) => up,
        Err(e) => return (store_error(&e), 0),
    };
    let location = uploads.location(up.id, parts.uri.query());
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::CREATED;
    let mut received = 0;
    // creation-with-upload; and an empty upload is complete (and published) at once.
    let (up, offset) = if with_body || length == Some(0) {
        let append = Append {
            offset: 0,
            length: None,
            body_len: content_length(parts),
            checksum: sum,
            complete: false,
        };
        match store.append(up.id, owner, append, body_stream(body)).await {
            Ok(a) => {
                received = a.received;
                if let Some(p) = &a.published {
                    uploads.remember(p).await;
                }
                let offset = a.upload.offset;
                resp = stored(resp, &a.upload);
                (a.upload, Some(offset))
            }
            Err(e) => {
                // The upload exists: say where it is, whatever went wrong with its bytes.
                received = stored_before(&e, 0);
                let offset = error_offset(&e).or(Some(0));
                resp = store_error(&e);
                (up, offset)
            }
        }
    } else {
        (up, None)
    };
    let hs = resp.headers_mut();
    hs.insert(header::LOCATION, location);
    expires(hs, &up);
    (with_offset(resp, offset), received)
}

async fn head<S: Storage>(uploads: &Uploads<S>, id: Id, owner: Owner) -> Response {
    let up = match uploads.inner.store.get(id).await {
        Ok(up) if up.owned_by(&owner) => up,
        Ok(_) => return store_error(&StoreError::NotFound),
        Err(e) => return store_error(&e),
    };
    let mut r = Response::new(Body::empty());
    let hs = r.headers_mut();
    hs.insert(UPLOAD_OFFSET.clone(), HeaderValue::from(up.offset));
    match up.length {
        Some(len) => hs.insert(UPLOAD_LENGTH.clone(), HeaderValue::from(len)),
        None => hs.insert(UPLOAD_DEFER_LENGTH.clone(), HeaderValue::from_static("1")),
    };
    if let Some(m) = up.metadata.as_deref().and_then(h::visible) {
        hs.insert(UPLOAD_METADATA.clone(), m);
    }
    // tus core, HEAD: "MUST prevent the client and/or proxies from caching the response".
    hs.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    expires(hs, &up);
    r
}

async fn patch<S: Storage>(
    uploads: &Uploads<S>,
    parts: &http::request::Parts,
    body: Body,
    id: Id,
    owner: Owner,
) -> (Response, u64) {
    let hs = &parts.headers;
    if !h::is_offset_octet_stream(hs) {
        let r = plain_text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("415 Unsupported Media Type: PATCH bodies are {OFFSET_OCTET_STREAM}\n"),
        );
        return (r, 0);
    }
    let offset = match h::number(hs, &UPLOAD_OFFSET) {
        Ok(Some(o)) => o,
        Ok(None) => return bad("Upload-Offset is required"),
        Err(why) => return bad(&format!("Upload-Offset: {why}")),
    };
    let length = match h::number(hs, &UPLOAD_LENGTH) {
        Ok(l) => l,
        Err(why) => return bad(&format!("Upload-Length: {why}")),
    };
    let sum = match checksum(hs) {
        Ok(s) => s,
        Err(why) => return bad(why),
    };
    let append = Append {
        offset,
        length,
        body_len: content_length(parts),
        checksum: sum,
        complete: false,
    };
    match uploads
        .inner
        .store
        .append(id, owner, append, body_stream(body))
        .await
    {
        Ok(a) => {
            if let Some(p) = &a.published {
                uploads.remember(p).await;
            }
            let mut r = stored(no_content(), &a.upload);
            expires(r.headers_mut(), &a.upload);
            (with_offset(r, Some(a.upload.offset)), a.received)
        }
        Err(e) => {
            let received = stored_before(&e, offset);
            (with_offset(store_error(&e), error_offset(&e)), received)
        }
    }
}
