//! Execution of parsed items on the root (systemd's `process_item` and the per-type actions).
//! Every open goes through the root handle: parents with the chase-safe walk, last components
//! `O_NOFOLLOW` where systemd does not follow them, recursion without following symlinks.

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

/* ---------------------------------------------------------------- create */

fn create_item(ctx: &Ctx<'_>, i: &Item) -> R {
    match i.kind {
        'x' | 'X' | 'r' | 'R' => Ok(()),
        'f' | 'F' => {
            mkdir_parents_item(ctx, i, Some(FileType::RegularFile))?;
            if i.kind == 'F' || i.append_or_force {
                truncate_file(ctx, i)
            } else {
                create_file(ctx, i)
            }
        }
        'C' => {
            mkdir_parents_item(ctx, i, None)?;
            copy_files(ctx, i)
        }
        'w' => glob_each(ctx, i, write_one_file),
        'd' | 'D' | 'v' | 'q' | 'Q' => {
            mkdir_parents_item(ctx, i, Some(FileType::Directory))?;
            create_directory(ctx, i)
        }
        'e' => glob_each(ctx, i, empty_directory),
        'p' => {
            mkdir_parents_item(ctx, i, Some(FileType::Fifo))?;
            create_special(ctx, i, FileType::Fifo)
        }
        'L' => {
            mkdir_parents_item(ctx, i, Some(FileType::Symlink))?;
            create_symlink(ctx, i)
        }
        'c' | 'b' => {
            if !ctx.can_mknod {
                log::debug!(
                    "We lack CAP_MKNOD, skipping creation of device node {}.",
                    ctx.d(&i.path)
                );
                return Ok(());
            }
            let t = if i.kind == 'b' {
                FileType::BlockDevice
            } else {
                FileType::CharacterDevice
            };
            mkdir_parents_item(ctx, i, Some(t))?;
            create_special(ctx, i, t)
        }
        'm' | 'z' => glob_each(ctx, i, |c, i, p, cr| {
            let (fd, st) = open_safe(c, p)?;
            fd_set_perms(c, i, fd.as_fd(), p, Some(st), cr)
        }),
        'Z' => glob_recursive(ctx, i, &|c, i, fd, p, st, cr| {
            fd_set_perms(c, i, fd, p, Some(*st), cr)
        }),
        't' => glob_each(ctx, i, |c, i, p, _| {
            let (fd, _) = open_safe(c, p)?;
            fd_set_xattrs(c, i, fd.as_fd(), p)
        }),
        'T' => glob_recursive(ctx, i, &|c, i, fd, p, _, _| fd_set_xattrs(c, i, fd, p)),
        'a' => glob_each(ctx, i, |c, i, p, _| {
            let (fd, st) = open_safe(c, p)?;
            fd_set_acls(c, i, fd.as_fd(), p, &st)
        }),
        'A' => glob_recursive(ctx, i, &|c, i, fd, p, st, _| fd_set_acls(c, i, fd, p, st)),
        'h' => glob_each(ctx, i, |c, i, p, _| {
            let (fd, st) = open_safe(c, p)?;
            fd_set_attribute(c, i, fd.as_fd(), p, &st)
        }),
        'H' => glob_recursive(ctx, i, &|c, i, fd, p, st, _| {
            fd_set_attribute(c, i, fd, p, st)
        }),
        _ => Ok(()),
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

fn hardlink_vulnerable(ctx: &Ctx<'_>, st: &Stat) -> bool {
    ft(st) != FileType::Directory && st.st_nlink > 1 && !ctx.protected_hardlinks
}

/// pristine's rule beyond systemd's (docs/tmpfiles.md): a `w` line whose path lies outside
/// `/usr` never writes (nor chowns, nor chmods) a file that its path reaches in `/usr` through
/// a symlink. The vendor tree is what `/etc` and `/var` are rebuilt from; a link in `/var`
/// (made by an `L` line or by anyone) must not turn a `w+ /var/…/*` into an edit of it.
/// systemd-tmpfiles 257 under `--root` resolves such an absolute link on the host instead
/// (finding nothing, or worse); at boot it would write through it.
fn leads_into_vendor_tree(ctx: &Ctx<'_>, fd: &OwnedFd, p: &Path) -> Result<bool, String> {
    let usr = Path::new("/usr");
    if p.starts_with(usr) {
        return Ok(false);
    }
    ctx.root
        .lies_below(fd, usr)
        .map_err(|e| format!("Failed to check where \"{}\" leads: {}", ctx.d(p), em(&e)))
}

/// pristine's rule beyond systemd's (docs/tmpfiles.md): an existing regular file with more
/// than one hard link is never changed (content, mode, owner, ACLs, xattrs), whatever
/// `fs.protected_hardlinks` says. Any user able to write in a directory a line names could
/// have linked a file from elsewhere there (`/etc/shadow` from `/var/tmp`); pristine's own
/// files are created with one link.
fn refuse_hardlinked(ctx: &Ctx<'_>, st: &Stat, p: &Path, creation: Creation) -> R {
    if ft(st) == FileType::RegularFile && st.st_nlink > 1 && creation == Creation::Existing {
        return Err(format!(
            "Refusing to change {}: an existing regular file with {} hard links, which could be a link to a file elsewhere.",
            ctx.d(p),
            st.st_nlink
        ));
    }
    Ok(())
}

fn mask_perms(mode: u32, current: u32) -> u32 {
    let mut m = mode;
    if current & 0o111 == 0 {
        m &= !0o111;
    }
    if current & 0o222 == 0 {
        m &= !0o222;
    }
    if current & 0o444 == 0 {
        m &= !0o444;
    }
    if FileType::from_raw_mode(current) != FileType::Directory {
        m &= !0o7000;
    }
    m
}

fn fd_set_perms(
    ctx: &Ctx<'_>,
    i: &Item,
    fd: BorrowedFd<'_>,
    p: &Path,
    st: Option<Stat>,
    creation: Creation,
) -> R {
    if !i.mode_set && i.uid.is_none() && i.gid.is_none() {
        return Ok(());
    }
    let st = match st {
        Some(s) => s,
        None => rustix::fs::fstat(fd).map_err(|e| format!("fstat({}) failed: {e}", ctx.d(p)))?,
    };
    if hardlink_vulnerable(ctx, &st) {
        return Err(format!(
            "Refusing to set permissions on hardlinked file {} while the fs.protected_hardlinks sysctl is turned off.",
            ctx.d(p)
        ));
    }
    let existing = creation == Creation::Existing;
    let new_uid = match i.uid {
        Some(u) if !(existing && i.uid_only_create) => u,
        _ => st.st_uid,
    };
    let new_gid = match i.gid {
        Some(g) if !(existing && i.gid_only_create) => g,
        _ => st.st_gid,
    };
    let do_chown = new_uid != st.st_uid || new_gid != st.st_gid;
    let new_mode = if i.mode_set && !(existing && i.mode_only_create) {
        if i.mask_perms {
            mask_perms(i.mode, st.st_mode)
        } else {
            i.mode
        }
    } else {
        st.st_mode & 0o7777
    };
    let do_chmod = (new_mode ^ st.st_mode) & 0o7777 != 0;
    let is_link = ft(&st) == FileType::Symlink;
    if do_chmod || do_chown {
        refuse_hardlinked(ctx, &st, p, creation)?;
    }
    if ctx.opts.dry_run {
        if do_chown {
            log::info!("Would change \"{}\" to owner {new_uid}:{new_gid}", ctx.d(p));
        }
        if (do_chmod || do_chown) && !is_link {
            log::info!("Would change \"{}\" to mode {new_mode:o}", ctx.d(p));
        }
        return Ok(());
    }
    if do_chmod && do_chown && !is_link {
        let m = new_mode & st.st_mode;
        if (m ^ st.st_mode) & 0o7777 != 0 {
            fchmod_opath(fd, m & 0o7777, p)
                .map_err(|e| format!("fchmod() of {} failed: {}", ctx.d(p), em(&e)))?;
        }
    }
    if do_chown {
        // Ownership decides unsafe transitions: this directory must be walked again.
        ctx.forget_dir(&st);
        fchown_opath(
            fd,
            (new_uid != st.st_uid).then_some(new_uid),
            (new_gid != st.st_gid).then_some(new_gid),
            p,
        )
        .map_err(|e| format!("fchownat() of {} failed: {}", ctx.d(p), em(&e)))?;
    }
    if (do_chmod || do_chown) && !is_link {
        fchmod_opath(fd, new_mode, p)
            .map_err(|e| format!("fchmod() of {} failed: {}", ctx.d(p), em(&e)))?;
    }
    if do_chmod || do_chown {
        ctx.touched(p);
    }
    Ok(())
}

fn last_name(ctx: &Ctx<'_>, p: &Path) -> Result<(), String> {
    match p.file_name() {
        Some(_) => Ok(()),
        None => Err(format!(
            "Failed to extract filename from path '{}': Invalid argument",
            ctx.d(p)
        )),
    }
}

fn mkdir_parents_item(ctx: &Ctx<'_>, i: &Item, child: Option<FileType>) -> R {
    // With `=`, the walk runs in --dry-run too (removing and creating nothing), as systemd's.
    // A path with `..` gets no parents: opening its parent fails next, as in systemd.
    if (ctx.opts.dry_run && !i.try_replace) || not_normalized(&i.path) {
        return Ok(());
    }
    if i.try_replace {
        match mkdir_parents_rm_if_wrong_type(ctx, &i.path, child) {
            Ok(()) => Ok(()),
            Err((true, _)) => Ok(()),
            Err((false, m)) => Err(m),
        }
    } else {
        if let Some(parent) = i.path.parent() {
            // A parent that resolves as a chain of directories needs nothing created.
            let plain = parent
                .components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
            if !(ctx.use_dirs() && plain && ctx.cached_dir(parent).is_some()) {
                mkdir_parents(ctx, parent);
            }
        }
        Ok(())
    }
}

/// systemd's `mkdir_parents_label(path, 0755)`: missing directories are created and then
/// chmod'ed to exactly 0755 (dropping a setgid bit inherited from the parent). Existing
/// components are followed (inside the root). Errors are ignored, as systemd does.
fn mkdir_parents(ctx: &Ctx<'_>, dir: &Path) {
    // Fast path: when the whole directory resolves (and the path has no `..`), every prefix
    // does too, so the per-component walk below would change nothing.
    if dir.parent().is_none() {
        return;
    }
    if dir.components().all(|c| {
        matches!(
            c,
            std::path::Component::RootDir | std::path::Component::Normal(_)
        )
    }) && ctx
        .root
        .open_path(dir, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
        .is_ok()
    {
        return;
    }
    let mut prefix = PathBuf::from("/");
    for c in dir.components().skip(1) {
        prefix.push(c);
        match ctx
            .root
            .open_path(&prefix, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
        {
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(_) => return,
        }
        match ctx.root.mkdir(&prefix, 0o755) {
            Ok(true) => {
                ctx.touched(&prefix);
                if let Ok(fd) = ctx.root.open_path(
                    &prefix,
                    OFlags::PATH | OFlags::NOFOLLOW | OFlags::DIRECTORY,
                    Mode::empty(),
                ) {
                    let _ = fchmod_opath(&fd, 0o755, &prefix);
                }
            }
            Ok(false) => {}
            Err(_) => return,
        }
    }
}

/// `rm_if_wrong_type_safe`: `Err((true, _))` is systemd's -ENOENT (missing or removed).
fn rm_if_wrong_type(
    ctx: &Ctx<'_>,
    dir: &OwnedFd,
    dir_st: &Stat,
    name: &OsStr,
    want: Option<FileType>,
    follow: bool,
    path: &Path,
) -> Result<(), (bool, String)> {
    let Some(want) = want else { return Ok(()) };
    let st = if follow {
        // Follow inside the root only.
        ctx.root.stat(path, true)
    } else {
        rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(io::Error::from)
    };
    let st = match st {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err((true, String::new())),
        Err(e) => {
            return Err((
                false,
                format!("Failed to stat \"{}\": {}", ctx.d(path), em(&e)),
            ))
        }
    };
    if follow && crate::fs::unsafe_transition(dir_st, &st) {
        return Err((
            false,
            format!(
                "Unsafe transition from \"{}\" to \"{}\".",
                ctx.d(path.parent().unwrap_or(Path::new("/"))),
                name.to_string_lossy()
            ),
        ));
    }
    if ft(&st) == want {
        return Ok(());
    }
    log::info!(
        "Wrong file type 0o{:o}; rm -rf \"{}\"",
        st.st_mode & 0o170000,
        ctx.d(path)
    );
    let lst = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| (false, format!("Failed to stat \"{}\": {e}", ctx.d(path))))?;
    if ft(&lst) == FileType::Directory {
        let child = rustix::fs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| (false, format!("Failed to open \"{}\": {e}", ctx.d(path))))?;
        if crate::fs::is_mount_point(&child, dir, name).unwrap_or(false) {
            return Err((
                false,
                format!(
                    "Not removing  \"{}\" because it is a mount point.",
                    ctx.d(path)
                ),
            ));
        }
    }
    if ctx.opts.dry_run {
        log::info!("Would remove \"{}\"", ctx.d(path));
        return Err((true, String::new()));
    }
    ctx.forget_dirs();
    ctx.root.remove_tree(path).map_err(|e| {
        (
            false,
            format!("Failed to remove \"{}\": {}", ctx.d(path), em(&e)),
        )
    })?;
    Err((true, String::new()))
}

fn mkdir_parents_rm_if_wrong_type(
    ctx: &Ctx<'_>,
    path: &Path,
    child: Option<FileType>,
) -> Result<(), (bool, String)> {
    let comps: Vec<&OsStr> = path.iter().filter(|c| *c != OsStr::new("/")).collect();
    let mut cur = PathBuf::from("/");
    let mut dir = ctx
        .root
        .open_dir(&cur)
        .map_err(|e| (false, format!("Failed to open root: {e}")))?;
    let mut dir_st = rustix::fs::fstat(&dir).map_err(|e| (false, e.to_string()))?;
    for (k, c) in comps.iter().enumerate() {
        let next = cur.join(c);
        if k + 1 == comps.len() {
            return rm_if_wrong_type(ctx, &dir, &dir_st, c, child, false, &next);
        }
        let mut r = rm_if_wrong_type(
            ctx,
            &dir,
            &dir_st,
            c,
            Some(FileType::Directory),
            true,
            &next,
        );
        if matches!(r, Err((true, _))) {
            r = rm_if_wrong_type(
                ctx,
                &dir,
                &dir_st,
                c,
                Some(FileType::Directory),
                false,
                &next,
            );
        }
        match r {
            Err((true, _)) if ctx.opts.dry_run => {}
            Err((true, _)) => {
                mutating("mkdir", &next).map_err(|e| (false, e.to_string()))?;
                rustix::fs::mkdirat(&dir, *c, Mode::from_raw_mode(0o755))
                    .map_err(|e| (false, format!("Failed to mkdir \"{}\": {e}", ctx.d(&next))))?;
                ctx.touched(&next);
            }
            Err(e) => return Err(e),
            Ok(()) => {}
        }
        dir = ctx.root.open_dir(&next).map_err(|e| {
            let m = format!("Failed to open \"{}\": {}", ctx.d(&next), em(&e));
            // systemd's caller ignores -ENOENT from this walk (after logging it).
            let enoent = e.kind() == io::ErrorKind::NotFound;
            if enoent {
                log::error!("{m}");
            }
            (enoent, m)
        })?;
        dir_st = rustix::fs::fstat(&dir).map_err(|e| (false, e.to_string()))?;
        cur = next;
    }
    Ok(())
}

fn write_data(ctx: &Ctx<'_>, i: &Item, fd: &OwnedFd, p: &Path) -> R {
    let data = i.argument.as_deref().unwrap_or(&[]);
    if data.is_empty() {
        return Ok(());
    }
    mutating("write", p).map_err(|e| e.to_string())?;
    let mut off = 0;
    while off < data.len() {
        match rustix::io::write(fd, &data[off..]) {
            Ok(n) => off += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::AGAIN) => {
                std::thread::sleep(std::time::Duration::from_millis(1));
                continue;
            }
            Err(e) => {
                return Err(format!("Failed to write file \"{}\": {e}", ctx.d(p)));
            }
        }
    }
    Ok(())
}

fn create_file(ctx: &Ctx<'_>, i: &Item) -> R {
    last_name(ctx, &i.path)?;
    if ctx.opts.dry_run {
        log::info!("Would create file {}", ctx.d(&i.path));
        return Ok(());
    }
    let (dir, name) = open_parent_safe(ctx, i, &i.path)?;
    mutating("create", &i.path).map_err(|e| e.to_string())?;
    match rustix::fs::openat(
        &dir,
        name.as_os_str(),
        OFlags::CREATE
            | OFlags::EXCL
            | OFlags::NOFOLLOW
            | OFlags::NONBLOCK
            | OFlags::CLOEXEC
            | OFlags::WRONLY
            | OFlags::NOCTTY,
        Mode::from_raw_mode(i.mode),
    ) {
        Ok(fd) => {
            ctx.touched(&i.path);
            write_data(ctx, i, &fd, &i.path)?;
            fd_set_perms(ctx, i, fd.as_fd(), &i.path, None, Creation::Normal)
        }
        Err(rustix::io::Errno::EXIST) => {
            let fd = open_child_path(&dir, &name)
                .map_err(|e| format!("Failed to reopen file {}: {e}", ctx.d(&i.path)))?;
            let st = rustix::fs::fstat(&fd).map_err(|e| format!("stat failed: {e}"))?;
            if ft(&st) != FileType::RegularFile {
                return Err(format!(
                    "{} exists and is not a regular file.",
                    ctx.d(&i.path)
                ));
            }
            fd_set_perms(ctx, i, fd.as_fd(), &i.path, Some(st), Creation::Existing)
        }
        Err(e) => Err(format!("Failed to create file {}: {e}", ctx.d(&i.path))),
    }
}

fn truncate_file(ctx: &Ctx<'_>, i: &Item) -> R {
    last_name(ctx, &i.path)?;
    let (dir, name) = open_parent_safe(ctx, i, &i.path)?;
    if ctx.opts.dry_run {
        log::info!("Would truncate {}", ctx.d(&i.path));
        return Ok(());
    }
    let flags =
        OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::WRONLY | OFlags::NOCTTY;
    let mut creation = Creation::Existing;
    mutating("truncate", &i.path).map_err(|e| e.to_string())?;
    let fd = match rustix::fs::openat(&dir, name.as_os_str(), flags, Mode::from_raw_mode(i.mode)) {
        Err(rustix::io::Errno::NOENT) => {
            creation = Creation::Normal;
            rustix::fs::openat(
                &dir,
                name.as_os_str(),
                flags | OFlags::CREATE,
                Mode::from_raw_mode(i.mode),
            )
        }
        r => r,
    }
    .map_err(|e| format!("Failed to open/create file {}: {e}", ctx.d(&i.path)))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| format!("stat failed: {e}"))?;
    if ft(&st) != FileType::RegularFile {
        return Err(format!(
            "{} exists and is not a regular file.",
            ctx.d(&i.path)
        ));
    }
    if st.st_size > 0 || i.argument.as_deref().is_some_and(|a| !a.is_empty()) {
        refuse_hardlinked(ctx, &st, &i.path, creation)?;
    }
    let mut known = Some(st);
    if creation == Creation::Normal
        || st.st_size > 0
        || i.argument.as_deref().is_some_and(|a| !a.is_empty())
    {
        ctx.touched(&i.path);
    }
    if st.st_size > 0 {
        rustix::fs::ftruncate(&fd, 0)
            .map_err(|e| format!("Failed to truncate file {}: {e}", ctx.d(&i.path)))?;
        known = None;
    }
    if i.argument.is_some() {
        write_data(ctx, i, &fd, &i.path)?;
    }
    fd_set_perms(ctx, i, fd.as_fd(), &i.path, known, creation)
}

