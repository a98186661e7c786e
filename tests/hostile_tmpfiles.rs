//! Hostile tmpfiles.d input and hostile trees (issue 12's tmpfiles classes): each test builds
//! its tree from scratch, runs the real binary and, where systemd-tmpfiles 257 has the same
//! behaviour, the reference on an identical copy, comparing exit codes, messages and trees.

// Fixtures build hostile trees (devices, odd times, races) directly, not through src/fs.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod tmpfiles_support;

use std::path::Path;

use common::{reference, TempDir};
use tmpfiles_support::{diff, snapshot};

/// The result of one run: exit code and standard error.
struct Run {
    code: i32,
    stderr: String,
}

fn ours(root: &Path, args: &[&str]) -> Run {
    let (code, stderr) = tmpfiles_support::run_ours(root, args);
    Run { code, stderr }
}

fn theirs(root: &Path, args: &[&str]) -> Run {
    let out = reference("systemd-tmpfiles")
        .arg(format!("--root={}", root.display()))
        .args(args)
        .env("SYSTEMD_LOG_LEVEL", "err")
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Two identical roots (`a` for pristine, `b` for the reference) holding `etc/tmpfiles.d/x.conf`
/// with `conf` (bytes: NUL and CR are the point), after `setup` ran on each.
fn twin_roots(
    t: &TempDir,
    conf: &[u8],
    setup: impl Fn(&Path),
) -> (std::path::PathBuf, std::path::PathBuf) {
    let mut roots = Vec::new();
    for n in ["a", "b"] {
        let r = t.path().join(n);
        std::fs::create_dir_all(r.join("etc/tmpfiles.d")).unwrap();
        std::fs::write(r.join("etc/tmpfiles.d/x.conf"), conf).unwrap();
        setup(&r);
        roots.push(r);
    }
    (roots.remove(0), roots.remove(0))
}

/// Runs both tools with `args` and asserts the same exit code, the same messages (with the
/// root's host path made neutral) and the same resulting tree. Returns pristine's run.
fn agree(conf: &[u8], setup: impl Fn(&Path), args: &[&str]) -> Run {
    agree_but_messages(conf, setup, args, true).0
}

/// [`agree`], comparing messages only when `messages`; also returns the scratch directory
/// (pristine's root is its `a`).
fn agree_but_messages(
    conf: &[u8],
    setup: impl Fn(&Path),
    args: &[&str],
    messages: bool,
) -> (Run, TempDir) {
    let t = TempDir::new("hostile-tmpfiles");
    let (a, b) = twin_roots(&t, conf, setup);
    let o = ours(&a, args);
    let r = theirs(&b, args);
    let neutral = |s: &str, root: &Path| s.replace(root.to_str().unwrap(), "ROOT");
    assert_eq!(
        o.code, r.code,
        "exit codes\nours: {}\nreference: {}",
        o.stderr, r.stderr
    );
    if messages {
        let mut ol: Vec<String> = neutral(&o.stderr, &a).lines().map(String::from).collect();
        let mut rl: Vec<String> = neutral(&r.stderr, &b).lines().map(String::from).collect();
        ol.sort();
        rl.sort();
        assert_eq!(ol, rl, "messages");
    }
    let d = diff(&snapshot(&a), &snapshot(&b));
    assert!(d.is_empty(), "trees differ (ours, reference):\n{d}");
    (o, t)
}

#[test]
fn carriage_return_ends_a_line() {
    agree(
        b"d /one 0755 - - -\rd /two 0755 - - -\r\nd /three\n\rd /four",
        |_| {},
        &["--create"],
    );
}

#[test]
fn nul_ends_a_line_and_the_rest_is_a_bad_line() {
    let o = agree(
        b"d /one 0755 - - -\0garbage here\nd /two\n",
        |_| {},
        &["--create"],
    );
    assert_eq!(o.code, 65);
    assert!(o.stderr.contains("x.conf:2: "), "{}", o.stderr);
}

#[test]
fn over_long_line_ends_the_file_keeping_the_lines_before() {
    // 1 MiB - 1 bytes is still a line; 1 MiB is not.
    let fits = [&b"d /one\n#"[..], &vec![b'x'; (1 << 20) - 2], b"\nd /two\n"].concat();
    agree(&fits, |_| {}, &["--create"]);
    let long = [&b"d /one\n#"[..], &vec![b'x'; 1 << 20], b"\nd /two\n"].concat();
    // systemd says "Failed to read '…': No buffer space available"; pristine also names the line.
    let (o, t) = agree_but_messages(&long, |_| {}, &["--create"], false);
    let a = t.path().join("a");
    assert_eq!(o.code, 0);
    assert!(a.join("one").is_dir() && !a.join("two").exists());
    assert_too_long(&o, "x.conf:2: ");
}

/// The run reported an over-long line at `at` (`file:line: `).
fn assert_too_long(o: &Run, at: &str) {
    assert!(
        o.stderr.contains(at) && o.stderr.contains("No buffer space available"),
        "{}",
        o.stderr
    );
}

#[test]
fn streamed_config_memory_is_bounded_by_the_line_cap() {
    // A 16 MiB sparse file, then an 8 MiB line: read in bounded pieces, refused at 1 MiB.
    let t = TempDir::new("hostile-tmpfiles-huge");
    let r = t.path().join("r");
    std::fs::create_dir_all(r.join("etc/tmpfiles.d")).unwrap();
    let f = std::fs::File::create(r.join("etc/tmpfiles.d/x.conf")).unwrap();
    f.set_len(16 << 20).unwrap();
    // Sparse zeros are NUL line ends: 16 Mi empty lines, nothing to do.
    let o = ours(&r, &["--create"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let one_line = r.join("etc/tmpfiles.d/y.conf");
    std::fs::write(&one_line, vec![b'#'; 8 << 20]).unwrap();
    let o = ours(&r, &["--create"]);
    assert_eq!(o.code, 0);
    assert_too_long(&o, "y.conf:1: ");
}

#[test]
fn out_of_range_ages_are_invalid() {
    let conf = b"d /a1 - - - 584542y\nd /a2 - - - 18446744073710s\nd /a3 - - - 584541y\n\
d /a4 - - - 18446744073709s\nd /a5 - - - 213503982d\nd /a6 - - - 1ns\nd /a7 - - - 12.34s.56\n\
d /a8 - - - 5m6\nd /a9 - - - 3.\n";
    let o = agree(conf, |_| {}, &["--create"]);
    assert_eq!(o.code, 65);
    assert!(
        o.stderr.contains("x.conf:1: Invalid age '584542y'."),
        "{}",
        o.stderr
    );
}

#[test]
fn paths_with_dotdot_are_refused_not_clamped() {
    let setup = |r: &Path| {
        std::fs::create_dir_all(r.join("var")).unwrap();
        std::fs::write(r.join("etc/f"), "vendor\n").unwrap();
    };
    for (line, code) in [
        ("f /var/../../x", 73),
        ("f /var/../y", 73),
        ("f /new/../y", 73),
        ("d /var/../y", 73),
        ("L /var/../y - - - - /x", 73),
        ("C /var/../y - - - - /etc", 73),
        ("p /var/../y", 73),
        ("w /var/../etc/f - - - - x", 73),
        ("z /var/../etc/f 0600", 73),
        ("m /var/../etc/f 0600", 73),
        // Recursive adjustments resolve the path as systemd does.
        ("Z /var/../etc 0700", 0),
    ] {
        let o = agree(format!("{line}\n").as_bytes(), setup, &["--create"]);
        assert_eq!(o.code, code, "{line}: {}", o.stderr);
    }
    // With `-` the refusal is tolerated (systemd says so only at debug level).
    let t = TempDir::new("hostile-tmpfiles-dotdot");
    let (a, _) = twin_roots(&t, b"f- /var/../y\n", setup);
    let o = ours(&a, &["--create"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stderr.contains("path not normalized, ignoring.") && !a.join("y").exists());
}

#[test]
fn writes_never_follow_a_link_from_var_into_usr() {
    // The issue's case: an `L` line makes /var/fz/c point at a vendor file, a later glob line
    // would append to it and change its owner and mode. systemd-tmpfiles 257 under --root leaves
    // the vendor file as it is (it resolves the absolute link on the host and finds nothing).
    let setup = |r: &Path| {
        common::write(r, "usr/share/fzsrc/file", "vendor\n");
        common::write(r, "usr/share/fzsrc/dir/f2", "vendor 2\n");
        std::fs::create_dir_all(r.join("var/fz")).unwrap();
    };
    let conf = b"L /var/fz/c - - - - /usr/share/fzsrc/file\n\
L /var/fz/r - - - - ../../usr/share/fzsrc/dir/f2\n\
w+ /var/fz/c 0600 1 1 - text\n\
z /var/fz/* 0600 1 1 -\n";
    let t = TempDir::new("hostile-tmpfiles-usr");
    let (a, b) = twin_roots(&t, conf, setup);
    let before = snapshot(&a.join("usr"));
    let o = ours(&a, &["--create"]);
    let r = theirs(&b, &["--create"]);
    assert_eq!((o.code, r.code), (0, 0), "{}", o.stderr);
    let d = diff(&before, &snapshot(&a.join("usr")));
    assert!(d.is_empty(), "/usr changed:\n{d}");
    assert!(diff(&snapshot(&a), &snapshot(&b)).is_empty());
    assert!(
        o.stderr.contains("leads into /usr through a symlink"),
        "{}",
        o.stderr
    );
    // The same through a relative link (systemd follows that one inside the root) and a
    // glob; a line naming the vendor file itself is obeyed.
    for (line, changed) in [
        ("w+ /var/fz/* - - - - text\n", false),
        ("w+ /usr/share/fzsrc/dir/f2 - - - - text\n", true),
    ] {
        let t = TempDir::new("hostile-tmpfiles-usr-rel");
        let (a, _) = twin_roots(&t, &[&conf[..], line.as_bytes()].concat(), setup);
        let o = ours(&a, &["--create"]);
        let f2 = std::fs::read_to_string(a.join("usr/share/fzsrc/dir/f2")).unwrap();
        assert_eq!(f2 != "vendor 2\n", changed, "{line}: {}", o.stderr);
        assert_eq!(
            std::fs::read_to_string(a.join("usr/share/fzsrc/file")).unwrap(),
            "vendor\n"
        );
    }
}

#[test]
fn existing_hard_links_are_never_adjusted() {
    use std::os::unix::fs::MetadataExt as _;
    // A file "outside" (here: /secret, which no line names) hard-linked into /var/tmp by
    // someone who could write there. systemd with fs.protected_hardlinks=1 adjusts it;
    // pristine refuses and says so (docs/tmpfiles.md).
    let t = TempDir::new("hostile-tmpfiles-nlink");
    let r = t.path().join("r");
    std::fs::create_dir_all(r.join("etc/tmpfiles.d")).unwrap();
    common::write(&r, "secret", "secret\n");
    std::fs::create_dir_all(r.join("var/tmp")).unwrap();
    std::fs::hard_link(r.join("secret"), r.join("var/tmp/x")).unwrap();
    std::fs::hard_link(r.join("secret"), r.join("var/tmp/y")).unwrap();
    let before = std::fs::metadata(r.join("secret")).unwrap();
    for line in [
        "z /var/tmp/x 0666 1 1 -",
        "w /var/tmp/x - - - - overwritten",
        "w+ /var/tmp/* - - - - appended",
        "f /var/tmp/x 0666 1 1",
        "f+ /var/tmp/y 0644 - - - truncated",
        "m /var/tmp/x 0600",
        "t /var/tmp/x - - - - user.a=1",
        // Last: the directory itself is adjusted (and so owned by uid 1 afterwards).
        "Z /var/tmp 0777 1 1 -",
    ] {
        std::fs::write(r.join("etc/tmpfiles.d/x.conf"), format!("{line}\n")).unwrap();
        let o = ours(&r, &["--create"]);
        assert_eq!(o.code, 73, "{line}: {}", o.stderr);
        assert!(o.stderr.contains("hard links"), "{line}: {}", o.stderr);
        let now = std::fs::metadata(r.join("secret")).unwrap();
        assert_eq!(
            std::fs::read_to_string(r.join("secret")).unwrap(),
            "secret\n",
            "{line}"
        );
        assert_eq!(
            (now.mode(), now.uid(), now.gid()),
            (before.mode(), before.uid(), before.gid()),
            "{line}"
        );
    }
    // A file with one link is adjusted as always.
    std::fs::remove_file(r.join("var/tmp/y")).unwrap();
    std::fs::remove_file(r.join("secret")).unwrap();
    std::os::unix::fs::chown(r.join("var/tmp"), Some(0), Some(0)).unwrap();
    std::fs::write(r.join("etc/tmpfiles.d/x.conf"), "z /var/tmp/x 0640 1 1 -\n").unwrap();
    let o = ours(&r, &["--create"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let m = std::fs::metadata(r.join("var/tmp/x")).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid()), (0o640, 1));
}

/// Makes `dir/d/d/…` `depth` levels deep, one descriptor at a time (paths that long do not
/// exist).
fn deep_chain(dir: &Path, depth: usize) {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut fd = rustix::fs::open(dir, flags, Mode::empty()).unwrap();
    for _ in 0..depth {
        rustix::fs::mkdirat(&fd, "d", Mode::from_raw_mode(0o755)).unwrap();
        fd = rustix::fs::openat(&fd, "d", flags, Mode::empty()).unwrap();
    }
    rustix::fs::openat(
        &fd,
        "leaf",
        OFlags::CREATE | OFlags::WRONLY,
        Mode::from_raw_mode(0o644),
    )
    .unwrap();
}

/// How deep the `d/d/…` chain below `dir` goes (whether its end holds `leaf`), then removes
/// it bottom-up through `..`, so the scratch directory can be dropped.
fn measure_and_remove_chain(dir: &Path) -> (usize, bool) {
    use rustix::fs::{AtFlags, Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut fd = rustix::fs::open(dir, flags, Mode::empty()).unwrap();
    let mut depth = 0;
    while let Ok(next) = rustix::fs::openat(&fd, "d", flags, Mode::empty()) {
        fd = next;
        depth += 1;
    }
    let leaf = rustix::fs::unlinkat(&fd, "leaf", AtFlags::empty()).is_ok();
    for _ in 0..depth {
        let up = rustix::fs::openat(&fd, "..", flags, Mode::empty()).unwrap();
        rustix::fs::unlinkat(&up, "d", AtFlags::REMOVEDIR).unwrap();
        fd = up;
    }
    (depth, leaf)
}

#[test]
fn a_very_deep_copy_source_is_copied_without_recursion() {
    // The walk's cost must not depend on the depth: 1 500 levels copied with a 256 KiB stack
    // and 64 descriptors (a recursive copy holding two descriptors per level fails at ~30
    // levels here, and overflows a default stack at depth 30 000). Deeper trees only cost
    // time: this machine's ext4 takes ~5 ms per rmdir of a deep chain.
    const DEPTH: usize = 1_500;
    let t = TempDir::new("hostile-tmpfiles-deep");
    let r = t.path().join("r");
    std::fs::create_dir_all(r.join("etc/tmpfiles.d")).unwrap();
    std::fs::create_dir_all(r.join("srv/deep")).unwrap();
    deep_chain(&r.join("srv/deep"), DEPTH);
    std::fs::write(
        r.join("etc/tmpfiles.d/x.conf"),
        "C /var/copy - - - - /srv/deep\n",
    )
    .unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -s 256 && ulimit -n 64 && exec \"$0\" \"$@\"")
        .arg(common::pristine().get_program())
        .arg("tmpfiles")
        .arg(format!("--root={}", r.display()))
        .arg("--create")
        .output()
        .unwrap();
    let copied = measure_and_remove_chain(&r.join("var/copy"));
    let source = measure_and_remove_chain(&r.join("srv/deep"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("Failed to copy"), "{err}");
    assert_eq!(copied, (DEPTH, true), "{err}");
    assert_eq!(source, (DEPTH, true));
}
