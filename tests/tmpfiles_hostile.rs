//! Hostile trees: whatever the configuration and whatever symlinks the root holds, `pristine
//! tmpfiles` never creates, changes or removes anything outside the root. Also the places
//! where systemd-tmpfiles 257 resolves paths on the host under `--root` (and so is wrong),
//! each with a test showing pristine right and, where harmless, the reference doing otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod tmpfiles_support;

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use common::{reference, TempDir};
use tmpfiles_support::{diff, snapshot};

fn ours(root: &Path, conf: &Path, args: &[&str]) -> (i32, String) {
    let out = common::pristine()
        .arg("tmpfiles")
        .arg(format!("--root={}", root.display()))
        .args(args)
        .arg(conf)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn nothing_outside_the_root_is_touched() {
    let t = TempDir::new("tf-hostile");
    let base = t.path();
    let root = base.join("root");
    let outside = base.join("outside");
    common::write(&outside, "sentinel", "outside data\n");
    common::write(&outside, "dir/file", "outside file\n");
    std::fs::create_dir_all(outside.join("emptydir")).unwrap();
    let canary = base.join("canary-abs");
    let abs_out = outside.to_str().unwrap().to_string();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    common::write(&root, "etc/passwd", "root:x:0:0::/root:/bin/sh\n");
    common::write(&root, "etc/group", "root:x:0:\n");
    // Every way out we can think of.
    let links: &[(&str, &str)] = &[
        ("rel", "../outside"),
        ("rel2", "../../../../../../../../outside"),
        ("abs", &abs_out),
        ("canary", canary.to_str().unwrap()),
        ("dotdot", ".."),
        ("sub/up", "../../outside"),
    ];
    std::fs::create_dir_all(root.join("sub")).unwrap();
    for (l, target) in links {
        std::os::unix::fs::symlink(target, root.join(l)).unwrap();
    }
    let mut conf = String::new();
    for (l, _) in links {
        for line in [
            "d /{l}/newdir 0777 - - 0",
            "D /{l}/dir 0777 - - 0",
            "f /{l}/newfile 0666 - - - x",
            "f+ /{l}/sentinel 0666 - - - truncated",
            "F /{l}/sentinel",
            "w /{l}/sentinel - - - - overwritten",
            "w+ /{l}/sentinel - - - - appended",
            "p+ /{l}/sentinel",
            "L+ /{l}/sentinel - - - - /x",
            "L+ /{l} - - - - /x",
            "c+ /{l}/sentinel - - - - 1:3",
            "C /{l}/copied - - - - /etc",
            "C+ /{l}/dir - - - - /etc",
            "C+ /{l} - - - - /etc",
            "C /{l} - - - - /etc",
            "z /{l}/sentinel 0600 1 1 -",
            "Z /{l} 0600 1 1 -",
            "Z /{l}/ 0600 1 1 -",
            "t /{l}/sentinel - - - - user.evil=1",
            "T /{l} - - - - user.evil=1",
            "a /{l}/sentinel - - - - u:1:rwx",
            "A+ /{l} - - - - u:1:rwx",
            "h /{l}/sentinel - - - - +d",
            "H /{l} - - - - +d",
            "e /{l}/* 0700 - - 0",
            "x /{l}/*",
            "r /{l}/sentinel",
            "r /{l}/emptydir",
            "R /{l}/dir",
            "R /{l}/*",
            "d= /{l}/sentinel/x 0755 - - -",
            "f= /{l}/dir/file 0644 - - -",
            "d$ /{l}/dir",
        ] {
            conf.push_str(&line.replace("{l}", l));
            conf.push('\n');
        }
    }
    conf.push_str("f /../../outside/dotfile - - - - x\nR /../outside\nD /.. - - - 0\n");
    let conf_path = base.join("hostile.conf");
    std::fs::write(&conf_path, &conf).unwrap();
    let before = snapshot(&outside);
    let base_before: Vec<_> = std::fs::read_dir(base)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    for args in [
        &["--create", "--boot"][..],
        &["--remove"][..],
        &["--clean"][..],
        &["--purge"][..],
        &["--create", "--remove", "--clean", "--boot"][..],
    ] {
        let (_, err) = ours(&root, &conf_path, args);
        if args == ["--create", "--boot"] {
            // The lines acted inside the root. A path spelled with `..` is refused, as
            // systemd refuses it, not clamped at the root.
            assert!(
                root.join("rel/dir/file").is_file(),
                "nothing was created inside the root: {:?}\n{err}",
                snapshot(&root).keys().collect::<Vec<_>>()
            );
            assert!(
                !root.join("outside/dotfile").exists()
                    && err.contains("/../../outside/dotfile': path not normalized."),
                "{err}"
            );
        }
        let d = diff(&before, &snapshot(&outside));
        assert!(d.is_empty(), "{args:?} changed the outside tree:\n{d}");
        let now: Vec<_> = std::fs::read_dir(base)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            base_before, now,
            "{args:?} created something next to the root"
        );
        assert!(!canary.exists(), "{args:?} created the canary");
        let m = std::fs::metadata(outside.join("sentinel")).unwrap();
        assert_eq!((m.uid(), m.mode() & 0o7777), (0, 0o644));
        // Re-create what the run removed inside the root so the next mode sees the links.
        for (l, target) in links {
            if root.join(l).symlink_metadata().is_err() {
                std::fs::create_dir_all(root.join(l).parent().unwrap()).unwrap();
                std::os::unix::fs::symlink(target, root.join(l)).unwrap();
            }
        }
    }
}

