//! The storage interface the engine reads through. The local disk ([`Disk`](super::Disk)) is
//! one implementation; an object store is the next. A storage resolves a request path into a
//! file (or a directory to list, or a redirect), turns a file into a [`Representation`] with
//! its validators, reads byte ranges of it through its [`Source`], and lists directories.
//!
//! Everything a storage returns is already checked: a name it hands back is inside its root,
//! free of `..`, and not hidden unless hidden names are shown.

use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::HeaderValue;

use crate::http::header_rules::PathHeaders;

pub use crate::fs::listdir::{Entry, Order, Page, Sort};

/// Where representations come from.
pub trait Storage: Send + Sync + 'static {
    /// A file that was found, not yet made into a representation (e.g. open, with metadata).
    type File: Send + 'static;
    /// A directory that was found, to list.
    type Dir: Send + 'static;

    /// Get ready to serve (open the root, reach the store, load the persisted hashes, start
    /// hashing ahead) unless that was done; the error says why nothing can be served. Without
    /// this call it happens at the first request.
    fn start(&self) -> impl Future<Output = io::Result<()>> + Send {
        async { Ok(()) }
    }

    /// Hash computations started so far (persisted hashes loaded at start-up do not count).
    fn hash_computations(&self) -> u64 {
        0
    }

    /// A file was just written under the root (an upload), `meta` its metadata after the last
    /// change, and its bytes hash to `sha256` (computed as they were written): remember it, so
    /// that the first request for it does not hash it. Whether it was remembered; storages
    /// other than the disk ignore it. Blocking (the state file is appended to).
    #[doc(hidden)]
    fn remember_hash(
        &self,
        meta: &std::fs::Metadata,
        sha256: crate::fs::digest::Sha256Sum,
    ) -> bool {
        let _ = (meta, sha256);
        false
    }

    /// Resolve `path`, the request path as received (percent-encoded, starting with `/`). A
    /// directory asked for with a trailing slash gives its index file, or itself to list.
    fn find(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<Found<Self::File, Self::Dir>, OpenError>> + Send;

    /// The sidecar of `file` (found as `name`) whose name adds `suffix` (`.gz`, ...), if there
    /// is a usable one; it keeps the original's `Content-Type`.
    fn sidecar(
        &self,
        file: &Self::File,
        name: &std::path::Path,
        suffix: &str,
    ) -> impl Future<Output = Option<Self::File>> + Send;

    /// The representation of a found file: length, validators (its strong content-hash ETag
    /// and Last-Modified), type, `Repr-Digest`, and the source of its bytes.
    fn open(
        &self,
        file: Self::File,
    ) -> impl Future<Output = Result<Representation, OpenError>> + Send;

    /// [`find`](Storage::find) then [`open`](Storage::open), when the answer is at hand
    /// without waiting (on disk: the root is open and the file version's hash is known): the
    /// representation and the file's name under the root, or why there is none. `None`: ask
    /// `find` and `open` (also for a directory, which may be listed).
    fn open_now(&self, path: &str) -> Option<Result<(Representation, PathBuf), OpenError>> {
        let _ = path;
        None
    }

    /// The representation of the file at `path` as the storage last saw it, from memory alone
    /// (a bucket: the object's latest known version, whose hash is known), and the file's name
    /// under the root; `None`: ask `find` and `open`. It may be out of date: the caller uses it
    /// only for a response whose first read of the source ([`Source::open_run`], tied to that
    /// version) succeeds before the response head is sent, and asks `find` and `open` for any
    /// other (one without a body, or whose first read finds the file [`changed`]).
    fn open_remembered(&self, path: &str) -> Option<(Representation, PathBuf)> {
        let _ = path;
        None
    }

    /// Entries `offset..offset + limit` of `dir`, sorted (directories first), listing only what
    /// a request would serve.
    fn list(
        &self,
        dir: Self::Dir,
        sort: Sort,
        order: Order,
        offset: usize,
        limit: usize,
    ) -> impl Future<Output = io::Result<Page>> + Send;
}

/// The settings of a storage about names and hashes, which a disk and a bucket share.
#[derive(Debug, Clone)]
pub struct NameSettings {
    /// Serve names that start with a dot.
    pub show_hidden: bool,
    /// Names tried, in order, for a directory asked for with a trailing slash.
    pub index_files: Vec<String>,
    /// Where content hashes persist across restarts.
    pub state_dir: Option<PathBuf>,
    /// Hash everything in the background at start.
    pub prehash: bool,
    /// Hash new or changed files before they are asked for.
    pub watch: bool,
}

