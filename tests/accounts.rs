//! Accounts that never move (the UID/GID ledger): the reproduction from the issue (a `/usr`
//! update adds a system user, `/etc` is emptied, and persistent data must keep its owner), a
//! randomized property over many sequences of configuration changes, emptied `/etc` and kept
//! `/var`, a pin that moves an ID (reported; ownership repair on request, never through a
//! symlink), and a corrupt ledger (reported with its line, the rest used).

mod common;

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Output;

use common::{assert_exit, pristine, step_count, write, Rng, TempDir};

fn provision(t: &Path) -> (Output, serde_json::Value) {
    let report = t.with_extension("report.json");
    let out = pristine()
        .arg(format!("--root={}", t.display()))
        .args(["--cmdline=", "--efivars=/nonexistent", "provision"])
        .arg(format!("--report={}", report.display()))
        .env("SYSTEMD_IN_INITRD", "0")
        .env("SYSTEMD_LOG_TARGET", "console")
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .unwrap();
    let v = std::fs::read(&report)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::Value::Null);
    (out, v)
}

/// name → uid from the tree's /etc/passwd.
fn uids(t: &Path) -> HashMap<String, u32> {
    let text = std::fs::read_to_string(t.join("etc/passwd")).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some((f.first()?.to_string(), f.get(2)?.parse().ok()?))
        })
        .collect()
}

fn empty_etc(t: &Path) {
    std::fs::remove_dir_all(t.join("etc")).unwrap();
    std::fs::create_dir(t.join("etc")).unwrap();
}

fn appliance(t: &Path) {
    write(t, "usr/lib/os-release", "ID=test\nVERSION_ID=1\n");
    write(
        t,
        "usr/lib/sysusers.d/app.conf",
        "u appsvc - \"App service\" /var/lib/app\n",
    );
    write(
        t,
        "usr/lib/tmpfiles.d/app.conf",
        "d /var/lib/app 0750 appsvc appsvc -\n",
    );
    std::fs::create_dir_all(t.join("etc")).unwrap();
    std::fs::create_dir_all(t.join("var")).unwrap();
}

/// What the app does at run time: a database file owned by its user (no tmpfiles line names it,
/// so nothing would give it back to appsvc).
fn app_writes_data(t: &Path) -> std::path::PathBuf {
    let db = t.join("var/lib/app/data.db");
    std::fs::write(&db, "rows").unwrap();
    let uid = uids(t)["appsvc"];
    std::os::unix::fs::chown(&db, Some(uid), Some(uid)).unwrap();
    db
}

/// The reproduction: appsvc keeps UID 999 and data.db; newsvc gets a fresh ID. Without
/// the ledger (removed before the second run) the bug is there, so the test can fail.
#[test]
fn a_new_system_user_never_takes_an_existing_users_id() {
    for with_ledger in [true, false] {
        let tmp = TempDir::new("ledger-repro");
        let t = tmp.path().join("root");
        appliance(&t);
        let (out, _) = provision(&t);
        assert_exit(&out, 0);
        assert_eq!(uids(&t)["appsvc"], 999);
        let db = app_writes_data(&t);
        assert_eq!(std::fs::metadata(&db).unwrap().uid(), 999);

        write(&t, "usr/lib/sysusers.d/00-new.conf", "u newsvc - \"New\"\n");
        // The /usr update makes /usr newer than the stamp.
        write(&t, "usr/lib/os-release", "ID=test\nVERSION_ID=2\n");
        empty_etc(&t);
        if !with_ledger {
            std::fs::remove_file(t.join("var/lib/pristine/ids.ledger")).unwrap();
        }
        let (out, _) = provision(&t);
        assert_exit(&out, 0);
        let ids = uids(&t);
        let owner = std::fs::metadata(&db).unwrap().uid();
        if with_ledger {
            assert_eq!(ids["appsvc"], 999, "{ids:?}");
            assert_ne!(ids["newsvc"], 999, "{ids:?}");
            assert_eq!(owner, ids["appsvc"]);
            let ledger = std::fs::read_to_string(t.join("var/lib/pristine/ids.ledger")).unwrap();
            assert!(ledger.contains("user appsvc 999\n"), "{ledger}");
            assert!(ledger.contains(&format!("user newsvc {}\n", ids["newsvc"])));
        } else {
            // systemd-sysusers' allocation: the first name read gets the highest free ID.
            assert_eq!(ids["newsvc"], 999, "{ids:?}");
            assert_eq!(owner, ids["newsvc"], "data.db changed hands");
        }
    }
}

