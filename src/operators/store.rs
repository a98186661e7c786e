//! The registry: where captured state lives between boots. Layout (format version 1), below the
//! configured directory (default `/var/lib/pristine/state`):
//!
//! ```text
//! generation.json          the current generation: {format, version, generation, entries, pack}
//! packs/XXXX….pack         the small objects (≤ 64 KiB) of a generation, concatenated in hash
//!                          order; named by the BLAKE3 of its contents
//! objects/XX/XXXX…         larger stash contents, named by their BLAKE3 hash (hex), XX its
//!                          first two digits
//! ```
//!
//! A save writes the pack and the objects the new generation needs that are not there yet (each
//! atomically, content-addressed so a repeat is harmless), then replaces `generation.json` with one atomic
//! rename — that rename is the switch; a crash before it leaves the old generation, after it
//! the new one — and only then removes objects no generation references. Every object is
//! verified against its hash when read. The total size is bounded. This module owns those files
//! and nothing else; every write goes through the root handle.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::policy::{Format, Kind};
use crate::error::{Error, IoContext, Result};
use crate::fs::{Root, WriteOptions};

/// `format` of `generation.json`.
pub const FORMAT: &str = "pristine-state";
/// The version this pristine writes; it reads 1 (no pack) too.
pub const VERSION: u32 = 2;
/// Objects up to this size go into the generation's pack, larger ones are files of their own.
pub const PACK_MAX: u64 = 64 << 10;
/// The manifest's file name.
pub const MANIFEST: &str = "generation.json";

/// Owner of a stashed file: by name (re-resolved at restore), with the ids seen at capture as
/// the fallback when a name is unknown to the target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ownership {
    pub user: Option<String>,
    pub group: Option<String>,
    pub uid: u32,
    pub gid: u32,
}

/// What is stored for one path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Data {
    File {
        mode: u32,
        owner: Ownership,
        /// BLAKE3 of the contents, hex.
        object: String,
        size: u64,
        /// Extended attributes: name → value (hex).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        xattrs: BTreeMap<String, String>,
    },
    Dir {
        mode: u32,
        owner: Ownership,
        /// Extended attributes of the directory: name → value (hex).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        xattrs: BTreeMap<String, String>,
    },
    Symlink {
        target: String,
    },
    Values {
        format: Format,
        values: BTreeMap<String, String>,
    },
}

/// One path of a generation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub path: String,
    pub operator: Kind,
    #[serde(flatten)]
    pub data: Data,
}

/// A generation: everything the registry holds at one time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generation {
    pub format: String,
    pub version: u32,
    pub generation: u64,
    pub entries: Vec<Entry>,
    /// The pack holding the small objects (version 2), set by [`Store::commit`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pack: Option<Pack>,
}

/// A pack file: its name and where each object is in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pack {
    /// BLAKE3 of the pack's contents (hex); the file is `packs/NAME.pack`.
    pub name: String,
    /// Object hash → [offset, length].
    pub index: BTreeMap<String, [u64; 2]>,
}

impl Generation {
    pub fn new(generation: u64, mut entries: Vec<Entry>) -> Generation {
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Generation {
            format: FORMAT.into(),
            version: VERSION,
            generation,
            entries,
            pack: None,
        }
    }

    /// The object hashes the generation references.
    pub fn objects(&self) -> BTreeSet<&str> {
        self.objects_sized().into_keys().collect()
    }

    /// The object hashes with their sizes.
    fn objects_sized(&self) -> BTreeMap<&str, u64> {
        self.entries
            .iter()
            .filter_map(|e| match &e.data {
                Data::File { object, size, .. } => Some((object.as_str(), *size)),
                _ => None,
            })
            .collect()
    }

    pub fn entry(&self, path: &str) -> Option<&Entry> {
        self.entries
            .binary_search_by(|e| e.path.as_str().cmp(path))
            .ok()
            .map(|i| &self.entries[i])
    }
}

/// Hex BLAKE3 of `data`.
pub fn hash(data: &[u8]) -> String {
    blake3::hash(data).to_hex().to_string()
}

