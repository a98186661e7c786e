//! The power-cut test (issue 12 item 4): tests/vm/powercut.sh boots a Debian 12 image with a
//! factory reset requested in a busybox initramfs that runs `pristine provision` and never
//! leaves the initrd, and kills qemu at random points while pristine runs. After every cut the
//! next boot must finish with exit code 0, every file on the keep-list must have its checksum,
//! and nothing of the reset may be left (work areas, request file, the flushed junk).
//!
//! `PRISTINE_POWERCUTS` sets the number of cuts that must interrupt pristine (default 20;
//! `benches/powercut.sh` runs more), `PRISTINE_POWERCUT_SEED` the seed (printed either way).

mod common;

use std::path::Path;
use std::process::Command;

#[test]
fn reset_converges_after_power_cuts_and_keeps_the_keep_list() {
    let cuts: usize = std::env::var("PRISTINE_POWERCUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let bin = common::static_binary();
    let out = common::TempDir::new("vm-powercut");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vm/powercut.sh");
    let mut cmd = Command::new(script);
    cmd.arg(&bin).arg(out.path()).arg(cuts.to_string());
    if let Ok(seed) = std::env::var("PRISTINE_POWERCUT_SEED") {
        cmd.arg(seed);
    }
    let o = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    print!("{stdout}");
    assert!(
        o.status.success(),
        "powercut.sh failed: {}",
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
        assert!(
            log.contains("PRISTINE-CUT: run 1 exit code 0 "),
            "pristine did not converge: {}",
            ctx()
        );
        let sums: Vec<&str> = log
            .lines()
            .filter_map(|l| l.split("PRISTINE-CUT-SHA ").nth(1))
            .collect();
        assert_eq!(sums.len(), 4, "keep-list checksums missing: {}", ctx());
        assert!(
            sums.iter().all(|s| s.trim_end().ends_with(": OK")),
            "keep-list damaged: {sums:?}\n{}",
            ctx()
        );
        assert!(
            !log.contains("PRISTINE-CUT-LEFT"),
            "the reset left something behind: {}",
            ctx()
        );
        assert!(log.contains("PRISTINE-CUT-CHECKED"), "{}", ctx());
        checks += 1;
    }
    let interrupted = stdout
        .lines()
        .filter(|l| l.starts_with("CUT ") && l.contains("interrupted=yes"))
        .count();
    assert!(
        interrupted >= cuts,
        "only {interrupted} of {cuts} cuts interrupted pristine\n{stdout}"
    );
    assert!(
        checks > interrupted,
        "every cut is followed by a check\n{stdout}"
    );
}