/// Random sequences of adding and removing sysusers.d lines, /usr updates, emptied /etc and
/// resets that keep /var, run in-process: no name ever changes its ID, and no ID is ever held
/// by two names over the whole sequence.
#[test]
fn property_no_name_changes_id_and_no_id_is_reused() {
    use pristine::sysusers::{run, Options};
    let names: Vec<String> = (0..24).map(|i| format!("svc{i}")).collect();
    // A few names are pinned, always to the same ID: pins win and stay put.
    let pins: HashMap<&str, u32> = [("svc3", 150u32), ("svc7", 151), ("svc11", 152)]
        .into_iter()
        .collect();
    let opts = Options {
        has_root: true,
        ledger: true,
        ..Options::default()
    };
    let tmp = TempDir::new("ledger-prop");
    let mut checked = 0u64;
    for seq in 0..1000u64 {
        let mut rng = Rng::new(seq + 1);
        let t = tmp.path().join(format!("s{seq}"));
        std::fs::create_dir_all(t.join("etc")).unwrap();
        std::fs::create_dir_all(t.join("usr/lib/sysusers.d")).unwrap();
        let mut active: Vec<bool> = names.iter().map(|_| rng.chance(30)).collect();
        let mut first_uid: HashMap<String, u32> = HashMap::new();
        let mut uid_owner: HashMap<u32, String> = HashMap::new();
        let mut first_gid: HashMap<String, u32> = HashMap::new();
        let mut gid_owner: HashMap<u32, String> = HashMap::new();
        for _step in 0..6 {
            match rng.below(4) {
                0 | 1 => {
                    // A /usr update: some lines come, some go, spread over files whose order
                    // decides systemd's allocation order.
                    for a in active.iter_mut() {
                        if rng.chance(25) {
                            *a = !*a;
                        }
                    }
                }
                2 => empty_etc(&t),
                _ => {
                    // A factory reset of /etc that keeps /var.
                    empty_etc(&t);
                }
            }
            let _ = std::fs::remove_dir_all(t.join("usr/lib/sysusers.d"));
            std::fs::create_dir_all(t.join("usr/lib/sysusers.d")).unwrap();
            for (i, n) in names.iter().enumerate() {
                if !active[i] {
                    continue;
                }
                let file = format!("usr/lib/sysusers.d/{:02}-{n}.conf", rng.below(50));
                let line = match pins.get(n.as_str()) {
                    Some(id) => format!("u {n} {id}\n"),
                    None if i % 5 == 0 => format!("g {n}grp -\nu {n} -\n"),
                    None => format!("u {n} -\n"),
                };
                write(&t, &file, &line);
            }
            let root = pristine::fs::Root::open(&t).unwrap();
            root.set_deferred_sync(true);
            let out = run(&root, &opts);
            assert_eq!(out.exit_code(), 0, "seq {seq}: {:?}", out.diagnostics);
            let passwd = std::fs::read_to_string(t.join("etc/passwd")).unwrap_or_default();
            let group = std::fs::read_to_string(t.join("etc/group")).unwrap_or_default();
            for (text, first, owner) in [
                (&passwd, &mut first_uid, &mut uid_owner),
                (&group, &mut first_gid, &mut gid_owner),
            ] {
                for l in text.lines() {
                    let f: Vec<&str> = l.split(':').collect();
                    let (name, id) = (f[0].to_string(), f[2].parse::<u32>().unwrap());
                    let was = *first.entry(name.clone()).or_insert(id);
                    assert_eq!(was, id, "seq {seq}: {name} moved from {was} to {id}");
                    let holder = owner.entry(id).or_insert_with(|| name.clone());
                    assert_eq!(*holder, name, "seq {seq}: ID {id} reused");
                    checked += 1;
                }
            }
        }
        let _ = std::fs::remove_dir_all(&t);
    }
    assert!(checked > 10_000, "only {checked} records checked");
}

