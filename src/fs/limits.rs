//! The largest file of each kind pristine reads whole from a tree.
//!
//! Every whole-file read through [`super::Root`] takes one of these limits and refuses a larger
//! file before allocating anything (a 64 GiB sparse file costs nothing to make); the refusal is
//! an error naming the file, and each caller skips that file and goes on. This module only
//! states the numbers; it must never read anything.

/// Anything not named below: configuration (`tmpfiles.d`, `sysusers.d`, presets, unit files,
/// `pristine.toml`, keys, manifests), os-release, state records (`presets.state`, the update
/// state, the reset intent). systemd streams these with a 1 MiB line cap; 16 MiB is far beyond
/// any real file of these kinds.
pub const DEFAULT: u64 = 16 << 20;

/// The account databases (`passwd`, `group`, `shadow`, `gshadow`): room for about a million
/// entries.
pub const ACCOUNTS: u64 = 64 << 20;

/// One-value files: `machine-id`, stamps (`.updated`, `.pristine-stamp`). systemd reads at most
/// a few dozen bytes of a machine-id; anything longer is not one.
pub const SMALL: u64 = 64 << 10;

/// A casync index (`.caibx`): 40 bytes per chunk, so about 6.7 million chunks (over 400 GiB of
/// image at casync's default 64 KiB average chunk).
pub const INDEX: u64 = 256 << 20;
