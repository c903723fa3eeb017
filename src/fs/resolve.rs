//! Safe path resolution: a request path becomes an open file under the root, a redirect, or an
//! error.
//!
//! The path is split on `/` first and each segment percent-decoded once, so `%2F` can never
//! become a separator and `%252e%252e` stays the literal name `%2e%2e`. Segments that decode to
//! `..`, or contain a backslash, a slash or NUL, or are not UTF-8, are refused with 400; names
//! starting with a dot are hidden unless `show_hidden`.
//!
//! The file is then opened relative to the root directory with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)`: one system call in which the kernel guarantees that nothing outside
//! the root is reached. Only when the path holds a symlink does it fall back to canonicalizing
//! the path and checking that the real path stays inside the root (unless `follow_symlinks`) and
//! has no hidden component.

use std::borrow::Cow;
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use foldhash::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;

use percent_encoding::percent_decode;

use crate::fs::digest::FileId;

/// The directory inside an upload directory that holds unfinished uploads (`fs::upload`): a
/// name the resolver never serves, listings never show and the hashers never read, even with
/// `show_hidden`.
pub const RESERVED: &str = ".rangeserve-uploads";

/// Whether a path segment is [`RESERVED`].
pub fn is_reserved(segment: &str) -> bool {
    segment == RESERVED
}

/// What the resolver may serve.
#[derive(Debug, Clone)]
pub struct Policy {
    pub show_hidden: bool,
    pub follow_symlinks: bool,
}

/// The document root: its canonical path, an open handle that lookups start from, and the
/// files recently served.
///
/// `D` is what the caller derives from a file's name (the engine: its `Content-Type`), worked
/// out once by `describe` when a file is opened and kept with its open handle.
pub struct Root<D = ()> {
    path: PathBuf,
    dir: File,
    handles: Handles<D>,
    describe: fn(&Path) -> D,
    /// Whether `openat2` works here: kernels before 5.6 lack it, and some container seccomp
    /// profiles refuse it (ENOSYS or EPERM). Without it every open takes the slow path.
    openat2: bool,
}

/// Open files recently served, by their path under the root, so that a request for a file that
/// has not changed costs one `stat` instead of open + fstat + close. An entry is used only while
/// the path still leads to the same file version (device, inode, size, mtime, ctime), exactly
/// the identity the content hashes are keyed by; anything else drops it and takes the full path.
///
/// While the root is watched (`watch`, inotify), the watcher drops the entries of every path an
/// event names, so an entry whose identity was confirmed less than [`TRUSTED_FOR`] ago is used
/// without the `stat` of its path (as lighttpd's and nginx's stat caches do, but told of changes
/// at once): an `fstat` of its descriptor, or nothing for a file whose bytes are in memory.
struct Handles<D> {
    /// Keyed by the path's bytes: hashing a `Path` walks its components.
    map: Mutex<HashMap<Box<[u8]>, Handle<D>>>,
    clock: AtomicU64,
    /// Whether a watcher reports every change under the root ([`Root::watching`]).
    watched: AtomicBool,
    /// Counts the watcher's reports: an identity confirmed while one arrived is not trusted.
    epoch: AtomicU64,
}

impl<D> Default for Handles<D> {
    fn default() -> Self {
        Handles {
            map: Mutex::default(),
            clock: AtomicU64::new(0),
            watched: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
        }
    }
}

/// How long an entry confirmed by a `stat` (or its open) is used without one while the root is
/// watched. The ceiling covers what inotify cannot see: a file changed through a hard link from
/// outside the root, or by another host on a network file system.
pub const TRUSTED_FOR: Duration = Duration::from_secs(1);

/// How a file was reached: by its own name (the watcher's events about that name cover it), or
/// through a symlink (its target changes under another name, which no event for this path tells).
#[derive(Clone, Copy, PartialEq)]
enum Via {
    Direct,
    Symlink,
}

/// The whole content of a small file, kept with its open handle once a response has read it
/// and checked that it is still the version the handle names (see [`Found::File`]).
pub type Memo = Arc<OnceLock<Bytes>>;

