//! `rangeserve healthcheck`: one plain HTTP/1.1 request to the running server, so that a
//! container image with nothing but the binary can still have a HEALTHCHECK.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The URL to ask when none is given: the listen address, with an unspecified IP (`0.0.0.0`,
/// `[::]`) replaced by loopback, over https when the server serves TLS.
pub fn default_url(listen: SocketAddr, tls: bool) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{}/", SocketAddr::new(ip, listen.port()))
}

/// What the check asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// `OPTIONS *`: the server itself, answered without touching a file or directory (RFC 9110
    /// §9.3.7), whatever the settings (listings, hashing) — the default.
    Server,
    /// `HEAD` of the URL's path.
    Path,
}

/// Ask `url` (`http://` or `https://`) once: Ok(status) when the server answered, Err(why)
/// when it did not ("timed out" when it did not within `timeout`).
pub fn check(url: &str, probe: Probe, timeout: Duration) -> Result<u16, String> {
    let (tls, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(rest), _) => (false, rest),
        (_, Some(rest)) => (true, rest),
        _ => {
            return Err(format!(
                "{url}: only http:// and https:// URLs are supported"
            ))
        }
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let default_port = if tls { 443 } else { 80 };
    let with_port = if authority.starts_with('[') && !authority.contains("]:")
        || !authority.starts_with('[') && !authority.contains(':')
    {
        format!("{authority}:{default_port}")
    } else {
        authority.to_string()
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("{authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority}: no address"))?;
    let timed = |what: &str, e: std::io::Error| match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
            format!("{what}: timed out after {} s", timeout.as_secs_f64())
        }
        _ => format!("{what}: {e}"),
    };
    let stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| timed(&format!("connect {addr}"), e))?;
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let target = match probe {
        Probe::Server => "OPTIONS *",
        Probe::Path => &format!("HEAD {path}"),
    };
    let request = format!(
        "{target} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: rangeserve-healthcheck\r\nConnection: close\r\n\r\n"
    );
    let mut io: Box<dyn ReadWrite> = if tls {
        let host = authority
            .rsplit_once(':')
            .filter(|(h, p)| !h.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .map_or(authority, |(h, _)| h)
            .trim_matches(['[', ']']);
        Box::new(tls_stream(host, stream)?)
    } else {
        Box::new(stream)
    };
    io.write_all(request.as_bytes())
        .map_err(|e| timed("send", e))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = io.read(&mut buf).map_err(|e| timed("read", e))?;
        if n == 0 || head.len() > 8192 {
            return Err("no status line".into());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let mut words = line.split_ascii_whitespace();
    match (
        words.next(),
        words.next().and_then(|c| c.parse::<u16>().ok()),
    ) {
        (Some(v), Some(code)) if v.starts_with("HTTP/") => Ok(code),
        _ => Err(format!(
            "not an HTTP status line: {:?}",
            line.lines().next().unwrap_or("")
        )),
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// A TLS client stream to our own server. The certificate is not verified: the check asks
/// whether the server answers, on an address the operator gave it (usually loopback in the
/// same container), not whom it is talking to; it sends nothing secret.
fn tls_stream(
    host: &str,
    tcp: TcpStream,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, String> {
    use std::sync::Arc;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| format!("tls: {host}: {e}"))?;
    let conn =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| format!("tls: {e}"))?;
    Ok(rustls::StreamOwned::new(conn, tcp))
}

#[derive(Debug)]
struct AnyCertificate(std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_url_uses_loopback_for_unspecified() {
        assert_eq!(
            default_url("0.0.0.0:8080".parse().unwrap(), false),
            "http://127.0.0.1:8080/"
        );
        assert_eq!(
            default_url("[::]:80".parse().unwrap(), true),
            "https://[::1]:80/"
        );
        assert_eq!(
            default_url("10.1.2.3:9".parse().unwrap(), false),
            "http://10.1.2.3:9/"
        );
    }

    #[test]
    fn bad_urls_are_errors() {
        assert!(check("ftp://x", Probe::Server, Duration::from_secs(1)).is_err());
        assert!(check("x", Probe::Server, Duration::from_secs(1)).is_err());
    }
}
