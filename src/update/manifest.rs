//! The signed update manifest (`manifest.toml` + `manifest.toml.minisig`) and minisign keys.
//!
//! The manifest names the version, the image size and SHA-256, the index file and its SHA-256,
//! the chunk parameters and the store. Its minisign signature (Ed25519, prehashed or legacy, as
//! made by `minisign -S` or by `pristine update make/sign`) is checked against the public keys
//! shipped in the running `/usr` before anything else of the update is read.

use std::io::Cursor;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::compress::Compression;
use super::index::{ChunkParams, Digest};
use crate::error::{Error, Result};
use crate::fs::Root;

pub const MANIFEST: &str = "manifest.toml";
pub const SIGNATURE: &str = "manifest.toml.minisig";
/// In-root directory of trusted public keys.
pub const KEYS_DIR: &str = "/usr/lib/pristine/keys";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Manifest {
    pub format: u32,
    pub version: String,
    pub image_size: u64,
    /// `sha256:HEX` of the whole image.
    pub image_digest: String,
    /// File name of the index, relative to the source.
    pub index: String,
    /// `sha256:HEX` of the index file.
    pub index_digest: String,
    /// Chunk id digest: `sha512-256` or `sha256`.
    pub chunk_digest: String,
    /// `zstd`, `xz`, `none`, or `auto` (detect per chunk: stores made by casync).
    pub compression: String,
    pub chunk_size_min: u64,
    pub chunk_size_avg: u64,
    pub chunk_size_max: u64,
    /// Store directory, relative to the source.
    pub store: String,
    /// The image carries a dm-verity hash tree (`[verity]` table; see `update::verity`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verity: Option<super::verity::VerityInfo>,
}

fn safe_rel(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('/')
        && s.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/+~".contains(&b))
}

impl Manifest {
    pub fn parse(text: &str) -> Result<Manifest> {
        let bad = |why: String| Error::msg("parse manifest", why);
        let m: Manifest = toml::from_str(text).map_err(|e| bad(e.message().trim().to_string()))?;
        if m.format != 1 {
            return Err(bad(format!("unsupported format {}", m.format)));
        }
        if !safe_rel(&m.index) || !safe_rel(&m.store) {
            return Err(bad("index/store must be plain relative paths".into()));
        }
        if m.version.is_empty() || m.version.chars().any(|c| c.is_control() || c == '/') {
            return Err(bad("bad version".into()));
        }
        m.digest()?;
        m.params().check().map_err(|e| bad(e.reason()))?;
        if m.compression != "auto" && Compression::parse(&m.compression).is_none() {
            return Err(bad(format!("unknown compression '{}'", m.compression)));
        }
        if let Some(v) = &m.verity {
            v.check(m.image_size).map_err(|e| bad(e.reason()))?;
        }
        for d in [&m.image_digest, &m.index_digest] {
            if parse_sha256(d).is_none() {
                return Err(bad(format!("bad digest '{d}' (want sha256:HEX)")));
            }
        }
        Ok(m)
    }

    pub fn to_toml(&self) -> String {
        fn q(s: &str) -> String {
            let mut o = String::from("\"");
            for c in s.chars() {
                match c {
                    '"' => o.push_str("\\\""),
                    '\\' => o.push_str("\\\\"),
                    c if c.is_control() => o.push_str(&format!("\\u{:04X}", c as u32)),
                    c => o.push(c),
                }
            }
            o.push('"');
            o
        }
        format!(
            "format = {}\nversion = {}\nimage-size = {}\nimage-digest = {}\nindex = {}\n\
             index-digest = {}\nchunk-digest = {}\ncompression = {}\nchunk-size-min = {}\n\
             chunk-size-avg = {}\nchunk-size-max = {}\nstore = {}\n",
            self.format,
            q(&self.version),
            self.image_size,
            q(&self.image_digest),
            q(&self.index),
            q(&self.index_digest),
            q(&self.chunk_digest),
            q(&self.compression),
            self.chunk_size_min,
            self.chunk_size_avg,
            self.chunk_size_max,
            q(&self.store),
        ) + &self
            .verity
            .as_ref()
            .map(|v| v.to_toml())
            .unwrap_or_default()
    }

    pub fn digest(&self) -> Result<Digest> {
        Digest::parse(&self.chunk_digest).ok_or_else(|| {
            Error::msg(
                "parse manifest",
                format!("unknown chunk digest '{}'", self.chunk_digest),
            )
        })
    }

