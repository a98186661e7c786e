//! `pristine status` and `pristine stamp`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::cli::{usage_error, Common};
use crate::config::cmdline;
use crate::report::{Diagnostic, Outcome, EXIT_OK};

use super::stamp::{write_stamps, OsStamp, StampResult};
use super::{detect, os_release_bytes, HostContext, DEFAULT_EFIVARS};

/// The host context from the common options and the running system.
pub fn host_context(common: &Common, outcome: &mut Outcome) -> HostContext {
    let in_initrd = crate::logging::in_initrd();
    let (kernel, warnings) = cmdline::parse(&common.kernel_cmdline(), in_initrd);
    for w in warnings {
        outcome.push(Diagnostic::notice(None, 0, w));
    }
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().replace('-', ""));
    HostContext {
        kernel,
        in_initrd,
        efivars: common
            .efivars
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_EFIVARS)),
        boot_id,
    }
}

/// `pristine status [--json]`.
pub fn status(common: &Common, args: Vec<OsString>) -> u8 {
    let mut json = false;
    let mut p = lexopt::Parser::from_args(args);
    loop {
        match p.next() {
            Ok(Some(lexopt::Arg::Long("json"))) => json = true,
            Ok(Some(a)) => return usage_error("status", a.unexpected()),
            Ok(None) => break,
            Err(e) => return usage_error("status", e),
        }
    }
    let root = match common.open_root() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let mut outcome = Outcome::default();
    let host = host_context(common, &mut outcome);
    let (settings, diags) = crate::config::load_settings(&root);
    outcome.extend(diags);
    let state = detect(&root, &host, &settings);
    if json {
        let mut v = match serde_json::to_value(&state) {
            Ok(v) => v,
            Err(e) => return usage_error("status", e),
        };
        if let Some(o) = v.as_object_mut() {
            o.insert(
                "diagnostics".into(),
                serde_json::to_value(&outcome.diagnostics).unwrap_or_default(),
            );
        }
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        print!("{}", super::render_text(&state));
    }
    // Status reports; only bad pristine configuration changes its exit code.
    if outcome.bad_config() {
        crate::report::EXIT_BAD_CONFIG
    } else {
        EXIT_OK
    }
}

/// `pristine stamp`: write `.updated` (byte-identical to systemd-update-done) and
/// `.pristine-stamp` in /etc and /var.
pub fn stamp(common: &Common, args: Vec<OsString>) -> u8 {
    let mut p = lexopt::Parser::from_args(args);
    match p.next() {
        Ok(Some(a)) => return usage_error("stamp", a.unexpected()),
        Ok(None) => {}
        Err(e) => return usage_error("stamp", e),
    }
    let root = match common.open_root() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let mut outcome = Outcome::default();
    let os = OsStamp::from_os_release(
        crate::text::specifier::read_os_release(&root).as_ref(),
        os_release_bytes(&root).as_deref(),
    );
    for dir in ["/etc", "/var"] {
        match write_stamps(&root, Path::new(dir), &os) {
            Ok(StampResult::Written) => log::info!("Stamped {dir}."),
            Ok(StampResult::Unchanged) => log::debug!("{dir} already stamped."),
            Ok(StampResult::ReadOnly) => {
                log::debug!("Cannot stamp {dir}, file system is read-only.")
            }
            Ok(StampResult::Missing) => log::debug!("{dir} does not exist, not stamped."),
            Err(e) => outcome.push(Diagnostic::failed(
                Some(Path::new(dir)),
                format!("failed to write stamp: {e}"),
            )),
        }
    }
    outcome.exit_code()
}
