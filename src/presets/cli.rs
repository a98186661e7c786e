//! `pristine preset-all` and `pristine preset`.

use std::ffi::OsString;

use crate::host::{Common, HostFacts};
use crate::report::usage_error;
use crate::report::EXIT_FATAL;

use super::{Options, PresetMode};

/// The value of `--preset-mode` (read from `p`); on a missing or unknown value the usage
/// error is reported for `verb` and its exit code returned.
fn preset_mode_value(p: &mut lexopt::Parser, verb: &str) -> Result<PresetMode, u8> {
    let v = match p.value() {
        Ok(v) => v.to_string_lossy().into_owned(),
        Err(e) => return Err(usage_error(verb, e)),
    };
    PresetMode::parse(&v).ok_or_else(|| {
        usage_error(
            verb,
            format!(
                "Failed to parse preset mode: {v}. Use 'full', 'enable-only' or 'disable-only'."
            ),
        )
    })
}

/// `pristine preset-all [--preset-mode=full|enable-only|disable-only] [--new-only] [--dry-run]`.
pub fn preset_all(common: &Common, host: &HostFacts, args: Vec<OsString>) -> u8 {
    let mut opts = Options {
        running: host.running.clone(),
        ..Options::default()
    };
    let mut p = lexopt::Parser::from_args(args);
    loop {
        match p.next() {
            Ok(Some(lexopt::Arg::Long("preset-mode"))) => {
                opts.mode = match preset_mode_value(&mut p, "preset-all") {
                    Ok(m) => m,
                    Err(c) => return c,
                };
            }
            Ok(Some(lexopt::Arg::Long("new-only"))) => opts.new_only = true,
            Ok(Some(lexopt::Arg::Long("dry-run"))) => opts.dry_run = true,
            Ok(Some(a)) => return usage_error("preset-all", a.unexpected()),
            Ok(None) => break,
            Err(e) => return usage_error("preset-all", e),
        }
    }
    let root = match common.open_root() {
        Ok(r) => r,
        Err(code) => return code,
    };
    super::preset_all(&root, &opts).exit_code()
}

/// `unit_name_mangle` for the common cases: a name without a unit suffix gets `.service`.
fn mangle(n: &str) -> String {
    if crate::units::name::is_valid(n, crate::units::name::ANY) {
        return n.to_string();
    }
    let with = format!("{n}.service");
    if crate::units::name::is_valid(&with, crate::units::name::ANY) {
        with
    } else {
        n.to_string()
    }
}

/// `pristine preset [--preset-mode=…] [--dry-run] UNIT…`.
pub fn preset(common: &Common, host: &HostFacts, args: Vec<OsString>) -> u8 {
    let mut mode = PresetMode::Full;
    let mut dry_run = false;
    let mut units = Vec::new();
    let mut p = lexopt::Parser::from_args(args);
    loop {
        match p.next() {
            Ok(Some(lexopt::Arg::Long("preset-mode"))) => {
                mode = match preset_mode_value(&mut p, "preset") {
                    Ok(m) => m,
                    Err(c) => return c,
                };
            }
            Ok(Some(lexopt::Arg::Long("dry-run"))) => dry_run = true,
            Ok(Some(lexopt::Arg::Value(v))) => units.push(mangle(&v.to_string_lossy())),
            Ok(Some(a)) => return usage_error("preset", a.unexpected()),
            Ok(None) => break,
            Err(e) => return usage_error("preset", e),
        }
    }
    if units.is_empty() {
        return usage_error("preset", "Too few arguments.");
    }
    let root = match common.open_root() {
        Ok(r) => r,
        Err(code) => return code,
    };
    match super::preset(&root, &units, mode, dry_run, &host.running) {
        Ok(o) => o.exit_code(),
        Err(_) => EXIT_FATAL,
    }
}
