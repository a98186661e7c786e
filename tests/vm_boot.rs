//! The boot test: a debootstrapped Debian 12 whose /etc and /var are empty boots under qemu
//! (TCG) with pristine in a busybox initramfs (tests/vm/run.sh). The first boot must reach
//! multi-user with no failed units, with the test's unit enabled only through presets and the
//! hostname from pristine.toml; the second boot must find nothing to do.
//!
//! Uses the static binary from `$PRISTINE_STATIC_BIN` (scripts/test sets it) or builds it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn static_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("PRISTINE_STATIC_BIN") {
        return PathBuf::from(p);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-static");
    let out = Command::new(script).output().unwrap();
    assert!(
        out.status.success(),
        "build-static failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

#[test]
fn debian_boots_with_empty_etc_and_var() {
    let bin = static_binary();
    let out_dir = common::TempDir::new("vm");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vm/run.sh");
    let st = Command::new(script)
        .arg(&bin)
        .arg(out_dir.path())
        .status()
        .unwrap();
    assert!(st.success(), "tests/vm/run.sh failed");
    for (n, want_etc) in [(1, "fresh"), (2, "up-to-date")] {
        let log = String::from_utf8_lossy(
            &std::fs::read(out_dir.path().join(format!("boot{n}.log"))).unwrap(),
        )
        .into_owned();
        let tail: String = log
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        let report = log
            .lines()
            .find_map(|l| l.split("PRISTINE-VM: report ").nth(1))
            .unwrap_or_else(|| panic!("boot {n}: no pristine report\n{tail}"));
        let report: serde_json::Value = serde_json::from_str(report.trim())
            .unwrap_or_else(|e| panic!("boot {n}: bad report ({e}): {report}"));
        assert_eq!(report["etc"], want_etc, "boot {n}: {report}");
        assert_eq!(report["exit_code"], 0, "boot {n}: {report}");
        assert!(
            log.contains("PRISTINE-VM: pristine exit code 0"),
            "boot {n}: pristine failed\n{tail}"
        );
        let result = log
            .lines()
            .find(|l| l.contains("PRISTINE-VM-RESULT"))
            .unwrap_or_else(|| panic!("boot {n}: the system did not come up\n{tail}"));
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
            Some("pristine-vm"),
            "boot {n}: {result}"
        );
    }
}
