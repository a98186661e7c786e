//! `pristine provision` end to end on small trees: fresh, provisioned (no writes), machine-id
//! sources and policies, firstboot basics, reset, modes, bad configuration, /usr updates.

// Fixtures build hostile trees (devices, odd times, races) directly, not through src/fs.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{pristine, write, TempDir};
use serde_json::Value;

const MID: &str = "0123456789abcdef0123456789abcdef";

fn base(t: &Path) {
    write(t, "usr/lib/os-release", "ID=test\nVERSION_ID=1\n");
    write(t, "usr/share/zoneinfo/Europe/Berlin", "TZif");
    write(t, "usr/lib/pristine/pristine.toml", "[firstboot]\nhostname = \"vendor-host\"\ntimezone = \"Europe/Berlin\"\nlocale = \"C.UTF-8\"\n");
}

fn provision(t: &Path, cmdline: &str, extra: &[&str]) -> (Output, Value) {
    provision_with(t, cmdline, extra, None)
}

/// Runs `pristine provision` on `t`; with `initrd = Some((efivars, runtime dir))` as inside an
/// initrd with those EFI variables and runtime directory. Returns the output and the report.
fn provision_with(
    t: &Path,
    cmdline: &str,
    extra: &[&str],
    initrd: Option<(&Path, &Path)>,
) -> (Output, Value) {
    let report = t.parent().unwrap().join(format!(
        "report-{}.json",
        t.file_name().unwrap().to_string_lossy()
    ));
    let _ = std::fs::remove_file(&report);
    let mut cmd = pristine();
    cmd.arg(format!("--root={}", t.display()))
        .arg(format!("--cmdline={cmdline}"));
    match initrd {
        Some((efivars, runtime)) => {
            cmd.arg(format!("--efivars={}", efivars.display()))
                .env("SYSTEMD_IN_INITRD", "1")
                .env("PRISTINE_RUNTIME_DIR", runtime);
        }
        None => {
            cmd.arg("--efivars=/nonexistent")
                .env("SYSTEMD_IN_INITRD", "0");
        }
    }
    let out = cmd
        .arg("provision")
        .arg(format!("--report={}", report.display()))
        .args(extra)
        .env("SYSTEMD_LOG_TARGET", "console")
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .unwrap();
    let v = std::fs::read(&report)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    (out, v)
}

/// A temporary directory holding a fresh base tree at `root/`.
fn fresh(tag: &str) -> (TempDir, PathBuf) {
    let tmp = TempDir::new(tag);
    let t = tmp.path().join("root");
    base(&t);
    (tmp, t)
}

/// Every path with its type, mode, owner, inode, mtime and content.
fn snapshot(t: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    fn walk(base: &Path, p: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let Ok(md) = std::fs::symlink_metadata(p) else {
            return;
        };
        let content = if md.is_file() {
            String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned()
        } else {
            String::new()
        };
        out.insert(
            p.strip_prefix(base).unwrap().to_path_buf(),
            format!(
                "{:o} {}:{} ino={} mtime={}.{} {content}",
                md.mode(),
                md.uid(),
                md.gid(),
                md.ino(),
                md.mtime(),
                md.mtime_nsec()
            ),
        );
        if md.is_dir() {
            for e in std::fs::read_dir(p).unwrap() {
                walk(base, &e.unwrap().path(), out);
            }
        }
    }
    for d in ["etc", "var"] {
        walk(t, &t.join(d), &mut out);
    }
    out
}

fn step<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {report}"))
}

