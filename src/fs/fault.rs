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
