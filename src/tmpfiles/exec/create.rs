//! The create phase: `create_item` per type (systemd's `create_item`), parents made on the way
//! (`mkdir_parents`, with `=` replacing what is in the way), files, directories, links,
//! nodes and copies. Must never follow a last component systemd does not follow, nor create
//! anything through a path with `..`.

use super::*;

pub(super) fn create_item(ctx: &Ctx<'_>, i: &Item) -> R {
    match &i.kind {
        Kind::Ignore { .. } | Kind::Remove { .. } => Ok(()),
        Kind::CreateFile { truncate } => {
            mkdir_parents_item(ctx, i, Some(FileType::RegularFile))?;
            if *truncate {
                truncate_file(ctx, i)
            } else {
                create_file(ctx, i)
            }
        }
        Kind::Copy { merge } => {
            mkdir_parents_item(ctx, i, None)?;
            copy_files(ctx, i, *merge)
        }
        Kind::Write { append } => {
            glob_each(ctx, i, |c, i, p, cr| write_one_file(c, i, p, cr, *append))
        }
        Kind::Dir { .. } => {
            mkdir_parents_item(ctx, i, Some(FileType::Directory))?;
            create_directory(ctx, i)
        }
        Kind::EmptyDir => glob_each(ctx, i, empty_directory),
        Kind::Fifo { .. } => {
            mkdir_parents_item(ctx, i, Some(FileType::Fifo))?;
            create_special(ctx, i, FileType::Fifo)
        }
        Kind::Symlink {
            if_target_exists, ..
        } => {
            mkdir_parents_item(ctx, i, Some(FileType::Symlink))?;
            create_symlink(ctx, i, *if_target_exists)
        }
        Kind::Device { block, .. } => {
            if !ctx.can_mknod {
                log::debug!(
                    "We lack CAP_MKNOD, skipping creation of device node {}.",
                    ctx.d(&i.path)
                );
                return Ok(());
            }
            let t = if *block {
                FileType::BlockDevice
            } else {
                FileType::CharacterDevice
            };
            mkdir_parents_item(ctx, i, Some(t))?;
            create_special(ctx, i, t)
        }
        Kind::Adjust { recursive: false } => glob_each(ctx, i, |c, i, p, cr| {
            let (fd, st) = open_safe(c, p)?;
            fd_set_perms(c, i, fd.as_fd(), p, Some(st), cr)
        }),
        Kind::Adjust { recursive: true } => glob_recursive(ctx, i, &|c, i, fd, p, st, cr| {
            fd_set_perms(c, i, fd, p, Some(*st), cr)
        }),
        Kind::Xattr { recursive, xattrs } => adjust_each(ctx, i, *recursive, &|c, fd, p, _| {
            fd_set_xattrs(c, xattrs, fd, p)
        }),
        Kind::Acl {
            recursive,
            append,
            acl,
        } => {
            // An ACL that did not parse still opens its paths (and reports what fails).
            adjust_each(ctx, i, *recursive, &|c, fd, p, st| match acl {
                Some(acl) => fd_set_acls(c, acl, *append, fd, p, st),
                None => Ok(()),
            })
        }
        Kind::Attr {
            recursive,
            value,
            mask,
        } => adjust_each(ctx, i, *recursive, &|c, fd, p, st| {
            fd_set_attribute(c, (*value, *mask), fd, p, st)
        }),
    }
}

/// Runs `set` on every match of the item's glob (opened chase-safe), or with `recursive` on
/// every match and everything below it (never following symlinks nor crossing mounts).
fn adjust_each(
    ctx: &Ctx<'_>,
    i: &Item,
    recursive: bool,
    set: &dyn Fn(&Ctx<'_>, BorrowedFd<'_>, &Path, &Stat) -> R,
) -> R {
    if recursive {
        glob_recursive(ctx, i, &|c, _, fd, p, st, _| set(c, fd, p, st))
    } else {
        glob_each(ctx, i, |c, _, p, _| {
            let (fd, st) = open_safe(c, p)?;
            set(c, fd.as_fd(), p, &st)
        })
    }
}

