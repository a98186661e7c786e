//! The one temporary-file-and-rename writer.
//!
//! A [`Txn`] stages files and symlinks as temporaries (`.#name` plus random hex, see
//! [`temp_name`](super::temp_name)) in the directories of their targets — each created
//! exclusively, with owner and mode set on its descriptor, written, given its times and fsync'd
//! unless the transaction is not durable — and [`Txn::commit`] renames them over their targets
//! in the order they were staged, then fsyncs each directory once. Dropping a transaction that
//! was not committed (an error on the way, a `?`) removes its temporaries: a failed transaction
//! leaves the targets as they were.
//!
//! Fault injection (see [`super::fault`]): staging an entry is one mutating operation (it is
//! reached before anything is created); the renames of a commit are one each when the
//! transaction holds more than one entry, so that a crash between two renames is exercised. A
//! one-entry commit is the staging's own operation carried out: a crash between its staging and
//! its rename leaves the target as it was, which the staging's fault point already tests.

use std::ffi::{OsStr, OsString};
use std::io::{self, Write as _};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};

use super::fault::mutating;
use super::fault::trace::{self, Arg, AtArg};
use super::{timestamps, Root, WriteOptions};
use crate::error::{Error, Result};

/// A directory of a transaction: opened by it, or lent by the caller.
enum Dir<'d> {
    Owned(OwnedFd),
    Borrowed(BorrowedFd<'d>),
}

impl Dir<'_> {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Dir::Owned(fd) => fd.as_fd(),
            Dir::Borrowed(fd) => fd.as_fd(),
        }
    }
}

/// A directory added to a [`Txn`] (by [`Txn::parent`] or [`Txn::dir`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirId(usize);

/// One staged entry: its temporary and its target, in the directory `dir`.
struct Staged {
    dir: usize,
    tmp: OsString,
    target: OsString,
    /// The in-root path of the target (errors and fault injection).
    what: PathBuf,
    committed: bool,
}

/// Files and symlinks staged next to their targets, committed together. See the module
/// documentation.
pub struct Txn<'d> {
    dirs: Vec<Dir<'d>>,
    /// The in-root path each directory opened by [`Txn::parent`] was opened as (reused).
    opened: Vec<(PathBuf, usize)>,
    staged: Vec<Staged>,
    durable: bool,
}

