//! Generated files: any size up to [`MAX_SIZE`], whose bytes are a pure function of
//! (seed, offset), so any range costs time proportional to its own length only.
//!
//! The byte function: the file is a run of little-endian 64-bit words; word `i` (bytes
//! `8i..8i+8`) is output number `i + 1` of splitmix64 started at `seed`, that is
//! `mix(seed + (i + 1) * 0x9E3779B97F4A7C15)` (wrapping arithmetic). The last word is cut
//! at the file's size.

use std::collections::HashMap;
use std::io::{self, Write};
use std::mem::MaybeUninit;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::HeaderValue;

use crate::files::storage::{ReadFuture, Representation, Source};

/// The largest generated file: 1 PiB.
pub const MAX_SIZE: u64 = 1 << 50;

/// The largest generated file whose SHA-256 is computed on request (about 1 s per GiB).
pub const MAX_HASH_SIZE: u64 = 64 << 30;

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// splitmix64's output function.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Word `i` of the file generated from `seed`.
fn word(seed: u64, i: u64) -> u64 {
    mix(seed.wrapping_add(i.wrapping_add(1).wrapping_mul(GOLDEN)))
}

/// Write the bytes at `offset..offset + out.len()` of the (unbounded) stream for `seed`.
pub fn fill(seed: u64, offset: u64, out: &mut [MaybeUninit<u8>]) {
    let mut pos = offset;
    let mut i = 0;
    // A partial first word.
    let within = (pos % 8) as usize;
    if within != 0 && !out.is_empty() {
        let bytes = word(seed, pos / 8).to_le_bytes();
        let n = (8 - within).min(out.len());
        for (o, b) in out[..n].iter_mut().zip(&bytes[within..]) {
            o.write(*b);
        }
        i = n;
        pos += n as u64;
    }
    // Whole words, then a partial last one.
    for (w, chunk) in (pos / 8..).zip(out[i..].chunks_mut(8)) {
        let bytes = word(seed, w).to_le_bytes();
        for (o, b) in chunk.iter_mut().zip(&bytes) {
            o.write(*b);
        }
    }
}

/// [`fill`] over initialized memory.
pub fn fill_init(seed: u64, offset: u64, out: &mut [u8]) {
    // SAFETY: u8 and MaybeUninit<u8> have the same layout, and fill only writes initialized bytes.
    let out = unsafe { &mut *(out as *mut [u8] as *mut [MaybeUninit<u8>]) };
    fill(seed, offset, out);
}

/// A generated file: computed in memory, never blocks.
pub struct Generated {
    pub size: u64,
    pub seed: u64,
}

impl Generated {
    fn span(&self, len: usize, offset: u64) -> usize {
        self.size.saturating_sub(offset).min(len as u64) as usize
    }
}

impl Source for Generated {
    /// Never needed (every read is served by `read_at_nowait`), but exact all the same.
    fn read(self: Arc<Self>, offset: u64, len: usize, _until: u64) -> ReadFuture {
        let result = if self.span(len, offset) < len {
            Err(crate::fs::file::ended_early())
        } else {
            let mut buf = vec![0u8; len];
            fill_init(self.seed, offset, &mut buf);
            Ok(bytes::Bytes::from(buf))
        };
        Box::pin(std::future::ready(result))
    }

    fn read_at_nowait(
        &self,
        buf: &mut [MaybeUninit<u8>],
        offset: u64,
    ) -> Option<io::Result<usize>> {
        let n = self.span(buf.len(), offset);
        fill(self.seed, offset, &mut buf[..n]);
        Some(Ok(n))
    }

    fn reads_nowait(&self) -> bool {
        true
    }
}

/// The fixed Last-Modified of every generated file: 2020-01-01T00:00:00Z.
pub fn modified() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_577_836_800)
}

/// The representation of a generated file: strong ETag `"gen-<size>-<seed>"`, a fixed
/// Last-Modified, application/octet-stream.
pub fn representation(size: u64, seed: u64) -> Representation {
    Representation {
        len: size,
        etag: Some(etag(size, seed)),
        modified: Some(modified()),
        content_type: HeaderValue::from_static("application/octet-stream"),
        source: Arc::new(Generated { size, seed }),
        repr_digest: None,
        path_headers: Default::default(),
    }
}

pub fn etag(size: u64, seed: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"gen-{size}-{seed}\"")).expect("digits are a valid etag")
}

/// `1234`, `10MiB`, `5GB`, `1TiB`, `3kb`, `7B`: bytes, at most [`MAX_SIZE`].
pub fn parse_size(text: &str) -> Result<u64, String> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    if number.is_empty() {
        return Err(format!(
            "size {text:?}: expected a number of bytes, e.g. 1024 or 10MiB"
        ));
    }
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "kib" => 1 << 10,
        "mb" => 1_000_000,
        "mib" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        "pb" => 1_000_000_000_000_000,
        "pib" => 1 << 50,
        _ => {
            return Err(format!(
            "size {text:?}: unknown unit {unit:?} (B, KB, KiB, MB, MiB, GB, GiB, TB, TiB, PB, PiB)"
        ))
        }
    };
    let too_large = || format!("size {text:?}: larger than the limit of {MAX_SIZE} bytes (1 PiB)");
    let n: u64 = number.parse().map_err(|_| too_large())?;
    let size = n.checked_mul(multiplier).ok_or_else(too_large)?;
    if size > MAX_SIZE {
        return Err(too_large());
    }
    Ok(size)
}

