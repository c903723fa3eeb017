//! Shared by the test binaries: the real router started in process on 127.0.0.1 with an
//! ephemeral port over a temporary root, raw HTTP/1.1 to it so every byte can be checked, and
//! the small helpers every binary needs (test bytes, hashes, polling, file times).
#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::ThreadId;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rangeserve::config::Config;
use rangeserve::ServeFiles;

pub mod codings;
pub mod curl;
pub mod multipart;
pub mod process;
pub mod programs;
pub mod seaweed;
pub mod tls;

// ------------------------------------------------------------------------------------------
// A server on its own thread

/// A server running on a thread of its own with a two-worker tokio runtime; stopped, and its
/// thread joined, when dropped.
pub struct Background {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Given to the serving function: `go` says the server is ready for the test.
pub struct Ready {
    tx: std::sync::mpsc::Sender<SocketAddr>,
    addr: SocketAddr,
}

impl Ready {
    pub fn go(self) {
        self.tx.send(self.addr).unwrap();
    }
}

/// Given to the serving function: completes when the server is dropped.
pub struct Stop(tokio::sync::oneshot::Receiver<()>);

impl Stop {
    pub async fn wait(self) {
        let _ = self.0.await;
    }
}

impl Background {
    /// Bind `listen` and run `serve` on the listener in a new thread and runtime. Returns once
    /// `serve` has called `Ready::go` (at most 10 s).
    pub fn start<F, Fut>(listen: SocketAddr, serve: F) -> Background
    where
        F: FnOnce(tokio::net::TcpListener, Ready, Stop) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(listen).await.unwrap();
                let ready = Ready {
                    tx: addr_tx,
                    addr: listener.local_addr().unwrap(),
                };
                serve(listener, ready, Stop(stop_rx)).await;
            });
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Background {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ------------------------------------------------------------------------------------------
// Tests that need the process to themselves

/// The in-process servers of this test process: how many run for tests other than the one that
/// has the process to itself, and which test (thread) that is.
struct Servers {
    others: usize,
    alone: Option<ThreadId>,
}

static SERVERS: Mutex<Servers> = Mutex::new(Servers {
    others: 0,
    alone: None,
});
static SERVERS_CHANGED: Condvar = Condvar::new();

fn servers() -> MutexGuard<'static, Servers> {
    SERVERS.lock().unwrap_or_else(|e| e.into_inner())
}

