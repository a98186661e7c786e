//! `pristine sysusers` behaviour beyond the account files: messages worded like the reference,
//! bad lines skipped (never aborting), `--dry-run`, `--cat-config`, usage errors, and the
//! deliberate test-17 difference (a group only in gshadow).

// Test code (including the shared helpers in tests/common) may unwrap.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Output;

use common::{pristine, TempDir};

const BAD_LINES: &str = r#"x foo
u
u!! foo
g! grp 5
m user
m user bad.name
m user grp gecos
r name 1-2
r - 5-3
r - 1-2 x
u a b c d e f g
u "unbalanced
u 1bad -
g grp - gecos
uu foo
u %z -
u foo %z
u foo - %z
u foo - "bad:gecos"
u foo - - rel
u foo - - /a/../b
u foo - - / /bin/
u foo 9999999999
u foo 01
u foo 65535
u foo 5:bad.g
u foo :5
g grp 01
g grp abc
u ok1 -
u ok1 - "Different"
g ok1 -
g ok1 5
m ok1 ok1
u %m -
u foo - %A
u foo -:nonexist
u foo2 1:5
u u3 -:ok1
"#;

fn run_pristine_in(root: &Path, args: &[&str]) -> Output {
    pristine()
        .arg("sysusers")
        .arg(format!("--root={}", root.display()))
        .args(args)
        .env("SOURCE_DATE_EPOCH", "0")
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .unwrap()
}

fn stderr_of(o: &Output, root: &Path) -> String {
    String::from_utf8_lossy(&o.stderr).replace(&root.display().to_string(), "ROOT")
}

#[test]
fn messages_and_result_agree_with_reference() {
    let t = TempDir::new("sysusers-msgs");
    let (a, b) = (t.path().join("ref"), t.path().join("pri"));
    for r in [&a, &b] {
        common::write(r, "usr/lib/sysusers.d/a.conf", BAD_LINES);
    }
    let oa = common::reference("systemd-sysusers")
        .arg(format!("--root={}", a.display()))
        .env("SOURCE_DATE_EPOCH", "0")
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .unwrap();
    let ob = run_pristine_in(&b, &[]);
    let (ea, eb) = (stderr_of(&oa, &a), stderr_of(&ob, &b));
    assert!(ea.lines().count() > 30, "reference said too little: {ea}");
    assert_eq!(ea, eb, "messages differ");
    for f in ["passwd", "group", "shadow", "gshadow"] {
        assert_eq!(
            std::fs::read(a.join("etc").join(f)).unwrap(),
            std::fs::read(b.join("etc").join(f)).unwrap(),
            "{f}"
        );
    }
    assert_eq!(oa.status.code(), Some(0));
    assert_eq!(ob.status.code(), Some(65), "bad lines give 65");
}

#[test]
fn bad_line_in_named_file_is_skipped_not_fatal() {
    let t = TempDir::new("sysusers-named");
    let root = t.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let conf = t.path().join("my.conf");
    std::fs::write(&conf, "u good1 -\nu bad 01\nu good2 -\n").unwrap();
    let o = run_pristine_in(&root, &[conf.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(65));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!(
            "{}:2: Failed to parse UID: '01': Invalid argument",
            conf.display()
        )),
        "{err}"
    );
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert_eq!(
        passwd,
        "good1:x:999:999::/:/usr/sbin/nologin\ngood2:x:998:998::/:/usr/sbin/nologin\n"
    );
    // --inline: same, lines are named (argument):N.
    let o = run_pristine_in(&root, &["--inline", "g gi -", "g !bad", "u good1 -"]);
    assert_eq!(o.status.code(), Some(65));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("(argument):2: '!bad' is not a valid user or group name."),
        "{err}"
    );
    let group = std::fs::read_to_string(root.join("etc/group")).unwrap();
    assert!(group.ends_with("gi:x:997:\n"), "{group}");
}

#[test]
fn dry_run_writes_nothing() {
    let t = TempDir::new("sysusers-dry");
    let root = t.path();
    common::write(root, "usr/lib/sysusers.d/a.conf", "u a -\nm a wheel\n");
    let o = run_pristine_in(root, &["--dry-run"]);
    assert_eq!(o.status.code(), Some(0));
    let err = String::from_utf8_lossy(&o.stderr);
    for w in ["group", "gshadow", "passwd", "shadow"] {
        assert!(err.contains(&format!("Would write /etc/{w}…")), "{err}");
    }
    assert!(
        err.contains("Creating user 'a' (n/a) with UID 998 and GID 998."),
        "{err}"
    );
    assert!(!root.join("etc").exists(), "dry run created /etc");
}

#[test]
fn group_only_in_gshadow_is_created_and_gshadow_kept() {
    // systemd main's test-17 (bootc#1179): 257 fails the whole run here.
    let t = TempDir::new("sysusers-t17");
    let root = t.path();
    common::write(root, "etc/gshadow", "testgroup:!::\n");
    common::write(
        root,
        "usr/lib/sysusers.d/a.conf",
        "g testgroup 333\nm u1 testgroup\n",
    );
    let o = run_pristine_in(root, &[]);
    common::assert_exit(&o, 0);
    assert_eq!(
        std::fs::read_to_string(root.join("etc/group")).unwrap(),
        "testgroup:x:333:u1\nu1:x:999:\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/gshadow")).unwrap(),
        "testgroup:!::u1\nu1:!*::\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/gshadow-")).unwrap(),
        "testgroup:!::\n"
    );
}

#[test]
fn cat_config_and_usage_errors() {
    let t = TempDir::new("sysusers-cat");
    let root = t.path();
    common::write(root, "usr/lib/sysusers.d/b.conf", "g b -\n");
    common::write(root, "etc/sysusers.d/a.conf", "g a -\n");
    let o = run_pristine_in(root, &["--cat-config"]);
    assert_eq!(o.status.code(), Some(0));
    let out = String::from_utf8_lossy(&o.stdout);
    let a = out.find("a.conf").unwrap();
    let b = out.find("b.conf").unwrap();
    assert!(
        a < b && out.contains("g a -\n") && out.contains("g b -\n"),
        "{out}"
    );
    assert!(!root.join("etc/group").exists());
    for args in [
        &["--replace=rel.conf", "-"][..],
        &["--replace=/etc/sysusers.d/x.txt", "-"],
        &["--replace=/etc/sysusers.d/x.conf"],
        &["--replace=/etc/sysusers.d/x.conf", "--cat-config", "-"],
        &["--bogus"],
    ] {
        let o = run_pristine_in(root, args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
    }
}
