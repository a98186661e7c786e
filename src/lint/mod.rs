//! `pristine lint`: the traps of a stateless image, as a registry of lints.
//!
//! Each lint is a static value — a stable kebab-case id, a severity, a one-line description and
//! fix, and a check over one shared read-only snapshot of the root (the tmpfiles.d and
//! sysusers.d lines, one walk of `/usr` and `/var`, the links in `/etc/systemd/system`). It
//! owns the judgement of a tree; it must never write to it.

pub mod cli;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::FileType;
use serde::Serialize;

use crate::fs::scan::{self as walk, Found, Limits};
use crate::fs::Root;
use crate::text::word::{self, Flags};

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The image does not boot right from an empty `/etc` and `/var`.
    Error,
    /// Likely wrong; check it.
    Warning,
}

/// One lint of the registry.
pub struct Lint {
    pub id: &'static str,
    pub severity: Severity,
    pub description: &'static str,
    pub fix: &'static str,
    check: fn(&Ctx, &mut dyn FnMut(String, String)),
}

/// One problem found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub id: &'static str,
    pub severity: Severity,
    pub path: String,
    pub message: String,
    pub fix: &'static str,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{sev}[{}] {}: {} (fix: {})",
            self.id, self.path, self.message, self.fix
        )
    }
}

/// A tmpfiles.d line, as far as the lints need it.
#[derive(Clone, Debug)]
pub struct TmpLine {
    pub kind: char,
    pub path: String,
    pub argument: Option<String>,
    pub origin: String,
}

/// A sysusers.d `u`/`g` line with its fixed id, if any.
#[derive(Clone, Debug)]
pub struct SysLine {
    pub user: bool,
    pub name: String,
    pub id: Option<u32>,
    /// `u NAME UID:GID`: the primary group id the line also fixes.
    pub gid: Option<u32>,
    pub origin: String,
}

/// The shared snapshot every lint reads.
pub struct Ctx<'r> {
    pub root: &'r Root,
    pub tmpfiles: Vec<TmpLine>,
    pub sysusers: Vec<SysLine>,
    pub usr: Vec<Found>,
    pub var: Vec<Found>,
    pub etc_units: Vec<Found>,
    pub passwd: BTreeMap<String, u32>,
    pub group: BTreeMap<String, u32>,
}

/// The registry, in report order.
pub static LINTS: &[Lint] = &[
    Lint {
        id: "unpinned-owner",
        severity: Severity::Error,
        description: "files in /usr or /var owned by a user or group id no sysusers.d line pins",
        fix: "pin the id with a sysusers.d line (`u NAME UID` / `g NAME GID`), as pristine factory does",
        check: unpinned_owner,
    },
    Lint {
        id: "etc-only-enablement",
        severity: Severity::Error,
        description: "units enabled only by links in /etc/systemd/system, which no preset enables",
        fix: "add `enable UNIT` to a preset file in /usr/lib/systemd/system-preset",
        check: etc_only_enablement,
    },
    Lint {
        id: "tmpfiles-remove-persistent",
        severity: Severity::Error,
        description: "tmpfiles D or R lines on persistent paths, emptied at every boot",
        fix: "use `d` for persistent directories; keep D/R to /run, /tmp and /var/tmp",
        check: remove_persistent,
    },
    Lint {
        id: "tmpfiles-copy-missing-source",
        severity: Severity::Error,
        description: "tmpfiles C lines whose source does not exist",
        fix: "ship the source under /usr/share/factory or fix the argument",
        check: copy_missing_source,
    },
    Lint {
        id: "usr-link-into-etc",
        severity: Severity::Warning,
        description: "symlinks in /usr pointing into /etc at a path no tmpfiles line creates",
        fix: "ship the target in /usr/share/factory/etc with a C line, or point the link into /usr",
        check: usr_link_into_etc,
    },
    Lint {
        id: "machine-id-baked",
        severity: Severity::Error,
        description: "a machine id baked into the image: every instance would share it",
        fix: "remove /etc/machine-id (and a file /var/lib/dbus/machine-id); boot generates it",
        check: machine_id_baked,
    },
    Lint {
        id: "var-uncovered",
        severity: Severity::Warning,
        description: "content in /var that no tmpfiles line recreates: lost with an empty /var",
        fix: "move it to /usr/share/factory/var with a C line, or add a d/f/L line",
        check: var_uncovered,
    },
    Lint {
        id: "sysusers-conflict",
        severity: Severity::Error,
        description: "sysusers.d lines that conflict with each other or with the image's account files",
        fix: "give each name one id and each id one name, matching the ids files carry",
        check: sysusers_conflict,
    },
];

