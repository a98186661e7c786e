//! `pristine stamp` against the reference `systemd-update-done` 257: the same `.updated` bytes,
//! mode and timestamps. The reference runs in a private mount namespace with a test tree
//! bind-mounted over /etc, /var and /usr.

// Fixtures build hostile trees (devices, odd times, races) directly, not through src/fs.
#![allow(clippy::disallowed_methods)]

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use common::{reference_bin, run_pristine, TempDir};

fn make_tree(dir: &Path, usr_mtime: (i64, i64)) {
    for d in ["etc", "var", "usr/lib"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::write(dir.join("usr/lib/os-release"), "ID=test\nVERSION_ID=1\n").unwrap();
    set_mtime(&dir.join("usr"), usr_mtime);
}

fn set_mtime(p: &Path, (sec, nsec): (i64, i64)) {
    let ts = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: sec,
            tv_nsec: nsec as _,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: sec,
            tv_nsec: nsec as _,
        },
    };
    rustix::fs::utimensat(rustix::fs::CWD, p, &ts, rustix::fs::AtFlags::empty()).unwrap();
}

fn run_reference_update_done(tree: &Path) {
    // The wrapper execs trixie's loader on the binary with trixie's libraries; host libraries
    // (libz, …) come from the host /usr, which we hide, so it is bind-mounted aside first.
    let wrapper = std::fs::read_to_string(reference_bin().join("systemd-update-done")).unwrap();
    let exec_line = wrapper
        .lines()
        .find(|l| l.starts_with("exec "))
        .expect("wrapper exec line");
    let parts: Vec<&str> = exec_line.split('"').collect();
    let (ldso, libs, exe) = (parts[1], parts[3], parts[5]);
    let host_usr = tree.join("host-usr");
    std::fs::create_dir_all(&host_usr).unwrap();
    let script = format!(
        "set -e; mount --bind /usr '{h}'; mount --bind '{t}/etc' /etc; mount --bind '{t}/var' /var; \
         mount --bind '{t}/usr' /usr; exec '{ldso}' --library-path '{libs}:{h}/lib/x86_64-linux-gnu' '{exe}'",
        t = tree.display(),
        h = host_usr.display(),
    );
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "systemd-update-done failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn describe(p: &Path) -> (Vec<u8>, u32, i64, i64, i64, i64) {
    let md = std::fs::metadata(p).unwrap();
    (
        std::fs::read(p).unwrap(),
        md.permissions().mode() & 0o7777,
        md.mtime(),
        md.mtime_nsec(),
        md.atime(),
        md.atime_nsec(),
    )
}

#[test]
fn stamp_matches_systemd_update_done() {
    for usr_mtime in [
        (1_700_000_000, 123_456_789),
        (1_600_000_000, 0),
        (5, 999_999_999),
    ] {
        let tmp = TempDir::new("stamp");
        let (a, b) = (tmp.path().join("ref"), tmp.path().join("ours"));
        make_tree(&a, usr_mtime);
        make_tree(&b, usr_mtime);
        run_reference_update_done(&a);
        let out = run_pristine(&["--root", b.to_str().unwrap(), "stamp"]);
        assert!(
            out.status.success(),
            "pristine stamp: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for f in ["etc/.updated", "var/.updated"] {
            let (r, o) = (describe(&a.join(f)), describe(&b.join(f)));
            assert_eq!(
                String::from_utf8_lossy(&r.0),
                String::from_utf8_lossy(&o.0),
                "{f} content, /usr mtime {usr_mtime:?}"
            );
            assert_eq!(
                r, o,
                "{f} bytes/mode/times differ, /usr mtime {usr_mtime:?}"
            );
        }
    }
}

#[test]
fn stamp_twice_writes_nothing_and_clears_needs_update() {
    let tmp = TempDir::new("stamp2");
    let t = tmp.path();
    make_tree(t, (1_700_000_000, 5));
    let status = |t: &Path| -> serde_json::Value {
        let out = run_pristine(&[
            "--root",
            t.to_str().unwrap(),
            "--cmdline=",
            "status",
            "--json",
        ]);
        assert!(out.status.success());
        serde_json::from_slice(&out.stdout).unwrap()
    };
    assert_eq!(status(t)["etc"]["needs_update"]["value"], true);
    assert!(run_pristine(&["--root", t.to_str().unwrap(), "stamp"])
        .status
        .success());
    let ino = std::fs::metadata(t.join("etc/.updated")).unwrap().ino();
    let s = status(t);
    assert_eq!(s["etc"]["needs_update"]["value"], false);
    assert_eq!(s["var"]["needs_update"]["value"], false);
    assert!(run_pristine(&["--root", t.to_str().unwrap(), "stamp"])
        .status
        .success());
    assert_eq!(
        ino,
        std::fs::metadata(t.join("etc/.updated")).unwrap().ino(),
        "second stamp rewrote .updated"
    );
    assert!(
        !t.join("etc/.pristine-stamp").exists(),
        "stamp writes only what systemd-update-done writes"
    );
    // A newer /usr makes both directories stale again.
    set_mtime(&t.join("usr"), (1_700_000_001, 0));
    assert_eq!(status(t)["etc"]["needs_update"]["value"], true);
    assert_eq!(status(t)["var"]["needs_update"]["value"], true);
}

#[test]
fn stamp_tolerates_read_only_and_missing_dirs() {
    let tmp = TempDir::new("stamp-ro");
    let t = tmp.path();
    make_tree(t, (1_700_000_000, 5));
    std::fs::remove_dir(t.join("var")).unwrap();
    let st = Command::new("mount")
        .args(["--bind", "-o", "ro"])
        .arg(t.join("etc"))
        .arg(t.join("etc"))
        .status()
        .unwrap();
    assert!(st.success());
    // Some kernels need a remount for ro bind mounts to take effect.
    let _ = Command::new("mount")
        .args(["-o", "remount,bind,ro"])
        .arg(t.join("etc"))
        .status();
    let out = run_pristine(&["--root", t.to_str().unwrap(), "stamp"]);
    let _ = Command::new("umount").arg(t.join("etc")).status();
    common::assert_exit(&out, 0);
    assert!(!t.join("etc/.updated").exists());
}
