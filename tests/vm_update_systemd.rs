//! The update VM test with a real systemd initrd (tests/vm/update-systemd.sh; the scenario's
//! steps run in the booted system, tests/vm/update-systemd-check). A debootstrapped Debian 12
//! on one GPT disk (root, usr-a, usr-b with dm-verity), the store on a second disk, a dracut
//! initrd with pristine's module: pristine-update-boot.service chooses and mounts /usr,
//! pristine-provision.service provisions, units/pristine-update-confirm.service confirms after
//! boot-complete.target. Five boots:
//!   1. version 1 (slot usr-a) boots, fetches 2;
//!   2. the initrd picks 2 (dm-verity), provisioning does only 2's new work (one user, one
//!      tmpfiles directory, one preset-enabled unit), the confirm unit marks 2 good; fetch 3;
//!   3. 3's health check fails: boot-complete.target is never reached, no confirm (tries = 1);
//!   4. 3 is bad ("tries ran out"), 2 boots again; fetch 4, flip one byte of its slot;
//!   5. 4 fails verification in the initrd and is never booted: 2 boots.
//!
//! No failed units in boots 1, 2, 4, 5. Uses the static binary from `$PRISTINE_STATIC_BIN`
//! (scripts/test sets it) or builds it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure
mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// The rest of boot `n`'s `PRISTINE-VM: bootN KEY …` line.
fn said<'a>(log: &'a str, n: usize, key: &str) -> &'a str {
    let prefix = format!("PRISTINE-VM: boot{n} {key} ");
    let bare = format!("PRISTINE-VM: boot{n} {key}");
    log.lines()
        .find_map(|l| {
            let l = l.trim_end_matches('\r');
            l.find(&prefix)
                .map(|i| &l[i + prefix.len()..])
                .or_else(|| l.ends_with(&bare).then_some(""))
        })
        .unwrap_or_else(|| {
            let tail: Vec<&str> = log.lines().rev().take(80).collect();
            panic!(
                "boot {n}: no '{key}' line; the log's end:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )
        })
}

/// The named counts of one step of pristine's report.
fn counts(report: &serde_json::Value, step: &str) -> Vec<(String, u64)> {
    let s = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == step)
        .unwrap_or_else(|| panic!("no step {step} in {report}"));
    assert_eq!(s["failed"], false, "{s}");
    if s["ran"] == false {
        return Vec::new();
    }
    s["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c[0].as_str().unwrap().to_string(), c[1].as_u64().unwrap()))
        .collect()
}

fn count(report: &serde_json::Value, step: &str, name: &str) -> u64 {
    counts(report, step)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .unwrap_or(0)
}

