//! Who may upload: `Authorization: Bearer TOKEN` with one of the configured tokens (RFC 6750),
//! or anyone when `allow_anonymous` is set. The token is hashed (SHA-256) and the hash compared
//! with each configured token's hash in constant time (`subtle`), all of them every time: how
//! long a refusal takes says nothing about how close a guess was, nor which token matched.
//! (tower-http's `ValidateRequestHeaderLayer::bearer` compares the header with `==`, which
//! returns at the first differing byte: not used for that reason.) The hash is also the
//! upload's owner; the token itself is neither kept nor logged.

use axum::response::Response;
use http::header::{self, HeaderMap, HeaderValue};
use http::StatusCode;
use sha2::{Digest as _, Sha256};
use subtle::{Choice, ConstantTimeEq as _};

use crate::config::UploadConfig;
use crate::fs::upload::Owner;
use crate::http::response::plain_text;
use crate::http::upload::bearer;

/// The owner of an anonymous upload.
const ANONYMOUS: Owner = [0; 32];

/// Why a request may not upload (each is a 401: [`Refused::response`]).
#[derive(Debug, Clone, Copy)]
pub enum Refused {
    /// No credentials.
    Missing,
    /// An `Authorization` that is not one bearer token.
    Malformed,
    /// A token that is not configured.
    Unknown,
}

impl Refused {
    /// The 401, with the challenge of RFC 6750 §3 (and its error code when a token was sent).
    pub fn response(self) -> Response {
        unauthorized(match self {
            Refused::Missing => None,
            Refused::Malformed => Some("invalid_request"),
            Refused::Unknown => Some("invalid_token"),
        })
    }
}

/// The requester's identity (its token's SHA-256), or why it may not upload.
pub fn check(headers: &HeaderMap, config: &UploadConfig) -> Result<Owner, Refused> {
    let token = match bearer(headers) {
        Ok(Some(t)) => t,
        Ok(None) if config.allow_anonymous => return Ok(ANONYMOUS),
        Ok(None) => return Err(Refused::Missing),
        Err(_) => return Err(Refused::Malformed),
    };
    let digest: Owner = Sha256::digest(token).into();
    let mut known = Choice::from(0);
    for t in &config.tokens.0 {
        known |= t.ct_eq(&digest);
    }
    if bool::from(known) {
        Ok(digest)
    } else {
        Err(Refused::Unknown)
    }
}

fn unauthorized(error: Option<&'static str>) -> Response {
    let mut r = plain_text(
        StatusCode::UNAUTHORIZED,
        "401 Unauthorized: uploads need Authorization: Bearer <token>\n",
    );
    let challenge = match error {
        None => HeaderValue::from_static("Bearer realm=\"rangeserve uploads\""),
        Some("invalid_request") => HeaderValue::from_static(
            "Bearer realm=\"rangeserve uploads\", error=\"invalid_request\"",
        ),
        Some(_) => {
            HeaderValue::from_static("Bearer realm=\"rangeserve uploads\", error=\"invalid_token\"")
        }
    };
    r.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
    r
}
