//! Adjusting existing inodes: mode and owner (`fd_set_perms`), xattrs, ACLs, file attributes,
//! and the guards every adjustment passes (systemd's hardlink rule, pristine's rules for
//! hard links and for links into `/usr`). Works on descriptors already opened safely; must
//! never resolve a path itself.

use super::*;

const PROTECTED_HARDLINKS_OFF: &str =
    "a hard link, while the fs.protected_hardlinks sysctl is turned off";

fn fchmod_failed(ctx: &Ctx<'_>, p: &Path, e: io::Error) -> Failure {
    ctx.io("fchmod", p, e)
        .worded(|m| format!("fchmod() of {} failed: {m}", ctx.d(p)))
}

pub(super) fn hardlink_vulnerable(ctx: &Ctx<'_>, st: &Stat) -> bool {
    ft(st) != FileType::Directory && st.st_nlink > 1 && !ctx.protected_hardlinks
}

/// pristine's rule beyond systemd's (docs/tmpfiles.md): a `w` line whose path lies outside
/// `/usr` never writes (nor chowns, nor chmods) a file that its path reaches in `/usr` through
/// a symlink. The vendor tree is what `/etc` and `/var` are rebuilt from; a link in `/var`
/// (made by an `L` line or by anyone) must not turn a `w+ /var/…/*` into an edit of it.
/// systemd-tmpfiles 257 under `--root` resolves such an absolute link on the host instead
/// (finding nothing, or worse); at boot it would write through it.
pub(super) fn leads_into_vendor_tree(ctx: &Ctx<'_>, fd: &OwnedFd, p: &Path) -> R<bool> {
    let usr = Path::new("/usr");
    if p.starts_with(usr) {
        return Ok(false);
    }
    ctx.root.lies_below(fd, usr).map_err(|e| {
        ctx.io("check where this leads", p, e)
            .worded(|m| format!("Failed to check where \"{}\" leads: {m}", ctx.d(p)))
    })
}

/// pristine's rule beyond systemd's (docs/tmpfiles.md): an existing regular file with more
/// than one hard link is never changed (content, mode, owner, ACLs, xattrs), whatever
/// `fs.protected_hardlinks` says. Any user able to write in a directory a line names could
/// have linked a file from elsewhere there (`/etc/shadow` from `/var/tmp`); pristine's own
/// files are created with one link.
pub(super) fn refuse_hardlinked(ctx: &Ctx<'_>, st: &Stat, p: &Path, creation: Creation) -> R {
    if ft(st) == FileType::RegularFile && st.st_nlink > 1 && creation == Creation::Existing {
        let why = format!("an existing regular file with {} hard links", st.st_nlink);
        return Err(ctx.bad("change", p, why).worded(|_| format!(
            "Refusing to change {}: an existing regular file with {} hard links, which could be a link to a file elsewhere.",
            ctx.d(p),
            st.st_nlink
        )));
    }
    Ok(())
}

pub(super) fn mask_perms(mode: u32, current: u32) -> u32 {
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

pub(super) fn fd_set_perms(
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
        None => rustix::fs::fstat(fd).map_err(|e| ctx.io("fstat", p, e))?,
    };
    if hardlink_vulnerable(ctx, &st) {
        return Err(ctx.bad("set permissions on", p, PROTECTED_HARDLINKS_OFF).worded(|_| format!(
            "Refusing to set permissions on hardlinked file {} while the fs.protected_hardlinks sysctl is turned off.",
            ctx.d(p)
        )));
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
            ctx.would(Would::Chown {
                path: ctx.shown(p),
                uid: new_uid,
                gid: new_gid,
            });
        }
        if (do_chmod || do_chown) && !is_link {
            ctx.would(Would::Chmod {
                path: ctx.shown(p),
                mode: new_mode,
            });
        }
        return Ok(());
    }
    if do_chmod && do_chown && !is_link {
        let m = new_mode & st.st_mode;
        if (m ^ st.st_mode) & 0o7777 != 0 {
            fchmod_opath(fd, m & 0o7777, p).map_err(|e| fchmod_failed(ctx, p, e))?;
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
        .map_err(|e| {
            ctx.io("fchownat", p, e)
                .worded(|m| format!("fchownat() of {} failed: {m}", ctx.d(p)))
        })?;
    }
    if (do_chmod || do_chown) && !is_link {
        fchmod_opath(fd, new_mode, p).map_err(|e| fchmod_failed(ctx, p, e))?;
    }
    if do_chmod || do_chown {
        ctx.touched(p);
    }
    Ok(())
}

