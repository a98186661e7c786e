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

/// The `strerror` text of an I/O error as systemd's `%m` prints it (glibc's wording, see
/// [`strerror`]), without Rust's "(os error N)" suffix; an error that carries no errno prints
/// its own message.
pub fn errno_text(e: &std::io::Error) -> String {
    if let Some(n) = e.raw_os_error() {
        return strerror(n).into_owned();
    }
    let s = e.to_string();
    match s.find(" (os error") {
        Some(p) => s[..p].to_string(),
        None => s,
    }
}

/// `strerror` as glibc words it, for errno 0..=133 (Linux): the text systemd's `%m` prints.
/// The binary may be linked against musl, whose wording differs for some values (`ELOOP` is
/// "Symbolic link loop" there, "Too many levels of symbolic links" in glibc), so messages that
/// must read like systemd's take the text from here, not from the C library.
const GLIBC_STRERROR: [Option<&str>; 134] = [
    Some("Success"),
    Some("Operation not permitted"),
    Some("No such file or directory"),
    Some("No such process"),
    Some("Interrupted system call"),
    Some("Input/output error"),
    Some("No such device or address"),
    Some("Argument list too long"),
    Some("Exec format error"),
    Some("Bad file descriptor"),
    Some("No child processes"),
    Some("Resource temporarily unavailable"),
    Some("Cannot allocate memory"),
    Some("Permission denied"),
    Some("Bad address"),
    Some("Block device required"),
    Some("Device or resource busy"),
    Some("File exists"),
    Some("Invalid cross-device link"),
    Some("No such device"),
    Some("Not a directory"),
    Some("Is a directory"),
    Some("Invalid argument"),
    Some("Too many open files in system"),
    Some("Too many open files"),
    Some("Inappropriate ioctl for device"),
    Some("Text file busy"),
    Some("File too large"),
    Some("No space left on device"),
    Some("Illegal seek"),
    Some("Read-only file system"),
    Some("Too many links"),
    Some("Broken pipe"),
    Some("Numerical argument out of domain"),
    Some("Numerical result out of range"),
    Some("Resource deadlock avoided"),
    Some("File name too long"),
    Some("No locks available"),
    Some("Function not implemented"),
    Some("Directory not empty"),
    Some("Too many levels of symbolic links"),
    None,
    Some("No message of desired type"),
    Some("Identifier removed"),
    Some("Channel number out of range"),
    Some("Level 2 not synchronized"),
    Some("Level 3 halted"),
    Some("Level 3 reset"),
    Some("Link number out of range"),
    Some("Protocol driver not attached"),
    Some("No CSI structure available"),
    Some("Level 2 halted"),
    Some("Invalid exchange"),
    Some("Invalid request descriptor"),
    Some("Exchange full"),
    Some("No anode"),
    Some("Invalid request code"),
    Some("Invalid slot"),
    None,
    Some("Bad font file format"),
    Some("Device not a stream"),
    Some("No data available"),
    Some("Timer expired"),
    Some("Out of streams resources"),
    Some("Machine is not on the network"),
    Some("Package not installed"),
    Some("Object is remote"),
    Some("Link has been severed"),
    Some("Advertise error"),
    Some("Srmount error"),
    Some("Communication error on send"),
    Some("Protocol error"),
    Some("Multihop attempted"),
    Some("RFS specific error"),
    Some("Bad message"),
    Some("Value too large for defined data type"),
    Some("Name not unique on network"),
    Some("File descriptor in bad state"),
    Some("Remote address changed"),
    Some("Can not access a needed shared library"),
    Some("Accessing a corrupted shared library"),
    Some(".lib section in a.out corrupted"),
    Some("Attempting to link in too many shared libraries"),
    Some("Cannot exec a shared library directly"),
    Some("Invalid or incomplete multibyte or wide character"),
    Some("Interrupted system call should be restarted"),
    Some("Streams pipe error"),
    Some("Too many users"),
    Some("Socket operation on non-socket"),
    Some("Destination address required"),
    Some("Message too long"),
    Some("Protocol wrong type for socket"),
    Some("Protocol not available"),
    Some("Protocol not supported"),
    Some("Socket type not supported"),
    Some("Operation not supported"),
    Some("Protocol family not supported"),
    Some("Address family not supported by protocol"),
    Some("Address already in use"),
    Some("Cannot assign requested address"),
    Some("Network is down"),
    Some("Network is unreachable"),
    Some("Network dropped connection on reset"),
    Some("Software caused connection abort"),
    Some("Connection reset by peer"),
    Some("No buffer space available"),
    Some("Transport endpoint is already connected"),
    Some("Transport endpoint is not connected"),
    Some("Cannot send after transport endpoint shutdown"),
    Some("Too many references: cannot splice"),
    Some("Connection timed out"),
    Some("Connection refused"),
    Some("Host is down"),
    Some("No route to host"),
    Some("Operation already in progress"),
    Some("Operation now in progress"),
    Some("Stale file handle"),
    Some("Structure needs cleaning"),
    Some("Not a XENIX named type file"),
    Some("No XENIX semaphores available"),
    Some("Is a named type file"),
    Some("Remote I/O error"),
    Some("Disk quota exceeded"),
    Some("No medium found"),
    Some("Wrong medium type"),
    Some("Operation canceled"),
    Some("Required key not available"),
    Some("Key has expired"),
    Some("Key has been revoked"),
    Some("Key was rejected by service"),
    Some("Owner died"),
    Some("State not recoverable"),
    Some("Operation not possible due to RF-kill"),
    Some("Memory page has hardware error"),
];

/// glibc's `strerror` text for `errno`; its "Unknown error N" for a value it has no text for.
pub fn strerror(errno: i32) -> std::borrow::Cow<'static, str> {
    match usize::try_from(errno)
        .ok()
        .and_then(|i| GLIBC_STRERROR.get(i).copied().flatten())
    {
        Some(t) => std::borrow::Cow::Borrowed(t),
        None => std::borrow::Cow::Owned(format!("Unknown error {errno}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn errno_texts_are_glibcs() {
        use std::io::Error;
        // Values whose wording musl does not share, and values glibc has no text for.
        for (errno, text) in [
            (40, "Too many levels of symbolic links"),
            (5, "Input/output error"),
            (16, "Device or resource busy"),
            (2, "No such file or directory"),
            (41, "Unknown error 41"),
            (-3, "Unknown error -3"),
        ] {
            assert_eq!(errno_text(&Error::from_raw_os_error(errno)), text);
        }
        assert_eq!(errno_text(&Error::other("no errno here")), "no errno here");
    }

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
