//! An iterative walk of a directory tree with a bounded number of open descriptors, for
//! operations that visit every entry below a directory (ownership repair). It never follows a
//! symlink, never crosses into another file system, and holds two descriptors whatever the
//! depth: it descends with `openat(O_NOFOLLOW|O_DIRECTORY)` and climbs back with `..`, checking
//! that `..` is the directory it came from (device and inode), so a tree moved or swapped while
//! it is walked stops the walk with an error instead of leading it elsewhere.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};

use super::{for_each_entry, mutating};

/// One directory level: its identity and the names still to visit, in reverse order.
struct Level {
    id: (u64, u64),
    names: Vec<OsString>,
    path: PathBuf,
}

fn open_dir_at(dir: BorrowedFd<'_>, name: &std::ffi::OsStr) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn ident(st: &Stat) -> (u64, u64) {
    (st.st_dev, st.st_ino)
}

fn list(fd: BorrowedFd<'_>, id: (u64, u64), path: PathBuf) -> io::Result<Level> {
    let mut names = Vec::new();
    for_each_entry(fd, |n, _| {
        names.push(std::ffi::OsStr::from_bytes(n).to_os_string())
    })?;
    names.sort();
    names.reverse();
    Ok(Level { id, names, path })
}

/// Visits every entry below the open directory `top` (shown as `shown` in paths), depth
/// first, calling `visit(parent_fd, name, path, stat)` with the entry's `lstat`. Directories on
/// `top`'s file system are descended into after their visit; other entries, symlinks and mount
/// points are not. Errors on one entry are passed to `error` and the walk goes on; an error
/// that makes the walk lose its place (a directory moved away) ends it.
pub fn walk(
    top: BorrowedFd<'_>,
    shown: &Path,
    mut visit: impl FnMut(BorrowedFd<'_>, &std::ffi::OsStr, &Path, &Stat),
    mut error: impl FnMut(&Path, io::Error),
) -> io::Result<()> {
    let top_st = rustix::fs::fstat(top)?;
    let dev = top_st.st_dev;
    let mut cur: OwnedFd = rustix::fs::openat(
        top,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut stack = vec![list(cur.as_fd(), ident(&top_st), shown.to_path_buf())?];
    loop {
        let Some(level) = stack.last_mut() else {
            return Ok(());
        };
        let Some(name) = level.names.pop() else {
            stack.pop();
            let Some(parent) = stack.last() else {
                return Ok(());
            };
            let up = open_dir_at(cur.as_fd(), std::ffi::OsStr::new(".."))?;
            let st = rustix::fs::fstat(&up)?;
            if ident(&st) != parent.id {
                return Err(io::Error::other(format!(
                    "{} was moved while it was walked",
                    parent.path.display()
                )));
            }
            cur = up;
            continue;
        };
        let path = level.path.join(&name);
        let st = match rustix::fs::statat(&cur, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(rustix::io::Errno::NOENT) => continue,
            Err(e) => {
                error(&path, e.into());
                continue;
            }
        };
        visit(cur.as_fd(), &name, &path, &st);
        if FileType::from_raw_mode(st.st_mode) != FileType::Directory || st.st_dev != dev {
            continue;
        }
        let child = match open_dir_at(cur.as_fd(), &name) {
            Ok(c) => c,
            Err(e) => {
                error(&path, e);
                continue;
            }
        };
        let cst = rustix::fs::fstat(&child)?;
        if ident(&cst) != ident(&st) {
            error(&path, io::Error::other("replaced while it was walked"));
            continue;
        }
        match list(child.as_fd(), ident(&cst), path.clone()) {
            Ok(l) => {
                stack.push(l);
                cur = child;
            }
            Err(e) => error(&path, e),
        }
    }
}

/// `fchownat(AT_SYMLINK_NOFOLLOW)` of `name` in `dir` (a symlink's own owner is changed), then
/// the set-user/group-ID bits the kernel clears on `chown` are put back on regular files.
pub fn chown_nofollow(
    dir: BorrowedFd<'_>,
    name: &std::ffi::OsStr,
    shown: &Path,
    st: &Stat,
    uid: Option<u32>,
    gid: Option<u32>,
) -> io::Result<()> {
    mutating("chown", shown)?;
    rustix::fs::chownat(
        dir,
        name,
        uid.map(rustix::fs::Uid::from_raw),
        gid.map(rustix::fs::Gid::from_raw),
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    let special = st.st_mode & 0o6000;
    if special != 0 && FileType::from_raw_mode(st.st_mode) == FileType::RegularFile {
        mutating("chmod", shown)?;
        rustix::fs::chmodat(
            dir,
            name,
            Mode::from_raw_mode(st.st_mode & 0o7777),
            AtFlags::empty(),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_tree_with_two_descriptors_and_no_symlink_following() {
        let t = crate::util::test_dir("walk");
        let top = t.join("top");
        std::fs::create_dir(&top).unwrap();
        // 3,000 levels: a walk holding one descriptor per level would use descriptor
        // numbers above 3,000 (the lowest free number is always taken).
        let mut d =
            rustix::fs::open(&top, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        for _ in 0..3000 {
            rustix::fs::mkdirat(&d, "d", Mode::from_raw_mode(0o755)).unwrap();
            d = open_dir_at(d.as_fd(), std::ffi::OsStr::new("d")).unwrap();
        }
        let leaf = rustix::fs::openat(
            &d,
            "leaf",
            OFlags::CREATE | OFlags::WRONLY,
            Mode::from_raw_mode(0o644),
        )
        .unwrap();
        drop((leaf, d));
        std::os::unix::fs::symlink("/", top.join("link")).unwrap();
        let fd = rustix::fs::open(&top, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let mut seen = 0usize;
        let mut leaf = false;
        let mut highest_fd = 0;
        walk(
            fd.as_fd(),
            Path::new("/top"),
            |dir, name, _, _| {
                use std::os::fd::AsRawFd as _;
                seen += 1;
                leaf |= name == "leaf";
                highest_fd = highest_fd.max(dir.as_raw_fd());
            },
            |p, e| panic!("{}: {e}", p.display()),
        )
        .unwrap();
        assert_eq!(seen, 3000 + 2);
        assert!(leaf);
        assert!(highest_fd < 1000, "descriptor {highest_fd} in use");
        let _ = std::fs::remove_dir_all(&t);
    }
}
