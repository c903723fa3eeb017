//! Typed configuration: built-in defaults < `config.toml` < `RANGESERVE_*` environment < command line.
//!
//! One naming scheme everywhere: the config key `foo_bar` is the environment variable
//! `RANGESERVE_FOO_BAR` and the flag `--foo-bar`. clap reads both the flag and the variable (the
//! flag wins), and whatever it found overrides the file.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

use crate::http::cors::Cors;
use crate::http::header_rules::{HeaderRules, RuleSpec};
use crate::transport::limits;

pub mod log_filter;

/// The configuration the server runs with, after every layer has been applied and checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Document root, canonicalized (absolute, no symlinks) once at start-up; for a bucket,
    /// its `s3://` URL as given.
    pub root: PathBuf,
    /// How the bucket is reached (`[s3]`), beside the standard `AWS_*` variables.
    pub s3: crate::store::S3Options,
    /// Names tried, in order, when a directory is requested with a trailing slash.
    pub index_files: Vec<String>,
    /// Serve names that start with a dot.
    pub show_hidden: bool,
    /// Follow symlinks whose target lies outside the root.
    pub follow_symlinks: bool,
    /// List a directory asked for with a trailing slash that has no index file (`crate::listing`).
    pub listing: bool,
    /// More ranges than this in one request: the whole file is sent as a 200.
    pub max_ranges: usize,
    /// `Cache-Control` sent with files (checked, and parsed once here); `None`: none.
    pub cache_control: Option<::http::HeaderValue>,
    /// Default tracing filter when `RUST_LOG` is not set.
    pub log_level: String,
    /// How long in-flight responses may run after SIGTERM/SIGINT.
    pub shutdown_grace: Duration,
    /// Answer simple HTTP/1.1 requests (plain TCP and TLS) with the fast path (`transport::h1`).
    pub fast_path: bool,
    /// Where the digest cache persists (canonical, outside the root); `None`: no persistence.
    pub state_dir: Option<PathBuf>,
    /// Hash every file under the root in the background at start-up.
    pub prehash: bool,
    /// Watch the root and hash new or changed files before they are asked for.
    pub watch: bool,
    /// Send long runs of files with `sendfile(2)` on plain HTTP/1.x connections.
    pub sendfile: bool,
    /// Serve `name.br`/`name.zst`/`name.gz` beside `name` to clients that accept the coding.
    pub precompressed: bool,
    /// Log lines as text or as JSON objects.
    pub log_format: LogFormat,
    /// Where Prometheus metrics are served (`GET /metrics`); None: nowhere.
    pub metrics_listen: Option<SocketAddr>,
    /// The download-client lab (`[lab] enabled`): generated files and injected faults under
    /// `lab_prefix`. Off by default; when off, no request can trigger a fault.
    pub lab_enabled: bool,
    /// Where the lab lives (`[lab] prefix`): starts with `/`, no trailing `/`.
    pub lab_prefix: String,
    /// Send `Repr-Digest` (RFC 9530) with files, unless a client's `Want-Repr-Digest` says
    /// otherwise (which also turns it on when this is off).
    pub repr_digest: bool,
    /// `[[headers]]`: response headers by path, first match wins (config file only).
    pub header_rules: Arc<HeaderRules>,
    /// `[cors]`: `None` when no origin is allowed (CORS off).
    pub cors: Option<Cors>,
    /// Serve `listen` over TLS with this certificate and key (`[tls] cert`, `key`); `None`:
    /// plain HTTP.
    pub tls: Option<crate::transport::tls::Tls>,
    /// A plain-HTTP listener that redirects every request to https (`[tls] redirect_listen`).
    pub tls_redirect_listen: Option<SocketAddr>,
    /// Time for a whole request head, from the connection's start or its first byte (`crate::limits`).
    pub header_read_timeout: Duration,
    /// Idle time allowed between requests on a connection; zero turns keep-alive off.
    pub keepalive_timeout: Duration,
    /// Time a response's socket may accept no bytes before the connection is dropped.
    pub send_timeout: Duration,
    /// Connections served at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Header fields allowed in one HTTP/1 request head; more are answered 431.
    pub max_headers: usize,
    /// Proxies whose `Forwarded` / `X-Forwarded-For` name the client (addresses or CIDRs);
    /// from anyone else those headers are ignored.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The TCP congestion control of the listeners' connections (`transport::congestion`).
    pub tcp_congestion: crate::transport::congestion::TcpCongestion,
    /// `[upload]`: uploads (tus 1.0.0 and plain PUT) when on; `None` when off.
    pub upload: Option<UploadConfig>,
    /// The configuration file that was read, if any.
    pub config_file: Option<PathBuf>,
}

/// `[upload]`, checked: where uploads are taken and published, their limits, and who may make
/// them.
#[derive(Debug, Clone)]
pub struct UploadConfig {
    /// Where the protocol endpoint and the upload resources live (`/_upload`): starts with `/`,
    /// no trailing `/`.
    pub prefix: String,
    /// Where completed uploads are published: canonical, the root or a directory inside it
    /// reached without symlinks.
    pub dir: PathBuf,
    /// `dir` relative to the root, `/`-separated (empty for the root itself): a plain `PUT`
    /// must name a path under it.
    pub dir_name: String,
    /// The largest upload taken, in bytes; `None`: no limit beyond the disk.
    pub max_size: Option<u64>,
    /// An unfinished upload that has received nothing for this long is removed.
    pub max_age: Duration,
    /// Replace an existing file (atomically) rather than refuse the upload.
    pub overwrite: bool,
    /// The bearer tokens, as their SHA-256 (the tokens themselves are not kept).
    pub tokens: TokenDigests,
    /// Take uploads without a token (a test lab on loopback).
    pub allow_anonymous: bool,
}

impl UploadConfig {
    /// Uploads into `dir` (the root, when it is the root) with every default, taking `tokens`
    /// (used by tests and embedders).
    pub fn new(root: &Path, dir: &Path, tokens: &[&str]) -> Result<UploadConfig, ConfigError> {
        let file = UploadFileConfig {
            enabled: Some(true),
            dir: dir
                .strip_prefix(root)
                .ok()
                .map(|d| d.to_string_lossy().into_owned()),
            tokens: Some(tokens.iter().map(|t| t.to_string()).collect()),
            ..Default::default()
        };
        Ok(upload_config(file, root, false, DEFAULT_LAB_PREFIX)?.expect("enabled"))
    }
}

/// The SHA-256 of each configured bearer token. What is compared with a request's token (in
/// constant time, by the upload service) and what an upload records as its owner; never
/// printed, not even in `Debug`.
#[derive(Clone, Default)]
pub struct TokenDigests(pub Vec<[u8; 32]>);

