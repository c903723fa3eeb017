//! The SeaweedFS harness (tests/common/seaweed.rs) itself: a real cluster of `weed` processes
//! (master, two volume servers, filer, S3 gateway) on 127.0.0.1, driven through the
//! `object_store` crate, every read checked byte for byte. Without `weed` the tests are skipped
//! with a notice, or fail when `CI` is set.

mod common;

#[path = "store/serving.rs"]
mod serving;

use std::collections::BTreeSet;
use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, PutPayload};

use common::pattern;
use common::seaweed::Cluster;

/// An object of several MiB (more than one of SeaweedFS's chunks) comes back whole, and as
/// byte ranges anywhere in it: at either end, and across chunk boundaries.
#[test]
fn whole_object_and_ranges() {
    let Some(c) = Cluster::start() else { return };
    let data = pattern((9 << 20) + 3);
    c.put("big/pattern.bin", &data);
    assert!(
        c.get("big/pattern.bin").unwrap() == data,
        "whole object differs"
    );
    let mib = 1 << 20;
    let len = data.len();
    for r in [
        0..1,
        0..1000,
        len - 1..len,
        len - 5000..len,
        4 * mib - 7..4 * mib + 9,
        8 * mib - 1..8 * mib + 1,
        12_345..8 * mib + 54_321,
        0..len,
    ] {
        let got = c
            .block_on(
                c.store()
                    .get_range(&Path::from("big/pattern.bin"), r.start as u64..r.end as u64),
            )
            .unwrap_or_else(|e| panic!("range {r:?}: {e}"));
        assert!(got[..] == data[r.clone()], "range {r:?} differs");
    }
    // A client configured by `env()` alone, as `AmazonS3Builder::from_env` reads variables.
    let mut from_env = AmazonS3Builder::new().with_bucket_name(&c.bucket);
    for (k, v) in c.env() {
        let key: AmazonS3ConfigKey = k.to_ascii_lowercase().parse().unwrap();
        from_env = from_env.with_config(key, v);
    }
    let from_env = from_env.build().unwrap();
    let got = c
        .block_on(from_env.get_range(&Path::from("big/pattern.bin"), 100..200))
        .unwrap();
    assert_eq!(&got[..], &data[100..200]);
}

/// With replication 001 every object is on both volume servers: its bytes are in both data
/// directories, and it is read in full with either server killed.
#[test]
fn replicated_on_both_volume_servers() {
    let Some(mut c) = Cluster::start() else {
        return;
    };
    let data = pattern((2 << 20) + 17);
    c.put("replicated.bin", &data);
    let window = &data[1 << 20..(1 << 20) + 4096];
    for i in 0..2 {
        let dir = c.dir().join(format!("volume{i}"));
        assert!(
            dat_files_contain(&dir, window),
            "no copy of the bytes in {}",
            dir.display()
        );
    }
    for i in 0..2 {
        c.kill_volume(i);
        let got = c
            .get("replicated.bin")
            .unwrap_or_else(|e| panic!("read with volume server {i} killed: {e}"));
        assert!(got == data, "volume server {i} killed: the object differs");
        c.restart();
    }
}

/// 1200 objects under one prefix (more than one ListObjects page of 1000) are all listed, right
/// after they were written, with their sizes; a deeper key shows as a common prefix.
#[test]
fn listing_spans_pages() {
    let Some(c) = Cluster::start() else { return };
    let n = 1200;
    let body = |i: usize| format!("object {i}\n").into_bytes();
    let store = Arc::new(c.builder().build().unwrap());
    c.block_on({
        let store = store.clone();
        async move {
            let mut tasks = tokio::task::JoinSet::new();
            let limit = Arc::new(tokio::sync::Semaphore::new(16));
            for i in 0..n {
                let (store, limit) = (store.clone(), limit.clone());
                tasks.spawn(async move {
                    let _permit = limit.acquire().await.unwrap();
                    let key = Path::from(format!("many/{i:05}"));
                    store.put(&key, PutPayload::from(body(i))).await.unwrap();
                });
            }
            tasks.spawn({
                let store = store.clone();
                async move {
                    let key = Path::from("many/sub/deeper");
                    store
                        .put(&key, PutPayload::from_static(b"deeper"))
                        .await
                        .unwrap();
                }
            });
            while let Some(r) = tasks.join_next().await {
                r.unwrap();
            }
        }
    });
    let listed = c
        .block_on(store.list_with_delimiter(Some(&Path::from("many"))))
        .unwrap();
    assert_eq!(listed.objects.len(), n, "objects listed");
    let keys: BTreeSet<String> = listed
        .objects
        .iter()
        .map(|m| m.location.to_string())
        .collect();
    let expected: BTreeSet<String> = (0..n).map(|i| format!("many/{i:05}")).collect();
    assert_eq!(keys, expected);
    for m in &listed.objects {
        let i: usize = m.location.filename().unwrap().parse().unwrap();
        assert_eq!(m.size, body(i).len() as u64, "{}", m.location);
    }
    let prefixes: Vec<String> = listed
        .common_prefixes
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(prefixes, ["many/sub"]);
    for i in [0, 999, 1000, n - 1] {
        assert_eq!(c.get(&format!("many/{i:05}")).unwrap(), body(i));
    }
}

