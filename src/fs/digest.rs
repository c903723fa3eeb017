//! The content hash behind each strong ETag: SHA-256 of the bytes, computed once per version
//! off the async runtime, shared by concurrent first requests, and cached by the version's
//! identity ([`Version`]): for a file on disk its device, inode, size, mtime and ctime (ctime
//! catches a rewrite that restored the mtime); for an object, its key, size, modification time
//! and the store's own ETag.
//!
//! With a state directory the cache outlives the process: `STATE_DIR/digests-v1` holds one line
//! per file version, `dev ino size mtime_s mtime_ns ctime_s ctime_ns sha256hex` (objects have a
//! file of their own, with their own fields before the hash). It is loaded at
//! start-up (malformed lines are skipped, the last line for a version wins, at most `capacity`
//! versions are kept), rewritten compacted, and every new hash is appended to it as one line. A
//! file rewritten while the server was down has another ctime, so an old line never matches it.

// A fast seeded hash for maps on the request path (SipHash showed in the profile).
use foldhash::{HashMap, HashMapExt};
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::hash::Hash;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest as _, Sha256};
use tokio::sync::OnceCell;

use crate::ops::metrics::METRICS;

pub use crate::fs::file::FileId;

pub type Sha256Sum = [u8; 32];

/// What the cache keeps per file version: the hash itself, or what the caller makes of it once
/// (the engine: its ETag and `Repr-Digest` values), so that a hit costs no formatting.
pub trait Digest: Clone + Send + Sync + 'static {
    fn from_sha256(sum: Sha256Sum) -> Self;
    fn sha256(&self) -> &Sha256Sum;
}

impl Digest for Sha256Sum {
    fn from_sha256(sum: Sha256Sum) -> Self {
        sum
    }
    fn sha256(&self) -> &Sha256Sum {
        self
    }
}

/// What identifies one version of the bytes: the cache's key, and a state line's fields.
pub trait Version: Clone + Eq + Hash + Send + Sync + 'static {
    /// The state file's name in the state directory (its suffix is the line format's version).
    const STATE_FILE: &'static str;
    /// The length of the bytes.
    fn size(&self) -> u64;
    /// The fields of a state line before the hash, separated by single spaces, no newline.
    fn write_fields(&self, out: &mut String);
    /// The version written by `write_fields`, from all the fields of a state line but the hash;
    /// `None` unless they are exactly well formed.
    fn parse_fields(fields: &[&str]) -> Option<Self>;
}

impl Version for FileId {
    const STATE_FILE: &'static str = STATE_FILE;

    fn size(&self) -> u64 {
        self.size
    }

    fn write_fields(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = write!(
            out,
            "{} {} {} {} {} {} {}",
            self.dev, self.ino, self.size, self.mtime.0, self.mtime.1, self.ctime.0, self.ctime.1
        );
    }

    fn parse_fields(fields: &[&str]) -> Option<FileId> {
        let [dev, ino, size, mtime_s, mtime_ns, ctime_s, ctime_ns] = fields else {
            return None;
        };
        let int = |f: &str| f.parse::<i64>().ok();
        let (mtime_ns, ctime_ns) = (int(mtime_ns)?, int(ctime_ns)?);
        let ns = 0..1_000_000_000;
        if !ns.contains(&mtime_ns) || !ns.contains(&ctime_ns) {
            return None;
        }
        Some(FileId {
            dev: u64::try_from(int(dev)?).ok()?,
            ino: u64::try_from(int(ino)?).ok()?,
            size: u64::try_from(int(size)?).ok()?,
            mtime: (int(mtime_s)?, mtime_ns),
            ctime: (int(ctime_s)?, ctime_ns),
        })
    }
}

struct Entry<D> {
    cell: Arc<OnceCell<D>>,
    last_used: u64,
}

type Entries<K, D> = Arc<Mutex<HashMap<K, Entry<D>>>>;

/// A bounded cache of content hashes; the least recently used entry goes first.
pub struct DigestCache<D = Sha256Sum, K = FileId> {
    entries: Entries<K, D>,
    capacity: usize,
    clock: AtomicU64,
    /// How many hashes were started, for tests and diagnostics.
    computed: Arc<AtomicU64>,
    /// Bytes those hashes read.
    hashed_bytes: Arc<AtomicU64>,
    /// Where new hashes are appended, when the cache persists.
    state: Option<Arc<StateFile>>,
}

