//! TLS material made at test time: a fresh self-signed certificate for `localhost` and
//! `127.0.0.1` (rcgen), written as PEM files for the server and for clients' `--cacert`.

use std::path::{Path, PathBuf};

pub struct CertFiles {
    /// The certificate (PEM); also the only trust anchor clients are given.
    pub cert: PathBuf,
    /// Its private key (PKCS#8 PEM).
    pub key: PathBuf,
    /// The certificate in DER, for in-process rustls clients.
    pub cert_der: Vec<u8>,
}

/// A new self-signed certificate and key in `dir` (as `cert.pem` and `key.pem`).
pub fn self_signed(dir: &Path) -> CertFiles {
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    CertFiles {
        cert,
        key,
        cert_der: made.cert.der().to_vec(),
    }
}
