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
//! [`plan`] observes the tree (interrupted resets from their intent records, mount points, the
//! kept paths, the entries the flush moves) and returns a [`Plan`]: every action in order, its
//! `Display` being what `reset run --dry-run` prints. [`apply`] executes exactly those actions;
//! it looks at the tree again only where safety needs it at the moment of a move (see
//! [`apply`]). A run that crashed is planned anew from its intent records and the tree.
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

use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use serde::{Deserialize, Serialize};

use crate::config::{ResetLevel, ResetMachineId, Settings};
use crate::error::{Error, IoContext, Result};
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

/// One action of a reset, in the order [`apply`] executes it.
#[derive(Debug)]
pub enum Action {
    /// An interrupted reset of the directory is taken up at `phase` (only logged).
    Resume { phase: Phase },
    /// The directory (created if missing) and its work area are made real directories — a work
    /// area that is anything else is removed as the entry it is, never followed — and the intent
    /// is recorded at phase `aside` with the keep-list.
    Start,
    /// The directory cannot be reset (not a directory, or it cannot be looked at): reported and
    /// left alone. Before the reset started this does not hold up the other directories; after,
    /// it stops the reset before the triggers are cleared, so the next run resumes it.
    Refuse { started: bool, why: Error },
    /// A state file covered by a kept path that describes what the flush removes (see
    /// [`NOT_KEPT`]): moved into the trash before the kept paths are set aside.
    Drop { path: PathBuf },
    /// A kept path is moved into the keep area.
    SetAside { path: PathBuf },
    /// A kept path is already in the keep area (an earlier attempt set it aside).
    AlreadyAside { path: PathBuf },
    /// A kept path that does not exist: nothing to keep.
    Absent { path: PathBuf },
    /// A kept path that stays where it is, protected from the flush: it is (or lies on, or
    /// holds) a mount point, or it cannot be looked at (`why`, reported).
    InPlace { path: PathBuf, why: Option<Error> },
    /// The intent record of the directory is rewritten at `phase`.
    Record { phase: Phase },
    /// An entry of the directory is moved into the trash.
    Trash { path: PathBuf },
    /// A mount point (or a protected kept path) met by the flush: left in place.
    Leave { path: PathBuf },
    /// A directory the flush could not list: reported, left in place.
    Unreadable { path: PathBuf, why: Error },
    /// A kept path is moved back from the keep area (its parents recreated).
    Restore { path: PathBuf },
    /// The request file is removed (a trigger; once, after every directory is restored).
    ClearRequest { path: PathBuf },
    /// The `FactoryReset*` EFI variables in this efivarfs directory are deleted.
    ClearEfi { efivars: PathBuf },
    /// The trash, the keep area, the intent and the work area are deleted.
    Purge,
}

/// One step of the plan: an action on a flushed directory (`dir`), or on the triggers.
#[derive(Debug)]
pub struct Step {
    pub dir: Option<PathBuf>,
    pub action: Action,
}

/// A flushed directory as the plan found it.
#[derive(Clone, Debug)]
pub struct DirPlan {
    pub dir: PathBuf,
    /// The intent the reset starts from (a new one, or the recorded one of a resumed reset).
    pub intent: Intent,
    /// Mount points below the directory, never moved.
    pub mounts: Vec<PathBuf>,
}

/// The reset as a value: every directory and every action in order. Its `Display` is what
/// `reset run --dry-run` prints; [`apply`] executes exactly these steps.
#[derive(Debug, Default)]
pub struct Plan {
    pub dirs: Vec<DirPlan>,
    pub steps: Vec<Step>,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Aside => "aside",
            Phase::Flush => "flush",
            Phase::Restore => "restore",
            Phase::Clear => "clear",
            Phase::Purge => "purge",
        })
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Resume { phase } => write!(f, "resume the interrupted reset at phase {phase}"),
            Action::Start => write!(f, "create the work area {WORK} and record phase aside"),
            Action::Refuse { why, .. } => write!(f, "refuse: {why}"),
            Action::Drop { path } => write!(
                f,
                "remove {} (it lists links the reset removes)",
                path.display()
            ),
            Action::SetAside { path } => write!(f, "keep {} (set aside)", path.display()),
            Action::AlreadyAside { path } => {
                write!(f, "keep {} (already set aside)", path.display())
            }
            Action::Absent { path } => {
                write!(f, "keep {} (absent, nothing to keep)", path.display())
            }
            Action::InPlace { path, why: None } => {
                write!(f, "keep {} in place (a mount point)", path.display())
            }
            Action::InPlace { path, why: Some(e) } => {
                write!(f, "keep {} in place: {e}", path.display())
            }
            Action::Record { phase } => write!(f, "record phase {phase}"),
            Action::Trash { path } => write!(f, "remove {}", path.display()),
            Action::Leave { path } => write!(f, "leave {} (protected)", path.display()),
            Action::Unreadable { why, .. } => write!(f, "leave: {why}"),
            Action::Restore { path } => write!(f, "restore {}", path.display()),
            Action::ClearRequest { path } => write!(f, "remove the request {}", path.display()),
            Action::ClearEfi { efivars } => write!(
                f,
                "delete the FactoryReset EFI variables in {}",
                efivars.display()
            ),
            Action::Purge => write!(f, "delete the trash and the work area {WORK}"),
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.steps {
            match &s.dir {
                Some(d) => writeln!(f, "{}: {}", d.display(), s.action)?,
                None => writeln!(f, "{}", s.action)?,
            }
        }
        Ok(())
    }
}