impl fmt::Debug for TokenDigests {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenDigests({} tokens)", self.0.len())
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (the access line's fields become keys), for log collectors.
    Json,
}

impl Config {
    /// The bucket served instead of a directory (`root = "s3://BUCKET/PREFIX"`): the root
    /// itself, which is otherwise an absolute path.
    pub fn bucket(&self) -> Option<&str> {
        self.root.to_str().filter(|r| r.starts_with("s3://"))
    }

    /// A configuration with every default and the given root (used by tests and embedders).
    /// The root is canonicalized; it must be an existing directory.
    pub fn with_root(root: impl AsRef<Path>) -> Result<Config, ConfigError> {
        FileConfig::default().finish(root.as_ref().to_path_buf())
    }
}

/// A configuration problem, reported as one line naming the key or path and exit code 2.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

pub const DEFAULT_CONFIG_FILE: &str = "config.toml";

/// Keys of `config.toml`. Every field is optional: what is missing keeps its default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    root: Option<PathBuf>,
    index_files: Option<Vec<String>>,
    show_hidden: Option<bool>,
    follow_symlinks: Option<bool>,
    listing: Option<bool>,
    max_ranges: Option<usize>,
    cache_control: Option<String>,
    log_level: Option<String>,
    shutdown_grace: Option<u64>,
    state_dir: Option<PathBuf>,
    prehash: Option<bool>,
    watch: Option<bool>,
    sendfile: Option<bool>,
    precompressed: Option<bool>,
    log_format: Option<LogFormat>,
    metrics_listen: Option<String>,
    lab: Option<LabFileConfig>,
    s3: Option<S3FileConfig>,
    repr_digest: Option<bool>,
    headers: Option<Vec<HeaderRuleFile>>,
    cors: Option<CorsFileConfig>,
    tls: Option<TlsFileConfig>,
    header_read_timeout: Option<u64>,
    keepalive_timeout: Option<u64>,
    send_timeout: Option<u64>,
    max_connections: Option<usize>,
    max_headers: Option<usize>,
    fast_path: Option<bool>,
    trusted_proxies: Option<Vec<String>>,
    tcp_congestion: Option<String>,
    upload: Option<UploadFileConfig>,
}

/// The `[upload]` section of `config.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadFileConfig {
    enabled: Option<bool>,
    prefix: Option<String>,
    dir: Option<String>,
    max_size: Option<u64>,
    max_age: Option<u64>,
    overwrite: Option<bool>,
    tokens: Option<Vec<String>>,
    tokens_file: Option<PathBuf>,
    allow_anonymous: Option<bool>,
}

/// One `[[headers]]` entry of `config.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderRuleFile {
    path: String,
    #[serde(default)]
    set: std::collections::BTreeMap<String, String>,
}

/// The `[cors]` section of `config.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CorsFileConfig {
    allowed_origins: Option<OneOrMany>,
    max_age: Option<u64>,
}

/// `"*"` or `["https://a.example", ...]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// The `[lab]` section of `config.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LabFileConfig {
    enabled: Option<bool>,
    prefix: Option<String>,
}

/// The `[s3]` section of `config.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct S3FileConfig {
    endpoint: Option<String>,
    region: Option<String>,
    allow_http: Option<bool>,
    virtual_hosted_style: Option<bool>,
    request_timeout: Option<u64>,
    retries: Option<usize>,
    anonymous: Option<bool>,
}

/// The `[tls]` section of `config.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFileConfig {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    redirect_listen: Option<String>,
}

