//! Safe path resolution: a request path becomes a file or directory under the root, or an error.
//!
//! The path is split on `/` first and each segment percent-decoded once, so `%2F` can never
//! become a separator and `%252e%252e` stays the literal name `%2e%2e`. Segments that decode to
//! `..`, or contain a backslash, a slash or NUL, or are not UTF-8, are refused with 400. The
//! joined path is then canonicalized and must stay inside the (canonical) root unless
//! `follow_symlinks`; names starting with a dot are hidden unless `show_hidden`.

use std::io;
use std::path::{Component, Path, PathBuf};

use percent_encoding::percent_decode;

/// What the resolver may serve.
#[derive(Debug, Clone)]
pub struct Policy {
    pub show_hidden: bool,
    pub follow_symlinks: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A regular file: its canonical path.
    File(PathBuf),
    /// A directory asked for with a trailing slash: its canonical path.
    Directory(PathBuf),
    /// A directory asked for without the trailing slash: redirect to this path (still
    /// percent-encoded as received, empty segments dropped, ending in `/`).
    AddSlash(String),
}

#[derive(Debug)]
pub enum ResolveError {
    /// 400: the path is not one we accept (and it never reached the file system).
    BadPath(&'static str),
    /// 404: absent, hidden, a symlink out of the root, or not a regular file or directory.
    NotFound,
    /// 403: the file system refused us.
    Forbidden,
    /// 500: anything else, with the error for the log.
    Io(io::Error),
}

impl From<io::Error> for ResolveError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::PermissionDenied => ResolveError::Forbidden,
            io::ErrorKind::NotFound
            | io::ErrorKind::NotADirectory
            | io::ErrorKind::InvalidFilename => ResolveError::NotFound,
            // ELOOP (a symlink cycle) is not found from the client's side.
            _ if e.raw_os_error() == Some(libc::ELOOP) => ResolveError::NotFound,
            _ => ResolveError::Io(e),
        }
    }
}

/// Resolve `raw_path` (the request path as received, percent-encoded) under `root`, which must
/// be canonical.
pub fn resolve(root: &Path, raw_path: &str, policy: &Policy) -> Result<Target, ResolveError> {
    let rest = raw_path
        .strip_prefix('/')
        .ok_or(ResolveError::BadPath("path must start with /"))?;
    let mut path = root.to_path_buf();
    let mut raw_segments = Vec::new();
    for raw in rest.split('/') {
        if raw.is_empty() {
            continue;
        }
        let decoded: Vec<u8> = percent_decode(raw.as_bytes()).collect();
        if decoded.iter().any(|&b| b == b'/' || b == b'\\' || b == 0) {
            return Err(ResolveError::BadPath(
                "slash, backslash or NUL in a path segment",
            ));
        }
        let name =
            String::from_utf8(decoded).map_err(|_| ResolveError::BadPath("path is not UTF-8"))?;
        match name.as_str() {
            "." => continue,
            ".." => return Err(ResolveError::BadPath("`..` in path")),
            n if n.starts_with('.') && !policy.show_hidden => return Err(ResolveError::NotFound),
            n => path.push(n),
        }
        raw_segments.push(raw);
    }
    let (real, is_dir) = check(root, &path, policy)?;
    if !is_dir {
        return Ok(Target::File(real));
    }
    if raw_path.ends_with('/') {
        Ok(Target::Directory(real))
    } else {
        // Built from the kept segments, so `//evil.example` can never become a
        // protocol-relative Location.
        let mut to = String::from("/");
        for s in raw_segments {
            to.push_str(s);
            to.push('/');
        }
        Ok(Target::AddSlash(to))
    }
}

