//! System credentials (systemd's `$CREDENTIALS_DIRECTORY`, else `/run/credentials/@system`):
//! small named values passed in by the VM manager, the boot loader or the initrd, e.g.
//! `system.hostname`, `system.machine_id`, `firstboot.timezone`. These live on the host (the
//! initrd's /run), never in the target root. Which directory is in reach is
//! [`crate::host::HostFacts`]'s decision.

use std::path::{Path, PathBuf};

/// systemd's `CREDENTIAL_SIZE_MAX`.
const MAX_SIZE: u64 = 1 << 20;

/// Where credentials are read from.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    dir: Option<PathBuf>,
}

impl Credentials {
    /// `$CREDENTIALS_DIRECTORY` if set and valid as systemd's `get_credentials_dir()` wants it
    /// (absolute, normalized), else `fallback` if it is a directory. Only
    /// [`crate::host::HostFacts`] calls this: offline runs pass no fallback.
    pub fn from_env(fallback: Option<&Path>) -> Credentials {
        let dir = std::env::var_os("CREDENTIALS_DIRECTORY")
            .map(PathBuf::from)
            .filter(|p| {
                p.to_str().is_some_and(|s| {
                    s.starts_with('/')
                        && !s.contains("//")
                        && !s.split('/').any(|c| c == "." || c == "..")
                })
            })
            .or_else(|| fallback.filter(|p| p.is_dir()).map(Path::to_path_buf));
        Credentials { dir }
    }

    /// Credentials from an explicit directory (tests).
    pub fn from_dir(dir: Option<PathBuf>) -> Credentials {
        Credentials { dir }
    }

    /// The directory credentials are read from, if any.
    pub fn dir(&self) -> Option<&std::path::Path> {
        self.dir.as_deref()
    }

    /// The credential's raw bytes, if present. Names with `/`, longer than 255 bytes or hidden
    /// are refused, and so is a credential larger than systemd's `CREDENTIAL_SIZE_MAX` (1 MiB).
    pub fn get_bytes(&self, name: &str) -> Option<Vec<u8>> {
        use std::io::Read as _;
        let p = self.path(name)?;
        let mut data = Vec::new();
        std::fs::File::open(p)
            .ok()?
            .take(MAX_SIZE + 1)
            .read_to_end(&mut data)
            .ok()?;
        (data.len() as u64 <= MAX_SIZE).then_some(data)
    }

    /// Where the credential `name` would be, if a directory is in reach and the name is valid.
    pub fn path(&self, name: &str) -> Option<PathBuf> {
        if name.contains('/') || name.starts_with('.') || name.len() > 255 {
            return None;
        }
        Some(self.dir.as_ref()?.join(name))
    }

    /// The credential's value as text, if present (a trailing newline is kept as given;
    /// callers trim where systemd does). Names with `/` are refused.
    pub fn get(&self, name: &str) -> Option<String> {
        let p = self.path(name)?;
        let md = std::fs::symlink_metadata(&p).ok()?;
        if !md.is_file() || md.len() > MAX_SIZE {
            return None;
        }
        std::fs::read_to_string(p).ok()
    }

    /// Names of all credentials starting with `prefix`, sorted.
    pub fn names_with_prefix(&self, prefix: &str) -> Vec<String> {
        let Some(dir) = &self.dir else {
            return Vec::new();
        };
        let Ok(rd) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut v: Vec<String> = rd
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with(prefix))
            .collect();
        v.sort();
        v
    }
}
