//! `ServeFiles` as a library: mounted in axum Routers beside other routes (under a prefix with
//! `nest_service`, and as the `fallback_service`), and called bare through `oneshot`. Each
//! behaviour is checked with exact bytes, and the same requests sent to the rangeserve binary's
//! application must get the same answers (Date and multipart boundaries aside).

use std::path::Path;

use axum::routing::get;
use axum::Router;
use rangeserve::ServeFiles;

use crate::common::{etag_of, multipart, pattern, replace_all, Background, Response, Server};

/// An axum application served on 127.0.0.1 by `axum::serve` in its own runtime; stopped when
/// dropped.
struct Axum(Background);

impl Axum {
    fn start(app: Router) -> Axum {
        let listen = "127.0.0.1:0".parse().unwrap();
        Axum(Background::start(listen, |l, ready, stop| async move {
            ready.go();
            axum::serve(l, app)
                .with_graceful_shutdown(stop.wait())
                .await
                .unwrap();
        }))
    }

    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
        crate::common::request_at(self.0.addr, method, path, headers)
    }
}

/// A root with a file, a directory without an index, and one with.
fn tree(root: &Path) -> Vec<u8> {
    let data = pattern(10_000);
    std::fs::write(root.join("f.bin"), &data).unwrap();
    std::fs::create_dir_all(root.join("dir/sub")).unwrap();
    for i in 0..5 {
        std::fs::write(root.join(format!("dir/n{i}.txt")), format!("{i}\n")).unwrap();
    }
    std::fs::create_dir_all(root.join("site")).unwrap();
    std::fs::write(root.join("site/index.html"), "<p>index</p>\n").unwrap();
    data
}

/// A method, a path under the mount point, and header fields.
type Case = (&'static str, String, Vec<(&'static str, String)>);

/// The requests both the mounted engine and the binary answer.
fn requests(etag: &str) -> Vec<Case> {
    let h = |pairs: &[(&'static str, &str)]| -> Vec<(&'static str, String)> {
        pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
    };
    vec![
        ("GET", "/f.bin".into(), vec![]),
        ("HEAD", "/f.bin".into(), vec![]),
        ("GET", "/f.bin".into(), h(&[("Range", "bytes=100-199")])),
        ("GET", "/f.bin".into(), h(&[("Range", "bytes=-10")])),
        (
            "GET",
            "/f.bin".into(),
            h(&[("Range", "bytes=0-9,5000-5009,-5")]),
        ),
        ("GET", "/f.bin".into(), h(&[("Range", "bytes=20000-")])),
        (
            "GET",
            "/f.bin".into(),
            h(&[("Range", "bytes=0-9"), ("If-Range", etag)]),
        ),
        (
            "GET",
            "/f.bin".into(),
            h(&[("Range", "bytes=0-9"), ("If-Range", "\"other\"")]),
        ),
        ("GET", "/f.bin".into(), h(&[("If-None-Match", etag)])),
        ("GET", "/f.bin".into(), h(&[("If-Match", "\"other\"")])),
        ("GET", "/f.bin?download".into(), vec![]),
        ("GET", "/dir".into(), vec![]),
        ("GET", "/dir?sort=size".into(), vec![]),
        ("GET", "/dir/".into(), vec![]),
        ("GET", "/dir/?limit=2&offset=2".into(), vec![]),
        (
            "GET",
            "/dir/?limit=2&offset=2".into(),
            h(&[("Accept", "application/json")]),
        ),
        ("GET", "/site/".into(), vec![]),
        ("GET", "/missing".into(), vec![]),
        ("GET", "/../etc/passwd".into(), vec![]),
        ("POST", "/f.bin".into(), vec![]),
        ("OPTIONS", "/f.bin".into(), vec![]),
    ]
}

/// A response with what may differ between two correct servers made equal: the Date, the
/// multipart boundary, and the mount prefix in locations and listing links (with the
/// Content-Length and weak ETag that follow from the links).
fn normalized(mut r: Response, prefix: &str) -> Response {
    r.headers.remove("date");
    let before = r.body.clone();
    if let Some(ct) = r.headers.get("content-type").cloned() {
        if ct.starts_with("multipart/byteranges") {
            let b = multipart::boundary_of(&ct);
            r.headers
                .insert("content-type".into(), ct.replace(&b, "BOUNDARY"));
            r.body = replace_all(&r.body, b.as_bytes(), b"BOUNDARY");
        }
    }
    if !prefix.is_empty() {
        if let Some(loc) = r.headers.get("location").cloned() {
            r.headers
                .insert("location".into(), loc.replacen(prefix, "", 1));
        }
        r.body = replace_all(&r.body, format!("\"{prefix}/").as_bytes(), b"\"/");
    }
    if r.body != before {
        r.headers
            .insert("content-length".into(), r.body.len().to_string());
    }
    // A listing's weak ETag is of its bytes, which hold the links.
    if r.headers.get("etag").is_some_and(|e| e.starts_with("W/")) {
        r.headers.insert("etag".into(), "W/\"listing\"".into());
    }
    r
}

fn same_as_the_binary(app: &Axum, prefix: &str, server: &Server, etag: &str) {
    for (method, path, headers) in requests(etag) {
        let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let ours = server.request(method, &path, &hs);
        let mounted = app.request(method, &format!("{prefix}{path}"), &hs);
        let (ours, mounted) = (normalized(ours, ""), normalized(mounted, prefix));
        assert_eq!(
            (mounted.status, &mounted.headers),
            (ours.status, &ours.headers),
            "{method} {prefix}{path} {headers:?}"
        );
        assert!(
            mounted.body == ours.body,
            "{method} {prefix}{path} {headers:?}: bodies differ:\n{}\n---\n{}",
            String::from_utf8_lossy(&mounted.body),
            String::from_utf8_lossy(&ours.body)
        );
    }
}

fn binary_over(root: &Path) -> Server {
    Server::start_over(root, |c| c.listing = true)
}

/// A temporary root holding [`tree`]: the directory, its path, f.bin's bytes and its ETag.
fn site() -> (tempfile::TempDir, std::path::PathBuf, Vec<u8>, String) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let data = tree(&root);
    let etag = etag_of(&data);
    (dir, root, data, etag)
}

