//! The engine's settings that do not depend on the storage, with their defaults.

use std::path::{Component, Path, PathBuf};
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
    pub upload_link: Option<Arc<UploadLink>>,
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
            upload_link: None,
        }
    }
}

/// At most this many ranges are honoured in one request by default; more get the whole file.
pub const DEFAULT_MAX_RANGES: usize = 100;
/// The `Cache-Control` sent with files by default: caches may store them but must revalidate.
pub const DEFAULT_CACHE_CONTROL: &str = "no-cache";

/// Where listings link to an upload page: the directory uploads are published into (under the
/// root) and the page's URL.
#[derive(Clone, Debug)]
pub(crate) struct UploadLink {
    pub dir: PathBuf,
    pub page: String,
}

impl UploadLink {
    /// The link in the listing of `name` (a directory under the root, as the storage found
    /// it), when it is `dir` or inside it: the page, with `?dir=` and its path relative to
    /// `dir` when it is deeper.
    pub fn for_dir(&self, name: &Path) -> Option<String> {
        let rel = name.strip_prefix(&self.dir).ok()?;
        let segments: Vec<&str> = rel
            .components()
            .filter_map(|c| match c {
                Component::Normal(s) => s.to_str(),
                _ => None,
            })
            .collect();
        if segments.is_empty() {
            return Some(self.page.clone());
        }
        let rel = segments.join("/");
        let query: String = form_urlencoded::byte_serialize(rel.as_bytes()).collect();
        Some(format!("{}?dir={query}", self.page))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_links_only_in_the_upload_directory_and_below() {
        let link = UploadLink {
            dir: PathBuf::from("in/coming"),
            page: "/_upload/".into(),
        };
        let at = |p: &str| link.for_dir(Path::new(p));
        assert_eq!(at("in/coming").as_deref(), Some("/_upload/"));
        assert_eq!(
            at("in/coming/a b/é&").as_deref(),
            Some("/_upload/?dir=a+b%2F%C3%A9%26")
        );
        assert_eq!(at("in"), None);
        assert_eq!(at(""), None);
        assert_eq!(at("in/comingx"), None);
        assert_eq!(at("other/in/coming"), None);
        let root = UploadLink {
            dir: PathBuf::new(),
            page: "/up/".into(),
        };
        assert_eq!(root.for_dir(Path::new("")).as_deref(), Some("/up/"));
        assert_eq!(
            root.for_dir(Path::new("x/y")).as_deref(),
            Some("/up/?dir=x%2Fy")
        );
    }
}
