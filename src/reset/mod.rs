//! Factory reset: flushes `/var` (and `/etc` at level `full`) except a keep-list, crash-safe and
//! resumable.
//!
//! Each flushed directory `D` gets a work area `D/.pristine-reset/` on its own file system, so
//! every move is a `rename(2)`; nothing is ever copied, nothing is deleted before the kept paths
//! are back in place. The phases, recorded in `D/.pristine-reset/intent.json` before each one
//! starts, are:
//!
//! 1. `aside`: every kept path is renamed into `work/keep/<path>`;
//! 2. `flush`: every other entry of `D` is renamed into `work/trash/<path>` — never following a
//!    symlink, never moving a mount point (directories that contain one are descended into);
//! 3. `restore`: kept paths are renamed back (their parents recreated);
//! 4. `clear`: the triggers are cleared (request file removed, EFI variables deleted);
//! 5. `purge`: the trash is deleted, then the intent and the work area.
//!
//! Every phase is idempotent, so a crash anywhere followed by a new run finishes the reset with
//! the same result, and a kept path is at every moment either in place or in `work/keep`.
//! Mount points are listed from `/proc/self/mountinfo` and `statx` mount ids.
//!
//! This module never touches anything outside `/etc` and `/var` of the root (and the host's
//! efivarfs for clearing triggers), and never removes a kept path.

pub mod cli;

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{ResetLevel, ResetMachineId, Settings};
use crate::fs::{Root, WriteOptions};
use crate::report::{Diagnostic, Outcome};

/// Name of the work area inside each flushed directory.
pub const WORK: &str = ".pristine-reset";

/// The phases, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Aside,
    Flush,
    Restore,
    Clear,
    Purge,
}

/// The intent record of one directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    pub phase: Phase,
    /// In-root absolute paths to keep, all under this directory.
    pub keep: Vec<PathBuf>,
    /// Why the reset runs (trigger sources), for the log.
    pub sources: Vec<String>,
    /// Not stored: a work area was found without an intent record.
    #[serde(default, skip_serializing)]
    pub orphan: bool,
}

/// What the reset should do (decided from settings and detection).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub level: ResetLevel,
    pub keep: Vec<PathBuf>,
    pub sources: Vec<String>,
    /// Host efivarfs directory whose FactoryReset* variables are cleared.
    pub efivars: Option<PathBuf>,
}

impl Request {
    /// Builds the request from the `[reset]` settings. Keep paths outside /etc and /var, or
    /// with `..`, are reported and dropped.
    pub fn from_settings(
        settings: &Settings,
        sources: Vec<String>,
        efivars: Option<PathBuf>,
        out: &mut Outcome,
    ) -> Request {
        let s = &settings.reset;
        let mut keep = Vec::new();
        for k in &s.keep {
            let p = Path::new(k);
            if crate::config::valid_keep_path(k) {
                keep.push(p.to_path_buf());
            } else {
                out.push(Diagnostic::bad_config(
                    Path::new("pristine.toml"),
                    0,
                    format!(
                        "[reset] keep: '{k}' is not an absolute path below /etc or /var, ignoring"
                    ),
                ));
            }
        }
        if s.machine_id == ResetMachineId::Keep {
            keep.push(PathBuf::from("/etc/machine-id"));
        }
        // The /usr update state (slots, pending version, tries) describes /usr, not local
        // state: it survives a reset.
        let st = Path::new(&settings.update.state_dir);
        let in_scope = st.starts_with("/var") || st.starts_with("/etc");
        if st.is_absolute()
            && in_scope
            && st.components().count() > 2
            && !keep.iter().any(|k| st.starts_with(k))
        {
            keep.push(st.to_path_buf());
        }
        Request {
            level: s.level,
            keep,
            sources,
            efivars,
        }
    }

    /// The directories this request flushes.
    pub fn dirs(&self) -> Vec<&'static str> {
        match self.level {
            ResetLevel::Full => vec!["/etc", "/var"],
            ResetLevel::Var => vec!["/var"],
        }
    }
}

