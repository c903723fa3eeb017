//! File hashes ahead of requests: the digest cache persisted in `state_dir` across restarts,
//! `prehash` at start-up and `watch` while serving. The in-process server here keeps its
//! `AppState`, so a test can read the cache's count of hash computations: a request that finds
//! its hash ready leaves the count unchanged.

use crate::common::*;

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Hash computations started by this server so far.
fn computations(s: &Server) -> u64 {
    s.files.hash_computations()
}

/// Wait (at most 30 s) until the count of computations reaches `n`.
fn wait_computations(s: &Server, n: u64) {
    wait_until(
        &format!("{n} computations ({} so far)", computations(s)),
        Duration::from_secs(30),
        || computations(s) >= n,
    );
}

/// `<tmp>/root` and `<tmp>/state`, both existing.
fn dirs() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().canonicalize().unwrap();
    let (root, state) = (base.join("root"), base.join("state"));
    std::fs::create_dir(&root).unwrap();
    std::fs::create_dir(&state).unwrap();
    (dir, root, state)
}

/// The state line the server should have written for `path` holding `bytes`, built here from
/// the file's metadata and the test's own SHA-256.
fn expected_line(path: &Path, bytes: &[u8]) -> String {
    let m = std::fs::metadata(path).unwrap();
    format!(
        "{} {} {} {} {} {} {} {}",
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
        sha256_hex(bytes)
    )
}

