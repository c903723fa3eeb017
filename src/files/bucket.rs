//! An S3-compatible bucket as a [`Storage`]: the second implementation of the engine's storage
//! interface, beside [`Disk`](super::Disk). Names follow the disk's rules (`fs::resolve`'s
//! request names: no `..`, no hidden names unless shown); a prefix asked for with a slash is a
//! directory (its index object, or a listing from delimiter listings). ETags are the SHA-256
//! of the bytes, as on disk: hashed once per object version (`store::ObjectVersion`), shared
//! by concurrent first requests, and persisted in `state_dir`. Every read of a response is
//! conditional on the version its headers describe.
//!
//! The latest version seen of each object is remembered ([`Latest`]): a GET of an object whose
//! version and hash are known is answered without asking the store first
//! ([`open_remembered`](Storage::open_remembered)), its first ranged read, conditional on that
//! version, being the one request to the store; a read that finds the object changed forgets
//! the version, and the engine looks the object up again.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use http::HeaderValue;

use crate::files::storage::{
    self, FileDigest, Found, NameSettings, Names, OpenError, OpenFuture, Order, Page, Piped,
    PipedFuture, ReadFuture, Representation, Sort, Source, Storage, DIGEST_CACHE_ENTRIES,
};
use crate::fs::digest::DigestCache;
use crate::fs::listdir::{self, Entry};
use crate::fs::resolve;
use crate::http::mime;
use crate::ops::AbortOnDrop;
use crate::store::{self, Object, ObjectVersion};

pub use crate::store::S3Options;

/// The run of an object a first request to the store reads, and the shortest of the next ones:
/// a long download is several requests, so none stays open for hours behind a slow client
/// (see [`ObjectSource`] for how long the next ones are).
const READ_WINDOW: u64 = 64 << 20;

/// How often `watch` lists the bucket for new objects (stores have no change notification).
const WATCH_EVERY: Duration = Duration::from_secs(10);

/// The objects of a bucket of an S3-compatible store, under a prefix.
pub struct Bucket {
    url: String,
    options: S3Options,
    names: NameSettings,
    ready: tokio::sync::OnceCell<Result<Ready, String>>,
}

struct Ready {
    bucket: Arc<store::Bucket>,
    digests: Arc<DigestCache<FileDigest, ObjectVersion>>,
    latest: Arc<Latest>,
    _background: Option<AbortOnDrop>,
}

/// How many objects' latest versions are remembered (a few hundred bytes each).
const LATEST_ENTRIES: usize = DIGEST_CACHE_ENTRIES;

/// The latest version `find` saw of each object, by name under the root, with its name's
/// `Content-Type`: what [`open_remembered`](Storage::open_remembered) answers from. Only
/// versions with a store ETag are kept (a read conditional on a time alone would not catch a
/// rewrite within the same second). At most [`LATEST_ENTRIES`]: when full, the least recently
/// used eighth goes.
struct Latest {
    entries: Mutex<foldhash::HashMap<String, (BucketFile, u64)>>,
    clock: AtomicU64,
}

impl Latest {
    fn new() -> Latest {
        Latest {
            entries: Mutex::new(foldhash::HashMap::default()),
            clock: AtomicU64::new(0),
        }
    }

    fn get(&self, name: &str) -> Option<BucketFile> {
        let now = self.clock.fetch_add(1, Ordering::Relaxed);
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (file, used) = map.get_mut(name)?;
        *used = now;
        Some(file.clone())
    }

    fn remember(&self, name: &str, file: &BucketFile) {
        if file.object.version.store_etag.is_none() {
            return;
        }
        let now = self.clock.fetch_add(1, Ordering::Relaxed);
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((known, used)) = map.get_mut(name) {
            *known = file.clone();
            *used = now;
            return;
        }
        if map.len() >= LATEST_ENTRIES {
            let mut ages: Vec<u64> = map.values().map(|(_, used)| *used).collect();
            let (_, cut, _) = ages.select_nth_unstable(LATEST_ENTRIES / 8);
            let cut = *cut;
            map.retain(|_, (_, used)| *used > cut);
        }
        map.insert(name.to_string(), (file.clone(), now));
    }

    /// Forget `version` of `name`, if it is still the one remembered.
    fn forget(&self, name: &str, version: &ObjectVersion) {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if map
            .get(name)
            .is_some_and(|(f, _)| f.object.version == *version)
        {
            map.remove(name);
        }
    }
}

/// Settings only: a copy is a new storage that connects again.
impl Clone for Bucket {
    fn clone(&self) -> Bucket {
        Bucket {
            url: self.url.clone(),
            options: self.options.clone(),
            names: self.names.clone(),
            ready: tokio::sync::OnceCell::new(),
        }
    }
}

