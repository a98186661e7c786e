//! An iterative walk of a directory tree with a bounded number of open descriptors, for
//! operations that visit every entry below a directory (ownership repair). It never follows a
//! symlink, never crosses into another file system, and holds two descriptors whatever the
//! depth: it descends with `openat(O_NOFOLLOW|O_DIRECTORY)` and climbs back with `..`, checking
//! that `..` is the directory it came from (device and inode), so a tree moved or swapped while
//! it is walked stops the walk with an error instead of leading it elsewhere. The descending and
//! climbing is [`super::climb`], shared with the recursive removal.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};

use super::climb::{climb, Climber, Sub};
use super::{for_each_entry, mutating};

#[cfg(test)]
fn open_dir_at(dir: BorrowedFd<'_>, name: &std::ffi::OsStr) -> io::Result<OwnedFd> {
    Ok(super::copy::open_dir_nofollow(dir, name)?)
}

/// The visiting walk as a [`Climber`]: each entry of a directory is visited with its `lstat`,
/// in name order, and its subdirectories on the same device are descended into.
struct Visitor<V, E> {
    visit: V,
    error: E,
    dev: u64,
}

impl<V, E> Climber for Visitor<V, E>
where
    V: FnMut(BorrowedFd<'_>, &std::ffi::OsStr, &Path, &Stat),
    E: FnMut(&Path, io::Error),
{
    fn enter(&mut self, dir: BorrowedFd<'_>, path: &Path) -> io::Result<Vec<Sub>> {
        let mut names = Vec::new();
        for_each_entry(dir, |n, _| {
            names.push(std::ffi::OsStr::from_bytes(n).to_os_string())
        })?;
        names.sort();
        let mut subs = Vec::new();
        for name in names {
            let p = path.join(&name);
            let st = match rustix::fs::statat(dir, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(rustix::io::Errno::NOENT) => continue,
                Err(e) => {
                    (self.error)(&p, e.into());
                    continue;
                }
            };
            (self.visit)(dir, &name, &p, &st);
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory && st.st_dev == self.dev {
                subs.push(Sub {
                    name,
                    ident: Some((st.st_dev, st.st_ino)),
                });
            }
        }
        Ok(subs)
    }

    fn leave(&mut self, _: BorrowedFd<'_>, _: &std::ffi::OsStr, _: &Path) -> io::Result<()> {
        Ok(())
    }

    fn mount_point(&mut self, _: &Path) {}

    fn error(&mut self, path: &Path, e: io::Error) {
        (self.error)(path, e);
    }
}

/// Visits every entry below the open directory `top` (shown as `shown` in paths), calling
/// `visit(parent_fd, name, path, stat)` with the entry's `lstat`: the entries of a directory
/// in name order, then its subdirectories, each depth first. Directories on `top`'s mount are
/// descended into after their visit; other entries, symlinks and mount points are not. Errors
/// on one entry are passed to `error` and the walk goes on; an error that makes the walk lose
/// its place (a directory moved away) ends it.
pub fn walk(
    top: BorrowedFd<'_>,
    shown: &Path,
    visit: impl FnMut(BorrowedFd<'_>, &std::ffi::OsStr, &Path, &Stat),
    error: impl FnMut(&Path, io::Error),
) -> io::Result<()> {
    let dev = rustix::fs::fstat(top)?.st_dev;
    let cur: OwnedFd = rustix::fs::openat(
        top,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut v = Visitor { visit, error, dev };
    climb(cur, dev, shown, &mut v)
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
    use std::os::fd::AsFd as _;

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
