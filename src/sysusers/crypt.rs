//! SHA-512-crypt (`$6$`, Ulrich Drepper's specification, 5000 rounds) for the
//! `passwd.plaintext-password.*` credential. systemd hashes with libcrypt's preferred method
//! (yescrypt on Debian); any crypt(5) method is accepted by PAM, and `$6$` is the strongest one
//! small enough to carry here.

use sha2::{Digest, Sha512};

const ITOA64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn repeat_to(src: &[u8], len: usize) -> Vec<u8> {
    src.iter().copied().cycle().take(len).collect()
}

/// Hashes `password` with `salt` (at most 16 characters are used).
pub fn sha512_crypt(password: &[u8], salt: &str) -> String {
    let salt = &salt.as_bytes()[..salt.len().min(16)];
    let p = password;
    let b = Sha512::new()
        .chain_update(p)
        .chain_update(salt)
        .chain_update(p)
        .finalize();
    let mut a = Sha512::new().chain_update(p).chain_update(salt);
    a.update(repeat_to(&b, p.len()));
    let mut n = p.len();
    while n > 0 {
        if n & 1 == 1 {
            a.update(b);
        } else {
            a.update(p);
        }
        n >>= 1;
    }
    let a = a.finalize();
    let mut dp = Sha512::new();
    for _ in 0..p.len() {
        dp.update(p);
    }
    let p_seq = repeat_to(&dp.finalize(), p.len());
    let mut ds = Sha512::new();
    for _ in 0..16 + usize::from(a[0]) {
        ds.update(salt);
    }
    let s_seq = repeat_to(&ds.finalize(), salt.len());
    let mut c: Vec<u8> = a.to_vec();
    for i in 0..5000 {
        let mut h = Sha512::new();
        if i % 2 == 1 {
            h.update(&p_seq);
        } else {
            h.update(&c);
        }
        if i % 3 != 0 {
            h.update(&s_seq);
        }
        if i % 7 != 0 {
            h.update(&p_seq);
        }
        if i % 2 == 1 {
            h.update(&c);
        } else {
            h.update(&p_seq);
        }
        c = h.finalize().to_vec();
    }
    let mut out = String::from("$6$");
    out.push_str(&String::from_utf8_lossy(salt));
    out.push('$');
    let mut push = |b2: u8, b1: u8, b0: u8, n: usize| {
        let mut w = (u32::from(b2) << 16) | (u32::from(b1) << 8) | u32::from(b0);
        for _ in 0..n {
            out.push(ITOA64[(w & 0x3f) as usize] as char);
            w >>= 6;
        }
    };
    for k in 0..21 {
        let (x, y, z) = (k, k + 21, k + 42);
        match k % 3 {
            0 => push(c[x], c[y], c[z], 4),
            1 => push(c[y], c[z], c[x], 4),
            _ => push(c[z], c[x], c[y], 4),
        }
    }
    push(0, 0, c[63], 2);
    out
}

/// Hashes with a fresh random 16-character salt.
pub fn hash_password(password: &[u8]) -> std::io::Result<String> {
    let mut rnd = [0u8; 16];
    crate::util::random_bytes(&mut rnd)?;
    let salt: String = rnd
        .iter()
        .map(|b| ITOA64[(b & 63) as usize] as char)
        .collect();
    Ok(sha512_crypt(password, &salt))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn drepper_vectors() {
        assert_eq!(
            sha512_crypt(b"Hello world!", "saltstring"),
            "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"
        );
        let h = hash_password(b"x").unwrap();
        assert!(h.starts_with("$6$") && h.len() == 3 + 16 + 1 + 86, "{h}");
    }
}
