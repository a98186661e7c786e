//! `/usr` image updates: casync-compatible chunked fetch seeded from the running image, signed
//! manifests, A/B slots with boot counting and rollback.
//!
//! Owns: the casync blob index and chunk store formats ([`index`], [`chunker`],
//! [`compress`]), the signed manifest ([`manifest`]), update sources ([`source`]), image
//! assembly ([`fetch`]), vendor-side store creation ([`make`]), slot state and the boot-time
//! decision ([`state`], [`boot`]), where state and slots are for a run ([`place`]), dm-verity
//! trees ([`verity`]) and the device-mapper ioctls ([`dm`], the only `unsafe` here). It must never write to the active slot (checked by device and inode),
//! never write a chunk before its content matched its id, never record a slot as bootable
//! before the whole image digest matched, and never touch the running root's files: the
//! running root is only read (trusted keys, settings, os-release).

pub mod boot;
mod buzhash;
pub mod chunker;
pub mod cli;
pub mod compress;
pub mod dm;
pub mod fetch;
pub mod index;
pub mod make;
pub mod manifest;
pub mod place;
pub mod progress;
pub mod source;
pub mod state;
pub mod verity;

pub use fetch::{fetch, FetchFailure, FetchOptions, FetchReport};
pub use state::{boot_select, BootDecision};

use crate::config::UpdateSettings;
use crate::fs::Root;

/// The boot-time decision for the initrd pipeline: loads the state, picks the slot to mount
/// (a pending slot with tries left loses a try, saved before the slot is used; one without
/// tries is reverted to the last good slot; a pending slot whose content fails verification
/// before its first boot is marked bad), saves the state atomically. `settings` must be
/// resolved ([`place::resolve`]). Returns the decision and the slot's host path.
pub fn boot(settings: &UpdateSettings) -> crate::error::Result<(BootDecision, String)> {
    boot::choose(settings)
}

/// Loads `[update]` settings from the running root, reporting bad config.
pub fn settings(root: &Root, out: &mut crate::report::Outcome) -> UpdateSettings {
    let (s, diags) = crate::config::load_settings(root);
    out.extend(diags);
    s.update
}