fn wait_servers(g: MutexGuard<'static, Servers>) -> MutexGuard<'static, Servers> {
    SERVERS_CHANGED.wait(g).unwrap_or_else(|e| e.into_inner())
}

/// Held by a test that reads process-wide counters (the sendfile byte count): from the moment
/// it has it until it drops it, no other test's in-process [`Server`] runs in this process.
/// Taking it waits until those running have stopped; others wait to start until it is dropped.
pub struct Alone(());

pub fn alone() -> Alone {
    let mut g = servers();
    while g.alone.is_some() || g.others > 0 {
        g = wait_servers(g);
    }
    g.alone = Some(std::thread::current().id());
    Alone(())
}

impl Drop for Alone {
    fn drop(&mut self) {
        servers().alone = None;
        SERVERS_CHANGED.notify_all();
    }
}

/// A server's place among [`Servers`]: counted unless its test has the process to itself.
struct Counted(bool);

fn counted() -> Counted {
    let me = std::thread::current().id();
    let mut g = servers();
    loop {
        match g.alone {
            Some(t) if t == me => return Counted(false),
            Some(_) => g = wait_servers(g),
            None => {
                g.others += 1;
                return Counted(true);
            }
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if self.0 {
            servers().others -= 1;
            SERVERS_CHANGED.notify_all();
        }
    }
}

// ------------------------------------------------------------------------------------------
// The server in process

pub struct Server {
    /// Stopped first when dropped (fields drop in order): then the server's place is given up,
    /// then its temporary directory removed.
    background: Background,
    counted: Counted,
    pub addr: SocketAddr,
    /// The document root (a fresh temporary directory unless the test gave one).
    pub root: PathBuf,
    /// Holds the temporary directory; the root lives inside it, next to `outside`.
    pub dir: tempfile::TempDir,
    /// The server's configuration.
    pub config: Arc<Config>,
    /// The server's file engine, shared with the test (e.g. to count hash computations).
    pub files: ServeFiles,
}

impl Server {
    /// A server over an empty root `<tmp>/root`, with default settings.
    pub fn start() -> Server {
        Self::start_with(|_| {})
    }

    /// A server over an empty root whose config is adjusted by `tweak`.
    pub fn start_with(tweak: impl FnOnce(&mut Config)) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap().join("root");
        std::fs::create_dir(&root).unwrap();
        Self::start_in(dir, root, tweak)
    }

    /// A server over an existing root (which outlives it), config adjusted by `tweak`.
    pub fn start_over(root: &Path, tweak: impl FnOnce(&mut Config)) -> Server {
        Self::start_in(tempfile::tempdir().unwrap(), root.to_path_buf(), tweak)
    }

    fn start_in(dir: tempfile::TempDir, root: PathBuf, tweak: impl FnOnce(&mut Config)) -> Server {
        let mut config = Config::with_root(&root).unwrap();
        config.listen = "127.0.0.1:0".parse().unwrap();
        // `.ci/run` runs the HTTP-level tests a second time with the fast path off.
        if let Some(on) = fast_path_from_env() {
            config.fast_path = on;
        }
        tweak(&mut config);
        let config = Arc::new(config);
        let files = rangeserve::app::files(&config);
        let counted = counted();
        let (served, served_config) = (files.clone(), config.clone());
        let background =
            Background::start(config.listen, move |listener, ready, stop| async move {
                // Ready before the test goes on: the root open, persisted hashes loaded.
                served.start().await.unwrap();
                ready.go();
                rangeserve::app::serve_files(listener, served_config, served, stop.wait())
                    .await
                    .unwrap();
            });
        Server {
            addr: background.addr,
            background,
            counted,
            root,
            dir,
            config,
            files,
        }
    }

    /// A server over an empty root, configured by `toml` (a config.toml's text) through the real
    /// loader (`Cli::load`: file, then `RANGESERVE_*` variables, then no flags).
    pub fn start_toml(toml: &str) -> Server {
        use clap::Parser as _;
        Self::start_with(|c| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("config.toml");
            std::fs::write(&path, toml).unwrap();
            let root = c.root.clone();
            let os = std::ffi::OsStr::new;
            let cli = rangeserve::config::Cli::try_parse_from([
                os("rangeserve"),
                os("--config"),
                path.as_os_str(),
                os("--root"),
                root.as_os_str(),
            ])
            .unwrap();
            let listen = c.listen;
            *c = cli
                .load()
                .unwrap_or_else(|e| panic!("config {toml:?}: {e}"));
            c.listen = listen;
        })
    }

    /// Write a file under the root (parents created) and return its path.
    pub fn file(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        let p = self.root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// A fresh connection whose reads give up after 10 s.
    pub fn connect(&self) -> TcpStream {
        connect(self.addr, Duration::from_secs(10))
    }

    /// Send raw request bytes on a fresh connection and read the response to EOF.
    pub fn raw(&self, request: &[u8]) -> Vec<u8> {
        raw_at(self.addr, request)
    }

    /// `METHOD path` with these headers (plus Host and Connection: close); the parsed response.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
        request_at(self.addr, method, path, headers)
    }

    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        self.request("GET", path, headers)
    }
}

/// `RANGESERVE_FAST_PATH`, as the binary reads it (`true`/`false`, `1`/`0`, `yes`/`no`,
/// `on`/`off`); `None` when unset.
pub fn fast_path_from_env() -> Option<bool> {
    let v = std::env::var("RANGESERVE_FAST_PATH").ok()?;
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" | "y" => Some(true),
        "false" | "0" | "no" | "off" | "n" => Some(false),
        _ => panic!("RANGESERVE_FAST_PATH={v:?} is not a bool"),
    }
}

// ------------------------------------------------------------------------------------------
// Raw HTTP/1.1

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A connection to `addr` whose reads give up after `read_timeout`.
pub fn connect(addr: SocketAddr, read_timeout: Duration) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(read_timeout)).unwrap();
    s
}