#[test]
fn copy_source_symlink_resolved_inside_the_root() {
    // systemd 257 stat()s the copy source on the host: an absolute symlink in the source
    // points at the host's file (here: a missing one) and the line fails.
    let t = TempDir::new("tf-csrc");
    let mut results = Vec::new();
    for name in ["ref", "ours"] {
        let root = t.path().join(name);
        common::write(&root, "srv/pristine-real-source", "root's own data\n");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::os::unix::fs::symlink("/srv/pristine-real-source", root.join("srv/link")).unwrap();
        std::os::unix::fs::symlink(
            "/srv/pristine-real-source",
            root.join("srv/link-to-dir-parent"),
        )
        .unwrap();
        common::write(
            &root,
            "etc/tmpfiles.d/c.conf",
            "C /etc/copied - - - - /srv/link\n",
        );
        assert!(!Path::new("/srv/pristine-real-source").exists());
        results.push(root);
    }
    let r = reference("systemd-tmpfiles")
        .arg(format!("--root={}", results[0].display()))
        .arg("--create")
        .output()
        .unwrap();
    assert_eq!(
        r.status.code(),
        Some(73),
        "the reference resolves the source on the host"
    );
    let out = common::pristine()
        .args([
            "tmpfiles",
            &format!("--root={}", results[1].display()),
            "--create",
        ])
        .output()
        .unwrap();
    common::assert_exit(&out, 0);
    // The top-level source symlink is copied as a symlink (as systemd does), and its target
    // is checked inside the root, so ownership and mode adjustments apply to the right file.
    assert_eq!(
        std::fs::read_link(results[1].join("etc/copied")).unwrap(),
        Path::new("/srv/pristine-real-source")
    );
}

#[test]
fn acl_names_resolved_in_the_root() {
    // systemd 252–257 resolves named ACL users with the host's NSS.
    let t = TempDir::new("tf-aclname");
    let root = t.path().join("root");
    common::write(
        &root,
        "etc/passwd",
        "root:x:0:0::/root:/bin/sh\npristineacluser:x:4321:4321::/:/bin/sh\n",
    );
    common::write(&root, "etc/group", "root:x:0:\npristineaclgroup:x:5432:\n");
    common::write(&root, "data/file", "x");
    let conf = t.path().join("a.conf");
    std::fs::write(
        &conf,
        "a /data/file - - - - u:pristineacluser:rw-,g:pristineaclgroup:r--\n",
    )
    .unwrap();
    let (code, err) = ours(&root, &conf, &["--create"]);
    assert_eq!(code, 0, "{err}");
    let mut buf = [0u8; 256];
    let n = rustix::fs::getxattr(
        root.join("data/file").as_path(),
        "system.posix_acl_access",
        &mut buf[..],
    )
    .unwrap();
    let entries: Vec<(u16, u16, u32)> = buf[4..n]
        .chunks(8)
        .map(|c| {
            (
                u16::from_le_bytes([c[0], c[1]]),
                u16::from_le_bytes([c[2], c[3]]),
                u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            )
        })
        .collect();
    assert!(entries.contains(&(2, 6, 4321)), "{entries:?}");
    assert!(entries.contains(&(8, 4, 5432)), "{entries:?}");
    assert!(
        entries.iter().any(|e| e.0 == 0x10),
        "mask entry added: {entries:?}"
    );
}

#[test]
fn directory_specifiers_are_not_prefixed_twice() {
    // systemd 257 joins the root to %t/%S/%C/%L and then joins the root again.
    let t = TempDir::new("tf-spec");
    let mut roots = Vec::new();
    for name in ["ref", "ours"] {
        let root = t.path().join(name);
        common::write(
            &root,
            "etc/tmpfiles.d/s.conf",
            "d %t/rt\nd %S/st\nd %C/ca\nd %L/lg\n",
        );
        roots.push(root);
    }
    let r = reference("systemd-tmpfiles")
        .arg(format!("--root={}", roots[0].display()))
        .arg("--create")
        .output()
        .unwrap();
    assert!(r.status.success());
    let doubled = roots[0]
        .join(roots[0].strip_prefix("/").unwrap())
        .join("run/rt");
    assert!(
        doubled.is_dir(),
        "reference behaviour changed? expected {}",
        doubled.display()
    );
    let out = common::pristine()
        .args([
            "tmpfiles",
            &format!("--root={}", roots[1].display()),
            "--create",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    for p in ["run/rt", "var/lib/st", "var/cache/ca", "var/log/lg"] {
        assert!(roots[1].join(p).is_dir(), "{p}");
    }
    assert!(!roots[1].join(roots[1].strip_prefix("/").unwrap()).exists());
}
