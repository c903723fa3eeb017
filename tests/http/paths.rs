//! Path safety, black-box: nothing next to the root is ever served, whatever the request path
//! looks like; symlinks and dotfiles follow the configured policy.

use crate::common::*;

use std::os::unix::fs::symlink;
use std::path::PathBuf;

const SENTINEL: &[u8] = b"TOP-SECRET-SENTINEL 7f3a9c\n";

/// Put the sentinel next to the root (`<dir>/secret.txt`) and return its path.
fn place_sentinel(s: &Server) -> PathBuf {
    let p = s.dir.path().join("secret.txt");
    std::fs::write(&p, SENTINEL).unwrap();
    p
}

/// Send `request_target` verbatim in a request line and check the answer is 400 or 404 and
/// never carries the sentinel.
fn assert_refused(s: &Server, request_target: &[u8]) -> u16 {
    let mut req = b"GET ".to_vec();
    req.extend_from_slice(request_target);
    req.extend_from_slice(b" HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    let raw = s.raw(&req);
    let shown = String::from_utf8_lossy(request_target).into_owned();
    assert!(
        find(&raw, b"TOP-SECRET-SENTINEL").is_none(),
        "{shown}: sentinel leaked: {:?}",
        String::from_utf8_lossy(&raw)
    );
    let r = Response::parse(&raw, false);
    assert!(
        r.status == 400 || r.status == 404,
        "{shown}: status {} (expected 400 or 404)",
        r.status
    );
    r.status
}

#[test]
fn traversal_never_reaches_a_file_next_to_the_root() {
    let s = Server::start();
    place_sentinel(&s);
    s.file("sub/x.txt", b"inside");
    s.file("a.txt", b"a");
    let targets: &[&[u8]] = &[
        b"/../secret.txt",
        b"/sub/../../secret.txt",
        b"/%2e%2e/secret.txt",
        b"/%2E%2E/secret.txt",
        b"/.%2e/secret.txt",
        b"/sub/%2e%2e/%2e%2e/secret.txt",
        b"/..%2fsecret.txt",
        b"/..%2Fsecret.txt",
        b"/sub%2f..%2f..%2fsecret.txt",
        b"/%252e%252e/secret.txt",
        b"/..\\secret.txt",
        b"/..%5csecret.txt",
        b"/..%5Csecret.txt",
        b"/a%00.txt",
        b"/a.txt%00",
        b"/%ff",
        b"/%c0%ae%c0%ae/secret.txt",
        b"http://x/../secret.txt",
        b"http://x/%2e%2e/secret.txt",
    ];
    for t in targets {
        assert_refused(&s, t);
    }
    // Sanity: the same server does serve a file inside the root, so the refusals above are not
    // a server that refuses everything.
    let r = s.get("/sub/x.txt", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"inside");
}

#[test]
fn encoded_dot_dot_and_separators_are_rejected_as_bad_requests() {
    // These never name a real file, whatever the file system holds: the resolver must refuse
    // them outright (400), not look them up.
    let s = Server::start();
    place_sentinel(&s);
    for t in [
        &b"/../secret.txt"[..],
        b"/%2e%2e/secret.txt",
        b"/..%2fsecret.txt",
        b"/..%5csecret.txt",
        b"/a%00.txt",
        b"/%ff",
    ] {
        assert_eq!(assert_refused(&s, t), 400, "{}", String::from_utf8_lossy(t));
    }
}

#[test]
fn double_encoding_is_a_literal_name_not_a_traversal() {
    let s = Server::start();
    place_sentinel(&s);
    // `%252e%252e` decodes once to the literal name `%2e%2e`.
    s.file("%2e%2e/secret.txt", b"literal directory");
    let r = s.get("/%252e%252e/secret.txt", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"literal directory");
}

#[test]
fn symlink_out_of_the_root_is_not_followed_by_default() {
    let s = Server::start();
    let secret = place_sentinel(&s);
    symlink(&secret, s.root.join("link")).unwrap();
    symlink("../secret.txt", s.root.join("rel-link")).unwrap();
    for p in ["/link", "/rel-link"] {
        let r = s.get(p, &[]);
        assert_eq!(r.status, 404, "{p}");
        assert!(find(&r.body, SENTINEL).is_none(), "{p}");
        let r = s.request("HEAD", p, &[]);
        assert_eq!(r.status, 404, "HEAD {p}");
    }
}

#[test]
fn symlink_out_of_the_root_is_followed_when_configured() {
    let s = Server::start_with(|c| c.follow_symlinks = true);
    let secret = place_sentinel(&s);
    symlink(&secret, s.root.join("link")).unwrap();
    symlink("../secret.txt", s.root.join("rel-link")).unwrap();
    for p in ["/link", "/rel-link"] {
        let r = s.get(p, &[]);
        assert_eq!(r.status, 200, "{p}");
        assert_eq!(r.body, SENTINEL, "{p}");
    }
    // Following symlinks does not open up `..`.
    assert_refused(&s, b"/../secret.txt");
    assert_refused(&s, b"/%2e%2e/secret.txt");
}

#[test]
fn symlink_inside_the_root_is_served() {
    let s = Server::start();
    let data = pattern(777);
    s.file("dir/target.bin", &data);
    symlink(s.root.join("dir/target.bin"), s.root.join("abs-link")).unwrap();
    symlink("dir/target.bin", s.root.join("rel-link")).unwrap();
    symlink("dir", s.root.join("dir-link")).unwrap();
    for p in ["/abs-link", "/rel-link", "/dir-link/target.bin"] {
        let r = s.get(p, &[]);
        assert_eq!(r.status, 200, "{p}");
        assert_eq!(r.body, data, "{p}");
    }
}

#[test]
fn dotfiles_are_hidden_by_default() {
    let s = Server::start();
    s.file(".env", b"DB_PASSWORD=hunter2\n");
    s.file(".git/config", b"[core]\n\trepositoryformatversion = 0\n");
    s.file("sub/.htpasswd", b"admin:x\n");
    s.file("plain.txt", b"plain");
    symlink(".git/config", s.root.join("visible")).unwrap();
    for p in [
        "/.env",
        "/.git/config",
        "/.git/",
        "/.git",
        "/%2eenv",
        "/sub/.htpasswd",
        "/visible",
    ] {
        let r = s.get(p, &[]);
        assert_eq!(r.status, 404, "{p}");
        assert!(find(&r.body, b"hunter2").is_none(), "{p}");
        assert!(find(&r.body, b"repositoryformatversion").is_none(), "{p}");
        assert!(r.header("location").is_none(), "{p}");
    }
    assert_eq!(s.get("/plain.txt", &[]).status, 200);
}

#[test]
fn dotfiles_are_served_with_show_hidden() {
    let s = Server::start_with(|c| c.show_hidden = true);
    let config = b"[core]\n\trepositoryformatversion = 0\n";
    s.file(".env", b"DB_PASSWORD=hunter2\n");
    s.file(".git/config", config);
    symlink(".git/config", s.root.join("visible")).unwrap();
    let r = s.get("/.env", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"DB_PASSWORD=hunter2\n");
    for p in ["/.git/config", "/visible"] {
        let r = s.get(p, &[]);
        assert_eq!(r.status, 200, "{p}");
        assert_eq!(r.body, config, "{p}");
    }
}

#[test]
fn directory_symlink_leaving_the_root_hides_everything_below_it() {
    let s = Server::start();
    let outside = s.dir.path().join("outside-dir");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("f.txt"), SENTINEL).unwrap();
    std::fs::write(outside.join("index.html"), SENTINEL).unwrap();
    symlink(&outside, s.root.join("outdir")).unwrap();
    for p in ["/outdir/f.txt", "/outdir/", "/outdir/index.html", "/outdir"] {
        let r = s.get(p, &[]);
        assert_eq!(r.status, 404, "{p}");
        assert!(find(&r.body, SENTINEL).is_none(), "{p}");
        assert!(r.header("location").is_none(), "{p}");
    }
}

#[test]
fn directory_symlink_leaving_the_root_is_followed_when_configured() {
    let s = Server::start_with(|c| c.follow_symlinks = true);
    let outside = s.dir.path().join("outside-dir");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("f.txt"), SENTINEL).unwrap();
    symlink(&outside, s.root.join("outdir")).unwrap();
    let r = s.get("/outdir/f.txt", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, SENTINEL);
}
