//! dm-verity hash trees in `veritysetup format`'s on-disk layout: build one for an image
//! (vendor side), check one against a root hash in userspace, and describe the table a
//! dm-verity mapping needs (the ioctls themselves are in [`super::dm`]).
//!
//! Layout (what `veritysetup format --hash-offset=DATA_SIZE IMAGE IMAGE` writes): the data
//! (a whole number of 4096-byte blocks), then one 4096-byte block whose first 512 bytes are
//! the verity superblock (version 1, hash type 1, sha256, data and hash blocks of 4096 bytes,
//! a 32-byte random salt, a random UUID), then the hash levels, the top level first. Each hash
//! block holds 128 SHA-256 digests of `salt || block`, zero-padded; the root hash is
//! `sha256(salt || top block)`. The image a slot holds is that whole file; its root hash is
//! carried by the signed manifest.
//!
//! Owns the format only: it never opens paths (callers hand in open files) and never writes
//! anything but the bytes it returns.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt as _;
use std::path::Path;

use sha2::{Digest as _, Sha256};

use crate::error::{Error, IoContext, Result};

/// Data and hash block size.
pub const BLOCK: u64 = 4096;
const DIGEST: usize = 32;
const PER_BLOCK: usize = BLOCK as usize / DIGEST;
const SB_SIGNATURE: &[u8; 8] = b"verity\0\0";
const SB_SIZE: usize = 512;
/// Salt length pristine writes (veritysetup's default); up to 256 are read.
pub const SALT_LEN: usize = 32;

/// What the superblock says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Superblock {
    pub data_blocks: u64,
    pub salt: Vec<u8>,
}

impl Superblock {
    /// Parses and checks a verity superblock: only what pristine can map (version 1, hash
    /// type 1, sha256, 4096-byte blocks).
    pub fn parse(b: &[u8]) -> Result<Superblock> {
        let bad = |why: &str| Error::msg("read verity superblock", why.to_string());
        let b = b.get(..SB_SIZE).ok_or_else(|| bad("truncated"))?;
        if &b[..8] != SB_SIGNATURE {
            return Err(bad("no verity superblock"));
        }
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let mut n8 = [0u8; 8];
        n8.copy_from_slice(&b[72..80]);
        let data_blocks = u64::from_le_bytes(n8);
        let salt_size = usize::from(u16::from_le_bytes([b[80], b[81]]));
        let alg = &b[32..64];
        let alg = &alg[..alg.iter().position(|&c| c == 0).unwrap_or(alg.len())];
        if u32_at(8) != 1 || u32_at(12) != 1 {
            return Err(bad("only version 1, hash type 1 is supported"));
        }
        if alg != b"sha256" {
            return Err(bad(&format!(
                "hash '{}' is not supported (sha256 only)",
                String::from_utf8_lossy(alg)
            )));
        }
        if u64::from(u32_at(64)) != BLOCK || u64::from(u32_at(68)) != BLOCK {
            return Err(bad("only 4096-byte data and hash blocks"));
        }
        if salt_size > 256 || data_blocks < 2 {
            return Err(bad("bad salt size or data size"));
        }
        Ok(Superblock {
            data_blocks,
            salt: b[88..88 + salt_size].to_vec(),
        })
    }

    fn to_bytes(&self, uuid: &[u8; 16]) -> Vec<u8> {
        let mut b = vec![0u8; BLOCK as usize];
        b[..8].copy_from_slice(SB_SIGNATURE);
        b[8..12].copy_from_slice(&1u32.to_le_bytes());
        b[12..16].copy_from_slice(&1u32.to_le_bytes());
        b[16..32].copy_from_slice(uuid);
        b[32..38].copy_from_slice(b"sha256");
        b[64..68].copy_from_slice(&(BLOCK as u32).to_le_bytes());
        b[68..72].copy_from_slice(&(BLOCK as u32).to_le_bytes());
        b[72..80].copy_from_slice(&self.data_blocks.to_le_bytes());
        b[80..82].copy_from_slice(&(self.salt.len() as u16).to_le_bytes());
        b[88..88 + self.salt.len()].copy_from_slice(&self.salt);
        b
    }

