//! Tree copy between two open directories (systemd's `copy_tree_at` with `COPY_REFLINK`,
//! `COPY_HARDLINKS` and `COPY_MERGE`/`COPY_MERGE_EMPTY`): regular files are reflinked
//! (`FICLONE`) or copied with `copy_file_range`, modes, owners, `user.*` xattrs and times are
//! kept, symlinks are copied as symlinks (never followed), FIFOs and device nodes recreated,
//! hardlinked files inside the copied tree stay hardlinked. Nothing is followed and nothing
//! crosses into another mount below the source.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat, Timestamps};

use super::mutating;

/// How [`copy_tree_at`] treats an existing target directory.
#[derive(Clone, Copy, Debug, Default)]
pub struct CopyOptions {
    /// Merge into existing directories, skipping existing entries (`COPY_MERGE`).
    pub merge: bool,
    /// Merge only into an existing *empty* directory (`COPY_MERGE_EMPTY`).
    pub merge_empty: bool,
    /// Owner and group to use instead of the source's.
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

struct Ctx {
    opts: CopyOptions,
    dev: u64,
    links: HashMap<(u64, u64), (OwnedFd, OsString)>,
}

fn err_exist(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::AlreadyExists
}

/// Copies `from` in directory `src` to `to` in directory `dst`. The top-level source is not
/// followed if it is a symlink. Returns the first error; `AlreadyExists` when the target
/// exists and may not be merged into.
pub fn copy_tree_at(
    src: impl AsFd,
    from: &OsStr,
    dst: impl AsFd,
    to: &OsStr,
    opts: CopyOptions,
    what: &Path,
) -> io::Result<()> {
    let st = rustix::fs::statat(&src, from, AtFlags::SYMLINK_NOFOLLOW)?;
    let mut ctx = Ctx {
        opts,
        dev: st.st_dev,
        links: HashMap::new(),
    };
    copy_one(&mut ctx, src.as_fd(), from, &st, dst.as_fd(), to, what)
}

fn owner(ctx: &Ctx, st: &Stat) -> (u32, u32) {
    (
        ctx.opts.uid.unwrap_or(st.st_uid),
        ctx.opts.gid.unwrap_or(st.st_gid),
    )
}

fn times(st: &Stat) -> Timestamps {
    Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: st.st_atime as _,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: st.st_mtime as _,
            tv_nsec: st.st_mtime_nsec as _,
        },
    }
}

/// Opens the directory `name` in `dir` for reading, never following a symlink (the kernel
/// would resolve an absolute one outside the root).
pub(super) fn open_dir_nofollow(dir: impl AsFd, name: &OsStr) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Gives the copy `fd` the owner [`owner`] chose.
fn fchown_owner(fd: impl AsFd, (uid, gid): (u32, u32)) -> rustix::io::Result<()> {
    rustix::fs::fchown(
        fd,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
    )
}

fn copy_user_xattrs(from: &OwnedFd, to: &OwnedFd) {
    let mut names = vec![0u8; 4096];
    let Ok(n) = rustix::fs::flistxattr(from, &mut names[..]) else {
        return;
    };
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if !name.starts_with(b"user.") {
            continue;
        }
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        let mut val = vec![0u8; 65536];
        if let Ok(len) = rustix::fs::fgetxattr(from, name, &mut val[..]) {
            let _ = rustix::fs::fsetxattr(to, name, &val[..len], rustix::fs::XattrFlags::empty());
        }
    }
}

