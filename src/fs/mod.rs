//! The root-confined filesystem handle.
//!
//! Every read and every write pristine makes to the target tree goes through a [`Root`]: a
//! directory file descriptor plus a resolver that keeps every path inside it. Absolute symlinks
//! resolve against the root (like a chroot), `..` never climbs above it, magic links in `/proc`
//! are refused. Resolution uses `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` where the
//! kernel has it and a component-by-component walk ([`chase`]) where it does not.
//!
//! This module must never turn an in-root path into a host path for an operation: host paths
//! exist only for messages ([`Root::display_path`]). Writes are atomic (temporary file in the
//! same directory, fsync, rename, fsync of the directory). Recursive removal never follows
//! symlinks and never crosses a mount point.

mod chase;
pub mod copy;
mod fault;
pub mod safe;
pub mod walk;

use std::ffi::{OsStr, OsString};
use std::io::{self, Write as _};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat, Timestamps};

pub use fault::{count as mutation_count, mutating};
pub use safe::unsafe_transition;

/// How paths are resolved inside the root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolver {
    /// `openat2(2)` with `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS` (Linux ≥ 5.6).
    Openat2,
    /// A userspace walk, one component at a time, with the same semantics.
    Manual,
}

/// A directory entry as returned by [`Root::read_dir`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: OsString,
    pub file_type: FileType,
}

/// Options for [`Root::write_atomic`].
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    /// Permission bits of the new file (umask is not applied). Default 0644.
    pub mode: Option<u32>,
    /// Owner and group to set, if any.
    pub owner: Option<(u32, u32)>,
    /// Access and modification time to set, as (seconds, nanoseconds) each.
    pub times: Option<((i64, i64), (i64, i64))>,
}

/// A handle on the target tree. See the module documentation.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    host: PathBuf,
    resolver: Resolver,
    /// When set, atomic writes skip their per-file fsyncs and [`Root::sync`] flushes the whole
    /// file system once (bulk provisioning). Renames still make every file appear whole.
    deferred_sync: std::cell::Cell<bool>,
}

/// Turns an in-root path (absolute or relative) into the relative form used with the root fd.
/// The root itself becomes ".".
pub fn relative(p: &Path) -> &Path {
    let b = p.as_os_str().as_bytes();
    let mut i = 0;
    while i < b.len() && b[i] == b'/' {
        i += 1;
    }
    if i == b.len() {
        Path::new(".")
    } else {
        Path::new(OsStr::from_bytes(&b[i..]))
    }
}

fn einval(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what.to_string())
}

/// The last component of an in-root path and its parent, lexically. `None` for the root itself
/// and for paths ending in `..`, which have no well-defined (parent, name) pair.
fn split_last(p: &Path) -> Option<(&Path, &OsStr)> {
    let rel = relative(p);
    match rel.components().next_back()? {
        Component::Normal(name) => {
            let parent = rel.parent().unwrap_or(Path::new(""));
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            Some((parent, name))
        }
        _ => None,
    }
}

