//! The content hash behind each strong ETag: SHA-256 of the file's bytes, computed once per file
//! version off the async runtime, shared by concurrent first requests, and cached by the file's
//! identity (device, inode, size, mtime, ctime: ctime catches a rewrite that restored the mtime).

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest as _, Sha256};
use tokio::sync::OnceCell;

/// Which version of which file: if any of these changes, the content may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileId {
    pub fn of(meta: &Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

pub type Sha256Sum = [u8; 32];

/// A file version's hash and the strong ETag made from it (quoted lowercase hex), built once.
#[derive(Debug, Clone)]
pub struct Digest {
    pub sha256: Sha256Sum,
    pub etag: http::HeaderValue,
}

impl Digest {
    fn new(sha256: Sha256Sum) -> Digest {
        let etag = format!("\"{}\"", hex::encode(sha256));
        Digest {
            sha256,
            etag: http::HeaderValue::from_str(&etag).expect("hex is a valid header value"),
        }
    }
}

struct Entry {
    cell: Arc<OnceCell<Digest>>,
    last_used: u64,
}

/// A bounded cache of content hashes; the least recently used entry goes first.
pub struct DigestCache {
    entries: Mutex<HashMap<FileId, Entry>>,
    capacity: usize,
    clock: AtomicU64,
    /// How many hashes were started, for tests and diagnostics.
    computed: Arc<AtomicU64>,
}

const READ_BUF: usize = 1 << 20;

impl DigestCache {
    pub fn new(capacity: usize) -> DigestCache {
        DigestCache {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            clock: AtomicU64::new(0),
            computed: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The SHA-256 of `file`, whose metadata gave `id`. Concurrent callers for one id share one
    /// computation. Fails if the file changes while it is hashed (the caller may retry).
    pub async fn digest(&self, file: Arc<File>, id: FileId) -> io::Result<Digest> {
        let cell = self.cell(id);
        if let Some(d) = cell.get() {
            return Ok(d.clone());
        }
        let computed = self.computed.clone();
        let shared = cell.clone();
        // Detached from the request: a client that gives up does not cancel a hash that the
        // next request (or its own retry) will need, nor make the next one start over.
        let task = tokio::spawn(async move {
            shared
                .get_or_try_init(|| async move {
                    computed.fetch_add(1, Ordering::Relaxed);
                    tokio::task::spawn_blocking(move || hash_file(&file, id).map(Digest::new))
                        .await
                        .map_err(io::Error::other)?
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

    fn cell(&self, id: FileId) -> Arc<OnceCell<Digest>> {
        let now = self.clock.fetch_add(1, Ordering::Relaxed);
        let mut map = self.entries.lock().unwrap();
        if let Some(e) = map.get_mut(&id) {
            e.last_used = now;
            return e.cell.clone();
        }
        if map.len() >= self.capacity {
            if let Some(oldest) = map.iter().min_by_key(|(_, e)| e.last_used).map(|(k, _)| *k) {
                map.remove(&oldest);
            }
        }
        let cell = Arc::new(OnceCell::new());
        map.insert(
            id,
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
}

/// Hash exactly `id.size` bytes with positional reads, then check the file is still that version.
fn hash_file(file: &File, id: FileId) -> io::Result<Sha256Sum> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; READ_BUF.min(id.size as usize).max(1)];
    let mut offset = 0u64;
    while offset < id.size {
        let want = buf.len().min((id.size - offset) as usize);
        let n = file.read_at(&mut buf[..want], offset)?;
        if n == 0 {
            return Err(changed());
        }
        hasher.update(&buf[..n]);
        offset += n as u64;
    }
    if FileId::of(&file.metadata()?) != id {
        return Err(changed());
    }
    Ok(hasher.finalize().into())
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

    #[tokio::test]
    async fn hashes_and_caches() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        let cache = DigestCache::new(2);
        let (f, id) = open(&p);
        let sum = cache.digest(f.clone(), id).await.unwrap().sha256;
        // FIPS 180-2 test vector for "abc".
        assert_eq!(
            hex::encode(sum),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(cache.len(), 1);
        let again = cache.digest(f, id).await.unwrap();
        assert_eq!(again.sha256, sum);
        assert_eq!(again.etag, format!("\"{}\"", hex::encode(sum)).as_str());
        assert_eq!(cache.len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_first_requests_share_one_computation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, vec![7u8; 8 << 20]).unwrap();
        let cache = Arc::new(DigestCache::new(4));
        let (f, id) = open(&p);
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (cache, f) = (cache.clone(), f.clone());
                tokio::spawn(async move { cache.digest(f, id).await.unwrap().sha256 })
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
        let cache = DigestCache::new(4);
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

    #[tokio::test]
    async fn bounded_lru() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DigestCache::new(2);
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
        let cache = DigestCache::new(2);
        assert!(cache.digest(f, id).await.is_err());
        assert_eq!(cache.len(), 0);
    }
}
