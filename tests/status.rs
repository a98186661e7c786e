//! `pristine status --json` on the trees the boot meets: empty, populated, stale, first boot,
//! and a factory-reset request from each source.

// Fixtures build hostile trees (devices, odd times, races) directly, not through src/fs.
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::Path;

use common::{pristine, write, TempDir};
use serde_json::Value;

const MID: &str = "0123456789abcdef0123456789abcdef\n";
const GUID: &str = "8cf2644b-4b0b-428f-9387-6d876050dc67";

fn status(root: &Path, cmdline: &str, efivars: Option<&Path>, initrd: bool) -> (Value, i32) {
    let mut c = pristine();
    c.arg(format!("--root={}", root.display()))
        .arg(format!("--cmdline={cmdline}"));
    c.arg(format!(
        "--efivars={}",
        efivars
            .map(|p| p.display().to_string())
            .unwrap_or("/nonexistent".into())
    ));
    c.args(["status", "--json"])
        .env("SYSTEMD_IN_INITRD", if initrd { "1" } else { "0" })
        .env("SYSTEMD_LOG_TARGET", "console");
    let out = c.output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("bad json ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    (v, out.status.code().unwrap_or(-1))
}

fn populated(t: &Path) {
    write(
        t,
        "usr/lib/os-release",
        "ID=debian\nVERSION_ID=12\nIMAGE_ID=appliance\n",
    );
    write(t, "etc/machine-id", MID);
    write(t, "etc/hostname", "box\n");
    write(t, "var/lib/x", "");
}

#[test]
fn empty_tree() {
    let tmp = TempDir::new("st-empty");
    let (v, code) = status(tmp.path(), "", None, false);
    assert_eq!(code, 0);
    assert_eq!(v["etc"]["state"], "absent");
    assert_eq!(v["var"]["state"], "absent");
    assert_eq!(v["first_boot"]["value"], true);
    assert_eq!(v["etc"]["needs_update"]["value"], true);
    assert_eq!(v["mode"], "stateful");
    assert_eq!(v["factory_reset"]["requested"], false);
    assert_eq!(v["machine_id"], Value::Null);
    std::fs::create_dir_all(tmp.path().join("etc")).unwrap();
    std::fs::create_dir_all(tmp.path().join("var")).unwrap();
    let (v, _) = status(tmp.path(), "", None, false);
    assert_eq!(v["etc"]["state"], "empty");
    assert_eq!(v["var"]["state"], "empty");
}

#[test]
fn populated_tree() {
    let tmp = TempDir::new("st-pop");
    populated(tmp.path());
    let (v, code) = status(tmp.path(), "quiet", None, false);
    assert_eq!(code, 0);
    assert_eq!(v["etc"]["state"], "populated");
    assert_eq!(v["var"]["state"], "populated");
    assert_eq!(v["first_boot"]["value"], false);
    assert_eq!(v["machine_id"], MID.trim());
    assert_eq!(v["os"]["id"], "debian");
    assert_eq!(v["os"]["image_id"], "appliance");
    assert_eq!(v["diagnostics"].as_array().unwrap().len(), 0);
}

#[test]
fn machine_id_rules() {
    let tmp = TempDir::new("st-mid");
    populated(tmp.path());
    write(tmp.path(), "etc/machine-id", "uninitialized\n");
    let (v, _) = status(tmp.path(), "", None, false);
    assert_eq!(v["first_boot"]["value"], true);
    assert_eq!(v["machine_id"], Value::Null);
    write(tmp.path(), "etc/machine-id", "");
    let (v, _) = status(tmp.path(), "", None, false);
    assert_eq!(
        v["first_boot"]["value"], false,
        "an empty machine-id is not a first boot"
    );
    let (v, _) = status(tmp.path(), "systemd.condition_first_boot=1", None, false);
    assert_eq!(v["first_boot"]["value"], true);
}

#[test]
fn stale_updated() {
    let tmp = TempDir::new("st-stale");
    let t = tmp.path();
    populated(t);
    assert!(pristine()
        .arg(format!("--root={}", t.display()))
        .arg("stamp")
        .status()
        .unwrap()
        .success());
    let (v, _) = status(t, "", None, false);
    assert_eq!(v["etc"]["needs_update"]["value"], false);
    // /usr touched after the stamp: stale.
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(t.join("usr/new-file"), "").unwrap();
    let (v, _) = status(t, "", None, false);
    assert_eq!(v["etc"]["needs_update"]["value"], true);
    assert_eq!(v["var"]["needs_update"]["value"], true);
    // The kernel command line overrides it either way.
    let (v, _) = status(t, "systemd.condition_needs_update=0", None, false);
    assert_eq!(v["etc"]["needs_update"]["value"], false);
    // An unparsable .updated with equal seconds and no nsec on .updated falls back to "update".
    write(t, "etc/.updated", "TIMESTAMP_NSEC=garbage\n");
    let usr = std::fs::metadata(t.join("usr")).unwrap();
    use std::os::unix::fs::MetadataExt;
    let ts = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: usr.mtime(),
            tv_nsec: 0,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: usr.mtime(),
            tv_nsec: 0,
        },
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        t.join("etc/.updated"),
        &ts,
        rustix::fs::AtFlags::empty(),
    )
    .unwrap();
    let (v, _) = status(t, "", None, false);
    let expect = usr.mtime_nsec() != 0;
    assert_eq!(
        v["etc"]["needs_update"]["value"], expect,
        "{}",
        v["etc"]["needs_update"]
    );
}

