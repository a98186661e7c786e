//! Small helpers shared by every module: randomness, hex, time.

use std::io;

/// Fills `buf` from the kernel's random source.
pub fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let n = rustix::rand::getrandom(&mut buf[done..], rustix::rand::GetRandomFlags::empty())?;
        done += n;
    }
    Ok(())
}

/// Fills `buf` with random bytes for uniqueness, not secrecy (temporary file names), without
/// ever blocking: early in boot, before the kernel's random pool is initialised, the blocking
/// call above can stall for a second or more on machines without a hardware RNG. Uses
/// `GRND_INSECURE` (Linux 5.6+), else `GRND_NONBLOCK`, else mixes the time, the PID and a
/// counter (systemd's temporary names are made the same way, with `random_u64`).
pub fn unique_bytes(buf: &mut [u8]) {
    use rustix::rand::{getrandom, GetRandomFlags};
    for flags in [GetRandomFlags::INSECURE, GetRandomFlags::NONBLOCK] {
        if let Ok(n) = getrandom(&mut *buf, flags) {
            if n == buf.len() {
                return;
            }
        }
    }
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let c = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut x = t ^ (u64::from(std::process::id()) << 32) ^ c.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for b in buf.iter_mut() {
        // splitmix64 step per byte
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        *b = (z ^ (z >> 31)) as u8;
    }
}

/// A fresh, empty scratch directory for unit tests (`$TMPDIR/pristine-TAG-PID`).
#[cfg(test)]
pub fn test_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("pristine-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create test directory");
    d
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(D[(b >> 4) as usize] as char);
        s.push(D[(b & 15) as usize] as char);
    }
    s
}

/// Parses lower- or upper-case hex into bytes.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Current wall-clock time as (seconds, nanoseconds) since the epoch.
pub fn now() -> (i64, i64) {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    (ts.tv_sec, ts.tv_nsec)
}

/// Spawns `f` on a new thread that runs beside the caller, on another CPU, at once. A new
/// thread may be queued on its creator's CPU, and on small virtual machines (2 vCPUs) it then
/// either preempts the creator until it is done (measured: the caller stalled 0.7 ms at the
/// spawn in most runs) or, when the other CPU is busy flushing, waits until the creator
/// blocks (measured: 1.9 ms later, after the work it was to do beside it). So the creator
/// moves the new thread to another allowed CPU before it first runs (found as the new entry
/// of `/proc/self/task`), and the thread takes back the full CPU mask when it starts, so
/// that the scheduler may still move it if that CPU gets busy. Without `/proc`, a thread that
/// finds itself on the creator's CPU moves itself (a synchronous migration) when it first
/// runs.
pub fn spawn_beside<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<std::thread::JoinHandle<T>> {
    use rustix::thread::{sched_getaffinity, sched_getcpu, sched_setaffinity, CpuSet};
    use std::sync::atomic::{AtomicBool, Ordering};
    let here = sched_getcpu();
    let mask = sched_getaffinity(None).ok();
    let elsewhere = mask.as_ref().and_then(|m| {
        let other = (0..CpuSet::MAX_CPU).find(|&c| c != here && m.is_set(c))?;
        let mut s = CpuSet::new();
        s.set(other);
        Some(s)
    });
    let before = elsewhere.as_ref().and_then(|_| own_threads());
    // Set once the creator is done placing the thread: until then the thread keeps off the
    // mask, which the creator's placement would otherwise override.
    let placed = std::sync::Arc::new(AtomicBool::new(false));
    let seen = std::sync::Arc::clone(&placed);
    let handle = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            if let (Some(mask), Some(elsewhere)) = (&mask, &elsewhere) {
                yield_until(|| seen.load(Ordering::Acquire));
                if sched_getcpu() == here {
                    let _ = sched_setaffinity(None, elsewhere);
                }
                // Pinned by the creator or by itself: free to move again.
                let _ = sched_setaffinity(None, mask);
            }
            f()
        });
    if let (Ok(_), Some(before), Some(elsewhere)) = (&handle, before, &elsewhere) {
        // The one new thread; with more (another thread spawned meanwhile), none is moved.
        let new: Vec<i32> = own_threads()
            .unwrap_or_default()
            .into_iter()
            .filter(|t| !before.contains(t))
            .collect();
        if let [tid] = new[..] {
            if let Some(pid) = rustix::process::Pid::from_raw(tid) {
                let _ = sched_setaffinity(Some(pid), elsewhere);
            }
        }
    }
    placed.store(true, Ordering::Release);
    handle
}

