//! `state_dir` of the binary: one inside the root is refused at start-up. (Hashes ahead of
//! requests: `http/digests.rs`.)

use crate::common::process::config_error;

#[test]
fn state_dir_inside_the_root_is_refused_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap().join("root");
    std::fs::create_dir(&root).unwrap();
    let inside = root.join("state");
    let err = config_error(dir.path(), |c| {
        c.env("RANGESERVE_STATE_DIR", &inside)
            .arg("--root")
            .arg(&root);
    });
    assert!(err.contains("state_dir"), "{err}");
    // Refused before anything was created in the root.
    assert!(!inside.exists());
}
