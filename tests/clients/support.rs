//! Support for the `clients` tests: the real `rangeserve` binary as a child process, real download
//! clients (curl, wget, aria2c) as child processes, the server's access log, deterministic test
//! files, and the one 1 GiB file (and the one server over it) shared by every test that needs it.
//!
//! Nothing here synchronises with a fixed sleep: every wait polls a condition (a port accepts, a
//! log line is there, a file has N bytes, a process has exited) against a deadline.
#![allow(dead_code)]

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::common::curl::last_head;
use crate::common::{
    exchange, free_port, poll, process, programs, sha256_file, wait_for, Response,
};

pub const KIB: u64 = 1 << 10;
pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;

/// Where everything this suite writes lives (never /tmp, which may be a small tmpfs).
pub fn base_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("rangeserve-clients");
    fs::create_dir_all(&d).unwrap();
    d
}

/// A fresh directory for one test, removed when dropped.
pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("t-")
        .tempdir_in(base_dir())
        .unwrap()
}

pub fn file_len(p: &Path) -> u64 {
    fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

// ------------------------------------------------------------------------------------------
// Test data

/// Deterministic bytes that are nowhere constant: 1 MiB blocks of a xorshift stream (per seed),
/// rotated by a per-block amount, with the absolute offset (xor the seed) stamped every 4 KiB, so
/// no block equals another and a misplaced 4 KiB run is detectable.
pub struct Pattern {
    seed: u64,
    base: Vec<u8>,
}

impl Pattern {
    pub fn new(seed: u64) -> Pattern {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut base = Vec::with_capacity(MIB as usize);
        while base.len() < MIB as usize {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            base.extend_from_slice(&x.to_le_bytes());
        }
        Pattern { seed, base }
    }

    /// Block `index` (1 MiB, the last one of a file may be cut shorter by the caller).
    pub fn block(&self, index: u64, out: &mut Vec<u8>) {
        let n = self.base.len();
        let rot = (index.wrapping_mul(40_503) as usize) % n;
        out.clear();
        out.extend_from_slice(&self.base[rot..]);
        out.extend_from_slice(&self.base[..rot]);
        let offset = index * MIB;
        for k in (0..n).step_by(4096) {
            let stamp = (offset + k as u64) ^ self.seed.wrapping_mul(0xD6E8_FEB8_6659_FD93);
            out[k..k + 8].copy_from_slice(&stamp.to_le_bytes());
        }
    }

    pub fn bytes(&self, len: u64) -> Vec<u8> {
        let mut v = Vec::with_capacity(len as usize);
        let mut b = Vec::new();
        let mut i = 0;
        while (v.len() as u64) < len {
            self.block(i, &mut b);
            let take = ((len - v.len() as u64) as usize).min(b.len());
            v.extend_from_slice(&b[..take]);
            i += 1;
        }
        v
    }

    /// Write `len` bytes to `path` through a temporary name, so no reader sees a partial file.
    pub fn write(&self, path: &Path, len: u64) {
        let tmp = path.with_extension(format!("part-{}", std::process::id()));
        {
            let mut f = io::BufWriter::with_capacity(MIB as usize, File::create(&tmp).unwrap());
            let mut b = Vec::new();
            let (mut done, mut i) = (0u64, 0u64);
            while done < len {
                self.block(i, &mut b);
                let take = ((len - done) as usize).min(b.len());
                f.write_all(&b[..take]).unwrap();
                done += take as u64;
                i += 1;
            }
            f.into_inner().unwrap().sync_all().ok();
        }
        fs::rename(&tmp, path).unwrap();
    }
}

/// A file as it is on disk: what every download is checked against.
#[derive(Debug, Clone)]
pub struct Expected {
    pub path: PathBuf,
    pub len: u64,
    pub sha256: String,
}

impl Expected {
    /// Read the file back from disk and hash it (never trusting what we meant to write).
    pub fn of(path: &Path) -> Expected {
        Expected {
            path: path.to_path_buf(),
            len: fs::metadata(path).unwrap().len(),
            sha256: sha256_file(path),
        }
    }

    /// The ETag rangeserve documents: the quoted SHA-256 of the content.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.sha256)
    }
}

