//! Uploads on disk, no HTTP types: the store behind tus and plain `PUT` (`app::upload` speaks
//! the protocols).
//!
//! An unfinished upload is two files in the work directory ([`WORK_DIR`], hidden, inside the
//! upload directory, so publishing is a rename on one file system): `ID.part`, its bytes so
//! far, and `ID.info`, a small JSON record (the length when known, the client's metadata, the
//! SHA-256 of the token that created it, never the token, its creation time and the name to
//! publish it as). The part file's length is the upload's offset: bytes are only ever appended
//! in order, each append ends with `fdatasync` before it is acknowledged, and a failed or
//! refused append is truncated back, so after a crash (even SIGKILL mid-write) the part holds
//! exactly the bytes received, in order, and the client continues from its length.
//!
//! One writer per upload: each has an in-memory lock, taken without waiting; a second append
//! while one runs is refused with the offset ([`StoreError::Busy`]). Appends run in a task of
//! their own, so a client that goes away mid-body cannot leave a write behind that races the
//! next one. The SHA-256 of the whole file is computed as the bytes arrive (and made again from
//! the part after a restart, since a hash state cannot be saved), so a published file's ETag
//! is known before anyone asks. A chunk with a checksum is written beside the part and
//! appended only once it matched.
//!
//! Completed uploads are renamed to their name under the upload directory (`place`); their
//! record stays (without a part) until `max_age`, so a client whose last response was lost
//! still learns that its upload completed. Unfinished uploads that received nothing for
//! `max_age` are removed with their parts, by [`Store::sweep`] and when asked for.

mod place;
mod pump;

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io::{self, Read as _, Write as _};
use std::os::fd::{AsFd, FromRawFd, IntoRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::Stream;
use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::fs::digest::Sha256Sum;
use crate::ops::metrics::METRICS;
use place::PlaceError;
pub use place::{is_reserved, target_name, WORK_DIR};
use pump::{ChunkHash, End, Hashes};

/// Who created an upload: the SHA-256 of their bearer token (all zeros without one).
pub type Owner = [u8; 32];

/// An upload's id: 128 random bits, written as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Id([u8; 16]);

impl Id {
    /// A new id from the operating system's randomness.
    pub fn random() -> io::Result<Id> {
        let mut b = [0u8; 16];
        getrandom::fill(&mut b).map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Id(b))
    }

    /// The id written as `s`, if it is exactly one (32 lowercase hex digits).
    pub fn parse(s: &str) -> Option<Id> {
        if s.len() != 32 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let mut b = [0u8; 16];
        hex::decode_to_slice(s, &mut b).ok()?;
        Some(Id(b))
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// The store's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The largest upload, in bytes.
    pub max_size: Option<u64>,
    /// An unfinished upload that received nothing for this long is removed; a completed one's
    /// record is kept this long.
    pub max_age: Duration,
    /// Replace existing files.
    pub overwrite: bool,
    /// Names starting with a dot may be published (they are served).
    pub show_hidden: bool,
}

/// An upload as a client sees it.
#[derive(Debug, Clone)]
pub struct Upload {
    pub id: Id,
    /// Its length, when known (tus's deferred length: not yet).
    pub length: Option<u64>,
    /// The bytes stored so far.
    pub offset: u64,
    /// The client's metadata, as it sent it (tus: `Upload-Metadata`).
    pub metadata: Option<String>,
    /// The name it is published as, under the upload directory.
    pub target: String,
    /// When an unfinished upload will be removed unless more bytes arrive; for a completed
    /// one, when its record goes.
    pub expires: SystemTime,
    /// It was published.
    pub completed: bool,
    owner: Owner,
}

impl Upload {
    /// Whether `owner` created it.
    pub fn owned_by(&self, owner: &Owner) -> bool {
        self.owner == *owner
    }
}

/// A new upload.
pub struct New {
    pub length: Option<u64>,
    pub metadata: Option<String>,
    /// The name to publish it as (checked here by [`target_name`]).
    pub target: String,
    pub owner: Owner,
    /// The SHA-256 the client says the whole upload has (`Repr-Digest`): checked before it is
    /// published.
    pub repr_sha256: Option<Sha256Sum>,
}

/// A checksum algorithm of tus's checksum extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha256,
    /// The one tus requires ("The Server MUST support at least the SHA1 checksum algorithm").
    Sha1,
    Md5,
}

impl Algorithm {
    /// Their names, as tus lists them (`Tus-Checksum-Algorithm`).
    pub const NAMES: &'static str = "sha256,sha1,md5";

    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "sha256" => Some(Algorithm::Sha256),
            "sha1" => Some(Algorithm::Sha1),
            "md5" => Some(Algorithm::Md5),
            _ => None,
        }
    }

    fn hasher(self) -> ChunkHash {
        match self {
            Algorithm::Sha256 => ChunkHash::Sha256(Sha256::new()),
            Algorithm::Sha1 => ChunkHash::Sha1(sha1::Sha1::new()),
            Algorithm::Md5 => ChunkHash::Md5(<md5::Md5 as md5::Digest>::new()),
        }
    }
}

/// The checksum a client sent for the bytes of one append.
#[derive(Debug, Clone)]
pub struct Checksum {
    pub algorithm: Algorithm,
    pub expected: Vec<u8>,
}

/// One append: where the client says it starts, what it says of the length, and the bytes.
#[derive(Debug, Clone, Default)]
pub struct Append {
    /// The offset the client believes the upload is at.
    pub offset: u64,
    /// The upload's length, if the client declares it now (a deferred length).
    pub length: Option<u64>,
    /// How many bytes the body says it holds (its Content-Length), when it says.
    pub body_len: Option<u64>,
    pub checksum: Option<Checksum>,
    /// The body is the rest of the upload (the draft's `Upload-Complete: ?1`): when it ends
    /// properly, the upload's length is the offset reached, and it is published.
    pub complete: bool,
}

/// What an append did.
#[derive(Debug)]
pub struct Appended {
    /// The upload after it.
    pub upload: Upload,
    /// Bytes stored by it.
    pub received: u64,
    /// It continued an upload after an interruption (a cut connection, a restart).
    pub resumed: bool,
    /// The upload completed with it, and was published.
    pub published: Option<Published>,
}

/// A file that was just published.
#[derive(Debug)]
pub struct Published {
    /// Its path.
    pub path: PathBuf,
    /// Its metadata right after the rename (what identifies this version of it).
    pub meta: Metadata,
    /// The SHA-256 of its bytes, computed as they arrived.
    pub sha256: Sha256Sum,
    /// It replaced a file of the same name.
    pub replaced: bool,
}

/// A `PUT`'s condition on what is at its name (RFC 9110 §13.1.1, §13.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exists {
    /// No condition.
    Any,
    /// `If-None-Match: *`: only if nothing is there.
    Not,
    /// `If-Match` (`*`, or tags already checked): only if a file is there.
    Must,
}

