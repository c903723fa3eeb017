//! Faults: query parameters of a lab URL, parsed here, applied around `ServeFiles::respond` (request
//! header edits before it, response header edits and a body wrapper after it).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use bytes::BytesMut;
use http::StatusCode;
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// How long a cut body waits, after its last byte, before it fails (and hyper closes the
/// connection), so that the bytes before the cut leave first.
const CUT_GRACE: Duration = Duration::from_millis(50);

/// The longest `delay`, `ttfb` or `pause`: one hour.
const MAX_WAIT_MS: u64 = 3_600_000;

/// Where `cut` closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    Bytes(u64),
    Percent(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranges {
    /// `Accept-Ranges: bytes`, but every Range gets the whole body as a 200.
    Ignore,
    /// `Accept-Ranges: none`, Range ignored.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validators {
    /// No ETag, no Last-Modified.
    None,
    /// `W/` ETag and a Last-Modified equal to Date (so weak too): If-Range never matches.
    Weak,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fail {
    Status(StatusCode),
    /// Close the connection after half the body.
    Truncate,
}

/// Everything a lab URL's query asks for.
#[derive(Debug, Default, Clone)]
pub struct Params {
    pub seed: u64,
    pub key: Option<String>,
    pub cut: Option<Cut>,
    pub rate: Option<u64>,
    pub delay: Option<Duration>,
    pub ttfb: Option<Duration>,
    pub ranges: Option<Ranges>,
    pub validators: Option<Validators>,
    pub etag_rotate: bool,
    pub pause: Option<(u64, Duration)>,
    pub corrupt: Option<u64>,
    pub chunked: bool,
    pub fail: Option<Fail>,
    pub fail_times: Option<u64>,
    /// The fault parameters as given (`name=value`), in query order, for the log.
    pub given: Vec<(String, String)>,
}

/// The `name=value` pairs of `given` whose fault took effect, for `/requests`.
pub fn applied<'a>(
    given: &'a [(String, String)],
    took_effect: impl Fn(&str) -> bool + 'a,
) -> impl Iterator<Item = String> + 'a {
    given
        .iter()
        .filter(move |(n, _)| took_effect(n))
        .map(|(n, v)| format!("{n}={v}"))
}

fn bad(name: &str, value: &str, why: &str) -> String {
    format!("parameter `{name}`: {value:?} {why}")
}

fn number(name: &str, value: &str) -> Result<u64, String> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(name, value, "is not a non-negative integer"));
    }
    value
        .parse()
        .map_err(|_| bad(name, value, "is not a non-negative integer"))
}

fn millis(name: &str, value: &str) -> Result<Duration, String> {
    let ms = number(name, value)?;
    if ms > MAX_WAIT_MS {
        return Err(bad(name, value, "is more than 3600000 ms"));
    }
    Ok(Duration::from_millis(ms))
}

/// A query's parameters, percent-decoded, in order; a name given twice (`seed=1&seed=2`,
/// `ranges=ignore&ranges=none`: which one was meant?) is an error.
fn pairs(query: Option<&str>) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|s| !s.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_encoding::percent_decode_str(name)
            .decode_utf8_lossy()
            .into_owned();
        let value = percent_encoding::percent_decode_str(value)
            .decode_utf8_lossy()
            .into_owned();
        if out.iter().any(|(n, _)| *n == name) {
            return Err(format!("parameter `{name}`: given more than once"));
        }
        out.push((name, value));
    }
    Ok(out)
}

/// `key`: what ties requests together (counters, `/requests`).
fn key(name: &str, value: &str) -> Result<String, String> {
    if value.is_empty() || value.len() > 200 {
        return Err(bad(name, value, "must be 1 to 200 characters"));
    }
    Ok(value.to_owned())
}

/// A status `fail` may answer.
fn fail_status(value: &str) -> Option<StatusCode> {
    match value {
        "429" | "500" | "502" | "503" | "504" => {
            Some(StatusCode::from_bytes(value.as_bytes()).expect("valid status"))
        }
        _ => None,
    }
}

