//! The registry on a block device (`[state] device`): an ext4 file system on a loop device,
//! mounted by pristine for `state save` and `provision` (offline only with `--state-device`),
//! unmounted afterwards, or used where it is already mounted. Needs root (losetup, mount): CI
//! runs the tests as root, and this test fails rather than skips without it.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{pristine, write, TempDir};

const RULES: &str = r#"
[[rule]]
path = "/etc/hostname"
kind = "parsed"

[[rule]]
path = "/etc/app"
kind = "stash"
"#;

/// A loop device over an ext4 image, detached when dropped.
struct Loop(String);

impl Loop {
    fn new(img: &Path) -> Loop {
        let f = std::fs::File::create(img).unwrap();
        f.set_len(16 << 20).unwrap();
        let out = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "pristine-state"])
            .arg(img)
            .output()
            .expect("mkfs.ext4 (e2fsprogs)");
        common::assert_exit(&out, 0);
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(img)
            .output()
            .expect("losetup (util-linux)");
        common::assert_exit(&out, 0);
        Loop(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

fn mounted(dev: &str) -> Vec<String> {
    let canon = std::fs::canonicalize(dev).unwrap();
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').next().map(PathBuf::from) == Some(canon.clone()))
        .map(str::to_string)
        .collect()
}

fn run(t: &Path, runtime: &Path, args: &[&str]) -> Output {
    pristine()
        .arg(format!("--root={}", t.display()))
        .arg("--cmdline=pristine.mode=stateless")
        .arg("--efivars=/nonexistent")
        .env("SYSTEMD_IN_INITRD", "0")
        .env("TMPDIR", runtime)
        .env_remove("CREDENTIALS_DIRECTORY")
        .args(args)
        .output()
        .unwrap()
}

/// Unmounts the tmpfs /etc and /var a stateless provision mounted (a reboot loses them).
fn reboot(t: &Path) {
    for d in ["etc", "var"] {
        let _ = Command::new("umount").arg(t.join(d)).status();
        let _ = std::fs::remove_dir_all(t.join(d));
        std::fs::create_dir_all(t.join(d)).unwrap();
    }
}

#[test]
fn registry_on_a_loop_device_survives_an_empty_etc_and_var() {
    let out = Command::new("id").arg("-u").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0",
        "this test mounts a loop device and needs root (CI runs it as root)"
    );
    let tmp = TempDir::new("state-device");
    let t = tmp.path().join("root");
    let runtime = tmp.path().join("run");
    std::fs::create_dir_all(&runtime).unwrap();
    write(&t, "usr/lib/os-release", "ID=test\nVERSION_ID=1\n");
    write(
        &t,
        "usr/lib/pristine/10-base.toml",
        "[firstboot]\nhostname = \"vendor-host\"\n\n[state]\ndevice = \"PARTLABEL=pristine-state\"\n",
    );
    write(&t, "usr/lib/pristine/state.d/10-base.toml", RULES);
    std::fs::create_dir_all(t.join("etc")).unwrap();
    std::fs::create_dir_all(t.join("var")).unwrap();
    let lo = Loop::new(&tmp.path().join("state.img"));
    let flag = format!("--state-device={}", lo.0);

    common::assert_exit(&run(&t, &runtime, &[&flag, "provision"]), 0);
    write(&t, "etc/hostname", "admin-host\n");
    write(&t, "etc/app/app.conf", "admin=1\n");
    common::assert_exit(&run(&t, &runtime, &[&flag, "state", "save"]), 0);
    assert!(
        mounted(&lo.0).is_empty(),
        "pristine left the device mounted"
    );
    // Nothing was written into the tree's /var: the registry is on the device.
    assert!(!t.join("var/lib/pristine/state").exists());

    // A reboot: the stateless mode's tmpfs /etc and /var are gone.
    reboot(&t);
    assert!(!t.join("etc/hostname").exists());
    // Without the flag an offline run mounts nothing and restores nothing (a notice only).
    let out = run(&t, &runtime, &["state", "restore"]);
    common::assert_exit(&out, 0);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--state-device"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!t.join("etc/hostname").exists());

    // A stateless boot: /etc and /var empty, the device holds the state.
    common::assert_exit(&run(&t, &runtime, &[&flag, "provision"]), 0);
    assert_eq!(
        std::fs::read_to_string(t.join("etc/hostname")).unwrap(),
        "admin-host\n"
    );
    assert_eq!(
        std::fs::read_to_string(t.join("etc/app/app.conf")).unwrap(),
        "admin=1\n"
    );
    assert!(
        mounted(&lo.0).is_empty(),
        "pristine left the device mounted"
    );
    assert!(
        std::fs::read_to_string("/proc/self/mounts")
            .unwrap()
            .contains(&format!("{} tmpfs", t.join("etc").display())),
        "provision in stateless mode runs on a tmpfs /etc"
    );

    // Already mounted (a running system's save): that mount is used and stays.
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let out = Command::new("mount").arg(&lo.0).arg(&mnt).output().unwrap();
    common::assert_exit(&out, 0);
    write(&t, "etc/app/new.conf", "new\n");
    let out = run(&t, &runtime, &[&flag, "state", "save"]);
    let g = std::fs::read_to_string(mnt.join("generation.json")).unwrap_or_default();
    let still = mounted(&lo.0).len();
    let _ = Command::new("umount").arg(&mnt).status();
    reboot(&t);
    common::assert_exit(&out, 0);
    assert!(g.contains("/etc/app/new.conf"), "{g}");
    assert_eq!(still, 1, "the existing mount must stay");
}