/// The ids of this process's threads (`/proc/self/task`); `None` without `/proc`.
fn own_threads() -> Option<Vec<i32>> {
    let dir = std::fs::read_dir("/proc/self/task").ok()?;
    Some(
        dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
    )
}

/// Runs the standard library's CPU feature detection now, unless it ran: it runs once per
/// process, on the first question (the line lexer's `memchr` asks for AVX2), and executes
/// `cpuid` a dozen times, each of which a hypervisor traps (about 6 µs apiece measured here).
/// A thread that is about to wait calls this, so that the threads that read do not pay it.
pub fn detect_cpu_features() {
    #[cfg(target_arch = "x86_64")]
    {
        let _ = std::arch::is_x86_feature_detected!("avx2");
    }
}

/// Yields the CPU until `done()`: a wait for another thread that keeps this one on its CPU
/// (see [`Handoff`]).
pub fn yield_until(done: impl Fn() -> bool) {
    while !done() {
        std::thread::yield_now();
    }
}

/// A value handed from one thread to another. The taker waits by yielding its CPU rather than
/// sleeping, for a while: on a machine with few CPUs a sleeping thread is woken on its waker's
/// CPU and queued there behind it (measured here: 0.7-1 ms lost per hand-off), while a thread
/// that yields stays where it runs. After [`Handoff::SPIN`] it sleeps.
#[derive(Default)]
pub struct Handoff<T> {
    slot: std::sync::Mutex<Option<T>>,
    ready: std::sync::atomic::AtomicBool,
    cv: std::sync::Condvar,
}

impl<T> Handoff<T> {
    /// How long [`Handoff::take`] yields before it sleeps.
    pub const SPIN: std::time::Duration = std::time::Duration::from_millis(5);

    /// Hands `v` over.
    pub fn put(&self, v: T) {
        *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(v);
        self.ready.store(true, std::sync::atomic::Ordering::Release);
        self.cv.notify_one();
    }

    /// Whether a value has been handed over (taken since or not).
    pub fn is_ready(&self) -> bool {
        self.ready.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Waits for the value; `None` once `alive()` says the giver is gone without giving one.
    pub fn take(&self, alive: impl Fn() -> bool) -> Option<T> {
        let start = std::time::Instant::now();
        yield_until(|| self.is_ready() || !alive() || start.elapsed() >= Self::SPIN);
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(v) = slot.take() {
                return Some(v);
            }
            if !alive() {
                return None;
            }
            slot = self
                .cv
                .wait_timeout(slot, std::time::Duration::from_millis(1))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawn_beside_runs_and_gives_the_mask_back() {
        use rustix::thread::sched_getaffinity;
        let before = sched_getaffinity(None).ok().map(|m| m.count());
        let h = spawn_beside("test", || sched_getaffinity(None).ok().map(|m| m.count())).unwrap();
        // The thread ran with the creator's full mask, whichever CPU it started on.
        assert_eq!(h.join().unwrap(), before);
    }

    #[test]
    fn handoff_passes_a_value_and_notices_a_giver_gone() {
        let h = std::sync::Arc::new(Handoff::default());
        let h2 = std::sync::Arc::clone(&h);
        let t = std::thread::spawn(move || h2.put(7u32));
        assert_eq!(h.take(|| true), Some(7));
        t.join().unwrap();
        // Nothing given and the giver gone: no wait.
        let empty: Handoff<u32> = Handoff::default();
        assert_eq!(empty.take(|| false), None);
    }

    #[test]
    fn hex_roundtrip() {
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
        assert_eq!(unhex("00AB10"), Some(vec![0, 0xab, 0x10]));
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("zz"), None);
    }

    #[test]
    fn unique_bytes_differ() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100 {
            let mut b = [0u8; 8];
            unique_bytes(&mut b);
            assert!(seen.insert(b), "repeated: {b:?}");
        }
    }
}
