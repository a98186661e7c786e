//! An offline `--root` run takes nothing from the host and writes nothing outside the root.
//!
//! Each case runs the real binary in a private mount namespace (`unshare -m`, as root: CI runs
//! as root) where the host's facts are planted where pristine would find them by default: a
//! fake `/proc/cmdline` (machine id, hostname, factory reset, mode), a tmpfs `/run` holding a
//! system credential, a fake efivarfs at `/sys/firmware/efi/efivars` with `FactoryReset=1`, and
//! fake DMI data saying "QEMU" with a product UUID. The runs must show none of those values in
//! the tree, leave `/run` exactly as planted and the EFI variable untouched. Positive controls
//! pass the same facts in by flag and see them used, so the checks can fail.

mod common;

use std::path::Path;
use std::process::Output;

use common::{write, TempDir};

const GUID: &str = "8cf2644b-4b0b-428f-9387-6d876050dc67";
const HOST_ID: &str = "11111111111111111111111111111111";
const DMI_UUID: &str = "22222222-2222-2222-2222-222222222222";
const DMI_ID: &str = "22222222222222222222222222222222";

/// The shell fragment that plants the fake host inside the namespace.
fn plant(fake: &Path) -> String {
    let f = fake.display();
    format!(
        r#"set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/credentials/@system
printf leaked-credential > /run/credentials/@system/system.hostname
printf 'systemd.machine_id={HOST_ID} systemd.hostname=leaked-cmdline systemd.factory_reset=1 rd.systemd.factory_reset=1 pristine.mode=stateless systemd.volatile=yes\n' > {f}/cmdline
mount --bind {f}/cmdline /proc/cmdline
mount -t tmpfs tmpfs /sys/firmware
mkdir -p /sys/firmware/efi/efivars
printf '\007\000\000\000\061\000' > /sys/firmware/efi/efivars/FactoryReset-{GUID}
mount -t tmpfs tmpfs /sys/class
mkdir -p /sys/class/dmi/id
printf '{DMI_UUID}\n' > /sys/class/dmi/id/product_uuid
printf 'QEMU\n' > /sys/class/dmi/id/sys_vendor
echo "== planted"; (cd /run && find . | sort)
"#
    )
}

/// What the namespace's /run and efivarfs hold afterwards, one path (and content) a line.
const INSPECT: &str = r#"
echo "== run"; (cd /run && find . | sort)
echo "== efi"; od -An -c /sys/firmware/efi/efivars/FactoryReset-8cf2644b-4b0b-428f-9387-6d876050dc67 | tr -s ' '
"#;

/// Runs `pristine ARGS` inside the namespace, then [`INSPECT`]; returns the output.
fn in_namespace(fake: &Path, runs: &[Vec<String>]) -> Output {
    let bin = env!("CARGO_BIN_EXE_pristine");
    let mut script = plant(fake);
    for args in runs {
        let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
        script.push_str(&format!(
            "'{bin}' {} >&2 || echo \"exit $?\" >&2\n",
            quoted.join(" ")
        ));
    }
    script.push_str(INSPECT);
    std::process::Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .env("SYSTEMD_IN_INITRD", "0")
        .env("SYSTEMD_LOG_TARGET", "console")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("PRISTINE_RUNTIME_DIR")
        .output()
        .expect("run unshare")
}

