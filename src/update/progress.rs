//! Progress of an image assembly: a one-line display on a terminal (redrawn a few times a
//! second), periodic log lines otherwise (initrd console, journal).

use std::io::Write as _;
use std::time::{Duration, Instant};

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Counters {
    pub total_bytes: u64,
    pub total_chunks: u64,
    pub done_bytes: u64,
    pub done_chunks: u64,
    /// Image bytes taken from seeds (the active slot, `--seed=`).
    pub reused_bytes: u64,
    /// Image bytes already in place in the target (an earlier interrupted run).
    pub present_bytes: u64,
    /// Chunks and (compressed) bytes read from the source.
    pub fetched_chunks: u64,
    pub fetched_bytes: u64,
}

pub struct Progress {
    pub c: Counters,
    start: Instant,
    last: Instant,
    tty: bool,
    drawn: bool,
}

fn human(b: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", units[u])
}

impl Progress {
    pub fn new(total_bytes: u64, total_chunks: u64) -> Progress {
        let now = Instant::now();
        Progress {
            c: Counters {
                total_bytes,
                total_chunks,
                ..Counters::default()
            },
            start: now,
            last: now,
            tty: rustix::termios::isatty(rustix::stdio::stderr()),
            drawn: false,
        }
    }

    pub fn line(&self) -> String {
        let c = &self.c;
        let secs = self.start.elapsed().as_secs_f64().max(0.001);
        let rate = c.done_bytes as f64 / secs;
        let pct = |a: u64, b: u64| {
            if b == 0 {
                100.0
            } else {
                a as f64 * 100.0 / b as f64
            }
        };
        let eta = if rate > 0.0 {
            format!(
                "{:.0}s",
                (c.total_bytes.saturating_sub(c.done_bytes)) as f64 / rate
            )
        } else {
            "?".into()
        };
        format!(
            "{} / {} ({:.0}%), chunks {}/{}, reused {:.1}%, fetched {}, {}/s, ETA {eta}",
            human(c.done_bytes as f64),
            human(c.total_bytes as f64),
            pct(c.done_bytes, c.total_bytes),
            c.done_chunks,
            c.total_chunks,
            pct(c.reused_bytes + c.present_bytes, c.done_bytes),
            human(c.fetched_bytes as f64),
            human(rate),
        )
    }

    /// Called after every chunk; draws or logs when due.
    pub fn tick(&mut self) {
        let every = if self.tty {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(10)
        };
        if self.last.elapsed() < every {
            return;
        }
        self.last = Instant::now();
        if self.tty {
            let _ = write!(std::io::stderr(), "\r\x1b[K{}", self.line());
            self.drawn = true;
        } else {
            log::info!("Update progress: {}", self.line());
        }
    }

    pub fn finish(&mut self) {
        if self.drawn {
            let _ = writeln!(std::io::stderr());
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}
