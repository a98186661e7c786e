//! Unit files as systemd 257 reads them for enablement: unit names ([`name`]), the unit-file
//! syntax ([`ini`]) and the system search path under `--root` ([`lookup`]).
//!
//! This module owns the pure parts: it never reads or writes the target tree (the preset engine
//! in [`crate::presets`] observes files through the root handle and hands their bytes here).

pub mod ini;
pub mod lookup;
pub mod name;
