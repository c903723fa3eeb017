//! The local disk as a [`Storage`]: paths resolved under the root with `openat2`
//! (`fs::resolve`), open handles cached, reads from the page cache inline (`preadv2`) or on the
//! blocking pool, `sendfile` for long runs, content hashes cached by file identity (and
//! persisted in `state_dir`), and hashing ahead of requests (`prehash`, `watch`).

use std::fs::{File, Metadata};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::HeaderValue;

use crate::files::storage::{
    read_on_blocking_pool, FileDigest, Found, NameSettings, Names, OpenError, Order, Page,
    ReadFuture, Representation, Sort, Source, Storage, DIGEST_CACHE_ENTRIES,
};
use crate::fs::digest::{Digest as _, DigestCache, FileId};
use crate::fs::file::{self, FileVersion};
use crate::fs::listdir;
use crate::fs::prehash::{self, Background};
use crate::fs::resolve::{self, Memo, Policy, ResolveError, Root};
use crate::fs::sidecar;
use crate::http::mime;

/// Files under a directory of the local file system.
pub struct Disk {
    root: PathBuf,
    names: NameSettings,
    pub(crate) follow_symlinks: bool,
    /// Set up on first use (or by [`Disk::start`]): `None` when the root cannot be opened.
    ready: tokio::sync::OnceCell<Option<Ready>>,
}

/// What serving needs once the root is open.
struct Ready {
    root: Arc<Root<HeaderValue>>,
    policy: Policy,
    digests: Arc<DigestCache<FileDigest>>,
    _background: Background,
}

/// Settings only: a copy is a new storage that sets itself up again.
impl Clone for Disk {
    fn clone(&self) -> Disk {
        Disk {
            root: self.root.clone(),
            names: self.names.clone(),
            follow_symlinks: self.follow_symlinks,
            ready: tokio::sync::OnceCell::new(),
        }
    }
}

impl Disk {
    /// The files under `root`, with the defaults of [`ServeFiles`](super::ServeFiles).
    pub fn new(root: impl AsRef<Path>) -> Disk {
        Disk {
            root: root.as_ref().to_path_buf(),
            names: NameSettings::default(),
            follow_symlinks: false,
            ready: tokio::sync::OnceCell::new(),
        }
    }

    /// What serving needs, set up on first use. Once it is (every request but the first),
    /// no future is involved: the set-up's own is boxed, off the hot path.
    async fn ready(&self) -> Result<&Ready, OpenError> {
        match self.ready.get() {
            Some(ready) => ready.as_ref().ok_or_else(|| self.unavailable()),
            None => Box::pin(self.set_up()).await,
        }
    }

    fn unavailable(&self) -> OpenError {
        OpenError::Io(io::Error::other(format!(
            "root {} cannot be opened",
            self.root.display()
        )))
    }

    async fn set_up(&self) -> Result<&Ready, OpenError> {
        let ready = self
            .ready
            .get_or_init(|| async {
                let (root, state_dir) = (self.root.clone(), self.names.state_dir.clone());
                // Opening the root and loading the state file are blocking file I/O.
                let opened = tokio::task::spawn_blocking(move || {
                    let canonical = root.canonicalize()?;
                    if !canonical.is_dir() {
                        return Err(io::Error::other("not a directory"));
                    }
                    let root = Root::with_describe(&canonical, mime::content_type_for)?;
                    let digests =
                        DigestCache::with_state(DIGEST_CACHE_ENTRIES, state_dir.as_deref());
                    Ok((root, digests))
                })
                .await
                .map_err(io::Error::other)
                .and_then(|r| r);
                match opened {
                    Ok((root, digests)) => {
                        let digests = Arc::new(digests);
                        let root = Arc::new(root);
                        let told = root.clone() as Arc<dyn resolve::Watched>;
                        let background = prehash::start(
                            &digests,
                            root.path(),
                            self.names.show_hidden,
                            self.names.prehash,
                            self.names.watch,
                            told,
                        );
                        Some(Ready {
                            root,
                            policy: Policy {
                                show_hidden: self.names.show_hidden,
                                follow_symlinks: self.follow_symlinks,
                            },
                            digests,
                            _background: background,
                        })
                    }
                    Err(e) => {
                        // Once: every request after this one is a 500 without a line.
                        tracing::error!(
                            root = %self.root.display(),
                            "cannot serve this root: {e}; every request is answered 500"
                        );
                        None
                    }
                }
            })
            .await;
        ready.as_ref().ok_or_else(|| self.unavailable())
    }
}

