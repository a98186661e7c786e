//! `pristine provision` bugs around the host view, each a regression test: a dry run of the
//! fresh example resolves the users its sysusers step would create; `--credentials=DIR`
//! reaches `tmpfiles.extra` and `sysusers.extra`; an offline run writes no report and runs no
//! syncfs; `machine-id = "transient"` offline writes nothing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{assert_exit, pristine, write, TempDir};
use serde_json::Value;

/// A copy of `examples/appliance` with empty /etc and /var.
fn example(tmp: &TempDir) -> PathBuf {
    let root = tmp.path().join("root");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/appliance");
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(&src)
        .arg(&root)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("var")).unwrap();
    root
}

fn provision(root: &Path, args: &[&str]) -> Output {
    pristine()
        .arg(format!("--root={}", root.display()))
        .args(args)
        .arg("provision")
        .env("SYSTEMD_IN_INITRD", "0")
        .env("SYSTEMD_LOG_TARGET", "console")
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .unwrap()
}

fn all(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

#[test]
fn dry_run_of_the_fresh_example_resolves_the_users_it_would_create() {
    let tmp = TempDir::new("dry-example");
    let root = example(&tmp);
    let out = provision(&root, &["--dry-run"]);
    let text = all(&out);
    assert_exit(&out, 0);
    assert!(!text.contains("Failed to resolve"), "{text}");
    assert!(text.contains("Creating user 'appsvc'"), "{text}");
    assert_eq!(entries(&root.join("etc")), 0, "a dry run wrote to /etc");
    assert_eq!(entries(&root.join("var")), 0, "a dry run wrote to /var");
    // And the real run does what the dry run said, with the same exit code.
    let out = provision(&root, &[]);
    assert_exit(&out, 0);
    assert!(std::fs::read_to_string(root.join("etc/passwd"))
        .unwrap()
        .contains("appsvc:"));
}

#[test]
fn credentials_reach_tmpfiles_and_sysusers_extra() {
    let tmp = TempDir::new("cred-extra");
    let root = example(&tmp);
    let creds = tmp.path().join("creds");
    write(
        &creds,
        "tmpfiles.extra",
        "f /etc/extra-file 0640 appsvc - - made\n",
    );
    write(&creds, "sysusers.extra", "u extrauser - \"Extra\"\n");
    let out = provision(&root, &[&format!("--credentials={}", creds.display())]);
    assert_exit(&out, 0);
    assert_eq!(
        std::fs::read_to_string(root.join("etc/extra-file")).unwrap(),
        "made"
    );
    assert!(std::fs::read_to_string(root.join("etc/passwd"))
        .unwrap()
        .contains("extrauser:"));
    // Without the flag (and without $CREDENTIALS_DIRECTORY) nothing extra appears.
    let tmp2 = TempDir::new("cred-extra-none");
    let root2 = example(&tmp2);
    assert_exit(&provision(&root2, &[]), 0);
    assert!(!root2.join("etc/extra-file").exists());
}

#[test]
fn offline_runs_write_no_report_sync_nothing_and_keep_transient_ids_off_disk() {
    let tmp = TempDir::new("offline-durability");
    let root = example(&tmp);
    write(
        &root,
        "etc/pristine/pristine.toml",
        "machine-id = \"transient\"\n",
    );
    let report = tmp.path().join("report.json");
    let out = provision(&root, &[&format!("--report={}", report.display())]);
    assert_exit(&out, 0);
    let v: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let step = |name: &str| {
        v["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(step("sync")["ran"], false, "{v}");
    assert!(step("sync")["detail"].as_str().unwrap().contains("offline"));
    assert_eq!(step("machine-id")["ran"], false, "{v}");
    assert!(
        step("machine-id")["detail"]
            .as_str()
            .unwrap()
            .contains("transient"),
        "{v}"
    );
    assert!(!root.join("etc/machine-id").exists());
    // The rest was provisioned.
    assert_eq!(step("sysusers")["ran"], true, "{v}");
    assert!(root.join("etc/.pristine-stamp").exists());
}