pub(super) fn last_name(ctx: &Ctx<'_>, p: &Path) -> R {
    match p.file_name() {
        Some(_) => Ok(()),
        None => Err(ctx.io(
            "extract filename from path",
            p,
            io::Error::from_raw_os_error(rustix::io::Errno::INVAL.raw_os_error()),
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
            Ok(()) | Err(Wrong::Gone) => Ok(()),
            Err(Wrong::Failed(e)) => Err(e),
        }
    } else {
        if let Some(parent) = i.path.parent() {
            mkdir_parents(ctx, parent);
        }
        Ok(())
    }
}

/// systemd's `mkdir_parents_label(path, 0755)`: missing directories are created and then
/// chmod'ed to exactly 0755 (dropping a setgid bit inherited from the parent). Existing
/// components are followed (inside the root). Errors are ignored, as systemd does.
pub(super) fn mkdir_parents(ctx: &Ctx<'_>, dir: &Path) {
    // Fast paths, for a path without `..`: a directory the cache resolves (after making what
    // is missing below the deepest cached one), or one that resolves from the root; either
    // way every prefix does too, so the per-component walk below would change nothing.
    if dir.parent().is_none() {
        return;
    }
    if ctx.use_dirs() && plain(dir) && mkdir_parents_cached(ctx, dir) {
        return;
    }
    if plain(dir)
        && ctx
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

/// [`mkdir_parents`] from the deepest directory of `dir` the cache resolves: each missing one
/// is made in its (cached) parent, set to exactly 0755 and cached in turn. `false` when
/// something is not as expected (a name that exists after all, as a symlink or anything
/// else, or an error): the full walk then decides, from the root.
fn mkdir_parents_cached(ctx: &Ctx<'_>, dir: &Path) -> bool {
    let mut missing = Vec::new();
    let mut base = dir;
    let (mut fd, mut st) = loop {
        if let Some(found) = ctx.cached_dir(base) {
            break found;
        }
        match (base.components().next_back(), base.parent()) {
            (Some(Component::Normal(name)), Some(parent)) => {
                missing.push(name);
                base = parent;
            }
            _ => return false,
        }
    };
    let mut path = base.to_path_buf();
    for name in missing.into_iter().rev() {
        path.push(name);
        if at::mkdir(&*fd, name, 0o755).is_err() {
            return false;
        }
        ctx.touched(&path);
        let Ok(child) = rustix::fs::openat(
            &*fd,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) else {
            return false;
        };
        let _ = fchmod_opath(&child, 0o755, &path);
        let Ok(child_st) = rustix::fs::fstat(&child) else {
            return false;
        };
        let child = Rc::new(child);
        ctx.cache_child(&path, &child, &child_st);
        if crate::fs::unsafe_transition(&st, &child_st) {
            return false;
        }
        (fd, st) = (child, child_st);
    }
    true
}

/// Why [`rm_if_wrong_type`] did not leave a node of the right type.
pub(super) enum Wrong {
    /// Missing, or removed (systemd's -ENOENT): the caller creates it.
    Gone,
    Failed(Failure),
}

impl From<Failure> for Wrong {
    fn from(e: Failure) -> Wrong {
        Wrong::Failed(e)
    }
}

/// `rm_if_wrong_type_safe`.
pub(super) fn rm_if_wrong_type(
    ctx: &Ctx<'_>,
    dir: &OwnedFd,
    dir_st: &Stat,
    name: &OsStr,
    want: Option<FileType>,
    follow: bool,
    path: &Path,
) -> Result<(), Wrong> {
    let Some(want) = want else { return Ok(()) };
    let st = if follow {
        // Follow inside the root only.
        ctx.root.stat(path, true)
    } else {
        rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(io::Error::from)
    };
    let st = match st {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Wrong::Gone),
        Err(e) => {
            let e = ctx.io("stat", path, e);
            return Err(e
                .worded(|m| format!("Failed to stat \"{}\": {m}", ctx.d(path)))
                .into());
        }
    };
    if follow && crate::fs::unsafe_transition(dir_st, &st) {
        let parent = ctx.d(path.parent().unwrap_or(Path::new("/")));
        let e = ctx.bad("resolve", path, "unsafe path transition");
        return Err(e
            .worded(|_| {
                format!(
                    "Unsafe transition from \"{parent}\" to \"{}\".",
                    name.to_string_lossy()
                )
            })
            .into());
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
        .map_err(|e| ctx.io("stat", path, e))?;
    if ft(&lst) == FileType::Directory {
        let child = rustix::fs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ctx.io("open", path, e))?;
        if crate::fs::is_mount_point(&child, dir, name).unwrap_or(false) {
            let e = ctx.bad("remove", path, "it is a mount point");
            return Err(e
                .worded(|_| {
                    format!(
                        "Not removing  \"{}\" because it is a mount point.",
                        ctx.d(path)
                    )
                })
                .into());
        }
    }
    if ctx.opts.dry_run {
        ctx.would(Would::Replace(ctx.shown(path)));
        return Err(Wrong::Gone);
    }
    ctx.forget_dirs();
    ctx.root.remove_tree(path).map_err(|e| {
        ctx.io("remove", path, e)
            .worded(|m| format!("Failed to remove \"{}\": {m}", ctx.d(path)))
    })?;
    Err(Wrong::Gone)
}

pub(super) fn mkdir_parents_rm_if_wrong_type(
    ctx: &Ctx<'_>,
    path: &Path,
    child: Option<FileType>,
) -> Result<(), Wrong> {
    let comps: Vec<&OsStr> = path.iter().filter(|c| *c != OsStr::new("/")).collect();
    let mut cur = PathBuf::from("/");
    let mut dir = ctx
        .root
        .open_dir(&cur)
        .map_err(|e| ctx.io("open", &cur, e))?;
    let mut dir_st = rustix::fs::fstat(&dir).map_err(|e| ctx.io("fstat", &cur, e))?;
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
        if matches!(r, Err(Wrong::Gone)) {
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
            Err(Wrong::Gone) if ctx.opts.dry_run => {}
            Err(Wrong::Gone) => {
                at::mkdir(&dir, c, 0o755).map_err(|e| ctx.io("mkdir", &next, e))?;
                ctx.touched(&next);
            }
            Err(e) => return Err(e),
            Ok(()) => {}
        }
        dir = ctx.root.open_dir(&next).map_err(|e| {
            let enoent = e.kind() == io::ErrorKind::NotFound;
            let e = ctx
                .io("open", &next, e)
                .worded(|m| format!("Failed to open \"{}\": {m}", ctx.d(&next)));
            // systemd's caller ignores -ENOENT from this walk (after logging it).
            if enoent {
                log::error!("{e}");
                Wrong::Gone
            } else {
                Wrong::Failed(e)
            }
        })?;
        dir_st = rustix::fs::fstat(&dir).map_err(|e| ctx.io("fstat", &next, e))?;
        cur = next;
    }
    Ok(())
}

