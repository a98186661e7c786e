//! Diagnostics and exit codes, shared by every verb.
//!
//! A verb keeps going after bad input or a failed operation and remembers what happened in a
//! [`Outcome`]; the exit code is decided at the end, as systemd's tools do: 0 everything fine,
//! 65 (`EX_DATAERR`) bad configuration was seen and skipped, 73 (`EX_CANTCREAT`) an operation
//! failed, 1 a fatal error (the root cannot be opened, bad usage).

use std::path::{Path, PathBuf};

use serde::Serialize;

pub const EXIT_OK: u8 = 0;
pub const EXIT_FATAL: u8 = 1;
pub const EXIT_BAD_CONFIG: u8 = 65;
pub const EXIT_OP_FAILED: u8 = 73;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Bad configuration that was skipped.
    BadConfig,
    /// An operation that failed.
    Failed,
    /// Worth telling, changes nothing about the exit code.
    Notice,
}

/// One message about an input or an operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// The file (in-root path) or object the message is about.
    pub file: Option<PathBuf>,
    /// 1-based line number; 0 when not about a line.
    pub line: usize,
    pub message: String,
}

impl Diagnostic {
    pub fn bad_config(file: &Path, line: usize, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::BadConfig,
            file: Some(file.to_path_buf()),
            line,
            message: message.into(),
        }
    }
    pub fn failed(file: Option<&Path>, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Failed,
            file: file.map(Path::to_path_buf),
            line: 0,
            message: message.into(),
        }
    }
    pub fn notice(file: Option<&Path>, line: usize, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Notice,
            file: file.map(Path::to_path_buf),
            line,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.file, self.line) {
            (Some(p), 0) => write!(f, "{}: {}", p.display(), self.message),
            (Some(p), n) => write!(f, "{}:{}: {}", p.display(), n, self.message),
            (None, _) => f.write_str(&self.message),
        }
    }
}

/// What a run saw; decides the exit code.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Outcome {
    pub diagnostics: Vec<Diagnostic>,
    /// Named counters of what was done (`paths`, `users`, `links`, …), for reports.
    pub counts: std::collections::BTreeMap<&'static str, u64>,
}

impl Outcome {
    /// Adds `n` to the counter `key`.
    pub fn add_count(&mut self, key: &'static str, n: u64) {
        *self.counts.entry(key).or_default() += n;
    }

    /// The counter `key` (0 if never counted).
    pub fn count(&self, key: &str) -> u64 {
        self.counts.get(key).copied().unwrap_or(0)
    }

    /// Records and logs a diagnostic (bad config and failures as errors, notices as notices).
    pub fn push(&mut self, d: Diagnostic) {
        match d.severity {
            Severity::BadConfig | Severity::Failed => log::error!("{d}"),
            Severity::Notice => log::info!("{d}"),
        }
        self.diagnostics.push(d);
    }

    /// Records a diagnostic the verb has already shown (a finding printed on stdout): it
    /// counts for the exit code and the report, and is not logged again.
    pub fn record(&mut self, d: Diagnostic) {
        self.diagnostics.push(d);
    }

    pub fn extend(&mut self, ds: impl IntoIterator<Item = Diagnostic>) {
        for d in ds {
            self.push(d);
        }
    }

    pub fn bad_config(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::BadConfig)
    }

    pub fn failed(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Failed)
    }

    /// The exit code: 73 if an operation failed, else 65 if bad config was seen, else 0.
    pub fn exit_code(&self) -> u8 {
        if self.failed() {
            EXIT_OP_FAILED
        } else if self.bad_config() {
            EXIT_BAD_CONFIG
        } else {
            EXIT_OK
        }
    }
}

/// Reports a usage error from a verb's parser (exit 1).
pub fn usage_error(verb: &str, e: impl std::fmt::Display) -> u8 {
    log::error!("pristine {verb}: {e}");
    EXIT_FATAL
}

/// The `strerror` text of an I/O error as systemd's `%m` prints it, without Rust's
/// "(os error N)" suffix.
pub fn errno_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(p) => s[..p].to_string(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn exit_codes() {
        let mut o = Outcome::default();
        assert_eq!(o.exit_code(), 0);
        o.push(Diagnostic::notice(None, 0, "n"));
        assert_eq!(o.exit_code(), 0);
        o.push(Diagnostic::bad_config(Path::new("/x.conf"), 3, "bad"));
        assert_eq!(o.exit_code(), 65);
        o.push(Diagnostic::failed(None, "f"));
        assert_eq!(o.exit_code(), 73);
        assert_eq!(o.diagnostics[1].to_string(), "/x.conf:3: bad");
    }
}
