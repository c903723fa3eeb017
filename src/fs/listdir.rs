//! Reading one directory into a sorted page of entries, for listings (blocking I/O: run it on
//! the blocking pool).
//!
//! An entry is listed only when a request for it would be served:
//! - names that are not UTF-8 or hold a backslash (the resolver answers 400 for them), and names
//!   starting with a dot unless `show_hidden`, are left out;
//! - regular files and directories are listed as they are (`readdir`'s type, then one `fstatat`
//!   without following for the entries that need their size and time);
//! - a symlink is resolved exactly as a request for it would be (`resolve::open_beneath`): one
//!   that leaves the root (unless `follow_symlinks`), leads to a hidden name (unless
//!   `show_hidden`), dangles, or leads to neither a file nor a directory is left out; one that
//!   is kept shows its target's type, size and time;
//! - anything else (sockets, FIFOs, devices) is left out.
//!
//! Sorting needs every name, so the whole directory is read (at most [`MAX_ENTRIES`]); sorting
//! by name needs no metadata beyond the type, so only the entries of the page are stat'ed.

use std::cmp::Ordering;
use std::path::Path;

use rustix::fs::{statat, AtFlags, FileType};

use crate::fs::digest::{FileId, Sha256Sum};
use crate::fs::resolve::{open_beneath, Policy, Root};

/// What entries are sorted by (directories always come first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    Name,
    Size,
    Mtime,
}

impl Sort {
    pub fn as_str(self) -> &'static str {
        match self {
            Sort::Name => "name",
            Sort::Size => "size",
            Sort::Mtime => "mtime",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Asc,
    Desc,
}

impl Order {
    pub fn as_str(self) -> &'static str {
        match self {
            Order::Asc => "asc",
            Order::Desc => "desc",
        }
    }
}

/// A directory to list, as the resolver found it.
pub struct Dir<'a, D> {
    pub root: &'a Root<D>,
    pub policy: &'a Policy,
    /// The directory, open.
    pub dir: &'a std::fs::File,
    /// Its path under the root (UTF-8 segments, checked by the resolver); empty for the root.
    pub name: &'a Path,
}

/// The most entries read from one directory (about 100 bytes of memory each while the page is
/// built); past it the listing says it is truncated.
pub const MAX_ENTRIES: usize = 500_000;

/// One listed entry. `size` is `None` for directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub is_dir: bool,
    pub size: Option<u64>,
    /// Seconds and nanoseconds since the epoch (negative before 1970).
    pub mtime: (i64, u32),
    /// The SHA-256 of a file's content (its ETag), when the storage already knows it; never
    /// computed for a listing.
    pub sha256: Option<Sha256Sum>,
}

/// One page of a sorted directory.
#[derive(Debug)]
pub struct Page {
    pub entries: Vec<Entry>,
    /// Entries listed in the whole directory (as read; an entry that vanished since is dropped
    /// from its page but still counted).
    pub total: usize,
    /// The directory had more than [`MAX_ENTRIES`] entries; only those were sorted.
    pub truncated: bool,
}

/// An entry as read, before the metadata that only some entries need.
struct Raw {
    name: String,
    is_dir: bool,
    meta: Option<(u64, (i64, u32))>,
    /// The identity of the version (with `meta`, from the same `stat`), for its known hash.
    id: Option<FileId>,
    sha256: Option<Sha256Sum>,
}

