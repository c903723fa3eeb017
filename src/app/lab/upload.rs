//! The lab's upload endpoint: `{prefix}/upload/` takes tus 1.0.0 and IETF-draft uploads
//! without a token, through the same handlers as `[upload]` (`app::upload`, as
//! [`Uploads::open_lab`]), into a directory of its own, and misbehaves on demand, so that an
//! upload client's resume logic can be tested. Completed uploads are served under
//! `{prefix}/uploaded/` (as `{prefix}/files/` serves the root, faults included).
//!
//! The store is a fresh directory under the OS's temporary directory (`TMPDIR`), removed when
//! the server stops (or, after a SIGKILL, by the next lab server to start); uploads are
//! bounded by [`MAX_SIZE`] and expire after [`MAX_AGE`] without a byte, as real ones do after
//! `max_age`.
//!
//! Faults are query parameters of the URL the client uses (`faults::parse_upload`); the
//! creation's query is kept on the upload's `Location`, so a client that only knows the
//! endpoint's URL sends them with every request:
//!
//! - `cut_after=N`: the connection is closed after N body bytes of a request (what came
//!   before is stored, as with a real cut; no answer is sent);
//! - `fail=STATUS[&fail_times=K]`: appends (`PATCH`) are answered STATUS, their bytes read
//!   and dropped without the body faults (the first K of the key only);
//! - `stall=MS[&stall_after=N]`: reading the body stops for MS once, after N bytes;
//! - `rate=BYTES_PER_SEC`: the body is read no faster;
//! - `lose=N`: after an append that left the upload unfinished is acknowledged, the upload
//!   loses its last N bytes ([`Store::rewind`](crate::fs::upload::Store::rewind)), as after a
//!   crash that lost unsynced writes.
//!
//! Every request with a key is recorded (`record`), with the `Upload-Offset` it asked for and
//! was answered and the body bytes read from it.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::response::Response;
use futures_util::StreamExt as _;
use http::header::HeaderValue;
use http::{Method, StatusCode};
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::faults::{self, UploadParams};
use super::{bad_request, fail_response, record, Lab};
use crate::app::upload::{Stored, Uploads};
use crate::config::{TokenDigests, UploadConfig};
use crate::files::{Disk, ServeFiles};
use crate::http::upload::{TUS_RESUMABLE, TUS_VERSION, UPLOAD_OFFSET, X_HTTP_METHOD_OVERRIDE};
use crate::ops::access_log::Received;
use crate::ops::AbortOnDrop;

/// The largest lab upload: 4 GiB.
pub const MAX_SIZE: u64 = 4 << 30;

/// A lab upload that received nothing for this long is removed: one hour.
pub const MAX_AGE: Duration = Duration::from_secs(3600);