fn write_one_file(ctx: &Ctx<'_>, i: &Item, p: &Path, creation: Creation) -> R {
    last_name(ctx, p)?;
    let (_dir, _name) = open_parent_safe(ctx, i, p)?;
    let mut flags = OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::WRONLY | OFlags::NOCTTY;
    if i.append_or_force {
        flags |= OFlags::APPEND;
    }
    if ctx.opts.dry_run {
        flags = OFlags::PATH;
    }
    // Symlinks are followed, inside the root.
    let fd = match ctx.root.open_path(p, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            log::debug!("Not writing missing file \"{}\": {}", ctx.d(p), em(&e));
            return Ok(());
        }
        Err(e) => {
            if i.allow_failure {
                log::debug!("Failed to open file \"{}\", ignoring: {}", ctx.d(p), em(&e));
                return Ok(());
            }
            return Err(format!("Failed to open file \"{}\": {}", ctx.d(p), em(&e)));
        }
    };
    if i.argument.as_deref().is_some_and(|a| !a.is_empty()) {
        let st = rustix::fs::fstat(&fd).map_err(|e| format!("fstat({}) failed: {e}", ctx.d(p)))?;
        refuse_hardlinked(ctx, &st, p, creation)?;
    }
    if leads_into_vendor_tree(ctx, &fd, p)? {
        // A warning, not a failure: systemd's run on the same root ends with nothing written.
        log::warn!(
            "Not writing to \"{}\": it leads into /usr through a symlink.",
            ctx.d(p)
        );
        return Ok(());
    }
    if ctx.opts.dry_run {
        log::info!("Would write to \"{}\"", ctx.d(p));
    } else {
        write_data(ctx, i, &fd, p)?;
        if i.argument.as_deref().is_some_and(|a| !a.is_empty()) {
            ctx.touched(p);
        }
    }
    fd_set_perms(ctx, i, fd.as_fd(), p, None, creation)
}