/// Observes the root and plans the reset (or its resumption). `resumed` is what [`pending`]
/// found; with `start_new` false only those interrupted directories are finished.
///
/// Every directory's intent is written before any is flushed, and the triggers are cleared
/// only once every directory has its kept paths back, so a crash at any point leaves a complete
/// set of intents for the next run, whatever the triggers then say. A resumed reset is planned
/// again from its intent record and the tree as it is, so planning after a crash continues the
/// same reset.
pub fn plan(root: &Root, req: &Request, resumed: Vec<(PathBuf, Intent)>, start_new: bool) -> Plan {
    let mut plan = Plan::default();
    let root = match root.strict() {
        Ok(r) => r,
        Err(e) => {
            plan.steps.push(Step {
                dir: None,
                action: Action::Refuse {
                    started: true,
                    why: Error::io("open the root strictly", "/", e),
                },
            });
            return plan;
        }
    };
    let root = &root;
    // A work area without an intent is either a crash before the intent was first written
    // (the trigger is still there: start afresh) or after it was removed (finish the purge).
    let mut dirs: Vec<(PathBuf, Intent, bool)> = resumed
        .into_iter()
        .filter(|(_, i)| !(start_new && i.orphan))
        .map(|(d, i)| (d, i, true))
        .collect();
    if start_new {
        for d in req.dirs() {
            if !dirs.iter().any(|(p, _, _)| p == Path::new(d)) {
                let intent = Intent {
                    phase: Phase::Aside,
                    keep: Vec::new(),
                    sources: req.sources.clone(),
                    in_place: Vec::new(),
                    orphan: false,
                };
                dirs.push((PathBuf::from(d), intent, false));
            }
        }
    }
    let mut clear = false;
    let mut purged = Vec::new();
    for (d, mut intent, was_resumed) in dirs {
        let mut steps = Vec::new();
        if was_resumed {
            steps.push(Action::Resume {
                phase: intent.phase,
            });
        }
        let mounts = mount_points_below(root, &d);
        match observe_dir(root, &d, req, &mut intent, &mounts, &mut steps) {
            Ok(()) => {
                clear |= intent.phase <= Phase::Clear;
                purged.push(d.clone());
            }
            // Refused before it started: left out of the clear and the purge; refused after:
            // the reset stops there (see `apply`).
            Err(why) => steps.push(Action::Refuse {
                started: intent.phase > Phase::Aside,
                why,
            }),
        }
        plan.steps.extend(steps.into_iter().map(|action| Step {
            dir: Some(d.clone()),
            action,
        }));
        plan.dirs.push(DirPlan {
            dir: d,
            intent,
            mounts,
        });
    }
    // Clear the triggers once, then purge.
    if clear {
        plan.steps.push(Step {
            dir: None,
            action: Action::ClearRequest {
                path: PathBuf::from(crate::detect::RESET_REQUEST_FILE),
            },
        });
        if let Some(efivars) = &req.efivars {
            plan.steps.push(Step {
                dir: None,
                action: Action::ClearEfi {
                    efivars: efivars.clone(),
                },
            });
        }
    }
    for d in plan.dirs.iter().filter(|d| purged.contains(&d.dir)) {
        let mut actions = Vec::new();
        if d.intent.phase <= Phase::Clear {
            actions.push(Action::Record {
                phase: Phase::Purge,
            });
        }
        actions.push(Action::Purge);
        plan.steps.extend(actions.into_iter().map(|action| Step {
            dir: Some(d.dir.clone()),
            action,
        }));
    }
    plan
}

