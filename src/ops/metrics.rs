//! Prometheus metrics: process-wide counters, kept with relaxed atomics on the hot path and
//! written out in the text exposition format on `metrics_listen` (`GET /metrics`).
//!
//! What operators of a download host ask and no anchor server reports: how often ranges,
//! multipart and If-Range fallbacks happen, and what the content hashing costs.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use http::StatusCode;

/// Statuses counted one by one; anything else is `other`.
const STATUSES: [u16; 13] = [
    200, 204, 206, 301, 304, 400, 403, 404, 405, 412, 416, 431, 503,
];

pub struct Metrics {
    responses: [AtomicU64; STATUSES.len() + 1],
    if_range_fallbacks: AtomicU64,
    multipart: AtomicU64,
    body_bytes: AtomicU64,
    sendfile_bytes: AtomicU64,
    splice_bytes: AtomicU64,
    handling: AtomicU64,
    streaming: AtomicU64,
    digest_hits: AtomicU64,
    digest_misses: AtomicU64,
    hashed_bytes: AtomicU64,
    hashing_micros: AtomicU64,
    store_requests: AtomicU64,
    store_errors: AtomicU64,
    store_bytes: AtomicU64,
    store_micros: AtomicU64,
    tls_client_warnings: AtomicU64,
    uploads_created: AtomicU64,
    uploads_completed: AtomicU64,
    uploads_resumed: AtomicU64,
    uploads_expired: AtomicU64,
    uploads_rejected: AtomicU64,
    upload_bytes: AtomicU64,
}

pub static METRICS: Metrics = Metrics {
    responses: [const { AtomicU64::new(0) }; STATUSES.len() + 1],
    if_range_fallbacks: AtomicU64::new(0),
    multipart: AtomicU64::new(0),
    body_bytes: AtomicU64::new(0),
    sendfile_bytes: AtomicU64::new(0),
    splice_bytes: AtomicU64::new(0),
    handling: AtomicU64::new(0),
    streaming: AtomicU64::new(0),
    digest_hits: AtomicU64::new(0),
    digest_misses: AtomicU64::new(0),
    hashed_bytes: AtomicU64::new(0),
    hashing_micros: AtomicU64::new(0),
    store_requests: AtomicU64::new(0),
    store_errors: AtomicU64::new(0),
    store_bytes: AtomicU64::new(0),
    store_micros: AtomicU64::new(0),
    tls_client_warnings: AtomicU64::new(0),
    uploads_created: AtomicU64::new(0),
    uploads_completed: AtomicU64::new(0),
    uploads_resumed: AtomicU64::new(0),
    uploads_expired: AtomicU64::new(0),
    uploads_rejected: AtomicU64::new(0),
    upload_bytes: AtomicU64::new(0),
};

impl Metrics {
    pub fn response(&self, status: StatusCode) {
        let i = STATUSES
            .iter()
            .position(|&s| s == status.as_u16())
            .unwrap_or(STATUSES.len());
        self.responses[i].fetch_add(1, Relaxed);
    }
    pub fn if_range_fallback(&self) {
        self.if_range_fallbacks.fetch_add(1, Relaxed);
    }
    pub fn multipart(&self) {
        self.multipart.fetch_add(1, Relaxed);
    }
    pub fn body_bytes(&self, n: u64) {
        self.body_bytes.fetch_add(n, Relaxed);
    }
    pub fn sendfile_bytes(&self, n: u64) {
        self.sendfile_bytes.fetch_add(n, Relaxed);
    }
    pub fn splice_bytes(&self, n: u64) {
        self.splice_bytes.fetch_add(n, Relaxed);
    }
    /// File bytes sent with sendfile so far (tests compare it before and after).
    pub fn sendfile_bytes_total(&self) -> u64 {
        self.sendfile_bytes.load(Relaxed)
    }
    /// A request entered the handler; the guard marks it done.
    pub fn handling(&'static self) -> Handling {
        self.handling.fetch_add(1, Relaxed);
        Handling(self)
    }
    /// A response body started streaming (it was not sent whole with its head).
    pub fn streaming_started(&self) {
        self.streaming.fetch_add(1, Relaxed);
    }
    /// A streaming body ended or was dropped.
    pub fn streaming_ended(&self) {
        self.streaming.fetch_sub(1, Relaxed);
    }
    pub fn digest_hit(&self) {
        self.digest_hits.fetch_add(1, Relaxed);
    }
    pub fn digest_miss(&self) {
        self.digest_misses.fetch_add(1, Relaxed);
    }
    pub fn hashed(&self, bytes: u64, elapsed: std::time::Duration) {
        self.hashed_bytes.fetch_add(bytes, Relaxed);
        self.hashing_micros
            .fetch_add(elapsed.as_micros() as u64, Relaxed);
    }