/// The path under the lab's prefix that names the upload endpoint, `/upload`, when `path` is
/// under it: what follows (`""`, `/`, `/{id}`).
pub fn under_endpoint(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/upload")?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

/// The lab's uploads: the handlers over their store, and the engine that serves what they
/// publish. Cheap to clone; the directory goes with the last clone.
#[derive(Clone)]
pub struct LabUploads(Arc<Inner>);

struct Inner {
    // Dropped in this order: the sweeper stopped, the store closed, then the directory removed.
    _sweeper: AbortOnDrop,
    uploads: Uploads<Disk>,
    files: ServeFiles<Disk>,
    dir: TempDir,
}

impl LabUploads {
    /// The endpoint at `{prefix}/upload/`, its store a new directory under the OS's temporary
    /// directory, published files served at `{prefix}/uploaded/`.
    pub async fn open(prefix: &str) -> io::Result<LabUploads> {
        let dir = tokio::task::spawn_blocking(TempDir::new)
            .await
            .map_err(io::Error::other)??;
        let files = ServeFiles::new(&dir.0);
        files.start().await?;
        let config = UploadConfig {
            prefix: format!("{prefix}/upload"),
            dir: dir.0.clone(),
            dir_name: String::new(),
            max_size: Some(MAX_SIZE),
            max_age: MAX_AGE,
            overwrite: true,
            tokens: TokenDigests::default(),
            allow_anonymous: true,
        };
        let published = format!("{prefix}/uploaded");
        let f = files.clone();
        let uploads =
            tokio::task::spawn_blocking(move || Uploads::open_lab(&config, f, &published))
                .await
                .map_err(io::Error::other)??;
        Ok(LabUploads(Arc::new(Inner {
            _sweeper: uploads.sweeper(),
            uploads,
            files,
            dir,
        })))
    }

    /// Where the uploads are stored (and published).
    pub fn dir(&self) -> &Path {
        &self.0.dir.0
    }

    /// The engine that serves published lab uploads.
    pub(super) fn files(&self) -> &ServeFiles<Disk> {
        &self.0.files
    }
}

/// The start of the names of the lab's upload directories: then the process id, `-` and 64
/// random bits in hex.
const DIR_PREFIX: &str = "rangeserve-lab-uploads-";

/// A directory of our own under the OS's temporary directory, removed (with what is in it)
/// when dropped.
struct TempDir(PathBuf);

impl TempDir {
    /// A new one; the ones that servers killed before they could remove theirs (whose process
    /// is gone) are removed first.
    fn new() -> io::Result<TempDir> {
        use std::os::unix::fs::DirBuilderExt as _;
        let tmp = std::env::temp_dir();
        remove_orphans(&tmp);
        let id = crate::fs::upload::Id::random()?.to_string();
        let name = format!("{DIR_PREFIX}{}-{}", std::process::id(), &id[..16]);
        let path = tmp.join(name);
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        // Canonical, as the store wants it (TMPDIR may go through a symlink).
        match path.canonicalize() {
            Ok(canonical) => Ok(TempDir(canonical)),
            Err(e) => {
                let _ = std::fs::remove_dir(&path);
                Err(e)
            }
        }
    }
}

/// Remove the lab upload directories in `tmp` whose server process is gone (SIGKILL, a crash).
fn remove_orphans(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(DIR_PREFIX))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<libc::pid_t>().ok())
            .filter(|&pid| pid > 0)
        else {
            continue;
        };
        // SAFETY: kill(2) with signal 0 sends nothing: it only asks whether `pid` exists.
        let gone = unsafe { libc::kill(pid, 0) } != 0
            && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        // SAFETY: geteuid(2) cannot fail and touches no memory of ours.
        let me = unsafe { libc::geteuid() };
        let ours = entry
            .metadata()
            .is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == me);
        if gone && ours {
            match std::fs::remove_dir_all(entry.path()) {
                Ok(()) => tracing::info!(
                    "lab: removed {}, left by a server that is gone",
                    entry.path().display()
                ),
                Err(e) => tracing::warn!("lab: cannot remove {}: {e}", entry.path().display()),
            }
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!("lab: cannot remove {}: {e}", self.0.display());
        }
    }
}

