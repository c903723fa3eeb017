//! The fast path for plain-TCP HTTP/1.1: the requests a download server mostly gets (GET and
//! HEAD of an origin-form target, HTTP/1.1, no body, no `Expect`, `Upgrade` or `TE` header, and
//! `Connection` at most `keep-alive` or `close`) are parsed with `httparse` and answered here, each response head written in the same
//! `writev` as the first body bytes (or `sendfile` placeholders, see `sendfile`).
//!
//! Everything else goes to hyper: the first request that is not such a simple one (another
//! method, a body, HTTP/1.0, an HTTP/2 preface, a malformed or oversized
//! head, ...) hands the connection over, with the bytes already read, to the same hyper
//! connection every other listener uses, which then serves it to the end. So every edge of
//! HTTP/1 framing stays hyper's, and this path only has to get the common case right.
//!
//! Why: hyper's HTTP/1 dispatcher, parser and encoder were about half of the instructions of a
//! `304` (callgrind: ~8,500 of 17,000), more than the handler's own work.
//!
//! Framing follows hyper's server (and RFC 9112 §6): a response's own `Content-Length` is
//! used as it is; without one, a body of known size gets one, an unknown size is sent chunked;
//! HEAD, 204 and 304 responses never carry body bytes (RFC 9110 §9.3.2, §15.3.5, §15.4.5). A
//! body that ends short of its Content-Length, or fails, closes the connection (the client sees
//! a cut response, never a wrong one); so does a response the server cannot write.

use std::future::Future;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::Response;
use bytes::{Buf, Bytes, BytesMut};
use futures_util::FutureExt;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, StatusCode, Uri, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::limits::Activity;
use crate::App;

/// Header fields a simple request may have (hyper's own default limit for HTTP/1).
pub const MAX_HEADERS: usize = 100;

/// How a connection's fast path ended.
pub enum End {
    /// The connection is done (the caller shuts it down): the client closed it or asked to, an
    /// I/O error or timeout, a broken response body, or shutdown.
    Closed,
    /// A request this path does not serve: hyper serves the connection from here on, starting
    /// with these bytes (already read from the socket).
    Handover(Bytes),
}

/// Serve simple requests on `io` until the connection ends or a request needs hyper. `max_buf`
/// bounds the request head (hyper's `max_buf_size`, which then answers 431); `stop` turns true
/// when the server shuts down (an idle connection closes at once, a response in flight is
/// finished first).
pub async fn serve<IO>(
    io: &mut IO,
    app: &App,
    activity: &Arc<Activity>,
    max_buf: usize,
    stop: tokio::sync::watch::Receiver<bool>,
) -> End
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    // One future for the whole connection: made anew before every read, it registered and
    // deregistered a waiter on the channel per request. Polled once, it stays registered and
    // wakes this task when shutdown starts; after that a version check says whether it has
    // (polling the future again on every idle read cost ~240 instructions per request).
    let mut stopping = stop.clone();
    let mut stopped = std::pin::pin!(async move {
        let _ = stopping.wait_for(|s| *s).await;
    });
    let mut watching = false;
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let mut head = Vec::with_capacity(512);
    loop {
        let (req, close) = loop {
            match parse(&mut buf, max_buf) {
                Parsed::Simple(req, close) => break (req, close),
                Parsed::Other(head) if head.is_empty() => return End::Handover(buf.freeze()),
                Parsed::Other(head) => {
                    let mut all = BytesMut::from(&head[..]);
                    all.extend_from_slice(&buf);
                    return End::Handover(all.freeze());
                }
                Parsed::Partial if buf.len() >= max_buf => return End::Handover(buf.freeze()),
                Parsed::Partial => {}
            }
            if buf.is_empty() && shutting_down(&stop) {
                return End::Closed;
            }
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(4 * 1024);
            }
            // Between requests, shutdown closes the connection; a head that has started
            // arriving is read to its end (and answered).
            let n = tokio::select! {
                biased;
                n = io.read_buf(&mut buf) => n,
                _ = std::future::poll_fn(|cx| {
                    if !watching {
                        watching = true;
                        return stopped.as_mut().poll(cx);
                    }
                    match shutting_down(&stop) {
                        true => Poll::Ready(()),
                        false => Poll::Pending,
                    }
                }), if buf.is_empty() => return End::Closed,
            };
            match n {
                Ok(0) | Err(_) => return End::Closed,
                Ok(_) => {}
            }
        };
        let in_flight = activity.begin();
        let is_head = req.method() == Method::HEAD;
        let resp = app.answer(req).await;
        // The last response on the connection says so (RFC 9112 §9.6), as hyper's do.
        let last = close || shutting_down(&stop);
        let written = write_response(io, resp, is_head, last, max_buf, &mut head).await;
        drop(in_flight);
        if written.is_err() {
            return End::Closed;
        }
        if last {
            return End::Closed;
        }
    }
}

