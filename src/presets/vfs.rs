//! A read-through, write-back view of the target tree for planning: directory listings are read
//! once (in the kernel's `readdir` order, which systemd's enumeration follows), symlinks are
//! resolved inside the root in userspace, and planned changes (new symlinks, removals, new
//! directories) update the view at once so that later planning sees them, exactly as systemctl
//! sees its own earlier changes. Nothing is written until [`Vfs::apply`].

use std::collections::HashMap;
use std::os::fd::{AsFd as _, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::fs::{at, DirCache, Root, Txn};
use crate::units::lookup::{components, file_name, join, parent_of};

/// The type of a directory entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Reg,
    Dir,
    Link,
    Chr,
    Other,
}

/// A directory as listed from disk (or made by the plan), kept by [`Vfs`].
#[derive(Debug, Default)]
pub(crate) struct DirList {
    order: Vec<String>,
    map: FxMap<String, Kind>,
    /// The directory, opened when it was listed (directories the plan creates have none).
    /// Entries of a listed directory are read, stat'ed and readlink'ed relative to it, one
    /// component, never following a symlink: the canonical path was resolved in the root.
    fd: Option<OwnedFd>,
    /// Lies on a read-only mount (checked when it was opened; preloaded lists come from
    /// such mounts): nothing this process does can change it, and it is not recorded.
    ro: bool,
    /// Not listed yet: a directory on a read-only mount that was only looked into (while
    /// resolving a path through it). Names are then looked up one at a time, with `lstat`,
    /// and kept in `probed`; [`Vfs::dir`] lists it once something needs all of it. Nothing
    /// in it can change, so the two ways give the same answers, and one `lstat` costs far
    /// less than listing a directory such as `/usr/lib` to learn that `systemd` is in it.
    lazy: bool,
    probed: FxMap<String, Option<Kind>>,
}

impl DirList {
    /// The kind of `name` in this directory, `None` if it has no such entry.
    fn kind(&mut self, name: &str) -> Option<Kind> {
        if let Some(k) = self.map.get(name) {
            return Some(*k);
        }
        if !self.lazy {
            return None;
        }
        if let Some(k) = self.probed.get(name) {
            return *k;
        }
        // A listing holds no `.`, `..` or names with a slash: neither does a lookup.
        let k = (!matches!(name, "" | "." | "..") && !name.contains('/'))
            .then_some(self.fd.as_ref())
            .flatten()
            .and_then(|fd| rustix::fs::statat(fd, name, AtFlags::SYMLINK_NOFOLLOW).ok())
            .map(|st| kind_of(FileType::from_raw_mode(st.st_mode)));
        self.probed.insert(name.to_string(), k);
        k
    }

    /// The entries in `readdir` order.
    fn entries(&self) -> Vec<(String, Kind)> {
        self.order
            .iter()
            .filter_map(|n| self.map.get(n).map(|k| (n.clone(), *k)))
            .collect()
    }

    /// Reads the regular file `name` of this listed directory (canonical path `canon`) and
    /// lexes its `[Install]` section, for [`Vfs::preload`]; `None` if it cannot be read.
    pub(crate) fn read_entry(&self, canon: &str, name: &str) -> Option<Preloaded> {
        let data = read_at(self.fd.as_ref()?, name).ok()?;
        let install = super::engine::lex_install(&data);
        // The bytes are not kept: the presets step needs only the section and whether the
        // file is empty, and freeing them here, on the thread that allocated them, is cheaper
        // than on another one.
        Some(Preloaded {
            path: join(canon, name),
            len: data.len() as u64,
            install,
        })
    }
}

/// A unit file read ahead: canonical path, size, lexed `[Install]` section.
#[derive(Debug)]
pub(crate) struct Preloaded {
    path: String,
    len: u64,
    install: crate::units::ini::Parsed,
}

/// What a plan observed of the tree on disk, recorded (see [`Vfs::record`]) when the plan is
/// made while other steps may still change the tree: [`Witness::verify`] later asks the same
/// questions again, and the plan holds if every answer is the same. Read-only data handed in
/// with [`Vfs::preload`] is not recorded: nothing can change it.
///
/// The answers kept are the ones the plan depends on, no more: for a directory, whether it
/// could be listed and the kinds of the names looked up in it (all of its listing, in order,
/// once it was enumerated); a symlink's target; a file's bytes or size. Another step creating
/// `/etc/hostname` leaves a plan that only looked up `/etc/systemd` valid.
#[derive(Default)]
pub struct Witness {
    dirs: FxMap<String, DirObs>,
    /// Few (symlinks and files outside read-only mounts): lists, not maps.
    links: Vec<(String, Result<String, Errno>)>,
    files: Vec<(String, FileObs)>,
}

/// Past this many names looked up in one directory, all of its listing counts.
const NAMES_MAX: usize = 64;

struct DirObs {
    /// The entries as listed from disk, before the plan changed anything; `None` if the
    /// directory could not be listed.
    listing: Option<Vec<(String, Kind)>>,
    /// The whole listing was observed (enumerated, or found empty).
    whole: bool,
    /// Otherwise, the names looked up in it.
    names: Vec<String>,
    /// Names a path resolution found missing (and not looked up otherwise), with the paths
    /// being resolved: if such a name appears, those paths must still resolve to nothing,
    /// the same way (another step making `/run/systemd` leaves `/run/systemd/system` missing).
    /// `(name, path)`.
    missing: Vec<(String, String)>,
}

impl DirObs {
    fn new(listing: Option<Vec<(String, Kind)>>) -> DirObs {
        DirObs {
            listing,
            whole: false,
            names: Vec::new(),
            missing: Vec::new(),
        }
    }

    /// From now on all of the listing counts (the names looked up are part of it).
    fn set_whole(&mut self) {
        self.whole = true;
        self.names = Vec::new();
        self.missing = Vec::new();
    }
}

enum FileObs {
    Read(Result<Vec<u8>, Errno>),
    Size(Result<u64, Errno>),
}