impl Bucket {
    /// The objects under `url` (`s3://BUCKET/PREFIX`), reached with the standard `AWS_*`
    /// variables and `options`. Never fails here: a bucket that cannot be reached is an error
    /// at [`start`](Storage::start), or a 500 for every request (logged once).
    pub fn new(url: impl Into<String>, options: S3Options) -> Bucket {
        Bucket {
            url: url.into(),
            options,
            names: NameSettings::default(),
            ready: tokio::sync::OnceCell::new(),
        }
    }

    async fn ready(&self) -> Result<&Ready, OpenError> {
        match self.ready.get() {
            Some(r) => r
                .as_ref()
                .map_err(|e| OpenError::Io(io::Error::other(e.clone()))),
            None => Box::pin(self.set_up()).await,
        }
    }

    async fn set_up(&self) -> Result<&Ready, OpenError> {
        let ready = self
            .ready
            .get_or_init(|| async {
                let bucket = Arc::new(store::Bucket::connect(&self.url, &self.options)?);
                bucket
                    .check()
                    .await
                    .map_err(|e| format!("{}: {e}", bucket.url()))?;
                let state_dir = self.names.state_dir.clone();
                let digests = tokio::task::spawn_blocking(move || {
                    DigestCache::with_state(DIGEST_CACHE_ENTRIES, state_dir.as_deref())
                })
                .await
                .map_err(|e| e.to_string())?;
                let digests = Arc::new(digests);
                let background = (self.names.prehash || self.names.watch).then(|| {
                    AbortOnDrop(tokio::spawn(hash_ahead(
                        bucket.clone(),
                        digests.clone(),
                        self.names.show_hidden,
                        self.names.prehash,
                        self.names.watch,
                    )))
                });
                Ok(Ready {
                    bucket,
                    digests,
                    latest: Arc::new(Latest::new()),
                    _background: background,
                })
            })
            .await;
        ready.as_ref().map_err(|e| {
            OpenError::Io(io::Error::other(format!(
                "{e}; every request is answered 500"
            )))
        })
    }

    /// The object `find` found as `name`, remembered as its latest version.
    fn found(&self, ready: &Ready, object: Object, name: String) -> Found<BucketFile, BucketDir> {
        let file = BucketFile {
            object: Arc::new(object),
            content_type: mime::content_type_for(Path::new(&name)),
        };
        ready.latest.remember(&name, &file);
        Found::File {
            file,
            name: PathBuf::from(name),
        }
    }
}

/// The representation of `file`, whose hash is `digest`.
fn representation(ready: &Ready, file: BucketFile, digest: FileDigest) -> Representation {
    let BucketFile {
        object,
        content_type,
    } = file;
    Representation {
        len: object.version.size,
        etag: Some(digest.etag),
        modified: Some(object.modified()),
        content_type,
        source: Arc::new(ObjectSource {
            bucket: ready.bucket.clone(),
            latest: ready.latest.clone(),
            object,
            reading: tokio::sync::Mutex::new(None),
            pipe: std::sync::OnceLock::new(),
        }),
        repr_digest: Some(digest.repr_digest),
        path_headers: Default::default(),
    }
}

/// An object found in the bucket, with its name's `Content-Type`.
#[derive(Clone)]
pub struct BucketFile {
    object: Arc<Object>,
    content_type: HeaderValue,
}

/// A prefix to list: its names, already listed (finding it needed the listing).
pub struct BucketDir(Vec<store::Listed>);

/// A store error as the client is told it.
fn store_error(e: io::Error) -> OpenError {
    match e.kind() {
        io::ErrorKind::NotFound => OpenError::NotFound,
        io::ErrorKind::Interrupted => OpenError::Changing,
        _ => OpenError::Upstream(e),
    }
}

impl Names for Bucket {
    fn names(&mut self) -> &mut NameSettings {
        &mut self.names
    }
}

impl Storage for Bucket {
    type File = BucketFile;
    type Dir = BucketDir;

    async fn start(&self) -> io::Result<()> {
        self.ready().await.map(|_| ()).map_err(OpenError::into_io)
    }

    fn hash_computations(&self) -> u64 {
        match self.ready.get() {
            Some(Ok(r)) => r.digests.computations(),
            _ => 0,
        }
    }

