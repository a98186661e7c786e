//! `pristine factory [--dry-run] [--json]`: argument parsing and the report of a conversion.

use std::ffi::OsString;

use crate::host::Common;
use crate::report::usage_error;
use crate::report::Outcome;

/// Entry point of `pristine factory`.
pub fn main(common: &Common, args: Vec<OsString>) -> u8 {
    let mut dry_run = false;
    let mut p = lexopt::Parser::from_args(args);
    loop {
        match p.next() {
            Ok(Some(lexopt::Arg::Long("dry-run"))) => dry_run = true,
            Ok(Some(lexopt::Arg::Short('h') | lexopt::Arg::Long("help"))) => {
                print!("{HELP}");
                return crate::report::EXIT_OK;
            }
            Ok(Some(a)) => return usage_error("factory", a.unexpected()),
            Ok(None) => break,
            Err(e) => return usage_error("factory", e),
        }
    }
    if common.root.is_none() {
        return usage_error(
            "factory",
            "--root=DIR is required: factory converts an image tree, never the running system",
        );
    }
    let root = match common.open_root() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let mut out = Outcome::default();
    let (_, plan) = super::prepare(&root, &mut out);
    for d in &plan.diagnostics {
        log::info!("{}", d);
    }
    if dry_run {
        print!("{plan}");
        return out.exit_code();
    }
    super::apply(&root, &plan, &mut out);
    for d in &out.diagnostics {
        log::error!("{}", d);
    }
    log::info!(
        "factory: {} files written, {} paths dropped, {} entries moved into {}.",
        out.count("written"),
        out.count("dropped"),
        out.count("moved"),
        super::FACTORY
    );
    let findings = crate::lint::run(&root);
    for f in &findings {
        log::warn!("{f}");
    }
    if findings.is_empty() {
        log::info!("lint: the converted image is clean.");
    }
    out.diagnostics
        .extend(crate::lint::outcome(&findings).diagnostics);
    out.exit_code()
}

const HELP: &str = "\
pristine factory --root=DIR [--dry-run]

Converts the image tree at DIR so it boots with an empty /etc and /var: moves them into
/usr/share/factory with tmpfiles.d lines that recreate them, pins users and groups in
sysusers.d, writes a preset policy reproducing the enablement and a state.d policy, drops what
boot regenerates (account files, machine id, host keys, caches). Ends with `pristine lint`.
--dry-run prints the plan and changes nothing.
";