impl Default for NameSettings {
    fn default() -> NameSettings {
        NameSettings {
            show_hidden: false,
            index_files: vec!["index.html".to_string()],
            state_dir: None,
            prehash: false,
            watch: false,
        }
    }
}

/// A storage with [`NameSettings`] (the builder methods of `ServeFiles` set them).
pub trait Names {
    /// Its settings, to change before it starts.
    fn names(&mut self) -> &mut NameSettings;
}

/// How many versions a storage keeps the hash of in memory (about 100 bytes each).
pub(crate) const DIGEST_CACHE_ENTRIES: usize = 16_384;

/// A version's hash and the strong ETag (quoted lowercase hex) and `Repr-Digest` value
/// made from it, built once per version.
#[derive(Clone)]
pub(crate) struct FileDigest {
    sha256: crate::fs::digest::Sha256Sum,
    pub(crate) etag: HeaderValue,
    pub(crate) repr_digest: HeaderValue,
}

impl crate::fs::digest::Digest for FileDigest {
    fn from_sha256(sha256: crate::fs::digest::Sha256Sum) -> FileDigest {
        let etag = format!("\"{}\"", hex::encode(sha256));
        FileDigest {
            sha256,
            etag: HeaderValue::from_str(&etag).expect("hex is a valid header value"),
            repr_digest: crate::http::repr_digest::value(&sha256),
        }
    }

    fn sha256(&self) -> &crate::fs::digest::Sha256Sum {
        &self.sha256
    }
}

/// What a request path leads to.
pub enum Found<F, D> {
    /// A file, and its name relative to the root (segments decoded; its extension gives the
    /// type, its last segment the `?download` name).
    File {
        /// The file.
        file: F,
        /// Its name under the root.
        name: PathBuf,
    },
    /// A directory asked for without the trailing slash: redirect to this path (as received,
    /// empty segments dropped, ending in `/`).
    AddSlash(String),
    /// A directory asked for with the trailing slash that has none of the index files, and its
    /// name relative to the root (empty for the root).
    Dir {
        /// The directory.
        dir: D,
        /// Its name under the root.
        name: PathBuf,
    },
}

/// Why there is no representation.
#[derive(Debug)]
pub enum OpenError {
    /// 400: the path is not one we accept (it never reached the storage).
    BadPath(&'static str),
    /// 404: absent, hidden, a symlink out of the root, not a file or directory.
    NotFound,
    /// 403: the storage refused us.
    Forbidden,
    /// 503: the file changed while its hash was computed (or, twice over, between its lookup
    /// and its body's first read); asking again will do.
    Changing,
    /// 502, or 504 when it timed out: the store behind us failed (unreachable, answering
    /// 5xx) after its retries, with the error for the log.
    Upstream(io::Error),
    /// 500: anything else, with the error for the log.
    Io(io::Error),
}

impl OpenError {
    /// As an I/O error, for a caller that only reports it.
    pub fn into_io(self) -> io::Error {
        match self {
            OpenError::Io(e) | OpenError::Upstream(e) => e,
            e => io::Error::other(format!("{e:?}")),
        }
    }
}

/// Everything the engine needs to answer a GET or HEAD.
#[derive(Clone)]
pub struct Representation {
    /// Its length in bytes.
    pub len: u64,
    /// Strong entity-tag, quoted.
    pub etag: Option<HeaderValue>,
    /// When it was last modified (`Last-Modified`).
    pub modified: Option<SystemTime>,
    /// Full `Content-Type` value (with charset where it applies).
    pub content_type: HeaderValue,
    /// Where its bytes are read from.
    pub source: Arc<dyn Source>,
    /// `Repr-Digest` of the whole representation (`sha-256=:...:`), when its hash is known.
    pub repr_digest: Option<HeaderValue>,
    /// Headers from the configuration for this path and from the query (`?download`).
    pub path_headers: PathHeaders,
}

/// A read in progress.
pub type ReadFuture = Pin<Box<dyn Future<Output = io::Result<Bytes>> + Send>>;

/// A [`Source::open_run`] in progress.
pub type OpenFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

/// What a [`Source::read_piped`] gave.
pub enum Piped {
    /// Bytes in memory, as [`Source::read`] gives them.
    Bytes(Bytes),
    /// Bytes moved into a pipe, to be `splice`d on.
    Pipe {
        /// Holds the pipe open.
        keep: Arc<dyn Send + Sync>,
        /// Its read end.
        fd: RawFd,
        /// How many bytes were moved into it.
        len: usize,
    },
}

/// A [`Source::read_piped`] in progress.
pub type PipedFuture = Pin<Box<dyn Future<Output = io::Result<Piped>> + Send>>;

/// Whether a read failed because the bytes are no longer the version it was tied to: replaced
/// (a store's failed precondition, `Interrupted`) or gone (`NotFound`).
pub fn changed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::Interrupted | io::ErrorKind::NotFound
    )
}

