//! Command-line entry: global options, verb dispatch, and the options every verb shares.
//!
//! Global options may stand before or after the verb. Each verb parses the rest of its
//! arguments itself (with `lexopt`) and returns an exit code (see [`crate::report`]).

use std::ffi::OsString;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::host::{Common, HostFacts};
use crate::report::{EXIT_FATAL, EXIT_OK};

/// One verb: its name, its synopsis and what it does. The top-level help and each verb's
/// `--help` are made from this table; `run` dispatches every name in it.
pub struct Verb {
    pub name: &'static str,
    pub synopsis: &'static str,
    pub about: &'static str,
}

pub const VERBS: &[Verb] = &[
    Verb {
        name: "provision",
        synopsis: "[--dry-run] [--report=FILE]",
        about: "Bring the root from any state to a provisioned system (the boot job)",
    },
    Verb {
        name: "status",
        synopsis: "[--json]",
        about: "Show the detected boot state of the root",
    },
    Verb {
        name: "stamp",
        synopsis: "",
        about: "Mark /etc and /var as up to date with /usr (like systemd-update-done)",
    },
    Verb {
        name: "reset",
        synopsis: "request|cancel|status|run [--dry-run] [--force] [--json]",
        about: "Request, cancel, inspect or carry out a factory reset",
    },
    Verb {
        name: "sysusers",
        synopsis: "[--replace=PATH] [--inline] [--dry-run] [--cat-config] [CONFIG…|-]",
        about: "Create system users and groups from sysusers.d (like systemd-sysusers)",
    },
    Verb {
        name: "tmpfiles",
        synopsis: "[OPTIONS] [CONFIG…|-]",
        about: "Create, clean and remove files per tmpfiles.d (like systemd-tmpfiles)",
    },
    Verb {
        name: "update",
        synopsis: "make|sign|fetch|status|confirm|rollback|boot|adopt [OPTIONS]",
        about: "/usr image updates (the update verbs are listed below)",
    },
    Verb {
        name: "preset-all",
        synopsis: "[--preset-mode=full|enable-only|disable-only] [--new-only] [--dry-run]",
        about: "Enable/disable all units per preset policy (like systemctl preset-all)",
    },
    Verb {
        name: "preset",
        synopsis: "[--preset-mode=MODE] [--dry-run] UNIT...",
        about: "Enable/disable the named units per preset policy",
    },
    Verb {
        name: "state",
        synopsis: "save|diff|policy|restore [--dry-run] [--json] [PATH…]",
        about: "State operators: keep the admin's changes to /etc across boots",
    },
    Verb {
        name: "factory",
        synopsis: "--root=DIR [--dry-run]",
        about: "Convert an image tree to boot with an empty /etc and /var",
    },
    Verb {
        name: "lint",
        synopsis: "[--json] [--list]",
        about: "Check a tree for the traps of a stateless image",
    },
    Verb {
        name: "help",
        synopsis: "",
        about: "Show this help",
    },
];

const HEAD: &str = "\
pristine — provision stateless, volatile and factory-resettable Linux systems

Usage: pristine [OPTIONS] VERB [VERB OPTIONS]
";

pub const OPTIONS: &str = "\
Options (for every verb, before or after it):
  --root=DIR             Operate on DIR (default: / , or /sysroot inside an initrd)
  --cmdline=STRING       Use STRING as the kernel command line (default: /proc/cmdline,
                         none with --root)
  --credentials=DIR      Read system credentials from DIR (default: $CREDENTIALS_DIRECTORY,
                         else /run/credentials/@system, which --root never reads)
  --efivars=DIR          Read EFI variables from DIR (default: /sys/firmware/efi/efivars,
                         none with --root)
  --smbios-uuid=UUID     Use UUID as the firmware's product UUID (default: DMI data,
                         none with --root)
  --state-device=PATH    Mount the block device PATH as the state registry ([state] device;
                         with --root only this way)
  --log-level=LEVEL      error, warning, info, debug
  -h, --help             Show this help
  --version              Show the version
";

/// The top-level help: every verb with its synopsis.
pub fn usage() -> String {
    let mut s = format!("{HEAD}\nVerbs:\n");
    for v in VERBS {
        s.push_str(format!("  {} {}", v.name, v.synopsis).trim_end());
        s.push('\n');
        s.push_str(&format!("{:25}{}\n", "", v.about));
    }
    // The update sub-verbs, each as `update VERB …` (continuation lines indented).
    s.push_str("\nUpdate verbs:\n");
    for l in crate::update::cli::USAGE.lines().skip(1) {
        let l = l.trim_start();
        if l.starts_with('[') {
            s.push_str(&format!("           {l}\n"));
        } else {
            s.push_str(&format!("  update {l}\n"));
        }
    }
    s.push('\n');
    s.push_str(OPTIONS);
    s
}