/// Whether the path lies on a file system that does not outlive a boot.
fn volatile(p: &str) -> bool {
    ["/run", "/tmp", "/var/tmp", "/dev", "/proc", "/sys"]
        .iter()
        .any(|v| p == *v || p.starts_with(&format!("{v}/")))
}

/// The pinned ids: (uids, gids). Root's 0 always is.
fn pinned(c: &Ctx) -> (BTreeSet<u32>, BTreeSet<u32>) {
    let mut u = BTreeSet::from([0]);
    let mut g = BTreeSet::from([0]);
    for l in &c.sysusers {
        match (l.user, l.id) {
            (true, Some(id)) => {
                u.insert(id);
                // Without an explicit GID the user's group gets the same id.
                if l.gid.is_none() {
                    g.insert(id);
                }
            }
            (false, Some(id)) => {
                g.insert(id);
            }
            _ => {}
        }
        g.extend(l.gid);
    }
    (u, g)
}

fn unpinned_owner(c: &Ctx, report: &mut dyn FnMut(String, String)) {
    let (uids, gids) = pinned(c);
    let mut seen: BTreeMap<(bool, u32), (String, usize)> = BTreeMap::new();
    for f in c.usr.iter().chain(&c.var) {
        for (is_user, id, ok) in [(true, f.stat.st_uid, &uids), (false, f.stat.st_gid, &gids)] {
            if !ok.contains(&id) {
                let e = seen
                    .entry((is_user, id))
                    .or_insert_with(|| (f.path.display().to_string(), 0));
                e.1 += 1;
            }
        }
    }
    for ((is_user, id), (path, n)) in seen {
        let what = if is_user { "user" } else { "group" };
        report(
            path,
            format!("{what} id {id} owns {n} path(s) and no sysusers.d line pins it"),
        );
    }
}

fn etc_only_enablement(c: &Ctx, report: &mut dyn FnMut(String, String)) {
    let rules = crate::presets::rules::PresetRules::load(c.root);
    for f in &c.etc_units {
        let (Some(t), Some(p)) = (f.target.as_ref(), f.path.to_str()) else {
            continue;
        };
        let Some(t) = t.to_str() else { continue };
        let rel = p.trim_start_matches("/etc/");
        if !crate::factory::is_enablement(rel, t) {
            continue;
        }
        let Some(unit) = crate::factory::lines::enabled_unit(p, t) else {
            continue;
        };
        let (action, inst) = rules.query(&unit);
        let enabled = match action {
            crate::presets::rules::Action::Enable => true,
            _ => inst.is_some(),
        };
        if !enabled {
            report(
                p.to_string(),
                format!("{unit} is enabled by this link only; an empty /etc loses it"),
            );
        }
    }
}

fn remove_persistent(c: &Ctx, report: &mut dyn FnMut(String, String)) {
    for l in &c.tmpfiles {
        if matches!(l.kind, 'D' | 'R') && !volatile(&l.path) {
            report(
                l.path.clone(),
                format!(
                    "{} line at {} empties a persistent path at boot",
                    l.kind, l.origin
                ),
            );
        }
    }
}

fn copy_missing_source(c: &Ctx, report: &mut dyn FnMut(String, String)) {
    for l in &c.tmpfiles {
        // Sources of lines on runtime paths may be runtime themselves (the initrd's /.extra).
        if l.kind != 'C' || volatile(&l.path) {
            continue;
        }
        let src = l
            .argument
            .clone()
            .unwrap_or_else(|| format!("{}{}", crate::factory::FACTORY, l.path));
        if !c.root.exists(Path::new(&src)) {
            report(
                l.path.clone(),
                format!(
                    "C line at {} copies from {src}, which does not exist",
                    l.origin
                ),
            );
        }
    }
}

/// Whether tmpfiles creates `p`: a creating line for it, or a `C` line for an ancestor.
fn covered(c: &Ctx, p: &str) -> bool {
    c.tmpfiles.iter().any(|l| {
        (l.path == p && "fFwdDevqQpLcbCaAhHzZ".contains(l.kind) && !"aAhHzZ".contains(l.kind))
            || (l.kind == 'C' && p.starts_with(&format!("{}/", l.path)))
    })
}

