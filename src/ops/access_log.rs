//! One access line per response, written when its body is finished or dropped, so it carries
//! the bytes really sent, the whole duration and whether the body completed.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::response::Response;
use std::net::IpAddr;

use http::{header, Method, StatusCode};
use http_body::{Frame, SizeHint};
use ipnet::IpNet;

/// Faults the download-client lab applied to a response (a response extension), logged as
/// `faults`.
#[derive(Debug, Clone)]
pub struct Faults(pub String);

/// Request body bytes an upload stored (a response extension), logged as `received`.
#[derive(Debug, Clone, Copy)]
pub struct Received(pub u64);

struct Line {
    p: Pending,
    faults: Option<String>,
    received: Option<u64>,
    status: StatusCode,
    /// Body bytes the response promised (0 for HEAD, 204, 304), when it said.
    expected: Option<u64>,
}

/// What the line needs from the request, taken before the handler consumes it; `None` when
/// access logging is off, which then costs nothing more.
pub struct Pending {
    client: Option<IpAddr>,
    request_id: Option<String>,
    method: Method,
    path: String,
    query: Option<String>,
    range: Option<String>,
    user_agent: Option<String>,
    referer: Option<String>,
    start: Instant,
}

/// A request header's value for the log: lossy UTF-8, capped so that a long header cannot make
/// a long line.
fn field(v: &http::HeaderValue) -> String {
    let s = String::from_utf8_lossy(v.as_bytes());
    if s.len() > 200 {
        format!("{}...({} bytes)", &s[..s.floor_char_boundary(200)], s.len())
    } else {
        s.into_owned()
    }
}

/// Start the line of `req`, whose client `client` tells (see [`client`]).
pub fn begin(req: &Request, client: impl FnOnce() -> Option<IpAddr>) -> Option<Pending> {
    if !tracing::enabled!(target: "rangeserve::access", tracing::Level::INFO) {
        return None;
    }
    let h = req.headers();
    Some(Pending {
        client: client(),
        // Set by the application's request-id layer when the client sent none.
        request_id: h.get("x-request-id").map(field),
        method: req.method().clone(),
        path: req.uri().path().to_owned(),
        query: req.uri().query().map(|q| {
            let q = http::HeaderValue::from_str(q).unwrap_or(http::HeaderValue::from_static("?"));
            field(&q)
        }),
        range: h.get(header::RANGE).map(field),
        user_agent: h.get(header::USER_AGENT).map(field),
        referer: h.get(header::REFERER).map(field),
        start: Instant::now(),
    })
}

/// The client of a request that came from `peer`: `peer` itself, unless it is one of the
/// `trusted` proxies; then the address they forwarded for (RFC 7239 `Forwarded: for=`, else
/// `X-Forwarded-For`), read from the right and skipping trusted hops, as nginx's realip does.
pub fn client(
    peer: Option<IpAddr>,
    headers: &http::HeaderMap,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let peer = peer?;
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let mut hops: Vec<IpAddr> = Vec::new();
    let forwarded: Vec<&http::HeaderValue> = headers.get_all(header::FORWARDED).iter().collect();
    if !forwarded.is_empty() {
        for v in forwarded {
            let Ok(v) = v.to_str() else { continue };
            for element in v.split(',') {
                for pair in element.split(';') {
                    let Some((k, val)) = pair.trim().split_once('=') else {
                        continue;
                    };
                    if k.trim().eq_ignore_ascii_case("for") {
                        hops.extend(forwarded_node(val.trim()));
                    }
                }
            }
        }
    } else {
        for v in headers.get_all("x-forwarded-for") {
            let Ok(v) = v.to_str() else { continue };
            hops.extend(v.split(',').filter_map(|a| forwarded_node(a.trim())));
        }
    }
    // Nearest first: the first hop that is not a trusted proxy is the client.
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        client = hop;
        if !is_trusted(&hop) {
            break;
        }
    }
    Some(client)
}

/// The address in a `for=` node (RFC 7239 §6: `192.0.2.43`, `"[2001:db8::1]:4711"`, ...).
fn forwarded_node(node: &str) -> Option<IpAddr> {
    let node = node.trim_matches('"');
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    node.parse()
        .ok()
        .or_else(|| node.rsplit_once(':')?.0.parse().ok())
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
        received: resp.extensions().get::<Received>().map(|r| r.0),
        p,
        status,
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
        let p = &l.p;
        // hyper stops polling once Content-Length bytes are out, so count rather than wait
        // for the end of the stream (a bodyless response is never polled at all).
        let complete = self.complete || l.expected.is_some_and(|e| self.sent >= e);
        let ms = (p.start.elapsed().as_secs_f64() * 1e6).round() / 1e3;
        // An absent value is `-` in text lines and null in JSON ones (see `JsonLines`).
        let or_absent = |v: &Option<String>| match v {
            Some(s) => tracing::field::display(Shown::Text(s.clone())),
            None => tracing::field::display(Shown::Absent),
        };
        let client = match p.client {
            Some(ip) => tracing::field::display(Shown::Text(ip.to_string())),
            None => tracing::field::display(Shown::Absent),
        };
        // `faults` (the lab's) only when there are some; `received` only for uploads.
        tracing::info!(
            target: "rangeserve::access",
            client,
            method = %p.method,
            path = %p.path,
            query = or_absent(&p.query),
            status = l.status.as_u16(),
            bytes = self.sent,
            ms,
            range = or_absent(&p.range),
            complete,
            user_agent = or_absent(&p.user_agent),
            referer = or_absent(&p.referer),
            request_id = or_absent(&p.request_id),
            faults = l.faults.as_deref().map(tracing::field::display),
            received = l.received,
        );
    }
}

/// A logged value, or the mark of an absent one.
enum Shown {
    Text(String),
    Absent,
}

/// How an absent value is written in text lines.
const ABSENT: &str = "-";

/// How an absent value is recorded, for the JSON formatter to tell it from a real `-`.
const ABSENT_MARK: &str = "\u{1}absent";

impl std::fmt::Display for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shown::Text(s) => f.write_str(s),
            // Text formatters see `-`; `JsonLines` asks with `{:#}` and sees the mark.
            Shown::Absent if f.alternate() => f.write_str(ABSENT_MARK),
            Shown::Absent => f.write_str(ABSENT),
        }
    }
}

/// The JSON log format: one object per line with `timestamp`, `level`, `target` and `fields`,
/// as tracing-subscriber's, except that an absent access-line value is `null` rather than `-`.
pub struct JsonLines;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for JsonLines
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut fields = serde_json::Map::new();
        event.record(&mut JsonFields(&mut fields));
        let meta = event.metadata();
        let line = serde_json::json!({
            "timestamp": humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
            "level": meta.level().as_str(),
            "target": meta.target(),
            "fields": fields,
        });
        writeln!(writer, "{line}")
    }
}

struct JsonFields<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl tracing::field::Visit for JsonFields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:#?}");
        let v = if text == ABSENT_MARK {
            serde_json::Value::Null
        } else {
            serde_json::Value::String(format!("{value:?}"))
        };
        self.0.insert(field.name().to_owned(), v);
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }
}