    /// One request to the object store answered (its head, for a read), after `elapsed`.
    pub fn store_request(&self, ok: bool, elapsed: std::time::Duration) {
        self.store_requests.fetch_add(1, Relaxed);
        if !ok {
            self.store_errors.fetch_add(1, Relaxed);
        }
        self.store_micros
            .fetch_add(elapsed.as_micros() as u64, Relaxed);
    }
    /// Body bytes received from the object store.
    pub fn store_bytes(&self, n: u64) {
        self.store_bytes.fetch_add(n, Relaxed);
    }

    /// A TLS client hello that rustls warned about (an IP address as the server name, as wrk
    /// sends): counted here instead of one log line per connection.
    pub fn tls_client_warning(&self) {
        self.tls_client_warnings.fetch_add(1, Relaxed);
    }
    /// An upload was created (tus) or a plain PUT started writing.
    pub fn upload_created(&self) {
        self.uploads_created.fetch_add(1, Relaxed);
    }
    /// An upload completed and was published.
    pub fn upload_completed(&self) {
        self.uploads_completed.fetch_add(1, Relaxed);
    }
    /// An upload continued after an interruption (a cut connection, a restart).
    pub fn upload_resumed(&self) {
        self.uploads_resumed.fetch_add(1, Relaxed);
    }
    /// An unfinished upload was removed after `max_age` without bytes.
    pub fn upload_expired(&self) {
        self.uploads_expired.fetch_add(1, Relaxed);
    }
    /// An upload request was refused or failed (any 4xx or 5xx answer).
    pub fn upload_rejected(&self) {
        self.uploads_rejected.fetch_add(1, Relaxed);
    }
    /// Request body bytes written to disk by uploads.
    pub fn upload_bytes(&self, n: u64) {
        self.upload_bytes.fetch_add(n, Relaxed);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        fn family(out: &mut String, name: &str, kind: &str, help: &str) {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        }
        family(
            &mut out,
            "rangeserve_responses_total",
            "counter",
            "Responses by status code (206: ranges served, 304: revalidations, 412: failed preconditions, 416: unsatisfiable ranges).",
        );
        for (i, s) in STATUSES.iter().enumerate() {
            let _ = writeln!(
                out,
                "rangeserve_responses_total{{status=\"{s}\"}} {}",
                self.responses[i].load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "rangeserve_responses_total{{status=\"other\"}} {}",
            self.responses[STATUSES.len()].load(Relaxed)
        );
        let gauge_in_flight = self.handling.load(Relaxed) + self.streaming.load(Relaxed);
        let rows: [(&str, &str, &str, u64); 19] = [
            (
                "rangeserve_if_range_fallbacks_total",
                "counter",
                "Range requests answered with the whole file because If-Range did not match.",
                self.if_range_fallbacks.load(Relaxed),
            ),
            (
                "rangeserve_multipart_responses_total",
                "counter",
                "206 responses with multipart/byteranges bodies.",
                self.multipart.load(Relaxed),
            ),
            (
                "rangeserve_body_bytes_total",
                "counter",
                "File bytes handed to connections (response bodies).",
                self.body_bytes.load(Relaxed),
            ),
            (
                "rangeserve_sendfile_bytes_total",
                "counter",
                "File bytes written to sockets by sendfile(2), without a copy (part of body bytes).",
                self.sendfile_bytes.load(Relaxed),
            ),
            (
                "rangeserve_splice_bytes_total",
                "counter",
                "Object store bytes moved from the store's socket to the client's by splice(2), without a copy (part of body bytes).",
                self.splice_bytes.load(Relaxed),
            ),
            (
                "rangeserve_responses_in_flight",
                "gauge",
                "Requests being answered plus bodies still streaming.",
                gauge_in_flight,
            ),
            (
                "rangeserve_digest_cache_hits_total",
                "counter",
                "ETag lookups answered from the content-hash cache.",
                self.digest_hits.load(Relaxed),
            ),
            (
                "rangeserve_digest_cache_misses_total",
                "counter",
                "ETag lookups that had to hash the file (or wait for a hash under way).",
                self.digest_misses.load(Relaxed),
            ),
            (
                "rangeserve_hashed_bytes_total",
                "counter",
                "Bytes read and hashed with SHA-256 for ETags.",
                self.hashed_bytes.load(Relaxed),
            ),
            (
                "rangeserve_store_requests_total",
                "counter",
                "Requests made to the object store (heads, listings, ranged reads; retries inside one count once).",
                self.store_requests.load(Relaxed),
            ),
            (
                "rangeserve_store_errors_total",
                "counter",
                "Object store requests that failed (not found and changed objects excepted), after retries.",
                self.store_errors.load(Relaxed),
            ),
            (
                "rangeserve_store_bytes_total",
                "counter",
                "Body bytes received from the object store (served and hashed).",
                self.store_bytes.load(Relaxed),
            ),
            (
                "rangeserve_tls_client_warnings_total",
                "counter",
                "TLS client hellos rustls warned about (such as an IP address sent as the server name), counted instead of logged.",
                self.tls_client_warnings.load(Relaxed),
            ),
            (
                "rangeserve_uploads_created_total",
                "counter",
                "Uploads created (tus creations and plain PUTs that started writing).",
                self.uploads_created.load(Relaxed),
            ),
            (
                "rangeserve_uploads_completed_total",
                "counter",
                "Uploads completed and published under their name.",
                self.uploads_completed.load(Relaxed),
            ),
            (
                "rangeserve_uploads_resumed_total",
                "counter",
                "Appends that continued an upload after an interruption (a cut connection or a restart).",
                self.uploads_resumed.load(Relaxed),
            ),
            (
                "rangeserve_uploads_expired_total",
                "counter",
                "Unfinished uploads removed after upload.max_age without bytes.",
                self.uploads_expired.load(Relaxed),
            ),
            (
                "rangeserve_uploads_rejected_total",
                "counter",
                "Upload requests answered with an error (4xx or 5xx: no token, wrong offset, too large, checksum mismatch, ...).",
                self.uploads_rejected.load(Relaxed),
            ),
            (
                "rangeserve_upload_bytes_total",
                "counter",
                "Request body bytes written to disk by uploads.",
                self.upload_bytes.load(Relaxed),
            ),
        ];
        for (name, kind, help, v) in rows {
            family(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {v}");
        }
        family(
            &mut out,
            "rangeserve_hashing_seconds_total",
            "counter",
            "Time spent hashing files; hashed_bytes_total / hashing_seconds_total is the hashing throughput.",
        );
        let _ = writeln!(
            out,
            "rangeserve_hashing_seconds_total {:.6}",
            self.hashing_micros.load(Relaxed) as f64 / 1e6
        );
        family(
            &mut out,
            "rangeserve_store_request_seconds_total",
            "counter",
            "Time until the object store answered (the head of a read); divided by store_requests_total, the mean latency.",
        );
        let _ = writeln!(
            out,
            "rangeserve_store_request_seconds_total {:.6}",
            self.store_micros.load(Relaxed) as f64 / 1e6
        );
        out
    }
}

/// Held while a request is in the handler.
pub struct Handling(&'static Metrics);

impl Drop for Handling {
    fn drop(&mut self) {
        self.0.handling.fetch_sub(1, Relaxed);
    }
}

/// Serve `GET /metrics` on its own listener until the task is dropped.
#[cfg(feature = "server")]
pub async fn serve(listener: tokio::net::TcpListener) {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(|| async {
            (
                [(
                    http::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                METRICS.render(),
            )
        }),
    );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::warn!("metrics listener failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_type_and_help() {
        let text = METRICS.render();
        for name in [
            "rangeserve_responses_total",
            "rangeserve_if_range_fallbacks_total",
            "rangeserve_multipart_responses_total",
            "rangeserve_body_bytes_total",
            "rangeserve_sendfile_bytes_total",
            "rangeserve_splice_bytes_total",
            "rangeserve_responses_in_flight",
            "rangeserve_digest_cache_hits_total",
            "rangeserve_digest_cache_misses_total",
            "rangeserve_hashed_bytes_total",
            "rangeserve_hashing_seconds_total",
            "rangeserve_store_requests_total",
            "rangeserve_store_errors_total",
            "rangeserve_store_bytes_total",
            "rangeserve_store_request_seconds_total",
            "rangeserve_tls_client_warnings_total",
            "rangeserve_uploads_created_total",
            "rangeserve_uploads_completed_total",
            "rangeserve_uploads_resumed_total",
            "rangeserve_uploads_expired_total",
            "rangeserve_uploads_rejected_total",
            "rangeserve_upload_bytes_total",
        ] {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}");
            assert!(text.contains(&format!("# HELP {name} ")), "{name}");
        }
        // Every sample line is `name{labels} value` with a numeric value.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, v) = line.rsplit_once(' ').unwrap();
            assert!(v.parse::<f64>().is_ok(), "{line}");
        }
    }
}