#[test]
fn fresh_then_nothing_to_do() {
    let (_tmp, t) = fresh("prov-fresh");
    let (out, report) = provision(&t, "", &[]);
    common::assert_exit(&out, 0);
    let mid = std::fs::read_to_string(t.join("etc/machine-id")).unwrap();
    assert_eq!(mid.len(), 33);
    assert!(mid.trim().bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(
        std::fs::metadata(t.join("etc/machine-id"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o444
    );
    assert_eq!(
        std::fs::read_to_string(t.join("etc/hostname")).unwrap(),
        "vendor-host\n"
    );
    assert_eq!(
        std::fs::read_link(t.join("etc/localtime")).unwrap(),
        Path::new("../usr/share/zoneinfo/Europe/Berlin")
    );
    assert_eq!(
        std::fs::read_to_string(t.join("etc/locale.conf")).unwrap(),
        "LANG=C.UTF-8\n"
    );
    assert!(t.join("etc/.pristine-stamp").exists() && t.join("var/.pristine-stamp").exists());
    assert_eq!(report["etc"], "fresh");
    assert_eq!(report["exit_code"], 0);
    assert_eq!(step(&report, "machine-id")["ran"], true);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("pristine: /etc provisioned"), "{stderr}");

    // Second run: nothing to do, nothing written (inodes, mtimes and contents unchanged).
    let before = snapshot(&t);
    let (out, report) = provision(&t, "", &[]);
    assert!(out.status.success());
    assert_eq!(
        before,
        snapshot(&t),
        "a run with nothing to do wrote something"
    );
    assert_eq!(report["etc"], "up-to-date");
    assert!(
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["name"] != "detect")
            .all(|s| s["ran"] == false),
        "{report}"
    );
}

#[test]
fn dry_run_changes_nothing() {
    let (_tmp, t) = fresh("prov-dry");
    std::fs::create_dir_all(t.join("etc")).unwrap();
    let before = snapshot(&t);
    let (out, _) = provision(&t, "", &["--dry-run"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("machine-id") && stdout.contains("/etc/hostname"),
        "{stdout}"
    );
    assert_eq!(before, snapshot(&t));
}

#[test]
fn machine_id_sources_and_policies() {
    // Kernel command line wins over an existing id.
    let (tmp, t) = fresh("prov-mid");
    write(&t, "etc/machine-id", "fedcba9876543210fedcba9876543210\n");
    let (out, _) = provision(&t, &format!("systemd.machine_id={MID}"), &[]);
    assert!(out.status.success());
    assert_eq!(
        std::fs::read_to_string(t.join("etc/machine-id")).unwrap(),
        format!("{MID}\n")
    );

    // The D-Bus machine id is reused; a symlinked one is not.
    let t2 = tmp.path().join("root2");
    base(&t2);
    write(&t2, "var/lib/dbus/machine-id", &format!("{MID}\n"));
    assert!(provision(&t2, "", &[]).0.status.success());
    assert_eq!(
        std::fs::read_to_string(t2.join("etc/machine-id")).unwrap(),
        format!("{MID}\n")
    );

    // A credential.
    let t3 = tmp.path().join("root3");
    base(&t3);
    let creds = tmp.path().join("creds");
    write(
        &creds,
        "system.machine_id",
        "abcdefabcdefabcdefabcdefabcdefab\n",
    );
    write(&creds, "system.hostname", "cred-host\n");
    let (out, _) = provision(&t3, "", &[&format!("--credentials={}", creds.display())]);
    assert!(out.status.success());
    assert_eq!(
        std::fs::read_to_string(t3.join("etc/machine-id")).unwrap(),
        "abcdefabcdefabcdefabcdefabcdefab\n"
    );
    assert_eq!(
        std::fs::read_to_string(t3.join("etc/hostname")).unwrap(),
        "cred-host\n",
        "credential wins over config"
    );

    // Policy uninitialized.
    let t4 = tmp.path().join("root4");
    base(&t4);
    write(
        &t4,
        "etc/pristine/local.toml",
        "machine-id = \"uninitialized\"\n",
    );
    assert!(provision(&t4, "systemd.hostname=kernel-host", &[])
        .0
        .status
        .success());
    assert_eq!(
        std::fs::read_to_string(t4.join("etc/machine-id")).unwrap(),
        "uninitialized\n"
    );
    assert_eq!(
        std::fs::read_to_string(t4.join("etc/hostname")).unwrap(),
        "kernel-host\n",
        "kernel wins over all"
    );
}

#[test]
fn bad_config_is_reported_and_the_boot_goes_on() {
    let (_tmp, t) = fresh("prov-bad");
    write(
        &t,
        "etc/pristine/broken.toml",
        "[firstboot]\nhostname = \"-not valid-\"\nnonsense = 3\n",
    );
    let (out, report) = provision(&t, "systemd.volatile=bogus", &[]);
    common::assert_exit(&out, 65);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/etc/pristine/broken.toml:3:"), "{stderr}");
    assert!(t.join("etc/machine-id").exists(), "provisioning went on");
    // The invalid hostname is refused at its line, like any bad value: the key is ignored, so
    // the vendor's (lower-priority) hostname stays in force.
    assert!(stderr.contains("/etc/pristine/broken.toml:2:"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(t.join("etc/hostname")).unwrap(),
        "vendor-host\n"
    );
    assert_eq!(report["exit_code"], 65);
}

#[test]
fn reset_then_provision_keeps_the_keep_list() {
    let (_tmp, t) = fresh("prov-reset");
    write(
        &t,
        "usr/lib/pristine/10-reset.toml",
        "[reset]\nkeep = [\"/var/lib/keepme\"]\n",
    );
    assert!(provision(&t, "", &[]).0.status.success());
    let first_id = std::fs::read_to_string(t.join("etc/machine-id")).unwrap();
    write(&t, "etc/admin-file", "local change\n");
    write(&t, "var/lib/keepme/data", "precious\n");
    write(&t, "var/cache/junk", "junk\n");
    write(&t, "var/lib/pristine/factory-reset", "");
    let (out, report) = provision(&t, "", &[]);
    common::assert_exit(&out, 0);
    assert_eq!(report["reset"], true);
    assert_eq!(report["etc"], "fresh");
    assert!(!t.join("etc/admin-file").exists() && !t.join("var/cache/junk").exists());
    assert_eq!(
        std::fs::read_to_string(t.join("var/lib/keepme/data")).unwrap(),
        "precious\n"
    );
    assert!(
        !t.join("var/lib/pristine/factory-reset").exists(),
        "trigger cleared"
    );
    let new_id = std::fs::read_to_string(t.join("etc/machine-id")).unwrap();
    assert_ne!(first_id, new_id, "machine id regenerated after a reset");
    assert_eq!(
        std::fs::read_to_string(t.join("etc/hostname")).unwrap(),
        "vendor-host\n",
        "re-provisioned"
    );
}

#[test]
fn usr_update_is_detected_also_when_mtime_goes_backwards() {
    let (_tmp, t) = fresh("prov-upd");
    assert!(provision(&t, "", &[]).0.status.success());
    assert_eq!(provision(&t, "", &[]).1["etc"], "up-to-date");
    // A downgrade: new os-release, /usr mtime set into the past.
    write(&t, "usr/lib/os-release", "ID=test\nVERSION_ID=0.9\n");
    let ts = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: 1_000_000_000,
            tv_nsec: 0,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: 1_000_000_000,
            tv_nsec: 0,
        },
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        t.join("usr"),
        &ts,
        rustix::fs::AtFlags::empty(),
    )
    .unwrap();
    let (out, report) = provision(&t, "", &[]);
    assert!(out.status.success());
    assert_eq!(report["etc"], "updated");
    assert_eq!(provision(&t, "", &[]).1["etc"], "up-to-date");
}

#[test]
fn stateless_mode_mounts_tmpfs_once() {
    let (_tmp, t) = fresh("prov-stateless");
    write(&t, "etc/on-disk", "hidden by the tmpfs\n");
    let (out, report) = provision(&t, "systemd.volatile=yes", &[]);
    let mounted = |p: &Path| {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(p.to_str().unwrap()))
    };
    let etc_mounted = mounted(&t.join("etc"));
    let var_mounted = mounted(&t.join("var"));
    let hidden = !t.join("etc/on-disk").exists();
    let provisioned = t.join("etc/machine-id").exists();
    // A second run sees the tmpfs mounts and does not mount again.
    let (_, report2) = provision(&t, "systemd.volatile=yes", &[]);
    for d in ["etc", "etc", "var", "var"] {
        let _ = Command::new("umount").arg(t.join(d)).output();
    }
    common::assert_exit(&out, 0);
    assert!(etc_mounted && var_mounted, "tmpfs not mounted");
    assert!(hidden && provisioned);
    assert_eq!(step(&report, "mounts")["ran"], true);
    assert_eq!(step(&report2, "mounts")["ran"], false);
    assert!(
        t.join("etc/on-disk").exists(),
        "the disk's /etc is untouched under the tmpfs"
    );
}

