//! The plain-HTTP listener of `[tls] redirect_listen`: every request, whatever its method, is
//! answered 308 Permanent Redirect to the same path and query over https on the TLS listener.
//!
//! 308 rather than 301: a client must repeat the request with the same method (RFC 9110
//! §15.4.9). The host comes from the request (the target's authority, else the Host header)
//! without its port; a request whose host is missing or not a plain host name or address gets
//! 400, so the redirect can never point somewhere the request did not name.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http::uri::Authority;
use http::{header, HeaderMap, HeaderValue, StatusCode, Uri};

/// The redirecting application; `https_port` is the TLS listener's port.
pub fn router(https_port: u16) -> Router {
    Router::new().fallback(redirect).with_state(https_port)
}

async fn redirect(State(https_port): State<u16>, req: Request) -> Response {
    match location(req.uri(), req.headers(), https_port) {
        Ok(loc) => match HeaderValue::try_from(loc) {
            Ok(v) => (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, v)]).into_response(),
            Err(_) => bad_request("the redirect target is not a valid header value"),
        },
        Err(why) => bad_request(why),
    }
}

fn bad_request(why: &'static str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from(format!("400 Bad Request: {why}\n")),
    )
        .into_response()
}

/// `https://<host>[:port]<path-and-query>` for this request, or why there is none.
pub fn location(uri: &Uri, headers: &HeaderMap, https_port: u16) -> Result<String, &'static str> {
    // An absolute-form target (and HTTP/2's :authority) names the host; the Host header is only
    // consulted without one (RFC 9112 §3.2.2). More than one Host is a 400 (RFC 9112 §3.2).
    let authority = match uri.authority() {
        Some(a) => a.clone(),
        None => {
            let mut hosts = headers.get_all(header::HOST).iter();
            let host = hosts.next().ok_or("no Host header")?;
            if hosts.next().is_some() {
                return Err("more than one Host header");
            }
            Authority::try_from(host.as_bytes()).map_err(|_| "the Host header is not a host")?
        }
    };
    let host = plain_host(&authority).ok_or("the Host header is not a host name or address")?;
    let path = match uri.path_and_query().map(|pq| pq.as_str()) {
        Some(pq) if pq.starts_with('/') => pq,
        // `OPTIONS *` and authority-form targets have no path to send anyone to.
        _ => return Err("the request target is not a path"),
    };
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    Ok(format!("https://{host}{port}{path}"))
}

/// The host of `uri-host [ ":" port ]` (RFC 9110 §7.2), lowercased, when it is a registered
/// name of letters, digits, `-`, `.` and `_`, an IPv4 address, or a bracketed IPv6 address: no
/// user info, no percent-encoding, nothing that could change where the Location points.
fn plain_host(authority: &Authority) -> Option<String> {
    let text = authority.as_str();
    if text.contains('@') || text.len() > 255 {
        return None;
    }
    let host = authority.host();
    // After the host, nothing or a port of digits (`host:` with nothing after is tolerated by
    // RFC 3986, but not sent by real clients: refuse it too).
    match text.strip_prefix(host)? {
        "" => {}
        rest => {
            let port = rest.strip_prefix(':')?;
            if !port.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            port.parse::<u16>().ok()?;
        }
    }
    let ok = if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']')?;
        inner.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    };
    ok.then(|| host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(target: &str, hosts: &[&[u8]], port: u16) -> Result<String, &'static str> {
        let uri: Uri = target.parse().unwrap();
        let mut h = HeaderMap::new();
        for v in hosts {
            h.append(header::HOST, HeaderValue::from_bytes(v).unwrap());
        }
        location(&uri, &h, port)
    }

    #[test]
    fn host_without_its_port_and_the_tls_port_unless_443() {
        assert_eq!(
            loc("/a/b%20c?x=1&y", &[b"Example.TEST:8080"], 8443).unwrap(),
            "https://example.test:8443/a/b%20c?x=1&y"
        );
        assert_eq!(
            loc("/", &[b"example.test"], 443).unwrap(),
            "https://example.test/"
        );
        assert_eq!(
            loc("/f", &[b"127.0.0.1:80"], 443).unwrap(),
            "https://127.0.0.1/f"
        );
        assert_eq!(
            loc("/f", &[b"[::1]:8080"], 4433).unwrap(),
            "https://[::1]:4433/f"
        );
    }

    #[test]
    fn the_target_authority_wins_over_host() {
        assert_eq!(
            loc("http://a.example:81/p?q", &[b"b.example"], 443).unwrap(),
            "https://a.example/p?q"
        );
        // No Host at all is fine when the target names the host (HTTP/2's :authority).
        assert_eq!(
            loc("http://a.example/p", &[], 8443).unwrap(),
            "https://a.example:8443/p"
        );
    }

    #[test]
    fn missing_repeated_or_garbage_host_is_refused() {
        let bad: &[&[&[u8]]] = &[
            &[],
            &[b"a.example", b"b.example"],
            &[b""],
            &[b"a b"],
            &[b"user@a.example"],
            &[b"a.example:port"],
            &[b"a.example:99999"],
            &[b"a.example:"],
            &[b"a.example:+80"],
            &[b"a%2eexample"],
            &[b"[::1"],
            &[b"[nothost]"],
            &[b"a.example/evil"],
            &[b"a.example\\evil"],
            &[b"\xff"],
        ];
        for hosts in bad {
            assert!(loc("/x", hosts, 443).is_err(), "{hosts:?}");
        }
        let long = vec![b'a'; 300];
        assert!(loc("/x", &[&long], 443).is_err());
    }

    #[test]
    fn a_target_that_is_not_a_path_is_refused() {
        assert!(loc("*", &[b"a.example"], 443).is_err());
        assert!(loc("a.example:443", &[b"a.example"], 443).is_err());
    }
}
