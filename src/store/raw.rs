//! Ranged reads of a plain-`http://` store over a socket of our own, so that a response's
//! bytes can go from the store's socket to the client's with `splice(2)` and never through
//! user space (`files::body`, `transport::sendfile`). The request is a presigned `GET` that
//! the `object_store` crate signs (no signing here); its client (reqwest) cannot hand over its
//! socket, which is the one reason for this small HTTP/1.1 reader. It only reads a response
//! head (with `httparse`) and then the exact `Content-Length` of a `206`: anything else
//! (another status, a chunked body, a head that does not name the asked range and version) is
//! either "the object changed" or a reason to read through `object_store` instead, which
//! retries.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;

use super::ObjectVersion;
use crate::fs::sendfile::splice;
use crate::ops::metrics::METRICS;

/// The longest response head read.
const MAX_HEAD: usize = 16 << 10;

/// Environment variables that send the crate's requests through a proxy: with any of them
/// set, no read goes around it.
const PROXY_VARS: [&str; 5] = [
    "AWS_PROXY_URL",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Whether this process may read the store over sockets of its own (no proxy configured).
pub fn allowed() -> bool {
    PROXY_VARS
        .iter()
        .all(|v| std::env::var_os(v).is_none_or(|s| s.is_empty()))
}

/// A `206` body being read: the socket, positioned at the body's first byte not yet taken
/// (`held` holds the body bytes that came with the head).
pub struct RawBody {
    tcp: TcpStream,
    held: Bytes,
    /// Body bytes still in the socket.
    left: u64,
}

/// How a raw read ended before its body.
pub enum Opened {
    Body(RawBody),
    /// Read through `object_store` instead (why, for the debug log): the store is not plain
    /// HTTP, or it answered something this reader does not take.
    Fallback(String),
}

/// `GET` `url` (presigned, plain `http://`) for `range`, conditional on `version`: a `206`
/// naming that range and version is a body; a failed condition, a missing object or an answer
/// naming another version is an error of kind `Interrupted` or `NotFound` (as from
/// `object_store`); anything else a [`Opened::Fallback`]. `timeout` bounds the connection and
/// the head together.
pub async fn get(
    url: &str,
    range: std::ops::Range<u64>,
    version: &ObjectVersion,
    timeout: Duration,
) -> io::Result<Opened> {
    let Some(rest) = url.strip_prefix("http://") else {
        return Ok(Opened::Fallback("not a plain http:// endpoint".into()));
    };
    let (authority, target) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let started = std::time::Instant::now();
    let opened =
        match tokio::time::timeout(timeout, request(authority, target, &range, version)).await {
            Ok(r) => r,
            Err(_) => Ok(Opened::Fallback("no answer in time".into())),
        };
    let ok = matches!(&opened, Ok(Opened::Body(_)))
        || matches!(&opened, Err(e) if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::NotFound));
    METRICS.store_request(ok, started.elapsed());
    opened
}

