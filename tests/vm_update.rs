//! The update VM test (tests/vm/update.sh, one qemu boot of a busybox initramfs): pristine
//! fetches version 2 (with a dm-verity tree) into the second /usr slot, `update boot --mount`
//! chooses it, verifies it and mounts it at /sysroot/usr through the dm-verity mapping it sets
//! up with its own device-mapper ioctls; a byte flipped underneath the mapping makes the read
//! fail instead of returning wrong data.
//!
//! Uses the static binary from `$PRISTINE_STATIC_BIN` (scripts/test sets it) or builds it.

mod common;

use std::path::Path;
use std::process::Command;

/// The value of the `PRISTINE-VM: KEY …` line.
fn said<'a>(log: &'a str, key: &str) -> &'a str {
    let prefix = format!("PRISTINE-VM: {key} ");
    log.lines()
        .find_map(|l| {
            l.find(&prefix)
                .map(|i| l[i + prefix.len()..].trim_end_matches('\r'))
        })
        .unwrap_or_else(|| panic!("no '{key}' line in the boot log:\n{log}"))
}

#[test]
fn the_fetched_slot_boots_through_pristines_dm_verity_mapping() {
    let out = common::TempDir::new("vm-update");
    let dir = out.path().join("vm");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vm/update.sh");
    let st = Command::new(script)
        .arg(common::static_binary())
        .arg(&dir)
        .status()
        .expect("run tests/vm/update.sh");
    assert!(st.success(), "tests/vm/update.sh failed");
    let log = String::from_utf8_lossy(&std::fs::read(dir.join("boot.log")).expect("boot log"))
        .into_owned();
    assert_eq!(said(&log, "adopt"), "0");
    assert_eq!(said(&log, "fetch"), "0");
    assert_eq!(said(&log, "boot"), "0");
    assert_eq!(said(&log, "content"), "PRISTINE-MARKER version 2");
    let mount = said(&log, "mount");
    assert!(
        mount.starts_with("/dev/mapper/pristine-usr /sysroot/usr ext4 ro")
            || mount.starts_with("/run/pristine/pristine-usr /sysroot/usr ext4 ro"),
        "{mount}"
    );
    let status = said(&log, "status");
    assert!(
        status.contains("slot 1: /dev/vdb: pending version 2"),
        "{status}"
    );
    let corrupted = said(&log, "corrupted");
    assert!(
        corrupted.starts_with("read failed") && corrupted.contains("Input/output error"),
        "{corrupted}"
    );
    assert!(log.contains("PRISTINE-VM: done"));
}
