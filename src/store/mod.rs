//! Objects in an S3-compatible store, through the `object_store` crate (its S3 client signs,
//! retries and pages listings): what one object version is, its metadata, ranged reads tied to
//! that version, delimiter listings of a prefix, and the SHA-256 of an object's bytes. No HTTP
//! types: `files::Bucket` turns these into representations.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as Key;
use object_store::{BackoffConfig, ClientOptions, GetOptions, GetRange, ObjectStore, RetryConfig};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};
use sha2::{Digest as _, Sha256};

use crate::fs::digest::{Sha256Sum, Version};
use crate::ops::metrics::METRICS;

pub mod raw;

/// Connection settings for a bucket beyond what the standard `AWS_*` variables give. `None`
/// leaves a setting to the variables (or the client's default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Options {
    /// The store's URL (`http://127.0.0.1:8333`); `None`: `AWS_ENDPOINT_URL`, or AWS itself.
    pub endpoint: Option<String>,
    /// The region; `None`: `AWS_REGION`, `AWS_DEFAULT_REGION`, or `us-east-1`.
    pub region: Option<String>,
    /// Allow `http://` endpoints; `None`: `AWS_ALLOW_HTTP`, else no.
    pub allow_http: Option<bool>,
    /// `https://BUCKET.host/` rather than `https://host/BUCKET/`; `None`: path style with a
    /// custom endpoint (what SeaweedFS, MinIO and Garage expect), virtual-hosted on AWS.
    pub virtual_hosted_style: Option<bool>,
    /// Time allowed for one request to the store, until its response head.
    pub request_timeout: Duration,
    /// How many times a failed idempotent request is retried.
    pub retries: usize,
    /// Requests go unsigned (a bucket that allows anonymous reads): no credentials needed, and
    /// no signing cost per request.
    pub anonymous: bool,
}

impl Default for S3Options {
    fn default() -> S3Options {
        S3Options {
            endpoint: None,
            region: None,
            allow_http: None,
            virtual_hosted_style: None,
            request_timeout: Duration::from_secs(5),
            retries: 2,
            anonymous: false,
        }
    }
}

/// `s3://BUCKET/PREFIX` split into the bucket and the prefix (without slashes at its ends;
/// empty for the whole bucket), or why it is not such a URL.
pub fn parse_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| format!("{url:?} is not an s3:// URL"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(format!("{url:?} names no bucket (s3://BUCKET/PREFIX)"));
    }
    // The bucket naming rules of S3 (3-63 of a-z, 0-9, '.', '-'), loosely: no host tricks.
    if !bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return Err(format!("{url:?}: {bucket:?} is not a bucket name"));
    }
    let prefix = prefix.trim_matches('/');
    if prefix
        .split('/')
        .any(|s| s == "." || s == ".." || (s.is_empty() && !prefix.is_empty()))
    {
        return Err(format!(
            "{url:?}: the prefix must be plain segments (no empty, `.` or `..`)"
        ));
    }
    Ok((bucket.to_string(), prefix.to_string()))
}

/// One bucket (or a prefix of it) of an S3-compatible store.
#[derive(Clone)]
pub struct Bucket {
    store: Arc<AmazonS3>,
    bucket: String,
    /// Keys start with this (empty, or ending in `/`).
    prefix: String,
    /// The bound of one call to the store, retries included.
    deadline: Duration,
    /// The longest wait for the next bytes of a response body.
    stall: Duration,
    /// Whether ranged reads may go over sockets of our own (`raw`): a plain `http://`
    /// endpoint, signed requests, no proxy.
    raw: bool,
}

/// One version of one object: the key of its hash, and what every ranged read of a response
/// is made conditional on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectVersion {
    /// `bucket/key`.
    pub location: String,
    pub size: u64,
    /// Milliseconds since the epoch (what S3 listings and heads give).
    pub modified_ms: i64,
    /// The store's own ETag (an MD5 or a multipart hash, never ours), when it gives one.
    pub store_etag: Option<String>,
}

/// One object found under the bucket's prefix.
#[derive(Debug, Clone)]
pub struct Object {
    /// Its key, the prefix included.
    key: Key,
    pub version: ObjectVersion,
}

