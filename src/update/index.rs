//! casync's blob index (`.caibx`): parse with strict bounds, and write byte-compatible files.
//!
//! Layout (little-endian): a 48-byte INDEX header (size 48, type, feature flags, chunk size
//! min/avg/max), a TABLE header (size `u64::MAX`, type), 40-byte records (end offset, 32-byte
//! chunk id), and a 40-byte tail (two zero words, offset of the INDEX header from the TABLE
//! header, TABLE size, marker). Parsing never trusts a size or an offset it has not checked.

use crate::error::{Error, Result};
use crate::util::hex;

pub const INDEX_TYPE: u64 = 0x9682_4d9c_7b12_9ff9;
pub const TABLE_TYPE: u64 = 0xe75b_9e11_2f17_417d;
pub const TAIL_MARKER: u64 = 0x4b4f_050e_5549_ecd1;
/// Feature flag: chunk ids are SHA-512/256 (else SHA-256).
pub const FLAG_SHA512_256: u64 = 0x2000_0000_0000_0000;
/// The flags `casync make` writes for a blob index besides the digest bit
/// (`CA_FORMAT_EXCLUDE_NODUMP | CA_FORMAT_EXCLUDE_FILE`).
pub const BLOB_FLAGS: u64 = 0x9000_0000_0000_0000;
/// casync's largest allowed chunk size (`CA_CHUNK_SIZE_LIMIT_MAX`).
pub const CHUNK_LIMIT_MAX: u64 = 128 * 1024 * 1024;

const HEADER_SIZE: usize = 48;
const TABLE_HEADER_SIZE: usize = 16;
const RECORD_SIZE: usize = 40;

/// The chunk id digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Digest {
    Sha512_256,
    Sha256,
}

impl Digest {
    pub fn name(self) -> &'static str {
        match self {
            Digest::Sha512_256 => "sha512-256",
            Digest::Sha256 => "sha256",
        }
    }

    pub fn parse(s: &str) -> Option<Digest> {
        match s {
            "sha512-256" | "sha512/256" => Some(Digest::Sha512_256),
            "sha256" => Some(Digest::Sha256),
            _ => None,
        }
    }

    /// The chunk id of `data`.
    pub fn id(self, data: &[u8]) -> [u8; 32] {
        use sha2::Digest as _;
        let mut out = [0u8; 32];
        match self {
            Digest::Sha512_256 => out.copy_from_slice(&sha2::Sha512_256::digest(data)),
            Digest::Sha256 => out.copy_from_slice(&sha2::Sha256::digest(data)),
        }
        out
    }
}

/// Chunker parameters (bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkParams {
    pub min: u64,
    pub avg: u64,
    pub max: u64,
}

impl Default for ChunkParams {
    fn default() -> Self {
        ChunkParams {
            min: 16 * 1024,
            avg: 64 * 1024,
            max: 256 * 1024,
        }
    }
}

impl ChunkParams {
    /// Checks the ordering and casync's limits.
    pub fn check(&self) -> Result<()> {
        if self.min < 1 || self.min > self.avg || self.avg > self.max || self.max > CHUNK_LIMIT_MAX
        {
            return Err(Error::msg(
                "check chunk sizes",
                format!(
                    "{}:{}:{} out of range (need 1 <= min <= avg <= max <= {})",
                    self.min, self.avg, self.max, CHUNK_LIMIT_MAX
                ),
            ));
        }
        Ok(())
    }
}

/// One chunk: where it lies in the image and its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk {
    pub offset: u64,
    pub len: u64,
    pub id: [u8; 32],
}

impl Chunk {
    pub fn id_hex(&self) -> String {
        hex(&self.id)
    }
}

/// A parsed blob index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Index {
    pub flags: u64,
    pub params: ChunkParams,
    pub chunks: Vec<Chunk>,
}

/// Bad index data.
fn bad(why: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::msg("parse casync index", why)
}

fn le64(b: &[u8], at: usize) -> Result<u64> {
    b.get(at..at + 8)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| bad(format!("truncated at byte {at}")))
}

impl Index {
    pub fn digest(&self) -> Digest {
        if self.flags & FLAG_SHA512_256 != 0 {
            Digest::Sha512_256
        } else {
            Digest::Sha256
        }
    }

    /// The image size the index describes.
    pub fn size(&self) -> u64 {
        self.chunks.last().map(|c| c.offset + c.len).unwrap_or(0)
    }

    /// Builds an index for `chunks` (which must be contiguous from 0).
    pub fn new(digest: Digest, params: ChunkParams, chunks: Vec<Chunk>) -> Index {
        let flags = BLOB_FLAGS
            | match digest {
                Digest::Sha512_256 => FLAG_SHA512_256,
                Digest::Sha256 => 0,
            };
        Index {
            flags,
            params,
            chunks,
        }
    }