pub(super) fn write_data(ctx: &Ctx<'_>, i: &Item, fd: &OwnedFd, p: &Path) -> R {
    let data = i.argument.as_deref().unwrap_or(&[]);
    if data.is_empty() {
        return Ok(());
    }
    crate::fs::mutating("write", p).map_err(|e| ctx.io("write", p, e))?;
    let mut off = 0;
    while off < data.len() {
        match rustix::io::write(fd, &data[off..]) {
            Ok(n) => off += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::AGAIN) => {
                std::thread::sleep(std::time::Duration::from_millis(1));
                continue;
            }
            Err(e) => return Err(ctx.io("write file", p, e)),
        }
    }
    Ok(())
}

pub(super) fn create_file(ctx: &Ctx<'_>, i: &Item) -> R {
    last_name(ctx, &i.path)?;
    if ctx.opts.dry_run {
        ctx.would(Would::CreateFile(ctx.shown(&i.path)));
        return Ok(());
    }
    let (dir, name) = open_parent_safe(ctx, i, &i.path)?;
    let has_data = i.argument.as_deref().is_some_and(|a| !a.is_empty());
    let (created, written) = if has_data && open_child_path(&dir, &name).is_err() {
        // A new file with contents is written under a temporary name and renamed into place
        // without replacing, so a crash never leaves it empty (a rerun would keep it so).
        (new_file_with_data(ctx, i, &dir, &name)?, true)
    } else {
        crate::fs::mutating("create", &i.path).map_err(|e| ctx.io("create file", &i.path, e))?;
        (create_exclusive(&dir, &name, i.mode), false)
    };
    match created {
        Ok(fd) => {
            ctx.touched(&i.path);
            if !written {
                write_data(ctx, i, &fd, &i.path)?;
            }
            fd_set_perms(ctx, i, fd.as_fd(), &i.path, None, Creation::Normal)
        }
        Err(rustix::io::Errno::EXIST) => {
            let fd = open_child_path(&dir, &name).map_err(|e| ctx.io("reopen file", &i.path, e))?;
            let st = rustix::fs::fstat(&fd).map_err(|e| ctx.io("stat", &i.path, e))?;
            if ft(&st) != FileType::RegularFile {
                return Err(not_regular(ctx, &i.path));
            }
            fd_set_perms(ctx, i, fd.as_fd(), &i.path, Some(st), Creation::Existing)
        }
        Err(e) => Err(ctx.io("create file", &i.path, e)),
    }
}

