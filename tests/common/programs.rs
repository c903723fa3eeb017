//! External programs the tests drive (curl, wget, aria2c): found on PATH, or the test is skipped
//! with a visible notice; with `CI` set, a missing program fails the test instead.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Write to stderr past libtest's output capture, so a notice shows even for a passing test.
pub fn notice(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

/// The running test's name (libtest names each test's thread after it).
pub fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string()
}

/// `name` as an executable file in a PATH directory.
pub fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// The program `name`, or `None` after a visible "skipped: ... not installed". With `CI` set, a
/// missing program fails the test instead.
pub fn require(name: &str) -> Option<PathBuf> {
    require_that(name, name, |_| true)
}

/// Like [`require`], for a program that must also pass `usable` (`what` names what is needed,
/// e.g. "curl with HTTP2 and SSL").
pub fn require_that(name: &str, what: &str, usable: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    match find(name).filter(|exe| usable(exe)) {
        Some(exe) => Some(exe),
        None if std::env::var_os("CI").is_some() => panic!(
            "{}: {what} is not installed, and CI is set: install it (.ci/run shows how)",
            test_name()
        ),
        None => {
            notice(&format!(
                "skipped: {what} not installed (test {})",
                test_name()
            ));
            None
        }
    }
}

/// Unset every proxy variable (the URLs are 127.0.0.1, but a client must never try a proxy) and
/// anything else that would make a client read configuration or trust anchors from outside the
/// test; `home` becomes its HOME.
pub fn clean_env(cmd: &mut Command, home: &Path) {
    for v in [
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "ftp_proxy",
        "FTP_PROXY",
        "no_proxy",
        "NO_PROXY",
        "CURL_HOME",
        "CURL_CA_BUNDLE",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "WGETRC",
        "SYSTEM_WGETRC",
    ] {
        cmd.env_remove(v);
    }
    cmd.env("HOME", home)
        .env("XDG_CONFIG_HOME", home)
        .env("LC_ALL", "C");
}

/// curl with the flags every run gets: `-q` first (no .curlrc), quiet but for errors, never a
/// proxy; a clean environment with `home` as HOME.
pub fn curl(exe: &Path, home: &Path) -> Command {
    let mut c = Command::new(exe);
    clean_env(&mut c, home);
    c.args(["-q", "-sS", "--noproxy", "*"]);
    c
}
