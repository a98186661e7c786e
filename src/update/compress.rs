//! Chunk compression as casync stores it: zstd (default), xz or gzip, told apart by their magic
//! bytes. Decompression is bounded: output beyond the caller's limit (the index's maximum chunk
//! size) is an error, so a decompression bomb costs at most that much memory.

use std::io::{self, Read, Write};

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

/// Compresses one chunk.
pub fn compress(c: Compression, data: &[u8]) -> io::Result<Vec<u8>> {
    match c {
        Compression::Zstd => Ok(ruzstd::encoding::compress_to_vec(
            data,
            ruzstd::encoding::CompressionLevel::Fastest,
        )),
        Compression::Xz => {
            let mut out = Vec::new();
            lzma_rs::xz_compress(&mut io::BufReader::new(data), &mut out)?;
            Ok(out)
        }
        Compression::Gzip => Err(io::Error::other("gzip compression is not supported")),
        Compression::None => Ok(data.to_vec()),
    }
}

/// A writer that refuses to grow past a limit.
struct Bounded {
    buf: Vec<u8>,
    limit: usize,
}

impl Write for Bounded {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        if self.buf.len() + b.len() > self.limit {
            return Err(io::Error::other(bomb(self.limit)));
        }
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn bomb(limit: usize) -> String {
    format!("decompresses to more than {limit} bytes, its size in the index")
}

/// Decompresses one stored chunk to at most `limit` bytes. `raw` says the store keeps chunks
/// uncompressed; otherwise the format is detected from the magic bytes.
pub fn decompress(data: &[u8], limit: usize, raw: bool) -> Result<Vec<u8>, String> {
    if raw {
        if data.len() > limit {
            return Err(bomb(limit));
        }
        return Ok(data.to_vec());
    }
    match Compression::detect(data) {
        Some(Compression::Zstd) => {
            let dec = ruzstd::decoding::StreamingDecoder::new(data)
                .map_err(|e| format!("bad zstd data: {e}"))?;
            let mut out = Vec::with_capacity(limit.min(1 << 20));
            dec.take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| format!("bad zstd data: {e}"))?;
            if out.len() > limit {
                return Err(bomb(limit));
            }
            Ok(out)
        }
        Some(Compression::Xz) => {
            let mut w = Bounded {
                buf: Vec::new(),
                limit,
            };
            lzma_rs::xz_decompress(&mut io::BufReader::new(data), &mut w).map_err(|e| {
                let s = e.to_string();
                if s.contains("decompresses to more than") {
                    bomb(limit)
                } else {
                    format!("bad xz data: {s}")
                }
            })?;
            Ok(w.buf)
        }
        Some(Compression::Gzip) => gunzip(data, limit),
        _ => Err("stored chunk is not zstd, xz or gzip data".into()),
    }
}

fn gunzip(d: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    let bad = || "bad gzip header".to_string();
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
            format!("bad gzip data: {e}")
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
            assert!(e.contains("decompresses to more than"), "{c:?}: {e}");
        }
        assert!(decompress(b"garbage", 10, false).is_err());
        assert_eq!(decompress(b"raw", 10, true).unwrap(), b"raw");
        assert!(decompress(b"raw", 2, true).is_err());
    }
}
