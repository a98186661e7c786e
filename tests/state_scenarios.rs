//! State operators end to end with the real binary on offline `--root` trees: the three worked
//! scenarios of docs/state.md (admin changes survive an emptied /etc; a /usr update moves
//! reference files and presets while the admin's choices stand; a factory reset forgets them),
//! ambiguous policy, ssh host keys, corrupt registry objects, and a quiet second boot.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{pristine, write, TempDir};

const RULES: &str = r#"
[[rule]]
path = "/etc/hostname"
kind = "parsed"

[[rule]]
path = "/etc/localtime"
kind = "parsed"

[[rule]]
path = "/etc/locale.conf"
kind = "parsed"

[[rule]]
path = "/etc/systemd/system"
kind = "parsed"

[[rule]]
path = "/etc/app"
kind = "stash"

[[rule]]
path = "/etc/motd"
kind = "reference"

[[rule]]
path = "/etc/ssh/ssh_host_*"
kind = "generate"
generator = "ssh-host-keys"
"#;

const UNIT: &str = "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n";

/// An image: os-release, zones, two units with presets (a on, b off), factory copies of
/// /etc/app and /etc/motd, a tmpfiles line copying /etc/app, the state rules, and a registry
/// outside /etc and /var (as on its own partition).
fn image(tag: &str) -> (TempDir, PathBuf) {
    let tmp = TempDir::new(tag);
    let t = tmp.path().join("root");
    write(
        &t,
        "usr/lib/os-release",
        "ID=test\nVERSION_ID=1\nIMAGE_VERSION=1.0\n",
    );
    write(&t, "usr/share/zoneinfo/UTC", "TZif");
    write(&t, "usr/share/zoneinfo/Asia/Tokyo", "TZif");
    write(
        &t,
        "usr/lib/pristine/10-base.toml",
        "[firstboot]\nhostname = \"vendor-host\"\ntimezone = \"UTC\"\n\n[state]\nregistry = \"/persist/state\"\n",
    );
    write(&t, "usr/lib/pristine/state.d/10-base.toml", RULES);
    write(&t, "usr/lib/systemd/system/a.service", UNIT);
    write(&t, "usr/lib/systemd/system/b.service", UNIT);
    write(&t, "usr/lib/systemd/system/multi-user.target", "[Unit]\n");
    write(
        &t,
        "usr/lib/systemd/system-preset/90-default.preset",
        "enable a.service\ndisable *\n",
    );
    write(&t, "usr/share/factory/etc/app/app.conf", "vendor=1\n");
    write(&t, "usr/share/factory/etc/motd", "vendor motd 1\n");
    write(&t, "usr/lib/tmpfiles.d/app.conf", "C /etc/app\n");
    std::fs::create_dir_all(t.join("etc")).unwrap();
    std::fs::create_dir_all(t.join("var")).unwrap();
    std::fs::create_dir_all(t.join("persist")).unwrap();
    (tmp, t)
}

fn run(t: &Path, args: &[&str]) -> Output {
    pristine()
        .arg(format!("--root={}", t.display()))
        .arg("--cmdline=")
        .arg("--efivars=/nonexistent")
        .env("SYSTEMD_IN_INITRD", "0")
        .env_remove("CREDENTIALS_DIRECTORY")
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: Output) -> Output {
    common::assert_exit(&out, 0);
    out
}

fn empty_etc(t: &Path) {
    std::fs::remove_dir_all(t.join("etc")).unwrap();
    std::fs::create_dir(t.join("etc")).unwrap();
}