impl Witness {
    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty() && self.links.is_empty() && self.files.is_empty()
    }

    /// The paths the recorded answers are about, canonical, as `(path, below)`: with `below`,
    /// anything at or below `path` may change an answer; without, only `path` itself, a
    /// directory that must remain one (what lies below it is recorded on its own, if it
    /// counts).
    pub fn paths(&self, out: &mut Vec<(String, bool)>) {
        for (canon, o) in &self.dirs {
            let Some(listing) = o.listing.as_ref().filter(|_| !o.whole) else {
                out.push((canon.clone(), true));
                continue;
            };
            out.push((canon.clone(), false));
            for n in &o.names {
                let dir = listing.iter().any(|(m, k)| m == n && *k == Kind::Dir);
                out.push((join(canon, n), !dir));
            }
            out.extend(o.missing.iter().map(|(_, p)| (p.clone(), true)));
        }
        out.extend(self.links.iter().map(|(p, _)| (p.clone(), true)));
        out.extend(self.files.iter().map(|(p, _)| (p.clone(), true)));
    }

    /// Asks every recorded question again, on disk: `Err` names the first path whose answer
    /// changed. Conservative: an answer reached another way that differs only in its errno
    /// counts as changed (the plan is then made again, never applied stale).
    pub fn verify(&self, root: &Root) -> Result<(), String> {
        // Names are looked up one at a time: the directories observed are the ones other
        // steps write (`/etc`, `/run`), whole listings of which cost more than the lookups.
        let mut fresh = Vfs::lazy(root);
        for (canon, o) in &self.dirs {
            let Some(was) = &o.listing else {
                if fresh.load(canon).is_some() {
                    return Err(canon.clone());
                }
                continue;
            };
            if o.whole {
                if fresh.load_dir(canon).map(|d| d.entries()).as_ref() != Some(was) {
                    return Err(canon.clone());
                }
                continue;
            }
            if fresh.load(canon).is_none() {
                return Err(canon.clone());
            }
            let kind = |n: &str| was.iter().find(|(m, _)| m == n).map(|(_, k)| *k);
            for n in &o.names {
                if kind(n) != fresh.kind_in_unrecorded(canon, n) {
                    return Err(join(canon, n));
                }
            }
            for (n, p) in &o.missing {
                if o.names.contains(n) || fresh.kind_in_unrecorded(canon, n).is_none() {
                    continue;
                }
                if fresh.chase(p, false, true) != Ok((p.clone(), false)) {
                    return Err(p.clone());
                }
            }
        }
        for (canon, was) in &self.links {
            let now = root
                .read_link(Path::new(canon))
                .map_err(|e| io_errno(&e))
                .and_then(|t| t.to_str().map(str::to_string).ok_or(Errno::INVAL));
            if now != *was {
                return Err(canon.clone());
            }
        }
        for (canon, was) in &self.files {
            let same = match was {
                FileObs::Read(was) => root.read(Path::new(canon)).map_err(|e| io_errno(&e)) == *was,
                FileObs::Size(was) => {
                    root.stat(Path::new(canon), false)
                        .map(|st| st.st_size as u64)
                        .map_err(|e| io_errno(&e))
                        == *was
                }
            };
            if !same {
                return Err(canon.clone());
            }
        }
        Ok(())
    }
}

/// How a directory path resolves (see [`Vfs::dir_state`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirState {
    Missing,
    Dir(String),
    Unsure,
}

/// A planned filesystem change (in-root paths).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Mkdir(String),
    Symlink {
        target: String,
        path: String,
    },
    /// Atomically replace whatever is at `path` with a symlink.
    ReplaceSymlink {
        target: String,
        path: String,
    },
    Unlink(String),
    Rmdir(String),
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::Mkdir(p) => write!(f, "mkdir {p}"),
            Op::Symlink { target, path } => write!(f, "symlink {path} -> {target}"),
            Op::ReplaceSymlink { target, path } => write!(f, "replace {path} -> {target}"),
            Op::Unlink(p) => write!(f, "unlink {p}"),
            Op::Rmdir(p) => write!(f, "rmdir {p}"),
        }
    }
}

/// The kind of a directory entry of file type `ft`.
fn kind_of(ft: FileType) -> Kind {
    match ft {
        FileType::RegularFile => Kind::Reg,
        FileType::Directory => Kind::Dir,
        FileType::Symlink => Kind::Link,
        FileType::CharacterDevice => Kind::Chr,
        _ => Kind::Other,
    }
}

/// Lists the open directory `fd` (names that are not UTF-8 are left out: no unit or
/// directory the planner looks for has one); `None` if it cannot be listed.
fn list_fd(fd: OwnedFd) -> Option<DirList> {
    let mut kinds = Vec::new();
    let mut list = DirList::default();
    crate::fs::for_each_entry(fd.as_fd(), |name, mut ft| {
        let Ok(name) = std::str::from_utf8(name) else {
            return;
        };
        if ft == FileType::Unknown {
            ft = rustix::fs::statat(&fd, name, AtFlags::SYMLINK_NOFOLLOW)
                .map(|st| FileType::from_raw_mode(st.st_mode))
                .unwrap_or(FileType::Unknown);
        }
        list.order.push(name.to_string());
        kinds.push(kind_of(ft));
    })
    .ok()?;
    // Sized once: growing the map entry by entry rehashed it eight times for /usr/lib/systemd/system.
    list.map = FxMap::with_capacity_and_hasher(kinds.len(), Default::default());
    for (name, kind) in list.order.iter().zip(kinds) {
        list.map.insert(name.clone(), kind);
    }
    list.fd = Some(fd);
    Some(list)
}

/// Reads the regular file `name` in `dir` (one component, never following a symlink); anything
/// else is refused, as [`Root::read`] refuses it.
pub(crate) fn read_at(dir: &OwnedFd, name: &str) -> Result<Vec<u8>, Errno> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    crate::fs::read_regular(&fd, crate::fs::limits::DEFAULT).map_err(|e| match e {
        // Root::read's "not a regular file" error, as its errno.
        crate::fs::ReadError::NotRegular => Errno::IO,
        crate::fs::ReadError::TooLarge => Errno::FBIG,
        crate::fs::ReadError::Io(e) => e,
    })
}

fn io_errno(e: &std::io::Error) -> Errno {
    Errno::from_io_error(e).unwrap_or(Errno::IO)
}

/// Names systemd's `FOREACH_DIRENT` skips (`hidden_or_backup_file`).
pub fn hidden_or_backup(name: &str) -> bool {
    if name.starts_with('.')
        || matches!(name, "lost+found" | "aquota.user" | "aquota.group")
        || name.ends_with('~')
    {
        return true;
    }
    let Some(dot) = name.rfind('.') else {
        return false;
    };
    matches!(
        &name[dot + 1..],
        "rpmnew"
            | "rpmsave"
            | "rpmorig"
            | "dpkg-old"
            | "dpkg-new"
            | "dpkg-tmp"
            | "dpkg-dist"
            | "dpkg-bak"
            | "dpkg-backup"
            | "dpkg-remove"
            | "ucf-new"
            | "ucf-old"
            | "ucf-dist"
            | "swp"
            | "bak"
            | "old"
            | "new"
    )
}