/// rangeserve: a static file server that gets HTTP ranges and conditional requests right.
///
/// Every setting can come from config.toml, from the environment variable shown, or from the
/// flag; the flag wins over the variable, which wins over the file.
#[derive(Debug, Parser)]
#[command(name = "rangeserve", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Configuration file (TOML). Default: ./config.toml when it exists.
    #[arg(long, env = "RANGESERVE_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, env = "RANGESERVE_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// Document root, relative to the working directory, or a bucket: s3://BUCKET/PREFIX [default: www]
    #[arg(long, env = "RANGESERVE_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// Index files tried in order for a directory, comma-separated [default: index.html]
    #[arg(
        long,
        env = "RANGESERVE_INDEX_FILES",
        value_name = "NAMES",
        value_delimiter = ','
    )]
    pub index_files: Option<Vec<String>>,

    /// Serve files and directories whose name starts with a dot [default: false]
    #[arg(long, env = "RANGESERVE_SHOW_HIDDEN", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub show_hidden: Option<bool>,

    /// Follow symlinks whose target is outside the root [default: false]
    #[arg(long, env = "RANGESERVE_FOLLOW_SYMLINKS", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub follow_symlinks: Option<bool>,

    /// List directories that have no index file (HTML, or JSON on Accept: application/json) [default: false]
    #[arg(long, env = "RANGESERVE_LISTING", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub listing: Option<bool>,

    /// Most ranges honoured in one request; more get the whole file as 200 [default: 100]
    #[arg(long, env = "RANGESERVE_MAX_RANGES", value_name = "N")]
    pub max_ranges: Option<usize>,

    /// Cache-Control sent with files; empty for none [default: no-cache]
    #[arg(long, env = "RANGESERVE_CACHE_CONTROL", value_name = "VALUE")]
    pub cache_control: Option<String>,

    /// Log filter when RUST_LOG is unset: error, warn, info, debug, trace or a directive [default: info]
    #[arg(long, env = "RANGESERVE_LOG_LEVEL", value_name = "FILTER")]
    pub log_level: Option<String>,

    /// Seconds in-flight responses may take to finish after SIGTERM/SIGINT [default: 30]
    #[arg(long, env = "RANGESERVE_SHUTDOWN_GRACE", value_name = "SECS")]
    pub shutdown_grace: Option<u64>,

    /// Directory (outside the root) where file hashes persist across restarts; empty for none [default: ""]
    #[arg(long, env = "RANGESERVE_STATE_DIR", value_name = "DIR",
          value_parser = clap::builder::TypedValueParser::map(
              clap::builder::OsStringValueParser::new(), PathBuf::from))]
    pub state_dir: Option<PathBuf>,

    /// Hash every file under the root in the background at start-up [default: false]
    #[arg(long, env = "RANGESERVE_PREHASH", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub prehash: Option<bool>,

    /// Send file bytes with sendfile(2), without copying them through user space (plain HTTP/1.x) [default: true]
    #[arg(long, env = "RANGESERVE_SENDFILE", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub sendfile: Option<bool>,

    /// Watch the root and hash new or changed files before they are asked for [default: false]
    #[arg(long, env = "RANGESERVE_WATCH", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub watch: Option<bool>,

    /// Serve name.br, name.zst or name.gz beside a file to clients whose Accept-Encoding allows it [default: false]
    #[arg(long, env = "RANGESERVE_PRECOMPRESSED", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub precompressed: Option<bool>,

    /// Log format: text, or json (one object per line) [default: text]
    #[arg(long, env = "RANGESERVE_LOG_FORMAT", value_name = "FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,

    /// Address for Prometheus metrics at /metrics, e.g. 127.0.0.1:9090; empty for none [default: ""]
    #[arg(long, env = "RANGESERVE_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,

    /// Turn on the download-client lab (generated files, injected faults) under --lab-prefix; for test set-ups only [default: false]
    #[arg(long = "lab", env = "RANGESERVE_LAB_ENABLED", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub lab_enabled: Option<bool>,

    /// URL path prefix of the lab [default: /_lab]
    #[arg(long, env = "RANGESERVE_LAB_PREFIX", value_name = "PATH")]
    pub lab_prefix: Option<String>,

    /// S3 endpoint URL, e.g. http://127.0.0.1:8333 [default: AWS_ENDPOINT_URL, else AWS]
    #[arg(long, env = "RANGESERVE_S3_ENDPOINT", value_name = "URL")]
    pub s3_endpoint: Option<String>,

    /// S3 region [default: AWS_REGION or AWS_DEFAULT_REGION, else us-east-1]
    #[arg(long, env = "RANGESERVE_S3_REGION", value_name = "NAME")]
    pub s3_region: Option<String>,

    /// Allow an http:// S3 endpoint [default: AWS_ALLOW_HTTP, else false]
    #[arg(long, env = "RANGESERVE_S3_ALLOW_HTTP", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub s3_allow_http: Option<bool>,

    /// Virtual-hosted-style S3 URLs (BUCKET.host) instead of path-style (host/BUCKET) [default: false]
    #[arg(long, env = "RANGESERVE_S3_VIRTUAL_HOSTED_STYLE", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub s3_virtual_hosted_style: Option<bool>,

    /// Read a public bucket with unsigned requests; AWS credentials are not used [default: false]
    #[arg(long, env = "RANGESERVE_S3_ANONYMOUS", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub s3_anonymous: Option<bool>,

    /// Seconds allowed for each request to the store until its answer starts [default: 5]
    #[arg(long, env = "RANGESERVE_S3_REQUEST_TIMEOUT", value_name = "SECS")]
    pub s3_request_timeout: Option<u64>,

    /// Retries of a failed read from the store [default: 2]
    #[arg(long, env = "RANGESERVE_S3_RETRIES", value_name = "N")]
    pub s3_retries: Option<usize>,

    /// Send Repr-Digest (RFC 9530, sha-256) with files; a client's Want-Repr-Digest overrides it [default: true]
    #[arg(long, env = "RANGESERVE_REPR_DIGEST", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub repr_digest: Option<bool>,

    /// CORS: origins whose web pages may read files, comma-separated, or * for any; empty: off [default: ""]
    #[arg(
        long,
        env = "RANGESERVE_CORS_ALLOWED_ORIGINS",
        value_name = "ORIGINS",
        value_delimiter = ','
    )]
    pub cors_allowed_origins: Option<Vec<String>>,

    /// CORS: seconds a browser may reuse a preflight answer [default: 7200]
    #[arg(long, env = "RANGESERVE_CORS_MAX_AGE", value_name = "SECS")]
    pub cors_max_age: Option<u64>,
    /// TLS certificate chain (PEM, leaf first); with --tls-key, serve https with HTTP/2 [default: none]
    #[arg(long, env = "RANGESERVE_TLS_CERT", value_name = "PATH")]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key (PEM: PKCS#8, PKCS#1 or SEC1) of --tls-cert [default: none]
    #[arg(long, env = "RANGESERVE_TLS_KEY", value_name = "PATH")]
    pub tls_key: Option<PathBuf>,

    /// Address of a plain-HTTP listener that redirects every request to https; empty for none [default: ""]
    #[arg(long, env = "RANGESERVE_TLS_REDIRECT_LISTEN", value_name = "ADDR")]
    pub tls_redirect_listen: Option<String>,

    /// Seconds a client has to send a whole request head, from connecting or from its first byte [default: 10]
    #[arg(long, env = "RANGESERVE_HEADER_READ_TIMEOUT", value_name = "SECS")]
    pub header_read_timeout: Option<u64>,

    /// Seconds an idle connection is kept open for another request; 0 turns keep-alive off [default: 75]
    #[arg(long, env = "RANGESERVE_KEEPALIVE_TIMEOUT", value_name = "SECS")]
    pub keepalive_timeout: Option<u64>,

    /// Seconds a response may wait for a client that reads nothing before it is dropped [default: 60]
    #[arg(long, env = "RANGESERVE_SEND_TIMEOUT", value_name = "SECS")]
    pub send_timeout: Option<u64>,

    /// Connections served at once; more are closed as soon as they are accepted [default: 10000]
    #[arg(long, env = "RANGESERVE_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,

    /// Header fields allowed in one request; more are answered 431 [default: 100]
    #[arg(long, env = "RANGESERVE_MAX_HEADERS", value_name = "N")]
    pub max_headers: Option<usize>,

    /// TCP congestion control of accepted connections: auto (cubic on loopback listeners, the system's elsewhere), system, or an algorithm such as cubic or bbr [default: auto]
    #[arg(long, env = "RANGESERVE_TCP_CONGESTION", value_name = "NAME")]
    pub tcp_congestion: Option<String>,

    /// Answer simple HTTP/1.1 GET/HEAD requests (plain TCP and TLS) with the built-in fast path; false serves every request with hyper (same behaviour) [default: true]
    #[arg(long, env = "RANGESERVE_FAST_PATH", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub fast_path: Option<bool>,

    /// Proxies whose Forwarded / X-Forwarded-For headers name the client: addresses or CIDRs, comma-separated [default: none]
    #[arg(
        long,
        env = "RANGESERVE_TRUSTED_PROXIES",
        value_name = "ADDRS",
        value_delimiter = ','
    )]
    pub trusted_proxies: Option<Vec<String>>,

    /// Take uploads (tus 1.0.0 under --upload-prefix, and plain PUT) from holders of a token [default: false]
    #[arg(long, env = "RANGESERVE_UPLOAD_ENABLED", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub upload_enabled: Option<bool>,

    /// URL path of the tus endpoint and the upload resources [default: /_upload]
    #[arg(long, env = "RANGESERVE_UPLOAD_PREFIX", value_name = "PATH")]
    pub upload_prefix: Option<String>,

    /// Directory where completed uploads are published, relative to the root [default: the root]
    #[arg(long, env = "RANGESERVE_UPLOAD_DIR", value_name = "DIR")]
    pub upload_dir: Option<String>,

    /// Largest upload taken, in bytes; 0 for no limit beyond the disk [default: 0]
    #[arg(long, env = "RANGESERVE_UPLOAD_MAX_SIZE", value_name = "BYTES")]
    pub upload_max_size: Option<u64>,

    /// Seconds an unfinished upload is kept after its last byte arrived [default: 86400]
    #[arg(long, env = "RANGESERVE_UPLOAD_MAX_AGE", value_name = "SECS")]
    pub upload_max_age: Option<u64>,

    /// Replace an existing file with an upload of the same name (atomically) [default: false]
    #[arg(long, env = "RANGESERVE_UPLOAD_OVERWRITE", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub upload_overwrite: Option<bool>,

    /// Bearer tokens that may upload, comma-separated (prefer --upload-tokens-file) [default: none]
    #[arg(
        long,
        env = "RANGESERVE_UPLOAD_TOKENS",
        value_name = "TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub upload_tokens: Option<Vec<String>>,

    /// File of bearer tokens that may upload, one per line [default: none]
    #[arg(long, env = "RANGESERVE_UPLOAD_TOKENS_FILE", value_name = "PATH")]
    pub upload_tokens_file: Option<PathBuf>,

    /// Take uploads without a token (a test set-up on loopback only) [default: false]
    #[arg(long, env = "RANGESERVE_UPLOAD_ALLOW_ANONYMOUS", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub upload_allow_anonymous: Option<bool>,
}

