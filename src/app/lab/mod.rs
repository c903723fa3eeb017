//! The download-client lab (`[lab] enabled`): generated files of any size and injected faults,
//! under `lab.prefix`, to test how download clients cope. Everything goes through the same
//! engine as files (`ServeFiles::respond`); faults are edits around it (`faults`). Mounted in the
//! application's Router under its prefix ([`Lab::service`]).
//!
//! - `{prefix}/gen/{size}[?seed=N]`: a generated file (`gen`).
//! - `{prefix}/gen/{size}.sha256[?seed=N]`: its SHA-256, hex.
//! - `{prefix}/files/{path}`: the file `path` under the root, as it is served normally.
//! - `{prefix}/requests?key=ID`: JSON list of the requests seen with that key (`record`).
//! - `{prefix}/upload/`: an upload endpoint (tus and the IETF draft) without a token, with
//!   faults of its own (`upload`); `{prefix}/uploaded/{name}`: what it published.
//!
//! Any of them takes fault parameters (see `faults::parse`, `faults::parse_upload`).

pub mod faults;
pub mod gen;
pub mod record;
pub mod upload;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http::header::{self, HeaderValue};
use http::{Method, StatusCode};

use crate::files::{Disk, Representation, ServeFiles, Storage};
use crate::http::response::plain_text;
use crate::ops::access_log;
use faults::{BodyFaults, Cut, Fail, Faulty, Params, Ranges, Validators};

/// The lab's state: hash cache and `fail_times` counters.
#[derive(Default)]
pub struct Lab {
    hashes: gen::HashCache,
    /// Failures served so far, per key.
    fails: Mutex<HashMap<String, u64>>,
    /// For `etag=rotate`.
    rotation: AtomicU64,
    requests: record::Recorder,
}

/// Faults that act on the body: listed as applied only when they take effect on it.
const BODY_FAULTS: [&str; 6] = ["cut", "rate", "ttfb", "pause", "corrupt", "encoding"];

/// Keys with a `fail_times` counter kept at once.
const FAIL_KEYS: usize = 10_000;

impl Lab {
    /// Whether this request fails: the first `times` requests for the same key, lab path and
    /// fault do (each URL and fault counts on its own, so a run of one client does not use up
    /// another's failures).
    fn should_fail(&self, key: &str, path: &str, fault: &str, times: u64) -> bool {
        let key = format!("{key}\u{0}{path}\u{0}{fault}");
        let key = key.as_str();
        let mut fails = self.fails.lock().unwrap();
        if !fails.contains_key(key) && fails.len() >= FAIL_KEYS {
            if let Some(k) = fails.keys().next().cloned() {
                fails.remove(&k);
            }
        }
        let n = fails.entry(key.to_owned()).or_insert(0);
        if *n < times {
            *n += 1;
            true
        } else {
            false
        }
    }
}

impl Lab {
    /// The `Repr-Digest` of a generated file when it is cheap: its hash is cached (a `.sha256`
    /// or an earlier request computed it), or the file is small enough to hash now. `None`
    /// otherwise: a request never waits about a second per GiB for a header.
    async fn repr_digest(&self, size: u64, seed: u64) -> Option<HeaderValue> {
        let hex = match self.hashes.known(size, seed) {
            Some(hex) => hex,
            None if size <= gen::REPR_DIGEST_HASH_MAX => self.hashes.get(size, seed).await.ok()?,
            None => return None,
        };
        gen::repr_digest(&hex)
    }
}

/// The lab as a service to nest under its prefix: its state, the file engine it serves
/// `/files/` through, and the prefix (for redirects). Cheap to clone.
pub struct LabService<S = Disk>(Arc<State<S>>);

impl<S> Clone for LabService<S> {
    fn clone(&self) -> Self {
        LabService(self.0.clone())
    }
}

struct State<S> {
    lab: Lab,
    files: ServeFiles<S>,
    prefix: String,
    uploads: Option<upload::LabUploads>,
}

impl Lab {
    /// The lab mounted at `prefix` (`/_lab`), serving the root's files through `files`, and
    /// taking uploads with `uploads` (opened for this prefix).
    pub fn service<S: Storage>(
        files: ServeFiles<S>,
        prefix: &str,
        uploads: Option<upload::LabUploads>,
    ) -> LabService<S> {
        LabService(Arc::new(State {
            lab: Lab::default(),
            files,
            prefix: prefix.to_owned(),
            uploads,
        }))
    }
}

impl<S: Storage> tower::Service<Request> for LabService<S> {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let state = self.0.clone();
        if let Some(rest) = upload::under_endpoint(req.uri().path()) {
            let rest = rest.to_owned();
            return Box::pin(async move {
                Ok(match &state.uploads {
                    Some(up) => upload::handle(&state.lab, up, req, &rest).await,
                    None => plain_text(StatusCode::NOT_FOUND, "404 Not Found\n"),
                })
            });
        }
        Box::pin(async move {
            Ok(match *req.method() {
                Method::GET | Method::HEAD => {
                    let rest = req.uri().path().to_owned();
                    answer(&state, req, &rest).await
                }
                // OPTIONS and 405 exactly as for files.
                _ => {
                    let mut files = state.files.clone();
                    let Ok(r) = tower::Service::call(&mut files, req).await;
                    r
                }
            })
        })
    }
}

