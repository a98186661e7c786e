//! `pristine sysusers [--replace=PATH] [--inline] [--dry-run] [--cat-config] [CONFIG…|-]`:
//! the options of systemd-sysusers, with `--root` taken from the common options.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::host::{Common, HostFacts};
use crate::report::usage_error;

use super::Options;

pub const USAGE: &str = "\
  sysusers [--replace=PATH] [--inline] [--dry-run] [--cat-config] [CONFIG…|-]
                         Create system users and groups from sysusers.d (like systemd-sysusers)
";

/// Parses the verb's arguments and runs it; returns the exit code.
pub fn main(common: &Common, host: &HostFacts, args: Vec<OsString>) -> u8 {
    let mut opts = Options {
        has_root: common.has_root(),
        host: host.clone(),
        ..Options::default()
    };
    let mut p = lexopt::Parser::from_args(args);
    loop {
        match p.next() {
            Ok(Some(lexopt::Arg::Long("replace"))) => {
                let v = match p.value() {
                    Ok(v) => v.to_string_lossy().into_owned(),
                    Err(e) => return usage_error("sysusers", e),
                };
                if !v.starts_with('/') {
                    return usage_error(
                        "sysusers",
                        "The argument to --replace= must be an absolute path.",
                    );
                }
                if !v.ends_with(".conf") {
                    return usage_error(
                        "sysusers",
                        "The argument to --replace= must have the extension '.conf'.",
                    );
                }
                opts.replace = Some(PathBuf::from(v));
            }
            Ok(Some(lexopt::Arg::Long("inline"))) => opts.inline = true,
            Ok(Some(lexopt::Arg::Long("dry-run"))) => opts.dry_run = true,
            Ok(Some(lexopt::Arg::Long("cat-config"))) => opts.cat_config = true,
            Ok(Some(lexopt::Arg::Long("no-pager"))) => {}
            Ok(Some(lexopt::Arg::Long("help")) | Some(lexopt::Arg::Short('h'))) => {
                print!("pristine sysusers\n{USAGE}");
                return crate::report::EXIT_OK;
            }
            Ok(Some(lexopt::Arg::Value(v))) => opts.args.push(v.to_string_lossy().into_owned()),
            Ok(Some(a)) => return usage_error("sysusers", a.unexpected()),
            Ok(None) => break,
            Err(e) => return usage_error("sysusers", e),
        }
    }
    if opts.replace.is_some() && opts.cat_config {
        return usage_error(
            "sysusers",
            "Option --replace= is not supported with --cat-config/--tldr.",
        );
    }
    if opts.replace.is_some() && opts.args.is_empty() {
        return usage_error(
            "sysusers",
            "When --replace= is given, some configuration items must be specified.",
        );
    }
    let root = match common.open_root() {
        Ok(r) => r,
        Err(code) => return code,
    };
    super::run(&root, &opts).exit_code()
}