/// Plans the phases of one directory up to the clear phase; `intent` becomes the intent the
/// reset starts from. An error refuses the directory.
fn observe_dir(
    root: &Root,
    d: &Path,
    req: &Request,
    intent: &mut Intent,
    mounts: &[PathBuf],
    steps: &mut Vec<Action>,
) -> Result<()> {
    match root.file_type(d).op("look at", d)? {
        Some(FileType::Directory) => {}
        None if intent.phase == Phase::Aside => {}
        _ => return Err(not_a_directory(d)),
    }
    let keep_area = d.join(WORK).join("keep");
    let aside_path = |k: &Path| keep_area.join(rel_to(d, k));
    let is_aside = |k: &Path| matches!(root.file_type(&aside_path(k)), Ok(Some(_)));
    if intent.phase == Phase::Aside {
        // Not started yet: the keep-list is the configuration's (fixing the configuration
        // helps a reset that could not start), plus whatever an earlier attempt recorded.
        for k in req.keep.iter().filter(|k| lies_below(k, d)) {
            if !intent.keep.contains(k) {
                intent.keep.push(k.clone());
            }
        }
        intent.in_place.clear();
        steps.push(Action::Start);
        for (state, unless) in NOT_KEPT {
            let state = Path::new(state);
            let covered = |q: &Path| intent.keep.iter().any(|k| q.starts_with(k));
            if state.starts_with(d)
                && covered(state)
                && !covered(Path::new(unless))
                && !matches!(root.file_type(state), Ok(None))
            {
                steps.push(Action::Drop {
                    path: state.to_path_buf(),
                });
            }
        }
        for k in &intent.keep {
            if mounts.iter().any(|m| m.starts_with(k) || k.starts_with(m)) {
                steps.push(Action::InPlace {
                    path: k.clone(),
                    why: None,
                });
                continue;
            }
            steps.push(match root.file_type(k) {
                Ok(Some(_)) => Action::SetAside { path: k.clone() },
                // Never existed (a parent that is not a directory included), or already aside.
                Ok(None) => match is_aside(k) {
                    true => Action::AlreadyAside { path: k.clone() },
                    false => Action::Absent { path: k.clone() },
                },
                Err(e) if e.raw_os_error() == Some(Errno::NOTDIR.raw_os_error()) => {
                    Action::Absent { path: k.clone() }
                }
                Err(e) if e.raw_os_error() == Some(Errno::LOOP.raw_os_error()) => Action::InPlace {
                    path: k.clone(),
                    why: Some(Error::invalid(
                        "keep",
                        k,
                        "it is reached through a symbolic link, which the reset never \
                             follows; what the link points to is left untouched",
                    )),
                },
                Err(e) => Action::InPlace {
                    path: k.clone(),
                    why: Some(Error::io("look at", k, e)),
                },
            });
        }
        steps.push(Action::Record {
            phase: Phase::Flush,
        });
    }
    if intent.phase <= Phase::Flush {
        // What stays in place: mount points and kept paths that could not be set aside; kept
        // paths still in place at this point are set aside before the flush.
        let mut protected: Vec<PathBuf> = mounts.to_vec();
        protected.extend(intent.in_place.iter().cloned());
        for s in steps.iter() {
            if let Action::InPlace { path, .. } = s {
                protected.push(path.clone());
            }
        }
        let set_aside: Vec<PathBuf> = steps
            .iter()
            .filter_map(|s| match s {
                Action::SetAside { path } => Some(path.clone()),
                _ => None,
            })
            .collect();
        flush_list(root, d, d, &protected, &set_aside, steps);
        steps.push(Action::Record {
            phase: Phase::Restore,
        });
    }
    if intent.phase <= Phase::Restore {
        let planned_in_place: Vec<PathBuf> = steps
            .iter()
            .filter_map(|s| match s {
                Action::InPlace { path, .. } => Some(path.clone()),
                _ => None,
            })
            .collect();
        for k in &intent.keep {
            if intent.in_place.contains(k) || planned_in_place.contains(k) {
                continue;
            }
            let aside_now = steps
                .iter()
                .any(|s| matches!(s, Action::SetAside { path } if path == k));
            if aside_now || is_aside(k) {
                steps.push(Action::Restore { path: k.clone() });
            }
        }
        steps.push(Action::Record {
            phase: Phase::Clear,
        });
    }
    Ok(())
}