fn state_lines(state: &Path) -> Vec<String> {
    std::fs::read_to_string(state.join("digests-v1"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Same length as `pattern(len)`, other bytes.
fn other_pattern(len: usize) -> Vec<u8> {
    pattern(len).into_iter().map(|b| b ^ 0x5a).collect()
}

#[test]
fn hashes_persist_across_a_restart_and_changed_files_are_hashed_again() {
    let (_dir, root, state) = dirs();
    let files = ["a.bin", "b.bin", "sub/c.bin"];
    let mut data: Vec<Vec<u8>> = (0..3).map(|i| pattern(300_000 + i)).collect();
    std::fs::create_dir(root.join("sub")).unwrap();
    for (name, bytes) in files.iter().zip(&data) {
        std::fs::write(root.join(name), bytes).unwrap();
    }

    let run = Server::start_over(&root, |c| c.state_dir = Some(state.clone()));
    for (name, bytes) in files.iter().zip(&data) {
        let r = run.get(&format!("/{name}"), &[]);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("etag"), Some(etag_of(bytes).as_str()));
    }
    assert_eq!(computations(&run), 3);
    drop(run);

    // Every hash is on disk, with the file's exact identity.
    let lines = state_lines(&state);
    for (name, bytes) in files.iter().zip(&data) {
        let want = expected_line(&root.join(name), bytes);
        assert!(lines.contains(&want), "{want:?} not in {lines:?}");
    }
    assert_eq!(lines.len(), 3, "{lines:?}");

    // b.bin is rewritten while the server is down.
    data[1] = other_pattern(300_001);
    rewrite_keeping_mtime(&root.join("b.bin"), &data[1]);

    let run = Server::start_over(&root, |c| c.state_dir = Some(state.clone()));
    // Unchanged: served with its persisted hash, nothing computed.
    let r = run.get("/a.bin", &[]);
    assert_eq!(r.header("etag"), Some(etag_of(&data[0]).as_str()));
    assert_eq!(r.body, data[0]);
    assert_eq!(computations(&run), 0);
    // Changed while down: the old line does not match its new ctime.
    let r = run.get("/b.bin", &[]);
    assert_eq!(r.header("etag"), Some(etag_of(&data[1]).as_str()));
    assert_eq!(computations(&run), 1);
    // Changed after the restart, its old hash loaded in memory: not used either.
    data[2] = other_pattern(300_002);
    rewrite_keeping_mtime(&root.join("sub/c.bin"), &data[2]);
    let r = run.get("/sub/c.bin", &[]);
    assert_eq!(r.header("etag"), Some(etag_of(&data[2]).as_str()));
    assert_eq!(r.body, data[2]);
    assert_eq!(computations(&run), 2);
    for (name, bytes) in files.iter().zip(&data) {
        let r = run.get(&format!("/{name}"), &[]);
        assert_eq!(r.header("etag"), Some(etag_of(bytes).as_str()));
    }
    assert_eq!(computations(&run), 2);
    drop(run);

    let lines = state_lines(&state);
    for (name, bytes) in files.iter().zip(&data) {
        let want = expected_line(&root.join(name), bytes);
        assert!(lines.contains(&want), "{want:?} not in {lines:?}");
    }
}

#[test]
fn a_corrupt_state_file_is_ignored_and_compacted_away() {
    let (_dir, root, state) = dirs();
    let data = pattern(5000);
    std::fs::write(root.join("f.bin"), &data).unwrap();
    // A well-formed line for a file version that is not there: kept, harmless.
    let unrelated = format!("1 2 3 4 5 6 7 {}", "ab".repeat(32));
    let mut garbage = Vec::new();
    garbage.extend_from_slice(b"not a state line\n\xff\xfe\x00binary\n\n1 2 3\n");
    garbage.extend_from_slice(format!("{unrelated}\n").as_bytes());
    garbage.extend_from_slice(b"9 9 9 9 9 9 9 nothex\n1 2 3 4 5 6 7 8 9\n");
    // A torn last line, as a crash mid-append would leave.
    garbage.extend_from_slice(&expected_line(&root.join("f.bin"), &data).as_bytes()[..30]);
    std::fs::write(state.join("digests-v1"), &garbage).unwrap();

    let run = Server::start_over(&root, |c| c.state_dir = Some(state.clone()));
    // Loaded and rewritten at start-up: only the well-formed line is left.
    assert_eq!(state_lines(&state), vec![unrelated.clone()]);
    let r = run.get("/f.bin", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("etag"), Some(etag_of(&data).as_str()));
    assert_eq!(r.body, data);
    assert_eq!(computations(&run), 1);
    drop(run);
    assert_eq!(
        state_lines(&state),
        vec![unrelated, expected_line(&root.join("f.bin"), &data)]
    );
}

#[test]
fn prehash_hashes_every_servable_file_before_any_request() {
    let (dir, root, state) = dirs();
    let big = pattern(8 << 20);
    let small = b"small file\n".to_vec();
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    std::fs::write(root.join("big.bin"), &big).unwrap();
    std::fs::write(root.join("sub/deeper/small.txt"), &small).unwrap();
    // Not servable, so not hashed: hidden names, a symlink out of the root.
    std::fs::write(root.join(".hidden"), b"secret").unwrap();
    std::fs::create_dir(root.join(".git")).unwrap();
    std::fs::write(root.join(".git/config"), b"[core]").unwrap();
    let outside = dir.path().join("outside.bin");
    std::fs::write(&outside, b"outside").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("link.bin")).unwrap();

    let run = Server::start_over(&root, |c| {
        c.state_dir = Some(state.clone());
        c.prehash = true;
    });
    wait_computations(&run, 2);
    // Give a wrong extra hash (hidden, symlink) time to show up.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(computations(&run), 2);
    wait_until("two state lines", Duration::from_secs(10), || {
        state_lines(&state).len() >= 2
    });
    let mut lines = state_lines(&state);
    lines.sort();
    let mut want = vec![
        expected_line(&root.join("big.bin"), &big),
        expected_line(&root.join("sub/deeper/small.txt"), &small),
    ];
    want.sort();
    assert_eq!(lines, want);

    // The first requests find the hashes ready.
    let r = run.get("/big.bin", &[]);
    assert_eq!(r.header("etag"), Some(etag_of(&big).as_str()));
    assert_eq!(r.body, big);
    let r = run.get("/sub/deeper/small.txt", &[]);
    assert_eq!(r.header("etag"), Some(etag_of(&small).as_str()));
    assert_eq!(computations(&run), 2);
    drop(run);

    // After a restart prehash finds everything known: nothing is hashed again.
    let run = Server::start_over(&root, |c| {
        c.state_dir = Some(state.clone());
        c.prehash = true;
    });
    std::thread::sleep(Duration::from_millis(500));
    let r = run.get("/big.bin", &[]);
    assert_eq!(r.header("etag"), Some(etag_of(&big).as_str()));
    assert_eq!(computations(&run), 0);
}

#[test]
fn watch_hashes_new_and_changed_files_before_any_request() {
    let (dir, root, _state) = dirs();
    let run = Server::start_over(&root, |c| c.watch = true);

    // The watcher starts in the background: drop probe files in until one is hashed.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut probe = 0;
    while computations(&run) == 0 {
        assert!(
            Instant::now() < deadline,
            "the watcher never hashed a probe"
        );
        std::fs::write(root.join(format!("probe-{probe}")), probe.to_string()).unwrap();
        probe += 1;
        std::thread::sleep(Duration::from_millis(1000));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let base = computations(&run);

    // Written in pieces with pauses shorter than the quiet period: hashed once, complete.
    let data = pattern(4 << 20);
    let mut f = std::fs::File::create(root.join("new.bin")).unwrap();
    for chunk in data.chunks(1 << 20) {
        f.write_all(chunk).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(f);
    wait_computations(&run, base + 1);
    let r = run.get("/new.bin", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("etag"), Some(etag_of(&data).as_str()));
    assert_eq!(r.body, data);
    assert_eq!(computations(&run), base + 1);

    // Changed in place: hashed again without a request.
    let changed = other_pattern(4 << 20);
    rewrite_keeping_mtime(&root.join("new.bin"), &changed);
    wait_computations(&run, base + 2);
    let r = run.get("/new.bin", &[]);
    assert_eq!(r.header("etag"), Some(etag_of(&changed).as_str()));
    assert_eq!(computations(&run), base + 2);

    // Moved in from outside the root: a file, and a directory holding one.
    let moved = pattern(1000);
    std::fs::write(dir.path().join("moved.bin"), &moved).unwrap();
    std::fs::create_dir_all(dir.path().join("movedir/inner")).unwrap();
    let inner = pattern(2000);
    std::fs::write(dir.path().join("movedir/inner/x.bin"), &inner).unwrap();
    std::fs::rename(dir.path().join("moved.bin"), root.join("moved.bin")).unwrap();
    std::fs::rename(dir.path().join("movedir"), root.join("movedir")).unwrap();
    wait_computations(&run, base + 4);
    let r = run.get("/moved.bin", &[]);
    assert_eq!(r.header("etag"), Some(etag_of(&moved).as_str()));
    let r = run.get("/movedir/inner/x.bin", &[]);
    assert_eq!(r.header("etag"), Some(etag_of(&inner).as_str()));
    assert_eq!(computations(&run), base + 4);

    // Hidden files are not hashed. A visible marker written after them is hashed after
    // anything they would have caused (their quiet period ends first), so once the marker's
    // hash is in, the count tells.
    std::fs::write(root.join(".swap"), b"hidden").unwrap();
    std::fs::create_dir(root.join(".cache")).unwrap();
    std::fs::write(root.join(".cache/x"), b"hidden").unwrap();
    std::fs::write(root.join("marker.bin"), b"visible").unwrap();
    wait_computations(&run, base + 5);
    assert_eq!(computations(&run), base + 5);
}
