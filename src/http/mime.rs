//! `Content-Type` from a file name's extension (`mime_guess`), with `charset=utf-8` for text.

use std::sync::RwLock;

use foldhash::{HashMap, HashMapExt};
use http::HeaderValue;

/// `Content-Type` for a path, from its extension; text types say they are UTF-8. Looked up once
/// per extension.
pub fn content_type_for(path: &std::path::Path) -> HeaderValue {
    static BY_EXTENSION: RwLock<Option<HashMap<String, HeaderValue>>> = RwLock::new(None);
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let ext = match ext.bytes().any(|b| b.is_ascii_uppercase()) {
        true => std::borrow::Cow::Owned(ext.to_ascii_lowercase()),
        false => std::borrow::Cow::Borrowed(ext),
    };
    if let Some(v) = BY_EXTENSION
        .read()
        .unwrap()
        .as_ref()
        .and_then(|m| m.get(ext.as_ref()))
    {
        return v.clone();
    }
    let v = guess(path);
    let mut map = BY_EXTENSION.write().unwrap();
    let map = map.get_or_insert_with(HashMap::new);
    // Bounded: extensions come from request paths, which anyone can invent.
    if map.len() < 4096 {
        map.insert(ext.into_owned(), v.clone());
    }
    v
}

fn guess(path: &std::path::Path) -> HeaderValue {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let essence = mime.essence_str();
    let texty = mime.type_() == mime_guess::mime::TEXT
        || matches!(
            essence,
            "application/javascript" | "application/json" | "application/xml" | "image/svg+xml"
        );
    let text = if texty && mime.get_param("charset").is_none() {
        format!("{essence}; charset=utf-8")
    } else {
        mime.to_string()
    };
    HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("application/octet-stream"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        let ct = |p: &str| content_type_for(std::path::Path::new(p));
        assert_eq!(ct("a.html"), "text/html; charset=utf-8");
        assert_eq!(ct("a.txt"), "text/plain; charset=utf-8");
        assert_eq!(ct("a.json"), "application/json; charset=utf-8");
        assert_eq!(ct("a.bin"), "application/octet-stream");
        assert_eq!(ct("noext"), "application/octet-stream");
        assert_eq!(ct("a.png"), "image/png");
        assert_eq!(ct("A.TXT"), "text/plain; charset=utf-8");
        assert_eq!(ct("b.txt"), "text/plain; charset=utf-8");
    }
}