fn copy_one(
    ctx: &mut Ctx,
    src: std::os::fd::BorrowedFd<'_>,
    from: &OsStr,
    st: &Stat,
    dst: std::os::fd::BorrowedFd<'_>,
    to: &OsStr,
    what: &Path,
) -> io::Result<()> {
    let ft = FileType::from_raw_mode(st.st_mode);
    let perm = Mode::from_raw_mode(st.st_mode & 0o7777);
    let (uid, gid) = owner(ctx, st);
    let chown_at = |name: &OsStr| {
        rustix::fs::chownat(
            dst,
            name,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
    };
    if ft != FileType::Directory && st.st_nlink > 1 {
        if let Some((dir, name)) = ctx.links.get(&(st.st_dev, st.st_ino)) {
            mutating("link", what)?;
            return Ok(rustix::fs::linkat(
                dir,
                name.as_os_str(),
                dst,
                to,
                AtFlags::empty(),
            )?);
        }
    }
    match ft {
        FileType::Directory => return copy_dir(ctx, src, from, st, dst, to, what),
        FileType::RegularFile => {
            let f = rustix::fs::openat(
                src,
                from,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY,
                Mode::empty(),
            )?;
            mutating("copy", what)?;
            let t = rustix::fs::openat(
                dst,
                to,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                perm,
            )?;
            if rustix::fs::ioctl_ficlone(&t, &f).is_err() {
                let mut r = std::fs::File::from(f.try_clone()?);
                let mut w = std::fs::File::from(t.try_clone()?);
                io::copy(&mut r, &mut w)?;
            }
            let mut res: io::Result<()> = Ok(());
            if let Err(e) = fchown_owner(&t, (uid, gid)) {
                res = Err(e.into());
            }
            if let Err(e) = rustix::fs::fchmod(&t, perm) {
                res = Err(e.into());
            }
            let _ = rustix::fs::futimens(&t, &times(st));
            copy_user_xattrs(&f, &t);
            res?;
        }
        FileType::Symlink => {
            let target = rustix::fs::readlinkat(src, from, Vec::new())?;
            mutating("symlink", what)?;
            rustix::fs::symlinkat(target.as_c_str(), dst, to)?;
            chown_at(to)?;
            let _ = rustix::fs::utimensat(dst, to, &times(st), AtFlags::SYMLINK_NOFOLLOW);
        }
        FileType::Fifo | FileType::CharacterDevice | FileType::BlockDevice | FileType::Socket => {
            if ft == FileType::Fifo {
                mutating("mkfifo", what)?;
                rustix::fs::mkfifoat(dst, to, perm)?;
            } else {
                mutating("mknod", what)?;
                rustix::fs::mknodat(dst, to, ft, perm, st.st_rdev)?;
            }
            chown_at(to)?;
            rustix::fs::chmodat(dst, to, perm, AtFlags::empty())?;
            let _ = rustix::fs::utimensat(dst, to, &times(st), AtFlags::SYMLINK_NOFOLLOW);
        }
        FileType::Unknown => return Err(rustix::io::Errno::OPNOTSUPP.into()),
    }
    if ft != FileType::Directory && st.st_nlink > 1 {
        let dir = rustix::io::fcntl_dupfd_cloexec(dst, 0)?;
        ctx.links
            .insert((st.st_dev, st.st_ino), (dir, to.to_os_string()));
    }
    Ok(())
}

fn copy_dir(
    ctx: &mut Ctx,
    src: std::os::fd::BorrowedFd<'_>,
    from: &OsStr,
    st: &Stat,
    dst: std::os::fd::BorrowedFd<'_>,
    to: &OsStr,
    what: &Path,
) -> io::Result<()> {
    let sfd = open_dir_nofollow(src, from)?;
    // Is the target an existing directory, and is it empty?
    let existing = match open_dir_nofollow(dst, to) {
        Ok(fd) => Some(super::read_dir_fd(&fd)?.is_empty()),
        Err(rustix::io::Errno::NOENT) => None,
        Err(e) => return Err(e.into()),
    };
    match existing {
        Some(true) if !(ctx.opts.merge || ctx.opts.merge_empty) => {
            return Err(rustix::io::Errno::EXIST.into())
        }
        Some(false) if !ctx.opts.merge => return Err(rustix::io::Errno::EXIST.into()),
        _ => {}
    }
    if existing.is_none() {
        mutating("mkdir", what)?;
        rustix::fs::mkdirat(dst, to, Mode::from_raw_mode(0o700))?;
    }
    let tfd = open_dir_nofollow(dst, to)?;
    let before = rustix::fs::fstat(&tfd)?;
    let mut first_err: Option<io::Error> = None;
    for ent in super::read_dir_fd(&sfd)? {
        let cst = match rustix::fs::statat(&sfd, ent.name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(s) => s,
            Err(rustix::io::Errno::NOENT) => continue,
            Err(e) => {
                first_err.get_or_insert(e.into());
                continue;
            }
        };
        if cst.st_dev != ctx.dev {
            continue;
        }
        let child: PathBuf = what.join(&ent.name);
        let r = copy_one(
            ctx,
            sfd.as_fd(),
            ent.name.as_os_str(),
            &cst,
            tfd.as_fd(),
            ent.name.as_os_str(),
            &child,
        );
        match r {
            Err(e) if err_exist(&e) && ctx.opts.merge => {}
            Err(e) => {
                first_err.get_or_insert(e);
            }
            Ok(()) => {}
        }
    }
    if existing.is_none() {
        if let Err(e) = fchown_owner(&tfd, owner(ctx, st)) {
            first_err.get_or_insert(e.into());
        }
        if let Err(e) = rustix::fs::fchmod(&tfd, Mode::from_raw_mode(st.st_mode & 0o7777)) {
            first_err.get_or_insert(e.into());
        }
        copy_user_xattrs(&sfd, &tfd);
        let _ = rustix::fs::futimens(&tfd, &times(st));
    } else {
        let _ = rustix::fs::futimens(&tfd, &times(&before));
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    #[test]
    fn copies_keep_links_modes_and_merge_rules() {
        let t = crate::util::test_dir("copy");
        let src = t.join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("a"), "data").unwrap();
        std::fs::hard_link(src.join("a"), src.join("sub/a-link")).unwrap();
        std::os::unix::fs::symlink("a", src.join("sym")).unwrap();
        std::fs::set_permissions(
            src.join("a"),
            std::os::unix::fs::PermissionsExt::from_mode(0o640),
        )
        .unwrap();
        std::fs::create_dir_all(t.join("dst")).unwrap();
        let open = |p: &Path| {
            rustix::fs::open(p, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap()
        };
        let (sd, dd) = (open(&t), open(&t.join("dst")));
        // Copies t/src to t/dst/out.
        let copy = |opts: CopyOptions| {
            copy_tree_at(
                &sd,
                OsStr::new("src"),
                &dd,
                OsStr::new("out"),
                opts,
                Path::new("/out"),
            )
        };
        let opts = CopyOptions {
            merge_empty: true,
            uid: Some(1000),
            ..Default::default()
        };
        copy(opts).unwrap();
        let out = t.join("dst/out");
        assert_eq!(std::fs::read_to_string(out.join("a")).unwrap(), "data");
        let (m1, m2) = (
            std::fs::metadata(out.join("a")).unwrap(),
            std::fs::metadata(out.join("sub/a-link")).unwrap(),
        );
        assert_eq!(m1.ino(), m2.ino(), "hardlink kept");
        assert_eq!((m1.mode() & 0o7777, m1.uid()), (0o640, 1000));
        assert_eq!(std::fs::read_link(out.join("sym")).unwrap(), Path::new("a"));
        // A non-empty target is not merged into without `merge`.
        let e = copy(opts).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        std::fs::remove_file(out.join("a")).unwrap();
        let merge = CopyOptions {
            merge: true,
            ..Default::default()
        };
        let r = copy(merge);
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(std::fs::read_to_string(out.join("a")).unwrap(), "data");
        let _ = std::fs::remove_dir_all(&t);
    }
}