#[test]
fn nested_under_a_prefix_beside_other_routes() {
    let (_dir, root, data, etag) = site();
    let app = Axum::start(
        Router::new()
            .route("/", get(|| async { "home\n" }))
            .route("/files/extra", get(|| async { "a route of the app\n" }))
            .nest_service("/files", ServeFiles::new(&root).listing(true)),
    );

    // The application's own routes are untouched.
    let home = app.request("GET", "/", &[]);
    assert_eq!((home.status, home.body.as_slice()), (200, &b"home\n"[..]));

    // Each behaviour, with exact bytes.
    let full = app.request("GET", "/files/f.bin", &[]);
    assert_eq!(full.status, 200);
    assert_eq!(full.body, data);
    assert_eq!(full.header("etag"), Some(etag.as_str()));
    assert_eq!(full.header("accept-ranges"), Some("bytes"));

    let one = app.request("GET", "/files/f.bin", &[("Range", "bytes=100-199")]);
    assert_eq!(one.status, 206);
    assert_eq!(one.header("content-range"), Some("bytes 100-199/10000"));
    assert_eq!(one.body, &data[100..200]);

    let multi = app.request("GET", "/files/f.bin", &[("Range", "bytes=0-9,-5")]);
    assert_eq!(multi.status, 206);
    let b = multipart::boundary_of(multi.header("content-type").unwrap());
    let parts = multipart::parse(&multi.body, &b);
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].content_range.as_deref(), Some("bytes 0-9/10000"));
    assert_eq!(parts[0].body, &data[..10]);
    assert_eq!(parts[1].body, &data[9995..]);

    let if_range = app.request(
        "GET",
        "/files/f.bin",
        &[("Range", "bytes=0-9"), ("If-Range", &etag)],
    );
    assert_eq!(
        (if_range.status, if_range.body.as_slice()),
        (206, &data[..10])
    );
    let stale = app.request(
        "GET",
        "/files/f.bin",
        &[("Range", "bytes=0-9"), ("If-Range", "\"old\"")],
    );
    assert_eq!((stale.status, stale.body.len()), (200, data.len()));

    let not_modified = app.request("GET", "/files/f.bin", &[("If-None-Match", &etag)]);
    assert_eq!((not_modified.status, not_modified.body.len()), (304, 0));
    let failed = app.request("GET", "/files/f.bin", &[("If-Match", "\"old\"")]);
    assert_eq!(failed.status, 412);

    let unsatisfiable = app.request("GET", "/files/f.bin", &[("Range", "bytes=10000-")]);
    assert_eq!(unsatisfiable.status, 416);
    assert_eq!(unsatisfiable.header("content-range"), Some("bytes */10000"));

    // Everything that builds a URL keeps the mount prefix.
    let to_dir = app.request("GET", "/files/dir?x=1", &[]);
    assert_eq!(to_dir.status, 301);
    assert_eq!(to_dir.header("location"), Some("/files/dir/?x=1"));
    let to_root = app.request("GET", "/files", &[]);
    assert_eq!(to_root.status, 301);
    assert_eq!(to_root.header("location"), Some("/files/"));
    let listing = app.request("GET", "/files/dir/", &[]);
    assert_eq!(listing.status, 200);
    let html = String::from_utf8(listing.body).unwrap();
    // HTML links are relative to the page, so they stay under the prefix wherever it is.
    assert!(html.contains("<a href=\"./n0.txt\">n0.txt</a>"), "{html}");
    assert!(
        html.contains("<a href=\"../\">../</a>"),
        "parent link: {html}"
    );
    let page = app.request(
        "GET",
        "/files/dir/?limit=2&offset=2",
        &[("Accept", "application/json")],
    );
    let json: serde_json::Value = serde_json::from_slice(&page.body).unwrap();
    // JSON links are absolute: with the prefix.
    assert_eq!(json["url"], "/files/dir/");
    assert_eq!(json["parent"], "/files/");
    assert_eq!(json["entries"][0]["url"], "/files/dir/n1.txt");
    assert_eq!(
        json["prev"],
        "/files/dir/?sort=name&order=asc&limit=2&format=json"
    );
    assert_eq!(
        json["next"],
        "/files/dir/?sort=name&order=asc&limit=2&offset=4&format=json"
    );

    // And all of it exactly as the binary answers.
    let server = binary_over(&root);
    same_as_the_binary(&app, "/files", &server, &etag);
}

