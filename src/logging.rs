//! The `log` backend, choosing its target as systemd's tools do: the journal when stderr is a
//! journal stream (`$JOURNAL_STREAM`, as under a systemd service, lines prefixed `<N>` so
//! journald keeps their priority), else `/dev/kmsg` as `<N>pristine[pid]: msg` when running in
//! an initrd (`/etc/initrd-release` exists) or as PID 1, else stderr.
//! `SYSTEMD_LOG_TARGET=console|kmsg|journal` forces one. [`boot_summary`] puts one line in the
//! kernel log whatever the target.

use std::io::Write as _;
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};

enum Sink {
    Stderr,
    /// stderr connected to journald: each line starts with its syslog priority.
    Journal,
    Kmsg(Mutex<std::fs::File>),
}

struct Logger {
    sink: Sink,
}

/// Parses a log level name as systemd (`emerg`…`debug`) or `log` (`error`…`trace`) spell it.
pub fn parse_level(s: &str) -> Option<LevelFilter> {
    Some(match s.to_ascii_lowercase().as_str() {
        "emerg" | "alert" | "crit" | "err" | "error" | "0" | "1" | "2" | "3" => LevelFilter::Error,
        "warning" | "warn" | "4" => LevelFilter::Warn,
        "notice" | "info" | "5" | "6" => LevelFilter::Info,
        "debug" | "7" => LevelFilter::Debug,
        "trace" => LevelFilter::Trace,
        "off" => LevelFilter::Off,
        _ => return None,
    })
}

fn syslog_priority(l: Level) -> u8 {
    match l {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let held = HELD.with(|h| match h.borrow_mut().as_mut() {
            Some(v) => {
                v.push((r.level(), r.args().to_string()));
                true
            }
            None => false,
        });
        if held {
            return;
        }
        match &self.sink {
            Sink::Stderr => {
                // One write per line: stderr is unbuffered, and a formatted record would
                // otherwise reach it in several pieces (and interleave with other writers).
                let line = format!("{}\n", r.args());
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
            Sink::Journal => {
                let line = format!("<{}>{}\n", syslog_priority(r.level()), r.args());
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
            Sink::Kmsg(f) => {
                let line = format!(
                    "<{}>pristine[{}]: {}\n",
                    syslog_priority(r.level()),
                    std::process::id(),
                    r.args()
                );
                if let Ok(mut f) = f.lock() {
                    // kmsg takes one record per write.
                    let _ = f.write_all(line.as_bytes());
                }
            }
        }
    }

    fn flush(&self) {}
}

thread_local! {
    /// This thread's records held back (see [`hold`]), when they are.
    static HELD: std::cell::RefCell<Option<Vec<(Level, String)>>> =
        const { std::cell::RefCell::new(None) };
}

/// Log records held back on one thread, to be emitted by another in their place in its output
/// ([`Held::emit`]) or dropped.
#[derive(Default)]
pub struct Held(Vec<(Level, String)>);

/// Holds back this thread's log records until [`release`]: work done ahead on a helper thread
/// logs what it would log, and the main thread emits it when that work's turn comes, so the
/// output reads as if it had been done in order.
pub fn hold() {
    HELD.with(|h| *h.borrow_mut() = Some(Vec::new()));
}

/// Stops holding back this thread's records and returns those held.
pub fn release() -> Held {
    Held(HELD.with(|h| h.borrow_mut().take()).unwrap_or_default())
}

impl Held {
    /// Emits the records, in order, as if logged now.
    pub fn emit(self) {
        for (level, msg) in self.0 {
            log::log!(level, "{msg}");
        }
    }
}

/// Whether we run inside an initrd: systemd's `in_initrd()` test (`/etc/initrd-release`
/// exists), overridable with `SYSTEMD_IN_INITRD=0|1` as in systemd.
pub fn in_initrd() -> bool {
    if let Some(b) = std::env::var("SYSTEMD_IN_INITRD")
        .ok()
        .and_then(|v| crate::text::parse_boolean(&v))
    {
        return b;
    }
    std::path::Path::new("/etc/initrd-release").exists()
}

/// Whether stderr is the journal stream named by `$JOURNAL_STREAM` (`DEVICE:INODE`), which
/// systemd sets for services whose output goes to the journal.
fn stderr_is_journal() -> bool {
    let Some((dev, ino)) = std::env::var("JOURNAL_STREAM").ok().and_then(|v| {
        let (d, i) = v.split_once(':')?;
        Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?))
    }) else {
        return false;
    };
    rustix::fs::fstat(rustix::stdio::stderr()).is_ok_and(|st| st.st_dev == dev && st.st_ino == ino)
}

fn open_kmsg() -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().write(true).open("/dev/kmsg")
}

/// Whether the installed logger writes to `/dev/kmsg` (set once by [`init`]).
static TO_KMSG: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Logs the one summary line of a boot-time run and makes sure it reaches the kernel log:
/// it is written to `/dev/kmsg` on a descriptor of its own (the kernel limits each open
/// `/dev/kmsg` to 10 lines in 5 s, so a line written last on the logger's descriptor after a
/// busy run would be dropped) and, when the logger writes elsewhere (journal, stderr), logged
/// there too as `pristine: LINE`. `SYSTEMD_LOG_TARGET=console` keeps it off the kernel log.
pub fn boot_summary(line: &str) {
    if std::env::var("SYSTEMD_LOG_TARGET").as_deref() != Ok("console") {
        if let Ok(mut f) = open_kmsg() {
            let _ =
                f.write_all(format!("<5>pristine[{}]: {line}\n", std::process::id()).as_bytes());
        }
    }
    if !TO_KMSG.load(std::sync::atomic::Ordering::Relaxed) {
        log::info!("pristine: {line}");
    }
}

/// Installs the logger. Safe to call more than once (later calls only change the level).
pub fn init(level: LevelFilter) {
    // SYSTEMD_LOG_TARGET=console|kmsg|journal overrides the choice, as in systemd.
    let kmsg = || match open_kmsg() {
        Ok(f) => Sink::Kmsg(Mutex::new(f)),
        Err(_) => Sink::Stderr,
    };
    let sink = match std::env::var("SYSTEMD_LOG_TARGET").as_deref() {
        Ok("console") => Sink::Stderr,
        Ok("kmsg") => kmsg(),
        Ok("journal") => Sink::Journal,
        _ if stderr_is_journal() => Sink::Journal,
        _ if in_initrd() || std::process::id() == 1 => kmsg(),
        _ => Sink::Stderr,
    };
    let kmsg = matches!(sink, Sink::Kmsg(_));
    if log::set_boxed_logger(Box::new(Logger { sink })).is_ok() {
        TO_KMSG.store(kmsg, std::sync::atomic::Ordering::Relaxed);
    }
    log::set_max_level(level);
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn levels() {
        assert_eq!(parse_level("debug"), Some(LevelFilter::Debug));
        assert_eq!(parse_level("ERR"), Some(LevelFilter::Error));
        assert_eq!(parse_level("bogus"), None);
    }
}
