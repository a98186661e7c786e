//! `pristine reset request|cancel|status|run`.

use std::ffi::OsString;
use std::path::Path;

use crate::detect::{self, RESET_REQUEST_FILE};
use crate::fs::WriteOptions;
use crate::host::{Common, HostFacts};
use crate::report::usage_error;
use crate::report::{Diagnostic, Outcome};

use super::{apply, pending, plan, Request};

/// Entry point of `pristine reset`.
pub fn main(common: &Common, host: &HostFacts, args: Vec<OsString>) -> u8 {
    let mut sub: Option<String> = None;
    let mut dry_run = false;
    let mut force = false;
    let mut json = false;
    let mut p = lexopt::Parser::from_args(args);
    loop {
        match p.next() {
            Ok(Some(lexopt::Arg::Long("dry-run"))) => dry_run = true,
            Ok(Some(lexopt::Arg::Long("force"))) => force = true,
            Ok(Some(lexopt::Arg::Long("json"))) => json = true,
            Ok(Some(lexopt::Arg::Value(v))) if sub.is_none() => sub = v.into_string().ok(),
            Ok(Some(a)) => return usage_error("reset", a.unexpected()),
            Ok(None) => break,
            Err(e) => return usage_error("reset", e),
        }
    }
    let Some(sub) = sub else {
        return usage_error("reset", "expected request, cancel, status or run");
    };
    let root = match common.open_root() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let mut out = Outcome::default();
    out.extend(host.kernel_diagnostics());
    let (settings, diags) = crate::config::load_settings(&root);
    out.extend(diags);
    let req_file = Path::new(RESET_REQUEST_FILE);
    match sub.as_str() {
        "request" => {
            if dry_run {
                println!("would create {}", req_file.display());
                return out.exit_code();
            }
            let r = req_file.parent().map_or(Ok(()), |d| root.mkdir_all(d, 0o755)).and_then(|()| {
                root.write_atomic(req_file, b"# Factory reset requested: pristine flushes /etc and /var on the next boot.\n", &WriteOptions::default())
            });
            match r {
                Ok(()) => log::info!(
                    "Factory reset requested for the next boot ({}).",
                    req_file.display()
                ),
                Err(e) => out.push(Diagnostic::failed(
                    Some(req_file),
                    format!("cannot write request: {e}"),
                )),
            }
        }
        "cancel" => {
            if dry_run {
                match &host.efivars {
                    Some(_) => println!(
                        "would remove {} and the FactoryReset EFI variables",
                        req_file.display()
                    ),
                    None => println!("would remove {}", req_file.display()),
                }
                return out.exit_code();
            }
            if let Err(e) = root.remove_tree(req_file) {
                out.push(Diagnostic::failed(
                    Some(req_file),
                    format!("cannot remove request: {e}"),
                ));
            }
            // Offline (`--root` without `--efivars=`) the host's variables are not ours.
            if let Some(efivars) = &host.efivars {
                if let Err(e) = crate::host::efi::clear_reset_request(efivars) {
                    out.push(Diagnostic::failed(
                        Some(efivars),
                        format!("cannot clear EFI variables: {e}"),
                    ));
                }
            }
            log::info!("Factory reset request cancelled.");
        }
        "status" => {
            let os = detect::stamp::current(&root);
            let r = detect::detect_reset(&root, host, &os);
            let inprogress = pending(&root);
            if json {
                let v = serde_json::json!({ "request": r, "in_progress": inprogress.iter().map(|(d, i)| serde_json::json!({"dir": d, "phase": i.phase, "keep": i.keep})).collect::<Vec<_>>() });
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                println!(
                    "requested: {}",
                    if r.requested {
                        r.sources.join(", ")
                    } else {
                        "no".into()
                    }
                );
                for (d, i) in &inprogress {
                    println!("in progress: {} at phase {:?}", d.display(), i.phase);
                }
            }
        }
        "run" => {
            let os = detect::stamp::current(&root);
            let r = detect::detect_reset(&root, host, &os);
            let resumed = pending(&root);
            if !r.requested && resumed.is_empty() && !force {
                log::info!(
                    "No factory reset requested; nothing to do (use --force to reset anyway)."
                );
                return out.exit_code();
            }
            let mut sources = r.sources.clone();
            if force {
                sources.push("forced".into());
            }
            let req = Request::from_settings(&settings, sources, host.efivars.clone(), &mut out);
            let plan = plan(&root, &req, resumed, r.requested || force);
            if dry_run {
                print!("{plan}");
                return out.exit_code();
            }
            apply(&root, &plan, &mut out);
        }
        other => return usage_error("reset", format!("unknown command '{other}'")),
    }
    out.exit_code()
}