const CHASE_MAX: usize = 32;

/// A small, fast, non-cryptographic hasher (FxHash) for the path-keyed caches: the keys are
/// file names from the target tree, and the maps live for one run.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut h = self.0;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut v = [0u8; 8];
            v.copy_from_slice(chunk);
            h = (h.rotate_left(5) ^ u64::from_le_bytes(v)).wrapping_mul(K);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut v = [0u8; 8];
            v[..rest.len()].copy_from_slice(rest);
            h = (h.rotate_left(5) ^ u64::from_le_bytes(v)).wrapping_mul(K);
        }
        self.0 = h;
    }
    fn write_u8(&mut self, i: u8) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(i)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

pub type FxBuild = std::hash::BuildHasherDefault<FxHasher>;
pub type FxMap<K, V> = HashMap<K, V, FxBuild>;

/// A resolution: the canonical path and whether it exists.
type Chased = Result<(String, bool), Errno>;

pub struct Vfs<'r> {
    root: &'r Root,
    dirs: FxMap<String, Option<DirList>>,
    links: FxMap<String, String>,
    sizes: FxMap<String, u64>,
    /// Contents of regular files read while checking for masks (`null_or_empty`), kept for
    /// the `[Install]` load that follows: one open instead of a stat and an open.
    files: FxMap<String, std::rc::Rc<Vec<u8>>>,
    /// `[Install]` sections lexed ahead (by canonical path), for the files in `files`.
    installs: FxMap<String, std::rc::Rc<crate::units::ini::Parsed>>,
    /// Resolutions of paths that exist, by `[follow_last][nonexistent]`: valid until something
    /// is removed or replaced.
    chased: [FxMap<String, Chased>; 4],
    /// Other resolutions (missing paths, errors): valid until the next planned change.
    chased_neg: [FxMap<String, Chased>; 4],
    /// Counts planned changes: a resolution made at one generation holds while it is current.
    generation: u64,
    /// Canonical paths of the entries planned changes created, in order.
    created: Vec<String>,
    /// Planned changes that removed or replaced an entry.
    removals: u64,
    pub ops: Vec<Op>,
    /// Observations of the tree on disk, when recorded (see [`Vfs::record`]).
    witness: Option<Witness>,
    /// Treat every directory as one on a read-only mount is treated (looked into name by name
    /// until listed): for [`Witness::verify`], which asks a few names in directories another
    /// step has filled, and for tests comparing the two ways on any tree.
    lazy_everywhere: bool,
}

impl<'r> Vfs<'r> {
    pub fn new(root: &'r Root) -> Vfs<'r> {
        Vfs {
            root,
            dirs: FxMap::default(),
            links: FxMap::default(),
            sizes: FxMap::default(),
            files: FxMap::default(),
            installs: FxMap::default(),
            chased: Default::default(),
            chased_neg: Default::default(),
            generation: 0,
            created: Vec::new(),
            removals: 0,
            ops: Vec::new(),
            witness: None,
            lazy_everywhere: false,
        }
    }

    /// A view that looks into every directory name by name until something needs all of it
    /// (see [`DirList::lazy`]); it answers every question as [`Vfs::new`]'s does.
    pub(crate) fn lazy(root: &'r Root) -> Vfs<'r> {
        Vfs {
            lazy_everywhere: true,
            ..Vfs::new(root)
        }
    }

    /// From now on, records what is observed on disk (not what was preloaded), for
    /// [`Vfs::take_witness`].
    pub fn record(&mut self) {
        self.witness = Some(Witness::default());
    }

    /// The observations recorded since [`Vfs::record`].
    pub fn take_witness(&mut self) -> Option<Witness> {
        self.witness.take()
    }

    /// Records that the name `name` was looked up in the canonical directory `dir`.
    fn observe_name(&mut self, dir: &str, name: &str) {
        if let Some(o) = self.witness.as_mut().and_then(|w| w.dirs.get_mut(dir)) {
            if o.whole || o.names.iter().any(|n| n == name) {
                return;
            }
            if o.names.len() >= NAMES_MAX {
                o.set_whole();
            } else {
                o.names.push(name.to_string());
            }
        }
    }

    /// Records that all of the listing of the canonical directory `dir` was observed.
    fn observe_whole(&mut self, dir: &str) {
        if let Some(o) = self.witness.as_mut().and_then(|w| w.dirs.get_mut(dir)) {
            o.set_whole();
        }
    }

    /// Records that resolving `path` found `name` missing in the canonical directory `dir`.
    fn observe_missing(&mut self, dir: &str, name: &str, path: &str) {
        if let Some(o) = self.witness.as_mut().and_then(|w| w.dirs.get_mut(dir)) {
            if o.whole
                || o.names.iter().any(|n| n == name)
                || o.missing.iter().any(|(n, p)| n == name && p == path)
            {
                return;
            }
            if o.missing.len() >= NAMES_MAX {
                o.set_whole();
            } else {
                o.missing.push((name.to_string(), path.to_string()));
            }
        }
    }

    /// Whether what is observed of the canonical path `canon` is recorded.
    fn recording(&self, canon: &str) -> bool {
        self.witness.is_some() && !self.in_read_only_dir(canon)
    }

    /// Whether the canonical path `canon` lies in a listed directory on a read-only mount.
    fn in_read_only_dir(&self, canon: &str) -> bool {
        self.dirs
            .get(parent_of(canon))
            .is_some_and(|d| d.as_ref().is_some_and(|d| d.ro))
    }

    /// Records a file observation; callers ask [`Vfs::recording`] first (and copy bytes only
    /// then).
    fn observe_file(&mut self, canon: &str, o: FileObs) {
        if let Some(w) = self.witness.as_mut() {
            if !w.files.iter().any(|(p, _)| p == canon) {
                w.files.push((canon.to_string(), o));
            }
        }
    }

    pub fn root(&self) -> &'r Root {
        self.root
    }

    /// The open directory holding the canonical path `canon` and the last component, if that
    /// directory was listed from disk.
    fn at<'a>(&self, canon: &'a str) -> Option<(&OwnedFd, &'a str)> {
        let name = file_name(canon);
        if name.is_empty() || name == "." || name == ".." {
            return None;
        }
        let dir = self.dirs.get(parent_of(canon))?.as_ref()?;
        Some((dir.fd.as_ref()?, name))
    }

