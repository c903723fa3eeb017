//! The fast path for HTTP/1.1, on plain TCP and over TLS (after the handshake, unless ALPN chose
//! HTTP/2): the requests a download server mostly gets (GET and HEAD of an origin-form target,
//! HTTP/1.1, no body, no `Expect`, `Upgrade` or `TE` header, and `Connection` at most
//! `keep-alive` or `close`) are parsed with `httparse` and answered here, each response head
//! written in the same `writev` as the first body bytes (or, on plain TCP, `sendfile`
//! placeholders, see `sendfile`).
//!
//! Everything else goes to hyper: the first request that is not such a simple one (another
//! method, a body, HTTP/1.0, an HTTP/2 preface, a malformed or oversized head, ...) hands the
//! connection over, with the bytes already read, to a hyper connection, which then serves it
//! to the end: HTTP/1.1 or HTTP/2 when nothing was answered yet, HTTP/1.1 only after a
//! response (RFC 9113 §3.4: an HTTP/2 preface is then an HTTP/1.1 request hyper refuses).
//! Both serve the same application. So every edge of HTTP/1 framing stays hyper's, and this path
//! only has to get the common case right.
//!
//! Split as hyper's `proto::h1` is: `parse` (a head into a request), `write` (a response onto
//! the wire), and here the dispatch loop between them.
//!
//! Why: hyper's HTTP/1 dispatcher, parser and encoder cost more instructions per `304` than the
//! handler's own work (bench/README.md has the counts).
//!
//! Framing follows hyper's server (and RFC 9112 §6): a response's own `Content-Length` is
//! used as it is; without one, a body of known size gets one, an unknown size is sent chunked;
//! HEAD, 204 and 304 responses never carry body bytes (RFC 9110 §9.3.2, §15.3.5, §15.4.5). A
//! body that ends short of its Content-Length, or fails, closes the connection (the client sees
//! a cut response, never a wrong one); so does a response the server cannot write.

mod parse;
mod write;

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::Method;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use super::limits::Activity;
use super::App;
use parse::{parse, Parsed};
use write::write_response;

pub use parse::MAX_HEADERS;

/// How a connection's fast path ended.
pub enum End {
    /// The connection is done (the caller shuts it down): the client closed it or asked to, an
    /// I/O error or timeout, a broken response body, or shutdown.
    Closed,
    /// A request this path does not serve: hyper serves the connection from here on, starting
    /// with the bytes `read` (already read from the socket); `answered` says whether a
    /// response was written here first.
    Handover { read: Bytes, answered: bool },
}

/// Serve simple requests on `io` until the connection ends or a request needs hyper. `max_buf`
/// bounds the request head (hyper's `max_buf_size`, which then answers 431); `stop` turns true
/// when the server shuts down (an idle connection closes at once, a response in flight is
/// finished first).
pub async fn serve<IO, A: App>(
    io: &mut IO,
    app: &A,
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
    // (polling the future again on every idle read showed in the profile of 304s).
    let mut stopping = stop.clone();
    let mut stopped = std::pin::pin!(async move {
        let _ = stopping.wait_for(|s| *s).await;
    });
    let mut watching = false;
    // Room for a usual request head (a few hundred bytes); it grows when one needs more.
    let mut buf = BytesMut::with_capacity(2 * 1024);
    let mut head = Vec::with_capacity(512);
    let mut service = app.clone();
    let mut answered = false;
    loop {
        let (req, close) = loop {
            let read = match parse(&mut buf, max_buf) {
                Parsed::Simple(req, close) => break (req, close),
                Parsed::Other(head) if head.is_empty() => Some(buf.split().freeze()),
                Parsed::Other(head) => {
                    let mut all = BytesMut::from(&head[..]);
                    all.extend_from_slice(&buf);
                    Some(all.freeze())
                }
                Parsed::Partial if buf.len() >= max_buf => Some(buf.split().freeze()),
                Parsed::Partial => None,
            };
            if let Some(read) = read {
                return End::Handover { read, answered };
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
        // Always ready (see `App`): no waiting for readiness.
        let resp = match std::future::poll_fn(|cx| service.poll_ready(cx)).await {
            Ok(()) => service.call(req).await,
            Err(e) => match e {},
        };
        let Ok(resp) = resp;
        answered = true;
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
