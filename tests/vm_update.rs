//! The update VM test (tests/vm/update.sh: five qemu boots of a busybox initramfs that runs
//! `pristine update boot --mount` as the initrd step, scenario in tests/vm/update-init; the
//! store is on its own virtual disk, the slots are two more, the state is on the root disk).
//! Version 1 boots and fetches 2; the next boot mounts 2 through pristine's own dm-verity
//! mapping and confirms it; version 3 boots once without a confirm (tries = 1) and the boot
//! after that is version 2 again with 3 marked bad; version 4, one byte flipped after its
//! fetch, is never booted; finally a byte flipped under the mapping makes the read fail.
//! The confirm comes from the scenario script here: units/pristine-update-confirm.service and
//! boot-complete.target are not exercised (no systemd in this VM).
//!
//! Uses the static binary from `$PRISTINE_STATIC_BIN` (scripts/test sets it) or builds it.

mod common;

use std::path::Path;
use std::process::Command;

/// The rest of the `PRISTINE-VM: KEY …` line (the first one).
fn said<'a>(log: &'a str, key: &str) -> &'a str {
    let prefix = format!("PRISTINE-VM: {key} ");
    log.lines()
        .find_map(|l| {
            l.find(&prefix)
                .map(|i| l[i + prefix.len()..].trim_end_matches('\r'))
        })
        .unwrap_or_else(|| panic!("no '{key}' line in the boot logs:\n{log}"))
}

#[test]
fn fetch_boot_confirm_rollback_and_a_corrupted_update_in_five_boots() {
    let out = common::TempDir::new("vm-update");
    let dir = out.path().join("vm");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vm/update.sh");
    let st = Command::new(script)
        .arg(common::static_binary())
        .arg(&dir)
        .status()
        .expect("run tests/vm/update.sh");
    assert!(st.success(), "tests/vm/update.sh failed");
    let log: String = (1..=5)
        .map(|n| {
            String::from_utf8_lossy(
                &std::fs::read(dir.join(format!("boot{n}.log"))).expect("boot log"),
            )
            .into_owned()
        })
        .collect();
    let verity = "/dev/dm-0 ro";
    for (n, version, mount) in [
        (1, 1, "/dev/vda ro"),
        (2, 2, verity),
        (3, 3, verity),
        (4, 2, verity),
        (5, 2, verity),
    ] {
        assert_eq!(said(&log, &format!("boot{n} rc")), "0", "boot {n}");
        assert_eq!(
            said(&log, &format!("boot{n} usr")),
            format!("PRISTINE-MARKER version {version}"),
            "boot {n}"
        );
        let m = said(&log, &format!("boot{n} mount"));
        assert!(m.starts_with(mount), "boot {n}: {m}");
        assert!(
            log.contains(&format!("PRISTINE-VM: boot{n} done")),
            "boot {n}"
        );
    }
    for n in [1, 2, 4] {
        assert_eq!(said(&log, &format!("boot{n} fetch")), "0", "boot {n}");
    }
    assert_eq!(said(&log, "boot2 confirm"), "0");
    let s3 = said(&log, "boot3 status");
    assert!(
        s3.contains("slot 0: /dev/vda: pending version 3 [active, 0 tries left]"),
        "{s3}"
    );
    let s4 = said(&log, "boot4 status");
    assert!(
        s4.contains("slot 0: /dev/vda: bad version 3")
            && s4.contains("until its tries ran out")
            && s4.contains("slot 1: /dev/vdb: good version 2 [active, last good]"),
        "{s4}"
    );
    let s5 = said(&log, "boot5 status");
    assert!(
        s5.contains("slot 0: /dev/vda: bad version 4")
            && s5.contains("failed verification before its first boot"),
        "{s5}"
    );
    let corrupted = said(&log, "boot5 corrupted");
    assert!(
        corrupted.starts_with("read failed") && corrupted.contains("Input/output error"),
        "{corrupted}"
    );
}