    /// Byte offset of the data's end (= where the superblock sits).
    pub fn data_size(&self) -> u64 {
        self.data_blocks * BLOCK
    }

    /// Number of hash blocks of each level, bottom (level 0) first.
    fn level_sizes(&self) -> Vec<u64> {
        let mut sizes = Vec::new();
        let mut n = self.data_blocks;
        loop {
            n = n.div_ceil(PER_BLOCK as u64);
            sizes.push(n);
            if n <= 1 {
                return sizes;
            }
        }
    }

    /// Bytes of superblock plus tree appended after the data.
    pub fn tree_size(&self) -> u64 {
        BLOCK * (1 + self.level_sizes().iter().sum::<u64>())
    }
}

fn salted(salt: &[u8], block: &[u8]) -> [u8; DIGEST] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(block);
    h.finalize().into()
}

/// Packs digests into zero-padded hash blocks.
fn pack(digests: &[[u8; DIGEST]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(digests.len().div_ceil(PER_BLOCK) * BLOCK as usize);
    for group in digests.chunks(PER_BLOCK) {
        for d in group {
            out.extend_from_slice(d);
        }
        out.resize(out.len().div_ceil(BLOCK as usize) * BLOCK as usize, 0);
    }
    out
}

/// Superblock and hash levels (top first), from the level-0 digests; returns them with the
/// root hash.
fn assemble(sb: &Superblock, uuid: &[u8; 16], level0: &[[u8; DIGEST]]) -> (Vec<u8>, [u8; 32]) {
    let mut levels = vec![pack(level0)];
    while levels.last().is_some_and(|l| l.len() > BLOCK as usize) {
        let below = levels.last().map(Vec::as_slice).unwrap_or_default();
        let ds: Vec<_> = below
            .chunks(BLOCK as usize)
            .map(|b| salted(&sb.salt, b))
            .collect();
        levels.push(pack(&ds));
    }
    let top = levels.last().map(Vec::as_slice).unwrap_or_default();
    let root = salted(&sb.salt, top);
    let mut out = sb.to_bytes(uuid);
    for l in levels.iter().rev() {
        out.extend_from_slice(l);
    }
    (out, root)
}

/// The level-0 digests of `blocks` data blocks read from `r`.
fn data_digests(r: &mut dyn Read, blocks: u64, salt: &[u8]) -> io::Result<Vec<[u8; DIGEST]>> {
    // Grows as blocks are actually read: a wrong block count costs nothing up front.
    let mut out = Vec::with_capacity(usize::try_from(blocks).unwrap_or(0).min(1 << 16));
    let mut buf = vec![0u8; BLOCK as usize];
    for _ in 0..blocks {
        r.read_exact(&mut buf)?;
        out.push(salted(salt, &buf));
    }
    Ok(out)
}

/// A built tree: the bytes to append after the data, and the root hash.
pub struct Tree {
    pub appended: Vec<u8>,
    pub root_hash: [u8; 32],
    pub superblock: Superblock,
}

/// Builds the superblock and hash tree for `size` bytes read from `r` (a whole number of
/// 4096-byte blocks, at least two), with a fresh random salt and UUID.
pub fn build(r: &mut dyn Read, path: &Path, size: u64) -> Result<Tree> {
    if size % BLOCK != 0 || size < 2 * BLOCK {
        return Err(Error::invalid(
            "build verity tree of",
            path,
            format!(
                "a verity image must be a whole number of {BLOCK}-byte blocks, at least two \
                 (this one has {size} bytes)"
            ),
        ));
    }
    let mut salt = vec![0u8; SALT_LEN];
    let mut uuid = [0u8; 16];
    crate::util::random_bytes(&mut salt).op("read random salt for", path)?;
    crate::util::random_bytes(&mut uuid).op("read random uuid for", path)?;
    uuid[6] = (uuid[6] & 0x0f) | 0x40;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;
    let sb = Superblock {
        data_blocks: size / BLOCK,
        salt,
    };
    let level0 = data_digests(r, sb.data_blocks, &sb.salt).op("read", path)?;
    let (appended, root_hash) = assemble(&sb, &uuid, &level0);
    Ok(Tree {
        appended,
        root_hash,
        superblock: sb,
    })
}

/// [`build`] for an image file (read once).
pub fn build_for_file(image: &Path) -> Result<Tree> {
    let f = File::open(image).op("open", image)?;
    let size = f.metadata().op("stat", image)?.len();
    build(&mut io::BufReader::with_capacity(1 << 20, f), image, size)
}

impl Tree {
    /// What the manifest records.
    pub fn info(&self) -> VerityInfo {
        VerityInfo {
            root_hash: crate::util::hex(&self.root_hash),
            data_size: self.superblock.data_size(),
        }
    }
}

/// Checks, in userspace, that `f` holds `data_size` bytes of data followed by a superblock and
/// a hash tree that matches both the data and `root_hash` (what `veritysetup verify` checks).
/// Returns the superblock.
pub fn verify(f: &File, path: &Path, data_size: u64, root_hash: &[u8; 32]) -> Result<Superblock> {
    let bad = |why: &str| Error::invalid("verify", path, why.to_string());
    let mut sbb = vec![0u8; BLOCK as usize];
    f.read_exact_at(&mut sbb, data_size)
        .op("read the verity superblock of", path)?;
    let sb = Superblock::parse(&sbb).map_err(|e| e.at(path))?;
    if sb.data_size() != data_size {
        return Err(bad(&format!(
            "verity superblock covers {} bytes, the manifest says {data_size}",
            sb.data_size()
        )));
    }
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&sbb[16..32]);
    let mut reader = AtReader { f, off: 0 };
    let level0 = data_digests(&mut reader, sb.data_blocks, &sb.salt).op("read", path)?;
    let (expect, root) = assemble(&sb, &uuid, &level0);
    if &root != root_hash {
        return Err(bad("the data does not match the verity root hash"));
    }
    let mut stored = vec![0u8; expect.len()];
    f.read_exact_at(&mut stored, data_size)
        .op("read the verity hash tree of", path)?;
    if stored[BLOCK as usize..] != expect[BLOCK as usize..] {
        return Err(bad("the stored hash tree does not match the data"));
    }
    Ok(sb)
}