    /// Opens the canonical directory `canon` (relative to its parent when that was opened).
    fn open_dir(&self, canon: &str) -> Option<OwnedFd> {
        const DIR: OFlags = OFlags::RDONLY
            .union(OFlags::DIRECTORY)
            .union(OFlags::NOFOLLOW)
            .union(OFlags::CLOEXEC);
        match self.at(canon) {
            Some((parent, name)) => rustix::fs::openat(parent, name, DIR, Mode::empty()).ok(),
            None => self
                .root
                .open_path(Path::new(canon), DIR, Mode::empty())
                .ok(),
        }
    }

    /// Lists the canonical directory `canon` from disk; `None` if it cannot be.
    fn load_dir(&self, canon: &str) -> Option<DirList> {
        list_fd(self.open_dir(canon)?)
    }

    /// Loads the canonical directory `canon` unless it was: a directory on a read-only mount
    /// is only opened (see [`DirList::lazy`]), any other one is listed.
    fn load(&mut self, canon: &str) -> Option<&mut DirList> {
        if !self.dirs.contains_key(canon) {
            let fd = self.open_dir(canon);
            let ro = fd.as_ref().is_some_and(crate::fs::on_read_only_mount);
            let lazy = ro || self.lazy_everywhere;
            let l = if lazy {
                fd.map(|fd| DirList {
                    fd: Some(fd),
                    ro,
                    lazy: true,
                    ..DirList::default()
                })
            } else {
                fd.and_then(list_fd)
            };
            // While recording, what lies on a read-only mount is not: it cannot change.
            if let Some(w) = self.witness.as_mut().filter(|_| !ro) {
                let o = DirObs::new(l.as_ref().map(DirList::entries));
                w.dirs.insert(canon.to_string(), o);
            }
            self.dirs.insert(canon.to_string(), l);
        }
        self.dirs.get_mut(canon).and_then(|d| d.as_mut())
    }

    /// The canonical directory `canon`, listed (`None` if it cannot be).
    fn dir(&mut self, canon: &str) -> Option<&mut DirList> {
        if self.load(canon)?.lazy {
            // Only looked into so far: list it now. Planned changes always list a directory
            // first, so nothing but lookups is lost.
            let slot = self.dirs.get_mut(canon)?;
            let (fd, ro) = match slot.as_mut() {
                Some(d) => (d.fd.take(), d.ro),
                None => (None, false),
            };
            *slot = fd.and_then(list_fd).map(|l| DirList { ro, ..l });
        }
        self.dirs.get_mut(canon).and_then(|d| d.as_mut())
    }

    /// The entries of a canonical directory in `readdir` order (empty if it cannot be read).
    pub fn list(&mut self, canon: &str) -> Vec<(String, Kind)> {
        if self.dir(canon).is_some() {
            self.observe_whole(canon);
        }
        match self.dir(canon) {
            Some(d) => d
                .order
                .iter()
                .filter_map(|n| d.map.get(n).map(|k| (n.clone(), *k)))
                .collect(),
            None => Vec::new(),
        }
    }

    /// Calls `f` with the entries of a canonical directory in `readdir` order (none if it
    /// cannot be read), without copying them.
    pub fn each(&mut self, canon: &str, mut f: impl FnMut(&str, Kind)) {
        if self.dir(canon).is_some() {
            self.observe_whole(canon);
        }
        if let Some(d) = self.dir(canon) {
            for n in &d.order {
                if let Some(k) = d.map.get(n) {
                    f(n, *k);
                }
            }
        }
    }

    /// Whether the canonical directory `canon` can be listed and lies on a read-only mount:
    /// nothing this process does can change what is in it.
    pub fn on_read_only_mount(&mut self, canon: &str) -> bool {
        self.load(canon).is_some_and(|d| d.ro)
    }

    /// Takes files, directory listings and symlink targets read ahead as if this Vfs had read them. The caller
    /// vouches that they cannot have changed since (see `presets::prefetch`).
    pub(crate) fn preload(
        &mut self,
        files: Vec<Preloaded>,
        dirs: Vec<(String, DirList)>,
        links: Vec<(String, String)>,
    ) {
        for (path, target) in links {
            self.links.entry(path).or_insert(target);
        }
        for (path, mut list) in dirs {
            list.ro = true;
            self.dirs.entry(path).or_insert(Some(list));
        }
        for f in files {
            self.sizes.insert(f.path.clone(), f.len);
            self.installs.insert(f.path, std::rc::Rc::new(f.install));
        }
    }

    /// The `[Install]` section of the canonical regular file `canon` (lexed ahead, or read
    /// and lexed now); `None` if the file is empty.
    pub fn load_install(
        &mut self,
        canon: &str,
    ) -> Result<Option<std::rc::Rc<crate::units::ini::Parsed>>, Errno> {
        if let Some(p) = self.installs.get(canon) {
            return Ok((self.sizes.get(canon) != Some(&0)).then(|| std::rc::Rc::clone(p)));
        }
        let data = self.read(canon)?;
        if data.is_empty() {
            return Ok(None);
        }
        Ok(Some(std::rc::Rc::new(super::engine::lex_install(&data))))
    }

    /// Gives up the listings of directories on read-only mounts (nothing can change them), to
    /// be preloaded into another view.
    pub(crate) fn take_read_only_dirs(&mut self) -> Vec<(String, DirList)> {
        let ro: Vec<String> = self
            .dirs
            .iter()
            .filter(|(_, d)| d.as_ref().is_some_and(|d| d.ro))
            .map(|(p, _)| p.clone())
            .collect();
        ro.into_iter()
            .filter_map(|p| {
                let d = self.dirs.remove(&p)??;
                Some((p, d))
            })
            .collect()
    }

    /// The kind of `name` in the canonical directory `dir`.
    pub fn kind_in(&mut self, dir: &str, name: &str) -> Option<Kind> {
        let k = self.kind_in_unrecorded(dir, name);
        if self.witness.is_some() {
            self.observe_name(dir, name);
        }
        k
    }

    fn kind_in_unrecorded(&mut self, dir: &str, name: &str) -> Option<Kind> {
        self.load(dir)?.kind(name)
    }