impl Object {
    /// When it was last modified (whole seconds).
    pub fn modified(&self) -> SystemTime {
        self.version.modified()
    }
}

impl ObjectVersion {
    /// When it was last modified (whole seconds).
    pub fn modified(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(self.modified_ms).unwrap_or(0))
    }

    /// Whether a store's answer naming this length, Last-Modified (whole seconds since the
    /// epoch) and ETag describes this version (the ETag only counts when the version has one).
    fn named_by(&self, size: u64, modified_secs: i64, e_tag: Option<&str>) -> bool {
        size == self.size
            && modified_secs * 1000 == self.modified_ms
            && (self.store_etag.is_none() || e_tag == self.store_etag.as_deref())
    }
}

/// A name in a listing of a prefix: an object or a "directory" (a common prefix).
#[derive(Debug, Clone)]
pub struct Listed {
    /// The last segment.
    pub name: String,
    /// `None` for a common prefix.
    pub object: Option<(u64, SystemTime)>,
}

/// Characters escaped in a state line's fields (spaces separate them, newlines end them).
const FIELD: &AsciiSet = &CONTROLS.add(b' ').add(b'%');

impl Version for ObjectVersion {
    const STATE_FILE: &'static str = "objects-v1";

    fn size(&self) -> u64 {
        self.size
    }

    fn write_fields(&self, out: &mut String) {
        use std::fmt::Write as _;
        let etag = self.store_etag.as_deref().unwrap_or("-");
        let _ = write!(
            out,
            "{} {} {} {}",
            self.size,
            self.modified_ms,
            utf8_percent_encode(etag, FIELD),
            utf8_percent_encode(&self.location, FIELD)
        );
    }

    fn parse_fields(fields: &[&str]) -> Option<ObjectVersion> {
        let [size, modified_ms, etag, location] = fields else {
            return None;
        };
        let decode = |f: &str| percent_decode_str(f).decode_utf8().ok().map(String::from);
        Some(ObjectVersion {
            size: size.parse().ok()?,
            modified_ms: modified_ms.parse().ok()?,
            store_etag: match *etag {
                "-" => None,
                e => Some(decode(e)?),
            },
            location: decode(location)?,
        })
    }
}

