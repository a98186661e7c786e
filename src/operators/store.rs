//! The registry: where captured state lives between boots. Layout (format version 1), below the
//! configured directory (default `/var/lib/pristine/state`):
//!
//! ```text
//! generation.json          the current generation: {format, version, generation, entries}
//! objects/XX/XXXX…         stash contents, named by their BLAKE3 hash (hex), XX its first two digits
//! ```
//!
//! A save writes the objects the new generation needs that are not there yet (each atomically,
//! content-addressed so a repeat is harmless), then replaces `generation.json` with one atomic
//! rename — that rename is the switch; a crash before it leaves the old generation, after it
//! the new one — and only then removes objects no generation references. Every object is
//! verified against its hash when read. The total size is bounded. This module owns those files
//! and nothing else; every write goes through the root handle.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::policy::{Format, Kind};
use crate::fs::{Root, WriteOptions};

/// `format` of `generation.json`.
pub const FORMAT: &str = "pristine-state";
/// The version this pristine writes and reads.
pub const VERSION: u32 = 1;
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
}

impl Generation {
    pub fn new(generation: u64, mut entries: Vec<Entry>) -> Generation {
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Generation {
            format: FORMAT.into(),
            version: VERSION,
            generation,
            entries,
        }
    }

    /// The object hashes the generation references.
    pub fn objects(&self) -> BTreeSet<&str> {
        self.entries
            .iter()
            .filter_map(|e| match &e.data {
                Data::File { object, .. } => Some(object.as_str()),
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

/// The registry in a directory of a root.
pub struct Store<'r> {
    pub root: &'r Root,
    /// In-root directory.
    pub dir: PathBuf,
    /// Bound on the bytes of objects plus manifest.
    pub max_size: u64,
}

fn is_hash(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

impl Store<'_> {
    fn manifest(&self) -> PathBuf {
        self.dir.join(MANIFEST)
    }

    /// In-root path of an object (`None` for a name that is not a hash).
    pub fn object_path(&self, h: &str) -> Option<PathBuf> {
        is_hash(h).then(|| self.dir.join("objects").join(&h[..2]).join(h))
    }

    /// The current generation; `Ok(None)` when the registry is empty or absent.
    pub fn read(&self) -> Result<Option<Generation>, String> {
        let p = self.manifest();
        let bytes = match self.root.stat(&p, false) {
            Ok(st) if u64::try_from(st.st_size).unwrap_or(u64::MAX) > self.max_size => {
                return Err(format!(
                    "{}: larger than the registry's max-size ({} bytes)",
                    p.display(),
                    self.max_size
                ))
            }
            Ok(_) => self
                .root
                .read(&p)
                .map_err(|e| format!("{}: {e}", p.display()))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", p.display())),
        };
        let g: Generation = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{}:{}: {e}", p.display(), e.line()))?;
        if g.format != FORMAT {
            return Err(format!("{}: not a pristine state registry", p.display()));
        }
        if g.version != VERSION {
            return Err(format!(
                "{}: format version {} (this pristine reads version {VERSION})",
                p.display(),
                g.version
            ));
        }
        let mut g = g;
        let n = g.entries.len();
        g.entries.sort_by(|a, b| a.path.cmp(&b.path));
        g.entries.dedup_by(|a, b| a.path == b.path);
        if g.entries.len() != n {
            return Err(format!("{}: duplicate paths", p.display()));
        }
        Ok(Some(g))
    }

    /// Whether an object is present (not verified).
    pub fn has_object(&self, h: &str) -> bool {
        self.object_path(h).is_some_and(|p| self.root.exists(&p))
    }

    /// Reads an object and verifies it against its hash.
    pub fn object(&self, h: &str) -> Result<Vec<u8>, ObjectError> {
        let p = self.object_path(h).ok_or(ObjectError::Corrupt)?;
        let flags = rustix::fs::OFlags::RDONLY
            | rustix::fs::OFlags::NOFOLLOW
            | rustix::fs::OFlags::NONBLOCK;
        let fd = match self.root.open_path(&p, flags, rustix::fs::Mode::empty()) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ObjectError::Missing),
            Err(e) => return Err(ObjectError::Io(e)),
        };
        let size = rustix::fs::fstat(&fd)
            .map_err(|e| ObjectError::Io(e.into()))?
            .st_size;
        if u64::try_from(size).unwrap_or(u64::MAX) > self.max_size {
            return Err(ObjectError::TooLarge);
        }
        let data = crate::fs::read_regular(&fd, self.max_size).map_err(|e| match e {
            crate::fs::ReadError::NotRegular => ObjectError::Corrupt,
            crate::fs::ReadError::TooLarge => ObjectError::TooLarge,
            crate::fs::ReadError::Io(e) => ObjectError::Io(e.into()),
        })?;
        if hash(&data) != h {
            return Err(ObjectError::Corrupt);
        }
        Ok(data)
    }

    /// Writes `g` as the new current generation with the `objects` it needs (hash → bytes;
    /// objects already present are not rewritten), then drops objects nothing references.
    pub fn commit(&self, g: &Generation, objects: &BTreeMap<String, Vec<u8>>) -> io::Result<()> {
        let mut json = serde_json::to_vec(g).map_err(io::Error::other)?;
        json.push(b'\n');
        let needed = g.objects();
        let total: u64 = g
            .entries
            .iter()
            .filter_map(|e| match &e.data {
                Data::File { size, .. } => Some(*size),
                _ => None,
            })
            .fold(json.len() as u64, u64::saturating_add);
        if total > self.max_size {
            return Err(io::Error::other(format!(
                "the new generation needs {total} bytes, more than the registry's max-size of {} \
                 bytes ([state] max-size); nothing saved",
                self.max_size
            )));
        }
        self.root.mkdir_all(&self.dir, 0o700)?;
        for h in &needed {
            if self.has_object(h) {
                continue;
            }
            let data = objects
                .get(*h)
                .ok_or_else(|| io::Error::other(format!("object {h} not captured")))?;
            let p = self
                .object_path(h)
                .ok_or_else(|| io::Error::other(format!("bad object name {h}")))?;
            if let Some(parent) = p.parent() {
                self.root.mkdir_all(parent, 0o700)?;
            }
            let opts = WriteOptions {
                mode: Some(0o600),
                ..Default::default()
            };
            self.root.write_atomic(&p, data, &opts)?;
        }
        let opts = WriteOptions {
            mode: Some(0o600),
            ..Default::default()
        };
        self.root.write_atomic(&self.manifest(), &json, &opts)?;
        self.gc(&needed)
    }

    /// Removes objects no longer referenced by `g` (left by a save interrupted after its
    /// switch); writes nothing when there are none.
    pub fn tidy(&self, g: &Generation) -> io::Result<()> {
        self.gc(&g.objects())
    }

    /// Removes objects (and stray temporary files) not in `keep`.
    fn gc(&self, keep: &BTreeSet<&str>) -> io::Result<()> {
        // Temporary files of a write cut short by a crash.
        for e in self.root.read_dir(&self.dir).unwrap_or_default() {
            if e.name.as_encoded_bytes().starts_with(b".#") {
                self.root.unlink(&self.dir.join(&e.name))?;
            }
        }
        let objects = self.dir.join("objects");
        let Ok(dirs) = self.root.read_dir(&objects) else {
            return Ok(());
        };
        for d in dirs {
            let dp = objects.join(&d.name);
            let Ok(files) = self.root.read_dir(&dp) else {
                continue;
            };
            let mut left = files.len();
            for f in files {
                let name = f.name.to_string_lossy();
                if keep.contains(name.as_ref()) {
                    continue;
                }
                self.root.unlink(&dp.join(&f.name))?;
                left -= 1;
            }
            if left == 0 {
                self.root.rmdir(&dp)?;
            }
        }
        Ok(())
    }

    /// Empties the registry, keeping the entries `keep` accepts (a factory reset's keep-list).
    /// Returns how many entries were dropped.
    pub fn clear(&self, keep: impl Fn(&str) -> bool) -> Result<usize, String> {
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
            self.root
                .unlink(&p)
                .map_err(|e| format!("{}: {e}", p.display()))?;
            self.gc(&BTreeSet::new())
                .map_err(|e| format!("{}: {e}", self.dir.display()))?;
        } else {
            let next = Generation::new(g.generation + 1, kept);
            self.commit(&next, &BTreeMap::new())
                .map_err(|e| format!("{}: {e}", self.dir.display()))?;
        }
        Ok(dropped.len())
    }
}

