//! curl as an HTTP/2 and TLS client: one run per request, the response head read back from the
//! file `-D` writes, the body from `-o`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

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

/// curl, when installed with HTTP2 and TLS support; else "skipped" (or a failure under CI).
pub fn curl(cacert: &Path) -> Option<Curl> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("curl"))
            .find(|p| p.is_file())
    });
    let usable = found.filter(|exe| {
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
    });
    match usable {
        Some(exe) => Some(Curl {
            exe,
            dir: tempfile::tempdir().unwrap(),
            cacert: cacert.to_path_buf(),
        }),
        None if std::env::var_os("CI").is_some() => {
            panic!("curl with HTTP2 and SSL is not installed and CI is set (apt-get install curl)")
        }
        None => {
            eprintln!("skipped: curl with HTTP2 and SSL not installed");
            None
        }
    }
}

impl Curl {
    /// `curl ARGS URL` with these request headers; the last response.
    pub fn get(&self, args: &[&str], url: &str, headers: &[(&str, &str)]) -> Got {
        let n = RUN.fetch_add(1, Ordering::SeqCst);
        let head = self.dir.path().join(format!("head-{n}"));
        let body = self.dir.path().join(format!("body-{n}"));
        let mut c = Command::new(&self.exe);
        // -q first: no .curlrc.
        c.arg("-q")
            .args(["-sS", "--max-time", "60", "--cacert"])
            .arg(&self.cacert)
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
        for v in [
            "http_proxy",
            "https_proxy",
            "HTTPS_PROXY",
            "all_proxy",
            "ALL_PROXY",
            "no_proxy",
            "NO_PROXY",
            "CURL_HOME",
            "CURL_CA_BUNDLE",
            "SSL_CERT_FILE",
            "SSL_CERT_DIR",
        ] {
            c.env_remove(v);
        }
        c.env("HOME", self.dir.path());
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "curl {args:?} {url} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(std::fs::read(&head).unwrap()).unwrap();
        // One block per response (several after redirects): the last is the one that counts.
        let block = text
            .split("\r\n\r\n")
            .filter(|b| !b.trim().is_empty())
            .last()
            .expect("a response head");
        let mut lines = block.split("\r\n");
        let status_line = lines.next().unwrap();
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("status line {status_line:?}"));
        let headers = lines
            .map(|l| {
                let (k, v) = l.split_once(':').expect("name: value");
                (k.trim().to_ascii_lowercase(), v.trim().to_string())
            })
            .collect();
        Got {
            version: String::from_utf8(out.stdout).unwrap(),
            status,
            headers,
            body: std::fs::read(&body).unwrap_or_default(),
        }
    }
}
