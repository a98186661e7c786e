//! Command-line entry: global options, verb dispatch, and the options every verb shares.
//!
//! Global options may stand before or after the verb. Each verb parses the rest of its
//! arguments itself (with `lexopt`) and returns an exit code (see [`crate::report`]).

use std::ffi::OsString;
use std::path::PathBuf;

use crate::report::{EXIT_FATAL, EXIT_OK};

/// Options shared by every verb.
#[derive(Clone, Debug, Default)]
pub struct Common {
    /// `--root=DIR`: operate on this tree instead of `/` (or `/sysroot` in an initrd).
    pub root: Option<PathBuf>,
    /// `--cmdline=STRING`: use this instead of `/proc/cmdline`.
    pub cmdline: Option<String>,
    /// `--efivars=DIR`: efivarfs directory (default `/sys/firmware/efi/efivars`).
    pub efivars: Option<PathBuf>,
    /// `--log-level=LEVEL`.
    pub log_level: Option<log::LevelFilter>,
}

impl Common {
    /// The root the verb works on: `--root`, else `/sysroot` in an initrd, else `/`.
    pub fn root_path(&self) -> PathBuf {
        match &self.root {
            Some(r) => r.clone(),
            None if crate::logging::in_initrd() => PathBuf::from("/sysroot"),
            None => PathBuf::from("/"),
        }
    }

    /// Whether a root other than the running system was named.
    pub fn has_root(&self) -> bool {
        self.root.is_some() || crate::logging::in_initrd()
    }

    /// The kernel command line: `--cmdline`, else `/proc/cmdline`.
    pub fn kernel_cmdline(&self) -> String {
        match &self.cmdline {
            Some(c) => c.clone(),
            None => std::fs::read_to_string("/proc/cmdline").unwrap_or_default(),
        }
    }

    /// Opens the root handle, logging a fatal error on failure.
    pub fn open_root(&self) -> Result<crate::fs::Root, u8> {
        let p = self.root_path();
        crate::fs::Root::open(&p).map_err(|e| {
            log::error!("Failed to open root directory {}: {e}", p.display());
            EXIT_FATAL
        })
    }
}

pub const USAGE: &str = "\
pristine — provision stateless, volatile and factory-resettable Linux systems

Usage: pristine [OPTIONS] VERB [VERB OPTIONS]

Verbs:
  provision [--dry-run] [--report=FILE] [--credentials=DIR]
                         Bring the root from any state to a provisioned system (the boot job)
  status [--json]        Show the detected boot state of the root
  stamp                  Mark /etc and /var as up to date with /usr (like systemd-update-done)
  reset request|cancel|status|run [--dry-run] [--force] [--json]
                         Request, cancel, inspect or carry out a factory reset
  sysusers [--replace=PATH] [--inline] [--dry-run] [--cat-config] [CONFIG…|-]
                         Create system users and groups from sysusers.d (like systemd-sysusers)
  tmpfiles [OPTIONS] [CONFIG…]  Create, clean and remove files per tmpfiles.d (like systemd-tmpfiles)
  update VERB            /usr image updates: make, sign, fetch, status, confirm, rollback, boot
  preset-all [--preset-mode=full|enable-only|disable-only] [--new-only] [--dry-run]
                         Enable/disable all units per preset policy (like systemctl preset-all)
  preset [--preset-mode=MODE] [--dry-run] UNIT...
                         Enable/disable the named units per preset policy
  factory --root=DIR [--dry-run]
                         Convert an image tree to boot with an empty /etc and /var
  lint [--json] [--list] Check a tree for the traps of a stateless image

Options (for every verb):
  --root=DIR             Operate on DIR (default: / , or /sysroot inside an initrd)
  --cmdline=STRING       Use STRING as the kernel command line instead of /proc/cmdline
  --efivars=DIR          Read EFI variables from DIR (default /sys/firmware/efi/efivars)
  --log-level=LEVEL      error, warning, info, debug
  -h, --help             Show this help
  --version              Show the version
";

fn take_value(
    args: &[OsString],
    i: &mut usize,
    name: &str,
    inline: Option<&str>,
) -> Result<String, String> {
    if let Some(v) = inline {
        return Ok(v.to_string());
    }
    *i += 1;
    args.get(*i)
        .and_then(|a| a.to_str())
        .map(str::to_string)
        .ok_or_else(|| format!("option {name} needs a value"))
}