    /// The number of planned changes so far; anything observed stays valid while it is
    /// unchanged.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The planned changes after the first `created` creations and `removals` removals, when
    /// they all only created entries: their canonical paths. `None` if one removed or replaced
    /// an entry.
    pub fn created_since(&self, created: usize, removals: u64) -> Option<&[String]> {
        (self.removals == removals).then(|| self.created.get(created..).unwrap_or(&[]))
    }

    /// Creations and removals planned so far (for [`Vfs::created_since`]).
    pub fn change_counts(&self) -> (usize, u64) {
        (self.created.len(), self.removals)
    }

    /// How `dir` resolves for lookups of entries in it: [`DirState::Missing`] when it does not
    /// exist or is not a (readable) directory — `lstat` of any entry fails with `ENOENT` or
    /// `ENOTDIR` — the canonical directory when it is one, [`DirState::Unsure`] on other
    /// errors. Valid while [`Vfs::generation`] is unchanged.
    pub fn dir_state(&mut self, dir: &str) -> DirState {
        match self.chase(dir, true, false) {
            Ok((canon, true)) => match self.load(&canon) {
                Some(_) => DirState::Dir(canon),
                None => DirState::Missing,
            },
            Ok((_, false)) | Err(Errno::NOENT | Errno::NOTDIR) => DirState::Missing,
            Err(_) => DirState::Unsure,
        }
    }

    /// Resolves `path` inside the root like systemd's `chase()`. Returns the canonical path and
    /// whether it exists; with `nonexistent`, a missing component ends the walk and the rest is
    /// appended verbatim. `follow_last`: follow a final symlink.
    pub fn chase(
        &mut self,
        path: &str,
        follow_last: bool,
        nonexistent: bool,
    ) -> Result<(String, bool), Errno> {
        let k = usize::from(follow_last) * 2 + usize::from(nonexistent);
        if let Some(r) = self.chased[k]
            .get(path)
            .or_else(|| self.chased_neg[k].get(path))
        {
            return r.clone();
        }
        let r = self.chase_uncached(path, follow_last, nonexistent);
        if matches!(r, Ok((_, true))) {
            self.chased[k].insert(path.to_string(), r.clone());
        } else {
            self.chased_neg[k].insert(path.to_string(), r.clone());
        }
        r
    }

    /// Forgets resolutions a planned change may alter: creating an entry can only make missing
    /// paths appear; removing or replacing one can change anything.
    fn invalidate(&mut self, removal: bool) {
        self.generation += 1;
        self.removals += u64::from(removal);
        for m in &mut self.chased_neg {
            if !m.is_empty() {
                m.clear();
            }
        }
        if removal {
            for m in &mut self.chased {
                if !m.is_empty() {
                    m.clear();
                }
            }
        }
    }

    fn chase_uncached(
        &mut self,
        path: &str,
        follow_last: bool,
        nonexistent: bool,
    ) -> Result<(String, bool), Errno> {
        use std::borrow::Cow;
        let mut todo: Vec<Cow<'_, str>> = components(path).rev().map(Cow::Borrowed).collect();
        let mut cur = String::with_capacity(path.len() + 1);
        cur.push('/');
        let mut hops = 0;
        while let Some(c) = todo.pop() {
            if c == ".." {
                let parent = parent_of(&cur).len();
                cur.truncate(parent);
                continue;
            }
            let kind = self.kind_in_unrecorded(&cur, &c);
            if kind.is_some() && self.witness.is_some() {
                self.observe_name(&cur, &c);
            }
            match kind {
                None => {
                    let mut out = join(&cur, &c);
                    while let Some(r) = todo.pop() {
                        out = join(&out, &r);
                    }
                    if self.witness.is_some() {
                        self.observe_missing(&cur, &c, &out);
                    }
                    if !nonexistent {
                        return Err(Errno::NOENT);
                    }
                    return Ok((out, false));
                }
                Some(Kind::Link) if !todo.is_empty() || follow_last => {
                    hops += 1;
                    if hops > CHASE_MAX {
                        return Err(Errno::LOOP);
                    }
                    let t = self.readlink_canon(&join(&cur, &c))?;
                    if t.starts_with('/') {
                        cur.truncate(1);
                    }
                    todo.extend(
                        components(&t)
                            .rev()
                            .map(|c| Cow::Owned(c.to_string()))
                            .collect::<Vec<_>>(),
                    );
                }
                Some(k) => {
                    if !todo.is_empty() && k != Kind::Dir {
                        return Err(Errno::NOTDIR);
                    }
                    if cur.len() > 1 {
                        cur.push('/');
                    }
                    cur.push_str(&c);
                }
            }
        }
        Ok((cur, true))
    }

    /// `readlink(2)` of the canonical path `canon` (whose directory is resolved already).
    pub(crate) fn readlink_canon(&mut self, canon: &str) -> Result<String, Errno> {
        if let Some(t) = self.links.get(canon) {
            return Ok(t.clone());
        }
        let t = match self.at(canon) {
            Some((dir, name)) => rustix::fs::readlinkat(dir, name, Vec::new())
                .and_then(|t| t.into_string().map_err(|_| Errno::INVAL)),
            None => self
                .root
                .read_link(Path::new(canon))
                .map_err(|e| io_errno(&e))
                .and_then(|t| t.to_str().map(str::to_string).ok_or(Errno::INVAL)),
        };
        if self.recording(canon) {
            if let Some(w) = self.witness.as_mut() {
                if !w.links.iter().any(|(p, _)| p == canon) {
                    w.links.push((canon.to_string(), t.clone()));
                }
            }
        }
        let t = t?;
        self.links.insert(canon.to_string(), t.clone());
        Ok(t)
    }

    /// The canonical parent directory of `path` and the last component.
    fn parent(&mut self, path: &str) -> Result<(String, String), Errno> {
        let (dir, exists) = self.chase(parent_of(path), true, false)?;
        if !exists {
            return Err(Errno::NOENT);
        }
        match self.load(&dir) {
            Some(_) => Ok((dir, file_name(path).to_string())),
            None => Err(Errno::NOTDIR),
        }
    }

    /// `lstat` of `path`: the kind of its last component (intermediate symlinks followed).
    pub fn lstat(&mut self, path: &str) -> Result<(String, Kind), Errno> {
        let (dir, name) = self.parent(path)?;
        let k = self.kind_in(&dir, &name).ok_or(Errno::NOENT)?;
        Ok((join(&dir, &name), k))
    }