/// Finds and checks a verity tree in an image that arrives as a stream of bytes, in two passes
/// (for `update sign --verity`, where the image exists only as chunks): the first pass finds
/// the superblock (the first 4096-aligned block holding one whose data size equals its
/// offset) and keeps the tree after it; the second hashes the data with the superblock's salt,
/// and [`StreamCheck::finish`] compares the tree and returns its root hash.
pub struct StreamCheck {
    off: u64,
    block: Vec<u8>,
    found: Option<(Superblock, [u8; 16])>,
    tree: Vec<u8>,
    level0: Vec<[u8; DIGEST]>,
}

impl Default for StreamCheck {
    fn default() -> Self {
        StreamCheck {
            off: 0,
            block: Vec::with_capacity(BLOCK as usize),
            found: None,
            tree: Vec::new(),
            level0: Vec::new(),
        }
    }
}

impl StreamCheck {
    /// Whole 4096-byte blocks of `data` with their offsets, continuing earlier calls.
    fn blocks(&mut self, mut data: &[u8], mut f: impl FnMut(&mut Self, u64, &[u8])) {
        while !data.is_empty() {
            let n = (BLOCK as usize - self.block.len()).min(data.len());
            self.block.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.block.len() == BLOCK as usize {
                let b = std::mem::take(&mut self.block);
                let off = self.off;
                self.off += BLOCK;
                f(self, off, &b);
                self.block = b;
                self.block.clear();
            }
        }
    }

