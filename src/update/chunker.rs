//! casync's content-defined chunker: a buzhash over a 48-byte window, restarted at every cut,
//! cutting where `hash % d == d - 1` once a chunk has its minimum size, and always at the
//! maximum. Same parameters give the same boundaries as `casync make`.

use super::buzhash::TABLE;
use super::index::ChunkParams;

const WINDOW: usize = 48;

/// casync's discriminator for an average chunk size (its empirical correction, in `f64`).
pub fn discriminator(p: &ChunkParams) -> u64 {
    let avg = p.avg as f64;
    let d = (avg / (-1.428_888_52e-7 * avg + 1.332_375_15)) as u64;
    d.clamp(p.min, p.max)
}

/// Streaming chunker state.
pub struct Chunker {
    min: u64,
    max: u64,
    fixed: bool,
    discr: u32,
    h: u32,
    window: [u8; WINDOW],
    window_size: usize,
    chunk_size: u64,
    /// TABLE rotated left by the window size, for the byte leaving the window.
    leave: [u32; 256],
}

impl Chunker {
    pub fn new(p: &ChunkParams) -> Chunker {
        let mut leave = [0u32; 256];
        for (l, t) in leave.iter_mut().zip(TABLE.iter()) {
            *l = t.rotate_left((WINDOW % 32) as u32);
        }
        Chunker {
            min: p.min,
            max: p.max,
            fixed: p.min == p.avg && p.max == p.avg,
            discr: discriminator(p).min(u32::MAX as u64 + 1).max(1) as u32,
            h: 0,
            window: [0; WINDOW],
            window_size: 0,
            chunk_size: 0,
            leave,
        }
    }

    fn shall_break(&self, v: u32) -> bool {
        if self.chunk_size >= self.max {
            return true;
        }
        if self.chunk_size < self.min {
            return false;
        }
        v % self.discr == self.discr.wrapping_sub(1)
    }

    fn reset(&mut self) {
        self.h = 0;
        self.chunk_size = 0;
        self.window_size = 0;
    }

    /// Feeds `data`; returns `Some(k)` if the current chunk ends after `data[..k]` (the state is
    /// then reset for the next chunk and the caller continues with `data[k..]`), `None` if all of
    /// `data` belongs to the current chunk.
    pub fn scan(&mut self, data: &[u8]) -> Option<usize> {
        if self.fixed {
            let want = (self.max - self.chunk_size) as usize;
            let m = want.min(data.len());
            self.chunk_size += m as u64;
            if self.chunk_size < self.max {
                return None;
            }
            self.reset();
            return Some(m);
        }
        let mut k = 0usize;
        let mut q = data;
        if self.window_size < WINDOW {
            let m = (WINDOW - self.window_size).min(q.len());
            self.window[self.window_size..self.window_size + m].copy_from_slice(&q[..m]);
            q = &q[m..];
            self.window_size += m;
            self.chunk_size += m as u64;
            if self.window_size < WINDOW {
                return None;
            }
            let mut h = 0u32;
            for (i, &b) in self.window.iter().enumerate() {
                h ^= TABLE[b as usize].rotate_left(((WINDOW - 1 - i) % 32) as u32);
            }
            self.h = h;
            k = m;
            if self.shall_break(h) {
                self.reset();
                return Some(k);
            }
        }
        let mut idx = (self.chunk_size % WINDOW as u64) as usize;
        let mut h = self.h;
        for &b in q {
            h = h.rotate_left(1) ^ self.leave[self.window[idx] as usize] ^ TABLE[b as usize];
            self.chunk_size += 1;
            k += 1;
            if self.shall_break(h) {
                self.reset();
                return Some(k);
            }
            self.window[idx] = b;
            idx += 1;
            if idx == WINDOW {
                idx = 0;
            }
        }
        self.h = h;
        None
    }

    /// Splits `data` at the chunk boundaries found by [`Chunker::scan`], keeping the state
    /// across calls: yields the runs of `data` in order, each with `true` when the current
    /// chunk ends after it (the last run may be continued by the next call's data).
    pub fn split<'c, 'd: 'c>(
        &'c mut self,
        data: &'d [u8],
    ) -> impl Iterator<Item = (&'d [u8], bool)> + 'c {
        let mut rest = data;
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            Some(match self.scan(rest) {
                Some(k) => {
                    let (run, tail) = rest.split_at(k);
                    rest = tail;
                    (run, true)
                }
                None => (std::mem::take(&mut rest), false),
            })
        })
    }
}

/// Cuts all of `data` into chunk lengths (the last chunk is whatever remains).
pub fn cut_all(p: &ChunkParams, data: &[u8]) -> Vec<usize> {
    cut_pieces(p, [data])
}

/// The chunk lengths of the stream made of `pieces` fed one after another (the last chunk is
/// whatever remains).
fn cut_pieces<'d>(p: &ChunkParams, pieces: impl IntoIterator<Item = &'d [u8]>) -> Vec<usize> {
    let mut c = Chunker::new(p);
    let mut out = Vec::new();
    let mut cur = 0usize;
    for piece in pieces {
        for (run, ends) in c.split(piece) {
            cur += run.len();
            if ends {
                out.push(cur);
                cur = 0;
            }
        }
    }
    if cur > 0 {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discriminator_default() {
        // casync's default (64 KiB average) discriminator.
        let d = discriminator(&ChunkParams::default());
        assert!(d > 48_000 && d < 50_000, "{d}");
    }

    #[test]
    fn split_feeding_gives_same_cuts() {
        let mut x = 0x1234_5678_9abc_def0u64;
        let data: Vec<u8> = (0..600_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let p = ChunkParams {
            min: 1024,
            avg: 4096,
            max: 16384,
        };
        let whole = cut_all(&p, &data);
        assert_eq!(whole.iter().sum::<usize>(), data.len());
        assert!(whole.iter().all(|&l| l <= 16384));
        assert!(whole.len() > 30, "{}", whole.len());
        // Feed in odd pieces.
        assert_eq!(cut_pieces(&p, data.chunks(777)), whole);
    }

    #[test]
    fn fixed_size() {
        let p = ChunkParams {
            min: 100,
            avg: 100,
            max: 100,
        };
        assert_eq!(cut_all(&p, &[7u8; 250]), vec![100, 100, 50]);
    }
}