    /// `readlink(2)`.
    pub fn readlink(&mut self, path: &str) -> Result<String, Errno> {
        let (canon, k) = self.lstat(path)?;
        if k != Kind::Link {
            return Err(Errno::INVAL);
        }
        self.readlink_canon(&canon)
    }

    /// systemd's `null_or_empty` for a canonical, non-symlink path of kind `k`.
    pub fn null_or_empty(&mut self, canon: &str, k: Kind) -> Result<bool, Errno> {
        match k {
            Kind::Chr => Ok(true),
            Kind::Reg => {
                if let Some(s) = self.sizes.get(canon) {
                    return Ok(*s == 0);
                }
                if let Some(Ok(data)) = self.at(canon).map(|(dir, name)| read_at(dir, name)) {
                    if self.recording(canon) {
                        self.observe_file(canon, FileObs::Read(Ok(data.clone())));
                    }
                    let empty = data.is_empty();
                    self.sizes.insert(canon.to_string(), data.len() as u64);
                    self.files.insert(canon.to_string(), std::rc::Rc::new(data));
                    return Ok(empty);
                }
                let st = match self.at(canon) {
                    Some((dir, name)) => rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW),
                    None => self
                        .root
                        .stat(Path::new(canon), false)
                        .map_err(|e| io_errno(&e)),
                };
                if self.recording(canon) {
                    let size = st.as_ref().map(|st| st.st_size as u64).map_err(|e| *e);
                    self.observe_file(canon, FileObs::Size(size));
                }
                let st = st?;
                self.sizes.insert(canon.to_string(), st.st_size as u64);
                Ok(st.st_size == 0)
            }
            _ => Ok(false),
        }
    }

    /// Reads a canonical regular file (anything else is refused, as [`Root::read`] does).
    pub fn read(&mut self, canon: &str) -> Result<std::rc::Rc<Vec<u8>>, Errno> {
        if let Some(d) = self.files.get(canon) {
            return Ok(std::rc::Rc::clone(d));
        }
        let data = match self.at(canon) {
            Some((dir, name)) => read_at(dir, name),
            None => self.root.read(Path::new(canon)).map_err(|e| io_errno(&e)),
        };
        if self.recording(canon) {
            self.observe_file(canon, FileObs::Read(data.clone()));
        }
        Ok(std::rc::Rc::new(data?))
    }

    /// `stat` following symlinks: canonical path and kind.
    pub fn stat(&mut self, path: &str) -> Result<(String, Kind), Errno> {
        let (canon, exists) = self.chase(path, true, false)?;
        if !exists {
            return Err(Errno::NOENT);
        }
        if canon == "/" {
            return Ok((canon, Kind::Dir));
        }
        let k = self
            .kind_in(parent_of(&canon), file_name(&canon))
            .ok_or(Errno::NOENT)?;
        Ok((canon, k))
    }

    /// `mkdir -p` of the parent of `path` (mode 0755); failures are ignored, as systemd's
    /// `mkdir_parents` result is.
    pub fn mkdir_parents(&mut self, path: &str) {
        let parent = parent_of(path).to_string();
        let mut cur = String::from("/");
        for c in components(&parent).map(str::to_string).collect::<Vec<_>>() {
            let next = join(&cur, &c);
            match self.kind_in(&cur, &c) {
                Some(Kind::Dir) => cur = next,
                Some(Kind::Link) => match self.chase(&next, true, false) {
                    Ok((canon, true)) if self.dir(&canon).is_some() => cur = canon,
                    _ => return,
                },
                Some(_) => return,
                None => {
                    if self.dir(&cur).is_none() {
                        return;
                    }
                    self.invalidate(false);
                    self.created.push(next.clone());
                    self.ops.push(Op::Mkdir(next.clone()));
                    if let Some(d) = self.dir(&cur) {
                        d.order.push(c.clone());
                        d.map.insert(c.clone(), Kind::Dir);
                    }
                    self.dirs.insert(next.clone(), Some(DirList::default()));
                    cur = next;
                }
            }
        }
    }

    /// `symlink(target, path)`: fails with `EEXIST` if something is there.
    pub fn symlink(&mut self, target: &str, path: &str) -> Result<(), Errno> {
        let (dir, name) = self.parent(path)?;
        if self.kind_in(&dir, &name).is_some() {
            return Err(Errno::EXIST);
        }
        let canon = join(&dir, &name);
        self.invalidate(false);
        self.created.push(canon.clone());
        self.ops.push(Op::Symlink {
            target: target.to_string(),
            path: canon.clone(),
        });
        if let Some(d) = self.dir(&dir) {
            d.order.push(name.clone());
            d.map.insert(name, Kind::Link);
        }
        self.links.insert(canon, target.to_string());
        Ok(())
    }

    /// Replaces `path` by a symlink to `target`.
    pub fn replace_symlink(&mut self, target: &str, path: &str) -> Result<(), Errno> {
        let (dir, name) = self.parent(path)?;
        let canon = join(&dir, &name);
        self.invalidate(true);
        self.files.remove(&canon);
        self.installs.remove(&canon);
        self.sizes.remove(&canon);
        self.ops.push(Op::ReplaceSymlink {
            target: target.to_string(),
            path: canon.clone(),
        });
        if let Some(d) = self.dir(&dir) {
            if !d.map.contains_key(&name) {
                d.order.push(name.clone());
            }
            d.map.insert(name, Kind::Link);
        }
        self.links.insert(canon, target.to_string());
        Ok(())
    }

    /// Removes the non-directory at the canonical path `canon`.
    pub fn unlink(&mut self, canon: &str) -> Result<(), Errno> {
        let dir = parent_of(canon).to_string();
        let name = file_name(canon).to_string();
        self.dir(&dir).ok_or(Errno::NOENT)?;
        self.observe_name(&dir, &name);
        let d = self.dir(&dir).ok_or(Errno::NOENT)?;
        match d.map.get(&name) {
            None => return Err(Errno::NOENT),
            Some(Kind::Dir) => return Err(Errno::ISDIR),
            Some(_) => {}
        }
        d.map.remove(&name);
        d.order.retain(|n| n != &name);
        self.links.remove(canon);
        self.files.remove(canon);
        self.installs.remove(canon);
        self.sizes.remove(canon);
        self.invalidate(true);
        self.ops.push(Op::Unlink(canon.to_string()));
        Ok(())
    }

    /// systemd's `rmdir_parents(path, stop)`: removes now-empty parent directories of `path`
    /// below `stop`.
    pub fn rmdir_parents(&mut self, path: &str, stop: &str) {
        let mut p = path.to_string();
        loop {
            let parent = parent_of(&p).to_string();
            if parent == "/" || parent == "." {
                return;
            }
            if crate::units::lookup::path_startswith(stop, &parent).is_some() {
                return;
            }
            if self.dir(&parent).is_some() {
                self.observe_whole(&parent);
            }
            let empty = match self.dir(&parent) {
                Some(d) => d.map.is_empty(),
                None => false,
            };
            if !empty {
                return;
            }
            let gp = parent_of(&parent).to_string();
            let name = file_name(&parent).to_string();
            if let Some(d) = self.dir(&gp) {
                d.map.remove(&name);
                d.order.retain(|n| n != &name);
            }
            self.dirs.insert(parent.clone(), None);
            self.invalidate(true);
            self.ops.push(Op::Rmdir(parent.clone()));
            p = parent;
        }
    }

    /// Performs the planned operations in order through the root handle. Each parent
    /// directory is opened (inside the root) once, in a [`DirCache`], and the operations on
    /// its entries are done relative to it with [`crate::fs::at`] and [`Txn`].
    pub fn apply(root: &Root, ops: &[Op]) -> Result<(), (Op, std::io::Error)> {
        let mut dirs = DirCache::new();
        for op in ops {
            Self::apply_one(root, &mut dirs, op).map_err(|e| (op.clone(), e))?;
        }
        Ok(())
    }

    fn apply_one(root: &Root, dirs: &mut DirCache, op: &Op) -> std::io::Result<()> {
        let p = match op {
            Op::Mkdir(p) | Op::Unlink(p) | Op::Rmdir(p) => p,
            Op::Symlink { path, .. } | Op::ReplaceSymlink { path, .. } => path,
        };
        let name = file_name(p);
        if !p.starts_with('/') || name.is_empty() || name == "." || name == ".." {
            // Not a canonical path (the planner makes none): leave it to the root handle.
            return match op {
                Op::Mkdir(p) => root.mkdir(Path::new(p), 0o755).map(|_| ()),
                Op::Symlink { target, path } => root.symlink(Path::new(target), Path::new(path)),
                Op::ReplaceSymlink { target, path } => {
                    root.symlink_atomic(Path::new(target), Path::new(path))
                }
                Op::Unlink(p) => root.unlink(Path::new(p)),
                Op::Rmdir(p) => root.rmdir(Path::new(p)),
            };
        }
        let path = Path::new(p);
        let (dir, name) = dirs.parent(root, path)?;
        match op {
            Op::Mkdir(_) => match at::mkdir(dir, name, 0o755) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(Errno::EXIST.raw_os_error()) => {
                    let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
                    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            },
            Op::Symlink { target, .. } => at::symlink(target.as_str(), dir, name)?,
            Op::ReplaceSymlink { target, .. } => {
                let mut t = Txn::new(false);
                let d = t.dir(dir);
                t.symlink(d, name, std::ffi::OsStr::new(target), path)?;
                t.commit_io()?;
            }
            Op::Unlink(_) => at::unlink(dir, name)?,
            Op::Rmdir(_) => at::rmdir(dir, name)?,
        }
        // Whatever was at `p` is gone or replaced: forget any directory opened at or below it.
        if !matches!(op, Op::Mkdir(_) | Op::Symlink { .. }) {
            dirs.invalidate(path);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chase_and_plan() {
        let t = crate::util::test_dir("vfs");
        std::fs::create_dir_all(t.join("usr/lib/systemd/system")).unwrap();
        std::fs::create_dir_all(t.join("etc/systemd/system")).unwrap();
        std::os::unix::fs::symlink("usr/lib", t.join("lib")).unwrap();
        std::fs::write(t.join("usr/lib/systemd/system/a.service"), "x").unwrap();
        std::os::unix::fs::symlink(
            "/lib/systemd/system/a.service",
            t.join("etc/systemd/system/b.service"),
        )
        .unwrap();
        let root = Root::open(&t).unwrap();
        let mut v = Vfs::new(&root);
        assert_eq!(
            v.chase("/etc/systemd/system/b.service", true, false),
            Ok(("/usr/lib/systemd/system/a.service".to_string(), true))
        );
        assert_eq!(
            v.chase("/etc/systemd/system/b.service", false, false),
            Ok(("/etc/systemd/system/b.service".to_string(), true))
        );
        assert_eq!(
            v.chase("/lib/systemd/nope/x", true, true),
            Ok(("/usr/lib/systemd/nope/x".to_string(), false))
        );
        assert_eq!(
            v.lstat("/lib/systemd/system/a.service").map(|x| x.1),
            Ok(Kind::Reg)
        );
        v.mkdir_parents("/etc/systemd/system/m.target.wants/a.service");
        v.symlink(
            "/usr/lib/systemd/system/a.service",
            "/etc/systemd/system/m.target.wants/a.service",
        )
        .unwrap();
        assert_eq!(
            v.symlink("/x", "/etc/systemd/system/m.target.wants/a.service"),
            Err(Errno::EXIST)
        );
        v.unlink("/etc/systemd/system/m.target.wants/a.service")
            .unwrap();
        v.rmdir_parents(
            "/etc/systemd/system/m.target.wants/a.service",
            "/etc/systemd/system",
        );
        assert_eq!(v.ops.len(), 4);
        assert!(
            hidden_or_backup(".x.service")
                && hidden_or_backup("a.dpkg-old")
                && !hidden_or_backup("a.service")
        );
        Vfs::apply(&root, &v.ops.clone()).unwrap();
        assert!(!t.join("etc/systemd/system/m.target.wants").exists());
        let _ = std::fs::remove_dir_all(&t);
    }

    #[test]
    fn looking_into_a_directory_name_by_name_answers_as_its_listing() {
        let t = crate::util::test_dir("vfs-lazy");
        for d in [
            "usr/lib/systemd/system/a.service.d",
            "etc/systemd/system",
            "run",
        ] {
            std::fs::create_dir_all(t.join(d)).unwrap();
        }
        std::os::unix::fs::symlink("usr/lib", t.join("lib")).unwrap();
        std::os::unix::fs::symlink("../lib/systemd", t.join("usr/lib/sd")).unwrap();
        std::os::unix::fs::symlink("loop", t.join("usr/lib/loop")).unwrap();
        std::fs::write(t.join("usr/lib/systemd/system/a.service"), "x").unwrap();
        std::fs::write(t.join("usr/lib/systemd/system/e.service"), "").unwrap();
        std::os::unix::fs::symlink("a.service", t.join("usr/lib/systemd/system/b.service"))
            .unwrap();
        let root = Root::open(&t).unwrap();
        let paths = [
            "/lib/systemd/system/a.service",
            "/usr/lib/sd/system/b.service",
            "/usr/lib/sd/system/../system/e.service",
            "/lib/systemd/system/a.service.d",
            "/lib/systemd/system/a.service/x",
            "/usr/lib/loop/x",
            "/usr/lib/./systemd/nope/x",
            "/usr/lib/systemd/system/",
            "/etc/systemd/system/m.target.wants/x.service",
            "/",
        ];
        // Every question, in an order where some directories are looked into before they are
        // listed and others after, and planned changes follow both.
        let ask = |v: &mut Vfs<'_>| {
            let mut out = Vec::new();
            for p in paths {
                for (follow, nonexistent) in [(true, true), (false, false), (true, false)] {
                    out.push(format!("{p} {:?}", v.chase(p, follow, nonexistent)));
                }
                out.push(format!("{:?}", v.lstat(p)));
                out.push(format!("{:?}", v.stat(p)));
                out.push(format!("{:?}", v.readlink(p)));
                out.push(format!("{:?}", v.dir_state(p)));
            }
            out.push(format!("{:?}", v.list("/usr/lib/systemd/system")));
            out.push(format!("{:?}", v.kind_in("/usr/lib", "systemd")));
            v.mkdir_parents("/usr/lib/systemd/system/m.target.wants/a.service");
            out.push(format!(
                "{:?}",
                v.symlink("/x", "/usr/lib/systemd/system/m.target.wants/a.service")
            ));
            out.push(format!(
                "{:?}",
                v.lstat("/lib/systemd/system/m.target.wants/a.service")
            ));
            out.push(format!("{:?}", v.list("/usr/lib")));
            out.push(format!("{:?}", v.ops));
            out
        };
        let mut eager = Vfs::new(&root);
        let mut lazy = Vfs::lazy(&root);
        let want = ask(&mut eager);
        assert_eq!(ask(&mut lazy), want);
        assert!(want.iter().any(|a| a.contains("Link")) && want.iter().any(|a| a.contains("Loop")));
        // The lazy view did look into some directories without listing them.
        let lazy_dir = |d: &str| {
            lazy.dirs
                .get(d)
                .and_then(|d| d.as_ref())
                .is_some_and(|d| d.lazy)
        };
        assert!(lazy_dir("/usr") && !lazy_dir("/usr/lib"));
        let _ = std::fs::remove_dir_all(&t);
    }

    /// Observes what a plan would, recording; returns the witness.
    fn observe(root: &Root) -> Witness {
        let mut v = Vfs::new(root);
        v.record();
        let _ = v.chase("/run/systemd/system", true, true);
        let _ = v.lstat("/etc/systemd/system/a.service");
        let _ = v.list("/etc/systemd/system");
        if let Ok((canon, Kind::Reg)) = v.lstat("/etc/systemd/system/a.service") {
            let _ = v.read(&canon);
        }
        let _ = v.readlink("/etc/systemd/system/l.service");
        // A planned change is not an observation.
        v.mkdir_parents("/etc/systemd/system/m.target.wants/x");
        v.take_witness().unwrap()
    }

    #[test]
    fn a_witness_notices_what_the_plan_depends_on_and_nothing_else() {
        let t = crate::util::test_dir("vfs-witness");
        std::fs::create_dir_all(t.join("etc/systemd/system")).unwrap();
        std::fs::create_dir_all(t.join("run")).unwrap();
        std::fs::write(t.join("etc/systemd/system/a.service"), "one").unwrap();
        std::os::unix::fs::symlink("/x", t.join("etc/systemd/system/l.service")).unwrap();
        let root = Root::open(&t).unwrap();
        let w = observe(&root);
        assert!(!w.is_empty());
        assert_eq!(w.verify(&root), Ok(()));

        // Unrelated entries, and a missing path's parent appearing while it stays missing.
        std::fs::write(t.join("etc/hostname"), "h").unwrap();
        std::fs::create_dir_all(t.join("run/systemd/seats")).unwrap();
        assert_eq!(w.verify(&root), Ok(()));

        // What was looked up or read changes.
        type Change<'a> = (&'a str, &'a dyn Fn(), &'a dyn Fn());
        let cases: [Change<'_>; 4] = [
            (
                "/run/systemd/system",
                &|| std::fs::create_dir(t.join("run/systemd/system")).unwrap(),
                &|| std::fs::remove_dir(t.join("run/systemd/system")).unwrap(),
            ),
            (
                "/etc/systemd/system/a.service",
                &|| std::fs::write(t.join("etc/systemd/system/a.service"), "two").unwrap(),
                &|| std::fs::write(t.join("etc/systemd/system/a.service"), "one").unwrap(),
            ),
            (
                "/etc/systemd/system/l.service",
                &|| {
                    std::fs::remove_file(t.join("etc/systemd/system/l.service")).unwrap();
                    std::os::unix::fs::symlink("/y", t.join("etc/systemd/system/l.service"))
                        .unwrap();
                },
                &|| {
                    std::fs::remove_file(t.join("etc/systemd/system/l.service")).unwrap();
                    std::os::unix::fs::symlink("/x", t.join("etc/systemd/system/l.service"))
                        .unwrap();
                },
            ),
            (
                // Enumerated: any new entry counts, even the one the plan itself makes.
                "/etc/systemd/system",
                &|| std::fs::create_dir(t.join("etc/systemd/system/m.target.wants")).unwrap(),
                &|| std::fs::remove_dir(t.join("etc/systemd/system/m.target.wants")).unwrap(),
            ),
        ];
        for (path, change, undo) in cases {
            change();
            assert_eq!(
                w.verify(&root),
                Err(path.to_string()),
                "after changing {path}"
            );
            undo();
            assert_eq!(w.verify(&root), Ok(()), "after undoing {path}");
        }
        let _ = std::fs::remove_dir_all(&t);
    }
}