pub(super) fn fd_set_xattrs(
    ctx: &Ctx<'_>,
    xattrs: &[(Vec<u8>, Vec<u8>)],
    fd: BorrowedFd<'_>,
    p: &Path,
) -> R {
    if !xattrs.is_empty() {
        let st = rustix::fs::fstat(fd).map_err(|e| ctx.io("fstat", p, e))?;
        refuse_hardlinked(ctx, &st, p, Creation::Existing)?;
    }
    for (name, value) in xattrs {
        if ctx.opts.dry_run {
            ctx.would(Would::Xattr {
                path: ctx.shown(p),
                name: String::from_utf8_lossy(name).into_owned(),
            });
            continue;
        }
        at::set_xattr_opath(fd, OsStr::from_bytes(name), value)
            .map_err(|e| ctx.io("set extended attribute on", p, e))?;
    }
    Ok(())
}

pub(super) fn get_acl(fd: BorrowedFd<'_>, name: &str, st: &Stat) -> io::Result<Vec<acl::Entry>> {
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

pub(super) fn path_set_acl(
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
        ctx.would(Would::Acl(ctx.shown(p)));
        return Ok(());
    }
    at::set_xattr_opath(fd, OsStr::new(xattr), &acl::encode(&dup))
}

pub(super) fn fd_set_acls(
    ctx: &Ctx<'_>,
    a: &acl::Acl,
    append: bool,
    fd: BorrowedFd<'_>,
    p: &Path,
    st: &Stat,
) -> R {
    if hardlink_vulnerable(ctx, st) {
        return Err(ctx.bad("set ACLs on", p, PROTECTED_HARDLINKS_OFF).worded(|_| format!(
            "Refusing to set ACLs on hardlinked file {} while the fs.protected_hardlinks sysctl is turned off.",
            ctx.d(p)
        )));
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
                ctx.io("parse conditionalized execute bit for", p, e)
                    .worded(|m| {
                        format!(
                            "Failed to parse conditionalized execute bit for \"{}\": {m}",
                            ctx.d(p)
                        )
                    })
            })?;
            old.iter()
                .filter(|e| e.tag != acl::MASK)
                .filter(|e| append || !matches!(e.tag, acl::USER | acl::GROUP))
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
        if !append {
            acl::calc_mask_if_needed(&mut parsed);
        }
        r = path_set_acl(ctx, fd, p, st, acl::ACCESS_XATTR, &parsed, append);
    } else if let Some(access) = &a.access {
        r = path_set_acl(ctx, fd, p, st, acl::ACCESS_XATTR, access, append);
    }
    if r.is_ok() {
        if let Some(def) = &a.default {
            if ft(st) == FileType::Directory {
                r = path_set_acl(ctx, fd, p, st, acl::DEFAULT_XATTR, def, append);
            }
        }
    }
    match r {
        Ok(()) => Ok(()),
        Err(e) if is(&e, rustix::io::Errno::OPNOTSUPP) => {
            log::debug!("ACLs not supported by file system at {}", ctx.d(p));
            Ok(())
        }
        Err(e) => Err(ctx
            .io("set ACL on", p, e)
            .worded(|m| format!("ACL operation on \"{}\" failed: {m}", ctx.d(p)))),
    }
}

pub(super) fn fd_set_attribute(
    ctx: &Ctx<'_>,
    (value, mask): (u32, u32),
    fd: BorrowedFd<'_>,
    p: &Path,
    st: &Stat,
) -> R {
    if mask == 0 {
        return Ok(());
    }
    let t = ft(st);
    if t != FileType::RegularFile && t != FileType::Directory {
        return Err(ctx
            .bad("set file flags on", p, "only supported on regular files and directories")
            .worded(|_| format!(
                "Setting file flags is only supported on regular files and directories, cannot set on '{}'.",
                ctx.d(p)
            )));
    }
    let mut f = value & mask;
    if t != FileType::Directory {
        f &= !0x10000;
    }
    if ctx.opts.dry_run {
        ctx.would(Would::Attr {
            path: ctx.shown(p),
            flags: f,
        });
        return Ok(());
    }
    let rfd = reopen(fd, OFlags::RDONLY | OFlags::NOATIME).map_err(|e| ctx.io("reopen", p, e))?;
    let old = match rustix::fs::ioctl_getflags(&rfd) {
        Ok(o) => o.bits(),
        Err(e) => {
            log::debug!("Cannot set file attributes for '{}': {e}", ctx.d(p));
            return Ok(());
        }
    };
    let new = (old & !mask) | (f & mask);
    if new != old {
        if let Err(e) = at::set_flags(&rfd, new) {
            // Bit by bit, as systemd's CHATTR_FALLBACK_BITWISE; failures only warn.
            log::debug!(
                "Setting all attributes on '{}' failed ({e}), trying one by one",
                ctx.d(p)
            );
            let mut cur = old;
            for bit in (0..32).map(|b| 1u32 << b).filter(|b| mask & b != 0) {
                let want = (cur & !bit) | (f & bit);
                if want != cur && at::set_flags(&rfd, want).is_ok() {
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
