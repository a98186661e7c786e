//! The built-in `ssh-host-keys` generator: OpenSSH host keys made by pristine itself, Ed25519
//! (`ed25519-dalek`), ECDSA P-256 (`p256`) and RSA-3072 (`rsa`, on the `crypto-bigint` that
//! `p256` already brings), in OpenSSH's own formats (`openssh-key-v1` private keys, one-line
//! public keys) so `sshd` and `ssh-keygen -l` read them unchanged — the three keys `sshd`
//! loads by default (`ssh-keygen -A` makes the same set).
//!
//! Why in-process and not `ssh-keygen -A` run in the target (measured, see docs/state.md): the
//! initrd runs before the target is bootable — running the target's `ssh-keygen` needs a chroot
//! into a half-provisioned root (its libraries, `/dev`, and root privileges, which an offline
//! `--root` image build may not have) and makes key generation depend on a package the image
//! may not ship; the native RSA costs about 250 KiB of the binary budget and 0.3–1 s of CPU
//! (prime search, opt-level "s"), once per key lifetime (first boot, after a factory reset).
//! This module is pure: it returns bytes and never touches the file system; the caller writes
//! through `src/fs`.

use p256::elliptic_curve::sec1::ToSec1Point as _;

/// One generated key: file name under `/etc/ssh`, private key file, public key file.
pub struct HostKey {
    pub name: &'static str,
    pub private: Vec<u8>,
    pub public: Vec<u8>,
}

/// The key files the generator makes, private then public, under `/etc/ssh`.
pub const FILES: &[&str] = &[
    "ssh_host_ed25519_key",
    "ssh_host_ed25519_key.pub",
    "ssh_host_ecdsa_key",
    "ssh_host_ecdsa_key.pub",
    "ssh_host_rsa_key",
    "ssh_host_rsa_key.pub",
];

/// Bits of the RSA modulus (`ssh-keygen`'s default).
pub const RSA_BITS: usize = 3072;

/// Generates the host key `name` (a private key file name of [`FILES`]) from the kernel's
/// random source.
pub fn generate(name: &str, comment: &str) -> std::io::Result<HostKey> {
    let mut check = [0u8; 4];
    crate::util::random_bytes(&mut check)?;
    match name {
        "ssh_host_ed25519_key" => {
            let mut seed = [0u8; 32];
            crate::util::random_bytes(&mut seed)?;
            Ok(ed25519(&seed, check, comment))
        }
        "ssh_host_ecdsa_key" => {
            // A P-256 scalar must be non-zero and below the group order; retry the rare miss.
            for _ in 0..16 {
                let mut d = [0u8; 32];
                crate::util::random_bytes(&mut d)?;
                if let Some(k) = ecdsa(&d, check, comment) {
                    return Ok(k);
                }
            }
            Err(std::io::Error::other("no valid P-256 scalar drawn"))
        }
        "ssh_host_rsa_key" => {
            let key = rsa::PrivateKey::new(&mut KernelRng, RSA_BITS)
                .map_err(|e| std::io::Error::other(format!("RSA key generation: {e}")))?;
            rsa_key(&key, check, comment)
        }
        other => Err(std::io::Error::other(format!("no generator for {other}"))),
    }
}

/// The kernel's random source (`getrandom`) as the RNG `rsa` draws primes from.
struct KernelRng;

impl rsa::rand_core::TryRng for KernelRng {
    type Error = std::io::Error;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        crate::util::random_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        crate::util::random_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        crate::util::random_bytes(dst)
    }
}

impl rsa::rand_core::TryCryptoRng for KernelRng {}

/// An RSA key in OpenSSH's formats: public `e, n`; private `n, e, d, iqmp, p, q`.
pub fn rsa_key(key: &rsa::PrivateKey, check: [u8; 4], comment: &str) -> std::io::Result<HostKey> {
    use rsa::traits::{PrivateKeyParts, PublicKeyParts};
    let be = |n: &rsa::BoxedUint| n.to_be_bytes_trimmed_vartime();
    let [p, q] = key.primes() else {
        return Err(std::io::Error::other("RSA key without two primes"));
    };
    let iqmp = key
        .crt_coefficient()
        .ok_or_else(|| std::io::Error::other("RSA primes without a CRT coefficient"))?;
    let n = be(key.n().as_ref());
    let e = be(key.e());
    let mut blob = Vec::new();
    string(&mut blob, b"ssh-rsa");
    mpint(&mut blob, &e);
    mpint(&mut blob, &n);
    let mut private = Vec::new();
    string(&mut private, b"ssh-rsa");
    mpint(&mut private, &n);
    mpint(&mut private, &e);
    mpint(&mut private, &be(key.d()));
    mpint(&mut private, &be(&iqmp));
    mpint(&mut private, &be(p.as_ref()));
    mpint(&mut private, &be(q.as_ref()));
    Ok(HostKey {
        name: "ssh_host_rsa_key",
        private: armor(&blob, &private, check, comment),
        public: public_line("ssh-rsa", &blob, comment),
    })
}

