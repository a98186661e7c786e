//! `pristine factory` and `pristine lint` on trees: a fixture image with every case the
//! conversion handles, a copy of this machine's own root (read-only source, converted copy
//! elsewhere), and one fixture tree per lint trap.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{symlink, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{assert_exit, pristine, write, TempDir};

fn run(root: &Path, args: &[&str]) -> std::process::Output {
    pristine()
        .arg(format!("--root={}", root.display()))
        .args(args)
        .output()
        .expect("run pristine")
}

fn read(root: &Path, rel: &str) -> String {
    std::fs::read_to_string(root.join(rel.trim_start_matches('/'))).unwrap_or_default()
}

fn link(root: &Path, target: &str, rel: &str) {
    let p = root.join(rel.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    symlink(target, p).unwrap();
}

/// `path → target` for every symlink under `root/etc/systemd/system`, with each target
/// resolved inside the root (`/lib/…` and `/usr/lib/…` name the same file on merged /usr).
fn enablement(root: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let base = root.join("etc/systemd/system");
    let mut stack = vec![base.clone()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p);
            } else if m.file_type().is_symlink() {
                let t = std::fs::read_link(&p).unwrap();
                let resolved = if t.is_absolute() {
                    resolve_in(root, &t)
                } else {
                    t.clone()
                };
                out.insert(
                    p.strip_prefix(&base).unwrap().display().to_string(),
                    resolved,
                );
            }
        }
    }
    out
}

/// A path inside `root`, with absolute symlinks on the way taken relative to the root.
fn resolve_in(root: &Path, p: &Path) -> PathBuf {
    let mut cur = PathBuf::from("/");
    let mut todo: Vec<std::ffi::OsString> = p.iter().skip(1).map(|c| c.to_os_string()).collect();
    todo.reverse();
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        let next = cur.join(&c);
        match std::fs::read_link(root.join(next.strip_prefix("/").unwrap())) {
            Ok(t) if hops < 40 => {
                hops += 1;
                let base = if t.is_absolute() {
                    PathBuf::from("/")
                } else {
                    cur.clone()
                };
                let full = base.join(t);
                let mut parts: Vec<std::ffi::OsString> =
                    full.iter().skip(1).map(|c| c.to_os_string()).collect();
                parts.reverse();
                todo.extend(parts);
                cur = PathBuf::from("/");
            }
            _ => cur = next,
        }
    }
    cur
}

/// A small image: units (one plain, one template instance, one alias, one masked, one wanted
/// by hand where its [Install] does not say so), users, /var content, a machine id, host keys.
fn fixture(r: &Path) {
    link(r, "usr/lib", "lib");
    write(r, "usr/lib/os-release", "ID=fixture\n");
    let unit = |name: &str, install: &str| {
        write(
            r,
            &format!("usr/lib/systemd/system/{name}"),
            &format!("[Unit]\nDescription={name}\n\n[Service]\nExecStart=/bin/true\n\n{install}"),
        );
    };
    write(
        r,
        "usr/lib/systemd/system/multi-user.target",
        "[Unit]\nDescription=multi\n",
    );
    write(
        r,
        "usr/lib/systemd/system/getty.target",
        "[Unit]\nDescription=getty\n",
    );
    write(
        r,
        "usr/lib/systemd/system/custom.target",
        "[Unit]\nDescription=custom\n",
    );
    unit(
        "sshd-like.service",
        "[Install]\nWantedBy=multi-user.target\nAlias=sshd-alias.service\n",
    );
    unit(
        "getty@.service",
        "[Install]\nWantedBy=getty.target\nDefaultInstance=tty1\n",
    );
    unit(
        "vendor-off.service",
        "[Install]\nWantedBy=multi-user.target\n",
    );
    unit("handmade.service", "");
    unit("masked.service", "[Install]\nWantedBy=multi-user.target\n");
    let ss = "etc/systemd/system";
    link(
        r,
        "/lib/systemd/system/sshd-like.service",
        &format!("{ss}/multi-user.target.wants/sshd-like.service"),
    );
    link(
        r,
        "/lib/systemd/system/sshd-like.service",
        &format!("{ss}/sshd-alias.service"),
    );
    link(
        r,
        "/lib/systemd/system/getty@.service",
        &format!("{ss}/getty.target.wants/getty@tty2.service"),
    );
    link(
        r,
        "/lib/systemd/system/handmade.service",
        &format!("{ss}/custom.target.wants/handmade.service"),
    );
    link(r, "/dev/null", &format!("{ss}/masked.service"));
    write(
        r,
        &format!("{ss}/local.service.d/override.conf"),
        "[Service]\nNice=5\n",
    );
    write(r, "etc/passwd", "root:x:0:0:root:/root:/bin/bash\nsvc:x:120:130:Service User:/var/lib/svc:/usr/sbin/nologin\n");
    write(
        r,
        "etc/group",
        "root:x:0:\nsvcgrp:x:130:\nextra:x:131:svc\n",
    );
    write(r, "etc/shadow", "root:*:1::::::\nsvc:!:1::::::\n");
    write(
        r,
        "usr/lib/sysusers.d/basic.conf",
        "u root 0 \"root\" /root /bin/bash\n",
    );
    write(r, "etc/machine-id", "0123456789abcdef0123456789abcdef\n");
    write(r, "etc/ssh/sshd_config", "PermitRootLogin no\n");
    write(r, "etc/ssh/ssh_host_ed25519_key", "secret\n");
    write(r, "etc/ssh/ssh_host_ed25519_key.pub", "public\n");
    write(r, "etc/app/100% sure.conf", "x=1\n");
    link(r, "../usr/lib/os-release", "etc/os-release");
    write(r, "var/lib/svc/state", "keep me\n");
    write(r, "var/log/old.log", "drop me\n");
    std::fs::create_dir_all(r.join("var/spool/empty")).unwrap();
    link(r, "/etc/machine-id", "var/lib/dbus/machine-id");
    std::os::unix::fs::chown(r.join("var/lib/svc/state"), Some(120), Some(130)).unwrap();
    std::os::unix::fs::chown(r.join("var/lib/svc"), Some(120), Some(130)).unwrap();
}