/// Splits argv (without argv[0]) into common options, the verb and the verb's own arguments.
pub fn split_args(args: Vec<OsString>) -> Result<(Common, Option<String>, Vec<OsString>), String> {
    let mut common = Common::default();
    let mut verb = None;
    let mut rest = Vec::new();
    let mut i = 0;
    let mut after_dashdash = false;
    while i < args.len() {
        let a = &args[i];
        let s = a.to_str().unwrap_or("");
        if after_dashdash {
            rest.push(a.clone());
            i += 1;
            continue;
        }
        let (name, inline) = match s.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v)),
            _ => (s, None),
        };
        match name {
            "--root" => common.root = Some(PathBuf::from(take_value(&args, &mut i, name, inline)?)),
            "--cmdline" => common.cmdline = Some(take_value(&args, &mut i, name, inline)?),
            "--efivars" => {
                common.efivars = Some(PathBuf::from(take_value(&args, &mut i, name, inline)?))
            }
            "--log-level" => {
                let v = take_value(&args, &mut i, name, inline)?;
                common.log_level = Some(
                    crate::logging::parse_level(&v)
                        .ok_or_else(|| format!("unknown log level '{v}'"))?,
                );
            }
            "--" => {
                after_dashdash = true;
                rest.push(a.clone());
            }
            _ if verb.is_none() && !s.starts_with('-') => verb = Some(s.to_string()),
            _ => rest.push(a.clone()),
        }
        i += 1;
    }
    Ok((common, verb, rest))
}

/// Runs pristine with `args` (without argv[0]); returns the exit code.
pub fn run(args: Vec<OsString>) -> u8 {
    let (common, verb, rest) = match split_args(args) {
        Ok(x) => x,
        Err(e) => {
            crate::logging::init(log::LevelFilter::Info);
            log::error!("{e}");
            return EXIT_FATAL;
        }
    };
    let (kopts, _) =
        crate::config::cmdline::parse(&common.kernel_cmdline(), crate::logging::in_initrd());
    let level = common
        .log_level
        .or(kopts.pristine_log_level)
        .unwrap_or(log::LevelFilter::Info);
    crate::logging::init(level);
    let Some(verb) = verb else {
        if rest.iter().any(|a| a == "--version") {
            println!("pristine {}", env!("CARGO_PKG_VERSION"));
            return EXIT_OK;
        }
        if rest.iter().any(|a| a == "-h" || a == "--help") {
            print!("{USAGE}");
            return EXIT_OK;
        }
        eprint!("{USAGE}");
        return EXIT_FATAL;
    };
    match verb.as_str() {
        "status" => crate::detect::cli::status(&common, rest),
        "stamp" => crate::detect::cli::stamp(&common, rest),
        "reset" => crate::reset::cli::main(&common, rest),
        "provision" => crate::provision::main(&common, rest),
        "sysusers" => crate::sysusers::cli::main(&common, rest),
        "tmpfiles" => crate::tmpfiles::cli::main(&common, rest),
        "update" => crate::update::cli::main(&common, rest),
        "preset-all" => crate::presets::cli::preset_all(&common, rest),
        "preset" => crate::presets::cli::preset(&common, rest),
        "factory" => crate::factory::cli::main(&common, rest),
        "lint" => crate::lint::cli::main(&common, rest),
        "help" => {
            print!("{USAGE}");
            EXIT_OK
        }
        other => {
            log::error!("Unknown verb '{other}'. See 'pristine --help'.");
            EXIT_FATAL
        }
    }
}

/// Reports a usage error from a verb's parser.
pub fn usage_error(verb: &str, e: impl std::fmt::Display) -> u8 {
    log::error!("pristine {verb}: {e}");
    EXIT_FATAL
}

#[cfg(test)]
mod tests {
    use super::*;
    fn v(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }
    #[test]
    fn globals_before_and_after_verb() {
        let (c, verb, rest) =
            split_args(v(&["--root=/t", "status", "--json", "--cmdline", "quiet"])).unwrap();
        assert_eq!(c.root.as_deref(), Some(std::path::Path::new("/t")));
        assert_eq!(c.cmdline.as_deref(), Some("quiet"));
        assert_eq!(verb.as_deref(), Some("status"));
        assert_eq!(rest, v(&["--json"]));
        assert!(split_args(v(&["--root"])).is_err());
        let (_, verb, rest) = split_args(v(&["sysusers", "--", "-"])).unwrap();
        assert_eq!(verb.as_deref(), Some("sysusers"));
        assert_eq!(rest, v(&["--", "-"]));
    }
}
