//! The factory reset and presets on hostile trees (issue 12): each test builds its tree from
//! scratch, runs the real binary and checks that nothing outside what the reset may flush was
//! moved or removed, that a path it cannot keep is reported by name without stopping the
//! reset, and that deep trees neither overflow the stack nor run out of descriptors.
//! Mount tests need root (CI runs as root).

// Fixtures build hostile trees (devices, odd times, races) directly, not through src/fs.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{pristine, write, TempDir};

/// Every entry below `dir` (not following links) with its kind and content, walked without
/// recursion.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let desc = if md.file_type().is_symlink() {
            format!("-> {}", std::fs::read_link(&p).unwrap().display())
        } else if md.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                todo.push(e.unwrap().path());
            }
            format!("dir {:o}", md.permissions().mode() & 0o7777)
        } else {
            format!(
                "file {}",
                String::from_utf8_lossy(&std::fs::read(&p).unwrap())
            )
        };
        out.insert(p.strip_prefix(dir).unwrap().to_path_buf(), desc);
    }
    out
}

/// A small root with vendor data in /usr, a merged-/usr /bin link and some local state.
fn base(t: &Path, keep: &[&str]) {
    write(t, "usr/lib/os-release", "ID=test\nVERSION_ID=1\n");
    write(t, "usr/bin/tool", "vendor binary\n");
    write(t, "usr/lib/machines/vendor-image", "vendor data\n");
    std::os::unix::fs::symlink("usr/bin", t.join("bin")).unwrap();
    let keep: Vec<String> = keep
        .iter()
        .map(|k| format!("\"{}\"", k.replace('\0', "\\u0000")))
        .collect();
    write(
        t,
        "usr/lib/pristine/pristine.toml",
        &format!("[reset]\nkeep = [{}]\n", keep.join(", ")),
    );
    write(t, "etc/hostname", "box\n");
    write(t, "var/log/syslog", "log\n");
}

/// A vendor unit enabled by a vendor preset.
fn vendor_unit(t: &Path) {
    write(
        t,
        "usr/lib/systemd/system/a.service",
        "[Install]\nWantedBy=multi-user.target\n",
    );
    write(
        t,
        "usr/lib/systemd/system-preset/90-default.preset",
        "enable a.service\n",
    );
}

fn request(t: &Path) {
    write(t, "var/lib/pristine/factory-reset", "");
}

fn run_in(dir: Option<&Path>, root: &str, args: &[&str]) -> Output {
    let mut c = pristine();
    c.arg(format!("--root={root}"))
        .args(["--cmdline=", "--efivars=/nonexistent"])
        .args(args)
        .env("SYSTEMD_LOG_TARGET", "console")
        .env("SYSTEMD_IN_INITRD", "0")
        .env_remove("PRISTINE_FAULT_AFTER")
        .env_remove("CREDENTIALS_DIRECTORY");
    if let Some(d) = dir {
        c.current_dir(d);
    }
    c.output().unwrap()
}

