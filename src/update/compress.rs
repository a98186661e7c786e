//! Chunk compression as casync stores it: zstd (default), xz or gzip, told apart by their magic
//! bytes, through the reference libraries (libzstd, liblzma; built from source, linked
//! statically) at casync's levels. Decompression is bounded before it starts: the decoder's
//! memory and output are limited by the chunk's size in the index (see [`decompress`]), so a
//! decompression bomb or a header asking for a huge window costs at most that much. Never
//! reads or writes files: bytes in, bytes out.

use std::io;

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Zstd,
    Xz,
    Gzip,
    /// Raw chunk bytes (pristine only; casync always compresses).
    None,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::Zstd => "zstd",
            Compression::Xz => "xz",
            Compression::Gzip => "gzip",
            Compression::None => "none",
        }
    }

    pub fn parse(s: &str) -> Option<Compression> {
        match s {
            "zstd" => Some(Compression::Zstd),
            "xz" => Some(Compression::Xz),
            "gzip" => Some(Compression::Gzip),
            "none" => Some(Compression::None),
            _ => None,
        }
    }

    /// The compression a stored chunk uses, by its magic bytes.
    pub fn detect(data: &[u8]) -> Option<Compression> {
        if data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Some(Compression::Zstd)
        } else if data.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Some(Compression::Xz)
        } else if data.starts_with(&[0x1f, 0x8b]) {
            Some(Compression::Gzip)
        } else {
            None
        }
    }
}

/// casync's levels: zstd 3 (the library default), xz preset 6 (`LZMA_PRESET_DEFAULT`).
const ZSTD_LEVEL: i32 = 3;
const XZ_PRESET: u32 = 6;
/// A zstd frame may declare a window of at most 2^this bytes (casync's level-3 frames declare
/// 2 MiB); the one-pass decoder writes straight into the output and allocates no window at all.
const ZSTD_WINDOW_LOG_MIN: u32 = 23;
/// liblzma may use at most this much beyond the chunk size: casync's xz chunks declare preset
/// 6's 8 MiB dictionary whatever their size, and liblzma's decoder state is below 64 KiB.
const XZ_DICT_ALLOWANCE: u64 = 8 << 20;
const XZ_OVERHEAD: u64 = 1 << 20;

/// One compressor, reused for every chunk a worker stores.
pub struct Encoder {
    kind: Compression,
    zstd: Option<zstd::bulk::Compressor<'static>>,
    xz: Option<xz2::stream::Filters>,
}

impl Encoder {
    /// An encoder for chunks of at most `max_chunk` bytes (the xz dictionary is no larger:
    /// a bigger one compresses no better and makes every decoder reserve more).
    pub fn new(kind: Compression, max_chunk: u64) -> io::Result<Encoder> {
        let mut e = Encoder {
            kind,
            zstd: None,
            xz: None,
        };
        match kind {
            Compression::Zstd => e.zstd = Some(zstd::bulk::Compressor::new(ZSTD_LEVEL)?),
            Compression::Xz => {
                let mut o =
                    xz2::stream::LzmaOptions::new_preset(XZ_PRESET).map_err(io::Error::other)?;
                let dict = max_chunk.clamp(4096, 8 << 20).next_power_of_two();
                o.dict_size(u32::try_from(dict).unwrap_or(8 << 20));
                let mut f = xz2::stream::Filters::new();
                f.lzma2(&o);
                e.xz = Some(f);
            }
            Compression::Gzip => return Err(io::Error::other("gzip compression is not supported")),
            Compression::None => {}
        }
        Ok(e)
    }

    /// Compresses one chunk.
    pub fn compress(&mut self, data: &[u8]) -> io::Result<Vec<u8>> {
        if let Some(z) = &mut self.zstd {
            return z.compress(data);
        }
        if let Some(f) = &self.xz {
            // The chunk id (a SHA-256 over the content) is the integrity check; a CRC32 keeps
            // plain `xz -t` useful at 4 bytes a chunk.
            let mut s = xz2::stream::Stream::new_stream_encoder(f, xz2::stream::Check::Crc32)
                .map_err(io::Error::other)?;
            let mut out = Vec::with_capacity(data.len() / 2 + 128);
            loop {
                let done = s.total_in() as usize;
                let rest = data.get(done..).unwrap_or_default();
                if out.capacity() - out.len() < 4096 {
                    out.reserve(data.len() / 4 + 4096);
                }
                match s.process_vec(rest, &mut out, xz2::stream::Action::Finish) {
                    Ok(xz2::stream::Status::StreamEnd) => return Ok(out),
                    Ok(_) => {}
                    Err(e) => return Err(io::Error::other(e)),
                }
            }
        }
        match self.kind {
            Compression::None => Ok(data.to_vec()),
            _ => Err(io::Error::other("no encoder")),
        }
    }
}

/// Compresses one chunk (a fresh encoder; [`Encoder`] reuses one).
pub fn compress(c: Compression, data: &[u8]) -> io::Result<Vec<u8>> {
    Encoder::new(c, data.len() as u64)?.compress(data)
}

/// Bad stored chunk data.
fn corrupt(why: String) -> Error {
    Error::msg("decompress chunk", why)
}

fn bomb(limit: usize) -> Error {
    corrupt(format!(
        "decompresses to more than {limit} bytes, its size in the index"
    ))
}