fn provision_initrd(t: &Path, cmdline: &str, efivars: &Path, runtime: &Path) -> Output {
    provision_with(t, cmdline, &[], Some((efivars, runtime))).0
}

#[test]
fn reset_triggers_are_cleared_or_remembered() {
    const GUID: &str = "8cf2644b-4b0b-428f-9387-6d876050dc67";
    let tmp = TempDir::new("prov-trig");
    let t = tmp.path().join("root");
    let efi = tmp.path().join("efivars");
    let runtime = tmp.path().join("run");
    std::fs::create_dir_all(&efi).unwrap();
    base(&t);
    assert!(provision(&t, "", &[]).0.status.success());

    // EFI variable (systemd ≤ 257): reset, then the variable is gone.
    write(&t, "etc/local", "x\n");
    let mut data = vec![7u8, 0, 0, 0];
    data.extend("1".encode_utf16().flat_map(|u| u.to_le_bytes()));
    std::fs::write(efi.join(format!("FactoryReset-{GUID}")), &data).unwrap();
    let out = provision_initrd(&t, "", &efi, &runtime);
    common::assert_exit(&out, 0);
    assert!(
        !t.join("etc/local").exists(),
        "EFI-requested reset did not run"
    );
    assert!(
        !efi.join(format!("FactoryReset-{GUID}")).exists(),
        "EFI variable not cleared"
    );

    // Kernel command line (a new boot: a fresh runtime dir): reset once per boot, as the option
    // cannot be cleared.
    let runtime = tmp.path().join("run-boot2");
    write(&t, "etc/local", "x\n");
    assert!(
        provision_initrd(&t, "systemd.factory_reset=1", &efi, &runtime)
            .status
            .success()
    );
    assert!(
        !t.join("etc/local").exists(),
        "kernel-requested reset did not run"
    );
    assert!(runtime.join("factory-reset-complete").exists());
    write(&t, "etc/local", "made after the reset in the same boot\n");
    assert!(
        provision_initrd(&t, "systemd.factory_reset=1", &efi, &runtime)
            .status
            .success()
    );
    assert!(t.join("etc/local").exists(), "reset ran twice in one boot");
}

