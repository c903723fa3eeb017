//! `listing` of the binary: from the file, the environment and the flag. (Listings on the
//! wire: `http/listing.rs`.)

use crate::common::process::*;

#[test]
fn config_key_env_and_flag() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("root/d")).unwrap();
    std::fs::write(dir.path().join("root/d/f"), b"f").unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        "root = \"root\"\nlisting = true\n",
    )
    .unwrap();
    let logs = dir.path().join("logs");
    let listen = |port: u16, c: &mut std::process::Command| {
        c.arg("--listen").arg(format!("127.0.0.1:{port}"));
    };
    let run = start(dir.path(), &logs, listen);
    assert_eq!(run.get("/d/", &[]).status, 200);
    drop(run);
    let run = start(dir.path(), &logs, |p, c| {
        listen(p, c);
        c.env("RANGESERVE_LISTING", "false");
    });
    assert_eq!(run.get("/d/", &[]).status, 404);
    drop(run);
    let run = start(dir.path(), &logs, |p, c| {
        listen(p, c);
        c.env("RANGESERVE_LISTING", "false").arg("--listing");
    });
    assert_eq!(run.get("/d/", &[]).status, 200);
    drop(run);
    // A bad value: exit 2, one line naming the key.
    std::fs::write(
        dir.path().join("config.toml"),
        "root = \"root\"\nlisting = \"maybe\"\n",
    )
    .unwrap();
    let err = config_error(dir.path(), |_| {});
    assert!(err.contains("listing"), "{err}");
}
