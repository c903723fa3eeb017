//! TLS (`[tls]`): the certificate chain and private key (PEM files) loaded once at start-up into
//! a rustls configuration that offers HTTP/2 and HTTP/1.1 by ALPN, and the handshake of one
//! accepted connection, bounded in time.
//!
//! Every problem with the files (missing, unreadable, not PEM, no certificate, no key, a key that
//! is not the certificate's) is found at start-up and reported as one line naming the key.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A problem with the certificate or key, as one line naming the key (`tls.cert ...`).
pub type TlsError = String;

/// How long a client may take to complete the TLS handshake after connecting: a client that
/// connects and says nothing is dropped after this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// ALPN protocols offered, in the server's order of preference (RFC 7301; RFC 9113 §3.2 names
/// HTTP/2 over TLS "h2").
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// A loaded certificate and key: what the server accepts TLS connections with.
#[derive(Clone)]
pub struct Tls {
    /// The certificate chain file it was loaded from (for messages).
    pub cert: PathBuf,
    /// The private key file it was loaded from (for messages).
    pub key: PathBuf,
    config: Arc<ServerConfig>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// The `[tls]` keys as given (`None` or empty: not given): both or neither.
    pub fn from_settings(
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> Result<Option<Tls>, TlsError> {
        let given = |p: Option<PathBuf>| p.filter(|p| !p.as_os_str().is_empty());
        match (given(cert), given(key)) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => Tls::load(&cert, &key).map(Some),
            (Some(_), None) => Err(
                "tls.key: missing (tls.cert is set; give both the certificate and the key, or neither)"
                    .into(),
            ),
            (None, Some(_)) => Err(
                "tls.cert: missing (tls.key is set; give both the certificate and the key, or neither)"
                    .into(),
            ),
        }
    }

    /// Read the PEM certificate chain (leaf first) and private key (PKCS#8, PKCS#1 or SEC1) and
    /// check that they belong together.
    pub fn load(cert: &Path, key: &Path) -> Result<Tls, TlsError> {
        let cert_err = |what: String| format!("tls.cert {}: {what}", cert.display());
        let key_err = |what: String| format!("tls.key {}: {what}", key.display());
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| cert_err(pem_problem(e, "certificate")))?;
        if chain.is_empty() {
            return Err(cert_err(
                "no certificate in it (expected PEM \"BEGIN CERTIFICATE\" sections)".into(),
            ));
        }
        let private = PrivateKeyDer::from_pem_file(key).map_err(|e| {
            key_err(pem_problem(
                e,
                "private key (PEM \"BEGIN PRIVATE KEY\", \"BEGIN RSA PRIVATE KEY\" or \"BEGIN EC PRIVATE KEY\")",
            ))
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("tls: {e}"))?
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .map_err(|e| match e {
                rustls::Error::InconsistentKeys(_) => key_err(format!(
                    "is not the key of the certificate in {}",
                    cert.display()
                )),
                e => format!(
                    "tls.cert {} / tls.key {}: {e}",
                    cert.display(),
                    key.display()
                ),
            })?;
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(Tls {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            config: Arc::new(config),
        })
    }

    /// The acceptor for the accept loop.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.clone())
    }
}

/// One line about a PEM file that could not be used.
fn pem_problem(e: pem::Error, wanted: &str) -> String {
    match e {
        pem::Error::Io(e) => e.to_string(),
        pem::Error::NoItemsFound => format!("no {wanted} in it"),
        e => format!("not a valid PEM file ({e})"),
    }
}

/// The TLS handshake on an accepted connection, at most [`HANDSHAKE_TIMEOUT`]. `None` when it
/// failed or took too long (logged at debug: scanners and impatient clients are routine).
pub async fn handshake<IO>(acceptor: &TlsAcceptor, io: IO) -> Option<TlsStream<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::debug!("TLS handshake failed: {e}");
            None
        }
        Err(_) => {
            tracing::debug!(
                "TLS handshake not done after {HANDSHAKE_TIMEOUT:?}: connection closed"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn both_or_neither() {
        assert!(Tls::from_settings(None, None).unwrap().is_none());
        // Empty counts as not given (an environment variable set to "" turns TLS off).
        assert!(Tls::from_settings(Some("".into()), Some("".into()))
            .unwrap()
            .is_none());
        let e = Tls::from_settings(Some("c.pem".into()), None).unwrap_err();
        assert!(e.starts_with("tls.key: missing"), "{e}");
        let e = Tls::from_settings(None, Some("k.pem".into())).unwrap_err();
        assert!(e.starts_with("tls.cert: missing"), "{e}");
    }

    #[test]
    fn unusable_files_are_one_line_naming_the_key_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let garbage = write(d, "garbage.pem", "hello\n");
        let broken = write(
            d,
            "broken.pem",
            "-----BEGIN CERTIFICATE-----\nMIIB\n", // no END line
        );
        let not_der = write(
            d,
            "notder.pem",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        );
        let key_only = write(
            d,
            "key.pem",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        );
        let missing = d.join("missing.pem");
        let cases = [
            (&missing, &key_only, "tls.cert", "No such file"),
            (&garbage, &key_only, "tls.cert", "no certificate"),
            (&broken, &key_only, "tls.cert", "not a valid PEM"),
            (&key_only, &key_only, "tls.cert", "no certificate"),
            (&not_der, &missing, "tls.key", "No such file"),
            (&not_der, &garbage, "tls.key", "no private key"),
            // A certificate section that is not a certificate, with a key section that is not
            // a key: rustls refuses them together.
            (&not_der, &key_only, "tls.", ""),
        ];
        for (cert, key, named, says) in cases {
            let e = Tls::load(cert, key).unwrap_err();
            assert!(e.starts_with(named), "{cert:?} {key:?}: {e}");
            assert!(e.contains(says), "{cert:?} {key:?}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
