//! Real upload clients that nobody here wrote, against the real binary with uploads on:
//! tus-js-client under Node and tuspy under Python each upload a 200 MiB file, are killed
//! (SIGKILL) once the server has stored a fifth of it, and resume from the upload URL they
//! stored; curl does a plain `PUT` (`curl -T`). Every published file is downloaded and has the
//! source's SHA-256, and that SHA-256 as its ETag.
//!
//! tus-js-client is found in `.ci/tools/node` (`npm install --prefix .ci/tools/node
//! tus-js-client`), tuspy in `.ci/tools/py` (`pip install --target .ci/tools/py tuspy`), as
//! `.ci/run` installs them; missing, a test says it was skipped, or fails under `CI`.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::common::process::{self, Running};
use crate::common::{connect, programs, sha256_file, wait_for, wait_until, Response};
use crate::support::*;

const TOKEN: &str = "client-test-token-0123456789";

/// The size of the files the tus clients upload (the issue's 200 MiB).
const UPLOAD_LEN: u64 = 200 * MIB;

fn checkout() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The binary over `root` with uploads on for TOKEN, JSON logs.
fn serve(work: &Path, root: &Path, more: &[&str]) -> Running {
    process::serve(work, &work.join("logs"), root, |c| {
        c.arg("--upload-enabled")
            .env("RANGESERVE_UPLOAD_TOKENS", TOKEN)
            .args(["--log-format", "json"])
            .args(more);
    })
}

/// The ETag and the SHA-256 of the body of `GET path`, read as a stream (no 200 MiB in memory).
pub fn download(port: u16, path: &str) -> (String, String, u64) {
    let mut s = connect(process::addr(port), Duration::from_secs(60));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut head = Vec::new();
    let (body_start, n) = loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "no response head");
        head.extend_from_slice(&buf[..n]);
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break (i + 4, head.len());
        }
    };
    let resp = Response::parse(&head[..body_start], true);
    assert_eq!(resp.status, 200, "{resp:?}");
    let mut h = Sha256::new();
    h.update(&head[body_start..n]);
    let mut len = (n - body_start) as u64;
    loop {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        len += n as u64;
    }
    let etag = resp.header("etag").unwrap().to_string();
    (etag, hex::encode(h.finalize()), len)
}

