//! Factory reset crash safety: for every N, abort the process before its (N+1)th mutating
//! filesystem operation, run again, and the result must equal an uninterrupted reset; the
//! keep-list must survive every N; nothing outside the root is touched.
//! Needs `--features fault-injection` (scripts/test passes it).

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{pristine, write, TempDir};

fn tree(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    fn walk(base: &Path, p: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let Ok(md) = std::fs::symlink_metadata(p) else {
            return;
        };
        let rel = p.strip_prefix(base).unwrap().to_path_buf();
        let desc = if md.file_type().is_symlink() {
            format!("-> {}", std::fs::read_link(p).unwrap().display())
        } else if md.is_dir() {
            format!("dir {:o}", md.permissions().mode() & 0o7777)
        } else {
            format!(
                "file {:o} {}",
                md.permissions().mode() & 0o7777,
                String::from_utf8_lossy(&std::fs::read(p).unwrap())
            )
        };
        out.insert(rel, desc);
        if md.is_dir() {
            for e in std::fs::read_dir(p).unwrap() {
                walk(base, &e.unwrap().path(), out);
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

fn build(t: &Path, outside: &Path) {
    write(t, "usr/lib/os-release", "ID=test\n");
    write(
        t,
        "usr/lib/pristine/pristine.toml",
        "[reset]\nkeep = [\"/var/lib/machines\", \"/etc/ssh/ssh_host_ed25519_key\", \"/var/lib/missing\"]\nmachine-id = \"keep\"\n",
    );
    write(t, "etc/machine-id", "0123456789abcdef0123456789abcdef\n");
    write(t, "etc/hostname", "box\n");
    write(t, "etc/ssh/ssh_host_ed25519_key", "PRIVATE KEY\n");
    write(t, "etc/ssh/sshd_config", "admin change\n");
    write(t, "etc/deep/a/b/c", "c\n");
    write(t, "var/lib/machines/vm1/disk.raw", "VM DATA\n");
    write(t, "var/lib/machines/vm2", "VM2\n");
    write(t, "var/lib/apt/lists/x", "x\n");
    write(t, "var/log/syslog", "log\n");
    write(t, "var/lib/pristine/factory-reset", "");
    std::os::unix::fs::symlink(outside, t.join("var/escape")).unwrap();
    std::os::unix::fs::symlink(outside.join("f"), t.join("etc/escape-file")).unwrap();
    std::fs::set_permissions(
        t.join("var/lib/machines"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
}

fn reset(t: &Path, fault_after: Option<usize>) -> std::process::ExitStatus {
    let mut c = pristine();
    c.arg(format!("--root={}", t.display())).args([
        "--cmdline=",
        "--efivars=/nonexistent",
        "reset",
        "run",
    ]);
    c.env("SYSTEMD_LOG_TARGET", "console");
    match fault_after {
        Some(n) => c.env("PRISTINE_FAULT_AFTER", n.to_string()),
        None => c.env_remove("PRISTINE_FAULT_AFTER"),
    };
    c.stderr(std::process::Stdio::null()).status().unwrap()
}

fn kept_somewhere(t: &Path, rel: &str, content: &str) -> bool {
    let top = rel.split('/').next().unwrap();
    let rest = rel.split_once('/').unwrap().1;
    [
        t.join(rel),
        t.join(top).join(".pristine-reset/keep").join(rest),
    ]
    .iter()
    .any(|p| {
        std::fs::read_to_string(p)
            .map(|c| c == content)
            .unwrap_or(false)
    })
}

#[test]
fn reset_result_and_keep_list() {
    let tmp = TempDir::new("reset-once");
    let (t, outside) = (tmp.path().join("root"), tmp.path().join("outside"));
    write(&outside, "f", "outside\n");
    build(&t, &outside);
    let before_out = tree(&outside);
    assert!(reset(&t, None).success());
    let after = tree(&t);
    let names: Vec<String> = after.keys().map(|p| p.display().to_string()).collect();
    for want in [
        "etc/machine-id",
        "etc/ssh/ssh_host_ed25519_key",
        "var/lib/machines/vm1/disk.raw",
        "var/lib/machines/vm2",
    ] {
        assert!(names.contains(&want.to_string()), "{want} lost: {names:?}");
    }
    for gone in [
        "etc/hostname",
        "etc/ssh/sshd_config",
        "etc/deep",
        "var/log",
        "var/lib/apt",
        "var/escape",
        "etc/escape-file",
        "var/lib/pristine/factory-reset",
        "etc/.pristine-reset",
        "var/.pristine-reset",
    ] {
        assert!(
            !names.contains(&gone.to_string()),
            "{gone} survived: {names:?}"
        );
    }
    assert_eq!(
        after[Path::new("var/lib/machines")],
        "dir 700",
        "kept directories keep their mode"
    );
    assert_eq!(before_out, tree(&outside), "outside changed");
    // The request was cleared: a second run does nothing.
    let snapshot = tree(&t);
    assert!(reset(&t, None).success());
    assert_eq!(snapshot, tree(&t));
}

#[test]
fn reset_survives_a_crash_at_every_operation() {
    let reference = {
        let tmp = TempDir::new("reset-ref");
        let (t, outside) = (tmp.path().join("root"), tmp.path().join("outside"));
        write(&outside, "f", "outside\n");
        build(&t, &outside);
        assert!(reset(&t, None).success());
        tree(&t)
    };
    let mut n = 0;
    loop {
        let tmp = TempDir::new("reset-crash");
        let (t, outside) = (tmp.path().join("root"), tmp.path().join("outside"));
        write(&outside, "f", "outside\n");
        build(&t, &outside);
        let before_out = tree(&outside);
        let st = reset(&t, Some(n));
        let crashed = !st.success();
        if crashed {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(
                st.signal(),
                Some(6),
                "op {n}: expected an abort, got {st:?}"
            );
            for (rel, content) in [
                ("var/lib/machines/vm1/disk.raw", "VM DATA\n"),
                ("var/lib/machines/vm2", "VM2\n"),
                ("etc/ssh/ssh_host_ed25519_key", "PRIVATE KEY\n"),
                ("etc/machine-id", "0123456789abcdef0123456789abcdef\n"),
            ] {
                assert!(
                    kept_somewhere(&t, rel, content),
                    "op {n}: {rel} lost after the crash"
                );
            }
            assert!(reset(&t, None).success(), "op {n}: resumed run failed");
        }
        assert_eq!(
            reference,
            tree(&t),
            "op {n}: result differs from an uninterrupted reset"
        );
        assert_eq!(before_out, tree(&outside), "op {n}: outside changed");
        if !crashed {
            assert!(n > 10, "suspiciously few mutating operations: {n}");
            break;
        }
        n += 1;
        assert!(n < 10_000, "reset never completes");
    }
}

#[test]
fn reset_never_crosses_mount_points() {
    let tmp = TempDir::new("reset-mnt");
    let (t, outside) = (tmp.path().join("root"), tmp.path().join("outside"));
    write(&outside, "f", "outside\n");
    build(&t, &outside);
    let mnt = t.join("var/lib/docker");
    std::fs::create_dir_all(&mnt).unwrap();
    assert!(Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap()
        .success());
    std::fs::write(mnt.join("layer"), "on its own fs\n").unwrap();
    let ok = reset(&t, None).success();
    let kept = std::fs::read_to_string(mnt.join("layer"));
    let apt_gone = !t.join("var/lib/apt").exists();
    let _ = Command::new("umount").arg(&mnt).status();
    assert!(ok);
    assert_eq!(kept.unwrap(), "on its own fs\n");
    assert!(apt_gone, "siblings of the mount point are flushed");
}
