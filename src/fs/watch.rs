//! Watching the root (inotify through the `notify` crate) so that a file dropped in or changed
//! is hashed before anyone asks for it.
//!
//! Events only mark a path as pending with the time of its latest event; a task hashes each
//! path once it has been quiet for `QUIET`, so a file being written is hashed once, after its
//! last write, not once per write. The pending set is capped. A directory created or moved in
//! is walked, since the files it already holds raise no events of their own. Hashing is
//! sequential and goes through the digest cache, like prehash.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, CreateKind, EventKind, ModifyKind, RenameMode};
use notify::{RecursiveMode, Watcher as _};

use crate::fs::digest::{Digest, DigestCache, FileId};
use crate::fs::resolve::Watched;
use crate::fs::walk::{open_regular, walk};

/// A path is hashed once it has had no event for this long.
const QUIET: Duration = Duration::from_millis(500);
/// While paths wait, at most one pass over them this often: each pass scans the whole pending
/// set, and a stream of events (a tree copied in) has a deadline every few microseconds.
const PASS_EVERY: Duration = Duration::from_millis(100);
/// Most paths waiting at once; events for further paths are dropped (with a warning).
const MAX_PENDING: usize = 100_000;

#[derive(Default)]
struct Pending {
    /// Path -> (time of its latest event, walk it if it is a directory).
    paths: HashMap<PathBuf, (Instant, bool)>,
    /// Whether the cap was hit since the set was last empty (to warn once).
    overflowed: bool,
}

impl Pending {
    /// Note an event for `path`; false when the set is full.
    fn mark(&mut self, path: PathBuf, walk_dir: bool, now: Instant) -> bool {
        if let Some(p) = self.paths.get_mut(&path) {
            *p = (now, p.1 || walk_dir);
            return true;
        }
        if self.paths.len() >= MAX_PENDING {
            if !self.overflowed {
                self.overflowed = true;
                tracing::warn!(
                    "watch: more than {MAX_PENDING} paths waiting to be hashed; further changes are \
                     hashed when first requested"
                );
            }
            return false;
        }
        self.paths.insert(path, (now, walk_dir));
        true
    }

    /// When the next path will have been quiet long enough; None while nothing waits.
    fn next_due(&self) -> Option<Instant> {
        self.paths.values().map(|(last, _)| *last + QUIET).min()
    }

    /// Remove and return the paths that have been quiet long enough.
    fn take_quiet(&mut self, now: Instant) -> Vec<(PathBuf, bool)> {
        let mut due = Vec::new();
        self.paths.retain(|path, (last, walk_dir)| {
            if now.duration_since(*last) >= QUIET {
                due.push((path.clone(), *walk_dir));
                false
            } else {
                true
            }
        });
        if self.paths.is_empty() {
            self.overflowed = false;
        }
        due
    }
}

/// Whether `path` lies under `root` with no hidden component (unless `show_hidden`), and not
/// in the uploads' work directory (its files are unfinished).
fn visible(root: &Path, path: &Path, show_hidden: bool) -> bool {
    let Ok(rel) = path.strip_prefix(root) else {
        return false;
    };
    rel.components().all(|c| match c {
        Component::Normal(name) => {
            !name.as_encoded_bytes().starts_with(b".")
                || (show_hidden && !name.to_str().is_some_and(crate::fs::resolve::is_reserved))
        }
        _ => show_hidden,
    })
}

/// What an event asks for: None to ignore it, Some(true) when its path, if a directory, must be
/// walked (it arrived with its content), Some(false) to look at a file.
fn wanted(kind: &EventKind) -> Option<bool> {
    match kind {
        EventKind::Create(CreateKind::File) => Some(false),
        EventKind::Create(_) => Some(true),
        // The old name of a rename is gone; the new one is handled by its `To` event.
        EventKind::Modify(ModifyKind::Name(RenameMode::From | RenameMode::Both)) => None,
        EventKind::Modify(ModifyKind::Name(_)) => Some(true),
        EventKind::Modify(_) => Some(false),
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Some(false),
        // Opens and reads (ours included), removals.
        _ => None,
    }
}

