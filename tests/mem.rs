//! The memory routines of the musl build (`src/mem.c`: memcpy, memmove, memcmp, bcmp), checked
//! through the standard library's slice operations that call them, against byte-wise
//! references: every length up to 600 (the short paths, the 16-byte loop and `rep movsb`),
//! every relative alignment within 16 bytes, and every overlap in both directions. On a glibc
//! build the same test checks glibc's routines (it cannot tell them apart, and need not).

// Links the library, and with it src/mem.c, into this test.
extern crate pristine as _;

use std::hint::black_box;

const MAX: usize = 600;

/// Bytes that differ at every position and from every shifted copy of themselves.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ ((i >> 8) as u8))
        .collect()
}

#[test]
fn memcpy_copies_every_length_at_every_alignment() {
    let src = pattern(MAX + 32, 7);
    for len in 0..=MAX {
        for so in 0..16 {
            for d_off in 0..16 {
                let mut dst = vec![0xa5u8; MAX + 64];
                let n = black_box(len);
                // copy_from_slice with a length known only at run time calls memcpy.
                dst[d_off..d_off + n].copy_from_slice(&src[so..so + n]);
                assert_eq!(
                    &dst[d_off..d_off + len],
                    &src[so..so + len],
                    "len {len} src+{so} dst+{d_off}"
                );
                assert!(
                    dst[..d_off].iter().all(|&b| b == 0xa5),
                    "wrote before: len {len}"
                );
                assert!(
                    dst[d_off + len..].iter().all(|&b| b == 0xa5),
                    "wrote after: len {len}"
                );
            }
        }
    }
}

#[test]
fn memmove_handles_every_overlap_in_both_directions() {
    let base = pattern(3 * MAX + 100, 3);
    for len in 0..=MAX {
        // Every distance from "far before" to "far after", and all the short ones.
        let shifts = (-40i64..=40).chain([-(len as i64) - 1, len as i64 + 1, -300, 300]);
        for shift in shifts {
            let from = MAX + 40;
            let to = (from as i64 + shift) as usize;
            let mut buf = base.clone();
            let mut expect = base.clone();
            let moved: Vec<u8> = base[from..from + len].to_vec();
            expect[to..to + len].copy_from_slice(&moved);
            // copy_within is memmove.
            buf.copy_within(black_box(from..from + len), black_box(to));
            assert!(buf == expect, "len {len} shift {shift}");
        }
    }
}

/// The reference: the sign of the first difference, as C's memcmp defines it.
fn reference_cmp(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

#[test]
fn memcmp_and_bcmp_order_like_the_first_differing_byte() {
    let a = pattern(MAX + 16, 11);
    for len in 0..=MAX.min(300) {
        for off in 0..8 {
            let x = &a[off..off + len];
            let same = x.to_vec();
            // Slice equality calls bcmp, slice ordering memcmp.
            assert!(black_box(x) == black_box(&same[..]), "len {len} off {off}");
            assert_eq!(x.cmp(&same[..]), std::cmp::Ordering::Equal);
            // One byte changed, up and down, at every position: the order follows that byte,
            // whatever the bytes after it (the 8-byte path must not let them decide).
            for pos in 0..len {
                for delta in [1u8, 0x80, 0xff] {
                    let mut y = same.clone();
                    y[pos] = y[pos].wrapping_add(delta);
                    for tail in [0x00u8, 0xff] {
                        for b in y.iter_mut().skip(pos + 1) {
                            *b = tail;
                        }
                        let mut z = same.clone();
                        z[..pos + 1].copy_from_slice(&y[..pos + 1]);
                        for b in z.iter_mut().skip(pos + 1) {
                            *b = !tail;
                        }
                        assert_eq!(x.cmp(&y[..]), reference_cmp(x, &y), "len {len} pos {pos}");
                        assert_eq!(y[..].cmp(x), reference_cmp(&y, x), "len {len} pos {pos}");
                        assert_eq!(
                            y[..].cmp(&z[..]),
                            reference_cmp(&y, &z),
                            "len {len} pos {pos}"
                        );
                        assert!(black_box(x) != black_box(&y[..]), "len {len} pos {pos}");
                    }
                }
            }
        }
    }
}