/// The entries `offset..offset + limit` of `dir` in the order asked for, directories first;
/// each file's SHA-256 is what `known` says of its version (a look-up, never a hash).
pub fn page<D>(
    dir: &Dir<'_, D>,
    sort: Sort,
    order: Order,
    offset: usize,
    limit: usize,
    known: impl Fn(&FileId) -> Option<Sha256Sum>,
) -> std::io::Result<Page> {
    let mut all = Vec::new();
    let mut truncated = false;
    let mut entries = rustix::fs::Dir::read_from(dir.dir)?;
    while let Some(entry) = entries.read() {
        let entry = entry?;
        let bytes = entry.file_name().to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        let Ok(name) = std::str::from_utf8(bytes) else {
            continue;
        };
        if !listable(name, dir.policy.show_hidden) {
            continue;
        }
        if all.len() == MAX_ENTRIES {
            truncated = true;
            break;
        }
        let raw = match entry.file_type() {
            FileType::RegularFile => Some(Raw::unfilled(name, false)),
            FileType::Directory => Some(Raw::unfilled(name, true)),
            FileType::Symlink => through_link(dir, name),
            // Some file systems do not say the type in readdir.
            FileType::Unknown => match statat(dir.dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => match FileType::from_raw_mode(st.st_mode) {
                    FileType::Symlink => through_link(dir, name),
                    t => from_stat(name, t, FileId::of_stat(&st)),
                },
                Err(_) => None,
            },
            _ => None,
        };
        all.extend(raw);
    }
    let total = all.len();
    if sort != Sort::Name {
        // Every entry's size or time decides the order.
        all.retain_mut(|r| fill(dir, r));
    }
    let (lo, hi) = select_page(&mut all, offset, limit, |a, b| compare(a, b, sort, order));
    let mut entries = Vec::with_capacity(hi - lo);
    for mut raw in all.drain(lo..hi) {
        if fill(dir, &mut raw) {
            let (size, mtime) = raw.meta.expect("filled");
            let sha256 = match (&raw.id, raw.is_dir) {
                (Some(id), false) => known(id),
                _ => None,
            };
            entries.push(Entry {
                is_dir: raw.is_dir,
                size: (!raw.is_dir).then_some(size),
                mtime,
                name: raw.name,
                sha256,
            });
        }
    }
    Ok(Page {
        entries,
        total,
        truncated,
    })
}

/// Whether a name may be listed: a request for it would not be refused for the name itself (a
/// backslash is a 400) nor hidden (a leading dot, unless shown; the uploads' work directory
/// always).
pub fn listable(name: &str, show_hidden: bool) -> bool {
    !name.contains('\\')
        && (!name.starts_with('.') || (show_hidden && !crate::fs::resolve::is_reserved(name)))
}

/// The page `offset..offset + limit` of entries whose metadata is known (an object store's
/// listing), sorted as [`page`] sorts a directory. Directories have no size there; their time
/// is what the lister gave (the epoch when it has none).
pub fn page_of(
    entries: Vec<Entry>,
    sort: Sort,
    order: Order,
    offset: usize,
    limit: usize,
    truncated: bool,
) -> Page {
    let mut all: Vec<Raw> = entries
        .into_iter()
        .map(|e| Raw {
            meta: Some((e.size.unwrap_or(0), e.mtime)),
            name: e.name,
            is_dir: e.is_dir,
            id: None,
            sha256: e.sha256,
        })
        .collect();
    let total = all.len();
    let (lo, hi) = select_page(&mut all, offset, limit, |a, b| compare(a, b, sort, order));
    let entries = all
        .drain(lo..hi)
        .map(|raw| {
            let (size, mtime) = raw.meta.expect("known");
            Entry {
                is_dir: raw.is_dir,
                size: (!raw.is_dir).then_some(size),
                mtime,
                name: raw.name,
                sha256: raw.sha256,
            }
        })
        .collect();
    Page {
        entries,
        total,
        truncated,
    }
}

/// Put the entries of the page `offset..offset + limit` (of `all` sorted by `cmp`, a total
/// order) in place, sorted, and return their bounds. Only the page is sorted: the rest is
/// partitioned around it in linear time, which is most of the work saved on a large directory.
fn select_page<T>(
    all: &mut [T],
    offset: usize,
    limit: usize,
    mut cmp: impl FnMut(&T, &T) -> Ordering,
) -> (usize, usize) {
    let lo = offset.min(all.len());
    let hi = offset.saturating_add(limit).min(all.len());
    if lo > 0 && lo < all.len() {
        // Everything before `lo` now sorts before everything from `lo` on.
        all.select_nth_unstable_by(lo, &mut cmp);
    }
    let page = &mut all[lo..];
    let len = hi - lo;
    if len > 0 && len < page.len() {
        page.select_nth_unstable_by(len, &mut cmp);
    }
    page[..len].sort_unstable_by(&mut cmp);
    (lo, hi)
}