/// The flush below `at` (in the flushed directory `d`): every entry but the work area, the
/// `protected` paths and the kept paths about to be set aside goes to the trash; a directory
/// holding a protected path is descended into (iteratively), a mount point is left.
fn flush_list(
    root: &Root,
    d: &Path,
    at: &Path,
    protected: &[PathBuf],
    set_aside: &[PathBuf],
    steps: &mut Vec<Action>,
) {
    let work = d.join(WORK);
    let mut todo = vec![at.to_path_buf()];
    while let Some(at) = todo.pop() {
        let entries = match root.read_dir(&at) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                steps.push(Action::Unreadable {
                    why: Error::io("list", &at, e),
                    path: at,
                });
                continue;
            }
        };
        for e in entries {
            let p = at.join(&e.name);
            if p == work || set_aside.contains(&p) {
                continue;
            }
            if protected.contains(&p) {
                steps.push(Action::Leave { path: p });
                continue;
            }
            if e.file_type == FileType::Directory && protected.iter().any(|x| x.starts_with(&p)) {
                todo.push(p);
                continue;
            }
            steps.push(match is_mount_point(root, &p) {
                Ok(true) => Action::Leave { path: p },
                Ok(false) => Action::Trash { path: p },
                Err(e) => Action::Unreadable {
                    why: Error::io("look at", &p, e),
                    path: p,
                },
            });
        }
    }
}

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
        Err(Errno::NOTDIR | Errno::LOOP | Errno::NOENT) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    crate::fs::is_mount_point(&child, &parent, &name)
}

/// A flushed directory while the reset runs.
struct Dir<'a> {
    root: &'a Root,
    dir: PathBuf,
    work: PathBuf,
    intent: Intent,
    mounts: Vec<PathBuf>,
    state: State,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Running,
    /// Could not start: left alone, the other directories go on and the triggers are cleared.
    Abandoned,
    /// Stopped in a phase: its intent stays, the next run resumes it; the triggers stay.
    Stuck,
}

