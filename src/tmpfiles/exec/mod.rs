//! The apply phase: executes a [`Plan`]'s steps on the root (systemd's `process_item` and the
//! per-type actions); in a dry run, records in each step what it would do ([`Would`]) and
//! changes nothing. Every open goes through the root handle: parents with the chase-safe walk,
//! last components `O_NOFOLLOW` where systemd does not follow them, recursion without
//! following symlinks. Every mutation goes through `crate::fs` (`fs::at`, `Root` methods),
//! never a raw `*at` call; errors are [`Error`]s.
//!
//! This module holds the run's context, the step loop and the shared openers (globs,
//! recursion, `open_safe`, `open_parent_safe`); the phases are [`create`] and [`clean`]
//! (remove, clean, purge), adjustments of existing inodes and their guards are [`adjust`].

use std::borrow::Cow;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat, StatxFlags};

use super::acl;
use super::glob;
use super::kind::Kind;
use super::parse::{self, Item};
use super::plan::{Ops, Plan, Would};
use super::{Config, Options};
use crate::error::Error;
use crate::fs::copy::{copy_tree_at, CopyOptions};
use crate::fs::safe::{fchmod_opath, fchown_opath, is_unsafe_transition, proc_fd_path, reopen};
use crate::fs::{at, Root};
use crate::report::{errno_text as em, Diagnostic, Outcome};

mod adjust;
mod clean;
mod create;

use adjust::*;
use clean::*;
use create::*;

const MAX_DEPTH: u32 = 256;
const STATX_ATTR_MOUNT_ROOT: u64 = 0x2000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Creation {
    Normal,
    Existing,
    Force,
    /// `C` after a copy: everything is applied.
    Invalid,
}

type R<T = ()> = Result<T, Failure>;

/// A step's failure: the typed [`Error`] (operation, path, errno or the rule that refused),
/// printed in systemd-tmpfiles' own words where they differ from `Failed to <op> '<path>':
/// <reason>` (the differential tests compare the messages).
#[derive(Debug)]
struct Failure {
    error: Error,
    worded: Option<String>,
}

impl Failure {
    /// systemd's wording, given the reason (`%m`).
    fn worded(mut self, f: impl FnOnce(&str) -> String) -> Failure {
        self.worded = Some(f(&self.error.reason()));
        self
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure {
            error,
            worded: None,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.worded {
            Some(w) => f.write_str(w),
            None => self.error.fmt(f),
        }
    }
}

struct Ctx<'a> {
    root: &'a Root,
    opts: &'a Options,
    /// Non-glob paths with items, and glob patterns (for cleaning exclusions).
    item_paths: std::collections::HashSet<PathBuf>,
    glob_paths: Vec<PathBuf>,
    protected_hardlinks: bool,
    can_mknod: bool,
    /// Bound AF_UNIX socket paths (host paths) from /proc/net/unix; `None`: unknown, so every
    /// socket counts as alive.
    unix_sockets: Option<std::collections::HashSet<PathBuf>>,
    /// Paths created or changed (content, mode, owner) so far: the `paths` count.
    /// Keyed by the path's bytes (hashing a `Path` walks its components).
    changed: std::cell::RefCell<std::collections::HashSet<OsString>>,
    /// Directories already resolved by the chase-safe walk during creation, with their `stat`
    /// at that time: only chains of real directories (no symlink on the way), each step
    /// checked for unsafe transitions. Creating new names cannot change such a resolution;
    /// every other change (removal, replacement, copy, chown) clears it ([`Ctx::forget_dirs`]).
    dirs: std::cell::RefCell<std::collections::HashMap<OsString, (Rc<OwnedFd>, Stat)>>,
    /// What the current step would do (dry runs), moved into its plan step when it ends.
    would: std::cell::RefCell<Vec<Would>>,
}

/// The socket paths listed in `/proc/net/unix` (systemd's `load_unix_sockets`).
fn load_unix_sockets() -> Option<std::collections::HashSet<PathBuf>> {
    let text = std::fs::read_to_string("/proc/net/unix").ok()?;
    Some(
        text.lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().nth(7))
            .filter(|p| p.starts_with('/'))
            .map(PathBuf::from)
            .collect(),
    )
}

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

fn is(e: &io::Error, x: rustix::io::Errno) -> bool {
    errno(e) == x.raw_os_error()
}