    /// First pass.
    pub fn find(&mut self, data: &[u8]) {
        self.blocks(data, |s, off, b| match &s.found {
            None => {
                if let Ok(sb) = Superblock::parse(b) {
                    if sb.data_size() == off {
                        let mut uuid = [0u8; 16];
                        uuid.copy_from_slice(&b[16..32]);
                        s.found = Some((sb, uuid));
                    }
                }
            }
            Some((sb, _)) => {
                if (s.tree.len() as u64) < sb.tree_size() - BLOCK {
                    s.tree.extend_from_slice(b);
                }
            }
        });
    }

    /// Between the passes: whether a superblock was found.
    pub fn second_pass(&mut self) -> Result<()> {
        let Some((sb, _)) = &self.found else {
            return Err(Error::msg(
                "find verity tree",
                "no verity superblock after the data (veritysetup format \
                 --hash-offset=DATA-SIZE appends one)",
            ));
        };
        if (self.tree.len() as u64) != sb.tree_size() - BLOCK {
            return Err(Error::msg(
                "find verity tree",
                "the verity hash tree is truncated",
            ));
        }
        self.off = 0;
        self.block.clear();
        Ok(())
    }

    /// Second pass.
    pub fn hash(&mut self, data: &[u8]) {
        self.blocks(data, |s, off, b| {
            if let Some((sb, _)) = &s.found {
                if off < sb.data_size() {
                    let d = salted(&sb.salt, b);
                    s.level0.push(d);
                }
            }
        });
    }

    /// The checked tree's description for the manifest.
    pub fn finish(self) -> Result<VerityInfo> {
        let bad = |why| Error::msg("check verity tree", why);
        let (sb, uuid) = self.found.ok_or_else(|| bad("no verity superblock"))?;
        let (expect, root) = assemble(&sb, &uuid, &self.level0);
        if expect[BLOCK as usize..] != self.tree[..] {
            return Err(bad("the verity hash tree does not match the data"));
        }
        Ok(VerityInfo {
            root_hash: crate::util::hex(&root),
            data_size: sb.data_size(),
        })
    }
}

struct AtReader<'a> {
    f: &'a File,
    off: u64,
}

impl Read for AtReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.f.read_at(buf, self.off)?;
        self.off += n as u64;
        Ok(n)
    }
}

/// The dm-verity target parameters for data and hash on the same device `dev`
/// (`MAJOR:MINOR`), as `veritysetup open` would load them.
pub fn table_params(dev: &str, sb: &Superblock, root_hash: &[u8; 32]) -> String {
    let salt = if sb.salt.is_empty() {
        "-".to_string()
    } else {
        crate::util::hex(&sb.salt)
    };
    format!(
        "1 {dev} {dev} {BLOCK} {BLOCK} {} {} sha256 {} {salt}",
        sb.data_blocks,
        sb.data_blocks + 1,
        crate::util::hex(root_hash)
    )
}

/// The manifest's `[verity]` table: the image is `data-size` bytes of data followed by the
/// superblock and hash tree whose root hash is `root-hash` (hex).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct VerityInfo {
    pub root_hash: String,
    pub data_size: u64,
}

impl VerityInfo {
    /// Checks it against the image size.
    pub fn check(&self, image_size: u64) -> Result<()> {
        let bad = |why| Error::msg("check verity description", why);
        parse_root_hash(&self.root_hash)
            .ok_or_else(|| bad(format!("bad verity root hash '{}'", self.root_hash)))?;
        let sb = Superblock {
            data_blocks: self.data_size / BLOCK,
            salt: Vec::new(),
        };
        if self.data_size % BLOCK != 0
            || sb.data_blocks < 2
            || self.data_size.checked_add(sb.tree_size()) != Some(image_size)
        {
            return Err(bad(format!(
                "verity data size {} does not fit an image of {image_size} bytes",
                self.data_size
            )));
        }
        Ok(())
    }

