//! Update-aware refresh of factory copies (three-way). systemd-tmpfiles copies a `C` source
//! only when the target is missing, so a file copied from `/usr/share/factory` on the first boot
//! never follows the vendor's later fixes (systemd#34456). pristine records, for every regular
//! file a `C` line placed, the SHA-256 of the factory version it was copied from, and after the
//! tmpfiles step compares three versions: the record, the target now and the factory now.
//!
//! | target vs record | factory vs record | action |
//! |---|---|---|
//! | same | changed | replaced by the new factory version (mode and owner kept) |
//! | same | removed (or its `C` line gone) | removed |
//! | changed | changed or removed | kept, reported as a conflict |
//! | changed | same | kept (an admin edit; nothing to report) |
//! | equal to the factory now | any | recorded as that version |
//!
//! A target without a record is never touched: files the admin created, and copies made
//! before this record existed that differ from the factory, stay as they are. Only regular
//! files are compared; a target that is a symlink, or has a symlink among its parents, is left
//! alone. Files larger than [`MAX_FILE`] are not compared, so never refreshed.
//!
//! The record is `/var/lib/pristine/factory-copies.json`, written atomically when it changed:
//! `{"format": 1, "copies": {"/etc/x": {"source": "/usr/share/factory/etc/x", "sha256": "…"}},
//! "conflicts": ["/etc/y"]}`.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::fs::{Root, WriteOptions};
use crate::report::{Diagnostic, Outcome};

/// In-root path of the record.
pub const RECORD: &str = "/var/lib/pristine/factory-copies.json";
/// Largest file compared or refreshed, and largest record read.
pub const MAX_FILE: u64 = 64 << 20;

/// One `C` line as the configuration resolved it: target and source, in-root paths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Copy {
    pub target: PathBuf,
    pub source: PathBuf,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    source: PathBuf,
    sha256: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    format: u32,
    copies: BTreeMap<PathBuf, Entry>,
    #[serde(default)]
    conflicts: Vec<PathBuf>,
}

/// What one file's three versions say to do (pure).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Action {
    Nothing,
    Record(String),
    Replace(String),
    Remove,
    Conflict,
    Forget,
}

fn decide(recorded: Option<&str>, target: Option<&str>, factory: Option<&str>) -> Action {
    match (recorded, target, factory) {
        (_, None, _) => match recorded {
            Some(_) => Action::Forget,
            None => Action::Nothing,
        },
        (_, Some(t), Some(f)) if t == f => match recorded {
            Some(r) if r == f => Action::Nothing,
            _ => Action::Record(f.to_string()),
        },
        (None, Some(_), _) => Action::Nothing,
        (Some(r), Some(t), Some(f)) if t == r => Action::Replace(f.to_string()),
        (Some(r), Some(t), None) if t == r => Action::Remove,
        (Some(r), Some(_), Some(f)) if f == r => Action::Nothing,
        (Some(_), Some(_), _) => Action::Conflict,
    }
}

fn sha256(b: &[u8]) -> String {
    crate::util::hex(&sha2::Sha256::digest(b))
}

