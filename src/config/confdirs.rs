//! systemd's configuration-directory precedence, shared by every `*.d` format: for a subdir
//! such as `tmpfiles.d`, files are collected from `/etc`, `/run`, `/usr/local/lib` and `/usr/lib`
//! (in that order of priority); a file name found in a higher-priority directory hides every
//! file of the same name below it; the result is sorted by file name. A file that is a symlink to
//! `/dev/null`, or empty, masks its name: it is listed with `masked` set and has no content.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use crate::fs::Root;

/// The search directories, highest priority first, relative to the root.
pub const DIRS: [&str; 4] = ["etc", "run", "usr/local/lib", "usr/lib"];

/// One configuration file selected by precedence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfFile {
    /// The file name shared by all same-named files.
    pub name: OsString,
    /// The in-root absolute path of the winning file, e.g. `/usr/lib/sysusers.d/basic.conf`.
    pub path: PathBuf,
    /// A `/dev/null` symlink or an empty file: the name is masked.
    pub masked: bool,
}

/// The search directories for `subdir`, in-root and absolute, highest priority first.
pub fn search_dirs(subdir: &str) -> Vec<PathBuf> {
    DIRS.iter()
        .map(|d| Path::new("/").join(d).join(subdir))
        .collect()
}

/// Lists `*suffix` files of `subdir` under the standard directories.
pub fn list(root: &Root, subdir: &str, suffix: &str) -> Vec<ConfFile> {
    list_in(root, &search_dirs(subdir), suffix)
}

/// Lists `*suffix` files in `dirs` (in-root, highest priority first).
pub fn list_in(root: &Root, dirs: &[PathBuf], suffix: &str) -> Vec<ConfFile> {
    let mut found: Vec<ConfFile> = Vec::new();
    for dir in dirs {
        let Ok(entries) = root.read_dir(dir) else {
            continue;
        };
        for e in entries {
            if !e.name.as_bytes().ends_with(suffix.as_bytes())
                || e.name.as_bytes().starts_with(b".") && suffix.is_empty()
            {
                continue;
            }
            if found.iter().any(|f| f.name == e.name) {
                log::debug!(
                    "Skipping overridden file '{}/{}'.",
                    dir.display(),
                    Path::new(&e.name).display()
                );
                continue;
            }
            let path = dir.join(&e.name);
            // Only symlinks can point to /dev/null; an empty regular file masks by reading as
            // nothing, so it needs no extra system call here.
            let masked = e.file_type == rustix::fs::FileType::Symlink && is_mask(root, &path);
            found.push(ConfFile {
                name: e.name,
                path,
                masked,
            });
        }
    }
    found.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    found
}

/// Whether `path` (in-root) is a masking entry: a symlink to `/dev/null` or an empty file.
pub fn is_mask(root: &Root, path: &Path) -> bool {
    if let Ok(t) = root.read_link(path) {
        if t == Path::new("/dev/null") {
            return true;
        }
    }
    match root.stat(path, true) {
        Ok(st) => {
            let ft = rustix::fs::FileType::from_raw_mode(st.st_mode);
            (ft == rustix::fs::FileType::RegularFile && st.st_size == 0)
                || ft == rustix::fs::FileType::CharacterDevice
                    && st.st_rdev == rustix::fs::makedev(1, 3)
        }
        Err(_) => false,
    }
}

/// Inserts a `--replace=` file into `files` as systemd's `conf_files_insert` does: it takes the
/// place of a same-named file of lower or equal priority, or is inserted in name order. Returns
/// `false` when a same-named file of higher priority hides it.
pub fn insert_replacement(files: &mut Vec<ConfFile>, dirs: &[PathBuf], replacement: &Path) -> bool {
    let Some(name) = replacement.file_name().map(|n| n.to_os_string()) else {
        return false;
    };
    let entry = ConfFile {
        name: name.clone(),
        path: replacement.to_path_buf(),
        masked: false,
    };
    let prio = |p: &Path| {
        dirs.iter()
            .position(|d| p.starts_with(d))
            .unwrap_or(usize::MAX)
    };
    let mut idx = files.len();
    for (i, f) in files.iter().enumerate() {
        match f.name.as_bytes().cmp(name.as_bytes()) {
            std::cmp::Ordering::Equal => {
                if prio(&f.path) <= prio(replacement) {
                    return false;
                }
                files[i] = entry;
                return true;
            }
            std::cmp::Ordering::Greater => {
                idx = i;
                break;
            }
            std::cmp::Ordering::Less => {}
        }
    }
    files.insert(idx, entry);
    true
}

/// Formats the files for `--cat-config` as systemd does: each file preceded by `# path`, with a
/// blank line between files.
pub fn cat_config(root: &Root, files: &[ConfFile]) -> String {
    let mut out = String::new();
    for (i, f) in files.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        if f.masked {
            out.push_str(&format!("# {} (masked)\n", f.path.display()));
            continue;
        }
        out.push_str(&format!("# {}\n", f.path.display()));
        if let Ok(text) = root.read(&f.path) {
            out.push_str(&String::from_utf8_lossy(&text));
            if !text.ends_with(b"\n") && !text.is_empty() {
                out.push('\n');
            }
        }
    }
    out
}
