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
//! symlinks, never crosses a mount point, and is iterative with two descriptors open at any
//! depth. A [`Root::strict`] handle follows no symlink in any component at all: engines that
//! move or remove what they find (the factory reset) use it.

// The one place the mutating rustix calls are allowed (clippy.toml refuses them elsewhere).
#![allow(clippy::disallowed_methods)]

pub mod at;
mod chase;
mod climb;
pub mod copy;
mod dircache;
mod fault;
pub mod host_runtime;
pub mod limits;
pub mod safe;
pub mod scan;
pub mod txn;
pub mod walk;

use std::ffi::{OsStr, OsString};
use std::io::{self, Write as _};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat, Timestamps};

use copy::open_dir_nofollow;
pub use dircache::DirCache;
pub use fault::{count as mutation_count, hold_helper_until, mutating, plan_ahead_first, trace};
pub use safe::unsafe_transition;
pub use txn::{DirId, Txn};

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
    /// No symlink is followed anywhere in a path (`RESOLVE_NO_SYMLINKS`): see [`Root::strict`].
    strict: bool,
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
            strict: self.strict,
        })
    }

    /// A second handle on the same root that follows no symlink in any component of any path
    /// (`RESOLVE_NO_SYMLINKS`: such a path fails with `ELOOP`); a final symlink is still acted
    /// on itself where the operation does not follow it (rename, unlink, `file_type`). Engines
    /// that move or remove what they find (the factory reset) work through this handle, so
    /// nothing they move or remove is ever reached through a link.
    pub fn strict(&self) -> io::Result<Root> {
        let mut r = self.try_clone()?;
        r.strict = true;
        Ok(r)
    }

    /// Whether this handle is [`Root::strict`].
    pub fn is_strict(&self) -> bool {
        self.strict
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
            strict: false,
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

    /// `PATH: message` for an error met on the in-root path `p` (host path, `strerror` text
    /// without Rust's "(os error N)"), not naming the path twice when the error already does.
    pub fn error_at(&self, p: &Path, e: &io::Error) -> String {
        let shown = self.display_path(p).display().to_string();
        let text = crate::report::errno_text(e);
        if text.contains(&shown) {
            text
        } else {
            format!("{shown}: {text}")
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
            Resolver::Openat2 => {
                let mut how = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
                if self.strict {
                    how |= ResolveFlags::NO_SYMLINKS;
                }
                Ok(rustix::fs::openat2(
                    &self.fd,
                    rel,
                    flags | OFlags::CLOEXEC,
                    mode,
                    how,
                )?)
            }
            Resolver::Manual => {
                let follow_last = !flags.contains(OFlags::NOFOLLOW);
                let (dir, name) = chase::walk(self.fd.as_fd(), rel, follow_last, self.strict)?;
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

    /// Reads a whole regular file (following symlinks inside the root) of at most
    /// [`limits::DEFAULT`] bytes. Anything else (a FIFO, a device, a directory) is refused
    /// without blocking; a larger file is refused before anything is allocated.
    pub fn read(&self, p: &Path) -> io::Result<Vec<u8>> {
        self.read_max(p, limits::DEFAULT)
    }

    /// [`Root::read`] with the limit for the kind of file (see [`limits`]). The errors name
    /// the file.
    pub fn read_max(&self, p: &Path, max: u64) -> io::Result<Vec<u8>> {
        let fd = self.open_read(p)?;
        read_regular(&fd, max).map_err(|e| self.read_error(p, max, e))
    }

    /// Opens `p` for reading without blocking (a FIFO opens, and is then refused by its type).
    fn open_read(&self, p: &Path) -> io::Result<OwnedFd> {
        self.open_path(
            p,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY,
            Mode::empty(),
        )
    }

    /// A [`ReadError`] of `p` (read with the limit `max`) as an error naming the file.
    fn read_error(&self, p: &Path, max: u64, e: ReadError) -> io::Error {
        let shown = self.display_path(p);
        match e {
            ReadError::NotRegular => io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", shown.display()),
            ),
            ReadError::TooLarge => io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!(
                    "{} is larger than {max} bytes, refusing to read it",
                    shown.display()
                ),
            ),
            ReadError::Io(e) => e.into(),
        }
    }

    /// Opens a regular file for streaming reads (following symlinks inside the root); anything
    /// else is refused without blocking, as by [`Root::read`].
    pub fn open_regular(&self, p: &Path) -> io::Result<std::fs::File> {
        let fd = self.open_read(p)?;
        let st = rustix::fs::fstat(&fd)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(self.read_error(p, limits::DEFAULT, ReadError::NotRegular));
        }
        // Streamed line by line, but bounded all the same (a huge or sparse file would be read
        // for ever): the configuration maximum of `limits`.
        if u64::try_from(st.st_size).unwrap_or(u64::MAX) > limits::DEFAULT {
            return Err(self.read_error(p, limits::DEFAULT, ReadError::TooLarge));
        }
        Ok(std::fs::File::from(fd))
    }

    /// Opens a configuration file for a line reader, refusing what [`Root::open_regular`]
    /// refuses with the same errors: read whole, with one `read` when it does not change
    /// meanwhile (a buffered reader needs further `read`s that return nothing to find its
    /// end). Should a `read` fail, the file is streamed from the start instead (bounded), so
    /// that the reader meets the error where systemd's would.
    pub fn open_config(&self, p: &Path) -> io::Result<Box<dyn io::BufRead>> {
        let fd = self.open_read(p)?;
        Ok(match read_regular(&fd, limits::DEFAULT) {
            Ok(bytes) => Box::new(io::Cursor::new(bytes)),
            Err(ReadError::Io(_)) => {
                rustix::fs::seek(&fd, rustix::fs::SeekFrom::Start(0))?;
                let file = std::fs::File::from(fd);
                Box::new(io::BufReader::new(io::Read::take(file, limits::DEFAULT)))
            }
            Err(e) => return Err(self.read_error(p, limits::DEFAULT, e)),
        })
    }

    /// Reads a whole file as UTF-8 text.
    pub fn read_to_string(&self, p: &Path) -> io::Result<String> {
        self.read_string_max(p, limits::DEFAULT)
    }

    fn read_string_max(&self, p: &Path, max: u64) -> io::Result<String> {
        let bytes = self.read_max(p, max)?;
        String::from_utf8(bytes).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not valid UTF-8", self.display_path(p).display()),
            )
        })
    }

    /// Reads a file if it exists: `Ok(None)` when it is missing.
    pub fn read_optional(&self, p: &Path) -> io::Result<Option<String>> {
        self.read_optional_max(p, limits::DEFAULT)
    }

    /// [`Root::read_optional`] with the limit for the kind of file (see [`limits`]).
    pub fn read_optional_max(&self, p: &Path, max: u64) -> io::Result<Option<String>> {
        match self.read_string_max(p, max) {
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
                        Ok(()) => {
                            trace::at("mkdir", dir.as_fd(), &name, format_args!("\t{mode:o}"))
                        }
                        Err(rustix::io::Errno::EXIST) => {}
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
            Ok(()) => {
                trace::at("mkdir", dir.as_fd(), &name, format_args!("\t{mode:o}"));
                Ok(true)
            }
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
        rustix::fs::symlinkat(target, &dir, name.as_os_str())?;
        let target = trace::Arg(target.as_os_str().as_bytes());
        trace::at("symlink", dir.as_fd(), &name, format_args!("{target}"));
        Ok(())
    }

    /// Creates or replaces the symlink `p` atomically (a one-link [`Txn`], not fsynced).
    pub fn symlink_atomic(&self, target: &Path, p: &Path) -> io::Result<()> {
        let mut t = Txn::new(false);
        let (dir, name) = t.parent(self, p)?;
        t.symlink(dir, &name, target.as_os_str(), p)?;
        t.commit_io()
    }

    /// Removes a non-directory (or a symlink, never its target).
    pub fn unlink(&self, p: &Path) -> io::Result<()> {
        let (dir, name) = self.parent(p)?;
        mutating("unlink", p)?;
        rustix::fs::unlinkat(&dir, name.as_os_str(), AtFlags::empty())?;
        trace::at("unlink", dir.as_fd(), &name, format_args!(""));
        Ok(())
    }

    /// Removes an empty directory.
    pub fn rmdir(&self, p: &Path) -> io::Result<()> {
        let (dir, name) = self.parent(p)?;
        mutating("rmdir", p)?;
        rustix::fs::unlinkat(&dir, name.as_os_str(), AtFlags::REMOVEDIR)?;
        trace::at("rmdir", dir.as_fd(), &name, format_args!(""));
        Ok(())
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
        remove_tree_at(&dir, &name, p)
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
        remove_children(fd, st.st_dev, p)
    }

    /// Renames `from` to `to` inside the root (neither last component is followed).
    pub fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (fdir, fname) = self.parent(from)?;
        let (tdir, tname) = self.parent(to)?;
        mutating("rename", from)?;
        rustix::fs::renameat(&fdir, fname.as_os_str(), &tdir, tname.as_os_str())?;
        let to = trace::AtArg(tdir.as_fd(), &tname);
        trace::at("rename", fdir.as_fd(), &fname, format_args!("{to}"));
        Ok(())
    }

    /// Swaps `a` and `b` atomically (`renameat2(RENAME_EXCHANGE)`): both must exist; after the
    /// call each name holds what the other held. Neither last component is followed.
    pub fn exchange(&self, a: &Path, b: &Path) -> io::Result<()> {
        let (adir, aname) = self.parent(a)?;
        let (bdir, bname) = self.parent(b)?;
        mutating("exchange", a)?;
        rustix::fs::renameat_with(
            &adir,
            aname.as_os_str(),
            &bdir,
            bname.as_os_str(),
            rustix::fs::RenameFlags::EXCHANGE,
        )?;
        let b = trace::AtArg(bdir.as_fd(), &bname);
        trace::at("exchange", adir.as_fd(), &aname, format_args!("{b}"));
        Ok(())
    }

    /// Sets owner and permission bits of the directory or regular file `p` (a symlink at `p`
    /// is refused, never followed).
    pub fn set_owner_mode(&self, p: &Path, owner: (u32, u32), mode: u32) -> io::Result<()> {
        let fd = self.open_path(
            p,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK,
            Mode::empty(),
        )?;
        mutating("chown", p)?;
        rustix::fs::fchown(
            &fd,
            Some(rustix::fs::Uid::from_raw(owner.0)),
            Some(rustix::fs::Gid::from_raw(owner.1)),
        )?;
        let (uid, gid) = owner;
        trace::fd("chown", fd.as_fd(), format_args!("\t{uid}\t{gid}"));
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
        trace::fd("chmod", fd.as_fd(), format_args!("\t{mode:o}"));
        Ok(())
    }

    /// The extended attributes of the regular file or directory `p` (not following a final
    /// symlink), name → value, at most `limit` bytes of names and of each value.
    pub fn xattrs(&self, p: &Path, limit: usize) -> io::Result<Vec<(OsString, Vec<u8>)>> {
        let fd = self.open_path(
            p,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK,
            Mode::empty(),
        )?;
        let mut names = vec![0u8; limit];
        let n = match rustix::fs::flistxattr(&fd, &mut names[..]) {
            Ok(n) => n,
            Err(rustix::io::Errno::NOTSUP) => 0,
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for name in names[..n].split(|&b| b == 0).filter(|s| !s.is_empty()) {
            let name = OsStr::from_bytes(name);
            let mut val = vec![0u8; limit];
            let len = rustix::fs::fgetxattr(&fd, name, &mut val[..])?;
            val.truncate(len);
            out.push((name.to_os_string(), val));
        }
        Ok(out)
    }

    /// Sets extended attribute `name` of the regular file or directory `p` (no symlink followed).
    pub fn set_xattr(&self, p: &Path, name: &OsStr, value: &[u8]) -> io::Result<()> {
        let fd = self.open_path(
            p,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK,
            Mode::empty(),
        )?;
        mutating("setxattr", p)?;
        rustix::fs::fsetxattr(&fd, name, value, rustix::fs::XattrFlags::empty())?;
        let (name, len) = (trace::Arg(name.as_bytes()), value.len());
        trace::fd("setxattr", fd.as_fd(), format_args!("{name}\t{len}"));
        Ok(())
    }

    /// Sets access and modification times of `p` (not following a final symlink).
    pub fn set_times(&self, p: &Path, atime: (i64, i64), mtime: (i64, i64)) -> io::Result<()> {
        let (dir, name) = self.parent(p)?;
        mutating("utimensat", p)?;
        let ts = timestamps(atime, mtime);
        rustix::fs::utimensat(&dir, name.as_os_str(), &ts, AtFlags::SYMLINK_NOFOLLOW)?;
        trace::at("utimes", dir.as_fd(), &name, format_args!(""));
        Ok(())
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

/// Whether the open file or directory `fd` lies on a read-only mount.
pub fn on_read_only_mount(fd: impl AsFd) -> bool {
    rustix::fs::fstatvfs(fd).is_ok_and(|s| s.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
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
    /// The file holds more than the caller's maximum: nothing was allocated for it.
    TooLarge,
    Io(rustix::io::Errno),
}

/// Reads an open file whole if it is a regular file of at most `max` bytes. Sized from
/// `fstat`: a file read whole takes one read (a short read after at least the reported size is
/// its end); a file that grows meanwhile is still read to its end, and refused once it passes
/// `max` (so a file whose size the kernel does not report is bounded too).
pub fn read_regular(fd: &OwnedFd, max: u64) -> Result<Vec<u8>, ReadError> {
    let st = rustix::fs::fstat(fd).map_err(ReadError::Io)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(ReadError::NotRegular);
    }
    let reported = u64::try_from(st.st_size).unwrap_or(0);
    if reported > max {
        return Err(ReadError::TooLarge);
    }
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    let size = usize::try_from(reported).unwrap_or(0);
    // One byte more than the limit, so that reading it proves the file is too large.
    let mut buf = vec![0u8; size.saturating_add(1)];
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            let grown =
                (buf.len().saturating_mul(2).saturating_add(4096)).min(max.saturating_add(1));
            if grown <= buf.len() {
                return Err(ReadError::TooLarge);
            }
            buf.resize(grown, 0);
        }
        let want = buf.len() - filled;
        let n = match rustix::io::read(fd, &mut buf[filled..]) {
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(ReadError::Io(e)),
        };
        filled += n;
        if filled > max {
            return Err(ReadError::TooLarge);
        }
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

/// The temporary name next to `name` for a replacement that must converge after a crash:
/// always the same (`.#name.pristine`), so a rerun finds a temporary an aborted run left behind
/// and removes it (see [`remove_tree_at`]) before making it anew.
pub fn stable_temp_name(name: &OsStr) -> OsString {
    let mut s = OsString::from(".#");
    s.push(name);
    s.push(".pristine");
    s
}

/// Removes `name` in the open directory `dir` and, if it is a directory, everything below it,
/// with the rules of [`Root::remove_tree`] (symlinks removed, never followed; nothing on another
/// mount removed). `Ok(false)` if `name` did not exist; `what` names it in errors and fault
/// injection.
pub fn remove_tree_at(dir: &OwnedFd, name: &OsStr, what: &Path) -> io::Result<bool> {
    let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(rustix::io::Errno::NOENT) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    let parent_st = rustix::fs::fstat(dir)?;
    remove_at(dir, name, &st, parent_st.st_dev, what)?;
    Ok(true)
}

/// Creates `name` in the open directory `dir` as a new regular file holding `data`, with `mode`
/// (umask not applied) and `owner`. `O_EXCL | O_NOFOLLOW`: an existing entry is an error, never
/// followed or overwritten. Not atomic and not fsynced: for trees that become visible as a
/// whole later (a staging directory swapped in after a `syncfs`) or that a crash discards
/// anyway (a tmpfs). `what` names the path in errors and fault injection.
pub fn create_new_at(
    dir: impl AsFd,
    name: &OsStr,
    data: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
    what: &Path,
) -> io::Result<()> {
    mutating("create", what)?;
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )?;
    trace::fd("create", fd.as_fd(), format_args!("\t{mode:o}"));
    // A new file already belongs to the caller: no chown for that owner.
    let me = (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    );
    set_new_owner_mode(fd.as_fd(), owner.filter(|o| *o != me), mode, mode)?;
    let len = data.len();
    trace::fd("write", fd.as_fd(), format_args!("\t{len}"));
    std::fs::File::from(fd).write_all(data)
}

/// The process's umask, read once from `/proc/self/status` (a fact about this process, not an
/// input); `None` when it cannot be read.
fn umask() -> Option<u32> {
    static UMASK: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    *UMASK.get_or_init(|| {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let v = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
        u32::from_str_radix(v.trim(), 8).ok()
    })
}

/// Whether a file just created by `openat(O_CREAT, mode)` already has exactly `mode`: no
/// set-ID or sticky bit (the kernel may strip those, a chown clears them) and nothing the umask
/// took away. Then the `fchmod` after the create can be left out.
pub(crate) fn created_with_mode(mode: u32) -> bool {
    mode & 0o7000 == 0 && umask().is_some_and(|u| mode & u == 0)
}

/// Gives a file just created with permission bits `created` its `owner` and `mode`: the owner
/// first (a chown clears set-ID bits that the mode then sets), the chmod only when it changes
/// something ([`created_with_mode`]).
pub(crate) fn set_new_owner_mode(
    fd: BorrowedFd<'_>,
    owner: Option<(u32, u32)>,
    created: u32,
    mode: u32,
) -> io::Result<()> {
    if let Some((uid, gid)) = owner {
        rustix::fs::fchown(
            fd,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
        )?;
        trace::fd("chown", fd, format_args!("\t{uid}\t{gid}"));
    }
    if created != mode || !created_with_mode(mode) {
        rustix::fs::fchmod(fd, Mode::from_raw_mode(mode))?;
        trace::fd("chmod", fd, format_args!("\t{mode:o}"));
    }
    Ok(())
}

/// [`Root::write_atomic`] on an already open directory: a one-file [`Txn`]. `what` names the
/// path in errors and fault injection; `durable` fsyncs the file and the directory.
pub fn write_atomic_at(
    dir: &OwnedFd,
    name: &OsStr,
    data: &[u8],
    opts: &WriteOptions,
    what: &Path,
    durable: bool,
) -> io::Result<()> {
    let mut t = Txn::new(durable);
    let d = t.dir(dir.as_fd());
    t.file(d, name, data, opts, what)?;
    t.commit_io()
}

fn mount_point_error(what: &Path) -> io::Error {
    io::Error::other(format!("{} is a mount point, not removed", what.display()))
}

/// Removes `name` in `dir` (whose `lstat` is `st`) and, if it is a directory, everything below
/// it, never following a symlink and never entering another mount (`dev` is the device of the
/// tree being removed).
fn remove_at(dir: &OwnedFd, name: &OsStr, st: &Stat, dev: u64, what: &Path) -> io::Result<()> {
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        mutating("unlink", what)?;
        rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
        trace::at("unlink", dir.as_fd(), name, format_args!(""));
        return Ok(());
    }
    if st.st_dev != dev {
        return Err(mount_point_error(what));
    }
    let child = open_dir_nofollow(dir, name)?;
    if is_mount_point(&child, dir, name)? {
        return Err(mount_point_error(what));
    }
    remove_children(child, dev, what)?;
    mutating("rmdir", what)?;
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?;
    trace::at("rmdir", dir.as_fd(), name, format_args!(""));
    Ok(())
}

