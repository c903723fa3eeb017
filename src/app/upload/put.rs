//! A plain `PUT` of a whole file to its path (`curl -T file URL`), with a token: the body is
//! written beside the target and renamed over it once complete, so the file appears whole or
//! not at all (a short or aborted body publishes nothing).
//!
//! RFC 9110 §9.3.4: `201 Created` when the file is new, `204 No Content` when it replaced one
//! (`overwrite`). A file already there with `overwrite` off is `409 Conflict` (§15.5.10: the
//! request conflicts with the target's current state, and the client can resolve it, e.g. by
//! removing or renaming); `412` is for the client's own preconditions: `If-None-Match: *`
//! when something is there (§13.1.2, checked atomically by the rename), `If-Match` when the
//! current file's ETag (its SHA-256) does not match, or there is none (§13.1.1),
//! `If-Unmodified-Since` (§13.1.4), all decided as for downloads (`http::preconditions`, §13.2.2).
//! The file's path must lie under `upload.dir`. With `Repr-Digest: sha-256=...` (RFC 9530),
//! the file is published only if its bytes have that SHA-256 (400 otherwise).

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http::header;
use http::{Method, StatusCode};

use super::{body_stream, content_length, finish, store_error, Uploads};
use crate::files::Storage;
use crate::fs::resolve::{request_name, ResolveError};
use crate::fs::upload::Exists;
use crate::http::preconditions::{decide, unix_secs, Decision, Validators};
use crate::http::repr_digest::{sha256_sent, REPR_DIGEST};
use crate::http::response::{plain_text, value};

/// Answer a `PUT`.
pub async fn handle<S: Storage>(uploads: &Uploads<S>, req: Request) -> Response {
    let (resp, received) = answer(uploads, req).await;
    finish(resp, received)
}

fn refuse(status: StatusCode, why: &str) -> (Response, u64) {
    let reason = status.canonical_reason().unwrap_or("");
    (
        plain_text(status, format!("{} {reason}: {why}\n", status.as_u16())),
        0,
    )
}

async fn answer<S: Storage>(uploads: &Uploads<S>, req: Request) -> (Response, u64) {
    let (parts, body) = req.into_parts();
    let inner = &uploads.inner;
    if let Err(refused) = uploads.owner(&parts.headers) {
        return (refused.response(), 0);
    }
    let raw = parts.uri.path();
    let target = match target_of(uploads, raw) {
        Ok(t) => t,
        Err(r) => return (*r, 0),
    };
    let repr_sha256 = match sha256_sent(&parts.headers, &REPR_DIGEST) {
        Ok(d) => d,
        Err(why) => return refuse(StatusCode::BAD_REQUEST, &format!("Repr-Digest: {why}")),
    };
    let cond = match condition(uploads, &parts).await {
        Ok(c) => c,
        Err(r) => return (r, 0),
    };
    let len = content_length(&parts);
    match inner
        .store
        .put(target, len, repr_sha256, cond, body_stream(body))
        .await
    {
        Ok(p) => {
            uploads.remember(&p).await;
            let mut r = Response::new(Body::empty());
            *r.status_mut() = if p.replaced {
                StatusCode::NO_CONTENT
            } else {
                StatusCode::CREATED
            };
            let hs = r.headers_mut();
            if !p.replaced {
                hs.insert(header::LOCATION, value(raw));
            }
            // §9.3.4: a validator may be sent, since the bytes were stored as they came.
            hs.insert(
                header::ETAG,
                value(&format!("\"{}\"", hex::encode(p.sha256))),
            );
            (r, p.meta.len())
        }
        Err(e) => (store_error(&e), 0),
    }
}

/// The name under the upload directory that a `PUT` to the request path `raw` writes,
/// checked by the same rules as a download of that path.
pub fn target_of<S>(uploads: &Uploads<S>, raw: &str) -> Result<String, Box<Response>> {
    let refuse = |status, why: &str| Box::new(refuse(status, why).0);
    if raw.ends_with('/') {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "a PUT names a file, and this path ends with a slash",
        ));
    }
    let inner = &uploads.inner;
    let name = match request_name(raw, inner.show_hidden) {
        Ok(n) => n,
        Err(ResolveError::BadPath(why)) => return Err(refuse(StatusCode::BAD_REQUEST, why)),
        Err(_) => {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "a hidden or reserved name would not be served",
            ))
        }
    };
    let dir = &inner.config.dir_name;
    if dir.is_empty() {
        return Ok(name);
    }
    match name
        .strip_prefix(dir.as_str())
        .and_then(|r| r.strip_prefix('/'))
    {
        Some(rest) => Ok(rest.to_owned()),
        None => Err(refuse(
            StatusCode::FORBIDDEN,
            &format!("uploads go under /{dir}/"),
        )),
    }
}

/// The request's preconditions against the file now at its path (looked up as a GET would):
/// a 412 when they fail, else what the store must still find at the rename.
async fn condition<S: Storage>(
    uploads: &Uploads<S>,
    parts: &http::request::Parts,
) -> Result<Exists, Response> {
    let hs = &parts.headers;
    let (im, inm, ius) = (
        hs.contains_key(header::IF_MATCH),
        hs.contains_key(header::IF_NONE_MATCH),
        hs.contains_key(header::IF_UNMODIFIED_SINCE),
    );
    if !(im || inm || ius) {
        return Ok(Exists::Any);
    }
    let failed = || plain_text(StatusCode::PRECONDITION_FAILED, "412 Precondition Failed\n");
    let inm_star = hs
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .any(|v| v.as_bytes().trim_ascii() == b"*");
    match uploads.inner.files.open(parts.uri.path(), "", None).await {
        Ok(rep) => {
            let modified = rep
                .modified
                .map(|m| std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_secs(m)));
            let v = Validators {
                etag: rep.etag.as_ref().and_then(|e| e.to_str().ok()),
                last_modified: modified,
                last_modified_is_strong: true,
            };
            match decide(&Method::PUT, hs, &v) {
                Decision::Proceed { .. } if im => Ok(Exists::Must),
                Decision::Proceed { .. } => Ok(Exists::Any),
                _ => Err(failed()),
            }
        }
        // Nothing there: If-Match fails (§13.1.1: no current representation); If-None-Match
        // holds, and `*` must still hold at the rename; If-Unmodified-Since has no date to
        // compare with and is ignored (§13.1.4).
        Err(r) if r.status() == StatusCode::NOT_FOUND => {
            if im {
                Err(failed())
            } else if inm_star {
                Ok(Exists::Not)
            } else {
                Ok(Exists::Any)
            }
        }
        // A directory (the engine redirects to add the slash): never replaced.
        Err(r) if r.status().is_redirection() => {
            Err(store_error(&crate::fs::upload::StoreError::Exists))
        }
        Err(r) => Err(r),
    }
}
