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
//! good slot is. Must never write to a slot, and never mount one writable.

use std::fs::File;
use std::os::unix::fs::FileTypeExt as _;
use std::path::Path;

use super::state::{self, boot_select, BootDecision, SlotRecord, SlotStatus, State, StateDir};
use super::verity;
use crate::config::UpdateSettings;

/// Name of the dm-verity mapping pristine creates for the booted `/usr`.
pub const VERITY_NAME: &str = "pristine-usr";

/// Checks a slot's content against what the signed manifest said: the dm-verity tree and root
/// hash if it has one, else the whole-image SHA-256.
pub fn check_slot(path: &str, r: &SlotRecord) -> Result<(), String> {
    let f = File::open(path).map_err(|e| format!("{path}: {e}"))?;
    if let Some(v) = &r.verity {
        v.check(r.image_size)?;
        let root = v.root().ok_or("bad verity root hash in the state")?;
        return verity::verify(&f, v.data_size, &root).map(|_| ());
    }
    let want = r
        .image_digest
        .as_deref()
        .ok_or("no image digest recorded for it")?;
    let got = super::fetch::image_digest(&f, r.image_size).map_err(|e| format!("{path}: {e}"))?;
    if got != want {
        return Err(format!(
            "{path}: content does not match the manifest's image digest"
        ));
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
pub fn choose(settings: &UpdateSettings) -> Result<(BootDecision, String), String> {
    let sd = StateDir::open(Path::new(&settings.state_dir), false)
        .map_err(|e| format!("{}: {e}", settings.state_dir))?;
    let mut st = sd.load()?;
    st.fit(settings.slots.len());
    let path_of = |i: usize| {
        settings
            .slots
            .get(i)
            .cloned()
            .ok_or_else(|| format!("slot {i} is not configured"))
    };
    loop {
        let before = st.clone();
        let d = boot_select(&mut st).ok_or("no bootable slot recorded")?;
        let pending = before.slot(d.slot).status == SlotStatus::Pending;
        if let Err(e) = sd.save(&st) {
            if !pending {
                log::warn!("{e}; booting slot {} anyway", d.slot);
                return Ok((d.clone(), path_of(d.slot)?));
            }
            let g = good_slot(&before).ok_or_else(|| {
                format!("{e}; cannot count the pending slot's try and no good slot is recorded")
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

/// File system types tried, in order, when none is given.
const FS_TYPES: [&str; 5] = ["erofs", "squashfs", "ext4", "btrfs", "xfs"];

/// Mounts slot `path` read-only at `target`: through a dm-verity mapping when `rec` carries a
/// root hash, else the block device itself. Returns what was mounted.
pub fn mount(
    path: &str,
    rec: &SlotRecord,
    target: &Path,
    fstype: Option<&str>,
) -> Result<String, String> {
    let md = std::fs::metadata(path).map_err(|e| format!("{path}: {e}"))?;
    if !md.file_type().is_block_device() {
        return Err(format!(
            "{path} is not a block device; only block-device slots can be mounted at boot"
        ));
    }
    let source = match &rec.verity {
        Some(v) => {
            let root = v.root().ok_or("bad verity root hash in the state")?;
            let f = File::open(path).map_err(|e| format!("{path}: {e}"))?;
            let mut sbb = vec![0u8; verity::BLOCK as usize];
            std::os::unix::fs::FileExt::read_exact_at(&f, &mut sbb, v.data_size)
                .map_err(|e| format!("{path}: reading the verity superblock: {e}"))?;
            let sb = verity::Superblock::parse(&sbb).map_err(|e| format!("{path}: {e}"))?;
            if sb.data_size() != v.data_size {
                return Err(format!(
                    "{path}: verity superblock does not match the manifest"
                ));
            }
            let rdev = std::os::unix::fs::MetadataExt::rdev(&md);
            let dev = format!("{}:{}", rustix::fs::major(rdev), rustix::fs::minor(rdev));
            let params = verity::table_params(&dev, &sb, &root);
            let (maj, min) = super::dm::create(VERITY_NAME, v.data_size / 512, "verity", &params)?;
            let node = Path::new("/run/pristine").join(VERITY_NAME);
            crate::fs::host_runtime::block_node(&node, (maj, min), 0o600)
                .map_err(|e| format!("{}: {e}", node.display()))?;
            node.to_string_lossy().into_owned()
        }
        None => path.to_string(),
    };
    let types: Vec<&str> = match fstype {
        Some(t) => vec![t],
        None => {
            let known = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
            FS_TYPES
                .iter()
                .copied()
                .filter(|t| {
                    known
                        .lines()
                        .any(|l| l.split_whitespace().last() == Some(t))
                })
                .collect()
        }
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
            Err(e) => errs.push(format!("{t}: {e}")),
        }
    }
    if rec.verity.is_some() {
        let _ = super::dm::remove(VERITY_NAME);
    }
    Err(format!(
        "mounting {source} read-only at {} failed ({})",
        target.display(),
        errs.join(", ")
    ))
}