impl From<ResolveError> for OpenError {
    fn from(e: ResolveError) -> OpenError {
        match e {
            ResolveError::BadPath(why) => OpenError::BadPath(why),
            ResolveError::NotFound => OpenError::NotFound,
            ResolveError::Forbidden => OpenError::Forbidden,
            ResolveError::Io(e) => OpenError::Io(e),
        }
    }
}

impl From<io::Error> for OpenError {
    fn from(e: io::Error) -> OpenError {
        ResolveError::from(e).into()
    }
}

/// A file found on disk: open, with its metadata and its name's `Content-Type`.
pub struct DiskFile {
    file: Arc<File>,
    meta: Metadata,
    content_type: HeaderValue,
    memo: Option<Memo>,
}

/// A directory found on disk, open.
pub struct DiskDir {
    dir: File,
    name: PathBuf,
}

impl Names for Disk {
    fn names(&mut self) -> &mut NameSettings {
        &mut self.names
    }
}

impl Storage for Disk {
    type File = DiskFile;
    type Dir = DiskDir;

    async fn start(&self) -> io::Result<()> {
        self.ready().await.map(|_| ()).map_err(OpenError::into_io)
    }

    fn hash_computations(&self) -> u64 {
        match self.ready.get() {
            Some(Some(r)) => r.digests.computations(),
            _ => 0,
        }
    }

    fn remember_hash(&self, meta: &Metadata, sha256: crate::fs::digest::Sha256Sum) -> bool {
        match self.ready.get() {
            Some(Some(r)) => {
                r.digests.insert(FileId::of(meta), sha256);
                true
            }
            _ => false,
        }
    }

    async fn find(&self, path: &str) -> Result<Found<DiskFile, DiskDir>, OpenError> {
        let ready = self.ready().await?;
        // File system metadata work (path lookup, open, fstat) runs inline: on a warm dentry
        // cache it costs a few microseconds, far less than a round trip through the blocking
        // pool, which dominated the profile of small-file requests.
        match resolve::find(&ready.root, path, &self.names.index_files, &ready.policy)? {
            resolve::Found::File {
                file,
                meta,
                name,
                described,
                memo,
            } => Ok(Found::File {
                file: DiskFile {
                    file,
                    meta,
                    content_type: described,
                    memo,
                },
                name,
            }),
            resolve::Found::AddSlash(to) => Ok(Found::AddSlash(to)),
            resolve::Found::Dir { dir, name } => Ok(Found::Dir {
                dir: DiskDir {
                    dir,
                    name: name.clone(),
                },
                name,
            }),
        }
    }

    async fn sidecar(&self, file: &DiskFile, name: &Path, suffix: &str) -> Option<DiskFile> {
        let ready = self.ready().await.ok()?;
        let (f, meta, memo) = sidecar::open(&ready.root, &ready.policy, name, suffix)?;
        Some(DiskFile {
            file: f,
            meta,
            content_type: file.content_type.clone(),
            memo: Some(memo),
        })
    }

    async fn open(&self, file: DiskFile) -> Result<Representation, OpenError> {
        let ready = self.ready().await?;
        let DiskFile {
            file,
            meta,
            content_type,
            memo,
        } = file;
        let id = FileId::of(&meta);
        let digest = match ready.digests.digest(file.clone(), id).await {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(OpenError::Changing),
            Err(e) => return Err(e.into()),
        };
        Ok(representation(file, &meta, content_type, digest, memo))
    }