async fn request(
    authority: &str,
    target: &str,
    range: &std::ops::Range<u64>,
    version: &ObjectVersion,
) -> io::Result<Opened> {
    let port_given = authority.rsplit_once(':').is_some_and(|(_, p)| {
        !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !authority.ends_with(']')
    });
    let addr = if port_given {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let mut tcp = match TcpStream::connect(addr.as_str()).await {
        Ok(t) => t,
        Err(e) => return Ok(Opened::Fallback(format!("connect: {e}"))),
    };
    let _ = tcp.set_nodelay(true);
    let condition = match &version.store_etag {
        Some(etag) => format!("If-Match: {etag}\r\n"),
        // Without an ETag, the time is what ties the read to the version (as `Bucket::read`).
        None => format!(
            "If-Unmodified-Since: {}\r\n",
            httpdate::fmt_http_date(version.modified())
        ),
    };
    let head = format!(
        "GET {target} HTTP/1.1\r\nHost: {authority}\r\nRange: bytes={}-{}\r\n{condition}\
         User-Agent: rangeserve\r\nConnection: close\r\n\r\n",
        range.start,
        range.end - 1
    );
    if let Err(e) = tcp.write_all(head.as_bytes()).await {
        return Ok(Opened::Fallback(format!("send: {e}")));
    }
    let mut buf = BytesMut::with_capacity(MAX_HEAD);
    loop {
        if buf.len() >= MAX_HEAD {
            return Ok(Opened::Fallback("response head too long".into()));
        }
        match tokio::io::AsyncReadExt::read_buf(&mut tcp, &mut buf).await {
            Ok(0) => return Ok(Opened::Fallback("closed before a response head".into())),
            Ok(_) => {}
            Err(e) => return Ok(Opened::Fallback(format!("receive: {e}"))),
        }
        let mut headers = [httparse::EMPTY_HEADER; 48];
        let mut resp = httparse::Response::new(&mut headers);
        let len = match resp.parse(&buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => continue,
            Err(e) => return Ok(Opened::Fallback(format!("response head: {e}"))),
        };
        let checked = check(&resp, range, version);
        let want = checked?;
        if let Some(why) = want {
            return Ok(Opened::Fallback(why));
        }
        let mut held = buf.split_off(len).freeze();
        let total = range.end - range.start;
        if held.len() as u64 > total {
            held.truncate(total as usize);
        }
        METRICS.store_bytes(held.len() as u64);
        let left = total - held.len() as u64;
        return Ok(Opened::Body(RawBody { tcp, held, left }));
    }
}

/// Whether the response head `resp` answers `range` of `version`: `Ok(None)` yes,
/// `Ok(Some(why))` a fallback, `Err` the object changed or is gone.
fn check(
    resp: &httparse::Response<'_, '_>,
    range: &std::ops::Range<u64>,
    version: &ObjectVersion,
) -> io::Result<Option<String>> {
    let header = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .map(str::trim)
    };
    let changed = |why: &str| {
        Err(io::Error::new(
            io::ErrorKind::Interrupted,
            format!("the object changed ({why})"),
        ))
    };
    match resp.code {
        Some(206) => {}
        Some(412) => return changed("its version no longer matches"),
        Some(404) => return Err(io::Error::new(io::ErrorKind::NotFound, "no such object")),
        Some(code) => return Ok(Some(format!("status {code}"))),
        None => return Ok(Some("no status".into())),
    }
    if header("transfer-encoding").is_some() {
        return Ok(Some("a transfer-coded body".into()));
    }
    let total = range.end - range.start;
    if header("content-length").and_then(|v| v.parse::<u64>().ok()) != Some(total) {
        return Ok(Some("a Content-Length other than the range's".into()));
    }
    // A header missing or in a form not read here: `object_store` judges the answer instead.
    let Some(answered) = header("content-range").and_then(content_range) else {
        return Ok(Some("no Content-Range read".into()));
    };
    if (answered.0, answered.1) != (range.start, range.end - 1) {
        return changed("its answer names another range");
    }
    let e_tag = header("etag");
    if version.store_etag.is_some() && e_tag.is_none() {
        return Ok(Some("no ETag".into()));
    }
    let Some(Ok(modified)) = header("last-modified").map(httpdate::parse_http_date) else {
        return Ok(Some("no Last-Modified read".into()));
    };
    let secs = modified
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    match version.named_by(answered.2, secs, e_tag) {
        true => Ok(None),
        false => changed("its answer names another version"),
    }
}

/// `bytes FIRST-LAST/SIZE` (RFC 9110, 14.4) as numbers.
fn content_range(v: &str) -> Option<(u64, u64, u64)> {
    let (span, size) = v.strip_prefix("bytes ")?.split_once('/')?;
    let (first, last) = span.split_once('-')?;
    Some((first.parse().ok()?, last.parse().ok()?, size.parse().ok()?))
}

fn ended_early() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the store's response ended early",
    )
}

fn stalled() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "the store stopped sending")
}

/// A pipe that a response's bytes pass through between the store's socket and the client's.
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    /// A new pipe of up to 1 MiB (the usual limit for an unprivileged process).
    pub fn new() -> io::Result<Pipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both were just opened and are owned by nothing else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // A failure leaves the default size (64 KiB): smaller moves, same bytes.
        // SAFETY: a plain fcntl on a descriptor we own.
        let _ = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) };
        Ok(Pipe { read, write })
    }

    /// The end the connection's writes `splice` from.
    pub fn read_fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }
}

impl RawBody {
    /// Whether body bytes that came with the head are still to be taken (with [`more`]).
    ///
    /// [`more`]: RawBody::more
    pub fn holds(&self) -> bool {
        !self.held.is_empty()
    }

    /// The next body bytes (at least one), waiting at most `stall` for them.
    pub async fn more(&mut self, stall: Duration) -> io::Result<Bytes> {
        if !self.held.is_empty() {
            return Ok(std::mem::take(&mut self.held));
        }
        // Never more than the body's rest: the store's socket holds nothing else we take.
        let mut buf = BytesMut::with_capacity(self.left.min(256 << 10) as usize);
        self.receive(stall, |tcp| tcp.try_read_buf(&mut buf))
            .await?;
        Ok(buf.freeze())
    }