/// `openat(dir, name, O_CREAT | O_EXCL | O_NOFOLLOW | O_WRONLY …, mode)`: a new regular file.
fn create_exclusive(dir: &OwnedFd, name: &OsStr, mode: u32) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::CREATE
            | OFlags::EXCL
            | OFlags::NOFOLLOW
            | OFlags::NONBLOCK
            | OFlags::CLOEXEC
            | OFlags::WRONLY
            | OFlags::NOCTTY,
        Mode::from_raw_mode(mode),
    )
}

/// Makes the absent `dir`/`name` (the item `i`) a new file holding `i`'s contents: created
/// and written as the crash-stable temporary, then renamed into place without replacing.
/// `EEXIST` when something appeared at the target meanwhile (it is kept, the temporary goes).
fn new_file_with_data(
    ctx: &Ctx<'_>,
    i: &Item,
    dir: &OwnedFd,
    name: &OsStr,
) -> R<rustix::io::Result<OwnedFd>> {
    let (tmp, shown) = fresh_temp(ctx, dir, name, &i.path)?;
    crate::fs::mutating("create", &i.path).map_err(|e| ctx.io("create file", &i.path, e))?;
    let fd = match create_exclusive(dir, &tmp, i.mode) {
        Ok(fd) => fd,
        Err(e) => return Ok(Err(e)),
    };
    let drop_tmp =
        || crate::fs::remove_tree_at(dir, &tmp, &shown).map_err(|e| ctx.io("remove", &shown, e));
    if let Err(e) = write_data(ctx, i, &fd, &i.path) {
        drop_tmp()?;
        return Err(e);
    }
    match at::rename_noreplace(dir, &tmp, dir, name) {
        Ok(()) => Ok(Ok(fd)),
        Err(e) => {
            drop_tmp()?;
            if is(&e, rustix::io::Errno::EXIST) {
                Ok(Err(rustix::io::Errno::EXIST))
            } else {
                Err(ctx.io("create file", &i.path, e))
            }
        }
    }
}