/// Why an upload request failed.
#[derive(Debug)]
pub enum StoreError {
    /// No such upload (or not this owner's).
    NotFound,
    /// It expired and was removed.
    Gone,
    /// Another request is appending to it; the offset stored before it.
    Busy { offset: u64 },
    /// The client's offset is not the upload's.
    Offset { offset: u64 },
    /// The length declared is inconsistent (below the offset, or changing).
    Length(&'static str),
    /// Larger than `max_size`, or than the upload's length.
    TooLarge,
    /// Not enough disk space (checked up front, or hit while writing); the offset stored.
    NoSpace { offset: u64 },
    /// Something is already at the name (and `overwrite` is off, or it is a directory).
    Exists,
    /// A file or a symlink stands where a directory of the name should be.
    InTheWay,
    /// The name is not one a download could ask for.
    BadName(&'static str),
    /// The bytes did not match their checksum; nothing was kept.
    Checksum { offset: u64 },
    /// The body ended before its end (the client went away); the offset stored.
    Incomplete { offset: u64 },
    /// A `PUT`'s condition on the existing file failed.
    Precondition,
    /// The bytes are not the ones the client's `Repr-Digest` names: nothing was published,
    /// and the upload was removed.
    Digest,
    /// Anything else, for the log.
    Io(io::Error),
}

impl From<io::Error> for StoreError {
    fn from(e: io::Error) -> StoreError {
        StoreError::Io(e)
    }
}

impl From<Errno> for StoreError {
    fn from(e: Errno) -> StoreError {
        StoreError::Io(e.into())
    }
}

impl From<PlaceError> for StoreError {
    fn from(e: PlaceError) -> StoreError {
        match e {
            PlaceError::Exists => StoreError::Exists,
            PlaceError::InTheWay => StoreError::InTheWay,
            PlaceError::Io(e) => StoreError::Io(e),
        }
    }
}

/// The record of an upload (`ID.info`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Info {
    length: Option<u64>,
    #[serde(default)]
    metadata: Option<String>,
    /// Hex SHA-256 of the creating token.
    owner: String,
    /// Unix seconds.
    created: u64,
    target: String,
    /// Unix seconds when it was published.
    #[serde(default)]
    completed: Option<u64>,
    /// Hex SHA-256 the bytes must have to be published (the client's `Repr-Digest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    repr_sha256: Option<String>,
}

/// The uploads in one directory. Cheap to clone.
#[derive(Clone)]
pub struct Store(Arc<Inner>);

struct Inner {
    /// The upload directory (canonical).
    dir_path: PathBuf,
    /// It, open (lookups and renames start from it, never from a path).
    dir: File,
    /// The work directory inside it, open.
    work: File,
    settings: Settings,
    slots: Mutex<HashMap<Id, Arc<Slot>>>,
}

/// The in-memory side of one upload: its writer lock and the offset stored.
struct Slot {
    lock: Arc<tokio::sync::Mutex<State>>,
    /// The offset last made durable, for answers given while the lock is held; `UNKNOWN` until
    /// the first writer looked.
    committed: AtomicU64,
}

const UNKNOWN: u64 = u64::MAX;

/// What the writer of an upload keeps between appends.
#[derive(Default)]
struct State {
    /// The SHA-256 of the part's bytes, and how many bytes that is.
    hash: Option<(Sha256, u64)>,
    /// The last append ended early: the next one resumes.
    interrupted: bool,
    /// This process has looked at the upload since it started.
    seen: bool,
}

type Guard = tokio::sync::OwnedMutexGuard<State>;

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn at_secs(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn mtime_secs(st: &rustix::fs::Stat) -> u64 {
    u64::try_from(st.st_mtime).unwrap_or(0)
}

fn part_name(id: Id) -> String {
    format!("{id}.part")
}
fn info_name(id: Id) -> String {
    format!("{id}.info")
}
fn chunk_name(id: Id) -> String {
    format!("{id}.chunk")
}

fn owned(fd: OwnedFd) -> File {
    // SAFETY: a descriptor we own, handed over.
    unsafe { File::from_raw_fd(fd.into_raw_fd()) }
}

/// Run blocking file work on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Io(io::Error::other(e)))?
}

impl Store {
    /// The store of the upload directory `dir` (canonical): its work directory created (not
    /// through a symlink), and what a crash left of appends in progress (chunks waiting for
    /// their checksum, temporary files) removed. Blocking: call it at start-up.
    pub fn open(dir: &Path, settings: Settings) -> io::Result<Store> {
        let dir_file = owned(rustix::fs::open(
            dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?);
        match rustix::fs::mkdirat(&dir_file, WORK_DIR, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        let work = owned(
            rustix::fs::openat(
                &dir_file,
                WORK_DIR,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| io::Error::other(format!("{}/{WORK_DIR}: {e}", dir.display())))?,
        );
        let store = Store(Arc::new(Inner {
            dir_path: dir.to_path_buf(),
            dir: dir_file,
            work,
            settings,
            slots: Mutex::default(),
        }));
        for name in store.0.work_names()? {
            if name.ends_with(".chunk") || name.ends_with(".tmp") {
                let _ = rustix::fs::unlinkat(&store.0.work, name.as_str(), AtFlags::empty());
            }
        }
        Ok(store)
    }

    /// The upload directory.
    pub fn dir(&self) -> &Path {
        &self.0.dir_path
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.0.settings
    }

    /// Create an upload: its name checked and free (unless it may be replaced), its length
    /// within `max_size` and the free space.
    pub async fn create(&self, new: New) -> Result<Upload, StoreError> {
        let inner = self.0.clone();
        blocking(move || inner.create(new)).await
    }

    /// The upload `id` as it stands (an expired one is removed: [`StoreError::Gone`]).
    pub async fn get(&self, id: Id) -> Result<Upload, StoreError> {
        let inner = self.0.clone();
        blocking(move || inner.get(id)).await
    }

    /// Append `body` to the upload `id` of `owner`, as `append` describes; publish it when
    /// this completes it. Runs in a task of its own that owns the body: if the caller goes
    /// away, the append still ends properly (the body then fails, and what arrived is kept).
    pub async fn append<S>(
        &self,
        id: Id,
        owner: Owner,
        append: Append,
        body: S,
    ) -> Result<Appended, StoreError>
    where
        S: Stream<Item = io::Result<Bytes>> + Unpin + Send + 'static,
    {
        let inner = self.0.clone();
        tokio::spawn(async move { Inner::append(inner, id, owner, append, body).await })
            .await
            .map_err(|e| StoreError::Io(io::Error::other(e)))?
    }

    /// Remove the upload `id` of `owner`: an unfinished one with its part; a completed one's
    /// record only (its file stays published).
    pub async fn delete(&self, id: Id, owner: Owner) -> Result<(), StoreError> {
        let inner = self.0.clone();
        blocking(move || inner.delete(id, owner)).await
    }

    /// Write `body` as the file `target` (a plain `PUT`): into a temporary file beside it, then
    /// renamed over it at once; nothing is published unless every byte arrived (`body_len`,
    /// when given, is how many), and, with `repr_sha256`, only if the bytes have that
    /// SHA-256. `exists` is the request's condition on what is there now.
    pub async fn put<S>(
        &self,
        target: String,
        body_len: Option<u64>,
        repr_sha256: Option<Sha256Sum>,
        exists: Exists,
        body: S,
    ) -> Result<Published, StoreError>
    where
        S: Stream<Item = io::Result<Bytes>> + Unpin + Send + 'static,
    {
        let inner = self.0.clone();
        let put = Inner::put(inner, target, body_len, repr_sha256, exists, body);
        tokio::spawn(put)
            .await
            .map_err(|e| StoreError::Io(io::Error::other(e)))?
    }

    /// Remove the uploads that expired (and what a crash left behind); how many uploads went.
    /// Blocking.
    pub fn sweep(&self) -> usize {
        self.0.sweep()
    }

    /// Whether something is at `target` (a checked name) under the upload directory.
    pub async fn exists(&self, target: String) -> Result<bool, StoreError> {
        let inner = self.0.clone();
        blocking(move || Ok(place::exists(&inner.dir, &target)?.is_some())).await
    }

    /// Drop the last `by` bytes (all of them, if there are fewer) of the unfinished upload
    /// `id`, as a crash that lost writes not yet on disk would (the lab's `lose` fault): the
    /// part is truncated and synced, the hash of the stored bytes is made again from it at
    /// the next append, and that append counts as a resume. The offset it leaves; `Busy`
    /// while a request appends, `Offset` (at its length) for a completed upload.
    pub async fn rewind(&self, id: Id, by: u64) -> Result<u64, StoreError> {
        let inner = self.0.clone();
        let Some((slot, mut state)) = inner.lock(id) else {
            return Err(StoreError::Busy {
                offset: inner.busy_offset(id),
            });
        };
        let me = inner.clone();
        let offset = match blocking(move || me.rewind(id, by)).await {
            Ok(o) => o,
            Err(e) => {
                // No lock is kept for what does not exist, or is complete.
                if matches!(e, StoreError::NotFound | StoreError::Offset { .. }) {
                    inner.forget(id, &slot);
                }
                return Err(e);
            }
        };
        state.hash = None;
        state.seen = true;
        state.interrupted = offset > 0;
        slot.committed.store(offset, Ordering::Release);
        Ok(offset)
    }
}

impl Inner {
    fn work_names(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        let mut dir = rustix::fs::Dir::read_from(&self.work)?;
        while let Some(entry) = dir.read() {
            let entry = entry?;
            if let Ok(name) = entry.file_name().to_str() {
                if name != "." && name != ".." {
                    names.push(name.to_owned());
                }
            }
        }
        Ok(names)
    }

    fn slot(&self, id: Id) -> Arc<Slot> {
        self.slots
            .lock()
            .unwrap()
            .entry(id)
            .or_insert_with(|| {
                Arc::new(Slot {
                    lock: Arc::default(),
                    committed: AtomicU64::new(UNKNOWN),
                })
            })
            .clone()
    }

    /// The writer lock of `id`, without waiting: `None` when another request holds it.
    fn lock(&self, id: Id) -> Option<(Arc<Slot>, Guard)> {
        let slot = self.slot(id);
        let guard = slot.lock.clone().try_lock_owned().ok()?;
        // The slot may have been dropped from the map (the upload completed or went) between
        // looking it up and locking it: then it is not this upload's lock any more.
        let current = self
            .slots
            .lock()
            .unwrap()
            .get(&id)
            .is_some_and(|s| Arc::ptr_eq(s, &slot));
        current.then_some((slot, guard))
    }

    /// Drop `id`'s slot (it completed or went), if it is still `slot`.
    fn forget(&self, id: Id, slot: &Arc<Slot>) {
        let mut slots = self.slots.lock().unwrap();
        if slots.get(&id).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            slots.remove(&id);
        }
    }

    /// The offset to report for `id` while its lock is held by someone else.
    fn busy_offset(&self, id: Id) -> u64 {
        let known = self
            .slots
            .lock()
            .unwrap()
            .get(&id)
            .map_or(UNKNOWN, |s| s.committed.load(Ordering::Acquire));
        if known != UNKNOWN {
            return known;
        }
        rustix::fs::statat(
            &self.work,
            part_name(id).as_str(),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_or(0, |st| st.st_size as u64)
    }

    fn read_info(&self, id: Id) -> Result<Option<Info>, StoreError> {
        let fd = match rustix::fs::openat(
            &self.work,
            info_name(id).as_str(),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut text = Vec::new();
        owned(fd).read_to_end(&mut text)?;
        match serde_json::from_slice(&text) {
            Ok(info) => Ok(Some(info)),
            Err(e) => {
                tracing::warn!(upload = %id, "unreadable upload record, taken as absent: {e}");
                Ok(None)
            }
        }
    }

    /// Write `id`'s record atomically (a temporary file, synced, renamed over it, the
    /// directory synced).
    fn write_info(&self, id: Id, info: &Info) -> Result<(), StoreError> {
        let tmp = format!("{id}.info.tmp");
        let fd = rustix::fs::openat(
            &self.work,
            tmp.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        let mut f = owned(fd);
        f.write_all(&serde_json::to_vec(info).map_err(io::Error::other)?)?;
        rustix::fs::fdatasync(&f)?;
        rustix::fs::renameat(&self.work, tmp.as_str(), &self.work, info_name(id).as_str())?;
        rustix::fs::fsync(&self.work)?;
        Ok(())
    }

    fn remove(&self, id: Id) {
        for name in [part_name(id), chunk_name(id), info_name(id)] {
            let _ = rustix::fs::unlinkat(&self.work, name.as_str(), AtFlags::empty());
        }
    }

    /// Bytes free for us in the upload directory's file system.
    fn available(&self) -> u64 {
        rustix::fs::fstatvfs(&self.work).map_or(u64::MAX, |s| s.f_bavail.saturating_mul(s.f_frsize))
    }

    fn expires(&self, info: &Info, last_write: u64) -> u64 {
        let age = self.settings.max_age.as_secs();
        match info.completed {
            Some(t) => t.saturating_add(age),
            None => info.created.max(last_write).saturating_add(age),
        }
    }

    fn upload(&self, id: Id, info: Info, offset: u64, expires: u64) -> Upload {
        let mut owner = [0u8; 32];
        let _ = hex::decode_to_slice(&info.owner, &mut owner);
        Upload {
            id,
            length: info.length,
            offset,
            completed: info.completed.is_some(),
            metadata: info.metadata,
            target: info.target,
            expires: at_secs(expires),
            owner,
        }
    }

    /// The name `target` may be written: checked, and free unless it may be replaced.
    fn check_target(&self, target: &str) -> Result<String, StoreError> {
        let target = target_name(target, self.settings.show_hidden).map_err(StoreError::BadName)?;
        match place::exists(&self.dir, &target)? {
            Some(true) => Err(StoreError::Exists),
            Some(false) if !self.settings.overwrite => Err(StoreError::Exists),
            _ => Ok(target),
        }
    }

    fn check_size(&self, len: u64, offset: u64) -> Result<(), StoreError> {
        if self.settings.max_size.is_some_and(|max| len > max) {
            return Err(StoreError::TooLarge);
        }
        if len.saturating_sub(offset) > self.available() {
            return Err(StoreError::NoSpace { offset });
        }
        Ok(())
    }

    fn create(&self, new: New) -> Result<Upload, StoreError> {
        let target = self.check_target(&new.target)?;
        if let Some(len) = new.length {
            self.check_size(len, 0)?;
        }
        let id = Id::random()?;
        let part = rustix::fs::openat(
            &self.work,
            part_name(id).as_str(),
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )?;
        drop(part);
        let info = Info {
            length: new.length,
            metadata: new.metadata,
            owner: hex::encode(new.owner),
            created: now_secs(),
            target,
            completed: None,
            repr_sha256: new.repr_sha256.map(hex::encode),
        };
        if let Err(e) = self.write_info(id, &info) {
            self.remove(id);
            return Err(e);
        }
        // Known to this process from the start: its first append does not count as a resume.
        let slot = self.slot(id);
        if let Ok(mut state) = slot.lock.try_lock() {
            state.seen = true;
        }
        METRICS.upload_created();
        let expires = self.expires(&info, info.created);
        Ok(self.upload(id, info, 0, expires))
    }

    /// The part file of the upload `id`, open for reading and writing.
    fn open_part(&self, id: Id) -> Result<File, StoreError> {
        match rustix::fs::openat(
            &self.work,
            part_name(id).as_str(),
            OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => Ok(owned(fd)),
            Err(Errno::NOENT) => Err(StoreError::NotFound),
            Err(e) => Err(e.into()),
        }
    }

    fn get(&self, id: Id) -> Result<Upload, StoreError> {
        let Some(info) = self.read_info(id)? else {
            return Err(StoreError::NotFound);
        };
        if info.completed.is_some() {
            let expires = self.expires(&info, 0);
            if expires <= now_secs() {
                if let Some((slot, _guard)) = self.lock(id) {
                    self.remove(id);
                    self.forget(id, &slot);
                    return Err(StoreError::NotFound);
                }
            }
            let len = info.length.unwrap_or(0);
            return Ok(self.upload(id, info, len, expires));
        }
        let (offset, last_write) = match self.lock(id) {
            Some((slot, _guard)) => {
                let st = match rustix::fs::statat(
                    &self.work,
                    part_name(id).as_str(),
                    AtFlags::SYMLINK_NOFOLLOW,
                ) {
                    Ok(st) => st,
                    Err(Errno::NOENT) => return Err(StoreError::NotFound),
                    Err(e) => return Err(e.into()),
                };
                let expires = self.expires(&info, mtime_secs(&st));
                if expires <= now_secs() {
                    self.remove(id);
                    self.forget(id, &slot);
                    METRICS.upload_expired();
                    return Err(StoreError::Gone);
                }
                (st.st_size as u64, mtime_secs(&st))
            }
            // Being written to: what is durable so far, and it is active now.
            None => (self.busy_offset(id), now_secs()),
        };
        let expires = self.expires(&info, last_write);
        Ok(self.upload(id, info, offset, expires))
    }

    fn delete(&self, id: Id, owner: Owner) -> Result<(), StoreError> {
        let Some((slot, _guard)) = self.lock(id) else {
            return Err(StoreError::Busy {
                offset: self.busy_offset(id),
            });
        };
        match self.read_info(id)? {
            Some(info) if info.owner == hex::encode(owner) => {}
            Some(_) => return Err(StoreError::NotFound),
            None => {
                self.forget(id, &slot);
                return Err(StoreError::NotFound);
            }
        }
        self.remove(id);
        self.forget(id, &slot);
        Ok(())
    }

    /// Under the lock: the record, the part open, and the checks of an append before any byte
    /// is read.
    fn prepare(
        &self,
        id: Id,
        owner: &Owner,
        req: &Append,
        slot: &Slot,
    ) -> Result<Prepared, StoreError> {
        let Some(mut info) = self.read_info(id)? else {
            return Err(StoreError::NotFound);
        };
        if info.owner != hex::encode(owner) {
            return Err(StoreError::NotFound);
        }
        if info.completed.is_some() {
            let len = info.length.unwrap_or(0);
            // A repeat of the last append, with no bytes: nothing to do (tus clients resume
            // from the offset they are given).
            if req.offset == len && req.body_len == Some(0) {
                return Ok(Prepared::Completed(info));
            }
            return Err(StoreError::Offset { offset: len });
        }
        let part = self.open_part(id)?;
        let st = rustix::fs::fstat(&part)?;
        let offset = st.st_size as u64;
        slot.committed.store(offset, Ordering::Release);
        if self.expires(&info, mtime_secs(&st)) <= now_secs() {
            self.remove(id);
            METRICS.upload_expired();
            return Err(StoreError::Gone);
        }
        if req.offset != offset {
            return Err(StoreError::Offset { offset });
        }
        let mut declared = false;
        match (info.length, req.length) {
            (Some(a), Some(b)) if a != b => {
                return Err(StoreError::Length(
                    "Upload-Length differs from the upload's length",
                ))
            }
            (None, Some(len)) => {
                if len < offset {
                    return Err(StoreError::Length(
                        "Upload-Length is below the bytes already stored",
                    ));
                }
                if self.settings.max_size.is_some_and(|max| len > max) {
                    return Err(StoreError::TooLarge);
                }
                // Recorded once the append succeeds (tus checksum: a refused chunk must not
                // update the upload).
                info.length = Some(len);
                declared = true;
            }
            _ => {}
        }
        // The most this append may take: up to the length, and within `max_size`.
        let mut limit = u64::MAX;
        if let Some(len) = info.length {
            limit = len - offset.min(len);
        }
        if let Some(max) = self.settings.max_size {
            limit = limit.min(max.saturating_sub(offset));
        }
        if req.body_len.is_some_and(|n| n > limit) {
            return Err(StoreError::TooLarge);
        }
        let needed = req
            .body_len
            .unwrap_or(if info.length.is_some() { limit } else { 0 });
        if needed > self.available() {
            return Err(StoreError::NoSpace { offset });
        }
        Ok(Prepared::Open {
            info,
            declared,
            part: Arc::new(part),
            offset,
            limit,
        })
    }

    async fn append<S>(
        self: Arc<Self>,
        id: Id,
        owner: Owner,
        req: Append,
        mut body: S,
    ) -> Result<Appended, StoreError>
    where
        S: Stream<Item = io::Result<Bytes>> + Unpin + Send + 'static,
    {
        let Some((slot, mut state)) = self.lock(id) else {
            return Err(StoreError::Busy {
                offset: self.busy_offset(id),
            });
        };
        let prepared = {
            let (me, slot, req) = (self.clone(), slot.clone(), req.clone());
            blocking(move || me.prepare(id, &owner, &req, &slot)).await
        };
        let prepared = match prepared {
            Ok(p) => p,
            Err(e) => {
                // No lock is kept for what does not exist (ids made up by a client).
                if matches!(e, StoreError::NotFound | StoreError::Gone) {
                    self.forget(id, &slot);
                }
                return Err(e);
            }
        };
        let (info, declared, part, offset, limit) = match prepared {
            Prepared::Completed(info) => {
                let len = info.length.unwrap_or(0);
                let expires = self.expires(&info, 0);
                return Ok(Appended {
                    upload: self.upload(id, info, len, expires),
                    received: 0,
                    resumed: false,
                    published: None,
                });
            }
            Prepared::Open {
                info,
                declared,
                part,
                offset,
                limit,
            } => (info, declared, part, offset, limit),
        };
        // A process that has not seen this upload before (it restarted): its bytes so far came
        // before an interruption.
        if !state.seen {
            state.seen = true;
            state.interrupted = offset > 0;
        }
        let resumed = std::mem::take(&mut state.interrupted) && offset > 0;
        if resumed {
            METRICS.upload_resumed();
        }
        let base = match state.hash.take() {
            Some((h, at)) if at == offset => h,
            _ => {
                let p = part.clone();
                blocking(move || Ok(pump::rehash(&p, offset)?)).await?
            }
        };
        // Until this append commits, the hash of the stored bytes is `base`.
        state.hash = Some((base.clone(), offset));
        let result = match req.checksum.clone() {
            None => {
                let hashes = Hashes {
                    whole: base,
                    chunk: None,
                };
                let pumped = pump::pump(&mut body, part.clone(), offset, limit, hashes).await;
                let me = self.clone();
                let p = part.clone();
                blocking(move || me.settle_direct(&p, offset, pumped)).await
            }
            Some(sum) => {
                let me = self.clone();
                let chunk = blocking(move || {
                    Ok(owned(rustix::fs::openat(
                        &me.work,
                        chunk_name(id).as_str(),
                        OFlags::RDWR
                            | OFlags::CREATE
                            | OFlags::TRUNC
                            | OFlags::NOFOLLOW
                            | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o600),
                    )?))
                })
                .await?;
                let chunk = Arc::new(chunk);
                let hashes = Hashes {
                    whole: base,
                    chunk: Some(sum.algorithm.hasher()),
                };
                let pumped = pump::pump(&mut body, chunk.clone(), 0, limit, hashes).await;
                let me = self.clone();
                let p = part.clone();
                blocking(move || {
                    let r = me.settle_checked(&p, &chunk, offset, &sum, pumped);
                    let _ =
                        rustix::fs::unlinkat(&me.work, chunk_name(id).as_str(), AtFlags::empty());
                    r
                })
                .await
            }
        };
        let (hash, end_offset, failure) = match result {
            Ok(Settled {
                hash,
                offset: end,
                failure,
            }) => (hash, end, failure),
            Err(e) => {
                // The stored bytes and the hash may disagree now: made again next time.
                state.hash = None;
                return Err(e);
            }
        };
        if let Some(h) = hash {
            state.hash = Some((h, end_offset));
        }
        slot.committed.store(end_offset, Ordering::Release);
        if let Some(failure) = failure {
            if matches!(failure, StoreError::Incomplete { .. }) {
                state.interrupted = true;
            }
            return Err(failure);
        }
        let received = end_offset - offset;
        let expires = self.expires(&info, now_secs());
        let (mut info, mut declared) = (info, declared);
        if req.complete {
            match info.length {
                None => {
                    info.length = Some(end_offset);
                    declared = true;
                }
                Some(len) if len != end_offset => {
                    return Err(StoreError::Length(
                        "the upload was said to be complete, short of its length",
                    ))
                }
                Some(_) => {}
            }
        }
        if declared && info.length != Some(end_offset) {
            let (me, i) = (self.clone(), info.clone());
            blocking(move || me.write_info(id, &i)).await?;
        }
        if info.length != Some(end_offset) {
            return Ok(Appended {
                upload: self.upload(id, info, end_offset, expires),
                received,
                resumed,
                published: None,
            });
        }
        // Complete: publish it.
        let sum: Sha256Sum = state
            .hash
            .as_ref()
            .map(|(h, _)| h.clone().finalize().into())
            .expect("the hash of the stored bytes is known");
        if info
            .repr_sha256
            .as_ref()
            .is_some_and(|want| *want != hex::encode(sum))
        {
            // Draft, "Representation Digests": the upload failed; nothing is published.
            let me = self.clone();
            blocking(move || {
                me.remove(id);
                Ok(())
            })
            .await?;
            self.forget(id, &slot);
            return Err(StoreError::Digest);
        }
        let (me, p) = (self.clone(), part.clone());
        let published = blocking(move || me.publish(id, info, &p, sum, offset)).await;
        match published {
            Ok((info, published)) => {
                self.forget(id, &slot);
                let expires = self.expires(&info, 0);
                Ok(Appended {
                    upload: self.upload(id, info, end_offset, expires),
                    received,
                    resumed,
                    published: Some(published),
                })
            }
            Err(e) => {
                // Back to before this append (see `publish`).
                state.hash = Some((base_after_truncate(&part, offset).await?, offset));
                slot.committed.store(offset, Ordering::Release);
                Err(e)
            }
        }
    }

    /// After bytes were written straight to the part: keep them (synced) unless the body was
    /// over the limit; the new hash and offset, and the failure to report.
    fn settle_direct(
        &self,
        part: &File,
        offset: u64,
        pumped: pump::Pumped,
    ) -> Result<Settled, StoreError> {
        let end = offset + pumped.written;
        match pumped.end {
            End::OverLimit => {
                truncate_sync(part, offset)?;
                Ok(Settled {
                    hash: None,
                    offset,
                    failure: Some(StoreError::TooLarge),
                })
            }
            ended => {
                // Exactly the bytes written (a failed write may leave a torn tail).
                rustix::fs::ftruncate(part, end)?;
                if let Err(e) = rustix::fs::fdatasync(part) {
                    let e = io::Error::from(e);
                    truncate_sync(part, offset)?;
                    return Err(no_space_or(e, offset));
                }
                let failure = match ended {
                    End::Done => None,
                    End::Body(e) => {
                        tracing::debug!("upload body ended early at {end}: {e}");
                        Some(StoreError::Incomplete { offset: end })
                    }
                    End::Write(e) => Some(no_space_or(e, end)),
                    End::OverLimit => unreachable!(),
                };
                Ok(Settled {
                    hash: Some(pumped.hashes.whole),
                    offset: end,
                    failure,
                })
            }
        }
    }

    /// After bytes with a checksum were written to the chunk file beside the part: appended to
    /// the part only if the body was whole and matched; otherwise nothing changes.
    fn settle_checked(
        &self,
        part: &File,
        chunk: &File,
        offset: u64,
        sum: &Checksum,
        pumped: pump::Pumped,
    ) -> Result<Settled, StoreError> {
        let unchanged = |failure| {
            Ok(Settled {
                hash: None,
                offset,
                failure: Some(failure),
            })
        };
        match pumped.end {
            End::Done => {}
            End::OverLimit => return unchanged(StoreError::TooLarge),
            End::Body(_) => return unchanged(StoreError::Incomplete { offset }),
            End::Write(e) => return unchanged(no_space_or(e, offset)),
        }
        let got = pumped
            .hashes
            .chunk
            .expect("a checksum was asked for")
            .finish();
        if got != sum.expected {
            return unchanged(StoreError::Checksum { offset });
        }
        let n = pumped.written;
        if let Err(e) = copy_range(chunk, part, offset, n)
            .and_then(|()| rustix::fs::fdatasync(part).map_err(io::Error::from))
        {
            truncate_sync(part, offset)?;
            return unchanged(no_space_or(e, offset));
        }
        Ok(Settled {
            hash: Some(pumped.hashes.whole),
            offset: offset + n,
            failure: None,
        })
    }

    /// Publish the complete part as its target. If it cannot be (the name was taken since the
    /// upload was created, or a file stands in the way), the last append is undone (the part
    /// truncated back to `undo_to`): the upload must not look complete when it was not
    /// published, or a client that asks for its offset would take it as done.
    fn publish(
        &self,
        id: Id,
        mut info: Info,
        part: &File,
        sha256: Sha256Sum,
        undo_to: u64,
    ) -> Result<(Info, Published), StoreError> {
        let replaced = match place::publish(
            &self.work,
            &part_name(id),
            &self.dir,
            &info.target,
            self.settings.overwrite,
        ) {
            Ok(r) => r,
            Err(e) => {
                truncate_sync(part, undo_to)?;
                return Err(e.into());
            }
        };
        // After the rename, which changes the ctime: the identity downloads will see.
        let meta = part.metadata()?;
        info.completed = Some(now_secs());
        if let Err(e) = self.write_info(id, &info) {
            tracing::warn!(upload = %id, "published, but its record could not be updated: {e:?}");
        }
        METRICS.upload_completed();
        let path = self.dir_path.join(&info.target);
        Ok((
            info,
            Published {
                path,
                meta,
                sha256,
                replaced,
            },
        ))
    }

    async fn put<S>(
        self: Arc<Self>,
        target: String,
        body_len: Option<u64>,
        repr_sha256: Option<Sha256Sum>,
        cond: Exists,
        mut body: S,
    ) -> Result<Published, StoreError>
    where
        S: Stream<Item = io::Result<Bytes>> + Unpin + Send + 'static,
    {
        let me = self.clone();
        let (target, tmp, file) = blocking(move || {
            let target =
                target_name(&target, me.settings.show_hidden).map_err(StoreError::BadName)?;
            let there = place::exists(&me.dir, &target)?;
            match (there, cond) {
                (Some(_), Exists::Not) | (None, Exists::Must) => {
                    return Err(StoreError::Precondition)
                }
                (Some(true), _) => return Err(StoreError::Exists),
                (Some(false), _) if !me.settings.overwrite => return Err(StoreError::Exists),
                _ => {}
            }
            if let Some(len) = body_len {
                me.check_size(len, 0)?;
            }
            let tmp = format!("put-{}.tmp", Id::random()?);
            let fd = rustix::fs::openat(
                &me.work,
                tmp.as_str(),
                OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            )?;
            Ok((target, tmp, Arc::new(owned(fd))))
        })
        .await?;
        METRICS.upload_created();
        let limit = self.settings.max_size.unwrap_or(u64::MAX);
        let hashes = Hashes {
            whole: Sha256::new(),
            chunk: None,
        };
        let pumped = pump::pump(&mut body, file.clone(), 0, limit, hashes).await;
        let me = self.clone();
        blocking(move || {
            let discard = |e: StoreError| {
                let _ = rustix::fs::unlinkat(&me.work, tmp.as_str(), AtFlags::empty());
                Err(e)
            };
            match pumped.end {
                End::Done if body_len.is_none_or(|n| n == pumped.written) => {}
                End::Done | End::Body(_) => return discard(StoreError::Incomplete { offset: 0 }),
                End::OverLimit => return discard(StoreError::TooLarge),
                End::Write(e) => return discard(no_space_or(e, 0)),
            }
            if let Err(e) = rustix::fs::fdatasync(&*file) {
                return discard(no_space_or(e.into(), 0));
            }
            let sha256: Sha256Sum = pumped.hashes.whole.finalize().into();
            if repr_sha256.is_some_and(|want| want != sha256) {
                return discard(StoreError::Digest);
            }
            let replace = me.settings.overwrite && cond != Exists::Not;
            let replaced = match place::publish(&me.work, &tmp, &me.dir, &target, replace) {
                Ok(r) => r,
                Err(PlaceError::Exists) if cond == Exists::Not => {
                    return discard(StoreError::Precondition)
                }
                Err(e) => return discard(e.into()),
            };
            let meta = file.metadata()?;
            METRICS.upload_completed();
            Ok(Published {
                path: me.dir_path.join(&target),
                meta,
                sha256,
                replaced,
            })
        })
        .await
    }

    fn sweep(&self) -> usize {
        let names = match self.work_names() {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(
                    "upload sweep: cannot list {}/{WORK_DIR}: {e}",
                    self.dir_path.display()
                );
                return 0;
            }
        };
        let now = now_secs();
        let age = self.settings.max_age.as_secs();
        let mut removed = 0;
        for name in &names {
            if let Some(id) = name.strip_suffix(".info").and_then(Id::parse) {
                let Some((slot, _guard)) = self.lock(id) else {
                    continue;
                };
                let info = match self.read_info(id) {
                    Ok(Some(info)) => info,
                    _ => continue,
                };
                let last_write = rustix::fs::statat(
                    &self.work,
                    part_name(id).as_str(),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_or(0, |st| mtime_secs(&st));
                if self.expires(&info, last_write) <= now {
                    self.remove(id);
                    if info.completed.is_none() {
                        METRICS.upload_expired();
                        removed += 1;
                    }
                }
                self.forget(id, &slot);
            } else if let Some(id) = name.strip_suffix(".part").and_then(Id::parse) {
                // A part without a record (a crash while one was created).
                if !names.contains(&info_name(id)) {
                    self.remove_if_older(name, now, age);
                }
            } else if name.starts_with("put-") && name.ends_with(".tmp") {
                // A PUT that a crash interrupted (one still running is younger than max_age).
                self.remove_if_older(name, now, age);
            }
        }
        removed
    }

    /// Under the lock: truncate `id`'s part by `by` bytes (see [`Store::rewind`]).
    fn rewind(&self, id: Id, by: u64) -> Result<u64, StoreError> {
        let Some(info) = self.read_info(id)? else {
            return Err(StoreError::NotFound);
        };
        if info.completed.is_some() {
            return Err(StoreError::Offset {
                offset: info.length.unwrap_or(0),
            });
        }
        let part = self.open_part(id)?;
        let offset = (rustix::fs::fstat(&part)?.st_size as u64).saturating_sub(by);
        truncate_sync(&part, offset)?;
        Ok(offset)
    }

    fn remove_if_older(&self, name: &str, now: u64, age: u64) {
        if let Ok(st) = rustix::fs::statat(&self.work, name, AtFlags::SYMLINK_NOFOLLOW) {
            if mtime_secs(&st).saturating_add(age) <= now {
                let _ = rustix::fs::unlinkat(&self.work, name, AtFlags::empty());
            }
        }
    }
}

enum Prepared {
    /// The upload was complete already.
    Completed(Info),
    Open {
        info: Info,
        /// The length was declared by this append (to record once it succeeds).
        declared: bool,
        part: Arc<File>,
        offset: u64,
        limit: u64,
    },
}

/// How an append's bytes were settled: the hash of the stored bytes when it changed, the
/// offset stored, and the failure to report (the offset stays consistent either way).
struct Settled {
    hash: Option<Sha256>,
    offset: u64,
    failure: Option<StoreError>,
}

fn truncate_sync(file: &File, len: u64) -> Result<(), StoreError> {
    rustix::fs::ftruncate(file, len)?;
    rustix::fs::fdatasync(file)?;
    Ok(())
}

/// The hash of the first `len` bytes of `part`, made again (after an undone append).
async fn base_after_truncate(part: &Arc<File>, len: u64) -> Result<Sha256, StoreError> {
    let p = part.clone();
    blocking(move || Ok(pump::rehash(&p, len)?)).await
}

/// ENOSPC and EDQUOT are [`StoreError::NoSpace`] at `offset`; anything else is an I/O error.
fn no_space_or(e: io::Error, offset: u64) -> StoreError {
    match e.raw_os_error() {
        Some(libc::ENOSPC | libc::EDQUOT) => StoreError::NoSpace { offset },
        _ => StoreError::Io(e),
    }
}

/// Copy `len` bytes of `from` (from its start) to `to` at `at`, in the kernel where it can.
fn copy_range(from: &File, to: &File, at: u64, len: u64) -> io::Result<()> {
    let (mut off_in, mut off_out) = (0u64, at);
    while off_in < len {
        let want = usize::try_from(len - off_in)
            .unwrap_or(usize::MAX)
            .min(1 << 30);
        match rustix::fs::copy_file_range(
            from.as_fd(),
            Some(&mut off_in),
            to.as_fd(),
            Some(&mut off_out),
            want,
        ) {
            Ok(0) => return Err(crate::fs::file::ended_early()),
            Ok(_) => {}
            Err(Errno::INTR) => {}
            Err(Errno::XDEV | Errno::NOSYS | Errno::INVAL | Errno::OPNOTSUPP) => {
                // Through user space, then.
                let mut buf = vec![0u8; 1 << 20];
                while off_in < len {
                    let n = ((len - off_in) as usize).min(buf.len());
                    crate::fs::file::read_exact_at(from, &mut buf[..n], off_in)?;
                    std::os::unix::fs::FileExt::write_all_at(to, &buf[..n], off_out)?;
                    off_in += n as u64;
                    off_out += n as u64;
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path, settings: Settings) -> Store {
        Store::open(dir, settings).unwrap()
    }

    fn settings() -> Settings {
        Settings {
            max_size: None,
            max_age: Duration::from_secs(3600),
            overwrite: false,
            show_hidden: false,
        }
    }

    fn body(chunks: &[&[u8]]) -> impl Stream<Item = io::Result<Bytes>> + Unpin + Send + 'static {
        let v: Vec<io::Result<Bytes>> = chunks
            .iter()
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        futures_util::stream::iter(v)
    }

    fn cut(chunks: &[&[u8]]) -> impl Stream<Item = io::Result<Bytes>> + Unpin + Send + 'static {
        let mut v: Vec<io::Result<Bytes>> = chunks
            .iter()
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        v.push(Err(io::Error::other("cut")));
        futures_util::stream::iter(v)
    }

    const OWNER: Owner = [7; 32];

    fn new(target: &str, length: Option<u64>) -> New {
        New {
            length,
            metadata: None,
            target: target.into(),
            repr_sha256: None,
            owner: OWNER,
        }
    }

    #[test]
    fn ids_are_128_random_bits_in_hex() {
        let a = Id::random().unwrap();
        let b = Id::random().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.to_string().len(), 32);
        assert_eq!(Id::parse(&a.to_string()), Some(a));
        for bad in ["", "abc", &"A".repeat(32), &"g".repeat(32), &"0".repeat(33)] {
            assert_eq!(Id::parse(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn append_resume_and_publish_with_the_hash() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path(), settings());
        let up = s.create(new("d/f.bin", Some(10))).await.unwrap();
        // A cut body keeps what arrived.
        let a = Append {
            offset: 0,
            ..Default::default()
        };
        match s.append(up.id, OWNER, a, cut(&[b"0123"])).await {
            Err(StoreError::Incomplete { offset: 4 }) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(s.get(up.id).await.unwrap().offset, 4);
        // Wrong offset: refused, nothing changes.
        let a = Append {
            offset: 3,
            ..Default::default()
        };
        assert!(matches!(
            s.append(up.id, OWNER, a, body(&[b"x"])).await,
            Err(StoreError::Offset { offset: 4 })
        ));
        // Another owner does not see it.
        let a = Append {
            offset: 4,
            ..Default::default()
        };
        assert!(matches!(
            s.append(up.id, [1; 32], a.clone(), body(&[b"x"])).await,
            Err(StoreError::NotFound)
        ));
        // A new store (a restart): the hash is made again from the part; the append resumes.
        let s = store(tmp.path(), settings());
        let done = s
            .append(up.id, OWNER, a, body(&[b"45", b"6789"]))
            .await
            .unwrap();
        assert!(done.resumed);
        let p = done.published.unwrap();
        assert_eq!(std::fs::read(&p.path).unwrap(), b"0123456789");
        assert_eq!(p.sha256, <[u8; 32]>::from(Sha256::digest(b"0123456789")));
        assert_eq!(p.meta.len(), 10);
        let got = s.get(up.id).await.unwrap();
        assert!(got.completed);
        assert_eq!(got.offset, 10);
        assert!(!tmp.path().join(WORK_DIR).join(part_name(up.id)).exists());
    }

    #[tokio::test]
    async fn complete_appends_fix_the_length_and_digests_are_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path(), settings());
        // Length unknown: an append that says it completes the upload publishes what it stored.
        let up = s.create(new("open-ended.bin", None)).await.unwrap();
        let first = Append::default();
        let a = s
            .append(up.id, OWNER, first, body(&[b"abc"]))
            .await
            .unwrap();
        assert!(a.published.is_none());
        assert_eq!(a.upload.length, None);
        let last = Append {
            offset: 3,
            complete: true,
            ..Default::default()
        };
        let a = s.append(up.id, OWNER, last, body(&[b"de"])).await.unwrap();
        let p = a.published.unwrap();
        assert_eq!(std::fs::read(&p.path).unwrap(), b"abcde");
        assert_eq!(a.upload.length, Some(5));
        // Length known, and the "complete" body ends short of it: refused, the bytes kept.
        let up = s.create(new("short.bin", Some(10))).await.unwrap();
        let last = Append {
            complete: true,
            ..Default::default()
        };
        assert!(matches!(
            s.append(up.id, OWNER, last, body(&[b"abc"])).await,
            Err(StoreError::Length(_))
        ));
        assert_eq!(s.get(up.id).await.unwrap().offset, 3);
        assert!(!tmp.path().join("short.bin").exists());
        // A Repr-Digest that the bytes do not have: nothing published, the upload gone.
        let mut n = new("digest.bin", Some(3));
        n.repr_sha256 = Some(Sha256::digest(b"xyz").into());
        let up = s.create(n).await.unwrap();
        assert!(matches!(
            s.append(up.id, OWNER, Append::default(), body(&[b"abc"]))
                .await,
            Err(StoreError::Digest)
        ));
        assert!(!tmp.path().join("digest.bin").exists());
        assert!(matches!(s.get(up.id).await, Err(StoreError::NotFound)));
        // ... and one they have: published.
        let mut n = new("digest.bin", Some(3));
        n.repr_sha256 = Some(Sha256::digest(b"abc").into());
        let up = s.create(n).await.unwrap();
        let a = s
            .append(up.id, OWNER, Append::default(), body(&[b"abc"]))
            .await;
        assert_eq!(
            std::fs::read(a.unwrap().published.unwrap().path).unwrap(),
            b"abc"
        );
        // A PUT's digest likewise.
        let wrong = Some(Sha256::digest(b"nope").into());
        assert!(matches!(
            s.put("p.bin".into(), None, wrong, Exists::Any, body(&[b"abc"]))
                .await,
            Err(StoreError::Digest)
        ));
        assert!(!tmp.path().join("p.bin").exists());
        let right = Some(Sha256::digest(b"abc").into());
        let p = s
            .put("p.bin".into(), None, right, Exists::Any, body(&[b"abc"]))
            .await;
        assert_eq!(std::fs::read(p.unwrap().path).unwrap(), b"abc");
    }

    #[tokio::test]
    async fn a_checksum_mismatch_keeps_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path(), settings());
        let up = s.create(new("f", None)).await.unwrap();
        let wrong = Checksum {
            algorithm: Algorithm::Sha256,
            expected: Sha256::digest(b"other").to_vec(),
        };
        let a = Append {
            offset: 0,
            checksum: Some(wrong),
            ..Default::default()
        };
        assert!(matches!(
            s.append(up.id, OWNER, a, body(&[b"hello"])).await,
            Err(StoreError::Checksum { offset: 0 })
        ));
        assert_eq!(s.get(up.id).await.unwrap().offset, 0);
        let right = Checksum {
            algorithm: Algorithm::Md5,
            expected: <md5::Md5 as md5::Digest>::digest(b"hello").to_vec(),
        };
        let a = Append {
            offset: 0,
            length: Some(5),
            checksum: Some(right),
            ..Default::default()
        };
        let done = s
            .append(up.id, OWNER, a, body(&[b"hel", b"lo"]))
            .await
            .unwrap();
        assert_eq!(
            std::fs::read(done.published.unwrap().path).unwrap(),
            b"hello"
        );
        assert_eq!(
            std::fs::read_dir(tmp.path().join(WORK_DIR))
                .unwrap()
                .count(),
            1,
            "only the record"
        );
    }

    #[tokio::test]
    async fn limits_and_names() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("taken"), "x").unwrap();
        let s = store(
            tmp.path(),
            Settings {
                max_size: Some(8),
                ..settings()
            },
        );
        assert!(matches!(
            s.create(new("a", Some(9))).await,
            Err(StoreError::TooLarge)
        ));
        assert!(matches!(
            s.create(new("taken", Some(1))).await,
            Err(StoreError::Exists)
        ));
        assert!(matches!(
            s.create(new("../x", Some(1))).await,
            Err(StoreError::BadName(_))
        ));
        let up = s.create(new("a", None)).await.unwrap();
        // Over max_size with a deferred length: this append is undone.
        let a = Append {
            offset: 0,
            ..Default::default()
        };
        s.append(up.id, OWNER, a, body(&[b"1234"])).await.unwrap();
        let a = Append {
            offset: 4,
            ..Default::default()
        };
        assert!(matches!(
            s.append(up.id, OWNER, a, body(&[b"56789"])).await,
            Err(StoreError::TooLarge)
        ));
        assert_eq!(s.get(up.id).await.unwrap().offset, 4);
        // A length below the offset is refused.
        let a = Append {
            offset: 4,
            length: Some(3),
            ..Default::default()
        };
        assert!(matches!(
            s.append(up.id, OWNER, a, body(&[])).await,
            Err(StoreError::Length(_))
        ));
    }

