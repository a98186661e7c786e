//! tmpfiles crash safety: `tmpfiles --create --remove` is aborted before each of its mutating
//! filesystem operations in turn (`PRISTINE_FAULT_AFTER=N`); a rerun must then reach exactly the
//! tree of an uninterrupted run (types, modes, owners, contents, link targets) with no
//! temporary (`.#…`) left behind. Covers every line type that mutates, including the atomic
//! replacements of `L+`/`p+` (temporary node renamed into place) and the `C` copy (temporary
//! copy renamed into place). Needs `--features fault-injection` (scripts/test passes it).

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{pristine, write, TempDir};

const CONF: &str = "\
d /a/b 0700 - -
f /a/b/f 0600 - - - hello
f+ /a/t 0644 - - - trunc
L /c - - - - /a
L+ /d - - - - /a/b
w /a/b/f - - - - more
z /zdir 0750
p /fifo
p+ /fifo2 0600
C /copy - - - - /src
C /copyfile 0640 65534 65534 - /src/sub/f
d /own 0751 65534 65534 -
e /edir 0710
R /gone
t /a/t - - - - user.x=1
h /a/t - - - - +A
";

/// Only lines whose second run changes nothing (with systemd too): a `z` on a parent that a
/// later line creates, or a `z` and an `e` on one path, set another mode once the path exists.
/// The tree before a run; `a_is_file` puts a regular file where `/a` is wanted (the lines
/// below it then fail, as they do with systemd).
fn prepare(t: &Path, a_is_file: bool) {
    let _ = std::fs::remove_dir_all(t);
    write(t, "etc/tmpfiles.d/x.conf", CONF);
    write(t, "src/sub/f", "s\n");
    write(t, "src/top", "top\n");
    std::os::unix::fs::symlink("sub/f", t.join("src/link")).unwrap();
    write(t, "gone/x/f", "old\n");
    std::fs::create_dir_all(t.join("d/inside")).unwrap();
    write(t, "fifo2", "in the way\n");
    write(t, "edir/kept", "k\n");
    write(t, "zdir/kept", "k\n");
    if a_is_file {
        write(t, "a", "x\n");
    }
}

/// Every path below `dir`: type, mode, owner and contents or link target.
fn tree(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(dir).unwrap().to_path_buf();
        let ft = md.file_type();
        let what = if ft.is_symlink() {
            format!("-> {}", std::fs::read_link(&p).unwrap().display())
        } else if ft.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
            "dir".to_string()
        } else if ft.is_fifo() {
            "fifo".to_string()
        } else {
            format!(
                "file {:?}",
                String::from_utf8_lossy(&std::fs::read(&p).unwrap())
            )
        };
        let desc = format!("{what} {:o} {}:{}", md.mode() & 0o7777, md.uid(), md.gid());
        out.insert(rel, desc);
    }
    out
}

/// The entries where `got` and `want` differ, for a readable failure.
fn differences(
    got: &BTreeMap<PathBuf, String>,
    want: &BTreeMap<PathBuf, String>,
) -> Vec<(PathBuf, Option<String>, Option<String>)> {
    let mut keys: Vec<&PathBuf> = got.keys().chain(want.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| got.get(*k) != want.get(*k))
        .map(|k| ((*k).clone(), got.get(k).cloned(), want.get(k).cloned()))
        .collect()
}

fn run(t: &Path, fault: Option<u64>) -> Output {
    let mut c = pristine();
    c.arg("tmpfiles")
        .arg(format!("--root={}", t.display()))
        .arg("--create")
        .arg("--remove");
    match fault {
        Some(n) => c.env("PRISTINE_FAULT_AFTER", n.to_string()),
        None => c.env_remove("PRISTINE_FAULT_AFTER"),
    };
    c.output().unwrap()
}

/// Aborts the run before each mutating operation in turn, reruns it, and compares with the
/// uninterrupted run. Returns how many aborts there were.
fn converges_after_every_abort(tag: &str, a_is_file: bool) -> u64 {
    let tmp = TempDir::new(tag);
    let reference = tmp.path().join("ref");
    prepare(&reference, a_is_file);
    let want_out = run(&reference, None);
    let want = tree(&reference);
    // The reference is a fixed point, or no rerun could be held to it.
    let second = run(&reference, None);
    assert_eq!(second.status.code(), want_out.status.code());
    let d = differences(&tree(&reference), &want);
    assert!(d.is_empty(), "a second run changes the tree: {d:#?}");
    assert!(
        !want.keys().any(|p| p.to_string_lossy().contains(".#")),
        "uninterrupted run left a temporary: {want:#?}"
    );
    let t = tmp.path().join("root");
    for n in 0..1000 {
        prepare(&t, a_is_file);
        let out = run(&t, Some(n));
        if !String::from_utf8_lossy(&out.stderr).contains("fault injection") {
            assert_eq!(
                out.status.code(),
                want_out.status.code(),
                "run {n} ended differently without an injected fault: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let d = differences(&tree(&t), &want);
            assert!(d.is_empty(), "run {n} without an abort differs: {d:#?}");
            return n;
        }
        let again = run(&t, None);
        assert_eq!(
            again.status.code(),
            want_out.status.code(),
            "abort before operation {n}: the rerun ended differently: {}",
            String::from_utf8_lossy(&again.stderr)
        );
        let d = differences(&tree(&t), &want);
        assert!(
            d.is_empty(),
            "abort before operation {n}: the rerun's tree differs (path, got, want): {d:#?}"
        );
    }
    panic!("never finished");
}

#[test]
fn every_line_type_converges_after_an_abort_anywhere() {
    let aborts = converges_after_every_abort("tmpfiles-crash", false);
    // Directories, files, links, the replacements, the fifo, the copies, modes, removals.
    assert!(aborts >= 25, "only {aborts} mutating operations");
}

#[test]
fn failing_lines_converge_after_an_abort_anywhere() {
    let aborts = converges_after_every_abort("tmpfiles-crash-failing", true);
    assert!(aborts >= 10, "only {aborts} mutating operations");
}