impl<'d> Txn<'d> {
    /// A transaction that fsyncs what it writes when `durable`.
    pub fn new(durable: bool) -> Txn<'d> {
        Txn {
            dirs: Vec::new(),
            opened: Vec::new(),
            staged: Vec::new(),
            durable,
        }
    }

    /// A transaction as durable as `root` is (see [`Root::set_deferred_sync`]).
    pub fn for_root(root: &Root) -> Txn<'d> {
        Txn::new(root.durable())
    }

    /// Adds a directory the caller opened safely (through [`Root`], a walk, a
    /// [`DirCache`](super::DirCache)).
    pub fn dir(&mut self, fd: BorrowedFd<'d>) -> DirId {
        self.dirs.push(Dir::Borrowed(fd));
        DirId(self.dirs.len() - 1)
    }

    /// Opens (once per transaction) the directory holding the in-root path `p` and returns it
    /// with `p`'s last component, which is not resolved.
    pub fn parent(&mut self, root: &Root, p: &Path) -> io::Result<(DirId, OsString)> {
        let (parent, name) =
            super::split_last(p).ok_or_else(|| super::einval("path has no last component"))?;
        if let Some((_, k)) = self.opened.iter().find(|(q, _)| q == parent) {
            return Ok((DirId(*k), name.to_os_string()));
        }
        let fd = root.open_dir(parent)?;
        self.dirs.push(Dir::Owned(fd));
        let k = self.dirs.len() - 1;
        self.opened.push((parent.to_path_buf(), k));
        Ok((DirId(k), name.to_os_string()))
    }

    /// The descriptor of a directory of this transaction.
    pub fn dir_fd(&self, dir: DirId) -> BorrowedFd<'_> {
        self.dirs[dir.0].fd()
    }

    /// Stages `data` to become `name` in `dir`, with the mode (default 0644, umask not
    /// applied), owner and times of `opts`. `what` is the target's in-root path.
    pub fn file(
        &mut self,
        dir: DirId,
        name: &OsStr,
        data: &[u8],
        opts: &WriteOptions,
        what: &Path,
    ) -> io::Result<()> {
        mutating("write", what)?;
        let tmp = super::temp_name(name);
        let mode = opts.mode.unwrap_or(0o644) & 0o7777;
        // Created with its final permission bits (nothing is in it yet), so that the chmod can
        // usually be left out (`created_with_mode`).
        let create = mode & 0o777;
        let fd = rustix::fs::openat(
            self.dirs[dir.0].fd(),
            tmp.as_os_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(create),
        )?;
        trace::fd("create", fd.as_fd(), format_args!("\t{create:o}"));
        // Recorded before anything can fail: dropping the transaction removes it.
        self.stage(dir, tmp, name, what);
        super::set_new_owner_mode(fd.as_fd(), opts.owner, create, mode)?;
        let mut f = std::fs::File::from(fd);
        f.write_all(data)?;
        let len = data.len();
        trace::fd("write", f.as_fd(), format_args!("\t{len}"));
        if let Some((a, m)) = opts.times {
            rustix::fs::futimens(&f, &timestamps(a, m))?;
            trace::fd("futimens", f.as_fd(), format_args!(""));
        }
        if self.durable {
            f.sync_all()?;
            trace::fd("fsync", f.as_fd(), format_args!(""));
        }
        Ok(())
    }

    /// Stages a symlink to `target` (stored verbatim) to become `name` in `dir`.
    pub fn symlink(
        &mut self,
        dir: DirId,
        name: &OsStr,
        target: &OsStr,
        what: &Path,
    ) -> io::Result<()> {
        mutating("symlink", what)?;
        let tmp = super::temp_name(name);
        rustix::fs::symlinkat(target, self.dirs[dir.0].fd(), tmp.as_os_str())?;
        trace::at(
            "symlink",
            self.dirs[dir.0].fd(),
            &tmp,
            format_args!("{}", Arg(target.as_encoded_bytes())),
        );
        self.stage(dir, tmp, name, what);
        Ok(())
    }

    /// Records the temporary `tmp` that is to become `name` in `dir`.
    fn stage(&mut self, dir: DirId, tmp: OsString, name: &OsStr, what: &Path) {
        self.staged.push(Staged {
            dir: dir.0,
            tmp,
            target: name.to_os_string(),
            what: what.to_path_buf(),
            committed: false,
        });
    }

    /// Renames every staged entry over its target, in the order staged, then (durable) fsyncs
    /// each directory once. On an error the entries not yet renamed are removed; the ones
    /// renamed stay (a rename cannot be taken back). The error names the target.
    pub fn commit(mut self) -> Result<()> {
        self.finish()
            .map_err(|(k, op, e)| Error::io(op, &self.staged[k].what, e))
    }

    /// [`Txn::commit`] for callers that still speak `io::Result`: the error is the system's
    /// own (its errno intact, no path).
    pub fn commit_io(mut self) -> io::Result<()> {
        self.finish().map_err(|(_, _, e)| e)
    }

    /// The commit: on failure, which entry, the operation and the error.
    fn finish(&mut self) -> std::result::Result<(), (usize, &'static str, io::Error)> {
        let counted = self.staged.len() > 1;
        for (k, s) in self.staged.iter_mut().enumerate() {
            if counted {
                mutating("rename", &s.what).map_err(|e| (k, "rename", e))?;
            }
            let dir = self.dirs[s.dir].fd();
            rustix::fs::renameat(dir, s.tmp.as_os_str(), dir, s.target.as_os_str())
                .map_err(|e| (k, "rename", e.into()))?;
            let to = AtArg(dir, &s.target);
            trace::at("rename", dir, &s.tmp, format_args!("{to}"));
            s.committed = true;
        }
        if self.durable {
            let mut synced: Vec<usize> = Vec::new();
            for (k, s) in self.staged.iter().enumerate() {
                if synced.contains(&s.dir) {
                    continue;
                }
                synced.push(s.dir);
                rustix::fs::fsync(self.dirs[s.dir].fd())
                    .map_err(|e| (k, "sync the directory of", e.into()))?;
                trace::fd("fsync", self.dirs[s.dir].fd(), format_args!(""));
            }
        }
        Ok(())
    }
}

