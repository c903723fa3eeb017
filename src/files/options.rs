//! The engine's settings that do not depend on the storage, with their defaults.

use std::sync::Arc;

use http::HeaderValue;

use crate::http::header_rules::HeaderRules;

/// The engine's settings that do not depend on the storage.
#[derive(Clone)]
pub(crate) struct Options {
    pub max_ranges: usize,
    pub listing: bool,
    pub precompressed: bool,
    pub cache_control: Option<HeaderValue>,
    pub repr_digest: bool,
    pub sendfile: bool,
    pub header_rules: Arc<HeaderRules>,
    pub download: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            max_ranges: DEFAULT_MAX_RANGES,
            listing: false,
            precompressed: false,
            cache_control: Some(HeaderValue::from_static(DEFAULT_CACHE_CONTROL)),
            repr_digest: true,
            sendfile: true,
            header_rules: Arc::default(),
            download: true,
        }
    }
}

/// At most this many ranges are honoured in one request by default; more get the whole file.
pub const DEFAULT_MAX_RANGES: usize = 100;
/// The `Cache-Control` sent with files by default: caches may store them but must revalidate.
pub const DEFAULT_CACHE_CONTROL: &str = "no-cache";
