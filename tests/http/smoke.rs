use crate::common::*;

#[test]
fn serves_a_file_and_a_range() {
    let s = Server::start();
    let data = pattern(1000);
    s.file("a.bin", &data);
    let r = s.get("/a.bin", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, data);
    assert_eq!(r.header("etag").unwrap(), etag_of(&data));
    let r = s.get("/a.bin", &[("Range", "bytes=10-19")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &data[10..20]);
    assert_eq!(r.header("content-range"), Some("bytes 10-19/1000"));
}
