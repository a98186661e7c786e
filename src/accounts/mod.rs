//! Accounts that never move: the persistent UID/GID [`ledger`] that sysusers consults before it
//! allocates, and the repair of ownership under `/var` when a name's ID changed anyway.
//!
//! It owns reading and writing the ledger file through the root handle and the ownership walk;
//! it never allocates IDs itself (that is [`crate::sysusers::engine`], which takes the ledger as
//! part of its snapshot) and never follows a symlink or crosses a mount when it changes owners.

pub mod ledger;
pub mod repair;

use std::io;
use std::path::Path;

use crate::fs::{Root, WriteOptions};
use crate::report::{Diagnostic, Outcome};
use ledger::{Ledger, Space};

/// Reads the root's ledger. A missing ledger is empty; an unreadable or oversized one is
/// reported and treated as empty (allocation then behaves as systemd-sysusers'), and bad lines
/// are reported with their line number and skipped.
pub fn load(root: &Root, out: &mut Outcome) -> Ledger {
    let p = Path::new(ledger::PATH);
    let shown = root.display_path(p);
    let text = match root.stat(p, false) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ledger::default(),
        Err(e) => Err(e),
        Ok(st) if (st.st_mode & 0o170000) != 0o100000 => {
            Err(io::Error::other("not a regular file"))
        }
        Ok(st) if st.st_size as u64 > ledger::MAX_SIZE => Err(io::Error::other(format!(
            "larger than {} bytes",
            ledger::MAX_SIZE
        ))),
        Ok(_) => root.read(p),
    };
    match text {
        Ok(b) => {
            let (l, bad) = Ledger::parse(&String::from_utf8_lossy(&b));
            for b in bad {
                out.push(Diagnostic::bad_config(&shown, b.line, b.message));
            }
            l
        }
        Err(e) => {
            out.push(Diagnostic::failed(
                Some(&shown),
                format!(
                    "Failed to read ID ledger {}: {}",
                    shown.display(),
                    crate::sysusers::errno_text(&e)
                ),
            ));
            Ledger::default()
        }
    }
}

/// A name whose current ID is not the one the ledger recorded for it before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Moved {
    pub space: Space,
    pub name: String,
    pub old: u32,
    pub new: u32,
}

/// Records the IDs of every account in the root's (new) passwd and group into `ledger`.
/// Returns the names whose ID differs from the ledger's, for ownership repair. IDs that belong
/// to another name in the ledger are reported (warning) and not recorded.
pub fn record(ledger: &mut Ledger, passwd: &[u8], group: &[u8]) -> Vec<Moved> {
    let mut moved = Vec::new();
    let users = crate::sysusers::db::parse_passwd(passwd)
        .into_iter()
        .map(|p| (Space::User, p.name, p.uid));
    let groups = crate::sysusers::db::parse_group(group)
        .into_iter()
        .map(|g| (Space::Group, g.name, g.gid));
    for (space, name, id) in users.chain(groups) {
        let name = String::from_utf8_lossy(&name).into_owned();
        if name.starts_with('+') || name.starts_with('-') || name.is_empty() {
            continue; // NIS compat entries
        }
        let before = ledger.id_of(space, &name);
        match ledger.record(space, &name, id) {
            Ok(()) => {
                if let Some(old) = before.filter(|&o| o != id) {
                    moved.push(Moved {
                        space,
                        name,
                        old,
                        new: id,
                    });
                }
            }
            Err(other) => log::warn!(
                "{} '{name}' has ID {id}, which the ID ledger gave to '{other}' before; not recorded.",
                if space == Space::User { "User" } else { "Group" }
            ),
        }
    }
    moved
}

/// Writes the ledger (only when it changed) atomically, creating its directory.
pub fn store(root: &Root, ledger: &Ledger) -> io::Result<()> {
    if !ledger.changed() {
        return Ok(());
    }
    let p = Path::new(ledger::PATH);
    if let Some(dir) = p.parent() {
        root.mkdir_all(dir, 0o755)?;
    }
    root.write_atomic(
        p,
        ledger.to_string().as_bytes(),
        &WriteOptions {
            mode: Some(0o644),
            ..WriteOptions::default()
        },
    )
}