/// Interrupted resets waiting in `root`: every directory with a work area. A work area whose
/// intent is already gone (a crash at the very end) is finished as a purge.
pub fn pending(root: &Root) -> Vec<(PathBuf, Intent)> {
    ["/etc", "/var"]
        .iter()
        .filter_map(|d| {
            let work = Path::new(d).join(WORK);
            root.file_type(&work).ok().flatten()?;
            let text = root.read_optional(&work.join("intent.json")).ok().flatten();
            let intent = text
                .and_then(|t| serde_json::from_str::<Intent>(&t).ok())
                .unwrap_or(Intent {
                    phase: Phase::Purge,
                    keep: Vec::new(),
                    sources: Vec::new(),
                    orphan: true,
                });
            Some((PathBuf::from(d), intent))
        })
        .collect()
}

/// Mount points (in-root paths) strictly below `dir`, from the host's mountinfo.
pub fn mount_points_below(root: &Root, dir: &Path) -> Vec<PathBuf> {
    let host_dir = root.display_path(dir);
    let host_root = root.host().to_path_buf();
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape_mountinfo(m)))
        .filter(|m| m.starts_with(&host_dir) && *m != host_dir)
        .filter_map(|m| {
            m.strip_prefix(&host_root)
                .ok()
                .map(|r| Path::new("/").join(r))
        })
        .collect()
}

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn rel_to(dir: &Path, p: &Path) -> PathBuf {
    p.strip_prefix(dir)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| p.to_path_buf())
}

/// One planned step, for `--dry-run` and the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Step {
    pub dir: PathBuf,
    pub phase: Phase,
    pub what: String,
}

/// The plan: which directories go through which phases, starting where a previous run stopped.
pub fn plan(req: &Request, resumed: &[(PathBuf, Intent)]) -> Vec<Step> {
    let mut steps = Vec::new();
    for d in req.dirs() {
        let start = resumed
            .iter()
            .find(|(p, _)| p == Path::new(d))
            .map(|(_, i)| i.phase)
            .unwrap_or(Phase::Aside);
        for phase in [
            Phase::Aside,
            Phase::Flush,
            Phase::Restore,
            Phase::Clear,
            Phase::Purge,
        ] {
            if phase < start {
                continue;
            }
            let what = match phase {
                Phase::Aside => format!(
                    "move {} kept path(s) aside",
                    req.keep.iter().filter(|k| k.starts_with(d)).count()
                ),
                Phase::Flush => format!("move the contents of {d} into the trash"),
                Phase::Restore => "move kept paths back".to_string(),
                Phase::Clear => "clear the reset triggers".to_string(),
                Phase::Purge => "delete the trash".to_string(),
            };
            steps.push(Step {
                dir: PathBuf::from(d),
                phase,
                what,
            });
        }
    }
    steps
}

struct Dir<'a> {
    root: &'a Root,
    dir: PathBuf,
    work: PathBuf,
}