impl Dir<'_> {
    fn keep_area(&self) -> PathBuf {
        self.work.join("keep")
    }
    fn trash(&self) -> PathBuf {
        self.work.join("trash")
    }

    fn write_intent(&self) -> Result<()> {
        let path = self.work.join("intent.json");
        let data = serde_json::to_vec_pretty(&self.intent)
            .map_err(|e| Error::invalid("encode", &path, e.to_string()))?;
        self.root
            .write_atomic(
                &path,
                &data,
                &WriteOptions {
                    mode: Some(0o600),
                    ..Default::default()
                },
            )
            .op("write", &path)
    }

    /// Renames `from` to `to`, creating the parents of `to` with `mode`.
    fn move_to(&self, from: &Path, to: &Path, mode: u32) -> Result<()> {
        if let Some(parent) = to.parent() {
            self.root
                .mkdir_all(parent, mode)
                .op("create directory", parent)?;
        }
        self.root.rename(from, to).op("move", from)
    }

    /// Moves `p` (an entry of the flushed directory) into the trash at the same relative path.
    fn to_trash(&self, p: &Path) -> Result<()> {
        self.move_to(p, &self.trash().join(rel_to(&self.dir, p)), 0o700)
    }

    /// Moves a kept path into the keep area. Re-checked at this moment: whether it is still
    /// there (an earlier attempt may have moved it), and whether the keep area already holds a
    /// copy — then the one in place is kept and the old one goes to the trash, so nothing is
    /// lost.
    fn aside_one(&self, k: &Path) -> Result<()> {
        let dest = self.keep_area().join(rel_to(&self.dir, k));
        if self.root.file_type(k).op("look at", k)?.is_none() {
            return Ok(());
        }
        if self.root.file_type(&dest).op("look at", &dest)?.is_some() {
            let t = self.trash().join(".stale-keep").join(rel_to(&self.dir, k));
            self.move_to(&dest, &t, 0o700)?;
        }
        self.move_to(k, &dest, 0o700)
    }

    /// Moves one planned entry into the trash. Re-checked at this moment, for safety: a kept
    /// path that could not be set aside after the plan was made is not moved (a directory
    /// holding one is descended into), and a mount point is never moved.
    fn trash_entry(&self, p: &Path, out: &mut Outcome) {
        let protected: Vec<PathBuf> = self
            .mounts
            .iter()
            .chain(&self.intent.in_place)
            .cloned()
            .collect();
        if protected.iter().any(|x| x == p) {
            return;
        }
        if protected.iter().any(|x| x.starts_with(p)) {
            if let Ok(Some(FileType::Directory)) = self.root.file_type(p) {
                let mut steps = Vec::new();
                flush_list(self.root, &self.dir, p, &protected, &[], &mut steps);
                for s in steps {
                    self.execute_flush(&s, out);
                }
                return;
            }
        }
        let r = match is_mount_point(self.root, p) {
            Ok(true) => return,
            Ok(false) => self.to_trash(p),
            Err(e) => Err(Error::io("look at", p, e)),
        };
        match r {
            // Gone since the plan was made: nothing left to flush.
            Err(e) if e.kind() == io::ErrorKind::NotFound && e.path.as_deref() == Some(p) => {}
            Err(e) => report(out, p, "cannot flush this path, it stays in place", &e),
            Ok(()) => {}
        }
    }

    fn execute_flush(&self, action: &Action, out: &mut Outcome) {
        match action {
            Action::Trash { path } => self.trash_entry(path, out),
            Action::Unreadable { path, why } => {
                report(out, path, "cannot flush this path, it stays in place", why)
            }
            _ => {}
        }
    }

    /// Moves a kept path back. Re-checked at this moment: a path that could not be set aside
    /// (it stayed in place) or that is not in the keep area has nothing to restore.
    fn restore(&self, k: &Path) -> Result<()> {
        if self.intent.in_place.iter().any(|p| p == k) {
            return Ok(());
        }
        let src = self.keep_area().join(rel_to(&self.dir, k));
        if self.root.file_type(&src).op("look at", &src)?.is_none() {
            return Ok(());
        }
        self.move_to(&src, k, 0o755)
    }

    /// Phase 5.
    fn purge(&self) -> Result<()> {
        for p in [
            self.trash(),
            self.keep_area(),
            self.work.join("intent.json"),
            self.work.clone(),
        ] {
            self.root.remove_tree(&p).op("remove", &p)?;
        }
        Ok(())
    }

    /// Makes sure the flushed directory is a real directory (created if missing) and its work
    /// area one too: a work area that is anything else (a symlink planted there) is removed as
    /// the entry it is, never followed. Re-checked at this moment: it is what the reset moves
    /// everything into.
    fn prepare(&self, out: &mut Outcome) -> Result<()> {
        match self.root.file_type(&self.dir).op("look at", &self.dir)? {
            None => self
                .root
                .mkdir_all(&self.dir, 0o755)
                .op("create directory", &self.dir)?,
            Some(FileType::Directory) => {}
            Some(_) => return Err(not_a_directory(&self.dir)),
        }
        match self.root.file_type(&self.work).op("look at", &self.work)? {
            Some(FileType::Directory) | None => {}
            Some(_) => {
                out.push(Diagnostic::notice(
                    Some(&self.work),
                    0,
                    "factory reset: work area is not a directory; removed (not followed)",
                ));
                self.root.unlink(&self.work).op("remove", &self.work)?;
            }
        }
        self.root
            .mkdir_all(&self.work, 0o700)
            .op("create directory", &self.work)
    }

    /// Executes one action of this directory. An error stops the directory (see [`State`]).
    fn execute(&mut self, action: &Action, out: &mut Outcome) {
        let r = match action {
            Action::Resume { phase } => {
                log::info!(
                    "Resuming interrupted factory reset of {} at phase {phase}.",
                    self.dir.display()
                );
                Ok(())
            }
            Action::Start => match self.prepare(out).and_then(|()| self.write_intent()) {
                Ok(()) => Ok(()),
                Err(e) => {
                    self.state = State::Abandoned;
                    report(out, &self.dir, "cannot start", &e);
                    return;
                }
            },
            Action::Refuse { started, why } => {
                if *started {
                    self.state = State::Stuck;
                    let what = format!("failed in phase {}", self.intent.phase);
                    report(out, &self.dir, &what, why);
                } else {
                    self.state = State::Abandoned;
                    report(out, &self.dir, "cannot start", why);
                }
                return;
            }
            Action::Drop { path } => {
                if let Err(e) = self.to_trash(path) {
                    report(
                        out,
                        path,
                        "cannot keep this path aside, it stays in place",
                        &e,
                    );
                }
                Ok(())
            }
            Action::SetAside { path } => {
                if let Err(e) = self.aside_one(path) {
                    self.intent.in_place.push(path.clone());
                    report(
                        out,
                        path,
                        "cannot keep this path aside, it stays in place",
                        &e,
                    );
                }
                Ok(())
            }
            Action::InPlace { path, why } => {
                self.intent.in_place.push(path.clone());
                if let Some(e) = why {
                    report(
                        out,
                        path,
                        "cannot keep this path aside, it stays in place",
                        e,
                    );
                }
                Ok(())
            }
            Action::AlreadyAside { .. } | Action::Absent { .. } | Action::Leave { .. } => Ok(()),
            Action::Trash { .. } | Action::Unreadable { .. } => {
                self.execute_flush(action, out);
                Ok(())
            }
            Action::Record { phase } => {
                let before = self.intent.phase;
                self.intent.phase = *phase;
                let r = self.write_intent();
                if r.is_err() {
                    self.intent.phase = before;
                }
                r
            }
            Action::Restore { path } => {
                if let Err(e) = self.restore(path) {
                    // The reset stays in this phase so the keep area is never purged with it.
                    self.state = State::Stuck;
                    let what = format!(
                        "failed in phase restore, it is safe in {}",
                        self.keep_area().display()
                    );
                    report(out, path, &what, &e);
                }
                return;
            }
            Action::Purge => self
                .purge()
                .map(|()| log::info!("Factory reset of {} complete.", self.dir.display())),
            Action::ClearRequest { .. } | Action::ClearEfi { .. } => Ok(()),
        };
        if let Err(e) = r {
            self.state = State::Stuck;
            let what = format!("failed in phase {}", self.intent.phase);
            report(out, &self.dir, &what, &e);
        }
    }
}

