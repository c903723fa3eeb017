//! Where an upload's bytes end up: the rules for its name under the upload directory (those of
//! a download path), and the atomic rename that publishes it, one directory at a time beneath
//! the upload directory and never through a symlink.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;

use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

pub use crate::fs::resolve::{is_reserved, RESERVED as WORK_DIR};

/// Longest name a segment may have (NAME_MAX on Linux file systems).
const MAX_SEGMENT: usize = 255;
/// Longest relative name an upload may ask for.
const MAX_NAME: usize = 1024;

/// The name under the upload directory that an upload asks for (`name`: already decoded, `/`
/// separates directories): its segments joined with `/`, empty and `.` segments dropped. The
/// rules of a download path: no `..`, backslash, NUL or other control character, no hidden
/// segment unless `show_hidden`, never the reserved directory; and it must name a file (not end
/// with `/`). The error says why, for a 400.
pub fn target_name(name: &str, show_hidden: bool) -> Result<String, &'static str> {
    if name.len() > MAX_NAME {
        return Err("the name is too long");
    }
    if name.ends_with('/') {
        return Err("the name ends with a slash: it names a directory");
    }
    let mut out = String::with_capacity(name.len());
    for seg in name.split('/') {
        match seg {
            "" | "." => continue,
            ".." => return Err("`..` in the name"),
            s if s.bytes().any(|b| b == b'\\' || b < 0x20 || b == 0x7f) => {
                return Err("a backslash or control character in the name")
            }
            s if is_reserved(s) => return Err("a reserved name"),
            s if s.starts_with('.') && !show_hidden => {
                return Err("a hidden name (starting with a dot) would not be served")
            }
            s if s.len() > MAX_SEGMENT => return Err("a path segment is too long"),
            s => {
                if !out.is_empty() {
                    out.push('/');
                }
                out.push_str(s);
            }
        }
    }
    if out.is_empty() {
        return Err("the name is empty");
    }
    Ok(out)
}

/// Why a target cannot be written.
#[derive(Debug)]
pub enum PlaceError {
    /// Something is already at the name (a file, a directory, a link) and may not be replaced.
    Exists,
    /// A file, or a symlink, stands where a directory of the name should be.
    InTheWay,
    /// Anything else.
    Io(io::Error),
}

impl From<Errno> for PlaceError {
    fn from(e: Errno) -> PlaceError {
        PlaceError::Io(e.into())
    }
}

/// The directory that holds `target` (a [`target_name`]) under `dir`, opened one segment at a
/// time with `O_NOFOLLOW` (a symlink on the way is refused, `..` cannot occur), creating the
/// missing ones when `create`; and the target's last segment. `Ok(None)`: a directory is
/// missing (and `create` is off).
fn parent<'t>(
    dir: &File,
    target: &'t str,
    create: bool,
) -> Result<Option<(OwnedFd, &'t str)>, PlaceError> {
    let mut segments: Vec<&str> = target.split('/').collect();
    let last = segments.pop().expect("split yields one segment at least");
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut cur = rustix::io::dup(dir)?;
    for seg in segments {
        let next = match rustix::fs::openat(&cur, seg, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) if create => {
                match rustix::fs::mkdirat(&cur, seg, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                rustix::fs::openat(&cur, seg, flags, Mode::empty()).map_err(in_the_way)?
            }
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(in_the_way(e)),
        };
        cur = next;
    }
    Ok(Some((cur, last)))
}

/// ELOOP (a symlink, with O_NOFOLLOW) and ENOTDIR (a file) are something in the way.
fn in_the_way(e: Errno) -> PlaceError {
    match e {
        Errno::LOOP | Errno::NOTDIR => PlaceError::InTheWay,
        e => e.into(),
    }
}

/// What is at `target` under `dir` (not following a final symlink): nothing (`None`), a
/// directory (`Some(true)`) or something else (`Some(false)`); an error if something that is
/// not a directory stands in the way.
pub fn exists(dir: &File, target: &str) -> Result<Option<bool>, PlaceError> {
    let Some((parent, name)) = parent(dir, target, false)? else {
        return Ok(None);
    };
    match rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(
            rustix::fs::FileType::from_raw_mode(st.st_mode).is_dir(),
        )),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Publish the file `from` (a name in `work`, the work directory) as `target` under `dir`:
/// missing directories created, then one rename, so the file appears whole or not at all.
/// Unless `replace`, an existing name is left alone ([`PlaceError::Exists`], decided by the
/// kernel at the rename: `RENAME_NOREPLACE`, or `link` then `unlink` where the file system
/// lacks it). With `replace`, an existing file is replaced atomically (a reader that has it
/// open keeps reading the old bytes); a directory is never replaced. The parent directory is
/// synced, so the new name survives a crash. Returns whether a file was replaced.
pub fn publish(
    work: &File,
    from: &str,
    dir: &File,
    target: &str,
    replace: bool,
) -> Result<bool, PlaceError> {
    let (parent, name) = parent(dir, target, true)?.expect("created");
    let replaced = match rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if rustix::fs::FileType::from_raw_mode(st.st_mode).is_dir() => {
            return Err(PlaceError::Exists)
        }
        Ok(_) if !replace => return Err(PlaceError::Exists),
        Ok(_) => true,
        Err(Errno::NOENT) => false,
        Err(e) => return Err(e.into()),
    };
    if replace {
        match rustix::fs::renameat(work, from, &parent, name) {
            Ok(()) => {}
            Err(Errno::ISDIR | Errno::NOTEMPTY | Errno::EXIST) => return Err(PlaceError::Exists),
            Err(e) => return Err(e.into()),
        }
    } else {
        match rustix::fs::renameat_with(work, from, &parent, name, RenameFlags::NOREPLACE) {
            Ok(()) => {}
            Err(Errno::EXIST) => return Err(PlaceError::Exists),
            Err(Errno::INVAL | Errno::NOSYS) => {
                match rustix::fs::linkat(work, from, &parent, name, AtFlags::empty()) {
                    Ok(()) => {}
                    Err(Errno::EXIST) => return Err(PlaceError::Exists),
                    Err(e) => return Err(e.into()),
                }
                rustix::fs::unlinkat(work, from, AtFlags::empty())?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    rustix::fs::fsync(&parent)?;
    Ok(replaced)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_names_follow_the_download_rules() {
        let ok = |n| target_name(n, false).unwrap();
        assert_eq!(ok("a.txt"), "a.txt");
        assert_eq!(ok("dir/sub/a.txt"), "dir/sub/a.txt");
        assert_eq!(ok("/a//./b"), "a/b");
        assert_eq!(ok("été.txt"), "été.txt");
        for bad in [
            "",
            "/",
            ".",
            "a/",
            "../a",
            "a/../b",
            "a\\b",
            "a\0b",
            "a\nb",
            ".env",
            "d/.git/x",
            ".rangeserve-uploads/x",
            "a/.rangeserve-uploads",
        ] {
            assert!(target_name(bad, false).is_err(), "{bad:?}");
        }
        assert_eq!(target_name(".env", true).unwrap(), ".env");
        assert!(target_name(".rangeserve-uploads/x", true).is_err());
        assert!(target_name(&"a".repeat(256), false).is_err());
    }

    #[test]
    fn publish_creates_directories_refuses_links_and_keeps_existing_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir_path = tmp.path().join("dir");
        let work_path = dir_path.join(WORK_DIR);
        std::fs::create_dir_all(&work_path).unwrap();
        let open = |p: &std::path::Path| File::open(p).unwrap();
        let (dir, work) = (open(&dir_path), open(&work_path));
        std::fs::write(work_path.join("p1"), "one").unwrap();
        assert!(!publish(&work, "p1", &dir, "a/b/c.txt", false).unwrap());
        assert_eq!(std::fs::read(dir_path.join("a/b/c.txt")).unwrap(), b"one");
        assert!(!work_path.join("p1").exists());
        assert_eq!(exists(&dir, "a/b/c.txt").unwrap(), Some(false));
        assert_eq!(exists(&dir, "a/b").unwrap(), Some(true));
        assert_eq!(exists(&dir, "a/x/c.txt").unwrap(), None);
        // Not replaced without `replace`; replaced with it.
        std::fs::write(work_path.join("p2"), "two").unwrap();
        assert!(matches!(
            publish(&work, "p2", &dir, "a/b/c.txt", false),
            Err(PlaceError::Exists)
        ));
        assert!(publish(&work, "p2", &dir, "a/b/c.txt", true).unwrap());
        assert_eq!(std::fs::read(dir_path.join("a/b/c.txt")).unwrap(), b"two");
        // A directory is never replaced.
        std::fs::write(work_path.join("p3"), "three").unwrap();
        assert!(matches!(
            publish(&work, "p3", &dir, "a/b", true),
            Err(PlaceError::Exists)
        ));
        // A symlink on the way is refused, even one that stays inside.
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, dir_path.join("out")).unwrap();
        std::os::unix::fs::symlink(dir_path.join("a"), dir_path.join("in")).unwrap();
        for via in ["out/x.txt", "in/x.txt", "a/b/c.txt/x"] {
            assert!(
                matches!(
                    publish(&work, "p3", &dir, via, true),
                    Err(PlaceError::InTheWay)
                ),
                "{via}"
            );
        }
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    }
}