/// The in-root directory a registry lives in, from `[state] registry`.
pub fn registry_dir(setting: &str) -> Result<PathBuf, String> {
    let p = Path::new(setting);
    if !p.is_absolute() || setting.split('/').any(|c| c == "..") {
        return Err(format!(
            "[state] registry '{setting}' must be an absolute path without '..'"
        ));
    }
    if p.starts_with("/etc") {
        return Err(format!(
            "[state] registry '{setting}' is under /etc, which the registry restores"
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
        let store = Store {
            root: &root,
            dir: PathBuf::from("/reg"),
            max_size: 4096,
        };
        assert_eq!(store.read(), Ok(None));
        let (a, ha, da) = file("/etc/a", b"one");
        let (b, hb, db) = file("/etc/b", b"two");
        let objects: BTreeMap<_, _> = [(ha.clone(), da), (hb.clone(), db)].into();
        let g1 = Generation::new(1, vec![b.clone(), a.clone()]);
        store.commit(&g1, &objects).expect("commit");
        assert_eq!(store.read(), Ok(Some(g1.clone())));
        assert_eq!(store.object(&ha).expect("object"), b"one");
        // Corruption is detected, a missing object reported as such.
        std::fs::write(d.join("reg/objects").join(&hb[..2]).join(&hb), "bad").expect("write");
        assert!(matches!(store.object(&hb), Err(ObjectError::Corrupt)));
        assert!(matches!(
            store.object(&hash(b"none")),
            Err(ObjectError::Missing)
        ));
        // A new generation without b drops its object.
        let g2 = Generation::new(2, vec![a.clone()]);
        store.commit(&g2, &BTreeMap::new()).expect("commit 2");
        assert!(!store.has_object(&hb));
        assert!(store.has_object(&ha));
        // Too large: nothing written.
        let (big, hbig, dbig) = file("/etc/big", &[7u8; 5000]);
        let g3 = Generation::new(3, vec![a.clone(), big]);
        let err = store
            .commit(&g3, &[(hbig.clone(), dbig)].into())
            .expect_err("bounded");
        assert!(err.to_string().contains("max-size"), "{err}");
        assert_eq!(store.read(), Ok(Some(g2)));
        assert!(!store.has_object(&hbig));
        // Clear keeps what the keep-list names.
        assert_eq!(store.clear(|p| p == "/etc/x"), Ok(1));
        assert_eq!(store.read(), Ok(None));
        assert!(!store.has_object(&ha));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn unknown_versions_and_bad_names_are_refused() {
        let d = crate::util::test_dir("store-version");
        let root = Root::open(&d).expect("root");
        let store = Store {
            root: &root,
            dir: PathBuf::from("/reg"),
            max_size: 1 << 20,
        };
        std::fs::create_dir_all(d.join("reg")).expect("mkdir");
        std::fs::write(
            d.join("reg").join(MANIFEST),
            r#"{"format":"pristine-state","version":2,"generation":1,"entries":[]}"#,
        )
        .expect("write");
        assert!(store.read().expect_err("version").contains("version 2"));
        assert_eq!(store.object_path("../../etc/shadow"), None);
        assert!(registry_dir("/etc/state").is_err());
        assert!(registry_dir("relative").is_err());
        assert!(registry_dir("/var/lib/../x").is_err());
        let _ = std::fs::remove_dir_all(&d);
    }
}