/// Generated files up to this size get a `Repr-Digest` even before anyone asked for their
/// `.sha256`: hashing one takes about a millisecond. Larger ones only once their hash is cached.
pub const REPR_DIGEST_HASH_MAX: u64 = 1 << 20;

/// The `Repr-Digest` value for a SHA-256 given in hex.
pub fn repr_digest(sha256_hex: &str) -> Option<HeaderValue> {
    let sum: [u8; 32] = hex::decode(sha256_hex).ok()?.try_into().ok()?;
    Some(crate::http::repr_digest::value(&sum))
}

/// The SHA-256 (lowercase hex) of the whole generated file. Blocking: about 1 s per GiB.
pub fn sha256_hex(size: u64, seed: u64) -> String {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0;
    while offset < size {
        let n = (size - offset).min(buf.len() as u64) as usize;
        fill_init(seed, offset, &mut buf[..n]);
        hasher.update(&buf[..n]);
        offset += n as u64;
    }
    hex::encode(hasher.finalize())
}

/// One hash, computed once by whoever asks first.
type HashCell = Arc<tokio::sync::OnceCell<String>>;

/// Computed hashes by (size, seed); concurrent requests for one share the computation.
pub struct HashCache {
    entries: Mutex<HashMap<(u64, u64), HashCell>>,
}

/// Hashes kept in memory (about 150 bytes each).
const HASH_CACHE_ENTRIES: usize = 1024;

impl Default for HashCache {
    fn default() -> Self {
        HashCache {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl HashCache {
    /// The hash of the file (size, seed) if it has been computed; never waits.
    pub fn known(&self, size: u64, seed: u64) -> Option<String> {
        self.entries
            .lock()
            .unwrap()
            .get(&(size, seed))?
            .get()
            .cloned()
    }

    /// The hash of the file (size, seed), computed on the blocking pool the first time.
    pub async fn get(&self, size: u64, seed: u64) -> io::Result<String> {
        let cell = {
            let mut map = self.entries.lock().unwrap();
            if !map.contains_key(&(size, seed)) && map.len() >= HASH_CACHE_ENTRIES {
                // Bounded: forget one finished entry (any); in-flight ones are kept.
                if let Some(k) = map.iter().find(|(_, c)| c.initialized()).map(|(k, _)| *k) {
                    map.remove(&k);
                }
            }
            map.entry((size, seed)).or_default().clone()
        };
        cell.get_or_try_init(|| async move {
            tokio::task::spawn_blocking(move || sha256_hex(size, seed))
                .await
                .map_err(io::Error::other)
        })
        .await
        .cloned()
    }
}

/// Write the generated file to `out` (buffered in 1 MiB blocks).
pub fn write_to(size: u64, seed: u64, out: &mut impl Write) -> io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0;
    while offset < size {
        let n = (size - offset).min(buf.len() as u64) as usize;
        fill_init(seed, offset, &mut buf[..n]);
        out.write_all(&buf[..n])?;
        offset += n as u64;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("10"), Ok(10));
        assert_eq!(parse_size("7B"), Ok(7));
        assert_eq!(parse_size("3kb"), Ok(3000));
        assert_eq!(parse_size("2KiB"), Ok(2048));
        assert_eq!(parse_size("10MiB"), Ok(10 << 20));
        assert_eq!(parse_size("5GB"), Ok(5_000_000_000));
        assert_eq!(parse_size("1TiB"), Ok(1 << 40));
        assert_eq!(parse_size("1pib"), Ok(1 << 50));
        for bad in [
            "",
            "x",
            "10XB",
            "-1",
            "1.5MiB",
            " 1",
            "2PiB",
            "99999999999999999999",
        ] {
            let e = parse_size(bad).unwrap_err();
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn any_offset_gives_the_same_bytes() {
        let mut whole = vec![0u8; 100];
        fill_init(7, 0, &mut whole);
        for start in 0..40 {
            for len in 0..40 {
                let mut part = vec![0u8; len];
                fill_init(7, start as u64, &mut part);
                assert_eq!(part, whole[start..start + len]);
            }
        }
        let mut other = vec![0u8; 100];
        fill_init(8, 0, &mut other);
        assert_ne!(whole, other);
    }

    #[test]
    fn reads_stop_at_the_size() {
        let g = Generated { size: 10, seed: 0 };
        let mut buf = [MaybeUninit::uninit(); 8];
        assert_eq!(g.read_at_nowait(&mut buf, 4).unwrap().unwrap(), 6);
        assert_eq!(g.read_at_nowait(&mut buf, 10).unwrap().unwrap(), 0);
        assert_eq!(g.read_at_nowait(&mut buf, 99).unwrap().unwrap(), 0);
    }
}