/// Every key with its default, in the order `config.toml` documents them.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_ROOT: &str = "www";
pub use crate::files::{DEFAULT_CACHE_CONTROL, DEFAULT_MAX_RANGES};
pub const DEFAULT_LOG_LEVEL: &str = "info";
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 30;
pub const DEFAULT_LAB_PREFIX: &str = "/_lab";
pub const DEFAULT_CORS_MAX_AGE: u64 = 7200;
pub const DEFAULT_UPLOAD_PREFIX: &str = "/_upload";
pub const DEFAULT_UPLOAD_MAX_AGE_SECS: u64 = 86_400;
pub use crate::transport::limits::{
    DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_KEEPALIVE_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_HEADERS, DEFAULT_SEND_TIMEOUT, MAX_MAX_HEADERS,
};

/// Subcommands; without one, rangeserve serves.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Ask the running server for `HEAD /` once: exit 0 when it answers (any status below 500),
    /// 1 otherwise. For container HEALTHCHECKs: no shell or curl needed.
    Healthcheck {
        #[arg(
            long,
            value_name = "URL",
            help = "URL to ask [default: http://<listen>/, with 0.0.0.0 or [::] as the loopback address]"
        )]
        url: Option<String>,
        /// Seconds to wait for the answer.
        #[arg(long, value_name = "SECS", default_value_t = 5)]
        timeout: u64,
    },
    /// Write the lab's generated file of SIZE bytes (e.g. 1GiB) to standard output: the same
    /// bytes as GET /_lab/gen/SIZE?seed=N, so `rangeserve gen 1GiB | sha256sum` checks a download.
    Gen {
        /// Size in bytes, or with a unit: B, KB, KiB, MB, MiB, GB, GiB, TB, TiB, PB, PiB.
        size: String,
        /// Seed of the byte pattern.
        #[arg(long, value_name = "N", default_value_t = 0)]
        seed: u64,
    },
}

impl Cli {
    /// The address the server listens on by these settings (file < environment < flag), and
    /// whether it serves TLS there, for the healthcheck; a config problem is left to the
    /// server to report.
    pub fn listen_addr(&self) -> (SocketAddr, bool) {
        let path = self
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_FILE));
        let file = read_file(&path).ok();
        let listen = self
            .listen
            .or(file.as_ref().and_then(|f| f.listen))
            .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default"));
        let given = |p: &Option<PathBuf>| p.as_ref().is_some_and(|p| !p.as_os_str().is_empty());
        let file_tls = file.as_ref().and_then(|f| f.tls.as_ref());
        let tls = (given(&self.tls_cert) || file_tls.is_some_and(|t| given(&t.cert)))
            && (given(&self.tls_key) || file_tls.is_some_and(|t| given(&t.key)));
        (listen, tls)
    }

    /// Apply the layers: defaults < file < environment/flags (clap already merged those two).
    pub fn load(self) -> Result<Config, ConfigError> {
        let config_file = match &self.config {
            Some(path) => Some(path.clone()),
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                Some(PathBuf::from(DEFAULT_CONFIG_FILE))
            }
            None => None,
        };
        let mut file = match &config_file {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        macro_rules! overlay {
            ($($key:ident),*) => { $( if self.$key.is_some() { file.$key = self.$key; } )* };
        }
        overlay!(
            listen,
            root,
            index_files,
            show_hidden,
            follow_symlinks,
            listing,
            max_ranges,
            cache_control,
            log_level,
            shutdown_grace,
            state_dir,
            prehash,
            watch,
            sendfile,
            precompressed,
            log_format,
            metrics_listen,
            repr_digest,
            header_read_timeout,
            keepalive_timeout,
            send_timeout,
            max_connections,
            max_headers,
            fast_path,
            trusted_proxies,
            tcp_congestion
        );
        if self.cors_allowed_origins.is_some() || self.cors_max_age.is_some() {
            let cors = file.cors.get_or_insert_with(CorsFileConfig::default);
            if let Some(origins) = self.cors_allowed_origins {
                cors.allowed_origins = Some(OneOrMany::Many(origins));
            }
            if self.cors_max_age.is_some() {
                cors.max_age = self.cors_max_age;
            }
        }
        if self.lab_enabled.is_some() || self.lab_prefix.is_some() {
            let lab = file.lab.get_or_insert_with(LabFileConfig::default);
            if self.lab_enabled.is_some() {
                lab.enabled = self.lab_enabled;
            }
            if self.lab_prefix.is_some() {
                lab.prefix = self.lab_prefix;
            }
        }
        {
            let flags = S3FileConfig {
                endpoint: self.s3_endpoint,
                region: self.s3_region,
                allow_http: self.s3_allow_http,
                virtual_hosted_style: self.s3_virtual_hosted_style,
                request_timeout: self.s3_request_timeout,
                retries: self.s3_retries,
                anonymous: self.s3_anonymous,
            };
            let s3 = file.s3.get_or_insert_with(S3FileConfig::default);
            s3.endpoint = flags.endpoint.or(s3.endpoint.take());
            s3.region = flags.region.or(s3.region.take());
            s3.allow_http = flags.allow_http.or(s3.allow_http);
            s3.virtual_hosted_style = flags.virtual_hosted_style.or(s3.virtual_hosted_style);
            s3.request_timeout = flags.request_timeout.or(s3.request_timeout);
            s3.retries = flags.retries.or(s3.retries);
            s3.anonymous = flags.anonymous.or(s3.anonymous);
        }
        {
            let up = file.upload.get_or_insert_with(UploadFileConfig::default);
            macro_rules! upload {
                ($($flag:ident => $key:ident),*) => { $( if self.$flag.is_some() { up.$key = self.$flag; } )* };
            }
            upload!(
                upload_enabled => enabled,
                upload_prefix => prefix,
                upload_dir => dir,
                upload_max_size => max_size,
                upload_max_age => max_age,
                upload_overwrite => overwrite,
                upload_tokens => tokens,
                upload_tokens_file => tokens_file,
                upload_allow_anonymous => allow_anonymous
            );
        }
        if self.tls_cert.is_some() || self.tls_key.is_some() || self.tls_redirect_listen.is_some() {
            let tls = file.tls.get_or_insert_with(TlsFileConfig::default);
            if self.tls_cert.is_some() {
                tls.cert = self.tls_cert;
            }
            if self.tls_key.is_some() {
                tls.key = self.tls_key;
            }
            if self.tls_redirect_listen.is_some() {
                tls.redirect_listen = self.tls_redirect_listen;
            }
        }
        let root = file
            .root
            .take()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT));
        let mut config = file.finish(root)?;
        config.config_file = config_file;
        Ok(config)
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("config file {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| {
        // toml's Display spans several lines; keep the one-line message and say where.
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        let key = line
            .and_then(|l| text.lines().nth(l - 1))
            .and_then(|l| l.split_once('='))
            .map(|(k, _)| k.trim().to_string());
        let msg = e.message().trim().replace('\n', " ");
        match (line, key) {
            (Some(l), Some(k)) => ConfigError(format!(
                "config file {} line {l}: key `{k}`: {msg}",
                path.display()
            )),
            (Some(l), None) => {
                ConfigError(format!("config file {} line {l}: {msg}", path.display()))
            }
            _ => ConfigError(format!("config file {}: {msg}", path.display())),
        }
    })
}