impl Bucket {
    /// The bucket of `url` (`s3://BUCKET/PREFIX`), with credentials and settings from the
    /// standard `AWS_*` variables and `options` over them. Nothing is asked of the store yet
    /// (see [`check`](Bucket::check)). The error never holds a secret.
    pub fn connect(url: &str, options: &S3Options) -> Result<Bucket, String> {
        let (bucket, prefix) = parse_url(url)?;
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&bucket);
        if let Some(endpoint) = &options.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        // The endpoint the client will use (ours, or the variables' under any of their names).
        let raw = builder
            .get_config_value(&AmazonS3ConfigKey::Endpoint)
            .is_some_and(|e| e.starts_with("http://"))
            && !options.anonymous
            && raw::allowed();
        if let Some(region) = &options.region {
            builder = builder.with_region(region);
        }
        if let Some(yes) = options.virtual_hosted_style {
            builder = builder.with_virtual_hosted_style_request(yes);
        }
        // Each try gets `request_timeout`; the retries of one call, with their back-off, stay
        // within `deadline` (the client's own default retries for minutes).
        let deadline =
            options.request_timeout * (options.retries as u32 + 1) + Duration::from_secs(1);
        // Client options replace those `from_env` read: start from the same variables
        // (AWS_ALLOW_HTTP, AWS_PROXY_URL, ...), then set ours. No total timeout: it would cut
        // long bodies; the head of each response is bounded by `timed`, each wait for more body
        // bytes by the reader.
        let mut client = ClientOptions::new();
        for (var, value) in std::env::vars() {
            if !var.starts_with("AWS_") {
                continue;
            }
            if let Ok(AmazonS3ConfigKey::Client(key)) = var.to_ascii_lowercase().parse() {
                client = client.with_config(key, value);
            }
        }
        let client = client
            .with_timeout_disabled()
            .with_connect_timeout(options.request_timeout.min(Duration::from_secs(3)));
        builder = builder.with_client_options(client).with_retry(RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(1),
                base: 2.0,
            },
            max_retries: options.retries,
            retry_timeout: deadline,
        });
        if let Some(yes) = options.allow_http {
            builder = builder.with_allow_http(yes);
        }
        if options.anonymous {
            builder = builder.with_skip_signature(true);
        }
        let store = builder
            .build()
            .map_err(|e| format!("s3://{bucket}: {}", without_secrets(&e.to_string())))?;
        Ok(Bucket {
            store: Arc::new(store),
            bucket,
            prefix: if prefix.is_empty() {
                prefix
            } else {
                prefix + "/"
            },
            deadline,
            stall: options.request_timeout,
            raw,
        })
    }

    /// The longest wait for the next bytes of a response body before the read fails.
    pub fn stall_timeout(&self) -> Duration {
        self.stall
    }

    /// `s3://BUCKET/PREFIX`, for messages.
    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix.trim_end_matches('/'))
    }

    /// Ask the store for one page of the prefix: fails when the endpoint is unreachable, the
    /// bucket missing or the credentials refused.
    pub async fn check(&self) -> io::Result<()> {
        let prefix = self.key("")?;
        let mut objects = self.store.list(prefix.as_ref());
        let first = self.timed(async { objects.next().await.transpose() }).await;
        first.map(|_| ())
    }

    /// The key of `name` (a checked name under the root: `a/b.txt`, empty for the root).
    fn key(&self, name: &str) -> io::Result<Option<Key>> {
        let full = format!("{}{name}", self.prefix);
        if full.is_empty() {
            return Ok(None);
        }
        // Control characters are not keys we serve.
        Key::parse(&full)
            .map(Some)
            .map_err(|_| io::Error::new(io::ErrorKind::NotFound, "not a key"))
    }

    /// The name under the prefix of `object` (its key without the prefix).
    pub fn name_of<'a>(&self, object: &'a Object) -> &'a str {
        object
            .key
            .as_ref()
            .strip_prefix(self.prefix.as_str())
            .unwrap_or(object.key.as_ref())
    }

    /// The object named `name`, if there is one.
    pub async fn head(&self, name: &str) -> io::Result<Option<Object>> {
        let Some(key) = self.key(name)? else {
            return Ok(None);
        };
        match self.timed(self.store.head(&key)).await {
            Ok(meta) => Ok(Some(self.object(meta))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn object(&self, meta: object_store::ObjectMeta) -> Object {
        // Whole seconds: what a HEAD says (an HTTP date), so that a listing's millisecond
        // times name the same version.
        let modified_ms = meta.last_modified.timestamp() * 1000;
        Object {
            version: ObjectVersion {
                location: format!("{}/{}", self.bucket, meta.location),
                size: meta.size,
                modified_ms,
                store_etag: meta.e_tag,
            },
            key: meta.location,
        }
    }

    /// Whether any key starts with `name/` (a "directory"): one listing page at most.
    pub async fn is_prefix(&self, name: &str) -> io::Result<bool> {
        let Some(key) = self.key(name)? else {
            return Ok(true);
        };
        let mut objects = self.store.list(Some(&key));
        let first = self
            .timed(async { objects.next().await.transpose() })
            .await?;
        Ok(first.is_some())
    }

    /// The names directly under `name/` (the root: empty), from delimiter listings (one
    /// request per thousand keys, never one per key); `None` when there are none.
    pub async fn list(&self, name: &str) -> io::Result<Option<Vec<Listed>>> {
        let key = self.key(name)?;
        let listing = self
            .timed(self.store.list_with_delimiter(key.as_ref()))
            .await?;
        if listing.objects.is_empty() && listing.common_prefixes.is_empty() {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(listing.objects.len() + listing.common_prefixes.len());
        for p in listing.common_prefixes {
            if let Some(last) = p.filename() {
                out.push(Listed {
                    name: last.to_string(),
                    object: None,
                });
            }
        }
        for meta in listing.objects {
            let Some(last) = meta.location.filename().map(str::to_string) else {
                continue;
            };
            // Size and time only: no version (and no location string) per listed key.
            let secs = u64::try_from(meta.last_modified.timestamp()).unwrap_or(0);
            out.push(Listed {
                name: last,
                object: Some((
                    meta.size,
                    SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
                )),
            });
        }
        Ok(Some(out))
    }

    /// The bytes `range` of `object`, as a stream, only if the object is still that version
    /// (otherwise an error of kind `Interrupted`: a response never mixes two versions). The
    /// store is asked for the range on the condition that the object is that version, and its
    /// answer must name that version too (its ETag, Last-Modified and length): a store that
    /// ignored the condition, or a rewrite with the same bytes (same store ETag, a new time),
    /// is caught as well.
    pub async fn read(
        &self,
        object: &Object,
        range: std::ops::Range<u64>,
    ) -> io::Result<BoxStream<'static, io::Result<Bytes>>> {
        let options = GetOptions {
            if_match: object.version.store_etag.clone(),
            // Without an ETag, the time is what ties the read to the version.
            if_unmodified_since: match object.version.store_etag {
                Some(_) => None,
                None => Some(object.modified().into()),
            },
            range: Some(GetRange::Bounded(range)),
            ..GetOptions::default()
        };
        let got = self
            .timed(self.store.get_opts(&object.key, options))
            .await?;
        if !names_version(&got.meta, &object.version) {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "the object changed (the store's answer names another version)",
            ));
        }
        Ok(got
            .into_stream()
            .map(|chunk| match chunk {
                Ok(bytes) => {
                    METRICS.store_bytes(bytes.len() as u64);
                    Ok(bytes)
                }
                Err(e) => Err(io_error(e)),
            })
            .boxed())
    }

    /// Whether [`read_raw`](Bucket::read_raw) may give bodies to splice.
    pub fn reads_raw(&self) -> bool {
        self.raw
    }

    /// [`read`](Bucket::read) over a socket of our own (`raw`), so that the body can be
    /// spliced: `None` when this bucket's reads cannot be (see [`reads_raw`](Bucket::reads_raw))
    /// or the store's answer is one only `read` takes (its retries among them). The same
    /// conditions and checks of the version as `read`.
    pub async fn read_raw(
        &self,
        object: &Object,
        range: std::ops::Range<u64>,
    ) -> io::Result<Option<raw::RawBody>> {
        use object_store::signer::Signer;
        if !self.raw {
            return Ok(None);
        }
        let signing =
            self.store
                .signed_url(http::Method::GET, &object.key, Duration::from_secs(600));
        let url = match tokio::time::timeout(self.deadline, signing).await {
            Ok(Ok(url)) => url,
            Ok(Err(e)) => {
                tracing::debug!("store read through object_store: signing: {}", io_error(e));
                return Ok(None);
            }
            Err(_) => return Ok(None),
        };
        match raw::get(url.as_str(), range, &object.version, self.stall).await? {
            raw::Opened::Body(body) => Ok(Some(body)),
            raw::Opened::Fallback(why) => {
                tracing::debug!("store read through object_store: {why}");
                Ok(None)
            }
        }
    }

    /// The SHA-256 of `object`'s bytes (one read of the whole version, hashed off the async
    /// workers a megabyte at a time).
    pub async fn hash(&self, object: &Object) -> io::Result<Sha256Sum> {
        let size = object.version.size;
        let mut hasher = Sha256::new();
        if size == 0 {
            return Ok(hasher.finalize().into());
        }
        let mut stream = self.read(object, 0..size).await?;
        let mut pending = bytes::BytesMut::new();
        let mut seen = 0u64;
        loop {
            let chunk = stream.next().await.transpose()?;
            if let Some(c) = &chunk {
                seen += c.len() as u64;
                pending.extend_from_slice(c);
            }
            if pending.len() >= 1 << 20 || (chunk.is_none() && !pending.is_empty()) {
                let block = pending.split().freeze();
                hasher = tokio::task::spawn_blocking(move || {
                    hasher.update(&block);
                    hasher
                })
                .await
                .map_err(io::Error::other)?;
            }
            if chunk.is_none() {
                break;
            }
        }
        if seen != size {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "object changed while its hash was computed",
            ));
        }
        Ok(hasher.finalize().into())
    }

    /// Every object under the prefix (for prehash), listed page by page.
    pub fn walk(&self) -> BoxStream<'static, io::Result<(String, Object)>> {
        let this = self.clone();
        let prefix = self.key("").ok().flatten();
        let list = self.store.list(prefix.as_ref());
        list.map(move |meta| {
            let meta = meta.map_err(io_error)?;
            let name = meta.location.as_ref()[this.prefix.len()..].to_string();
            Ok((name, this.object(meta)))
        })
        .boxed()
    }

    /// A call to the store, bounded by the deadline and counted.
    async fn timed<T>(
        &self,
        call: impl std::future::Future<Output = object_store::Result<T>>,
    ) -> io::Result<T> {
        let started = Instant::now();
        let result = match tokio::time::timeout(self.deadline, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(io_error(e)),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer from the store within {:?}", self.deadline),
            )),
        };
        // A missing object and a failed precondition (the object changed) are answers.
        let ok = match &result {
            Ok(_) => true,
            Err(e) => matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::Interrupted
            ),
        };
        METRICS.store_request(ok, started.elapsed());
        result
    }
}

