//! One access line per response, written when its body is finished or dropped, so it carries
//! the bytes really sent, the whole duration and whether the body completed.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::response::Response;
use http::{header, Method, StatusCode};
use http_body::{Frame, SizeHint};

/// Faults the download-client lab applied to a response (a response extension), logged as
/// `faults`.
#[derive(Debug, Clone)]
pub struct Faults(pub String);

struct Line {
    faults: Option<String>,
    request_id: Option<String>,
    method: Method,
    path: String,
    range: Option<String>,
    status: StatusCode,
    start: Instant,
    /// Body bytes the response promised (0 for HEAD, 204, 304), when it said.
    expected: Option<u64>,
}

/// What the line needs from the request, taken before the handler consumes it; `None` when
/// access logging is off, which then costs nothing more.
pub struct Pending {
    request_id: Option<String>,
    method: Method,
    path: String,
    range: Option<String>,
    start: Instant,
}

pub fn begin(req: &Request) -> Option<Pending> {
    if !tracing::enabled!(target: "rangeserve::access", tracing::Level::INFO) {
        return None;
    }
    // Capped: a long Range header must not become a long log line.
    let range = req.headers().get(header::RANGE).map(|v| {
        let s = String::from_utf8_lossy(v.as_bytes());
        if s.len() > 200 {
            format!("{}...({} bytes)", &s[..s.floor_char_boundary(200)], s.len())
        } else {
            s.into_owned()
        }
    });
    Some(Pending {
        // Set by the application's request-id layer when the client sent none.
        request_id: req
            .headers()
            .get("x-request-id")
            .map(|v| String::from_utf8_lossy(&v.as_bytes()[..v.len().min(200)]).into_owned()),
        method: req.method().clone(),
        path: req.uri().path().to_owned(),
        range,
        start: Instant::now(),
    })
}

/// Attach the line to the response: it is written when the body is done or dropped.
pub fn finish(pending: Option<Pending>, resp: Response) -> Response {
    let Some(p) = pending else {
        return resp;
    };
    let status = resp.status();
    let bodyless = p.method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let expected = if bodyless {
        Some(0)
    } else {
        resp.headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
    };
    let line = Line {
        faults: resp.extensions().get::<Faults>().map(|f| f.0.clone()),
        request_id: p.request_id,
        method: p.method,
        path: p.path,
        range: p.range,
        status,
        start: p.start,
        expected,
    };
    resp.map(|inner| {
        tap(
            inner,
            Logged {
                line,
                sent: 0,
                complete: false,
            },
        )
    })
}

/// Told what passes through a body wrapped by [`tap`].
pub trait Watch: Send + Unpin + 'static {
    /// `n` body bytes were handed to the connection.
    fn data(&mut self, n: u64);
    /// The body ended cleanly (every byte handed over).
    fn ended(&mut self);
}

/// `inner`, reporting to `watch` as it is polled.
pub fn tap(inner: Body, watch: impl Watch) -> Body {
    Body::new(Tap { inner, watch })
}

struct Tap<W> {
    inner: Body,
    watch: W,
}

impl<W: Watch> http_body::Body for Tap<W> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.watch.data(data.len() as u64);
                }
                // hyper stops polling a body that says it has ended: report it now.
                if this.inner.is_end_stream() {
                    this.watch.ended();
                }
            }
            Poll::Ready(None) => this.watch.ended(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The access line of one response, written when its body is dropped.
struct Logged {
    line: Line,
    sent: u64,
    complete: bool,
}

impl Watch for Logged {
    fn data(&mut self, n: u64) {
        self.sent += n;
    }
    fn ended(&mut self) {
        self.complete = true;
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let l = &self.line;
        // hyper stops polling once Content-Length bytes are out, so count rather than wait
        // for the end of the stream (a bodyless response is never polled at all).
        let complete = self.complete || l.expected.is_some_and(|e| self.sent >= e);
        let ms = (l.start.elapsed().as_secs_f64() * 1e6).round() / 1e3;
        let range = l.range.as_deref().unwrap_or("-");
        // An absent `faults` (anything but the lab) adds no field.
        tracing::info!(
            target: "rangeserve::access",
            method = %l.method,
            path = %l.path,
            status = l.status.as_u16(),
            bytes = self.sent,
            ms,
            range,
            complete,
            faults = l.faults.as_deref().map(tracing::field::display),
            request_id = l.request_id.as_deref().map(tracing::field::display),
        );
    }
}
