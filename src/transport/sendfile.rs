//! The socket side of zero-copy file bodies: a plain TCP connection whose writes turn the
//! engine's placeholders (`fs::sendfile`) into `sendfile(2)` calls. Everything else written to
//! it goes to the socket as it is.

use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

use crate::fs::sendfile::{placeholder_offset, splice, SendQueue, Sink, Via};

/// A TCP connection whose writes turn placeholders into `sendfile` calls.
pub struct SendfileStream {
    tcp: TcpStream,
    queue: Arc<SendQueue>,
    sink: Sink,
}

impl SendfileStream {
    pub fn new(tcp: TcpStream) -> SendfileStream {
        let (queue, sink) = SendQueue::pair();
        SendfileStream { tcp, queue, sink }
    }

    /// The sink to serve this connection with (see `fs::sendfile::scope`).
    pub fn sink(&self) -> Sink {
        self.sink.clone()
    }

    /// Run a non-blocking socket call once the socket is writable.
    fn poll_io<R>(
        tcp: &TcpStream,
        cx: &mut Context<'_>,
        mut call: impl FnMut() -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        loop {
            ready!(tcp.poll_write_ready(cx))?;
            match tcp.try_io(Interest::WRITABLE, &mut call) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                result => return Poll::Ready(result),
            }
        }
    }

    /// Send the file bytes that the placeholder slice `buf` (at `at` in the region) stands for.
    fn poll_send_span(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        at: usize,
    ) -> Poll<io::Result<usize>> {
        let tcp = &self.tcp;
        let sock = tcp.as_raw_fd();
        self.queue.poll_send(buf, at, |via, fd, start, len| {
            Self::poll_io(tcp, cx, || {
                match via {
                    Via::Sendfile => {
                        let mut off = libc::off_t::try_from(start).map_err(io::Error::other)?;
                        // SAFETY: both descriptors are open (the queued span holds the file),
                        // `off` is ours.
                        let n = unsafe { libc::sendfile(sock, fd, &mut off, len) };
                        if n < 0 {
                            Err(io::Error::last_os_error())
                        } else {
                            Ok(n as usize)
                        }
                    }
                    // The pipe holds at least `len` bytes (moved in before the placeholder
                    // was made), so "would block" can only be the socket's.
                    Via::Splice => splice(fd, sock, len),
                }
            })
        })
    }
}

impl AsyncRead for SendfileStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for SendfileStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match placeholder_offset(buf) {
            Some(at) => self.poll_send_span(cx, buf, at),
            None => Pin::new(&mut self.tcp).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match bufs.iter().position(|b| placeholder_offset(b).is_some()) {
            None => Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs),
            Some(0) => {
                let at = placeholder_offset(&bufs[0]).unwrap_or_default();
                self.poll_send_span(cx, &bufs[0], at)
            }
            // What comes before the placeholder first (a response head, multipart framing).
            Some(k) => Pin::new(&mut self.tcp).poll_write_vectored(cx, &bufs[..k]),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}