const READ_BUF: usize = 1 << 20;

/// The name of the state file inside the state directory; the suffix is the line format's version.
pub const STATE_FILE: &str = "digests-v1";

impl<D: Digest, K: Version> DigestCache<D, K> {
    /// An in-memory cache of at most `capacity` versions.
    pub fn new(capacity: usize) -> DigestCache<D, K> {
        DigestCache {
            entries: Arc::new(Mutex::new(HashMap::new())),
            capacity: capacity.max(1),
            clock: AtomicU64::new(0),
            computed: Arc::new(AtomicU64::new(0)),
            hashed_bytes: Arc::new(AtomicU64::new(0)),
            state: None,
        }
    }

    /// A cache that persists in `state_dir` (when given): the hashes recorded there are loaded
    /// ready to use, the file is rewritten compacted, and new hashes are appended to it. Blocking
    /// file I/O: call it at start-up. A state file that cannot be read or written is logged as a
    /// warning and the cache works from memory alone; serving never depends on it.
    pub fn with_state(capacity: usize, state_dir: Option<&Path>) -> DigestCache<D, K> {
        let mut cache = DigestCache::new(capacity);
        let Some(dir) = state_dir else {
            return cache;
        };
        let path = dir.join(K::STATE_FILE);
        let loaded = match std::fs::read(&path) {
            Ok(bytes) => parse_state::<K>(&bytes, cache.capacity),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                tracing::warn!(path = %path.display(), "cannot read the digest state, starting empty: {e}");
                Vec::new()
            }
        };
        {
            let mut map = cache.entries.lock().unwrap();
            for (id, sum) in &loaded {
                let last_used = cache.clock.fetch_add(1, Ordering::Relaxed);
                map.insert(
                    id.clone(),
                    Entry {
                        cell: Arc::new(OnceCell::new_with(Some(D::from_sha256(*sum)))),
                        last_used,
                    },
                );
            }
        }
        let appender = write_compacted(&path, &loaded).and_then(|()| open_append(&path));
        match appender {
            Ok(file) => {
                tracing::info!(
                    path = %path.display(),
                    "digest cache: {} hashes loaded",
                    loaded.len()
                );
                cache.state = Some(Arc::new(StateFile {
                    path,
                    appender: Mutex::new(Appender { file, appended: 0 }),
                }));
            }
            Err(e) => tracing::warn!(
                path = %path.display(),
                "cannot write the digest state, new hashes will not persist: {e}"
            ),
        }
        cache
    }

    /// The SHA-256 of the version `id`, made by `hash` unless it is known. Concurrent callers
    /// for one id share one computation. A failed computation is forgotten (the caller may
    /// retry).
    pub async fn digest_with<F, Fut>(&self, id: K, hash: F) -> io::Result<D>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = io::Result<Sha256Sum>> + Send + 'static,
    {
        let cell = self.cell(&id);
        if let Some(d) = cell.get() {
            METRICS.digest_hit();
            return Ok(d.clone());
        }
        METRICS.digest_miss();
        // Boxed: the computation's future would otherwise be carried by every hit's.
        Box::pin(self.compute(cell, id, hash)).await
    }

    /// Hash into `cell`, or wait for the computation under way.
    async fn compute<F, Fut>(&self, cell: Arc<OnceCell<D>>, id: K, hash: F) -> io::Result<D>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = io::Result<Sha256Sum>> + Send + 'static,
    {
        let computed = self.computed.clone();
        let hashed_bytes = self.hashed_bytes.clone();
        let persist = self
            .state
            .clone()
            .map(|state| (state, self.entries.clone(), self.capacity));
        let shared = cell.clone();
        let key = id.clone();
        // Detached from the request: a client that gives up does not cancel a hash that the
        // next request (or its own retry) will need, nor make the next one start over.
        let task = tokio::spawn(async move {
            shared
                .get_or_try_init(|| async move {
                    computed.fetch_add(1, Ordering::Relaxed);
                    let started = std::time::Instant::now();
                    let sum = hash().await?;
                    hashed_bytes.fetch_add(key.size(), Ordering::Relaxed);
                    METRICS.hashed(key.size(), started.elapsed());
                    if let Some((state, entries, capacity)) = persist {
                        tokio::task::spawn_blocking(move || {
                            state.record(&key, &sum, &entries, capacity)
                        })
                        .await
                        .map_err(io::Error::other)?;
                    }
                    Ok(D::from_sha256(sum))
                })
                .await
                .cloned()
        });
        let result = task.await.map_err(io::Error::other).and_then(|r| r);
        if result.is_err() {
            let mut map = self.entries.lock().unwrap();
            if map.get(&id).is_some_and(|e| Arc::ptr_eq(&e.cell, &cell)) {
                map.remove(&id);
            }
        }
        result
    }

    /// Record that the version `id` hashes to `sum`, computed elsewhere (an upload hashed its
    /// bytes as they arrived): the first request for it finds it known, and it persists like a
    /// computed one. Not a computation (`computations` does not count it). Blocking (the state
    /// file is appended to): call it off the async runtime.
    pub fn insert(&self, id: K, sum: Sha256Sum) {
        let cell = self.cell(&id);
        if cell.set(D::from_sha256(sum)).is_err() {
            // Known already (the watcher got there first): the same bytes, the same hash.
            return;
        }
        if let Some(state) = &self.state {
            state.record(&id, &sum, &self.entries, self.capacity);
        }
    }

    /// The hash of the version `id`, if it is known now (no waiting, no computing).
    pub fn known(&self, id: &K) -> Option<D> {
        let d = self.cell(id).get().cloned();
        if d.is_some() {
            METRICS.digest_hit();
        }
        d
    }

    /// The hash of the version `id` if it is known, as [`known`](Self::known) but adding no
    /// entry for it, counting no hit and leaving its place in the LRU order: for a listing,
    /// which looks at every file of a page and uses none of them.
    pub fn peek(&self, id: &K) -> Option<D> {
        self.entries.lock().unwrap().get(id)?.cell.get().cloned()
    }

    fn cell(&self, id: &K) -> Arc<OnceCell<D>> {
        let now = self.clock.fetch_add(1, Ordering::Relaxed);
        let mut map = self.entries.lock().unwrap();
        if let Some(e) = map.get_mut(id) {
            e.last_used = now;
            return e.cell.clone();
        }
        if map.len() >= self.capacity {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        let cell = Arc::new(OnceCell::new());
        map.insert(
            id.clone(),
            Entry {
                cell: cell.clone(),
                last_used: now,
            },
        );
        cell
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Hash computations started so far.
    pub fn computations(&self) -> u64 {
        self.computed.load(Ordering::Relaxed)
    }

    /// Bytes read by hash computations that completed.
    pub fn hashed_bytes(&self) -> u64 {
        self.hashed_bytes.load(Ordering::Relaxed)
    }
}

impl<D: Digest> DigestCache<D, FileId> {
    /// The SHA-256 of `file`, whose metadata gave `id`, hashed on the blocking pool. Fails if
    /// the file changes while it is hashed.
    pub async fn digest(&self, file: Arc<File>, id: FileId) -> io::Result<D> {
        self.digest_with(id, move || async move {
            tokio::task::spawn_blocking(move || hash_file(&file, id))
                .await
                .map_err(io::Error::other)?
        })
        .await
    }
}

/// The append side of the state file.
struct StateFile {
    path: PathBuf,
    appender: Mutex<Appender>,
}

struct Appender {
    /// Opened with O_APPEND: each line goes out in one write, after whatever is there.
    file: File,
    /// Lines appended since the file was last compacted.
    appended: usize,
}

impl StateFile {
    /// Append one new hash (blocking; called on the blocking pool right after the hash). Once
    /// as many lines were appended as the cache holds, rewrite the file from the cache, so it
    /// stays within about twice the cache's size however long the server runs.
    fn record<D: Digest, K: Version>(
        &self,
        id: &K,
        sum: &Sha256Sum,
        entries: &Entries<K, D>,
        capacity: usize,
    ) {
        let line = format_line(id, sum);
        let mut app = self.appender.lock().unwrap();
        match (&app.file).write(line.as_bytes()) {
            Ok(n) if n == line.len() => {}
            Ok(n) => tracing::warn!(
                path = %self.path.display(),
                "digest state: short append ({n} of {} bytes)",
                line.len()
            ),
            Err(e) => {
                tracing::warn!(path = %self.path.display(), "digest state: cannot append: {e}")
            }
        }
        app.appended += 1;
        if app.appended < capacity {
            return;
        }
        app.appended = 0;
        // The cache's ready entries, least recently used first, then this one (whose cell is
        // not set yet: we are inside its initialization).
        let mut ready: Vec<(u64, K, Sha256Sum)> = entries
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| *k != id)
            .filter_map(|(k, e)| e.cell.get().map(|d| (e.last_used, k.clone(), *d.sha256())))
            .collect();
        ready.sort_unstable_by_key(|r| r.0);
        let mut lines: Vec<(K, Sha256Sum)> = ready.into_iter().map(|r| (r.1, r.2)).collect();
        lines.push((id.clone(), *sum));
        match write_compacted(&self.path, &lines).and_then(|()| open_append(&self.path)) {
            Ok(file) => app.file = file,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), "digest state: cannot compact: {e}")
            }
        }
    }
}

