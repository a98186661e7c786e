//! Mounts for the mode: `stateless` puts tmpfs on the target's /etc and /var, `volatile` on
//! /var; `overlay` is systemd-volatile-root's job and `stateful` needs nothing. A directory that
//! already is a tmpfs mount point (systemd-volatile-root or a previous run did it) is left
//! alone. Mounts are made with the fd-based mount API (`fsopen`/`fsmount`/`move_mount`) on a
//! directory opened through the root handle, so the target path is never re-resolved on the host.

use std::io;
use std::path::Path;

use rustix::fs::{Mode, OFlags};
use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags};

use crate::config::Mode as RunMode;
use crate::fs::Root;

const TMPFS_MAGIC: i64 = 0x0102_1994;

/// The directories a mode puts on tmpfs.
pub fn tmpfs_dirs(mode: RunMode) -> &'static [&'static str] {
    match mode {
        RunMode::Stateless => &["/etc", "/var"],
        RunMode::Volatile => &["/var"],
        RunMode::Stateful | RunMode::Overlay => &[],
    }
}

/// Whether `dir` already is a tmpfs mount point.
pub fn is_tmpfs_mount(root: &Root, dir: &Path) -> io::Result<bool> {
    let fd = root.open_dir(dir)?;
    let parent = root.open_path(
        &dir.join(".."),
        OFlags::RDONLY | OFlags::DIRECTORY,
        Mode::empty(),
    )?;
    let fs = rustix::fs::fstatfs(&fd)?;
    Ok(
        crate::fs::is_mount_point(&fd, &parent, dir.as_os_str())?
            && fs.f_type as i64 == TMPFS_MAGIC,
    )
}

/// Mounts a fresh tmpfs (mode 0755) on `dir` inside the root, creating `dir` if needed.
pub fn mount_tmpfs(root: &Root, dir: &Path) -> io::Result<()> {
    root.mkdir_all(dir, 0o755)?;
    let target = root.open_path(dir, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())?;
    crate::fs::mutating("mount", dir)?;
    let fs = rustix::mount::fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC)?;
    rustix::mount::fsconfig_set_string(&fs, "mode", "0755")?;
    rustix::mount::fsconfig_create(&fs)?;
    let mnt = rustix::mount::fsmount(
        &fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_NODEV,
    )?;
    rustix::mount::move_mount(
        &mnt,
        "",
        &target,
        "",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )?;
    Ok(())
}
