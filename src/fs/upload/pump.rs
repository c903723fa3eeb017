//! Moving a request body onto disk: the body's pieces gathered into large buffers, each
//! written (`pwrite`) and hashed on the blocking pool while the next one fills, so memory per
//! upload stays at two buffers whatever its size, and reading the body waits for the disk
//! (backpressure: nothing more is read while both buffers are full).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use sha2::{Digest as _, Sha256};

use crate::ops::metrics::METRICS;

/// Bytes gathered before a write: large writes for the disk, two of them per upload in memory.
const BUF: usize = 1 << 20;

/// Written bytes are handed to the disk (`sync_file_range(SYNC_FILE_RANGE_WRITE)`) in windows of
/// this size as they arrive, so the `fdatasync` that makes an append durable finds little left
/// to write: the disk works while the body is still being received and hashed, instead of all
/// of it after the last byte (measured: the closing sync was seconds per GiB on a slow disk).
const WRITEBACK: u64 = 8 << 20;

/// What hashes the bytes as they are written: the SHA-256 of the whole file so far (the ETag
/// to be), and the hash of this request's bytes when the client sent a checksum for them.
#[derive(Clone)]
pub(super) struct Hashes {
    pub whole: Sha256,
    pub chunk: Option<ChunkHash>,
}

/// A checksum algorithm of tus's checksum extension, as it runs.
#[derive(Clone)]
pub(super) enum ChunkHash {
    Sha256(Sha256),
    Sha1(sha1::Sha1),
    Md5(md5::Md5),
}

impl ChunkHash {
    fn update(&mut self, bytes: &[u8]) {
        match self {
            ChunkHash::Sha256(h) => h.update(bytes),
            ChunkHash::Sha1(h) => h.update(bytes),
            ChunkHash::Md5(h) => md5::Digest::update(h, bytes),
        }
    }

    pub fn finish(self) -> Vec<u8> {
        match self {
            ChunkHash::Sha256(h) => h.finalize().to_vec(),
            ChunkHash::Sha1(h) => h.finalize().to_vec(),
            ChunkHash::Md5(h) => md5::Digest::finalize(h).to_vec(),
        }
    }
}

impl Hashes {
    fn update(&mut self, bytes: &[u8]) {
        self.whole.update(bytes);
        if let Some(c) = &mut self.chunk {
            c.update(bytes);
        }
    }
}

/// How pumping ended.
#[derive(Debug)]
pub(super) enum End {
    /// The body ended and every byte of it was written.
    Done,
    /// The body failed (the client went away, or sent less than its Content-Length); every byte
    /// received before was written.
    Body(io::Error),
    /// Writing failed (ENOSPC, EIO): `written` bytes were.
    Write(io::Error),
    /// The body held more than `limit` bytes; reading stopped there (what was written before
    /// is to be discarded by the caller).
    OverLimit,
}

/// What was written, and the hashes over it.
pub(super) struct Pumped {
    pub written: u64,
    pub hashes: Hashes,
    pub end: End,
}

/// A write of one buffer on the blocking pool: the bytes written (all of them unless the
/// error says otherwise), the hashes over exactly those bytes, and the buffer back, emptied.
type Job = tokio::task::JoinHandle<(u64, Option<io::Error>, Hashes, BytesMut)>;