/// Files up to this size are always checked by their own SHA-256.
const ALWAYS_HASH: u64 = 64 * MIB;

/// Whether this build's sha2 is fast enough to hash a 1 GiB download in reasonable time. In a
/// plain `cargo test` build, dependencies are not optimised and sha2 runs at about 25 MB/s
/// (40 s per GiB); `cargo test --release` (or an opt-level override for sha2) hashes at GB/s.
pub fn sha2_is_fast() -> bool {
    static FAST: OnceLock<bool> = OnceLock::new();
    *FAST.get_or_init(|| {
        let data = vec![0x5au8; 8 * MIB as usize];
        let t = Instant::now();
        std::hint::black_box(Sha256::digest(&data));
        let rate = data.len() as f64 / t.elapsed().as_secs_f64() / 1e6;
        rate > 200.0
    })
}

/// The first offset where two files differ (a shorter file differs at its end), if any.
pub fn first_difference(a: &Path, b: &Path) -> Option<u64> {
    let mut fa = io::BufReader::new(File::open(a).unwrap());
    let mut fb = io::BufReader::new(File::open(b).unwrap());
    let (mut ba, mut bb) = (vec![0u8; MIB as usize], vec![0u8; MIB as usize]);
    let mut offset = 0u64;
    loop {
        let na = read_full(&mut fa, &mut ba);
        let nb = read_full(&mut fb, &mut bb);
        let n = na.min(nb);
        if ba[..n] != bb[..n] {
            let i = ba[..n].iter().zip(&bb[..n]).position(|(x, y)| x != y);
            return Some(offset + i.unwrap() as u64);
        }
        if na != nb {
            return Some(offset + n as u64);
        }
        if na == 0 {
            return None;
        }
        offset += n as u64;
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]).unwrap() {
            0 => break,
            k => n += k,
        }
    }
    n
}

/// Check a download against the file on disk: same length and same SHA-256. For a file over
/// 64 MiB in a build whose sha2 is unoptimised, the download is compared byte for byte with the
/// file whose SHA-256 `exp` holds (equal bytes have equal hashes), which takes 1 s instead of 40.
pub fn assert_download(got: &Path, exp: &Expected, what: &str) {
    let len = fs::metadata(got)
        .unwrap_or_else(|e| panic!("{what}: no downloaded file {}: {e}", got.display()))
        .len();
    let diff = || match first_difference(got, &exp.path) {
        Some(o) => format!("first differing byte at offset {o}"),
        None => "but the bytes are equal?".to_string(),
    };
    assert_eq!(
        len,
        exp.len,
        "{what}: downloaded {len} bytes, the file has {}; {}",
        exp.len,
        diff()
    );
    if exp.len <= ALWAYS_HASH || sha2_is_fast() {
        let sha = sha256_file(got);
        assert_eq!(
            sha,
            exp.sha256,
            "{what}: SHA-256 of the download differs from the file on disk; {}",
            diff()
        );
    } else if let Some(o) = first_difference(got, &exp.path) {
        panic!(
            "{what}: the download differs from the file on disk (SHA-256 {}) at offset {o}",
            exp.sha256
        );
    }
}

// ------------------------------------------------------------------------------------------
// Processes

/// Make a child die with the thread that spawned it, so nothing outlives a killed test run.
pub fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A running child whose stdout and stderr go to files; killed (SIGKILL) if dropped running.
pub struct Proc {
    child: Child,
    pub what: String,
    out: PathBuf,
    err: PathBuf,
    start: Instant,
    done: Option<ExitStatus>,
}