/// Lexical resolution of a symlink target relative to the link's directory.
fn resolve(link: &Path, target: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    let base = if target.is_absolute() {
        Path::new("/")
    } else {
        link.parent().unwrap_or(Path::new("/"))
    };
    for comp in base.components().chain(target.components()) {
        match comp {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

fn usr_link_into_etc(c: &Ctx, report: &mut dyn FnMut(String, String)) {
    for f in &c.usr {
        let Some(t) = &f.target else { continue };
        let r = resolve(&f.path, t);
        let Some(rs) = r.to_str() else { continue };
        if !rs.starts_with("/etc/") {
            continue;
        }
        let in_copy = c
            .root
            .exists(&Path::new(crate::factory::FACTORY).join(rs.trim_start_matches('/')));
        if !covered(c, rs) && (c.root.exists(&r) || in_copy) {
            report(
                f.path.display().to_string(),
                format!("points at {rs}, which no tmpfiles line creates"),
            );
        }
    }
}

fn machine_id_baked(c: &Ctx, report: &mut dyn FnMut(String, String)) {
    for p in [
        "/etc/machine-id",
        "/usr/share/factory/etc/machine-id",
        "/var/lib/dbus/machine-id",
    ] {
        let Ok(Some(FileType::RegularFile)) = c.root.file_type(Path::new(p)) else {
            continue;
        };
        if let Ok(Some(t)) = c.root.read_optional(Path::new(p)) {
            if crate::text::specifier::parse_machine_id(&t).is_ok() {
                report(p.to_string(), "holds a machine id".into());
            }
        }
    }
}

fn var_uncovered(c: &Ctx, report: &mut dyn FnMut(String, String)) {
    let has_child: BTreeSet<&Path> = c.var.iter().filter_map(|f| f.path.parent()).collect();
    for f in &c.var {
        let Some(p) = f.path.to_str() else { continue };
        let rel = p.trim_start_matches("/var/");
        let kind = match f.file_type() {
            FileType::Directory => crate::factory::Kind::Dir,
            FileType::RegularFile => crate::factory::Kind::File,
            _ => crate::factory::Kind::Other,
        };
        if crate::factory::var_regenerated(rel, &kind) {
            continue;
        }
        if kind == crate::factory::Kind::Dir && has_child.contains(f.path.as_path()) {
            continue;
        }
        if !covered(c, p) {
            report(p.to_string(), "no tmpfiles line recreates it".into());
        }
    }
}

fn sysusers_conflict(c: &Ctx, report: &mut dyn FnMut(String, String)) {
    let mut by_name: BTreeMap<(bool, &str), (&SysLine, u32)> = BTreeMap::new();
    let mut by_id: BTreeMap<(bool, u32), &SysLine> = BTreeMap::new();
    for l in &c.sysusers {
        let Some(id) = l.id else { continue };
        if let Some((first, fid)) = by_name.get(&(l.user, l.name.as_str())) {
            if *fid != id {
                report(
                    l.origin.clone(),
                    format!(
                        "'{}' has id {id} here and {fid} at {}",
                        l.name, first.origin
                    ),
                );
            }
        } else {
            by_name.insert((l.user, &l.name), (l, id));
        }
        match by_id.get(&(l.user, id)) {
            Some(first) if first.name != l.name => report(
                l.origin.clone(),
                format!(
                    "id {id} is given to '{}' here and to '{}' at {}",
                    l.name, first.name, first.origin
                ),
            ),
            Some(_) => {}
            None => {
                by_id.insert((l.user, id), l);
            }
        }
        let image = if l.user {
            c.passwd.get(&l.name)
        } else {
            c.group.get(&l.name)
        };
        if let Some(cur) = image.filter(|cur| **cur != id) {
            let db = if l.user { "/etc/passwd" } else { "/etc/group" };
            report(
                l.origin.clone(),
                format!("'{}' has id {id} here but {cur} in {db}", l.name),
            );
        }
    }
}

fn tmpfiles_lines(root: &Root) -> Vec<TmpLine> {
    let mut out = Vec::new();
    for cf in crate::config::confdirs::list(root, "tmpfiles.d", ".conf") {
        if cf.masked {
            continue;
        }
        let Ok(text) = root.read_to_string(&cf.path) else {
            continue;
        };
        for (n, l) in crate::text::lines::config_lines(&text) {
            let Ok((words, rest)) = word::extract_many_words(
                l.as_bytes(),
                word::WHITESPACE,
                Flags::UNQUOTE.union(Flags::CUNESCAPE),
                6,
            ) else {
                continue;
            };
            let (Some(t), Some(p)) = (words.first(), words.get(1)) else {
                continue;
            };
            let Some(kind) = t.first().map(|b| char::from(*b)) else {
                continue;
            };
            let path = String::from_utf8_lossy(p).replace("%%", "\u{0}");
            if path.contains('%') {
                continue;
            }
            let argument = rest
                .filter(|r| !r.is_empty() && *r != b"-")
                .map(|r| String::from_utf8_lossy(r).replace("%%", "%"));
            out.push(TmpLine {
                kind,
                path: path.replace('\u{0}', "%"),
                argument,
                origin: format!("{}:{n}", cf.path.display()),
            });
        }
    }
    out
}

fn sysusers_lines(root: &Root) -> Vec<SysLine> {
    use crate::sysusers::parse::{Kind as K, Line};
    let sv = crate::host::RunningSystem::default().system_values(root, true);
    let mut out = Vec::new();
    for cf in crate::config::confdirs::list(root, "sysusers.d", ".conf") {
        if cf.masked {
            continue;
        }
        let Ok(text) = root.read_to_string(&cf.path) else {
            continue;
        };
        let file = cf.path.display().to_string();
        for (n, l) in crate::text::lines::config_lines(&text) {
            if let Ok(Line::Item(k, it)) = crate::sysusers::parse::parse_line(&sv, &l, &file, n) {
                let user = k == K::User;
                let id = match (user, it.uid_set, it.gid_set) {
                    (true, true, _) => Some(it.uid),
                    (false, _, true) => Some(it.gid),
                    _ => None,
                };
                let gid = (user && it.gid_set).then_some(it.gid);
                out.push(SysLine {
                    user,
                    name: it.name.clone(),
                    id,
                    gid,
                    origin: format!("{file}:{n}"),
                });
            }
        }
    }
    out
}

fn walk_all(root: &Root, top: &str) -> Vec<Found> {
    match walk::walk(root, Path::new(top), Limits::default()) {
        Ok((found, errors)) => {
            for e in errors {
                log::warn!("{}: {}", e.path.display(), e.error);
            }
            found
        }
        Err(_) => Vec::new(),
    }
}

/// Takes the snapshot (read-only).
pub fn observe(root: &Root) -> Ctx<'_> {
    let ids = |p: &str| -> BTreeMap<String, u32> {
        root.read_optional(Path::new(p))
            .ok()
            .flatten()
            .map(|t| {
                t.lines()
                    .filter_map(|l| {
                        let mut f = l.split(':');
                        let name = f.next()?;
                        let id = f.nth(1)?.parse().ok()?;
                        Some((name.to_string(), id))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    Ctx {
        root,
        tmpfiles: tmpfiles_lines(root),
        sysusers: sysusers_lines(root),
        usr: walk_all(root, "/usr"),
        var: walk_all(root, "/var"),
        etc_units: walk_all(root, "/etc/systemd/system"),
        passwd: ids("/etc/passwd"),
        group: ids("/etc/group"),
    }
}

/// Runs every lint; findings in registry order.
pub fn check(ctx: &Ctx) -> Vec<Finding> {
    let mut out = Vec::new();
    for l in LINTS {
        (l.check)(ctx, &mut |path, message| {
            out.push(Finding {
                id: l.id,
                severity: l.severity,
                path,
                message,
                fix: l.fix,
            })
        });
    }
    out
}

/// The findings as an outcome (each one bad configuration seen, exit 65), for verbs that have
/// already printed them.
pub fn outcome(findings: &[Finding]) -> crate::report::Outcome {
    let mut out = crate::report::Outcome::default();
    for f in findings {
        out.record(crate::report::Diagnostic::bad_config(
            std::path::Path::new(&f.path),
            0,
            format!("{}: {}", f.id, f.message),
        ));
    }
    out
}

/// Observes and checks `root`.
pub fn run(root: &Root) -> Vec<Finding> {
    check(&observe(root))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_kebab_case() {
        let ids: BTreeSet<&str> = LINTS.iter().map(|l| l.id).collect();
        assert_eq!(ids.len(), LINTS.len());
        assert!(ids
            .iter()
            .all(|i| i.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')));
    }

    #[test]
    fn lexical_resolution() {
        assert_eq!(
            resolve(Path::new("/usr/lib/a"), Path::new("../../etc/x")),
            PathBuf::from("/etc/x")
        );
        assert_eq!(
            resolve(Path::new("/usr/lib/a"), Path::new("/etc/y")),
            PathBuf::from("/etc/y")
        );
        assert!(volatile("/run/x") && !volatile("/var/lib") && !volatile("/running"));
    }
}
