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
//!
//! Rules that hold whatever the tree contains:
//! - Everything is done through a [`Root::strict`] handle: no symlink is followed in any
//!   component of any path the reset moves or removes. A flushed directory that is itself a
//!   symlink is refused; a kept path behind a symlink is reported and not kept (what the link
//!   points to is never touched); a work area that is not a directory is removed as the entry
//!   it is, never followed; the paths of an intent record are checked to lie below their
//!   directory.
//! - One path that cannot be kept (a NUL in it, another file system, a read-only mount, …) is
//!   reported by name and left in place, protected from the flush like a mount point; the
//!   reset goes on with the rest and finishes, so the next boot is not stuck. The keep-list is
//!   re-read from the configuration when a reset resumes in its first phase.
//! - Mount points are identified by mount id on descriptors (`statx` `STATX_MNT_ID` against
//!   `/proc/self/mountinfo`'s ids, and device/mount id of every directory the flush meets),
//!   never by comparing path strings, so a relative `--root` or one reached through a symlink
//!   works.
//! - Every walk is iterative with a bounded number of open descriptors.
//!
//! This module never touches anything outside `/etc` and `/var` of the root (and the host's
//! efivarfs for clearing triggers), and never removes a kept path.

pub mod cli;

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

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
    /// Kept paths that could not be moved aside: they stay in place, protected from the flush.
    #[serde(default)]
    pub in_place: Vec<PathBuf>,
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
        // The ID ledger: kept data (and anything restored later) stays owned by the names it
        // belonged to, so a reset never lets IDs move to other names (docs/sysusers.md).
        let ledger = Path::new(crate::accounts::ledger::PATH);
        if !keep.iter().any(|k| ledger.starts_with(k)) {
            keep.push(ledger.to_path_buf());
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

/// Whether `p` is a plain absolute path strictly below `dir`: only normal components, no NUL.
fn lies_below(p: &Path, dir: &Path) -> bool {
    p.is_absolute()
        && p.starts_with(dir)
        && p != dir
        && !p.as_os_str().as_bytes().contains(&0)
        && p.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

/// Interrupted resets waiting in `root`: every flushed directory (a real directory, not a
/// link) with a work area that is a real directory. A work area whose intent is already gone
/// (a crash at the very end) is finished as a purge. Paths of an intent that do not lie below
/// its directory are dropped.
pub fn pending(root: &Root) -> Vec<(PathBuf, Intent)> {
    let Ok(root) = root.strict() else {
        return Vec::new();
    };
    ["/etc", "/var"]
        .iter()
        .filter_map(|d| {
            let work = Path::new(d).join(WORK);
            if root.file_type(&work).ok().flatten()? != FileType::Directory {
                return None;
            }
            let text = root.read_optional(&work.join("intent.json")).ok().flatten();
            let mut intent = text
                .and_then(|t| serde_json::from_str::<Intent>(&t).ok())
                .unwrap_or(Intent {
                    phase: Phase::Purge,
                    keep: Vec::new(),
                    sources: Vec::new(),
                    in_place: Vec::new(),
                    orphan: true,
                });
            intent.keep.retain(|k| lies_below(k, Path::new(d)));
            intent.in_place.retain(|k| lies_below(k, Path::new(d)));
            Some((PathBuf::from(d), intent))
        })
        .collect()
}

/// The mount id of an open file (`statx` `STATX_MNT_ID`), if the kernel reports it.
fn mount_id(fd: &OwnedFd) -> Option<u64> {
    let mask = rustix::fs::StatxFlags::MNT_ID;
    let st = rustix::fs::statx(fd, "", AtFlags::EMPTY_PATH, mask).ok()?;
    (st.stx_mask & mask.bits() != 0).then_some(st.stx_mnt_id)
}

/// Mount points (in-root paths) strictly below `dir`. Candidates come from the host's
/// mountinfo below the kernel's own name for the root descriptor (so a relative root, or one
/// given through a symlink, is named as mountinfo names it); each is kept only if opening it
/// in the root without following any link finds that very mount (same mount id, or another
/// device than its parent where the kernel has no mount ids).
pub fn mount_points_below(root: &Root, dir: &Path) -> Vec<PathBuf> {
    let Ok(root) = root.strict() else {
        return Vec::new();
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let Ok(host_root) = std::fs::read_link(crate::fs::safe::proc_fd_path(root.fd())) else {
        return Vec::new();
    };
    let host_dir = host_root.join(crate::fs::relative(dir));
    let mut out = Vec::new();
    for line in info.lines() {
        let mut f = line.split(' ');
        let (Some(id), Some(point)) = (f.next(), f.nth(3)) else {
            continue;
        };
        let Ok(id) = id.parse::<u64>() else {
            continue;
        };
        let m = PathBuf::from(unescape_mountinfo(point));
        if !m.starts_with(&host_dir) || m == host_dir {
            continue;
        }
        let Ok(r) = m.strip_prefix(&host_root) else {
            continue;
        };
        let p = Path::new("/").join(r);
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW;
        let Ok(fd) = root.open_path(&p, flags, Mode::empty()) else {
            continue;
        };
        let matches = match mount_id(&fd) {
            Some(mid) => mid == id,
            None => p.parent().is_some_and(|parent| {
                let pst = root.stat(parent, false);
                let st = rustix::fs::fstat(&fd);
                matches!((pst, st), (Ok(a), Ok(b)) if a.st_dev != b.st_dev)
            }),
        };
        if matches && !out.contains(&p) {
            out.push(p);
        }
    }
    out
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

/// A failure on one path that does not stop the reset: reported, the path left in place.
type PathError = (PathBuf, io::Error);

/// Whether the directory entry `p` is a mount point, judged on descriptors: another device or
/// another mount id than its parent. A non-directory (or a link) never is.
fn is_mount_point(root: &Root, p: &Path) -> io::Result<bool> {
    let (parent, name) = root.parent(p)?;
    let child = match rustix::fs::openat(
        &parent,
        name.as_os_str(),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(c) => c,
        Err(rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP | rustix::io::Errno::NOENT) => {
            return Ok(false)
        }
        Err(e) => return Err(e.into()),
    };
    crate::fs::is_mount_point(&child, &parent, &name)
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

    /// Moves `p` (an entry of the flushed directory) into the trash at the same relative path.
    fn to_trash(&self, p: &Path) -> io::Result<()> {
        let dest = self.trash().join(rel_to(&self.dir, p));
        if let Some(parent) = dest.parent() {
            self.root.mkdir_all(parent, 0o700)?;
        }
        self.root.rename(p, &dest)
    }

    /// Phase 1: every kept path is moved into the keep area. A path that cannot be moved is
    /// returned with its error and stays in place (the caller protects it from the flush).
    /// State files that describe the flushed tree (see [`NOT_KEPT`]) go to the trash first.
    fn aside(&self, keep: &[PathBuf], mounts: &[PathBuf]) -> (Vec<PathBuf>, Vec<PathError>) {
        let mut in_place = Vec::new();
        let mut errors = Vec::new();
        for (state, unless) in NOT_KEPT {
            let state = Path::new(state);
            let covered = |q: &Path| keep.iter().any(|k| q.starts_with(k));
            if !state.starts_with(&self.dir) || !covered(state) || covered(Path::new(unless)) {
                continue;
            }
            match self.root.file_type(state) {
                Ok(Some(_)) => {
                    if let Err(e) = self.to_trash(state) {
                        errors.push((state.to_path_buf(), e));
                    }
                }
                Ok(None) => {}
                Err(e) => errors.push((state.to_path_buf(), e)),
            }
        }
        for k in keep {
            if mounts.iter().any(|m| m.starts_with(k) || k.starts_with(m)) {
                in_place.push(k.clone());
                continue;
            }
            if let Err(e) = self.aside_one(k) {
                in_place.push(k.clone());
                errors.push((k.clone(), e));
            }
        }
        (in_place, errors)
    }

    fn aside_one(&self, k: &Path) -> io::Result<()> {
        let dest = self.keep_area().join(rel_to(&self.dir, k));
        match self.root.file_type(k) {
            Ok(Some(_)) => {}
            // Already aside, or never existed (a parent that is not a directory included).
            Ok(None) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) => {
                return Ok(())
            }
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
                return Err(io::Error::other(
                    "it is reached through a symbolic link, which the reset never follows; \
                     what the link points to is left untouched",
                ))
            }
            Err(e) => return Err(e),
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
        self.root.rename(k, &dest)
    }

    /// Phase 2: moves everything except the work area, mount points and in-place kept paths
    /// into the trash, descending (iteratively) into directories that contain a protected
    /// path. Mount points are also recognised on descriptors as they are met. An entry that
    /// cannot be moved is returned with its error and stays where it is.
    fn flush(&self, protected: &[PathBuf]) -> Vec<PathError> {
        let mut errors = Vec::new();
        let mut todo = vec![self.dir.clone()];
        while let Some(at) = todo.pop() {
            let entries = match self.root.read_dir(&at) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    errors.push((at, e));
                    continue;
                }
            };
            for e in entries {
                let p = at.join(&e.name);
                if p == self.work || protected.contains(&p) {
                    continue;
                }
                let is_dir = e.file_type == FileType::Directory;
                if is_dir && protected.iter().any(|x| x.starts_with(&p)) {
                    todo.push(p);
                    continue;
                }
                let moved = match is_mount_point(self.root, &p) {
                    Ok(true) => continue,
                    Ok(false) => self.to_trash(&p),
                    Err(e) => Err(e),
                };
                if let Err(err) = moved {
                    errors.push((p, err));
                }
            }
        }
        errors
    }

    /// Phase 3. Stops at the first path it cannot put back (that path stays in the keep area,
    /// and the reset stays in this phase so the keep area is never purged with it).
    fn restore(&self, keep: &[PathBuf], in_place: &[PathBuf]) -> Result<(), PathError> {
        for k in keep.iter().filter(|k| !in_place.contains(k)) {
            let src = self.keep_area().join(rel_to(&self.dir, k));
            let r = (|| {
                if self.root.file_type(&src)?.is_none() {
                    return Ok(());
                }
                if let Some(parent) = k.parent() {
                    self.root.mkdir_all(parent, 0o755)?;
                }
                self.root.rename(&src, k)
            })();
            r.map_err(|e| (k.clone(), e))?;
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

    /// Makes sure the flushed directory is a real directory (created if missing) and its work
    /// area one too: a work area that is anything else (a symlink planted there) is removed as
    /// the entry it is, never followed.
    fn prepare(&self, out: &mut Outcome) -> io::Result<()> {
        match self.root.file_type(&self.dir)? {
            None => self.root.mkdir_all(&self.dir, 0o755)?,
            Some(FileType::Directory) => {}
            Some(_) => return Err(not_a_directory()),
        }
        match self.root.file_type(&self.work)? {
            Some(FileType::Directory) | None => {}
            Some(_) => {
                out.push(Diagnostic::notice(
                    Some(&self.work),
                    0,
                    "factory reset: work area is not a directory; removed (not followed)",
                ));
                self.root.unlink(&self.work)?;
            }
        }
        self.root.mkdir_all(&self.work, 0o700)
    }
}

fn not_a_directory() -> io::Error {
    io::Error::other("not a directory (a symbolic link is never followed), not reset")
}

/// State files a reset does not keep even when a kept path covers them, unless the second path
/// is kept too: the presets record lists links under `/etc/systemd/system`; kept without them,
/// it would stop presets from being applied again after the reset.
const NOT_KEPT: [(&str, &str); 1] = [(
    crate::presets::STATE_FILE,
    crate::units::lookup::PERSISTENT_CONFIG,
)];

/// Runs (or resumes) the reset. With `start_new` false only interrupted directories are
/// finished. Errors are recorded in `out`. A path that cannot be kept or flushed is reported
/// by name and left in place, and the reset goes on; a directory stops at its phase (its
/// intent stays, so the next run resumes it) only when the mechanism itself fails (its intent
/// cannot be written, a kept path cannot be put back).
///
/// Every directory's intent is written before any is flushed, and the triggers are cleared
/// only once every directory has its kept paths back, so a crash at any point leaves a complete
/// set of intents for the next run, whatever the triggers then say.
pub fn apply(root: &Root, req: &Request, start_new: bool, out: &mut Outcome) {
    let root = match root.strict() {
        Ok(r) => r,
        Err(e) => {
            out.push(Diagnostic::failed(
                None,
                format!("factory reset: cannot open the root: {e}"),
            ));
            return;
        }
    };
    let root = &root;
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
                    keep: Vec::new(),
                    sources: req.sources.clone(),
                    in_place: Vec::new(),
                    orphan: false,
                };
                dirs.push((PathBuf::from(d), intent));
            }
        }
    }
    let mut work: Vec<(Dir<'_>, Intent)> = Vec::new();
    for (d, mut intent) in dirs {
        let dir = Dir {
            root,
            work: d.join(WORK),
            dir: d.clone(),
        };
        if intent.phase == Phase::Aside {
            // Not started yet: the keep-list is the configuration's (fixing the configuration
            // helps a reset that could not start), plus whatever an earlier attempt recorded.
            for k in req.keep.iter().filter(|k| lies_below(k, &d)) {
                if !intent.keep.contains(k) {
                    intent.keep.push(k.clone());
                }
            }
            let r = dir.prepare(out).and_then(|()| dir.write_intent(&intent));
            if let Err(e) = r {
                out.push(Diagnostic::failed(
                    Some(&d),
                    format!("factory reset: cannot start: {e}"),
                ));
                continue;
            }
        }
        work.push((dir, intent));
    }
    // Phases up to and including restore, directory by directory.
    let mut ok = true;
    for (dir, intent) in &mut work {
        if let Err(e) = run_phases(dir, intent, Phase::Clear, out) {
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

/// Reports the paths one phase could not act on, by name.
fn report_paths(out: &mut Outcome, what: &str, errors: Vec<PathError>) {
    for (p, e) in errors {
        out.push(Diagnostic::failed(
            Some(&p),
            format!("factory reset: {what}: {e}"),
        ));
    }
}

/// Runs the phases of one directory until `stop` is reached (recorded).
fn run_phases(
    dir: &mut Dir<'_>,
    intent: &mut Intent,
    stop: Phase,
    out: &mut Outcome,
) -> io::Result<()> {
    let root = dir.root;
    if root.file_type(&dir.dir)? != Some(FileType::Directory) {
        return Err(not_a_directory());
    }
    let mounts = mount_points_below(root, &dir.dir);
    while intent.phase < stop {
        match intent.phase {
            Phase::Aside => {
                let (in_place, errors) = dir.aside(&intent.keep, &mounts);
                report_paths(
                    out,
                    "cannot keep this path aside, it stays in place",
                    errors,
                );
                intent.in_place = in_place;
                intent.phase = Phase::Flush;
            }
            Phase::Flush => {
                let mut protected: Vec<PathBuf> = mounts.clone();
                protected.extend(intent.in_place.iter().cloned());
                let errors = dir.flush(&protected);
                report_paths(out, "cannot flush this path, it stays in place", errors);
                intent.phase = Phase::Restore;
            }
            Phase::Restore => {
                if let Err((p, e)) = dir.restore(&intent.keep, &intent.in_place) {
                    return Err(io::Error::new(
                        e.kind(),
                        format!(
                            "cannot put {} back ({e}); it is safe in {}",
                            p.display(),
                            dir.keep_area().display()
                        ),
                    ));
                }
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
                in_place: vec![],
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
                // The ID ledger and the update state are always kept.
                PathBuf::from("/var/lib/pristine/ids.ledger"),
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