    pub fn params(&self) -> ChunkParams {
        ChunkParams {
            min: self.chunk_size_min,
            avg: self.chunk_size_avg,
            max: self.chunk_size_max,
        }
    }
}

/// `sha256:HEX` → bytes.
pub fn parse_sha256(s: &str) -> Option<[u8; 32]> {
    let h = s.strip_prefix("sha256:")?;
    crate::util::unhex(h)?.try_into().ok()
}

pub fn sha256_tag(data: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", crate::util::hex(&sha2::Sha256::digest(data)))
}

/// A trusted public key and where it came from.
pub struct TrustedKey {
    pub file: String,
    pub key: minisign::PublicKey,
}

/// Reads `usr/lib/pristine/keys/*.pub` from the running root. Unreadable keys are reported and
/// skipped.
pub fn load_keys(root: &Root) -> (Vec<TrustedKey>, Vec<String>) {
    let mut keys = Vec::new();
    let mut errs = Vec::new();
    let Ok(entries) = root.read_dir(Path::new(KEYS_DIR)) else {
        return (keys, errs);
    };
    for e in entries {
        let name = e.name.to_string_lossy().to_string();
        if !name.ends_with(".pub") {
            continue;
        }
        let p = Path::new(KEYS_DIR).join(&name);
        let text = match root.read_to_string(&p) {
            Ok(t) => t,
            Err(err) => {
                errs.push(format!("{}: {err}", p.display()));
                continue;
            }
        };
        match public_key_from_text(&text) {
            Some(key) => keys.push(TrustedKey {
                file: p.display().to_string(),
                key,
            }),
            None => errs.push(format!(
                "{}: not a minisign public key, ignoring",
                p.display()
            )),
        }
    }
    (keys, errs)
}

/// Parses a minisign public key file (comment line + base64) or a bare base64 key.
pub fn public_key_from_text(text: &str) -> Option<minisign::PublicKey> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))?;
    minisign::PublicKey::from_base64(line).ok()
}

/// Why a signature was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum SigError {
    Malformed(String),
    UnknownKey(String),
    Bad(String),
}

impl std::fmt::Display for SigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SigError::Malformed(s) => write!(f, "malformed signature: {s}"),
            SigError::UnknownKey(k) => write!(f, "signed with unknown key {k}"),
            SigError::Bad(s) => write!(f, "bad signature: {s}"),
        }
    }
}

impl From<SigError> for Error {
    fn from(e: SigError) -> Error {
        Error::msg("verify signature", e.to_string())
    }
}

fn keynum_hex(k: &[u8]) -> String {
    let mut v = k.to_vec();
    v.reverse();
    crate::util::hex(&v).to_uppercase()
}

/// Verifies `sig_text` over `data` with whichever trusted key made it; returns the key file.
pub fn verify(data: &[u8], sig_text: &str, keys: &[TrustedKey]) -> Result<String, SigError> {
    let sig = minisign::SignatureBox::from_string(sig_text)
        .map_err(|e| SigError::Malformed(e.to_string()))?;
    // minisign 0.10 indexes the global signature without checking its length (a short one
    // panics in `verify`): it must be exactly one Ed25519 signature.
    let global = sig_text.lines().nth(3).and_then(base64_decode);
    if global.as_ref().map(Vec::len) != Some(64) {
        return Err(SigError::Malformed(
            "the global signature is not 64 bytes".into(),
        ));
    }
    let Some(k) = keys.iter().find(|k| k.key.keynum() == sig.keynum()) else {
        return Err(SigError::UnknownKey(keynum_hex(sig.keynum())));
    };
    minisign::verify(&k.key, &sig, Cursor::new(data), true, false, true)
        .map_err(|e| SigError::Bad(e.to_string()))?;
    Ok(k.file.clone())
}

/// Standard base64 (with padding) → bytes.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let s = s.trim().trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for q in s.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in q.iter().enumerate() {
            n |= val(c)? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        match q.len() {
            4 => out.extend_from_slice(&bytes[1..4]),
            3 => out.extend_from_slice(&bytes[1..3]),
            2 => out.push(bytes[1]),
            _ => return None,
        }
    }
    Some(out)
}