/// Answer a request to the endpoint; `rest` is its path after `{prefix}/upload`.
pub(super) async fn handle(lab: &Lab, up: &LabUploads, req: Request, rest: &str) -> Response {
    let tus = req.headers().contains_key(&TUS_RESUMABLE);
    let params = match faults::parse_upload(req.uri().query()) {
        Ok(p) => p,
        Err(e) => return with_tus(bad_request(e), tus),
    };
    let key = params.key.clone().or_else(|| {
        req.headers()
            .get("x-lab-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    // tus core: X-HTTP-Method-Override is the method.
    let method = req
        .headers()
        .get(&X_HTTP_METHOD_OVERRIDE)
        .and_then(|v| Method::from_bytes(v.as_bytes()).ok())
        .unwrap_or_else(|| req.method().clone());
    let received = Arc::new(AtomicU64::new(0));
    let entry = key.as_ref().map(|k| {
        let asked = req
            .headers()
            .get(&UPLOAD_OFFSET)
            .and_then(|v| v.to_str().ok()?.trim().parse().ok());
        let facts = record::UploadFacts {
            asked,
            received: received.clone(),
        };
        lab.requests.begin(k, record::Seen::of(&req), Some(facts))
    });
    let mut applied = Vec::new();
    let append = method == Method::PATCH && !matches!(rest, "" | "/");
    let failing = match params.fail {
        Some(status) if append => {
            let fails = match params.fail_times {
                None => true,
                Some(times) => lab.should_fail(
                    key.as_deref().unwrap_or(""),
                    "/upload",
                    status.as_str(),
                    times,
                ),
            };
            fails.then_some(status)
        }
        _ => None,
    };
    // The body read with its faults; a failing append's is only read and dropped, without
    // them (it is answered its status).
    let (parts, body) = req.into_parts();
    let no_faults = UploadParams::default();
    let body_faults = if failing.is_some() {
        &no_faults
    } else {
        &params
    };
    let reading = Reading::new(body, body_faults, received.clone());
    let seen = reading.seen.clone();
    let req = Request::from_parts(parts, Body::new(reading));
    let resp = match failing {
        Some(status) => {
            applied.push(format!("fail={}", status.as_u16()));
            // Read and drop the body, so that the client reads the answer rather than a
            // connection reset while it still sends.
            let mut body = req.into_body().into_data_stream();
            while let Some(Ok(_)) = body.next().await {
                if received.load(Ordering::Relaxed) > MAX_SIZE {
                    break;
                }
            }
            let mut r = with_tus(fail_response(status), tus);
            r.extensions_mut().insert(Received(0));
            r
        }
        None => up.0.uploads.handle(req, rest).await,
    };
    seen.applied(&params, &mut applied);
    if seen.cut.load(Ordering::Relaxed) {
        // No answer: the connection is closed, as a real cut would leave it.
        if let Some(entry) = &entry {
            entry.unanswered(&applied);
        }
        return super::with_faults_logged(cut(resp), &applied);
    }
    if let (Some(n), Some(st)) = (params.lose, resp.extensions().get::<Stored>().copied()) {
        if resp.status().is_success() && !st.complete && st.offset > 0 && n > 0 {
            match up.0.uploads.store().rewind(st.id, n).await {
                Ok(to) => {
                    tracing::info!(
                        "lab: upload {} lost its last bytes: at {to} now, acknowledged {}",
                        st.id,
                        st.offset
                    );
                    applied.push(format!("lose={n}"));
                }
                Err(e) => tracing::warn!("lab: upload {}: could not lose bytes: {e:?}", st.id),
            }
        }
    }
    let resp = match entry {
        Some(entry) => entry.answered(&applied, resp),
        None => resp,
    };
    super::with_faults_logged(resp, &applied)
}

/// `Tus-Resumable` on an answer the lab makes itself, when the request spoke tus.
fn with_tus(mut r: Response, tus: bool) -> Response {
    if tus {
        r.headers_mut()
            .insert(TUS_RESUMABLE.clone(), HeaderValue::from_static(TUS_VERSION));
    }
    r
}

/// `resp` with a body that fails at once: hyper then closes the connection before it has
/// written any of the answer (it writes the head together with the first body bytes), so the
/// client sees the connection end. Its status and extensions stay for the access log (a
/// status without a body would be written at once: then 400, which a cut append gets).
fn cut(resp: Response) -> Response {
    let (mut parts, _) = resp.into_parts();
    let s = parts.status.as_u16();
    if s < 200 || s == 204 || s == 304 {
        parts.status = StatusCode::BAD_REQUEST;
    }
    Response::from_parts(parts, Body::new(Cut))
}

struct Cut;

impl http_body::Body for Cut {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Poll::Ready(Some(Err(axum::Error::new(io::Error::other(
            "lab fault: connection cut",
        )))))
    }

    fn is_end_stream(&self) -> bool {
        false
    }
}

/// What happened while a request's body was read.
#[derive(Default)]
struct ReadSeen {
    cut: AtomicBool,
    stalled: AtomicBool,
    throttled: AtomicBool,
}

impl ReadSeen {
    /// Add the body faults that took effect to `applied`, as given.
    fn applied(&self, p: &UploadParams, applied: &mut Vec<String>) {
        let took_effect = |name: &str| match name {
            "cut_after" => self.cut.load(Ordering::Relaxed),
            "stall" | "stall_after" => self.stalled.load(Ordering::Relaxed),
            "rate" => self.throttled.load(Ordering::Relaxed),
            _ => false,
        };
        applied.extend(faults::applied(&p.given, took_effect));
    }
}

/// A request body read with faults: throttled, stalled once, or failing after so many bytes
/// (the store keeps what came before, as when a client's connection is cut). Counts the bytes
/// read into `received`.
struct Reading {
    inner: Body,
    read: u64,
    cut_after: Option<u64>,
    /// (body offset, duration), until it happened.
    stall: Option<(u64, Duration)>,
    rate: Option<u64>,
    rate_start: Option<Instant>,
    sleep: Option<Pin<Box<Sleep>>>,
    /// Bytes to hand out once `sleep` is over.
    hold: Option<Bytes>,
    /// Bytes taken from `inner` but not handed out yet.
    leftover: Option<Bytes>,
    failed: bool,
    received: Arc<AtomicU64>,
    seen: Arc<ReadSeen>,
}

impl Reading {
    fn new(inner: Body, p: &UploadParams, received: Arc<AtomicU64>) -> Reading {
        Reading {
            inner,
            read: 0,
            cut_after: p.cut_after,
            stall: p.stall.map(|d| (p.stall_after.unwrap_or(0), d)),
            rate: p.rate,
            rate_start: None,
            sleep: None,
            hold: None,
            leftover: None,
            failed: false,
            received,
            seen: Arc::default(),
        }
    }

    fn emit(&mut self, b: Bytes) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.read += b.len() as u64;
        self.received.fetch_add(b.len() as u64, Ordering::Relaxed);
        Poll::Ready(Some(Ok(Frame::data(b))))
    }
}

impl http_body::Body for Reading {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        loop {
            if let Some(s) = &mut this.sleep {
                std::task::ready!(s.as_mut().poll(cx));
                this.sleep = None;
            }
            if let Some(b) = this.hold.take() {
                return this.emit(b);
            }
            if this.failed {
                return Poll::Ready(None);
            }
            let mut data = match this.leftover.take() {
                Some(b) => b,
                None => match std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                    None => return Poll::Ready(None),
                    Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(b) => b,
                        Err(frame) => return Poll::Ready(Some(Ok(frame))),
                    },
                },
            };
            if data.is_empty() {
                continue;
            }
            // A byte past the cut has arrived: the body fails here.
            let mut n = data.len() as u64;
            if let Some(cut) = this.cut_after {
                if this.read >= cut {
                    this.failed = true;
                    this.seen.cut.store(true, Ordering::Relaxed);
                    tracing::info!("lab: cutting the connection after {cut} request body bytes");
                    return Poll::Ready(Some(Err(axum::Error::new(io::Error::other(
                        "lab fault: connection cut",
                    )))));
                }
                n = n.min(cut - this.read);
            }
            if let Some((at, d)) = this.stall {
                if at == this.read {
                    this.stall = None;
                    this.seen.stalled.store(true, Ordering::Relaxed);
                    // The throttle's schedule moves by the stall (no burst after it).
                    if let Some(start) = &mut this.rate_start {
                        *start += d;
                    }
                    this.leftover = Some(data);
                    this.sleep = Some(Box::pin(tokio::time::sleep(d)));
                    continue;
                }
                if at > this.read {
                    n = n.min(at - this.read);
                }
            }
            if let Some(rate) = this.rate {
                n = n.min(faults::rate_chunk(rate));
            }
            if n < data.len() as u64 {
                this.leftover = Some(data.split_off(n as usize));
            }
            if let Some(rate) = this.rate {
                // The chunk is taken when a link of `rate` bytes/s would have carried it.
                this.seen.throttled.store(true, Ordering::Relaxed);
                let start = *this.rate_start.get_or_insert_with(Instant::now);
                let due = start + Duration::from_secs_f64((this.read + n) as f64 / rate as f64);
                if due > Instant::now() {
                    this.hold = Some(data);
                    this.sleep = Some(Box::pin(tokio::time::sleep_until(due)));
                    continue;
                }
            }
            return this.emit(data);
        }
    }

    fn is_end_stream(&self) -> bool {
        self.leftover.is_none()
            && self.hold.is_none()
            && (self.failed || self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        if self.read == 0 && self.leftover.is_none() && self.hold.is_none() {
            self.inner.size_hint()
        } else {
            SizeHint::default()
        }
    }
}
