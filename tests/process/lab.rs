//! The lab in the binary: the `gen` subcommand, and the lab switched on by flag, environment or
//! file, with the faults in its access log. (The lab on the wire: `http/lab.rs`.)

use crate::common::lab_bytes;
use crate::common::process::{self, config_error, serve, start};

#[test]
fn gen_subcommand_writes_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    for (size, len, seed) in [
        ("3000", 3000u64, "0"),
        ("1MiB", 1 << 20, "9"),
        ("0", 0, "1"),
    ] {
        let out = process::command(dir.path())
            .args(["gen", size, "--seed", seed])
            .output()
            .unwrap();
        assert!(out.status.success(), "{:?}", out);
        assert!(
            out.stdout == lab_bytes(seed.parse().unwrap(), 0, len),
            "{size}"
        );
    }
    let out = process::command(dir.path())
        .args(["gen", "12XB"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}

#[test]
fn switched_on_by_flag_env_or_file_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("www");
    std::fs::create_dir(&root).unwrap();
    // The lab's upload directories go into the test's (its servers are killed).
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    // The flag, and the access line names the faults.
    let run = serve(dir.path(), &dir.path().join("logs"), &root, |c| {
        c.arg("--lab").env("TMPDIR", &tmp);
    });
    let r = run.get("/_lab/gen/100?corrupt=3&ttfb=1", &[]);
    assert_eq!(r.status, 200);
    let log = run.log_shows("faults=corrupt=3,ttfb=1");
    assert!(log.contains("WARN") && log.contains("LAB IS ON"), "{log}");
    drop(run);

    // The environment, with another prefix.
    let run = serve(dir.path(), &dir.path().join("logs"), &root, |c| {
        c.env("RANGESERVE_LAB_ENABLED", "1")
            .env("RANGESERVE_LAB_PREFIX", "/lab2")
            .env("TMPDIR", &tmp);
    });
    assert_eq!(run.get("/lab2/gen/10", &[]).status, 200);
    assert_eq!(run.get("/_lab/gen/10", &[]).status, 404);
    assert!(!run.log().contains("is not a rangeserve setting"));
    drop(run);

    // The file's [lab] section; the flag `--lab=false` wins over it.
    std::fs::write(
        dir.path().join("config.toml"),
        "root = \"www\"\n[lab]\nenabled = true\nprefix = \"/filelab\"\n",
    )
    .unwrap();
    let run = start(dir.path(), &dir.path().join("logs"), |port, c| {
        c.arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env("TMPDIR", &tmp);
    });
    assert_eq!(run.get("/filelab/gen/10", &[]).status, 200);
    drop(run);
    let run = start(dir.path(), &dir.path().join("logs"), |port, c| {
        c.arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--lab=false");
    });
    assert_eq!(run.get("/filelab/gen/10", &[]).status, 404);
    assert!(!run.log().contains("LAB IS ON"));
    drop(run);

    // Bad values: one line, exit 2.
    for (toml, flag) in [
        ("[lab]\nenabled = \"maybe\"\n", None),
        ("[lab]\nprefx = \"/a\"\n", None),
        ("", Some("--lab-prefix=nolead")),
        ("", Some("--lab-prefix=/trailing/")),
    ] {
        std::fs::write(
            dir.path().join("config.toml"),
            format!("root = \"www\"\n{toml}"),
        )
        .unwrap();
        config_error(dir.path(), |c| {
            c.args(flag);
        });
    }
}
