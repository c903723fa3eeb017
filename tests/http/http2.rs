//! HTTP/2 with many streams at once on one plain-TCP connection (h2c with prior knowledge):
//! the server runs a connection's streams on the connection's own task and writes the
//! responses that are ready together in one go (`transport::batch`). Every body is checked
//! byte for byte, whatever else is in flight beside it, and a stream the client cancels
//! (RST_STREAM) leaves the others alone.

use crate::common::{etag_of, pattern, Server};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// Several times every buffer on the way (the server's per-stream send buffer, the
/// flow-control windows, a read chunk, what the server holds before it writes).
const BIG: usize = 5 * 1024 * 1024 + 4321;

/// Sizes around h2's threshold for a DATA frame written without a copy (256 bytes), a frame
/// (16 KiB) and what the server holds before it writes (32 KiB).
const SMALL: [usize; 12] = [
    0, 1, 255, 256, 257, 1000, 1024, 4096, 16_383, 16_385, 32_768, 40_000,
];

/// A request's path and headers, and the status and body it must get.
type Wanted = (String, Vec<(&'static str, String)>, u16, Vec<u8>);

#[tokio::test]
async fn many_concurrent_streams_on_one_h2c_connection_get_exact_bytes() {
    let server = Server::start();
    let big = pattern(BIG);
    server.file("big.bin", &big);
    let small: Vec<Vec<u8>> = SMALL
        .iter()
        .enumerate()
        .map(|(i, &n)| pattern(n + i).into_iter().rev().take(n).collect())
        .collect();
    for (i, data) in small.iter().enumerate() {
        server.file(&format!("s/{i}.bin"), data);
    }
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(1024 * 1024)
        .initial_connection_window_size(8 * 1024 * 1024)
        .handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let base = format!("http://127.0.0.1:{}", server.addr.port());

    // Each request (path, headers) and what it must get (status, body).
    let mut wanted: Vec<Wanted> = Vec::new();
    for round in 0..3 {
        for (i, data) in small.iter().enumerate() {
            wanted.push((format!("/s/{i}.bin"), vec![], 200, data.clone()));
            if !data.is_empty() && round == 1 {
                let (a, b) = (data.len() / 3, data.len() - 1);
                wanted.push((
                    format!("/s/{i}.bin"),
                    vec![("range", format!("bytes={a}-{b}"))],
                    206,
                    data[a..=b].to_vec(),
                ));
            }
        }
        // Not modified: a 304 with no body, between the others.
        wanted.push((
            "/s/6.bin".into(),
            vec![("if-none-match", etag_of(&small[6]))],
            304,
            vec![],
        ));
        // Ranges of the large file, across frames and windows.
        for k in 0..4 {
            let a = (round * 4 + k) * 377_777 % BIG;
            let b = (a + 200_000 + k * 65_536).min(BIG - 1);
            wanted.push((
                "/big.bin".into(),
                vec![("range", format!("bytes={a}-{b}"))],
                206,
                big[a..=b].to_vec(),
            ));
        }
    }
    // The whole large file, twice, in the middle of it all.
    wanted.insert(5, ("/big.bin".into(), vec![], 200, big.clone()));
    wanted.insert(40, ("/big.bin".into(), vec![], 200, big.clone()));
    assert!(wanted.len() > 60, "{} streams", wanted.len());

    let tasks: Vec<_> = wanted
        .iter()
        .map(|(path, headers, _, _)| {
            let mut send = send.clone();
            let mut req = http::Request::get(format!("{base}{path}"));
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            let req = req.body(Empty::<Bytes>::new()).unwrap();
            tokio::spawn(async move {
                let resp = send.send_request(req).await.unwrap();
                let (parts, body) = resp.into_parts();
                (parts, body.collect().await.unwrap().to_bytes())
            })
        })
        .collect();
    for (task, (path, headers, status, body)) in tasks.into_iter().zip(&wanted) {
        let (parts, got) = task.await.unwrap();
        let what = format!("{path} {headers:?}");
        assert_eq!(parts.version, http::Version::HTTP_2, "{what}");
        assert_eq!(parts.status, *status, "{what}");
        if *status != 304 {
            assert_eq!(
                parts.headers["content-length"],
                body.len().to_string().as_str(),
                "{what}"
            );
        }
        assert_eq!(got.len(), body.len(), "{what}: length");
        assert!(got[..] == body[..], "{what}: body differs");
    }
    drop(send);
    conn.await.unwrap().unwrap();
}

/// A client that cancels streams (RST_STREAM) mid-body and before the response: the other
/// streams on the connection, started before and after, still get every byte, and the
/// connection stays usable.
#[tokio::test]
async fn a_cancelled_stream_does_not_disturb_the_others() {
    let server = Server::start();
    let big = pattern(BIG);
    server.file("big.bin", &big);
    let small = pattern(3000);
    server.file("small.bin", &small);
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (client, conn) = h2::client::Builder::new()
        .initial_window_size(256 * 1024)
        .initial_connection_window_size(4 * 1024 * 1024)
        .handshake::<_, Bytes>(tcp)
        .await
        .unwrap();
    let conn = tokio::spawn(async move { conn.await.unwrap() });
    let mut client = client.ready().await.unwrap();
    let get = |path: &str| {
        http::Request::get(format!("http://127.0.0.1:{}{path}", server.addr.port()))
            .body(())
            .unwrap()
    };

    // Streams to finish, and streams to cancel, interleaved on the connection.
    let mut keep = Vec::new();
    let mut cancel = Vec::new();
    for i in 0..24 {
        let path = if i % 2 == 0 { "/big.bin" } else { "/small.bin" };
        let (resp, stream) = client.send_request(get(path), true).unwrap();
        if i % 3 == 1 {
            cancel.push((resp, stream));
        } else {
            keep.push((path, resp));
        }
        client = client.ready().await.unwrap();
    }
    // Some cancelled before their response arrives, the rest after part of their body.
    let mut cancelled = 0;
    for (n, (resp, mut stream)) in cancel.into_iter().enumerate() {
        if n % 2 == 0 {
            stream.send_reset(h2::Reason::CANCEL);
        } else {
            let mut body = resp.await.unwrap().into_body();
            if let Some(chunk) = body.data().await {
                let chunk = chunk.unwrap();
                let _ = body.flow_control().release_capacity(chunk.len());
            }
            stream.send_reset(h2::Reason::CANCEL);
        }
        cancelled += 1;
    }
    assert_eq!(cancelled, 8);

    // And more streams after the cancellations.
    for _ in 0..4 {
        let (resp, _) = client.send_request(get("/small.bin"), true).unwrap();
        keep.push(("/small.bin", resp));
        client = client.ready().await.unwrap();
    }
    let tasks: Vec<_> = keep
        .into_iter()
        .map(|(path, resp)| {
            tokio::spawn(async move {
                let resp = resp.await.unwrap();
                let status = resp.status();
                let mut body = resp.into_body();
                let mut got = Vec::new();
                while let Some(chunk) = body.data().await {
                    let chunk = chunk.unwrap();
                    got.extend_from_slice(&chunk);
                    body.flow_control().release_capacity(chunk.len()).unwrap();
                }
                (path, status, got)
            })
        })
        .collect();
    for task in tasks {
        let (path, status, got) = task.await.unwrap();
        assert_eq!(status, 200, "{path}");
        let want = if path == "/big.bin" { &big } else { &small };
        assert_eq!(got.len(), want.len(), "{path}: length");
        assert!(got == *want, "{path}: body differs");
    }
    drop(client);
    conn.await.unwrap();
}