fn efivar(dir: &Path, name: &str, s: &str) {
    let mut data = vec![7u8, 0, 0, 0];
    data.extend(s.encode_utf16().flat_map(|u| u.to_le_bytes()));
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(format!("{name}-{GUID}")), data).unwrap();
}

#[test]
fn reset_requests_from_each_source() {
    let tmp = TempDir::new("st-reset");
    let t = tmp.path().join("root");
    populated(&t);
    let efi = tmp.path().join("efivars");
    std::fs::create_dir_all(&efi).unwrap();
    let sources = |v: &Value| {
        v["factory_reset"]["sources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };

    // Kernel command line: honoured in the initrd only (plain and rd.-prefixed).
    let (v, _) = status(&t, "systemd.factory_reset=1", Some(&efi), true);
    assert_eq!(sources(&v), ["kernel"]);
    let (v, _) = status(&t, "rd.systemd.factory_reset", Some(&efi), true);
    assert_eq!(sources(&v), ["kernel"]);
    let (v, _) = status(&t, "systemd.factory_reset=1", Some(&efi), false);
    assert_eq!(v["factory_reset"]["requested"], false);

    // systemd ≤ 257's boolean EFI variable.
    efivar(&efi, "FactoryReset", "1");
    let (v, _) = status(&t, "", Some(&efi), false);
    assert_eq!(sources(&v), ["efi-factory-reset"]);
    efivar(&efi, "FactoryReset", "no");
    let (v, _) = status(&t, "", Some(&efi), false);
    assert_eq!(v["factory_reset"]["requested"], false);

    // systemd 258's JSON request, matched against the target's os-release.
    efivar(
        &efi,
        "FactoryResetRequest",
        r#"{"osReleaseId":"debian","osReleaseImageId":"appliance","bootId":"00000000000000000000000000000001"}"#,
    );
    let (v, _) = status(&t, "", Some(&efi), false);
    assert_eq!(sources(&v), ["efi-factory-reset-request"]);
    efivar(
        &efi,
        "FactoryResetRequest",
        r#"{"osReleaseId":"fedora","bootId":"00000000000000000000000000000001"}"#,
    );
    let (v, _) = status(&t, "", Some(&efi), false);
    assert_eq!(
        v["factory_reset"]["requested"], false,
        "a request for another OS is ignored"
    );
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    efivar(
        &efi,
        "FactoryResetRequest",
        &format!(
            r#"{{"osReleaseId":"debian","osReleaseImageId":"appliance","bootId":"{}"}}"#,
            boot_id.trim()
        ),
    );
    let (v, _) = status(&t, "", Some(&efi), false);
    assert_eq!(v["factory_reset"]["requested"], false);
    assert_eq!(
        v["factory_reset"]["pending"], true,
        "same boot id: meant for the next boot"
    );
    std::fs::remove_file(efi.join(format!("FactoryResetRequest-{GUID}"))).unwrap();

    // The request file.
    write(&t, "var/lib/pristine/factory-reset", "");
    let (v, _) = status(&t, "", Some(&efi), false);
    assert_eq!(sources(&v), ["file"]);
    // systemd.factory_reset=0 overrides every source.
    let (v, _) = status(&t, "systemd.factory_reset=0", Some(&efi), true);
    assert_eq!(v["factory_reset"]["requested"], false);
    assert_eq!(v["factory_reset"]["disabled_by_kernel"], true);
}

#[test]
fn mode_sources_and_bad_config() {
    let tmp = TempDir::new("st-mode");
    let t = tmp.path();
    populated(t);
    let (v, _) = status(t, "systemd.volatile=state", None, false);
    assert_eq!(
        (v["mode"].as_str(), v["mode_source"].as_str()),
        (Some("volatile"), Some("kernel"))
    );
    let (v, _) = status(
        t,
        "systemd.volatile=yes pristine.mode=stateful",
        None,
        false,
    );
    assert_eq!(v["mode"], "stateful");
    write(
        t,
        "usr/lib/pristine/pristine.toml",
        "mode = \"stateless\"\n",
    );
    let (v, code) = status(t, "", None, false);
    assert_eq!(
        (v["mode"].as_str(), v["mode_source"].as_str(), code),
        (Some("stateless"), Some("config"), 0)
    );
    write(
        t,
        "etc/pristine/local.toml",
        "mode = \"sideways\"\nbogus = 1\n",
    );
    let (v, code) = status(t, "systemd.volatile=banana", None, false);
    assert_eq!(code, 65, "bad pristine.toml is reported with exit 65");
    assert_eq!(
        v["mode"], "stateless",
        "bad value ignored, the lower-priority file's value stays"
    );
    let diags = v["diagnostics"].as_array().unwrap();
    let text: Vec<String> = diags
        .iter()
        .map(|d| {
            format!(
                "{}:{}: {}",
                d["file"].as_str().unwrap_or(""),
                d["line"],
                d["message"]
            )
        })
        .collect();
    assert!(
        text.iter()
            .any(|d| d.starts_with("/etc/pristine/local.toml:1:") && d.contains("mode")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|d| d.starts_with("/etc/pristine/local.toml:2:") && d.contains("bogus")),
        "{text:?}"
    );
    assert!(
        text.iter().any(|d| d.contains("systemd.volatile=banana")),
        "{text:?}"
    );
}

#[test]
fn fatal_when_root_cannot_be_opened() {
    let out = pristine()
        .args(["--root=/nonexistent/root", "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/root"));
    let out = pristine().args(["frobnicate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
}