/// Whether an event may mean that what a path names changed (its content, its metadata, or
/// which file it is): everything but opens and reads, ours included.
fn changes(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Start watching `root` in a task; it logs a warning and ends if the watcher cannot start.
/// `told` hears of every change (and whether the watch is whole).
pub fn spawn<D: Digest>(
    cache: Arc<DigestCache<D>>,
    root: PathBuf,
    show_hidden: bool,
    told: Arc<dyn Watched>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let pending = Arc::new(Mutex::new(Pending::default()));
        // Told of every path marked, so that an idle watcher sleeps without a timer.
        let wake = Arc::new(tokio::sync::Notify::new());
        // Adding the watches walks every directory: a blocking job.
        let (p, r, w) = (pending.clone(), root.clone(), wake.clone());
        let watcher =
            tokio::task::spawn_blocking(move || start_watcher(p, w, r, show_hidden, told)).await;
        // Held for as long as the task runs: dropping it stops the watcher's thread.
        let _watcher = match watcher {
            Ok(Ok(w)) => w,
            Ok(Err(e)) => {
                tracing::warn!(root = %root.display(), "watch: cannot watch the root, files will be hashed when first requested: {e}");
                return;
            }
            Err(e) => {
                tracing::warn!("watch: {e}");
                return;
            }
        };
        tracing::info!(root = %root.display(), "watch: watching for new and changed files");
        let mut last_pass = Instant::now();
        loop {
            // Asleep until a path is marked, then until the first one has been quiet for
            // `QUIET` (and `PASS_EVERY` has passed since the last pass). Later events only add
            // paths due later, or push a deadline back, so the sleep never ends too late; a
            // mark made while nothing waits leaves a permit in `wake`, so none is missed.
            let next = pending.lock().unwrap().next_due();
            match next {
                None => wake.notified().await,
                Some(due) => tokio::time::sleep_until(due.max(last_pass + PASS_EVERY).into()).await,
            }
            last_pass = Instant::now();
            let due = pending.lock().unwrap().take_quiet(last_pass);
            for (path, walk_dir) in due {
                hash_path(&cache, &pending, path, walk_dir, show_hidden).await;
            }
        }
    })
}

fn start_watcher(
    pending: Arc<Mutex<Pending>>,
    wake: Arc<tokio::sync::Notify>,
    root: PathBuf,
    show_hidden: bool,
    told: Arc<dyn Watched>,
) -> notify::Result<notify::RecommendedWatcher> {
    let watched = root.clone();
    let tell = told.clone();
    let mut watcher = notify::RecommendedWatcher::new(
        move |event: notify::Result<notify::Event>| {
            let event = match event {
                Ok(e) => e,
                Err(e) => {
                    // E.g. a new directory past the inotify watch limit: changes may now go
                    // unreported, so nothing is taken on the watcher's word any more.
                    tell.watching(false);
                    tracing::warn!("watch: {e}");
                    return;
                }
            };
            if event.need_rescan() {
                tell.changed(&root);
            } else if changes(&event.kind) {
                for path in &event.paths {
                    tell.changed(path);
                }
            }
            let now = Instant::now();
            let mut pending = pending.lock().unwrap();
            let mut marked = false;
            if event.need_rescan() {
                tracing::warn!("watch: events were lost; walking the root again");
                marked |= pending.mark(root.clone(), true, now);
            }
            if let Some(walk_dir) = wanted(&event.kind) {
                for path in event.paths {
                    if visible(&root, &path, show_hidden) {
                        marked |= pending.mark(path, walk_dir, now);
                    }
                }
            }
            drop(pending);
            if marked {
                wake.notify_one();
            }
        },
        notify::Config::default().with_follow_symlinks(false),
    )?;
    watcher.watch(&watched, RecursiveMode::Recursive)?;
    told.watching(true);
    Ok(watcher)
}