/// Reports `e` about `path` under `what`: the reason alone when the error is about that very
/// path, the whole message otherwise.
fn report(out: &mut Outcome, path: &Path, what: &str, e: &Error) {
    let why = match &e.path {
        Some(p) if p == path => e.reason(),
        _ => e.to_string(),
    };
    out.push(Diagnostic::failed(
        Some(path),
        format!("factory reset: {what}: {why}"),
    ));
}

fn not_a_directory(d: &Path) -> Error {
    Error::invalid(
        "reset",
        d,
        "not a directory (a symbolic link is never followed), not reset",
    )
}

/// State files a reset does not keep even when a kept path covers them, unless the second path
/// is kept too: the presets record lists links under `/etc/systemd/system`; kept without them,
/// it would stop presets from being applied again after the reset.
const NOT_KEPT: [(&str, &str); 1] = [(
    crate::presets::STATE_FILE,
    crate::units::lookup::PERSISTENT_CONFIG,
)];

/// Executes a [`Plan`], step by step. Errors are recorded in `out`. A path that cannot be kept
/// or flushed is reported by name and left in place, and the reset goes on; a directory stops
/// at its phase (its intent stays, so the next run resumes it) only when the mechanism itself
/// fails (its intent cannot be written, a kept path cannot be put back) — then the triggers
/// are not cleared and nothing is purged.
///
/// Apart from the plan, apply looks at the tree only where safety needs it at the moment of a
/// move: whether a work area, a flushed directory, a kept path or its copy in the keep area is
/// (still) what the plan saw, whether an entry about to go to the trash is a mount point or
/// now holds a kept path that could not be set aside, and what such a directory contains.
pub fn apply(root: &Root, plan: &Plan, out: &mut Outcome) {
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
    let mut dirs: Vec<Dir<'_>> = plan
        .dirs
        .iter()
        .map(|d| Dir {
            root: &root,
            work: d.dir.join(WORK),
            dir: d.dir.clone(),
            intent: d.intent.clone(),
            mounts: d.mounts.clone(),
            state: State::Running,
        })
        .collect();
    for step in &plan.steps {
        match step.dir.as_ref() {
            Some(d) => {
                if let Some(dir) = dirs
                    .iter_mut()
                    .find(|x| &x.dir == d && x.state == State::Running)
                {
                    dir.execute(&step.action, out);
                }
            }
            // The triggers wait for every directory to have its kept paths back.
            None if dirs.iter().any(|d| d.state == State::Stuck) => return,
            None => {
                if let Err(e) = execute_global(&root, &step.action, out) {
                    out.push(Diagnostic::failed(
                        None,
                        format!("factory reset: cannot clear the request: {e}"),
                    ));
                    return;
                }
            }
        }
    }
}