/// Send `request` to `addr` on a fresh connection and read to EOF (or to a read error, or
/// `timeout` without a byte).
pub fn exchange(addr: SocketAddr, request: &[u8], timeout: Duration) -> Vec<u8> {
    let mut s = connect(addr, timeout);
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// Send raw request bytes to `addr` on a fresh connection and read the response to EOF. The
/// read timeout is long enough for the lab's SHA-256 of a 2 GiB generated file on a loaded
/// machine.
pub fn raw_at(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    exchange(addr, request, Duration::from_secs(60))
}

/// `METHOD path` to `addr` with these headers (plus Host and Connection: close); the parsed
/// response.
pub fn request_at(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Response {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    Response::parse(&raw_at(addr, req.as_bytes()), method == "HEAD")
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Lower-cased names; repeated fields joined with ", ".
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Response {
    /// Parse one HTTP/1.1 response that was read to EOF. The body must be exactly
    /// Content-Length bytes when that header is present (and empty for HEAD/204/304).
    pub fn parse(raw: &[u8], head: bool) -> Response {
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut hs);
        let n = match r.parse(raw).expect("parseable response") {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => panic!(
                "incomplete response head: {:?}",
                String::from_utf8_lossy(raw)
            ),
        };
        let status = r.code.unwrap();
        let mut headers: HashMap<String, String> = HashMap::new();
        for h in r.headers.iter() {
            let v = String::from_utf8(h.value.to_vec()).unwrap();
            headers
                .entry(h.name.to_ascii_lowercase())
                .and_modify(|e| {
                    e.push_str(", ");
                    e.push_str(&v)
                })
                .or_insert(v);
        }
        let body = raw[n..].to_vec();
        if head || status == 204 || status == 304 {
            assert!(body.is_empty(), "{status} with a body");
        } else if let Some(cl) = headers.get("content-length") {
            assert_eq!(
                body.len() as u64,
                cl.parse::<u64>().unwrap(),
                "body length differs from Content-Length"
            );
        }
        Response {
            status,
            headers,
            body,
        }
    }

    /// A response head as [`read_head`] gives it (without the empty line), parsed.
    pub fn parse_head(head: &str) -> Response {
        Response::parse(format!("{head}\r\n\r\n").as_bytes(), true)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// Split one complete response (head, and a body of Content-Length bytes unless `head` or the
/// status says there is none) off the front of `buf` and return it parsed; None while `buf` holds
/// less than that.
pub fn split_one(buf: &mut Vec<u8>, head: bool) -> Option<Response> {
    let mut hs = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut hs);
    let httparse::Status::Complete(n) = r.parse(buf).expect("parseable response") else {
        return None;
    };
    let no_body = head || matches!(r.code, Some(204 | 304));
    let cl = r
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .map(|h| {
            std::str::from_utf8(h.value)
                .unwrap()
                .parse::<usize>()
                .unwrap()
        });
    let total = n + if no_body {
        0
    } else {
        cl.expect("Content-Length")
    };
    if buf.len() < total {
        return None;
    }
    let resp = Response::parse(&buf[..total], head);
    buf.drain(..total);
    Some(resp)
}

/// Read from `s` until `buf` holds one complete response ([`split_one`]) and return it. For
/// keep-alive connections and pipelined requests.
pub fn read_one(s: &mut TcpStream, buf: &mut Vec<u8>, head: bool) -> Response {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(resp) = split_one(buf, head) {
            return resp;
        }
        assert!(Instant::now() < deadline, "timed out reading a response");
        let mut chunk = [0u8; 16384];
        let n = s.read(&mut chunk).expect("read");
        assert!(n > 0, "connection closed mid-response: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Read from `s` until the end of a response head; return the head (without the empty line
/// that ends it) and the body bytes that came with it.
pub fn read_head(s: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed before the response head");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8(buf[..i].to_vec()).unwrap();
            return (head, buf[i + 4..].to_vec());
        }
    }
}

/// Wait (at most `limit`) for the server to close `s`: EOF or a reset. Returns the bytes that
/// came before and how long it took.
pub fn wait_closed(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (got, start.elapsed()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (got, start.elapsed()),
            Err(e) => panic!("connection still open after {:?}: {e}", start.elapsed()),
        }
        assert!(
            start.elapsed() < limit,
            "connection still open after {limit:?}"
        );
    }
}

/// The first position of `needle` in `hay` (None for an empty needle).
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `hay` with every occurrence of `from` replaced by `to`.
pub fn replace_all(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut rest = hay;
    while let Some(at) = find(rest, from) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(to);
        rest = &rest[at + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

// ------------------------------------------------------------------------------------------
// What responses are checked against

/// Deterministic test bytes (not text), so a misplaced slice cannot compare equal.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect()
}

/// SHA-256 as lowercase hex (the sha2 crate; the server's unit tests check it on a FIPS vector).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// SHA-256 of a file on disk, lowercase hex, read a MiB at a time.
pub fn sha256_file(path: &Path) -> String {
    use sha2::Digest;
    let mut f =
        std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

/// The ETag rangeserve documents for these bytes: their SHA-256, quoted.
pub fn etag_of(bytes: &[u8]) -> String {
    format!("\"{}\"", sha256_hex(bytes))
}

/// `sha-256=:BASE64:`, the Repr-Digest (RFC 9530) of these bytes, computed in the test.
pub fn repr_digest(bytes: &[u8]) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let sum = sha2::Sha256::digest(bytes);
    format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode(sum)
    )
}

/// The lab's documented byte function, written independently of the server: word i (bytes
/// 8i..8i+8, little-endian) is output i+1 of splitmix64 seeded with `seed`.
pub fn lab_bytes(seed: u64, start: u64, len: u64) -> Vec<u8> {
    (start..start + len)
        .map(|off| {
            let mut z = seed.wrapping_add((off / 8 + 1).wrapping_mul(0x9E3779B97F4A7C15));
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
            z ^= z >> 31;
            z.to_le_bytes()[(off % 8) as usize]
        })
        .collect()
}

/// A 200 with the whole file: no Content-Range, Content-Length the file's length, and the
/// file's bytes.
pub fn assert_full(r: &Response, data: &[u8]) {
    assert_eq!(r.status, 200, "headers: {:?}", r.headers);
    assert_eq!(r.header("content-range"), None);
    assert_eq!(
        r.header("content-length"),
        Some(data.len().to_string().as_str())
    );
    assert!(r.body == data, "200 body differs from the file");
}

/// A single-part 206 of `data[first..=last]`: its Content-Range, Content-Length and bytes.
pub fn assert_206(r: &Response, data: &[u8], first: usize, last: usize) {
    assert_eq!(r.status, 206, "headers: {:?}", r.headers);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes {first}-{last}/{}", data.len()).as_str())
    );
    assert_eq!(
        r.header("content-length"),
        Some((last - first + 1).to_string().as_str())
    );
    assert_eq!(r.body, &data[first..=last]);
}

// ------------------------------------------------------------------------------------------
// Time

/// 2024-01-02T03:04:05Z, the mtime given to files whose Last-Modified is checked, and that
/// time as an IMF-fixdate.
pub const MTIME_SECS: u64 = 1_704_164_645;
pub const MTIME_STR: &str = "Tue, 02 Jan 2024 03:04:05 GMT";

/// The time `secs` seconds after the Unix epoch.
pub fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// Set the mtime of a file or directory.
pub fn set_mtime(path: &Path, t: SystemTime) {
    std::fs::File::open(path).unwrap().set_modified(t).unwrap();
}

/// Poll `cond` until it gives a value (`Some`), or `limit` has passed (`None`). The pause
/// between polls (from 1 ms, doubling up to 10 ms) is not a synchronisation: the condition
/// decides.
pub fn poll<T>(limit: Duration, mut cond: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(v) = cond() {
            return Some(v);
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

/// [`poll`], and panic naming `what` if `limit` passes.
pub fn wait_for<T>(what: &str, limit: Duration, cond: impl FnMut() -> Option<T>) -> T {
    poll(limit, cond).unwrap_or_else(|| panic!("timed out after {limit:?} waiting for {what}"))
}

/// Poll until `cond` holds, at most `limit` (then panic naming `what`); how long it took.
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    wait_for(what, limit, || cond().then_some(()));
    start.elapsed()
}

/// Overwrite `path` in place with `bytes` of the same length, then put its mtime back: same
/// device, inode, size and mtime, so only the ctime tells the new content from the old. The
/// ctime has the file system's clock granularity: the mtime is put back until the ctime has
/// visibly moved (at most 5 s).
pub fn rewrite_keeping_mtime(path: &Path, bytes: &[u8]) {
    use std::os::unix::fs::{FileExt, MetadataExt};
    let before = std::fs::metadata(path).unwrap();
    assert_eq!(before.len(), bytes.len() as u64);
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, 0).unwrap();
    let after = wait_for("the ctime to move", Duration::from_secs(5), || {
        f.set_modified(before.modified().unwrap()).unwrap();
        let m = std::fs::metadata(path).unwrap();
        ((m.ctime(), m.ctime_nsec()) != (before.ctime(), before.ctime_nsec())).then_some(m)
    });
    assert_eq!(
        (after.dev(), after.ino(), after.size()),
        (before.dev(), before.ino(), before.size())
    );
    assert_eq!(
        (after.mtime(), after.mtime_nsec()),
        (before.mtime(), before.mtime_nsec())
    );
}