fn bad_request(why: String) -> Response {
    plain_text(StatusCode::BAD_REQUEST, format!("400 Bad Request: {why}\n"))
}

/// The answer of a `fail=STATUS` fault (`Retry-After: 1` with a 503 or 429).
fn fail_response(status: StatusCode) -> Response {
    let mut r = plain_text(status, format!("{status} (lab fault)\n"));
    if matches!(
        status,
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
    ) {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

/// Answer a GET or HEAD for `rest`, the path after the lab prefix.
async fn answer<S: Storage>(state: &State<S>, req: Request, rest: &str) -> Response {
    let params = match faults::parse(req.uri().query()) {
        Ok(p) => p,
        Err(e) => return bad_request(e),
    };
    let key = params.key.clone().or_else(|| {
        req.headers()
            .get("x-lab-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    if rest == "/reset" {
        // Counters and records of a key start over: a worked example can be run again.
        let Some(key) = key else {
            return bad_request("parameter `key`: required (or the X-Lab-Key header)".into());
        };
        let prefix = format!("{key}\u{0}");
        state
            .lab
            .fails
            .lock()
            .unwrap()
            .retain(|k, _| !k.starts_with(&prefix));
        state.lab.requests.forget(&key);
        return plain_text(StatusCode::OK, format!("reset {key}\n"));
    }
    if rest == "/requests" {
        let Some(key) = key else {
            return bad_request("parameter `key`: required (or the X-Lab-Key header)".into());
        };
        let mut r = plain_text(StatusCode::OK, state.lab.requests.json(&key));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return r;
    }
    let seen = key.as_ref().map(|_| record::Seen::of(&req));
    let mut applied: Vec<String> = params
        .given
        .iter()
        // Body faults are listed when they take effect (`after`), `fail` when it fails.
        .filter(|(n, _)| !BODY_FAULTS.contains(&n.as_str()) && n != "fail" && n != "fail_times")
        .map(|(n, v)| format!("{n}={v}"))
        .collect();
    let resp = answer_with(state, req, rest, &params, key.as_deref(), &mut applied).await;
    let resp = match (key, seen) {
        (Some(key), Some(seen)) => state.lab.requests.record(&key, seen, &applied, resp),
        _ => resp,
    };
    with_faults_logged(resp, &applied)
}

fn with_faults_logged(mut resp: Response, applied: &[String]) -> Response {
    if !applied.is_empty() {
        resp.extensions_mut()
            .insert(access_log::Faults(applied.join(",")));
    }
    resp
}

async fn answer_with<S: Storage>(
    state: &State<S>,
    req: Request,
    rest: &str,
    params: &Params,
    key: Option<&str>,
    applied: &mut Vec<String>,
) -> Response {
    if let Some(d) = params.delay {
        tokio::time::sleep(d).await;
    }
    let lab = &state.lab;
    let mut truncate = false;
    if let Some(fail) = params.fail {
        let fails = match params.fail_times {
            None => true,
            Some(times) => {
                let fault = match fail {
                    Fail::Status(s) => s.as_str().to_owned(),
                    Fail::Truncate => "truncate".to_owned(),
                };
                lab.should_fail(key.unwrap_or(""), rest, &fault, times)
            }
        };
        if fails {
            match fail {
                Fail::Status(status) => {
                    applied.push(format!("fail={}", status.as_u16()));
                    return fail_response(status);
                }
                Fail::Truncate => {
                    applied.push("fail=truncate".to_string());
                    truncate = true;
                }
            }
        }
    }

    let method = req.method().clone();
    let resp = if let Some(gen) = rest.strip_prefix("/gen/") {
        if let Some(size) = gen.strip_suffix(".sha256") {
            let size = match gen::parse_size(size) {
                Ok(s) => s,
                Err(e) => return bad_request(e),
            };
            if size > gen::MAX_HASH_SIZE {
                return bad_request(format!(
                    "size {size}: too large to hash on request (at most {} bytes); use `rangeserve gen SIZE | sha256sum`",
                    gen::MAX_HASH_SIZE
                ));
            }
            let hex = match lab.hashes.get(size, params.seed).await {
                Ok(h) => h,
                Err(e) => {
                    tracing::error!("lab: hashing a generated file: {e}");
                    return crate::http::response::internal_error();
                }
            };
            let mut r = plain_text(StatusCode::OK, format!("{hex}\n"));
            if method == Method::HEAD {
                *r.body_mut() = Body::empty();
            }
            r
        } else {
            let size = match gen::parse_size(gen) {
                Ok(s) => s,
                Err(e) => return bad_request(e),
            };
            let mut rep = gen::representation(size, params.seed);
            rep.repr_digest = lab.repr_digest(size, params.seed).await;
            respond(state, &state.files, &req, rep, params)
        }
    } else if let Some(path) = rest.strip_prefix("/files") {
        if !path.starts_with('/') {
            return plain_text(StatusCode::NOT_FOUND, "404 Not Found\n");
        }
        let base = format!("{}/files", state.prefix);
        match state.files.open(path, &base, req.uri().query()).await {
            Ok(rep) => respond(state, &state.files, &req, rep, params),
            Err(r) => return r,
        }
    } else if let (Some(path), Some(up)) = (rest.strip_prefix("/uploaded"), &state.uploads) {
        // What the upload endpoint published, as `/files/` serves the root.
        if !path.starts_with('/') {
            return plain_text(StatusCode::NOT_FOUND, "404 Not Found\n");
        }
        let base = format!("{}/uploaded", state.prefix);
        match up.files().open(path, &base, req.uri().query()).await {
            Ok(rep) => respond(state, up.files(), &req, rep, params),
            Err(r) => return r,
        }
    } else {
        return plain_text(StatusCode::NOT_FOUND, "404 Not Found\n");
    };
    after(resp, &method, params, truncate, applied)
}

/// `files.respond` with the representation and request headers the faults ask for.
fn respond<S, T>(
    state: &State<S>,
    files: &ServeFiles<T>,
    req: &Request,
    mut rep: Representation,
    p: &Params,
) -> Response {
    let now = SystemTime::now();
    if p.etag_rotate {
        let n = state.lab.rotation.fetch_add(1, Ordering::Relaxed);
        if let Some(tag) = rep.etag.as_ref().and_then(|t| t.to_str().ok()) {
            let opaque = tag.trim_start_matches("W/").trim_matches('"');
            rep.etag = HeaderValue::from_str(&format!("\"{opaque}-r{n}\"")).ok();
        }
    }
    match p.validators {
        Some(Validators::None) => {
            rep.etag = None;
            rep.modified = None;
        }
        Some(Validators::Weak) => {
            if let Some(tag) = rep.etag.as_ref().and_then(|t| t.to_str().ok()) {
                let opaque = tag.trim_start_matches("W/").trim_matches('"');
                rep.etag = HeaderValue::from_str(&format!("W/\"{opaque}\"")).ok();
            }
            // Modified "now": within the second of Date, so Last-Modified is weak too.
            rep.modified = Some(now);
        }
        None => {}
    }
    let mut headers = req.headers().clone();
    if p.ranges.is_some() {
        headers.remove(header::RANGE);
        headers.remove(header::IF_RANGE);
    }
    // No sendfile: faults act on the body's bytes.
    let origin = crate::files::Origin {
        path: req.uri().path(),
        extensions: Some(req.extensions()),
    };
    files.respond(req.method(), &headers, &rep, now, &origin)
}

/// The response header edits and body faults; the body faults that take effect (not a `cut`
/// past the body's end, nor a `pause` or `corrupt` offset past it) are added to `applied`.
fn after(
    mut resp: Response,
    method: &Method,
    p: &Params,
    truncate: bool,
    applied: &mut Vec<String>,
) -> Response {
    let h = resp.headers_mut();
    match p.ranges {
        Some(Ranges::Ignore) => {
            h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        }
        Some(Ranges::None) => {
            h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("none"));
        }
        None => {}
    }
    if *method == Method::HEAD || matches!(resp.status().as_u16(), 204 | 304 | 416) {
        return resp;
    }
    let h = resp.headers();
    let length: Option<u64> = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok());
    // File offset of the body's first byte: the start of a single range, else 0 (a multipart
    // body counts from its first byte).
    let base = h
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok()?.strip_prefix("bytes ")?.split_once('-'))
        .and_then(|(first, _)| first.parse::<u64>().ok())
        .unwrap_or(0);
    let mut cut = match p.cut {
        Some(Cut::Bytes(n)) => Some(n),
        Some(Cut::Percent(pct)) => length.map(|l| (l as u128 * pct as u128 / 100) as u64),
        None => None,
    };
    if truncate {
        let half = length.map(|l| l / 2);
        cut = match (cut, half) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    // Within the body (of `length` bytes when it says), or it does nothing.
    let within = |offset: u64| length.is_none_or(|l| offset < l);
    let f = BodyFaults {
        cut: cut.filter(|&c| within(c)),
        rate: p.rate.filter(|_| length != Some(0)),
        ttfb: p.ttfb,
        pause: p
            .pause
            .and_then(|(at, d)| Some((at.checked_sub(base)?, d)))
            .filter(|&(at, _)| within(at)),
        corrupt: p
            .corrupt
            .and_then(|c| c.checked_sub(base))
            .filter(|&c| within(c)),
        chunked: p.chunked,
    };
    let took_effect = |name: &str| match name {
        "cut" => f.cut.is_some() && p.cut.is_some(),
        "rate" => f.rate.is_some(),
        "ttfb" => f.ttfb.is_some(),
        "pause" => f.pause.is_some(),
        "corrupt" => f.corrupt.is_some(),
        "encoding" => f.chunked,
        _ => false,
    };
    applied.extend(faults::applied(&p.given, took_effect));
    if f.is_empty() {
        return resp;
    }
    if f.chunked {
        resp.headers_mut().remove(header::CONTENT_LENGTH);
    }
    resp.map(|b| Body::new(Faulty::new(b, f)))
}