/// Whether the server has begun to shut down: an atomic version check first, the value's lock
/// only once something was sent.
fn shutting_down(stop: &tokio::sync::watch::Receiver<bool>) -> bool {
    stop.has_changed().unwrap_or(true) && *stop.borrow()
}

// The request is the common case: boxing it would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Parsed {
    /// A simple request (its head taken off the buffer), and whether the client asked to
    /// close the connection after it (`Connection: close`).
    Simple(Request<Body>, bool),
    /// Not all of the head yet.
    Partial,
    /// Anything this path leaves to hyper (including what hyper will refuse), with the head
    /// if it was already taken off the buffer (empty if not).
    Other(Bytes),
}

/// `max_buf`: a longer head is hyper's to refuse (431), even when all of it has arrived.
fn parse(buf: &mut BytesMut, max_buf: usize) -> Parsed {
    if buf.is_empty() {
        return Parsed::Partial;
    }
    // Uninitialised slots: filling 100 empty headers first cost more than the parse.
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut []);
    let len = match parsed.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(len)) if len <= max_buf => len,
        Ok(httparse::Status::Complete(_)) => return Parsed::Other(Bytes::new()),
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Other(Bytes::new()),
    };
    let method = match parsed.method {
        Some("GET") => Method::GET,
        Some("HEAD") => Method::HEAD,
        _ => return Parsed::Other(Bytes::new()),
    };
    let (Some(path), Some(1)) = (parsed.path, parsed.version) else {
        return Parsed::Other(Bytes::new());
    };
    if !path.starts_with('/') {
        return Parsed::Other(Bytes::new());
    }
    // Where the target and each field lie in the head, to take them from it without copies.
    let base = buf.as_ptr() as usize;
    let at = |s: &[u8]| (s.as_ptr() as usize - base, s.len());
    let target = at(path.as_bytes());
    // On the stack for the usual handful of fields (a Vec was an allocation per request), and
    // pushed in place (collecting moved the whole inline array).
    let mut fields = smallvec::SmallVec::<[((usize, usize), (usize, usize)); 16]>::new();
    for h in parsed.headers.iter() {
        fields.push((at(h.name.as_bytes()), at(h.value)));
    }
    let head = buf.split_to(len).freeze();
    let Ok(uri) = Uri::from_maybe_shared(head.slice(target.0..target.0 + target.1)) else {
        return Parsed::Other(head);
    };
    let mut map = HeaderMap::with_capacity(fields.len());
    let mut close = false;
    for &((n, nl), (v, vl)) in &fields {
        let Ok(name) = HeaderName::from_bytes(&head[n..n + nl]) else {
            return Parsed::Other(head);
        };
        // Framing and connection management stay hyper's: a body (RFC 9112 §6.3), 100-continue,
        // upgrades (h2c), and any Connection option but keep-alive (the default in 1.1).
        let value = &head[v..v + vl];
        let simple = match name {
            header::CONTENT_LENGTH
            | header::TRANSFER_ENCODING
            | header::EXPECT
            | header::UPGRADE
            | header::TE => false,
            header::CONNECTION if value.eq_ignore_ascii_case(b"close") => {
                close = true;
                true
            }
            header::CONNECTION => value.eq_ignore_ascii_case(b"keep-alive"),
            _ => true,
        };
        if !simple {
            return Parsed::Other(head);
        }
        // A slice of the head, not a copy; not checked again: httparse accepts exactly the
        // bytes a HeaderValue may hold (HTAB, SP through `~`, obs-text 0x80-0xFF; RFC 9110
        // §5.5), and debug builds (the tests) check each value anyway.
        // SAFETY: the bytes were validated by httparse as a field value (see above).
        let value = unsafe { HeaderValue::from_maybe_shared_unchecked(head.slice(v..v + vl)) };
        map.append(name, value);
    }
    let mut req = Request::new(Body::empty());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = map;
    Parsed::Simple(req, close)
}

