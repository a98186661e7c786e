//! Where one run's update state and slots are: `[update] state-dir` and `slots` checked and
//! resolved for the root the run works on.
//!
//! The state directory always lies inside that root (an offline `--root` run keeps its state
//! in the tree, never in the host's `/var/lib/pristine/update`); it is created through the
//! root handle, and the host path handed on must name the same directory as the in-root
//! resolution (a symlink in the tree pointing out of it is refused). Slots are resolved inside
//! the root too, except block devices under `/dev/` when the run is the running system or its
//! initrd (the caller says so): those are the host's devices. A slot must be a block device or
//! a regular file (two slots naming one file are caught where the identity of the opened
//! slots is checked, in `fetch`). Must never create or open anything for writing except the state directory.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{Mode, OFlags};

use crate::config::UpdateSettings;
use crate::error::{Error, IoContext, Result};
use crate::fs::Root;

/// In-root prefixes no state directory or slot may lie under.
const FORBIDDEN: [&str; 4] = ["/proc", "/sys", "/usr", "/run/pristine"];

/// Checks an absolute, normalized path (no `.`, `..` or empty components).
fn plain_absolute(what: &str, p: &str) -> Result<()> {
    let bad = |why: String| Error::msg(format!("use [update] {what}"), why);
    let path = Path::new(p);
    let ok = path.is_absolute()
        && p.len() > 1
        && !p.ends_with('/')
        && !p.contains("//")
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if !ok {
        return Err(bad(format!(
            "'{p}' must be an absolute path without '.' or '..' components"
        )));
    }
    if let Some(f) = FORBIDDEN.iter().find(|f| path.starts_with(f)) {
        return Err(bad(format!("'{p}' may not lie under {f}")));
    }
    Ok(())
}

/// The host path of in-root `p`, after checking that resolving it inside the root and on the
/// host reach the same file (so nothing on the way leads out of the root).
fn confined(root: &Root, p: &str) -> Result<Option<(PathBuf, rustix::fs::Stat)>> {
    // Opened below only after its identity matched the in-root resolution.
    let host = root.host().join(crate::fs::relative(Path::new(p)));
    let fd = match root.open_path(Path::new(p), OFlags::PATH, Mode::empty()) {
        Ok(fd) => fd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("open", &host, e)),
    };
    let inner = rustix::fs::fstat(&fd)
        .map_err(std::io::Error::from)
        .op("stat", &host)?;
    let outer = std::fs::metadata(&host).ok();
    if outer.is_none_or(|o| (o.dev(), o.ino()) != (inner.st_dev, inner.st_ino)) {
        return Err(Error::invalid(
            "resolve",
            &host,
            format!(
                "leads out of the root {} (through a symlink), refusing it",
                root.host().display()
            ),
        ));
    }
    Ok(Some((host, inner)))
}

/// Settings with `state_dir` and `slots` replaced by checked host paths. `host_devices`: slots
/// under `/dev/` are the host's (the running system or its initrd). `create`: make the state
/// directory (inside the root) when missing.
pub fn resolve(
    root: &Root,
    settings: &UpdateSettings,
    host_devices: bool,
    create: bool,
) -> Result<UpdateSettings> {
    let mut out = settings.clone();
    plain_absolute("state-dir", &settings.state_dir)?;
    if Path::new(&settings.state_dir).starts_with("/dev") {
        return Err(Error::msg(
            "use [update] state-dir",
            format!("'{}' may not lie under /dev", settings.state_dir),
        ));
    }
    if create {
        root.mkdir_all(Path::new(&settings.state_dir), 0o700).op(
            "create directory",
            root.display_path(Path::new(&settings.state_dir)),
        )?;
    }
    out.state_dir = match confined(root, &settings.state_dir)? {
        Some((host, st)) if rustix::fs::FileType::from_raw_mode(st.st_mode).is_dir() => host,
        Some((host, _)) => {
            return Err(Error::invalid(
                "use state directory",
                host,
                "not a directory",
            ))
        }
        None => root.display_path(Path::new(&settings.state_dir)),
    }
    .to_string_lossy()
    .into_owned();
    out.slots.clear();
    for s in &settings.slots {
        plain_absolute("slot", s)?;
        if Path::new(s).starts_with(&settings.state_dir) {
            return Err(Error::msg(
                "use [update] slot",
                format!("'{s}' lies in the state directory"),
            ));
        }
        let host = if host_devices && s.starts_with("/dev/") {
            let md = std::fs::metadata(s).op("stat slot", s)?;
            if !std::os::unix::fs::FileTypeExt::is_block_device(&md.file_type()) {
                return Err(Error::invalid("use slot", s, "not a block device"));
            }
            PathBuf::from(s)
        } else {
            let (host, st) = confined(root, s)?.ok_or_else(|| {
                Error::invalid(
                    "use slot",
                    root.display_path(Path::new(s)),
                    "no such file inside the root",
                )
            })?;
            let ft = rustix::fs::FileType::from_raw_mode(st.st_mode);
            if !matches!(
                ft,
                rustix::fs::FileType::RegularFile | rustix::fs::FileType::BlockDevice
            ) {
                return Err(Error::invalid(
                    "use slot",
                    host,
                    "not a regular file or block device",
                ));
            }
            host
        };
        out.slots.push(host.to_string_lossy().into_owned());
    }
    Ok(out)
}
