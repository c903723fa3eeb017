//! The server binary as a child process: started in a directory of the test's choosing (so no
//! stray config.toml is read), on a port that was free a moment ago, killed when dropped.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{free_port, poll, request_at, Response};

pub const BIN: &str = env!("CARGO_BIN_EXE_rangeserve");

pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

pub fn port_is_open(port: u16) -> bool {
    TcpStream::connect_timeout(&addr(port), Duration::from_millis(200)).is_ok()
}

/// A connection to 127.0.0.1:`port` is refused: nothing listens there. (Not merely "does not
/// connect": a listener that no longer accepts still completes connections until its backlog is
/// full, and then lets them time out.)
pub fn refused(port: u16) -> bool {
    match TcpStream::connect_timeout(&addr(port), Duration::from_secs(1)) {
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionRefused,
        Ok(_) => false,
    }
}

/// The binary, run in `cwd`, with no inherited RANGESERVE_* or RUST_LOG variables.
pub fn command(cwd: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(cwd).stdin(Stdio::null());
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("RANGESERVE_") || k == "RUST_LOG" {
            c.env_remove(k);
        }
    }
    c
}

static LOG_SEQ: AtomicUsize = AtomicUsize::new(0);

/// Send stdout and stderr to fresh files under `logs` (no pipe that could fill up).
pub fn log_to(c: &mut Command, logs: &Path) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(logs).unwrap();
    let n = LOG_SEQ.fetch_add(1, Ordering::SeqCst);
    let out = logs.join(format!("stdout-{n}.log"));
    let err = logs.join(format!("stderr-{n}.log"));
    c.stdout(std::fs::File::create(&out).unwrap());
    c.stderr(std::fs::File::create(&err).unwrap());
    (out, err)
}

pub fn read_text(p: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned()
}

/// A running server process, killed when dropped.
pub struct Running {
    pub child: Child,
    pub port: u16,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    /// `GET path` with these headers on a fresh connection; the parsed response.
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        get_at(self.port, path, headers)
    }

    pub fn sigterm(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Send `sig` to the server process.
    pub fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child's pid; it has not been reaped (we hold the Child).
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }

    /// Wait for the process to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        poll(limit, || self.child.try_wait().unwrap()).unwrap_or_else(|| {
            panic!(
                "still running after {limit:?}; log: {}",
                read_text(&self.stdout)
            )
        })
    }

    /// What the server wrote to standard output so far (its log).
    pub fn log(&self) -> String {
        read_text(&self.stdout)
    }

    /// Wait (at most 10 s) until the log (in JSON) holds at least `n` access lines; all of them.
    pub fn json_access_lines(&self, n: usize) -> Vec<serde_json::Value> {
        poll(Duration::from_secs(10), || {
            let lines: Vec<serde_json::Value> = self
                .log()
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|v| v["target"] == "rangeserve::access")
                .collect();
            (lines.len() >= n).then_some(lines)
        })
        .unwrap_or_else(|| panic!("fewer than {n} access lines:\n{}", self.log()))
    }

    /// Wait (at most 10 s) until the log contains `needle`; the log.
    pub fn log_shows(&self, needle: &str) -> String {
        poll(Duration::from_secs(10), || {
            let log = self.log();
            log.contains(needle).then_some(log)
        })
        .unwrap_or_else(|| panic!("no {needle:?} in the log:\n{}", self.log()))
    }
}

/// `GET path` on 127.0.0.1:`port`, Connection: close; the parsed response.
pub fn get_at(port: u16, path: &str, headers: &[(&str, &str)]) -> Response {
    request_at(addr(port), "GET", path, headers)
}