/// Parse a lab URL's query. Unknown parameters and bad values are errors naming the parameter.
pub fn parse(query: Option<&str>) -> Result<Params, String> {
    let mut p = Params::default();
    for (name, value) in pairs(query)? {
        let v = value.as_str();
        let n = name.as_str();
        match n {
            "seed" => p.seed = number(n, v)?,
            "key" => p.key = Some(key(n, v)?),
            "cut" => {
                p.cut = Some(match v.strip_suffix('%') {
                    Some(pct) => {
                        let pct = number(n, pct)?;
                        if pct > 100 {
                            return Err(bad(n, v, "is more than 100%"));
                        }
                        Cut::Percent(pct)
                    }
                    None => Cut::Bytes(number(n, v)?),
                })
            }
            "rate" => {
                let r = number(n, v)?;
                if r == 0 {
                    return Err(bad(n, v, "must be at least 1 byte per second"));
                }
                p.rate = Some(r);
            }
            "delay" => p.delay = Some(millis(n, v)?),
            "ttfb" => p.ttfb = Some(millis(n, v)?),
            "ranges" => {
                p.ranges = Some(match v {
                    "ignore" => Ranges::Ignore,
                    "none" => Ranges::None,
                    _ => return Err(bad(n, v, "is not ignore or none")),
                })
            }
            "validators" => {
                p.validators = Some(match v {
                    "none" => Validators::None,
                    "weak" => Validators::Weak,
                    _ => return Err(bad(n, v, "is not none or weak")),
                })
            }
            "etag" => match v {
                "rotate" => p.etag_rotate = true,
                _ => return Err(bad(n, v, "is not rotate")),
            },
            "pause" => {
                let (at, ms) = v
                    .split_once(':')
                    .ok_or_else(|| bad(n, v, "is not OFFSET:MS"))?;
                p.pause = Some((number(n, at)?, millis(n, ms)?));
            }
            "corrupt" => p.corrupt = Some(number(n, v)?),
            "encoding" => match v {
                "chunked" => p.chunked = true,
                _ => return Err(bad(n, v, "is not chunked")),
            },
            "fail" => {
                p.fail = Some(match (v, fail_status(v)) {
                    ("truncate", _) => Fail::Truncate,
                    (_, Some(status)) => Fail::Status(status),
                    _ => return Err(bad(n, v, "is not 429, 500, 502, 503, 504 or truncate")),
                })
            }
            "fail_times" => p.fail_times = Some(number(n, v)?),
            _ => return Err(format!("unknown parameter `{n}`")),
        }
        if !matches!(n, "seed" | "key") {
            p.given.push((name, value));
        }
    }
    if p.fail_times.is_some() && p.fail.is_none() {
        return Err("parameter `fail_times`: needs `fail`".to_string());
    }
    if p.etag_rotate && p.validators == Some(Validators::None) {
        return Err(
            "parameter `etag`: rotate contradicts `validators=none` (there is no ETag to rotate)"
                .to_string(),
        );
    }
    Ok(p)
}

/// Everything the query of a URL of the lab's upload endpoint asks for.
#[derive(Debug, Default, Clone)]
pub struct UploadParams {
    pub key: Option<String>,
    /// Close the connection after this many body bytes of a request.
    pub cut_after: Option<u64>,
    /// Answer appends (`PATCH`) with this status, storing nothing.
    pub fail: Option<StatusCode>,
    pub fail_times: Option<u64>,
    /// Stop reading a request's body for this long, once, after `stall_after` bytes.
    pub stall: Option<Duration>,
    pub stall_after: Option<u64>,
    /// Read a request's body at this many bytes per second.
    pub rate: Option<u64>,
    /// After an acknowledged append that left the upload unfinished, lose this many of its
    /// bytes.
    pub lose: Option<u64>,
    /// The fault parameters as given (`name=value`), in query order.
    pub given: Vec<(String, String)>,
}