    fn open_now(&self, path: &str) -> Option<Result<(Representation, PathBuf), OpenError>> {
        let Some(ready) = self.ready.get()? else {
            return Some(Err(self.unavailable()));
        };
        match resolve::find(&ready.root, path, &self.names.index_files, &ready.policy) {
            Err(e) => Some(Err(e.into())),
            Ok(resolve::Found::File {
                file,
                meta,
                name,
                described,
                memo,
            }) => {
                // Not known yet: `open` hashes it (the path is resolved again then, once).
                let digest = ready.digests.known(&FileId::of(&meta))?;
                Some(Ok((
                    representation(file, &meta, described, digest, memo),
                    name,
                )))
            }
            // A redirect or a directory: answered by the asynchronous path.
            Ok(_) => None,
        }
    }

    async fn list(
        &self,
        dir: DiskDir,
        sort: Sort,
        order: Order,
        offset: usize,
        limit: usize,
    ) -> io::Result<Page> {
        let ready = self.ready().await.map_err(OpenError::into_io)?;
        let (root, policy) = (ready.root.clone(), ready.policy.clone());
        let digests = ready.digests.clone();
        tokio::task::spawn_blocking(move || {
            let d = listdir::Dir {
                root: &root,
                policy: &policy,
                dir: &dir.dir,
                name: &dir.name,
            };
            // The hashes already known, by the versions' identities: nothing is hashed here.
            let known = |id: &FileId| digests.peek(id).map(|d| *d.sha256());
            listdir::page(&d, sort, order, offset, limit, known)
        })
        .await
        .map_err(io::Error::other)?
    }
}

/// The representation of the open `file` whose metadata is `meta` and hash `digest`.
fn representation(
    file: Arc<File>,
    meta: &Metadata,
    content_type: HeaderValue,
    digest: FileDigest,
    memo: Option<Memo>,
) -> Representation {
    Representation {
        len: meta.len(),
        etag: Some(digest.etag),
        modified: meta.modified().ok(),
        content_type,
        source: Arc::new(DiskSource::new(file, meta, memo)),
        repr_digest: Some(digest.repr_digest),
        path_headers: Default::default(),
    }
}

/// Files up to this size are kept in memory with their cached handle once read (at most 256
/// handles: 4 MiB), so that a repeated small GET costs no `pread` and no check after it.
const MEMO_MAX: u64 = 16 * 1024;

/// A file version as a [`Source`].
struct DiskSource {
    version: FileVersion,
    len: u64,
    memory: Memory,
}

/// What of a [`DiskSource`]'s content is in memory.
enum Memory {
    /// The whole content of this version, kept by an earlier response: every read is served
    /// from it (it cannot change, so nothing is checked after).
    Kept(Bytes),
    /// Not yet; a small file's content is kept here once read, for the next responses.
    ToKeep(Memo),
    /// Never (a large file, or a source with no memo).
    Never,
}

impl DiskSource {
    fn new(file: Arc<File>, meta: &Metadata, memo: Option<Memo>) -> DiskSource {
        let memory = match memo {
            Some(m) => match m.get() {
                Some(kept) => Memory::Kept(kept.clone()),
                None if meta.len() <= MEMO_MAX => Memory::ToKeep(m),
                None => Memory::Never,
            },
            None => Memory::Never,
        };
        DiskSource {
            version: FileVersion::new(file, meta),
            len: meta.len(),
            memory,
        }
    }

    /// The whole content, when an earlier response kept it.
    fn kept(&self) -> Option<&Bytes> {
        match &self.memory {
            Memory::Kept(kept) => Some(kept),
            _ => None,
        }
    }

    /// Read the whole (small) file now if it is in the page cache, check that it is still this
    /// version, and keep it in the memo. `None` when it could not be read so.
    fn keep(&self, memo: &Memo) -> Option<Bytes> {
        if let Some(kept) = memo.get() {
            return Some(kept.clone());
        }
        let mut buf = BytesMut::with_capacity(self.len as usize);
        let spare = &mut buf.spare_capacity_mut()[..self.len as usize];
        match file::read_at_nowait(&self.version.file, spare, 0) {
            // SAFETY: the first `self.len` bytes of the spare capacity were initialized.
            Some(Ok(n)) if n as u64 == self.len => unsafe { buf.set_len(n) },
            _ => return None,
        }
        if !matches!(self.version.unchanged(), Ok(true)) {
            return None;
        }
        Some(memo.get_or_init(|| buf.freeze()).clone())
    }
}