#[test]
fn factory_converts_a_fixture_image() {
    let t = TempDir::new("factory-fixture");
    let r = t.path();
    fixture(r);
    let before = enablement(r);

    let dry = run(r, &["factory", "--dry-run"]);
    assert_exit(&dry, 0);
    let plan = String::from_utf8_lossy(&dry.stdout);
    assert!(
        plan.contains("move /etc/ssh -> /usr/share/factory/etc/ssh"),
        "{plan}"
    );
    assert!(plan.contains("drop /etc/machine-id"), "{plan}");
    assert!(
        r.join("etc/machine-id").exists(),
        "--dry-run changed the tree"
    );

    let out = run(r, &["factory"]);
    assert_exit(&out, 0);
    assert_eq!(
        std::fs::read_dir(r.join("etc")).unwrap().count(),
        0,
        "/etc is left empty"
    );
    assert_eq!(
        std::fs::read_dir(r.join("var")).unwrap().count(),
        0,
        "/var is left empty"
    );
    let f = "usr/share/factory";
    assert!(!r.join(f).join("etc/machine-id").exists());
    assert!(!r.join(f).join("etc/passwd").exists());
    assert!(!r.join(f).join("etc/ssh/ssh_host_ed25519_key").exists());
    assert!(r.join(f).join("etc/ssh/sshd_config").exists());
    assert!(!r.join(f).join("var/log/old.log").exists());
    assert_eq!(read(r, &format!("{f}/var/lib/svc/state")), "keep me\n");

    let tmp = read(r, "usr/lib/tmpfiles.d/pristine-factory-etc.conf");
    assert!(
        tmp.contains("C /etc/ssh/sshd_config 0644 root root -\n"),
        "{tmp}"
    );
    assert!(
        tmp.contains("L /etc/os-release - - - - ../usr/lib/os-release\n"),
        "{tmp}"
    );
    assert!(
        tmp.contains("L /etc/systemd/system/masked.service - - - - /dev/null\n"),
        "{tmp}"
    );
    assert!(tmp.contains("\"/etc/app/100%% sure.conf\""), "{tmp}");
    // The hand-made want is no preset's doing: it stays as a link.
    assert!(tmp.contains("L /etc/systemd/system/custom.target.wants/handmade.service - - - - /lib/systemd/system/handmade.service\n"), "{tmp}");
    assert!(!tmp.contains("multi-user.target.wants"), "{tmp}");
    let var = read(r, "usr/lib/tmpfiles.d/pristine-factory-var.conf");
    assert!(
        var.contains("d /var/lib/svc 0644 svc svcgrp -\n")
            || var.contains("d /var/lib/svc 0755 svc svcgrp -\n"),
        "{var}"
    );
    assert!(
        var.contains("C /var/lib/svc/state 0644 svc svcgrp -\n"),
        "{var}"
    );
    assert!(var.contains("d /var/spool/empty "), "{var}");
    assert!(
        var.contains("L /var/lib/dbus/machine-id - - - - /etc/machine-id\n"),
        "{var}"
    );

    let pin = read(r, "usr/lib/sysusers.d/00-pristine-factory.conf");
    assert!(pin.contains("g svcgrp 130\n"), "{pin}");
    assert!(
        pin.contains("u svc 120:130 \"Service User\" /var/lib/svc /usr/sbin/nologin\n"),
        "{pin}"
    );
    assert!(pin.contains("m svc extra\n"), "{pin}");
    assert!(!pin.contains("\nu root"), "{pin}");
    let preset = read(
        r,
        "usr/lib/systemd/system-preset/00-pristine-factory.preset",
    );
    assert!(preset.contains("enable sshd-like.service\n"), "{preset}");
    assert!(preset.contains("enable getty@.service tty2\n"), "{preset}");
    assert!(preset.contains("\ndisable *\n"), "{preset}");
    assert!(read(r, "usr/lib/pristine/state.d/50-factory.toml").contains("kind = \"generate\""));

    // Idempotent: nothing left to do, nothing written.
    let mtime = std::fs::metadata(r.join("usr/lib/tmpfiles.d/pristine-factory-etc.conf"))
        .unwrap()
        .mtime_nsec();
    let again = run(r, &["factory", "--dry-run"]);
    assert_exit(&again, 0);
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("nothing to do"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
    assert_exit(&run(r, &["factory"]), 0);
    assert_eq!(
        std::fs::metadata(r.join("usr/lib/tmpfiles.d/pristine-factory-etc.conf"))
            .unwrap()
            .mtime_nsec(),
        mtime
    );

    // Booting it (offline): /etc and /var come back, enablement links included.
    let prov = run(r, &["provision"]);
    assert_exit(&prov, 0);
    assert_eq!(read(r, "etc/ssh/sshd_config"), "PermitRootLogin no\n");
    assert_eq!(read(r, "etc/app/100% sure.conf"), "x=1\n");
    assert!(read(r, "etc/passwd")
        .contains("svc:x:120:130:Service User:/var/lib/svc:/usr/sbin/nologin\n"));
    assert!(read(r, "etc/group").contains("extra:x:131:svc\n"));
    let st = std::fs::metadata(r.join("var/lib/svc/state")).unwrap();
    assert_eq!((st.uid(), st.gid()), (120, 130));
    assert_eq!(read(r, "var/lib/svc/state"), "keep me\n");
    let m = read(r, "etc/machine-id");
    assert_ne!(
        m, "0123456789abcdef0123456789abcdef\n",
        "a new machine id, not the image's"
    );
    assert_eq!(enablement(r), before);
}

/// Copies what a conversion reads from this machine's root (the source stays untouched).
fn copy_host_root(dst: &Path) {
    std::fs::create_dir_all(dst.join("usr/lib")).unwrap();
    std::fs::create_dir_all(dst.join("var/lib")).unwrap();
    let cp = |args: &[&str], to: &str| {
        let s = Command::new("cp")
            .arg("-a")
            .args(args)
            .arg(dst.join(to))
            .status()
            .unwrap();
        assert!(s.success(), "cp {args:?}");
    };
    cp(&["/etc"], "");
    for d in ["systemd", "sysusers.d", "tmpfiles.d", "os-release"] {
        let p = Path::new("/usr/lib").join(d);
        if p.exists() {
            cp(&[p.to_str().unwrap()], "usr/lib/");
        }
    }
    for d in [
        "/var/lib/systemd",
        "/var/lib/dbus",
        "/var/spool",
        "/var/mail",
    ] {
        if Path::new(d).exists() {
            cp(
                &[d],
                if d.starts_with("/var/lib/") {
                    "var/lib/"
                } else {
                    "var/"
                },
            );
        }
    }
    for (name, target) in [("lib", "usr/lib"), ("bin", "usr/bin"), ("sbin", "usr/sbin")] {
        if std::fs::read_link(Path::new("/").join(name)).is_ok() {
            symlink(target, dst.join(name)).unwrap();
        }
    }
}

#[test]
fn factory_on_a_copy_of_this_machine_reproduces_its_enablement() {
    let t = TempDir::new("factory-host");
    let r = t.path();
    copy_host_root(r);
    let before = enablement(r);
    assert!(
        !before.is_empty(),
        "this machine has enablement links to reproduce"
    );
    let out = run(r, &["factory"]);
    assert_exit(&out, 0);
    let lint = run(r, &["lint"]);
    assert_exit(&lint, 0);
    let again = run(r, &["factory", "--dry-run"]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to do"));
    assert_exit(&run(r, &["preset-all"]), 0);
    let after = enablement(r);
    let kept: Vec<&String> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    let lost: Vec<&String> = before.keys().filter(|k| !after.contains_key(*k)).collect();
    assert!(
        kept.is_empty() && lost.is_empty(),
        "preset-all made {kept:?} extra and lost {lost:?}"
    );
    // The links kept by hand need the tmpfiles step; presets alone reproduced the rest.
    let tmp = read(r, "usr/lib/tmpfiles.d/pristine-factory-etc.conf");
    for (p, t) in &before {
        if tmp.contains(&format!("L /etc/systemd/system/{p} ")) {
            continue;
        }
        assert_eq!(after.get(p), Some(t), "{p}");
    }
}

/// Lints a fixture and returns the ids found (asserting the exit code matches).
fn lint_ids(r: &Path) -> Vec<String> {
    let out = run(r, &["lint", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("lint --json output");
    let ids: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect();
    assert_exit(&out, if ids.is_empty() { 0 } else { 65 });
    for f in v.as_array().unwrap() {
        assert!(!f["path"].as_str().unwrap().is_empty() && !f["fix"].as_str().unwrap().is_empty());
    }
    ids
}

#[test]
fn lint_reports_each_trap_in_its_fixture() {
    type Build = fn(&Path);
    let cases: &[(&str, Build)] = &[
        ("unpinned-owner", |r| {
            write(r, "usr/share/x", "x");
            std::os::unix::fs::chown(r.join("usr/share/x"), Some(4242), Some(0)).unwrap();
        }),
        ("etc-only-enablement", |r| {
            write(
                r,
                "usr/lib/systemd/system/a.service",
                "[Install]\nWantedBy=multi-user.target\n",
            );
            write(
                r,
                "usr/lib/systemd/system-preset/99-default.preset",
                "disable *\n",
            );
            link(
                r,
                "/usr/lib/systemd/system/a.service",
                "etc/systemd/system/multi-user.target.wants/a.service",
            );
        }),
        ("tmpfiles-remove-persistent", |r| {
            write(
                r,
                "usr/lib/tmpfiles.d/x.conf",
                "D /var/lib/app 0755 root root -\n",
            )
        }),
        ("tmpfiles-copy-missing-source", |r| {
            write(r, "usr/lib/tmpfiles.d/x.conf", "C /etc/app.conf - - - -\n")
        }),
        ("usr-link-into-etc", |r| {
            write(r, "etc/ssl/openssl.cnf", "x");
            link(r, "/etc/ssl/openssl.cnf", "usr/lib/ssl/openssl.cnf");
        }),
        ("machine-id-baked", |r| {
            write(r, "etc/machine-id", "0123456789abcdef0123456789abcdef\n")
        }),
        ("var-uncovered", |r| write(r, "var/lib/app/data", "x")),
        ("sysusers-conflict", |r| {
            write(r, "usr/lib/sysusers.d/x.conf", "u a 500\nu b 500\n")
        }),
    ];
    let listed = pristine().args(["lint", "--list"]).output().unwrap();
    assert_exit(&listed, 0);
    let listed = String::from_utf8_lossy(&listed.stdout);
    for (id, build) in cases {
        assert!(listed.contains(id), "{id} not in lint --list");
        let t = TempDir::new("lint-trap");
        build(t.path());
        assert_eq!(lint_ids(t.path()), vec![id.to_string()], "fixture for {id}");
    }
    assert_eq!(listed.lines().count(), cases.len(), "one fixture per lint");
    // The traps' negatives: the same trees made right are clean.
    let t = TempDir::new("lint-clean");
    let r = t.path();
    write(r, "usr/lib/tmpfiles.d/x.conf", "D /run/app 0755 root root -\nd /var/lib/app 0755 root root -\nC /etc/app.conf - - - -\nC /var/lib/app/data - - - -\n");
    write(r, "usr/share/factory/etc/app.conf", "x");
    write(r, "usr/share/factory/var/lib/app/data", "x");
    write(r, "var/lib/app/data", "x");
    write(r, "usr/lib/sysusers.d/x.conf", "u a 500\nu b 501\n");
    write(r, "usr/share/y", "y");
    std::os::unix::fs::chown(r.join("usr/share/y"), Some(500), Some(501)).unwrap();
    write(r, "etc/machine-id", "uninitialized\n");
    assert_eq!(lint_ids(r), Vec::<String>::new());
}

/// Every entry under `dir`: type, mode, owner, content or target.
#[cfg(feature = "fault-injection")]
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        let desc = if m.file_type().is_symlink() {
            format!("-> {}", std::fs::read_link(&p).unwrap().display())
        } else if m.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
            format!("dir {:o} {}:{}", m.mode() & 0o7777, m.uid(), m.gid())
        } else {
            format!(
                "file {:o} {}:{} {}",
                m.mode() & 0o7777,
                m.uid(),
                m.gid(),
                String::from_utf8_lossy(&std::fs::read(&p).unwrap())
            )
        };
        out.insert(p.strip_prefix(dir).unwrap().display().to_string(), desc);
    }
    out
}

/// Abort before every mutating operation in turn, run again: the result is always the one
/// of an uninterrupted conversion, and nothing of /etc or /var is lost on the way.
#[cfg(feature = "fault-injection")]
#[test]
fn factory_interrupted_anywhere_converts_the_same_on_rerun() {
    let t = TempDir::new("factory-crash");
    let reference = t.path().join("reference");
    fixture(&reference);
    assert_exit(&run(&reference, &["factory"]), 0);
    let want = snapshot(&reference);
    let mut n = 0;
    loop {
        let r = t.path().join(format!("run{n}"));
        fixture(&r);
        let out = pristine()
            .arg(format!("--root={}", r.display()))
            .arg("factory")
            .env("PRISTINE_FAULT_AFTER", n.to_string())
            .output()
            .unwrap();
        let finished = out.status.success();
        if !finished {
            assert_exit(&run(&r, &["factory"]), 0);
        }
        assert_eq!(
            snapshot(&r),
            want,
            "interrupted before mutating operation {}",
            n + 1
        );
        std::fs::remove_dir_all(&r).unwrap();
        if finished {
            break;
        }
        n += 1;
    }
    assert!(n > 10, "only {n} mutating operations");
}

/// Hostile trees: a FIFO, a name that is not UTF-8, a symlink out of the root, a symlink loop
/// and a tree deeper than the walk goes. Nothing is followed, nothing outside is touched, the
/// odd entries are reported, and a tree that cannot be read whole is not emptied.
#[test]
fn factory_on_hostile_trees() {
    use std::os::unix::ffi::OsStrExt as _;
    let t = TempDir::new("factory-hostile");
    let (r, outside) = (t.path().join("root"), t.path().join("outside"));
    write(&outside, "f", "outside\n");
    write(&r, "etc/ok.conf", "ok\n");
    link(&r, &outside.join("f").display().to_string(), "etc/escape");
    link(&r, "/etc/loop2", "etc/loop1");
    link(&r, "/etc/loop1", "etc/loop2");
    let fifo = Command::new("mkfifo")
        .arg(r.join("etc/fifo"))
        .status()
        .unwrap();
    assert!(fifo.success());
    std::fs::create_dir_all(r.join("etc/odd")).unwrap();
    std::fs::write(
        r.join("etc/odd")
            .join(std::ffi::OsStr::from_bytes(b"n\xffme")),
        "x",
    )
    .unwrap();
    let out = run(&r, &["factory"]);
    assert_exit(&out, 0);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/etc/fifo"), "{err}");
    assert!(err.contains("not UTF-8"), "{err}");
    assert_eq!(read(&outside, "f"), "outside\n");
    let tmp = read(&r, "usr/lib/tmpfiles.d/pristine-factory-etc.conf");
    assert!(
        tmp.contains(&format!("L /etc/escape - - - - {}/f\n", outside.display())),
        "{tmp}"
    );
    assert!(tmp.contains("L /etc/loop1 - - - - /etc/loop2\n"), "{tmp}");
    assert!(!tmp.contains("/etc/fifo"), "{tmp}");

    // Deeper than the walk goes: reported, and /etc stays where it is.
    let t2 = TempDir::new("factory-deep");
    let mut deep = t2.path().join("etc");
    for _ in 0..300 {
        deep.push("d");
    }
    std::fs::create_dir_all(&deep).unwrap();
    let out = run(t2.path(), &["factory"]);
    assert_exit(&out, 73);
    assert!(String::from_utf8_lossy(&out.stderr).contains("levels"));
    assert!(
        t2.path().join("etc/d").is_dir(),
        "an unreadable /etc must not be moved away"
    );
}
