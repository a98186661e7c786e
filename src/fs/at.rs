//! The fd-relative mutations, each one a fault-injection point.
//!
//! Engines that hold a directory descriptor they opened safely (through [`Root`](super::Root),
//! [`Root::chase_safe`](super::Root::chase_safe) or a walk) mutate its entries with these
//! functions and never call the `rustix::fs` mutators themselves: `clippy.toml` refuses those
//! outside `src/fs`. None of them follows a symlink in `name` (a name is one component); the ones
//! that act on an inode take a descriptor of it.
//!
//! `what` is only for the fault-injection message and is built lazily.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::PathBuf;

use rustix::fs::{AtFlags, FileType, Mode, RenameFlags};

use super::fault::mutating_lazy;
use super::fault::trace::{self, Arg, AtArg};

fn shown(name: &OsStr) -> impl FnOnce() -> PathBuf + '_ {
    move || PathBuf::from(name)
}

/// `mkdirat(dir, name, mode)`.
pub fn mkdir(dir: impl AsFd, name: &OsStr, mode: u32) -> io::Result<()> {
    mutating_lazy("mkdir", shown(name))?;
    rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(mode))?;
    trace::at("mkdir", dir.as_fd(), name, format_args!("\t{mode:o}"));
    Ok(())
}

/// `unlinkat(dir, name, 0)`: removes a non-directory (a symlink itself, never its target).
pub fn unlink(dir: impl AsFd, name: &OsStr) -> io::Result<()> {
    mutating_lazy("unlink", shown(name))?;
    rustix::fs::unlinkat(&dir, name, AtFlags::empty())?;
    trace::at("unlink", dir.as_fd(), name, format_args!(""));
    Ok(())
}

/// `unlinkat(dir, name, AT_REMOVEDIR)`: removes an empty directory.
pub fn rmdir(dir: impl AsFd, name: &OsStr) -> io::Result<()> {
    mutating_lazy("rmdir", shown(name))?;
    rustix::fs::unlinkat(&dir, name, AtFlags::REMOVEDIR)?;
    trace::at("rmdir", dir.as_fd(), name, format_args!(""));
    Ok(())
}

/// Removes a temporary entry after a failed commit; errors are ignored (it may not exist),
/// and it is not a fault point (it only ever undoes).
pub fn discard(dir: impl AsFd, name: &OsStr) {
    let _ = rustix::fs::unlinkat(dir, name, AtFlags::empty());
}

/// `symlinkat(target, dir, name)`.
pub fn symlink(target: impl AsRef<OsStr>, dir: impl AsFd, name: &OsStr) -> io::Result<()> {
    mutating_lazy("symlink", shown(name))?;
    rustix::fs::symlinkat(target.as_ref(), &dir, name)?;
    let target = Arg(target.as_ref().as_bytes());
    trace::at("symlink", dir.as_fd(), name, format_args!("{target}"));
    Ok(())
}

/// `renameat(from_dir, from, to_dir, to)`: replaces `to` atomically.
pub fn rename(from_dir: impl AsFd, from: &OsStr, to_dir: impl AsFd, to: &OsStr) -> io::Result<()> {
    mutating_lazy("rename", shown(to))?;
    rustix::fs::renameat(&from_dir, from, &to_dir, to)?;
    let to = AtArg(to_dir.as_fd(), to);
    trace::at("rename", from_dir.as_fd(), from, format_args!("{to}"));
    Ok(())
}

/// `renameat2(…, RENAME_NOREPLACE)`: fails with `EEXIST` instead of replacing.
pub fn rename_noreplace(
    from_dir: impl AsFd,
    from: &OsStr,
    to_dir: impl AsFd,
    to: &OsStr,
) -> io::Result<()> {
    mutating_lazy("rename", shown(to))?;
    rustix::fs::renameat_with(&from_dir, from, &to_dir, to, RenameFlags::NOREPLACE)?;
    let to = AtArg(to_dir.as_fd(), to);
    trace::at(
        "rename_noreplace",
        from_dir.as_fd(),
        from,
        format_args!("{to}"),
    );
    Ok(())
}

