//! Tree copy between two open directories (systemd's `copy_tree_at` with `COPY_REFLINK`,
//! `COPY_HARDLINKS` and `COPY_MERGE`/`COPY_MERGE_EMPTY`): regular files are reflinked
//! (`FICLONE`) or copied with `copy_file_range`, modes, owners, `user.*` xattrs and times are
//! kept, symlinks are copied as symlinks (never followed), FIFOs and device nodes recreated,
//! hardlinked files inside the copied tree stay hardlinked. Nothing is followed and nothing
//! crosses into another mount below the source.
//!
//! The walk is iterative and holds a bounded number of descriptors whatever the depth: the
//! directories being copied form a stack whose deepest [`OPEN_LEVELS`] levels keep their
//! descriptors; an ancestor whose descriptors were closed is reopened through `..` from its
//! child when the walk returns to it, and must be the same inode (device and inode number) as
//! before, or the copy fails. Hardlinks are kept for files in at most [`LINK_DIRS`] target
//! directories; beyond that a further hardlinked file is copied as a file of its own.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;

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

/// How many levels of the directory stack keep their two descriptors open.
pub const OPEN_LEVELS: usize = 16;

/// Paths in messages grow up to this length (Linux's `PATH_MAX`).
const PATH_MAX: usize = 4096;

/// How many target directories the hardlink table may hold open.
pub const LINK_DIRS: usize = 256;

struct Ctx {
    opts: CopyOptions,
    dev: u64,
    /// Source `(dev, ino)` of a hardlinked file → the target directory and name of its copy.
    links: HashMap<(u64, u64), (Rc<OwnedFd>, OsString)>,
    /// Target directories the table holds (by `(dev, ino)`), each once.
    link_dirs: HashMap<(u64, u64), Rc<OwnedFd>>,
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
        link_dirs: HashMap::new(),
    };
    let step = Step {
        src: src.as_fd(),
        from,
        st: &st,
        dst: dst.as_fd(),
        to,
        what,
    };
    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
        return copy_dir(&mut ctx, step);
    }
    copy_one(&mut ctx, step, None)
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

/// One entry to copy: `from` in `src` (whose `stat` is `st`) to `to` in `dst`; `what` names
/// it in messages and fault injection.
#[derive(Clone, Copy)]
struct Step<'a> {
    src: std::os::fd::BorrowedFd<'a>,
    from: &'a OsStr,
    st: &'a Stat,
    dst: std::os::fd::BorrowedFd<'a>,
    to: &'a OsStr,
    what: &'a Path,
}

impl<'a> Step<'a> {
    #[allow(clippy::type_complexity)]
    fn parts(
        self,
    ) -> (
        BorrowedFd<'a>,
        &'a OsStr,
        &'a Stat,
        BorrowedFd<'a>,
        &'a OsStr,
        &'a Path,
    ) {
        (self.src, self.from, self.st, self.dst, self.to, self.what)
    }
}

/// Copies one non-directory entry. `dst_dir` is `dst` as a shareable descriptor, for the
/// hardlink table (the top-level entry has none and needs none: it has no sibling).
fn copy_one(ctx: &mut Ctx, step: Step<'_>, dst_dir: Option<&Rc<OwnedFd>>) -> io::Result<()> {
    let (src, from, st, dst, to, what) = step.parts();
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
                &**dir,
                name.as_os_str(),
                dst,
                to,
                AtFlags::empty(),
            )?);
        }
    }
    match ft {
        // Directories are the walk's business (copy_dir).
        FileType::Directory => return Err(rustix::io::Errno::ISDIR.into()),
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
    if st.st_nlink > 1 {
        if let Some(dir) = dst_dir {
            let dst_st = rustix::fs::fstat(dir)?;
            let key = (dst_st.st_dev, dst_st.st_ino);
            if ctx.link_dirs.contains_key(&key) || ctx.link_dirs.len() < LINK_DIRS {
                let dir = ctx.link_dirs.entry(key).or_insert_with(|| Rc::clone(dir));
                ctx.links
                    .insert((st.st_dev, st.st_ino), (Rc::clone(dir), to.to_os_string()));
            }
        }
    }
    Ok(())
}

/// One directory being copied: its two descriptors (`None` once closed to bound their number),
/// the identities to check when they are reopened, its entries and where the walk is in them.
struct Level {
    fds: Option<(OwnedFd, Rc<OwnedFd>)>,
    src_id: (u64, u64),
    dst_id: (u64, u64),
    /// The source directory's `stat` (owner, mode, times for the copy).
    st: Stat,
    /// Whether the target existed, and its `stat` then (its times are restored).
    before: Option<Stat>,
    entries: std::vec::IntoIter<super::Entry>,
    what: PathBuf,
    first_err: Option<io::Error>,
}

fn id(st: &Stat) -> (u64, u64) {
    (st.st_dev, st.st_ino)
}