fn not_regular(ctx: &Ctx<'_>, p: &Path) -> Failure {
    ctx.bad("create file", p, "exists and is not a regular file")
        .worded(|_| format!("{} exists and is not a regular file.", ctx.d(p)))
}

pub(super) fn truncate_file(ctx: &Ctx<'_>, i: &Item) -> R {
    last_name(ctx, &i.path)?;
    let (dir, name) = open_parent_safe(ctx, i, &i.path)?;
    if ctx.opts.dry_run {
        ctx.would(Would::Truncate(ctx.shown(&i.path)));
        return Ok(());
    }
    let flags =
        OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::WRONLY | OFlags::NOCTTY;
    let mut creation = Creation::Existing;
    crate::fs::mutating("truncate", &i.path).map_err(|e| ctx.io("truncate", &i.path, e))?;
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
    .map_err(|e| ctx.io("open/create file", &i.path, e))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| ctx.io("stat", &i.path, e))?;
    if ft(&st) != FileType::RegularFile {
        return Err(not_regular(ctx, &i.path));
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
        at::truncate(&fd, 0).map_err(|e| ctx.io("truncate file", &i.path, e))?;
        known = None;
    }
    if i.argument.is_some() {
        write_data(ctx, i, &fd, &i.path)?;
    }
    fd_set_perms(ctx, i, fd.as_fd(), &i.path, known, creation)
}

pub(super) fn write_one_file(
    ctx: &Ctx<'_>,
    i: &Item,
    p: &Path,
    creation: Creation,
    append: bool,
) -> R {
    last_name(ctx, p)?;
    let (_dir, _name) = open_parent_safe(ctx, i, p)?;
    let mut flags = OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::WRONLY | OFlags::NOCTTY;
    if append {
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
            return Err(ctx
                .io("open file", p, e)
                .worded(|m| format!("Failed to open file \"{}\": {m}", ctx.d(p))));
        }
    };
    if i.argument.as_deref().is_some_and(|a| !a.is_empty()) {
        let st = rustix::fs::fstat(&fd).map_err(|e| ctx.io("fstat", p, e))?;
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
        ctx.would(Would::Write(ctx.shown(p)));
    } else {
        write_data(ctx, i, &fd, p)?;
        if i.argument.as_deref().is_some_and(|a| !a.is_empty()) {
            ctx.touched(p);
        }
    }
    fd_set_perms(ctx, i, fd.as_fd(), p, None, creation)
}