/// `renameat2(…, RENAME_EXCHANGE)`: swaps two entries atomically.
pub fn exchange(a_dir: impl AsFd, a: &OsStr, b_dir: impl AsFd, b: &OsStr) -> io::Result<()> {
    mutating_lazy("exchange", shown(b))?;
    rustix::fs::renameat_with(&a_dir, a, &b_dir, b, RenameFlags::EXCHANGE)?;
    let b = AtArg(b_dir.as_fd(), b);
    trace::at("exchange", a_dir.as_fd(), a, format_args!("{b}"));
    Ok(())
}

/// `mknodat(dir, name, kind, mode, dev)` for FIFOs, sockets and device nodes.
pub fn mknod(
    dir: impl AsFd,
    name: &OsStr,
    kind: FileType,
    mode: u32,
    dev: (u32, u32),
) -> io::Result<()> {
    mutating_lazy("mknod", shown(name))?;
    rustix::fs::mknodat(
        &dir,
        name,
        kind,
        Mode::from_raw_mode(mode),
        rustix::fs::makedev(dev.0, dev.1),
    )?;
    let kind = kind.as_raw_mode();
    let (major, minor) = dev;
    trace::at(
        "mknod",
        dir.as_fd(),
        name,
        format_args!("\t{kind:o}\t{mode:o}\t{major}\t{minor}"),
    );
    Ok(())
}

/// `fchmod(fd, mode)` of an open (not `O_PATH`) descriptor.
pub fn fchmod(fd: impl AsFd, mode: u32) -> io::Result<()> {
    mutating_lazy("chmod", || PathBuf::from("(fd)"))?;
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
    trace::fd("chmod", fd.as_fd(), format_args!("\t{mode:o}"));
    Ok(())
}

/// `fchown(fd, uid, gid)` of an open descriptor; `None` leaves that ID alone.
pub fn fchown(fd: impl AsFd, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
    mutating_lazy("chown", || PathBuf::from("(fd)"))?;
    rustix::fs::fchown(
        &fd,
        uid.map(rustix::fs::Uid::from_raw),
        gid.map(rustix::fs::Gid::from_raw),
    )?;
    let (u, g) = trace::owner(uid, gid);
    trace::fd("chown", fd.as_fd(), format_args!("\t{u}\t{g}"));
    Ok(())
}