fn execute_global(root: &Root, action: &Action, out: &mut Outcome) -> Result<()> {
    match action {
        Action::ClearRequest { path } => {
            root.remove_tree(path).op("remove", path)?;
        }
        Action::ClearEfi { efivars } => {
            crate::host::efi::clear_reset_request(efivars)
                .op("clear the EFI variables in", efivars)?;
        }
        Action::Refuse { why, .. } => {
            out.push(Diagnostic::failed(None, format!("factory reset: {why}")))
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(t: &Path, rel: &str) {
        let p = t.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, rel).unwrap();
    }

    fn lines(plan: &Plan) -> Vec<String> {
        plan.to_string().lines().map(str::to_string).collect()
    }

    #[test]
    fn plan_lists_every_action_and_resumes() {
        let t = crate::util::test_dir("reset-plan");
        for f in [
            "etc/hostname",
            "var/lib/keep/data",
            "var/lib/apt/x",
            "var/log/syslog",
        ] {
            write(&t, f);
        }
        let root = Root::open(&t).unwrap();
        let req = Request {
            level: ResetLevel::Full,
            keep: vec![PathBuf::from("/var/lib/keep"), PathBuf::from("/var/gone")],
            sources: vec!["file".into()],
            efivars: None,
        };
        let p = plan(&root, &req, Vec::new(), true);
        assert_eq!(
            lines(&p),
            [
                "/etc: create the work area .pristine-reset and record phase aside",
                "/etc: record phase flush",
                "/etc: remove /etc/hostname",
                "/etc: record phase restore",
                "/etc: record phase clear",
                "/var: create the work area .pristine-reset and record phase aside",
                "/var: keep /var/lib/keep (set aside)",
                "/var: keep /var/gone (absent, nothing to keep)",
                "/var: record phase flush",
                "/var: remove /var/lib",
                "/var: remove /var/log",
                "/var: record phase restore",
                "/var: restore /var/lib/keep",
                "/var: record phase clear",
                "remove the request /var/lib/pristine/factory-reset",
                "/etc: record phase purge",
                "/etc: delete the trash and the work area .pristine-reset",
                "/var: record phase purge",
                "/var: delete the trash and the work area .pristine-reset",
            ]
        );
        // Executing it does what it says; nothing is left to resume.
        let mut out = Outcome::default();
        apply(&root, &p, &mut out);
        assert!(out.diagnostics.is_empty(), "{:?}", out.diagnostics);
        assert!(t.join("var/lib/keep/data").exists());
        assert!(!t.join("var/log").exists() && !t.join("etc/hostname").exists());
        assert!(pending(&root).is_empty());

        // A reset interrupted after the flush of /var is planned from its record only.
        write(&t, "var/.pristine-reset/keep/lib/keep/data");
        std::fs::remove_dir_all(t.join("var/lib/keep")).unwrap();
        let intent = Intent {
            phase: Phase::Restore,
            keep: vec![PathBuf::from("/var/lib/keep")],
            sources: vec![],
            in_place: vec![],
            orphan: false,
        };
        std::fs::write(
            t.join("var/.pristine-reset/intent.json"),
            serde_json::to_vec(&intent).unwrap(),
        )
        .unwrap();
        let p = plan(&root, &req, pending(&root), false);
        assert_eq!(
            lines(&p),
            [
                "/var: resume the interrupted reset at phase restore",
                "/var: restore /var/lib/keep",
                "/var: record phase clear",
                "remove the request /var/lib/pristine/factory-reset",
                "/var: record phase purge",
                "/var: delete the trash and the work area .pristine-reset",
            ]
        );
        apply(&root, &p, &mut out);
        assert!(out.diagnostics.is_empty(), "{:?}", out.diagnostics);
        assert_eq!(
            std::fs::read_to_string(t.join("var/lib/keep/data")).unwrap(),
            "var/.pristine-reset/keep/lib/keep/data"
        );
        assert!(!t.join("var/.pristine-reset").exists());
        let var = Request {
            level: ResetLevel::Var,
            ..req
        };
        assert!(plan(&root, &var, Vec::new(), true)
            .steps
            .iter()
            .all(|s| s.dir.as_deref().is_none_or(|d| d == Path::new("/var"))));
        let _ = std::fs::remove_dir_all(&t);
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