/// One state line, newline included.
fn format_line<K: Version>(id: &K, sum: &Sha256Sum) -> String {
    let mut line = String::with_capacity(160);
    id.write_fields(&mut line);
    line.push(' ');
    line.push_str(&hex::encode(sum));
    line.push('\n');
    line
}

/// One state line (without its newline), or `None` when it is not exactly a well-formed line.
fn parse_line<K: Version>(line: &str) -> Option<(K, Sha256Sum)> {
    let fields: Vec<&str> = line.split(' ').collect();
    let (hex_sum, fields) = fields.split_last()?;
    if hex_sum.len() != 64 {
        return None;
    }
    let mut sum = [0u8; 32];
    hex::decode_to_slice(hex_sum, &mut sum).ok()?;
    Some((K::parse_fields(fields)?, sum))
}

/// The versions recorded in a state file, oldest first: malformed lines skipped, the last line
/// for a version wins, and only the `capacity` most recent versions kept.
fn parse_state<K: Version>(bytes: &[u8], capacity: usize) -> Vec<(K, Sha256Sum)> {
    let mut latest: HashMap<K, (usize, Sha256Sum)> = HashMap::new();
    for (n, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if let Some((id, sum)) = std::str::from_utf8(line).ok().and_then(parse_line) {
            latest.insert(id, (n, sum));
        }
    }
    let mut kept: Vec<(usize, K, Sha256Sum)> = latest
        .into_iter()
        .map(|(id, (n, sum))| (n, id, sum))
        .collect();
    kept.sort_unstable_by_key(|k| k.0);
    let skip = kept.len().saturating_sub(capacity);
    kept.into_iter().skip(skip).map(|k| (k.1, k.2)).collect()
}

