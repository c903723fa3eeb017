//! HTTP-dates (RFC 9110 §5.6.7) for `Date` and `Last-Modified`, formatted once per second per
//! thread rather than once per response.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderValue;

use crate::http::preconditions::unix_secs;

type DateCache = std::cell::RefCell<(u64, HeaderValue)>;

thread_local! {
    /// The last `Date` formatted on this thread (it changes once a second).
    static DATE: DateCache = const { DateCache::new((u64::MAX, HeaderValue::from_static(""))) };
    /// The last `Last-Modified` (repeated requests for one file format the same one).
    static LAST_MODIFIED: DateCache =
        const { DateCache::new((u64::MAX, HeaderValue::from_static(""))) };
}

/// `secs` since the epoch as an HTTP-date, formatted only when it differs from the last one
/// formatted through `cache` on this thread.
fn http_date(cache: &'static std::thread::LocalKey<DateCache>, secs: u64) -> HeaderValue {
    cache.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != secs {
            let t = UNIX_EPOCH + Duration::from_secs(secs);
            let text = httpdate::fmt_http_date(t);
            let v = HeaderValue::from_str(&text).expect("an HTTP-date is visible ASCII");
            *last = (secs, v);
        }
        last.1.clone()
    })
}

/// `Date` for `secs` since the epoch.
pub fn date(secs: u64) -> HeaderValue {
    http_date(&DATE, secs)
}

/// `Last-Modified` for `secs` since the epoch.
pub fn last_modified(secs: u64) -> HeaderValue {
    http_date(&LAST_MODIFIED, secs)
}

/// The current time as a `Date` value (for responses that did not set one).
pub fn date_now() -> HeaderValue {
    date(unix_secs(SystemTime::now()))
}
