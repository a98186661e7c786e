//! Globs for the glob-taking line types, matched *inside the root* (systemd globs the
//! root-prefixed host path, so an absolute symlink in the middle of a pattern resolves on the
//! host there). `fnmatch` with `FNM_PATHNAME | FNM_PERIOD`, `{a,b}` brace expansion as
//! `GLOB_BRACE`, and a walker that reads directories through the root handle.

use std::ffi::OsStr;
use std::os::fd::AsFd as _;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use rustix::fs::FileType;

use crate::fs::Root;

/// Whether `s` contains glob magic (`*`, `?`, `[`).
pub fn is_glob(s: &[u8]) -> bool {
    s.iter().any(|c| matches!(c, b'*' | b'?' | b'['))
}

fn match_bracket(p: &[u8], c: u8) -> Option<(bool, usize)> {
    // p starts after '['. Returns (matched, bytes consumed including ']').
    let mut i = 0;
    let negate = matches!(p.first(), Some(b'!') | Some(b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let &pc = p.get(i)?;
        if pc == b']' && !first {
            i += 1;
            break;
        }
        first = false;
        let lo = if pc == b'\\' {
            i += 1;
            *p.get(i)?
        } else {
            pc
        };
        i += 1;
        if p.get(i) == Some(&b'-') && p.get(i + 1).is_some_and(|&x| x != b']') {
            let hi = p[i + 1];
            i += 2;
            if lo <= c && c <= hi {
                matched = true;
            }
        } else if lo == c {
            matched = true;
        }
    }
    Some((matched != negate, i))
}

/// `fnmatch(pattern, s, FNM_PATHNAME | FNM_PERIOD)` (with `pathname` false: only `FNM_PERIOD`
/// for one component).
pub fn fnmatch(pat: &[u8], s: &[u8], pathname: bool) -> bool {
    fn inner(p: &[u8], s: &[u8], pathname: bool, at_start: bool) -> bool {
        let (mut pi, mut si) = (0, 0);
        let mut start = at_start;
        while pi < p.len() {
            let leading_dot = s.get(si) == Some(&b'.') && start;
            match p[pi] {
                b'*' => {
                    if leading_dot {
                        return false;
                    }
                    while pi < p.len() && p[pi] == b'*' {
                        pi += 1;
                    }
                    if pi == p.len() {
                        return !pathname || !s[si..].contains(&b'/');
                    }
                    let mut k = si;
                    loop {
                        if inner(&p[pi..], &s[k..], pathname, false) {
                            return true;
                        }
                        if k >= s.len() || (pathname && s[k] == b'/') {
                            return false;
                        }
                        k += 1;
                    }
                }
                b'?' => {
                    let Some(&c) = s.get(si) else { return false };
                    if (pathname && c == b'/') || leading_dot {
                        return false;
                    }
                    pi += 1;
                    si += 1;
                }
                b'[' => {
                    let Some(&c) = s.get(si) else { return false };
                    if (pathname && c == b'/') || leading_dot {
                        return false;
                    }
                    match match_bracket(&p[pi + 1..], c) {
                        Some((true, n)) => {
                            pi += 1 + n;
                            si += 1;
                        }
                        Some((false, _)) => return false,
                        None => {
                            if c != b'[' {
                                return false;
                            }
                            pi += 1;
                            si += 1;
                        }
                    }
                }
                b'\\' if pi + 1 < p.len() => {
                    if s.get(si) != Some(&p[pi + 1]) {
                        return false;
                    }
                    pi += 2;
                    si += 1;
                }
                c => {
                    if s.get(si) != Some(&c) {
                        return false;
                    }
                    pi += 1;
                    si += 1;
                }
            }
            start = pathname && s.get(si.wrapping_sub(1)) == Some(&b'/');
        }
        si == s.len()
    }
    inner(pat, s, pathname, true)
}

/// `GLOB_BRACE` expansion: `a{b,c}d` → `abd`, `acd` (nested braces supported).
pub fn expand_braces(p: &[u8]) -> Vec<Vec<u8>> {
    let mut depth = 0;
    let mut open = None;
    for (i, &c) in p.iter().enumerate() {
        match c {
            b'{' => {
                if depth == 0 {
                    open = Some(i);
                }
                depth += 1;
            }
            b'}' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    let o = open.unwrap_or(0);
                    let body = &p[o + 1..i];
                    let mut alts = Vec::new();
                    let (mut d, mut last) = (0, 0);
                    for (j, &b) in body.iter().enumerate() {
                        match b {
                            b'{' => d += 1,
                            b'}' => d -= 1,
                            b',' if d == 0 => {
                                alts.push(&body[last..j]);
                                last = j + 1;
                            }
                            _ => {}
                        }
                    }
                    alts.push(&body[last..]);
                    if alts.len() < 2 {
                        continue;
                    }
                    let mut out = Vec::new();
                    for a in alts {
                        let mut s = p[..o].to_vec();
                        s.extend_from_slice(a);
                        s.extend_from_slice(&p[i + 1..]);
                        out.extend(expand_braces(&s));
                    }
                    return out;
                }
            }
            _ => {}
        }
    }
    vec![p.to_vec()]
}