/// How a child ended.
#[derive(Debug)]
pub struct Outcome {
    pub what: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn success(self) -> Outcome {
        assert!(
            self.status.success(),
            "{} failed: {}\nstdout: {}\nstderr: {}",
            self.what,
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }
}

static PROC_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Proc {
    pub fn spawn(mut cmd: Command, logs: &Path, what: impl Into<String>) -> Proc {
        let what = what.into();
        let n = PROC_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let out = logs.join(format!("proc-{n}.out"));
        let err = logs.join(format!("proc-{n}.err"));
        cmd.stdin(Stdio::null())
            .stdout(File::create(&out).unwrap())
            .stderr(File::create(&err).unwrap());
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        Proc {
            child,
            what,
            out,
            err,
            start: Instant::now(),
            done: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        if self.done.is_none() {
            // SAFETY: plain kill(2) on our own child, which has not been reaped yet.
            unsafe { libc::kill(self.pid(), sig) };
        }
    }

    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.done.is_none() {
            self.done = self.child.try_wait().unwrap();
        }
        self.done
    }

    /// Wait for the child to exit (killing it and panicking after `timeout`).
    pub fn wait(mut self, timeout: Duration) -> Outcome {
        let what = self.what.clone();
        let Some(status) = poll(timeout, || self.exited()) else {
            self.signal(libc::SIGKILL);
            let _ = self.child.wait();
            panic!(
                "{what} did not finish within {timeout:?}; stderr: {}",
                fs::read_to_string(&self.err).unwrap_or_default()
            );
        };
        Outcome {
            what,
            status,
            stdout: fs::read_to_string(&self.out).unwrap_or_default(),
            stderr: fs::read_to_string(&self.err).unwrap_or_default(),
            elapsed: self.start.elapsed(),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exited().is_none() {
            self.signal(libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => status.to_string(),
    }
}

// ------------------------------------------------------------------------------------------
// Clients

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    Curl,
    Wget,
    Aria2c,
}

impl Client {
    pub fn name(self) -> &'static str {
        match self {
            Client::Curl => "curl",
            Client::Wget => "wget",
            Client::Aria2c => "aria2c",
        }
    }
}

/// An installed client, with a scratch HOME so that no user configuration is read.
pub struct Tool {
    pub client: Client,
    pub exe: PathBuf,
    /// Where this test keeps the client's HOME and the child processes' output.
    pub dir: PathBuf,
}

/// The client, or `None` after a visible "skipped: ... not installed". With `CI` set, a missing
/// client fails the test instead.
pub fn require(client: Client, dir: &Path) -> Option<Tool> {
    let exe = programs::require(client.name())?;
    fs::create_dir_all(dir.join("home")).unwrap();
    Some(Tool {
        client,
        exe,
        dir: dir.to_path_buf(),
    })
}

/// Whether the program, package or file `what` is there (`found`); when it is not, a visible
/// "skipped: ..." and `false`, or with `CI` set a failure: CI must run every test.
pub fn required(what: &str, found: bool) -> bool {
    if found {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{}: {what} is not installed, and CI is set: install it (.ci/run shows how)",
            programs::test_name()
        );
    }
    programs::notice(&format!(
        "skipped: {what} not installed (test {})",
        programs::test_name()
    ));
    false
}

/// What a client should do with a URL.
#[derive(Clone, Copy, Debug, Default)]
pub struct Opts<'a> {
    /// Continue a partial file (`curl -C -`, `wget -c`, `aria2c -c`).
    pub resume: bool,
    /// A bandwidth limit, to make sure a cut lands mid-transfer.
    pub throttle: bool,
    /// Extra arguments placed before the URL.
    pub extra: &'a [&'a str],
}

impl Tool {
    /// The client with the flags every run gets: no configuration files, no proxy, quiet.
    pub fn command(&self) -> Command {
        let home = self.dir.join("home");
        let mut c = match self.client {
            Client::Curl => return programs::curl(&self.exe, &home),
            _ => Command::new(&self.exe),
        };
        programs::clean_env(&mut c, &home);
        match self.client {
            Client::Curl => unreachable!(),
            Client::Wget => c.args([
                "--no-config",
                "-q",
                "--no-proxy",
                "--no-hsts",
                "--tries=1",
                "--timeout=120",
            ]),
            Client::Aria2c => c.args([
                "--no-conf",
                "--quiet=true",
                "--allow-overwrite=true",
                "--auto-file-renaming=false",
                "--file-allocation=none",
                "--check-certificate=false",
                "--no-netrc=true",
            ]),
        };
        c
    }