#[test]
fn systemd_initrd_picks_confirms_and_rolls_back_verity_usr_slots() {
    let out = common::TempDir::new("vm-update-systemd");
    let dir = out.path().join("vm");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vm/update-systemd.sh");
    let st = Command::new(script)
        .arg(common::static_binary())
        .arg(&dir)
        .status()
        .expect("run tests/vm/update-systemd.sh");
    assert!(st.success(), "tests/vm/update-systemd.sh failed");
    eprintln!(
        "update-systemd VM times (s):\n{}",
        std::fs::read_to_string(dir.join("times")).unwrap_or_default()
    );
    let logs: Vec<String> = (1..=5)
        .map(|n| {
            String::from_utf8_lossy(&std::fs::read(dir.join(format!("boot{n}.log"))).unwrap())
                .into_owned()
        })
        .collect();
    let log = |n: usize| logs[n - 1].as_str();
    let (a, b) = (
        "/dev/disk/by-partlabel/usr-a",
        "/dev/disk/by-partlabel/usr-b",
    );

    for (n, version) in [(1, "1"), (2, "2"), (3, "3"), (4, "2"), (5, "2")] {
        assert_eq!(said(log(n), n, "usr"), version, "boot {n}");
        said(log(n), n, "done");
        // Version 1 was adopted (no root hash): its partition itself; every fetched version
        // through pristine's dm-verity mapping.
        let m = said(log(n), n, "usr-mount");
        let want = if n == 1 { a } else { "/dev/dm-0" };
        assert!(m.starts_with(&format!("{want} ro,")), "boot {n}: {m}");
        let failed = said(log(n), n, "failed");
        if n == 3 {
            assert_eq!(failed, "pristine-vm-health.service .", "boot 3");
            assert_eq!(said(log(n), n, "confirm"), "inactive", "boot 3");
        } else {
            assert_eq!(failed, ".", "boot {n}: failed units");
            assert_eq!(said(log(n), n, "confirm"), "active", "boot {n}");
        }
    }
    for (n, v) in [(1, 2), (2, 3), (4, 4)] {
        let f = said(log(n), n, &format!("fetch v{v}"));
        assert!(f.starts_with("rc 0 "), "boot {n}: {f}");
        eprintln!("boot {n}: fetch of version {v}: {f}");
    }

    // The initrd's choice (pristine-update-boot.service's journal) and `update status`.
    let ub = said(log(2), 2, "update-boot");
    assert!(
        ub.contains("booting pending slot 1 (version 2), 0 tries left")
            && ub.contains("Mounted /dev/dm-0 (ext4) read-only at /sysroot/usr"),
        "{ub}"
    );
    let s = said(log(2), 2, "status");
    assert!(
        s.contains(&format!(
            "slot 1: {b}: good version 2 [active, last good] (confirmed)"
        )),
        "{s}"
    );
    let s = said(log(3), 3, "status");
    assert!(
        s.contains(&format!(
            "slot 0: {a}: pending version 3 [active, 0 tries left]"
        )),
        "{s}"
    );
    let ub = said(log(4), 4, "update-boot");
    assert!(
        ub.contains("reverted: booting good slot 1 (version 2)"),
        "{ub}"
    );
    let s = said(log(4), 4, "status");
    assert!(
        s.contains(&format!("slot 0: {a}: bad version 3"))
            && s.contains("was booted without being confirmed until its tries ran out")
            && s.contains(&format!("slot 1: {b}: good version 2 [active, last good]")),
        "{s}"
    );
    assert!(said(log(4), 4, "flipped").starts_with(a));
    let ub = said(log(5), 5, "update-boot");
    assert!(
        ub.contains("failed verification before its first boot (version 4)")
            && ub.contains("booting good slot 1 (version 2)"),
        "{ub}"
    );
    let s = said(log(5), 5, "status");
    assert!(
        s.contains(&format!("slot 0: {a}: bad version 4"))
            && s.contains("failed verification before its first boot"),
        "{s}"
    );

    // Post-update provisioning does only the new work. Boot 1 provisioned a fresh /etc; boot
    // 2's report (/run/pristine/report.json, written in the initrd) says /etc was updated and
    // counts exactly version 2's additions: one user and its group, one tmpfiles path, one
    // preset link; and /etc, compared with its listing at the end of boot 1 (path, type,
    // mode, owner, size, mtime, link target), changed only in the account databases, the new
    // enablement link and pristine's stamp.
    let r1: serde_json::Value = serde_json::from_str(said(log(1), 1, "report")).unwrap();
    assert_eq!(r1["etc"], "fresh", "{r1}");
    assert!(count(&r1, "sysusers", "users") > 1, "{r1}");
    let r2: serde_json::Value = serde_json::from_str(said(log(2), 2, "report")).unwrap();
    assert_eq!(r2["etc"], "updated", "{r2}");
    assert_eq!(r2["exit_code"], 0, "{r2}");
    assert_eq!(
        counts(&r2, "sysusers"),
        [("users".to_string(), 1), ("groups".to_string(), 1)],
        "{r2}"
    );
    assert_eq!(counts(&r2, "tmpfiles"), [("paths".to_string(), 1)], "{r2}");
    assert_eq!(count(&r2, "presets", "links"), 1, "{r2}");
    let changed: BTreeSet<&str> = said(log(2), 2, "etc-changed")
        .trim_end_matches('.')
        .split_whitespace()
        .collect();
    let want: BTreeSet<&str> = EXPECTED_ETC_CHANGES.iter().copied().collect();
    assert_eq!(changed, want, "/etc changes from boot 1 to boot 2");
    // Boot 5 boots the version booted before (4 was never used): nothing to provision.
    let r5: serde_json::Value = serde_json::from_str(said(log(5), 5, "report")).unwrap();
    assert_eq!(r5["etc"], "up-to-date", "{r5}");
    assert_eq!(said(log(5), 5, "etc-changed"), ".", "boot 5 changed /etc");
    let user = said(log(2), 2, "user");
    assert_eq!(
        user, "pvmtwo:/ dir pvmtwo 750 unit enabled active",
        "version 2's additions in the booted system"
    );
}

/// What boot 2's provisioning may change in /etc: the account databases sysusers rewrites
/// (and their `-` backups) for the new user and group, the preset link of the new unit and
/// its directory, pristine's stamp and preset record, and the two directories whose entries
/// changed. Nothing else is created, removed or rewritten.
const EXPECTED_ETC_CHANGES: [&str; 14] = [
    "/etc",
    "/etc/.pristine-stamp",
    "/etc/group",
    "/etc/group-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/passwd",
    "/etc/passwd-",
    "/etc/pristine",
    "/etc/pristine/presets.state",
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/systemd/system/multi-user.target.wants",
    "/etc/systemd/system/multi-user.target.wants/pristine-vm-v2.service",
];
