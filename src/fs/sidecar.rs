//! Precompressed sidecars: `name.br`, `name.zst`, `name.gz` beside a file. Which coding is
//! wanted is the engine's business (`http::encoding`); this module only looks for the files.
//!
//! A sidecar is opened like any file (`resolve::open_file`: beneath the root, symlinks checked,
//! the open-handle cache) and must be a regular file. Its name is the resolved file's name plus
//! the suffix, so the hidden rule has already been applied to the original name. Nothing is
//! cached about absent sidecars: a failed `openat2` costs about a microsecond, and a sidecar
//! that appears is served from the next request on.

use std::fs::{File, Metadata};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::fs::resolve::{self, Policy, ResolveError, Root};

/// The sidecar `name` + `suffix`, if there is a regular file by that name. One that cannot be
/// used (unreadable, failing) is logged and treated as absent: the file itself is served.
pub fn open<D: Clone>(
    root: &Root<D>,
    policy: &Policy,
    name: &Path,
    suffix: &str,
) -> Option<(Arc<File>, Metadata, resolve::Memo)> {
    let mut sidecar = name.as_os_str().to_owned();
    sidecar.push(suffix);
    let sidecar = PathBuf::from(sidecar);
    match resolve::open_file(root, &sidecar, policy) {
        Ok(found) => Some(found),
        Err(ResolveError::NotFound) => None,
        Err(ResolveError::Io(e)) => {
            tracing::warn!(sidecar = %sidecar.display(), "sidecar not usable: {e}");
            None
        }
        Err(e) => {
            tracing::debug!(sidecar = %sidecar.display(), "sidecar not usable: {e:?}");
            None
        }
    }
}