/// How the body is framed on the wire.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body bytes are sent (HEAD, 204, 304, or an empty body).
    None,
    /// Exactly this many bytes.
    Length(u64),
    Chunked,
}

/// Write the response head and body. An error means the connection must close.
async fn write_response<IO>(
    io: &mut IO,
    resp: Response,
    is_head: bool,
    last: bool,
    max_buf: usize,
    head: &mut Vec<u8>,
) -> io::Result<()>
where
    IO: AsyncWrite + Unpin,
{
    let (parts, mut body) = resp.into_parts();
    let status = parts.status;
    // RFC 9110 §15.3.5, §15.4.5: no content in a 204 or 304; §9.3.2: none for HEAD.
    let no_content = matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED)
        || status.is_informational();
    head.clear();
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    let mut declared = None;
    let (mut has_connection, mut has_date) = (false, false);
    for (name, value) in parts.headers.iter() {
        match *name {
            header::CONTENT_LENGTH if no_content => continue,
            header::CONTENT_LENGTH => declared = Some(parse_length(value)?),
            header::CONNECTION => has_connection = true,
            header::DATE => has_date = true,
            _ => {}
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if last && !has_connection {
        head.extend_from_slice(b"connection: close\r\n");
    }
    if !has_date {
        head.extend_from_slice(b"date: ");
        head.extend_from_slice(crate::serve::date_now().as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    let framing = match declared {
        _ if no_content => Framing::None,
        Some(_) if is_head => Framing::None,
        Some(0) => Framing::None,
        Some(n) => Framing::Length(n),
        None => match body.size_hint().exact() {
            _ if body.is_end_stream() => {
                if !is_head {
                    head.extend_from_slice(b"content-length: 0\r\n");
                }
                Framing::None
            }
            Some(n) => {
                head.extend_from_slice(b"content-length: ");
                head.extend_from_slice(n.to_string().as_bytes());
                head.extend_from_slice(b"\r\n");
                if is_head {
                    Framing::None
                } else {
                    Framing::Length(n)
                }
            }
            None if is_head => Framing::None,
            None => {
                head.extend_from_slice(b"transfer-encoding: chunked\r\n");
                Framing::Chunked
            }
        },
    };
    head.extend_from_slice(b"\r\n");
    crate::serve::recycle_header_map(parts.headers);
    if framing == Framing::None {
        return io.write_all(head).await;
    }

    // What is ready goes out together in one write: the head with the first body bytes, and
    // small frames (multipart framing, short ranges) with their neighbours, up to `max_buf`
    // bytes or BATCH slices, as hyper's write queue does. A frame that is not ready at once (a
    // read from disk, the lab's delays) first flushes what is held, so the head goes out on
    // its own while the body waits, as with hyper; so does a body that fails.
    let mut held: Vec<Bytes> = Vec::with_capacity(BATCH);
    let mut held_bytes = 0;
    let mut head_sent = false;
    let mut left = match framing {
        Framing::Length(n) => n,
        _ => u64::MAX,
    };
    loop {
        let next = match body.frame().now_or_never() {
            Some(next) => next,
            None => {
                flush(io, head, &mut head_sent, &mut held).await?;
                held_bytes = 0;
                body.frame().await
            }
        };
        let data = match next {
            None => break,
            Some(Err(e)) => {
                flush(io, head, &mut head_sent, &mut held).await?;
                return Err(io::Error::other(e));
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue, // trailers: not sent
            },
        };
        if data.is_empty() {
            continue;
        }
        held_bytes += data.len();
        if framing == Framing::Chunked {
            held.push(Bytes::from(format!("{:x}\r\n", data.len())));
            held.push(data);
            held.push(Bytes::from_static(b"\r\n"));
        } else if data.len() as u64 > left {
            flush(io, head, &mut head_sent, &mut held).await?;
            return Err(io::Error::other("body longer than its Content-Length"));
        } else {
            left -= data.len() as u64;
            held.push(data);
        }
        // Room must stay for the head and a chunk's three pieces.
        if held_bytes >= max_buf || held.len() + 4 > BATCH {
            flush(io, head, &mut head_sent, &mut held).await?;
            held_bytes = 0;
        }
    }
    if framing == Framing::Chunked {
        held.push(Bytes::from_static(b"0\r\n\r\n"));
    }
    flush(io, head, &mut head_sent, &mut held).await?;
    if left > 0 && framing != Framing::Chunked {
        return Err(io::Error::other("body shorter than its Content-Length"));
    }
    Ok(())
}

/// The most slices one write carries (the head included).
const BATCH: usize = 16;

/// Write the head (unless sent already) and the held body pieces, and forget them.
async fn flush<IO>(
    io: &mut IO,
    head: &[u8],
    head_sent: &mut bool,
    held: &mut Vec<Bytes>,
) -> io::Result<()>
where
    IO: AsyncWrite + Unpin,
{
    let mut bufs: [&[u8]; BATCH] = [&[]; BATCH];
    let mut count = 0;
    if !*head_sent {
        bufs[0] = head;
        count = 1;
        *head_sent = true;
    }
    for b in held.iter() {
        bufs[count] = b;
        count += 1;
    }
    write_all(io, &mut bufs[..count]).await?;
    held.clear();
    Ok(())
}

fn parse_length(v: &HeaderValue) -> io::Result<u64> {
    v.to_str()
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other("the response's Content-Length is not a number"))
}

/// Write every byte of `bufs` (at most BATCH), in order, with vectored writes (so that
/// `sendfile` placeholders reach the socket wrapper as the slices they are).
async fn write_all<IO>(io: &mut IO, bufs: &mut [&[u8]]) -> io::Result<()>
where
    IO: AsyncWrite + Unpin,
{
    let mut first = 0;
    while first < bufs.len() {
        if bufs[first].is_empty() {
            first += 1;
            continue;
        }
        let mut slices = [IoSlice::new(&[]); BATCH];
        for (s, b) in slices.iter_mut().zip(&bufs[first..]) {
            *s = IoSlice::new(b);
        }
        let mut n = io.write_vectored(&slices[..bufs.len() - first]).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while n > 0 {
            let b = &mut bufs[first];
            if n >= b.len() {
                n -= b.len();
                first += 1;
            } else {
                *b = &b[n..];
                n = 0;
            }
        }
    }
    Ok(())
}

/// A connection's I/O with bytes already read from it put back in front (the hand-over to
/// hyper).
pub struct Prefixed<IO> {
    read: Bytes,
    io: IO,
}

impl<IO> Prefixed<IO> {
    pub fn new(read: Bytes, io: IO) -> Prefixed<IO> {
        Prefixed { read, io }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Prefixed<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.read.is_empty() {
            return Pin::new(&mut self.io).poll_read(cx, buf);
        }
        let n = self.read.len().min(buf.remaining());
        buf.put_slice(&self.read[..n]);
        self.read.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Prefixed<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn simple(raw: &str) -> bool {
        matches!(parse(&mut BytesMut::from(raw), 16384), Parsed::Simple(..))
    }

    /// The bytes `write_response` puts on the wire for `resp`, and whether it succeeded.
    async fn wire(resp: Response, is_head: bool, last: bool) -> (String, bool) {
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        let ok = write_response(&mut a, resp, is_head, last, 16384, &mut Vec::new())
            .await
            .is_ok();
        drop(a);
        let mut out = Vec::new();
        b.read_to_end(&mut out).await.unwrap();
        (String::from_utf8(out).unwrap(), ok)
    }

    fn resp(status: u16, headers: &[(&str, &str)], body: Body) -> Response {
        let mut r = Response::new(body);
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        for (k, v) in headers {
            r.headers_mut().append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        r
    }

    const DATE: (&str, &str) = ("date", "Sun, 22 Nov 2026 10:00:00 GMT");

    #[tokio::test]
    async fn framing_follows_the_status_the_method_and_the_body() {
        let exact = |s: &'static str| Body::from(s);
        // Content-Length as given; the body after the head.
        let (w, ok) = wire(
            resp(200, &[DATE, ("content-length", "5")], exact("hello")),
            false,
            false,
        )
        .await;
        assert!(ok);
        assert_eq!(w, "HTTP/1.1 200 OK\r\ndate: Sun, 22 Nov 2026 10:00:00 GMT\r\ncontent-length: 5\r\n\r\nhello");
        // HEAD: the headers, no body.
        let (w, _) = wire(
            resp(200, &[DATE, ("content-length", "5")], Body::empty()),
            true,
            false,
        )
        .await;
        assert_eq!(
            w,
            "HTTP/1.1 200 OK\r\ndate: Sun, 22 Nov 2026 10:00:00 GMT\r\ncontent-length: 5\r\n\r\n"
        );
        // 304: no Content-Length, no body.
        let (w, _) = wire(
            resp(304, &[DATE, ("etag", "\"x\"")], Body::empty()),
            false,
            false,
        )
        .await;
        assert_eq!(w, "HTTP/1.1 304 Not Modified\r\ndate: Sun, 22 Nov 2026 10:00:00 GMT\r\netag: \"x\"\r\n\r\n");
        // No Content-Length: the body's exact size becomes one.
        let (w, _) = wire(resp(404, &[DATE], exact("gone")), false, false).await;
        assert_eq!(w, "HTTP/1.1 404 Not Found\r\ndate: Sun, 22 Nov 2026 10:00:00 GMT\r\ncontent-length: 4\r\n\r\ngone");
        // An empty body: Content-Length 0 (but not for HEAD).
        let (w, _) = wire(resp(200, &[DATE], Body::empty()), false, false).await;
        assert_eq!(
            w,
            "HTTP/1.1 200 OK\r\ndate: Sun, 22 Nov 2026 10:00:00 GMT\r\ncontent-length: 0\r\n\r\n"
        );
        let (w, _) = wire(resp(200, &[DATE], Body::empty()), true, false).await;
        assert_eq!(
            w,
            "HTTP/1.1 200 OK\r\ndate: Sun, 22 Nov 2026 10:00:00 GMT\r\n\r\n"
        );
        // Unknown size: chunked.
        let stream = futures_util::stream::iter([
            Ok::<_, io::Error>(Bytes::from_static(b"abc")),
            Ok(Bytes::from_static(b"0123456789abcdef")),
        ]);
        let (w, _) = wire(resp(200, &[DATE], Body::from_stream(stream)), false, true).await;
        assert_eq!(w, "HTTP/1.1 200 OK\r\ndate: Sun, 22 Nov 2026 10:00:00 GMT\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n");
        // A Date is added when the response has none.
        let (w, _) = wire(resp(204, &[], Body::empty()), false, false).await;
        assert!(w.starts_with("HTTP/1.1 204 No Content\r\ndate: "), "{w}");
        assert!(
            w.ends_with(" GMT\r\n\r\n") && !w.contains("content-length"),
            "{w}"
        );
    }

    #[tokio::test]
    async fn a_body_that_breaks_its_length_fails_the_write() {
        let (w, ok) = wire(
            resp(200, &[DATE, ("content-length", "9")], Body::from("short")),
            false,
            false,
        )
        .await;
        assert!(!ok);
        assert!(w.ends_with("short"));
        let (_, ok) = wire(
            resp(200, &[DATE, ("content-length", "2")], Body::from("longer")),
            false,
            false,
        )
        .await;
        assert!(!ok);
        let stream = futures_util::stream::iter([
            Ok(Bytes::from_static(b"abc")),
            Err(io::Error::other("disk")),
        ]);
        let (_, ok) = wire(
            resp(
                200,
                &[DATE, ("content-length", "6")],
                Body::from_stream(stream),
            ),
            false,
            false,
        )
        .await;
        assert!(!ok);
    }

    #[test]
    fn only_plain_gets_and_heads_are_simple() {
        assert!(simple("GET /a HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(simple(
            "HEAD /a?b HTTP/1.1\r\nConnection: Keep-Alive\r\n\r\n"
        ));
        assert!(simple("GET /a HTTP/1.1\r\nConnection: close\r\n\r\n"));
        for other in [
            "POST /a HTTP/1.1\r\n\r\n",
            "OPTIONS * HTTP/1.1\r\n\r\n",
            "GET /a HTTP/1.0\r\n\r\n",
            "GET http://x/a HTTP/1.1\r\n\r\n",
            "GET /a HTTP/1.1\r\nConnection: close, te\r\n\r\n",
            "GET /a HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "GET /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /a HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            "GET /a HTTP/1.1\r\nUpgrade: h2c\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET /a HTTP/1.1\r\nBad Name: x\r\n\r\n",
        ] {
            assert!(!simple(other), "{other:?}");
        }
        let mut partial = BytesMut::from("GET /a HTTP/1.1\r\nHost");
        assert!(matches!(parse(&mut partial, 16384), Parsed::Partial));
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(16384));
        assert!(!simple(&big));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
        assert!(!simple(&format!("GET / HTTP/1.1\r\n{many}\r\n")));
    }
}