/// Decompresses one stored chunk to at most `limit` bytes. `raw` says the store keeps chunks
/// uncompressed; otherwise the format is detected from the magic bytes.
///
/// Memory is bounded by `limit` before any decoding: zstd decodes in one pass into a buffer of
/// `limit` bytes (no window buffer; frames declaring a window above
/// max(2^23, `limit`) are refused); liblzma gets a memory limit of the chunk size plus casync's
/// 8 MiB dictionary, so a header asking for a larger dictionary is refused before a byte is
/// decoded, and its output stops at `limit`.
pub fn decompress(data: &[u8], limit: usize, raw: bool) -> Result<Vec<u8>> {
    if raw {
        if data.len() > limit {
            return Err(bomb(limit));
        }
        return Ok(data.to_vec());
    }
    match Compression::detect(data) {
        Some(Compression::Zstd) => unzstd(data, limit),
        Some(Compression::Xz) => unxz(data, limit),
        Some(Compression::Gzip) => gunzip(data, limit),
        _ => Err(corrupt("stored chunk is not zstd, xz or gzip data".into())),
    }
}

fn unzstd(data: &[u8], limit: usize) -> Result<Vec<u8>> {
    let bad = |e: io::Error| corrupt(format!("bad zstd data: {e}"));
    let mut d = zstd::bulk::Decompressor::new().map_err(bad)?;
    let log =
        (usize::BITS - limit.max(1).saturating_sub(1).leading_zeros()).max(ZSTD_WINDOW_LOG_MIN);
    d.set_parameter(zstd::zstd_safe::DParameter::WindowLogMax(log))
        .map_err(bad)?;
    // One byte more than allowed, so that "exactly full" and "wanted more" differ.
    let mut out = Vec::with_capacity(limit.saturating_add(1));
    match d.decompress_to_buffer(data, &mut out) {
        Ok(_) if out.len() > limit => Err(bomb(limit)),
        Ok(_) => Ok(out),
        Err(e) if e.to_string().contains("buffer is too small") => Err(bomb(limit)),
        Err(e) => Err(bad(e)),
    }
}

fn unxz(data: &[u8], limit: usize) -> Result<Vec<u8>> {
    let memlimit = (limit as u64).max(XZ_DICT_ALLOWANCE) + XZ_OVERHEAD;
    let bad = |e: xz2::stream::Error| match e {
        xz2::stream::Error::MemLimit => corrupt(format!(
            "bad xz data: needs more than {memlimit} bytes of memory to decode a chunk of {limit}"
        )),
        e => corrupt(format!("bad xz data: {e}")),
    };
    let mut s = xz2::stream::Stream::new_stream_decoder(memlimit, xz2::stream::CONCATENATED)
        .map_err(bad)?;
    let mut out = Vec::with_capacity(limit.saturating_add(1));
    loop {
        let rest = data.get(s.total_in() as usize..).unwrap_or_default();
        let before = (s.total_in(), out.len());
        match s.process_vec(rest, &mut out, xz2::stream::Action::Finish) {
            Ok(xz2::stream::Status::StreamEnd) => break,
            Ok(_) => {}
            Err(e) => return Err(bad(e)),
        }
        if out.len() > limit {
            return Err(bomb(limit));
        }
        if out.len() == out.capacity() {
            // The output is full and the stream has not ended: more than `limit` bytes.
            return Err(bomb(limit));
        }
        if (s.total_in(), out.len()) == before {
            return Err(corrupt("bad xz data: truncated".into()));
        }
    }
    if out.len() > limit {
        return Err(bomb(limit));
    }
    Ok(out)
}

fn gunzip(d: &[u8], limit: usize) -> Result<Vec<u8>> {
    let bad = || corrupt("bad gzip header".into());
    if d.len() < 18 || d[2] != 8 {
        return Err(bad());
    }
    let flags = d[3];
    let mut p = 10usize;
    if flags & 4 != 0 {
        let xlen =
            *d.get(p).ok_or_else(bad)? as usize | (*d.get(p + 1).ok_or_else(bad)? as usize) << 8;
        p += 2 + xlen;
    }
    for bit in [8u8, 16] {
        if flags & bit != 0 {
            let z = d
                .get(p..)
                .ok_or_else(bad)?
                .iter()
                .position(|&b| b == 0)
                .ok_or_else(bad)?;
            p += z + 1;
        }
    }
    if flags & 2 != 0 {
        p += 2;
    }
    let body = d.get(p..d.len().saturating_sub(8)).ok_or_else(bad)?;
    let out = miniz_oxide::inflate::decompress_to_vec_with_limit(body, limit).map_err(|e| {
        if e.status == miniz_oxide::inflate::TINFLStatus::HasMoreOutput {
            bomb(limit)
        } else {
            corrupt(format!("bad gzip data: {e}"))
        }
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrips_and_bounds() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        for c in [Compression::Zstd, Compression::Xz] {
            let z = compress(c, &data).unwrap();
            assert_eq!(Compression::detect(&z), Some(c));
            assert_eq!(decompress(&z, data.len(), false).unwrap(), data);
            let e = decompress(&z, data.len() - 1, false).unwrap_err();
            assert!(
                e.to_string().contains("decompresses to more than"),
                "{c:?}: {e}"
            );
        }
        assert!(decompress(b"garbage", 10, false).is_err());
        assert_eq!(decompress(b"raw", 10, true).unwrap(), b"raw");
        assert!(decompress(b"raw", 2, true).is_err());
    }
}