    /// Parses a `.caibx`, refusing anything inconsistent: wrong magic or sizes, chunk sizes out
    /// of casync's limits, an empty or oversized chunk, offsets not strictly increasing, a
    /// truncated table or a missing tail.
    pub fn parse(b: &[u8]) -> Result<Index> {
        if b.len() < HEADER_SIZE + TABLE_HEADER_SIZE + RECORD_SIZE {
            return Err(bad(format!("truncated index ({} bytes)", b.len())));
        }
        if le64(b, 0)? != HEADER_SIZE as u64 || le64(b, 8)? != INDEX_TYPE {
            return Err(bad("not a casync blob index (bad header)"));
        }
        let flags = le64(b, 16)?;
        let params = ChunkParams {
            min: le64(b, 24)?,
            avg: le64(b, 32)?,
            max: le64(b, 40)?,
        };
        params.check()?;
        if le64(b, 48)? != u64::MAX || le64(b, 56)? != TABLE_TYPE {
            return Err(bad("bad table header"));
        }
        let body = b.len() - HEADER_SIZE - TABLE_HEADER_SIZE;
        if body % RECORD_SIZE != 0 {
            return Err(bad(format!("truncated index: table of {body} bytes")));
        }
        let n = body / RECORD_SIZE - 1;
        let tail = HEADER_SIZE + TABLE_HEADER_SIZE + n * RECORD_SIZE;
        if le64(b, tail)? != 0 || le64(b, tail + 8)? != 0 {
            return Err(bad("truncated index: no table tail"));
        }
        if le64(b, tail + 16)? != HEADER_SIZE as u64
            || le64(b, tail + 24)? != (TABLE_HEADER_SIZE + (n + 1) * RECORD_SIZE) as u64
            || le64(b, tail + 32)? != TAIL_MARKER
        {
            return Err(bad("truncated index: bad table tail"));
        }
        let mut chunks = Vec::with_capacity(n);
        let mut start = 0u64;
        for i in 0..n {
            let at = HEADER_SIZE + TABLE_HEADER_SIZE + i * RECORD_SIZE;
            let end = le64(b, at)?;
            if end <= start {
                return Err(bad(format!(
                    "chunk {i}: end offset {end} not after start {start}"
                )));
            }
            let len = end - start;
            if len > params.max {
                return Err(bad(format!(
                    "chunk {i}: size {len} larger than the index's maximum {}",
                    params.max
                )));
            }
            let mut id = [0u8; 32];
            id.copy_from_slice(&b[at + 8..at + 40]);
            chunks.push(Chunk {
                offset: start,
                len,
                id,
            });
            start = end;
        }
        Ok(Index {
            flags,
            params,
            chunks,
        })
    }

    /// The `.caibx` bytes, as casync writes them.
    pub fn to_bytes(&self) -> Vec<u8> {
        let n = self.chunks.len();
        let mut b = Vec::with_capacity(HEADER_SIZE + TABLE_HEADER_SIZE + (n + 1) * RECORD_SIZE);
        for v in [
            HEADER_SIZE as u64,
            INDEX_TYPE,
            self.flags,
            self.params.min,
            self.params.avg,
            self.params.max,
            u64::MAX,
            TABLE_TYPE,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        for c in &self.chunks {
            b.extend_from_slice(&(c.offset + c.len).to_le_bytes());
            b.extend_from_slice(&c.id);
        }
        for v in [
            0,
            0,
            HEADER_SIZE as u64,
            (TABLE_HEADER_SIZE + (n + 1) * RECORD_SIZE) as u64,
            TAIL_MARKER,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b
    }
}

/// The store path of a chunk: `xxxx/<id>.cacnk`.
pub fn chunk_path(id: &[u8; 32]) -> String {
    let h = hex(id);
    format!("{}/{}.cacnk", &h[..4], h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Index {
        let d = Digest::Sha512_256;
        let chunks = vec![
            Chunk {
                offset: 0,
                len: 100,
                id: d.id(b"a"),
            },
            Chunk {
                offset: 100,
                len: 50,
                id: d.id(b"b"),
            },
        ];
        Index::new(
            d,
            ChunkParams {
                min: 16,
                avg: 64,
                max: 256,
            },
            chunks,
        )
    }

    #[test]
    fn roundtrip() {
        let i = sample();
        let b = i.to_bytes();
        assert_eq!(b.len(), 48 + 16 + 3 * 40);
        assert_eq!(Index::parse(&b).unwrap(), i);
        assert_eq!(i.size(), 150);
        assert_eq!(i.digest(), Digest::Sha512_256);
    }

    #[test]
    fn refuses_damage() {
        let b = sample().to_bytes();
        for cut in [0, 10, 60, b.len() - 1, b.len() - 40] {
            assert!(Index::parse(&b[..cut]).is_err(), "cut {cut}");
        }
        // Absurd max chunk size.
        let mut bad = b.clone();
        bad[40..48].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(Index::parse(&bad)
            .unwrap_err()
            .to_string()
            .contains("out of range"));
        // Chunk longer than max.
        let mut bad = b.clone();
        bad[64..72].copy_from_slice(&1000u64.to_le_bytes());
        assert!(Index::parse(&bad).is_err());
        // Offsets going backwards.
        let mut bad = b.clone();
        bad[104..112].copy_from_slice(&10u64.to_le_bytes());
        assert!(Index::parse(&bad)
            .unwrap_err()
            .to_string()
            .contains("not after"));
    }

    #[test]
    fn paths() {
        let id = [0xab; 32];
        assert!(chunk_path(&id).starts_with("abab/abababab"));
        assert!(chunk_path(&id).ends_with(".cacnk"));
    }
}
