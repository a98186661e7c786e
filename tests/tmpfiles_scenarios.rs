//! Scenario tests of `pristine tmpfiles`, one per area systemd's own TEST-22-TMPFILES covers
//! (see ../shared/corpus/tmpfiles-scenarios.md), in our own words. Each runs the verb first
//! with `--dry-run` (the tree must not change at all), then for real, and checks the tree.

// Fixtures build hostile trees (devices, odd times, races) directly, not through src/fs.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod tmpfiles_support;

use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use common::TempDir;
use tmpfiles_support::{diff, snapshot};

struct T {
    _dir: TempDir,
    root: PathBuf,
    conf: PathBuf,
}

fn setup(tag: &str) -> T {
    let dir = TempDir::new(tag);
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    common::write(
        &root,
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1::/:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
    );
    common::write(
        &root,
        "etc/group",
        "root:x:0:\ndaemon:x:1:\nalice:x:1000:\nusers:x:100:\n",
    );
    let conf = dir.path().join("test.conf");
    T {
        _dir: dir,
        root,
        conf,
    }
}

impl T {
    fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }
    /// Runs with `config` (a host file given on the command line): first `--dry-run`, which
    /// must leave the tree untouched and give the same exit code, then for real.
    fn run(&self, config: &str, args: &[&str]) -> (i32, String) {
        std::fs::write(&self.conf, config).unwrap();
        let before = snapshot(&self.root);
        let dry = self.raw(&[&["--dry-run"], args, &[self.conf.to_str().unwrap()]].concat());
        let after = snapshot(&self.root);
        let d = diff(&before, &after);
        assert!(
            d.is_empty(),
            "--dry-run changed the tree:\n{d}\nstderr: {}",
            dry.1
        );
        // (Exit codes may differ: like systemd, --dry-run stops before some checks.)
        self.raw(&[args, &[self.conf.to_str().unwrap()]].concat())
    }
    fn raw(&self, args: &[&str]) -> (i32, String) {
        let out = common::pristine()
            .arg("tmpfiles")
            .arg(format!("--root={}", self.root.display()))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
    fn mode(&self, rel: &str) -> u32 {
        std::fs::symlink_metadata(self.p(rel)).unwrap().mode() & 0o7777
    }
    fn owner(&self, rel: &str) -> (u32, u32) {
        let m = std::fs::symlink_metadata(self.p(rel)).unwrap();
        (m.uid(), m.gid())
    }
    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.p(rel)).unwrap()
    }
    fn exists(&self, rel: &str) -> bool {
        self.p(rel).symlink_metadata().is_ok()
    }
}