/// Why an object could not be used.
#[derive(Debug)]
pub enum ObjectError {
    Missing,
    Corrupt,
    TooLarge,
    Io(io::Error),
}

impl std::fmt::Display for ObjectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ObjectError::Missing => write!(f, "object missing from the registry"),
            ObjectError::Corrupt => write!(f, "object does not match its hash (corrupt)"),
            ObjectError::TooLarge => write!(f, "object larger than the registry's max-size"),
            ObjectError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl ObjectError {
    /// As an engine error about the object `h`.
    pub fn into_error(self, h: &str) -> Error {
        let what = format!("object {}", &h[..h.len().min(16)]);
        match self {
            ObjectError::Io(e) => Error::io("read registry", what, e),
            other => Error::invalid("read registry", what, other.to_string()),
        }
    }
}

/// The root a registry lives in: the target's (an in-root directory) or a file system of its
/// own (a device pristine mounted, see [`super::device`]).
#[derive(Debug)]
pub enum RegistryRoot<'r> {
    Target(&'r Root),
    Device(Root),
}

impl std::ops::Deref for RegistryRoot<'_> {
    type Target = Root;
    fn deref(&self) -> &Root {
        match self {
            RegistryRoot::Target(r) => r,
            RegistryRoot::Device(r) => r,
        }
    }
}

/// The registry in a directory of a root.
pub struct Store<'r> {
    pub root: RegistryRoot<'r>,
    /// Directory in `root`.
    pub dir: PathBuf,
    /// Bound on the bytes of objects plus manifest.
    pub max_size: u64,
    /// The current generation's pack index and, once an object of it was read, its bytes.
    pack: RefCell<Option<(Pack, Option<Vec<u8>>)>>,
}

