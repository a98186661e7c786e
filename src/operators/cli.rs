//! `pristine state save|diff|policy|restore`: argument parsing and output for the state
//! operators. Owns no logic of its own; it must never write anything but through the
//! functions of [`super`].

use std::ffi::OsString;

use super::policy::Owner;
use super::Context;
use crate::host::{Common, HostFacts};
use crate::report::usage_error;
use crate::report::{Outcome, EXIT_FATAL};

pub const USAGE: &str = "\
pristine state save [--dry-run]     Capture the managed paths of /etc into a new registry generation
pristine state diff [--json]        Show what differs from the factory state, per path and operator
pristine state policy [PATH…]       Show which rule owns each PATH (or list every rule)
pristine state restore [--dry-run]  Render the registry into /etc now (provision does this at boot)
";

/// Entry point of `pristine state`.
pub fn main(common: &Common, host: &HostFacts, args: Vec<OsString>) -> u8 {
    let mut p = lexopt::Parser::from_args(args);
    let mut sub: Option<String> = None;
    let mut json = false;
    let mut dry_run = false;
    let mut paths: Vec<String> = Vec::new();
    loop {
        match p.next() {
            Ok(Some(lexopt::Arg::Long("json"))) => json = true,
            Ok(Some(lexopt::Arg::Long("dry-run"))) => dry_run = true,
            Ok(Some(lexopt::Arg::Long("help") | lexopt::Arg::Short('h'))) => {
                print!("{USAGE}");
                return 0;
            }
            Ok(Some(lexopt::Arg::Value(v))) => {
                let v = v.to_string_lossy().into_owned();
                if sub.is_none() {
                    sub = Some(v);
                } else {
                    paths.push(v);
                }
            }
            Ok(Some(a)) => return usage_error("state", a.unexpected()),
            Ok(None) => break,
            Err(e) => return usage_error("state", e),
        }
    }
    let Some(sub) = sub else {
        eprint!("{USAGE}");
        return EXIT_FATAL;
    };
    let root = match common.open_root() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let mut out = Outcome::default();
    let (settings, diags) = crate::config::load_settings(&root);
    out.extend(diags);
    let mode = host
        .kernel
        .mode()
        .or(settings.mode)
        .unwrap_or(crate::config::Mode::Stateful);
    let ctx = Context::load(&root, &settings, mode, host, &mut out);
    match sub.as_str() {
        "save" => {
            let r = super::save(&ctx, dry_run, &mut out);
            let verb = if r.written {
                "saved as a new generation"
            } else if dry_run {
                "would be saved (dry run)"
            } else {
                "unchanged, nothing written"
            };
            log::info!("state save: {} entries {verb}", r.entries);
        }
        "diff" => {
            let lines = super::diff(&ctx, &mut out);
            if json {
                match serde_json::to_string_pretty(&lines) {
                    Ok(s) => println!("{s}"),
                    Err(e) => return usage_error("state diff", e),
                }
            } else {
                for l in &lines {
                    print!("{:<10} {:<9} {}", l.change, l.operator, l.path);
                    if !l.values.is_empty() {
                        print!("  {}", l.values.join(" "));
                    }
                    println!();
                }
            }
        }
        "policy" => {
            if paths.is_empty() {
                for r in &ctx.policy.rules {
                    println!("{r}");
                }
                println!("default: {}", ctx.policy.default.as_str());
            }
            for path in &paths {
                match ctx.policy.owner(path) {
                    Owner::Rule(r) => println!("{path}: {r}"),
                    Owner::Default(d) => println!("{path}: {}", d.as_str()),
                    Owner::Ambiguous(a, b, d) => {
                        println!("{path}: ambiguous ({a} and {b}), {}", d.as_str());
                        out.push(super::policy::Policy::ambiguity(a, b, path, d));
                    }
                }
            }
        }
        "restore" => {
            let (w, a) = super::restore(&ctx, dry_run, &mut out);
            let u = super::restore_units(&ctx, dry_run, &mut out);
            log::info!(
                "state restore: {w} path(s) written, {a} recorded, {u} unit link(s) changed"
            );
        }
        other => {
            return usage_error(
                "state",
                format!("unknown subcommand '{other}' (save, diff, policy, restore)"),
            )
        }
    }
    out.exit_code()
}