impl Dir<'_> {
    fn keep_area(&self) -> PathBuf {
        self.work.join("keep")
    }
    fn trash(&self) -> PathBuf {
        self.work.join("trash")
    }

    fn write_intent(&self, intent: &Intent) -> io::Result<()> {
        let data = serde_json::to_vec_pretty(intent).map_err(io::Error::other)?;
        self.root.write_atomic(
            &self.work.join("intent.json"),
            &data,
            &WriteOptions {
                mode: Some(0o600),
                ..Default::default()
            },
        )
    }

    /// Phase 1.
    fn aside(&self, keep: &[PathBuf], mounts: &[PathBuf]) -> io::Result<()> {
        for k in keep {
            if self.in_place(k, mounts) {
                continue;
            }
            let dest = self.keep_area().join(rel_to(&self.dir, k));
            if self.root.file_type(k)?.is_none() {
                continue; // already aside, or never existed
            }
            if let Some(parent) = dest.parent() {
                self.root.mkdir_all(parent, 0o700)?;
            }
            if self.root.file_type(&dest)?.is_some() {
                // Both exist: a previous run restored it and crashed before recording the next
                // phase cannot happen (restore is recorded first); keep the in-place copy and
                // never lose data: move the old one into the trash.
                let t = self.trash().join(".stale-keep").join(rel_to(&self.dir, k));
                if let Some(parent) = t.parent() {
                    self.root.mkdir_all(parent, 0o700)?;
                }
                self.root.rename(&dest, &t)?;
            }
            self.root.rename(k, &dest)?;
        }
        Ok(())
    }

    /// Kept paths that cannot be renamed (mount points, or containing one) stay in place and
    /// are protected during the flush.
    fn in_place(&self, k: &Path, mounts: &[PathBuf]) -> bool {
        mounts.iter().any(|m| m.starts_with(k))
    }

    /// Phase 2: move everything except the work area, mount points and in-place kept paths
    /// into the trash, descending into directories that contain a protected path.
    fn flush(&self, at: &Path, protected: &[PathBuf]) -> io::Result<()> {
        let entries = match self.root.read_dir(at) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for e in entries {
            let p = at.join(&e.name);
            if p == self.work || protected.contains(&p) {
                continue;
            }
            if protected.iter().any(|x| x.starts_with(&p))
                && e.file_type == rustix::fs::FileType::Directory
            {
                self.flush(&p, protected)?;
                continue;
            }
            let dest = self.trash().join(rel_to(&self.dir, &p));
            if let Some(parent) = dest.parent() {
                self.root.mkdir_all(parent, 0o700)?;
            }
            self.root.rename(&p, &dest)?;
        }
        Ok(())
    }

    /// Phase 3.
    fn restore(&self, keep: &[PathBuf]) -> io::Result<()> {
        for k in keep {
            let src = self.keep_area().join(rel_to(&self.dir, k));
            if self.root.file_type(&src)?.is_none() {
                continue;
            }
            if let Some(parent) = k.parent() {
                self.root.mkdir_all(parent, 0o755)?;
            }
            self.root.rename(&src, k)?;
        }
        Ok(())
    }

    /// Phase 5.
    fn purge(&self) -> io::Result<()> {
        self.root.remove_tree(&self.trash())?;
        self.root.remove_tree(&self.keep_area())?;
        self.root.remove_tree(&self.work.join("intent.json"))?;
        self.root.remove_tree(&self.work)?;
        Ok(())
    }
}

