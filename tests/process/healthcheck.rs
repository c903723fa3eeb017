//! `rangeserve healthcheck` against a live server and against nothing: it asks the server itself
//! (`OPTIONS *`, no file read), over TLS when TLS is on, and says when it timed out.
use std::net::TcpListener;

use crate::common::process::Site;
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

#[test]
fn the_healthcheck_asks_the_server_itself_and_reads_no_directory() {
    // Listings on and an access log: the check must not be a listing of the root.
    let site = Site::new();
    let run = site.serve(|c| {
        c.args(["--listing", "--log-format", "json"]);
    });
    let env = [("RANGESERVE_LISTEN", format!("127.0.0.1:{}", run.port))];
    let (code, text) = healthcheck(&[], &env);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("answered 204"), "{text}");
    let lines = run.json_access_lines(1);
    let f = &lines[0]["fields"];
    assert_eq!(
        (f["method"].as_str(), f["path"].as_str()),
        (Some("OPTIONS"), Some("*")),
        "{f}"
    );
    assert_eq!(f["bytes"], 0);
}

#[test]
fn the_healthcheck_works_over_tls() {
    let site = Site::new();
    let certs = tls::self_signed(site.path());
    let run = site.serve(|c| {
        c.arg("--tls-cert")
            .arg(&certs.cert)
            .arg("--tls-key")
            .arg(&certs.key);
    });
    let env = [
        ("RANGESERVE_LISTEN", format!("127.0.0.1:{}", run.port)),
        ("RANGESERVE_TLS_CERT", certs.cert.display().to_string()),
        ("RANGESERVE_TLS_KEY", certs.key.display().to_string()),
    ];
    let (code, text) = healthcheck(&[], &env);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("https://127.0.0.1:"), "{text}");
    assert!(text.contains("answered 204"), "{text}");
}

#[test]
fn the_healthcheck_says_when_it_timed_out() {
    // Accepts (the kernel does) and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", silent.local_addr().unwrap());
    let (code, text) = healthcheck(&["--url", &url, "--timeout", "1"], &[]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("timed out"), "{text}");
}