    async fn find(&self, path: &str) -> Result<Found<BucketFile, BucketDir>, OpenError> {
        let ready = self.ready().await?;
        let name = resolve::request_name(path, self.names.show_hidden)?;
        let bucket = &ready.bucket;
        if !name.is_empty() && !path.ends_with('/') {
            return match bucket.head(&name).await.map_err(store_error)? {
                Some(object) => Ok(self.found(ready, object, name)),
                None if bucket.is_prefix(&name).await.map_err(store_error)? => {
                    Ok(Found::AddSlash(resolve::slashed(&path[1..])))
                }
                None => Err(OpenError::NotFound),
            };
        }
        for index in &self.names.index_files {
            let index_name = match name.as_str() {
                "" => index.clone(),
                dir => format!("{dir}/{index}"),
            };
            if let Some(object) = bucket.head(&index_name).await.map_err(store_error)? {
                return Ok(self.found(ready, object, index_name));
            }
        }
        match bucket.list(&name).await.map_err(store_error)? {
            Some(listed) => Ok(Found::Dir {
                dir: BucketDir(listed),
                name: PathBuf::from(name),
            }),
            // The root of an empty bucket is an empty directory; elsewhere, nothing is there.
            None if name.is_empty() => Ok(Found::Dir {
                dir: BucketDir(Vec::new()),
                name: PathBuf::new(),
            }),
            None => Err(OpenError::NotFound),
        }
    }

    async fn sidecar(&self, file: &BucketFile, name: &Path, suffix: &str) -> Option<BucketFile> {
        let ready = self.ready().await.ok()?;
        let sidecar = format!("{}{suffix}", name.to_str()?);
        match ready.bucket.head(&sidecar).await {
            Ok(Some(object)) => Some(BucketFile {
                object: Arc::new(object),
                content_type: file.content_type.clone(),
            }),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(sidecar, "sidecar not usable: {e}");
                None
            }
        }
    }

    async fn open(&self, file: BucketFile) -> Result<Representation, OpenError> {
        let ready = self.ready().await?;
        // Known (the common case): no copies for a computation that will not happen.
        let digest = match ready.digests.known(&file.object.version) {
            Some(d) => d,
            None => {
                let (bucket, hashed) = (ready.bucket.clone(), file.object.clone());
                ready
                    .digests
                    .digest_with(file.object.version.clone(), move || async move {
                        bucket.hash(&hashed).await
                    })
                    .await
                    .map_err(store_error)?
            }
        };
        Ok(representation(ready, file, digest))
    }

    fn open_remembered(&self, path: &str) -> Option<(Representation, PathBuf)> {
        let Some(Ok(ready)) = self.ready.get() else {
            return None;
        };
        if path.ends_with('/') {
            return None;
        }
        let name = resolve::request_name(path, self.names.show_hidden).ok()?;
        let file = ready.latest.get(&name)?;
        let digest = ready.digests.known(&file.object.version)?;
        Some((representation(ready, file, digest), PathBuf::from(name)))
    }

    async fn list(
        &self,
        dir: BucketDir,
        sort: Sort,
        order: Order,
        offset: usize,
        limit: usize,
    ) -> io::Result<Page> {
        let entries = dir
            .0
            .into_iter()
            .filter(|l| listdir::listable(&l.name, self.names.show_hidden))
            .map(|l| {
                let (size, mtime) = match l.object {
                    Some((size, modified)) => (Some(size), modified),
                    None => (None, std::time::SystemTime::UNIX_EPOCH),
                };
                let since = mtime
                    .duration_since(std::time::SystemTime::UNIX_EPOCH)
                    .unwrap_or_default();
                Entry {
                    is_dir: size.is_none(),
                    size,
                    mtime: (since.as_secs() as i64, since.subsec_nanos()),
                    name: l.name,
                    // Not looked up in a bucket's cache (keyed by the object's version).
                    sha256: None,
                }
            })
            .collect();
        Ok(listdir::page_of(entries, sort, order, offset, limit, false))
    }
}