pub(super) fn copy_files(ctx: &Ctx<'_>, i: &Item, merge: bool) -> R {
    let src = PathBuf::from(OsStr::from_bytes(i.argument.as_deref().unwrap_or(b"/")));
    if ctx.opts.dry_run {
        ctx.would(Would::Copy {
            from: ctx.shown(&src),
            to: ctx.shown(&i.path),
        });
        return Ok(());
    }
    last_name(ctx, &i.path)?;
    let (dfd, name) = open_parent_safe(ctx, i, &i.path)?;
    // A merge copies owners and modes into existing directories.
    ctx.forget_dirs();
    let opts = CopyOptions {
        merge,
        merge_empty: !merge,
        uid: i.uid,
        gid: i.gid,
    };
    let copied = if open_child_path(&dfd, &name).is_ok() {
        // An existing target is merged into in place (or skipped), as systemd does.
        ctx.root
            .parent(&src)
            .and_then(|(sdir, sname)| copy_tree_at(&sdir, &sname, &dfd, &name, opts, &i.path))
    } else {
        copy_into_place(ctx, &src, &dfd, &name, &i.path, opts)?
    };
    let fd = match open_child_path(&dfd, &name) {
        Ok(fd) => fd,
        Err(e) => {
            return Err(match copied {
                Err(ce) => ctx
                    .io("copy files to", &i.path, ce)
                    .worded(|m| format!("Failed to copy files to {}: {m}", ctx.d(&i.path))),
                Ok(()) => ctx.io("openat", &i.path, e),
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
    let st = rustix::fs::fstat(&fd).map_err(|e| ctx.io("fstat", &i.path, e))?;
    let a = ctx.root.stat(&src, true).map_err(|e| {
        ctx.io("stat", &src, e)
            .worded(|m| format!("Failed to stat({}): {m}", ctx.d(&src)))
    })?;
    if ft(&st) != ft(&a) {
        log::debug!(
            "Can't copy to {}, file exists already and is of different type",
            ctx.d(&i.path)
        );
        return Ok(());
    }
    fd_set_perms(ctx, i, fd.as_fd(), &i.path, Some(st), Creation::Invalid)
}

/// Copies `src` to the absent `dfd`/`name` (the item path `p`) through a temporary sibling
/// renamed into place without replacing, so the target is either absent or a whole copy
/// whenever the run stops; a rerun removes a temporary copy a crash left behind. A copy that
/// fails on its own (not a crash) is still put in place, as systemd leaves its partial copy.
fn copy_into_place(
    ctx: &Ctx<'_>,
    src: &Path,
    dfd: &OwnedFd,
    name: &OsStr,
    p: &Path,
    opts: CopyOptions,
) -> R<io::Result<()>> {
    let (tmp, shown) = fresh_temp(ctx, dfd, name, p)?;
    let copied = ctx
        .root
        .parent(src)
        .and_then(|(sdir, sname)| copy_tree_at(&sdir, &sname, dfd, &tmp, opts, p));
    if open_child_path(dfd, &tmp).is_err() {
        return Ok(copied);
    }
    if let Err(e) = at::rename_noreplace(dfd, &tmp, dfd, name) {
        // Something appeared at the target meanwhile: it stays, the copy goes.
        crate::fs::remove_tree_at(dfd, &tmp, &shown).map_err(|re| ctx.io("remove", &shown, re))?;
        return Ok(Err(e));
    }
    Ok(copied)
}

pub(super) fn create_directory(ctx: &Ctx<'_>, i: &Item) -> R {
    if ctx.opts.dry_run {
        ctx.would(Would::CreateDir(ctx.shown(&i.path)));
        return Ok(());
    }
    last_name(ctx, &i.path)?;
    let (dir, name) = open_parent_safe(ctx, i, &i.path)?;
    let r = at::mkdir(&*dir, &name, i.mode);
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
                Err(re) => ctx.io("create directory or subvolume", &i.path, re),
                Ok(()) => ctx.io("open directory/subvolume we just created", &i.path, e),
            })
        }
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| ctx.io("fstat", &i.path, e))?;
    let fd = Rc::new(fd);
    ctx.cache_child(&i.path, &fd, &st);
    fd_set_perms(ctx, i, fd.as_fd(), &i.path, Some(st), creation)
}

pub(super) fn empty_directory(ctx: &Ctx<'_>, i: &Item, p: &Path, creation: Creation) -> R {
    let (fd, st) = match ctx.root.chase_safe(p, false) {
        Ok(x) => x,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) if is_unsafe_transition(&e) => return Err(unsafe_path(ctx, p, "")),
        Err(e) => return Err(ctx.io("open directory", p, e)),
    };
    if ft(&st) != FileType::Directory {
        log::warn!("'{}' already exists and is not a directory.", ctx.d(p));
        return Ok(());
    }
    fd_set_perms(ctx, i, fd.as_fd(), p, Some(st), creation)
}

pub(super) fn make_node(dir: &OwnedFd, name: &OsStr, t: FileType, i: &Item) -> io::Result<()> {
    let dev = match t {
        FileType::Fifo => (0, 0),
        _ => i.kind.device().unwrap_or((0, 0)),
    };
    at::mknod(dir, name, t, i.mode, dev)
}