fn copy_files(ctx: &Ctx<'_>, i: &Item) -> R {
    let src = PathBuf::from(OsStr::from_bytes(i.argument.as_deref().unwrap_or(b"/")));
    if ctx.opts.dry_run {
        log::info!(
            "Would copy tree \"{}\" to \"{}\"",
            ctx.d(&src),
            ctx.d(&i.path)
        );
        return Ok(());
    }
    last_name(ctx, &i.path)?;
    let (dfd, name) = open_parent_safe(ctx, i, &i.path)?;
    // A merge copies owners and modes into existing directories.
    ctx.forget_dirs();
    let copied = (|| -> io::Result<()> {
        let (sdir, sname) = ctx.root.parent(&src)?;
        copy_tree_at(
            &sdir,
            &sname,
            &dfd,
            &name,
            CopyOptions {
                merge: i.append_or_force,
                merge_empty: !i.append_or_force,
                uid: i.uid,
                gid: i.gid,
            },
            &i.path,
        )
    })();
    let fd = match open_child_path(&dfd, &name) {
        Ok(fd) => fd,
        Err(e) => {
            return Err(match copied {
                Err(ce) => format!("Failed to copy files to {}: {}", ctx.d(&i.path), em(&ce)),
                Ok(()) => format!("Failed to openat({}): {e}", ctx.d(&i.path)),
            })
        }
    };
    match &copied {
        Ok(()) => ctx.touched(&i.path),
        // systemd goes on when the target exists; a partial copy is at least said.
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => log::warn!(
            "Failed to copy all of {} to {}: {}",
            ctx.d(&src),
            ctx.d(&i.path),
            em(e)
        ),
        Err(_) => {}
    }
    let st =
        rustix::fs::fstat(&fd).map_err(|e| format!("Failed to fstat({}): {e}", ctx.d(&i.path)))?;
    let a = ctx
        .root
        .stat(&src, true)
        .map_err(|e| format!("Failed to stat({}): {}", ctx.d(&src), em(&e)))?;
    if ft(&st) != ft(&a) {
        log::debug!(
            "Can't copy to {}, file exists already and is of different type",
            ctx.d(&i.path)
        );
        return Ok(());
    }
    fd_set_perms(ctx, i, fd.as_fd(), &i.path, Some(st), Creation::Invalid)
}