/// Hash every object under the prefix not known yet (`prehash`), then again every
/// [`WATCH_EVERY`] (`watch`), one object at a time.
async fn hash_ahead(
    bucket: Arc<store::Bucket>,
    digests: Arc<DigestCache<FileDigest, ObjectVersion>>,
    show_hidden: bool,
    prehash: bool,
    watch: bool,
) {
    let mut first = true;
    loop {
        if prehash || !first {
            let before = digests.computations();
            let mut objects = bucket.walk();
            let mut found = 0u64;
            while let Some(next) = objects.next().await {
                let (name, object) = match next {
                    Ok(o) => o,
                    Err(e) => {
                        tracing::warn!("hashing ahead: listing {}: {e}", bucket.url());
                        break;
                    }
                };
                // A key no listing shows (hidden, a backslash) is not hashed ahead either.
                if !name
                    .split('/')
                    .all(|seg| listdir::listable(seg, show_hidden))
                {
                    continue;
                }
                found += 1;
                let (b, o) = (bucket.clone(), object.clone());
                let hashed = digests
                    .digest_with(
                        object.version.clone(),
                        move || async move { b.hash(&o).await },
                    )
                    .await;
                if let Err(e) = hashed {
                    tracing::debug!(name, "hashing ahead: skipped: {e}");
                }
            }
            let hashed = digests.computations() - before;
            if first || hashed > 0 {
                tracing::info!(
                    "prehash: {}: {found} objects found, {hashed} hashed, {} already known",
                    bucket.url(),
                    found.saturating_sub(hashed)
                );
            }
        }
        first = false;
        if !watch {
            return;
        }
        tokio::time::sleep(WATCH_EVERY).await;
    }
}

/// One object version as a [`Source`]: ranged reads of the store, each conditional on the
/// version, streamed. A read that continues where the last one stopped (or a little past it,
/// within the same request's range) is served from the same response of the store.
///
/// A download that reads on gets longer requests: each covers about [`WINDOW_TIME`] at the
/// pace the previous one was taken (between [`READ_WINDOW`] and [`MAX_READ_WINDOW`]), since
/// every request costs the store a lookup of the object (SeaweedFS: 6-12 ms of CPU, measured).
struct ObjectSource {
    bucket: Arc<store::Bucket>,
    latest: Arc<Latest>,
    object: Arc<Object>,
    reading: tokio::sync::Mutex<Option<Reading>>,
    /// The pipe piped reads move bytes into, made by the first one.
    pipe: std::sync::OnceLock<Option<Arc<store::raw::Pipe>>>,
}

/// The longest run of an object one request to the store reads (see [`ObjectSource`]).
const MAX_READ_WINDOW: u64 = 1 << 30;

/// The shortest run read over a socket of our own for a piped read (`store::raw`): a new
/// connection per request, where `object_store` reuses its pool (shorter runs go through it).
const RAW_MIN: u64 = 1 << 20;

/// How long a request to the store is meant to last, at the pace of the one before it.
const WINDOW_TIME: Duration = Duration::from_secs(30);

impl ObjectSource {
    /// Ask the store for `offset..stop` of the version (over a socket of our own when `piped`
    /// and the bucket allows it); one that is no longer there is forgotten as the object's
    /// latest.
    async fn start(
        &self,
        reading: &mut Option<Reading>,
        offset: u64,
        stop: u64,
        piped: bool,
    ) -> io::Result<()> {
        *reading = None;
        let feed = async {
            if piped && stop - offset >= RAW_MIN {
                if let Some(body) = self.bucket.read_raw(&self.object, offset..stop).await? {
                    return Ok(Feed::Raw(body));
                }
            }
            self.bucket
                .read(&self.object, offset..stop)
                .await
                .map(Feed::Stream)
        };
        let feed = match feed.await {
            Ok(f) => f,
            Err(e) => {
                if storage::changed(&e) {
                    let name = self.bucket.name_of(&self.object);
                    self.latest.forget(name, &self.object.version);
                }
                return Err(e);
            }
        };
        *reading = Some(Reading {
            begin: offset,
            started: std::time::Instant::now(),
            pos: offset,
            end: stop,
            held: Bytes::new(),
            feed,
        });
        Ok(())
    }

    /// Make sure `reading` serves `offset` and what follows, up to `end` or the end of its
    /// request to the store, whichever comes first (a new request if it does not: up to
    /// `until`, as long as the window allows), then skip to `offset`. A read that runs past a
    /// request's end gets what is left of it, and the next read the next request, so no
    /// request is given up with bytes unread. Gives the reading, at `offset`.
    async fn at<'r>(
        &self,
        reading: &'r mut Option<Reading>,
        offset: u64,
        end: u64,
        until: u64,
        piped: bool,
    ) -> io::Result<&'r mut Reading> {
        let reuse = matches!(&*reading, Some(r) if r.pos <= offset && offset < r.end);
        if !reuse {
            let window = window(reading.as_ref(), offset);
            let stop = until.max(end).min(offset.saturating_add(window).max(end));
            self.start(reading, offset, stop, piped).await?;
        }
        let r = reading.as_mut().expect("set above");
        let stall = self.bucket.stall_timeout();
        // Skip a gap between two ranges read through.
        while r.pos < offset {
            if r.held.is_empty() {
                r.more(stall).await?;
            }
            let n = r.held.len().min((offset - r.pos) as usize);
            let _ = r.held.split_to(n);
            r.pos += n as u64;
        }
        Ok(r)
    }

    fn pipe(&self) -> Option<Arc<store::raw::Pipe>> {
        self.pipe
            .get_or_init(|| match store::raw::Pipe::new() {
                Ok(p) => Some(Arc::new(p)),
                Err(e) => {
                    tracing::debug!("no pipe for a store read: {e}");
                    None
                }
            })
            .clone()
    }
}

