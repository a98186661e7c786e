//! The `log` backend: `/dev/kmsg` as `<N>pristine[pid]: msg` when running in an initrd
//! (`/etc/initrd-release` exists) or as PID 1, stderr otherwise. `SYSTEMD_LOG_TARGET=console`
//! or `kmsg` forces one.

use std::io::Write as _;
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};

enum Sink {
    Stderr,
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
        match &self.sink {
            Sink::Stderr => {
                // One write per line: stderr is unbuffered, and a formatted record would
                // otherwise reach it in several pieces (and interleave with other writers).
                let line = format!("{}\n", r.args());
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

/// Installs the logger. Safe to call more than once (later calls only change the level).
pub fn init(level: LevelFilter) {
    // SYSTEMD_LOG_TARGET=console|kmsg overrides the choice, as in systemd.
    let to_kmsg = match std::env::var("SYSTEMD_LOG_TARGET").as_deref() {
        Ok("console") => false,
        Ok("kmsg") => true,
        _ => in_initrd() || std::process::id() == 1,
    };
    let sink = if to_kmsg {
        match std::fs::OpenOptions::new().write(true).open("/dev/kmsg") {
            Ok(f) => Sink::Kmsg(Mutex::new(f)),
            Err(_) => Sink::Stderr,
        }
    } else {
        Sink::Stderr
    };
    let _ = log::set_boxed_logger(Box::new(Logger { sink }));
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