fn create_directory(ctx: &Ctx<'_>, i: &Item) -> R {
    if ctx.opts.dry_run {
        log::info!("Would create directory {}", ctx.d(&i.path));
        return Ok(());
    }
    last_name(ctx, &i.path)?;
    let (dir, name) = open_parent_safe(ctx, i, &i.path)?;
    mutating("mkdir", &i.path).map_err(|e| e.to_string())?;
    let r = rustix::fs::mkdirat(&dir, name.as_os_str(), Mode::from_raw_mode(i.mode));
    let creation = creation_after(ctx, &r, &i.path);
    let fd = match rustix::fs::openat(
        &dir,
        name.as_os_str(),
        OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::DIRECTORY | OFlags::PATH,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOTDIR) => {
            // systemd logs this and carries on without failing the run.
            log::error!(
                "\"{}\" already exists and is not a directory.",
                ctx.d(&i.path)
            );
            return Ok(());
        }
        Err(e) => {
            return Err(match r {
                Err(re) => format!(
                    "Failed to create directory or subvolume \"{}\"{}: {re}",
                    ctx.d(&i.path),
                    if i.allow_failure { ", ignoring" } else { "" }
                ),
                Ok(()) => format!(
                    "Failed to open directory/subvolume we just created '{}': {e}",
                    ctx.d(&i.path)
                ),
            })
        }
    };
    let st =
        rustix::fs::fstat(&fd).map_err(|e| format!("Failed to fstat({}): {e}", ctx.d(&i.path)))?;
    fd_set_perms(ctx, i, fd.as_fd(), &i.path, Some(st), creation)
}

fn empty_directory(ctx: &Ctx<'_>, i: &Item, p: &Path, creation: Creation) -> R {
    let (fd, st) = match ctx.root.chase_safe(p, false) {
        Ok(x) => x,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) if is_unsafe_transition(&e) => {
            return Err(format!(
                "Detected unsafe path transition while resolving '{}'.",
                ctx.d(p)
            ))
        }
        Err(e) => {
            return Err(format!(
                "Failed to open directory '{}': {}",
                ctx.d(p),
                em(&e)
            ))
        }
    };
    if ft(&st) != FileType::Directory {
        log::warn!("'{}' already exists and is not a directory.", ctx.d(p));
        return Ok(());
    }
    fd_set_perms(ctx, i, fd.as_fd(), p, Some(st), creation)
}

fn make_node(dir: &OwnedFd, name: &OsStr, t: FileType, i: &Item) -> rustix::io::Result<()> {
    let mode = Mode::from_raw_mode(i.mode);
    match t {
        FileType::Fifo => rustix::fs::mkfifoat(dir, name, mode),
        _ => {
            let (ma, mi) = i.major_minor.unwrap_or((0, 0));
            rustix::fs::mknodat(dir, name, t, mode, rustix::fs::makedev(ma, mi))
        }
    }
}

fn rm_rf_child(ctx: &Ctx<'_>, p: &Path) -> R {
    ctx.forget_dirs();
    ctx.root
        .remove_tree(p)
        .map(|_| ())
        .map_err(|e| format!("rm -rf {} failed: {}", ctx.d(p), em(&e)))
}

/// The [`Creation`] of an item whose create call returned `created`: a new node counts as
/// changed (`Normal`), a failed create means the node was already there (`Existing`).
fn creation_after<T, E>(ctx: &Ctx<'_>, created: &Result<T, E>, p: &Path) -> Creation {
    if created.is_ok() {
        ctx.touched(p);
        Creation::Normal
    } else {
        Creation::Existing
    }
}

/// An `O_PATH` handle on `dir`/`name` itself (a symlink is not followed).
fn open_child_path(dir: &OwnedFd, name: &OsStr) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::PATH,
        Mode::empty(),
    )
}

