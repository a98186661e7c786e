//! The create phase: `create_item` per type (systemd's `create_item`), parents made on the way
//! (`mkdir_parents`, with `=` replacing what is in the way), files, directories, links,
//! nodes and copies. Must never follow a last component systemd does not follow, nor create
//! anything through a path with `..`.

// TEMPORARY (issue #11): raw mutators still here until tmpfiles moves to crate::fs::at; the
// integrator removes this allow after merging that work.
#![allow(clippy::disallowed_methods)]

use super::*;

pub(super) fn create_item(ctx: &Ctx<'_>, i: &Item) -> R {
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

pub(super) fn last_name(ctx: &Ctx<'_>, p: &Path) -> Result<(), String> {
    match p.file_name() {
        Some(_) => Ok(()),
        None => Err(format!(
            "Failed to extract filename from path '{}': Invalid argument",
            ctx.d(p)
        )),
    }
}

pub(super) fn mkdir_parents_item(ctx: &Ctx<'_>, i: &Item, child: Option<FileType>) -> R {
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
pub(super) fn mkdir_parents(ctx: &Ctx<'_>, dir: &Path) {
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
pub(super) fn rm_if_wrong_type(
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

pub(super) fn mkdir_parents_rm_if_wrong_type(
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

pub(super) fn write_data(ctx: &Ctx<'_>, i: &Item, fd: &OwnedFd, p: &Path) -> R {
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

pub(super) fn create_file(ctx: &Ctx<'_>, i: &Item) -> R {
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

pub(super) fn truncate_file(ctx: &Ctx<'_>, i: &Item) -> R {
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

pub(super) fn write_one_file(ctx: &Ctx<'_>, i: &Item, p: &Path, creation: Creation) -> R {
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

pub(super) fn copy_files(ctx: &Ctx<'_>, i: &Item) -> R {
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

pub(super) fn create_directory(ctx: &Ctx<'_>, i: &Item) -> R {
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

pub(super) fn empty_directory(ctx: &Ctx<'_>, i: &Item, p: &Path, creation: Creation) -> R {
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

pub(super) fn make_node(
    dir: &OwnedFd,
    name: &OsStr,
    t: FileType,
    i: &Item,
) -> rustix::io::Result<()> {
    let mode = Mode::from_raw_mode(i.mode);
    match t {
        FileType::Fifo => rustix::fs::mkfifoat(dir, name, mode),
        _ => {
            let (ma, mi) = i.major_minor.unwrap_or((0, 0));
            rustix::fs::mknodat(dir, name, t, mode, rustix::fs::makedev(ma, mi))
        }
    }
}

pub(super) fn rm_rf_child(ctx: &Ctx<'_>, p: &Path) -> R {
    ctx.forget_dirs();
    ctx.root
        .remove_tree(p)
        .map(|_| ())
        .map_err(|e| format!("rm -rf {} failed: {}", ctx.d(p), em(&e)))
}

/// The [`Creation`] of an item whose create call returned `created`: a new node counts as
/// changed (`Normal`), a failed create means the node was already there (`Existing`).
pub(super) fn creation_after<T, E>(ctx: &Ctx<'_>, created: &Result<T, E>, p: &Path) -> Creation {
    if created.is_ok() {
        ctx.touched(p);
        Creation::Normal
    } else {
        Creation::Existing
    }
}

/// An `O_PATH` handle on `dir`/`name` itself (a symlink is not followed).
pub(super) fn open_child_path(dir: &OwnedFd, name: &OsStr) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::PATH,
        Mode::empty(),
    )
}

/// Reopens and stats the node of `p` (`dir`/`name`) that a forced replacement just made;
/// `what` names the kind of node in the error message.
pub(super) fn reopen_created(
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
pub(super) fn replace_node(
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
pub(super) fn create_special(ctx: &Ctx<'_>, i: &Item, t: FileType) -> R {
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

pub(super) fn create_symlink(ctx: &Ctx<'_>, i: &Item) -> R {
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
