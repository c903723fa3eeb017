//! Walking the root for the background hashers: every regular file the server would serve,
//! never through a symlink, hidden names only when shown.

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Visit every regular file under `dir` (depth first) with its `lstat` metadata, never
/// following symlinks and skipping names that start with a dot unless `show_hidden` (and the
/// uploads' work directory always: its files are unfinished). Unreadable
/// directories are skipped. Stops early, returning false, when `visit` returns false.
pub fn walk(
    dir: &Path,
    show_hidden: bool,
    visit: &mut dyn FnMut(PathBuf, &Metadata) -> bool,
) -> bool {
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!(dir = %dir.display(), "cannot list: {e}");
                continue;
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let dotted = name.as_encoded_bytes().starts_with(b".");
            if dotted
                && (!show_hidden || name.to_str().is_some_and(crate::fs::resolve::is_reserved))
            {
                continue;
            }
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if kind.is_file() {
                let Ok(meta) = entry.metadata() else {
                    continue;
                };
                if !visit(entry.path(), &meta) {
                    return false;
                }
            }
        }
    }
    true
}

/// Open `path` to hash it: only a regular file, and not through a symlink in its last component
/// (O_NOFOLLOW). O_NONBLOCK so that a FIFO swapped in meanwhile cannot hang the open.
pub fn open_regular(path: &Path) -> io::Result<(File, Metadata)> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok((file, meta))
}