/// Reopens and stats the node of `p` (`dir`/`name`) that a forced replacement just made;
/// `what` names the kind of node in the error message.
fn reopen_created(
    ctx: &Ctx<'_>,
    dir: &OwnedFd,
    name: &OsStr,
    p: &Path,
    what: &str,
) -> Result<(OwnedFd, Stat), String> {
    let fd = open_child_path(dir, name)
        .map_err(|e| format!("Failed to open {what} we just created '{}': {e}", ctx.d(p)))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| e.to_string())?;
    Ok((fd, st))
}

/// Replaces `dir`/`name` (the item path `p`) by a node that `make` creates: atomically, as a
/// temporary name renamed over the old one; when a directory is in the way it is removed
/// (recursively) and the node made in its place. The outer error is a failed removal, the
/// inner one the failed creation (for the caller's own message).
fn replace_node(
    ctx: &Ctx<'_>,
    dir: &OwnedFd,
    name: &OsStr,
    p: &Path,
    make: impl Fn(&OsStr) -> rustix::io::Result<()>,
) -> Result<rustix::io::Result<()>, String> {
    ctx.forget_dirs();
    let tmp = crate::fs::temp_name(name);
    let mut res = make(tmp.as_os_str());
    if res.is_ok() {
        res = rustix::fs::renameat(dir, tmp.as_os_str(), dir, name);
        if res.is_err() {
            let _ = rustix::fs::unlinkat(dir, tmp.as_os_str(), AtFlags::empty());
        }
    }
    if let Err(rustix::io::Errno::ISDIR | rustix::io::Errno::EXIST | rustix::io::Errno::NOTEMPTY) =
        res
    {
        rm_rf_child(ctx, p)?;
        res = make(name);
    }
    Ok(res)
}

/// `p` (FIFO) and `c`/`b` (device nodes).
fn create_special(ctx: &Ctx<'_>, i: &Item, t: FileType) -> R {
    last_name(ctx, &i.path)?;
    let what = if t == FileType::Fifo {
        "FIFO"
    } else {
        "device node"
    };
    if ctx.opts.dry_run {
        log::info!("Would create {what} {}", ctx.d(&i.path));
        return Ok(());
    }
    let (dir, name) = open_parent_safe(ctx, i, &i.path)?;
    mutating("mknod", &i.path).map_err(|e| e.to_string())?;
    let r = make_node(&dir, &name, t, i);
    let mut creation = creation_after(ctx, &r, &i.path);
    let mut fd = match open_child_path(&dir, &name) {
        Ok(fd) => fd,
        Err(e) => {
            return Err(match r {
                Err(rustix::io::Errno::PERM) | Err(rustix::io::Errno::ACCESS)
                    if t != FileType::Fifo =>
                {
                    return Ok(())
                }
                Err(re) => format!("Failed to create {what} {}: {re}", ctx.d(&i.path)),
                Ok(()) => format!(
                    "Failed to open {what} we just created {}: {e}",
                    ctx.d(&i.path)
                ),
            })
        }
    };
    let mut st =
        rustix::fs::fstat(&fd).map_err(|e| format!("Failed to fstat({}): {e}", ctx.d(&i.path)))?;
    if ft(&st) != t {
        if !i.append_or_force {
            log::warn!("\"{}\" already exists and is not a {what}.", ctx.d(&i.path));
            return Ok(());
        }
        // Atomic replacement: a temporary node renamed over the old one; a directory in the
        // way is removed first.
        let res = replace_node(ctx, &dir, &name, &i.path, |n| make_node(&dir, n, t, i))?;
        if let Err(e) = res {
            if t != FileType::Fifo
                && matches!(e, rustix::io::Errno::PERM | rustix::io::Errno::ACCESS)
            {
                return Ok(());
            }
            return Err(format!("Failed to create {what} {}: {e}", ctx.d(&i.path)));
        }
        (fd, st) = reopen_created(ctx, &dir, &name, &i.path, what)?;
        if ft(&st) != t {
            return Err(format!("{what} we just created is not a {what}, refusing."));
        }
        creation = Creation::Force;
        ctx.touched(&i.path);
    }
    fd_set_perms(ctx, i, fd.as_fd(), &i.path, Some(st), creation)
}

fn create_symlink(ctx: &Ctx<'_>, i: &Item) -> R {
    let target = PathBuf::from(OsStr::from_bytes(i.argument.as_deref().unwrap_or(b"")));
    if i.ignore_if_target_missing {
        match ctx.root.chase_safe(&target, true) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                log::info!(
                    "Symlink source path '{}' does not exist, skipping line.",
                    ctx.d(&target)
                );
                return Ok(());
            }
            Err(e) => {
                return Err(format!(
                    "Failed to check if symlink source path '{}' exists: {}",
                    ctx.d(&target),
                    em(&e)
                ))
            }
        }
    }
    last_name(ctx, &i.path)?;
    if ctx.opts.dry_run {
        log::info!(
            "Would create symlink {} -> {}",
            ctx.d(&i.path),
            target.display()
        );
        return Ok(());
    }
    let (dir, name) = open_parent_safe(ctx, i, &i.path)?;
    mutating("symlink", &i.path).map_err(|e| e.to_string())?;
    let r = rustix::fs::symlinkat(&target, &dir, name.as_os_str());
    let mut creation = creation_after(ctx, &r, &i.path);
    let mut fd = match open_child_path(&dir, &name) {
        Ok(fd) => fd,
        Err(e) => {
            return Err(match r {
                Err(re) => format!("Failed to create symlink '{}': {re}", ctx.d(&i.path)),
                Ok(()) => format!(
                    "Failed to open symlink we just created '{}': {e}",
                    ctx.d(&i.path)
                ),
            })
        }
    };
    let mut st = rustix::fs::fstat(&fd).map_err(|e| e.to_string())?;
    let good = ft(&st) == FileType::Symlink
        && rustix::fs::readlinkat(&dir, name.as_os_str(), Vec::new())
            .map(|t| t.as_bytes() == target.as_os_str().as_bytes())
            .unwrap_or(false);
    if !good {
        if !i.append_or_force {
            log::debug!(
                "\"{}\" is not a symlink or does not point to the correct path.",
                ctx.d(&i.path)
            );
            return Ok(());
        }
        let res = replace_node(ctx, &dir, &name, &i.path, |n| {
            rustix::fs::symlinkat(&target, &dir, n)
        })?;
        if let Err(e) = res {
            return Err(format!(
                "symlink({}, {}) failed: {e}",
                target.display(),
                ctx.d(&i.path)
            ));
        }
        (fd, st) = reopen_created(ctx, &dir, &name, &i.path, "symlink")?;
        if ft(&st) != FileType::Symlink {
            return Err("Symlink we just created is not a symlink, refusing.".into());
        }
        creation = Creation::Force;
        ctx.touched(&i.path);
    }
    fd_set_perms(ctx, i, fd.as_fd(), &i.path, Some(st), creation)
}