/// Whether the metadata of a store's answer (a read's headers) describe `version`.
fn names_version(meta: &object_store::ObjectMeta, version: &ObjectVersion) -> bool {
    version.named_by(
        meta.size,
        meta.last_modified.timestamp(),
        meta.e_tag.as_deref(),
    )
}

/// The store's error as an I/O error whose kind says what the client is told: not found (404),
/// a failed precondition (the object changed), timed out (504), or other (502).
fn io_error(e: object_store::Error) -> io::Error {
    let kind = match &e {
        object_store::Error::NotFound { .. } => io::ErrorKind::NotFound,
        object_store::Error::Precondition { .. } | object_store::Error::NotModified { .. } => {
            io::ErrorKind::Interrupted
        }
        _ if timed_out(&e) => io::ErrorKind::TimedOut,
        _ => io::ErrorKind::Other,
    };
    let text = match kind {
        io::ErrorKind::Interrupted => {
            "the object changed (its version no longer matches)".to_string()
        }
        _ => without_secrets(&e.to_string()),
    };
    io::Error::new(kind, text)
}

/// Whether a timeout is somewhere in the error's chain of causes.
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<io::Error>() {
            if io.kind() == io::ErrorKind::TimedOut {
                return true;
            }
        }
        let text = c.to_string();
        if text.contains("timed out") || text.contains("timeout") {
            return true;
        }
        cause = c.source();
    }
    false
}

