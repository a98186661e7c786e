//! The boot test: a debootstrapped Debian 12 whose /etc and /var are empty boots under qemu
//! (TCG) with pristine in a busybox initramfs (tests/vm/run.sh). The first boot must reach
//! multi-user with no failed units, with the test's unit enabled only through presets and the
//! hostname from pristine.toml; the system is stateless, and the admin's changes saved at the
//! first shutdown must be back in the second boot (state operators).
//!
//! Uses the static binary from `$PRISTINE_STATIC_BIN` (scripts/test sets it) or builds it.

mod common;

use std::path::Path;
use std::process::Command;

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// Runs tests/vm/run.sh with `initrd` ("busybox" or "dracut") for `boots` boots and returns
/// the serial-console log of each.
fn boot(initrd: &str, boots: u32) -> Vec<String> {
    let bin = common::static_binary();
    let out_dir = common::TempDir::new(&format!("vm-{initrd}"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vm/run.sh");
    let st = Command::new(script)
        .arg(&bin)
        .arg(out_dir.path())
        .arg(initrd)
        .arg(boots.to_string())
        .status()
        .unwrap();
    assert!(st.success(), "tests/vm/run.sh {initrd} failed");
    (1..=boots)
        .map(|n| {
            String::from_utf8_lossy(
                &std::fs::read(out_dir.path().join(format!("boot{n}.log"))).unwrap(),
            )
            .into_owned()
        })
        .collect()
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Checks one boot's log: pristine's report (as the booted system found it in /run/pristine)
/// says `want_etc` with exit code 0, the system came up with no failed units, the test's unit
/// enabled only through presets, the hostname from pristine.toml, and pristine's summary line
/// in the kernel log. Returns the report.
fn check_boot(n: usize, log: &str, want_etc: &str) -> serde_json::Value {
    check_boot_as(n, log, want_etc, "pristine-vm")
}

/// [`check_boot`] with the hostname the system must have.
fn check_boot_as(n: usize, log: &str, want_etc: &str, hostname: &str) -> serde_json::Value {
    let tail = tail(log);
    let result = log
        .lines()
        .find(|l| l.contains("PRISTINE-VM-RESULT"))
        .unwrap_or_else(|| panic!("boot {n}: the system did not come up\n{tail}"));
    let report = log
        .lines()
        .find_map(|l| l.split("PRISTINE-VM-REPORT ").nth(1))
        .unwrap_or_else(|| panic!("boot {n}: no pristine report in /run/pristine\n{tail}"));
    let report: serde_json::Value = serde_json::from_str(report.trim())
        .unwrap_or_else(|e| panic!("boot {n}: bad report ({e}): {report}"));
    assert_eq!(report["etc"], want_etc, "boot {n}: {report}");
    assert_eq!(report["exit_code"], 0, "boot {n}: {report}");
    assert_eq!(report["root"], "/sysroot", "boot {n}: {report}");
    assert_eq!(
        field(result, "failed"),
        Some("0"),
        "boot {n}: failed units: {result}\n{tail}"
    );
    assert_eq!(
        field(result, "enabled-by-preset"),
        Some("enabled"),
        "boot {n}: {result}"
    );
    assert_eq!(
        field(result, "hostname"),
        Some(hostname),
        "boot {n}: {result}"
    );
    let kmsg = log
        .lines()
        .find_map(|l| l.split("PRISTINE-VM-KMSG ").nth(1))
        .unwrap_or("");
    let want_kmsg = match want_etc {
        "fresh" => "]: /etc provisioned: ",
        _ => "]: /etc up to date: ",
    };
    assert!(
        kmsg.contains("pristine[") && kmsg.contains(want_kmsg),
        "boot {n}: kernel log summary {kmsg:?}, wanted {want_kmsg:?}"
    );
    report
}

/// The busybox initramfs: its /init runs pristine before switch_root, on a stateless system
/// (/etc and /var tmpfs on every boot). In boot 1 the check unit acts as the admin: a new
/// hostname, a unit enabled against its preset, a file in a stashed directory; the shutdown
/// unit saves them. Boot 2 starts from an empty /etc again and must have all three back.
#[test]
fn debian_boots_with_empty_etc_and_var() {
    let logs = boot("busybox", 2);
    for (i, log) in logs.iter().enumerate() {
        assert!(
            log.contains("PRISTINE-VM: pristine exit code 0"),
            "boot {}: pristine failed\n{}",
            i + 1,
            tail(log)
        );
    }
    check_boot_as(1, &logs[0], "fresh", "pristine-vm");
    assert!(
        logs[0].contains("PRISTINE-VM-CHANGED"),
        "boot 1: the admin's changes were not made\n{}",
        tail(&logs[0])
    );
    let report = check_boot_as(2, &logs[1], "fresh", "pristine-vm-saved");
    common::assert_steps_ran(&report, &["state", "state-units"]);
    let result = logs[1]
        .lines()
        .find(|l| l.contains("PRISTINE-VM-RESULT"))
        .unwrap_or_default();
    assert_eq!(field(result, "extra"), Some("enabled"), "boot 2: {result}");
    assert_eq!(field(result, "stash"), Some("kept"), "boot 2: {result}");
}

/// A systemd-based initrd built by dracut with initrd/dracut: pristine-provision.service
/// runs between the root mount and initrd-parse-etc; the real system boots provisioned.
#[test]
fn debian_boots_from_a_dracut_initrd_with_empty_etc_and_var() {
    let logs = boot("dracut", 1);
    let report = check_boot(1, &logs[0], "fresh");
    common::assert_steps_ran(
        &report,
        &["machine-id", "sysusers", "tmpfiles", "presets", "record"],
    );
    // The unit ran in the initrd, ordered before the switch to the real root.
    let log = &logs[0];
    let line_of = |what: &[&str]| log.lines().position(|l| what.iter().all(|w| l.contains(w)));
    let finished = line_of(&["Finished", "Provision /sysroot (pristine)"]);
    let switched = line_of(&["Reached target", "Switch Root"]);
    assert!(
        matches!((finished, switched), (Some(a), Some(b)) if a < b),
        "pristine-provision.service did not run before the switch root\n{}",
        tail(log)
    );
}
