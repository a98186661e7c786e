//! pristine: provisions stateless, volatile and factory-resettable Linux systems from the
//! initramfs, offline on image trees (`--root=DIR`), and on the running system.
//!
//! Data flows one way in every domain: config files → parse (pure) → observe (read-only,
//! through the root handle) → plan (pure) → apply (through the root handle) → report.
//! Shared pieces live once: [`fs`] (the root-confined handle), [`config`] (settings, kernel
//! command line, config-dir precedence), [`text`] (lexing, specifiers), [`report`]
//! (diagnostics, exit codes), [`logging`].
//!
//! `unsafe` is denied crate-wide. Non-test code never unwraps.

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod accounts;
pub mod cli;
pub mod config;
pub mod detect;
pub mod error;
pub mod factory;
pub mod fs;
pub mod host;
pub mod lint;
pub mod logging;
pub mod operators;
pub mod presets;
pub mod provision;
pub mod report;
pub mod reset;
pub mod sysusers;
pub mod text;
pub mod tmpfiles;
pub mod units;
pub mod update;
pub mod userdb;
pub mod util;
