//! Path resolution inside the root without `openat2(2)`: a component-by-component walk with
//! the semantics of `RESOLVE_IN_ROOT` (absolute symlinks restart at the root, `..` stops at the
//! root, at most 40 symlinks).

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Component, Path};
use std::sync::OnceLock;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};

const MAX_SYMLINKS: usize = 40;

/// Whether this kernel has a working `openat2(2)` (tested once per process).
pub(super) fn openat2_works() -> bool {
    static WORKS: OnceLock<bool> = OnceLock::new();
    *WORKS.get_or_init(|| {
        rustix::fs::openat2(
            rustix::fs::CWD,
            "/",
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT,
        )
        .is_ok()
    })
}

/// The components a walk steps through: names and `..` (the root, `.` and prefixes are no
/// steps). Shared with the chase-safe walk in `safe.rs`.
pub(super) fn components(p: &Path) -> impl Iterator<Item = OsString> + '_ {
    p.components().filter_map(|c| match c {
        Component::Normal(n) => Some(n.to_os_string()),
        Component::ParentDir => Some(OsString::from("..")),
        Component::CurDir | Component::RootDir | Component::Prefix(_) => None,
    })
}

/// Walks `rel` below `root`. Returns the directory holding the final component and that
/// component's name, guaranteed not to be a symlink when `follow_last` is set (or not to exist).
/// `None` as name means the path resolved to the returned directory itself. With `no_symlinks`
/// any symlink met fails with `ELOOP` (`RESOLVE_NO_SYMLINKS`), except a final one not followed.
pub(super) fn walk(
    root: BorrowedFd<'_>,
    rel: &Path,
    follow_last: bool,
    no_symlinks: bool,
) -> io::Result<(OwnedFd, Option<OsString>)> {
    let mut todo: VecDeque<OsString> = components(rel).collect();
    let mut stack: Vec<OwnedFd> = vec![rustix::io::fcntl_dupfd_cloexec(root, 0)?];
    let mut hops = 0;
    while let Some(c) = todo.pop_front() {
        if c == ".." {
            if stack.len() > 1 {
                stack.pop();
            }
            continue;
        }
        let last = todo.is_empty();
        let cur = stack.last().map(|f| f.as_fd()).unwrap_or(root);
        let st = match rustix::fs::statat(cur, c.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(rustix::io::Errno::NOENT) if last => {
                return Ok((rustix::io::fcntl_dupfd_cloexec(cur, 0)?, Some(c)));
            }
            Err(e) => return Err(e.into()),
        };
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Symlink => {
                if last && !follow_last {
                    return Ok((rustix::io::fcntl_dupfd_cloexec(cur, 0)?, Some(c)));
                }
                hops += 1;
                if no_symlinks || hops > MAX_SYMLINKS {
                    return Err(rustix::io::Errno::LOOP.into());
                }
                let target = rustix::fs::readlinkat(cur, c.as_os_str(), Vec::new())?;
                let target = Path::new(OsStr::from_bytes(target.as_bytes()));
                if target.has_root() {
                    stack.truncate(1);
                }
                for comp in components(target).collect::<Vec<_>>().into_iter().rev() {
                    todo.push_front(comp);
                }
            }
            FileType::Directory if !last => {
                let fd = rustix::fs::openat(
                    cur,
                    c.as_os_str(),
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                stack.push(fd);
            }
            _ if last => return Ok((rustix::io::fcntl_dupfd_cloexec(cur, 0)?, Some(c))),
            _ => return Err(rustix::io::Errno::NOTDIR.into()),
        }
    }
    let top = stack
        .pop()
        .map(Ok)
        .unwrap_or_else(|| rustix::io::fcntl_dupfd_cloexec(root, 0))?;
    Ok((top, None))
}
