//! Fault injection for crash-safety tests: with the `fault-injection` build feature and
//! `PRISTINE_FAULT_AFTER=N` in the environment, the process aborts right before its (N+1)th
//! mutating filesystem operation. Without the feature this is a no-op counter.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

static COUNT: AtomicU64 = AtomicU64::new(0);

/// Number of mutating operations so far in this process.
pub fn count() -> u64 {
    COUNT.load(Ordering::Relaxed)
}

/// Called by every mutating operation of the root handle before it acts.
pub fn mutating(op: &str, path: &Path) -> io::Result<()> {
    let n = COUNT.fetch_add(1, Ordering::Relaxed) + 1;
    #[cfg(feature = "fault-injection")]
    {
        if let Some(limit) = std::env::var("PRISTINE_FAULT_AFTER")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        {
            if n > limit {
                eprintln!(
                    "pristine: fault injection: abort before op {n} ({op} {})",
                    path.display()
                );
                std::process::abort();
            }
        }
    }
    let _ = (op, path, n);
    Ok(())
}

/// For tests of `provision`'s presets plan made ahead: with the `fault-injection` build feature
/// and `PRISTINE_PLAN_AHEAD_FIRST=1`, the main thread waits for that plan before the steps
/// that may invalidate it run, so that the check of the plan is put to the test every time
/// (without it, a slow helper thread may plan after them, which is also correct). Always
/// `false` without the feature.
pub fn plan_ahead_first() -> bool {
    #[cfg(feature = "fault-injection")]
    {
        std::env::var_os("PRISTINE_PLAN_AHEAD_FIRST").is_some_and(|v| v == "1")
    }
    #[cfg(not(feature = "fault-injection"))]
    {
        false
    }
}

/// For tests of `provision`'s read-ahead: with the `fault-injection` build feature and
/// `PRISTINE_HELPER_LATE=1`, the presets thread calls this to start its work only once
/// `claimed()` says the main thread has claimed the listing of the unit files, as when the
/// thread's CPU is busy at first; a run where that never happens aborts (the test fails).
/// Returns at once otherwise.
pub fn hold_helper_until(claimed: impl Fn() -> bool) {
    #[cfg(feature = "fault-injection")]
    if std::env::var_os("PRISTINE_HELPER_LATE").is_some_and(|v| v == "1") {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        crate::util::yield_until(|| claimed() || std::time::Instant::now() > deadline);
        if !claimed() {
            eprintln!("PRISTINE_HELPER_LATE: the unit files were never listed");
            std::process::abort();
        }
    }
    let _ = claimed;
}

