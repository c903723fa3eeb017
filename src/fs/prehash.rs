//! Hashing ahead of requests, so that the first request for a big file does not wait for its
//! hash: at start-up, every file under the root, one at a time (`prehash`); and, while serving,
//! each file that appears or changes (`watch`, in `fs::watch`). Both go through the digest cache,
//! so a version that is already known (from memory or from the state file) costs nothing, and
//! both only see what the server would serve: regular files, no symlinks, no hidden names unless
//! `show_hidden`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::fs::digest::{Digest, DigestCache, FileId};
use crate::fs::walk::{open_regular, walk};
use crate::fs::watch;

/// The background hashers started by [`start`]; dropping this stops them (prehash after the file
/// it is on, the watcher at once).
pub struct Background {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Start what is asked for on the current runtime: the start-up walk of `root` (`prehash`) and
/// the watcher (`watch`). Neither blocks the caller nor serving; failures are logged.
pub fn start<D: Digest>(
    cache: &Arc<DigestCache<D>>,
    root: &Path,
    show_hidden: bool,
    prehash: bool,
    watch: bool,
    told: Arc<dyn crate::fs::resolve::Watched>,
) -> Background {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    if prehash {
        let (cache, root, stop) = (cache.clone(), root.to_path_buf(), stop.clone());
        let rt = tokio::runtime::Handle::current();
        tasks.push(tokio::task::spawn_blocking(move || {
            prehash_root(&rt, &cache, &root, show_hidden, &stop)
        }));
    }
    if watch {
        tasks.push(watch::spawn(
            cache.clone(),
            root.to_path_buf(),
            show_hidden,
            told,
        ));
    }
    Background { stop, tasks }
}

/// How often prehash reports its progress, at most.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Walk the root twice, on a blocking-pool thread: once to count, once to hash, one file at a
/// time (so serving keeps the other cores), each hash waited for before the next file.
fn prehash_root<D: Digest>(
    rt: &tokio::runtime::Handle,
    cache: &DigestCache<D>,
    root: &Path,
    show_hidden: bool,
    stop: &AtomicBool,
) {
    let started = Instant::now();
    tracing::info!(root = %root.display(), "prehash: started");
    let (mut total_files, mut total_bytes) = (0u64, 0u64);
    walk(root, show_hidden, &mut |_, meta| {
        total_files += 1;
        total_bytes += meta.len();
        !stop.load(Ordering::Relaxed)
    });
    tracing::info!(
        "prehash: {total_files} files, {} to check",
        megabytes(total_bytes)
    );
    let (computed_before, hashed_before) = (cache.computations(), cache.hashed_bytes());
    // Only bytes hashed now make a rate: files already known cost a stat, not a read.
    let (mut files, mut bytes, mut skipped) = (0u64, 0u64, 0u64);
    let mut last_report = Instant::now();
    let finished = walk(root, show_hidden, &mut |path, _| {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let hashed = open_regular(&path).and_then(|(file, meta)| {
            rt.block_on(cache.digest(Arc::new(file), FileId::of(&meta)))
                .map(|_| meta.len())
        });
        match hashed {
            Ok(len) => bytes += len,
            Err(e) => {
                skipped += 1;
                tracing::debug!(path = %path.display(), "prehash: skipped: {e}");
            }
        }
        files += 1;
        if last_report.elapsed() >= PROGRESS_EVERY {
            last_report = Instant::now();
            let hashed_bytes = cache.hashed_bytes().saturating_sub(hashed_before);
            tracing::info!(
                "prehash: {files}/{total_files} files, {}/{} checked, {} hashed at {}",
                megabytes(bytes),
                megabytes(total_bytes),
                megabytes(hashed_bytes),
                rate(hashed_bytes, started.elapsed())
            );
        }
        true
    });
    let took = started.elapsed();
    let hashed = cache.computations().saturating_sub(computed_before);
    let hashed_bytes = cache.hashed_bytes().saturating_sub(hashed_before);
    let known = files.saturating_sub(hashed + skipped);
    if finished {
        let speed = match hashed_bytes {
            0 => String::new(),
            n => format!(" at {}", rate(n, took)),
        };
        tracing::info!(
            "prehash: done in {:.1} s: {files} files found, {hashed} hashed ({}{speed}), {known} already known, {skipped} skipped",
            took.as_secs_f64(),
            megabytes(hashed_bytes),
        );
    } else {
        tracing::info!("prehash: stopped after {files} of {total_files} files");
    }
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn rate(bytes: u64, took: Duration) -> String {
    format!(
        "{:.1} MB/s",
        bytes as f64 / 1e6 / took.as_secs_f64().max(1e-3)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn walk_sees_regular_files_only_and_no_hidden_ones() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::write(root.join("top"), b"1").unwrap();
        std::fs::write(root.join("a/b/deep"), b"22").unwrap();
        std::fs::write(root.join(".env"), b"333").unwrap();
        std::fs::write(root.join(".git/config"), b"4444").unwrap();
        std::fs::write(dir.path().join("outside"), b"55555").unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside"), root.join("link")).unwrap();
        std::os::unix::fs::symlink(dir.path(), root.join("dirlink")).unwrap();
        let fifo = std::ffi::CString::new(root.join("fifo").into_os_string().into_encoded_bytes())
            .unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);

        let seen = |show_hidden| {
            let mut seen = Vec::new();
            assert!(walk(&root, show_hidden, &mut |p, m| {
                seen.push((p.strip_prefix(&root).unwrap().to_owned(), m.len()));
                true
            }));
            seen.sort();
            seen
        };
        let p = PathBuf::from;
        assert_eq!(seen(false), vec![(p("a/b/deep"), 2), (p("top"), 1)]);
        assert_eq!(
            seen(true),
            vec![
                (p(".env"), 3),
                (p(".git/config"), 4),
                (p("a/b/deep"), 2),
                (p("top"), 1)
            ]
        );
        // Stopping early.
        let mut n = 0;
        assert!(!walk(&root, false, &mut |_, _| {
            n += 1;
            false
        }));
        assert_eq!(n, 1);

        assert!(open_regular(&root.join("top")).is_ok());
        assert!(open_regular(&root.join("link")).is_err());
        assert!(open_regular(&root.join("fifo")).is_err());
        assert!(open_regular(&root.join("a")).is_err());
    }
}