/// Reads an in-root regular file that has no symlink on its way, bounded; `None` when it is
/// missing or not a plain regular file.
fn read_plain(root: &Root, p: &Path) -> io::Result<Option<(Vec<u8>, rustix::fs::Stat)>> {
    for a in p.ancestors().skip(1) {
        if a == Path::new("/") {
            break;
        }
        match root.stat(a, false) {
            Ok(st) if (st.st_mode & 0o170000) == 0o040000 => {}
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    let st = match root.stat(p, false) {
        Ok(st) => st,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if (st.st_mode & 0o170000) != 0o100000 {
        return Ok(None);
    }
    if st.st_size as u64 > MAX_FILE {
        // Not compared, so never refreshed: left as it is.
        log::debug!(
            "{}: larger than {MAX_FILE} bytes, not compared",
            p.display()
        );
        return Ok(None);
    }
    Ok(Some((root.read_max(p, MAX_FILE)?, st)))
}

fn load(root: &Root, out: &mut Outcome) -> Record {
    let p = Path::new(RECORD);
    match read_plain(root, p) {
        Ok(Some((b, _))) => match serde_json::from_slice::<Record>(&b) {
            Ok(r) if r.format == 1 => r,
            Ok(r) => {
                log::warn!(
                    "{}: unknown format {}, starting a new record",
                    root.display_path(p).display(),
                    r.format
                );
                Record::default()
            }
            Err(e) => {
                out.push(Diagnostic::bad_config(
                    &root.display_path(p),
                    e.line(),
                    format!("invalid factory-copy record ({e}), starting a new one"),
                ));
                Record::default()
            }
        },
        Ok(None) => Record::default(),
        Err(e) => {
            out.push(Diagnostic::failed(
                Some(&root.display_path(p)),
                format!("Failed to read {}: {e}", root.display_path(p).display()),
            ));
            Record::default()
        }
    }
}

/// Expands the `C` lines to the regular files they place: a file source is one pair; a
/// directory source, every regular file below it (iteratively, no symlinks followed).
fn expand(root: &Root, copies: &[Copy]) -> BTreeMap<PathBuf, PathBuf> {
    let mut files = BTreeMap::new();
    for c in copies {
        let mut stack = vec![(c.source.clone(), c.target.clone())];
        while let Some((s, t)) = stack.pop() {
            let Ok(st) = root.stat(&s, false) else {
                continue;
            };
            match st.st_mode & 0o170000 {
                0o100000 => {
                    files.entry(t).or_insert(s);
                }
                0o040000 => {
                    if let Ok(entries) = root.read_dir(&s) {
                        for e in entries {
                            stack.push((s.join(&e.name), t.join(&e.name)));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    files
}

/// Compares and refreshes every factory copy; counts go to `out` as `copies-refreshed`,
/// `copies-removed` and `copies-conflicts`. With `dry_run` it only logs what it would do.
pub fn run(root: &Root, copies: &[Copy], dry_run: bool, out: &mut Outcome) {
    let mut rec = load(root, out);
    if copies.is_empty() && rec.copies.is_empty() {
        return;
    }
    let before = rec.clone();
    let files = expand(root, copies);
    // Records whose C line or factory file is gone are judged against a missing factory.
    let mut all: BTreeMap<PathBuf, Option<PathBuf>> =
        rec.copies.keys().map(|t| (t.clone(), None)).collect();
    for (t, s) in &files {
        all.insert(t.clone(), Some(s.clone()));
    }
    rec.conflicts.clear();
    let (mut refreshed, mut removed) = (0u64, 0u64);
    for (target, source) in all {
        let shown = root.display_path(&target);
        let read = |p: &Path| -> crate::error::Result<Option<(Vec<u8>, rustix::fs::Stat)>> {
            read_plain(root, p)
                .map_err(|e| crate::error::Error::io("read", root.display_path(p), e))
        };
        let (t, f) = match (read(&target), source.as_deref().map(read).transpose()) {
            (Ok(t), Ok(f)) => (t, f.flatten()),
            (Err(e), _) | (_, Err(e)) => {
                out.push(Diagnostic::failed(
                    Some(&shown),
                    format!("Factory copy: {e}"),
                ));
                continue;
            }
        };
        let th = t.as_ref().map(|(b, _)| sha256(b));
        let fh = f.as_ref().map(|(b, _)| sha256(b));
        let recorded = rec.copies.get(&target).map(|e| e.sha256.clone());
        let action = decide(recorded.as_deref(), th.as_deref(), fh.as_deref());
        let verb = if dry_run { "Would" } else { "Will" };
        match action {
            Action::Nothing => {}
            Action::Forget => {
                rec.copies.remove(&target);
            }
            Action::Record(h) => {
                if let Some(s) = &source {
                    rec.copies.insert(
                        target.clone(),
                        Entry {
                            source: s.clone(),
                            sha256: h,
                        },
                    );
                }
            }
            Action::Conflict => {
                out.push(Diagnostic::notice(
                    Some(&shown),
                    0,
                    format!(
                        "{} was changed locally and its factory version changed too; keeping the local version.",
                        target.display()
                    ),
                ));
                rec.conflicts.push(target.clone());
            }
            Action::Replace(h) => {
                log::info!(
                    "{verb} refresh {} from its new factory version.",
                    target.display()
                );
                let (Some((data, _)), Some((_, tst)), Some(s)) = (&f, &t, &source) else {
                    continue;
                };
                if dry_run {
                    continue;
                }
                let opts = WriteOptions {
                    mode: Some(tst.st_mode & 0o7777),
                    owner: Some((tst.st_uid, tst.st_gid)),
                    times: None,
                };
                match root.write_atomic(&target, data, &opts) {
                    Ok(()) => {
                        refreshed += 1;
                        rec.copies.insert(
                            target.clone(),
                            Entry {
                                source: s.clone(),
                                sha256: h,
                            },
                        );
                    }
                    Err(e) => out.push(Diagnostic::failed(
                        Some(&shown),
                        format!("Failed to refresh {}: {e}", shown.display()),
                    )),
                }
            }
            Action::Remove => {
                log::info!(
                    "{verb} remove {}: the vendor removed it from the factory.",
                    target.display()
                );
                if dry_run {
                    continue;
                }
                match root.unlink(&target) {
                    Ok(()) => {
                        removed += 1;
                        rec.copies.remove(&target);
                    }
                    Err(e) => out.push(Diagnostic::failed(
                        Some(&shown),
                        format!("Failed to remove {}: {e}", shown.display()),
                    )),
                }
            }
        }
    }
    out.add_count("copies-refreshed", refreshed);
    out.add_count("copies-removed", removed);
    out.add_count("copies-conflicts", rec.conflicts.len() as u64);
    if dry_run || rec == before {
        return;
    }
    rec.format = 1;
    let write = serde_json::to_vec_pretty(&rec)
        .map_err(io::Error::other)
        .and_then(|b| {
            root.mkdir_all(Path::new("/var/lib/pristine"), 0o755)?;
            root.write_atomic(Path::new(RECORD), &b, &WriteOptions::default())
        });
    if let Err(e) = write {
        out.push(Diagnostic::failed(
            Some(&root.display_path(Path::new(RECORD))),
            format!("Failed to write the factory-copy record: {e}"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::{decide, Action};

    #[test]
    fn three_way_table() {
        let a = Some("a");
        let b = Some("b");
        let c = Some("c");
        // Fresh copy: recorded.
        assert_eq!(decide(None, a, a), Action::Record("a".into()));
        // Admin file without record: untouched.
        assert_eq!(decide(None, b, a), Action::Nothing);
        assert_eq!(decide(None, b, None), Action::Nothing);
        // Unmodified, vendor changed: replaced.
        assert_eq!(decide(a, a, b), Action::Replace("b".into()));
        // Unmodified, vendor removed: removed.
        assert_eq!(decide(a, a, None), Action::Remove);
        // Modified, vendor unchanged: kept quietly.
        assert_eq!(decide(a, b, a), Action::Nothing);
        // Modified, vendor changed or removed: conflict.
        assert_eq!(decide(a, b, c), Action::Conflict);
        assert_eq!(decide(a, b, None), Action::Conflict);
        // Admin made the vendor's change: recorded as the new version.
        assert_eq!(decide(a, b, b), Action::Record("b".into()));
        // Target gone: the record is dropped (tmpfiles recreates the copy next time).
        assert_eq!(decide(a, None, b), Action::Forget);
        assert_eq!(decide(None, None, b), Action::Nothing);
        assert_eq!(decide(a, a, a), Action::Nothing);
    }
}