/// [`mutating`] for walks deep enough that building every path would cost more than the walk:
/// the path is only made if the fault fires.
pub fn mutating_lazy(op: &str, path: impl FnOnce() -> std::path::PathBuf) -> io::Result<()> {
    #[cfg(feature = "fault-injection")]
    {
        let limit = std::env::var("PRISTINE_FAULT_AFTER")
            .ok()
            .and_then(|v| v.parse::<u64>().ok());
        if limit.is_some_and(|l| count() >= l) {
            return mutating(op, &path());
        }
    }
    let _ = (op, path);
    COUNT.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// The mutation trace: with `PRISTINE_TRACE_MUTATIONS=FILE` in the environment, every mutation
/// that succeeded is appended to `FILE` as one line, `op<TAB>path<TAB>args…`, where `path` is the
/// host path of the entry acted on (the directory descriptor's path from `/proc/self/fd` plus
/// the name, or the descriptor's own path for `f*` calls) and the arguments are what a replay
/// needs (mode in octal, link target, owner, length of the data). Path bytes outside printable
/// ASCII, and `\`, are written as `\xNN`. `examples/replay.rs` applies such a trace to a fresh
/// tree with the same calls: the floor of what a run could cost on that file system.
///
/// Off, it costs one relaxed atomic load per mutation.
pub mod trace {
    use std::ffi::OsStr;
    use std::fmt::{self, Write as _};
    use std::io::Write as _;
    use std::os::fd::BorrowedFd;
    use std::os::unix::ffi::OsStrExt as _;
    use std::sync::atomic::{AtomicU8, Ordering};
    use std::sync::Mutex;

    const UNSET: u8 = 0;
    const OFF: u8 = 1;
    const ON: u8 = 2;
    static STATE: AtomicU8 = AtomicU8::new(UNSET);
    static FILE: Mutex<Option<std::fs::File>> = Mutex::new(None);

    /// Whether mutations are traced (decided once, from the environment).
    #[inline]
    pub fn on() -> bool {
        match STATE.load(Ordering::Relaxed) {
            OFF => false,
            ON => true,
            _ => init(),
        }
    }

    #[cold]
    fn init() -> bool {
        let file = std::env::var_os("PRISTINE_TRACE_MUTATIONS").and_then(|p| {
            std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(p)
                .ok()
        });
        let on = file.is_some();
        if let Ok(mut f) = FILE.lock() {
            *f = file;
        }
        STATE.store(if on { ON } else { OFF }, Ordering::Relaxed);
        on
    }

    /// Appends `bytes` to `line`, escaped as the trace format says.
    pub fn escape(line: &mut String, bytes: &[u8]) {
        for &b in bytes {
            if b.is_ascii_graphic() && b != b'\\' {
                line.push(char::from(b));
            } else {
                let _ = write!(line, "\\x{b:02x}");
            }
        }
    }

    /// The host path of an open descriptor (`/proc/self/fd/N`), raw bytes.
    fn fd_path(fd: BorrowedFd<'_>) -> Vec<u8> {
        let link = super::super::safe::proc_fd_path(fd);
        rustix::fs::readlink(link.as_str(), Vec::new())
            .map(|p| p.into_bytes())
            .unwrap_or_else(|_| b"?".to_vec())
    }

    fn emit(op: &str, path: &[u8], args: fmt::Arguments<'_>) {
        let mut line = String::with_capacity(64 + path.len());
        line.push_str(op);
        line.push('\t');
        escape(&mut line, path);
        let _ = write!(line, "{args}");
        line.push('\n');
        if let Ok(mut f) = FILE.lock() {
            if let Some(f) = f.as_mut() {
                let _ = f.write_all(line.as_bytes());
            }
        }
    }

    /// Records `op` on the entry `name` of the directory `dir`; `args` start with a tab each.
    #[inline]
    pub fn at(op: &str, dir: BorrowedFd<'_>, name: &OsStr, args: fmt::Arguments<'_>) {
        if on() {
            let mut p = fd_path(dir);
            if p.last() != Some(&b'/') {
                p.push(b'/');
            }
            p.extend_from_slice(name.as_bytes());
            emit(op, &p, args);
        }
    }

    /// Records `op` on the inode open as `fd`.
    #[inline]
    pub fn fd(op: &str, fd: BorrowedFd<'_>, args: fmt::Arguments<'_>) {
        if on() {
            emit(op, &fd_path(fd), args);
        }
    }

    /// `\t<escaped bytes>`, for a link target or a second path among the arguments.
    pub struct Arg<'a>(pub &'a [u8]);

    impl fmt::Display for Arg<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let mut s = String::from("\t");
            escape(&mut s, self.0);
            f.write_str(&s)
        }
    }

    /// `\t<path of dir>/<name>`, the second path of a rename or exchange (only built when on).
    pub struct AtArg<'a>(pub BorrowedFd<'a>, pub &'a OsStr);

    impl fmt::Display for AtArg<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let mut p = fd_path(self.0);
            if p.last() != Some(&b'/') {
                p.push(b'/');
            }
            p.extend_from_slice(self.1.as_bytes());
            Arg(&p).fmt(f)
        }
    }

    /// `\t<uid>\t<gid>`, `-1` for an ID left alone.
    pub fn owner(uid: Option<u32>, gid: Option<u32>) -> (i64, i64) {
        (uid.map_or(-1, i64::from), gid.map_or(-1, i64::from))
    }
}
