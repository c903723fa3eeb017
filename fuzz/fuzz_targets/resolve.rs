//! Path resolution (`rangeserve::fs::resolve::find`) over arbitrary request paths, against a
//! small fixed tree built once in a temporary directory: files, a directory with an index,
//! hidden files and directories, symlinks inside, symlinks leading out (to a file and to a
//! directory), a symlink to a hidden file, a symlink loop and a FIFO.
//!
//! Whatever the path, `find` either refuses it with a 4xx-class error or returns an open
//! regular file whose real path (read back from `/proc/self/fd/N`) is inside the root and has
//! no hidden component (strict policy), or only the containment (with hidden files shown). A
//! redirect is never protocol-relative and leads to a directory path. Each path is resolved
//! under four roots: with `openat2` and with the fallback that canonicalizes, for each policy.
#![no_main]

use std::os::fd::AsRawFd;
use std::os::unix::fs::symlink;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use percent_encoding::percent_decode_str;
use rangeserve::fs::resolve::{find, Found, Policy, ResolveError, Root};

struct Tree {
    roots: Vec<(Root, Policy)>,
}

/// The fixture's directory, removed when libFuzzer exits (statics are never dropped).
static DIR: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn remove_fixture() {
    if let Some(dir) = DIR.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

const INDEX: [&str; 3] = ["index.html", "link-out", "hidden-link"];

fn tree() -> &'static Tree {
    static TREE: OnceLock<Tree> = OnceLock::new();
    TREE.get_or_init(|| {
        let base = tempfile::tempdir().unwrap().keep().canonicalize().unwrap();
        DIR.set(base.clone()).unwrap();
        // SAFETY: registers a plain function with no arguments.
        unsafe { libc::atexit(remove_fixture) };
        let root = base.join("root");
        let w = |p: &str, s: &str| std::fs::write(root.join(p), s).unwrap();
        for d in ["sub", "sub/deeper", ".git", "docs", "sub/.cache"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::create_dir_all(base.join("outside-dir")).unwrap();
        std::fs::write(base.join("secret.txt"), "outside").unwrap();
        std::fs::write(base.join("outside-dir/index.html"), "outside index").unwrap();
        w("a.txt", "a");
        w("%2e%2e", "literal percent name");
        w("sp ace.txt", "space");
        w("ünï.txt", "unicode");
        w("sub/b.txt", "b");
        w("sub/deeper/c.txt", "c");
        w("docs/index.html", "docs index");
        w(".env", "hidden file");
        w(".git/config", "hidden dir file");
        w("sub/.cache/d", "hidden nested");
        symlink(base.join("secret.txt"), root.join("out")).unwrap();
        symlink(base.join("outside-dir"), root.join("out-dir")).unwrap();
        symlink("../secret.txt", root.join("rel-out")).unwrap();
        symlink(base.join("secret.txt"), root.join("sub/link-out")).unwrap();
        symlink(root.join("sub/b.txt"), root.join("in")).unwrap();
        symlink("sub", root.join("in-dir")).unwrap();
        symlink(root.join(".git/config"), root.join("to-hidden")).unwrap();
        symlink(root.join(".git"), root.join("to-hidden-dir")).unwrap();
        symlink(root.join(".env"), root.join("docs/hidden-link")).unwrap();
        symlink("loop-b", root.join("loop-a")).unwrap();
        symlink("loop-a", root.join("loop-b")).unwrap();
        let fifo = std::ffi::CString::new(root.join("fifo").into_os_string().into_encoded_bytes())
            .unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let strict = Policy {
            show_hidden: false,
            follow_symlinks: false,
        };
        let hidden_ok = Policy {
            show_hidden: true,
            follow_symlinks: false,
        };
        // One root per policy: the handle cache of a root assumes one policy, as the server does.
        let mut roots = Vec::new();
        for policy in [strict, hidden_ok] {
            roots.push((Root::open(&root).unwrap(), policy.clone()));
            roots.push((Root::open(&root).unwrap().without_openat2(), policy));
        }
        Tree { roots }
    })
}

#[derive(Arbitrary, Debug)]
enum Input {
    Raw(String),
    Tokens(Vec<Tok>, bool),
}

#[derive(Arbitrary, Debug)]
enum Tok {
    Known(u8),
    Text(String),
}

const TOKENS: [&str; 40] = [
    "a.txt",
    "sub",
    "deeper",
    "b.txt",
    "c.txt",
    "docs",
    "index.html",
    ".env",
    ".git",
    "config",
    ".cache",
    "d",
    "out",
    "out-dir",
    "rel-out",
    "link-out",
    "in",
    "in-dir",
    "to-hidden",
    "to-hidden-dir",
    "hidden-link",
    "loop-a",
    "fifo",
    "%2e%2e",
    "%252e%252e",
    "..",
    ".",
    "",
    "%2e",
    "%2E%2e",
    "%2f",
    "%5c",
    "%00",
    "sp%20ace.txt",
    "%C3%BCn%C3%AF.txt",
    "%ff",
    "..%2f",
    "secret.txt",
    "outside-dir",
    "missing",
];

fn path_of(input: Input) -> String {
    match input {
        Input::Raw(s) => s,
        Input::Tokens(toks, slash) => {
            let mut p = String::new();
            for t in toks {
                p.push('/');
                match t {
                    Tok::Known(i) => p.push_str(TOKENS[usize::from(i) % TOKENS.len()]),
                    Tok::Text(s) => p.push_str(&s),
                }
            }
            if slash || p.is_empty() {
                p.push('/');
            }
            p
        }
    }
}

fn hidden(rel: &Path) -> bool {
    rel.components().any(|c| match c {
        Component::Normal(n) => n.to_str().is_none_or(|s| s.starts_with('.')),
        _ => true,
    })
}

/// The segments as the resolver must read them: split on `/`, each decoded once.
fn decoded_segments(path: &str) -> Vec<Vec<u8>> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode_str(s).collect())
        .collect()
}

