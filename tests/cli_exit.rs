//! One exit-code policy (docs/architecture.md, "exit codes"): every verb exits 0 when all is
//! well, 65 when it saw bad configuration and skipped it, 73 when an operation failed and 1 on
//! bad usage or a fatal error. Each verb is run with bad usage, bad configuration and a failing
//! operation where that applies; the few codes systemd's own tools pin (and the differential
//! tests check) are asserted as the pinned code, with the reference tool run side by side.

mod common;

use std::path::Path;

use common::{reference_bin, run_offline, stderr_text, write, TempDir};

/// A minimal root: os-release, empty /etc and /var.
fn root(tmp: &TempDir) -> std::path::PathBuf {
    let t = tmp.path().join("root");
    write(&t, "usr/lib/os-release", "ID=test\n");
    std::fs::create_dir_all(t.join("etc")).unwrap();
    std::fs::create_dir_all(t.join("var")).unwrap();
    t
}

/// Replaces the directory `rel` of `t` by a regular file: every operation below it fails.
fn file_instead_of_dir(t: &Path, rel: &str) {
    let p = t.join(rel);
    let _ = std::fs::remove_dir_all(&p);
    std::fs::write(p, "not a directory\n").unwrap();
}

/// pristine's configuration with a syntax error.
fn bad_settings(t: &Path) {
    write(t, "usr/lib/pristine/pristine.toml", "[reset\nkeep = [\n");
}

/// Runs `args` on a fresh root prepared by `setup` and checks the exit code.
fn case(what: &str, setup: impl FnOnce(&Path), args: &[&str], code: i32) {
    let tmp = TempDir::new("cli-exit");
    let t = root(&tmp);
    setup(&t);
    let out = run_offline(&t, args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: pristine {}: {}",
        args.join(" "),
        stderr_text(&out)
    );
}

fn none(_: &Path) {}

#[test]
fn bad_usage_exits_1() {
    for args in [
        &["provision", "--bogus"][..],
        &["status", "--bogus"],
        &["stamp", "extra"],
        &["reset"],
        &["reset", "frobnicate"],
        &["reset", "run", "--bogus"],
        &["sysusers", "--bogus"],
        &["tmpfiles"],
        &["tmpfiles", "--bogus"],
        &["update"],
        &["update", "status", "--bogus"],
        &["preset-all", "--bogus"],
        &["preset"],
        &["state"],
        &["state", "frobnicate"],
        &["factory", "--bogus"],
        &["lint", "--bogus"],
        &["no-such-verb"],
        &["--log-level=loud", "status"],
        &["--smbios-uuid=nope", "status"],
    ] {
        case("bad usage", none, args, 1);
    }
    // `factory` never converts the running system: without --root it is a usage error.
    let out = common::run_pristine(&["factory"]);
    common::assert_exit(&out, 1);
    // A root that cannot be opened is fatal for every verb that needs one.
    for verb in ["provision", "status", "stamp", "sysusers", "lint"] {
        let out = common::run_pristine(&["--root=/nonexistent/root", "--cmdline=", verb]);
        common::assert_exit(&out, 1);
    }
}

#[test]
fn bad_configuration_exits_65() {
    for args in [
        &["provision"][..],
        &["provision", "--dry-run"],
        &["status"],
        &["status", "--json"],
        &["reset", "status"],
        &["reset", "run"],
        &["reset", "run", "--dry-run"],
        &["reset", "request", "--dry-run"],
        &["reset", "cancel", "--dry-run"],
    ] {
        case("bad pristine.toml", bad_settings, args, 65);
    }
    case(
        "bad sysusers.d line",
        |t| write(t, "usr/lib/sysusers.d/a.conf", "u app - -\nbogus line\n"),
        &["sysusers"],
        65,
    );
    case(
        "bad tmpfiles.d line",
        |t| {
            write(
                t,
                "usr/lib/tmpfiles.d/a.conf",
                "bogus\nd /var/a 0755 - - -\n",
            )
        },
        &["tmpfiles", "--create"],
        65,
    );
    case(
        "lint finding",
        |t| write(t, "var/lib/app/data", "uncovered\n"),
        &["lint"],
        65,
    );
    case(
        "lint finding after a conversion",
        |t| {
            write(
                t,
                "usr/lib/tmpfiles.d/a.conf",
                "C /var/lib/app - - - - /usr/share/no-such-source\n",
            )
        },
        &["factory"],
        65,
    );
}

#[test]
fn failed_operations_exit_73() {
    case(
        "/etc is a file",
        |t| file_instead_of_dir(t, "etc"),
        &["provision"],
        73,
    );
    case(
        "/var is a file",
        |t| file_instead_of_dir(t, "var"),
        &["stamp"],
        73,
    );
    case(
        "/var is a file",
        |t| file_instead_of_dir(t, "var"),
        &["reset", "request"],
        73,
    );
    case(
        "/var is a symlink",
        |t| {
            std::fs::remove_dir_all(t.join("var")).unwrap();
            std::os::unix::fs::symlink("usr", t.join("var")).unwrap();
        },
        &["reset", "run", "--force"],
        73,
    );
    case(
        "/etc is a file",
        |t| {
            write(t, "usr/lib/sysusers.d/a.conf", "u app - -\n");
            file_instead_of_dir(t, "etc");
        },
        &["sysusers"],
        73,
    );
    case(
        "/var is a file",
        |t| {
            write(t, "usr/lib/tmpfiles.d/a.conf", "d /var/a/b 0755 - - -\n");
            file_instead_of_dir(t, "var");
        },
        &["tmpfiles", "--create"],
        73,
    );
}