/// Parse the query of a URL of the lab's upload endpoint, as [`parse`] does a download's.
pub fn parse_upload(query: Option<&str>) -> Result<UploadParams, String> {
    let mut p = UploadParams::default();
    for (name, value) in pairs(query)? {
        let (n, v) = (name.as_str(), value.as_str());
        match n {
            "key" => p.key = Some(key(n, v)?),
            "cut_after" => p.cut_after = Some(number(n, v)?),
            "fail" => {
                p.fail = Some(
                    fail_status(v).ok_or_else(|| bad(n, v, "is not 429, 500, 502, 503 or 504"))?,
                )
            }
            "fail_times" => p.fail_times = Some(number(n, v)?),
            "stall" => p.stall = Some(millis(n, v)?),
            "stall_after" => p.stall_after = Some(number(n, v)?),
            "rate" => {
                let r = number(n, v)?;
                if r == 0 {
                    return Err(bad(n, v, "must be at least 1 byte per second"));
                }
                p.rate = Some(r);
            }
            "lose" => p.lose = Some(number(n, v)?),
            _ => {
                return Err(format!(
                    "unknown parameter `{n}` (an upload URL takes key, cut_after, fail, \
                     fail_times, stall, stall_after, rate and lose)"
                ))
            }
        }
        if n != "key" {
            p.given.push((name, value));
        }
    }
    if p.fail_times.is_some() && p.fail.is_none() {
        return Err("parameter `fail_times`: needs `fail`".to_string());
    }
    if p.stall_after.is_some() && p.stall.is_none() {
        return Err("parameter `stall_after`: needs `stall`".to_string());
    }
    Ok(p)
}

/// What the body wrapper does, resolved for one response.
#[derive(Debug, Default)]
pub struct BodyFaults {
    /// Body bytes after which the body fails (the connection is closed).
    pub cut: Option<u64>,
    pub rate: Option<u64>,
    pub ttfb: Option<Duration>,
    /// (body offset, duration).
    pub pause: Option<(u64, Duration)>,
    /// Body offset of the byte to flip.
    pub corrupt: Option<u64>,
    /// Report no length, so that hyper sends the body chunked.
    pub chunked: bool,
}

impl BodyFaults {
    pub fn is_empty(&self) -> bool {
        self.cut.is_none()
            && self.rate.is_none()
            && self.ttfb.is_none()
            && self.pause.is_none()
            && self.corrupt.is_none()
            && !self.chunked
    }
}

/// A body with faults: waits, throttling, a flipped byte, an abort.
pub struct Faulty {
    inner: Body,
    f: BodyFaults,
    sent: u64,
    /// Bytes taken from `inner` but not handed out yet.
    leftover: Option<Bytes>,
    /// A chunk to hand out once `sleep` is over.
    hold: Option<Bytes>,
    sleep: Option<Pin<Box<Sleep>>>,
    rate_start: Option<Instant>,
    cutting: bool,
    failed: bool,
}

impl Faulty {
    pub fn new(inner: Body, f: BodyFaults) -> Faulty {
        Faulty {
            inner,
            f,
            sent: 0,
            leftover: None,
            hold: None,
            sleep: None,
            rate_start: None,
            cutting: false,
            failed: false,
        }
    }

    fn emit(&mut self, b: Bytes) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.sent += b.len() as u64;
        Poll::Ready(Some(Ok(Frame::data(b))))
    }
}

/// Throttled bodies go out in chunks of about a tenth of a second's worth.
pub(super) fn rate_chunk(rate: u64) -> u64 {
    (rate / 10).clamp(1, 16 * 1024)
}