/// Loads a minisign secret key: unencrypted keys (`minisign -G -W`) directly; encrypted ones
/// with the password in `$PRISTINE_KEY_PASSWORD`, else prompted on the terminal. (minisign 0.11
/// writes unencrypted keys without a checksum, so those are checked by a test signature.)
pub fn load_secret_key(text: &str) -> Result<minisign::SecretKey> {
    let bad = |why: String| Error::msg("load secret key", why);
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
        .ok_or_else(|| bad("no key in file".into()))?;
    let raw = base64_decode(line).ok_or_else(|| bad("key is not base64".into()))?;
    if raw.len() != 158 || &raw[0..2] != b"Ed" {
        return Err(bad("not a minisign Ed25519 secret key".into()));
    }
    if raw[2..4] == [0, 0] {
        let sk = minisign::SecretKey::from_bytes(&raw).map_err(|e| bad(e.to_string()))?;
        let pk = minisign::PublicKey::from_secret_key(&sk).map_err(|e| bad(e.to_string()))?;
        minisign::sign(Some(&pk), &sk, Cursor::new(b"check"), None, None)
            .map_err(|_| bad("corrupted secret key".into()))?;
        return Ok(sk);
    }
    let sbox = minisign::SecretKeyBox::from_string(text).map_err(|e| bad(e.to_string()))?;
    let pw = std::env::var("PRISTINE_KEY_PASSWORD").ok();
    sbox.into_secret_key(pw).map_err(|e| bad(e.to_string()))
}

/// Signs `data`; returns the `.minisig` text.
pub fn sign(sk: &minisign::SecretKey, data: &[u8], trusted: &str) -> Result<String> {
    let sbox = minisign::sign(None, sk, Cursor::new(data), Some(trusted), None)
        .map_err(|e| Error::msg("sign manifest", e.to_string()))?;
    Ok(sbox.into_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_roundtrip_and_checks() {
        let m = Manifest {
            format: 1,
            version: "2.0".into(),
            image_size: 10,
            image_digest: sha256_tag(b"x"),
            index: "image.caibx".into(),
            index_digest: sha256_tag(b"y"),
            chunk_digest: "sha512-256".into(),
            compression: "zstd".into(),
            verity: None,
            chunk_size_min: 16384,
            chunk_size_avg: 65536,
            chunk_size_max: 262144,
            store: "image.castr".into(),
        };
        assert_eq!(Manifest::parse(&m.to_toml()).unwrap(), m);
        let bad = m.to_toml().replace("image.castr", "../etc");
        assert!(Manifest::parse(&bad).is_err());
        let bad = m.to_toml().replace("sha512-256", "md5");
        assert!(Manifest::parse(&bad).is_err());
    }

    #[test]
    fn encrypted_secret_key_with_password_from_env() {
        let kp = minisign::KeyPair::generate_encrypted_keypair(Some("pw".into())).unwrap();
        let text = kp.sk.to_box(None).unwrap().into_string();
        std::env::set_var("PRISTINE_KEY_PASSWORD", "pw");
        let sk = load_secret_key(&text).unwrap();
        let sig = sign(&sk, b"data", "t").unwrap();
        let keys = vec![TrustedKey {
            file: "k.pub".into(),
            key: kp.pk.clone(),
        }];
        assert!(verify(b"data", &sig, &keys).is_ok());
        std::env::set_var("PRISTINE_KEY_PASSWORD", "wrong");
        assert!(load_secret_key(&text).is_err());
        std::env::remove_var("PRISTINE_KEY_PASSWORD");
    }

    #[test]
    fn base64() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVsbG8h").unwrap(), b"hello!");
        assert!(base64_decode("a*").is_none());
    }

    #[test]
    fn sign_and_verify() {
        let kp = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
        let sig = sign(&kp.sk, b"hello", "t").unwrap();
        let keys = vec![TrustedKey {
            file: "k.pub".into(),
            key: kp.pk.clone(),
        }];
        assert_eq!(verify(b"hello", &sig, &keys).unwrap(), "k.pub");
        assert!(matches!(
            verify(b"hellO", &sig, &keys),
            Err(SigError::Bad(_))
        ));
        let other = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
        let keys2 = vec![TrustedKey {
            file: "o.pub".into(),
            key: other.pk,
        }];
        assert!(matches!(
            verify(b"hello", &sig, &keys2),
            Err(SigError::UnknownKey(_))
        ));
        // The key text form round-trips.
        let text = kp.pk.to_box().unwrap().into_string();
        assert!(public_key_from_text(&text).is_some());
    }
}