#[derive(Clone)]
struct Handle<D> {
    file: Arc<File>,
    memo: Memo,
    /// The metadata from the open; while the path's identity equals `id`, it still holds.
    meta: Metadata,
    id: FileId,
    /// What `describe` made of the name (it depends on the name only: once per entry).
    described: D,
    used: u64,
    /// Opened with no symlink on the way: only such an entry is ever trusted.
    via: Via,
    /// When the identity was last confirmed with no watcher report in between (`None`: not
    /// yet): see [`TRUSTED_FOR`].
    confirmed: Option<Instant>,
}

/// Few enough to stay far below the usual 1024 open-file limit.
const HANDLES: usize = 256;

fn key(rel: &Path) -> &[u8] {
    std::os::unix::ffi::OsStrExt::as_bytes(rel.as_os_str())
}

impl<D: Clone> Handles<D> {
    fn get(&self, root: &File, rel: &Path) -> Option<Handle<D>> {
        let now = self.clock.fetch_add(1, Ordering::Relaxed);
        let hit = {
            let mut map = self.map.lock().unwrap();
            let h = map.get_mut(key(rel))?;
            h.used = now;
            h.clone()
        };
        let epoch = self.epoch.load(Ordering::Acquire);
        let trusted = self.watched.load(Ordering::Relaxed)
            && hit.confirmed.is_some_and(|at| at.elapsed() < TRUSTED_FOR);
        // Events tell of a path that now names another file; that file itself written in place
        // is seen at once through the descriptor, before an event could arrive, so that a
        // response never starts on bytes that are not the version its head names (it would be
        // aborted). Bytes kept in memory are their version's whatever the file does.
        if trusted
            && (hit.memo.get().is_some()
                || rustix::fs::fstat(&*hit.file).is_ok_and(|st| {
                    let links = std::os::unix::fs::MetadataExt::nlink(&hit.meta);
                    hit.id.still(links, &FileId::of_stat(&st), st.st_nlink)
                }))
        {
            return Some(hit);
        }
        // Follows symlinks like the open did; a path that now leads elsewhere has another id.
        // Relative to the root's descriptor: the kernel walks only the path under the root.
        let st = rustix::fs::statat(root, rel, rustix::fs::AtFlags::empty());
        match st {
            Ok(st) if FileId::of_stat(&st) == hit.id => {
                if hit.via == Via::Direct && self.watched.load(Ordering::Relaxed) {
                    let mut map = self.map.lock().unwrap();
                    if self.epoch.load(Ordering::Acquire) == epoch {
                        if let Some(h) = map.get_mut(key(rel)) {
                            h.confirmed = Some(Instant::now());
                        }
                    }
                }
                Some(hit)
            }
            _ => {
                self.map.lock().unwrap().remove(key(rel));
                None
            }
        }
    }

    /// Keep the handle just opened, and give it back; `epoch` is the one read before the open.
    fn put(
        &self,
        rel: &Path,
        (file, meta, via): (File, Metadata, Via),
        described: D,
        epoch: u64,
    ) -> Handle<D> {
        let now = self.clock.fetch_add(1, Ordering::Relaxed);
        let mut map = self.map.lock().unwrap();
        if map.len() >= HANDLES && !map.contains_key(key(rel)) {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, h)| h.used)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        // Under the lock, so a report that comes after this check drops the entry.
        let quiet = self.epoch.load(Ordering::Acquire) == epoch;
        let handle = Handle {
            file: Arc::new(file),
            memo: Memo::default(),
            id: FileId::of(&meta),
            meta,
            described,
            used: now,
            via,
            confirmed: (quiet && via == Via::Direct).then(Instant::now),
        };
        map.insert(key(rel).into(), handle.clone());
        handle
    }

    /// A watcher's report that `rel` (a file or a directory) changed: drop its entry and those
    /// under it; the empty path drops them all.
    fn forget(&self, rel: &Path) {
        let mut map = self.map.lock().unwrap();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let k = key(rel);
        if k.is_empty() {
            map.clear();
            return;
        }
        map.retain(|name, _| {
            !(name.starts_with(k) && (name.len() == k.len() || name[k.len()] == b'/'))
        });
    }
}

impl<D> std::fmt::Debug for Root<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Root")
            .field("path", &self.path)
            .field("openat2", &self.openat2)
            .finish_non_exhaustive()
    }
}

impl Root<()> {
    /// A root whose files carry nothing derived from their names.
    pub fn open(path: &Path) -> io::Result<Root<()>> {
        Root::with_describe(path, |_| ())
    }
}

