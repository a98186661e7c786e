//! `pristine tmpfiles`: the command line of `systemd-tmpfiles`, on the pristine root.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::host::{Common, HostFacts};
use crate::report::usage_error;
use crate::report::{EXIT_FATAL, EXIT_OK};

use super::{Options, Source};

pub const USAGE: &str = "\
pristine tmpfiles [OPTIONS] [CONFIG…|-]
  --create --remove --clean --purge   What to do (at least one)
  --boot                  Also execute lines marked with !
  --prefix=P              Only lines whose path starts with P
  --exclude-prefix=P      Skip lines whose path starts with P
  --replace=PATH          Treat the given CONFIGs as the file PATH
  --dry-run               Only print what would be done
  --cat-config            Show the configuration files
  --graceful              Ignore lines with unknown users and groups
";

/// Parses the verb's arguments and runs it.
pub fn main(common: &Common, host: &HostFacts, args: Vec<OsString>) -> u8 {
    use lexopt::prelude::*;
    let mut opts = Options {
        has_root: common.has_root(),
        host: host.clone(),
        ..Default::default()
    };
    let mut cat = false;
    let mut configs: Vec<String> = Vec::new();
    let mut p = lexopt::Parser::from_args(args);
    loop {
        let arg = match p.next() {
            Ok(Some(a)) => a,
            Ok(None) => break,
            Err(e) => return usage_error("tmpfiles", e),
        };
        let value = |p: &mut lexopt::Parser| -> Result<String, u8> {
            p.value()
                .map_err(|e| usage_error("tmpfiles", e))?
                .into_string()
                .map_err(|_| usage_error("tmpfiles", "argument is not valid UTF-8"))
        };
        match arg {
            Long("create") => opts.create = true,
            Long("remove") => opts.remove = true,
            Long("clean") => opts.clean = true,
            Long("purge") => opts.purge = true,
            Long("boot") => opts.boot = true,
            Long("dry-run") => opts.dry_run = true,
            Long("graceful") => opts.graceful = true,
            Long("cat-config") => cat = true,
            Long("prefix") => match value(&mut p) {
                Ok(v) => opts.prefixes.push(PathBuf::from(v)),
                Err(c) => return c,
            },
            Long("exclude-prefix") => match value(&mut p) {
                Ok(v) => opts.exclude_prefixes.push(PathBuf::from(v)),
                Err(c) => return c,
            },
            Long("replace") => match value(&mut p) {
                Ok(v) if v.starts_with('/') => opts.replace = Some(PathBuf::from(v)),
                Ok(_) => return usage_error("tmpfiles", "--replace= must be an absolute path"),
                Err(c) => return c,
            },
            Short('h') | Long("help") => {
                print!("{USAGE}");
                return EXIT_OK;
            }
            Value(v) => match v.into_string() {
                Ok(s) => configs.push(s),
                Err(_) => return usage_error("tmpfiles", "config name is not valid UTF-8"),
            },
            other => return usage_error("tmpfiles", other.unexpected()),
        }
    }
    let root = match common.open_root() {
        Ok(r) => r,
        Err(c) => return c,
    };
    if cat {
        print!("{}", super::cat_config(&root));
        return EXIT_OK;
    }
    if !(opts.create || opts.remove || opts.clean || opts.purge) {
        return usage_error(
            "tmpfiles",
            "You need to specify at least one of --clean, --create, --remove, or --purge.",
        );
    }
    if opts.purge && configs.is_empty() {
        log::error!("Refusing --purge without specification of a configuration file.");
        return EXIT_FATAL;
    }
    let mut sources = Vec::new();
    for c in configs {
        if c == "-" {
            sources.push(Source::Stdin);
        } else if c.starts_with('/') {
            sources.push(Source::Host(PathBuf::from(&c)));
        } else {
            sources.push(Source::Name(c));
        }
    }
    match super::run(&root, &opts, &sources) {
        Ok(outcome) => super::exit_code(&outcome),
        Err(e) => {
            log::error!("{e}");
            EXIT_FATAL
        }
    }
}