/// The bytes of one representation, as they were when its response was decided.
pub trait Source: Send + Sync + 'static {
    /// The bytes at `offset`: `len` of them, or fewer (at least one) when that is what is at
    /// hand (a source that streams hands on each piece the store sent as it is, uncopied); the
    /// response reads on from where they end. A source that ends first fails with
    /// `UnexpectedEof`. The response goes on reading forward up to `until` (skipping at most
    /// 256 KiB between two ranges), so a source that streams (an object store) may ask for all
    /// of `offset..until` at once and serve the next reads from it. Called when
    /// [`read_at_nowait`](Source::read_at_nowait) could not serve the bytes.
    fn read(self: Arc<Self>, offset: u64, len: usize, until: u64) -> ReadFuture;

    /// Whether [`read_at_nowait`](Source::read_at_nowait) may serve bytes at all (a file, whose
    /// bytes may be in the page cache; bytes in memory). `false`, the default, skips it and
    /// the buffer it would fill: every read goes through [`read`](Source::read).
    fn reads_nowait(&self) -> bool {
        false
    }

    /// Up to `buf.len()` bytes at `offset`, only if that will not block (the bytes are in
    /// memory): `None` means "use [`read`](Source::read)". The buffer may be uninitialized: the
    /// bytes read are initialized, the rest untouched.
    fn read_at_nowait(
        &self,
        buf: &mut [MaybeUninit<u8>],
        offset: u64,
    ) -> Option<io::Result<usize>> {
        let _ = (buf, offset);
        None
    }

    /// Start the read of `offset..until` (the first run of a response's body) now, before the
    /// response head is sent, for a source whose reads can find that the bytes are no longer
    /// the version the response describes: the future fails as the first read would (an error
    /// for which [`changed`] holds when they are not), and otherwise leaves the read open for
    /// [`read`](Source::read) to go on with. `None`: nothing to check before the head (reads
    /// that fail later abort the response), the default.
    ///
    /// `piped`: the body will read through [`read_piped`](Source::read_piped).
    fn open_run(self: Arc<Self>, offset: u64, until: u64, piped: bool) -> Option<OpenFuture> {
        let _ = (offset, until, piped);
        None
    }

    /// Whether [`read_piped`](Source::read_piped) may move bytes into a pipe rather than user
    /// space (an object store's socket spliced into the client's).
    fn pipes(&self) -> bool {
        false
    }

    /// As [`read`](Source::read), but the source may move the bytes (`len` at most, at least
    /// one) into a pipe of its own instead of handing them over ([`Piped::Pipe`]), for a
    /// connection that `splice`s them on. Called only when everything moved into the pipe
    /// before has been taken out of it (the pipe is empty). Only for sources that
    /// [`pipes`](Source::pipes).
    fn read_piped(self: Arc<Self>, offset: u64, len: usize, until: u64) -> PipedFuture {
        let read = self.read(offset, len, until);
        Box::pin(async move { read.await.map(Piped::Bytes) })
    }

    /// The open descriptor the bytes can be sent from with `sendfile`, if there is one.
    fn raw_fd(&self) -> Option<RawFd> {
        None
    }

    /// Whether the bytes are still the version the response describes (its ETag, length and
    /// Last-Modified). Checked after the last byte of a response was read and before it goes
    /// out; `false` aborts the response. Sources whose every read is already tied to the
    /// version (or that never change) need not override it.
    fn unchanged(&self) -> io::Result<bool> {
        Ok(true)
    }
}

/// A read of `len` bytes at `offset` with a blocking positional `read_exact`, on the blocking
/// pool: the [`Source::read`] of sources whose reads block. The buffer is allocated here, on
/// the caller's (async) thread, which also frees it once the bytes are written: no per-thread
/// allocator caches of the blocking pool fill up.
pub fn read_on_blocking_pool<S: ?Sized + Send + Sync + 'static>(
    source: Arc<S>,
    offset: u64,
    len: usize,
    read_exact: fn(&S, &mut [u8], u64) -> io::Result<()>,
) -> ReadFuture {
    let mut buf = bytes::BytesMut::zeroed(len);
    let task = tokio::task::spawn_blocking(move || {
        read_exact(&source, &mut buf, offset).map(|()| buf.freeze())
    });
    Box::pin(async move { task.await.map_err(io::Error::other)? })
}
