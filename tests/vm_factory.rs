//! The factory VM test (tests/vm/factory.sh): a debootstrapped Debian 12 with openssh-server,
//! cron and rsyslog, installed with scripts/install, initramfs by update-initramfs inside the
//! image, converted by `pristine factory`, boots with an empty /etc and /var — once from its
//! initramfs-tools initramfs, once from a dracut initrd — to multi-user with no failed units,
//! the same enablement links as before the conversion, ssh host keys present and no prompt.
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

fn check(name: &str, log: &str, before: &str) {
    let lines: Vec<&str> = log.lines().collect();
    let tail = lines[lines.len().saturating_sub(60)..].join("\n");
    let result = log
        .lines()
        .find_map(|l| l.split("FACTORY-VM-RESULT ").nth(1))
        .unwrap_or_else(|| panic!("{name}: the system did not reach multi-user\n{tail}"));
    assert_eq!(
        field(result, "failed"),
        Some("0"),
        "{name}: failed units: {result}\n{tail}"
    );
    for unit in ["ssh", "cron", "rsyslog"] {
        assert_eq!(
            field(result, unit),
            Some("active"),
            "{name}: {unit}: {result}"
        );
    }
    let keys: u32 = field(result, "hostkeys")
        .and_then(|k| k.parse().ok())
        .unwrap_or(0);
    assert!(keys >= 1, "{name}: no ssh host keys: {result}");
    let links = log
        .lines()
        .find_map(|l| l.split("FACTORY-VM-LINKS ").nth(1))
        .unwrap_or_else(|| panic!("{name}: no link list\n{tail}"));
    let after: Vec<&str> = links.split_whitespace().collect();
    let before: Vec<&str> = before.lines().collect();
    assert_eq!(
        after, before,
        "{name}: enablement links differ from the image's before the conversion"
    );
    let report = log
        .lines()
        .find_map(|l| l.split("FACTORY-VM-REPORT ").nth(1))
        .unwrap_or_else(|| panic!("{name}: no pristine report\n{tail}"));
    let report: serde_json::Value =
        serde_json::from_str(report.trim()).unwrap_or_else(|e| panic!("{name}: bad report ({e})"));
    assert_eq!(report["etc"], "fresh", "{name}: {report}");
    assert_eq!(report["exit_code"], 0, "{name}: {report}");
    // The initramfs-tools boot script ran without a shell error (its lines say "script: N: …").
    assert!(
        !log.contains("/scripts/init-bottom/pristine: "),
        "{name}: boot script error\n{tail}"
    );
    // No prompt: nothing asked on the console for a locale, timezone or root password.
    assert!(
        !log.contains("Please enter") && !log.contains("Please create your first user"),
        "{name}: a prompt\n{tail}"
    );
}

#[test]
fn debian_converted_by_factory_boots_from_initramfs_tools_and_dracut() {
    let bin = static_binary();
    let out = common::TempDir::new("vm-factory");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vm/factory.sh");
    let st = Command::new(script)
        .arg(&bin)
        .arg(out.path())
        .status()
        .unwrap();
    assert!(st.success(), "tests/vm/factory.sh failed");
    let before = std::fs::read_to_string(out.path().join("before-links")).unwrap();
    assert!(
        before.contains("multi-user.target.wants/ssh.service"),
        "{before}"
    );
    for name in ["initramfs-tools", "dracut"] {
        let log = String::from_utf8_lossy(
            &std::fs::read(out.path().join(format!("boot-{name}.log"))).unwrap(),
        )
        .into_owned();
        check(name, &log, &before);
    }
}