/// Replace the state file with these lines: a temporary file in the same directory, fsync,
/// rename over, fsync the directory. A crash leaves the old file or the new one, never a mix.
fn write_compacted<K: Version>(path: &Path, lines: &[(K, Sha256Sum)]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut text = String::with_capacity(lines.len() * 120);
    for (id, sum) in lines {
        text.push_str(&format_line(id, sum));
    }
    let mut f = File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().append(true).create(true).open(path)
}

/// Hash exactly `id.size` bytes with positional reads, then check the file is still that version.
/// Small files are read and hashed in turn; large ones are read by a second thread one buffer
/// ahead, so the copy out of the page cache overlaps the hashing (SHA-256 is the bottleneck, and
/// it is faster when it never waits for a read).
fn hash_file(file: &File, id: FileId) -> io::Result<Sha256Sum> {
    let mut hasher = Sha256::new();
    if id.size <= 2 * READ_BUF as u64 {
        let mut buf = ReadBuf::new(id.size as usize)?;
        read_exact_at(file, &mut buf, 0)?;
        hasher.update(&*buf);
    } else {
        // Read once, front to back, as fast as the disk goes: a never-read file's first request
        // waits for this. The hint doubles the kernel's read-ahead window for this file.
        advise_sequential(file);
        std::thread::scope(|scope| -> io::Result<()> {
            // A buffer and how much of it holds the file's next bytes.
            type Filled = (ReadBuf, usize);
            let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<io::Result<Filled>>(1);
            let (empty_tx, empty_rx) = std::sync::mpsc::channel::<ReadBuf>();
            for _ in 0..3 {
                let _ = empty_tx.send(ReadBuf::new(READ_BUF)?);
            }
            scope.spawn(move || {
                let mut offset = 0u64;
                while offset < id.size {
                    let Ok(mut buf) = empty_rx.recv() else {
                        return; // the hasher stopped
                    };
                    let n = READ_BUF.min((id.size - offset) as usize);
                    let read = read_exact_at(file, &mut buf[..n], offset).map(|()| (buf, n));
                    let failed = read.is_err();
                    offset += READ_BUF as u64;
                    if full_tx.send(read).is_err() || failed {
                        return;
                    }
                }
            });
            let mut hashed = 0u64;
            while hashed < id.size {
                let (buf, n) = full_rx.recv().map_err(|_| changed())??;
                hasher.update(&buf[..n]);
                hashed += n as u64;
                let _ = empty_tx.send(buf);
            }
            Ok(())
        })?;
    }
    if FileId::of(&file.metadata()?) != id {
        return Err(changed());
    }
    Ok(hasher.finalize().into())
}

