//! Execution of parsed items on the root (systemd's `process_item` and the per-type actions).
//! Every open goes through the root handle: parents with the chase-safe walk, last components
//! `O_NOFOLLOW` where systemd does not follow them, recursion without following symlinks.
//!
//! This module holds the run's context, the phase loop and the shared openers (globs,
//! recursion, `open_safe`, `open_parent_safe`); the phases are [`create`] and [`clean`]
//! (remove, clean, purge), adjustments of existing inodes and their guards are [`adjust`].

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat, StatxFlags};

use super::acl;
use super::glob;
use super::parse::{self, Item};
use super::{Config, Options};
use crate::fs::copy::{copy_tree_at, CopyOptions};
use crate::fs::safe::{fchmod_opath, fchown_opath, is_unsafe_transition, proc_fd_path, reopen};
use crate::fs::{mutating, Root};
use crate::report::{Diagnostic, Outcome};

mod adjust;
mod clean;
mod create;

use adjust::*;
use clean::*;
use create::*;

const CREATE: u8 = 1;
const REMOVE: u8 = 2;
const CLEAN: u8 = 4;
const PURGE: u8 = 8;
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

type R = Result<(), String>;

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

/// The message of an I/O error as `%m` prints it.
fn em(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => rustix::io::Errno::from_raw_os_error(n)
            .to_string()
            .split(" (os error")
            .next()
            .unwrap_or("")
            .to_string(),
        None => e.to_string(),
    }
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

    /// Records that `p` was created or changed (each path counts once).
    fn touched(&self, p: &Path) {
        let mut set = self.changed.borrow_mut();
        if !set.contains(p.as_os_str()) {
            set.insert(p.as_os_str().to_os_string());
        }
    }
}

/// Runs the phases over the configuration.
pub(super) fn execute(root: &Root, opts: &Options, cfg: &mut Config, outcome: &mut Outcome) {
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
    };
    let mut order: Vec<usize> = (0..cfg.arrays.len())
        .filter(|&i| !cfg.arrays[i].glob)
        .collect();
    order.extend((0..cfg.arrays.len()).filter(|&i| cfg.arrays[i].glob));
    let mut ops = opts.purge.then_some(PURGE).into_iter().collect::<Vec<_>>();
    let rc = (if opts.remove { REMOVE } else { 0 }) | (if opts.clean { CLEAN } else { 0 });
    if rc != 0 {
        ops.push(rc);
    }
    if opts.create {
        ops.push(CREATE);
    }
    for op in ops {
        for &idx in &order {
            process_array(&ctx, cfg, idx, op, outcome);
        }
    }
    rustix::process::umask(old_umask);
    outcome.add_count("paths", ctx.changed.borrow().len() as u64);
}

fn has_cap_mknod() -> bool {
    let Ok(s) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    s.lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|v| v & (1 << 27) != 0)
}

fn process_array(ctx: &Ctx<'_>, cfg: &mut Config, idx: usize, op: u8, out: &mut Outcome) {
    if op & CREATE != 0 {
        if let Some(p) = cfg.arrays[idx].parent {
            process_array(ctx, cfg, p, op & CREATE, out);
        }
    }
    if op & (REMOVE | CLEAN | PURGE) != 0 {
        let children = cfg.arrays[idx].children.clone();
        for c in children {
            process_array(ctx, cfg, c, op & (REMOVE | CLEAN | PURGE), out);
        }
    }
    for k in 0..cfg.arrays[idx].items.len() {
        let todo = op & !cfg.arrays[idx].done[k];
        if todo == 0 {
            continue;
        }
        cfg.arrays[idx].done[k] |= op;
        process_item(ctx, &cfg.arrays[idx].items[k], op, out);
    }
}

fn process_item(ctx: &Ctx<'_>, i: &Item, op: u8, out: &mut Outcome) {
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
    if op & CREATE != 0 {
        log::debug!(
            "Running create action for entry {} {}",
            i.kind,
            ctx.d(&i.path)
        );
        report(create_item(ctx, i), i.allow_failure);
    }
    if op & REMOVE != 0 {
        report(remove_item(ctx, i), false);
    }
    if op & CLEAN != 0 {
        report(clean_item(ctx, i), false);
    }
    if op & PURGE != 0 {
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

type FdAction = dyn Fn(&Ctx<'_>, &Item, BorrowedFd<'_>, &Path, &Stat, Creation) -> R;

fn glob_recursive(ctx: &Ctx<'_>, i: &Item, f: &FdAction) -> R {
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
            Err(e) => gather(Err(format!("Failed to open '{}': {}", ctx.d(&p), em(&e)))),
        }
    }
    first
}

fn item_do(ctx: &Ctx<'_>, i: &Item, fd: OwnedFd, p: &Path, f: &FdAction, depth: u32) -> R {
    let st = rustix::fs::fstat(&fd).map_err(|e| format!("fstat() on file failed: {e}"))?;
    let mut first = f(ctx, i, fd.as_fd(), p, &st, Creation::Existing);
    if ft(&st) == FileType::Directory && depth < MAX_DEPTH {
        let dir = reopen(&fd, OFlags::RDONLY | OFlags::DIRECTORY)
            .map_err(|e| format!("Failed to opendir() '{}': {}", ctx.d(p), em(&e)))?;
        let entries = crate::fs::read_dir_fd(&dir)
            .map_err(|e| format!("Failed to read '{}': {}", ctx.d(p), em(&e)))?;
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
                    let m = format!("Failed to open file '{}': {e}", ent.name.to_string_lossy());
                    if first.is_ok() {
                        first = Err(m);
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

/// Whether an item path still holds a `..` component (parsing drops `.` and doubled
/// slashes): systemd refuses to create at or adjust such a path (`path_is_normalized`),
/// where pristine's resolver would clamp it at the root and act on another path.
fn not_normalized(p: &Path) -> bool {
    p.components().any(|c| c == Component::ParentDir)
}

fn open_safe(ctx: &Ctx<'_>, p: &Path) -> Result<(OwnedFd, Stat), String> {
    if not_normalized(p) {
        return Err(format!("Failed to open invalid path '{}'.", ctx.d(p)));
    }
    ctx.root.chase_safe(p, true).map_err(|e| {
        if is_unsafe_transition(&e) {
            format!(
                "Detected unsafe path transition while resolving '{}'.",
                ctx.d(p)
            )
        } else {
            format!("Failed to open path {}: {}", ctx.d(p), em(&e))
        }
    })
}

fn open_parent_safe(ctx: &Ctx<'_>, i: &Item, p: &Path) -> Result<(Rc<OwnedFd>, OsString), String> {
    if not_normalized(p) {
        return Err(format!(
            "Failed to open parent of '{}': path not normalized{}.",
            ctx.d(p),
            if i.allow_failure { ", ignoring" } else { "" }
        ));
    }
    if ctx.use_dirs() {
        if let (Some(Component::Normal(name)), Some(parent)) =
            (p.components().next_back(), p.parent())
        {
            if parent
                .components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
            {
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
                format!(
                    "Detected unsafe path transition while resolving the parent of '{}'.",
                    ctx.d(p)
                )
            } else {
                format!(
                    "Failed to open path '{}'{}: {}",
                    ctx.d(p.parent().unwrap_or(Path::new("/"))),
                    if i.allow_failure { ", ignoring" } else { "" },
                    em(&e)
                )
            }
        })
}