    /// The root hash as bytes (checked by [`VerityInfo::check`]).
    pub fn root(&self) -> Option<[u8; 32]> {
        parse_root_hash(&self.root_hash)
    }

    pub fn to_toml(&self) -> String {
        format!(
            "\n[verity]\nroot-hash = \"{}\"\ndata-size = {}\n",
            self.root_hash, self.data_size
        )
    }
}

/// Parses a 64-digit hex root hash.
pub fn parse_root_hash(s: &str) -> Option<[u8; 32]> {
    crate::util::unhex(s)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_shape_and_roundtrip() {
        for blocks in [2u64, 128, 129, 128 * 128 + 1] {
            let data: Vec<u8> = (0..blocks * BLOCK).map(|i| (i * 7 % 251) as u8).collect();
            let t = build(&mut data.as_slice(), Path::new("img"), data.len() as u64).unwrap();
            assert_eq!(t.appended.len() as u64, t.superblock.tree_size());
            assert_eq!(
                Superblock::parse(&t.appended).unwrap(),
                t.superblock,
                "{blocks}"
            );
            let levels = t.superblock.level_sizes();
            assert_eq!(*levels.last().unwrap(), 1);
            let p = crate::util::test_dir("verity-unit").join(format!("img{blocks}"));
            let mut img = data.clone();
            img.extend_from_slice(&t.appended);
            std::fs::write(&p, &img).unwrap();
            let f = File::open(&p).unwrap();
            assert!(verify(&f, Path::new("img"), data.len() as u64, &t.root_hash).is_ok());
            let mut wrong = t.root_hash;
            wrong[0] ^= 1;
            assert!(verify(&f, Path::new("img"), data.len() as u64, &wrong).is_err());
            img[(blocks * BLOCK / 2) as usize] ^= 1;
            std::fs::write(&p, &img).unwrap();
            let f = File::open(&p).unwrap();
            assert!(verify(&f, Path::new("img"), data.len() as u64, &t.root_hash).is_err());
        }
        assert!(build(&mut [0u8; 4097].as_slice(), Path::new("img"), 4097).is_err());
        assert!(build(&mut [0u8; 4096].as_slice(), Path::new("img"), 4096).is_err());
    }

    #[test]
    fn stream_check_matches_build() {
        let data: Vec<u8> = (0..130 * BLOCK).map(|i| (i * 13 % 241) as u8).collect();
        let t = build(&mut data.as_slice(), Path::new("img"), data.len() as u64).unwrap();
        let mut img = data.clone();
        img.extend_from_slice(&t.appended);
        let run = |img: &[u8]| {
            let mut s = StreamCheck::default();
            for piece in img.chunks(1000) {
                s.find(piece);
            }
            s.second_pass()?;
            for piece in img.chunks(777) {
                s.hash(piece);
            }
            s.finish()
        };
        assert_eq!(run(&img).unwrap(), t.info());
        let mut bad = img.clone();
        bad[5] ^= 1;
        assert!(run(&bad).is_err());
        assert!(run(&data).is_err());
        assert!(run(&img[..img.len() - 1]).is_err());
    }

    #[test]
    fn superblock_refusals() {
        let sb = Superblock {
            data_blocks: 9,
            salt: vec![1; 32],
        };
        let good = sb.to_bytes(&[0; 16]);
        assert_eq!(Superblock::parse(&good).unwrap(), sb);
        for (at, v) in [
            (0usize, b'X'),
            (8, 2),
            (12, 0),
            (32, b'm'),
            (65, 0x20),
            (81, 9),
        ] {
            let mut b = good.clone();
            b[at] = v;
            assert!(Superblock::parse(&b).is_err(), "byte {at}");
        }
        assert!(Superblock::parse(&good[..100]).is_err());
    }
}
