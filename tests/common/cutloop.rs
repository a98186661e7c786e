//! The driver both power-cut VM tests share (tests/vm/cutloop.sh does the cutting): runs a
//! `tests/vm/*.sh` script that boots, cuts and checks `cuts` times, hands each check boot's
//! serial log to `check`, and asserts every cut interrupted the work under test and was
//! followed by a check.

use std::path::Path;
use std::process::Command;

/// `PRISTINE_POWERCUTS` (default 20): how many cuts must interrupt the work.
pub fn cuts() -> usize {
    std::env::var("PRISTINE_POWERCUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

/// Runs `tests/vm/{script}` and calls `check(log, ctx)` for each check boot's log, where
/// `ctx()` is the CHECK line plus the log's last 30 lines, for messages.
pub fn run(script: &str, what: &str, check: impl Fn(&str, &dyn Fn() -> String)) {
    let cuts = cuts();
    let bin = super::static_binary();
    let out = super::TempDir::new(&format!("vm-{}", script.trim_end_matches(".sh")));
    let script_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vm")
        .join(script);
    let mut cmd = Command::new(script_path);
    cmd.arg(&bin).arg(out.path()).arg(cuts.to_string());
    if let Ok(seed) = std::env::var("PRISTINE_POWERCUT_SEED") {
        cmd.arg(seed);
    }
    let o = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    print!("{stdout}");
    assert!(
        o.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!stdout.contains("TIMEOUT"), "a boot timed out\n{stdout}");
    let mut checks = 0;
    for line in stdout.lines().filter(|l| l.starts_with("CHECK ")) {
        let log_path = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("log="))
            .unwrap_or_else(|| panic!("no log in {line}"));
        let log = String::from_utf8_lossy(&std::fs::read(log_path).unwrap()).into_owned();
        let ctx = || {
            let lines: Vec<&str> = log.lines().collect();
            format!(
                "{line}\n{}",
                lines[lines.len().saturating_sub(30)..].join("\n")
            )
        };
        check(&log, &ctx);
        assert!(log.contains("PRISTINE-CUT-CHECKED"), "{}", ctx());
        checks += 1;
    }
    let interrupted = stdout
        .lines()
        .filter(|l| l.starts_with("CUT ") && l.contains("interrupted=yes"))
        .count();
    assert!(
        interrupted >= cuts,
        "only {interrupted} of {cuts} cuts interrupted {what}\n{stdout}"
    );
    assert!(
        checks > interrupted,
        "every cut is followed by a check\n{stdout}"
    );
}
