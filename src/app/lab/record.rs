//! What the lab saw, per key (`key=` or `X-Lab-Key`), for `GET {prefix}/requests?key=ID`:
//! bounded in memory, newest last. A request is kept from when it arrives (an upload whose
//! client goes away mid-body is still seen), its answer filled in when there is one.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::response::Response;
use http::{header, Method, StatusCode};

use crate::ops::access_log;

/// Requests kept per key; older ones are forgotten first.
pub const PER_KEY: usize = 1000;
/// Keys kept; when a new one comes, one of the others is forgotten.
pub const KEYS: usize = 1000;

/// One request, and how much of its body has been handed to the connection so far.
pub struct Entry {
    method: Method,
    path: String,
    range: Option<String>,
    if_range: Option<String>,
    start: SystemTime,
    upload: Option<UploadFacts>,
    answer: Mutex<Answer>,
    bytes: AtomicU64,
    complete: AtomicBool,
}

/// What an upload request asked for, and the body bytes read from it so far (counted by the
/// reader of its body).
pub struct UploadFacts {
    /// Its `Upload-Offset`, when it sent a number.
    pub asked: Option<u64>,
    pub received: Arc<AtomicU64>,
}

/// What the request was answered, once it was.
#[derive(Default)]
struct Answer {
    status: Option<StatusCode>,
    /// The answer's `Upload-Offset`.
    offset: Option<u64>,
    faults: Vec<String>,
}

#[derive(Default)]
pub struct Recorder {
    keys: Mutex<HashMap<String, VecDeque<Arc<Entry>>>>,
}

/// The request facts taken before the handler consumes it.
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub range: Option<String>,
    pub if_range: Option<String>,
    pub start: SystemTime,
}

impl Seen {
    pub fn of(req: &axum::extract::Request) -> Seen {
        let header = |name: header::HeaderName| {
            req.headers().get(name).map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .chars()
                    .take(200)
                    .collect()
            })
        };
        // As the client sent it: the Router hands the lab its path without the prefix.
        let uri = req
            .extensions()
            .get::<axum::extract::OriginalUri>()
            .map_or(req.uri(), |o| &o.0);
        Seen {
            method: req.method().clone(),
            path: uri
                .path_and_query()
                .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned()),
            range: header(header::RANGE),
            if_range: header(header::IF_RANGE),
            start: SystemTime::now(),
        }
    }
}

impl Recorder {
    /// Keep this request under `key`, answered `resp`; the response's body counts its bytes
    /// into the entry.
    pub fn record(&self, key: &str, seen: Seen, faults: &[String], resp: Response) -> Response {
        self.begin(key, seen, None).answered(faults, resp)
    }

    /// Keep this request under `key` now, its answer to come ([`Entry::answered`]).
    pub fn begin(&self, key: &str, seen: Seen, upload: Option<UploadFacts>) -> Arc<Entry> {
        let entry = Arc::new(Entry {
            method: seen.method,
            path: seen.path,
            range: seen.range,
            if_range: seen.if_range,
            start: seen.start,
            upload,
            answer: Mutex::default(),
            bytes: AtomicU64::new(0),
            complete: AtomicBool::new(false),
        });
        {
            let mut keys = self.keys.lock().unwrap();
            if !keys.contains_key(key) && keys.len() >= KEYS {
                if let Some(k) = keys.keys().next().cloned() {
                    keys.remove(&k);
                }
            }
            let list = keys.entry(key.to_owned()).or_default();
            if list.len() >= PER_KEY {
                list.pop_front();
            }
            list.push_back(entry.clone());
        }
        entry
    }

    /// Forget what was seen under `key`.
    pub fn forget(&self, key: &str) {
        self.keys.lock().unwrap().remove(key);
    }

    /// The JSON document for `key`.
    pub fn json(&self, key: &str) -> String {
        let keys = self.keys.lock().unwrap();
        let list: Vec<serde_json::Value> = keys
            .get(key)
            .into_iter()
            .flatten()
            .map(|e| {
                let answer = e.answer.lock().unwrap();
                let mut doc = serde_json::json!({
                    "method": e.method.as_str(),
                    "path": e.path,
                    "range": e.range,
                    "if_range": e.if_range,
                    "status": answer.status.map(|s| s.as_u16()),
                    "bytes": e.bytes.load(Ordering::Relaxed),
                    "complete": e.complete.load(Ordering::Relaxed),
                    "faults": answer.faults,
                    "start_unix_ms": e.start
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64),
                });
                if let (Some(up), Some(doc)) = (&e.upload, doc.as_object_mut()) {
                    doc.insert("upload_offset".into(), up.asked.into());
                    doc.insert("answer_offset".into(), answer.offset.into());
                    doc.insert(
                        "received".into(),
                        up.received.load(Ordering::Relaxed).into(),
                    );
                }
                doc
            })
            .collect();
        let mut text = serde_json::json!({ "key": key, "requests": list }).to_string();
        text.push('\n');
        text
    }
}

impl Entry {
    /// The request was answered `resp`, with `faults`: its status and `Upload-Offset` are
    /// kept, and its body counts its bytes into the entry.
    pub fn answered(self: Arc<Self>, faults: &[String], resp: Response) -> Response {
        {
            let mut a = self.answer.lock().unwrap();
            a.status = Some(resp.status());
            a.offset = resp
                .headers()
                .get(&crate::http::upload::UPLOAD_OFFSET)
                .and_then(|v| v.to_str().ok()?.parse().ok());
            a.faults = faults.to_vec();
        }
        let empty = http_body::Body::is_end_stream(resp.body());
        self.complete.store(empty, Ordering::Relaxed);
        resp.map(|inner| access_log::tap(inner, Counted(self)))
    }

    /// The request got no answer: the lab cut its connection, with `faults`.
    pub fn unanswered(&self, faults: &[String]) {
        self.answer.lock().unwrap().faults = faults.to_vec();
    }
}

/// Counts the body bytes handed out into the entry.
struct Counted(Arc<Entry>);

impl access_log::Watch for Counted {
    fn data(&mut self, n: u64) {
        self.0.bytes.fetch_add(n, Ordering::Relaxed);
    }
    fn ended(&mut self) {
        self.0.complete.store(true, Ordering::Relaxed);
    }
}