impl http_body::Body for Faulty {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        loop {
            if let Some(s) = &mut this.sleep {
                std::task::ready!(s.as_mut().poll(cx));
                this.sleep = None;
            }
            if let Some(b) = this.hold.take() {
                return this.emit(b);
            }
            if this.failed {
                return Poll::Ready(None);
            }
            if let Some(d) = this.f.ttfb.take() {
                this.sleep = Some(Box::pin(tokio::time::sleep(d)));
                continue;
            }
            let mut data = match this.leftover.take() {
                Some(b) => b,
                None => match std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                    None => return Poll::Ready(None),
                    Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(b) => b,
                        Err(frame) => return Poll::Ready(Some(Ok(frame))),
                    },
                },
            };
            if data.is_empty() {
                continue;
            }
            let mut n = data.len() as u64;
            if let Some(cut) = this.f.cut {
                if this.sent >= cut {
                    if !this.cutting {
                        // hyper drops what it has not written yet when a body fails: give it
                        // a moment to flush the bytes before the cut first.
                        this.cutting = true;
                        this.leftover = Some(data);
                        this.sleep = Some(Box::pin(tokio::time::sleep(CUT_GRACE)));
                        continue;
                    }
                    this.failed = true;
                    tracing::info!("lab: cutting the connection after {cut} body bytes");
                    return Poll::Ready(Some(Err(axum::Error::new(io::Error::other(
                        "lab fault: connection cut",
                    )))));
                }
                n = n.min(cut - this.sent);
            }
            if let Some((at, d)) = this.f.pause {
                if at == this.sent {
                    this.f.pause = None;
                    this.leftover = Some(data);
                    this.sleep = Some(Box::pin(tokio::time::sleep(d)));
                    continue;
                }
                if at > this.sent {
                    n = n.min(at - this.sent);
                }
            }
            if let Some(rate) = this.f.rate {
                n = n.min(rate_chunk(rate));
            }
            if n < data.len() as u64 {
                this.leftover = Some(data.split_off(n as usize));
            }
            if let Some(c) = this.f.corrupt {
                if c >= this.sent && c < this.sent + n {
                    let mut copy = BytesMut::from(&data[..]);
                    copy[(c - this.sent) as usize] ^= 0xFF;
                    data = copy.freeze();
                }
            }
            if let Some(rate) = this.f.rate {
                // The chunk leaves when a link of `rate` bytes/s would have carried it all.
                let start = *this.rate_start.get_or_insert_with(Instant::now);
                let due = start + Duration::from_secs_f64((this.sent + n) as f64 / rate as f64);
                if due > Instant::now() {
                    this.hold = Some(data);
                    this.sleep = Some(Box::pin(tokio::time::sleep_until(due)));
                    continue;
                }
            }
            return this.emit(data);
        }
    }

    fn is_end_stream(&self) -> bool {
        self.leftover.is_none()
            && self.hold.is_none()
            && self.f.ttfb.is_none()
            && !self.failed
            && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.f.chunked {
            SizeHint::default()
        } else {
            self.inner.size_hint()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_names_bad_parameters() {
        let p = parse(Some("cut=50%25&rate=1000&seed=3&key=a&pause=10:20")).unwrap();
        assert_eq!(p.cut, Some(Cut::Percent(50)));
        assert_eq!(p.rate, Some(1000));
        assert_eq!(p.seed, 3);
        assert_eq!(p.pause, Some((10, Duration::from_millis(20))));
        assert_eq!(p.given.len(), 3);
        for (q, name) in [
            ("cut=x", "cut"),
            ("cut=101%", "cut"),
            ("rate=0", "rate"),
            ("delay=-1", "delay"),
            ("ranges=some", "ranges"),
            ("fail=404", "fail"),
            ("pause=10", "pause"),
            ("bogus=1", "bogus"),
            ("fail_times=2", "fail_times"),
        ] {
            let e = parse(Some(q)).unwrap_err();
            assert!(e.contains(&format!("`{name}`")), "{q}: {e}");
            assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn parses_upload_faults_and_names_bad_ones() {
        let p = parse_upload(Some(
            "key=k1&cut_after=100&fail=503&fail_times=2&stall=20&stall_after=5&rate=1000&lose=7",
        ))
        .unwrap();
        assert_eq!(p.key.as_deref(), Some("k1"));
        assert_eq!(p.cut_after, Some(100));
        assert_eq!(p.fail, Some(StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(p.fail_times, Some(2));
        assert_eq!(p.stall, Some(Duration::from_millis(20)));
        assert_eq!(p.stall_after, Some(5));
        assert_eq!(p.rate, Some(1000));
        assert_eq!(p.lose, Some(7));
        assert_eq!(p.given.len(), 7);
        assert!(parse_upload(None).unwrap().given.is_empty());
        for (q, name) in [
            ("cut_after=-1", "cut_after"),
            ("cut_after=1&cut_after=2", "cut_after"),
            ("fail=404", "fail"),
            ("fail=truncate", "fail"),
            ("fail_times=2", "fail_times"),
            ("stall=3600001", "stall"),
            ("stall_after=3", "stall_after"),
            ("rate=0", "rate"),
            ("lose=x", "lose"),
            ("cut=5", "cut"),
            ("key=", "key"),
        ] {
            let e = parse_upload(Some(q)).unwrap_err();
            assert!(e.contains(&format!("`{name}`")), "{q}: {e}");
            assert!(!e.contains('\n'));
        }
    }
}
