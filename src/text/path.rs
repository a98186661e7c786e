//! Path spelling as systemd's `path_simplify` normalises it. Pure: bytes in, bytes out.

/// systemd's `path_simplify`: drops `.` components, duplicate and trailing slashes, keeps `..`
/// (it is not resolved: callers that must refuse it check for it). An absolute path stays
/// absolute (`/` for nothing left); a relative path of only `.` components becomes `.`; the
/// empty path stays empty.
pub fn simplify(p: &[u8]) -> Vec<u8> {
    if p.is_empty() {
        return Vec::new();
    }
    let absolute = p.first() == Some(&b'/');
    let mut out = Vec::with_capacity(p.len());
    for comp in p.split(|&b| b == b'/') {
        if comp.is_empty() || comp == b"." {
            continue;
        }
        if !out.is_empty() || absolute {
            out.push(b'/');
        }
        out.extend_from_slice(comp);
    }
    if out.is_empty() {
        out.push(if absolute { b'/' } else { b'.' });
    }
    out
}

/// [`simplify`] for text.
pub fn simplify_str(p: &str) -> String {
    String::from_utf8_lossy(&simplify(p.as_bytes())).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_path_simplify() {
        for (i, o) in [
            ("//a/./b//", "/a/b"),
            ("/", "/"),
            ("/./", "/"),
            ("/a/../b", "/a/../b"),
            ("a//b/", "a/b"),
            ("./.", "."),
            ("", ""),
        ] {
            assert_eq!(simplify_str(i), o, "{i}");
        }
    }
}