fn check(root: &Root, policy: &Policy, path: &str) {
    let index: Vec<String> = INDEX.iter().map(|s| s.to_string()).collect();
    let segs = decoded_segments(path);
    let bad_segment = segs
        .iter()
        .any(|s| s == b".." || s.iter().any(|&b| b == b'/' || b == b'\\' || b == 0));
    match find(root, path, &index, policy) {
        Ok(Found::File { file, meta, name }) => {
            assert!(path.starts_with('/'), "{path:?} served");
            assert!(
                !bad_segment,
                "{path:?} has a refused segment but was served"
            );
            assert!(meta.is_file(), "{path:?}: not a regular file");
            // Where the descriptor really leads.
            let real = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).unwrap();
            let inside = real
                .strip_prefix(root.path())
                .unwrap_or_else(|_| panic!("{path:?} -> {} is outside the root", real.display()));
            if !policy.show_hidden {
                assert!(!hidden(inside), "{path:?} -> hidden {}", real.display());
                assert!(!hidden(&name), "{path:?} named hidden {}", name.display());
            }
            assert!(
                name.components().all(|c| matches!(c, Component::Normal(_))),
                "{path:?} named {}",
                name.display()
            );
            // The name is the request's own segments (plus an index file for a directory).
            let asked: PathBuf = segs
                .iter()
                .filter(|s| s.as_slice() != b".")
                .map(|s| String::from_utf8(s.clone()).unwrap())
                .collect();
            let ok = name == asked
                || (path.ends_with('/')
                    && name.parent() == Some(asked.as_path())
                    && INDEX.iter().any(|i| name.file_name() == Some(i.as_ref())));
            assert!(ok, "{path:?} named {}", name.display());
            // The descriptor and the metadata are of the same file.
            let fd_meta = file.metadata().unwrap();
            use std::os::unix::fs::MetadataExt;
            assert_eq!((fd_meta.dev(), fd_meta.ino()), (meta.dev(), meta.ino()));
        }
        Ok(Found::AddSlash(to)) => {
            assert!(
                !bad_segment,
                "{path:?} has a refused segment but redirected"
            );
            assert!(
                to.starts_with('/') && to.ends_with('/'),
                "{path:?} -> {to:?}"
            );
            assert!(
                !to.starts_with("//"),
                "{path:?} -> protocol-relative {to:?}"
            );
            assert!(!to.contains('?') && !to.contains('#'), "{path:?} -> {to:?}");
            // The redirect target is a directory path: it never redirects again.
            match find(root, &to, &index, policy) {
                Ok(Found::File { .. }) | Err(ResolveError::NotFound) => {}
                other => panic!("{path:?} -> {to:?} -> {other:?}"),
            }
        }
        Err(ResolveError::BadPath(_)) => {}
        Err(ResolveError::NotFound) => {
            assert!(
                !bad_segment || !path.starts_with('/') || hides_first(&segs, policy),
                "{path:?}: a refused segment gave 404 instead of 400"
            );
        }
        // The fixture is readable everywhere: a 403 or a 500 here comes from the path alone,
        // and a hostile path must get a clear 4xx (400/404).
        Err(e @ (ResolveError::Forbidden | ResolveError::Io(_))) => {
            panic!("{path:?}: {e:?}")
        }
    }
}

/// Whether a hidden segment comes before the first refused one (the resolver stops there
/// with a 404, which is as good as a 400 for a hostile path).
fn hides_first(segs: &[Vec<u8>], policy: &Policy) -> bool {
    for s in segs {
        if s == b".." || s.iter().any(|&b| b == b'/' || b == b'\\' || b == 0) {
            return false;
        }
        if s.first() == Some(&b'.') && s != b"." && !policy.show_hidden {
            return true;
        }
        if std::str::from_utf8(s).is_err() {
            return false;
        }
    }
    false
}

fuzz_target!(|input: Input| {
    let path = path_of(input);
    for (root, policy) in &tree().roots {
        check(root, policy, &path);
    }
});