#[test]
fn usr_update_adds_only_what_is_new_and_keeps_admin_choices() {
    let tmp = TempDir::new("prov-stale");
    let t = tmp.path().join("root");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/appliance");
    assert!(Command::new("cp")
        .arg("-a")
        .arg(&example)
        .arg(&t)
        .status()
        .unwrap()
        .success());
    std::fs::create_dir_all(t.join("etc")).unwrap();
    std::fs::create_dir_all(t.join("var")).unwrap();
    let (out, report) = provision(&t, "", &[]);
    common::assert_exit(&out, 0);
    assert_eq!(report["etc"], "fresh");
    let wants = t.join("etc/systemd/system/multi-user.target.wants");
    assert!(
        wants.join("app.service").is_symlink(),
        "preset enabled app.service"
    );
    // The admin disables app.service.
    std::fs::remove_file(wants.join("app.service")).unwrap();
    let before = snapshot(&t);

    // A /usr update: a new user, a new unit (preset: enable), a new tmpfiles line.
    write(
        &t,
        "usr/lib/sysusers.d/new.conf",
        "u newsvc - \"New service\"\n",
    );
    write(
        &t,
        "usr/lib/tmpfiles.d/new.conf",
        "d /var/lib/new 0750 newsvc newsvc -\n",
    );
    write(
        &t,
        "usr/lib/systemd/system/new.service",
        "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n",
    );
    write(
        &t,
        "usr/lib/systemd/system-preset/80-new.preset",
        "enable new.service\n",
    );
    let osr = std::fs::read_to_string(t.join("usr/lib/os-release"))
        .unwrap()
        .replace("IMAGE_VERSION=1.0", "IMAGE_VERSION=1.1");
    write(&t, "usr/lib/os-release", &osr);

    let (out, report) = provision(&t, "", &[]);
    common::assert_exit(&out, 0);
    assert_eq!(report["etc"], "updated");
    let after = snapshot(&t);
    let passwd = std::fs::read_to_string(t.join("etc/passwd")).unwrap();
    assert!(passwd.lines().any(|l| l.starts_with("newsvc:")), "{passwd}");
    let md = std::fs::metadata(t.join("var/lib/new")).unwrap();
    let uid: u32 = passwd
        .lines()
        .find(|l| l.starts_with("newsvc:"))
        .unwrap()
        .split(':')
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!((md.uid(), md.mode() & 0o7777), (uid, 0o750));
    assert_eq!(
        std::fs::read_link(wants.join("new.service")).unwrap(),
        Path::new("/usr/lib/systemd/system/new.service")
    );
    assert!(
        !wants.join("app.service").exists(),
        "the admin's disabled unit was re-enabled"
    );

    // Nothing else changed: every path that existed is untouched except the account files
    // (and their backups), pristine's records, and the directories that gained entries.
    let allowed_changed = [
        "etc/passwd",
        "etc/group",
        "etc/shadow",
        "etc/gshadow",
        "etc/passwd-",
        "etc/group-",
        "etc/shadow-",
        "etc/gshadow-",
        "etc/.pristine-stamp",
        "var/.pristine-stamp",
        "etc/pristine/presets.state",
        "etc/pristine",
        "var/lib/pristine",
        "var/lib/pristine/ids.ledger",
        "etc",
        "var",
        "var/lib",
        "etc/systemd/system/multi-user.target.wants",
    ];
    for (p, d) in &before {
        let ps = p.display().to_string();
        if allowed_changed.contains(&ps.as_str()) {
            continue;
        }
        assert_eq!(Some(d), after.get(p), "{ps} changed by the update run");
    }
    let added: Vec<String> = after
        .keys()
        .filter(|p| !before.contains_key(*p))
        .map(|p| p.display().to_string())
        .collect();
    for a in &added {
        assert!(
            [
                "var/lib/new",
                "etc/systemd/system/multi-user.target.wants/new.service"
            ]
            .contains(&a.as_str())
                || a.ends_with('-'),
            "unexpected new path {a} (added: {added:?})"
        );
    }
}