/// A read buffer for hashing. From this size up it is mapped from the system rather than taken
/// from the allocator: hashing a large file takes 3 MiB once per version, which the allocator
/// kept after they were freed (mimalloc held 3.3 MiB of them in an idle server: bench/README.md,
/// S7c), while a mapping goes back to the system when dropped.
const MAP_FROM: usize = 64 * 1024;

enum ReadBuf {
    Heap(Vec<u8>),
    Mapped(memmap2::MmapMut),
}

impl ReadBuf {
    /// `len` zeroed bytes.
    fn new(len: usize) -> io::Result<ReadBuf> {
        Ok(if len < MAP_FROM {
            ReadBuf::Heap(vec![0; len])
        } else {
            ReadBuf::Mapped(memmap2::MmapMut::map_anon(len)?)
        })
    }
}

impl std::ops::Deref for ReadBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            ReadBuf::Heap(v) => v,
            ReadBuf::Mapped(m) => m,
        }
    }
}

impl std::ops::DerefMut for ReadBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        match self {
            ReadBuf::Heap(v) => v,
            ReadBuf::Mapped(m) => m,
        }
    }
}

/// `posix_fadvise(POSIX_FADV_SEQUENTIAL)`: only a hint, so a failure changes nothing.
fn advise_sequential(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: an advice call on a descriptor we hold open; it touches no memory of ours.
    let _ = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL) };
}

/// Fill `buf` from `offset`; a file that ends first has changed.
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    crate::fs::file::read_exact_at(file, buf, offset).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => changed(),
        _ => e,
    })
}