pub(super) fn rm_rf_child(ctx: &Ctx<'_>, p: &Path) -> R {
    ctx.forget_dirs();
    ctx.root.remove_tree(p).map(|_| ()).map_err(|e| {
        ctx.io("remove", p, e)
            .worded(|m| format!("rm -rf {} failed: {m}", ctx.d(p)))
    })
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
    what: &'static str,
) -> R<(OwnedFd, Stat)> {
    let fd = open_child_path(dir, name).map_err(|e| ctx.io(what, p, e))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| ctx.io("fstat", p, e))?;
    Ok((fd, st))
}

/// The crash-stable temporary sibling of `dir`/`name` (the item path `p`), its in-root path for
/// messages, with whatever an aborted earlier run left under that name removed (never
/// following a symlink, never crossing a mount).
fn fresh_temp(ctx: &Ctx<'_>, dir: &OwnedFd, name: &OsStr, p: &Path) -> R<(OsString, PathBuf)> {
    let tmp = crate::fs::stable_temp_name(name);
    let shown = p.with_file_name(&tmp);
    crate::fs::remove_tree_at(dir, &tmp, &shown).map_err(|e| {
        ctx.io("remove", &shown, e)
            .worded(|m| format!("rm -rf {} failed: {m}", ctx.d(&shown)))
    })?;
    Ok((tmp, shown))
}

/// Replaces `dir`/`name` (the item path `p`) by a node that `make` creates: atomically, as a
/// temporary name renamed over the old one; when a directory is in the way it is removed
/// (recursively) and the node made in its place. The temporary name is always the same, so a
/// rerun after a crash between making and renaming removes the stale one. The outer error is
/// a failed removal, the inner one the failed creation (for the caller's own message).
pub(super) fn replace_node(
    ctx: &Ctx<'_>,
    dir: &OwnedFd,
    name: &OsStr,
    p: &Path,
    make: impl Fn(&OsStr) -> io::Result<()>,
) -> R<io::Result<()>> {
    ctx.forget_dirs();
    let (tmp, _) = fresh_temp(ctx, dir, name, p)?;
    let mut res = make(tmp.as_os_str());
    if res.is_ok() {
        res = at::rename(dir, &tmp, dir, name);
        if res.is_err() {
            at::discard(dir, &tmp);
        }
    }
    let in_way = [
        rustix::io::Errno::ISDIR,
        rustix::io::Errno::EXIST,
        rustix::io::Errno::NOTEMPTY,
    ];
    if matches!(&res, Err(e) if in_way.iter().any(|x| is(e, *x))) {
        rm_rf_child(ctx, p)?;
        res = make(name);
    }
    Ok(res)
}

/// A refusal a device node creation tolerates (no `CAP_MKNOD` in a user namespace).
fn denied(e: &io::Error) -> bool {
    is(e, rustix::io::Errno::PERM) || is(e, rustix::io::Errno::ACCESS)
}