/// `fchownat(dir, name, uid, gid, AT_SYMLINK_NOFOLLOW)`: the entry itself, a symlink included.
pub fn lchown(dir: impl AsFd, name: &OsStr, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
    mutating_lazy("chown", shown(name))?;
    rustix::fs::chownat(
        &dir,
        name,
        uid.map(rustix::fs::Uid::from_raw),
        gid.map(rustix::fs::Gid::from_raw),
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    let (u, g) = trace::owner(uid, gid);
    trace::at("lchown", dir.as_fd(), name, format_args!("\t{u}\t{g}"));
    Ok(())
}

/// `ftruncate(fd, len)`.
pub fn truncate(fd: impl AsFd, len: u64) -> io::Result<()> {
    mutating_lazy("truncate", || PathBuf::from("(fd)"))?;
    rustix::fs::ftruncate(&fd, len)?;
    trace::fd("truncate", fd.as_fd(), format_args!("\t{len}"));
    Ok(())
}

/// `fsetxattr(fd, name, value, 0)` of an open descriptor.
pub fn set_xattr(fd: impl AsFd, name: &OsStr, value: &[u8]) -> io::Result<()> {
    mutating_lazy("setxattr", shown(name))?;
    rustix::fs::fsetxattr(&fd, name, value, rustix::fs::XattrFlags::empty())?;
    let (name, len) = (Arg(name.as_bytes()), value.len());
    trace::fd("setxattr", fd.as_fd(), format_args!("{name}\t{len}"));
    Ok(())
}

/// `setxattr` through `/proc/self/fd/N` of an `O_PATH` descriptor (the only way to set an
/// xattr or ACL on an inode opened without read access; never a symlink: callers check).
pub fn set_xattr_opath(fd: impl AsFd, name: &OsStr, value: &[u8]) -> io::Result<()> {
    mutating_lazy("setxattr", shown(name))?;
    rustix::fs::setxattr(
        super::safe::proc_fd_path(&fd).as_str(),
        name,
        value,
        rustix::fs::XattrFlags::empty(),
    )?;
    let (name, len) = (Arg(name.as_bytes()), value.len());
    trace::fd("setxattr", fd.as_fd(), format_args!("{name}\t{len}"));
    Ok(())
}

/// `fsync(fd)` (durability, not a fault point: it changes no content).
pub fn fsync(fd: impl AsFd) -> io::Result<()> {
    rustix::fs::fsync(&fd)?;
    trace::fd("fsync", fd.as_fd(), format_args!(""));
    Ok(())
}

/// Creates `name` exclusively (`O_CREAT|O_EXCL|O_NOFOLLOW`) for writing.
pub fn create_new(dir: impl AsFd, name: &OsStr, mode: u32) -> io::Result<OwnedFd> {
    mutating_lazy("create", shown(name))?;
    let fd = rustix::fs::openat(
        &dir,
        name,
        rustix::fs::OFlags::WRONLY
            | rustix::fs::OFlags::CREATE
            | rustix::fs::OFlags::EXCL
            | rustix::fs::OFlags::NOFOLLOW
            | rustix::fs::OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )?;
    trace::at("create", dir.as_fd(), name, format_args!("\t{mode:o}"));
    Ok(fd)
}

/// `ioctl(fd, FS_IOC_SETFLAGS, flags)`: the inode flags `chattr` sets, on a descriptor opened
/// for reading.
pub fn set_flags(fd: impl AsFd, flags: u32) -> io::Result<()> {
    mutating_lazy("chattr", || PathBuf::from("(fd)"))?;
    Ok(rustix::fs::ioctl_setflags(
        fd,
        rustix::fs::IFlags::from_bits_retain(flags),
    )?)
}

/// `futimens(fd, {atime, mtime})`, both in nanoseconds since the epoch.
pub fn set_times(fd: impl AsFd, atime_ns: u64, mtime_ns: u64) -> io::Result<()> {
    mutating_lazy("utimens", || PathBuf::from("(fd)"))?;
    let ts = |ns: u64| rustix::fs::Timespec {
        tv_sec: (ns / 1_000_000_000) as _,
        tv_nsec: (ns % 1_000_000_000) as _,
    };
    Ok(rustix::fs::futimens(
        fd,
        &rustix::fs::Timestamps {
            last_access: ts(atime_ns),
            last_modification: ts(mtime_ns),
        },
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    #[test]
    fn mutations_act_on_names_and_never_follow() {
        let t = std::env::temp_dir().join(format!("pristine-at-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&t);
        std::fs::create_dir_all(&t).unwrap();
        let dir = std::fs::File::open(&t).unwrap();
        mkdir(&dir, OsStr::new("d"), 0o700).unwrap();
        assert_eq!(
            std::fs::metadata(t.join("d")).unwrap().mode() & 0o777,
            0o700
        );
        symlink("/nonexistent", &dir, OsStr::new("l")).unwrap();
        // A symlink is removed as itself.
        unlink(&dir, OsStr::new("l")).unwrap();
        assert!(std::fs::symlink_metadata(t.join("l")).is_err());
        let f = create_new(&dir, OsStr::new("f"), 0o600).unwrap();
        assert_eq!(
            create_new(&dir, OsStr::new("f"), 0o600).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        fchmod(&f, 0o640).unwrap();
        truncate(&f, 10).unwrap();
        assert_eq!(std::fs::metadata(t.join("f")).unwrap().len(), 10);
        exchange(&dir, OsStr::new("f"), &dir, OsStr::new("d")).unwrap();
        assert!(std::fs::metadata(t.join("f")).unwrap().is_dir());
        assert_eq!(
            rename_noreplace(&dir, OsStr::new("f"), &dir, OsStr::new("d"))
                .unwrap_err()
                .kind(),
            io::ErrorKind::AlreadyExists
        );
        rmdir(&dir, OsStr::new("f")).unwrap();
        rename(&dir, OsStr::new("d"), &dir, OsStr::new("g")).unwrap();
        assert_eq!(std::fs::metadata(t.join("g")).unwrap().len(), 10);
        std::fs::remove_dir_all(&t).unwrap();
    }
}
