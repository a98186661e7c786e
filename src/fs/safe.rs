//! The "chase-safe" walk: path resolution inside the root, one component at a time, that also
//! refuses systemd's *unsafe ownership transitions* (`CHASE_SAFE`): stepping from a directory
//! owned by an unprivileged user into (or through a symlink to) an object owned by someone
//! else. Such a step is how an unprivileged user could redirect a privileged tool onto files
//! it must not touch; it fails with `ENOLINK`, as in systemd.
//!
//! Also here: helpers working on `O_PATH` descriptors (chmod through `/proc/self/fd`, chown with
//! `AT_EMPTY_PATH`), used by every verb that adjusts existing inodes.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Component, Path};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};

use super::chase::components;
use super::{mutating, Root};

const MAX_SYMLINKS: usize = 32;

/// systemd's `unsafe_transition`: leaving a directory owned by a non-root user for an object
/// owned by a different user.
pub fn unsafe_transition(from: &Stat, to: &Stat) -> bool {
    from.st_uid != 0 && from.st_uid != to.st_uid
}

fn enolink() -> io::Error {
    io::Error::from_raw_os_error(rustix::io::Errno::NOLINK.raw_os_error())
}

/// The error number of an I/O error (0 if none).
pub fn errno_of(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

/// Whether `e` is the unsafe-transition refusal.
pub fn is_unsafe_transition(e: &io::Error) -> bool {
    errno_of(e) == rustix::io::Errno::NOLINK.raw_os_error()
}

impl Root {
    /// Resolves `p` inside the root like systemd's `chase(CHASE_SAFE)`: absolute symlinks restart
    /// at the root, `..` stops at the root, and every step is checked with
    /// [`unsafe_transition`] (fails with `ENOLINK`). With `nofollow`, a final symlink is returned
    /// itself. Returns an `O_PATH` descriptor and its `stat`.
    pub fn chase_safe(&self, p: &Path, nofollow: bool) -> io::Result<(OwnedFd, Stat)> {
        let mut todo: VecDeque<OsString> = components(p).collect();
        // The root itself is borrowed (`None`), so a walk opens only the components it visits.
        let root_st = rustix::fs::fstat(self.fd())?;
        let mut stack: Vec<(Option<OwnedFd>, Stat)> = vec![(None, root_st)];
        let mut hops = 0;
        while let Some(c) = todo.pop_front() {
            let last = todo.is_empty();
            if c == ".." {
                if stack.len() > 1 {
                    let n = stack.len();
                    if unsafe_transition(&stack[n - 1].1, &stack[n - 2].1) {
                        return Err(enolink());
                    }
                    stack.pop();
                }
                continue;
            }
            let (cur, cur_st) = stack.last().ok_or_else(enolink)?;
            let cur = cur.as_ref().map_or(self.fd(), |f| f.as_fd());
            let child = rustix::fs::openat(
                cur,
                c.as_os_str(),
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let st = rustix::fs::fstat(&child)?;
            if unsafe_transition(cur_st, &st) {
                return Err(enolink());
            }
            let ft = FileType::from_raw_mode(st.st_mode);
            if ft == FileType::Symlink && !(nofollow && last) {
                hops += 1;
                if hops > MAX_SYMLINKS {
                    return Err(rustix::io::Errno::LOOP.into());
                }
                let target = rustix::fs::readlinkat(cur, c.as_os_str(), Vec::new())?;
                let target = Path::new(OsStr::from_bytes(target.as_bytes())).to_path_buf();
                if target.as_os_str().is_empty() {
                    return Err(rustix::io::Errno::INVAL.into());
                }
                if target.has_root() {
                    if unsafe_transition(&st, &stack[0].1) {
                        return Err(enolink());
                    }
                    stack.truncate(1);
                }
                let comps: Vec<OsString> = components(&target).collect();
                for comp in comps.into_iter().rev() {
                    todo.push_front(comp);
                }
                continue;
            }
            if !last && ft != FileType::Directory {
                return Err(rustix::io::Errno::NOTDIR.into());
            }
            stack.push((Some(child), st));
        }
        match stack.pop() {
            Some((Some(fd), st)) => Ok((fd, st)),
            Some((None, st)) => Ok((
                rustix::fs::openat(
                    self.fd(),
                    ".",
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )?,
                st,
            )),
            None => Err(enolink()),
        }
    }

    /// The parent directory of `p`, resolved with [`Root::chase_safe`] (an `O_PATH` descriptor
    /// usable with every `*at` call), and the last component of `p`.
    pub fn parent_safe(&self, p: &Path) -> io::Result<(OwnedFd, OsString)> {
        let rel = super::relative(p);
        let name = match rel.components().next_back() {
            Some(Component::Normal(n)) => n.to_os_string(),
            _ => return Err(rustix::io::Errno::INVAL.into()),
        };
        let parent = rel.parent().unwrap_or(Path::new(""));
        // Like systemd, the parent is not required to be a directory here: the `*at` call
        // made with it then fails with ENOTDIR.
        let (fd, _) = self.chase_safe(parent, false)?;
        Ok((fd, name))
    }

    /// Whether the object behind `fd` lies at or below the in-root directory `dir` (resolved
    /// inside the root; a missing `dir` holds nothing). Compares the kernel's names of both
    /// (`/proc/self/fd`), so it sees through every symlink that led to `fd`.
    pub fn lies_below(&self, fd: impl AsFd, dir: &Path) -> io::Result<bool> {
        let d = match self.open_path(dir, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let name = |fd: std::os::fd::BorrowedFd<'_>| -> io::Result<Vec<u8>> {
            Ok(rustix::fs::readlink(proc_fd_path(fd).as_str(), Vec::new())?.into_bytes())
        };
        let (inner, top) = (name(fd.as_fd())?, name(d.as_fd())?);
        Ok(inner == top
            || (inner.starts_with(&top)
                && (top.ends_with(b"/") || inner.get(top.len()) == Some(&b'/'))))
    }
}

/// The `/proc/self/fd/N` path of a descriptor (for calls that have no `AT_EMPTY_PATH` form).
pub fn proc_fd_path(fd: impl AsFd) -> String {
    format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd())
}

/// `chmod` of the inode behind an `O_PATH` descriptor (never a symlink: callers check).
pub fn fchmod_opath(fd: impl AsFd, mode: u32, what: &Path) -> io::Result<()> {
    mutating("chmod", what)?;
    rustix::fs::chmod(proc_fd_path(&fd).as_str(), Mode::from_raw_mode(mode))?;
    super::trace::fd("chmod", fd.as_fd(), format_args!("\t{mode:o}"));
    Ok(())
}

/// `chown` of the inode behind a descriptor (symlinks themselves included).
pub fn fchown_opath(
    fd: impl AsFd,
    uid: Option<u32>,
    gid: Option<u32>,
    what: &Path,
) -> io::Result<()> {
    mutating("chown", what)?;
    rustix::fs::chownat(
        &fd,
        "",
        uid.map(rustix::fs::Uid::from_raw),
        gid.map(rustix::fs::Gid::from_raw),
        AtFlags::EMPTY_PATH,
    )?;
    let (u, g) = super::trace::owner(uid, gid);
    super::trace::fd("chown", fd.as_fd(), format_args!("\t{u}\t{g}"));
    Ok(())
}

/// Reopens an `O_PATH` descriptor with real access `flags` (through `/proc/self/fd`).
pub fn reopen(fd: impl AsFd, flags: OFlags) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        proc_fd_path(fd).as_str(),
        flags | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chase_stays_in_root_and_refuses_unsafe_transitions() {
        let t = crate::util::test_dir("safe-chase");
        std::fs::create_dir_all(t.join("etc")).unwrap();
        std::fs::write(t.join("etc/passwd"), "x").unwrap();
        std::os::unix::fs::symlink("/etc", t.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../etc", t.join("rel")).unwrap();
        let root = Root::open(&t).unwrap();
        for p in ["/abs/passwd", "/rel/passwd", "/../../etc/passwd"] {
            let (_, st) = root.chase_safe(Path::new(p), false).unwrap();
            assert_eq!(st.st_size, 1, "{p} resolved outside the root");
        }
        let (_, st) = root.chase_safe(Path::new("/abs"), true).unwrap();
        assert_eq!(FileType::from_raw_mode(st.st_mode), FileType::Symlink);
        // A directory owned by an unprivileged user holding a root-owned symlink.
        std::fs::create_dir_all(t.join("home/u")).unwrap();
        std::os::unix::fs::chown(t.join("home/u"), Some(1000), Some(1000)).unwrap();
        std::os::unix::fs::symlink("/etc", t.join("home/u/evil")).unwrap();
        let e = root
            .chase_safe(Path::new("/home/u/evil/passwd"), false)
            .unwrap_err();
        assert!(is_unsafe_transition(&e), "{e}");
        let e = root.parent_safe(Path::new("/home/u/evil/new")).unwrap_err();
        assert!(is_unsafe_transition(&e), "{e}");
        // The user's own link is fine.
        std::os::unix::fs::lchown(t.join("home/u/evil"), Some(1000), Some(1000)).unwrap();
        let e = root
            .chase_safe(Path::new("/home/u/evil/passwd"), false)
            .unwrap_err();
        assert!(
            is_unsafe_transition(&e),
            "the link is the user's, its target is root's: {e}"
        );
        assert!(root.chase_safe(Path::new("/home/u/evil"), true).is_ok());
        let _ = std::fs::remove_dir_all(&t);
    }
}
