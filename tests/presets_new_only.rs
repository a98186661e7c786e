//! `pristine preset-all --new-only`: presets for units that arrive with a /usr update, the
//! admin's choices kept, links for vanished units cleaned up.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure
mod common;

use std::path::Path;

use common::{reference, run_pristine, write, TempDir};

const UNITS: &str = "usr/lib/systemd/system";
const WANTS: &str = "etc/systemd/system/multi-user.target.wants";

fn unit(root: &Path, name: &str, install: &str) {
    write(
        root,
        &format!("{UNITS}/{name}"),
        &format!("[Unit]\nDescription={name}\n\n[Install]\n{install}\n"),
    );
}

fn link(root: &Path, rel: &str) -> Option<String> {
    std::fs::read_link(root.join(rel))
        .ok()
        .map(|t| t.display().to_string())
}

fn new_only(root: &Path) {
    let out = run_pristine(&[
        &format!("--root={}", root.display()),
        "preset-all",
        "--new-only",
    ]);
    common::assert_exit(&out, 0);
}

#[test]
fn first_run_is_full_preset_all() {
    let a = TempDir::new("newonly-first-a");
    let b = TempDir::new("newonly-first-b");
    for r in [a.path(), b.path()] {
        unit(
            r,
            "one.service",
            "WantedBy=multi-user.target\nAlias=uno.service",
        );
        unit(r, "two.service", "WantedBy=multi-user.target");
        unit(r, "three.socket", "WantedBy=sockets.target");
        write(
            r,
            "usr/lib/systemd/system-preset/90-test.preset",
            "disable two.service\nenable *\n",
        );
        std::fs::create_dir_all(r.join("etc")).unwrap();
    }
    new_only(a.path());
    let out = reference("systemctl")
        .arg(format!("--root={}", b.path().display()))
        .arg("preset-all")
        .output()
        .unwrap();
    assert!(out.status.success());
    let la: Vec<_> = pristine::presets::list_links(&a.path().join("etc/systemd"))
        .into_iter()
        .collect();
    let lb: Vec<_> = pristine::presets::list_links(&b.path().join("etc/systemd"))
        .into_iter()
        .collect();
    assert_eq!(la, lb);
    assert!(la.iter().any(|(k, _)| k == "system/uno.service"));
    let state = std::fs::read_to_string(a.path().join("etc/pristine/presets.state")).unwrap();
    for u in ["one.service", "two.service", "three.socket"] {
        assert!(state.contains(&format!("unit {u}\n")), "{state}");
    }
    assert!(state.contains("link one.service /etc/systemd/system/multi-user.target.wants/one.service /usr/lib/systemd/system/one.service\n"), "{state}");
}