impl Drop for Txn<'_> {
    fn drop(&mut self) {
        for s in self.staged.iter().filter(|s| !s.committed) {
            let _ =
                rustix::fs::unlinkat(self.dirs[s.dir].fd(), s.tmp.as_os_str(), AtFlags::empty());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    fn names(d: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn commits_in_order_and_drops_leave_nothing() {
        let d = crate::util::test_dir("fs-txn");
        std::fs::create_dir_all(d.join("etc")).unwrap();
        std::fs::write(d.join("etc/a"), "old").unwrap();
        let root = Root::open(&d).unwrap();
        let opts = WriteOptions {
            mode: Some(0o640),
            times: Some(((1, 0), (2, 0))),
            ..Default::default()
        };
        let mut t = Txn::new(true);
        let (dir, a) = t.parent(&root, Path::new("/etc/a")).unwrap();
        let (dir2, b) = t.parent(&root, Path::new("/etc/b")).unwrap();
        assert_eq!(dir, dir2, "one open per directory");
        t.file(dir, &a, b"new", &opts, Path::new("/etc/a")).unwrap();
        t.symlink(dir, &b, OsStr::new("a"), Path::new("/etc/b"))
            .unwrap();
        assert_eq!(std::fs::read_to_string(d.join("etc/a")).unwrap(), "old");
        assert_eq!(names(&d.join("etc")).len(), 3, "two temporaries staged");
        t.commit().unwrap();
        assert_eq!(names(&d.join("etc")), ["a", "b"]);
        let md = std::fs::metadata(d.join("etc/a")).unwrap();
        assert_eq!((md.mode() & 0o7777, md.mtime()), (0o640, 2));
        assert_eq!(std::fs::read_to_string(d.join("etc/b")).unwrap(), "new");

        // Dropped uncommitted: the targets stay, the temporaries go.
        let mut t = Txn::new(false);
        let (dir, a) = t.parent(&root, Path::new("/etc/a")).unwrap();
        t.file(dir, &a, b"newer", &opts, Path::new("/etc/a"))
            .unwrap();
        drop(t);
        assert_eq!(names(&d.join("etc")), ["a", "b"]);
        assert_eq!(std::fs::read_to_string(d.join("etc/a")).unwrap(), "new");

        // A rename that fails (a directory in the way) keeps the earlier renames, removes the
        // later temporaries and names the target.
        std::fs::create_dir_all(d.join("etc/c/x")).unwrap();
        let mut t = Txn::new(false);
        let (dir, _) = t.parent(&root, Path::new("/etc/a")).unwrap();
        for n in ["a", "c", "d"] {
            let p = Path::new("/etc").join(n);
            t.file(dir, OsStr::new(n), n.as_bytes(), &opts, &p).unwrap();
        }
        let e = t.commit().unwrap_err();
        assert_eq!(e.path.as_deref(), Some(Path::new("/etc/c")));
        assert_eq!(names(&d.join("etc")), ["a", "b", "c"]);
        assert_eq!(std::fs::read_to_string(d.join("etc/a")).unwrap(), "a");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
