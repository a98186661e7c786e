//! The target's os-release, read by this one function for every user (stamps, specifiers,
//! detection): `/etc/os-release`, else `/usr/lib/os-release`, as systemd reads it. Reads go
//! through the root handle; parsing is [`crate::text::envfile`]'s.

use std::collections::HashMap;
use std::path::Path;

use crate::fs::Root;

/// The candidates, in order.
pub const PATHS: [&str; 2] = ["/etc/os-release", "/usr/lib/os-release"];

/// One os-release file: its raw bytes (for hashing) and its fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OsRelease {
    pub raw: Vec<u8>,
    pub fields: HashMap<String, String>,
}

/// Reads the target's os-release; `None` when neither file can be read.
pub fn read(root: &Root) -> Option<OsRelease> {
    PATHS.iter().find_map(|p| {
        let raw = match root.read(Path::new(p)) {
            Ok(raw) => raw,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                // Bounded like every tree read: a huge or unreadable file counts as missing.
                log::warn!(
                    "Ignoring {}: {e}",
                    root.display_path(Path::new(p)).display()
                );
                return None;
            }
        };
        let fields = crate::text::envfile::parse(&String::from_utf8_lossy(&raw))
            .into_iter()
            .collect();
        Some(OsRelease { raw, fields })
    })
}
