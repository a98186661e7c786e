//! The one descend-and-climb walker under [`super::walk::walk`] (visit every entry) and the
//! recursive removal ([`super::Root::remove_tree`]).
//!
//! Iterative, with two descriptors open whatever the depth: it descends by
//! `openat(name, O_NOFOLLOW|O_DIRECTORY)` and climbs back by `..`, checking that `..` is the
//! directory it came from (device and inode), so a tree moved or swapped meanwhile stops the
//! walk with an error instead of leading it elsewhere. It never follows a symlink and never
//! enters another mount (another device, or another mount id on the same device: a bind
//! mount). What happens in each directory is the [`Climber`]'s business.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

use super::copy::open_dir_nofollow;
use super::is_mount_point;

/// A subdirectory to descend into: its name and, when the climber saw it with `lstat`, the
/// (device, inode) it must still have once opened.
pub(super) struct Sub {
    pub name: OsString,
    pub ident: Option<(u64, u64)>,
}

/// What a walk does in each directory.
pub(super) trait Climber {
    /// `dir` (at `path`) was just entered: act on its entries and return the subdirectories to
    /// descend into, in the order they are to be visited.
    fn enter(&mut self, dir: BorrowedFd<'_>, path: &Path) -> io::Result<Vec<Sub>>;
    /// Everything below `name` (in `parent`, at `path`) was done; the walk is back in `parent`.
    fn leave(&mut self, parent: BorrowedFd<'_>, name: &OsStr, path: &Path) -> io::Result<()>;
    /// A subdirectory that is a mount point: not entered.
    fn mount_point(&mut self, path: &Path);
    /// An error on one entry; the walk goes on.
    fn error(&mut self, path: &Path, e: io::Error);
}

/// One directory on the way down: its name in its parent, its parent's identity (checked when
/// climbing back through `..`) and the parent's subdirectories still to do, reversed.
struct Level {
    name: OsString,
    parent: (u64, u64),
    pending: Vec<Sub>,
}

fn ident(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    let st = rustix::fs::fstat(fd)?;
    Ok((st.st_dev, st.st_ino))
}

fn path_of(top: &Path, stack: &[Level]) -> PathBuf {
    let mut p = top.to_path_buf();
    p.extend(stack.iter().map(|l| l.name.as_os_str()));
    p
}

fn reversed(mut v: Vec<Sub>) -> Vec<Sub> {
    v.reverse();
    v
}

/// Walks the tree below the open directory `top` (shown as `shown`) on the device `dev`.
/// Errors that lose the walk's place (`..` is not where it came from) end it.
pub(super) fn climb(top: OwnedFd, dev: u64, shown: &Path, c: &mut impl Climber) -> io::Result<()> {
    let mut stack: Vec<Level> = Vec::new();
    let mut cur = top;
    let mut pending = reversed(c.enter(cur.as_fd(), shown)?);
    loop {
        if let Some(sub) = pending.pop() {
            let path = path_of(shown, &stack).join(&sub.name);
            let child = match open_dir_nofollow(&cur, sub.name.as_os_str()) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::NOENT) => continue,
                Err(e) => {
                    c.error(&path, e.into());
                    continue;
                }
            };
            let id = ident(child.as_fd())?;
            if sub.ident.is_some_and(|want| want != id) {
                c.error(&path, io::Error::other("replaced while it was walked"));
                continue;
            }
            if id.0 != dev || is_mount_point(&child, &cur, &sub.name)? {
                c.mount_point(&path);
                continue;
            }
            let parent = ident(cur.as_fd())?;
            let entered = c.enter(child.as_fd(), &path);
            stack.push(Level {
                name: sub.name,
                parent,
                pending,
            });
            cur = child;
            pending = match entered {
                Ok(subs) => reversed(subs),
                Err(e) => {
                    c.error(&path, e);
                    Vec::new()
                }
            };
            continue;
        }
        // This level is done: climb back.
        let Some(level) = stack.pop() else {
            return Ok(());
        };
        let up = rustix::fs::openat(
            &cur,
            "..",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        if ident(up.as_fd())? != level.parent {
            return Err(io::Error::other(format!(
                "{} was moved while it was walked, stopping",
                path_of(shown, &stack).display()
            )));
        }
        cur = up;
        let path = path_of(shown, &stack).join(&level.name);
        c.leave(cur.as_fd(), &level.name, &path)?;
        pending = level.pending;
    }
}