fn unescape(c: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(c.len());
    let mut i = 0;
    while i < c.len() {
        if c[i] == b'\\' && i + 1 < c.len() {
            i += 1;
        }
        out.push(c[i]);
        i += 1;
    }
    out
}

/// Expands `pattern` (an in-root absolute path) against the tree. Paths without magic are
/// returned if they exist (a dangling symlink counts). Directories in the middle are followed
/// inside the root.
pub fn glob(root: &Root, pattern: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for pat in expand_braces(pattern.as_os_str().as_bytes()) {
        let comps: Vec<&[u8]> = pat
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty())
            .collect();
        let mut cur: Vec<Vec<u8>> = vec![Vec::new()];
        for (k, comp) in comps.iter().enumerate() {
            let last = k + 1 == comps.len();
            let mut next = Vec::new();
            for base in &cur {
                if is_glob(comp) {
                    let dir = if base.is_empty() {
                        PathBuf::from("/")
                    } else {
                        PathBuf::from(OsStr::from_bytes(base))
                    };
                    // glob()'s opendir is systemd's opendir_nomod(): no final symlink. Matches
                    // come in readdir order (systemd globs with GLOB_NOSORT), which decides
                    // the outcome when one match changes what a later one resolves through.
                    let Ok(dir_fd) = root.open_path(
                        &dir,
                        rustix::fs::OFlags::RDONLY
                            | rustix::fs::OFlags::DIRECTORY
                            | rustix::fs::OFlags::NOFOLLOW,
                        rustix::fs::Mode::empty(),
                    ) else {
                        continue;
                    };
                    let _ = crate::fs::for_each_entry(dir_fd.as_fd(), |name, _| {
                        if fnmatch(comp, name, false) {
                            let mut p = base.clone();
                            p.push(b'/');
                            p.extend_from_slice(name);
                            next.push(p);
                        }
                    });
                } else {
                    let mut p = base.clone();
                    p.push(b'/');
                    p.extend_from_slice(&unescape(comp));
                    next.push(p);
                }
            }
            // A literal component on the way is not looked at by itself: whatever comes after
            // it resolves through it (inside the root, as the checks here do), so a missing or
            // non-directory one fails there the same way. Matches of a wildcard are pruned at
            // once (there may be many).
            if !last && !is_glob(comp) {
                cur = next;
                continue;
            }
            cur = next
                .into_iter()
                .filter(|p| {
                    let path = Path::new(OsStr::from_bytes(p));
                    if last {
                        root.exists(path)
                    } else {
                        root.stat(path, true).is_ok_and(|st| {
                            FileType::from_raw_mode(st.st_mode) == FileType::Directory
                        })
                    }
                })
                .collect();
        }
        for p in cur {
            let p = if p.is_empty() {
                PathBuf::from("/")
            } else {
                PathBuf::from(OsStr::from_bytes(&p))
            };
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        assert!(fnmatch(b"/a/*", b"/a/b", true));
        assert!(!fnmatch(b"/a/*", b"/a/b/c", true));
        assert!(!fnmatch(b"/a/*", b"/a/.b", true));
        assert!(fnmatch(b"/a/.*", b"/a/.b", true));
        assert!(fnmatch(b"f?o[0-9]", b"foo1", false));
        assert!(!fnmatch(b"f[!o]o", b"foo", false));
        assert!(fnmatch(b"*", b"", false));
        assert_eq!(
            expand_braces(b"/a{b,c{d,e}}"),
            vec![b"/ab".to_vec(), b"/acd".to_vec(), b"/ace".to_vec()]
        );
    }
}