/// With everything but the master killed a read fails (promptly: the helpers' client retries
/// 3 times at most); started again on the same ports and directories, the cluster serves the
/// same bytes.
#[test]
fn down_and_back() {
    let Some(mut c) = Cluster::start() else {
        return;
    };
    let data = pattern((1 << 20) + 5);
    c.put("survivor.bin", &data);
    c.kill_all_but_master();
    let started = Instant::now();
    let err = c
        .get("survivor.bin")
        .expect_err("a read with the store down");
    let took = started.elapsed();
    assert!(
        !matches!(err, object_store::Error::NotFound { .. }),
        "down is not 'not found': {err}"
    );
    assert!(took < Duration::from_secs(15), "failing took {took:?}");
    c.restart();
    assert!(c.get("survivor.bin").unwrap() == data, "after the restart");
    c.delete("survivor.bin");
    assert!(matches!(
        c.get("survivor.bin"),
        Err(object_store::Error::NotFound { .. })
    ));
}

/// What the object-store backend relies on: the ETag of a single PUT is the quoted MD5 of the
/// bytes, the same from PUT, HEAD, GET and LIST; a ranged GET with a wrong If-Match fails with
/// 412 (object_store's Precondition), with the right one gives exactly the range, and with the
/// ETag in If-None-Match gives 304 (NotModified). A multipart upload's ETag ends in `-<parts>`.
#[test]
fn etags_and_conditional_ranges() {
    let Some(c) = Cluster::start() else { return };
    let data = pattern(100_000);
    let key = Path::from("cond.bin");
    let put_etag = c.put("cond.bin", &data);
    let head = c.block_on(c.store().head(&key)).unwrap();
    assert_eq!(head.size, data.len() as u64);
    let etag = head.e_tag.clone().expect("HEAD gives an ETag");
    assert_eq!(etag, put_etag, "PUT and HEAD ETags");
    assert!(
        etag.len() == 34 && etag.starts_with('"') && etag.ends_with('"'),
        "a quoted MD5: {etag}"
    );
    let listed = c
        .block_on(c.store().list_with_delimiter(None))
        .unwrap()
        .objects;
    let in_list = listed.iter().find(|m| m.location == key).unwrap();
    assert_eq!(in_list.e_tag.as_deref(), Some(etag.as_str()), "LIST ETag");

    let ranged = |if_match: Option<&str>, if_none_match: Option<&str>| {
        let opts = GetOptions {
            if_match: if_match.map(str::to_string),
            if_none_match: if_none_match.map(str::to_string),
            range: Some(GetRange::Bounded(10..20)),
            ..Default::default()
        };
        c.block_on(async {
            let r = c.store().get_opts(&key, opts).await?;
            let (meta, range) = (r.meta.clone(), r.range.clone());
            Ok::<_, object_store::Error>((meta, range, r.bytes().await?))
        })
    };
    match ranged(Some("\"0123456789abcdef0123456789abcdef\""), None) {
        Err(object_store::Error::Precondition { .. }) => {}
        other => panic!("wrong If-Match on a ranged GET: {other:?}"),
    }
    let (meta, range, bytes) = ranged(Some(&etag), None).unwrap();
    assert_eq!(range, 10..20);
    assert_eq!(&bytes[..], &data[10..20]);
    assert_eq!(meta.e_tag.as_deref(), Some(etag.as_str()), "GET ETag");
    match ranged(None, Some(&etag)) {
        Err(object_store::Error::NotModified { .. }) => {}
        other => panic!("If-None-Match with the ETag on a ranged GET: {other:?}"),
    }
    let (_, _, bytes) = ranged(None, Some("\"other\"")).unwrap();
    assert_eq!(&bytes[..], &data[10..20]);

    // Two parts: 5 MiB (the least S3 takes but for the last) and 1 MiB.
    let parts = pattern(6 << 20);
    let mkey = Path::from("multipart.bin");
    let completed = c.block_on(async {
        let mut up = c.store().put_multipart(&mkey).await?;
        up.put_part(parts[..5 << 20].to_vec().into()).await?;
        up.put_part(parts[5 << 20..].to_vec().into()).await?;
        up.complete().await
    });
    let completed = completed.unwrap();
    let head = c.block_on(c.store().head(&mkey)).unwrap();
    let metag = head.e_tag.unwrap();
    assert!(metag.ends_with("-2\""), "multipart ETag: {metag}");
    assert_eq!(completed.e_tag.as_deref(), Some(metag.as_str()));
    let listed = c
        .block_on(c.store().list_with_delimiter(None))
        .unwrap()
        .objects;
    let in_list = listed.iter().find(|m| m.location == mkey).unwrap();
    assert_eq!(in_list.e_tag.as_deref(), Some(metag.as_str()), "LIST ETag");
    assert!(c.get("multipart.bin").unwrap() == parts, "multipart object");
}

/// Whether some `*.dat` file (a volume's needles) under `dir` holds `needle`.
fn dat_files_contain(dir: &FsPath, needle: &[u8]) -> bool {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "dat"))
        .any(|e| {
            let bytes = std::fs::read(e.path()).unwrap();
            memchr::memmem::find(&bytes, needle).is_some()
        })
}
