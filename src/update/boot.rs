//! The boot step, run in the initrd before `/usr` is used: choose the slot, spend the pending
//! slot's try (saved before anything of the slot is read), verify a pending slot's content
//! before its first use, and optionally mount it read-only (through dm-verity when the signed
//! manifest carried a root hash).
//!
//! Crash safety: the only writes are atomic replacements of the state file, in this order:
//! (1) the decision with the try spent, (2) either "checked", or "bad" after a failed
//! verification followed by the new decision. A
//! power cut after (1) counts as a failed try; one before (1) did not spend it. When the state
//! cannot be written, a pending slot is never booted (its try could not be counted): the last
//! good slot is. Must never write to a slot, and never mount one writable — except that an
//! `incomplete` slot is completed, before the choice, by an ordinary [`fetch`] from the local
//! `[update] boot-source` (with the fetch's own guarantees: never the active slot, every chunk
//! checked before it is written, the state record last).

use std::fs::File;
use std::os::unix::fs::FileTypeExt as _;
use std::path::{Path, PathBuf};

use super::state::{self, boot_select, BootDecision, SlotRecord, SlotStatus, State, StateDir};
use super::{fetch, verity, FetchOptions, FetchReport};
use crate::config::UpdateSettings;
use crate::error::{Error, IoContext, Result};
use crate::fs::Root;

/// Name of the dm-verity mapping pristine creates for the booted `/usr`.
pub const VERITY_NAME: &str = "pristine-usr";

/// Checks a slot's content against what the signed manifest said: the dm-verity tree and root
/// hash if it has one, else the whole-image SHA-256.
pub fn check_slot(path: &str, r: &SlotRecord) -> Result<()> {
    let bad = |why| Error::invalid("verify", path, why);
    let f = File::open(path).op("open", path)?;
    if let Some(v) = &r.verity {
        v.check(r.image_size).map_err(|e| e.at(path))?;
        let root = v
            .root()
            .ok_or_else(|| bad("bad verity root hash in the state"))?;
        return verity::verify(&f, Path::new(path), v.data_size, &root).map(|_| ());
    }
    let want = r
        .image_digest
        .as_deref()
        .ok_or_else(|| bad("no image digest recorded for it"))?;
    let got = super::fetch::image_digest(&f, r.image_size).op("read", path)?;
    if got != want {
        return Err(bad("content does not match the manifest's image digest"));
    }
    Ok(())
}

/// The last good slot of `st`, ignoring anything pending.
fn good_slot(st: &State) -> Option<usize> {
    st.last_good
        .filter(|&g| st.slot(g).status == SlotStatus::Good)
        .or_else(|| (0..st.slots.len()).find(|&i| st.slots[i].status == SlotStatus::Good))
}

/// The boot decision with its side effects on the state directory (see the module docs).
/// `settings` are resolved (host paths). Returns the decision and the chosen slot's path.
pub fn choose(settings: &UpdateSettings) -> Result<(BootDecision, String)> {
    let sd = StateDir::open(Path::new(&settings.state_dir), false)?;
    let mut st = sd.load()?;
    st.fit(settings.slots.len());
    let path_of = |i: usize| {
        settings
            .slots
            .get(i)
            .cloned()
            .ok_or_else(|| Error::msg("choose a slot", format!("slot {i} is not configured")))
    };
    loop {
        let before = st.clone();
        let d = boot_select(&mut st)
            .ok_or_else(|| Error::msg("choose a slot", "no bootable slot recorded"))?;
        let pending = before.slot(d.slot).status == SlotStatus::Pending;
        if let Err(e) = sd.save(&st) {
            if !pending {
                log::warn!("{e}; booting slot {} anyway", d.slot);
                return Ok((d.clone(), path_of(d.slot)?));
            }
            let g = good_slot(&before).ok_or_else(|| {
                Error::msg(
                    "choose a slot",
                    format!(
                        "{e}; cannot count the pending slot's try and no good slot is recorded"
                    ),
                )
            })?;
            let reason = format!(
                "{e}; cannot count the try of pending slot {}, booting good slot {g} instead",
                d.slot
            );
            log::error!("{reason}");
            return Ok((BootDecision { slot: g, reason }, path_of(g)?));
        }
        let rec = st.slot(d.slot);
        if rec.status == SlotStatus::Pending && !rec.checked {
            let path = path_of(d.slot)?;
            match check_slot(&path, &rec) {
                Ok(()) => {
                    st.slots[d.slot].checked = true;
                    if let Err(e) = sd.save(&st) {
                        log::warn!("{e} (slot {} will be checked again)", d.slot);
                    }
                }
                Err(e) => {
                    let why = format!(
                        "failed verification before its first boot (version {}): {e}",
                        rec.version.as_deref().unwrap_or("?")
                    );
                    log::error!("Slot {}: {why}", d.slot);
                    state::mark_bad(&mut st, d.slot, why);
                    if let Err(e) = sd.save(&st) {
                        log::warn!("{e} (slot {} will be checked again)", d.slot);
                    }
                    continue;
                }
            }
        }
        if d.reason.contains("reverted") {
            log::warn!("{}", d.reason);
        } else {
            log::info!("{}", d.reason);
        }
        return Ok((d.clone(), path_of(d.slot)?));
    }
}