fn read(t: &Path, rel: &str) -> String {
    std::fs::read_to_string(t.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn link(t: &Path, rel: &str) -> Option<PathBuf> {
    std::fs::read_link(t.join(rel)).ok()
}

const WANTS: &str = "etc/systemd/system/multi-user.target.wants";

/// The admin's changes of scenario (a).
fn admin_changes(t: &Path) {
    write(t, "etc/hostname", "admin-host\n");
    let _ = std::fs::remove_file(t.join("etc/localtime"));
    std::os::unix::fs::symlink("../usr/share/zoneinfo/Asia/Tokyo", t.join("etc/localtime"))
        .unwrap();
    write(t, "etc/locale.conf", "LANG=de_DE.UTF-8\n");
    std::fs::remove_file(t.join(WANTS).join("a.service")).unwrap();
    std::os::unix::fs::symlink(
        "/usr/lib/systemd/system/b.service",
        t.join(WANTS).join("b.service"),
    )
    .unwrap();
    write(t, "etc/app/app.conf", "admin=1\n");
    write(t, "etc/app/conf.d/extra.conf", "extra\n");
    std::fs::set_permissions(
        t.join("etc/app/conf.d/extra.conf"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    std::os::unix::fs::symlink("app.conf", t.join("etc/app/current")).unwrap();
    write(t, "etc/motd", "admin motd\n");
}

fn assert_admin_state(t: &Path) {
    assert_eq!(read(t, "etc/hostname"), "admin-host\n");
    assert_eq!(
        link(t, "etc/localtime"),
        Some(PathBuf::from("../usr/share/zoneinfo/Asia/Tokyo"))
    );
    assert_eq!(read(t, "etc/locale.conf"), "LANG=de_DE.UTF-8\n");
    assert!(
        !t.join(WANTS).join("a.service").exists(),
        "a.service re-enabled"
    );
    assert_eq!(
        link(t, &format!("{WANTS}/b.service")),
        Some(PathBuf::from("/usr/lib/systemd/system/b.service")),
        "b.service not enabled"
    );
    assert_eq!(read(t, "etc/app/app.conf"), "admin=1\n");
    assert_eq!(read(t, "etc/app/conf.d/extra.conf"), "extra\n");
    let m = std::fs::metadata(t.join("etc/app/conf.d/extra.conf")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o640);
    assert_eq!(link(t, "etc/app/current"), Some(PathBuf::from("app.conf")));
}

#[test]
fn scenarios_empty_etc_usr_update_factory_reset() {
    let (_tmp, t) = image("state-scen");
    ok(run(&t, &["provision"]));
    assert_eq!(read(&t, "etc/hostname"), "vendor-host\n");
    assert!(t.join(WANTS).join("a.service").is_symlink());
    assert_eq!(read(&t, "etc/app/app.conf"), "vendor=1\n");
    assert_eq!(read(&t, "etc/motd"), "vendor motd 1\n");

    // (a) The admin changes things and saves; /etc is emptied; provision brings them back.
    admin_changes(&t);
    let diff = String::from_utf8(ok(run(&t, &["state", "diff"])).stdout).unwrap();
    for want in [
        "/etc/app/app.conf",
        "/etc/hostname",
        "b.service=enabled",
        "a.service=disabled",
        "/etc/motd",
    ] {
        assert!(diff.contains(want), "diff lacks {want}:\n{diff}");
    }
    assert!(!diff.contains("/etc/app/current ") || diff.contains("added"));
    let json: serde_json::Value =
        serde_json::from_slice(&ok(run(&t, &["state", "diff", "--json"])).stdout).unwrap();
    let lines = json.as_array().unwrap();
    let conf = lines
        .iter()
        .find(|l| l["path"] == "/etc/app/app.conf")
        .expect("app.conf in the JSON diff");
    assert_eq!(
        (&conf["operator"], &conf["change"]),
        (&"stash".into(), &"modified".into())
    );
    let units = lines
        .iter()
        .find(|l| l["path"] == "/etc/systemd/system")
        .expect("unit states in the JSON diff");
    assert_eq!(
        units["values"],
        serde_json::json!(["a.service=disabled", "b.service=enabled"])
    );
    ok(run(&t, &["state", "save"]));
    let manifest = read(&t, "persist/state/generation.json");
    assert!(manifest.contains("\"version\":2"), "{manifest}");
    empty_etc(&t);
    ok(run(&t, &["provision"]));
    assert_admin_state(&t);
    // Everything else is factory: the reference file followed the vendor.
    assert_eq!(read(&t, "etc/motd"), "vendor motd 1\n");

    // (b) A /usr update: a reference file changes, a new unit with an enabling preset, the
    // vendor copy of a stashed file changes.
    write(&t, "usr/share/factory/etc/motd", "vendor motd 2\n");
    write(&t, "usr/lib/systemd/system/c.service", UNIT);
    write(
        &t,
        "usr/lib/systemd/system-preset/80-c.preset",
        "enable c.service\n",
    );
    write(&t, "usr/share/factory/etc/app/app.conf", "vendor=2\n");
    write(
        &t,
        "usr/lib/os-release",
        "ID=test\nVERSION_ID=1\nIMAGE_VERSION=1.1\n",
    );
    empty_etc(&t);
    ok(run(&t, &["provision"]));
    assert_eq!(read(&t, "etc/motd"), "vendor motd 2\n");
    assert!(
        t.join(WANTS).join("c.service").is_symlink(),
        "new unit not enabled by its preset"
    );
    assert_admin_state(&t);

    // (c) A factory reset empties the registry; the next boot is factory.
    write(&t, "var/lib/pristine/factory-reset", "");
    ok(run(&t, &["provision"]));
    // The registry holds nothing of the admin's: only the host keys generated on this boot.
    let g: serde_json::Value =
        serde_json::from_str(&read(&t, "persist/state/generation.json")).unwrap();
    let paths: Vec<&str> = g["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.iter().all(|p| p.starts_with("/etc/ssh/ssh_host_")),
        "registry not cleared by the reset: {paths:?}"
    );
    assert_eq!(read(&t, "etc/hostname"), "vendor-host\n");
    assert!(t.join(WANTS).join("a.service").is_symlink());
    assert!(!t.join(WANTS).join("b.service").exists());
    assert_eq!(read(&t, "etc/app/app.conf"), "vendor=2\n");
    assert_eq!(
        link(&t, "etc/localtime"),
        Some(PathBuf::from("../usr/share/zoneinfo/UTC"))
    );
}

#[test]
fn ambiguous_rules_exit_65_naming_both() {
    let (_tmp, t) = image("state-ambig");
    // Saved while only the vendor's rule (stash /etc/app) claims the file.
    write(&t, "etc/app/app.conf", "x\n");
    ok(run(&t, &["state", "save"]));
    write(
        &t,
        "etc/pristine/state.d/local.toml",
        "[[rule]]\npath = \"/etc/app/*.conf\"\nkind = \"stash\"\n\n[[rule]]\npath = \"/etc/app/app.*\"\nkind = \"reference\"\n",
    );
    write(&t, "etc/app/app.conf", "x\n");
    let out = run(&t, &["state", "policy", "/etc/app/app.conf"]);
    common::assert_exit(&out, 65);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("ambiguous"), "{stdout}");
    for origin in ["local.toml:1", "local.toml:5"] {
        assert!(stderr.contains(origin), "{origin} not named: {stderr}");
    }
    let out = run(&t, &["state", "save"]);
    common::assert_exit(&out, 65);
    // A boot with the saved entry now claimed twice: reported, not restored, exit 65.
    empty_etc(&t);
    write(
        &t,
        "etc/pristine/state.d/local.toml",
        "[[rule]]\npath = \"/etc/app/*.conf\"\nkind = \"stash\"\n\n[[rule]]\npath = \"/etc/app/app.*\"\nkind = \"reference\"\n",
    );
    let out = run(&t, &["state", "restore"]);
    common::assert_exit(&out, 65);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("local.toml:1") && stderr.contains("local.toml:5"),
        "{stderr}"
    );
    assert!(!t.join("etc/app/app.conf").exists());
    // Unambiguous paths still have their owner.
    let out = ok(run(&t, &["state", "policy", "/etc/hostname"]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("parsed"));
}

fn keys(t: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(t.join("etc/ssh"))
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn ssh_host_keys_are_stable_until_a_reset() {
    let (_tmp, t) = image("state-ssh");
    ok(run(&t, &["provision"]));
    let first = keys(&t);
    assert_eq!(first.len(), 6, "{:?}", first.keys());
    for name in first.keys() {
        let out = std::process::Command::new("ssh-keygen")
            .arg("-l")
            .arg("-f")
            .arg(t.join("etc/ssh").join(name))
            .output()
            .expect("ssh-keygen (openssh-client) is installed by scripts/setup");
        common::assert_exit(&out, 0);
    }
    let m = std::fs::metadata(t.join("etc/ssh/ssh_host_ed25519_key")).unwrap();
    assert_eq!(m.mode() & 0o777, 0o600);
    // Each private key's public half is its .pub file.
    for kind in ["ed25519", "ecdsa", "rsa"] {
        let derived = std::process::Command::new("ssh-keygen")
            .arg("-y")
            .arg("-f")
            .arg(t.join(format!("etc/ssh/ssh_host_{kind}_key")))
            .output()
            .unwrap();
        common::assert_exit(&derived, 0);
        let pubkey =
            String::from_utf8_lossy(&first[&format!("ssh_host_{kind}_key.pub")]).into_owned();
        let derived = String::from_utf8_lossy(&derived.stdout).into_owned();
        assert_eq!(
            derived.split_whitespace().nth(1),
            pubkey.split_whitespace().nth(1),
            "{kind}"
        );
    }
    let rsa = std::process::Command::new("ssh-keygen")
        .arg("-l")
        .arg("-f")
        .arg(t.join("etc/ssh/ssh_host_rsa_key.pub"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&rsa.stdout).starts_with("3072 "),
        "{}",
        String::from_utf8_lossy(&rsa.stdout)
    );

    empty_etc(&t);
    ok(run(&t, &["provision"]));
    assert_eq!(keys(&t), first, "keys changed across an emptied /etc");

    write(&t, "var/lib/pristine/factory-reset", "");
    ok(run(&t, &["provision"]));
    let after = keys(&t);
    assert_eq!(after.len(), 6);
    for (k, v) in &after {
        assert_ne!(Some(v), first.get(k), "{k} survived the factory reset");
    }
}

#[test]
fn corrupt_object_is_reported_and_the_rest_restored() {
    let (_tmp, t) = image("state-corrupt");
    ok(run(&t, &["provision"]));
    admin_changes(&t);
    ok(run(&t, &["state", "save"]));
    let g: serde_json::Value =
        serde_json::from_str(&read(&t, "persist/state/generation.json")).unwrap();
    let obj = g["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "/etc/app/app.conf")
        .unwrap()["object"]
        .as_str()
        .unwrap()
        .to_string();
    // Small objects live in the generation's pack: flip one byte of this one there.
    let pack = &g["pack"];
    let off = pack["index"][&obj][0].as_u64().unwrap() as usize;
    let p = t.join(format!(
        "persist/state/packs/{}.pack",
        pack["name"].as_str().unwrap()
    ));
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[off] ^= 0x20;
    std::fs::write(&p, bytes).unwrap();
    empty_etc(&t);
    let out = run(&t, &["state", "restore"]);
    common::assert_exit(&out, 73);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/etc/app/app.conf") && stderr.contains("corrupt"),
        "{stderr}"
    );
    assert!(!t.join("etc/app/app.conf").exists());
    assert_eq!(read(&t, "etc/app/conf.d/extra.conf"), "extra\n");
    assert_eq!(read(&t, "etc/hostname"), "admin-host\n");
}

/// Every path below `dir` with its inode and change time.
fn inodes(dir: &Path) -> BTreeMap<PathBuf, (u64, i64, i64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let m = std::fs::symlink_metadata(&d).unwrap();
        out.insert(d.clone(), (m.ino(), m.ctime(), m.ctime_nsec()));
        if m.is_dir() {
            for e in std::fs::read_dir(&d).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
    }
    out
}

#[test]
fn second_boot_with_nothing_changed_writes_nothing() {
    let (_tmp, t) = image("state-quiet");
    ok(run(&t, &["provision"]));
    admin_changes(&t);
    ok(run(&t, &["state", "save"]));
    empty_etc(&t);
    ok(run(&t, &["provision"]));
    let etc = inodes(&t.join("etc"));
    let reg = inodes(&t.join("persist"));
    ok(run(&t, &["provision"]));
    ok(run(&t, &["state", "save"]));
    assert_eq!(inodes(&t.join("etc")), etc, "/etc written on a quiet boot");
    assert_eq!(
        inodes(&t.join("persist")),
        reg,
        "registry written by an unchanged save"
    );
}

#[test]
fn env_layout_directory_xattrs_and_unmask_survive() {
    let (_tmp, t) = image("state-gaps");
    // The vendor's locale.conf (comments, order) and a vendor mask shipped in /etc.
    write(
        &t,
        "usr/share/factory/etc/locale.conf",
        "# Vendor locale\nLANG=C.UTF-8\n\n# time format\nLC_TIME=C\nLC_PAPER=C\n",
    );
    write(
        &t,
        "usr/lib/tmpfiles.d/vendor.conf",
        "C /etc/locale.conf\nL /etc/systemd/system/m.service - - - - /dev/null\n",
    );
    write(&t, "usr/lib/systemd/system/m.service", UNIT);
    std::fs::create_dir_all(t.join("usr/share/factory/etc/systemd/system")).unwrap();
    std::os::unix::fs::symlink(
        "/dev/null",
        t.join("usr/share/factory/etc/systemd/system/m.service"),
    )
    .unwrap();
    ok(run(&t, &["provision"]));
    assert!(link(&t, "etc/systemd/system/m.service") == Some(PathBuf::from("/dev/null")));
    // The admin: changes LANG, drops LC_PAPER, adds LC_MONETARY; tags a stashed directory;
    // unmasks m.service.
    write(
        &t,
        "etc/locale.conf",
        "LANG=de_DE.UTF-8\nLC_TIME=C\nLC_MONETARY=de_DE.UTF-8\n",
    );
    std::fs::create_dir_all(t.join("etc/app/conf.d")).unwrap();
    let out = std::process::Command::new("setfattr")
        .args(["-n", "user.origin", "-v", "admin"])
        .arg(t.join("etc/app/conf.d"))
        .output()
        .expect("setfattr (attr) is installed by scripts/setup");
    common::assert_exit(&out, 0);
    std::fs::remove_file(t.join("etc/systemd/system/m.service")).unwrap();
    let diff = ok(run(&t, &["state", "diff"]));
    assert!(
        String::from_utf8_lossy(&diff.stdout).contains("m.service=unmasked"),
        "{}",
        String::from_utf8_lossy(&diff.stdout)
    );
    ok(run(&t, &["state", "save"]));
    empty_etc(&t);
    ok(run(&t, &["provision"]));
    assert_eq!(
        read(&t, "etc/locale.conf"),
        "# Vendor locale\nLANG=de_DE.UTF-8\n\n# time format\nLC_TIME=C\nLC_MONETARY=de_DE.UTF-8\n"
    );
    let out = std::process::Command::new("getfattr")
        .args(["--only-values", "-n", "user.origin"])
        .arg(t.join("etc/app/conf.d"))
        .output()
        .unwrap();
    common::assert_exit(&out, 0);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "admin");
    assert!(
        link(&t, "etc/systemd/system/m.service").is_none(),
        "the admin's unmask was lost"
    );
}