/// Hash one quiet path, or, for a directory that arrived with content, mark its files pending.
async fn hash_path<D: Digest>(
    cache: &DigestCache<D>,
    pending: &Arc<Mutex<Pending>>,
    path: PathBuf,
    walk_dir: bool,
    show_hidden: bool,
) {
    let pending = pending.clone();
    let shown = path.display().to_string();
    let opened = tokio::task::spawn_blocking(move || {
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            if walk_dir {
                let now = Instant::now();
                walk(&path, show_hidden, &mut |file, _| {
                    pending.lock().unwrap().mark(file, false, now)
                });
            }
            return Ok(None);
        }
        open_regular(&path).map(Some)
    })
    .await
    .map_err(std::io::Error::other)
    .and_then(|r| r);
    let result = match opened {
        Ok(None) => return,
        Ok(Some((file, meta))) => cache.digest(Arc::new(file), FileId::of(&meta)).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(d) => tracing::debug!(path = %shown, sha256 = %hex::encode(d.sha256()), "watch: hashed"),
        Err(e) => tracing::debug!(path = %shown, "watch: skipped: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a watcher told, in order.
    struct Told(Mutex<std::sync::mpsc::Sender<String>>);

    impl Watched for Told {
        fn watching(&self, yes: bool) {
            self.0
                .lock()
                .unwrap()
                .send(format!("watching {yes}"))
                .unwrap();
        }
        fn changed(&self, path: &Path) {
            let _ = self.0.lock().unwrap().send(path.display().to_string());
        }
    }

    #[test]
    fn every_change_is_told_and_reads_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap().join("root");
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::fs::write(root.join("d/old.bin"), b"old").unwrap();
        std::fs::write(root.join("read.bin"), b"read").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let told: Arc<dyn Watched> = Arc::new(Told(Mutex::new(tx)));
        let pending = Arc::new(Mutex::new(Pending::default()));
        let wake = Arc::new(tokio::sync::Notify::new());
        let _w = start_watcher(pending, wake, root.clone(), false, told).unwrap();
        let next = || rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(next(), "watching true");
        // Reads (ours too) are not changes: the first report is the rename after them.
        assert_eq!(std::fs::read(root.join("read.bin")).unwrap(), b"read");
        std::fs::write(dir.path().join("new.bin"), b"new").unwrap();
        std::fs::rename(dir.path().join("new.bin"), root.join("d/old.bin")).unwrap();
        assert_eq!(next(), root.join("d/old.bin").display().to_string());
        // A rename of the directory names both of its names; hidden names are told too.
        std::fs::rename(root.join("d"), root.join(".e")).unwrap();
        let mut names = vec![next(), next()];
        names.sort();
        assert_eq!(
            names,
            [".e", "d"].map(|n| root.join(n).display().to_string())
        );
    }

    #[test]
    fn pending_paths_wait_until_quiet_and_are_capped() {
        let t0 = Instant::now();
        let mut p = Pending::default();
        assert!(p.mark("/r/a".into(), false, t0));
        assert!(p.mark("/r/b".into(), true, t0));
        // A new event on `a` pushes its deadline back.
        assert_eq!(p.next_due(), Some(t0 + QUIET));
        assert!(p.mark("/r/a".into(), false, t0 + QUIET / 2));
        assert!(p.take_quiet(t0 + QUIET / 2).is_empty());
        assert_eq!(p.take_quiet(t0 + QUIET), vec![("/r/b".into(), true)]);
        // The next wake-up is `a`'s pushed-back deadline.
        assert_eq!(p.next_due(), Some(t0 + QUIET / 2 + QUIET));
        assert_eq!(
            p.take_quiet(t0 + QUIET / 2 + QUIET),
            vec![("/r/a".into(), false)]
        );
        assert!(p.paths.is_empty());
        assert_eq!(p.next_due(), None);

        for i in 0..MAX_PENDING {
            assert!(p.mark(format!("/r/{i}").into(), false, t0));
        }
        assert!(!p.mark("/r/one-too-many".into(), false, t0));
        // Paths already waiting are still updated.
        assert!(p.mark("/r/0".into(), true, t0));
        assert_eq!(p.take_quiet(t0 + QUIET).len(), MAX_PENDING);
        assert!(p.mark("/r/one-too-many".into(), false, t0));
    }

    #[test]
    fn hidden_and_outside_paths_are_not_watched() {
        let root = Path::new("/srv/root");
        assert!(visible(root, Path::new("/srv/root/a/b.bin"), false));
        assert!(!visible(root, Path::new("/srv/root/.git/x"), false));
        assert!(!visible(root, Path::new("/srv/root/a/.b.swp"), false));
        assert!(visible(root, Path::new("/srv/root/a/.b.swp"), true));
        assert!(!visible(root, Path::new("/srv/other/a"), true));
        let part = Path::new("/srv/root/in/.rangeserve-uploads/x.part");
        assert!(!visible(root, part, true));
    }

    #[test]
    fn which_events_matter() {
        use notify::event::{DataChange, MetadataKind, RemoveKind};
        assert_eq!(wanted(&EventKind::Create(CreateKind::File)), Some(false));
        assert_eq!(wanted(&EventKind::Create(CreateKind::Folder)), Some(true));
        assert_eq!(
            wanted(&EventKind::Modify(ModifyKind::Data(DataChange::Any))),
            Some(false)
        );
        assert_eq!(
            wanted(&EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any))),
            Some(false)
        );
        assert_eq!(
            wanted(&EventKind::Modify(ModifyKind::Name(RenameMode::To))),
            Some(true)
        );
        assert_eq!(
            wanted(&EventKind::Modify(ModifyKind::Name(RenameMode::From))),
            None
        );
        assert_eq!(
            wanted(&EventKind::Access(AccessKind::Close(AccessMode::Write))),
            Some(false)
        );
        assert_eq!(
            wanted(&EventKind::Access(AccessKind::Open(AccessMode::Any))),
            None
        );
        assert_eq!(wanted(&EventKind::Remove(RemoveKind::File)), None);
    }
}