/// The removal as a [`climb::Climber`]: in each directory it removes every non-directory and
/// leaves the subdirectories to the walk, removing each once the walk climbs back out of it.
/// Errors are kept (the first is returned) and the removal goes on.
struct Remover {
    first_err: Option<io::Error>,
}

impl climb::Climber for Remover {
    fn enter(&mut self, fd: BorrowedFd<'_>, path: &Path) -> io::Result<Vec<climb::Sub>> {
        let mut names = Vec::new();
        for_each_entry(fd, |name, ft| {
            names.push((OsStr::from_bytes(name).to_os_string(), ft));
        })?;
        let mut dirs = Vec::new();
        for (name, ft) in names {
            let ft = if ft == FileType::Unknown {
                match rustix::fs::statat(fd, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) => FileType::from_raw_mode(st.st_mode),
                    Err(rustix::io::Errno::NOENT) => continue,
                    Err(e) => {
                        self.first_err.get_or_insert(e.into());
                        continue;
                    }
                }
            } else {
                ft
            };
            if ft == FileType::Directory {
                dirs.push(climb::Sub { name, ident: None });
                continue;
            }
            fault::mutating_lazy("unlink", || path.join(&name))?;
            match rustix::fs::unlinkat(fd, name.as_os_str(), AtFlags::empty()) {
                Ok(()) | Err(rustix::io::Errno::NOENT) => {}
                Err(e) => {
                    self.first_err.get_or_insert(e.into());
                }
            }
        }
        // Directories in name order.
        dirs.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(dirs)
    }

    fn leave(&mut self, parent: BorrowedFd<'_>, name: &OsStr, path: &Path) -> io::Result<()> {
        fault::mutating_lazy("rmdir", || path.to_path_buf())?;
        match rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(e) => {
                // Not empty: something below could not be removed, already reported.
                self.first_err.get_or_insert(e.into());
            }
        }
        Ok(())
    }

    fn mount_point(&mut self, path: &Path) {
        self.first_err.get_or_insert(mount_point_error(path));
    }

    fn error(&mut self, _path: &Path, e: io::Error) {
        self.first_err.get_or_insert(e);
    }
}

