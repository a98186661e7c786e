//! State operators crash safety: `state save` and the restore are aborted before each of their
//! mutating filesystem operations in turn (`PRISTINE_FAULT_AFTER=N`); after every abort the
//! registry and `/etc` are exactly the old or the new state, and a rerun gives the new one.
//! Needs `--features fault-injection` (scripts/test passes it).

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{pristine, write, TempDir};

/// Every path below `dir`: type, mode, owner and contents or link target.
fn tree(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let rel = p.strip_prefix(dir).unwrap().to_path_buf();
        let desc = if md.file_type().is_symlink() {
            format!("-> {}", std::fs::read_link(&p).unwrap().display())
        } else if md.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
            format!("dir {:o} {}", md.permissions().mode() & 0o7777, md.uid())
        } else {
            format!(
                "file {:o} {} {}",
                md.permissions().mode() & 0o7777,
                md.uid(),
                String::from_utf8_lossy(&std::fs::read(&p).unwrap())
            )
        };
        out.insert(rel, desc);
    }
    out
}

const RULES: &str = r#"
[[rule]]
path = "/etc/hostname"
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

fn image(t: &Path) {
    write(t, "usr/lib/os-release", "ID=test\n");
    write(
        t,
        "usr/lib/pristine/10.toml",
        "[state]\nregistry = \"/persist/state\"\n",
    );
    write(t, "usr/lib/pristine/state.d/10.toml", RULES);
    write(t, "usr/share/factory/etc/motd", "vendor\n");
    write(t, "etc/hostname", "box\n");
    write(t, "etc/app/a.conf", "a=1\n");
    write(t, "etc/app/sub/b.conf", "b=1\n");
    std::os::unix::fs::symlink("a.conf", t.join("etc/app/link")).unwrap();
    std::fs::create_dir_all(t.join("persist")).unwrap();
}

fn run(t: &Path, args: &[&str], fault: Option<u64>) -> Output {
    let mut c = pristine();
    c.arg(format!("--root={}", t.display()))
        .arg("--cmdline=")
        .arg("--efivars=/nonexistent")
        .env("SYSTEMD_IN_INITRD", "0")
        .args(args);
    match fault {
        Some(n) => c.env("PRISTINE_FAULT_AFTER", n.to_string()),
        None => c.env_remove("PRISTINE_FAULT_AFTER"),
    };
    c.output().unwrap()
}

fn replace_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

/// Aborts `args` at every mutating operation; `reset` puts the tree back to the old state
/// before each attempt; `check` sees the tree after each abort. Returns the number of aborts.
fn every_abort(t: &Path, args: &[&str], reset: &dyn Fn(), check: &dyn Fn(u64)) -> u64 {
    for n in 0..1000 {
        reset();
        let out = run(t, args, Some(n));
        if out.status.success() {
            return n;
        }
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("fault injection"),
            "run {n} failed without an injected fault: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        check(n);
    }
    panic!("never finished");
}

#[test]
fn save_is_old_or_new_after_every_abort() {
    let tmp = TempDir::new("state-crash-save");
    let t = tmp.path().join("root");
    image(&t);
    common::assert_exit(&run(&t, &["state", "restore"], None), 0); // keys, recorded
    common::assert_exit(&run(&t, &["state", "save"], None), 0);
    let old_reg = tmp.path().join("old-registry");
    replace_dir(&t.join("persist"), &old_reg);
    let old = tree(&old_reg);
    // The admin changes a file, removes one, adds one.
    write(&t, "etc/app/a.conf", "a=2\n");
    std::fs::remove_file(t.join("etc/app/sub/b.conf")).unwrap();
    write(&t, "etc/app/c.conf", "c\n");
    write(&t, "etc/hostname", "box2\n");
    common::assert_exit(&run(&t, &["state", "save"], None), 0);
    let new = tree(&t.join("persist"));
    assert_ne!(old, new);
    let reset = || replace_dir(&old_reg, &t.join("persist"));
    let manifest = PathBuf::from("state/generation.json");
    let aborts = every_abort(&t, &["state", "save"], &reset, &|n| {
        let now = tree(&t.join("persist"));
        let (o, w) = (old.get(&manifest), new.get(&manifest));
        let m = now.get(&manifest);
        assert!(
            m == o || m == w,
            "abort {n}: manifest is neither old nor new"
        );
        // Every object the current manifest names is there, whole.
        let reference = if m == o { &old } else { &new };
        for (p, d) in reference {
            let object = p.starts_with("state/objects") || p.starts_with("state/packs");
            if object && d.starts_with("file") {
                assert_eq!(
                    now.get(p),
                    Some(d),
                    "abort {n}: object {} lost",
                    p.display()
                );
            }
        }
        // A rerun reaches exactly the new registry.
        common::assert_exit(&run(&t, &["state", "save"], None), 0);
        assert_eq!(tree(&t.join("persist")), new, "abort {n}: rerun differs");
    });
    // The pack, the manifest (the switch), the old pack's removal.
    assert!(aborts >= 3, "save made only {aborts} mutating operations");
}

#[test]
fn restore_leaves_old_or_new_etc_after_every_abort() {
    let tmp = TempDir::new("state-crash-restore");
    let t = tmp.path().join("root");
    image(&t);
    common::assert_exit(&run(&t, &["state", "restore"], None), 0);
    common::assert_exit(&run(&t, &["state", "save"], None), 0);
    // Old: an /etc with one unrelated file. New: the restored /etc.
    std::fs::remove_dir_all(t.join("etc")).unwrap();
    write(&t, "etc/unrelated", "u\n");
    let old_etc = tmp.path().join("old-etc");
    replace_dir(&t.join("etc"), &old_etc);
    let old_reg = tmp.path().join("old-registry");
    replace_dir(&t.join("persist"), &old_reg);
    common::assert_exit(&run(&t, &["state", "restore"], None), 0);
    let new = tree(&t.join("etc"));
    let old = tree(&old_etc);
    assert!(new.len() > old.len() + 5, "{new:?}");
    let registry = tree(&old_reg);
    let reset = || {
        replace_dir(&old_etc, &t.join("etc"));
        replace_dir(&old_reg, &t.join("persist"));
        let _ = std::fs::remove_dir_all(t.join(".pristine-etc.new"));
    };
    let aborts = every_abort(&t, &["state", "restore"], &reset, &|n| {
        let now = tree(&t.join("etc"));
        assert!(
            now == old || now == new,
            "abort {n}: /etc is neither old nor new"
        );
        assert_eq!(
            tree(&t.join("persist")),
            registry,
            "abort {n}: registry changed"
        );
        common::assert_exit(&run(&t, &["state", "restore"], None), 0);
        assert_eq!(tree(&t.join("etc")), new, "abort {n}: rerun differs");
        assert!(
            !t.join(".pristine-etc.new").exists(),
            "abort {n}: stage left"
        );
    });
    assert!(
        aborts >= 8,
        "restore made only {aborts} mutating operations"
    );
}