impl<D: Clone> Root<D> {
    /// `path` must be canonical (absolute, no symlinks); `describe` derives `D` from a file's
    /// name relative to the root (see [`Found::File`]).
    pub fn with_describe(path: &Path, describe: fn(&Path) -> D) -> io::Result<Root<D>> {
        let dir = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_PATH)
            .open(path)?;
        let mut root = Root {
            path: path.to_path_buf(),
            dir,
            handles: Handles::default(),
            describe,
            openat2: true,
        };
        if let Err(e) = openat2_beneath(&root, Path::new("")) {
            if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) {
                tracing::info!(
                    "openat2 is not available ({e}): paths are checked by canonicalizing"
                );
                root.openat2 = false;
            }
        }
        Ok(root)
    }

    /// A root that behaves as if `openat2` were missing (tests of the fallback).
    #[doc(hidden)]
    pub fn without_openat2(mut self) -> Root<D> {
        self.openat2 = false;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What a watcher of the root tells it: its cached handles are used without a `stat` (for up
/// to [`TRUSTED_FOR`]) only while every change is reported.
pub trait Watched: Send + Sync {
    /// Whether every change under the root is now reported (`false`: no longer, events were
    /// lost or a directory could not be watched).
    fn watching(&self, yes: bool);
    /// `path` (absolute, under the root) or what is under it changed.
    fn changed(&self, path: &Path);
}

impl<D: Clone + Send + Sync> Watched for Root<D> {
    fn watching(&self, yes: bool) {
        // Whatever was confirmed before is not known to have been watched since.
        self.handles.forget(Path::new(""));
        self.handles.watched.store(yes, Ordering::Relaxed);
    }

    fn changed(&self, path: &Path) {
        match path.strip_prefix(&self.path) {
            Ok(rel) => self.handles.forget(rel),
            Err(_) => self.handles.forget(Path::new("")),
        }
    }
}

/// What a request path leads to.
// A file is the common case: boxing it would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Found<D> {
    /// A regular file, open, with its metadata (from the open handle) and the name it was
    /// asked for (relative to the root; its extension gives the type).
    File {
        file: Arc<File>,
        meta: Metadata,
        name: PathBuf,
        /// What the root's `describe` made of `name`.
        described: D,
        /// Where the content of this version may be kept in memory, shared by the requests that
        /// find it through the same cached handle: whatever is in it is exactly this version's
        /// bytes (it goes with the handle, which is dropped when the path's identity changes).
        /// `None` for a file that is not cached (an index file).
        memo: Option<Memo>,
    },
    /// A directory asked for without the trailing slash: redirect to this path (still
    /// percent-encoded as received, empty segments dropped, ending in `/`).
    AddSlash(String),
    /// A directory asked for with the trailing slash that has none of the index files: open,
    /// with its name relative to the root (empty for the root): to list, or 404.
    Dir { dir: File, name: PathBuf },
}

#[derive(Debug)]
pub enum ResolveError {
    /// 400: the path is not one we accept (and it never reached the file system).
    BadPath(&'static str),
    /// 404: absent, hidden, a symlink out of the root, or not a regular file or directory.
    NotFound,
    /// 403: the file system refused us.
    Forbidden,
    /// 500: anything else, with the error for the log.
    Io(io::Error),
}

impl From<io::Error> for ResolveError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::PermissionDenied => ResolveError::Forbidden,
            io::ErrorKind::NotFound
            | io::ErrorKind::NotADirectory
            | io::ErrorKind::InvalidFilename => ResolveError::NotFound,
            // ELOOP (a symlink cycle) and ENXIO (a socket) are not found from the client's side.
            _ if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENXIO)) => {
                ResolveError::NotFound
            }
            _ => ResolveError::Io(e),
        }
    }
}