fn is_hash(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

const RDONLY: rustix::fs::OFlags = rustix::fs::OFlags::RDONLY
    .union(rustix::fs::OFlags::NOFOLLOW)
    .union(rustix::fs::OFlags::NONBLOCK);

impl<'r> Store<'r> {
    pub fn new(root: RegistryRoot<'r>, dir: PathBuf, max_size: u64) -> Store<'r> {
        Store {
            root,
            dir,
            max_size,
            pack: RefCell::new(None),
        }
    }

    fn manifest(&self) -> PathBuf {
        self.dir.join(MANIFEST)
    }

    /// Path of a loose object (`None` for a name that is not a hash).
    pub fn object_path(&self, h: &str) -> Option<PathBuf> {
        is_hash(h).then(|| self.dir.join("objects").join(&h[..2]).join(h))
    }

    fn pack_path(&self, name: &str) -> Option<PathBuf> {
        is_hash(name).then(|| self.dir.join("packs").join(format!("{name}.pack")))
    }

    /// The current generation; `Ok(None)` when the registry is empty or absent.
    pub fn read(&self) -> Result<Option<Generation>> {
        let p = self.manifest();
        let bytes = match self.root.stat(&p, false) {
            Ok(st) if u64::try_from(st.st_size).unwrap_or(u64::MAX) > self.max_size => {
                return Err(Error::invalid(
                    "read registry",
                    &p,
                    format!(
                        "larger than the registry's max-size ({} bytes)",
                        self.max_size
                    ),
                ))
            }
            Ok(_) => self.root.read(&p).op("read registry", &p)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("read registry", &p, e)),
        };
        let mut g: Generation = serde_json::from_slice(&bytes)
            .map_err(|e| Error::invalid("parse registry", &p, format!("line {}: {e}", e.line())))?;
        if g.format != FORMAT {
            return Err(Error::invalid(
                "read registry",
                &p,
                "not a pristine state registry",
            ));
        }
        if !(1..=VERSION).contains(&g.version) {
            return Err(Error::invalid(
                "read registry",
                &p,
                format!(
                    "format version {} (this pristine reads versions 1 to {VERSION})",
                    g.version
                ),
            ));
        }
        let n = g.entries.len();
        g.entries.sort_by(|a, b| a.path.cmp(&b.path));
        g.entries.dedup_by(|a, b| a.path == b.path);
        if g.entries.len() != n {
            return Err(Error::invalid("read registry", &p, "duplicate paths"));
        }
        *self.pack.borrow_mut() = g.pack.clone().map(|pk| (pk, None));
        Ok(Some(g))
    }

    /// Whether an object is present in `g` (its pack or a loose file; not verified).
    pub fn has_object(&self, g: &Generation, h: &str) -> bool {
        if let Some(pk) = &g.pack {
            if pk.index.contains_key(h) {
                return self
                    .pack_path(&pk.name)
                    .is_some_and(|p| self.root.exists(&p));
            }
        }
        self.object_path(h).is_some_and(|p| self.root.exists(&p))
    }

    /// Reads a whole registry file, bounded by `max_size`.
    fn read_file(&self, p: &Path) -> Result<Vec<u8>, ObjectError> {
        let fd = match self.root.open_path(p, RDONLY, rustix::fs::Mode::empty()) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ObjectError::Missing),
            Err(e) => return Err(ObjectError::Io(e)),
        };
        crate::fs::read_regular(&fd, self.max_size).map_err(|e| match e {
            crate::fs::ReadError::NotRegular => ObjectError::Corrupt,
            crate::fs::ReadError::TooLarge => ObjectError::TooLarge,
            crate::fs::ReadError::Io(e) => ObjectError::Io(e.into()),
        })
    }

    /// Reads an object of the generation last [`read`](Store::read) (from its pack, read once,
    /// or its own file) and verifies it against its hash.
    pub fn object(&self, h: &str) -> Result<Vec<u8>, ObjectError> {
        let mut cache = self.pack.borrow_mut();
        if let Some((pk, bytes)) = cache.as_mut() {
            if let Some(&[off, len]) = pk.index.get(h) {
                if bytes.is_none() {
                    let p = self.pack_path(&pk.name).ok_or(ObjectError::Corrupt)?;
                    *bytes = Some(self.read_file(&p)?);
                }
                let all = bytes.as_deref().unwrap_or_default();
                let data = usize::try_from(off)
                    .ok()
                    .zip(usize::try_from(off.saturating_add(len)).ok())
                    .and_then(|(a, b)| all.get(a..b))
                    .ok_or(ObjectError::Corrupt)?;
                if hash(data) != h {
                    return Err(ObjectError::Corrupt);
                }
                return Ok(data.to_vec());
            }
        }
        drop(cache);
        let p = self.object_path(h).ok_or(ObjectError::Corrupt)?;
        let data = self.read_file(&p)?;
        if hash(&data) != h {
            return Err(ObjectError::Corrupt);
        }
        Ok(data)
    }

    /// Writes `g` as the new current generation with the objects it needs (from `objects`,
    /// hash → bytes, else from the current generation), then drops what nothing references.
    pub fn commit(&self, g: &Generation, objects: &BTreeMap<String, Vec<u8>>) -> Result<()> {
        let sized = g.objects_sized();
        let total: u64 = sized.values().fold(0, |a, s| a.saturating_add(*s));
        let get = |h: &str| -> Result<Vec<u8>> {
            match objects.get(h) {
                Some(b) => Ok(b.clone()),
                None => self.object(h).map_err(|e| e.into_error(h)),
            }
        };
        // The pack: every small object, in hash order.
        let mut pack_bytes = Vec::new();
        let mut index = BTreeMap::new();
        for (h, size) in &sized {
            if *size > PACK_MAX {
                continue;
            }
            let b = get(h)?;
            index.insert(h.to_string(), [pack_bytes.len() as u64, b.len() as u64]);
            pack_bytes.extend_from_slice(&b);
        }
        let mut g = g.clone();
        g.version = VERSION;
        g.pack = (!index.is_empty()).then(|| Pack {
            name: hash(&pack_bytes),
            index,
        });
        let mut json =
            serde_json::to_vec(&g).map_err(|e| Error::msg("encode registry", e.to_string()))?;
        json.push(b'\n');
        let total = total.saturating_add(json.len() as u64);
        if total > self.max_size {
            return Err(Error::invalid(
                "save",
                &self.dir,
                format!(
                    "the new generation needs {total} bytes, more than the registry's max-size \
                     of {} bytes ([state] max-size); nothing saved",
                    self.max_size
                ),
            ));
        }
        let opts = WriteOptions {
            mode: Some(0o600),
            ..Default::default()
        };
        self.root
            .mkdir_all(&self.dir, 0o700)
            .op("create directory", &self.dir)?;
        if let Some(pk) = &g.pack {
            let p = self
                .pack_path(&pk.name)
                .ok_or_else(|| Error::msg("name pack", "bad hash"))?;
            if !self.root.exists(&p) {
                let parent = self.dir.join("packs");
                self.root
                    .mkdir_all(&parent, 0o700)
                    .op("create directory", &parent)?;
                self.root
                    .write_atomic(&p, &pack_bytes, &opts)
                    .op("write", &p)?;
            }
        }
        for (h, size) in &sized {
            if *size <= PACK_MAX {
                continue;
            }
            let p = self
                .object_path(h)
                .ok_or_else(|| Error::msg("name object", format!("bad object name {h}")))?;
            if self.root.exists(&p) {
                continue;
            }
            let data = get(h)?;
            if let Some(parent) = p.parent() {
                self.root
                    .mkdir_all(parent, 0o700)
                    .op("create directory", parent)?;
            }
            self.root.write_atomic(&p, &data, &opts).op("write", &p)?;
        }
        let m = self.manifest();
        self.root.write_atomic(&m, &json, &opts).op("write", &m)?;
        *self.pack.borrow_mut() = g.pack.clone().map(|pk| (pk, Some(pack_bytes)));
        self.tidy(&g)
    }

    /// Removes packs and objects `g` does not reference (left by a save interrupted after its
    /// switch) and stray temporary files; writes nothing when there are none.
    pub fn tidy(&self, g: &Generation) -> Result<()> {
        let keep = g.objects();
        let pack = g.pack.as_ref().map(|p| format!("{}.pack", p.name));
        let unlink = |p: PathBuf| self.root.unlink(&p).op("remove", &p);
        // Temporary files of a write cut short by a crash.
        for sub in [PathBuf::new(), PathBuf::from("packs")] {
            let d = self.dir.join(&sub);
            for e in self.root.read_dir(&d).unwrap_or_default() {
                let stray = e.name.as_encoded_bytes().starts_with(b".#")
                    || (!sub.as_os_str().is_empty() && pack.as_deref() != e.name.to_str());
                if stray {
                    unlink(d.join(&e.name))?;
                }
            }
        }
        let objects = self.dir.join("objects");
        let Ok(dirs) = self.root.read_dir(&objects) else {
            return Ok(());
        };
        let packed = |n: &str| g.pack.as_ref().is_some_and(|p| p.index.contains_key(n));
        for d in dirs {
            let dp = objects.join(&d.name);
            let Ok(files) = self.root.read_dir(&dp) else {
                continue;
            };
            let mut left = files.len();
            for f in files {
                let name = f.name.to_string_lossy();
                if keep.contains(name.as_ref()) && !packed(&name) {
                    continue;
                }
                unlink(dp.join(&f.name))?;
                left -= 1;
            }
            if left == 0 {
                self.root.rmdir(&dp).op("remove directory", &dp)?;
            }
        }
        Ok(())
    }

    /// Empties the registry, keeping the entries `keep` accepts (a factory reset's keep-list).
    /// Returns how many entries were dropped.
    pub fn clear(&self, keep: impl Fn(&str) -> bool) -> Result<usize> {
        let Some(g) = self.read()? else {
            return Ok(0);
        };
        let (kept, dropped): (Vec<Entry>, Vec<Entry>) =
            g.entries.into_iter().partition(|e| keep(&e.path));
        if dropped.is_empty() {
            return Ok(0);
        }
        let p = self.manifest();
        if kept.is_empty() {
            self.root.unlink(&p).op("remove", &p)?;
            self.tidy(&Generation::new(0, Vec::new()))?;
        } else {
            let next = Generation::new(g.generation + 1, kept);
            self.commit(&next, &BTreeMap::new())?;
        }
        Ok(dropped.len())
    }
}