impl FileConfig {
    fn finish(self, root: PathBuf) -> Result<Config, ConfigError> {
        let shown = root.display().to_string();
        let is_bucket = match shown.split_once("://") {
            Some(("s3", _)) => {
                crate::store::parse_url(&shown).map_err(|e| ConfigError(format!("root: {e}")))?;
                true
            }
            Some((scheme, _)) => {
                return Err(ConfigError(format!(
                    "root {shown}: unknown scheme {scheme}:// (a directory, or s3://BUCKET/PREFIX)"
                )))
            }
            None => false,
        };
        let root = match is_bucket {
            true => root,
            false => {
                let meta = std::fs::metadata(&root)
                    .map_err(|e| ConfigError(format!("root {shown}: {e}")))?;
                if !meta.is_dir() {
                    return Err(ConfigError(format!("root {shown}: not a directory")));
                }
                root.canonicalize()
                    .map_err(|e| ConfigError(format!("root {shown}: {e}")))?
            }
        };
        let s3 = s3_options(self.s3.unwrap_or_default())?;

        let index_files = self
            .index_files
            .unwrap_or_else(|| vec!["index.html".to_string()]);
        for name in &index_files {
            if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                return Err(ConfigError(format!(
                    "index_files: {name:?} is not a plain file name"
                )));
            }
        }
        let max_ranges = self.max_ranges.unwrap_or(DEFAULT_MAX_RANGES);
        if max_ranges == 0 {
            return Err(ConfigError(
                "max_ranges: must be at least 1 (use 1 to refuse multi-range requests)".into(),
            ));
        }
        let cache_control = self
            .cache_control
            .unwrap_or_else(|| DEFAULT_CACHE_CONTROL.to_string());
        let cache_control = match ::http::HeaderValue::from_str(&cache_control) {
            Ok(_) if cache_control.is_empty() => None,
            Ok(v) => Some(v),
            Err(_) => {
                return Err(ConfigError(format!(
                    "cache_control: {cache_control:?} is not a valid header value"
                )))
            }
        };
        let log_level = self
            .log_level
            .unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_string());
        log_filter::check(&log_level).map_err(|e| ConfigError(format!("log_level: {e}")))?;
        let state_dir = match self.state_dir {
            Some(dir) if !dir.as_os_str().is_empty() => Some(check_state_dir(&dir, &root)?),
            _ => None,
        };
        let metrics_listen = match self.metrics_listen.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(addr) => Some(addr.parse().map_err(|e| {
                ConfigError(format!(
                    "metrics_listen: {addr:?} is not an address:port ({e})"
                ))
            })?),
        };
        let lab = self.lab.unwrap_or_default();
        let lab_prefix = lab.prefix.unwrap_or_else(|| DEFAULT_LAB_PREFIX.to_string());
        check_lab_prefix(&lab_prefix)?;
        let show_hidden = self.show_hidden.unwrap_or(false);
        let upload = match self.upload {
            Some(UploadFileConfig {
                enabled: Some(true),
                ..
            }) if is_bucket => {
                return Err(ConfigError(format!(
                    "upload.enabled: uploads need a disk root for now, and the root is a bucket ({})",
                    root.display()
                )));
            }
            Some(up) => upload_config(up, &root, show_hidden, &lab_prefix)?,
            None => None,
        };
        let specs: Vec<RuleSpec> = self
            .headers
            .unwrap_or_default()
            .into_iter()
            .map(|r| RuleSpec {
                path: r.path,
                set: r.set.into_iter().collect(),
            })
            .collect();
        let header_rules = HeaderRules::new(&specs).map_err(ConfigError)?;
        let cors = self.cors.unwrap_or_default();
        let origins: Vec<String> = match cors.allowed_origins {
            None => Vec::new(),
            Some(OneOrMany::One(o)) => vec![o],
            Some(OneOrMany::Many(v)) => v,
        }
        .into_iter()
        .map(|o| o.trim().to_string())
        .filter(|o| !o.is_empty())
        .collect();
        let cors = Cors::new(&origins, cors.max_age.unwrap_or(DEFAULT_CORS_MAX_AGE))
            .map_err(|e| ConfigError(format!("cors.allowed_origins: {e}")))?;
        let tls_file = self.tls.unwrap_or_default();
        let tls = crate::transport::tls::Tls::from_settings(tls_file.cert, tls_file.key)
            .map_err(ConfigError)?;
        let tls_redirect_listen = match tls_file.redirect_listen.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(_) if tls.is_none() => {
                return Err(ConfigError(
                    "tls.redirect_listen: redirects to https, which needs tls.cert and tls.key"
                        .into(),
                ))
            }
            Some(addr) => Some(addr.parse().map_err(|e| {
                ConfigError(format!(
                    "tls.redirect_listen: {addr:?} is not an address:port ({e})"
                ))
            })?),
        };
        let trusted_proxies = self
            .trusted_proxies
            .unwrap_or_default()
            .iter()
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.parse::<ipnet::IpNet>()
                    .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        ConfigError(format!(
                            "trusted_proxies: {p:?} is not an address or CIDR (10.0.0.1, 10.0.0.0/8, ::1)"
                        ))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let tcp_congestion = match self.tcp_congestion.as_deref() {
            None => Default::default(),
            Some(v) => crate::transport::congestion::TcpCongestion::parse(v)
                .map_err(|e| ConfigError(format!("tcp_congestion: {e}")))?,
        };
        let limits = limits::check(
            self.header_read_timeout,
            self.keepalive_timeout,
            self.send_timeout,
            self.max_connections,
            self.max_headers,
        )
        .map_err(ConfigError)?;
        Ok(Config {
            listen: self
                .listen
                .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default")),
            root,
            index_files,
            show_hidden,
            follow_symlinks: self.follow_symlinks.unwrap_or(false),
            listing: self.listing.unwrap_or(false),
            max_ranges,
            cache_control,
            log_level,
            shutdown_grace: Duration::from_secs(
                self.shutdown_grace.unwrap_or(DEFAULT_SHUTDOWN_GRACE_SECS),
            ),
            state_dir,
            prehash: self.prehash.unwrap_or(false),
            watch: self.watch.unwrap_or(false),
            sendfile: self.sendfile.unwrap_or(true),
            fast_path: self.fast_path.unwrap_or(true),
            precompressed: self.precompressed.unwrap_or(false),
            log_format: self.log_format.unwrap_or(LogFormat::Text),
            metrics_listen,
            s3,
            lab_enabled: lab.enabled.unwrap_or(false),
            lab_prefix,
            repr_digest: self.repr_digest.unwrap_or(true),
            header_rules: Arc::new(header_rules),
            cors,
            tls,
            tls_redirect_listen,
            header_read_timeout: limits.header_read_timeout,
            keepalive_timeout: limits.keepalive_timeout,
            send_timeout: limits.send_timeout,
            max_connections: limits.max_connections,
            max_headers: limits.max_headers,
            trusted_proxies,
            tcp_congestion,
            upload,
            config_file: None,
        })
    }
}

