//! Accounts that never move: the persistent UID/GID [`ledger`] that sysusers consults before it
//! allocates, and the repair of ownership under `/var` when a name's ID changed anyway.
//!
//! It owns reading and writing the ledger file through the root handle and the ownership walk;
//! it never allocates IDs itself (that is [`crate::sysusers::engine`], which takes the ledger as
//! part of its snapshot) and never follows a symlink or crosses a mount when it changes owners.

pub mod ledger;
pub mod merge;
pub mod repair;

use std::io;
use std::path::Path;

use crate::error::{Error, IoContext, Result};
use crate::fs::{Root, WriteOptions};
use crate::report::{Diagnostic, Outcome};
use ledger::{Ledger, Space};

/// Reads the root's ledger. A missing ledger is empty; an unreadable or oversized one is
/// reported and treated as empty (allocation then behaves as systemd-sysusers'), and bad lines
/// are reported with their line number and skipped.
pub fn load(root: &Root, out: &mut Outcome) -> Ledger {
    let p = Path::new(ledger::PATH);
    let shown = root.display_path(p);
    let text = match read_regular(root, p, ledger::MAX_SIZE) {
        Ok(None) => return Ledger::default(),
        Ok(Some(b)) => Ok(b),
        Err(e) => Err(e),
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
                    e.reason()
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
            Err(ledger::Taken { owner: other }) => log::warn!(
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

/// The six account files, in the order of [`merge::Dbs`]'s fields, with their defaults
/// (mode) when created.
const DB_FILES: [(&str, u32); 6] = [
    ("/etc/passwd", 0o644),
    ("/etc/group", 0o644),
    ("/etc/shadow", 0o000),
    ("/etc/gshadow", 0o000),
    ("/etc/subuid", 0o644),
    ("/etc/subgid", 0o644),
];
/// Largest account database read.
const MAX_DB: u64 = 64 << 20;

fn fields(d: &mut merge::Dbs) -> [&mut Vec<u8>; 6] {
    [
        &mut d.passwd,
        &mut d.group,
        &mut d.shadow,
        &mut d.gshadow,
        &mut d.subuid,
        &mut d.subgid,
    ]
}

/// Reads the root's account databases (missing files are empty).
pub fn read_dbs(root: &Root) -> Result<merge::Dbs> {
    let mut d = merge::Dbs::default();
    for (slot, (path, _)) in fields(&mut d).into_iter().zip(DB_FILES) {
        if let Some(b) = read_regular(root, Path::new(path), MAX_DB)? {
            *slot = b;
        }
    }
    Ok(d)
}

/// Reads the regular file `p` of at most `max` bytes; `None` if it does not exist.
fn read_regular(root: &Root, p: &Path, max: u64) -> Result<Option<Vec<u8>>> {
    match root.stat(p, false) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", p, e)),
        Ok(st) if (st.st_mode & 0o170000) != 0o100000 => {
            Err(Error::invalid("read", p, "not a regular file"))
        }
        Ok(st) if st.st_size as u64 > max => Err(Error::invalid(
            "read",
            p,
            format!("larger than {max} bytes"),
        )),
        Ok(_) => root.read(p).op("read", p).map(Some),
    }
}

/// Writes the databases that differ from `old`, each atomically, keeping an existing file's
/// mode and owner.
fn write_dbs(root: &Root, old: &merge::Dbs, new: &mut merge::Dbs) -> Result<usize> {
    let mut old = old.clone();
    let mut n = 0;
    for ((o, w), (path, mode)) in fields(&mut old).into_iter().zip(fields(new)).zip(DB_FILES) {
        if *o == *w {
            continue;
        }
        let p = Path::new(path);
        let opts = match root.stat(p, false) {
            Ok(st) => WriteOptions {
                mode: Some(st.st_mode & 0o7777),
                owner: Some((st.st_uid, st.st_gid)),
                times: None,
            },
            Err(_) => WriteOptions {
                mode: Some(mode),
                ..WriteOptions::default()
            },
        };
        let etc = Path::new("/etc");
        root.mkdir_all(etc, 0o755).op("create directory", etc)?;
        root.write_atomic(p, w, &opts).op("write", p)?;
        n += 1;
    }
    Ok(n)
}

/// What the admin changed in the account databases (the `parsed` operator's capture).
pub fn capture(root: &Root) -> Result<merge::Values> {
    let current = read_dbs(root)?;
    let mut scratch = Outcome::default();
    let ledger = load(root, &mut scratch);
    let (vendor, _) = crate::sysusers::vendor_dbs(root, &ledger);
    Ok(merge::capture(&current, &vendor))
}

fn report(findings: Vec<merge::Finding>, out: &mut Outcome) {
    for f in findings {
        out.push(Diagnostic::notice(
            Some(Path::new("/etc/passwd")),
            0,
            format!("account merge ({}): {}", f.key, f.message),
        ));
    }
}

/// Restore, first half (before sysusers): the admin's own records. Returns files written.
pub fn restore_records(root: &Root, v: &merge::Values, dry_run: bool, out: &mut Outcome) -> usize {
    restore_with(root, dry_run, out, |d, f| merge::add_admin_records(d, v, f))
}

/// Restore, second half (after sysusers): the admin's fields on vendor records.
pub fn restore_overlay(root: &Root, v: &merge::Values, dry_run: bool, out: &mut Outcome) -> usize {
    let (_, declared) = crate::sysusers::vendor_dbs(root, &Ledger::default());
    restore_with(root, dry_run, out, |d, f| {
        merge::overlay(d, v, &declared, f)
    })
}

fn restore_with(
    root: &Root,
    dry_run: bool,
    out: &mut Outcome,
    step: impl FnOnce(&mut merge::Dbs, &mut Vec<merge::Finding>) -> bool,
) -> usize {
    let old = match read_dbs(root) {
        Ok(d) => d,
        Err(e) => {
            out.push(Diagnostic::failed(
                Some(Path::new("/etc/passwd")),
                format!("account merge: cannot read the account databases: {e}"),
            ));
            return 0;
        }
    };
    let mut new = old.clone();
    let mut findings = Vec::new();
    let changed = step(&mut new, &mut findings);
    report(findings, out);
    if !changed {
        return 0;
    }
    if dry_run {
        log::info!("Would merge the admin's account records into /etc.");
        return 0;
    }
    match write_dbs(root, &old, &mut new) {
        Ok(n) => n,
        Err(e) => {
            out.push(Diagnostic::failed(
                Some(Path::new("/etc/passwd")),
                format!("account merge: {e}"),
            ));
            0
        }
    }
}