impl Root {
    /// Opens `path` on the host as the root of all later operations.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Root> {
        let resolver = if chase::openat2_works() {
            Resolver::Openat2
        } else {
            Resolver::Manual
        };
        Root::open_with(path, resolver)
    }

    /// A second handle on the same root (a duplicated descriptor, the same resolver), for
    /// read-ahead on another thread.
    pub fn try_clone(&self) -> io::Result<Root> {
        Ok(Root {
            fd: self.fd.try_clone()?,
            host: self.host.clone(),
            resolver: self.resolver,
            deferred_sync: std::cell::Cell::new(self.deferred_sync.get()),
        })
    }

    /// Like [`Root::open`] with an explicit resolver (tests use this to exercise both).
    pub fn open_with(path: impl AsRef<Path>, resolver: Resolver) -> io::Result<Root> {
        let host = path.as_ref().to_path_buf();
        let fd = rustix::fs::open(
            &host,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root {
            fd,
            host,
            resolver,
            deferred_sync: std::cell::Cell::new(false),
        })
    }

    pub fn resolver(&self) -> Resolver {
        self.resolver
    }

    /// Defers durability: atomic writes stop fsyncing each file and directory until
    /// [`Root::sync`] is called. Used for bulk work where one `syncfs` at the end is enough.
    pub fn set_deferred_sync(&self, on: bool) {
        self.deferred_sync.set(on);
    }

    /// Whether writes are made durable one by one (false while sync is deferred).
    pub fn durable(&self) -> bool {
        !self.deferred_sync.get()
    }

    /// Flushes the file systems holding the root and the in-root directories `dirs` (`syncfs(2)`
    /// once per file system: a separate `/var` partition is flushed too). A directory that
    /// does not exist is skipped; the first error is returned after trying them all.
    pub fn sync(&self, dirs: &[&str]) -> io::Result<()> {
        let mut seen = Vec::new();
        let mut flush = |fd: BorrowedFd<'_>| -> io::Result<()> {
            let st = rustix::fs::fstat(fd)?;
            if !seen.contains(&st.st_dev) {
                seen.push(st.st_dev);
                rustix::fs::syncfs(fd)?;
            }
            Ok(())
        };
        let mut result = flush(self.fd.as_fd());
        for d in dirs {
            let r = match self.open_path(
                Path::new(d),
                OFlags::RDONLY | OFlags::DIRECTORY,
                Mode::empty(),
            ) {
                Ok(fd) => flush(fd.as_fd()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            };
            if result.is_ok() {
                result = r;
            }
        }
        result
    }

    /// The host path of the root, for messages.
    pub fn host(&self) -> &Path {
        &self.host
    }

    /// The host path of an in-root path, for messages only: never open this.
    pub fn display_path(&self, p: &Path) -> PathBuf {
        let rel = relative(p);
        if rel == Path::new(".") {
            self.host.clone()
        } else {
            self.host.join(rel)
        }
    }

    /// The root directory descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens `p` inside the root. Symlinks are followed inside the root; with `OFlags::NOFOLLOW`
    /// in `flags`, the last component is not followed.
    pub fn open_path(&self, p: &Path, flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
        let rel = relative(p);
        match self.resolver {
            Resolver::Openat2 => Ok(rustix::fs::openat2(
                &self.fd,
                rel,
                flags | OFlags::CLOEXEC,
                mode,
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            )?),
            Resolver::Manual => {
                let follow_last = !flags.contains(OFlags::NOFOLLOW);
                let (dir, name) = chase::walk(self.fd.as_fd(), rel, follow_last)?;
                let name = name.unwrap_or_else(|| OsString::from("."));
                Ok(rustix::fs::openat(
                    &dir,
                    name.as_os_str(),
                    flags | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                    mode,
                )?)
            }
        }
    }

    /// Opens the directory containing `p` (following symlinks inside the root) and returns it
    /// with the last component of `p`, which is not resolved. This is the primitive for every
    /// "don't follow the last component" operation.
    pub fn parent(&self, p: &Path) -> io::Result<(OwnedFd, OsString)> {
        let (parent, name) = split_last(p).ok_or_else(|| einval("path has no last component"))?;
        let dir = self.open_path(parent, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())?;
        Ok((dir, name.to_os_string()))
    }

    /// Opens a directory inside the root for reading (following symlinks).
    pub fn open_dir(&self, p: &Path) -> io::Result<OwnedFd> {
        self.open_path(p, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
    }

    /// `stat` of `p`; `follow` decides whether a final symlink is followed.
    pub fn stat(&self, p: &Path, follow: bool) -> io::Result<Stat> {
        let mut flags = OFlags::PATH;
        if !follow {
            flags |= OFlags::NOFOLLOW;
        }
        let fd = self.open_path(p, flags, Mode::empty())?;
        Ok(rustix::fs::fstat(&fd)?)
    }

    /// The file type of `p` without following a final symlink, or `None` if it does not exist.
    pub fn file_type(&self, p: &Path) -> io::Result<Option<FileType>> {
        match self.stat(p, false) {
            Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether `p` exists (a dangling final symlink counts as existing).
    pub fn exists(&self, p: &Path) -> bool {
        self.stat(p, false).is_ok()
    }

    /// Reads a whole regular file (following symlinks inside the root). Anything else (a
    /// FIFO, a device, a directory) is refused without blocking.
    pub fn read(&self, p: &Path) -> io::Result<Vec<u8>> {
        let fd = self.open_path(
            p,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY,
            Mode::empty(),
        )?;
        read_regular(&fd).map_err(|e| match e {
            ReadError::NotRegular => io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", self.display_path(p).display()),
            ),
            ReadError::Io(e) => e.into(),
        })
    }

    /// Reads a whole file as UTF-8 text.
    pub fn read_to_string(&self, p: &Path) -> io::Result<String> {
        let bytes = self.read(p)?;
        String::from_utf8(bytes).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "file is not valid UTF-8".to_string(),
            )
        })
    }

    /// Reads a file if it exists: `Ok(None)` when it is missing.
    pub fn read_optional(&self, p: &Path) -> io::Result<Option<String>> {
        match self.read_to_string(p) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The target of the symlink `p` (the last component is not followed).
    pub fn read_link(&self, p: &Path) -> io::Result<PathBuf> {
        let (dir, name) = self.parent(p)?;
        let target = rustix::fs::readlinkat(&dir, name.as_os_str(), Vec::new())?;
        Ok(PathBuf::from(OsString::from(std::ffi::OsStr::from_bytes(
            target.as_bytes(),
        ))))
    }

    /// Lists a directory (following symlinks to it inside the root), sorted by name, without
    /// `.` and `..`.
    pub fn read_dir(&self, p: &Path) -> io::Result<Vec<Entry>> {
        let fd = self.open_dir(p)?;
        read_dir_fd(&fd)
    }

    /// Creates `p` and every missing parent as directories with `mode`.
    pub fn mkdir_all(&self, p: &Path, mode: u32) -> io::Result<()> {
        let rel = relative(p);
        let mut prefix = PathBuf::new();
        for c in rel.components() {
            prefix.push(c);
            match self.open_path(&prefix, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()) {
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    let (dir, name) = self.parent(&prefix)?;
                    mutating("mkdir", &prefix)?;
                    match rustix::fs::mkdirat(&dir, name.as_os_str(), Mode::from_raw_mode(mode)) {
                        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Creates one directory (its parent must exist). `Ok(false)` if it already existed as a
    /// directory.
    pub fn mkdir(&self, p: &Path, mode: u32) -> io::Result<bool> {
        let (dir, name) = self.parent(p)?;
        mutating("mkdir", p)?;
        match rustix::fs::mkdirat(&dir, name.as_os_str(), Mode::from_raw_mode(mode)) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::EXIST) => {
                let st = rustix::fs::statat(&dir, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)?;
                if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                    Ok(false)
                } else {
                    Err(rustix::io::Errno::EXIST.into())
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces (or creates) `p` atomically with `data`: a temporary file in the same directory,
    /// fsync, rename over `p`, fsync of the directory. A final symlink at `p` is replaced, not
    /// followed.
    pub fn write_atomic(&self, p: &Path, data: &[u8], opts: &WriteOptions) -> io::Result<()> {
        let (dir, name) = self.parent(p)?;
        write_atomic_at(&dir, &name, data, opts, p, !self.deferred_sync.get())
    }

    /// Creates a symlink at `p` pointing to `target` (which is stored verbatim). Fails with
    /// `AlreadyExists` if `p` exists.
    pub fn symlink(&self, target: &Path, p: &Path) -> io::Result<()> {
        let (dir, name) = self.parent(p)?;
        mutating("symlink", p)?;
        Ok(rustix::fs::symlinkat(target, &dir, name.as_os_str())?)
    }

    /// Creates or replaces the symlink `p` atomically (temporary link + rename).
    pub fn symlink_atomic(&self, target: &Path, p: &Path) -> io::Result<()> {
        let (dir, name) = self.parent(p)?;
        let tmp = temp_name(&name);
        mutating("symlink", p)?;
        rustix::fs::symlinkat(target, &dir, tmp.as_os_str())?;
        if let Err(e) = rustix::fs::renameat(&dir, tmp.as_os_str(), &dir, name.as_os_str()) {
            let _ = rustix::fs::unlinkat(&dir, tmp.as_os_str(), AtFlags::empty());
            return Err(e.into());
        }
        Ok(())
    }

    /// Removes a non-directory (or a symlink, never its target).
    pub fn unlink(&self, p: &Path) -> io::Result<()> {
        let (dir, name) = self.parent(p)?;
        mutating("unlink", p)?;
        Ok(rustix::fs::unlinkat(
            &dir,
            name.as_os_str(),
            AtFlags::empty(),
        )?)
    }

    /// Removes an empty directory.
    pub fn rmdir(&self, p: &Path) -> io::Result<()> {
        let (dir, name) = self.parent(p)?;
        mutating("rmdir", p)?;
        Ok(rustix::fs::unlinkat(
            &dir,
            name.as_os_str(),
            AtFlags::REMOVEDIR,
        )?)
    }

    /// Removes `p` and, if it is a directory, everything below it. Symlinks are removed, never
    /// followed; directories on another mount are left in place (and so is their parent, which
    /// then cannot become empty). `Ok(false)` if `p` did not exist.
    pub fn remove_tree(&self, p: &Path) -> io::Result<bool> {
        let (dir, name) = match self.parent(p) {
            Ok(x) => x,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let st = match rustix::fs::statat(&dir, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(rustix::io::Errno::NOENT) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let parent_st = rustix::fs::fstat(&dir)?;
        remove_at(&dir, &name, &st, parent_st.st_dev, p)?;
        Ok(true)
    }

    /// Removes everything inside directory `p` but not `p` itself (same rules as
    /// [`Root::remove_tree`]).
    pub fn remove_contents(&self, p: &Path) -> io::Result<()> {
        let fd = self.open_path(
            p,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW,
            Mode::empty(),
        )?;
        let st = rustix::fs::fstat(&fd)?;
        remove_children(&fd, st.st_dev, p)
    }

    /// Renames `from` to `to` inside the root (neither last component is followed).
    pub fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (fdir, fname) = self.parent(from)?;
        let (tdir, tname) = self.parent(to)?;
        mutating("rename", from)?;
        Ok(rustix::fs::renameat(
            &fdir,
            fname.as_os_str(),
            &tdir,
            tname.as_os_str(),
        )?)
    }

    /// Sets access and modification times of `p` (not following a final symlink).
    pub fn set_times(&self, p: &Path, atime: (i64, i64), mtime: (i64, i64)) -> io::Result<()> {
        let (dir, name) = self.parent(p)?;
        mutating("utimensat", p)?;
        let ts = timestamps(atime, mtime);
        Ok(rustix::fs::utimensat(
            &dir,
            name.as_os_str(),
            &ts,
            AtFlags::SYMLINK_NOFOLLOW,
        )?)
    }
}

/// Access and modification times from (seconds, nanoseconds) pairs.
pub fn timestamps(atime: (i64, i64), mtime: (i64, i64)) -> Timestamps {
    Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: atime.0,
            tv_nsec: atime.1 as _,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: mtime.0,
            tv_nsec: mtime.1 as _,
        },
    }
}

/// Lists an open directory, sorted by name, without `.` and `..`.
pub fn read_dir_fd(fd: impl AsFd) -> io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for_each_entry(fd.as_fd(), |name, file_type| {
        out.push(Entry {
            name: OsStr::from_bytes(name).to_os_string(),
            file_type,
        });
    })?;
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Calls `f` with each entry of an open directory (name and `d_type`, which may be
/// `Unknown`) in `readdir` order, without `.` and `..`. Reads from the start whatever the
/// descriptor's position, on the descriptor itself: no second descriptor is opened.
pub fn for_each_entry(fd: BorrowedFd<'_>, mut f: impl FnMut(&[u8], FileType)) -> io::Result<()> {
    use std::mem::MaybeUninit;
    rustix::fs::seek(fd, rustix::fs::SeekFrom::Start(0))?;
    let mut buf = [MaybeUninit::<u8>::uninit(); 8192];
    let mut dir = rustix::fs::RawDir::new(fd, &mut buf);
    while let Some(ent) = dir.next() {
        let ent = ent?;
        let name = ent.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        f(name, ent.file_type());
    }
    Ok(())
}

/// Why [`read_regular`] failed.
#[derive(Debug)]
pub enum ReadError {
    /// The open file is not a regular file (a FIFO, device, directory…): never read.
    NotRegular,
    Io(rustix::io::Errno),
}

/// Reads an open file whole if it is a regular file. Sized from `fstat`: a file read whole
/// takes one read (a short read after at least the reported size is its end); a file that
/// grows meanwhile is still read to its end.
pub fn read_regular(fd: &OwnedFd) -> Result<Vec<u8>, ReadError> {
    let st = rustix::fs::fstat(fd).map_err(ReadError::Io)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(ReadError::NotRegular);
    }
    let size = usize::try_from(st.st_size).unwrap_or(0);
    let mut buf = vec![0u8; size.saturating_add(1)];
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            buf.resize(buf.len() * 2 + 4096, 0);
        }
        let want = buf.len() - filled;
        let n = match rustix::io::read(fd, &mut buf[filled..]) {
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(ReadError::Io(e)),
        };
        filled += n;
        if n == 0 || (n < want && filled >= size) {
            buf.truncate(filled);
            return Ok(buf);
        }
    }
}

/// A temporary name next to `name`, as systemd makes them (`.#name` plus random hex). Never
/// blocks on the kernel's random pool (see [`crate::util::unique_bytes`]).
pub fn temp_name(name: &OsStr) -> OsString {
    let mut rnd = [0u8; 8];
    crate::util::unique_bytes(&mut rnd);
    let mut s = OsString::from(".#");
    s.push(name);
    s.push(crate::util::hex(&rnd));
    s
}

/// [`Root::write_atomic`] on an already open directory. `what` names the path in errors and
/// fault injection; `durable` fsyncs the file and the directory.
pub fn write_atomic_at(
    dir: &OwnedFd,
    name: &OsStr,
    data: &[u8],
    opts: &WriteOptions,
    what: &Path,
    durable: bool,
) -> io::Result<()> {
    let tmp = temp_name(name);
    let mode = opts.mode.unwrap_or(0o644);
    mutating("write", what)?;
    let fd = rustix::fs::openat(
        dir,
        tmp.as_os_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )?;
    let result = (|| -> io::Result<()> {
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
        if let Some((uid, gid)) = opts.owner {
            rustix::fs::fchown(
                &fd,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            )?;
        }
        let mut f = std::fs::File::from(fd.try_clone()?);
        f.write_all(data)?;
        if durable {
            f.sync_all()?;
        }
        if let Some((a, m)) = opts.times {
            let ts = timestamps(a, m);
            rustix::fs::futimens(&fd, &ts)?;
        }
        rustix::fs::renameat(dir, tmp.as_os_str(), dir, name)?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = rustix::fs::unlinkat(dir, tmp.as_os_str(), AtFlags::empty());
        return Err(e);
    }
    if durable {
        rustix::fs::fsync(dir)?;
    }
    Ok(())
}

fn remove_at(dir: &OwnedFd, name: &OsStr, st: &Stat, dev: u64, what: &Path) -> io::Result<()> {
    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
        if st.st_dev != dev {
            // A mount point: leave it and everything on it alone.
            return Err(io::Error::other(format!(
                "{} is a mount point, not removed",
                what.display()
            )));
        }
        let child = rustix::fs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        if is_mount_point(&child, dir, name)? {
            return Err(io::Error::other(format!(
                "{} is a mount point, not removed",
                what.display()
            )));
        }
        remove_children(&child, dev, what)?;
        mutating("rmdir", what)?;
        rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?;
    } else {
        mutating("unlink", what)?;
        rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
    }
    Ok(())
}

fn remove_children(fd: &OwnedFd, dev: u64, what: &Path) -> io::Result<()> {
    let mut first_err = None;
    for ent in read_dir_fd(fd)? {
        let st = match rustix::fs::statat(fd, ent.name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(rustix::io::Errno::NOENT) => continue,
            Err(e) => {
                first_err.get_or_insert(e.into());
                continue;
            }
        };
        let child = what.join(&ent.name);
        if let Err(e) = remove_at(fd, &ent.name, &st, dev, &child) {
            first_err.get_or_insert(e);
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Whether the open directory `child` (named `name` in `parent`) is a mount point: a different
/// device, or a different mount id (bind mounts of the same filesystem).
pub fn is_mount_point(child: &OwnedFd, parent: &OwnedFd, _name: &OsStr) -> io::Result<bool> {
    let a = rustix::fs::fstat(child)?;
    let b = rustix::fs::fstat(parent)?;
    if a.st_dev != b.st_dev {
        return Ok(true);
    }
    let mask = rustix::fs::StatxFlags::MNT_ID;
    let sa = rustix::fs::statx(child, "", AtFlags::EMPTY_PATH, mask);
    let sb = rustix::fs::statx(parent, "", AtFlags::EMPTY_PATH, mask);
    match (sa, sb) {
        (Ok(sa), Ok(sb)) if sa.stx_mask & mask.bits() != 0 && sb.stx_mask & mask.bits() != 0 => {
            Ok(sa.stx_mnt_id != sb.stx_mnt_id)
        }
        _ => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_strips_slashes() {
        assert_eq!(relative(Path::new("/etc/passwd")), Path::new("etc/passwd"));
        assert_eq!(relative(Path::new("//")), Path::new("."));
        assert_eq!(relative(Path::new("")), Path::new("."));
        assert_eq!(relative(Path::new("var")), Path::new("var"));
    }

    #[test]
    fn split_last_cases() {
        assert_eq!(
            split_last(Path::new("/etc/passwd")),
            Some((Path::new("etc"), OsStr::new("passwd")))
        );
        assert_eq!(
            split_last(Path::new("/etc")),
            Some((Path::new("."), OsStr::new("etc")))
        );
        assert_eq!(split_last(Path::new("/")), None);
        assert_eq!(split_last(Path::new("/a/..")), None);
    }

    #[test]
    fn read_regular_reads_whole_files_of_any_size() {
        let d = crate::util::test_dir("fs-read");
        for size in [0usize, 1, 4095, 4096, 4097, 100_000] {
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let p = d.join(format!("f{size}"));
            std::fs::write(&p, &data).unwrap();
            let fd = rustix::fs::open(&p, OFlags::RDONLY, Mode::empty()).unwrap();
            assert_eq!(read_regular(&fd).unwrap(), data, "size {size}");
        }
        let fd = rustix::fs::open(&d, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        assert!(matches!(read_regular(&fd), Err(ReadError::NotRegular)));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn for_each_entry_lists_from_the_start_every_time() {
        let d = crate::util::test_dir("fs-list");
        for n in 0..300 {
            std::fs::write(d.join(format!("entry-{n:03}")), "").unwrap();
        }
        let fd = rustix::fs::open(&d, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let list = |fd: &OwnedFd| {
            let mut names = Vec::new();
            for_each_entry(fd.as_fd(), |n, _| names.push(n.to_vec())).unwrap();
            names.sort();
            names
        };
        let first = list(&fd);
        assert_eq!(first.len(), 300);
        assert_eq!(first[0], b"entry-000");
        assert_eq!(list(&fd), first, "a second listing on the same descriptor");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