#[test]
fn a_failed_operation_is_retried_on_the_next_boot() {
    let (_tmp, t) = fresh("prov-fail");
    write(
        &t,
        "usr/lib/tmpfiles.d/needs-dir.conf",
        "d /var/ro/sub 0755 - - -\n",
    );
    std::fs::create_dir_all(t.join("var/ro")).unwrap();
    let ro = t.join("var/ro");
    assert!(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "ro", "tmpfs"])
        .arg(&ro)
        .status()
        .unwrap()
        .success());
    let (out, report) = provision(&t, "", &[]);
    let _ = Command::new("umount").arg(&ro).status();
    common::assert_exit(&out, 73);
    assert_eq!(step(&report, "record")["ran"], false);
    assert!(
        !t.join("etc/.pristine-stamp").exists(),
        "a failed run must not be recorded as done"
    );
    assert!(
        t.join("etc/machine-id").exists(),
        "the other steps still ran"
    );
    // The cause is gone; the next boot finishes the job.
    let (out, report) = provision(&t, "", &[]);
    common::assert_exit(&out, 0);
    assert_eq!(report["etc"], "updated");
    assert!(t.join("var/ro/sub").is_dir());
    assert!(t.join("etc/.pristine-stamp").exists());
}

#[test]
fn a_reset_keeps_the_usr_update_state() {
    let (_tmp, t) = fresh("prov-upd-state");
    assert!(provision(&t, "", &[]).0.status.success());
    write(&t, "var/lib/pristine/update/state.toml", "slot state\n");
    write(&t, "var/lib/other", "local\n");
    write(&t, "var/lib/pristine/factory-reset", "");
    let (out, report) = provision(&t, "", &[]);
    common::assert_exit(&out, 0);
    assert_eq!(report["reset"], true);
    assert!(!t.join("var/lib/other").exists());
    assert_eq!(
        std::fs::read_to_string(t.join("var/lib/pristine/update/state.toml")).unwrap(),
        "slot state\n"
    );
}