/// How long the next request to the store may be for a read at `offset`: about
/// [`WINDOW_TIME`] at the pace `previous` was taken when it ended where this one starts, else
/// [`READ_WINDOW`].
fn window(previous: Option<&Reading>, offset: u64) -> u64 {
    let Some(r) = previous.filter(|r| r.end == offset && r.pos == r.end) else {
        return READ_WINDOW;
    };
    let secs = r.started.elapsed().as_secs_f64().max(1e-3);
    let pace = (r.end - r.begin) as f64 / secs;
    ((pace * WINDOW_TIME.as_secs_f64()) as u64).clamp(READ_WINDOW, MAX_READ_WINDOW)
}

/// A ranged read of the store in progress.
struct Reading {
    /// Where the request started, and when: the pace for the next one's length.
    begin: u64,
    started: std::time::Instant,
    /// The offset of the next byte of `held`, then of `feed`.
    pos: u64,
    /// Where the store's response ends.
    end: u64,
    held: Bytes,
    feed: Feed,
}

/// Where a read's body comes from.
enum Feed {
    /// `object_store`'s response body.
    Stream(BoxStream<'static, io::Result<Bytes>>),
    /// The body on a socket of our own, whose bytes can be spliced.
    Raw(store::raw::RawBody),
}

impl Reading {
    /// The next bytes from the store, at least one; a response that ends early is an error.
    async fn more(&mut self, timeout: Duration) -> io::Result<()> {
        let stream = match &mut self.feed {
            Feed::Raw(body) => {
                self.held = body.more(timeout).await?;
                return Ok(());
            }
            Feed::Stream(s) => s,
        };
        match tokio::time::timeout(timeout, stream.next()).await {
            Ok(Some(Ok(b))) => {
                self.held = b;
                Ok(())
            }
            Ok(Some(Err(e))) => Err(e),
            Ok(None) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the store's response ended early",
            )),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the store stopped sending",
            )),
        }
    }

    /// Up to `len` bytes at the current position, as the store sent them (no copy).
    async fn take(&mut self, len: usize, stall: Duration) -> io::Result<Bytes> {
        if self.held.is_empty() {
            self.more(stall).await?;
        }
        let n = self.held.len().min(len);
        self.pos += n as u64;
        Ok(self.held.split_to(n))
    }
}

impl Source for ObjectSource {
    fn open_run(self: Arc<Self>, offset: u64, until: u64, piped: bool) -> Option<OpenFuture> {
        Some(Box::pin(async move {
            let mut reading = self.reading.lock().await;
            // As `read` asks for it, so that its first read goes on with this one.
            self.at(&mut reading, offset, offset + 1, until, piped)
                .await
                .map(|_| ())
        }))
    }

    fn read(self: Arc<Self>, offset: u64, len: usize, until: u64) -> ReadFuture {
        Box::pin(async move {
            let mut reading = self.reading.lock().await;
            let r = self
                .at(&mut reading, offset, offset + len as u64, until, false)
                .await?;
            r.take(len, self.bucket.stall_timeout()).await
        })
    }

    fn pipes(&self) -> bool {
        self.bucket.reads_raw()
    }

    fn read_piped(self: Arc<Self>, offset: u64, len: usize, until: u64) -> PipedFuture {
        Box::pin(async move {
            let mut reading = self.reading.lock().await;
            let r = self
                .at(&mut reading, offset, offset + len as u64, until, true)
                .await?;
            let stall = self.bucket.stall_timeout();
            let pipe = match &r.feed {
                // Bytes already in memory go as they are.
                Feed::Raw(body) if r.held.is_empty() && !body.holds() => self.pipe(),
                _ => None,
            };
            let (Some(pipe), Feed::Raw(body)) = (pipe, &mut r.feed) else {
                return r.take(len, stall).await.map(Piped::Bytes);
            };
            let n = body.splice_into(&pipe, len, stall).await?;
            r.pos += n as u64;
            let fd = pipe.read_fd();
            Ok(Piped::Pipe {
                keep: pipe,
                fd,
                len: n,
            })
        })
    }
}