/// A temporary working directory for the binary (so no stray config.toml is read) holding its
/// document root `root/`; the binary's output goes to `logs/`. Removed when dropped.
pub struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    /// A site whose root is empty.
    pub fn empty() -> Site {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("root")).unwrap();
        Site { dir }
    }

    /// A site whose root holds one file, `f.txt` ("hello from root\n").
    pub fn new() -> Site {
        let site = Site::empty();
        site.write("root/f.txt", "hello from root\n");
        site
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn root(&self) -> PathBuf {
        self.path().join("root")
    }

    pub fn logs(&self) -> PathBuf {
        self.path().join("logs")
    }

    /// Write `rel` (relative to the site; parents created) and return its path.
    pub fn write(&self, rel: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// The binary serving this site's root, with whatever else `setup` adds ([`serve`]).
    pub fn serve(&self, setup: impl Fn(&mut Command)) -> Running {
        serve(self.path(), &self.logs(), &self.root(), setup)
    }
}

/// Start the binary in `cwd` serving `root` (`--listen` on a free port and `--root`), with
/// whatever else `setup` adds.
pub fn serve(cwd: &Path, logs: &Path, root: &Path, setup: impl Fn(&mut Command)) -> Running {
    start(cwd, logs, |port, c| {
        c.arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--root")
            .arg(root);
        setup(c);
    })
}

/// Start the binary in `cwd`; `setup` gets a free port and adds whatever makes the server
/// listen on it (a flag, a variable, a config file). Retries with another port if the one
/// picked was taken in the meantime. Ready once the port accepts connections.
pub fn start(cwd: &Path, logs: &Path, setup: impl Fn(u16, &mut Command)) -> Running {
    for _attempt in 0..5 {
        let port = free_port();
        let mut c = command(cwd);
        setup(port, &mut c);
        let (stdout, stderr) = log_to(&mut c, logs);
        let child = c.spawn().unwrap();
        let mut run = Running {
            child,
            port,
            stdout,
            stderr,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = run.child.try_wait().unwrap() {
                let err = read_text(&run.stderr);
                // A port in use is a start-up error naming `listen` (exit code 2; 1 before
                // listeners were bound ahead of the start-up line).
                if matches!(st.code(), Some(1 | 2))
                    && err.contains("listen")
                    && err.contains("in use")
                {
                    break; // port taken by someone else: try another
                }
                panic!("server exited with {st} before listening: {err}");
            }
            if port_is_open(port) {
                return run;
            }
            assert!(
                Instant::now() < deadline,
                "server not listening on {port} after 10 s: {}",
                read_text(&run.stderr)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    panic!("could not start the server on a free port");
}

/// Run the binary to completion (at most 10 s): exit status, stdout, stderr.
pub fn run_to_exit(mut c: Command, logs: &Path) -> (ExitStatus, String, String) {
    let (out, err) = log_to(&mut c, logs);
    let mut child = c.spawn().unwrap();
    let Some(status) = poll(Duration::from_secs(10), || child.try_wait().unwrap()) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("still running after 10 s: {}", read_text(&out));
    };
    (status, read_text(&out), read_text(&err))
}

/// Run the binary in `cwd`, with what `setup` adds and `--listen` on a free port, expecting a
/// start-up failure: exit code 2, exactly one line on stderr, and nothing on stdout (so no
/// "listening" line: it stopped before serving). Returns the line. (The port is not probed
/// after the exit: by then nothing of ours can hold it, and another process that took the free
/// port meanwhile made that check fail for nothing.)
pub fn config_error(cwd: &Path, setup: impl FnOnce(&mut Command)) -> String {
    let port = free_port();
    let mut c = command(cwd);
    setup(&mut c);
    c.arg("--listen").arg(format!("127.0.0.1:{port}"));
    let args: Vec<_> = c.get_args().collect();
    let envs: Vec<_> = c.get_envs().filter(|(_, v)| v.is_some()).collect();
    let what = format!("{args:?} {envs:?}");
    let (st, out, err) = run_to_exit(c, &cwd.join("logs"));
    assert_eq!(st.code(), Some(2), "{what}: {st}; stderr: {err}");
    assert!(err.ends_with('\n'), "{what}: {err:?}");
    assert_eq!(err.lines().count(), 1, "{what}: not one line: {err:?}");
    assert!(out.is_empty(), "{what}: stdout: {out:?}");
    err
}