/// Resolve `raw_path` (the request path as received, percent-encoded) under `root`; a directory
/// asked for with a trailing slash gives its first index file, or itself when it has none.
pub fn find<D: Clone>(
    root: &Root<D>,
    raw_path: &str,
    index_files: &[String],
    policy: &Policy,
) -> Result<Found<D>, ResolveError> {
    let rest = raw_path
        .strip_prefix('/')
        .ok_or(ResolveError::BadPath("path must start with /"))?;
    let rel = PathBuf::from(relative_name(rest, policy.show_hidden)?);
    let (file, meta) = match open_cached(root, &rel, policy)? {
        Ok(h) => {
            return Ok(Found::File {
                file: h.file,
                meta: h.meta,
                name: rel,
                described: h.described,
                memo: Some(h.memo),
            })
        }
        Err(other) => other,
    };
    if !meta.is_dir() {
        return Err(ResolveError::NotFound);
    }
    if !raw_path.ends_with('/') {
        return Ok(Found::AddSlash(slashed(rest)));
    }
    for index in index_files {
        let name = rel.join(index);
        match open_beneath(root, &name, policy) {
            Ok((file, meta)) if meta.is_file() => {
                let file = Arc::new(file);
                let described = (root.describe)(&name);
                return Ok(Found::File {
                    file,
                    meta,
                    name,
                    described,
                    memo: None,
                });
            }
            Ok(_) | Err(ResolveError::NotFound) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(Found::Dir {
        dir: file,
        name: rel,
    })
}

/// The name under the root that a request path asks for (`raw_path` as received, starting with
/// `/`): segments percent-decoded and joined with `/`, empty and `.` segments dropped; `..`,
/// encoded slashes, backslashes, NUL and non-UTF-8 are refused, hidden names are not found
/// unless shown. The same rules name an object's key in a bucket.
pub fn request_name(raw_path: &str, show_hidden: bool) -> Result<String, ResolveError> {
    let rest = raw_path
        .strip_prefix('/')
        .ok_or(ResolveError::BadPath("path must start with /"))?;
    relative_name(rest, show_hidden)
}

/// Where a directory asked for without its slash redirects (`rest`: the request path without
/// its leading `/`, as received). Built from the kept segments, so `//evil.example` can never
/// become a protocol-relative Location.
pub fn slashed(rest: &str) -> String {
    let mut to = String::from("/");
    for (raw, _) in segments(rest).flatten() {
        to.push_str(raw);
        to.push('/');
    }
    to
}

/// The name under the root that a request path (without its leading `/`) asks for: its
/// [`segments`] joined with `/`. A hidden segment (leading `.`) is `NotFound` unless shown.
fn relative_name(rest: &str, show_hidden: bool) -> Result<String, ResolveError> {
    // Most paths are already that name: no escape, backslash or NUL, and no segment that is
    // empty or starts with a dot (so no `.`, `..` or hidden name); one pass over the bytes
    // tells, instead of splitting and checking each segment (which showed in the profile).
    let mut prev = b'/';
    let plain = rest.bytes().all(|b| {
        let odd = matches!(b, b'%' | b'\\' | 0) || (prev == b'/' && matches!(b, b'/' | b'.'));
        prev = b;
        !odd
    });
    if plain && prev != b'/' {
        return Ok(rest.to_owned());
    }
    relative_name_by_segments(rest, show_hidden)
}

fn relative_name_by_segments(rest: &str, show_hidden: bool) -> Result<String, ResolveError> {
    let mut rel = String::with_capacity(rest.len());
    for segment in segments(rest) {
        let (_, name) = segment?;
        if name.starts_with('.') && (!show_hidden || is_reserved(&name)) {
            return Err(ResolveError::NotFound);
        }
        if !rel.is_empty() {
            rel.push('/');
        }
        rel.push_str(&name);
    }
    Ok(rel)
}

/// The segments of a request path (without its leading `/`) that name something: each as
/// received and percent-decoded once; empty and `.` segments are skipped, and a segment that
/// decodes to `..`, holds a slash, backslash or NUL, or is not UTF-8 is an error.
fn segments(rest: &str) -> impl Iterator<Item = Result<(&str, Cow<'_, str>), ResolveError>> {
    rest.split('/')
        .filter(|raw| !raw.is_empty())
        .filter_map(|raw| {
            // Borrowed unless the segment has escapes: no allocation for a plain name. (Plain
            // paths do not get here: `relative_name` takes them in one pass.)
            let Ok(name) = percent_decode(raw.as_bytes()).decode_utf8() else {
                return Some(Err(ResolveError::BadPath("path is not UTF-8")));
            };
            if name.bytes().any(|b| b == b'/' || b == b'\\' || b == 0) {
                return Some(Err(ResolveError::BadPath(
                    "slash, backslash or NUL in a path segment",
                )));
            }
            match &*name {
                "." => None,
                ".." => Some(Err(ResolveError::BadPath("`..` in path"))),
                _ => Some(Ok((raw, name))),
            }
        })
}

/// The regular file at `rel`, a name built from one that [`find`] returned (e.g. a sidecar
/// `name.gz` beside it): the same containment, symlink and open-handle rules; anything that is
/// not a regular file is `NotFound`.
pub fn open_file<D: Clone>(
    root: &Root<D>,
    rel: &Path,
    policy: &Policy,
) -> Result<(Arc<File>, Metadata, Memo), ResolveError> {
    match open_cached(root, rel, policy)? {
        Ok(h) => Ok((h.file, h.meta, h.memo)),
        Err(_) => Err(ResolveError::NotFound),
    }
}

/// The regular file at `rel` through the open-handle cache (kept there when it had to be
/// opened), or what else was opened there (a directory, ...), uncached.
fn open_cached<D: Clone>(
    root: &Root<D>,
    rel: &Path,
    policy: &Policy,
) -> Result<Result<Handle<D>, (File, Metadata)>, ResolveError> {
    if let Some(hit) = root.handles.get(&root.dir, rel) {
        return Ok(Ok(hit));
    }
    let epoch = root.handles.epoch.load(Ordering::Acquire);
    let (file, meta, via) = open_beneath_via(root, rel, policy)?;
    if !meta.is_file() {
        return Ok(Err((file, meta)));
    }
    let described = (root.describe)(rel);
    Ok(Ok(root.handles.put(
        rel,
        (file, meta, via),
        described,
        epoch,
    )))
}

/// Open `rel` (already free of `..` and hidden segments) under the root, following symlinks
/// only as the policy allows: what a request for `rel` would reach, or why not.
pub(crate) fn open_beneath<D>(
    root: &Root<D>,
    rel: &Path,
    policy: &Policy,
) -> Result<(File, Metadata), ResolveError> {
    open_beneath_via(root, rel, policy).map(|(file, meta, _)| (file, meta))
}

/// [`open_beneath`], and whether a symlink was on the way.
fn open_beneath_via<D>(
    root: &Root<D>,
    rel: &Path,
    policy: &Policy,
) -> Result<(File, Metadata, Via), ResolveError> {
    let fast = if root.openat2 {
        openat2_beneath(root, rel)
    } else {
        Err(io::Error::from_raw_os_error(libc::ENOSYS))
    };
    let (file, via) = match fast {
        Ok(file) => (file, Via::Direct),
        // A symlink on the way (ELOOP), an escape (EXDEV), or no openat2 here: the slow path.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ELOOP | libc::EXDEV | libc::ENOSYS | libc::EPERM)
            ) =>
        {
            let real = check(&root.path, &root.path.join(rel), policy)?;
            // Without openat2 a symlink is not told from a plain name: none is trusted.
            let file = match real.strip_prefix(&root.path) {
                // The real path has no symlinks: open it the same way, so a symlink swapped in
                // since the check is refused rather than followed.
                Ok(inside) if root.openat2 => openat2_beneath(root, inside)?,
                Ok(_) => open_verified(&root.path, &real, policy)?,
                Err(_) => open_nonblocking(&real)?,
            };
            (file, Via::Symlink)
        }
        Err(e) => return Err(e.into()),
    };
    let meta = file.metadata()?;
    Ok((file, meta, via))
}

/// `openat2(root, rel, O_RDONLY | O_NONBLOCK, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`.
/// O_NONBLOCK: opening a FIFO must not hang the server (it is refused after the fstat).
fn openat2_beneath<D>(root: &Root<D>, rel: &Path) -> io::Result<File> {
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let c_path = std::ffi::CString::new(rel.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidFilename))?;
    let how = OpenHow {
        flags: (libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: the path is NUL-terminated, `how` is a valid open_how of the size we pass, and
    // the descriptor returned (if any) is owned by nobody else.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.dir.as_raw_fd(),
            c_path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor from the kernel, owned from here on.
    Ok(unsafe { File::from_raw_fd(fd as i32) })
}

/// Without openat2: open the checked real path, then check again what was opened (a symlink
/// swapped in between the check and the open must not lead out of the root).
fn open_verified(root: &Path, real: &Path, policy: &Policy) -> Result<File, ResolveError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(real)?;
    // Where the descriptor really leads; without /proc (rare) the check above stands alone.
    if let Ok(opened) = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())) {
        if check(root, &opened, policy)? != opened {
            return Err(ResolveError::NotFound);
        }
    }
    Ok(file)
}