    /// Download `url` to `out` as this client would be asked to by a user.
    pub fn download_cmd(&self, url: &str, out: &Path, o: Opts) -> Command {
        let mut c = self.command();
        let mut args: Vec<OsString> = Vec::new();
        match self.client {
            Client::Curl => {
                if o.resume {
                    args.extend(["-C".into(), "-".into()]);
                }
                if o.throttle {
                    args.extend(["--limit-rate".into(), "1M".into()]);
                }
                args.extend(["-o".into(), out.into()]);
            }
            Client::Wget => {
                if o.resume {
                    args.push("-c".into());
                }
                if o.throttle {
                    args.push("--limit-rate=1m".into());
                }
                args.extend(["-O".into(), out.into()]);
            }
            Client::Aria2c => {
                if o.resume {
                    args.push("-c".into());
                }
                if o.throttle {
                    args.push("--max-download-limit=4M".into());
                }
                args.extend([
                    "-d".into(),
                    out.parent().unwrap().into(),
                    "-o".into(),
                    out.file_name().unwrap().into(),
                ]);
            }
        }
        args.extend(o.extra.iter().map(OsString::from));
        args.push(url.into());
        c.args(args);
        c
    }

    pub fn spawn(&self, cmd: Command, what: impl Into<String>) -> Proc {
        Proc::spawn(cmd, &self.dir, what)
    }

    /// Run a download to the end (5 minutes at most).
    pub fn download(&self, url: &str, out: &Path, o: Opts) -> Outcome {
        let what = format!(
            "{} {}{}",
            self.client.name(),
            if o.resume { "(resume) " } else { "" },
            url
        );
        self.spawn(self.download_cmd(url, out, o), what)
            .wait(Duration::from_secs(300))
    }

    /// Run any command built from `self.command()` to the end.
    pub fn run(&self, cmd: Command, what: &str) -> Outcome {
        self.spawn(cmd, what).wait(Duration::from_secs(300))
    }
}

// ------------------------------------------------------------------------------------------
// The server

