//! Replicas behind a load balancer: two servers over copies of the same files (different
//! inodes and mtimes) give the same ETag, so a download started on one resumes on the other.
use crate::common::*;

use std::time::{Duration, SystemTime};

#[test]
fn copies_on_two_servers_share_etags_and_if_range() {
    let a = Server::start();
    let b = Server::start();
    let data = pattern(300_000);
    let pa = a.file("dl/file.bin", &data);
    let pb = b.file("dl/file.bin", &data);
    // Different mtimes, and of course different inodes.
    let old = SystemTime::now() - Duration::from_secs(86_400);
    std::fs::File::options()
        .write(true)
        .open(&pb)
        .unwrap()
        .set_modified(old)
        .unwrap();
    use std::os::unix::fs::MetadataExt;
    let (ma, mb) = (pa.metadata().unwrap(), pb.metadata().unwrap());
    assert_ne!((ma.dev(), ma.ino()), (mb.dev(), mb.ino()));
    assert_ne!(ma.mtime(), mb.mtime());

    let ra = a.get("/dl/file.bin", &[("Range", "bytes=0-99999")]);
    assert_eq!(ra.status, 206);
    let etag = ra.header("etag").unwrap().to_string();
    assert_eq!(etag, etag_of(&data));
    assert_ne!(
        ra.header("last-modified"),
        b.get("/dl/file.bin", &[]).header("last-modified")
    );

    // The resume lands on the other replica: If-Range with A's ETag still matches.
    let rb = b.get(
        "/dl/file.bin",
        &[("Range", "bytes=100000-"), ("If-Range", &etag)],
    );
    assert_eq!(rb.status, 206);
    assert_eq!(rb.header("etag"), Some(etag.as_str()));
    let mut joined = ra.body.clone();
    joined.extend_from_slice(&rb.body);
    assert_eq!(joined, data);
}