/// `update make` / `update sign` run on the vendor's machine (no root): a missing key, image or
/// index and an output directory that cannot be made are failed operations (73), not fatal (1).
#[test]
fn update_make_and_sign_failures_exit_73() {
    let tmp = TempDir::new("cli-exit-update");
    let d = tmp.path();
    let key = d.join("k.key");
    let made = std::process::Command::new("minisign")
        .args(["-G", "-W", "-p"])
        .arg(d.join("k.pub"))
        .arg("-s")
        .arg(&key)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run minisign");
    assert!(made.status.success(), "minisign -G: {}", stderr_text(&made));
    std::fs::write(d.join("image"), vec![7u8; 64 * 1024]).unwrap();
    std::fs::write(d.join("blocker"), "a file where a directory is wanted\n").unwrap();
    let p = |p: &str| d.join(p).display().to_string();
    let key_arg = format!("--key={}", key.display());
    let store_arg = format!("--store={}", p("store"));
    for (what, args) in [
        (
            "missing key",
            vec![
                "make".to_string(),
                format!("--key={}", p("no-such.key")),
                "--version=1".into(),
                p("image"),
                p("out"),
            ],
        ),
        (
            "missing image",
            vec![
                "make".into(),
                key_arg.clone(),
                "--version=1".into(),
                p("no-such-image"),
                p("out"),
            ],
        ),
        (
            "output directory below a file",
            vec![
                "make".into(),
                key_arg.clone(),
                "--version=1".into(),
                p("image"),
                p("blocker/out"),
            ],
        ),
        (
            "missing index",
            vec![
                "sign".into(),
                key_arg.clone(),
                "--version=1".into(),
                store_arg.clone(),
                p("no-such.caibx"),
                p("out"),
            ],
        ),
        (
            "missing key",
            vec![
                "sign".into(),
                format!("--key={}", p("no-such.key")),
                "--version=1".into(),
                store_arg.clone(),
                p("no-such.caibx"),
                p("out"),
            ],
        ),
    ] {
        let out = common::run_pristine(
            &std::iter::once("update")
                .chain(args.iter().map(String::as_str))
                .collect::<Vec<_>>(),
        );
        assert_eq!(
            out.status.code(),
            Some(73),
            "{what}: pristine update {}: {}",
            args.join(" "),
            stderr_text(&out)
        );
        assert!(
            stderr_text(&out).contains(d.to_str().unwrap()),
            "{what}: the message names no path: {}",
            stderr_text(&out)
        );
    }
}

/// A pinned case: what, setup, pristine's arguments, systemd's tool and its arguments, the code.
type Pinned<'a> = (
    &'a str,
    &'a dyn Fn(&Path),
    &'a [&'a str],
    &'a str,
    &'a [&'a str],
    i32,
);

/// Where systemd's tool pins another code, pristine gives that code and so does the tool.
#[test]
fn codes_pinned_by_systemd_tools() {
    let presets = |t: &Path| {
        write(
            t,
            "usr/lib/systemd/system/a.service",
            "[Install]\nWantedBy=multi-user.target\n",
        );
        write(
            t,
            "usr/lib/systemd/system-preset/90-default.preset",
            "enable a.service\nbogus\n",
        );
        file_instead_of_dir(t, "etc/systemd");
    };
    let tmpfiles_both = |t: &Path| {
        write(
            t,
            "usr/lib/tmpfiles.d/a.conf",
            "bogus\nd /var/a/b 0755 - - -\n",
        );
        file_instead_of_dir(t, "var");
    };
    let tmpfiles_exists = |t: &Path| {
        write(t, "usr/lib/tmpfiles.d/a.conf", "d /var/x/y 0755 - - -\n");
        write(t, "var/x", "a file where a directory is wanted\n");
    };
    let pinned: [Pinned; 4] = [
        // systemctl preset-all reports a bad preset line and a unit it cannot link, exits 0.
        (
            "preset-all",
            &presets,
            &["preset-all"],
            "systemctl",
            &["preset-all"],
            0,
        ),
        // systemctl preset fails as a whole (1) when a named unit cannot be linked.
        (
            "preset",
            &presets,
            &["preset", "a.service"],
            "systemctl",
            &["preset", "a.service"],
            1,
        ),
        // systemd-tmpfiles: bad configuration (65) wins over a failed operation (73).
        (
            "tmpfiles",
            &tmpfiles_both,
            &["tmpfiles", "--create"],
            "systemd-tmpfiles",
            &["--create"],
            65,
        ),
        // systemd-tmpfiles: an existing non-directory where `d` wants one is logged, exit 0.
        (
            "tmpfiles",
            &tmpfiles_exists,
            &["tmpfiles", "--create"],
            "systemd-tmpfiles",
            &["--create"],
            0,
        ),
    ];
    for (what, setup, args, tool, tool_args, code) in pinned {
        case(what, setup, args, code);
        let tmp = TempDir::new("cli-exit-ref");
        let t = root(&tmp);
        setup(&t);
        let out = std::process::Command::new(reference_bin().join(tool))
            .arg(format!("--root={}", t.display()))
            .args(tool_args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(code), "{tool} {tool_args:?}");
    }
}

#[test]
fn success_exits_0() {
    for args in [
        &["provision"][..],
        &["status"],
        &["stamp"],
        &["reset", "status"],
        &["reset", "run"],
        &["sysusers"],
        &["tmpfiles", "--create"],
        &["preset-all"],
        &["lint"],
        &["help"],
    ] {
        case("clean root", none, args, 0);
    }
}
