//! The system unit search path as systemd 257's `lookup_paths_init()` builds it for
//! `--root=` (system scope; user scope is never used by pristine), and the special directories
//! in it. Paths are in-root and absolute.

use crate::fs::Root;

/// `/etc/systemd/system`: where enablement symlinks are written.
pub const PERSISTENT_CONFIG: &str = "/etc/systemd/system";
/// `/run/systemd/system`.
pub const RUNTIME_CONFIG: &str = "/run/systemd/system";
pub const TRANSIENT: &str = "/run/systemd/transient";
pub const GENERATOR_EARLY: &str = "/run/systemd/generator.early";
pub const GENERATOR: &str = "/run/systemd/generator";
pub const GENERATOR_LATE: &str = "/run/systemd/generator.late";
/// Units of a tree that is not usr-merged (Debian ≤ 12 packages install here).
pub const SPLIT_USR_DIR: &str = "/lib/systemd/system";

/// The search path, highest priority first.
#[derive(Clone, Debug)]
pub struct LookupPaths {
    pub search_path: Vec<String>,
}

impl LookupPaths {
    /// systemd's order. `split_usr` appends `/lib/systemd/system` (a pristine extension for
    /// trees whose `/lib` is a real directory; systemctl 257 does not look there).
    pub fn system(split_usr: bool) -> LookupPaths {
        let mut search_path: Vec<String> = [
            "/etc/systemd/system.control",
            "/run/systemd/system.control",
            TRANSIENT,
            GENERATOR_EARLY,
            PERSISTENT_CONFIG,
            "/etc/systemd/system.attached",
            RUNTIME_CONFIG,
            "/run/systemd/system.attached",
            GENERATOR,
            "/usr/local/lib/systemd/system",
            "/usr/lib/systemd/system",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if split_usr {
            search_path.push(SPLIT_USR_DIR.to_string());
        }
        search_path.push(GENERATOR_LATE.to_string());
        LookupPaths { search_path }
    }

    /// The search path for `root`: `/lib/systemd/system` is added when `/lib` is a real
    /// directory (not the usr-merge symlink) holding `systemd/system`.
    pub fn for_root(root: &Root) -> LookupPaths {
        let split = matches!(
            root.file_type(std::path::Path::new("lib")),
            Ok(Some(rustix::fs::FileType::Directory))
        ) && root.exists(std::path::Path::new(SPLIT_USR_DIR));
        LookupPaths::system(split)
    }

    /// Whether `path`'s parent directory is in the search path (`in_search_path`).
    pub fn in_search_path(&self, path: &str) -> bool {
        let parent = parent_of(path);
        self.search_path.iter().any(|p| path_equal(p, parent))
    }

    /// Whether `path` lies below a search-path directory (`path_startswith_strv`).
    pub fn under_search_path(&self, path: &str) -> bool {
        self.search_path
            .iter()
            .any(|p| path_startswith(path, p).is_some())
    }

    pub fn is_generator_or_transient(&self, path: &str) -> bool {
        let parent = parent_of(path);
        [GENERATOR, GENERATOR_EARLY, GENERATOR_LATE, TRANSIENT]
            .iter()
            .any(|d| path_equal(d, parent))
    }

    /// `path_is_config(…, check_parent=true)`.
    pub fn parent_is_config(&self, path: &str) -> bool {
        let parent = parent_of(path);
        path_equal(parent, PERSISTENT_CONFIG) || path_equal(parent, RUNTIME_CONFIG)
    }
}

/// The components of a path, without empty and `.` components (systemd's path comparison).
pub fn components(p: &str) -> impl DoubleEndedIterator<Item = &str> {
    p.split('/').filter(|c| !c.is_empty() && *c != ".")
}

/// `path_equal`.
pub fn path_equal(a: &str, b: &str) -> bool {
    a.starts_with('/') == b.starts_with('/') && components(a).eq(components(b))
}

/// `path_startswith`: the rest of `path` after `prefix` (component-wise), or `None`.
pub fn path_startswith<'a>(path: &'a str, prefix: &str) -> Option<Vec<&'a str>> {
    if path.starts_with('/') != prefix.starts_with('/') {
        return None;
    }
    let mut pc = components(path);
    for c in components(prefix) {
        if pc.next()? != c {
            return None;
        }
    }
    Some(pc.collect())
}

/// The directory part of a path (lexical; `/` for top-level names).
pub fn parent_of(p: &str) -> &str {
    let t = p.trim_end_matches('/');
    match t.rfind('/') {
        Some(0) => "/",
        Some(i) => &t[..i],
        None => ".",
    }
}

/// The last component of a path.
pub fn file_name(p: &str) -> &str {
    let t = p.trim_end_matches('/');
    match t.rfind('/') {
        Some(i) => &t[i + 1..],
        None => t,
    }
}

/// Joins a directory and a relative path.
pub fn join(dir: &str, rel: &str) -> String {
    let mut s = String::with_capacity(dir.len() + rel.len() + 1);
    s.push_str(dir);
    if !dir.ends_with('/') {
        s.push('/');
    }
    s.push_str(rel);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_helpers() {
        assert!(path_equal("/etc//systemd/./system/", "/etc/systemd/system"));
        assert!(!path_equal("/etc/systemd", "/etc/systemd/system"));
        assert_eq!(
            path_startswith(
                "/usr/lib/systemd/system/a.service",
                "/usr/lib/systemd/system"
            ),
            Some(vec!["a.service"])
        );
        assert_eq!(
            path_startswith("/usr/lib/systemd/systemx", "/usr/lib/systemd/system"),
            None
        );
        assert_eq!(parent_of("/a/b.service"), "/a");
        assert_eq!(parent_of("/b.service"), "/");
        assert_eq!(file_name("/a/b.service"), "b.service");
        let lp = LookupPaths::system(false);
        assert!(lp.in_search_path("/usr/lib/systemd/system/a.service"));
        assert!(!lp.in_search_path("/usr/lib/systemd/system/a.wants/a.service"));
        assert!(lp.under_search_path("/usr/lib/systemd/system/a.wants/a.service"));
        assert!(!lp.search_path.iter().any(|p| p == SPLIT_USR_DIR));
        assert!(LookupPaths::system(true)
            .search_path
            .iter()
            .any(|p| p == SPLIT_USR_DIR));
    }
}