/// `HEAD url` (a tus upload) with the token: its Upload-Offset.
fn offset(port: u16, url: &str) -> u64 {
    let r = crate::common::request_at(
        process::addr(port),
        "HEAD",
        url,
        &[
            ("Authorization", &format!("Bearer {TOKEN}")),
            ("Tus-Resumable", "1.0.0"),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    r.header("upload-offset").unwrap().parse().unwrap()
}

/// The bytes each PATCH (and creation) stored, as the access log says.
fn received(run: &Running) -> Vec<(String, u16, u64)> {
    run.json_access_lines(0)
        .iter()
        .filter(|l| l["fields"]["received"].is_u64())
        .map(|l| {
            let f = &l["fields"];
            (
                f["method"].as_str().unwrap().to_string(),
                f["status"].as_u64().unwrap() as u16,
                f["received"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// A tus client run: `first` creates the upload and writes its URL to `url_file`; `resume`
/// continues the upload at the URL.
trait TusClient {
    fn first(&self, endpoint: &str, src: &Path, name: &str, url_file: &Path) -> Command;
    fn resume(&self, endpoint: &str, src: &Path, url: &str) -> Command;
}

/// Upload `src` with `client`, kill it (SIGKILL) once the server stored a fifth, resume it, and
/// check the published file by download.
fn interrupted_and_resumed(client: &dyn TusClient, what: &str) {
    let dir = scratch();
    let work = dir.path();
    let (root, logs) = (work.join("root"), work.join("logs"));
    fs::create_dir_all(&root).unwrap();
    fs::create_dir_all(&logs).unwrap();
    let src = work.join("src.bin");
    Pattern::new(17).write(&src, UPLOAD_LEN);
    let want = sha256_file(&src);
    let run = serve(work, &root, &[]);
    let endpoint = format!("http://127.0.0.1:{}/_upload/", run.port);
    let name = format!("from-{what}.bin");
    let url_file = work.join("url");

    let mut first = Proc::spawn(
        client.first(&endpoint, &src, &name, &url_file),
        &logs,
        format!("{what}, first run"),
    );
    let url = wait_for("the upload URL", Duration::from_secs(60), || {
        if let Some(st) = first.exited() {
            panic!(
                "{what} ended before it created the upload: {}",
                describe(st)
            );
        }
        fs::read_to_string(&url_file)
            .ok()
            .filter(|u| !u.trim().is_empty())
    });
    let url = url.trim().to_string();
    let id = url.rsplit('/').next().unwrap().to_string();
    let part = root.join(".rangeserve-uploads").join(format!("{id}.part"));
    wait_until(
        "a fifth of the file stored",
        Duration::from_secs(120),
        || file_len(&part) >= UPLOAD_LEN / 5 || first.exited().is_some(),
    );
    assert!(
        first.exited().is_none(),
        "{what} finished before it could be interrupted"
    );
    first.signal(libc::SIGKILL);
    let cut = first.wait(Duration::from_secs(10));
    assert_eq!(describe(cut.status), "signal 9");
    // The server saw the connection cut: the append ended (logged) with its bytes kept.
    wait_until("the cut append to end", Duration::from_secs(30), || {
        received(&run)
            .iter()
            .any(|(m, s, _)| m == "PATCH" && *s != 204)
    });
    let kept = offset(
        run.port,
        url.trim_start_matches(&format!("http://127.0.0.1:{}", run.port)),
    );
    assert!(kept > 0 && kept < UPLOAD_LEN, "{kept}");
    let before = received(&run).len();

    let started = Instant::now();
    let second = Proc::spawn(
        client.resume(&endpoint, &src, &url),
        &logs,
        format!("{what}, resumed"),
    )
    .wait(Duration::from_secs(600))
    .success();
    let took = started.elapsed();
    notice(&format!(
        "{what}: 200 MiB upload cut at {} MiB, resumed in {:.1} s; {}",
        kept >> 20,
        took.as_secs_f64(),
        second.stdout.trim()
    ));
    // The resumed run sent only what was missing.
    let resumed: u64 = received(&run)[before..]
        .iter()
        .filter(|(m, _, _)| m == "PATCH")
        .map(|(_, _, n)| n)
        .sum();
    assert_eq!(
        resumed,
        UPLOAD_LEN - kept,
        "{what} sent again what was stored"
    );
    let (etag, got, len) = download(run.port, &format!("/{name}"));
    assert_eq!(len, UPLOAD_LEN);
    assert_eq!(
        got, want,
        "{what}: the published file differs from the source"
    );
    assert_eq!(etag, format!("\"{want}\""));
    let work_dir = root.join(".rangeserve-uploads");
    assert!(!work_dir.join(format!("{id}.part")).exists());
}

fn notice(msg: &str) {
    programs::notice(msg);
}

struct TusJs {
    node: PathBuf,
    module: PathBuf,
    script: PathBuf,
    home: tempfile::TempDir,
}

/// tus-js-client: the whole file in one PATCH (its default), from an `fs.ReadStream`.
const TUS_JS: &str = r#"
const fs = require('fs');
const tus = require(process.env.TUS_JS_CLIENT);
const [endpoint, token, path, name, urlFile, resumeUrl] = process.argv.slice(2);
const upload = new tus.Upload(fs.createReadStream(path), {
  endpoint,
  uploadUrl: resumeUrl || null,
  uploadSize: fs.statSync(path).size,
  headers: { Authorization: 'Bearer ' + token },
  metadata: { filename: name, filetype: 'application/octet-stream' },
  retryDelays: [0, 200, 1000, 3000],
  storeFingerprintForResuming: false,
  onUploadUrlAvailable() { if (urlFile) fs.writeFileSync(urlFile, upload.url); },
  onError(e) { console.error('ERROR ' + e); process.exit(1); },
  onSuccess() { console.log('done: ' + upload.url); process.exit(0); },
});
upload.start();
"#;

impl TusJs {
    fn find() -> Option<TusJs> {
        let node = programs::find("node");
        if !required("node", node.is_some()) {
            return None;
        }
        let module = checkout().join(".ci/tools/node/node_modules/tus-js-client");
        if !required(
            "tus-js-client (npm, in .ci/tools/node)",
            module.join("package.json").exists(),
        ) {
            return None;
        }
        let home = tempfile::tempdir_in(base_dir()).unwrap();
        let script = home.path().join("upload.js");
        fs::write(&script, TUS_JS).unwrap();
        Some(TusJs {
            node: node.unwrap(),
            module,
            script,
            home,
        })
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.node);
        programs::clean_env(&mut c, self.home.path());
        c.env("TUS_JS_CLIENT", &self.module)
            .arg(&self.script)
            .args(args);
        c
    }
}

impl TusClient for TusJs {
    fn first(&self, endpoint: &str, src: &Path, name: &str, url_file: &Path) -> Command {
        let (src, url_file) = (src.to_str().unwrap(), url_file.to_str().unwrap());
        self.command(&[endpoint, TOKEN, src, name, url_file])
    }

    fn resume(&self, endpoint: &str, src: &Path, url: &str) -> Command {
        self.command(&[endpoint, TOKEN, src.to_str().unwrap(), "-", "", url])
    }
}

struct TusPy {
    python: PathBuf,
    site: PathBuf,
    script: PathBuf,
    home: tempfile::TempDir,
}

/// tuspy: 64 MiB PATCHes; the upload is created first, so its URL is stored before any byte.
const TUS_PY: &str = r#"
import sys
from tusclient import client
endpoint, token, path, name, url_file = sys.argv[1:6]
resume = sys.argv[6] if len(sys.argv) > 6 else None
c = client.TusClient(endpoint, headers={"Authorization": "Bearer " + token})
if resume:
    up = c.uploader(path, url=resume, chunk_size=64 << 20)
else:
    up = c.uploader(path, chunk_size=64 << 20, metadata={"filename": name})
    up.set_url(up.create_url())
    with open(url_file, "w") as f:
        f.write(up.url)
up.upload()
print("done: " + up.url)
"#;

impl TusPy {
    fn find() -> Option<TusPy> {
        let python = programs::find("python3");
        if !required("python3", python.is_some()) {
            return None;
        }
        let site = checkout().join(".ci/tools/py");
        if !required(
            "tuspy (PyPI, in .ci/tools/py)",
            site.join("tusclient").is_dir(),
        ) {
            return None;
        }
        let home = tempfile::tempdir_in(base_dir()).unwrap();
        let script = home.path().join("upload.py");
        fs::write(&script, TUS_PY).unwrap();
        Some(TusPy {
            python: python.unwrap(),
            site,
            script,
            home,
        })
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.python);
        programs::clean_env(&mut c, self.home.path());
        c.env("PYTHONPATH", &self.site)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .arg(&self.script)
            .args(args);
        c
    }
}

impl TusClient for TusPy {
    fn first(&self, endpoint: &str, src: &Path, name: &str, url_file: &Path) -> Command {
        let (src, url_file) = (src.to_str().unwrap(), url_file.to_str().unwrap());
        self.command(&[endpoint, TOKEN, src, name, url_file])
    }

    fn resume(&self, endpoint: &str, src: &Path, url: &str) -> Command {
        self.command(&[endpoint, TOKEN, src.to_str().unwrap(), "-", "", url])
    }
}

#[test]
fn tus_js_client_uploads_200_mib_interrupted_and_resumed() {
    let Some(client) = TusJs::find() else { return };
    let _big = heavy();
    interrupted_and_resumed(&client, "tus-js-client");
}

#[test]
fn tuspy_uploads_200_mib_interrupted_and_resumed() {
    let Some(client) = TusPy::find() else { return };
    let _big = heavy();
    interrupted_and_resumed(&client, "tuspy");
}

#[test]
fn curl_puts_a_file_once() {
    let dir = scratch();
    let Some(tool) = require(Client::Curl, dir.path()) else {
        return;
    };
    let work = dir.path();
    let root = work.join("root");
    fs::create_dir_all(&root).unwrap();
    let src = work.join("put.bin");
    Pattern::new(5).write(&src, 8 * MIB);
    let want = sha256_file(&src);
    let run = serve(work, &root, &[]);
    let url = format!("http://127.0.0.1:{}/dir/put.bin", run.port);
    let put = |token: &str| {
        let mut c = tool.command();
        c.args(["-o", "/dev/null", "-w", "%{http_code}", "-T"])
            .arg(&src)
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .arg(&url);
        tool.run(c, "curl -T").success().stdout
    };
    assert_eq!(put("wrong"), "401");
    assert_eq!(put(TOKEN), "201");
    assert_eq!(put(TOKEN), "409", "overwrite is off");
    let (etag, got, len) = download(run.port, "/dir/put.bin");
    assert_eq!((got.as_str(), len), (want.as_str(), 8 * MIB));
    assert_eq!(etag, format!("\"{want}\""));
}