/// `pristine VERB --help`: the verb's own help, for verbs that have none of their own.
fn verb_help(verb: &str) -> Option<String> {
    let v = VERBS.iter().find(|v| v.name == verb)?;
    let own = match verb {
        "sysusers" => crate::sysusers::cli::USAGE,
        "tmpfiles" => crate::tmpfiles::cli::USAGE,
        "update" => crate::update::cli::USAGE,
        "help" => return Some(usage()),
        _ => "",
    };
    Some(format!(
        "{}\n\n{}\n\n{own}{}{OPTIONS}",
        format!("Usage: pristine {} {}", v.name, v.synopsis).trim_end(),
        v.about,
        if own.is_empty() { "" } else { "\n" }
    ))
}

/// Whether `-h`/`--help` stands among the verb's arguments (before any `--`).
fn wants_help(rest: &[OsString]) -> bool {
    rest.iter()
        .take_while(|a| *a != "--")
        .any(|a| a == "-h" || a == "--help")
}

fn take_value(
    args: &[OsString],
    i: &mut usize,
    name: &str,
    inline: Option<&str>,
) -> Result<String> {
    if let Some(v) = inline {
        return Ok(v.to_string());
    }
    *i += 1;
    args.get(*i)
        .and_then(|a| a.to_str())
        .map(str::to_string)
        .ok_or_else(|| {
            Error::msg(
                "parse the command line",
                format!("option {name} needs a value"),
            )
        })
}

/// Splits argv (without argv[0]) into common options, the verb and the verb's own arguments.
pub fn split_args(args: Vec<OsString>) -> Result<(Common, Option<String>, Vec<OsString>)> {
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
            "--credentials" => {
                common.credentials = Some(PathBuf::from(take_value(&args, &mut i, name, inline)?))
            }
            "--smbios-uuid" => {
                let v = take_value(&args, &mut i, name, inline)?;
                if crate::host::normalize_uuid(&v).is_none() {
                    return Err(Error::msg(
                        "parse the command line",
                        format!("--smbios-uuid: '{v}' is not a valid UUID"),
                    ));
                }
                common.smbios_uuid = Some(v);
            }
            "--state-device" => {
                common.state_device = Some(PathBuf::from(take_value(&args, &mut i, name, inline)?))
            }
            "--log-level" => {
                let v = take_value(&args, &mut i, name, inline)?;
                common.log_level = Some(crate::logging::parse_level(&v).ok_or_else(|| {
                    Error::msg("parse the command line", format!("unknown log level '{v}'"))
                })?);
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
    // `provision` starts its presets thread before the host is observed (see `Early`).
    let early = (verb.as_deref() == Some("provision") && !wants_help(&rest))
        .then(|| crate::provision::Early::start(&common))
        .flatten();
    let host = HostFacts::observe(&common);
    let level = common
        .log_level
        .or(host.kernel.pristine_log_level)
        .unwrap_or(log::LevelFilter::Info);
    crate::logging::init(level);
    let Some(verb) = verb else {
        if rest.iter().any(|a| a == "--version") {
            println!("pristine {}", env!("CARGO_PKG_VERSION"));
            return EXIT_OK;
        }
        if wants_help(&rest) {
            print!("{}", usage());
            return EXIT_OK;
        }
        eprint!("{}", usage());
        return EXIT_FATAL;
    };
    if wants_help(&rest) {
        if let Some(h) = verb_help(&verb) {
            print!("{h}");
            return EXIT_OK;
        }
    }
    match verb.as_str() {
        "status" => crate::detect::cli::status(&common, &host, rest),
        "stamp" => crate::detect::cli::stamp(&common, rest),
        "reset" => crate::reset::cli::main(&common, &host, rest),
        "provision" => crate::provision::main(&common, &host, rest, early),
        "sysusers" => crate::sysusers::cli::main(&common, &host, rest),
        "tmpfiles" => crate::tmpfiles::cli::main(&common, &host, rest),
        "update" => crate::update::cli::main(&common, rest),
        "preset-all" => crate::presets::cli::preset_all(&common, &host, rest),
        "preset" => crate::presets::cli::preset(&common, &host, rest),
        "state" => crate::operators::cli::main(&common, &host, rest),
        "factory" => crate::factory::cli::main(&common, rest),
        "lint" => crate::lint::cli::main(&common, rest),
        "help" => {
            print!("{}", usage());
            EXIT_OK
        }
        other => {
            log::error!("Unknown verb '{other}'. See 'pristine --help'.");
            EXIT_FATAL
        }
    }
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