impl Raw {
    /// An entry whose metadata is read later (`fill`), if it is on the page.
    fn unfilled(name: &str, is_dir: bool) -> Raw {
        Raw {
            name: name.to_owned(),
            is_dir,
            meta: None,
            id: None,
            sha256: None,
        }
    }
}

fn from_stat(name: &str, t: FileType, id: FileId) -> Option<Raw> {
    let is_dir = match t {
        FileType::RegularFile => false,
        FileType::Directory => true,
        _ => return None,
    };
    Some(Raw {
        name: name.to_owned(),
        is_dir,
        meta: Some((id.size, (id.mtime.0, id.mtime.1 as u32))),
        id: Some(id),
        sha256: None,
    })
}

/// A symlink as a request for it would find it: its target's type and metadata, or nothing.
fn through_link<D>(dir: &Dir<'_, D>, name: &str) -> Option<Raw> {
    let (_file, meta) = open_beneath(dir.root, &dir.name.join(Path::new(name)), dir.policy).ok()?;
    let t = if meta.is_dir() {
        FileType::Directory
    } else if meta.is_file() {
        FileType::RegularFile
    } else {
        return None;
    };
    from_stat(name, t, FileId::of(&meta))
}

/// Give `raw` its size and time (one `fstatat`, not following: links already have theirs);
/// false when it is gone or no longer a file or directory.
fn fill<D>(dir: &Dir<'_, D>, raw: &mut Raw) -> bool {
    if raw.meta.is_some() {
        return true;
    }
    match statat(dir.dir, raw.name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => match from_stat(
            &raw.name,
            FileType::from_raw_mode(st.st_mode),
            FileId::of_stat(&st),
        ) {
            Some(r) if r.is_dir == raw.is_dir => {
                raw.meta = r.meta;
                raw.id = r.id;
                true
            }
            _ => false,
        },
        Err(_) => false,
    }
}

/// Directories first (in either order), then by the key asked for, then by name (bytewise: the
/// order of the UTF-8 names, the same on every request).
fn compare(a: &Raw, b: &Raw, sort: Sort, order: Order) -> Ordering {
    b.is_dir.cmp(&a.is_dir).then_with(|| {
        let key = match sort {
            Sort::Name => Ordering::Equal,
            // Directories have no size: among them, the name decides.
            Sort::Size if a.is_dir => Ordering::Equal,
            Sort::Size => a.meta.map(|m| m.0).cmp(&b.meta.map(|m| m.0)),
            Sort::Mtime => a.meta.map(|m| m.1).cmp(&b.meta.map(|m| m.1)),
        };
        let o = key.then_with(|| a.name.cmp(&b.name));
        match order {
            Order::Asc => o,
            Order::Desc => o.reverse(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn listable_names() {
        assert!(listable("a", false));
        assert!(!listable(".a", false));
        assert!(listable(".a", true));
        assert!(!listable("a\\b", true));
        assert!(!listable(".rangeserve-uploads", true));
    }

    proptest! {
        /// The page is exactly that slice of the fully sorted list.
        #[test]
        fn select_page_is_a_slice_of_the_sorted_list(
            mut shuffled in proptest::collection::btree_set(any::<u16>(), 0..300)
                .prop_map(|s| s.into_iter().collect::<Vec<_>>())
                .prop_shuffle(),
            offset in 0usize..350,
            limit in 1usize..100,
        ) {
            let mut sorted = shuffled.clone();
            sorted.sort_unstable();
            let (lo, hi) = select_page(&mut shuffled, offset, limit, |a, b| a.cmp(b));
            let start = offset.min(sorted.len());
            let end = (offset + limit).min(sorted.len());
            prop_assert_eq!((lo, hi), (start, end));
            prop_assert_eq!(&shuffled[lo..hi], &sorted[start..end]);
        }
    }
}
