//! Precompressed sidecars: `name.br`, `name.zst`, `name.gz` beside a file, served in its place
//! when the request accepts that coding (`precompressed = true`). Which coding is wanted is
//! `http::encoding`'s business; this module looks for the files.
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
use crate::http::encoding::{Accept, Coding, Negotiated};

/// The file to serve for `name` (already open as `file`): the best acceptable sidecar, or the
/// file itself; and whether the file has any sidecar (so that the response varies).
///
/// At most three lookups: the preferred codings in order until one exists, then, if none was
/// chosen, the others until one exists (only to know whether to send `Vary`).
pub fn select(
    root: &Root,
    policy: &Policy,
    name: &Path,
    accept: &Accept,
    file: Arc<File>,
    meta: Metadata,
) -> (Arc<File>, Metadata, Negotiated) {
    let mut tried = [false; 3];
    for coding in accept.preferred() {
        tried[coding as usize] = true;
        if let Some((f, m)) = open(root, policy, name, coding) {
            let chosen = Negotiated {
                coding: Some(coding),
                vary: true,
            };
            return (f, m, chosen);
        }
    }
    let vary = Coding::ALL
        .into_iter()
        .filter(|c| !tried[*c as usize])
        .any(|c| open(root, policy, name, c).is_some());
    (file, meta, Negotiated { coding: None, vary })
}

/// The sidecar of `name` for `coding`, if there is a regular file by that name.
fn open(
    root: &Root,
    policy: &Policy,
    name: &Path,
    coding: Coding,
) -> Option<(Arc<File>, Metadata)> {
    let mut sidecar = name.as_os_str().to_owned();
    sidecar.push(coding.suffix());
    let sidecar = PathBuf::from(sidecar);
    match resolve::open_file(root, &sidecar, policy) {
        Ok(found) => Some(found),
        Err(ResolveError::NotFound) => None,
        // Unreadable or failing: serve the file itself rather than an error.
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