    /// Move the next body bytes, at most `max` (at least one), from the store's socket into
    /// `pipe`, which must be empty, waiting at most `stall` for them. Only once the bytes that
    /// came with the head were taken ([`holds`](RawBody::holds) is false).
    pub async fn splice_into(
        &mut self,
        pipe: &Pipe,
        max: usize,
        stall: Duration,
    ) -> io::Result<usize> {
        debug_assert!(self.held.is_empty());
        let want = self.left.min(max as u64) as usize;
        let (from, to) = (self.tcp.as_raw_fd(), pipe.write.as_raw_fd());
        // The pipe is empty, so "would block" can only mean the socket has nothing yet.
        self.receive(stall, |tcp| {
            tcp.try_io(Interest::READABLE, || splice(from, to, want))
        })
        .await
    }

    /// Take body bytes from the store's socket with `take` (which does not block) once it is
    /// readable, waiting at most `stall` each time: how many; none (the store closed) is an
    /// error, as is a body already taken whole.
    async fn receive(
        &mut self,
        stall: Duration,
        mut take: impl FnMut(&TcpStream) -> io::Result<usize>,
    ) -> io::Result<usize> {
        if self.left == 0 {
            return Err(ended_early());
        }
        loop {
            tokio::time::timeout(stall, self.tcp.readable())
                .await
                .map_err(|_| stalled())??;
            match take(&self.tcp) {
                Ok(0) => return Err(ended_early()),
                Ok(n) => {
                    self.left -= n as u64;
                    METRICS.store_bytes(n as u64);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    const MODIFIED: &str = "Wed, 02 Dec 2026 10:00:00 GMT";

    fn expect() -> ObjectVersion {
        let modified = httpdate::parse_http_date(MODIFIED).unwrap();
        let secs = modified
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        ObjectVersion {
            location: "b/k".into(),
            size: 1000,
            modified_ms: secs as i64 * 1000,
            store_etag: Some("\"abc\"".into()),
        }
    }

    /// A one-shot store on loopback: takes one request, answers `answer`; the request back.
    async fn store(answer: Vec<u8>) -> (String, tokio::task::JoinHandle<String>) {
        let (url, task, go) = store_later(answer, Vec::new()).await;
        go.send(()).unwrap();
        (url, task)
    }

    fn head(status: &str, range: &str, etag: &str, extra: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\nContent-Length: 10\r\nContent-Range: {range}\r\nETag: {etag}\r\n\
             Last-Modified: {MODIFIED}\r\n{extra}\r\n"
        )
    }

    async fn open(answer: Vec<u8>) -> (io::Result<Opened>, String) {
        let (url, task) = store(answer).await;
        let opened = get(&url, 100..110, &expect(), Duration::from_secs(5)).await;
        (opened, task.await.unwrap())
    }

    #[tokio::test]
    async fn a_matching_206_is_a_body_of_exactly_its_bytes() {
        let mut answer =
            head("206 Partial Content", "bytes 100-109/1000", "\"abc\"", "").into_bytes();
        answer.extend_from_slice(b"0123456789 and more that is not ours");
        let (opened, req) = open(answer).await;
        assert!(
            req.starts_with("GET /b/k?X-Amz-Signature=s HTTP/1.1\r\n"),
            "{req}"
        );
        assert!(req.contains("\r\nRange: bytes=100-109\r\n"), "{req}");
        assert!(req.contains("\r\nIf-Match: \"abc\"\r\n"), "{req}");
        let Ok(Opened::Body(mut body)) = opened else {
            panic!("not a body")
        };
        let mut got = Vec::new();
        while got.len() < 10 {
            got.extend_from_slice(&body.more(Duration::from_secs(5)).await.unwrap());
        }
        assert_eq!(got, b"0123456789");
        assert_eq!(
            body.more(Duration::from_secs(5)).await.unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

    #[tokio::test]
    async fn a_body_cut_short_is_an_error_not_fewer_bytes() {
        let mut answer =
            head("206 Partial Content", "bytes 100-109/1000", "\"abc\"", "").into_bytes();
        answer.extend_from_slice(b"01234");
        let (opened, _) = open(answer).await;
        let Ok(Opened::Body(mut body)) = opened else {
            panic!("not a body")
        };
        assert_eq!(
            &body.more(Duration::from_secs(5)).await.unwrap()[..],
            b"01234"
        );
        let e = body.more(Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn another_version_or_range_is_a_change_and_other_answers_fall_back() {
        let changed = [
            head(
                "412 Precondition Failed",
                "bytes 100-109/1000",
                "\"abc\"",
                "",
            ),
            head("206 Partial Content", "bytes 100-109/1000", "\"other\"", ""),
            head("206 Partial Content", "bytes 100-109/1001", "\"abc\"", ""),
            head("206 Partial Content", "bytes 101-110/1000", "\"abc\"", ""),
            head("206 Partial Content", "bytes 100-109/1000", "\"abc\"", "")
                .replace(MODIFIED, "Wed, 02 Dec 2026 10:00:01 GMT"),
        ];
        for answer in changed {
            let (opened, _) = open(answer.clone().into_bytes()).await;
            let e = opened
                .err()
                .unwrap_or_else(|| panic!("not an error: {answer}"));
            assert_eq!(e.kind(), io::ErrorKind::Interrupted, "{answer}");
        }
        let (opened, _) =
            open(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec()).await;
        assert_eq!(opened.err().unwrap().kind(), io::ErrorKind::NotFound);
        let fallbacks = [
            "HTTP/1.1 503 Slow Down\r\nContent-Length: 0\r\n\r\n".to_string(),
            head("200 OK", "bytes 100-109/1000", "\"abc\"", ""),
            head(
                "206 Partial Content",
                "bytes 100-109/1000",
                "\"abc\"",
                "Transfer-Encoding: chunked\r\n",
            ),
            "not http at all\r\n\r\n".to_string(),
            head("206 Partial Content", "bytes */1000", "\"abc\"", ""),
            head("206 Partial Content", "bytes 100-109/1000", "\"abc\"", "")
                .replace("ETag: \"abc\"\r\n", ""),
            head("206 Partial Content", "bytes 100-109/1000", "\"abc\"", "")
                .replace("Last-Modified", "X-Last-Modified"),
        ];
        for answer in fallbacks {
            let (opened, _) = open(answer.clone().into_bytes()).await;
            assert!(matches!(opened, Ok(Opened::Fallback(_))), "{answer}");
        }
    }

    #[tokio::test]
    async fn nothing_listening_and_https_fall_back() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/b/k", l.local_addr().unwrap());
        drop(l);
        let opened = get(&url, 0..10, &expect(), Duration::from_secs(5)).await;
        assert!(matches!(opened, Ok(Opened::Fallback(_))));
        let opened = get(
            "https://127.0.0.1:1/b/k",
            0..10,
            &expect(),
            Duration::from_secs(5),
        )
        .await;
        assert!(matches!(opened, Ok(Opened::Fallback(_))));
    }

    #[tokio::test]
    async fn spliced_bytes_arrive_in_the_pipe_exactly() {
        let answer = head("206 Partial Content", "bytes 100-109/1000", "\"abc\"", "");
        let (url, task, go) = store_later(answer.into_bytes(), b"0123456789".to_vec()).await;
        let opened = get(&url, 100..110, &expect(), Duration::from_secs(5)).await;
        let Ok(Opened::Body(mut body)) = opened else {
            panic!("not a body")
        };
        // The body is sent only now, after the head was read: none of it is held.
        assert!(!body.holds());
        go.send(()).unwrap();
        let _ = task.await.unwrap();
        let pipe = Pipe::new().unwrap();
        let mut got = Vec::new();
        while got.len() < 10 {
            let n = body
                .splice_into(&pipe, 10, Duration::from_secs(5))
                .await
                .unwrap();
            let mut buf = [0u8; 16];
            // SAFETY: reads into a local buffer from the pipe this test owns.
            let r = unsafe { libc::read(pipe.read_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            assert_eq!(r, n as isize);
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"0123456789");
        let e = body
            .splice_into(&pipe, 10, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    /// A one-shot store on loopback that answers `head`, then `body` once told to, then
    /// closes; the request back.
    async fn store_later(
        head: Vec<u8>,
        body: Vec<u8>,
    ) -> (
        String,
        tokio::task::JoinHandle<String>,
        tokio::sync::oneshot::Sender<()>,
    ) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/b/k?X-Amz-Signature=s", l.local_addr().unwrap());
        let (go, wait) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut req = Vec::new();
            while !req.ends_with(b"\r\n\r\n") {
                let mut b = [0u8; 1];
                if s.read(&mut b).await.unwrap() == 0 {
                    break;
                }
                req.push(b[0]);
            }
            s.write_all(&head).await.unwrap();
            wait.await.unwrap();
            s.write_all(&body).await.unwrap();
            String::from_utf8(req).unwrap()
        });
        (url, task, go)
    }
}
