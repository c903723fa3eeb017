//! `state_dir` of the binary: one inside the root is refused at start-up. (Hashes ahead of
//! requests: `http/digests.rs`.)

use crate::common::process::{config_error, Site};

#[test]
fn state_dir_inside_the_root_is_refused_at_start_up() {
    let site = Site::empty();
    let root = site.root().canonicalize().unwrap();
    let inside = root.join("state");
    let err = config_error(site.path(), |c| {
        c.env("RANGESERVE_STATE_DIR", &inside)
            .arg("--root")
            .arg(&root);
    });
    assert!(err.contains("state_dir"), "{err}");
    // Refused before anything was created in the root.
    assert!(!inside.exists());
}