/// Runs (or resumes) the reset. With `start_new` false only interrupted directories are
/// finished. Errors are recorded in `out`; a failed directory stops at its failing phase (its
/// intent stays, so the next run resumes it).
///
/// Every directory's intent is written before any is flushed, and the triggers are cleared
/// only once every directory has its kept paths back, so a crash at any point leaves a complete
/// set of intents for the next run, whatever the triggers then say.
pub fn apply(root: &Root, req: &Request, start_new: bool, out: &mut Outcome) {
    let resumed = pending(root);
    for (d, i) in &resumed {
        log::info!(
            "Resuming interrupted factory reset of {} at phase {:?}.",
            d.display(),
            i.phase
        );
    }
    // A work area without an intent is either a crash before the intent was first written
    // (the trigger is still there: start afresh) or after it was removed (finish the purge).
    let mut dirs: Vec<(PathBuf, Intent)> = resumed
        .into_iter()
        .filter(|(_, i)| !(start_new && i.orphan))
        .collect();
    if start_new {
        for d in req.dirs() {
            if !dirs.iter().any(|(p, _)| p == Path::new(d)) {
                let intent = Intent {
                    phase: Phase::Aside,
                    keep: req
                        .keep
                        .iter()
                        .filter(|k| k.starts_with(d))
                        .cloned()
                        .collect(),
                    sources: req.sources.clone(),
                    orphan: false,
                };
                dirs.push((PathBuf::from(d), intent));
            }
        }
    }
    let mut work: Vec<(Dir<'_>, Intent)> = Vec::new();
    for (d, intent) in dirs {
        let dir = Dir {
            root,
            work: d.join(WORK),
            dir: d.clone(),
        };
        if intent.phase == Phase::Aside {
            let r = root
                .file_type(&dir.dir)
                .and_then(|t| {
                    if t.is_none() {
                        root.mkdir_all(&dir.dir, 0o755)
                    } else {
                        Ok(())
                    }
                })
                .and_then(|()| root.mkdir_all(&dir.work, 0o700))
                .and_then(|()| dir.write_intent(&intent));
            if let Err(e) = r {
                out.push(Diagnostic::failed(
                    Some(&d),
                    format!("factory reset: cannot record intent: {e}"),
                ));
                continue;
            }
        }
        work.push((dir, intent));
    }
    // Phases up to and including restore, directory by directory.
    let mut ok = true;
    for (dir, intent) in &mut work {
        if let Err(e) = run_phases(dir, intent, Phase::Clear) {
            ok = false;
            out.push(Diagnostic::failed(
                Some(&dir.dir),
                format!("factory reset failed in phase {:?}: {e}", intent.phase),
            ));
        }
    }
    if !ok {
        return;
    }
    // Clear the triggers once, then purge.
    if work.iter().any(|(_, i)| i.phase == Phase::Clear) {
        if let Err(e) = clear_triggers(root, req) {
            out.push(Diagnostic::failed(
                None,
                format!("factory reset: cannot clear the request: {e}"),
            ));
            return;
        }
    }
    for (dir, intent) in &mut work {
        if intent.phase == Phase::Clear {
            intent.phase = Phase::Purge;
            if let Err(e) = dir.write_intent(intent) {
                out.push(Diagnostic::failed(
                    Some(&dir.dir),
                    format!("factory reset: cannot record intent: {e}"),
                ));
                continue;
            }
        }
        match dir.purge() {
            Ok(()) => log::info!("Factory reset of {} complete.", dir.dir.display()),
            Err(e) => out.push(Diagnostic::failed(
                Some(&dir.dir),
                format!("factory reset failed in phase purge: {e}"),
            )),
        }
    }
}

fn clear_triggers(root: &Root, req: &Request) -> io::Result<()> {
    root.remove_tree(Path::new(crate::detect::RESET_REQUEST_FILE))?;
    if let Some(efi) = &req.efivars {
        crate::host::efi::clear_reset_request(efi)?;
    }
    Ok(())
}

/// Runs the phases of one directory until `stop` is reached (recorded).
fn run_phases(dir: &mut Dir<'_>, intent: &mut Intent, stop: Phase) -> io::Result<()> {
    let root = dir.root;
    let mounts = mount_points_below(root, &dir.dir);
    let mut protected: Vec<PathBuf> = mounts.clone();
    protected.extend(
        intent
            .keep
            .iter()
            .filter(|k| dir.in_place(k, &mounts))
            .cloned(),
    );
    while intent.phase < stop {
        match intent.phase {
            Phase::Aside => {
                dir.aside(&intent.keep, &mounts)?;
                intent.phase = Phase::Flush;
            }
            Phase::Flush => {
                dir.flush(&dir.dir, &protected)?;
                intent.phase = Phase::Restore;
            }
            Phase::Restore => {
                dir.restore(&intent.keep)?;
                intent.phase = Phase::Clear;
            }
            Phase::Clear | Phase::Purge => return Ok(()),
        }
        dir.write_intent(intent)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_resumes() {
        let req = Request {
            level: ResetLevel::Full,
            keep: vec![],
            sources: vec![],
            efivars: None,
        };
        assert_eq!(plan(&req, &[]).len(), 10);
        let resumed = vec![(
            PathBuf::from("/var"),
            Intent {
                phase: Phase::Clear,
                keep: vec![],
                sources: vec![],
                orphan: false,
            },
        )];
        let p = plan(&req, &resumed);
        assert_eq!(p.iter().filter(|s| s.dir == Path::new("/var")).count(), 2);
        let req = Request {
            level: ResetLevel::Var,
            ..req
        };
        assert!(plan(&req, &[]).iter().all(|s| s.dir == Path::new("/var")));
    }

    #[test]
    fn keep_validation() {
        use crate::config::ResetSettings;
        let mut out = Outcome::default();
        let s = ResetSettings {
            level: ResetLevel::Full,
            keep: vec![
                "/var/lib/machines".into(),
                "relative".into(),
                "/usr/x".into(),
                "/var/../etc".into(),
                "/var".into(),
            ],
            machine_id: ResetMachineId::Keep,
        };
        let settings = Settings {
            reset: s,
            ..Default::default()
        };
        let r = Request::from_settings(&settings, vec![], None, &mut out);
        assert_eq!(
            r.keep,
            vec![
                PathBuf::from("/var/lib/machines"),
                PathBuf::from("/etc/machine-id"),
                // The update state is kept by default.
                PathBuf::from("/var/lib/pristine/update"),
            ]
        );
        assert_eq!(out.diagnostics.len(), 4);
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
    }
}