fn run(t: &Path, args: &[&str]) -> Output {
    run_in(None, &t.display().to_string(), args)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn usr(t: &Path) -> BTreeMap<PathBuf, String> {
    snapshot(&t.join("usr"))
}

#[test]
fn var_that_is_a_symlink_is_refused_and_usr_untouched() {
    for target in ["usr", "/", "/usr"] {
        let tmp = TempDir::new("hr-var-link");
        let t = tmp.path().join("root");
        base(&t, &[]);
        std::fs::remove_dir_all(t.join("var")).unwrap();
        std::os::unix::fs::symlink(target, t.join("var")).unwrap();
        let before = snapshot(&t);
        let o = run(&t, &["reset", "run", "--force"]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(73), "/var -> {target}: {err}");
        assert!(
            err.contains("/var: factory reset: cannot start: not a directory"),
            "/var -> {target}: {err}"
        );
        assert!(!err.contains("Factory reset of /var complete"), "{err}");
        let after = snapshot(&t);
        for (p, d) in &before {
            if !p.starts_with("etc") {
                assert_eq!(
                    after.get(p),
                    Some(d),
                    "/var -> {target}: {} changed",
                    p.display()
                );
            }
        }
    }
}

#[test]
fn kept_path_behind_a_link_into_usr_is_reported_and_usr_untouched() {
    let tmp = TempDir::new("hr-keep-link");
    let t = tmp.path().join("root");
    base(&t, &["/var/lib/machines", "/var/lib/real"]);
    write(&t, "var/lib/real/data", "local data\n");
    // /var/lib/machines reaches into /usr through a link: /var/vlib -> /usr/lib.
    std::os::unix::fs::symlink("/usr/lib", t.join("var/lib-usr")).unwrap();
    std::os::unix::fs::symlink("../lib-usr/machines", t.join("var/lib/machines")).unwrap();
    request(&t);
    let before = usr(&t);
    let o = run(&t, &["reset", "run"]);
    let err = stderr(&o);
    assert_eq!(usr(&t), before, "vendor data moved out of /usr: {err}");
    assert_eq!(
        std::fs::read_to_string(t.join("var/lib/real/data")).unwrap(),
        "local data\n"
    );
    assert!(!t.join("var/lib-usr").exists() && !t.join("var/log").exists());
    assert!(
        !t.join("var/.pristine-reset").exists(),
        "reset left unfinished: {err}"
    );
    // The link itself is what was kept (moved aside and back, never followed).
    assert_eq!(
        std::fs::read_link(t.join("var/lib/machines")).unwrap(),
        Path::new("../lib-usr/machines")
    );

    // The same with the link on the kept path's parent: reported by name, the reset finishes.
    let tmp = TempDir::new("hr-keep-link2");
    let t = tmp.path().join("root");
    base(&t, &["/var/vlib/machines"]);
    std::os::unix::fs::symlink("/usr/lib", t.join("var/vlib")).unwrap();
    request(&t);
    let before = usr(&t);
    let o = run(&t, &["reset", "run"]);
    let err = stderr(&o);
    assert_eq!(usr(&t), before, "vendor data moved out of /usr: {err}");
    assert_eq!(o.status.code(), Some(73), "{err}");
    assert!(
        err.contains("/var/vlib/machines: factory reset: cannot keep this path aside")
            && err.contains("symbolic link"),
        "{err}"
    );
    assert!(
        !t.join("var/.pristine-reset").exists(),
        "reset left unfinished: {err}"
    );
    assert!(!t.join("var/vlib").exists(), "the link itself is flushed");
}

#[test]
fn symlinked_work_area_is_never_followed() {
    // No reset requested: provision must not purge what a planted work area points to.
    let tmp = TempDir::new("hr-work-link");
    let t = tmp.path().join("root");
    base(&t, &[]);
    write(&t, "usr/share/victim/trash/file", "vendor\n");
    std::os::unix::fs::symlink("/usr/share/victim", t.join("var/.pristine-reset")).unwrap();
    let before = usr(&t);
    let o = run(&t, &["provision"]);
    assert_eq!(
        usr(&t),
        before,
        "provision followed the work area: {}",
        stderr(&o)
    );
    assert!(t.join("var/log/syslog").exists());
    // With a reset requested, the planted link is removed as itself and the reset completes.
    request(&t);
    let o = run(&t, &["reset", "run"]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(usr(&t), before, "reset followed the work area: {err}");
    assert!(!t.join("var/.pristine-reset").exists() && !t.join("var/log").exists());
}

#[test]
fn crafted_presets_state_removes_only_its_own_links() {
    let tmp = TempDir::new("hr-presets-state");
    let t = tmp.path().join("root");
    base(&t, &[]);
    vendor_unit(&t);
    write(&t, "usr/share/dir/link-target", "x\n");
    std::os::unix::fs::symlink("/usr/share/dir/link-target", t.join("usr/share/dir/l")).unwrap();
    write(&t, "etc/systemd/system/b.service", "[Unit]\n");
    std::os::unix::fs::symlink("/etc/systemd/system/b.service", t.join("etc/x.service")).unwrap();
    write(
        &t,
        "etc/pristine/presets.state",
        "unit gone.service\n\
         link x.service /bin usr/bin\n\
         link x.service /usr/share/dir/l /usr/share/dir/link-target\n\
         link x.service /etc/systemd/system/../../x.service /etc/systemd/system/b.service\n",
    );
    let before = usr(&t);
    let o = run(&t, &["preset-all", "--new-only"]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(usr(&t), before, "{err}");
    assert_eq!(
        std::fs::read_link(t.join("bin")).unwrap(),
        Path::new("usr/bin"),
        "{err}"
    );
    assert!(t.join("etc/x.service").is_symlink(), "{err}");
    assert!(
        err.contains("recorded link /bin is not below /etc/systemd/system"),
        "{err}"
    );
    assert!(t
        .join("etc/systemd/system/multi-user.target.wants/a.service")
        .is_symlink());
}

#[test]
fn bad_kept_paths_are_reported_and_the_reset_finishes() {
    let tmp = TempDir::new("hr-bad-keep");
    let t = tmp.path().join("root");
    base(
        &t,
        &[
            "/var/a\u{0}b",
            "/var/lib/file/below",
            "/var/lib/immutable",
            "/var/lib/good",
        ],
    );
    write(&t, "var/lib/file", "a regular file\n");
    write(&t, "var/lib/good/data", "good\n");
    write(&t, "var/lib/immutable/data", "cannot move\n");
    let imm = t.join("var/lib/immutable");
    set_immutable(&imm, true);
    request(&t);
    let o = run(&t, &["reset", "run"]);
    // Wherever it ended up, so that a failing run leaves a removable tree.
    for p in [&imm, &t.join("var/.pristine-reset/keep/lib/immutable")] {
        if p.exists() {
            set_immutable(p, false);
        }
    }
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(73), "{err}");
    assert!(
        err.contains("is not an absolute path below /etc or /var"),
        "{err}"
    );
    assert!(
        err.contains(
            "/var/lib/immutable: factory reset: cannot keep this path aside, it stays in place"
        ),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(imm.join("data")).unwrap(),
        "cannot move\n"
    );
    assert_eq!(
        std::fs::read_to_string(t.join("var/lib/good/data")).unwrap(),
        "good\n"
    );
    assert!(!t.join("var/lib/file").exists() && !t.join("var/log").exists());
    assert!(
        !t.join("var/.pristine-reset").exists(),
        "reset left unfinished: {err}"
    );
    // The record is cleared: the next run has nothing to do.
    // (Exit 65: the bad keep entries are still in the configuration and reported at their line.)
    let o = run(&t, &["reset", "run"]);
    assert_eq!(o.status.code(), Some(65), "{}", stderr(&o));
    assert!(stderr(&o).contains("nothing to do"), "{}", stderr(&o));
}

fn set_immutable(p: &Path, on: bool) {
    let f = std::fs::File::open(p).unwrap();
    let flags = rustix::fs::ioctl_getflags(&f).unwrap();
    let flags = if on {
        flags | rustix::fs::IFlags::IMMUTABLE
    } else {
        flags - rustix::fs::IFlags::IMMUTABLE
    };
    rustix::fs::ioctl_setflags(&f, flags).unwrap();
}

#[test]
fn an_interrupted_reset_takes_the_fixed_configuration() {
    let tmp = TempDir::new("hr-frozen");
    let t = tmp.path().join("root");
    base(&t, &["/var/lib/new"]);
    write(&t, "var/lib/old/data", "old\n");
    write(&t, "var/lib/new/data", "new\n");
    write(&t, "usr/lib/victim", "vendor\n");
    // A record frozen by an earlier attempt, with entries that must be refused.
    write(
        &t,
        "var/.pristine-reset/intent.json",
        r#"{"phase":"aside","keep":["/var/lib/old","/var/a\u0000b","/usr/lib/victim","/var/../usr/lib"],"sources":["file"]}"#,
    );
    let before = usr(&t);
    let o = run(&t, &["reset", "run"]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(usr(&t), before, "{err}");
    for k in ["old", "new"] {
        assert_eq!(
            std::fs::read_to_string(t.join(format!("var/lib/{k}/data"))).unwrap(),
            format!("{k}\n"),
            "{err}"
        );
    }
    assert!(!t.join("var/.pristine-reset").exists() && !t.join("var/log").exists());
}

#[test]
fn keeping_etc_pristine_does_not_keep_the_presets_record() {
    let tmp = TempDir::new("hr-presets-keep");
    let t = tmp.path().join("root");
    base(&t, &["/etc/pristine"]);
    vendor_unit(&t);
    write(&t, "etc/pristine/local.toml", "# admin\n");
    let o = run(&t, &["preset-all", "--new-only"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let wants = t.join("etc/systemd/system/multi-user.target.wants/a.service");
    assert!(wants.is_symlink() && t.join("etc/pristine/presets.state").exists());
    write(&t, "var/lib/pristine/factory-reset", "");
    write(
        &t,
        "usr/lib/pristine/pristine.toml",
        "[reset]\nlevel = \"full\"\nkeep = [\"/etc/pristine\"]\n",
    );
    let o = run(&t, &["reset", "run"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!wants.exists() && !t.join("etc/pristine/presets.state").exists());
    assert!(
        t.join("etc/pristine/local.toml").exists(),
        "the rest of the kept dir stays"
    );
    // Presets apply again after the reset.
    let o = run(&t, &["preset-all", "--new-only"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        wants.is_symlink(),
        "vendor presets not re-applied after the reset"
    );
}

/// Mounts a tmpfs at `p` and returns a guard that unmounts it.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(p: &Path) -> Mount {
        std::fs::create_dir_all(p).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "tmpfs"])
            .arg(p)
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs (the test needs root)");
        Mount(p.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn mounts_are_found_by_id_with_a_relative_or_symlinked_root() {
    for how in ["relative", "symlink"] {
        let tmp = TempDir::new("hr-mount");
        let t = tmp.path().join("root");
        base(&t, &["/var/lib/docker/keep"]);
        let m = Mount::tmpfs(&t.join("var/lib/docker/volumes"));
        write(&t, "var/lib/docker/volumes/v1", "on its own fs\n");
        write(&t, "var/lib/docker/other", "flushed\n");
        request(&t);
        std::os::unix::fs::symlink("root", tmp.path().join("link")).unwrap();
        let o = match how {
            "relative" => run_in(Some(tmp.path()), "root", &["reset", "run"]),
            _ => run(&tmp.path().join("link"), &["reset", "run"]),
        };
        let err = stderr(&o);
        let kept = std::fs::read_to_string(t.join("var/lib/docker/volumes/v1"));
        let other = t.join("var/lib/docker/other").exists();
        let done = !t.join("var/.pristine-reset").exists();
        drop(m);
        assert!(o.status.success(), "{how}: {err}");
        assert_eq!(kept.unwrap(), "on its own fs\n", "{how}: {err}");
        assert!(!other && done, "{how}: {err}");
    }
}

#[test]
fn kept_path_inside_a_read_only_mount_stays_in_place() {
    let tmp = TempDir::new("hr-ro");
    let t = tmp.path().join("root");
    base(&t, &["/var/ro/data", "/var/lib/good"]);
    let m = Mount::tmpfs(&t.join("var/ro"));
    write(&t, "var/ro/data", "read-only\n");
    write(&t, "var/lib/good/x", "good\n");
    let st = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(t.join("var/ro"))
        .status()
        .unwrap();
    assert!(st.success());
    request(&t);
    let o = run(&t, &["reset", "run"]);
    let err = stderr(&o);
    let kept = std::fs::read_to_string(t.join("var/ro/data"));
    drop(m);
    assert!(o.status.success(), "{err}");
    assert_eq!(kept.unwrap(), "read-only\n");
    assert_eq!(
        std::fs::read_to_string(t.join("var/lib/good/x")).unwrap(),
        "good\n"
    );
    assert!(!t.join("var/.pristine-reset").exists() && !t.join("var/log").exists());
}

/// Makes `depth` nested directories `d` below `top`, one descriptor open at a time.
fn deep_tree(top: &Path, depth: usize) {
    use rustix::fs::{Mode, OFlags};
    std::fs::create_dir_all(top).unwrap();
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut cur: OwnedFd = rustix::fs::open(top, flags, Mode::empty()).unwrap();
    for _ in 0..depth {
        rustix::fs::mkdirat(&cur, "d", Mode::from_raw_mode(0o755)).unwrap();
        std::fs::write(
            format!("/proc/self/fd/{}/f", std::os::fd::AsRawFd::as_raw_fd(&cur)),
            "x",
        )
        .unwrap();
        cur = rustix::fs::openat(&cur, "d", flags, Mode::empty()).unwrap();
    }
}

#[test]
fn deep_trees_are_purged_with_bounded_stack_and_descriptors() {
    for depth in [10_000, 30_000] {
        let tmp = TempDir::new("hr-deep");
        // On a tmpfs: the point is the walk, not the disk's speed at 60,000 unlinks.
        let m = Mount::tmpfs(&tmp.path().join("root"));
        let t = m.0.clone();
        base(&t, &["/var/lib/good"]);
        write(&t, "var/lib/good/x", "good\n");
        deep_tree(&t.join("var/tmp/deep"), depth);
        request(&t);
        // 32 descriptors in all: the old recursive purge needed one per level.
        let o = Command::new("sh")
            .arg("-c")
            .arg("ulimit -n 32 && exec \"$@\"")
            .arg("sh")
            .arg(env!("CARGO_BIN_EXE_pristine"))
            .arg(format!("--root={}", t.display()))
            .args(["--cmdline=", "--efivars=/nonexistent", "reset", "run"])
            .env("SYSTEMD_LOG_TARGET", "console")
            .env_remove("PRISTINE_FAULT_AFTER")
            .output()
            .unwrap();
        let err = stderr(&o);
        assert!(o.status.success(), "depth {depth}: {:?} {err}", o.status);
        assert!(!t.join("var/tmp").exists(), "depth {depth}: {err}");
        assert!(
            !t.join("var/.pristine-reset").exists(),
            "depth {depth}: {err}"
        );
        assert_eq!(
            std::fs::read_to_string(t.join("var/lib/good/x")).unwrap(),
            "good\n"
        );
        drop(m);
    }
}