/// The first index file of a directory that exists and passes the same checks.
pub fn find_index(
    root: &Path,
    dir: &Path,
    names: &[String],
    policy: &Policy,
) -> Result<Option<PathBuf>, ResolveError> {
    for name in names {
        match check(root, &dir.join(name), policy) {
            Ok((real, false)) => return Ok(Some(real)),
            Ok((_, true)) | Err(ResolveError::NotFound) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// Canonicalize, enforce containment and the hidden rule on the real path, and say whether it
/// is a directory. Anything but a regular file or a directory is not found.
fn check(root: &Path, path: &Path, policy: &Policy) -> Result<(PathBuf, bool), ResolveError> {
    let real = path.canonicalize()?;
    match real.strip_prefix(root) {
        Ok(inside) => {
            // A symlink inside the root may still point at a dotfile.
            let hidden = inside.components().any(|c| match c {
                Component::Normal(n) => n.to_str().is_none_or(|s| s.starts_with('.')),
                _ => false,
            });
            if hidden && !policy.show_hidden {
                return Err(ResolveError::NotFound);
            }
        }
        Err(_) if policy.follow_symlinks => {}
        Err(_) => return Err(ResolveError::NotFound),
    }
    let meta = std::fs::metadata(&real)?;
    if meta.is_dir() {
        Ok((real, true))
    } else if meta.is_file() {
        Ok((real, false))
    } else {
        Err(ResolveError::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    const STRICT: Policy = Policy {
        show_hidden: false,
        follow_symlinks: false,
    };

    struct Fixture {
        _dir: tempfile::TempDir,
        root: PathBuf,
        outside: PathBuf,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        let root = base.join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::write(root.join("a.txt"), "a").unwrap();
        std::fs::write(root.join("%2e%2e"), "literal").unwrap();
        std::fs::write(root.join("sub/b.txt"), "b").unwrap();
        std::fs::write(root.join(".git/config"), "secret").unwrap();
        let outside = base.join("secret.txt");
        std::fs::write(&outside, "outside").unwrap();
        symlink(&outside, root.join("out")).unwrap();
        symlink(root.join("sub/b.txt"), root.join("in")).unwrap();
        symlink(root.join(".git/config"), root.join("to-hidden")).unwrap();
        Fixture {
            _dir: dir,
            root,
            outside,
        }
    }

    #[test]
    fn files_dirs_and_redirects() {
        let f = fixture();
        let r = |p| resolve(&f.root, p, &STRICT);
        assert_eq!(r("/a.txt").unwrap(), Target::File(f.root.join("a.txt")));
        assert_eq!(
            r("/sub//b.txt").unwrap(),
            Target::File(f.root.join("sub/b.txt"))
        );
        assert_eq!(r("/./a.txt").unwrap(), Target::File(f.root.join("a.txt")));
        assert_eq!(r("/sub/").unwrap(), Target::Directory(f.root.join("sub")));
        assert_eq!(r("//sub").unwrap(), Target::AddSlash("/sub/".into()));
        assert_eq!(r("/").unwrap(), Target::Directory(f.root.clone()));
        assert_eq!(
            r("/%73ub/b.txt").unwrap(),
            Target::File(f.root.join("sub/b.txt"))
        );
    }

    #[test]
    fn traversal_is_refused() {
        let f = fixture();
        for p in [
            "/../secret.txt",
            "/sub/../../secret.txt",
            "/%2e%2e/secret.txt",
            "/%2E%2E/secret.txt",
            "/..%2fsecret.txt",
            "/..%5csecret.txt",
            "/..\\secret.txt",
            "/a.txt%00",
            "/%ff",
            "relative",
        ] {
            assert!(
                matches!(resolve(&f.root, p, &STRICT), Err(ResolveError::BadPath(_))),
                "{p}"
            );
        }
        // Double encoding decodes once: a literal name, not a traversal.
        assert_eq!(
            resolve(&f.root, "/%252e%252e", &STRICT).unwrap(),
            Target::File(f.root.join("%2e%2e"))
        );
        assert!(matches!(
            resolve(&f.root, "/%252e%252e/secret.txt", &STRICT),
            Err(ResolveError::NotFound)
        ));
    }

    #[test]
    fn symlinks_and_hidden() {
        let f = fixture();
        let nf = |p, pol: &Policy| matches!(resolve(&f.root, p, pol), Err(ResolveError::NotFound));
        assert!(nf("/out", &STRICT));
        assert!(nf("/.git/config", &STRICT));
        assert!(nf("/to-hidden", &STRICT));
        assert!(nf("/missing", &STRICT));
        assert!(nf("/a.txt/x", &STRICT));
        assert_eq!(
            resolve(&f.root, "/in", &STRICT).unwrap(),
            Target::File(f.root.join("sub/b.txt"))
        );
        let open = Policy {
            show_hidden: true,
            follow_symlinks: true,
        };
        assert_eq!(
            resolve(&f.root, "/out", &open).unwrap(),
            Target::File(f.outside.clone())
        );
        assert_eq!(
            resolve(&f.root, "/.git/config", &open).unwrap(),
            Target::File(f.root.join(".git/config"))
        );
    }

    #[test]
    fn index_lookup() {
        let f = fixture();
        let names = vec!["index.htm".to_string(), "b.txt".to_string()];
        let sub = f.root.join("sub");
        assert_eq!(
            find_index(&f.root, &sub, &names, &STRICT).unwrap(),
            Some(sub.join("b.txt"))
        );
        assert_eq!(find_index(&f.root, &f.root, &names, &STRICT).unwrap(), None);
    }

    #[test]
    fn permission_denied_maps_to_403() {
        let e: ResolveError = io::Error::from(io::ErrorKind::PermissionDenied).into();
        assert!(matches!(e, ResolveError::Forbidden));
    }
}
