//! `state_dir` of the binary: one inside the root is refused at start-up. (Hashes ahead of
//! requests: `http/digests.rs`.)

use crate::common::{free_port, process};

#[test]
fn state_dir_inside_the_root_is_refused_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap().join("root");
    std::fs::create_dir(&root).unwrap();
    let port = free_port();
    let inside = root.join("state");
    let mut c = process::command(dir.path());
    c.env("RANGESERVE_STATE_DIR", &inside)
        .arg("--root")
        .arg(&root)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"));
    let (status, stdout, stderr) = process::run_to_exit(c, dir.path());
    let out = std::process::Output {
        status,
        stdout: stdout.into_bytes(),
        stderr: stderr.into_bytes(),
    };
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err:?}");
    assert!(err.contains("state_dir"), "{err}");
    assert!(out.stdout.is_empty());
    // Refused before anything was created in the root.
    assert!(!inside.exists());
}