/// Removes everything inside the open directory `fd` (`what` in messages), depth first on the
/// one walker ([`climb`]): symlinks are removed, never followed; mount points are left with
/// everything on them, reported as the first error after everything else is removed.
fn remove_children(fd: OwnedFd, dev: u64, what: &Path) -> io::Result<()> {
    let mut r = Remover { first_err: None };
    climb::climb(fd, dev, what, &mut r)?;
    match r.first_err {
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
    fn chmod_after_create_is_left_out_only_when_the_mode_is_exact() {
        let u = umask().expect("umask in /proc/self/status");
        assert_eq!(created_with_mode(0o644), u & 0o644 == 0);
        assert!(
            !created_with_mode(0o4755),
            "set-ID bits always take a chmod"
        );
        assert!(
            !created_with_mode(0o1777),
            "sticky bit always takes a chmod"
        );
        if u & 0o022 != 0 {
            assert!(!created_with_mode(0o666));
        }
        // And the file really gets the mode either way.
        let t = std::env::temp_dir().join(format!("pristine-cwm-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&t);
        std::fs::create_dir_all(&t).unwrap();
        let dir = std::fs::File::open(&t).unwrap();
        for (k, mode) in [0o644, 0o666, 0o600, 0o2755].into_iter().enumerate() {
            let name = format!("f{k}");
            create_new_at(&dir, OsStr::new(&name), b"x", mode, None, Path::new(&name)).unwrap();
            let m =
                std::os::unix::fs::MetadataExt::mode(&std::fs::metadata(t.join(&name)).unwrap());
            assert_eq!(m & 0o7777, mode, "{name}");
        }
        std::fs::remove_dir_all(&t).unwrap();
    }

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
    fn strict_handles_follow_no_link_with_either_resolver() {
        let d = crate::util::test_dir("fs-strict");
        std::fs::create_dir_all(d.join("usr/lib")).unwrap();
        std::fs::write(d.join("usr/lib/f"), "vendor").unwrap();
        std::os::unix::fs::symlink("usr", d.join("var")).unwrap();
        std::os::unix::fs::symlink("/usr/lib", d.join("usr/l")).unwrap();
        for resolver in [Resolver::Openat2, Resolver::Manual] {
            if resolver == Resolver::Openat2 && !chase::openat2_works() {
                continue;
            }
            let root = Root::open_with(&d, resolver).unwrap().strict().unwrap();
            assert!(root.is_strict());
            let eloop = Some(rustix::io::Errno::LOOP.raw_os_error());
            for p in ["/var/lib/f", "/usr/l/f", "/var/lib"] {
                let e = root.file_type(Path::new(p)).unwrap_err();
                assert_eq!(e.raw_os_error(), eloop, "{resolver:?} {p}");
                let e = root.remove_tree(Path::new(p)).unwrap_err();
                assert_eq!(e.raw_os_error(), eloop, "{resolver:?} {p}");
            }
            assert!(root.read_dir(Path::new("/var")).is_err(), "{resolver:?}");
            // A final link is seen, moved and removed as itself.
            let ft = root.file_type(Path::new("/var")).unwrap();
            assert_eq!(ft, Some(FileType::Symlink), "{resolver:?}");
            root.rename(Path::new("/var"), Path::new("/var2")).unwrap();
            assert!(root.remove_tree(Path::new("/var2")).unwrap());
            std::os::unix::fs::symlink("usr", d.join("var")).unwrap();
            assert_eq!(
                std::fs::read_to_string(d.join("usr/lib/f")).unwrap(),
                "vendor"
            );
            // The same paths through a normal handle follow the links.
            let plain = Root::open_with(&d, resolver).unwrap();
            let ft = plain.file_type(Path::new("/var/lib/f")).unwrap();
            assert_eq!(ft, Some(FileType::RegularFile), "{resolver:?}");
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn remove_tree_goes_deep_without_following_links() {
        let d = crate::util::test_dir("fs-deep");
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let mut cur = rustix::fs::open(&d, flags, Mode::empty()).unwrap();
        for _ in 0..1000 {
            rustix::fs::mkdirat(&cur, "d", Mode::from_raw_mode(0o755)).unwrap();
            rustix::fs::symlinkat("/", &cur, "up").unwrap();
            cur = rustix::fs::openat(&cur, "d", flags, Mode::empty()).unwrap();
        }
        drop(cur);
        let root = Root::open(&d).unwrap();
        assert!(root.remove_tree(Path::new("/d")).unwrap());
        assert!(root
            .read_dir(Path::new("/"))
            .unwrap()
            .iter()
            .map(|e| &e.name)
            .eq(["up"]));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn read_regular_reads_whole_files_of_any_size() {
        let d = crate::util::test_dir("fs-read");
        for size in [0usize, 1, 4095, 4096, 4097, 100_000] {
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let p = d.join(format!("f{size}"));
            std::fs::write(&p, &data).unwrap();
            let fd = rustix::fs::open(&p, OFlags::RDONLY, Mode::empty()).unwrap();
            assert_eq!(read_regular(&fd, 100_000).unwrap(), data, "size {size}");
            let fd = rustix::fs::open(&p, OFlags::RDONLY, Mode::empty()).unwrap();
            let small = read_regular(&fd, 4096);
            assert_eq!(small.is_ok(), size <= 4096, "size {size} against 4096");
        }
        let fd = rustix::fs::open(&d, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        assert!(matches!(read_regular(&fd, 1), Err(ReadError::NotRegular)));
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
