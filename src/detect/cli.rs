//! `pristine status` and `pristine stamp`.

use std::ffi::OsString;
use std::path::Path;

use crate::host::{Common, HostFacts};
use crate::report::{usage_error, Diagnostic, Outcome};

use super::detect;
use super::stamp::{write_updated, StampResult};

/// `pristine status [--json]`.
pub fn status(common: &Common, host: &HostFacts, args: Vec<OsString>) -> u8 {
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
    outcome.extend(host.kernel_diagnostics());
    let (settings, diags) = crate::config::load_settings(&root);
    outcome.extend(diags);
    let state = detect(&root, host, &settings);
    if json {
        let mut v = match serde_json::to_value(&state) {
            Ok(v) => v,
            Err(e) => {
                log::error!("Failed to encode the status: {e}");
                return crate::report::EXIT_FATAL;
            }
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
    outcome.exit_code()
}

/// `pristine stamp`: write `.updated` in /etc and /var, byte-identical to systemd-update-done.
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
    for dir in ["/etc", "/var"] {
        match write_updated(&root, Path::new(dir)) {
            Ok(StampResult::Written) => log::info!("Stamped {dir}/.updated."),
            Ok(StampResult::Unchanged) => log::debug!("{dir}/.updated already up to date."),
            Ok(StampResult::ReadOnly) => {
                log::debug!("Cannot create {dir}/.updated, file system is read-only.")
            }
            Ok(StampResult::Missing) => log::debug!("{dir} does not exist, not stamped."),
            Err(e) => outcome.push(Diagnostic::failed(
                Some(Path::new(dir)),
                format!("failed to write .updated: {e}"),
            )),
        }
    }
    outcome.exit_code()
}
