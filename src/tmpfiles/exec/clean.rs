//! The remove, clean and purge phases: `r R D` removal, age-based cleaning of directories
//! (systemd's `dir_cleanup`) and `$` purging. Never follows a symlink, never crosses a mount
//! point, keeps what has its own line or is in use.

use super::*;

pub(super) struct DirInfo {
    atime: u64,
    mtime: u64,
    mountpoint: bool,
}

/// systemd's `opendir_and_stat`: `Ok(None)` when missing or not a directory. Symlinks are
/// followed inside the root.
pub(super) fn opendir_and_stat(ctx: &Ctx<'_>, p: &Path) -> R<Option<(OwnedFd, DirInfo)>> {
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
        Err(e) => {
            return Err(ctx
                .io("open directory", p, e)
                .worded(|m| format!("Failed to open directory {}: {m}", ctx.d(p))))
        }
    };
    let sx = rustix::fs::statx(
        &fd,
        "",
        AtFlags::EMPTY_PATH,
        StatxFlags::MODE | StatxFlags::INO | StatxFlags::ATIME | StatxFlags::MTIME,
    )
    .map_err(|e| ctx.io("statx", p, e))?;
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

pub(super) fn needs_cleanup(times: [u64; 4], cutoff: u64, age_by: u8) -> bool {
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

pub(super) struct Cleanup {
    cutoff: u64,
    age_by_file: u8,
    age_by_dir: u8,
}

#[allow(clippy::too_many_arguments)]
pub(super) fn dir_cleanup(
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
    let entries = crate::fs::read_dir_fd(dir).map_err(|e| ctx.io("read", p, e))?;
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
                        r = Err(ctx.io("open directory", &sub, e));
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
                ctx.would(Would::CleanDir(ctx.shown(&sub)));
                continue;
            }
            match at::rmdir(dir, &ent.name) {
                Ok(()) => {}
                Err(e)
                    if is(&e, rustix::io::Errno::NOENT) || is(&e, rustix::io::Errno::NOTEMPTY) => {}
                Err(e) => {
                    let e = ctx.io("remove directory", &sub, e);
                    log::warn!("{e}, ignoring");
                    r = Err(e);
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
                ctx.would(Would::CleanFile(ctx.shown(&sub)));
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
            match at::unlink(dir, &ent.name) {
                Ok(()) => {}
                Err(e) if is(&e, rustix::io::Errno::NOENT) => {}
                Err(e) => {
                    let e = ctx.io("remove", &sub, e);
                    log::warn!("{e}, ignoring");
                    r = Err(e);
                }
            }
            deleted = true;
        }
    }
    if deleted && !ctx.opts.dry_run {
        if let Some((a, m)) = self_times {
            let _ = at::set_times(dir, a, m);
        }
    }
    r
}

/// `remove()`: unlink, or rmdir for a directory; a missing path is fine.
pub(super) fn remove_path(ctx: &Ctx<'_>, p: &Path) -> R {
    if ctx.opts.dry_run {
        ctx.would(Would::Remove(ctx.shown(p)));
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
        Err(e) => Err(ctx
            .io("remove", p, e)
            .worded(|m| format!("rm {}: {m}", ctx.d(p)))),
    }
}

pub(super) fn remove_recursive(ctx: &Ctx<'_>, p: &Path, remove_instance: bool) -> R {
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
            Err(e) => {
                return Err(ctx
                    .io("remove", p, e)
                    .worded(|m| format!("Failed to remove {}: {m}", ctx.d(p))))
            }
        }
    }
    Ok(())
}

pub(super) fn remove_item(ctx: &Ctx<'_>, i: &Item) -> R {
    match i.kind {
        Kind::Dir {
            remove_contents: true,
        } => remove_recursive(ctx, &i.path, false),
        Kind::Remove { recursive: false } => glob_each(ctx, i, |c, _, p, _| remove_path(c, p)),
        Kind::Remove { recursive: true } => {
            glob_each(ctx, i, |c, _, p, _| remove_recursive(c, p, true))
        }
        _ => Ok(()),
    }
}

pub(super) fn clean_instance(ctx: &Ctx<'_>, i: &Item, p: &Path) -> R {
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

pub(super) fn clean_item(ctx: &Ctx<'_>, i: &Item) -> R {
    match i.kind {
        Kind::Dir { .. } | Kind::Copy { .. } => {
            if let Err(e) = clean_instance(ctx, i, &i.path) {
                log::error!("{e}");
            }
            Ok(())
        }
        Kind::EmptyDir | Kind::Ignore { .. } => {
            glob_each(ctx, i, |c, i, p, _| clean_instance(c, i, p))
        }
        _ => Ok(()),
    }
}

pub(super) fn purge_item(ctx: &Ctx<'_>, i: &Item) -> R {
    if !i.kind.purgeable() || !i.purge {
        return Ok(());
    }
    if i.kind.needs_glob() {
        glob_each(ctx, i, |c, _, p, _| remove_recursive(c, p, true))
    } else {
        remove_recursive(ctx, &i.path, true)
    }
}
