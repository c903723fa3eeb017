//! The upload page in a real browser (issue 17): Debian's `chromium`, headless, driven by its
//! `chromedriver` through selenium (PyPI, in `.ci/tools/py`, as `.ci/run` installs it) from
//! `browser_upload.py` beside this file. From the listing of the upload directory the browser
//! follows "Upload files"; a wrong token is refused in words before any upload starts; with the
//! right one it picks a 48 MiB file, whose upload is throttled
//! (Chrome's network conditions) so that the server, SIGKILLed once the page shows between 10%
//! and 80%, dies mid-upload. The server is restarted on the same port with the same state; the
//! page is reloaded, the same file picked again, and tus-js-client resumes from the server's
//! offset. The published file has the source's bytes (SHA-256 computed here) and that hash as
//! its ETag, the page and the listing show it (the listing's copy button puts it on the
//! clipboard), the new server stored only what was missing and counted a resumed upload, the
//! same file picked once more is refused in words (`409`: it exists), and screenshots are kept
//! in `target/test-artifacts/`.
//!
//! The test and the script talk in lines (stdout and stdin), each waited for with a deadline.
//! Missing chromium, chromedriver or selenium: skipped, or failed under `CI`.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::common::process::{self, Running};
use crate::common::{free_port, programs, sha256_file, wait_for};
use crate::support::*;
use crate::uploads::download;
use crate::uploads::received;

const TOKEN: &str = "browser-test-token-0123456789";
const LEN: u64 = 48 * MIB;
const NAME: &str = "pattern-48mib.bin";
/// Everything, from the browser's start to the last check.
const OVERALL: Duration = Duration::from_secs(120);

fn checkout() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `target/test-artifacts` (beside `target/tmp`).
fn artifacts() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("test-artifacts")
}

struct Tools {
    python: PathBuf,
    chromium: PathBuf,
    chromedriver: PathBuf,
    site: PathBuf,
}

impl Tools {
    fn find() -> Option<Tools> {
        let chromium = programs::require("chromium")?;
        let chromedriver = programs::require("chromedriver")?;
        let python = programs::require("python3")?;
        let site = checkout().join(".ci/tools/py");
        let selenium = site.join("selenium/webdriver/chrome").is_dir();
        if !required("selenium (PyPI, in .ci/tools/py)", selenium) {
            return None;
        }
        Some(Tools {
            python,
            chromium,
            chromedriver,
            site,
        })
    }
}

/// The binary over `root` on `port`, uploads on for TOKEN into `incoming/`, listings on, JSON
/// logs, metrics on `metrics`; the error (its stderr) when it exits before it listens.
fn launch(work: &Path, root: &Path, port: u16, metrics: u16) -> Result<Running, String> {
    let mut c = process::command(work);
    c.arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--root")
        .arg(root)
        .args(["--upload-enabled", "--upload-dir", "incoming", "--listing"])
        .args(["--log-format", "json"])
        .arg("--metrics-listen")
        .arg(format!("127.0.0.1:{metrics}"))
        .env("RANGESERVE_UPLOAD_TOKENS", TOKEN);
    let (stdout, stderr) = process::log_to(&mut c, &work.join("logs"));
    let child = c.spawn().expect("start the rangeserve binary");
    let mut run = Running {
        child,
        port,
        stdout,
        stderr,
    };
    let up = wait_for("the server to listen", Duration::from_secs(20), || {
        if let Some(st) = run.child.try_wait().unwrap() {
            return Some(Err(format!("{st}: {}", process::read_text(&run.stderr))));
        }
        (process::port_is_open(port) && process::port_is_open(metrics)).then_some(Ok(()))
    });
    up.map(|()| run)
}

/// The server on `port` (free a moment ago, or given up by a killed server), retried while the
/// port is still taken (at most 30 s); and its metrics port.
fn serve_on(work: &Path, root: &Path, port: u16) -> (Running, u16) {
    let mut last = String::new();
    wait_for(
        &format!("port {port} to take the server"),
        Duration::from_secs(30),
        || {
            let metrics = free_port();
            match launch(work, root, port, metrics) {
                Ok(run) => Some((run, metrics)),
                Err(e) if e.contains("in use") => {
                    last = e;
                    None
                }
                Err(e) => panic!("rangeserve did not start: {e} (before: {last})"),
            }
        },
    )
}

/// The script with chromium under it, in a process group of its own: killed, group and all,
/// if the test ends first.
struct Script {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    stderr: PathBuf,
}

impl Script {
    fn start(tools: &Tools, base: &str, src: &Path, work: &Path) -> Script {
        let home = work.join("browser-home");
        let profile = work.join("browser-profile");
        fs::create_dir_all(&home).unwrap();
        fs::create_dir_all(&profile).unwrap();
        let stderr = work.join("logs/browser_upload.err");
        let mut c = Command::new(&tools.python);
        programs::clean_env(&mut c, &home);
        c.env("PYTHONPATH", &tools.site)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .arg(checkout().join("tests/clients/browser_upload.py"))
            .args([base, TOKEN])
            .arg(src)
            .arg(artifacts())
            .arg(&tools.chromium)
            .arg(&tools.chromedriver)
            .arg(&profile)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&stderr).unwrap())
            .process_group(0);
        die_with_parent(&mut c);
        let mut child = c.spawn().expect("start browser_upload.py");
        let stdin = child.stdin.take().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Script {
            child,
            stdin,
            lines,
            stderr,
        }
    }

    /// The next line, split in words, which must start with `key`; at most until `deadline`.
    fn expect(&mut self, key: &str, deadline: Instant) -> Vec<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match self.lines.recv_timeout(left) {
            Ok(l) => l,
            Err(RecvTimeoutError::Timeout) => self.failed(&format!("no {key} line in time")),
            Err(RecvTimeoutError::Disconnected) => {
                let _ = self.child.wait();
                self.failed(&format!("the script ended before {key}"))
            }
        };
        let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        if words.first().map(String::as_str) != Some(key) {
            self.failed(&format!("expected {key}, got {line:?}"));
        }
        words
    }

    fn failed(&self, why: &str) -> ! {
        panic!(
            "browser_upload.py: {why}; its stderr:\n{}",
            process::read_text(&self.stderr)
        )
    }

    fn say(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            // SAFETY: kill(2) on the process group this test created (the script's pid).
            unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
            let _ = self.child.wait();
        }
    }
}

