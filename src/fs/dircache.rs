//! The one cache of opened directories: in-root path → directory descriptor.
//!
//! Engines that make many changes in few directories (presets' links, tmpfiles' items) open
//! each directory once, through the root's chase-safe resolver ([`Root::open_dir`]: symlinks
//! stay inside the root, magic links are refused), and then act on its entries with the
//! fd-relative mutations of [`super::at`] or a [`super::Txn`]. A change that removes or replaces
//! the entry at a path makes every descriptor opened at or below it stale:
//! [`DirCache::invalidate`] forgets them, so the next use opens the path afresh.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::Root;

/// See the module documentation. Keys are in-root paths as given (the caller decides whether
/// they are canonical; a cached descriptor is what the path resolved to when it was opened).
#[derive(Debug, Default)]
pub struct DirCache {
    dirs: HashMap<PathBuf, OwnedFd>,
}

impl DirCache {
    pub fn new() -> DirCache {
        DirCache::default()
    }

    /// The directory at the in-root path `dir`, opened on first use.
    pub fn get(&mut self, root: &Root, dir: &Path) -> io::Result<BorrowedFd<'_>> {
        if !self.dirs.contains_key(dir) {
            let fd = root.open_dir(dir)?;
            self.dirs.insert(dir.to_path_buf(), fd);
        }
        match self.dirs.get(dir) {
            Some(fd) => Ok(fd.as_fd()),
            None => Err(io::ErrorKind::NotFound.into()),
        }
    }

    /// The directory holding the in-root path `p` (opened on first use) and `p`'s last
    /// component, which is not resolved. `None` for a path without a last component (the root,
    /// a path ending in `..`).
    pub fn parent<'p>(
        &mut self,
        root: &Root,
        p: &'p Path,
    ) -> io::Result<(BorrowedFd<'_>, &'p OsStr)> {
        let (parent, name) =
            super::split_last(p).ok_or_else(|| super::einval("path has no last component"))?;
        Ok((self.get(root, parent)?, name))
    }

    /// Forgets every directory opened at or below the in-root path `p` (after `p` was removed,
    /// renamed or replaced).
    pub fn invalidate(&mut self, p: &Path) {
        let p = super::relative(p);
        if p == Path::new(".") {
            self.dirs.clear();
            return;
        }
        self.dirs.retain(|d, _| !super::relative(d).starts_with(p));
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.dirs.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_once_and_forgets_what_is_replaced() {
        let d = crate::util::test_dir("fs-dircache");
        std::fs::create_dir_all(d.join("a/b")).unwrap();
        std::fs::create_dir_all(d.join("ab")).unwrap();
        let root = Root::open(&d).unwrap();
        let mut c = DirCache::new();
        let (fd, name) = c.parent(&root, Path::new("/a/b/x")).unwrap();
        assert_eq!(name, "x");
        super::super::at::mkdir(fd, name, 0o755).unwrap();
        assert!(d.join("a/b/x").is_dir());
        c.get(&root, Path::new("/a")).unwrap();
        c.get(&root, Path::new("/ab")).unwrap();
        assert_eq!(c.dirs.len(), 3);
        c.invalidate(Path::new("/a"));
        // `/ab` is not below `/a`.
        assert_eq!(c.dirs.keys().collect::<Vec<_>>(), [Path::new("/ab")]);
        // Replaced on disk: the next use opens the new directory.
        std::fs::rename(d.join("a"), d.join("old")).unwrap();
        std::fs::create_dir_all(d.join("a/b")).unwrap();
        let (fd, name) = c.parent(&root, Path::new("/a/b/y")).unwrap();
        super::super::at::mkdir(fd, name, 0o755).unwrap();
        assert!(d.join("a/b/y").is_dir());
        assert!(c.get(&root, Path::new("/missing")).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