impl Source for DiskSource {
    fn read(self: Arc<Self>, offset: u64, len: usize, _until: u64) -> ReadFuture {
        if let Some(kept) = self.kept() {
            let start = (offset as usize).min(kept.len());
            let b = kept.slice(start..(start + len).min(kept.len()));
            return Box::pin(async move {
                if b.is_empty() {
                    return Err(file::ended_early());
                }
                Ok(b)
            });
        }
        read_on_blocking_pool(self, offset, len, |s, buf, offset| {
            file::read_exact_at(&s.version.file, buf, offset)
        })
    }

    fn read_at_nowait(
        &self,
        buf: &mut [MaybeUninit<u8>],
        offset: u64,
    ) -> Option<io::Result<usize>> {
        let kept = match &self.memory {
            Memory::Kept(kept) => Some(kept.clone()),
            Memory::ToKeep(memo) => self.keep(memo),
            Memory::Never => None,
        };
        let Some(kept) = kept else {
            return file::read_at_nowait(&self.version.file, buf, offset);
        };
        let from = &kept[(offset as usize).min(kept.len())..];
        let n = from.len().min(buf.len());
        // SAFETY: `MaybeUninit<u8>` has the layout of `u8`; `n` fits both slices.
        unsafe { std::ptr::copy_nonoverlapping(from.as_ptr(), buf.as_mut_ptr().cast(), n) };
        Some(Ok(n))
    }

    fn reads_nowait(&self) -> bool {
        true
    }

    fn raw_fd(&self) -> Option<RawFd> {
        // Kept bytes are copied from memory, never sent from the file.
        self.kept().is_none().then(|| self.version.file.as_raw_fd())
    }

    fn unchanged(&self) -> io::Result<bool> {
        if self.kept().is_some() {
            return Ok(true);
        }
        self.version.unchanged()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn read(s: &DiskSource, offset: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![MaybeUninit::uninit(); len];
        let n = s.read_at_nowait(&mut buf, offset).unwrap().unwrap();
        buf[..n]
            .iter()
            .map(|b| unsafe { b.assume_init() })
            .collect()
    }

    #[test]
    fn a_small_file_is_kept_once_read_whole_and_then_served_from_memory() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        let path = dir.path().join("f.bin");
        std::fs::write(&path, &data).unwrap();
        let file = Arc::new(File::open(&path).unwrap());
        let meta = file.metadata().unwrap();
        let memo = Memo::default();

        let first = DiskSource::new(file.clone(), &meta, Some(memo.clone()));
        assert!(matches!(first.memory, Memory::ToKeep(_)) && first.raw_fd().is_some());
        assert_eq!(read(&first, 10, 100), &data[10..110]);
        assert_eq!(memo.get().unwrap()[..], data[..]);

        let next = DiskSource::new(file.clone(), &meta, Some(memo.clone()));
        assert!(matches!(&next.memory, Memory::Kept(k) if k[..] == data[..]));
        // From memory: no descriptor to send from, nothing to check after.
        assert!(next.raw_fd().is_none());
        assert!(next.unchanged().unwrap());
        assert_eq!(read(&next, 4990, 100), &data[4990..]);

        // Changed after its response was decided: never kept.
        let fresh = Memo::default();
        let stale = DiskSource::new(file.clone(), &meta, Some(fresh.clone()));
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"more")
            .unwrap();
        read(&stale, 0, 10);
        assert!(fresh.get().is_none());
        assert!(!stale.unchanged().unwrap());
    }

    #[test]
    fn a_large_file_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        std::fs::write(&path, vec![1u8; MEMO_MAX as usize + 1]).unwrap();
        let file = Arc::new(File::open(&path).unwrap());
        let meta = file.metadata().unwrap();
        let memo = Memo::default();
        let s = DiskSource::new(file, &meta, Some(memo.clone()));
        assert_eq!(read(&s, 0, 10), [1u8; 10]);
        assert!(memo.get().is_none() && matches!(s.memory, Memory::Never));
    }
}