/// The value of `series` on the metrics page.
fn metric(port: u16, series: &str) -> u64 {
    let page = String::from_utf8(process::get_at(port, "/metrics", &[]).body).unwrap();
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in:\n{page}"))
        .parse()
        .unwrap()
}

#[test]
fn the_upload_page_in_chromium_resumes_after_the_server_is_killed() {
    let Some(tools) = Tools::find() else { return };
    let _serial = heavy();
    let started = Instant::now();
    let deadline = started + OVERALL;
    let dir = scratch();
    let work = dir.path();
    let root = work.join("root");
    let incoming = root.join("incoming");
    fs::create_dir_all(&incoming).unwrap();
    fs::create_dir_all(work.join("logs")).unwrap();
    let src = work.join(NAME);
    Pattern::new(48).write(&src, LEN);
    let want = sha256_file(&src);
    for shot in ["upload-page.png", "upload-listing.png"] {
        let _ = fs::remove_file(artifacts().join(shot));
    }

    let port = free_port();
    let (mut first, _) = serve_on(work, &root, port);
    let base = format!("http://127.0.0.1:{port}");
    let mut script = Script::start(&tools, &base, &src, work);

    // The page shows the upload between 10% and 80%: the server dies (SIGKILL).
    let kill = script.expect("KILL", deadline);
    let (sent, total): (u64, u64) = (kill[1].parse().unwrap(), kill[2].parse().unwrap());
    assert_eq!(total, LEN);
    assert!(sent * 10 >= LEN && sent * 10 <= LEN * 8, "{sent}");
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    // It stored part of the file, and published nothing.
    let work_dir = incoming.join(".rangeserve-uploads");
    let parts: Vec<PathBuf> = fs::read_dir(&work_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "part"))
        .collect();
    assert_eq!(parts.len(), 1, "{parts:?}");
    let kept = file_len(&parts[0]);
    assert!(
        kept > 0 && kept < LEN,
        "the cut did not land mid-upload: {kept}"
    );
    assert!(!incoming.join(NAME).exists());
    drop(first);

    // The same server again (same port, same upload directory); the page is reloaded.
    let (second, metrics) = serve_on(work, &root, port);
    script.say("RESTARTED");
    let resumed: u64 = script.expect("RESUMED", deadline)[1].parse().unwrap();
    let shown = script.expect("SHA256", deadline)[1].clone();
    script.expect("DONE", deadline);
    let status = wait_for("the script to exit", Duration::from_secs(30), || {
        script.child.try_wait().unwrap()
    });
    assert!(status.success(), "browser_upload.py: {status}");

    // Resumed from the server's offset, not from the start: at least what the killed server
    // kept (the old page may have sent more to the new one before the reload cut it).
    assert!(
        resumed >= kept && resumed < LEN,
        "resumed at {resumed}, {kept} kept"
    );
    // The published file: the source's bytes, their SHA-256 as its ETag, shown by the page.
    let (etag, got, len) = download(port, &format!("/incoming/{NAME}"));
    assert_eq!(len, LEN);
    assert_eq!(got, want, "the published file differs from the source");
    assert_eq!(etag, format!("\"{want}\""));
    assert_eq!(shown, want, "the page shows another SHA-256");
    // The new server stored exactly what was missing (the bytes of a PATCH that the reload
    // cut included), the reloaded page's PATCH sent the file from its resumption offset on,
    // and the upload counts as resumed.
    assert_eq!(
        metric(metrics, "rangeserve_upload_bytes_total"),
        LEN - kept,
        "bytes sent again, or lost: {kept} kept, resumed at {resumed}"
    );
    let patches = received(&second);
    assert_eq!(
        patches.iter().rev().find(|(m, _, _)| m == "PATCH"),
        Some(&("PATCH".to_string(), 204, LEN - resumed)),
        "{patches:?}"
    );
    assert!(metric(metrics, "rangeserve_uploads_resumed_total") >= 1);
    assert_eq!(metric(metrics, "rangeserve_uploads_completed_total"), 1);
    assert!(!parts[0].exists(), "the part file is left over");

    // The screenshots, kept as artifacts.
    for shot in ["upload-page.png", "upload-listing.png"] {
        let png = fs::read(artifacts().join(shot)).unwrap_or_default();
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
            "{shot}: not a screenshot ({} bytes)",
            png.len()
        );
    }
    programs::notice(&format!(
        "browser: 48 MiB upload cut at {kept} bytes by SIGKILL, resumed at {resumed} in chromium, \
         in {:.1} s; screenshot {}",
        started.elapsed().as_secs_f64(),
        artifacts().join("upload-page.png").display()
    ));
}
