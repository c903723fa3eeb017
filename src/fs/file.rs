//! Reading a file's bytes the way the server does: positional reads (one open handle is shared
//! by concurrent responses), a non-blocking read that only takes what the page cache holds, and
//! the identity check that says whether the file is still the version a response describes.

use std::fs::File;
use std::fs::Metadata;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::Arc;

/// Which version of which file: if any of these changes, the content may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    pub(crate) size: u64,
    pub(crate) mtime: (i64, i64),
    pub(crate) ctime: (i64, i64),
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

    /// The same identity from a `stat` made without `std` (`rustix`), for the cheap re-check
    /// of a cached open file.
    pub fn of_stat(st: &rustix::fs::Stat) -> FileId {
        FileId {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size as u64,
            mtime: (st.st_mtime, st.st_mtime_nsec as i64),
            ctime: (st.st_ctime, st.st_ctime_nsec as i64),
        }
    }

    /// Equal in everything but the ctime (which unlinking a name also changes).
    pub fn same_but_ctime(&self, other: &FileId) -> bool {
        FileId {
            ctime: other.ctime,
            ..*self
        } == *other
    }

    /// Whether an open file that had this identity with `links` names still holds the same
    /// bytes, now that it has identity `now` with `links_now` names. A write, truncation or
    /// `touch` changes the ctime (and usually mtime and size). Removing a name (a delete, a
    /// rename over it) changes the ctime too but not the bytes: with fewer links than before,
    /// the ctime is not compared.
    pub fn still(&self, links: u64, now: &FileId, links_now: u64) -> bool {
        now == self || (links_now < links && now.same_but_ctime(self))
    }
}

/// `preadv2(RWF_NOWAIT)`: up to `buf.len()` bytes at `offset` if the page cache holds them, or
/// `None` at once ("read on the blocking pool instead"). A page-cached read on the async worker
/// costs microseconds; a hand-off to the blocking pool costs a context switch or two, which
/// dominated the profile with many concurrent downloads. The buffer may be uninitialized: the
/// bytes read are initialized, the rest untouched.
pub fn read_at_nowait(
    file: &File,
    buf: &mut [MaybeUninit<u8>],
    offset: u64,
) -> Option<io::Result<usize>> {
    let iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let offset = libc::off_t::try_from(offset).ok()?;
    // SAFETY: one iovec over `buf`, valid for writes of its length (the kernel only writes, so
    // uninitialized memory is fine), on our own descriptor.
    let n = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, offset, libc::RWF_NOWAIT) };
    if n >= 0 {
        return Some(Ok(n as usize));
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        // Not cached (EAGAIN), or no RWF_NOWAIT here: take the blocking path.
        Some(libc::EAGAIN | libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL) => None,
        Some(libc::EINTR) => None,
        _ => Some(Err(e)),
    }
}

/// Read exactly `buf.len()` bytes at `offset`, blocking; a file that ends first is an
/// `UnexpectedEof` error.
pub fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => return Err(ended_early()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The error of a file that ended before the bytes a response promised.
pub fn ended_early() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "file is shorter than when the response started",
    )
}

/// A file as it was when its response was decided: the open file and its identity then.
pub struct FileVersion {
    pub file: Arc<File>,
    pub id: FileId,
    /// Its link count then: a name removed since (deleted, renamed over) changes the ctime too.
    pub links: u64,
}

impl FileVersion {
    /// The version of `file` that `meta` (its metadata, just read) describes.
    pub fn new(file: Arc<File>, meta: &std::fs::Metadata) -> FileVersion {
        FileVersion {
            file,
            id: FileId::of(meta),
            links: meta.nlink(),
        }
    }

    /// Whether the file is still this version ([`FileId::still`]). (A write within the same
    /// clock tick as the previous change can escape the check on kernels with coarse
    /// timestamps.)
    pub fn unchanged(&self) -> io::Result<bool> {
        let meta = self.file.metadata()?;
        Ok(self.id.still(self.links, &FileId::of(&meta), meta.nlink()))
    }
}