/// The in-root directory a registry lives in, from `[state] registry`.
pub fn registry_dir(setting: &str) -> Result<PathBuf> {
    let p = Path::new(setting);
    if !p.is_absolute() || setting.split('/').any(|c| c == "..") {
        return Err(Error::msg(
            format!("use [state] registry '{setting}'"),
            "it must be an absolute path without '..'",
        ));
    }
    if p.starts_with("/etc") {
        return Err(Error::msg(
            format!("use [state] registry '{setting}'"),
            "it is under /etc, which the registry restores",
        ));
    }
    Ok(p.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, data: &[u8]) -> (Entry, String, Vec<u8>) {
        let h = hash(data);
        (
            Entry {
                path: path.into(),
                operator: Kind::Stash,
                data: Data::File {
                    mode: 0o644,
                    owner: Ownership {
                        user: None,
                        group: None,
                        uid: 0,
                        gid: 0,
                    },
                    object: h.clone(),
                    size: data.len() as u64,
                    xattrs: BTreeMap::new(),
                },
            },
            h,
            data.to_vec(),
        )
    }

    #[test]
    fn commit_read_verify_gc_clear_and_bound() {
        let d = crate::util::test_dir("store");
        let root = Root::open(&d).expect("root");
        let store = Store::new(RegistryRoot::Target(&root), PathBuf::from("/reg"), 4096);
        assert_eq!(store.read().expect("read"), None);
        let (a, ha, da) = file("/etc/a", b"one");
        let (b, hb, db) = file("/etc/b", b"two");
        let objects: BTreeMap<_, _> = [(ha.clone(), da), (hb.clone(), db)].into();
        let g1 = Generation::new(1, vec![b.clone(), a.clone()]);
        store.commit(&g1, &objects).expect("commit");
        let read = store.read().expect("read").expect("a generation");
        assert_eq!(read.entries, g1.entries);
        assert_eq!(read.version, VERSION);
        // Small objects share one pack; nothing is loose.
        let pack = read.pack.clone().expect("pack");
        assert_eq!(pack.index.len(), 2);
        assert!(!d.join("reg/objects").exists());
        assert_eq!(store.object(&ha).expect("object"), b"one");
        // Corruption is detected per object, the other object still reads.
        let pp = d.join("reg/packs").join(format!("{}.pack", pack.name));
        let mut bytes = std::fs::read(&pp).expect("pack");
        let [off, _] = pack.index[&hb];
        bytes[off as usize] ^= 1;
        std::fs::write(&pp, bytes).expect("write");
        store.read().expect("reread");
        assert!(matches!(store.object(&hb), Err(ObjectError::Corrupt)));
        assert_eq!(store.object(&ha).expect("object a"), b"one");
        assert!(matches!(
            store.object(&hash(b"none")),
            Err(ObjectError::Missing)
        ));
        // A new generation without b drops its object.
        let g2 = Generation::new(2, vec![a.clone()]);
        store.commit(&g2, &BTreeMap::new()).expect("commit 2");
        let read2 = store.read().expect("read").expect("g2");
        assert!(!store.has_object(&read2, &hb));
        assert!(store.has_object(&read2, &ha));
        assert!(!pp.exists(), "the old pack is removed");
        assert_eq!(
            std::fs::read_dir(d.join("reg/packs"))
                .expect("packs")
                .count(),
            1
        );
        // Too large: nothing written.
        let (big, hbig, dbig) = file("/etc/big", &[7u8; 5000]);
        let g3 = Generation::new(3, vec![a.clone(), big]);
        let err = store
            .commit(&g3, &[(hbig.clone(), dbig)].into())
            .expect_err("bounded");
        assert!(err.to_string().contains("max-size"), "{err}");
        assert_eq!(store.read().expect("read").expect("g2").entries, g2.entries);
        assert!(!store.has_object(&read2, &hbig));
        // Clear keeps what the keep-list names.
        assert_eq!(store.clear(|p| p == "/etc/x").expect("clear"), 1);
        assert_eq!(store.read().expect("read"), None);
        assert!(!store.has_object(&read2, &ha));
        assert_eq!(
            std::fs::read_dir(d.join("reg/packs"))
                .expect("packs")
                .count(),
            0
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn unknown_versions_and_bad_names_are_refused() {
        let d = crate::util::test_dir("store-version");
        let root = Root::open(&d).expect("root");
        let store = Store::new(RegistryRoot::Target(&root), PathBuf::from("/reg"), 1 << 20);
        std::fs::create_dir_all(d.join("reg")).expect("mkdir");
        std::fs::write(
            d.join("reg").join(MANIFEST),
            r#"{"format":"pristine-state","version":3,"generation":1,"entries":[]}"#,
        )
        .expect("write");
        let e = store.read().expect_err("version").to_string();
        assert!(e.contains("version 3"), "{e}");
        assert_eq!(store.object_path("../../etc/shadow"), None);
        assert!(registry_dir("/etc/state").is_err());
        assert!(registry_dir("relative").is_err());
        assert!(registry_dir("/var/lib/../x").is_err());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_truncated_pack_loses_only_what_is_missing() {
        let d = crate::util::test_dir("store-short-pack");
        let root = Root::open(&d).expect("root");
        let store = Store::new(RegistryRoot::Target(&root), PathBuf::from("/reg"), 1 << 20);
        let (a, ha, da) = file("/etc/a", &[1u8; 1000]);
        let (b, hb, db) = file("/etc/b", &[2u8; 1000]);
        let g = Generation::new(1, vec![a, b]);
        store
            .commit(
                &g,
                &[(ha.clone(), da.clone()), (hb.clone(), db.clone())].into(),
            )
            .expect("commit");
        let read = store.read().expect("read").expect("g");
        let pk = read.pack.as_ref().expect("pack");
        let path = d.join("reg/packs").join(format!("{}.pack", pk.name));
        let bytes = std::fs::read(&path).expect("pack");
        // Cut in the middle of the later object: the earlier one is still restored, the later
        // one is an error (never a panic, never wrong bytes).
        std::fs::write(&path, &bytes[..1500]).expect("truncate");
        let store = Store::new(RegistryRoot::Target(&root), PathBuf::from("/reg"), 1 << 20);
        let _ = store.read().expect("read").expect("g");
        let got: Vec<_> = [(&ha, &da), (&hb, &db)]
            .iter()
            .map(|(h, want)| store.object(h).map(|v| v == **want))
            .collect();
        assert!(
            got.iter().all(|r| !matches!(r, Ok(false))),
            "wrong bytes: {got:?}"
        );
        assert_eq!(got.iter().filter(|r| r.is_ok()).count(), 1, "{got:?}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn large_objects_stay_loose_and_are_verified() {
        let d = crate::util::test_dir("store-loose");
        let root = Root::open(&d).expect("root");
        let store = Store::new(RegistryRoot::Target(&root), PathBuf::from("/reg"), 1 << 20);
        let (big, h, data) = file("/etc/big", &[9u8; (PACK_MAX + 1) as usize]);
        let (small, hs, ds) = file("/etc/small", b"s");
        let g = Generation::new(1, vec![big, small]);
        store
            .commit(&g, &[(h.clone(), data.clone()), (hs.clone(), ds)].into())
            .expect("commit");
        let read = store.read().expect("read").expect("g");
        assert!(!read.pack.as_ref().expect("pack").index.contains_key(&h));
        let loose = d.join("reg/objects").join(&h[..2]).join(&h);
        assert!(loose.exists());
        assert_eq!(store.object(&h).expect("big"), data);
        std::fs::write(&loose, b"x").expect("corrupt");
        assert!(matches!(store.object(&h), Err(ObjectError::Corrupt)));
        assert_eq!(store.object(&hs).expect("small"), b"s");
        let _ = std::fs::remove_dir_all(&d);
    }
}