/// A lab prefix is an absolute path of plain segments, without a trailing slash: `/_lab`.
/// The `[s3]` settings, checked.
fn s3_options(file: S3FileConfig) -> Result<crate::store::S3Options, ConfigError> {
    let defaults = crate::store::S3Options::default();
    if let Some(endpoint) = file.endpoint.as_ref().filter(|e| !e.is_empty()) {
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(ConfigError(format!(
                "s3.endpoint: {endpoint:?} is not an http:// or https:// URL"
            )));
        }
    }
    let request_timeout = match file.request_timeout {
        Some(0) => {
            return Err(ConfigError(
                "s3.request_timeout: must be at least 1 second".into(),
            ))
        }
        Some(secs) if secs > 300 => {
            return Err(ConfigError(
                "s3.request_timeout: at most 300 seconds".into(),
            ))
        }
        Some(secs) => Duration::from_secs(secs),
        None => defaults.request_timeout,
    };
    let retries = match file.retries {
        Some(n) if n > 10 => return Err(ConfigError("s3.retries: at most 10".into())),
        Some(n) => n,
        None => defaults.retries,
    };
    Ok(crate::store::S3Options {
        endpoint: file.endpoint.filter(|e| !e.is_empty()),
        region: file.region.filter(|r| !r.is_empty()),
        allow_http: file.allow_http,
        virtual_hosted_style: file.virtual_hosted_style,
        request_timeout,
        retries,
        anonymous: file.anonymous.unwrap_or(false),
    })
}

fn check_lab_prefix(prefix: &str) -> Result<(), ConfigError> {
    check_prefix("lab.prefix", "/_lab", prefix)
}

fn check_prefix(key: &str, example: &str, prefix: &str) -> Result<(), ConfigError> {
    let ok = prefix.len() > 1
        && prefix.starts_with('/')
        && prefix[1..].split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        });
    if ok {
        Ok(())
    } else {
        Err(ConfigError(format!(
            "{key}: {prefix:?} is not a path like \"{example}\" (starts with /, no trailing /, letters, digits, -._~)"
        )))
    }
}

/// `[upload]` checked against the root (canonical, on disk), `show_hidden` and the lab's
/// prefix; `None` when uploads are off. Every error is one line naming the key, and never
/// shows a token. A value is checked whether uploads are on or off, as every other key's is
/// (a bad value stops the server); what needs the disk (the directory, the tokens file) and
/// what only conflicts when uploads run (the lab's prefix) only when they are on.
fn upload_config(
    file: UploadFileConfig,
    root: &Path,
    show_hidden: bool,
    lab_prefix: &str,
) -> Result<Option<UploadConfig>, ConfigError> {
    let prefix = file
        .prefix
        .unwrap_or_else(|| DEFAULT_UPLOAD_PREFIX.to_string());
    check_prefix("upload.prefix", DEFAULT_UPLOAD_PREFIX, &prefix)?;
    let dir_name = upload_dir_name(file.dir.as_deref().unwrap_or(""), show_hidden)?;
    let max_size = match file.max_size {
        None | Some(0) => None,
        Some(n) => Some(n),
    };
    let max_age = match file.max_age.unwrap_or(DEFAULT_UPLOAD_MAX_AGE_SECS) {
        0 => {
            return Err(ConfigError(
                "upload.max_age: must be at least 1 second".into(),
            ))
        }
        secs => Duration::from_secs(secs),
    };
    let mut tokens = Vec::new();
    for (i, t) in file.tokens.unwrap_or_default().iter().enumerate() {
        let t = t.trim();
        if t.is_empty() {
            continue;
        }
        if !is_bearer_token(t) {
            return Err(ConfigError(format!(
                "upload.tokens: entry {} is not a bearer token (RFC 6750: letters, digits, -._~+/, then = padding)",
                i + 1
            )));
        }
        tokens.push(t.to_owned());
    }
    if file.enabled != Some(true) {
        return Ok(None);
    }
    let overlaps = |a: &str, b: &str| a == b || a.starts_with(&format!("{b}/"));
    if overlaps(&prefix, lab_prefix) || overlaps(lab_prefix, &prefix) {
        return Err(ConfigError(format!(
            "upload.prefix: {prefix:?} overlaps the lab's prefix {lab_prefix:?}"
        )));
    }
    let dir = upload_dir(&dir_name, root)?;
    if let Some(path) = file.tokens_file.filter(|p| !p.as_os_str().is_empty()) {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| ConfigError(format!("upload.tokens_file {}: {e}", path.display())))?;
        for (i, line) in text.lines().enumerate() {
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            if !is_bearer_token(t) {
                return Err(ConfigError(format!(
                    "upload.tokens_file {} line {}: not a bearer token (RFC 6750: letters, digits, -._~+/, then = padding)",
                    path.display(),
                    i + 1
                )));
            }
            tokens.push(t.to_owned());
        }
    }
    let allow_anonymous = file.allow_anonymous.unwrap_or(false);
    if tokens.is_empty() && !allow_anonymous {
        return Err(ConfigError(
            "upload.enabled: no token configured (upload.tokens or upload.tokens_file); \
             set upload.allow_anonymous = true to take uploads from anyone (a test set-up on loopback)"
                .into(),
        ));
    }
    use sha2::Digest as _;
    let mut digests: Vec<[u8; 32]> = tokens
        .iter()
        .map(|t| sha2::Sha256::digest(t).into())
        .collect();
    digests.sort_unstable();
    digests.dedup();
    Ok(Some(UploadConfig {
        prefix,
        dir,
        dir_name,
        max_size,
        max_age,
        overwrite: file.overwrite.unwrap_or(false),
        tokens: TokenDigests(digests),
        allow_anonymous,
    }))
}