/// Where a `boot-source` on a block device is mounted (read-only) while it is read.
const BOOT_SOURCE_MOUNT: &str = "/run/pristine/boot-source";

/// How long a `boot-source` device may take to appear (udev in the initrd) before the
/// incomplete slot is skipped for this boot.
const BOOT_SOURCE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Completes an `incomplete` slot (an interrupted fetch) from the local `[update] boot-source`
/// before the slot choice, so it can be verified and booted like any pending slot. A seeded
/// fetch: the good slot and what the interrupted fetch already wrote are reused, the rest
/// comes from the source, and the manifest's signature is checked against the keys of
/// `keys_root` (in the initrd: the initrd's own copy, `/sysroot/usr` is not mounted yet).
/// Returns `Ok(None)` when there is nothing to do (no incomplete slot or no source); an error
/// leaves the slot incomplete, and the boot goes on with the slots as they are.
///
/// `boot-source` is a published update directory inside `root`, or `DEVICE:PATH` with a
/// block device under `/dev/` (mounted read-only at `/run/pristine/boot-source` while it is
/// read; waited for a few seconds, then skipped) and the directory's path on it.
pub fn complete_incomplete(
    root: &Root,
    keys_root: &Root,
    settings: &UpdateSettings,
) -> Result<Option<FetchReport>> {
    let Some(spec) = settings.boot_source.as_deref().filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let Ok(sd) = StateDir::open(Path::new(&settings.state_dir), false) else {
        return Ok(None);
    };
    let st = sd.load()?;
    let Some(i) = st
        .slots
        .iter()
        .position(|r| r.status == SlotStatus::Incomplete)
    else {
        return Ok(None);
    };
    log::info!("Slot {i} is incomplete; completing it from {spec}.");
    // `_held` keeps an in-root source's directory open while the fetch reads through it.
    let (dir, mounted, _held) = match spec.split_once(':').filter(|(d, _)| d.starts_with("/dev/")) {
        Some((dev, path)) => {
            let target = Path::new(BOOT_SOURCE_MOUNT);
            mount_source(dev, target)?;
            let dir = target.join(crate::fs::relative(Path::new(path)));
            (dir, Some(target), None)
        }
        // Inside the root, resolved through the root handle (a symlink cannot lead out of it)
        // and read through that descriptor; what is read is checked against the signed
        // manifest.
        None => {
            let fd = root
                .open_dir(Path::new(spec))
                .op("open boot source", spec)?;
            let dir = PathBuf::from(crate::fs::safe::proc_fd_path(&fd));
            (dir, None, Some(fd))
        }
    };
    let opts = FetchOptions {
        source: dir.to_string_lossy().into_owned(),
        ..FetchOptions::default()
    };
    let r = fetch(keys_root, settings, &opts).map_err(Error::from);
    if let Some(t) = mounted {
        if let Err(e) = rustix::mount::unmount(t, rustix::mount::UnmountFlags::DETACH) {
            log::warn!("{}: unmounting: {e}", t.display());
        }
    }
    r.map(Some)
}

