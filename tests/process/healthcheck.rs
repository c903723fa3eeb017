//! `rangeserve healthcheck` against a live server and against nothing.
use crate::common::*;

/// `rangeserve healthcheck ARGS` with these variables (and no inherited `RANGESERVE_*`): its
/// exit code and what it wrote.
fn healthcheck(args: &[&str], env: &[(&str, String)]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = process::command(dir.path());
    c.arg("healthcheck").args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap(), text)
}

#[test]
fn healthy_when_the_server_answers() {
    let s = Server::start();
    let url = format!("http://{}/", s.addr);
    let (code, text) = healthcheck(&["--url", &url], &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("404"), "{text}"); // an empty root: the server answers all the same
                                             // Without --url: the listen address from the environment, as in the container image.
    let (code, text) = healthcheck(&[], &[("RANGESERVE_LISTEN", s.addr.to_string())]);
    assert_eq!(code, 0, "{text}");
    // 0.0.0.0 means "ask loopback".
    let any = format!("0.0.0.0:{}", s.addr.port());
    let (code, text) = healthcheck(&[], &[("RANGESERVE_LISTEN", any)]);
    assert_eq!(code, 0, "{text}");
}

#[test]
fn unhealthy_when_nothing_listens() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/");
    let (code, text) = healthcheck(&["--url", &url, "--timeout", "2"], &[]);
    assert_eq!(code, 1, "{text}");
    assert!(text.starts_with("unhealthy"), "{text}");
}