/// Write `body` to `file` from offset `start`, hashing it with `hashes`, taking at most `limit`
/// bytes.
pub(super) async fn pump<S>(
    body: &mut S,
    file: Arc<File>,
    start: u64,
    limit: u64,
    hashes: Hashes,
) -> Pumped
where
    S: Stream<Item = io::Result<Bytes>> + Unpin,
{
    let mut written = 0u64;
    let mut received = 0u64;
    let mut buf = BytesMut::with_capacity(BUF);
    let mut spare: Option<BytesMut> = None;
    let mut job: Option<Job> = None;
    let mut hashes = Some(hashes);
    let mut end = End::Done;
    // Wait for the write in flight: its hashes come back, and its buffer for reuse.
    macro_rules! settle {
        () => {
            if let Some(j) = job.take() {
                match j.await {
                    Ok((n, err, h, b)) => {
                        written += n;
                        hashes = Some(h);
                        spare = Some(b);
                        if let Some(e) = err {
                            end = End::Write(e);
                        }
                    }
                    Err(e) => end = End::Write(io::Error::other(e)),
                }
            }
        };
    }
    macro_rules! launch {
        () => {{
            let data = std::mem::replace(
                &mut buf,
                spare.take().unwrap_or_else(|| BytesMut::with_capacity(BUF)),
            );
            let mut h = hashes
                .take()
                .expect("hashes are back before the next write");
            // Launched only once the previous write settled: `written` is all that went before.
            let (file, at) = (file.clone(), start + written);
            job = Some(tokio::task::spawn_blocking(move || {
                let (n, err) = write_all_at(&file, &data, at);
                start_writeback(&file, at, at + n as u64);
                h.update(&data[..n]);
                METRICS.upload_bytes(n as u64);
                let mut data = data;
                data.clear();
                (n as u64, err, h, data)
            }));
        }};
    }
    loop {
        match body.next().await {
            Some(Ok(bytes)) => {
                received += bytes.len() as u64;
                if received > limit {
                    end = End::OverLimit;
                    break;
                }
                buf.extend_from_slice(&bytes);
                if buf.len() >= BUF {
                    settle!();
                    if !matches!(end, End::Done) {
                        break;
                    }
                    launch!();
                }
            }
            Some(Err(e)) => {
                end = End::Body(e);
                break;
            }
            None => break,
        }
    }
    settle!();
    // What was received before the body ended or failed is written too (tus: keep as much as
    // possible); not after a write failed, nor past the limit.
    if matches!(end, End::Done | End::Body(_)) && !buf.is_empty() {
        let body_end = std::mem::replace(&mut end, End::Done);
        launch!();
        settle!();
        if matches!(end, End::Done) {
            end = body_end;
        }
    }
    drop(spare);
    Pumped {
        written,
        hashes: hashes.expect("hashes are back after the last write"),
        end,
    }
}

/// Start writing back the whole [`WRITEBACK`] windows that the bytes `from..to` (just written)
/// completed. Only a hint for the disk: durability still comes from the `fdatasync` before an
/// answer, so a failure here changes nothing. Writes are contiguous, so every window is started
/// once.
fn start_writeback(file: &File, from: u64, to: u64) {
    use std::os::fd::AsRawFd;
    let (first, last) = (from / WRITEBACK * WRITEBACK, to / WRITEBACK * WRITEBACK);
    if last > first {
        // SAFETY: a plain system call on a descriptor that `file` keeps open.
        let _ = unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                first as libc::off64_t,
                (last - first) as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            )
        };
    }
}

/// `pwrite` all of `data` at `at`: how much was written, and the error that stopped it.
fn write_all_at(file: &File, data: &[u8], at: u64) -> (usize, Option<io::Error>) {
    let mut done = 0;
    while done < data.len() {
        match file.write_at(&data[done..], at + done as u64) {
            Ok(0) => return (done, Some(io::ErrorKind::WriteZero.into())),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (done, Some(e)),
        }
    }
    (done, None)
}

/// The SHA-256 state of the first `len` bytes of `file` (blocking): sha2's state cannot be
/// saved, so after a restart an unfinished upload's hash is made again from its part file.
pub(super) fn rehash(file: &File, len: u64) -> io::Result<Sha256> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; BUF];
    let mut at = 0u64;
    while at < len {
        let want = ((len - at) as usize).min(BUF);
        crate::fs::file::read_exact_at(file, &mut buf[..want], at)?;
        h.update(&buf[..want]);
        at += want as u64;
    }
    Ok(h)
}
