//! Real upload clients that nobody here wrote, against the real binary with uploads on:
//! tus-js-client under Node and tuspy under Python each upload a 200 MiB file, are killed
//! (SIGKILL) once the server has stored a fifth of it, and resume from the upload URL they
//! stored; curl does a plain `PUT` (`curl -T`). Every published file is downloaded and has the
//! source's SHA-256, and that SHA-256 as its ETag.
//!
//! Against the lab's upload endpoint (`/_lab/upload/`, no token), each gets through injected
//! faults: tus-js-client through two `503`s and every `PATCH` cut after 1 MiB, tuspy through
//! two `503`s and the last 1000 bytes of every acknowledged `PATCH` lost; the lab's `/requests`
//! shows that each retried, asked for the offset and resumed from it.
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

/// The bytes each upload request stored, as the access log says (`received`).
pub(crate) fn received(run: &Running) -> Vec<(String, u16, u64)> {
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
        self.command_for(&self.script, args)
    }

    /// Run the script `script` (a path) with `args`.
    fn command_for(&self, script: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(&self.node);
        programs::clean_env(&mut c, self.home.path());
        c.env("TUS_JS_CLIENT", &self.module).arg(script).args(args);
        c
    }

    /// A script of `text` in the client's directory.
    fn script(&self, name: &str, text: &str) -> PathBuf {
        let p = self.home.path().join(name);
        fs::write(&p, text).unwrap();
        p
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
        self.command_for(&self.script, args)
    }

    /// Run the script `script` (a path) with `args`.
    fn command_for(&self, script: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(&self.python);
        programs::clean_env(&mut c, self.home.path());
        c.env("PYTHONPATH", &self.site)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .arg(script)
            .args(args);
        c
    }

    /// A script of `text` in the client's directory.
    fn script(&self, name: &str, text: &str) -> PathBuf {
        let p = self.home.path().join(name);
        fs::write(&p, text).unwrap();
        p
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

// ------------------------------------------------------------------------------------------
// The lab's upload endpoint

/// The size of the files uploaded to the lab: three 1 MiB chunks and a bit.
const LAB_LEN: u64 = 3 * MIB + 12_345;

/// The binary with the lab on (uploads off), its temporary directory inside `work`.
fn serve_lab(work: &Path, root: &Path) -> Running {
    let tmp = work.join("tmp");
    fs::create_dir_all(&tmp).unwrap();
    process::serve(work, &work.join("logs"), root, |c| {
        c.arg("--lab").env("TMPDIR", &tmp);
    })
}

/// A scratch directory with `root/`, `logs/` and a source file of LAB_LEN bytes; its SHA-256.
fn lab_setup(seed: u64) -> (tempfile::TempDir, PathBuf, PathBuf, String) {
    let dir = scratch();
    let (root, logs) = (dir.path().join("root"), dir.path().join("logs"));
    fs::create_dir_all(&root).unwrap();
    fs::create_dir_all(&logs).unwrap();
    let src = dir.path().join("src.bin");
    Pattern::new(seed).write(&src, LAB_LEN);
    let want = sha256_file(&src);
    (dir, root, src, want)
}

/// One request as `/requests?key=` shows it: (method, status, offset asked, offset answered,
/// bytes received, faults).
type Seen = (
    String,
    Option<u64>,
    Option<u64>,
    Option<u64>,
    u64,
    Vec<String>,
);

fn lab_requests(port: u16, key: &str) -> Vec<Seen> {
    let r = process::get_at(port, &format!("/_lab/requests?key={key}"), &[]);
    assert_eq!(r.status, 200);
    let doc: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    doc["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["method"].as_str().unwrap().to_string(),
                e["status"].as_u64(),
                e["upload_offset"].as_u64(),
                e["answer_offset"].as_u64(),
                e["received"].as_u64().unwrap(),
                e["faults"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect()
}

/// The published lab upload `name` has the source's SHA-256 (computed here as it is read),
/// and that as its ETag.
fn assert_lab_published(port: u16, name: &str, want: &str) {
    let (etag, got, len) = download(port, &format!("/_lab/uploaded/{name}"));
    assert_eq!(len, LAB_LEN);
    assert_eq!(got, want, "the published file differs from the source");
    assert_eq!(etag, format!("\"{want}\""));
}

/// tus-js-client against the lab: one PATCH for the rest of the file (its default), retried.
const TUS_JS_LAB: &str = r#"
const fs = require('fs');
const tus = require(process.env.TUS_JS_CLIENT);
const [endpoint, path, name] = process.argv.slice(2);
const upload = new tus.Upload(fs.createReadStream(path), {
  endpoint,
  uploadSize: fs.statSync(path).size,
  metadata: { filename: name, filetype: 'application/octet-stream' },
  retryDelays: [0, 50, 100, 200, 400, 800, 1000, 1000],
  storeFingerprintForResuming: false,
  onError(e) { console.error('ERROR ' + e); process.exit(1); },
  onSuccess() { console.log('done: ' + upload.url); process.exit(0); },
});
upload.start();
"#;

#[test]
fn tus_js_client_gets_through_lab_errors_and_cuts() {
    let Some(client) = TusJs::find() else { return };
    let (dir, root, src, want) = lab_setup(23);
    let run = serve_lab(dir.path(), &root);
    let cut = MIB;
    let key = "js-errors-and-cuts";
    let endpoint = format!(
        "http://127.0.0.1:{}/_lab/upload/?fail=503&fail_times=2&cut_after={cut}&key={key}",
        run.port
    );
    let script = client.script("lab.js", TUS_JS_LAB);
    let src_arg = src.to_str().unwrap();
    let cmd = client.command_for(&script, &[&endpoint, src_arg, "js.bin"]);
    let out = Proc::spawn(cmd, &dir.path().join("logs"), "tus-js-client (lab)")
        .wait(Duration::from_secs(300))
        .success();
    assert!(out.stdout.contains("done: "), "{}", out.stdout);
    assert_lab_published(run.port, "js.bin", &want);

    let seen = lab_requests(run.port, key);
    let patches: Vec<&Seen> = seen.iter().filter(|s| s.0 == "PATCH").collect();
    // Two 503s, each retried from offset 0 (nothing was stored).
    for p in &patches[..2] {
        assert_eq!(
            (p.1, p.2, &p.5[..]),
            (Some(503), Some(0), &["fail=503".to_string()][..])
        );
    }
    // Then every PATCH cut after 1 MiB (no answer), each resumed where the last one ended,
    // and the last one the rest, answered 204.
    let rest = &patches[2..];
    let cuts = (LAB_LEN / cut) as usize;
    assert_eq!(rest.len(), cuts + 1, "{seen:#?}");
    for (i, p) in rest.iter().enumerate() {
        let at = i as u64 * cut;
        assert_eq!(p.2, Some(at), "PATCH {i} asked for {:?}: {seen:#?}", p.2);
        if i < cuts {
            assert_eq!((p.1, p.4), (None, cut), "{seen:#?}");
            assert_eq!(p.5, vec![format!("cut_after={cut}")]);
        } else {
            assert_eq!((p.1, p.3, p.4), (Some(204), Some(LAB_LEN), LAB_LEN - at));
        }
    }
    // Before each resume, it asked the server where the upload stood (HEAD) and resumed there.
    for (i, e) in seen.iter().enumerate() {
        if e.0 == "PATCH" && i > 0 && e.2 != Some(0) {
            let head = &seen[i - 1];
            assert_eq!((head.0.as_str(), head.1), ("HEAD", Some(200)), "{seen:#?}");
            assert_eq!(head.3, e.2, "resumed elsewhere than reported: {seen:#?}");
        }
    }
    notice(&format!(
        "tus-js-client through the lab: {} requests, {} PATCHes",
        seen.len(),
        patches.len()
    ));
}

/// tuspy against the lab: 1 MiB PATCHes, retried at once, up to 5 times each.
const TUS_PY_LAB: &str = r#"
import sys
from tusclient import client
endpoint, path, name = sys.argv[1:4]
c = client.TusClient(endpoint)
up = c.uploader(path, chunk_size=1 << 20, metadata={"filename": name}, retries=5, retry_delay=0)
up.upload()
print("done: " + up.url)
"#;

#[test]
fn tuspy_gets_through_lab_errors_and_lost_bytes() {
    let Some(client) = TusPy::find() else { return };
    let (dir, root, src, want) = lab_setup(29);
    let run = serve_lab(dir.path(), &root);
    let lose = 1000;
    let key = "py-errors-and-losses";
    let endpoint = format!(
        "http://127.0.0.1:{}/_lab/upload/?fail=503&fail_times=2&lose={lose}&key={key}",
        run.port
    );
    let script = client.script("lab.py", TUS_PY_LAB);
    let src_arg = src.to_str().unwrap();
    let cmd = client.command_for(&script, &[&endpoint, src_arg, "py.bin"]);
    let out = Proc::spawn(cmd, &dir.path().join("logs"), "tuspy (lab)")
        .wait(Duration::from_secs(300))
        .success();
    assert!(out.stdout.contains("done: "), "{}", out.stdout);
    assert_lab_published(run.port, "py.bin", &want);

    let seen = lab_requests(run.port, key);
    let patches: Vec<&Seen> = seen.iter().filter(|s| s.0 == "PATCH").collect();
    for p in &patches[..2] {
        assert_eq!(
            (p.1, p.2, &p.5[..]),
            (Some(503), Some(0), &["fail=503".to_string()][..])
        );
    }
    // Every acknowledged PATCH short of the end lost 1000 bytes: the next one, at the offset
    // acknowledged, is refused with the offset that is left; tuspy asks for it (HEAD) and
    // sends again from there. The PATCH that completes the upload loses nothing.
    let mut lost = 0;
    for (i, e) in seen.iter().enumerate() {
        if e.0 != "PATCH" || e.1 != Some(204) {
            continue;
        }
        let acked = e.3.unwrap();
        if acked == LAB_LEN {
            assert!(e.5.is_empty(), "{seen:#?}");
            assert_eq!(i, seen.len() - 1, "{seen:#?}");
            continue;
        }
        lost += 1;
        assert_eq!(e.5, vec![format!("lose={lose}")], "{seen:#?}");
        let next: Vec<&Seen> = seen[i + 1..i + 4].iter().collect();
        let short = acked - lose;
        assert_eq!(
            (next[0].0.as_str(), next[0].1, next[0].2, next[0].3),
            ("PATCH", Some(409), Some(acked), Some(short)),
            "{seen:#?}"
        );
        assert_eq!(
            (next[1].0.as_str(), next[1].3),
            ("HEAD", Some(short)),
            "{seen:#?}"
        );
        assert_eq!(
            (next[2].0.as_str(), next[2].2),
            ("PATCH", Some(short)),
            "{seen:#?}"
        );
    }
    assert_eq!(lost, 3, "{seen:#?}");
    notice(&format!(
        "tuspy through the lab: {} requests, {} PATCHes",
        seen.len(),
        patches.len()
    ));
}
