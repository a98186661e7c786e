//! System credentials (systemd's `$CREDENTIALS_DIRECTORY`, else `/run/credentials/@system`):
//! small named values passed in by the VM manager, the boot loader or the initrd, e.g.
//! `system.hostname`, `system.machine_id`, `firstboot.timezone`. These live on the host (the
//! initrd's /run), never in the target root.

use std::path::PathBuf;

/// Where credentials are read from.
#[derive(Clone, Debug)]
pub struct Credentials {
    dir: Option<PathBuf>,
}

impl Credentials {
    /// `$CREDENTIALS_DIRECTORY` if set, else `/run/credentials/@system` if it exists.
    pub fn from_env() -> Credentials {
        let dir = std::env::var_os("CREDENTIALS_DIRECTORY")
            .map(PathBuf::from)
            .or_else(|| {
                let p = PathBuf::from("/run/credentials/@system");
                p.is_dir().then_some(p)
            });
        Credentials { dir }
    }

    /// Credentials from `$CREDENTIALS_DIRECTORY` only, validated as systemd's
    /// `get_credentials_dir()` does (absolute, normalized): what systemd's tools read.
    pub fn from_env_strict() -> Credentials {
        let dir = std::env::var_os("CREDENTIALS_DIRECTORY")
            .map(PathBuf::from)
            .filter(|p| {
                p.to_str().is_some_and(|s| {
                    s.starts_with('/')
                        && !s.contains("//")
                        && !s.split('/').any(|c| c == "." || c == "..")
                })
            });
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
    /// are refused.
    pub fn get_bytes(&self, name: &str) -> Option<Vec<u8>> {
        if name.contains('/') || name.starts_with('.') || name.len() > 255 {
            return None;
        }
        std::fs::read(self.dir.as_ref()?.join(name)).ok()
    }

    /// The credential's value as text, if present (a trailing newline is kept as given;
    /// callers trim where systemd does). Names with `/` are refused.
    pub fn get(&self, name: &str) -> Option<String> {
        if name.contains('/') || name.starts_with('.') || name.len() > 255 {
            return None;
        }
        let p = self.dir.as_ref()?.join(name);
        let md = std::fs::symlink_metadata(&p).ok()?;
        if !md.is_file() || md.len() > 1 << 20 {
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