fn open_nonblocking(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

/// The slow path, for paths with symlinks: canonicalize, enforce containment and the hidden
/// rule on the real path.
fn check(root: &Path, path: &Path, policy: &Policy) -> Result<PathBuf, ResolveError> {
    let real = path.canonicalize()?;
    match real.strip_prefix(root) {
        Ok(inside) => {
            // A symlink inside the root may still point at a dotfile, or into uploads.
            let (mut hidden, mut reserved) = (false, false);
            for c in inside.components() {
                if let Component::Normal(n) = c {
                    let name = n.to_str();
                    hidden |= name.is_none_or(|s| s.starts_with('.'));
                    reserved |= name.is_some_and(is_reserved);
                }
            }
            if reserved || (hidden && !policy.show_hidden) {
                return Err(ResolveError::NotFound);
            }
        }
        Err(_) if policy.follow_symlinks => {}
        Err(_) => return Err(ResolveError::NotFound),
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    proptest::proptest! {
        /// The one-pass check of plain paths agrees with the segment by segment one, on paths
        /// made of the characters that matter to either.
        #[test]
        fn plain_paths_resolve_as_their_segments_do(
            rest in "[a./%2eE\\\\\\x00é]{0,12}",
            show_hidden: bool,
        ) {
            let fast = relative_name(&rest, show_hidden);
            let slow = relative_name_by_segments(&rest, show_hidden);
            proptest::prop_assert_eq!(format!("{fast:?}"), format!("{slow:?}"));
        }
    }

    #[test]
    fn relative_names() {
        let name = |rest| relative_name(rest, false).map_err(|e| format!("{e:?}"));
        assert_eq!(name("a/b.txt").unwrap(), "a/b.txt");
        assert_eq!(name("a//b/./c/").unwrap(), "a/b/c");
        assert_eq!(name("a%2eb").unwrap(), "a.b");
        assert!(name("a/../b").is_err());
        assert!(name("a/%2e%2e/b").is_err());
        assert!(name("a/.hidden").is_err());
        assert!(name("a\\b").is_err());
        assert_eq!(relative_name("a/.hidden", true).unwrap(), "a/.hidden");
    }

    const STRICT: Policy = Policy {
        show_hidden: false,
        follow_symlinks: false,
    };
    const OPEN: Policy = Policy {
        show_hidden: true,
        follow_symlinks: true,
    };

    struct Fixture {
        _dir: tempfile::TempDir,
        root: Root,
    }

    /// The same tree twice: opened with openat2, and as if openat2 were missing.
    fn fixtures() -> [Fixture; 2] {
        [fixture(true), fixture(false)]
    }

    fn fixture(openat2: bool) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        let root = base.join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::write(root.join("a.txt"), "a").unwrap();
        std::fs::write(root.join("%2e%2e"), "literal").unwrap();
        std::fs::write(root.join("sub/b.txt"), "b").unwrap();
        std::fs::write(root.join(".git/config"), "secret").unwrap();
        std::fs::write(base.join("secret.txt"), "outside").unwrap();
        symlink(base.join("secret.txt"), root.join("out")).unwrap();
        symlink(root.join("sub/b.txt"), root.join("in")).unwrap();
        symlink(root.join(".git/config"), root.join("to-hidden")).unwrap();
        std::fs::create_dir_all(root.join(".rangeserve-uploads")).unwrap();
        std::fs::create_dir_all(root.join("sub/.rangeserve-uploads")).unwrap();
        std::fs::write(root.join(".rangeserve-uploads/x.part"), "part").unwrap();
        std::fs::write(root.join("sub/.rangeserve-uploads/x.part"), "part").unwrap();
        symlink(
            root.join(".rangeserve-uploads/x.part"),
            root.join("to-uploads"),
        )
        .unwrap();
        let root = Root::open(&root).unwrap();
        Fixture {
            _dir: dir,
            root: if openat2 {
                root
            } else {
                root.without_openat2()
            },
        }
    }

    /// The content of what `path` resolves to, or the redirect, or the error's name.
    fn get(f: &Fixture, path: &str, index: &[&str], policy: &Policy) -> String {
        let index: Vec<String> = index.iter().map(|s| s.to_string()).collect();
        match find(&f.root, path, &index, policy) {
            Ok(Found::File { file, name, .. }) => {
                // Positional, as the server reads: cached handles are shared.
                let mut buf = vec![0u8; 64];
                let n = std::os::unix::fs::FileExt::read_at(&*file, &mut buf, 0).unwrap();
                let s = String::from_utf8_lossy(&buf[..n]).into_owned();
                format!("{s} ({})", name.display())
            }
            Ok(Found::AddSlash(to)) => format!("-> {to}"),
            Ok(Found::Dir { name, .. }) => format!("dir ({})", name.display()),
            Err(ResolveError::BadPath(_)) => "400".into(),
            Err(ResolveError::NotFound) => "404".into(),
            Err(ResolveError::Forbidden) => "403".into(),
            Err(ResolveError::Io(e)) => format!("500 {e}"),
        }
    }

    #[test]
    fn files_dirs_and_redirects() {
        for f in fixtures() {
            let g = |p| get(&f, p, &["index.html"], &STRICT);
            assert_eq!(g("/a.txt"), "a (a.txt)");
            assert_eq!(g("/sub//b.txt"), "b (sub/b.txt)");
            assert_eq!(g("/./a.txt"), "a (a.txt)");
            assert_eq!(g("/%73ub/b.txt"), "b (sub/b.txt)");
            assert_eq!(g("//sub"), "-> /sub/");
            assert_eq!(g("/sub?"), "404");
            assert_eq!(g("/sub/"), "dir (sub)");
            assert_eq!(g("/"), "dir ()");
        }
    }

    #[test]
    fn traversal_is_refused() {
        for f in fixtures() {
            for p in [
                "/../secret.txt",
                "/sub/../../secret.txt",
                "/%2e%2e/secret.txt",
                "/%2E%2E/secret.txt",
                "/..%2fsecret.txt",
                "/..%5csecret.txt",
                "/..\\secret.txt",
                "/a.txt%00",
                "/%ff",
                "relative",
            ] {
                assert_eq!(get(&f, p, &[], &OPEN), "400", "{p}");
            }
            // Double encoding decodes once: a literal name, not a traversal.
            assert_eq!(get(&f, "/%252e%252e", &[], &STRICT), "literal (%2e%2e)");
            assert_eq!(get(&f, "/%252e%252e/secret.txt", &[], &STRICT), "404");
        }
    }

    #[test]
    fn symlinks_and_hidden() {
        for f in fixtures() {
            let g = |p, pol| get(&f, p, &[], pol);
            assert_eq!(g("/out", &STRICT), "404");
            assert_eq!(g("/.git/config", &STRICT), "404");
            assert_eq!(g("/to-hidden", &STRICT), "404");
            assert_eq!(g("/missing", &STRICT), "404");
            assert_eq!(g("/a.txt/x", &STRICT), "404");
            assert_eq!(g("/in", &STRICT), "b (in)");
            assert_eq!(g("/out", &OPEN), "outside (out)");
            assert_eq!(g("/.git/config", &OPEN), "secret (.git/config)");
            assert_eq!(g("/to-hidden", &OPEN), "secret (to-hidden)");
            // Unfinished uploads are never served, even with hidden names shown.
            assert_eq!(g("/.rangeserve-uploads/x.part", &OPEN), "404");
            assert_eq!(g("/sub/%2erangeserve-uploads/x.part", &OPEN), "404");
            assert_eq!(g("/to-uploads", &OPEN), "404");
        }
    }

    #[test]
    fn index_lookup() {
        for f in fixtures() {
            assert_eq!(
                get(&f, "/sub/", &["index.htm", "b.txt"], &STRICT),
                "b (sub/b.txt)"
            );
            assert_eq!(
                get(&f, "/", &["index.htm", "sub", "a.txt"], &STRICT),
                "a (a.txt)"
            );
            assert_eq!(get(&f, "/", &["out"], &STRICT), "dir ()");
        }
    }

    #[test]
    fn the_fallback_checks_what_it_opened() {
        // As if a directory inside the root was swapped for a link to the outside after the
        // path was checked: the open follows it, the check of the descriptor refuses it.
        let f = fixture(false);
        let base = f.root.path().parent().unwrap().to_path_buf();
        symlink(&base, f.root.path().join("swapped")).unwrap();
        let checked = f.root.path().join("swapped/secret.txt");
        assert!(matches!(
            open_verified(f.root.path(), &checked, &STRICT),
            Err(ResolveError::NotFound)
        ));
        assert!(open_verified(f.root.path(), &checked, &OPEN).is_ok());
        assert!(open_verified(f.root.path(), &f.root.path().join("a.txt"), &STRICT).is_ok());
    }

    #[test]
    fn a_watched_root_trusts_its_handles_until_told_of_a_change() {
        let f = fixture(true);
        let root = f.root.path().to_path_buf();
        let g = |p| get(&f, p, &[], &STRICT);
        let replace = |name: &str, with: &str| {
            std::fs::write(root.join("tmp"), with).unwrap();
            std::fs::rename(root.join("tmp"), root.join(name)).unwrap();
        };
        f.root.watching(true);
        assert_eq!(g("/a.txt"), "a (a.txt)");
        assert_eq!(g("/in"), "b (in)");
        replace("a.txt", "A2");
        if f.root.openat2 {
            // No report yet: the handle is used as it is, with no stat (not this version).
            assert_eq!(g("/a.txt"), "a (a.txt)");
        }
        f.root.changed(&root.join("a.txt"));
        assert_eq!(g("/a.txt"), "A2 (a.txt)");

        // Reached through a symlink: checked every time, since its target changes under
        // another name.
        assert_eq!(g("/sub/b.txt"), "b (sub/b.txt)");
        replace("sub/b.txt", "B2");
        assert_eq!(g("/in"), "B2 (in)");
        // A report on a directory drops what is under it.
        if f.root.openat2 {
            assert_eq!(g("/sub/b.txt"), "b (sub/b.txt)");
        }
        f.root.changed(&root.join("sub"));
        assert_eq!(g("/sub/b.txt"), "B2 (sub/b.txt)");

        // Without a watcher, every use is checked.
        f.root.watching(false);
        assert_eq!(g("/a.txt"), "A2 (a.txt)");
        replace("a.txt", "A3");
        assert_eq!(g("/a.txt"), "A3 (a.txt)");
    }

    #[test]
    fn a_handle_opened_while_a_change_was_reported_is_not_trusted() {
        let f = fixture(true);
        let h = &f.root.handles;
        h.watched.store(true, Ordering::Relaxed);
        let confirmed = |rel: &str| h.map.lock().unwrap()[key(Path::new(rel))].confirmed;
        let file = || File::open(f.root.path().join("a.txt")).unwrap();
        let meta = file().metadata().unwrap();
        let epoch = h.epoch.load(Ordering::Acquire);
        h.put(
            Path::new("a.txt"),
            (file(), meta.clone(), Via::Direct),
            (),
            epoch,
        );
        assert!(confirmed("a.txt").is_some());
        // A report between the open and the keeping: the next use checks.
        let epoch = h.epoch.load(Ordering::Acquire);
        h.forget(Path::new("elsewhere"));
        h.put(
            Path::new("a.txt"),
            (file(), meta.clone(), Via::Direct),
            (),
            epoch,
        );
        assert!(confirmed("a.txt").is_none());
        // Its next use checks it, and confirms it from then on.
        assert!(h.get(&f.root.dir, Path::new("a.txt")).is_some());
        assert!(confirmed("a.txt").is_some());
        let epoch = h.epoch.load(Ordering::Acquire);
        h.put(
            Path::new("a.txt"),
            (file(), meta.clone(), Via::Symlink),
            (),
            epoch,
        );
        assert!(confirmed("a.txt").is_none());
        // `forget` takes whole names: `a.txt` does not drop `a.txt.gz`.
        h.put(
            Path::new("a.txt.gz"),
            (file(), meta.clone(), Via::Direct),
            (),
            epoch,
        );
        h.forget(Path::new("a.txt"));
        assert!(h
            .map
            .lock()
            .unwrap()
            .contains_key(key(Path::new("a.txt.gz"))));
    }

    #[test]
    fn permission_denied_maps_to_403() {
        let e: ResolveError = io::Error::from(io::ErrorKind::PermissionDenied).into();
        assert!(matches!(e, ResolveError::Forbidden));
    }
}
