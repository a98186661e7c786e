//! The whole pipeline against systemd 257: this machine's /usr (bind-mounted read-only into a
//! temporary root) with empty /etc and /var, provisioned once by `pristine provision` and once by
//! the four reference commands (`systemd-machine-id-setup --root`, `systemd-sysusers --root`,
//! `systemd-tmpfiles --root --create --boot`, `systemctl --root preset-all`). The account files,
//! every path under etc/ and var/ (type, mode, owner, content, link target) must agree; the
//! machine id is the same by construction (pristine is given the reference's).

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{pristine, reference, TempDir};

const EPOCH: &str = "1700000000";

struct Mounted(PathBuf);
impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn make_root(dir: &Path) -> Mounted {
    for d in ["etc", "var", "usr", "run", "tmp"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    for (l, t) in [
        ("bin", "usr/bin"),
        ("sbin", "usr/sbin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ] {
        std::os::unix::fs::symlink(t, dir.join(l)).unwrap();
    }
    let st = Command::new("mount")
        .args(["--bind", "-o", "ro", "/usr"])
        .arg(dir.join("usr"))
        .status()
        .unwrap();
    assert!(st.success(), "bind-mount /usr (tests run as root)");
    let _ = Command::new("mount")
        .args(["-o", "remount,bind,ro"])
        .arg(dir.join("usr"))
        .status();
    Mounted(dir.join("usr"))
}

fn describe_tree(root: &Path, skip: &[&str]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, p: &Path, skip: &[&str], out: &mut BTreeMap<String, String>) {
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        if skip.iter().any(|s| rel == *s) {
            return;
        }
        let md = std::fs::symlink_metadata(p).unwrap();
        let ft = md.file_type();
        let what = if ft.is_symlink() {
            format!("link -> {}", std::fs::read_link(p).unwrap().display())
        } else if ft.is_file() {
            format!(
                "file {:o} {}:{} {:?}",
                md.mode() & 0o7777,
                md.uid(),
                md.gid(),
                String::from_utf8_lossy(&std::fs::read(p).unwrap())
            )
        } else if ft.is_dir() {
            format!("dir {:o} {}:{}", md.mode() & 0o7777, md.uid(), md.gid())
        } else {
            format!("other {:o} {}:{}", md.mode(), md.uid(), md.gid())
        };
        out.insert(rel, what);
        if ft.is_dir() {
            for e in std::fs::read_dir(p).unwrap() {
                walk(root, &e.unwrap().path(), skip, out);
            }
        }
    }
    for d in ["etc", "var"] {
        walk(root, &root.join(d), skip, &mut out);
    }
    out
}

#[test]
fn provision_matches_the_four_reference_commands() {
    let tmp = TempDir::new("pipeline");
    let (ours, theirs) = (tmp.path().join("ours"), tmp.path().join("theirs"));
    let _m1 = make_root(&ours);
    let _m2 = make_root(&theirs);
    let t = theirs.to_str().unwrap();

    let run_ref = |tool: &str, args: &[&str]| {
        let out = reference(tool)
            .args(args)
            .env("SOURCE_DATE_EPOCH", EPOCH)
            .env("SYSTEMD_LOG_LEVEL", "err")
            .output()
            .unwrap();
        // tmpfiles may exit 65/73 on this machine's config; pristine must then agree.
        out.status.code().unwrap_or(-1)
    };
    assert_eq!(
        run_ref("systemd-machine-id-setup", &[&format!("--root={t}")]),
        0
    );
    let id = std::fs::read_to_string(theirs.join("etc/machine-id")).unwrap();
    let sysusers_code = run_ref("systemd-sysusers", &[&format!("--root={t}")]);
    let tmpfiles_code = run_ref(
        "systemd-tmpfiles",
        &[&format!("--root={t}"), "--create", "--boot"],
    );
    let preset_code = run_ref("systemctl", &[&format!("--root={t}"), "preset-all"]);

    let out = pristine()
        .arg(format!("--root={}", ours.display()))
        .arg(format!("--cmdline=systemd.machine_id={}", id.trim()))
        .arg("--efivars=/nonexistent")
        .args(["provision", "--report"])
        .arg(tmp.path().join("report.json"))
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .env("SYSTEMD_IN_INITRD", "0")
        .env("SYSTEMD_LOG_TARGET", "console")
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .unwrap();
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("report.json")).unwrap()).unwrap();
    let expected_code = [sysusers_code, tmpfiles_code, preset_code]
        .into_iter()
        .max()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(expected_code),
        "exit code (reference: sysusers {sysusers_code}, tmpfiles {tmpfiles_code}, preset {preset_code})\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    common::assert_steps_ran(&report, &["machine-id", "sysusers", "tmpfiles", "presets"]);

    // /usr is read-only here, so the unit files were read ahead on a second thread while
    // sysusers and tmpfiles ran: the comparison below covers that path.
    let presets = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "presets")
        .unwrap();
    let count = |name: &str| common::step_counter(presets, name);
    let read_ahead = count("read_ahead").unwrap_or(0);
    assert!(read_ahead > 100, "unit files read ahead: {presets}");
    // And the presets step was planned on that thread, beside sysusers and tmpfiles, and
    // applied: nothing it observed was changed by them (this machine's tmpfiles.d makes
    // /run/systemd, not what presets looks up below it).
    assert_eq!(count("planned_ahead"), Some(1), "presets step: {presets}");
    // And applied there while tmpfiles applied: nothing this machine's tmpfiles.d may change
    // meets what the plan saw or writes (see provision::beside). The tree compared below is
    // the same as systemd's, made one after the other.
    let beside = count("applied_beside");
    assert_eq!(beside, Some(1), "presets step: {presets}");

    for f in ["etc/passwd", "etc/group", "etc/shadow", "etc/gshadow"] {
        assert_eq!(
            String::from_utf8_lossy(&std::fs::read(ours.join(f)).unwrap()),
            String::from_utf8_lossy(&std::fs::read(theirs.join(f)).unwrap()),
            "{f} differs"
        );
    }
    // pristine's own records are not systemd's; everything else must agree.
    let skip = [
        "etc/.pristine-stamp",
        "var/.pristine-stamp",
        "etc/pristine",
        "var/lib/pristine",
    ];
    let (a, b) = (describe_tree(&ours, &skip), describe_tree(&theirs, &skip));
    let mut diffs = Vec::new();
    for k in a
        .keys()
        .chain(b.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        if a.get(k) != b.get(k) {
            diffs.push(format!(
                "{k}:\n  pristine: {:?}\n  systemd:  {:?}",
                a.get(k),
                b.get(k)
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} paths differ:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    assert!(a.len() > 50, "suspiciously small tree: {} paths", a.len());
}
