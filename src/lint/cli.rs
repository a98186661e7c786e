//! `pristine lint [--json] [--list]`: prints the findings (long lists cut to a few samples per
//! lint) or the registry; exit 0 when clean, 65 when not.

use std::ffi::OsString;
use std::io::Write as _;

use crate::host::Common;
use crate::report::usage_error;
use crate::report::EXIT_OK;

/// Findings printed per lint before "...and N more" (JSON lists them all).
const SAMPLES: usize = 10;

/// Entry point of `pristine lint`.
pub fn main(common: &Common, args: Vec<OsString>) -> u8 {
    let (mut json, mut list) = (false, false);
    let mut p = lexopt::Parser::from_args(args);
    loop {
        match p.next() {
            Ok(Some(lexopt::Arg::Long("json"))) => json = true,
            Ok(Some(lexopt::Arg::Long("list"))) => list = true,
            Ok(Some(lexopt::Arg::Short('h') | lexopt::Arg::Long("help"))) => {
                println!("pristine lint [--root=DIR] [--json] [--list]\n\nChecks a tree for the traps of a stateless image; --list prints the lints.\nExit 0 when clean, 65 when not.");
                return EXIT_OK;
            }
            Ok(Some(a)) => return usage_error("lint", a.unexpected()),
            Ok(None) => break,
            Err(e) => return usage_error("lint", e),
        }
    }
    if list {
        for l in super::LINTS {
            let sev = match l.severity {
                super::Severity::Error => "error",
                super::Severity::Warning => "warning",
            };
            println!("{:<30} {sev:<8} {}", l.id, l.description);
        }
        return EXIT_OK;
    }
    let root = match common.open_root() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let findings = super::run(&root);
    // A closed stdout (`| head`) ends the listing, not the program.
    let mut stdout = std::io::stdout().lock();
    if json {
        let _ = writeln!(
            stdout,
            "{}",
            serde_json::to_string_pretty(&findings).unwrap_or_default()
        );
    } else {
        let mut shown: std::collections::BTreeMap<&str, usize> = Default::default();
        for f in &findings {
            let n = shown.entry(f.id).or_default();
            *n += 1;
            if *n <= SAMPLES {
                let _ = writeln!(stdout, "{f}");
            }
        }
        for (id, n) in shown.into_iter().filter(|(_, n)| *n > SAMPLES) {
            let _ = writeln!(stdout, "{id}: ...and {} more", n - SAMPLES);
        }
    }
    if findings.is_empty() {
        log::info!("{}: no findings.", root.host().display());
    }
    super::outcome(&findings).exit_code()
}