/// An Ed25519 key from its 32-byte seed.
pub fn ed25519(seed: &[u8; 32], check: [u8; 4], comment: &str) -> HostKey {
    let sk = ed25519_dalek::SigningKey::from_bytes(seed);
    let pk = sk.verifying_key().to_bytes();
    let mut blob = Vec::new();
    string(&mut blob, b"ssh-ed25519");
    string(&mut blob, &pk);
    let mut private = Vec::new();
    string(&mut private, b"ssh-ed25519");
    string(&mut private, &pk);
    let mut full = seed.to_vec();
    full.extend_from_slice(&pk);
    string(&mut private, &full);
    HostKey {
        name: "ssh_host_ed25519_key",
        private: armor(&blob, &private, check, comment),
        public: public_line("ssh-ed25519", &blob, comment),
    }
}

/// An ECDSA nistp256 key from its 32-byte scalar, `None` when the bytes are not a valid scalar.
pub fn ecdsa(d: &[u8; 32], check: [u8; 4], comment: &str) -> Option<HostKey> {
    let sk = p256::SecretKey::from_slice(d).ok()?;
    let point = sk.public_key().to_sec1_point(false);
    let q = point.as_bytes();
    let mut blob = Vec::new();
    string(&mut blob, b"ecdsa-sha2-nistp256");
    string(&mut blob, b"nistp256");
    string(&mut blob, q);
    let mut private = Vec::new();
    string(&mut private, b"ecdsa-sha2-nistp256");
    string(&mut private, b"nistp256");
    string(&mut private, q);
    mpint(&mut private, d);
    Some(HostKey {
        name: "ssh_host_ecdsa_key",
        private: armor(&blob, &private, check, comment),
        public: public_line("ecdsa-sha2-nistp256", &blob, comment),
    })
}

fn u32be(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
}

/// An SSH wire `string`.
fn string(out: &mut Vec<u8>, s: &[u8]) {
    u32be(out, s.len());
    out.extend_from_slice(s);
}

/// An SSH wire `mpint` of a non-negative big-endian number.
fn mpint(out: &mut Vec<u8>, n: &[u8]) {
    let first = n.iter().position(|&b| b != 0).unwrap_or(n.len());
    let n = &n[first..];
    let pad = n.first().is_some_and(|&b| b & 0x80 != 0);
    u32be(out, n.len() + usize::from(pad));
    if pad {
        out.push(0);
    }
    out.extend_from_slice(n);
}

/// The unencrypted `openssh-key-v1` container, base64 in PEM-style armor.
fn armor(blob: &[u8], key: &[u8], check: [u8; 4], comment: &str) -> Vec<u8> {
    let mut section = Vec::new();
    section.extend_from_slice(&check);
    section.extend_from_slice(&check);
    section.extend_from_slice(key);
    string(&mut section, comment.as_bytes());
    let mut pad = 1u8;
    while section.len() % 8 != 0 {
        section.push(pad);
        pad += 1;
    }
    let mut raw = b"openssh-key-v1\0".to_vec();
    string(&mut raw, b"none");
    string(&mut raw, b"none");
    string(&mut raw, b"");
    u32be(&mut raw, 1);
    string(&mut raw, blob);
    string(&mut raw, &section);
    let b64 = base64(&raw);
    let mut out = b"-----BEGIN OPENSSH PRIVATE KEY-----\n".to_vec();
    for chunk in b64.as_bytes().chunks(70) {
        out.extend_from_slice(chunk);
        out.push(b'\n');
    }
    out.extend_from_slice(b"-----END OPENSSH PRIVATE KEY-----\n");
    out
}

fn public_line(kind: &str, blob: &[u8], comment: &str) -> Vec<u8> {
    format!("{kind} {} {comment}\n", base64(blob)).into_bytes()
}

/// Standard base64 with padding.
fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                s.push('=');
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn mpint_encoding() {
        let mut v = Vec::new();
        mpint(&mut v, &[0, 0x80, 1]);
        assert_eq!(v, [0, 0, 0, 3, 0, 0x80, 1]);
        v.clear();
        mpint(&mut v, &[0, 0x7f]);
        assert_eq!(v, [0, 0, 0, 1, 0x7f]);
    }

    #[test]
    fn ed25519_rfc8032_public_key() {
        // RFC 8032 test 1: secret 9d61b1…7f60 has public key d75a98…511a.
        let seed =
            crate::util::unhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
                .and_then(|v| <[u8; 32]>::try_from(v).ok())
                .expect("test vector");
        let k = ed25519(&seed, [1, 2, 3, 4], "t");
        let line = String::from_utf8(k.public).expect("ascii");
        // base64 of string("ssh-ed25519") + string(pk)
        let mut blob = Vec::new();
        string(&mut blob, b"ssh-ed25519");
        string(
            &mut blob,
            &crate::util::unhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
                .expect("hex"),
        );
        assert_eq!(line, format!("ssh-ed25519 {} t\n", base64(&blob)));
        assert!(k
            .private
            .starts_with(b"-----BEGIN OPENSSH PRIVATE KEY-----\n"));
    }
}
