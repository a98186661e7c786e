//! Helpers shared by the tmpfiles integration tests: tree snapshots (type, permission bits,
//! owner, group, content, link target, device number, xattrs, chattr flags) and their diff.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::Path;

/// One entry of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub kind: char,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub content: Vec<u8>,
    pub link: String,
    pub rdev: u64,
    pub xattrs: Vec<(String, Vec<u8>)>,
    pub flags: u32,
}

pub type Tree = BTreeMap<String, Node>;

fn xattrs(p: &Path) -> Vec<(String, Vec<u8>)> {
    let mut names = vec![0u8; 65536];
    let Ok(n) = rustix::fs::llistxattr(p, &mut names[..]) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        let mut val = vec![0u8; 65536];
        if let Ok(len) = rustix::fs::lgetxattr(p, name.as_str(), &mut val[..]) {
            out.push((name, val[..len].to_vec()));
        }
    }
    out.sort();
    out
}

fn flags(p: &Path, kind: char) -> u32 {
    if kind != 'f' && kind != 'd' {
        return 0;
    }
    let Ok(fd) = rustix::fs::open(
        p,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK,
        rustix::fs::Mode::empty(),
    ) else {
        return 0;
    };
    rustix::fs::ioctl_getflags(&fd)
        .map(|f| f.bits())
        .unwrap_or(0)
}

/// Reads a file without updating its access time (cleaning tests depend on atimes).
fn read_noatime(p: &Path) -> Vec<u8> {
    use std::io::Read as _;
    let fd = rustix::fs::open(
        p,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NOATIME | rustix::fs::OFlags::NONBLOCK,
        rustix::fs::Mode::empty(),
    );
    let mut out = Vec::new();
    if let Ok(fd) = fd {
        let _ = std::fs::File::from(fd).read_to_end(&mut out);
    }
    out
}

/// Snapshots everything below `root` (symlinks are recorded, never followed).
pub fn snapshot(root: &Path) -> Tree {
    let mut t = Tree::new();
    walk(root, root, &mut t);
    t
}

fn walk(root: &Path, dir: &Path, t: &mut Tree) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            'd'
        } else if ft.is_symlink() {
            'l'
        } else if ft.is_fifo() {
            'p'
        } else if ft.is_char_device() {
            'c'
        } else if ft.is_block_device() {
            'b'
        } else if ft.is_socket() {
            's'
        } else {
            'f'
        };
        let rel = String::from_utf8_lossy(p.strip_prefix(root).unwrap().as_os_str().as_bytes())
            .into_owned();
        let node = Node {
            kind,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            content: if kind == 'f' {
                read_noatime(&p)
            } else {
                Vec::new()
            },
            link: if kind == 'l' {
                String::from_utf8_lossy(std::fs::read_link(&p).unwrap().as_os_str().as_bytes())
                    .into_owned()
            } else {
                String::new()
            },
            rdev: if kind == 'c' || kind == 'b' {
                md.rdev()
            } else {
                0
            },
            xattrs: if kind == 'l' { Vec::new() } else { xattrs(&p) },
            flags: flags(&p, kind),
        };
        t.insert(rel, node);
        if kind == 'd' {
            walk(root, &p, t);
        }
    }
}

/// A readable diff of two snapshots (empty when equal).
pub fn diff(a: &Tree, b: &Tree) -> String {
    let mut out = String::new();
    for (k, v) in a {
        match b.get(k) {
            None => out.push_str(&format!("  only in reference: {k} {v:?}\n")),
            Some(w) if w != v => out.push_str(&format!(
                "  differs: {k}\n    reference: {v:?}\n    pristine:  {w:?}\n"
            )),
            _ => {}
        }
    }
    for (k, w) in b {
        if !a.contains_key(k) {
            out.push_str(&format!("  only in pristine: {k} {w:?}\n"));
        }
    }
    out
}

/// Clears chattr flags that would keep a test tree from being removed.
pub fn unprotect(root: &Path) {
    let _ = std::process::Command::new("chattr")
        .args(["-R", "-i", "-a"])
        .arg(root)
        .output();
}

/// Runs `pristine tmpfiles --root=ROOT ARGS…` without credentials: exit code and stderr.
pub fn run_ours(root: &Path, args: &[&str]) -> (i32, String) {
    let out = crate::common::pristine()
        .arg("tmpfiles")
        .arg(format!("--root={}", root.display()))
        .args(args)
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .expect("run pristine");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