fn tree(t: &Path) {
    write(t, "usr/lib/os-release", "ID=test\nVERSION_ID=1\n");
    write(
        t,
        "usr/lib/sysusers.d/svc.conf",
        "u svc - \"Service\" /var/lib/svc\n",
    );
    write(
        t,
        "usr/lib/tmpfiles.d/svc.conf",
        "d /var/lib/svc 0750 svc svc -\nf /etc/motd 0644 - - - host=%H\n",
    );
    std::fs::create_dir_all(t.join("etc")).unwrap();
    // Populated /var: a reset would flush this file.
    write(t, "var/keepme", "data");
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn read(t: &Path, rel: &str) -> String {
    std::fs::read_to_string(t.join(rel)).unwrap_or_default()
}

/// The section of the namespace's output that follows `== NAME` (up to the next section).
fn section(out: &str, name: &str) -> String {
    out.split(&format!("== {name}\n"))
        .nth(1)
        .and_then(|s| s.split("\n==").next())
        .unwrap_or("")
        .trim()
        .to_string()
}

/// A scratch directory and the `fake/` directory inside it for the planted host files.
fn scratch(tag: &str) -> (TempDir, std::path::PathBuf) {
    assert!(
        rustix::process::getuid().is_root(),
        "this test needs root for unshare -m (CI runs as root)"
    );
    let tmp = TempDir::new(tag);
    let fake = tmp.path().join("fake");
    std::fs::create_dir_all(&fake).unwrap();
    (tmp, fake)
}

#[test]
fn offline_provision_takes_nothing_from_the_host() {
    let (tmp, fake) = scratch("host-leaks");
    let persist = tmp.path().join("persist");
    tree(&persist);
    let transient = tmp.path().join("transient");
    tree(&transient);
    write(
        &transient,
        "usr/lib/pristine/pristine.toml",
        "machine-id = \"transient\"\n",
    );
    let root = |t: &Path| format!("--root={}", t.display());
    let out = in_namespace(
        &fake,
        &[
            vec![root(&persist), "provision".into()],
            vec![root(&transient), "provision".into()],
            vec![root(&persist), "reset".into(), "run".into()],
            vec![root(&persist), "reset".into(), "cancel".into()],
            vec![root(&persist), "status".into()],
        ],
    );
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(!all.contains("exit "), "a pristine run failed:\n{all}");

    // Nothing read: no value planted on the host reached the trees.
    let mid = read(&persist, "etc/machine-id");
    assert_eq!(mid.trim().len(), 32, "{all}");
    assert_ne!(
        mid.trim(),
        HOST_ID,
        "machine id from the host's /proc/cmdline"
    );
    assert_ne!(mid.trim(), DMI_ID, "machine id from the host's SMBIOS");
    for t in [&persist, &transient] {
        assert!(!read(t, "etc/hostname").contains("leaked"), "{all}");
        assert_eq!(
            read(t, "var/keepme"),
            "data",
            "reset requested by the host's EFI"
        );
    }
    assert!(
        !read(&transient, "etc/machine-id").contains(HOST_ID),
        "{all}"
    );
    // Nothing written: /run holds exactly what was planted, the EFI variable is untouched.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let planted = section(&stdout, "planted");
    assert!(planted.contains("system.hostname"), "{all}");
    assert_eq!(section(&stdout, "run"), planted, "{all}");
    assert_eq!(section(&stdout, "efi"), "\\a \\0 \\0 \\0 1 \\0", "{all}");
    // The status shows no reset request and the default mode.
    assert!(all.contains("factory reset: no"), "{all}");
    assert!(all.contains("mode: stateful (from default)"), "{all}");
}

#[test]
fn flags_pass_the_host_in() {
    let (tmp, fake) = scratch("host-flags");
    let t = tmp.path().join("root");
    tree(&t);
    let creds = tmp.path().join("creds");
    write(
        &creds,
        "tmpfiles.extra",
        "f /etc/from-credential 0644 - - - yes\n",
    );
    write(
        &creds,
        "sysusers.extra",
        "u creduser - \"From a credential\"\n",
    );
    let out = in_namespace(
        &fake,
        &[
            vec![
                format!("--root={}", t.display()),
                "--cmdline=systemd.hostname=flagged".into(),
                format!("--credentials={}", creds.display()),
                format!("--smbios-uuid={DMI_UUID}"),
                "provision".into(),
            ],
            vec![
                format!("--root={}", t.display()),
                "--efivars=/sys/firmware/efi/efivars".into(),
                "reset".into(),
                "status".into(),
            ],
        ],
    );
    let all = text(&out);
    assert!(!all.contains("exit "), "{all}");
    assert_eq!(read(&t, "etc/hostname"), "flagged\n", "{all}");
    assert_eq!(read(&t, "etc/machine-id").trim(), DMI_ID, "{all}");
    assert_eq!(read(&t, "etc/from-credential"), "yes", "{all}");
    assert!(read(&t, "etc/passwd").contains("creduser:"), "{all}");
    assert!(all.contains("requested: efi-factory-reset"), "{all}");
}
