//! Open handles are reused for files that have not changed, and never once they have: a
//! replaced, rewritten, deleted or re-routed file is served as it is now.
use crate::common::*;

use std::os::unix::fs::symlink;
use std::time::Duration;

fn assert_serves(s: &Server, path: &str, bytes: &[u8]) {
    let r = s.get(path, &[]);
    assert_eq!(r.status, 200, "{path}");
    assert_eq!(r.body, bytes, "{path}");
    assert_eq!(r.header("etag"), Some(etag_of(bytes).as_str()), "{path}");
}

#[test]
fn a_file_replaced_by_rename_is_served_new() {
    let s = Server::start();
    let old = pattern(5000);
    let new: Vec<u8> = old.iter().map(|b| !b).collect();
    s.file("f.bin", &old);
    assert_serves(&s, "/f.bin", &old);
    assert_serves(&s, "/f.bin", &old); // now from the cached handle
    s.file("f.bin.tmp", &new);
    std::fs::rename(s.root.join("f.bin.tmp"), s.root.join("f.bin")).unwrap();
    assert_serves(&s, "/f.bin", &new);
}

#[test]
fn a_file_rewritten_in_place_with_its_old_mtime_is_served_new() {
    let s = Server::start();
    let old = pattern(5000);
    let new: Vec<u8> = old.iter().map(|b| b ^ 0x33).collect();
    let p = s.file("f.bin", &old);
    assert_serves(&s, "/f.bin", &old);
    // Put the old mtime back until ctime (coarse clock ticks) has visibly moved.
    rewrite_keeping_mtime(&p, &new);
    // Same inode, size and mtime: only ctime tells, and the server must see it.
    assert_serves(&s, "/f.bin", &new);
    let r = s.get("/f.bin", &[("Range", "bytes=10-19")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &new[10..20]);
}

#[test]
fn a_deleted_file_is_gone() {
    let s = Server::start();
    let data = pattern(100);
    let p = s.file("f.bin", &data);
    assert_serves(&s, "/f.bin", &data);
    std::fs::remove_file(p).unwrap();
    assert_eq!(s.get("/f.bin", &[]).status, 404);
}

#[test]
fn a_directory_swapped_for_a_symlink_out_of_the_root_is_not_followed() {
    let s = Server::start();
    let inside = pattern(300);
    s.file("d/f.bin", &inside);
    assert_serves(&s, "/d/f.bin", &inside);
    // Outside the root, a directory with a file of the same name.
    let outside = s.dir.path().join("elsewhere");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("f.bin"), b"OUTSIDE-SENTINEL").unwrap();
    std::fs::rename(s.root.join("d"), s.dir.path().join("old-d")).unwrap();
    symlink(&outside, s.root.join("d")).unwrap();
    let r = s.get("/d/f.bin", &[]);
    assert_eq!(r.status, 404);
    assert!(!r.body.windows(7).any(|w| w == b"OUTSIDE"));
}

/// With `watch`, a cached handle is used without a `stat` until the watcher reports a change
/// (or a second passes): while a small file (kept in memory) and a larger one (read from the
/// descriptor) are replaced and rewritten, every answer is exactly one version, its ETag that
/// version's hash, and each new version is served once the watcher has seen it.
#[test]
fn with_watch_every_answer_is_one_whole_version_while_files_change() {
    let s = Server::start_with(|c| c.watch = true);
    for (name, len) in [("small.bin", 3000), ("big.bin", 300_000)] {
        let path = format!("/{name}");
        let version = |i: u8| -> Vec<u8> { pattern(len).iter().map(|b| b ^ i).collect() };
        let mut written = vec![version(0)];
        s.file(name, &written[0]);
        for i in 1..=30u8 {
            let new = version(i);
            if i % 2 == 0 {
                // In place, same size: the same inode, only mtime and ctime move.
                rewrite_keeping_mtime(&s.root.join(name), &new);
            } else {
                s.file(&format!("{name}.tmp"), &new);
                std::fs::rename(s.root.join(format!("{name}.tmp")), s.root.join(name)).unwrap();
            }
            written.push(new.clone());
            wait_until(
                &format!("{name} version {i}"),
                Duration::from_secs(10),
                || {
                    let r = s.get(&path, &[]);
                    assert_eq!(r.status, 200, "{name}");
                    assert_eq!(r.header("etag"), Some(etag_of(&r.body).as_str()), "{name}");
                    assert!(written.contains(&r.body), "{name}: bytes of no version");
                    r.body == new
                },
            );
            // A conditional request with the old ETag is not answered 304 any more.
            let old = etag_of(&written[written.len() - 2]);
            assert_eq!(s.get(&path, &[("If-None-Match", &old)]).status, 200);
        }
    }
}