/// Opens (creating it if allowed) the target directory `to` in `dst` for a source directory
/// `from` in `src`, and describes it as a [`Level`].
fn enter_dir(ctx: &Ctx, step: Step<'_>) -> io::Result<Level> {
    let (src, from, st, dst, to, what) = step.parts();
    let sfd = open_dir_nofollow(src, from)?;
    let sst = rustix::fs::fstat(&sfd)?;
    if id(&sst) != id(st) {
        // Replaced since it was listed.
        return Err(rustix::io::Errno::STALE.into());
    }
    // Is the target an existing directory, and is it empty?
    let existing = match open_dir_nofollow(dst, to) {
        Ok(fd) => {
            let mut empty = true;
            super::for_each_entry(fd.as_fd(), |_, _| empty = false)?;
            Some(empty)
        }
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
    let tst = rustix::fs::fstat(&tfd)?;
    let entries = super::read_dir_fd(&sfd)?;
    Ok(Level {
        fds: Some((sfd, Rc::new(tfd))),
        src_id: id(&sst),
        dst_id: id(&tst),
        st: *st,
        before: existing.map(|_| tst),
        entries: entries.into_iter(),
        what: what.to_path_buf(),
        first_err: None,
    })
}

/// Gives a finished directory copy its owner, mode, xattrs and times.
fn finish_dir(ctx: &Ctx, l: &mut Level) {
    let Some((sfd, tfd)) = &l.fds else { return };
    match &l.before {
        None => {
            if let Err(e) = fchown_owner(&**tfd, owner(ctx, &l.st)) {
                l.first_err.get_or_insert(e.into());
            }
            if let Err(e) = rustix::fs::fchmod(&**tfd, Mode::from_raw_mode(l.st.st_mode & 0o7777)) {
                l.first_err.get_or_insert(e.into());
            }
            copy_user_xattrs(sfd, tfd);
            let _ = rustix::fs::futimens(&**tfd, &times(&l.st));
        }
        Some(before) => {
            let _ = rustix::fs::futimens(&**tfd, &times(before));
        }
    }
}

/// Reopens `parent`'s descriptors through `..` from its child's, checking they are the same
/// directories as when the walk entered them.
fn reopen_parent(child: &Level, parent: &mut Level) -> io::Result<()> {
    if parent.fds.is_some() {
        return Ok(());
    }
    let Some((csfd, ctfd)) = &child.fds else {
        return Err(rustix::io::Errno::BADF.into());
    };
    let sfd = open_dir_nofollow(csfd, OsStr::new(".."))?;
    let tfd = open_dir_nofollow(&**ctfd, OsStr::new(".."))?;
    if id(&rustix::fs::fstat(&sfd)?) != parent.src_id
        || id(&rustix::fs::fstat(&tfd)?) != parent.dst_id
    {
        return Err(rustix::io::Errno::STALE.into());
    }
    parent.fds = Some((sfd, Rc::new(tfd)));
    Ok(())
}

/// Copies the directory `from` in `src` to `to` in `dst`, iteratively (see the module text).
fn copy_dir(ctx: &mut Ctx, step: Step<'_>) -> io::Result<()> {
    let mut stack = vec![enter_dir(ctx, step)?];
    loop {
        let Some(top) = stack.last_mut() else {
            return Ok(());
        };
        let Some(ent) = top.entries.next() else {
            // Done with this directory: finish it, return to its parent.
            let mut done = stack.pop().ok_or(rustix::io::Errno::INVAL)?;
            finish_dir(ctx, &mut done);
            let Some(parent) = stack.last_mut() else {
                return done.first_err.map_or(Ok(()), Err);
            };
            let reopened = reopen_parent(&done, parent);
            if let Some(e) = done.first_err.take() {
                if !(err_exist(&e) && ctx.opts.merge) {
                    parent.first_err.get_or_insert(e);
                }
            }
            // Without its descriptors the parent cannot go on: the copy fails.
            reopened?;
            continue;
        };
        let Some((sfd, tfd)) = &top.fds else {
            return Err(rustix::io::Errno::BADF.into());
        };
        let name = ent.name.as_os_str();
        let cst = match rustix::fs::statat(sfd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(s) => s,
            Err(rustix::io::Errno::NOENT) => continue,
            Err(e) => {
                top.first_err.get_or_insert(e.into());
                continue;
            }
        };
        if cst.st_dev != ctx.dev {
            continue;
        }
        // Messages name the entry while its path is of a usable length, then its deepest
        // ancestor that is (a deep tree must not cost the square of its depth).
        let child: PathBuf = if top.what.as_os_str().len() < PATH_MAX {
            top.what.join(name)
        } else {
            top.what.clone()
        };
        let tfd = Rc::clone(tfd);
        let step = Step {
            src: sfd.as_fd(),
            from: name,
            st: &cst,
            dst: tfd.as_fd(),
            to: name,
            what: &child,
        };
        if FileType::from_raw_mode(cst.st_mode) == FileType::Directory {
            match enter_dir(ctx, step) {
                Ok(level) => {
                    stack.push(level);
                    // Keep the descriptors of the deepest OPEN_LEVELS levels only.
                    if stack.len() > OPEN_LEVELS {
                        let k = stack.len() - 1 - OPEN_LEVELS;
                        stack[k].fds = None;
                    }
                }
                Err(e) if err_exist(&e) && ctx.opts.merge => {}
                Err(e) => {
                    if let Some(top) = stack.last_mut() {
                        top.first_err.get_or_insert(e);
                    }
                }
            }
            continue;
        }
        let r = copy_one(ctx, step, Some(&tfd));
        match r {
            Err(e) if err_exist(&e) && ctx.opts.merge => {}
            Err(e) => {
                if let Some(top) = stack.last_mut() {
                    top.first_err.get_or_insert(e);
                }
            }
            Ok(()) => {}
        }
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