#[test]
fn update_adds_units_keeps_admin_choices_and_cleans_up() {
    let t = TempDir::new("newonly-update");
    let r = t.path();
    std::fs::create_dir_all(r.join("etc")).unwrap();
    unit(r, "old.service", "WantedBy=multi-user.target");
    unit(r, "keep.service", "WantedBy=multi-user.target");
    unit(
        r,
        "gone.service",
        "WantedBy=multi-user.target\nAlias=gone-alias.service",
    );
    write(
        r,
        "usr/lib/systemd/system-preset/90-test.preset",
        "disable late-disabled.service\nenable *\n",
    );
    new_only(r);
    let target = |u: &str| Some(format!("/usr/lib/systemd/system/{u}"));
    assert_eq!(
        link(r, &format!("{WANTS}/old.service")),
        target("old.service")
    );
    assert_eq!(
        link(r, &format!("{WANTS}/gone.service")),
        target("gone.service")
    );
    assert_eq!(
        link(r, "etc/systemd/system/gone-alias.service"),
        target("gone.service")
    );

    // The admin disables old.service and makes links of their own to gone.service.
    std::fs::remove_file(r.join(format!("{WANTS}/old.service"))).unwrap();
    std::os::unix::fs::symlink(
        "/usr/lib/systemd/system/gone.service",
        r.join("etc/systemd/system/admin.service"),
    )
    .unwrap();
    std::fs::create_dir_all(r.join("etc/systemd/system/graphical.target.wants")).unwrap();
    std::os::unix::fs::symlink(
        "/usr/lib/systemd/system/gone.service",
        r.join("etc/systemd/system/graphical.target.wants/gone.service"),
    )
    .unwrap();
    // …and repoints the alias pristine made: it is theirs now.
    std::fs::remove_file(r.join("etc/systemd/system/gone-alias.service")).unwrap();
    std::os::unix::fs::symlink(
        "/usr/lib/systemd/system/keep.service",
        r.join("etc/systemd/system/gone-alias.service"),
    )
    .unwrap();

    // A /usr update: new units arrive (one pulls the admin-disabled unit in with Also=), one
    // unit is no longer shipped.
    unit(
        r,
        "new.service",
        "WantedBy=multi-user.target\nAlso=old.service",
    );
    unit(r, "new.socket", "WantedBy=sockets.target");
    unit(r, "late-disabled.service", "WantedBy=multi-user.target");
    std::fs::remove_file(r.join(format!("{UNITS}/gone.service"))).unwrap();
    new_only(r);

    assert_eq!(
        link(r, &format!("{WANTS}/new.service")),
        target("new.service")
    );
    assert_eq!(
        link(r, "etc/systemd/system/sockets.target.wants/new.socket"),
        target("new.socket")
    );
    assert_eq!(
        link(r, &format!("{WANTS}/late-disabled.service")),
        None,
        "preset says disable"
    );
    assert_eq!(
        link(r, &format!("{WANTS}/old.service")),
        None,
        "the admin disabled it"
    );
    assert_eq!(
        link(r, &format!("{WANTS}/keep.service")),
        target("keep.service")
    );
    assert_eq!(
        link(r, &format!("{WANTS}/gone.service")),
        None,
        "pristine's link for a vanished unit"
    );
    assert_eq!(
        link(r, "etc/systemd/system/admin.service"),
        target("gone.service"),
        "admin link"
    );
    assert_eq!(
        link(r, "etc/systemd/system/graphical.target.wants/gone.service"),
        target("gone.service"),
        "admin link"
    );
    assert_eq!(
        link(r, "etc/systemd/system/gone-alias.service"),
        target("keep.service"),
        "admin-changed link"
    );

    let state = std::fs::read_to_string(r.join("etc/pristine/presets.state")).unwrap();
    assert!(
        state.contains("unit new.service\n") && !state.contains("unit gone.service\n"),
        "{state}"
    );
    assert!(
        !state.contains(" /etc/systemd/system/multi-user.target.wants/gone.service "),
        "{state}"
    );

    // A third run with nothing new changes nothing, the state file included (not rewritten:
    // same inode, same content).
    use std::os::unix::fs::MetadataExt;
    let before = pristine::presets::list_links(&r.join("etc"));
    let state_file = r.join("etc/pristine/presets.state");
    let ino = std::fs::metadata(&state_file).unwrap().ino();
    new_only(r);
    assert_eq!(pristine::presets::list_links(&r.join("etc")), before);
    assert_eq!(
        std::fs::metadata(&state_file).unwrap().ino(),
        ino,
        "state file rewritten by a run with nothing new"
    );
    assert_eq!(std::fs::read_to_string(&state_file).unwrap(), state);
}

#[test]
fn dry_run_changes_nothing() {
    let t = TempDir::new("newonly-dry");
    let r = t.path();
    std::fs::create_dir_all(r.join("etc")).unwrap();
    unit(r, "one.service", "WantedBy=multi-user.target");
    let out = run_pristine(&[
        &format!("--root={}", r.display()),
        "preset-all",
        "--new-only",
        "--dry-run",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("symlink /etc/systemd/system/multi-user.target.wants/one.service -> /usr/lib/systemd/system/one.service"), "{stdout}");
    assert!(!r.join("etc/systemd").exists());
    assert!(!r.join("etc/pristine").exists());
}

/// A tree that is not usr-merged (Debian ≤ 12 style `/lib/systemd/system` as a real directory):
/// pristine finds those units too (systemctl 257 does not look there) and links them where they
/// are.
#[test]
fn split_usr_units_are_found() {
    let t = TempDir::new("split-usr");
    let r = t.path();
    std::fs::create_dir_all(r.join("etc")).unwrap();
    write(
        r,
        "lib/systemd/system/legacy.service",
        "[Install]\nWantedBy=multi-user.target\nAlias=legacy-alias.service\n",
    );
    unit(r, "modern.service", "WantedBy=multi-user.target");
    let out = run_pristine(&[&format!("--root={}", r.display()), "preset-all"]);
    common::assert_exit(&out, 0);
    assert_eq!(
        link(r, &format!("{WANTS}/legacy.service")).as_deref(),
        Some("/lib/systemd/system/legacy.service")
    );
    assert_eq!(
        link(r, "etc/systemd/system/legacy-alias.service").as_deref(),
        Some("/lib/systemd/system/legacy.service")
    );
    assert_eq!(
        link(r, &format!("{WANTS}/modern.service")).as_deref(),
        Some("/usr/lib/systemd/system/modern.service")
    );
}