fn fd_set_xattrs(ctx: &Ctx<'_>, i: &Item, fd: BorrowedFd<'_>, p: &Path) -> R {
    if !i.xattrs.is_empty() {
        let st = rustix::fs::fstat(fd).map_err(|e| format!("fstat({}) failed: {e}", ctx.d(p)))?;
        refuse_hardlinked(ctx, &st, p, Creation::Existing)?;
    }
    for (name, value) in &i.xattrs {
        let n = String::from_utf8_lossy(name);
        if ctx.opts.dry_run {
            log::info!("Would set extended attribute '{n}' on {}", ctx.d(p));
            continue;
        }
        mutating("setxattr", p).map_err(|e| e.to_string())?;
        rustix::fs::setxattr(
            proc_fd_path(fd).as_str(),
            n.as_ref(),
            value,
            rustix::fs::XattrFlags::empty(),
        )
        .map_err(|e| {
            format!(
                "Setting extended attribute {n}={} on {} failed: {e}",
                String::from_utf8_lossy(value),
                ctx.d(p)
            )
        })?;
    }
    Ok(())
}

fn get_acl(fd: BorrowedFd<'_>, name: &str, st: &Stat) -> io::Result<Vec<acl::Entry>> {
    let mut buf = vec![0u8; 65536];
    match rustix::fs::getxattr(proc_fd_path(fd).as_str(), name, &mut buf[..]) {
        Ok(n) => acl::decode(&buf[..n]),
        Err(rustix::io::Errno::NODATA) => Ok(if name == acl::ACCESS_XATTR {
            acl::from_mode(st.st_mode)
        } else {
            Vec::new()
        }),
        Err(e) => Err(e.into()),
    }
}

fn path_set_acl(
    ctx: &Ctx<'_>,
    fd: BorrowedFd<'_>,
    p: &Path,
    st: &Stat,
    xattr: &str,
    entries: &[acl::Entry],
    modify: bool,
) -> io::Result<()> {
    let mut dup = if modify {
        let mut applied = get_acl(fd, xattr, st)?;
        acl::merge(&mut applied, entries);
        acl::calc_mask_if_needed(&mut applied);
        applied
    } else {
        entries.to_vec()
    };
    acl::add_base_if_needed(&mut dup, st.st_mode);
    if ctx.opts.dry_run {
        log::info!("Would set ACL on {}", ctx.d(p));
        return Ok(());
    }
    mutating("setxattr", p)?;
    rustix::fs::setxattr(
        proc_fd_path(fd).as_str(),
        xattr,
        &acl::encode(&dup),
        rustix::fs::XattrFlags::empty(),
    )?;
    Ok(())
}

fn fd_set_acls(ctx: &Ctx<'_>, i: &Item, fd: BorrowedFd<'_>, p: &Path, st: &Stat) -> R {
    let Some(a) = &i.acl else { return Ok(()) };
    if hardlink_vulnerable(ctx, st) {
        return Err(format!(
            "Refusing to set ACLs on hardlinked file {} while the fs.protected_hardlinks sysctl is turned off.",
            ctx.d(p)
        ));
    }
    refuse_hardlinked(ctx, st, p, Creation::Existing)?;
    if ft(st) == FileType::Symlink {
        return Ok(());
    }
    let mut r: io::Result<()> = Ok(());
    if let Some(exec) = &a.access_exec {
        let has_exec = if ft(st) == FileType::Directory {
            true
        } else {
            let old = get_acl(fd, acl::ACCESS_XATTR, st).map_err(|e| {
                format!(
                    "Failed to parse conditionalized execute bit for \"{}\": {}",
                    ctx.d(p),
                    em(&e)
                )
            })?;
            old.iter()
                .filter(|e| e.tag != acl::MASK)
                .filter(|e| i.append_or_force || !matches!(e.tag, acl::USER | acl::GROUP))
                .any(|e| e.perm & 1 != 0)
                || a.access
                    .as_ref()
                    .is_some_and(|v| v.iter().any(|e| e.perm & 1 != 0))
        };
        let mut parsed = a.access.clone().unwrap_or_default();
        for e in exec {
            let mut e = *e;
            if !has_exec {
                e.perm &= !1;
            }
            parsed.push(e);
        }
        if !i.append_or_force {
            acl::calc_mask_if_needed(&mut parsed);
        }
        r = path_set_acl(
            ctx,
            fd,
            p,
            st,
            acl::ACCESS_XATTR,
            &parsed,
            i.append_or_force,
        );
    } else if let Some(access) = &a.access {
        r = path_set_acl(ctx, fd, p, st, acl::ACCESS_XATTR, access, i.append_or_force);
    }
    if r.is_ok() {
        if let Some(def) = &a.default {
            if ft(st) == FileType::Directory {
                r = path_set_acl(ctx, fd, p, st, acl::DEFAULT_XATTR, def, i.append_or_force);
            }
        }
    }
    match r {
        Ok(()) => Ok(()),
        Err(e) if is(&e, rustix::io::Errno::OPNOTSUPP) => {
            log::debug!("ACLs not supported by file system at {}", ctx.d(p));
            Ok(())
        }
        Err(e) => Err(format!(
            "ACL operation on \"{}\" failed: {}",
            ctx.d(p),
            em(&e)
        )),
    }
}

fn fd_set_attribute(ctx: &Ctx<'_>, i: &Item, fd: BorrowedFd<'_>, p: &Path, st: &Stat) -> R {
    let Some((value, mask)) = i.attribute else {
        return Ok(());
    };
    if mask == 0 {
        return Ok(());
    }
    let t = ft(st);
    if t != FileType::RegularFile && t != FileType::Directory {
        return Err(format!(
            "Setting file flags is only supported on regular files and directories, cannot set on '{}'.",
            ctx.d(p)
        ));
    }
    let mut f = value & mask;
    if t != FileType::Directory {
        f &= !0x10000;
    }
    if ctx.opts.dry_run {
        log::info!("Would try to set file attributes 0x{f:08x} on {}", ctx.d(p));
        return Ok(());
    }
    let rfd = reopen(fd, OFlags::RDONLY | OFlags::NOATIME)
        .map_err(|e| format!("Failed to reopen '{}': {}", ctx.d(p), em(&e)))?;
    let old = match rustix::fs::ioctl_getflags(&rfd) {
        Ok(o) => o.bits(),
        Err(e) => {
            log::debug!("Cannot set file attributes for '{}': {e}", ctx.d(p));
            return Ok(());
        }
    };
    let new = (old & !mask) | (f & mask);
    if new != old {
        mutating("chattr", p).map_err(|e| e.to_string())?;
        if let Err(e) = rustix::fs::ioctl_setflags(&rfd, rustix::fs::IFlags::from_bits_retain(new))
        {
            // Bit by bit, as systemd's CHATTR_FALLBACK_BITWISE; failures only warn.
            log::debug!(
                "Setting all attributes on '{}' failed ({e}), trying one by one",
                ctx.d(p)
            );
            let mut cur = old;
            for bit in (0..32).map(|b| 1u32 << b).filter(|b| mask & b != 0) {
                let want = (cur & !bit) | (f & bit);
                if want != cur
                    && rustix::fs::ioctl_setflags(&rfd, rustix::fs::IFlags::from_bits_retain(want))
                        .is_ok()
                {
                    cur = want;
                }
            }
            if cur != new {
                log::warn!("Cannot set file attributes for '{}', ignoring.", ctx.d(p));
            }
        }
    }
    Ok(())
}

/* ---------------------------------------------------------------- remove, clean, purge */

