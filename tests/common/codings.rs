//! Content codings made and undone with the flate2, zstd and brotli crates, independently of
//! the server: precompressed sidecars written by tests, and encoded bodies decoded back.

use std::io::{Read, Write};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Enc {
    Identity,
    Br,
    Zstd,
    Gzip,
}

impl Enc {
    /// This coding when `yes`, else identity.
    pub fn when(self, yes: bool) -> Enc {
        if yes {
            self
        } else {
            Enc::Identity
        }
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 10).unwrap()
}

pub fn brotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 4096, 9, 22);
        w.write_all(data).unwrap();
    }
    out
}

/// The original bytes of an encoded body, decoded by the crate of its coding.
pub fn decode(enc: Enc, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match enc {
        Enc::Identity => out.extend_from_slice(body),
        Enc::Gzip => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .unwrap();
        }
        Enc::Zstd => out = zstd::decode_all(body).unwrap(),
        Enc::Br => {
            brotli::Decompressor::new(body, 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
    }
    out
}

/// Compressible text of about 40 KiB, different for each `seed`.
pub fn text(seed: u32) -> Vec<u8> {
    (0..1000)
        .map(|i| format!("line {i:04} of file {seed}: the quick brown fox jumps\n"))
        .collect::<String>()
        .into_bytes()
}