/// RFC 6750 §2.1: `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_bearer_token(t: &str) -> bool {
    let body = t.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// `upload.dir` (relative to the root), checked without the disk: its name under the root. No
/// `..`, backslash, NUL or the work directory's name, and no hidden name (unless
/// `show_hidden`): its files must be downloadable.
fn upload_dir_name(dir: &str, show_hidden: bool) -> Result<String, ConfigError> {
    let bad = |why: &str| upload_dir_error(dir, why);
    let mut segments = Vec::new();
    for seg in dir.split('/') {
        match seg {
            "" | "." => continue,
            ".." => return Err(bad("must stay inside the root (no `..`)")),
            s if s.contains('\\') || s.contains('\0') => return Err(bad("no backslash or NUL")),
            s if s == crate::fs::upload::WORK_DIR => return Err(bad("a reserved name")),
            s if s.starts_with('.') && !show_hidden => {
                return Err(bad("a hidden name (its files could not be downloaded)"))
            }
            s => segments.push(s),
        }
    }
    if dir.starts_with('/') {
        return Err(bad("must be relative to the root"));
    }
    Ok(segments.join("/"))
}

/// The directory `name` (from [`upload_dir_name`]) under `root`, created if missing, and
/// canonical: no symlink on the way, so a PUT's URL path names the same place.
fn upload_dir(name: &str, root: &Path) -> Result<PathBuf, ConfigError> {
    let bad = |why: &str| upload_dir_error(name, why);
    let path = root.join(name);
    std::fs::create_dir_all(&path).map_err(|e| bad(&e.to_string()))?;
    let canonical = path.canonicalize().map_err(|e| bad(&e.to_string()))?;
    if canonical != path {
        return Err(bad("must not be reached through a symlink"));
    }
    if !canonical.is_dir() {
        return Err(bad("not a directory"));
    }
    Ok(canonical)
}

fn upload_dir_error(dir: &str, why: &str) -> ConfigError {
    ConfigError(format!("upload.dir {dir:?}: {why}"))
}