/// `p` (FIFO) and `c`/`b` (device nodes).
pub(super) fn create_special(ctx: &Ctx<'_>, i: &Item, t: FileType) -> R {
    last_name(ctx, &i.path)?;
    let (what, create_what, opened_what) = if t == FileType::Fifo {
        ("FIFO", "create FIFO", "open FIFO we just created")
    } else {
        (
            "device node",
            "create device node",
            "open device node we just created",
        )
    };
    if ctx.opts.dry_run {
        ctx.would(Would::CreateNode {
            what,
            path: ctx.shown(&i.path),
        });
        return Ok(());
    }
    let (dir, name) = open_parent_safe(ctx, i, &i.path)?;
    let r = make_node(&dir, &name, t, i);
    let mut creation = creation_after(ctx, &r, &i.path);
    let mut fd = match open_child_path(&dir, &name) {
        Ok(fd) => fd,
        Err(e) => {
            return match r {
                Err(re) if t != FileType::Fifo && denied(&re) => Ok(()),
                Err(re) => Err(ctx.io(create_what, &i.path, re)),
                Ok(()) => Err(ctx.io(opened_what, &i.path, e)),
            };
        }
    };
    let mut st = rustix::fs::fstat(&fd).map_err(|e| ctx.io("fstat", &i.path, e))?;
    if ft(&st) != t {
        if !i.kind.force() {
            log::warn!("\"{}\" already exists and is not a {what}.", ctx.d(&i.path));
            return Ok(());
        }
        // Atomic replacement: a temporary node renamed over the old one; a directory in the
        // way is removed first.
        let res = replace_node(ctx, &dir, &name, &i.path, |n| make_node(&dir, n, t, i))?;
        if let Err(e) = res {
            if t != FileType::Fifo && denied(&e) {
                return Ok(());
            }
            return Err(ctx.io(create_what, &i.path, e));
        }
        (fd, st) = reopen_created(ctx, &dir, &name, &i.path, opened_what)?;
        if ft(&st) != t {
            return Err(ctx
                .bad(opened_what, &i.path, "not of that type, refusing")
                .worded(|_| format!("{what} we just created is not a {what}, refusing.")));
        }
        creation = Creation::Force;
        ctx.touched(&i.path);
    }
    fd_set_perms(ctx, i, fd.as_fd(), &i.path, Some(st), creation)
}

pub(super) fn create_symlink(ctx: &Ctx<'_>, i: &Item, if_target_exists: bool) -> R {
    let target = PathBuf::from(OsStr::from_bytes(i.argument.as_deref().unwrap_or(b"")));
    if if_target_exists {
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
                return Err(ctx
                    .io("check if symlink source path exists", &target, e)
                    .worded(|m| {
                        format!(
                            "Failed to check if symlink source path '{}' exists: {m}",
                            ctx.d(&target)
                        )
                    }));
            }
        }
    }
    last_name(ctx, &i.path)?;
    if ctx.opts.dry_run {
        ctx.would(Would::Symlink {
            path: ctx.shown(&i.path),
            target: target.clone(),
        });
        return Ok(());
    }
    let (dir, name) = open_parent_safe(ctx, i, &i.path)?;
    let r = at::symlink(&target, &*dir, &name);
    let mut creation = creation_after(ctx, &r, &i.path);
    let mut fd = match open_child_path(&dir, &name) {
        Ok(fd) => fd,
        Err(e) => {
            return Err(match r {
                Err(re) => ctx.io("create symlink", &i.path, re),
                Ok(()) => ctx.io("open symlink we just created", &i.path, e),
            })
        }
    };
    let mut st = rustix::fs::fstat(&fd).map_err(|e| ctx.io("fstat", &i.path, e))?;
    let good = ft(&st) == FileType::Symlink
        && rustix::fs::readlinkat(&dir, name.as_os_str(), Vec::new())
            .map(|t| t.as_bytes() == target.as_os_str().as_bytes())
            .unwrap_or(false);
    if !good {
        if !i.kind.force() {
            log::debug!(
                "\"{}\" is not a symlink or does not point to the correct path.",
                ctx.d(&i.path)
            );
            return Ok(());
        }
        let res = replace_node(ctx, &dir, &name, &i.path, |n| {
            at::symlink(&target, &*dir, n)
        })?;
        if let Err(e) = res {
            return Err(ctx.io("create symlink", &i.path, e));
        }
        (fd, st) = reopen_created(ctx, &dir, &name, &i.path, "open symlink we just created")?;
        if ft(&st) != FileType::Symlink {
            return Err(ctx
                .bad(
                    "open symlink we just created",
                    &i.path,
                    "not a symlink, refusing",
                )
                .worded(|_| "Symlink we just created is not a symlink, refusing.".into()));
        }
        creation = Creation::Force;
        ctx.touched(&i.path);
    }
    fd_set_perms(ctx, i, fd.as_fd(), &i.path, Some(st), creation)
}
