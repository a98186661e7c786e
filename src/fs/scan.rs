//! An iterative, read-only walk of a tree inside the root: every entry with its `lstat`, and the
//! target of every symlink. Used by `factory` and `lint` to take one snapshot of `/etc`, `/var`
//! and `/usr`.
//!
//! Nothing is followed: directories are opened `O_NOFOLLOW` relative to their parent's
//! descriptor, the walk never crosses into another mount below its start, and it is bounded
//! (entries and depth), so a hostile tree ends as a clear error, never as a stack overflow or
//! an unbounded allocation. It must never write.

use std::ffi::OsStr;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};

use super::Root;

/// Bounds of a walk.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Most entries reported before the walk stops with an error.
    pub entries: usize,
    /// Deepest directory level descended into.
    pub depth: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            entries: 2_000_000,
            depth: 256,
        }
    }
}

/// One entry found by [`walk`].
#[derive(Clone, Debug)]
pub struct Found {
    /// In-root absolute path.
    pub path: PathBuf,
    pub stat: Stat,
    /// The symlink's target, for symlinks.
    pub target: Option<PathBuf>,
}

impl Found {
    pub fn file_type(&self) -> FileType {
        FileType::from_raw_mode(self.stat.st_mode)
    }
}

/// What went wrong below the start (the walk went on elsewhere).
#[derive(Debug)]
pub struct WalkError {
    pub path: PathBuf,
    pub error: io::Error,
}

/// Walks everything below `top` (not `top` itself), parents before children, names sorted
/// within a directory. Returns the entries and the errors met; `Err` only when `top` cannot be
/// opened as a directory. Entries past [`Limits::entries`] or below [`Limits::depth`] are
/// reported as errors and not listed.
pub fn walk(root: &Root, top: &Path, limits: Limits) -> io::Result<(Vec<Found>, Vec<WalkError>)> {
    let fd = root.open_path(
        top,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW,
        Mode::empty(),
    )?;
    let dev = rustix::fs::fstat(&fd).map_err(io::Error::from)?.st_dev;
    let mut found = Vec::new();
    let mut errors = Vec::new();
    let mut stack: Vec<(OwnedFd, PathBuf, usize)> = vec![(fd, top.to_path_buf(), 0)];
    while let Some((dir, path, depth)) = stack.pop() {
        let entries = match super::read_dir_fd(&dir) {
            Ok(e) => e,
            Err(error) => {
                errors.push(WalkError { path, error });
                continue;
            }
        };
        let mut subdirs = Vec::new();
        for e in entries {
            if found.len() >= limits.entries {
                errors.push(WalkError {
                    path: path.clone(),
                    error: io::Error::other(format!(
                        "more than {} entries, the rest is not looked at",
                        limits.entries
                    )),
                });
                return Ok((found, errors));
            }
            let child = path.join(&e.name);
            let st = match rustix::fs::statat(&dir, e.name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(err) => {
                    errors.push(WalkError {
                        path: child,
                        error: err.into(),
                    });
                    continue;
                }
            };
            let ft = FileType::from_raw_mode(st.st_mode);
            let target = if ft == FileType::Symlink {
                rustix::fs::readlinkat(&dir, e.name.as_os_str(), Vec::new())
                    .ok()
                    .map(|t| PathBuf::from(OsStr::from_bytes(t.as_bytes())))
            } else {
                None
            };
            if ft == FileType::Directory && st.st_dev == dev {
                if depth + 1 >= limits.depth {
                    errors.push(WalkError {
                        path: child.clone(),
                        error: io::Error::other(format!(
                            "deeper than {} levels, not descended into",
                            limits.depth
                        )),
                    });
                } else {
                    match rustix::fs::openat(
                        &dir,
                        e.name.as_os_str(),
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    ) {
                        Ok(fd) => subdirs.push((fd, child.clone(), depth + 1)),
                        Err(err) => errors.push(WalkError {
                            path: child.clone(),
                            error: err.into(),
                        }),
                    }
                }
            }
            found.push(Found {
                path: child,
                stat: st,
                target,
            });
        }
        // Popped in name order; the parents-before-children order holds for every path.
        stack.extend(subdirs.into_iter().rev());
    }
    Ok((found, errors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_without_following_and_bounded() {
        let dir = crate::util::test_dir("walk");
        std::fs::create_dir_all(dir.join("t/a/b")).unwrap();
        std::fs::write(dir.join("t/a/b/f"), b"x").unwrap();
        std::os::unix::fs::symlink("/", dir.join("t/a/up")).unwrap();
        let root = Root::open(&dir).unwrap();
        let (found, errors) = walk(&root, Path::new("/t"), Limits::default()).unwrap();
        let paths: Vec<String> = found.iter().map(|f| f.path.display().to_string()).collect();
        assert_eq!(paths, ["/t/a", "/t/a/b", "/t/a/up", "/t/a/b/f"]);
        assert!(errors.is_empty());
        assert_eq!(found[2].target.as_deref(), Some(Path::new("/")));
        let (found, errors) = walk(
            &root,
            Path::new("/t"),
            Limits {
                entries: 10,
                depth: 2,
            },
        )
        .unwrap();
        assert_eq!(found.len(), 3);
        assert_eq!(errors.len(), 1);
        let (found, errors) = walk(
            &root,
            Path::new("/t"),
            Limits {
                entries: 1,
                depth: 9,
            },
        )
        .unwrap();
        assert_eq!((found.len(), errors.len()), (1, 1));
        assert!(walk(&root, Path::new("/t/a/up"), Limits::default()).is_err());
    }
}