struct DirInfo {
    atime: u64,
    mtime: u64,
    mountpoint: bool,
}

/// systemd's `opendir_and_stat`: `Ok(None)` when missing or not a directory. Symlinks are
/// followed inside the root.
fn opendir_and_stat(ctx: &Ctx<'_>, p: &Path) -> Result<Option<(OwnedFd, DirInfo)>, String> {
    // Like systemd's opendir_nomod(): the last component is not followed.
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW;
    let fd = match ctx
        .root
        .open_path(p, flags | OFlags::NOATIME, Mode::empty())
        .or_else(|e| {
            if is(&e, rustix::io::Errno::PERM) || is(&e, rustix::io::Errno::ACCESS) {
                ctx.root.open_path(p, flags, Mode::empty())
            } else {
                Err(e)
            }
        }) {
        Ok(fd) => fd,
        Err(e)
            if is(&e, rustix::io::Errno::NOENT)
                || is(&e, rustix::io::Errno::NOTDIR)
                || is(&e, rustix::io::Errno::LOOP) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(format!("Failed to open directory {}: {}", ctx.d(p), em(&e))),
    };
    let sx = rustix::fs::statx(
        &fd,
        "",
        AtFlags::EMPTY_PATH,
        StatxFlags::MODE | StatxFlags::INO | StatxFlags::ATIME | StatxFlags::MTIME,
    )
    .map_err(|e| format!("statx({}) failed: {e}", ctx.d(p)))?;
    let mountpoint = if sx.stx_attributes_mask.bits() & STATX_ATTR_MOUNT_ROOT != 0 {
        sx.stx_attributes.bits() & STATX_ATTR_MOUNT_ROOT != 0
    } else {
        false
    };
    let ns = |t: rustix::fs::StatxTimestamp| t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64;
    Ok(Some((
        fd,
        DirInfo {
            atime: ns(sx.stx_atime),
            mtime: ns(sx.stx_mtime),
            mountpoint,
        },
    )))
}

fn needs_cleanup(times: [u64; 4], cutoff: u64, age_by: u8) -> bool {
    // times: atime, btime, ctime, mtime
    let checks = [
        (parse::AGE_MTIME, times[3]),
        (parse::AGE_ATIME, times[0]),
        (parse::AGE_CTIME, times[2]),
        (parse::AGE_BTIME, times[1]),
    ];
    for (bit, t) in checks {
        if age_by & bit != 0 && t != u64::MAX && t >= cutoff {
            return false;
        }
    }
    true
}

struct Cleanup {
    cutoff: u64,
    age_by_file: u8,
    age_by_dir: u8,
}

#[allow(clippy::too_many_arguments)]
fn dir_cleanup(
    ctx: &Ctx<'_>,
    p: &Path,
    dir: &OwnedFd,
    self_times: Option<(u64, u64)>,
    c: &Cleanup,
    mountpoint: bool,
    maxdepth: u32,
    keep_this_level: bool,
) -> R {
    let mut r: R = Ok(());
    let mut deleted = false;
    let entries =
        crate::fs::read_dir_fd(dir).map_err(|e| format!("Failed to read {}: {e}", ctx.d(p)))?;
    for ent in entries {
        let sx = match rustix::fs::statx(
            dir,
            ent.name.as_os_str(),
            AtFlags::SYMLINK_NOFOLLOW | AtFlags::NO_AUTOMOUNT,
            StatxFlags::TYPE
                | StatxFlags::MODE
                | StatxFlags::UID
                | StatxFlags::ATIME
                | StatxFlags::MTIME
                | StatxFlags::CTIME
                | StatxFlags::BTIME,
        ) {
            Ok(s) => s,
            Err(rustix::io::Errno::NOENT) => continue,
            Err(e) => {
                log::error!(
                    "statx({}/{}) failed: {e}",
                    ctx.d(p),
                    ent.name.to_string_lossy()
                );
                continue;
            }
        };
        if sx.stx_attributes_mask.bits() & STATX_ATTR_MOUNT_ROOT != 0
            && sx.stx_attributes.bits() & STATX_ATTR_MOUNT_ROOT != 0
        {
            continue;
        }
        let ns = |t: rustix::fs::StatxTimestamp| t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64;
        let has = |f: StatxFlags| sx.stx_mask & f.bits() != 0;
        let times = [
            if has(StatxFlags::ATIME) {
                ns(sx.stx_atime)
            } else {
                0
            },
            if has(StatxFlags::BTIME) {
                ns(sx.stx_btime)
            } else {
                0
            },
            if has(StatxFlags::CTIME) {
                ns(sx.stx_ctime)
            } else {
                0
            },
            if has(StatxFlags::MTIME) {
                ns(sx.stx_mtime)
            } else {
                0
            },
        ];
        let sub = p.join(&ent.name);
        if ctx.item_paths.contains(&sub) {
            continue;
        }
        let sb = sub.as_os_str().as_bytes();
        if ctx
            .glob_paths
            .iter()
            .any(|g| glob::fnmatch(g.as_os_str().as_bytes(), sb, true))
        {
            continue;
        }
        let mode = sx.stx_mode as u32;
        let t = FileType::from_raw_mode(mode);
        if t == FileType::Directory {
            if mountpoint && ent.name == "lost+found" && sx.stx_uid == 0 {
                continue;
            }
            if maxdepth == 0 {
                log::warn!("Reached max depth on \"{}\".", ctx.d(&sub));
            } else {
                let sub_dir = match rustix::fs::openat(
                    dir,
                    ent.name.as_os_str(),
                    OFlags::RDONLY
                        | OFlags::DIRECTORY
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC
                        | OFlags::NOATIME,
                    Mode::empty(),
                )
                .or_else(|_| {
                    rustix::fs::openat(
                        dir,
                        ent.name.as_os_str(),
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                }) {
                    Ok(d) => d,
                    Err(rustix::io::Errno::NOENT) => continue,
                    Err(e) => {
                        r = Err(format!(
                            "Opening directory \"{}\" failed, ignoring: {e}",
                            ctx.d(&sub)
                        ));
                        continue;
                    }
                };
                if crate::fs::is_mount_point(&sub_dir, dir, &ent.name).unwrap_or(false) {
                    continue;
                }
                if !ctx.opts.dry_run
                    && rustix::fs::flock(
                        &sub_dir,
                        rustix::fs::FlockOperation::NonBlockingLockExclusive,
                    )
                    .is_err()
                {
                    log::debug!(
                        "Couldn't acquire lock on directory \"{}\", skipping.",
                        ctx.d(&sub)
                    );
                    continue;
                }
                let q = dir_cleanup(
                    ctx,
                    &sub,
                    &sub_dir,
                    Some((times[0], times[3])),
                    c,
                    false,
                    maxdepth - 1,
                    false,
                );
                if q.is_err() {
                    r = q;
                }
            }
            if keep_this_level {
                continue;
            }
            if !needs_cleanup(times, c.cutoff, c.age_by_dir) {
                continue;
            }
            if ctx.opts.dry_run {
                log::info!("Would remove directory \"{}\"", ctx.d(&sub));
                continue;
            }
            mutating("rmdir", &sub).map_err(|e| e.to_string())?;
            match rustix::fs::unlinkat(dir, ent.name.as_os_str(), AtFlags::REMOVEDIR) {
                Ok(()) | Err(rustix::io::Errno::NOENT) | Err(rustix::io::Errno::NOTEMPTY) => {}
                Err(e) => {
                    log::warn!(
                        "Failed to remove directory \"{}\", ignoring: {e}",
                        ctx.d(&sub)
                    );
                    r = Err(format!(
                        "Failed to remove directory \"{}\": {e}",
                        ctx.d(&sub)
                    ));
                }
            }
        } else {
            if mode & 0o1000 != 0 {
                continue;
            }
            if mountpoint
                && t == FileType::RegularFile
                && sx.stx_uid == 0
                && [".journal", "aquota.user", "aquota.group"]
                    .iter()
                    .any(|n| ent.name == *n)
            {
                continue;
            }
            if t == FileType::Socket
                && ctx
                    .unix_sockets
                    .as_ref()
                    .is_none_or(|s| s.contains(&ctx.root.display_path(&sub)))
            {
                log::debug!("Skipping \"{}\": live socket.", ctx.d(&sub));
                continue;
            }
            if t == FileType::CharacterDevice || t == FileType::BlockDevice {
                continue;
            }
            if keep_this_level {
                continue;
            }
            if !needs_cleanup(times, c.cutoff, c.age_by_file) {
                continue;
            }
            if ctx.opts.dry_run {
                log::info!("Would remove \"{}\"", ctx.d(&sub));
                continue;
            }
            // A file somebody holds a BSD lock on is in use: skip it (the lock is kept until
            // the unlink is done).
            let _lock = match rustix::fs::openat(
                dir,
                ent.name.as_os_str(),
                OFlags::RDONLY
                    | OFlags::CLOEXEC
                    | OFlags::NOFOLLOW
                    | OFlags::NOATIME
                    | OFlags::NONBLOCK
                    | OFlags::NOCTTY,
                Mode::empty(),
            ) {
                Ok(fd) => {
                    if let Err(rustix::io::Errno::AGAIN) =
                        rustix::fs::flock(&fd, rustix::fs::FlockOperation::NonBlockingLockExclusive)
                    {
                        log::debug!("Couldn't acquire lock on \"{}\", skipping.", ctx.d(&sub));
                        continue;
                    }
                    Some(fd)
                }
                Err(_) => None,
            };
            mutating("unlink", &sub).map_err(|e| e.to_string())?;
            match rustix::fs::unlinkat(dir, ent.name.as_os_str(), AtFlags::empty()) {
                Ok(()) | Err(rustix::io::Errno::NOENT) => {}
                Err(e) => {
                    log::warn!("Failed to remove \"{}\", ignoring: {e}", ctx.d(&sub));
                    r = Err(format!("Failed to remove \"{}\": {e}", ctx.d(&sub)));
                }
            }
            deleted = true;
        }
    }
    if deleted && !ctx.opts.dry_run {
        if let Some((a, m)) = self_times {
            let ts = rustix::fs::Timestamps {
                last_access: rustix::fs::Timespec {
                    tv_sec: (a / 1_000_000_000) as _,
                    tv_nsec: (a % 1_000_000_000) as _,
                },
                last_modification: rustix::fs::Timespec {
                    tv_sec: (m / 1_000_000_000) as _,
                    tv_nsec: (m % 1_000_000_000) as _,
                },
            };
            let _ = rustix::fs::futimens(dir, &ts);
        }
    }
    r
}

/// `remove()`: unlink, or rmdir for a directory; a missing path is fine.
fn remove_path(ctx: &Ctx<'_>, p: &Path) -> R {
    if ctx.opts.dry_run {
        log::info!("Would remove \"{}\".", ctx.d(p));
        return Ok(());
    }
    let r = ctx.root.unlink(p).or_else(|e| {
        if is(&e, rustix::io::Errno::ISDIR) {
            ctx.root.rmdir(p)
        } else {
            Err(e)
        }
    });
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("rm {}: {}", ctx.d(p), em(&e))),
    }
}

