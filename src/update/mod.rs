//! `/usr` image updates: casync-compatible chunked fetch seeded from the running image, signed
//! manifests, A/B slots with boot counting and rollback.
//!
//! Owns: the casync blob index and chunk store formats ([`index`], [`chunker`],
//! [`compress`]), the signed manifest ([`manifest`]), update sources ([`source`]), image
//! assembly ([`fetch`]), vendor-side store creation ([`make`]), slot state and the boot-time
//! decision ([`state`]). It must never write to the active slot (checked by device and inode),
//! never write a chunk before its content matched its id, never record a slot as bootable
//! before the whole image digest matched, and never touch the running root's files: the
//! running root is only read (trusted keys, settings, os-release).

mod buzhash;
pub mod chunker;
pub mod cli;
pub mod compress;
pub mod fetch;
pub mod index;
pub mod make;
pub mod manifest;
pub mod progress;
pub mod source;
pub mod state;
pub mod verity;

pub use fetch::{fetch, FetchFailure, FetchOptions, FetchReport};
pub use state::{boot_select, BootDecision};

use std::path::Path;

use crate::config::UpdateSettings;
use crate::fs::Root;

/// The boot-time decision for the initrd pipeline: loads the state, picks the slot to mount
/// (a pending slot with tries left loses a try; one without tries is reverted to the last good
/// slot, and the reason logged), saves the state atomically. Returns the decision and the
/// slot's host path.
pub fn boot(settings: &UpdateSettings) -> Result<(BootDecision, String), String> {
    let sd = state::StateDir::open(Path::new(&settings.state_dir), false)
        .map_err(|e| format!("{}: {e}", settings.state_dir))?;
    let mut st = sd.load()?;
    st.fit(settings.slots.len());
    let d = boot_select(&mut st).ok_or("no bootable slot recorded")?;
    let path = settings
        .slots
        .get(d.slot)
        .cloned()
        .ok_or_else(|| format!("slot {} is not configured", d.slot))?;
    sd.save(&st)?;
    if d.reason.contains("reverted") {
        log::warn!("{}", d.reason);
    } else {
        log::info!("{}", d.reason);
    }
    Ok((d, path))
}

/// Loads `[update]` settings from the running root, reporting bad config.
pub fn settings(root: &Root, out: &mut crate::report::Outcome) -> UpdateSettings {
    let (s, diags) = crate::config::load_settings(root);
    out.extend(diags);
    s.update
}
