//! Hostile trees: symlinks planted at every level (absolute, `../`, to outside folders), FIFOs,
//! a hardlink to an outside file, a mount point inside the tree. Every operation of the root
//! handle, with both resolvers, must leave everything outside the root untouched and never read
//! outside it.

// Fixtures build hostile trees (devices, odd times, races) directly, not through src/fs.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::TempDir;
use pristine::fs::{Resolver, Root, WriteOptions};

/// Everything observable about a tree, except link counts and ctimes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    fn walk(base: &Path, p: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let md = std::fs::symlink_metadata(p).unwrap();
        let rel = p.strip_prefix(base).unwrap().to_path_buf();
        let ft = md.file_type();
        let desc = if ft.is_symlink() {
            format!("link {}", std::fs::read_link(p).unwrap().display())
        } else if ft.is_dir() {
            format!("dir {:o} {}", md.permissions().mode(), md.mtime())
        } else if ft.is_file() {
            format!(
                "file {:o} {} {:?}",
                md.permissions().mode(),
                md.mtime(),
                std::fs::read(p).unwrap()
            )
        } else {
            format!("other {:o}", md.mode())
        };
        out.insert(rel, desc);
        if ft.is_dir() {
            let mut names: Vec<_> = std::fs::read_dir(p)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            names.sort();
            for n in names {
                walk(base, &n, out);
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

struct Fixture {
    _tmp: TempDir,
    root: PathBuf,
    outside: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = TempDir::new("hostile");
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(outside.join("odir")).unwrap();
    std::fs::write(outside.join("secret"), "outside secret").unwrap();
    std::fs::write(outside.join("odir/file"), "outside file").unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("a/b/c")).unwrap();
    std::fs::write(root.join("etc/passwd"), "inside passwd").unwrap();
    // Symlinks planted at every level.
    let sym = |target: &Path, at: &str| std::os::unix::fs::symlink(target, root.join(at)).unwrap();
    sym(Path::new("/"), "abs-root");
    sym(&outside, "out-abs"); // absolute host path of the outside folder
    sym(Path::new("../../../../../../.."), "up");
    sym(Path::new("../../../../../../../outside"), "a/up-out");
    sym(&outside.join("secret"), "a/b/secret-abs");
    sym(Path::new("../../../outside/secret"), "a/b/c/secret-rel");
    sym(Path::new("/a/b"), "a/b/c/loop-back");
    sym(Path::new("self"), "self");
    // A FIFO and a hardlink to an outside file.
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("etc/fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    std::fs::hard_link(outside.join("secret"), root.join("etc/hardlink")).unwrap();
    Fixture {
        _tmp: tmp,
        root,
        outside,
    }
}

fn each_resolver(f: impl Fn(&Root, &Fixture)) {
    for resolver in [Resolver::Openat2, Resolver::Manual] {
        let fx = fixture();
        let before = snapshot(&fx.outside);
        let root = Root::open_with(&fx.root, resolver).unwrap();
        f(&root, &fx);
        assert_eq!(
            before,
            snapshot(&fx.outside),
            "outside changed with {resolver:?}"
        );
    }
}

#[test]
fn reads_never_leave_the_root() {
    each_resolver(|root, fx| {
        let outside = fx.outside.to_str().unwrap();
        for p in [
            "/out-abs/secret".to_string(),
            "/up/outside/secret".to_string(),
            "/a/up-out/secret".to_string(),
            "/a/b/secret-abs".to_string(),
            "/a/b/c/secret-rel".to_string(),
            format!("/abs-root{outside}/secret"),
            format!("../../..{outside}/secret"),
        ] {
            let r = root.read(Path::new(&p));
            assert!(r.is_err(), "{p} was readable: {r:?}");
        }
        // Absolute and relative escapes resolve inside the root.
        assert_eq!(
            root.read(Path::new("/up/etc/passwd")).unwrap(),
            b"inside passwd"
        );
        assert_eq!(
            root.read(Path::new("/abs-root/etc/passwd")).unwrap(),
            b"inside passwd"
        );
        assert_eq!(
            root.read(Path::new("/a/b/c/loop-back/c/../../../etc/passwd"))
                .unwrap(),
            b"inside passwd"
        );
        assert_eq!(
            root.read(Path::new("../../etc/passwd")).unwrap(),
            b"inside passwd"
        );
        // A symlink loop fails, a FIFO is refused without blocking.
        assert!(root.read(Path::new("/self")).is_err());
        let e = root.read(Path::new("/etc/fifo")).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        assert!(root.read_dir(Path::new("/out-abs")).is_err());
    });
}

#[test]
fn writes_never_leave_the_root() {
    each_resolver(|root, fx| {
        let opts = WriteOptions::default();
        let outside = fx.outside.to_str().unwrap().to_string();
        // Writes through escaping symlinks land inside the root or fail.
        for p in ["/up/new-file", "/abs-root/new-file2", "/a/up-out/x"] {
            let _ = root.write_atomic(Path::new(p), b"data", &opts);
        }
        assert_eq!(std::fs::read(fx.root.join("new-file")).unwrap(), b"data");
        assert_eq!(std::fs::read(fx.root.join("new-file2")).unwrap(), b"data");
        // mkdir_all through an absolute host path creates it inside the root.
        root.mkdir_all(Path::new(&format!("/abs-root{outside}/made")), 0o755)
            .unwrap();
        assert!(fx
            .root
            .join(outside.trim_start_matches('/'))
            .join("made")
            .is_dir());
        // Replacing a symlink that points outside replaces the link, not the target.
        root.write_atomic(Path::new("/a/b/secret-abs"), b"replaced", &opts)
            .unwrap();
        assert!(std::fs::symlink_metadata(fx.root.join("a/b/secret-abs"))
            .unwrap()
            .is_file());
        // Writing over the hardlink replaces the name, never the shared inode.
        root.write_atomic(Path::new("/etc/hardlink"), b"new", &opts)
            .unwrap();
        // Symlink creation, rename, unlink of the last component never follow it.
        root.symlink(Path::new("/etc/passwd"), Path::new("/a/new-link"))
            .unwrap();
        root.rename(Path::new("/out-abs"), Path::new("/renamed-out"))
            .unwrap();
        root.unlink(Path::new("/renamed-out")).unwrap();
        root.unlink(Path::new("/a/b/c/secret-rel")).unwrap();
        root.set_times(Path::new("/a/up-out"), (1, 0), (1, 0))
            .unwrap();
        // Recursive removal of everything inside the root.
        root.remove_contents(Path::new("/")).unwrap();
        assert_eq!(std::fs::read_dir(&fx.root).unwrap().count(), 0);
    });
}

#[test]
fn remove_tree_does_not_follow_or_cross() {
    each_resolver(|root, fx| {
        // A directory symlink inside the tree pointing outside: removing the tree removes the link.
        std::os::unix::fs::symlink(&fx.outside, fx.root.join("a/b/c/to-outside")).unwrap();
        assert!(root.remove_tree(Path::new("/a")).unwrap());
        assert!(!fx.root.join("a").exists());
        assert!(!root.remove_tree(Path::new("/a")).unwrap());
        // Removing a symlink given as the path removes the symlink only.
        assert!(root.remove_tree(Path::new("/out-abs")).unwrap());
    });
}

#[test]
fn remove_tree_stops_at_mount_points() {
    let fx = fixture();
    let mnt = fx.root.join("var/mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let st = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(st.success(), "mount tmpfs (tests run as root)");
    std::fs::write(mnt.join("kept"), "on another mount").unwrap();
    std::fs::write(fx.root.join("var/gone"), "x").unwrap();
    let root = Root::open(&fx.root).unwrap();
    let r = root.remove_tree(Path::new("/var"));
    let kept = std::fs::read(mnt.join("kept"));
    let _ = std::process::Command::new("umount").arg(&mnt).status();
    assert!(r.is_err(), "removal across a mount point must report it");
    assert_eq!(kept.unwrap(), b"on another mount");
    assert!(
        !fx.root.join("var/gone").exists(),
        "the rest of the tree is removed"
    );
}

#[test]
fn atomic_write_sets_mode_owner_times() {
    let fx = fixture();
    let root = Root::open(&fx.root).unwrap();
    let opts = WriteOptions {
        mode: Some(0o600),
        owner: Some((12, 34)),
        times: Some(((5, 6), (7, 8))),
    };
    root.write_atomic(Path::new("/etc/new"), b"hello", &opts)
        .unwrap();
    let md = std::fs::metadata(fx.root.join("etc/new")).unwrap();
    assert_eq!(md.permissions().mode() & 0o7777, 0o600);
    assert_eq!((md.uid(), md.gid()), (12, 34));
    assert_eq!((md.mtime(), md.mtime_nsec()), (7, 8));
    assert_eq!((md.atime(), md.atime_nsec()), (5, 6));
    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(fx.root.join("etc"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        names.iter().all(|n| !n.to_string_lossy().starts_with(".#")),
        "{names:?}"
    );
}