fn changed() -> io::Error {
    io::Error::new(
        io::ErrorKind::Interrupted,
        "file changed while its hash was computed",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(p: &std::path::Path) -> (Arc<File>, FileId) {
        let f = File::open(p).unwrap();
        let id = FileId::of(&f.metadata().unwrap());
        (Arc::new(f), id)
    }

    /// The handle cache compares the two: if they ever disagreed, every cached file would
    /// silently take the slow path.
    #[test]
    fn identity_from_std_and_from_rustix_agree() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        let st = rustix::fs::stat(&p).unwrap();
        assert_eq!(
            FileId::of(&std::fs::metadata(&p).unwrap()),
            FileId::of_stat(&st)
        );
        std::fs::write(&p, b"abcd").unwrap();
        assert_ne!(
            FileId::of(&std::fs::metadata(&p).unwrap()),
            FileId::of_stat(&st)
        );
    }

    #[tokio::test]
    async fn hashes_and_caches() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        let cache = DigestCache::<Sha256Sum>::new(2);
        let (f, id) = open(&p);
        let sum = cache.digest(f.clone(), id).await.unwrap();
        // FIPS 180-2 test vector for "abc".
        assert_eq!(
            hex::encode(sum),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(cache.len(), 1);
        let again = cache.digest(f, id).await.unwrap();
        assert_eq!(again, sum);
        assert_eq!(cache.len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_first_requests_share_one_computation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, vec![7u8; 8 << 20]).unwrap();
        let cache = Arc::new(DigestCache::<Sha256Sum>::new(4));
        let (f, id) = open(&p);
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (cache, f) = (cache.clone(), f.clone());
                tokio::spawn(async move { cache.digest(f, id).await.unwrap() })
            })
            .collect();
        let mut sums = Vec::new();
        for t in tasks {
            sums.push(t.await.unwrap());
        }
        assert!(sums.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(cache.computations(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancelled_first_request_does_not_waste_the_hash() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, vec![1u8; 64 << 20]).unwrap();
        let cache = DigestCache::<Sha256Sum>::new(4);
        let (f, id) = open(&p);
        // The client gives up long before 64 MiB are hashed.
        let gave_up = tokio::time::timeout(
            std::time::Duration::from_millis(1),
            cache.digest(f.clone(), id),
        )
        .await;
        assert!(
            gave_up.is_err(),
            "hash finished within 1 ms; the test proves nothing"
        );
        cache.digest(f, id).await.unwrap();
        assert_eq!(cache.computations(), 1);
    }

    #[test]
    fn large_files_hash_like_one_pass() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0usize, 1, READ_BUF, 2 * READ_BUF + 1, 5 * READ_BUF + 123] {
            let p = dir.path().join(format!("f{len}"));
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            std::fs::write(&p, &data).unwrap();
            let (f, id) = open(&p);
            let want: Sha256Sum = Sha256::digest(&data).into();
            assert_eq!(hash_file(&f, id).unwrap(), want, "{len}");
        }
    }

    #[test]
    fn a_large_file_that_shrinks_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, vec![3u8; 4 * READ_BUF]).unwrap();
        let (f, id) = open(&p);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(READ_BUF as u64 + 5)
            .unwrap();
        let e = hash_file(&f, id).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Interrupted);
    }

    #[tokio::test]
    async fn bounded_lru() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DigestCache::<Sha256Sum>::new(2);
        let mut ids = Vec::new();
        for i in 0..3 {
            let p = dir.path().join(format!("f{i}"));
            std::fs::write(&p, format!("{i}")).unwrap();
            let (f, id) = open(&p);
            cache.digest(f, id).await.unwrap();
            ids.push(id);
        }
        assert_eq!(cache.len(), 2);
        assert!(!cache.entries.lock().unwrap().contains_key(&ids[0]));
    }

    #[tokio::test]
    async fn detects_a_file_that_shrank() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abcdef").unwrap();
        let (f, id) = open(&p);
        std::fs::write(&p, b"ab").unwrap();
        let cache = DigestCache::<Sha256Sum>::new(2);
        assert!(cache.digest(f, id).await.is_err());
        assert_eq!(cache.len(), 0);
    }

    fn some_id(n: u64) -> FileId {
        FileId {
            dev: 2049,
            ino: 1000 + n,
            size: 1 << 40,
            mtime: (-5, 999_999_999),
            ctime: (1_700_000_000 + n as i64, 0),
        }
    }

    #[test]
    fn state_line_round_trip() {
        let id = some_id(7);
        let sum: Sha256Sum = std::array::from_fn(|i| (i * 37) as u8);
        let line = format_line(&id, &sum);
        assert!(line.ends_with('\n'));
        assert_eq!(line.matches('\n').count(), 1);
        assert_eq!(
            line,
            format!(
                "2049 1007 1099511627776 -5 999999999 1700000007 0 {}\n",
                hex::encode(sum)
            )
        );
        assert_eq!(parse_line(line.trim_end()), Some((id, sum)));
    }

    #[test]
    fn malformed_state_lines_are_rejected() {
        let good = "1 2 3 4 5 6 7 ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert!(parse_line::<FileId>(good).is_some());
        for bad in [
            "",
            "garbage",
            // Seven numbers, no hash; nine fields; hash too short, too long, not hex.
            "1 2 3 4 5 6 7",
            &format!("{good} 8"),
            "1 2 3 4 5 6 7 ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a",
            "1 2 3 4 5 6 7 ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad0",
            "1 2 3 4 5 6 7 zz7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            // Negative or non-numeric identity, nanoseconds out of range, double spaces.
            "-1 2 3 4 5 6 7 ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            "1 x 3 4 5 6 7 ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            "1 2 3 4 1000000000 6 7 ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            "1 2 3 4 5 6 -1 ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            "1  2 3 4 5 6 7 ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            "1 2 3 4 5 6 7 ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\r",
        ] {
            assert_eq!(parse_line::<FileId>(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn state_file_last_line_wins_and_capacity_keeps_the_newest() {
        let sum = |b: u8| [b; 32];
        let mut bytes = Vec::new();
        bytes.extend_from_slice(format_line(&some_id(1), &sum(1)).as_bytes());
        bytes.extend_from_slice(b"\xff\xfe not utf-8\n\n  \ngarbage 1 2\n");
        bytes.extend_from_slice(format_line(&some_id(2), &sum(2)).as_bytes());
        bytes.extend_from_slice(format_line(&some_id(1), &sum(9)).as_bytes());
        bytes.extend_from_slice(format_line(&some_id(3), &sum(3)).as_bytes());
        // A torn last line (a crash mid-append) is just another malformed line.
        bytes.extend_from_slice(&format_line(&some_id(4), &sum(4)).as_bytes()[..40]);
        assert_eq!(
            parse_state::<FileId>(&bytes, 10),
            vec![
                (some_id(2), sum(2)),
                (some_id(1), sum(9)),
                (some_id(3), sum(3))
            ]
        );
        assert_eq!(
            parse_state::<FileId>(&bytes, 2),
            vec![(some_id(1), sum(9)), (some_id(3), sum(3))]
        );
    }

    /// A scratch directory with an empty state directory `state` in it.
    fn with_state_dir() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        (dir, state)
    }

    #[tokio::test]
    async fn persists_across_instances() {
        let (dir, state) = with_state_dir();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        let (f, id) = open(&p);

        let cache = DigestCache::<Sha256Sum>::with_state(4, Some(&state));
        let first = cache.digest(f.clone(), id).await.unwrap();
        assert_eq!(cache.computations(), 1);
        drop(cache);
        let text = std::fs::read_to_string(state.join(STATE_FILE)).unwrap();
        assert_eq!(text, format_line(&id, &first));

        let cache = DigestCache::<Sha256Sum>::with_state(4, Some(&state));
        assert_eq!(cache.len(), 1);
        let again = cache.digest(f, id).await.unwrap();
        assert_eq!(cache.computations(), 0);
        assert_eq!(again, first);
    }

    #[tokio::test]
    async fn the_state_file_is_compacted_as_it_grows() {
        let (dir, state) = with_state_dir();
        let cache = DigestCache::<Sha256Sum>::with_state(3, Some(&state));
        let mut ids = Vec::new();
        for i in 0..8 {
            let p = dir.path().join(format!("f{i}"));
            std::fs::write(&p, format!("{i}")).unwrap();
            let (f, id) = open(&p);
            cache.digest(f, id).await.unwrap();
            ids.push(id);
            let lines = std::fs::read_to_string(state.join(STATE_FILE))
                .unwrap()
                .lines()
                .count();
            assert!(lines <= 2 * 3, "{lines} lines after {} hashes", i + 1);
        }
        // The newest three versions survive a restart, and nothing else.
        let cache = DigestCache::<Sha256Sum>::with_state(3, Some(&state));
        let kept: Vec<bool> = ids
            .iter()
            .map(|id| cache.entries.lock().unwrap().contains_key(id))
            .collect();
        assert_eq!(kept, [false, false, false, false, false, true, true, true]);
    }

    #[tokio::test]
    async fn an_inserted_hash_is_known_and_persists_without_a_computation() {
        let (dir, state) = with_state_dir();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        let (f, id) = open(&p);
        let sum: Sha256Sum = Sha256::digest(b"abc").into();
        let cache = DigestCache::<Sha256Sum>::with_state(4, Some(&state));
        cache.insert(id, sum);
        assert_eq!(cache.known(&id), Some(sum));
        assert_eq!(cache.digest(f.clone(), id).await.unwrap(), sum);
        assert_eq!(cache.computations(), 0);
        drop(cache);
        let cache = DigestCache::<Sha256Sum>::with_state(4, Some(&state));
        assert_eq!(cache.known(&id), Some(sum));
    }

    #[test]
    fn peek_adds_no_entry_and_sees_only_known_hashes() {
        let cache = DigestCache::<Sha256Sum>::new(4);
        let sum: Sha256Sum = Sha256::digest(b"abc").into();
        cache.insert(some_id(1), sum);
        assert_eq!(cache.peek(&some_id(1)), Some(sum));
        // Unknown versions: no hash, and no (empty) entry that would push a known one out.
        for n in 2..10 {
            assert_eq!(cache.peek(&some_id(n)), None);
        }
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.known(&some_id(1)), Some(sum));
    }

    #[test]
    fn an_unwritable_state_dir_only_disables_persistence() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DigestCache::<Sha256Sum>::with_state(3, Some(&dir.path().join("missing")));
        assert!(cache.state.is_none());
        assert!(cache.is_empty());
    }
}
