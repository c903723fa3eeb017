//! `precompressed` of the binary: from the file, the environment and the flag. (Sidecars on
//! the wire: `http/encodings.rs`.)

use crate::common::codings::{decode, gzip, text, Enc};
use crate::common::process::*;

/// The binary with `precompressed` from the file, the environment and the flag (the flag wins
/// over the variable, which wins over the file); a bad value is one line and exit code 2.
#[test]
fn config_key_env_and_flag() {
    let site = Site::empty();
    let root = site.root();
    let original = text(9);
    std::fs::write(root.join("f.txt"), &original).unwrap();
    std::fs::write(root.join("f.txt.gz"), gzip(&original)).unwrap();
    let cfg = site.path().join("c.toml");
    std::fs::write(&cfg, "precompressed = true\n").unwrap();
    // (file, env, flag) -> served gzip-encoded
    let cases: [(bool, Option<&str>, Option<&str>, bool); 6] = [
        (false, None, None, false),
        (true, None, None, true),
        (false, Some("true"), None, true),
        (true, Some("false"), None, false),
        (true, Some("false"), Some("--precompressed"), true),
        (false, Some("on"), Some("--precompressed=false"), false),
    ];
    for (file, env, flag, encoded) in cases {
        let run = site.serve(|c| {
            if file {
                c.arg("--config").arg(&cfg);
            }
            if let Some(v) = env {
                c.env("RANGESERVE_PRECOMPRESSED", v);
            }
            if let Some(f) = flag {
                c.arg(f);
            }
        });
        let r = run.get("/f.txt", &[("Accept-Encoding", "gzip")]);
        let what = format!("file={file} env={env:?} flag={flag:?}");
        assert_eq!(r.status, 200, "{what}");
        assert_eq!(
            r.header("content-encoding"),
            encoded.then_some("gzip"),
            "{what}"
        );
        assert_eq!(decode(Enc::Gzip.when(encoded), &r.body), original, "{what}");
    }
    std::fs::write(&cfg, "precompressed = \"maybe\"\n").unwrap();
    let err = config_error(site.path(), |c| {
        c.arg("--config").arg(&cfg).arg("--root").arg(&root);
    });
    assert!(err.contains("precompressed"), "{err}");
}