fn remove_recursive(ctx: &Ctx<'_>, p: &Path, remove_instance: bool) -> R {
    let Some((fd, info)) = opendir_and_stat(ctx, p)? else {
        if remove_instance {
            return remove_path(ctx, p);
        }
        return Ok(());
    };
    let c = Cleanup {
        cutoff: u64::MAX,
        age_by_file: 0,
        age_by_dir: 0,
    };
    dir_cleanup(ctx, p, &fd, None, &c, info.mountpoint, MAX_DEPTH, false)?;
    if remove_instance && !ctx.opts.dry_run {
        match ctx.root.rmdir(p) {
            Ok(()) => {}
            Err(e) if is(&e, rustix::io::Errno::NOENT) || is(&e, rustix::io::Errno::NOTEMPTY) => {}
            Err(e) => return Err(format!("Failed to remove {}: {}", ctx.d(p), em(&e))),
        }
    }
    Ok(())
}

fn remove_item(ctx: &Ctx<'_>, i: &Item) -> R {
    match i.kind {
        'D' => remove_recursive(ctx, &i.path, false),
        'r' => glob_each(ctx, i, |c, _, p, _| remove_path(c, p)),
        'R' => glob_each(ctx, i, |c, _, p, _| remove_recursive(c, p, true)),
        _ => Ok(()),
    }
}

fn clean_instance(ctx: &Ctx<'_>, i: &Item, p: &Path) -> R {
    let Some(age) = i.age else { return Ok(()) };
    let (s, ns) = crate::util::now();
    let now_us = s as u64 * 1_000_000 + ns as u64 / 1000;
    if now_us < age {
        return Ok(());
    }
    let cutoff = (now_us - age) * 1000;
    let Some((fd, info)) = opendir_and_stat(ctx, p)? else {
        return Ok(());
    };
    let c = Cleanup {
        cutoff,
        age_by_file: i.age_by_file,
        age_by_dir: i.age_by_dir,
    };
    dir_cleanup(
        ctx,
        p,
        &fd,
        Some((info.atime, info.mtime)),
        &c,
        info.mountpoint,
        MAX_DEPTH,
        i.keep_first_level,
    )
}

fn clean_item(ctx: &Ctx<'_>, i: &Item) -> R {
    match i.kind {
        'd' | 'D' | 'v' | 'q' | 'Q' | 'C' => {
            if let Err(e) = clean_instance(ctx, i, &i.path) {
                log::error!("{e}");
            }
            Ok(())
        }
        'e' | 'x' | 'X' => glob_each(ctx, i, |c, i, p, _| clean_instance(c, i, p)),
        _ => Ok(()),
    }
}

fn purge_item(ctx: &Ctx<'_>, i: &Item) -> R {
    if !parse::needs_purge(i.kind) || !i.purge {
        return Ok(());
    }
    if parse::needs_glob(i.kind) {
        glob_each(ctx, i, |c, _, p, _| remove_recursive(c, p, true))
    } else {
        remove_recursive(ctx, &i.path, true)
    }
}