fn old(p: &Path) {
    let t = rustix::fs::Timespec {
        tv_sec: 1_500_000_000,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        p,
        &rustix::fs::Timestamps {
            last_access: t,
            last_modification: t,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

#[test]
fn s01_e_on_missing_directory_creates_nothing() {
    let t = setup("tf01");
    let (code, _) = t.run(
        "e /srv/missing 0755 - - -\ne /srv/glob* 0755 - - -\n",
        &["--create"],
    );
    assert_eq!(code, 0);
    assert!(!t.exists("srv/missing") && !t.exists("srv"));
}

#[test]
fn s02_directories_truncation_and_copies() {
    let t = setup("tf02");
    common::write(&t.root, "var/d2/old", "x");
    common::write(&t.root, "usr/share/factory/etc/cfg/a.conf", "factory a\n");
    common::write(
        &t.root,
        "usr/share/factory/etc/cfg/sub/b.conf",
        "factory b\n",
    );
    common::write(&t.root, "etc/full/keep", "mine\n");
    common::write(&t.root, "src/extra/new", "new\n");
    common::write(&t.root, "etc/merge/keep", "mine\n");
    std::fs::create_dir_all(t.p("e1/x")).unwrap();
    std::fs::create_dir_all(t.p("e1/y")).unwrap();
    let conf = "d /var/d1 0711 alice users -\nD /var/d2 0750 - - -\ne /e1/* 0700 - - -\n\
                C /etc/cfg - - - -\nC /etc/full - - - - /usr/share/factory/etc/cfg\n\
                C /etc/none - - - - /no/such/source\nC+ /etc/merge - - - - /src/extra\n";
    let (code, err) = t.run(conf, &["--create"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(t.mode("var/d1"), 0o711);
    assert_eq!(t.owner("var/d1"), (1000, 100));
    assert_eq!(t.mode("var/d2"), 0o750);
    assert!(t.exists("var/d2/old"), "--create alone must not empty D");
    assert_eq!(t.mode("e1/x"), 0o700);
    assert_eq!(t.mode("e1/y"), 0o700);
    assert_eq!(t.read("etc/cfg/a.conf"), "factory a\n");
    assert_eq!(t.read("etc/cfg/sub/b.conf"), "factory b\n");
    assert!(
        !t.exists("etc/full/a.conf"),
        "C must not copy into a non-empty directory"
    );
    assert_eq!(t.read("etc/merge/new"), "new\n", "C+ merges");
    assert_eq!(t.read("etc/merge/keep"), "mine\n");
    assert_eq!(t.read("etc/full/keep"), "mine\n");
    assert!(!t.exists("etc/none"));
    let (code, _) = t.run("D /var/d2 0750 - - -\n", &["--remove"]);
    assert_eq!(code, 0);
    assert!(
        t.exists("var/d2") && !t.exists("var/d2/old"),
        "--remove empties D"
    );
}

#[test]
fn s03_files_refuse_wrong_targets_and_unsafe_paths() {
    let t = setup("tf03");
    common::write(&t.root, "f/existing", "keep me");
    std::fs::create_dir_all(t.p("f")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        t.p("f/fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    std::os::unix::fs::symlink("existing", t.p("f/link")).unwrap();
    std::os::unix::fs::symlink("nowhere", t.p("f/dangling")).unwrap();
    let (code, _) = t.run(
        "f /f/new 0600 - - - hello\nf /f/existing 0640 - - - replaced\n",
        &["--create"],
    );
    assert_eq!(code, 0);
    assert_eq!(t.read("f/new"), "hello");
    assert_eq!(t.mode("f/new"), 0o600);
    assert_eq!(
        t.read("f/existing"),
        "keep me",
        "f never rewrites an existing file"
    );
    assert_eq!(t.mode("f/existing"), 0o640);
    for target in ["fifo", "link", "dangling"] {
        let (code, err) = t.run(&format!("f /f/{target} 0644 - - - x\n"), &["--create"]);
        assert_eq!(code, 73, "f on {target}: {err}");
    }
    assert!(!t.exists("nowhere") && !t.p("f/nowhere").exists());
    assert_eq!(t.read("f/existing"), "keep me");
    // A path through a directory owned by an unprivileged user, via a root-owned symlink.
    std::fs::create_dir_all(t.p("home/alice")).unwrap();
    std::os::unix::fs::chown(t.p("home/alice"), Some(1000), Some(1000)).unwrap();
    std::fs::create_dir_all(t.p("secret")).unwrap();
    std::os::unix::fs::symlink("/secret", t.p("home/alice/evil")).unwrap();
    let (code, err) = t.run("f /home/alice/evil/file 0644 - - - x\n", &["--create"]);
    assert_eq!(code, 73, "{err}");
    assert!(err.contains("unsafe"), "{err}");
    assert!(!t.exists("secret/file"));
}

#[test]
fn s04_fifos() {
    let t = setup("tf04");
    common::write(&t.root, "run/p2", "a file");
    let (code, _) = t.run(
        "p /run/p1 0600 - - -\np /run/p2 0600 - - -\n",
        &["--create"],
    );
    assert_eq!(code, 0);
    assert!(std::fs::symlink_metadata(t.p("run/p1"))
        .unwrap()
        .file_type()
        .is_fifo());
    assert_eq!(t.mode("run/p1"), 0o600);
    assert!(
        std::fs::symlink_metadata(t.p("run/p2")).unwrap().is_file(),
        "p keeps a non-FIFO"
    );
    let (code, _) = t.run("p+ /run/p2 0640 - - -\n", &["--create"]);
    assert_eq!(code, 0);
    assert!(std::fs::symlink_metadata(t.p("run/p2"))
        .unwrap()
        .file_type()
        .is_fifo());
    assert_eq!(t.mode("run/p2"), 0o640);
}

#[test]
fn s05_z_and_recursive_z() {
    let t = setup("tf05");
    for d in ["z1", "z2"] {
        common::write(&t.root, &format!("{d}/sub/file"), "x");
    }
    let (code, _) = t.run(
        "z /z1 0700 alice users -\nZ /z2 0750 alice users -\n",
        &["--create"],
    );
    assert_eq!(code, 0);
    assert_eq!((t.mode("z1"), t.owner("z1")), (0o700, (1000, 100)));
    assert_eq!(t.owner("z1/sub/file"), (0, 0), "z is not recursive");
    for p in ["z2", "z2/sub", "z2/sub/file"] {
        assert_eq!((t.mode(p), t.owner(p)), (0o750, (1000, 100)), "{p}");
    }
}

#[test]
fn s06_recursive_remove_under_root() {
    let t = setup("tf06");
    common::write(&t.root, "var/tmp/r1/a/b/c", "x");
    std::os::unix::fs::symlink("/etc", t.p("var/tmp/r1/a/etc-link")).unwrap();
    let (code, _) = t.run("R /var/tmp/r1 - - - -\n", &["--remove"]);
    assert_eq!(code, 0);
    assert!(!t.exists("var/tmp/r1"));
    assert!(t.exists("etc/passwd"), "symlinks are removed, not followed");
}

#[test]
fn s07_r_and_prefixes() {
    let t = setup("tf07");
    for f in ["a/one", "a/two", "b/one", "keep/x"] {
        common::write(&t.root, &format!("srv/{f}"), "x");
    }
    let conf = "r /srv/a/one\nr /srv/b/one\nr /srv/a/t*\nr /srv/keep\n";
    let (code, _) = t.run(conf, &["--remove", "--prefix=/srv/a"]);
    assert_eq!(code, 0);
    assert!(!t.exists("srv/a/one") && !t.exists("srv/a/two"));
    assert!(t.exists("srv/b/one"));
    let (code, err) = t.run(conf, &["--remove", "--exclude-prefix=/srv/b"]);
    assert_eq!(code, 73, "r of a non-empty directory fails: {err}");
    assert!(t.exists("srv/b/one") && t.exists("srv/keep/x"));
}

#[test]
fn s08_unsafe_transition_refused_under_root() {
    let t = setup("tf08");
    std::fs::create_dir_all(t.p("var/lib/daemon")).unwrap();
    std::os::unix::fs::chown(t.p("var/lib/daemon"), Some(1), Some(1)).unwrap();
    std::os::unix::fs::symlink("/etc", t.p("var/lib/daemon/conf")).unwrap();
    let (code, err) = t.run(
        "d /var/lib/daemon/conf/new 0755 - - -\nz /var/lib/daemon/conf/passwd 0666 - - -\n",
        &["--create"],
    );
    assert_eq!(code, 73, "{err}");
    assert!(!t.exists("etc/new"));
    assert_eq!(t.mode("etc/passwd"), 0o644);
    // The daemon's own files (same owner) are fine.
    common::write(&t.root, "var/lib/daemon/own", "x");
    std::os::unix::fs::chown(t.p("var/lib/daemon/own"), Some(1), Some(1)).unwrap();
    let (code, err) = t.run("z /var/lib/daemon/own 0600 - - -\n", &["--create"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(t.mode("var/lib/daemon/own"), 0o600);
}

#[test]
fn s09_special_bits_mode_reapply_numeric_ids() {
    let t = setup("tf09");
    let conf = "d /s/sgid 2775 4242 4343 -\nf /s/suid 4755 - - -\nd /s/sticky 1777 - - -\n";
    let (code, _) = t.run(conf, &["--create"]);
    assert_eq!(code, 0);
    assert_eq!(t.mode("s/sgid"), 0o2775);
    assert_eq!(t.owner("s/sgid"), (4242, 4343));
    assert_eq!(t.mode("s/suid"), 0o4755);
    assert_eq!(t.mode("s/sticky"), 0o1777);
    std::fs::set_permissions(t.p("s/suid"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, _) = t.run(conf, &["--create"]);
    assert_eq!(code, 0);
    assert_eq!(
        t.mode("s/suid"),
        0o4755,
        "mode re-applied on an existing file"
    );
}

#[test]
fn s10_argument_parsing() {
    let t = setup("tf10");
    let conf =
        "f /a/spaces - - - - two  words here\nf /a/hex - - - - a\\x20b\nf /a/nl - - - - l1\\nl2\n\
                f /a/quotes - - - - \"quoted\" 'single'\nw /a/spaces - - - - XY\n";
    let (code, _) = t.run(conf, &["--create"]);
    assert_eq!(code, 0);
    assert_eq!(
        t.read("a/spaces"),
        "XYo  words here",
        "w overwrites from the start, no truncation"
    );
    assert_eq!(t.read("a/hex"), "a b");
    assert_eq!(t.read("a/nl"), "l1\nl2");
    assert_eq!(t.read("a/quotes"), "\"quoted\" 'single'");
}

#[test]
fn s11_clean_with_exclusions() {
    let t = setup("tf11");
    for f in ["old1", "keep/old2", "skip-a/old3", "new1"] {
        common::write(&t.root, &format!("var/cache/c/{f}"), "x");
    }
    for f in ["old1", "keep/old2", "skip-a/old3"] {
        old(&t.p(&format!("var/cache/c/{f}")));
    }
    old(&t.p("var/cache/c/keep"));
    old(&t.p("var/cache/c/skip-a"));
    let conf = "d /var/cache/c 0755 - - m:10d\nx /var/cache/c/keep\nX /var/cache/c/skip-*\n";
    let (code, _) = t.run(conf, &["--clean"]);
    assert_eq!(code, 0);
    assert!(!t.exists("var/cache/c/old1"));
    assert!(t.exists("var/cache/c/new1"));
    assert!(t.exists("var/cache/c/keep/old2"), "x excludes the subtree");
    assert!(
        t.exists("var/cache/c/skip-a"),
        "X keeps the directory itself"
    );
    // X inherits the 10d age but not the m: selector; its default selectors include the
    // change time, which is recent, so the file stays (as with systemd).
    assert!(t.exists("var/cache/c/skip-a/old3"));
}

#[test]
fn s12_age_selectors() {
    let t = setup("tf12");
    common::write(&t.root, "ag/m-old", "x");
    common::write(&t.root, "ag/a-old", "x");
    // mtime old, atime new / atime old, mtime new.
    let mk = |p: &Path, a: i64, m: i64| {
        rustix::fs::utimensat(
            rustix::fs::CWD,
            p,
            &rustix::fs::Timestamps {
                last_access: rustix::fs::Timespec {
                    tv_sec: a,
                    tv_nsec: 0,
                },
                last_modification: rustix::fs::Timespec {
                    tv_sec: m,
                    tv_nsec: 0,
                },
            },
            rustix::fs::AtFlags::empty(),
        )
        .unwrap()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    mk(&t.p("ag/m-old"), now, 1_500_000_000);
    mk(&t.p("ag/a-old"), 1_500_000_000, now);
    let (code, _) = t.run("d /ag - - - m:1d\n", &["--clean"]);
    assert_eq!(code, 0);
    assert!(!t.exists("ag/m-old") && t.exists("ag/a-old"));
    let (code, _) = t.run("d /ag - - - a:1d\n", &["--clean"]);
    assert_eq!(code, 0);
    assert!(!t.exists("ag/a-old"));
    // Default selectors include the birth time: a file born just now survives.
    common::write(&t.root, "ag/born-now", "x");
    mk(&t.p("ag/born-now"), 1_500_000_000, 1_500_000_000);
    let (code, _) = t.run("d /ag - - - 1d\n", &["--clean"]);
    assert_eq!(code, 0);
    assert!(t.exists("ag/born-now"));
    let (code, err) = t.run("d /ag - - - q:1d\n", &["--clean"]);
    assert_eq!(code, 65, "{err}");
}

#[test]
fn s13_precedence_order_and_appends() {
    let t = setup("tf13");
    common::write(
        &t.root,
        "usr/lib/tmpfiles.d/a.conf",
        "f /out/a - - - - from-usr\n",
    );
    common::write(
        &t.root,
        "etc/tmpfiles.d/a.conf",
        "f /out/a - - - - from-etc\n",
    );
    common::write(
        &t.root,
        "usr/lib/tmpfiles.d/b.conf",
        "w+ /out/log - - - - 1\n",
    );
    common::write(
        &t.root,
        "run/tmpfiles.d/c.conf",
        "w+ /out/log - - - - 2\nf /out/a - - - - dup\n",
    );
    common::write(&t.root, "out/log", "");
    let (code, err) = t.raw(&["--create"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(t.read("out/a"), "from-etc");
    assert_eq!(t.read("out/log"), "12", "w+ appends in file order");
    assert!(err.contains("Duplicate line"), "{err}");
}

#[test]
fn s14_colon_prefixes_apply_only_on_creation() {
    let t = setup("tf14");
    common::write(&t.root, "c/existing", "x");
    let conf = "f /c/existing :0600 :alice :users -\nf /c/new :0600 :alice :users -\n";
    let (code, _) = t.run(conf, &["--create"]);
    assert_eq!(code, 0);
    assert_eq!(
        (t.mode("c/existing"), t.owner("c/existing")),
        (0o644, (0, 0))
    );
    assert_eq!((t.mode("c/new"), t.owner("c/new")), (0o600, (1000, 100)));
}

#[test]
fn s15_home_specifier_in_symlinks() {
    let t = setup("tf15");
    let out = common::pristine()
        .args([
            "tmpfiles",
            &format!("--root={}", t.root.display()),
            "--create",
            "-",
        ])
        .env("HOME", "/home/tester")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin
                .take()
                .unwrap()
                .write_all(b"L /l/home - - - - %h/target\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        std::fs::read_link(t.p("l/home")).unwrap(),
        Path::new("/home/tester/target")
    );
}

#[test]
fn s16_acl_conditional_execute() {
    let t = setup("tf16");
    common::write(&t.root, "acl/plain", "x");
    common::write(&t.root, "acl/exec", "x");
    std::fs::set_permissions(t.p("acl/exec"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(t.p("acl/dir")).unwrap();
    let (code, err) = t.run("a /acl/* - - - - u:alice:rwX\n", &["--create"]);
    assert_eq!(code, 0, "{err}");
    let perm_of = |rel: &str| -> u16 {
        let v = rustix::fs::getxattr(
            t.p(rel).as_path(),
            "system.posix_acl_access",
            &mut [0u8; 256][..],
        )
        .unwrap();
        let mut buf = [0u8; 256];
        let n = rustix::fs::getxattr(t.p(rel).as_path(), "system.posix_acl_access", &mut buf[..])
            .unwrap();
        assert_eq!(v, n);
        let e = buf[4..n]
            .chunks(8)
            .find(|c| {
                u16::from_le_bytes([c[0], c[1]]) == 2
                    && u32::from_le_bytes([c[4], c[5], c[6], c[7]]) == 1000
            })
            .expect("named entry for alice (uid 1000 from the root's passwd)");
        u16::from_le_bytes([e[2], e[3]])
    };
    assert_eq!(
        perm_of("acl/plain"),
        6,
        "no x for a file nobody may execute"
    );
    assert_eq!(perm_of("acl/exec"), 7);
    assert_eq!(perm_of("acl/dir"), 7);
}

#[test]
fn s17_escaped_paths_and_content() {
    let t = setup("tf17");
    let (code, _) = t.run(
        "f \"/e/with space\" - - - - a\\tb\nd /e/x\\x2dy - - - -\n",
        &["--create"],
    );
    assert_eq!(code, 0);
    assert_eq!(t.read("e/with space"), "a\tb");
    assert!(t.p("e/x-y").is_dir());
}

#[test]
fn s18_purge() {
    let t = setup("tf18");
    common::write(&t.root, "pg/d/inner", "x");
    common::write(&t.root, "pg/keep/inner", "x");
    let conf = "d$ /pg/d - - - -\nd /pg/keep - - - -\n";
    let (code, _) = t.run(conf, &["--purge"]);
    assert_eq!(code, 0);
    assert!(!t.exists("pg/d") && t.exists("pg/keep/inner"));
    let (code, _) = t.raw(&["--purge"]);
    assert_eq!(code, 1, "--purge needs an explicit configuration");
}

#[test]
fn s19_device_nodes() {
    let t = setup("tf19");
    common::write(&t.root, "dev/wrong", "x");
    let (code, _) = t.run(
        "c /dev/null2 0666 - - - 1:3\nb /dev/loop9 0660 - - - 7:9\nc+ /dev/wrong 0600 - - - 1:5\n",
        &["--create"],
    );
    assert_eq!(code, 0);
    let m = std::fs::symlink_metadata(t.p("dev/null2")).unwrap();
    assert!(m.file_type().is_char_device());
    assert_eq!(m.rdev(), rustix::fs::makedev(1, 3));
    assert!(std::fs::symlink_metadata(t.p("dev/loop9"))
        .unwrap()
        .file_type()
        .is_block_device());
    assert!(std::fs::symlink_metadata(t.p("dev/wrong"))
        .unwrap()
        .file_type()
        .is_char_device());
    assert_eq!(t.mode("dev/null2"), 0o666);
}

#[test]
fn s20_os_release_specifiers_from_the_root() {
    let t = setup("tf20");
    common::write(
        &t.root,
        "usr/lib/os-release",
        "ID=testos\nBUILD_ID=b42\nIMAGE_ID=img\nIMAGE_VERSION=7\nVARIANT_ID=var\nVERSION_ID=1.0\n",
    );
    let (code, _) = t.run(
        "f /osr - - - - %o-%B-%M-%A-%W-%w\nf /no-machine-id-%m\n",
        &["--create"],
    );
    assert_eq!(code, 0);
    assert_eq!(t.read("osr"), "testos-b42-img-7-var-1.0");
    assert!(
        std::fs::read_dir(&t.root).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("no-machine-id")),
        "a line with an unresolvable specifier is skipped"
    );
}

#[test]
fn s21_symlink_only_if_target_exists() {
    let t = setup("tf21");
    common::write(&t.root, "usr/share/x", "x");
    let (code, _) = t.run(
        "L? /l/yes - - - - /usr/share/x\nL? /l/no - - - - /usr/share/missing\n",
        &["--create"],
    );
    assert_eq!(code, 0);
    assert_eq!(
        std::fs::read_link(t.p("l/yes")).unwrap(),
        Path::new("/usr/share/x")
    );
    assert!(!t.exists("l/no"));
}

#[test]
fn invalid_lines_base64_and_runtime_dir() {
    let t = setup("tfinv");
    let conf =
        "f!! /x\nY /y\nf relative\nf \"/unbalanced\nf~ /b64 - - - - aGVsbG8=\nd %t/rt - - - -\n";
    let (code, err) = t.run(conf, &["--create"]);
    assert_eq!(code, 65, "{err}");
    assert!(
        err.contains("test.conf:1:")
            && err.contains("test.conf:2:")
            && err.contains("test.conf:3:"),
        "{err}"
    );
    assert_eq!(t.read("b64"), "hello", "good lines still run");
    assert!(t.p("run/rt").is_dir(), "%t is /run inside the root");
}

#[test]
fn credentials_lines_and_extra() {
    let t = setup("tfcred");
    let creds = t.root.parent().unwrap().join("creds");
    std::fs::create_dir_all(&creds).unwrap();
    std::fs::write(creds.join("mycred"), "secret\n").unwrap();
    std::fs::write(creds.join("tmpfiles.extra"), "d /from-extra 0700 - - -\n").unwrap();
    std::fs::write(
        &t.conf,
        "f^ /cred 0600 - - - mycred\nf^ /missing 0600 - - - nosuchcred\n",
    )
    .unwrap();
    let out = common::pristine()
        .args([
            "tmpfiles",
            &format!("--root={}", t.root.display()),
            "--create",
            t.conf.to_str().unwrap(),
        ])
        .env("CREDENTIALS_DIRECTORY", &creds)
        .output()
        .unwrap();
    common::assert_exit(&out, 0);
    assert_eq!(t.read("cred"), "secret\n");
    assert_eq!(t.mode("cred"), 0o600);
    assert!(
        !t.exists("missing"),
        "a credential that was not passed skips the line"
    );
    assert_eq!(t.mode("from-extra"), 0o700);
}

#[test]
fn clean_skips_locked_files_and_live_sockets() {
    let t = setup("tflock");
    common::write(&t.root, "cl/locked", "x");
    common::write(&t.root, "cl/free", "x");
    let locked = std::fs::File::open(t.p("cl/locked")).unwrap();
    rustix::fs::flock(
        &locked,
        rustix::fs::FlockOperation::NonBlockingLockExclusive,
    )
    .unwrap();
    let live = std::os::unix::net::UnixListener::bind(t.p("cl/live.sock")).unwrap();
    drop(std::os::unix::net::UnixListener::bind(t.p("cl/dead.sock")).unwrap());
    for f in ["locked", "free", "live.sock", "dead.sock"] {
        old(&t.p(&format!("cl/{f}")));
    }
    let (code, err) = t.run("d /cl - - - m:1d\n", &["--clean"]);
    assert_eq!(code, 0, "{err}");
    assert!(t.exists("cl/locked"), "a locked file is in use");
    assert!(t.exists("cl/live.sock"), "a listening socket is in use");
    assert!(!t.exists("cl/free") && !t.exists("cl/dead.sock"));
    drop(live);
    drop(locked);
}