/// Mounts the block device `dev` read-only at `target`, waiting for it a few seconds.
fn mount_source(dev: &str, target: &Path) -> Result<()> {
    let start = std::time::Instant::now();
    while !Path::new(dev).exists() {
        if start.elapsed() > BOOT_SOURCE_WAIT {
            return Err(Error::io(
                "wait for boot source",
                dev,
                std::io::ErrorKind::NotFound.into(),
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::fs::create_dir_all(target).op("create directory", target)?;
    let mut errs = Vec::new();
    for t in known_types(&SOURCE_FS_TYPES) {
        let flags = rustix::mount::MountFlags::RDONLY | rustix::mount::MountFlags::NOSUID;
        match rustix::mount::mount(
            dev,
            target,
            t,
            flags | rustix::mount::MountFlags::NODEV,
            None,
        ) {
            Ok(()) => return Ok(()),
            Err(e) => errs.push((t, e)),
        }
    }
    Err(mount_error(dev, target, errs))
}

/// The error of a read-only mount for which every file system type failed: each type's
/// reason in the operation, the last one as the cause.
fn mount_error(source: &str, target: &Path, errs: Vec<(&str, rustix::io::Errno)>) -> Error {
    let tried: Vec<String> = errs.iter().map(|(t, e)| format!("{t}: {e}")).collect();
    let last = errs.last().map_or(rustix::io::Errno::NODEV, |&(_, e)| e);
    Error::io(
        format!("mount {source} read-only ({}) at", tried.join(", ")),
        target,
        last.into(),
    )
}

/// Those of `types` the kernel knows (`/proc/filesystems`), in order.
fn known_types<'a>(types: &[&'a str]) -> Vec<&'a str> {
    let known = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    types
        .iter()
        .copied()
        .filter(|t| {
            known
                .lines()
                .any(|l| l.split_whitespace().last() == Some(t))
        })
        .collect()
}

/// File system types tried for a slot, in order, when none is given.
const FS_TYPES: [&str; 5] = ["erofs", "squashfs", "ext4", "btrfs", "xfs"];

/// File system types tried for a `boot-source` device, in order.
const SOURCE_FS_TYPES: [&str; 6] = ["ext4", "vfat", "exfat", "btrfs", "xfs", "erofs"];

/// Mounts slot `path` read-only at `target`: through a dm-verity mapping when `rec` carries a
/// root hash, else the block device itself. Returns what was mounted.
pub fn mount(path: &str, rec: &SlotRecord, target: &Path, fstype: Option<&str>) -> Result<String> {
    let bad = |why| Error::invalid("mount", path, why);
    let md = std::fs::metadata(path).op("stat", path)?;
    if !md.file_type().is_block_device() {
        return Err(bad(
            "not a block device; only block-device slots can be mounted at boot",
        ));
    }
    let source = match &rec.verity {
        Some(v) => {
            let root = v
                .root()
                .ok_or_else(|| bad("bad verity root hash in the state"))?;
            let f = File::open(path).op("open", path)?;
            let mut sbb = vec![0u8; verity::BLOCK as usize];
            std::os::unix::fs::FileExt::read_exact_at(&f, &mut sbb, v.data_size)
                .op("read the verity superblock of", path)?;
            let sb = verity::Superblock::parse(&sbb).map_err(|e| e.at(path))?;
            if sb.data_size() != v.data_size {
                return Err(bad("verity superblock does not match the manifest"));
            }
            let rdev = std::os::unix::fs::MetadataExt::rdev(&md);
            let dev = format!("{}:{}", rustix::fs::major(rdev), rustix::fs::minor(rdev));
            let params = verity::table_params(&dev, &sb, &root);
            let (maj, min) = super::dm::create(VERITY_NAME, v.data_size / 512, "verity", &params)?;
            if let Some(node) = devtmpfs_node(maj, min) {
                node
            } else {
                mapping_node(maj, min)?
            }
        }
        None => path.to_string(),
    };
    let types = match fstype {
        Some(t) => vec![t],
        None => known_types(&FS_TYPES),
    };
    let mut errs = Vec::new();
    for t in &types {
        match rustix::mount::mount(
            source.as_str(),
            target,
            *t,
            rustix::mount::MountFlags::RDONLY,
            None,
        ) {
            Ok(()) => return Ok(format!("{source} ({t})")),
            Err(e) => errs.push((*t, e)),
        }
    }
    if rec.verity.is_some() {
        let _ = super::dm::remove(VERITY_NAME);
    }
    Err(mount_error(&source, target, errs))
}

/// The kernel's own node of device-mapper device `maj:min` (`/dev/dm-N`, made by devtmpfs as
/// the mapping appears). `None` when `/dev` is no devtmpfs.
fn devtmpfs_node(maj: u32, min: u32) -> Option<String> {
    let node = format!("/dev/dm-{min}");
    let want = rustix::fs::makedev(maj, min);
    for _ in 0..20 {
        if let Ok(md) = std::fs::metadata(&node) {
            let rdev = std::os::unix::fs::MetadataExt::rdev(&md);
            return (md.file_type().is_block_device() && rdev == want).then_some(node);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    None
}

/// A node for the mapping made by pristine (`/run/pristine/pristine-usr`), when `/dev` has
/// none: only usable where `/run` is not mounted `nodev` (systemd mounts it `nodev`).
fn mapping_node(maj: u32, min: u32) -> Result<String> {
    let node = Path::new("/run/pristine").join(VERITY_NAME);
    crate::fs::host_runtime::block_node(&node, (maj, min), 0o600)
        .op("create device node", &node)?;
    Ok(node.to_string_lossy().into_owned())
}
