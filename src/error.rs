//! The one error type of engine code: what was being done, to which path, and why.
//!
//! An [`Error`] prints the way systemd's `%m` messages do —
//! `Failed to create directory '/var/lib/app': Permission denied` — and keeps the errno so that
//! callers can decide (`ENOENT` is often not a failure) and reports can carry it. Engines return
//! `error::Result<T>`; a verb turns an error into a [`Diagnostic`](crate::report::Diagnostic)
//! (exit 73) with [`Error::diagnostic`], or into a bad-configuration diagnostic (exit 65) when
//! [`Error::is_bad_input`] says the input, not the system, was at fault.
//!
//! ```
//! use pristine::error::{Error, IoContext};
//! use std::path::Path;
//!
//! let e: Result<(), _> = Err(std::io::Error::from_raw_os_error(13));
//! let e = e.op("create directory", Path::new("/var/lib/app")).unwrap_err();
//! assert_eq!(e.to_string(), "Failed to create directory '/var/lib/app': Permission denied");
//! assert_eq!(e.errno(), Some(13));
//! ```

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::report::Diagnostic;

/// Why an operation failed.
#[derive(Debug)]
pub enum Cause {
    /// The system refused (an errno).
    Io(io::Error),
    /// The input was wrong: bad syntax, a bad value, a hash that does not match, a limit hit.
    Invalid(Cow<'static, str>),
}

/// An operation on a path (or on no path) that failed.
#[derive(Debug)]
pub struct Error {
    /// What was being done, as a verb phrase: `"create directory"`, `"read"`, `"verify"`.
    pub op: Cow<'static, str>,
    /// The path (in-root, as the user knows it) or object, if any.
    pub path: Option<PathBuf>,
    pub cause: Cause,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A failed system call.
    pub fn io(op: impl Into<Cow<'static, str>>, path: impl AsRef<Path>, e: io::Error) -> Error {
        Error {
            op: op.into(),
            path: Some(path.as_ref().to_path_buf()),
            cause: Cause::Io(e),
        }
    }

    /// Bad input found while doing `op` on `path`.
    pub fn invalid(
        op: impl Into<Cow<'static, str>>,
        path: impl AsRef<Path>,
        why: impl Into<Cow<'static, str>>,
    ) -> Error {
        Error {
            op: op.into(),
            path: Some(path.as_ref().to_path_buf()),
            cause: Cause::Invalid(why.into()),
        }
    }

    /// Bad input not tied to a path (a manifest field, a command-line value).
    pub fn msg(op: impl Into<Cow<'static, str>>, why: impl Into<Cow<'static, str>>) -> Error {
        Error {
            op: op.into(),
            path: None,
            cause: Cause::Invalid(why.into()),
        }
    }

    /// The errno, when the system refused.
    pub fn errno(&self) -> Option<i32> {
        match &self.cause {
            Cause::Io(e) => e.raw_os_error(),
            Cause::Invalid(_) => None,
        }
    }

    /// The underlying I/O error kind (`Other` for bad input).
    pub fn kind(&self) -> io::ErrorKind {
        match &self.cause {
            Cause::Io(e) => e.kind(),
            Cause::Invalid(_) => io::ErrorKind::InvalidData,
        }
    }

    /// True when the input was at fault (reported as bad configuration, exit 65).
    pub fn is_bad_input(&self) -> bool {
        matches!(self.cause, Cause::Invalid(_))
    }

    /// Sets the path after the fact (for errors made below the layer that knows it).
    pub fn at(mut self, path: impl AsRef<Path>) -> Error {
        self.path = Some(path.as_ref().to_path_buf());
        self
    }

    /// The reason alone (`Permission denied`, `hash mismatch`), without op and path.
    pub fn reason(&self) -> String {
        match &self.cause {
            Cause::Io(e) => crate::report::errno_text(e),
            Cause::Invalid(s) => s.to_string(),
        }
    }

    /// This error as a report entry: bad input → bad configuration (65), else failed (73).
    pub fn diagnostic(&self) -> Diagnostic {
        if self.is_bad_input() {
            Diagnostic::bad_config(
                self.path.as_deref().unwrap_or(Path::new("")),
                0,
                self.to_string(),
            )
        } else {
            Diagnostic::failed(self.path.as_deref(), self.to_string())
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(
                f,
                "Failed to {} '{}': {}",
                self.op,
                p.display(),
                self.reason()
            ),
            None => write!(f, "Failed to {}: {}", self.op, self.reason()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.cause {
            Cause::Io(e) => Some(e),
            Cause::Invalid(_) => None,
        }
    }
}

/// Lossless back-conversion for callers that still speak `io::Result` (the errno survives;
/// bad input becomes `InvalidData` with the full message).
impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        match e.cause {
            Cause::Io(io) => {
                let msg = match &e.path {
                    Some(p) => format!("Failed to {} '{}': {}", e.op, p.display(), io),
                    None => format!("Failed to {}: {}", e.op, io),
                };
                io::Error::new(io.kind(), msg)
            }
            Cause::Invalid(_) => io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
        }
    }
}

/// `.op("read", path)` on an `io::Result`: names the operation and the path.
pub trait IoContext<T> {
    fn op(self, op: impl Into<Cow<'static, str>>, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn op(self, op: impl Into<Cow<'static, str>>, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::io(op, path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_like_systemd() {
        let e = Error::io(
            "open",
            "/etc/passwd",
            io::Error::from_raw_os_error(libc_enoent()),
        );
        assert_eq!(
            e.to_string(),
            "Failed to open '/etc/passwd': No such file or directory"
        );
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(!e.is_bad_input());
        assert_eq!(e.diagnostic().severity, crate::report::Severity::Failed);

        let e = Error::invalid("verify", "/var/lib/x", "hash mismatch");
        assert_eq!(
            e.to_string(),
            "Failed to verify '/var/lib/x': hash mismatch"
        );
        assert!(e.is_bad_input());
        assert_eq!(e.errno(), None);
        assert_eq!(e.diagnostic().severity, crate::report::Severity::BadConfig);

        let e = Error::msg("parse manifest", "missing field 'version'");
        assert_eq!(
            e.to_string(),
            "Failed to parse manifest: missing field 'version'"
        );
    }

    #[test]
    fn errno_survives_round_trip() {
        let e = Error::io("unlink", "/x", io::Error::from_raw_os_error(libc_enoent()));
        let back: io::Error = e.into();
        assert_eq!(back.kind(), io::ErrorKind::NotFound);
        assert!(back.to_string().contains("Failed to unlink '/x'"));
    }

    fn libc_enoent() -> i32 {
        2
    }
}