/// `PRISTINE_TRACE_MUTATIONS=FILE` (the floor of `benches/provision.sh`): one line per
/// mutation, with what a replay needs, describing the tree the run left.
#[test]
fn the_mutation_trace_describes_what_the_run_did() {
    let (tmp, t) = fresh("trace");
    let trace = tmp.path().join("trace");
    let out = pristine()
        .arg(format!("--root={}", t.display()))
        .args(["--cmdline=", "--efivars=/nonexistent", "provision"])
        .env("SYSTEMD_IN_INITRD", "0")
        .env("PRISTINE_TRACE_MUTATIONS", &trace)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&trace).unwrap();
    let root = format!("{}/", t.display());
    // File created as a temporary → its length → its final name.
    let mut written: BTreeMap<String, u64> = BTreeMap::new();
    let mut renamed = Vec::new();
    let mut links = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        assert!(f.len() >= 2, "{line}");
        let (op, path) = (f[0], f[1]);
        assert!(path.starts_with(&root), "{line}: outside the root");
        match op {
            "mkdir" => {
                u32::from_str_radix(f[2], 8).unwrap();
                assert!(Path::new(path).is_dir() || text.contains(&format!("\t{path}/")));
            }
            "create" | "chmod" => {
                u32::from_str_radix(f[2], 8).unwrap();
            }
            "write" => {
                written.insert(path.to_string(), f[2].parse().unwrap());
            }
            "chown" | "lchown" => {
                f[2].parse::<i64>().unwrap();
                f[3].parse::<i64>().unwrap();
            }
            "rename" => renamed.push((path.to_string(), f[2].to_string())),
            "symlink" => links.push((path.to_string(), f[2].to_string())),
            other => panic!("unexpected op {other} in {line}"),
        }
    }
    assert!(renamed
        .iter()
        .any(|(_, to)| to == &format!("{root}etc/machine-id")));
    for (from, to) in &renamed {
        assert!(!Path::new(from).exists(), "{from} left behind");
        if let Some(len) = written.get(from) {
            assert_eq!(std::fs::metadata(to).unwrap().len(), *len, "{to}");
        }
    }
    // A link made under a temporary name is found under the name it was renamed to.
    for (path, target) in &links {
        let path = renamed
            .iter()
            .find(|(from, _)| from == path)
            .map_or(path, |(_, to)| to);
        assert_eq!(
            std::fs::read_link(path).unwrap(),
            Path::new(target),
            "{path}"
        );
    }
    assert!(!written.is_empty());
}