/// `text` with anything that looks like a credential cut out (the client's errors name URLs and
/// statuses, not keys; this keeps it so should that change).
fn without_secrets(text: &str) -> String {
    let mut out = text.to_string();
    for var in ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"] {
        if let Ok(secret) = std::env::var(var) {
            if !secret.is_empty() {
                out = out.replace(&secret, "[secret]");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(parse_url("s3://b").unwrap(), ("b".into(), "".into()));
        assert_eq!(parse_url("s3://b/").unwrap(), ("b".into(), "".into()));
        assert_eq!(
            parse_url("s3://my-bucket/a/b/").unwrap(),
            ("my-bucket".into(), "a/b".into())
        );
        for bad in [
            "s3://",
            "s3:///x",
            "http://b/x",
            "s3://B/x",
            "s3://b/a//c",
            "s3://b/../x",
            "s3://b@evil/x",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn object_versions_round_trip_through_state_lines() {
        let v = ObjectVersion {
            location: "b/dir with space/100%.bin".into(),
            size: 12,
            modified_ms: 1_700_000_000_123,
            store_etag: Some("\"abc-2\"".into()),
        };
        let mut line = String::new();
        v.write_fields(&mut line);
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields.len(), 4, "{line}");
        assert_eq!(ObjectVersion::parse_fields(&fields), Some(v.clone()));
        let none = ObjectVersion {
            store_etag: None,
            ..v
        };
        let mut line = String::new();
        none.write_fields(&mut line);
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(ObjectVersion::parse_fields(&fields), Some(none));
        assert_eq!(ObjectVersion::parse_fields(&["1", "x", "-", "b/k"]), None);
    }
}