#[test]
fn as_the_fallback_service() {
    let (_dir, root, _, etag) = site();
    let app = Axum::start(
        Router::new()
            .route("/api/hello", get(|| async { "hi\n" }))
            .fallback_service(ServeFiles::new(&root).listing(true)),
    );
    let hi = app.request("GET", "/api/hello", &[]);
    assert_eq!(hi.body, b"hi\n");
    let server = binary_over(&root);
    same_as_the_binary(&app, "", &server, &etag);
}

#[test]
fn a_root_that_cannot_be_opened_is_a_500_for_every_request() {
    let dir = tempfile::tempdir().unwrap();
    let app = Axum::start(Router::new().fallback_service(ServeFiles::new(dir.path().join("no"))));
    for path in ["/", "/a", "/a/"] {
        let r = app.request("GET", path, &[]);
        assert_eq!(r.status, 500, "{path}");
        assert_eq!(r.body, b"500 Internal Server Error\n");
    }
}

mod oneshot {
    use super::*;
    use axum::body::Body;
    use http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn call(
        files: &ServeFiles,
        req: Request<Body>,
    ) -> (StatusCode, http::HeaderMap, Vec<u8>) {
        let resp = files.clone().oneshot(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes().to_vec();
        (parts.status, parts.headers, bytes)
    }

    fn get(path: &str, headers: &[(&str, &str)]) -> Request<Body> {
        let mut b = Request::get(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn a_bare_service_answers_every_behaviour() {
        let (_dir, root, data, etag) = site();
        let files = ServeFiles::new(&root);

        let (s, h, b) = call(&files, get("/f.bin", &[("Range", "bytes=9990-")])).await;
        assert_eq!(s, StatusCode::PARTIAL_CONTENT);
        assert_eq!(h["content-range"], "bytes 9990-9999/10000");
        assert_eq!(b, &data[9990..]);

        let (s, _, b) = call(&files, get("/f.bin", &[("If-None-Match", &etag)])).await;
        assert_eq!((s, b.len()), (StatusCode::NOT_MODIFIED, 0));
        let (s, _, _) = call(
            &files,
            get(
                "/f.bin",
                &[("If-Unmodified-Since", "Mon, 01 Jan 1990 00:00:00 GMT")],
            ),
        )
        .await;
        assert_eq!(s, StatusCode::PRECONDITION_FAILED);
        let (s, h, b) = call(&files, get("/f.bin", &[("Range", "bytes=99999-")])).await;
        assert_eq!(s, StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(h["content-range"], "bytes */10000");
        assert!(b.is_empty());
        // No mount prefix to keep: the redirect is the path's own.
        let (s, h, _) = call(&files, get("/dir", &[])).await;
        assert_eq!(s, StatusCode::MOVED_PERMANENTLY);
        assert_eq!(h["location"], "/dir/");
        // Listings are off unless asked for.
        let (s, _, _) = call(&files, get("/dir/", &[])).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _, b) = call(&files, get("/site/", &[])).await;
        assert_eq!((s, b.as_slice()), (StatusCode::OK, &b"<p>index</p>\n"[..]));

        let post = Request::post("/f.bin").body(Body::from("x")).unwrap();
        let (s, h, _) = call(&files, post).await;
        assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(h["allow"], "GET, HEAD, OPTIONS");
        // f.bin and site/index.html, each once.
        assert_eq!(files.hash_computations(), 2);
    }
}