/// A pin that moves an ID away from the ledger's: reported, files under /var owned by the old
/// ID listed; with `[accounts] repair-ownership = true` they are given to the new ID, a symlink
/// is changed itself (never its target), set-user-ID bits stay, and other mounts are not crossed
/// (not testable without privileges here; the walk checks st_dev).
#[test]
fn a_pin_that_moves_an_id_is_reported_and_repaired_on_request() {
    for repair in [false, true] {
        let tmp = TempDir::new("ledger-repair");
        let t = tmp.path().join("root");
        appliance(&t);
        write(&t, "usr/share/vendor-file", "vendor");
        let (out, _) = provision(&t);
        assert_exit(&out, 0);
        let db = app_writes_data(&t);
        let app = t.join("var/lib/app");
        write(&app, "bin/tool", "#!/bin/sh\n");
        std::os::unix::fs::symlink("/usr/share/vendor-file", app.join("link")).unwrap();
        let tool = app.join("bin/tool");
        std::os::unix::fs::chown(&tool, Some(999), Some(999)).unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o4755)).unwrap();
        std::os::unix::fs::lchown(app.join("link"), Some(999), Some(999)).unwrap();
        std::os::unix::fs::chown(t.join("usr/share/vendor-file"), Some(999), Some(999)).unwrap();

        write(
            &t,
            "usr/lib/sysusers.d/app.conf",
            "u appsvc 500 \"App service\" /var/lib/app\n",
        );
        write(&t, "usr/lib/os-release", "ID=test\nVERSION_ID=2\n");
        if repair {
            write(
                &t,
                "etc/pristine/pristine.toml",
                "[accounts]\nrepair-ownership = true\n",
            );
        }
        empty_etc_but_config(&t, repair);
        let (out, report) = provision(&t);
        assert_exit(&out, 0);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("differs from the ID 999 recorded in the ledger"),
            "{err}"
        );
        assert!(err.contains("/var/lib/app/data.db"), "{err}");
        assert_eq!(uids(&t)["appsvc"], 500);
        // /var/lib/app, data.db, bin/tool and link (bin belongs to root).
        assert_eq!(
            step_count(&report, "sysusers", "ownership-stale"),
            Some(4),
            "{report}"
        );
        assert_eq!(
            step_count(&report, "sysusers", "ownership-repaired"),
            Some(if repair { 4 } else { 0 }),
            "{report}"
        );
        // tmpfiles' d line gives the app directory to appsvc either way; the files no
        // tmpfiles line names keep the old ID unless repaired.
        let want = if repair { 500 } else { 999 };
        assert_eq!(std::fs::metadata(&tool).unwrap().uid(), want);
        assert_eq!(std::fs::metadata(&db).unwrap().uid(), want);
        assert_eq!(
            std::fs::symlink_metadata(app.join("link")).unwrap().uid(),
            want
        );
        assert_eq!(
            std::fs::metadata(t.join("usr/share/vendor-file"))
                .unwrap()
                .uid(),
            999,
            "a symlink's target was changed"
        );
        assert_eq!(
            std::fs::metadata(&tool).unwrap().permissions().mode() & 0o7777,
            0o4755
        );
    }
}

fn empty_etc_but_config(t: &Path, keep_config: bool) {
    let conf = std::fs::read(t.join("etc/pristine/pristine.toml")).ok();
    empty_etc(t);
    if let (true, Some(c)) = (keep_config, conf) {
        std::fs::create_dir_all(t.join("etc/pristine")).unwrap();
        std::fs::write(t.join("etc/pristine/pristine.toml"), c).unwrap();
    }
}

/// A ledger with bad lines: each named with file and line, skipped, the good records used.
#[test]
fn a_corrupt_ledger_is_reported_by_line_and_the_rest_used() {
    let tmp = TempDir::new("ledger-bad");
    let t = tmp.path().join("root");
    appliance(&t);
    write(&t, "usr/lib/sysusers.d/00-new.conf", "u newsvc -\n");
    write(
        &t,
        "var/lib/pristine/ids.ledger",
        "# pristine ID ledger, format 1\nuser appsvc 990\nuser \0junk\ngroup appsvc 990\nuser newsvc 990\n",
    );
    let (out, _) = provision(&t);
    assert_exit(&out, 65);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ids.ledger:3:"), "{err}");
    assert!(err.contains("ids.ledger:5:"), "{err}");
    let ids = uids(&t);
    assert_eq!(ids["appsvc"], 990, "{ids:?}");
    assert_ne!(ids["newsvc"], 990, "{ids:?}");
}

