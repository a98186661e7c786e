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
#[derive(Clone, Debug, PartialEq, Eq)]
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
        if is_clean(parent) {
            // Both sides are in canonical spelling: equal paths are equal strings.
            return self.search_path.iter().any(|p| p == parent)
                || self
                    .search_path
                    .iter()
                    .any(|p| !is_clean(p) && path_equal(p, parent));
        }
        self.search_path.iter().any(|p| path_equal(p, parent))
    }

    /// Whether `path` lies below a search-path directory (`path_startswith_strv`).
    pub fn under_search_path(&self, path: &str) -> bool {
        if is_clean(path) {
            return self.search_path.iter().any(|p| {
                if is_clean(p) {
                    clean_startswith(path, p)
                } else {
                    path_startswith(path, p).is_some()
                }
            });
        }
        self.search_path
            .iter()
            .any(|p| path_startswith(path, p).is_some())
    }

    pub fn is_generator_or_transient(&self, path: &str) -> bool {
        let parent = parent_of(path);
        let dirs = [GENERATOR, GENERATOR_EARLY, GENERATOR_LATE, TRANSIENT];
        if is_clean(parent) {
            // The constants are spelled canonically too.
            return dirs.contains(&parent);
        }
        dirs.iter().any(|d| path_equal(d, parent))
    }

    /// `path_is_config(…, check_parent=true)`.
    pub fn parent_is_config(&self, path: &str) -> bool {
        let parent = parent_of(path);
        if is_clean(parent) {
            return parent == PERSISTENT_CONFIG || parent == RUNTIME_CONFIG;
        }
        path_equal(parent, PERSISTENT_CONFIG) || path_equal(parent, RUNTIME_CONFIG)
    }
}

/// The components of a path, without empty and `.` components (systemd's path comparison).
pub fn components(p: &str) -> impl DoubleEndedIterator<Item = &str> {
    p.split('/').filter(|c| !c.is_empty() && *c != ".")
}

/// Whether `p` is spelled canonically: non-empty, no empty or `.` components, no trailing
/// slash (except `/` itself). Two such paths are [`path_equal`] exactly when they are equal
/// strings, which lets the hot callers skip the component-wise comparison.
pub fn is_clean(p: &str) -> bool {
    let b = p.as_bytes();
    if b == b"/" {
        return true;
    }
    if b.is_empty() || b[b.len() - 1] == b'/' {
        return false;
    }
    // A relative path starting with a `.` component.
    if b[0] == b'.' && b.get(1).is_none_or(|&c| c == b'/') {
        return false;
    }
    // An empty (`//`) or `.` (`/./`, `/.` at the end) component after a slash.
    for (i, &c) in b.iter().enumerate() {
        if c == b'/' {
            match (b.get(i + 1), b.get(i + 2)) {
                (Some(b'/'), _) => return false,
                (Some(b'.'), None | Some(b'/')) => return false,
                _ => {}
            }
        }
    }
    true
}

/// `path_startswith(path, prefix).is_some()` for two [`is_clean`] paths.
pub fn clean_startswith(path: &str, prefix: &str) -> bool {
    if prefix == "/" {
        return path.starts_with('/');
    }
    path.starts_with(prefix)
        && (path.len() == prefix.len() || path.as_bytes()[prefix.len()] == b'/')
}

/// `path_equal`.
pub fn path_equal(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    if is_clean(a) && is_clean(b) {
        return false;
    }
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

/// The length of `p` without trailing slashes.
fn trimmed_len(p: &str) -> usize {
    let b = p.as_bytes();
    let mut end = b.len();
    while end > 0 && b[end - 1] == b'/' {
        end -= 1;
    }
    end
}

/// The directory part of a path (lexical; `/` for top-level names).
pub fn parent_of(p: &str) -> &str {
    let end = trimmed_len(p);
    match p.as_bytes()[..end].iter().rposition(|&c| c == b'/') {
        Some(0) => "/",
        Some(i) => &p[..i],
        None => ".",
    }
}

/// The last component of a path.
pub fn file_name(p: &str) -> &str {
    let end = trimmed_len(p);
    match p.as_bytes()[..end].iter().rposition(|&c| c == b'/') {
        Some(i) => &p[i + 1..end],
        None => &p[..end],
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
        assert_eq!(file_name("/a/b.service//"), "b.service");
        assert_eq!(file_name("b"), "b");
        assert_eq!(parent_of("/a/b//"), "/a");
        assert_eq!(parent_of("/"), ".");
        assert_eq!(parent_of("b"), ".");
        assert!(is_clean("/") && is_clean("/a/b") && is_clean("a/b"));
        assert!(!is_clean("/a//b") && !is_clean("/a/./b") && !is_clean("/a/") && !is_clean(""));
        assert!(!is_clean("./a") && !is_clean("/a/.") && !is_clean(".") && !is_clean("//"));
        assert!(is_clean(".a/b") && is_clean("/a/.b") && is_clean("/a/..") && is_clean("a"));
        assert!(!is_clean("a//b") && !is_clean("/./a"));
        assert!(path_equal("/a/b", "/a/b") && !path_equal("/a/b", "/a/c"));
        assert!(path_equal("/a/./b", "/a/b") && !path_equal("a/b", "/a/b"));
        assert!(clean_startswith("/a/b", "/a") && clean_startswith("/a", "/a"));
        assert!(!clean_startswith("/ab", "/a") && clean_startswith("/x", "/"));
        let lp = LookupPaths::system(false);
        assert!(lp.under_search_path("/usr/lib/systemd/system//a.wants/a.service"));
        assert!(!lp.under_search_path("/usr/lib/systemd/systemx/a.service"));
        assert!(lp.in_search_path("/usr/lib/systemd//system/./a.service"));
        assert!(lp.is_generator_or_transient("/run/systemd/generator/a.service"));
        assert!(lp.is_generator_or_transient("/run/systemd//transient/./a.service"));
        assert!(!lp.is_generator_or_transient("/run/systemd/system/a.service"));
        assert!(lp.parent_is_config("/etc/systemd/system/a.service"));
        assert!(lp.parent_is_config("/run//systemd/system/a.service"));
        assert!(!lp.parent_is_config("/etc/systemd/system/x.wants/a.service"));
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
