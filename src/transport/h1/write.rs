//! Writing a response: the head and the first body bytes in one `writev`, small frames with
//! their neighbours, framing as hyper's server does it.

use std::io::{self, IoSlice};

use bytes::Bytes;
use futures_util::FutureExt;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::http::{dates, response::recycle_header_map};

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
pub async fn write_response<IO, B>(
    io: &mut IO,
    resp: Response<B>,
    is_head: bool,
    last: bool,
    max_buf: usize,
    head: &mut Vec<u8>,
) -> io::Result<()>
where
    IO: AsyncWrite + Unpin,
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
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
    // The fields in hyper's order (`proto::h1::role::Server::encode_headers`): the
    // response's own, then an added `connection: close`, then the framing hyper works out
    // (`content-length` or `transfer-encoding`), then an added `date`.
    let empty = body.is_end_stream();
    let mut declared = None;
    let (mut has_connection, mut has_date) = (false, false);
    for (name, value) in parts.headers.iter() {
        match *name {
            header::CONTENT_LENGTH if no_content => continue,
            // An empty body's own Content-Length is dropped, and `content-length: 0` written
            // with the framing below, as hyper does (a HEAD response keeps its own: it
            // describes the GET's content, RFC 9110 §8.6).
            header::CONTENT_LENGTH if empty && !is_head => continue,
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
    let framing = match declared {
        _ if no_content => Framing::None,
        Some(_) if is_head => Framing::None,
        Some(0) => Framing::None,
        Some(n) => Framing::Length(n),
        None => match body.size_hint().exact() {
            _ if empty => {
                if !is_head {
                    head.extend_from_slice(b"content-length: 0\r\n");
                }
                Framing::None
            }
            // No implied zero length for HEAD (hyper's `can_have_implicit_zero_content_length`).
            Some(0) if is_head => Framing::None,
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
    if !has_date {
        head.extend_from_slice(b"date: ");
        head.extend_from_slice(dates::date_now().as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    recycle_header_map(parts.headers);
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
                return Err(io::Error::other(e.into()));
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http::header::HeaderName;
    use tokio::io::AsyncReadExt;

    /// The bytes `write_response` puts on the wire for `resp`, and whether it succeeded.
    async fn wire(resp: Response<Body>, is_head: bool, last: bool) -> (String, bool) {
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        let ok = write_response(&mut a, resp, is_head, last, 16384, &mut Vec::new())
            .await
            .is_ok();
        drop(a);
        let mut out = Vec::new();
        b.read_to_end(&mut out).await.unwrap();
        (String::from_utf8(out).unwrap(), ok)
    }

    fn resp(status: u16, headers: &[(&str, &str)], body: Body) -> Response<Body> {
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
}