    #[tokio::test]
    async fn put_publishes_whole_bodies_only() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path(), settings());
        let p = s
            .put(
                "x/y.txt".into(),
                Some(5),
                None,
                Exists::Any,
                body(&[b"hel", b"lo"]),
            )
            .await
            .unwrap();
        assert!(!p.replaced);
        assert_eq!(std::fs::read(tmp.path().join("x/y.txt")).unwrap(), b"hello");
        assert!(matches!(
            s.put("x/y.txt".into(), Some(1), None, Exists::Any, body(&[b"a"]))
                .await,
            Err(StoreError::Exists)
        ));
        assert!(matches!(
            s.put("z".into(), Some(5), None, Exists::Any, cut(&[b"he"]))
                .await,
            Err(StoreError::Incomplete { .. })
        ));
        assert!(matches!(
            s.put("z".into(), Some(5), None, Exists::Any, body(&[b"he"]))
                .await,
            Err(StoreError::Incomplete { .. })
        ));
        assert!(!tmp.path().join("z").exists());
        assert_eq!(
            std::fs::read_dir(tmp.path().join(WORK_DIR))
                .unwrap()
                .count(),
            0
        );
        let s = store(
            tmp.path(),
            Settings {
                overwrite: true,
                ..settings()
            },
        );
        assert!(matches!(
            s.put("x/y.txt".into(), None, None, Exists::Not, body(&[b"a"]))
                .await,
            Err(StoreError::Precondition)
        ));
        let p = s
            .put("x/y.txt".into(), None, None, Exists::Must, body(&[b"new"]))
            .await
            .unwrap();
        assert!(p.replaced);
        assert_eq!(std::fs::read(tmp.path().join("x/y.txt")).unwrap(), b"new");
    }

    #[tokio::test]
    async fn made_up_ids_leave_nothing_in_memory() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path(), settings());
        for _ in 0..10 {
            let id = Id::random().unwrap();
            let a = Append::default();
            assert!(matches!(
                s.append(id, OWNER, a, body(&[b"x"])).await,
                Err(StoreError::NotFound)
            ));
            assert!(matches!(
                s.delete(id, OWNER).await,
                Err(StoreError::NotFound)
            ));
            assert!(matches!(s.get(id).await, Err(StoreError::NotFound)));
        }
        assert!(s.0.slots.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn expired_uploads_are_swept() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(
            tmp.path(),
            Settings {
                max_age: Duration::from_secs(1),
                ..settings()
            },
        );
        let up = s.create(new("f", Some(3))).await.unwrap();
        let work = tmp.path().join(WORK_DIR);
        // Make it look old: its record's creation time and its part's mtime.
        let mut info = s.0.read_info(up.id).unwrap().unwrap();
        info.created -= 10;
        s.0.write_info(up.id, &info).unwrap();
        let part = work.join(part_name(up.id));
        File::options()
            .write(true)
            .open(&part)
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(10))
            .unwrap();
        assert_eq!(s.sweep(), 1);
        assert!(!part.exists());
        assert!(matches!(s.get(up.id).await, Err(StoreError::NotFound)));
    }

    #[tokio::test]
    async fn rewind_loses_acknowledged_bytes_and_the_hash_follows() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path(), settings());
        let up = s.create(new("lost.bin", Some(10))).await.unwrap();
        let at = |offset| Append {
            offset,
            ..Default::default()
        };
        let a = s
            .append(up.id, OWNER, at(0), body(&[b"012345"]))
            .await
            .unwrap();
        assert_eq!(a.upload.offset, 6);
        // The last 4 bytes are lost: the offset goes back, an append at 6 is refused.
        assert_eq!(s.rewind(up.id, 4).await.unwrap(), 2);
        assert_eq!(s.get(up.id).await.unwrap().offset, 2);
        assert!(matches!(
            s.append(up.id, OWNER, at(6), body(&[b"6789"])).await,
            Err(StoreError::Offset { offset: 2 })
        ));
        // Different bytes from 2 on: the published hash is of what was stored, not sent first.
        let done = s
            .append(up.id, OWNER, at(2), body(&[b"ABCDEFGH"]))
            .await
            .unwrap();
        assert!(done.resumed);
        let p = done.published.unwrap();
        assert_eq!(std::fs::read(&p.path).unwrap(), b"01ABCDEFGH");
        assert_eq!(p.sha256, <[u8; 32]>::from(Sha256::digest(b"01ABCDEFGH")));
        // Complete: nothing more to lose; unknown ids are not found; more than stored is all.
        assert!(matches!(
            s.rewind(up.id, 1).await,
            Err(StoreError::Offset { offset: 10 })
        ));
        assert!(matches!(
            s.rewind(Id::random().unwrap(), 1).await,
            Err(StoreError::NotFound)
        ));
        assert!(s.0.slots.lock().unwrap().is_empty());
        let up = s.create(new("short.bin", None)).await.unwrap();
        s.append(up.id, OWNER, at(0), body(&[b"abc"]))
            .await
            .unwrap();
        assert_eq!(s.rewind(up.id, 100).await.unwrap(), 0);
        assert_eq!(s.get(up.id).await.unwrap().offset, 0);
    }
}