/// Create `dir` if needed and check that it is a directory outside `root` (canonical): the
/// state must never be served, nor be written into the tree that is watched and hashed.
fn check_state_dir(dir: &Path, root: &Path) -> Result<PathBuf, ConfigError> {
    let shown = dir.display();
    let inside = || {
        ConfigError(format!(
            "state_dir {shown}: must not be inside the root {}",
            root.display()
        ))
    };
    // Refuse before creating anything: where would the missing part land?
    if let Some(would_be) = resolve_missing(dir) {
        if would_be.starts_with(root) {
            return Err(inside());
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| ConfigError(format!("state_dir {shown}: {e}")))?;
    let canonical = dir
        .canonicalize()
        .map_err(|e| ConfigError(format!("state_dir {shown}: {e}")))?;
    if !canonical.is_dir() {
        return Err(ConfigError(format!("state_dir {shown}: not a directory")));
    }
    if canonical.starts_with(root) {
        return Err(inside());
    }
    Ok(canonical)
}

/// `path` made absolute: its longest existing ancestor canonicalized, the rest applied lexically.
fn resolve_missing(path: &Path) -> Option<PathBuf> {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    let mut out = loop {
        if let Ok(c) = existing.canonicalize() {
            break c;
        }
        let last = existing.file_name()?.to_owned();
        rest.push(last);
        if !existing.pop() || existing.as_os_str().is_empty() {
            existing = std::env::current_dir().ok()?;
        }
    };
    for part in rest.iter().rev() {
        out.push(part);
    }
    Some(out)
}

/// `RANGESERVE_*` variables that no setting reads: a typo is worth a warning, not an error
/// (orchestrators inject variables such as `RANGESERVE_PORT` for a service named rangeserve).
pub fn unknown_env_vars() -> Vec<String> {
    use clap::CommandFactory;
    let known: Vec<String> = Cli::command()
        .get_arguments()
        .filter_map(|a| a.get_env())
        .filter_map(|e| e.to_str().map(str::to_owned))
        .collect();
    std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| k.starts_with("RANGESERVE_") && !known.contains(k))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FileConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, text).unwrap();
        read_file(&p)
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let e = parse("listen = \"127.0.0.1:1\"\nlisen = 3\n")
            .unwrap_err()
            .0;
        assert!(e.contains("line 2"), "{e}");
        assert!(e.contains("lisen"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn bad_value_is_named() {
        let e = parse("max_ranges = \"many\"\n").unwrap_err().0;
        assert!(e.contains("max_ranges"), "{e}");
        let e = parse("listen = \"nowhere\"\n").unwrap_err().0;
        assert!(e.contains("listen"), "{e}");
    }

    #[test]
    fn finish_checks_values() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = FileConfig {
            max_ranges: Some(0),
            ..Default::default()
        };
        assert!(cfg
            .finish(dir.path().into())
            .unwrap_err()
            .0
            .contains("max_ranges"));
        let cfg = FileConfig::default();
        let e = cfg.finish(dir.path().join("missing")).unwrap_err().0;
        assert!(e.starts_with("root "), "{e}");
        let ok = FileConfig::default().finish(dir.path().into()).unwrap();
        assert_eq!(ok.max_ranges, DEFAULT_MAX_RANGES);
        assert_eq!(ok.listen.to_string(), DEFAULT_LISTEN);
    }

    #[test]
    fn lab_section_and_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let ok = FileConfig::default().finish(dir.path().into()).unwrap();
        assert!(!ok.lab_enabled);
        assert_eq!(ok.lab_prefix, DEFAULT_LAB_PREFIX);
        let file = parse("[lab]\nenabled = true\nprefix = \"/a/b-c\"\n").unwrap();
        let ok = file.finish(dir.path().into()).unwrap();
        assert!(ok.lab_enabled);
        assert_eq!(ok.lab_prefix, "/a/b-c");
        for bad in ["", "/", "x", "/a/", "//a", "/a/../b", "/a b", "/a?b"] {
            let e = check_lab_prefix(bad).unwrap_err().0;
            assert!(e.starts_with("lab.prefix"), "{bad}: {e}");
        }
        let e = parse("[lab]\nenable = true\n").unwrap_err().0;
        assert!(e.contains("enable"), "{e}");
    }

    #[test]
    fn upload_section() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let finish = |text: &str| parse(text).and_then(|f| f.finish(root.clone()));
        assert!(finish("").unwrap().upload.is_none());
        assert!(finish("[upload]\nenabled = false\ntokens = [\"abc\"]\n")
            .unwrap()
            .upload
            .is_none());
        // On without a token: refused unless anonymous uploads are asked for.
        let e = finish("[upload]\nenabled = true\n").unwrap_err().0;
        assert!(
            e.starts_with("upload.enabled") && e.contains("allow_anonymous"),
            "{e}"
        );
        assert!(!e.contains('\n'));
        let up = finish("[upload]\nenabled = true\nallow_anonymous = true\n")
            .unwrap()
            .upload
            .unwrap();
        assert_eq!(up.prefix, DEFAULT_UPLOAD_PREFIX);
        assert_eq!(up.dir, root);
        assert_eq!(up.dir_name, "");
        assert_eq!(up.max_age, Duration::from_secs(DEFAULT_UPLOAD_MAX_AGE_SECS));
        assert_eq!(up.max_size, None);
        assert!(up.tokens.0.is_empty() && !up.overwrite);
        // Tokens from the list and the file, kept as hashes only (and not in Debug).
        let tokens = dir.path().join("tokens");
        std::fs::write(&tokens, "# a comment\n\nsecret-from-file\n").unwrap();
        let text = format!(
            "[upload]\nenabled = true\ntokens = [\"secret-in-list\"]\ntokens_file = {:?}\ndir = \"in/coming\"\nmax_size = 5\nmax_age = 7\n",
            tokens
        );
        let config = finish(&text).unwrap();
        let up = config.upload.as_ref().unwrap();
        assert_eq!(up.tokens.0.len(), 2);
        assert_eq!(up.dir, root.join("in/coming"));
        assert!(up.dir.is_dir());
        assert_eq!(up.dir_name, "in/coming");
        assert_eq!((up.max_size, up.max_age), (Some(5), Duration::from_secs(7)));
        let shown = format!("{config:?}");
        assert!(!shown.contains("secret"), "{shown}");
        // A bad token is named by its place, never shown.
        let e = finish("[upload]\nenabled = true\ntokens = [\"ok\", \"bad token\"]\n")
            .unwrap_err()
            .0;
        assert!(e.contains("entry 2") && !e.contains("bad token"), "{e}");
        std::fs::write(&tokens, "good\nsecret with spaces\n").unwrap();
        let e = finish(&format!(
            "[upload]\nenabled = true\ntokens_file = {tokens:?}\n"
        ))
        .unwrap_err()
        .0;
        assert!(e.contains("line 2") && !e.contains("secret"), "{e}");
        for (bad, key) in [
            ("dir = \"../out\"", "upload.dir"),
            ("dir = \"/abs\"", "upload.dir"),
            ("dir = \".hidden\"", "upload.dir"),
            ("dir = \".rangeserve-uploads\"", "upload.dir"),
            ("prefix = \"/_lab\"", "upload.prefix"),
            ("prefix = \"_upload\"", "upload.prefix"),
            ("max_age = 0", "upload.max_age"),
        ] {
            let e = finish(&format!(
                "[upload]\nenabled = true\nallow_anonymous = true\n{bad}\n"
            ))
            .unwrap_err()
            .0;
            assert!(e.starts_with(key), "{bad}: {e}");
        }
        // Values are checked with uploads off too (a bad value stops the server, whatever
        // it is for); the directory is neither checked on disk nor created then.
        for (bad, key) in [
            ("dir = \"../out\"", "upload.dir"),
            ("dir = \".hidden\"", "upload.dir"),
            ("prefix = \"_upload\"", "upload.prefix"),
            ("max_age = 0", "upload.max_age"),
            ("tokens = [\"bad token\"]", "upload.tokens"),
        ] {
            let e = finish(&format!("[upload]\n{bad}\n")).unwrap_err().0;
            assert!(e.starts_with(key), "{bad}: {e}");
        }
        let off =
            finish("[upload]\nenabled = false\ndir = \"not/made\"\nprefix = \"/_lab\"\n").unwrap();
        assert!(off.upload.is_none());
        assert!(!root.join("not").exists());
        // Not through a symlink: a PUT's URL path must name the same place.
        std::os::unix::fs::symlink(root.join("in"), root.join("link")).unwrap();
        let e = finish("[upload]\nenabled = true\nallow_anonymous = true\ndir = \"link/coming\"\n")
            .unwrap_err()
            .0;
        assert!(e.contains("symlink"), "{e}");
        // A bucket root: not yet.
        let e = parse("[upload]\nenabled = true\nallow_anonymous = true\n")
            .and_then(|f| f.finish(PathBuf::from("s3://bucket/prefix")))
            .unwrap_err()
            .0;
        assert!(e.contains("disk root"), "{e}");
    }

    #[test]
    fn state_dir_is_created_and_must_be_outside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        // Empty means no persistence.
        let cfg = FileConfig {
            state_dir: Some(PathBuf::new()),
            ..Default::default()
        };
        assert_eq!(cfg.finish(root.clone()).unwrap().state_dir, None);
        // Missing: created, and kept canonical.
        let state = dir.path().join("var/state");
        let cfg = FileConfig {
            state_dir: Some(state.clone()),
            ..Default::default()
        };
        let ok = cfg.finish(root.clone()).unwrap();
        assert!(state.is_dir());
        assert_eq!(ok.state_dir, Some(state.canonicalize().unwrap()));
        // Inside the root (directly, at the root itself, or through `..`): refused, one line.
        for inside in [
            root.join(".state"),
            root.clone(),
            dir.path().join("var/../root/x"),
        ] {
            let cfg = FileConfig {
                state_dir: Some(inside.clone()),
                ..Default::default()
            };
            let e = cfg.finish(root.clone()).unwrap_err().0;
            assert!(e.starts_with("state_dir "), "{inside:?}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
        // A file is not a directory.
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let cfg = FileConfig {
            state_dir: Some(file),
            ..Default::default()
        };
        assert!(cfg.finish(root).unwrap_err().0.starts_with("state_dir "));
    }
}
