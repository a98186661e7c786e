//! Observe and capture: walks the managed space under `/etc` read-only, hands each path to its
//! operator and returns what a save would store (entries plus the stash objects' bytes). Walks
//! are iterative and never follow a symlink; every file read is bounded by the registry's size
//! limit. Nothing here writes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use rustix::fs::FileType;

use super::parsed;
use super::policy::{Format, Kind, Owner, Policy};
use super::store::{hash, Data, Entry, Ownership};
use crate::error::{Error, IoContext, Result};
use crate::fs::Root;
use crate::report::Diagnostic;
use crate::userdb::UserDb;

/// The result of a capture.
#[derive(Debug, Default)]
pub struct Captured {
    pub entries: Vec<Entry>,
    /// hash → contents of every stashed file.
    pub objects: BTreeMap<String, Vec<u8>>,
    pub diagnostics: Vec<Diagnostic>,
    /// Paths two rules claim at the same precedence: not captured, so a save keeps what the
    /// registry held for them.
    pub ambiguous: Vec<String>,
}

/// Longest xattr name list or value kept.
const XATTR_LIMIT: usize = 64 << 10;

/// Captures every path of `/etc` that a `parsed`, `stash` or `generate` rule owns.
pub fn capture(root: &Root, policy: &Policy, max_size: u64) -> Captured {
    let mut out = Captured::default();
    let db = UserDb::load(root).unwrap_or_default();
    let mut starts: BTreeSet<String> = policy
        .rules
        .iter()
        .filter(|r| r.kind != Kind::Reference)
        .map(|r| super::policy::literal_prefix(&r.pattern))
        .collect();
    // A start below another start is walked from the upper one.
    let all: Vec<String> = starts.iter().cloned().collect();
    starts.retain(|s| !all.iter().any(|o| o != s && Path::new(s).starts_with(o)));
    let mut reported = BTreeSet::new();
    let mut total: u64 = 0;
    for start in starts {
        let mut stack = vec![start];
        while let Some(path) = stack.pop() {
            let st = match root.stat(Path::new(&path), false) {
                Ok(st) => st,
                Err(_) => continue,
            };
            let ft = FileType::from_raw_mode(st.st_mode);
            let owner = policy.owner(&path);
            let mut descend = ft == FileType::Directory;
            match owner {
                Owner::Ambiguous(a, b, d) => {
                    out.ambiguous.push(path.clone());
                    if reported.insert((a.origin(), b.origin())) {
                        out.diagnostics.push(Policy::ambiguity(a, b, &path, d));
                    }
                }
                Owner::Rule(r) if r.kind == Kind::Parsed => {
                    descend = false;
                    let format = r.format.unwrap_or(Format::Env);
                    match capture_parsed(root, &path, format) {
                        Ok(Some(values)) => out.entries.push(Entry {
                            path: path.clone(),
                            operator: Kind::Parsed,
                            data: Data::Values { format, values },
                        }),
                        Ok(None) => {}
                        Err(e) => out.diagnostics.push(Diagnostic::notice(
                            Some(Path::new(&path)),
                            0,
                            format!("not captured ({} {}): {e}", r.kind.as_str(), r.origin()),
                        )),
                    }
                }
                Owner::Rule(r) if matches!(r.kind, Kind::Stash | Kind::Generate) => {
                    match capture_node(root, &path, &st, &db, max_size, &mut total) {
                        Ok((data, object)) => {
                            if let Some((h, bytes)) = object {
                                out.objects.insert(h, bytes);
                            }
                            out.entries.push(Entry {
                                path: path.clone(),
                                operator: r.kind,
                                data,
                            });
                        }
                        Err(e) => out.diagnostics.push(Diagnostic::failed(
                            Some(Path::new(&path)),
                            format!("not captured: {e}"),
                        )),
                    }
                }
                _ => {
                    descend = descend && policy.may_claim_below(&path);
                }
            }
            if descend {
                match root.read_dir(Path::new(&path)) {
                    Ok(entries) => {
                        for e in entries.into_iter().rev() {
                            match e.name.to_str() {
                                Some(n) => stack.push(format!("{path}/{n}")),
                                None => out.diagnostics.push(Diagnostic::notice(
                                    Some(Path::new(&path)),
                                    0,
                                    format!("{:?}: name is not UTF-8, not captured", e.name),
                                )),
                            }
                        }
                    }
                    Err(e) => out.diagnostics.push(Diagnostic::failed(
                        Some(Path::new(&path)),
                        format!("cannot list: {e}"),
                    )),
                }
            }
        }
    }
    out.entries.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// Values of a `parsed` path; `Ok(None)` when there is nothing to keep.
fn capture_parsed(
    root: &Root,
    path: &str,
    format: Format,
) -> Result<Option<BTreeMap<String, String>>> {
    let p = Path::new(path);
    match format {
        Format::Units => {
            let mut values: BTreeMap<String, String> = crate::presets::drift(root)
                .into_iter()
                .map(|(u, on)| (u, if on { "enabled" } else { "disabled" }.to_string()))
                .collect();
            let masked = masked_units(root, path);
            // A mask the vendor ships in /etc (its factory copy) that the admin removed.
            let factory = format!("{}{path}", super::restore::FACTORY);
            for u in masked_units(root, &factory) {
                if !masked.contains(&u) {
                    values.insert(u, "unmasked".into());
                }
            }
            for u in masked {
                values.insert(u, "masked".into());
            }
            Ok((!values.is_empty()).then_some(values))
        }
        Format::Accounts => crate::accounts::capture(root).map(|v| (!v.is_empty()).then_some(v)),
        Format::Timezone => {
            let target = root.read_link(p).op("read link", p)?;
            let t = target
                .to_str()
                .ok_or_else(|| Error::invalid("read link", p, "the target is not UTF-8"))?;
            parsed::capture(format, t).map(Some).map_err(|e| e.at(p))
        }
        _ => {
            let text = root.read_to_string(p).op("read", p)?;
            parsed::capture(format, &text)
                .map(Some)
                .map_err(|e| e.at(p))
        }
    }
}

/// Units masked in the directory `dir` (links to `/dev/null`).
pub fn masked_units(root: &Root, dir: &str) -> Vec<String> {
    let Ok(entries) = root.read_dir(Path::new(dir)) else {
        return Vec::new();
    };
    entries
        .into_iter()
        .filter(|e| e.file_type == FileType::Symlink)
        .filter_map(|e| e.name.to_str().map(str::to_string))
        .filter(|n| {
            root.read_link(&Path::new(dir).join(n))
                .is_ok_and(|t| t == Path::new("/dev/null"))
        })
        .collect()
}

type Object = Option<(String, Vec<u8>)>;

/// One stashed node: file (with its object), directory or symlink.
pub fn capture_node(
    root: &Root,
    path: &str,
    st: &rustix::fs::Stat,
    db: &UserDb,
    max_size: u64,
    total: &mut u64,
) -> Result<(Data, Object)> {
    let p = Path::new(path);
    let ft = FileType::from_raw_mode(st.st_mode);
    let owner = || Ownership {
        user: db.user_by_uid(st.st_uid).map(|u| u.name.clone()),
        group: db.group_by_gid(st.st_gid).map(|g| g.name.clone()),
        uid: st.st_uid,
        gid: st.st_gid,
    };
    let mode = st.st_mode & 0o7777;
    let xattrs = || -> Result<BTreeMap<String, String>> {
        Ok(root
            .xattrs(p, XATTR_LIMIT)
            .op("read extended attributes of", p)?
            .into_iter()
            .filter_map(|(n, v)| n.to_str().map(|n| (n.to_string(), crate::util::hex(&v))))
            .collect())
    };
    match ft {
        FileType::Directory => Ok((
            Data::Dir {
                mode,
                owner: owner(),
                xattrs: xattrs()?,
            },
            None,
        )),
        FileType::Symlink => {
            let t = root.read_link(p).op("read link", p)?;
            let target = t
                .to_str()
                .ok_or_else(|| Error::invalid("read link", p, "the target is not UTF-8"))?
                .to_string();
            Ok((Data::Symlink { target }, None))
        }
        FileType::RegularFile => {
            let size = u64::try_from(st.st_size).unwrap_or(u64::MAX);
            *total = total.saturating_add(size);
            if *total > max_size {
                return Err(Error::invalid(
                    "capture",
                    p,
                    format!(
                        "the stash exceeds the registry's max-size of {max_size} bytes \
                         ([state] max-size)"
                    ),
                ));
            }
            let fd = root
                .open_path(
                    p,
                    rustix::fs::OFlags::RDONLY
                        | rustix::fs::OFlags::NOFOLLOW
                        | rustix::fs::OFlags::NONBLOCK,
                    rustix::fs::Mode::empty(),
                )
                .op("open", p)?;
            let bytes = crate::fs::read_regular(&fd, size).map_err(|e| match e {
                crate::fs::ReadError::Io(e) => Error::io("read", p, e.into()),
                _ => Error::invalid("read", p, "changed while being read"),
            })?;
            if bytes.len() as u64 != size {
                return Err(Error::invalid("read", p, "changed while being read"));
            }
            let xattrs = xattrs()?;
            let h = hash(&bytes);
            Ok((
                Data::File {
                    mode,
                    owner: owner(),
                    object: h.clone(),
                    size,
                    xattrs,
                },
                Some((h, bytes)),
            ))
        }
        _ => Err(Error::invalid(
            "capture",
            p,
            "not a regular file, directory or symlink",
        )),
    }
}
