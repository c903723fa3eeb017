//! `repr_digest` of the binary: from the environment and the flag. (Repr-Digest on the wire:
//! `http/repr_digest.rs`.)

use crate::common::process::*;
use crate::common::repr_digest;

#[test]
fn the_switch_from_environment_and_flag() {
    let site = Site::empty();
    let root = site.root();
    std::fs::write(root.join("f.txt"), b"hello\n").unwrap();
    let want = repr_digest(b"hello\n");
    let by_env = site.serve(|c| {
        c.env("RANGESERVE_REPR_DIGEST", "false");
    });
    assert_eq!(by_env.get("/f.txt", &[]).header("repr-digest"), None);
    assert_eq!(
        by_env
            .get("/f.txt", &[("Want-Repr-Digest", "sha-256=1")])
            .header("repr-digest"),
        Some(want.as_str())
    );
    // The flag wins over the variable.
    let by_flag = site.serve(|c| {
        c.arg("--repr-digest=true");
        c.env("RANGESERVE_REPR_DIGEST", "false");
    });
    assert_eq!(
        by_flag.get("/f.txt", &[]).header("repr-digest"),
        Some(want.as_str())
    );
}
