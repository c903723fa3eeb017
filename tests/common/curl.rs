//! curl as an HTTP/2 and TLS client: one run per request, the response head read back from the
//! file `-D` writes, the body from `-o`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::programs;

pub struct Curl {
    pub exe: PathBuf,
    /// Scratch: HOME, the header and body files of each run.
    pub dir: tempfile::TempDir,
    cacert: PathBuf,
}

/// What one curl run got.
#[derive(Debug)]
pub struct Got {
    /// `%{http_version}`: "2" or "1.1".
    pub version: String,
    pub status: u16,
    /// Lower-cased names, in order, of the last response (after any redirect).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Got {
    pub fn header(&self, name: &str) -> Option<&str> {
        let mut found = self.headers.iter().filter(|(k, _)| k == name);
        let v = found.next().map(|(_, v)| v.as_str());
        assert!(
            found.next().is_none(),
            "{name} sent twice: {:?}",
            self.headers
        );
        v
    }
}

static RUN: AtomicUsize = AtomicUsize::new(0);

/// curl, when installed with HTTP2 and TLS support, trusting only `cacert`; else "skipped" (or a
/// failure under CI).
pub fn curl(cacert: &Path) -> Option<Curl> {
    let usable = |exe: &Path| {
        let out = Command::new(exe).arg("-V").output();
        let text = out
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let features = text
            .lines()
            .find_map(|l| l.strip_prefix("Features:"))
            .unwrap_or("");
        let has = |f: &str| features.split_whitespace().any(|x| x == f);
        has("HTTP2") && has("SSL")
    };
    let exe = programs::require_that("curl", "curl with HTTP2 and SSL", usable)?;
    Some(Curl {
        exe,
        dir: tempfile::tempdir().unwrap(),
        cacert: cacert.to_path_buf(),
    })
}

impl Curl {
    /// curl with the usual flags and environment ([`programs::curl`]) and `--cacert`.
    pub fn command(&self) -> Command {
        let mut c = programs::curl(&self.exe, self.dir.path());
        c.arg("--cacert").arg(&self.cacert);
        c
    }

    /// `curl ARGS URL` with these request headers; the last response.
    pub fn get(&self, args: &[&str], url: &str, headers: &[(&str, &str)]) -> Got {
        let n = RUN.fetch_add(1, Ordering::SeqCst);
        let head = self.dir.path().join(format!("head-{n}"));
        let body = self.dir.path().join(format!("body-{n}"));
        let mut c = self.command();
        c.args(["--max-time", "60"])
            .arg("-D")
            .arg(&head)
            .arg("-o")
            .arg(&body)
            .args(["-w", "%{http_version}"])
            .args(args);
        for (k, v) in headers {
            c.arg("-H").arg(format!("{k}: {v}"));
        }
        c.arg(url);
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "curl {args:?} {url} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (status, headers) = last_head(&std::fs::read_to_string(&head).unwrap());
        Got {
            version: String::from_utf8(out.stdout).unwrap(),
            status,
            headers,
            body: std::fs::read(&body).unwrap_or_default(),
        }
    }
}

/// The last response head in what `curl -D` wrote (one head per response: several after a
/// redirect): its status, and its fields with lower-cased names, in order.
pub fn last_head(text: &str) -> (u16, Vec<(String, String)>) {
    let block = text
        .split("\r\n\r\n")
        .filter(|b| b.starts_with("HTTP/"))
        .last()
        .unwrap_or_else(|| panic!("no response head in {text:?}"));
    let mut lines = block.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line {status_line:?}"));
    let headers = lines
        .map(|l| {
            let (k, v) = l
                .split_once(':')
                .unwrap_or_else(|| panic!("not name: value: {l:?}"));
            (k.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    (status, headers)
}
