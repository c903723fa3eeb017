//! What the lab saw, per key (`key=` or `X-Lab-Key`), for `GET {prefix}/requests?key=ID`:
//! bounded in memory, newest last.

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
    status: StatusCode,
    faults: Vec<String>,
    start: SystemTime,
    bytes: AtomicU64,
    complete: AtomicBool,
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
    /// Keep this request under `key`; the response's body counts its bytes into the entry.
    pub fn record(&self, key: &str, seen: Seen, faults: &[String], resp: Response) -> Response {
        let empty = http_body::Body::is_end_stream(resp.body());
        let entry = Arc::new(Entry {
            method: seen.method,
            path: seen.path,
            range: seen.range,
            if_range: seen.if_range,
            status: resp.status(),
            faults: faults.to_vec(),
            start: seen.start,
            bytes: AtomicU64::new(0),
            complete: AtomicBool::new(empty),
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
        resp.map(|inner| access_log::tap(inner, Counted(entry)))
    }

    /// The JSON document for `key`.
    /// Forget what was seen under `key`.
    pub fn forget(&self, key: &str) {
        self.keys.lock().unwrap().remove(key);
    }

    pub fn json(&self, key: &str) -> String {
        let keys = self.keys.lock().unwrap();
        let list: Vec<serde_json::Value> = keys
            .get(key)
            .into_iter()
            .flatten()
            .map(|e| {
                serde_json::json!({
                    "method": e.method.as_str(),
                    "path": e.path,
                    "range": e.range,
                    "if_range": e.if_range,
                    "status": e.status.as_u16(),
                    "bytes": e.bytes.load(Ordering::Relaxed),
                    "complete": e.complete.load(Ordering::Relaxed),
                    "faults": e.faults,
                    "start_unix_ms": e.start
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64),
                })
            })
            .collect();
        let mut text = serde_json::json!({ "key": key, "requests": list }).to_string();
        text.push('\n');
        text
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