/// The real server binary, started over `root` on 127.0.0.1, its stdout (the log) in a file.
pub struct Server {
    pub port: u16,
    pub root: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Server {
    /// Start on a free port (another port is tried if that one is taken meanwhile).
    pub fn start(root: &Path, work: &Path, tag: &str) -> Server {
        for _ in 0..10 {
            match Self::launch(root, work, tag, free_port()) {
                Ok(s) => return s,
                Err(e) if e.contains("in use") => continue,
                Err(e) => panic!("rangeserve did not start: {e}"),
            }
        }
        panic!("rangeserve: no free port after 10 tries");
    }

    /// Start on this port, waiting (up to 30 s) for it to become free, as after a restart.
    pub fn start_on(root: &Path, work: &Path, tag: &str, port: u16) -> Server {
        let mut last = String::new();
        let mut attempt = 0;
        wait_for(
            &format!("port {port} to be free again"),
            Duration::from_secs(30),
            || {
                attempt += 1;
                match Self::launch(root, work, &format!("{tag}-{attempt}"), port) {
                    Ok(s) => Some(s),
                    Err(e) if e.contains("in use") => {
                        last = e;
                        None
                    }
                    Err(e) => panic!("rangeserve did not start: {e} (before: {last})"),
                }
            },
        )
    }

    fn launch(root: &Path, work: &Path, tag: &str, port: u16) -> Result<Server, String> {
        // Its own working directory, so that the repository's config.toml is not read.
        let cwd = work.join(format!("{tag}-cwd"));
        fs::create_dir_all(&cwd).unwrap();
        let log = work.join(format!("{tag}.log"));
        let err = work.join(format!("{tag}.err"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rangeserve"));
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("RANGESERVE_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("RUST_LOG", "info")
            .arg("--root")
            .arg(root)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .current_dir(&cwd)
            .stdin(Stdio::null())
            .stdout(File::create(&log).unwrap())
            .stderr(File::create(&err).unwrap());
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().expect("start the rangeserve binary");
        // Ready when the port accepts and the child is still running (a child that exits,
        // for instance because the port was taken meanwhile, is reported with its stderr).
        let ready = wait_for("rangeserve to listen", Duration::from_secs(60), || {
            if let Some(status) = child.try_wait().unwrap() {
                let e = fs::read_to_string(&err).unwrap_or_default();
                return Some(Err(format!("{} ({status})", e.trim())));
            }
            TcpStream::connect(("127.0.0.1", port))
                .is_ok()
                .then_some(Ok(()))
        });
        ready.map(|()| Server {
            port,
            root: root.to_path_buf(),
            log,
            child: Some(child),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// SIGKILL: the hard stop of a crash or a forced redeploy.
    pub fn kill_hard(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Every access line so far.
    pub fn accesses(&self) -> Vec<Access> {
        parse_access_log(&fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// Access lines for one path.
    pub fn accesses_for(&self, path: &str) -> Vec<Access> {
        self.accesses()
            .into_iter()
            .filter(|a| a.path == path)
            .collect()
    }

    /// Wait until at least `n` access lines for `path` are logged; return them all.
    pub fn wait_accesses(&self, path: &str, n: usize) -> Vec<Access> {
        wait_for(
            &format!("{n} access line(s) for {path} in {}", self.log.display()),
            Duration::from_secs(60),
            || {
                let v = self.accesses_for(path);
                (v.len() >= n).then_some(v)
            },
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

// ------------------------------------------------------------------------------------------
// The access log

/// One `rangeserve::access` line.
#[derive(Debug, Clone)]
pub struct Access {
    /// When the line was written (the body finished or was dropped), seconds since the epoch.
    pub at: f64,
    pub method: String,
    pub path: String,
    pub status: u16,
    /// Body bytes actually sent.
    pub bytes: u64,
    pub ms: f64,
    /// The request's Range header; `None` for `-`.
    pub range: Option<String>,
    pub complete: bool,
    pub line: String,
}

impl Access {
    /// When the request started, seconds since the epoch.
    pub fn started(&self) -> f64 {
        self.at - self.ms / 1000.0
    }

    /// First position of a single `bytes=N-` or `bytes=N-M` range.
    pub fn range_start(&self) -> Option<u64> {
        let r = self.range.as_deref()?.strip_prefix("bytes=")?;
        if r.contains(',') {
            return None;
        }
        r.split('-').next()?.trim().parse().ok()
    }
}

pub fn parse_access_log(text: &str) -> Vec<Access> {
    text.lines().filter_map(parse_access_line).collect()
}

fn parse_access_line(line: &str) -> Option<Access> {
    const TARGET: &str = "rangeserve::access: ";
    let at = parse_timestamp(line.split_whitespace().next()?)?;
    let mut rest = &line[line.find(TARGET)? + TARGET.len()..];
    let mut fields = std::collections::HashMap::new();
    while !rest.is_empty() {
        let eq = rest.find('=')?;
        let key = rest[..eq].trim().to_string();
        rest = &rest[eq + 1..];
        let value;
        if let Some(q) = rest.strip_prefix('"') {
            // Debug-formatted string: ends at the first unescaped quote.
            let mut out = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            out.push(n);
                        }
                    }
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    c => out.push(c),
                }
            }
            value = out;
            rest = &q[end? + 1..];
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            value = rest[..end].to_string();
            rest = &rest[end..];
        }
        rest = rest.trim_start();
        fields.insert(key, value);
    }
    let range = fields.remove("range")?;
    Some(Access {
        at,
        method: fields.remove("method")?,
        path: fields.remove("path")?,
        status: fields.remove("status")?.parse().ok()?,
        bytes: fields.remove("bytes")?.parse().ok()?,
        ms: fields.remove("ms")?.parse().ok()?,
        range: (range != "-").then_some(range),
        complete: fields.remove("complete")? == "true",
        line: line.to_string(),
    })
}

/// `2026-11-22T05:28:46.458566Z` as seconds since the epoch.
fn parse_timestamp(s: &str) -> Option<f64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (h, mi) = (
        t.next()?.parse::<f64>().ok()?,
        t.next()?.parse::<f64>().ok()?,
    );
    let sec = t.next()?.parse::<f64>().ok()?;
    // Days from the civil date (H. Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 * 86_400.0 + h * 3600.0 + mi * 60.0 + sec)
}

/// The most responses in progress at one moment.
pub fn max_concurrency(lines: &[Access]) -> usize {
    let mut ev: Vec<(f64, i32)> = lines
        .iter()
        .flat_map(|a| [(a.started(), 1), (a.at, -1)])
        .collect();
    // At equal times, ends before starts: touching is not overlapping.
    ev.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut now, mut best) = (0i32, 0i32);
    for (_, d) in ev {
        now += d;
        best = best.max(now);
    }
    best as usize
}

// ------------------------------------------------------------------------------------------
// Response heads saved by `curl -D`

/// The last response head in a `curl -D` file: status and lower-cased headers.
pub fn read_head(path: &Path) -> (u16, Vec<(String, String)>) {
    last_head(&fs::read_to_string(path).unwrap_or_default())
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

// ------------------------------------------------------------------------------------------
// The 1 GiB file and the server over it, shared by the tests of one run

/// The one 1 GiB file of this run and the one server over it: the server hashes a file once per
/// process (about 40 s per GiB in an unoptimised build), so every 1 GiB test shares it.
pub struct Big {
    pub server: Server,
    /// `big.bin` in the server's root; the tests' own names are hard links to it.
    pub expected: Expected,
    run_dir: PathBuf,
}

/// Names under which the tests fetch the big file, one per test so that their log lines part.
pub const BIG_NAMES: &[&str] = &[
    "big-curl.bin",
    "big-wget.bin",
    "big-aria2c.bin",
    "big-segmented.bin",
];

const BIG_CACHE: &str = "1gib-v2.bin";
const BIG_SEED: u64 = 0x1_0000_0001;

static BIG: OnceLock<Big> = OnceLock::new();

/// Serialises the 1 GiB transfers: on 2 cores, two at once only make both slower.
static HEAVY: Mutex<()> = Mutex::new(());

pub fn heavy() -> MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn big() -> &'static Big {
    BIG.get_or_init(init_big)
}

extern "C" fn cleanup_big_at_exit() {
    if let Some(b) = BIG.get() {
        if let Some(pid) = b.server.pid() {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = fs::remove_dir_all(&b.run_dir);
    }
}

fn init_big() -> Big {
    let t0 = Instant::now();
    let base = base_dir();
    sweep_stale_runs(&base);
    let cache = base.join(BIG_CACHE);
    let pattern = Pattern::new(BIG_SEED);
    if !big_cache_ok(&cache, &pattern) {
        pattern.write(&cache, GIB);
    }
    // A private copy per run: another test process linking or unlinking the shared file would
    // change its ctime, and with it the server's cache key, while this run's server uses it.
    let run_dir = base.join(format!("run-{}", std::process::id()));
    let _ = fs::remove_dir_all(&run_dir);
    let root = run_dir.join("root");
    fs::create_dir_all(&root).unwrap();
    let file = root.join("big.bin");
    fs::copy(&cache, &file).unwrap();
    // All links before the server starts: a new link changes the inode's ctime.
    for name in BIG_NAMES {
        fs::hard_link(&file, root.join(name)).unwrap();
    }
    // SAFETY: registering a plain extern "C" function.
    unsafe { libc::atexit(cleanup_big_at_exit) };

    // The server is started from a thread that never ends, so that "die with the parent
    // thread" means "die with this test process".
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let (root, run_dir) = (root.clone(), run_dir.clone());
        std::thread::spawn(move || {
            let r = std::panic::catch_unwind(|| Server::start(&root, &run_dir, "big-server"));
            let _ = tx.send(r);
            loop {
                std::thread::park();
            }
        });
    }
    let server = match rx.recv().unwrap() {
        Ok(s) => s,
        Err(e) => std::panic::resume_unwind(e),
    };
    // The server hashes the file on its first request: start that now, alongside our own hash.
    let port = server.port;
    let warm = std::thread::spawn(move || head_etag(port, "/big.bin"));
    let sha256 = cached_sha256(&cache);
    let expected = Expected {
        path: file,
        len: GIB,
        sha256,
    };
    let etag = warm.join().expect("HEAD /big.bin");
    assert_eq!(
        etag,
        expected.etag(),
        "the server's ETag for the 1 GiB file is not the quoted SHA-256 of its content"
    );
    eprintln!(
        "clients: 1 GiB file and its server ready in {:.1} s (sha2 {})",
        t0.elapsed().as_secs_f64(),
        if sha2_is_fast() {
            "optimised: every download is hashed"
        } else {
            "unoptimised: 1 GiB downloads are compared byte for byte with the hashed file"
        }
    );
    Big {
        server,
        expected,
        run_dir,
    }
}

/// Reuse the cached big file when it has the right size and a few sampled blocks match.
fn big_cache_ok(cache: &Path, pattern: &Pattern) -> bool {
    use std::os::unix::fs::FileExt;
    let Ok(f) = File::open(cache) else {
        return false;
    };
    if f.metadata().map(|m| m.len()).unwrap_or(0) != GIB {
        return false;
    }
    let blocks = GIB / MIB;
    let (mut want, mut got) = (Vec::new(), vec![0u8; MIB as usize]);
    for i in [0, 1, 2, 333, blocks / 2, 777, blocks - 2, blocks - 1] {
        pattern.block(i, &mut want);
        if f.read_exact_at(&mut got, i * MIB).is_err() || got != want {
            return false;
        }
    }
    true
}

/// The SHA-256 of the cached big file, remembered next to it (keyed by its size, inode and
/// mtime) so that an unoptimised build hashes the GiB once, not on every run.
fn cached_sha256(cache: &Path) -> String {
    let m = fs::metadata(cache).unwrap();
    let key = format!("{} {} {} {}", m.len(), m.ino(), m.mtime(), m.mtime_nsec());
    let side = cache.with_extension("sha256");
    if let Ok(text) = fs::read_to_string(&side) {
        if let Some((k, sha)) = text.trim().rsplit_once(' ') {
            if k == key && sha.len() == 64 {
                return sha.to_string();
            }
        }
    }
    let sha = sha256_file(cache);
    let tmp = side.with_extension(format!("tmp-{}", std::process::id()));
    fs::write(&tmp, format!("{key} {sha}\n")).unwrap();
    fs::rename(&tmp, &side).unwrap();
    sha
}

/// Remove the private copies of runs whose process is gone.
fn sweep_stale_runs(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name
            .strip_prefix("run-")
            .and_then(|p| p.parse::<i32>().ok())
        {
            // SAFETY: kill with signal 0 only checks that the process exists.
            let alive = unsafe { libc::kill(pid, 0) } == 0
                || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
            if !alive {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

/// `HEAD path` over raw TCP; the ETag of the 200 (waits, up to 10 minutes, for the server's
/// first hash).
fn head_etag(port: u16, path: &str) -> String {
    let request = format!("HEAD {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let raw = exchange(
        process::addr(port),
        request.as_bytes(),
        Duration::from_secs(600),
    );
    assert!(
        raw.starts_with(b"HTTP/1.1 200"),
        "HEAD {path}: {}",
        String::from_utf8_lossy(&raw)
    );
    Response::parse(&raw, true)
        .header("etag")
        .expect("ETag on HEAD")
        .to_string()
}
