//! CORS settings of the binary: allowed origins from the flag and the environment (the flag
//! wins), and origins the server refuses to start with. (CORS on the wire: `http/cors.rs`.)

use crate::common::process::*;

const PAGE: &str = "https://app.example";
const OTHER_PAGE: &str = "http://localhost:3000";
const EVIL: &str = "https://evil.example";

#[test]
fn origins_from_flag_and_environment() {
    let site = Site::empty();
    let root = site.root();
    std::fs::write(root.join("f.bin"), b"x").unwrap();
    let by_env = site.serve(|c| {
        c.env(
            "RANGESERVE_CORS_ALLOWED_ORIGINS",
            format!("{PAGE},{OTHER_PAGE}"),
        );
        c.env("RANGESERVE_CORS_MAX_AGE", "30");
    });
    let r = by_env.get("/f.bin", &[("Origin", OTHER_PAGE)]);
    assert_eq!(r.header("access-control-allow-origin"), Some(OTHER_PAGE));
    let r = by_env.get("/f.bin", &[("Origin", EVIL)]);
    assert_eq!(r.header("access-control-allow-origin"), None);

    // The flag wins over the variable.
    let by_flag = site.serve(|c| {
        c.arg("--cors-allowed-origins").arg("*");
        c.env("RANGESERVE_CORS_ALLOWED_ORIGINS", PAGE);
    });
    let r = by_flag.get("/f.bin", &[("Origin", EVIL)]);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
}

#[test]
fn bad_origins_stop_the_server_with_one_line() {
    let site = Site::empty();
    let root = site.root();
    let cfg = site.path().join("c.toml");
    std::fs::write(&cfg, "[cors]\nallowed_origins = [\"null\"]\n").unwrap();
    for args in [
        vec!["--cors-allowed-origins", "https://app.example/"],
        vec!["--cors-allowed-origins", "*,https://app.example"],
        vec!["--cors-allowed-origins", "app.example"],
        vec!["--config", cfg.to_str().unwrap()],
    ] {
        let err = config_error(site.path(), |c| {
            c.args(&args).arg("--root").arg(&root);
        });
        assert!(err.contains("cors.allowed_origins"), "{args:?}: {err}");
    }
}