/// Three-way refresh of factory copies after a /usr update: an unmodified copy follows the
/// vendor (mode kept), a modified one is kept and reported as a conflict, one the vendor removed
/// is removed, one the admin created is untouched; a directory copy's files are refreshed too.
#[test]
fn factory_copies_follow_the_vendor_unless_the_admin_changed_them() {
    let tmp = TempDir::new("refresh");
    let t = tmp.path().join("root");
    appliance(&t);
    for (f, c) in [("a", "a1"), ("b", "b1"), ("c", "c1"), ("dir/x", "x1")] {
        write(&t, &format!("usr/share/factory/etc/app/{f}"), c);
    }
    write(
        &t,
        "usr/lib/tmpfiles.d/factory.conf",
        "C /etc/app/a\nC /etc/app/b\nC /etc/app/c\nC /etc/app/dir\n",
    );
    let (out, _) = provision(&t);
    assert_exit(&out, 0);
    let etc = t.join("etc/app");
    assert_eq!(std::fs::read_to_string(etc.join("a")).unwrap(), "a1");
    std::fs::set_permissions(etc.join("a"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(etc.join("b"), "b-admin").unwrap();
    std::fs::write(etc.join("d"), "admin-created").unwrap();

    // The /usr update.
    for (f, c) in [("a", "a2"), ("b", "b2"), ("dir/x", "x2"), ("d", "vendor-d")] {
        write(&t, &format!("usr/share/factory/etc/app/{f}"), c);
    }
    std::fs::remove_file(t.join("usr/share/factory/etc/app/c")).unwrap();
    write(&t, "usr/lib/os-release", "ID=test\nVERSION_ID=2\n");
    let (out, report) = provision(&t);
    assert_exit(&out, 0);
    assert_eq!(std::fs::read_to_string(etc.join("a")).unwrap(), "a2");
    assert_eq!(
        std::fs::metadata(etc.join("a"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o600
    );
    assert_eq!(std::fs::read_to_string(etc.join("dir/x")).unwrap(), "x2");
    assert_eq!(std::fs::read_to_string(etc.join("b")).unwrap(), "b-admin");
    assert!(!etc.join("c").exists(), "vendor-removed copy still there");
    assert_eq!(
        std::fs::read_to_string(etc.join("d")).unwrap(),
        "admin-created"
    );
    assert_eq!(
        step_count(&report, "tmpfiles", "copies-refreshed"),
        Some(2),
        "{report}"
    );
    assert_eq!(
        step_count(&report, "tmpfiles", "copies-removed"),
        Some(1),
        "{report}"
    );
    assert_eq!(
        step_count(&report, "tmpfiles", "copies-conflicts"),
        Some(1),
        "{report}"
    );
    let text = report.to_string();
    assert!(text.contains("/etc/app/b was changed locally"), "{text}");
    // Nothing left to do: a third run with another /usr change to nothing relevant.
    write(&t, "usr/lib/os-release", "ID=test\nVERSION_ID=3\n");
    let (out, report) = provision(&t);
    assert_exit(&out, 0);
    assert_eq!(
        step_count(&report, "tmpfiles", "copies-refreshed"),
        None,
        "{report}"
    );
    assert_eq!(std::fs::read_to_string(etc.join("b")).unwrap(), "b-admin");
}

/// The record-level merge through the state operators: alice (password hash, members of adm and
/// sudo, a subuid range) and a password the admin set for a vendor user survive `state save`, an
/// emptied /etc and a /usr update that adds a system user and a group; a name the admin took
/// that the newer /usr declares is kept and reported.
#[test]
fn admin_accounts_survive_a_stateless_boot_and_a_usr_update() {
    let tmp = TempDir::new("acct-merge");
    let t = tmp.path().join("root");
    appliance(&t);
    write(&t, "usr/lib/sysusers.d/base.conf", "g adm 4\ng sudo 27\n");
    write(
        &t,
        "usr/lib/pristine/state.d/accounts.toml",
        "[[rule]]\npath = \"/etc/passwd\"\nkind = \"parsed\"\n",
    );
    let (out, _) = provision(&t);
    assert_exit(&out, 0);
    let appsvc = uids(&t)["appsvc"];
    // The admin's changes, as useradd/usermod/passwd would make them.
    let append = |f: &str, line: &str| {
        let p = t.join(f);
        let mut s = std::fs::read_to_string(&p).unwrap_or_default();
        s.push_str(line);
        std::fs::write(&p, s).unwrap();
    };
    append(
        "etc/passwd",
        "alice:x:1000:1000:Alice:/home/alice:/bin/bash\n",
    );
    append(
        "etc/passwd",
        "newsvc:x:1001:1001::/var/lib/newsvc:/bin/sh\n",
    );
    append("etc/group", "alice:x:1000:\nnewsvc:x:1001:\n");
    append("etc/shadow", "alice:$6$salt$alicehash:20000:0:99999:7:::\n");
    append("etc/gshadow", "alice:!::\n");
    std::fs::write(t.join("etc/subuid"), "alice:100000:65536\n").unwrap();
    let edit = |f: &str, from: &str, to: &str| {
        let p = t.join(f);
        let s = std::fs::read_to_string(&p).unwrap();
        assert!(s.contains(from), "{f}: {s}");
        std::fs::write(&p, s.replacen(from, to, 1)).unwrap();
    };
    edit("etc/group", "adm:x:4:", "adm:x:4:alice");
    edit("etc/group", "sudo:x:27:", "sudo:x:27:alice");
    edit("etc/gshadow", "sudo:!*::", "sudo:!*::alice");
    let shadow = std::fs::read_to_string(t.join("etc/shadow")).unwrap();
    let app_line = shadow.lines().find(|l| l.starts_with("appsvc:")).unwrap();
    edit("etc/shadow", app_line, "appsvc:$6$s$apphash:20001::::::");
    let o = pristine()
        .arg(format!("--root={}", t.display()))
        .args(["--cmdline=", "state", "save"])
        .env("SYSTEMD_LOG_TARGET", "console")
        .output()
        .unwrap();
    assert_exit(&o, 0);
    let d = pristine()
        .arg(format!("--root={}", t.display()))
        .args(["--cmdline=", "state", "diff"])
        .output()
        .unwrap();
    let diff = String::from_utf8_lossy(&d.stdout);
    assert!(diff.contains("passwd:alice"), "{diff}");
    assert!(
        !diff.contains("alicehash"),
        "state diff shows a password hash: {diff}"
    );

    // The /usr update adds a system user, a group, and declares the name the admin took.
    write(
        &t,
        "usr/lib/sysusers.d/new.conf",
        "u newsys -\ng newgrp -\nu newsvc -\n",
    );
    write(&t, "usr/lib/os-release", "ID=test\nVERSION_ID=2\n");
    empty_etc(&t);
    let (out, report) = provision(&t);
    assert_exit(&out, 0);
    let text = |f: &str| std::fs::read_to_string(t.join(f)).unwrap_or_default();
    let ids = uids(&t);
    assert_eq!(ids["alice"], 1000);
    assert_eq!(ids["appsvc"], appsvc);
    assert_eq!(ids["newsvc"], 1001, "the admin's record was replaced");
    assert!(ids["newsys"] < 1000 && ids["newsys"] != appsvc, "{ids:?}");
    assert!(text("etc/group").contains("newgrp:x:"));
    assert!(
        text("etc/group").contains("adm:x:4:alice\n"),
        "{}",
        text("etc/group")
    );
    assert!(text("etc/group").contains("sudo:x:27:alice\n"));
    assert!(
        text("etc/gshadow").contains("sudo:!*::alice\n"),
        "{}",
        text("etc/gshadow")
    );
    assert!(text("etc/shadow").contains("alice:$6$salt$alicehash:20000:0:99999:7:::\n"));
    assert!(
        text("etc/shadow").contains("appsvc:$6$s$apphash:"),
        "{}",
        text("etc/shadow")
    );
    assert_eq!(text("etc/subuid"), "alice:100000:65536\n");
    let r = report.to_string();
    assert!(r.contains("'newsvc' is declared by sysusers.d now"), "{r}");
    assert!(
        step_count(&report, "sysusers", "accounts-merged").unwrap_or(0) > 0,
        "{r}"
    );
}

/// A factory reset that keeps the app's data (and, always, the ID ledger), after a /usr update
/// that adds a user: the kept data stays with the name it belonged to.
#[test]
fn a_factory_reset_keeps_the_ledger_so_kept_data_keeps_its_owner() {
    let tmp = TempDir::new("ledger-reset");
    let t = tmp.path().join("root");
    appliance(&t);
    write(
        &t,
        "usr/lib/pristine/10-reset.toml",
        "[reset]\nkeep = [\"/var/lib/app\"]\n",
    );
    let (out, _) = provision(&t);
    assert_exit(&out, 0);
    let db = app_writes_data(&t);
    write(&t, "usr/lib/sysusers.d/00-new.conf", "u newsvc - \"New\"\n");
    write(&t, "usr/lib/os-release", "ID=test\nVERSION_ID=2\n");
    write(&t, "var/lib/pristine/factory-reset", "");
    let (out, report) = provision(&t);
    assert_exit(&out, 0);
    assert_eq!(report["reset"], true, "{report}");
    let ids = uids(&t);
    assert_eq!(ids["appsvc"], 999, "{ids:?}");
    assert_ne!(ids["newsvc"], 999, "{ids:?}");
    assert_eq!(std::fs::metadata(&db).unwrap().uid(), 999);
}