fn ft(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

impl Ctx<'_> {
    fn d(&self, p: &Path) -> String {
        self.root.display_path(p).display().to_string()
    }

    /// `p` as messages show it.
    fn shown(&self, p: &Path) -> PathBuf {
        self.root.display_path(p)
    }

    /// Records a change a dry run does not make.
    fn would(&self, w: Would) {
        self.would.borrow_mut().push(w);
    }

    /// The system refused `op` on `p` (shown as the user knows it).
    fn io(&self, op: &'static str, p: &Path, e: impl Into<io::Error>) -> Failure {
        Error::io(op, self.root.display_path(p), e.into()).into()
    }

    /// `op` on `p` was refused by a rule (a wrong type, an unsafe path, a hard link).
    fn bad(&self, op: &'static str, p: &Path, why: impl Into<Cow<'static, str>>) -> Failure {
        Error::invalid(op, self.root.display_path(p), why).into()
    }

    /// Drops the resolved-directory cache (after anything that may remove, replace or re-own
    /// an existing directory).
    fn forget_dirs(&self) {
        self.dirs.borrow_mut().clear();
    }

    /// Drops the cached directory `st` (wherever it is cached) and everything resolved through
    /// it; nothing when `st` is not a directory (only directories are cached).
    fn forget_dir(&self, st: &Stat) {
        if ft(st) != FileType::Directory {
            return;
        }
        let mut dirs = self.dirs.borrow_mut();
        let gone: Vec<OsString> = dirs
            .iter()
            .filter(|(_, (_, s))| s.st_dev == st.st_dev && s.st_ino == st.st_ino)
            .map(|(k, _)| k.clone())
            .collect();
        if gone.is_empty() {
            return;
        }
        dirs.retain(|k, _| !gone.iter().any(|g| Path::new(k).starts_with(g)));
    }

    /// Whether the resolved-directory cache is used: creation-only runs (the removal and
    /// cleaning phases would have to invalidate it at every step).
    fn use_dirs(&self) -> bool {
        self.opts.create && !self.opts.remove && !self.opts.clean && !self.opts.purge
    }

    /// The directory `p` from the cache, or resolved one step from its cached parent with the
    /// chase-safe checks. `None` when `p` is not a plain chain of directories reachable that
    /// way (a symlink, `..`, an unsafe transition, an error): callers then do the full
    /// [`Root::chase_safe`] walk, which gives the exact result or error.
    fn cached_dir(&self, p: &Path) -> Option<(Rc<OwnedFd>, Stat)> {
        if let Some((fd, st)) = self.dirs.borrow().get(p.as_os_str()) {
            return Some((fd.clone(), *st));
        }
        let entry = match p.components().next_back()? {
            Component::RootDir => {
                let st = rustix::fs::fstat(self.root.fd()).ok()?;
                let fd = rustix::fs::openat(
                    self.root.fd(),
                    ".",
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .ok()?;
                (Rc::new(fd), st)
            }
            Component::Normal(name) => {
                let (pfd, pst) = self.cached_dir(p.parent()?)?;
                let fd = rustix::fs::openat(
                    &pfd,
                    name,
                    OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .ok()?;
                let st = rustix::fs::fstat(&fd).ok()?;
                if crate::fs::unsafe_transition(&pst, &st) || ft(&st) != FileType::Directory {
                    return None;
                }
                (Rc::new(fd), st)
            }
            _ => return None,
        };
        self.dirs
            .borrow_mut()
            .insert(p.as_os_str().to_os_string(), (entry.0.clone(), entry.1));
        Some(entry)
    }

    /// Caches the directory `p` that was just made or found at `p` (`fd`, `st`) one step
    /// below a cached directory, as [`Ctx::cached_dir`] would have resolved it: a real
    /// directory (the descriptor was opened without following), and no unsafe transition
    /// from its parent. Its children are then made without opening it again. A later chown
    /// of it drops it again ([`Ctx::forget_dir`]).
    fn cache_child(&self, p: &Path, fd: &Rc<OwnedFd>, st: &Stat) {
        if !self.use_dirs() || ft(st) != FileType::Directory || !plain(p) {
            return;
        }
        let Some(parent) = p.parent() else {
            return;
        };
        let mut dirs = self.dirs.borrow_mut();
        match dirs.get(parent.as_os_str()) {
            Some((_, pst)) if !crate::fs::unsafe_transition(pst, st) => {}
            _ => return,
        }
        dirs.insert(p.as_os_str().to_os_string(), (Rc::clone(fd), *st));
    }

    /// Records that `p` was created or changed (each path counts once).
    fn touched(&self, p: &Path) {
        let mut set = self.changed.borrow_mut();
        if !set.contains(p.as_os_str()) {
            set.insert(p.as_os_str().to_os_string());
        }
    }
}

/// Applies `plan` (made from `cfg`) to the root; in a dry run, records in each step what it
/// would do instead.
pub(super) fn apply(
    root: &Root,
    opts: &Options,
    cfg: &Config,
    plan: &mut Plan<'_>,
    outcome: &mut Outcome,
) {
    let old_umask = rustix::process::umask(Mode::empty());
    let ctx = Ctx {
        root,
        opts,
        // Only the removal and cleaning walks consult these.
        item_paths: if opts.clean || opts.remove || opts.purge {
            cfg.arrays
                .iter()
                .filter(|a| !a.glob)
                .map(|a| a.path.clone())
                .collect()
        } else {
            Default::default()
        },
        glob_paths: cfg
            .arrays
            .iter()
            .filter(|a| a.glob)
            .map(|a| a.path.clone())
            .collect(),
        protected_hardlinks: std::fs::read_to_string("/proc/sys/fs/protected_hardlinks")
            .map(|s| s.trim() == "1")
            .unwrap_or(false),
        can_mknod: has_cap_mknod(),
        unix_sockets: if opts.clean || opts.remove || opts.purge {
            load_unix_sockets()
        } else {
            None
        },
        changed: Default::default(),
        dirs: Default::default(),
        would: Default::default(),
    };
    for step in &mut plan.steps {
        process_item(&ctx, step.item, step.ops, outcome);
        step.would.append(&mut ctx.would.borrow_mut());
    }
    rustix::process::umask(old_umask);
    outcome.add_count("paths", ctx.changed.borrow().len() as u64);
}

/// Whether this process may make device nodes (`CAP_MKNOD` effective), asked with one
/// `capget` (reading `/proc/self/status` for it took about 17 us).
fn has_cap_mknod() -> bool {
    rustix::thread::capabilities(None)
        .is_ok_and(|c| c.effective.contains(rustix::thread::CapabilitySet::MKNOD))
}

fn process_item(ctx: &Ctx<'_>, i: &Item, op: Ops, out: &mut Outcome) {
    let file = i.file.clone();
    let mut report = |r: R, tolerated: bool| {
        if let Err(m) = r {
            let m = m.to_string();
            if tolerated {
                out.push(Diagnostic::notice(Some(&file), i.line, m));
            } else {
                out.push(Diagnostic::failed(None, m));
            }
        }
    };
    if op.has(Ops::CREATE) {
        log::debug!(
            "Running create action for entry {} {}",
            i.letter,
            ctx.d(&i.path)
        );
        report(create_item(ctx, i), i.allow_failure);
    }
    if op.has(Ops::REMOVE) {
        report(remove_item(ctx, i), false);
    }
    if op.has(Ops::CLEAN) {
        report(clean_item(ctx, i), false);
    }
    if op.has(Ops::PURGE) {
        report(purge_item(ctx, i), false);
    }
}

fn glob_each(ctx: &Ctx<'_>, i: &Item, f: impl Fn(&Ctx<'_>, &Item, &Path, Creation) -> R) -> R {
    let mut first = Ok(());
    for p in glob::glob(ctx.root, &i.path) {
        if let Err(e) = f(ctx, i, &p, Creation::Existing) {
            if first.is_ok() {
                first = Err(e);
            } else {
                log::error!("{e}");
            }
        }
    }
    first
}

type FdAction<'f> = dyn Fn(&Ctx<'_>, &Item, BorrowedFd<'_>, &Path, &Stat, Creation) -> R + 'f;

fn glob_recursive(ctx: &Ctx<'_>, i: &Item, f: &FdAction<'_>) -> R {
    let mut first: R = Ok(());
    let mut gather = |r: R| {
        if let Err(e) = r {
            if first.is_ok() {
                first = Err(e);
            } else {
                log::error!("{e}");
            }
        }
    };
    for p in glob::glob(ctx.root, &i.path) {
        match ctx
            .root
            .open_path(&p, OFlags::PATH | OFlags::NOFOLLOW, Mode::empty())
        {
            Ok(fd) => gather(item_do(ctx, i, fd, &p, f, 0)),
            Err(e) => gather(Err(ctx.io("open", &p, e))),
        }
    }
    first
}

fn item_do(ctx: &Ctx<'_>, i: &Item, fd: OwnedFd, p: &Path, f: &FdAction<'_>, depth: u32) -> R {
    let st = rustix::fs::fstat(&fd).map_err(|e| ctx.io("fstat", p, e))?;
    let mut first = f(ctx, i, fd.as_fd(), p, &st, Creation::Existing);
    if ft(&st) == FileType::Directory && depth < MAX_DEPTH {
        let dir = reopen(&fd, OFlags::RDONLY | OFlags::DIRECTORY).map_err(|e| {
            ctx.io("opendir", p, e)
                .worded(|m| format!("Failed to opendir() '{}': {m}", ctx.d(p)))
        })?;
        let entries = crate::fs::read_dir_fd(&dir).map_err(|e| ctx.io("read", p, e))?;
        for ent in entries {
            let child = match rustix::fs::openat(
                &dir,
                ent.name.as_os_str(),
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(c) => c,
                Err(rustix::io::Errno::NOENT) => continue,
                Err(e) => {
                    if first.is_ok() {
                        first = Err(ctx.io("open file", &p.join(&ent.name), e));
                    }
                    continue;
                }
            };
            // Never descend into another mount.
            if let Ok(cst) = rustix::fs::fstat(&child) {
                if ft(&cst) == FileType::Directory
                    && crate::fs::is_mount_point(&child, &dir, &ent.name).unwrap_or(false)
                {
                    continue;
                }
            }
            let r = item_do(ctx, i, child, &p.join(&ent.name), f, depth + 1);
            if let Err(e) = r {
                if first.is_ok() {
                    first = Err(e);
                } else {
                    log::error!("{e}");
                }
            }
        }
    }
    first
}

/// Whether `p` is a plain chain of names below the root (what the directory cache holds).
fn plain(p: &Path) -> bool {
    p.components()
        .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

/// Whether an item path still holds a `..` component (parsing drops `.` and doubled
/// slashes): systemd refuses to create at or adjust such a path (`path_is_normalized`),
/// where pristine's resolver would clamp it at the root and act on another path.
fn not_normalized(p: &Path) -> bool {
    p.components().any(|c| c == Component::ParentDir)
}

/// An unsafe ownership transition met while resolving `p`.
fn unsafe_path(ctx: &Ctx<'_>, p: &Path, what: &str) -> Failure {
    ctx.bad("resolve", p, "unsafe path transition").worded(|_| {
        format!(
            "Detected unsafe path transition while resolving {what}'{}'.",
            ctx.d(p)
        )
    })
}

fn open_safe(ctx: &Ctx<'_>, p: &Path) -> R<(OwnedFd, Stat)> {
    if not_normalized(p) {
        return Err(ctx
            .bad("open", p, "invalid path")
            .worded(|_| format!("Failed to open invalid path '{}'.", ctx.d(p))));
    }
    ctx.root.chase_safe(p, true).map_err(|e| {
        if is_unsafe_transition(&e) {
            unsafe_path(ctx, p, "")
        } else {
            ctx.io("open path", p, e)
                .worded(|m| format!("Failed to open path {}: {m}", ctx.d(p)))
        }
    })
}

fn open_parent_safe(ctx: &Ctx<'_>, i: &Item, p: &Path) -> R<(Rc<OwnedFd>, OsString)> {
    if not_normalized(p) {
        let why = if i.allow_failure {
            "path not normalized, ignoring."
        } else {
            "path not normalized."
        };
        return Err(ctx.bad("open parent of", p, why));
    }
    if ctx.use_dirs() {
        if let (Some(Component::Normal(name)), Some(parent)) =
            (p.components().next_back(), p.parent())
        {
            if plain(parent) {
                if let Some((fd, _)) = ctx.cached_dir(parent) {
                    return Ok((fd, name.to_os_string()));
                }
            }
        }
    }
    ctx.root
        .parent_safe(p)
        .map(|(fd, n)| (Rc::new(fd), n))
        .map_err(|e| {
            if is_unsafe_transition(&e) {
                return unsafe_path(ctx, p, "the parent of ");
            }
            let parent = p.parent().unwrap_or(Path::new("/"));
            let ignoring = if i.allow_failure { ", ignoring" } else { "" };
            ctx.io("open path", parent, e)
                .worded(|m| format!("Failed to open path '{}'{ignoring}: {m}", ctx.d(parent)))
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn cap_mknod_agrees_with_proc_status() {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let eff = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap();
        assert_eq!(
            super::has_cap_mknod(),
            eff & (1 << 27) != 0,
            "CapEff {eff:x}"
        );
    }
}
