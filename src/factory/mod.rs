//! `pristine factory`: turns a populated root file system (debootstrap, mkosi, an installroot,
//! a container export) into one that boots with an empty `/etc` and `/var`.
//!
//! It owns the conversion: `/etc` and `/var` move to `/usr/share/factory/{etc,var}` with
//! tmpfiles lines that recreate them at boot (owners by name), the image's users and groups
//! are pinned in sysusers.d, its unit enablement becomes a preset policy (checked against the
//! links by simulating `preset-all`), a state.d policy names the state operators' defaults, and
//! what the other steps regenerate (account files, machine id, enablement links, host keys,
//! caches) is dropped. observe (read-only snapshot) → plan (pure; its Display is `--dry-run`)
//! → apply (through [`crate::fs::Root`]) → lint of the result. It must never write outside the
//! root, follow a symlink when it moves or removes, or lose a file it has not planned to drop.

pub mod cli;
pub mod lines;

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use rustix::fs::FileType;

use crate::fs::scan::{self as walk, Limits};
use crate::fs::{Root, WriteOptions};
use crate::report::{Diagnostic, Outcome};
use crate::userdb::UserDb;

use lines::{Declared, Links, Names};

/// Where the moved trees live.
pub const FACTORY: &str = "/usr/share/factory";
/// The files factory writes.
pub const TMPFILES_ETC: &str = "/usr/lib/tmpfiles.d/pristine-factory-etc.conf";
pub const TMPFILES_VAR: &str = "/usr/lib/tmpfiles.d/pristine-factory-var.conf";
/// Sorts first, so its lines win over vendor lines that declare the same names without ids.
pub const SYSUSERS_PIN: &str = "/usr/lib/sysusers.d/00-pristine-factory.conf";
pub const PRESET_POLICY: &str = "/usr/lib/systemd/system-preset/00-pristine-factory.preset";
pub const STATE_POLICY: &str = "/usr/lib/pristine/state.d/50-factory.toml";

/// Paths below `/etc` the other steps regenerate: never carried over.
const ETC_REGENERATED: &[&str] = &[
    "passwd",
    "passwd-",
    "group",
    "group-",
    "shadow",
    "shadow-",
    "gshadow",
    "gshadow-",
    ".pwd.lock",
    "machine-id",
    ".updated",
    "ld.so.cache",
    ".pristine-stamp",
    "pristine/presets.state",
];
/// Paths below `/var` that are caches, logs, seeds or stamps: never carried over (for the
/// `/**` entries, files only: the directories stay).
const VAR_REGENERATED: &[&str] = &[
    ".updated",
    ".pristine-stamp",
    "lib/systemd/random-seed",
    "lib/systemd/credential.secret",
    "lib/systemd/catalog/database",
    "cache/ldconfig/aux-cache",
    "log/**",
    "cache/**",
    "tmp/**",
];

/// What a node is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Link(String),
    Other,
}

/// One entry of `/etc` or `/var` (or of its factory copy), relative to that top.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub rel: String,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// One tree: `etc` or `var`.
#[derive(Clone, Debug, Default)]
pub struct Tree {
    /// The top-level entries found in `/TOP` (to be moved).
    pub live_top: Vec<String>,
    /// Every node, from the factory copy overlaid by the live tree (the live one wins).
    pub nodes: BTreeMap<String, Node>,
}

impl Tree {
    /// Where the node `rel` is now: in the live `/TOP` when its top-level entry is there, else
    /// in the factory copy.
    fn located(&self, top: &str, rel: &str) -> String {
        let first = rel.split('/').next().unwrap_or(rel);
        if self.live_top.iter().any(|t| t == first) {
            format!("/{top}/{rel}")
        } else {
            format!("{FACTORY}/{top}/{rel}")
        }
    }
}

/// The read-only snapshot `plan` works from.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub etc: Tree,
    pub var: Tree,
    /// The image's account database, when `/etc/passwd` is still there.
    pub db: Option<UserDb>,
    /// What sysusers.d (other than factory's own pin) declares.
    pub declared: Declared,
    /// Names of ids: from the account files, sysusers.d lines, an earlier pin.
    pub names: Names,
    /// The enablement links in `/etc/systemd/system`, and those an earlier run recorded.
    pub links: Links,
    /// The links a full preset-all under the new policy creates (filled by [`simulate`]).
    pub simulated: Links,
    /// Whether two link targets name the same file (keyed by the pair).
    pub same_target: BTreeMap<(String, String), bool>,
    /// Current content of the files factory writes.
    pub existing: BTreeMap<String, Vec<u8>>,
    /// Whether `/etc/machine-id` holds an id.
    pub machine_id: bool,
}

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Write a generated file (only when its content differs).
    Write {
        path: String,
        text: String,
        why: &'static str,
    },
    /// Drop a path the other steps regenerate.
    Drop { path: String, why: String },
    /// Move a top-level entry into the factory tree (replacing an older copy there).
    Move { from: String, to: String },
}

/// The plan: steps in order, and what it found worth telling.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.steps {
            match s {
                Step::Write { path, text, why } => {
                    writeln!(f, "write {path} ({} lines): {why}", text.lines().count())?
                }
                Step::Drop { path, why } => writeln!(f, "drop {path}: {why}")?,
                Step::Move { from, to } => writeln!(f, "move {from} -> {to}")?,
            }
        }
        if self.steps.is_empty() {
            writeln!(f, "nothing to do: the image is already converted")?;
        }
        Ok(())
    }
}

fn matches(patterns: &[&str], rel: &str, kind: &Kind) -> bool {
    patterns.iter().any(|p| match p.strip_suffix("/**") {
        Some(dir) => {
            *kind != Kind::Dir && rel.starts_with(dir) && rel[dir.len()..].starts_with('/')
        }
        None => *p == rel,
    })
}

/// Whether an `/etc` node is regenerated by another step (not carried over).
pub fn etc_regenerated(rel: &str, kind: &Kind) -> bool {
    if matches(ETC_REGENERATED, rel, kind) {
        return true;
    }
    let host_key = rel
        .strip_prefix("ssh/ssh_host_")
        .is_some_and(|k| k.ends_with("_key") || k.ends_with("_key.pub"));
    host_key && *kind != Kind::Dir
}

/// Whether a `/var` node is a cache, log, seed or stamp (not carried over). The D-Bus machine
/// id copy is dropped when it is a file (a symlink to `/etc/machine-id` stays).
pub fn var_regenerated(rel: &str, kind: &Kind) -> bool {
    matches(VAR_REGENERATED, rel, kind) || (rel == "lib/dbus/machine-id" && *kind == Kind::File)
}

/// Whether an in-root path under `/etc/systemd/system` is an enablement link.
pub fn is_enablement(rel: &str, target: &str) -> bool {
    let Some(below) = rel.strip_prefix("systemd/system/") else {
        return false;
    };
    if target == "/dev/null" {
        return false;
    }
    match below.split_once('/') {
        None => crate::units::name::classify(below).is_some() && !target.starts_with("/etc/"),
        Some((dir, name)) => {
            !name.contains('/')
                && [".wants", ".requires", ".upholds"]
                    .iter()
                    .any(|s| dir.ends_with(s))
        }
    }
}

fn node_of(f: &walk::Found, top: &Path) -> Option<Node> {
    let rel = f.path.strip_prefix(top).ok()?.to_str()?.to_string();
    let kind = match f.file_type() {
        FileType::Directory => Kind::Dir,
        FileType::RegularFile => Kind::File,
        FileType::Symlink => Kind::Link(f.target.as_ref()?.to_str()?.to_string()),
        _ => Kind::Other,
    };
    Some(Node {
        rel,
        kind,
        mode: f.stat.st_mode & 0o7777,
        uid: f.stat.st_uid,
        gid: f.stat.st_gid,
    })
}

fn observe_tree(root: &Root, top: &str, out: &mut Outcome) -> Tree {
    let mut t = Tree::default();
    let live = PathBuf::from(format!("/{top}"));
    let copy = PathBuf::from(format!("{FACTORY}/{top}"));
    for (dir, is_live) in [(&copy, false), (&live, true)] {
        let (found, errors) = match walk::walk(root, dir, Limits::default()) {
            Ok(x) => x,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                out.push(Diagnostic::failed(Some(dir), format!("cannot read: {e}")));
                continue;
            }
        };
        for e in errors {
            out.push(Diagnostic::failed(
                Some(&e.path),
                format!("cannot read: {}", e.error),
            ));
        }
        for f in &found {
            let Some(n) = node_of(f, dir) else {
                out.push(Diagnostic::notice(
                    Some(&f.path),
                    0,
                    "name or symlink target is not UTF-8: not carried over",
                ));
                continue;
            };
            if is_live && !n.rel.contains('/') {
                if t.nodes.contains_key(&n.rel) {
                    // The live entry replaces the older copy wholesale.
                    let prefix = format!("{}/", n.rel);
                    t.nodes.retain(|k, _| !k.starts_with(&prefix));
                }
                t.live_top.push(n.rel.clone());
            }
            t.nodes.insert(n.rel.clone(), n);
        }
    }
    t
}

/// Reads everything the plan needs. Read-only.
pub fn observe(root: &Root, out: &mut Outcome) -> Snapshot {
    let mut s = Snapshot {
        etc: observe_tree(root, "etc", out),
        var: observe_tree(root, "var", out),
        ..Snapshot::default()
    };
    let read = |p: &str, out: &mut Outcome| match root.read_optional(Path::new(p)) {
        Ok(t) => t,
        Err(e) => {
            out.push(Diagnostic::failed(
                Some(Path::new(p)),
                format!("cannot read: {e}"),
            ));
            None
        }
    };
    if let (Some(p), Some(g)) = (read("/etc/passwd", out), read("/etc/group", out)) {
        let db = UserDb::parse(&p, &g);
        for u in &db.users {
            s.names.add_user(u.uid, &u.name);
        }
        for g in &db.groups {
            s.names.add_group(g.gid, &g.name);
        }
        s.db = Some(db);
    }
    let sv = crate::host::RunningSystem::default().system_values(root, true);
    for cf in crate::config::confdirs::list(root, "sysusers.d", ".conf") {
        if cf.masked {
            continue;
        }
        let Ok(text) = root.read_to_string(&cf.path) else {
            continue;
        };
        if cf.path == Path::new(SYSUSERS_PIN) {
            lines::pinned_ids(&text, &mut s.names);
        }
        let mine = cf.path == Path::new(SYSUSERS_PIN);
        let file = cf.path.display().to_string();
        for (n, l) in crate::text::lines::config_lines(&text) {
            use crate::sysusers::parse::{Kind as K, Line};
            match crate::sysusers::parse::parse_line(&sv, &l, &file, n) {
                Ok(Line::Item(k, it)) => {
                    if it.uid_set && k == K::User {
                        s.names.add_user(it.uid, &it.name);
                    }
                    if it.gid_set && (k == K::Group || it.group_name.is_none()) {
                        s.names.add_group(it.gid, &it.name);
                    }
                    if mine {
                        continue;
                    }
                    if k == K::User && it.uid_set {
                        s.declared.users.insert(it.name.clone());
                    }
                    // `u NAME UID` gives the group NAME the same id.
                    let group_fixed = match k {
                        K::Group => it.gid_set,
                        K::User => it.uid_set && it.group_name.is_none(),
                    };
                    if group_fixed {
                        s.declared.groups.insert(it.name.clone());
                    }
                }
                Ok(Line::Member { user, group }) if !mine => {
                    s.declared.members.insert((user, group));
                }
                _ => {}
            }
        }
    }
    for p in [
        TMPFILES_ETC,
        TMPFILES_VAR,
        SYSUSERS_PIN,
        PRESET_POLICY,
        STATE_POLICY,
    ] {
        if let Ok(b) = root.read(Path::new(p)) {
            s.existing.insert(p.to_string(), b);
        }
    }
    if let Some(old) = s.existing.get(PRESET_POLICY) {
        s.links = lines::recorded_links(&String::from_utf8_lossy(old));
    }
    for n in s.etc.nodes.values() {
        if let Kind::Link(t) = &n.kind {
            if is_enablement(&n.rel, t) {
                s.links.insert(format!("/etc/{}", n.rel), t.clone());
            }
        }
    }
    s.machine_id = root
        .read_optional(Path::new("/etc/machine-id"))
        .ok()
        .flatten()
        .is_some_and(|m| crate::text::specifier::parse_machine_id(&m).is_ok());
    s
}

/// Fills [`Snapshot::simulated`]: the links a full preset-all creates under `policy` once the
/// image's enablement links are gone, and which targets name the same file. Read-only.
pub fn simulate(root: &Root, s: &mut Snapshot, policy: &str) {
    let without: Vec<String> = s.links.keys().cloned().collect();
    s.simulated = crate::presets::simulate(root, PRESET_POLICY, policy.as_bytes(), &without);
    let same = |a: &str, b: &str| {
        a == b
            || match (root.stat(Path::new(a), true), root.stat(Path::new(b), true)) {
                (Ok(x), Ok(y)) => (x.st_dev, x.st_ino) == (y.st_dev, y.st_ino),
                _ => false,
            }
    };
    for (p, t) in &s.links {
        if let Some(st) = s.simulated.get(p) {
            s.same_target.insert((t.clone(), st.clone()), same(t, st));
        }
    }
}

/// The preset policy text for a snapshot (before [`simulate`]).
pub fn policy(s: &Snapshot) -> String {
    lines::preset_policy(&s.links)
}

fn drop_or_keep(
    top: &str,
    tree: &Tree,
    regenerated: fn(&str, &Kind) -> bool,
    keep_link: &dyn Fn(&str) -> bool,
    plan: &mut Plan,
) -> BTreeMap<String, Node> {
    let mut kept = BTreeMap::new();
    let mut dropped: Vec<String> = Vec::new();
    for (rel, n) in &tree.nodes {
        if dropped.iter().any(|d| rel.starts_with(&format!("{d}/"))) {
            continue;
        }
        let enablement = matches!(&n.kind, Kind::Link(t) if top == "etc" && is_enablement(rel, t));
        let why = if regenerated(rel, &n.kind) {
            Some("regenerated at boot")
        } else if enablement && !keep_link(&format!("/etc/{rel}")) {
            Some("enablement link, reproduced by the preset policy")
        } else {
            None
        };
        match why {
            Some(why) => {
                plan.steps.push(Step::Drop {
                    path: tree.located(top, rel),
                    why: why.to_string(),
                });
                dropped.push(rel.clone());
            }
            None => {
                kept.insert(rel.clone(), n.clone());
            }
        }
    }
    // Unit directories without links (emptied by the drops, now or in an interrupted run)
    // go too: presets recreate the ones they need.
    if top == "etc" {
        let emptied: Vec<String> = kept
            .iter()
            .filter(|(rel, n)| {
                n.kind == Kind::Dir
                    && rel.starts_with("systemd/system/")
                    && [".wants", ".requires", ".upholds"]
                        .iter()
                        .any(|s| rel.ends_with(s))
            })
            .map(|(rel, _)| rel.clone())
            .filter(|rel| !kept.keys().any(|k| k.starts_with(&format!("{rel}/"))))
            .collect();
        for rel in emptied {
            kept.remove(&rel);
            plan.steps.push(Step::Drop {
                path: tree.located(top, &rel),
                why: "unit directory left empty".to_string(),
            });
        }
    }
    kept
}

/// The plan (pure).
pub fn plan(s: &Snapshot, policy: &str) -> Plan {
    let mut plan = Plan::default();
    // Links the policy does not reproduce stay as they are, as `L` lines.
    let unreproduced: Vec<&String> = s
        .links
        .iter()
        .filter(|(p, t)| match s.simulated.get(*p) {
            Some(st) => !s
                .same_target
                .get(&((*t).clone(), st.clone()))
                .copied()
                .unwrap_or(false),
            None => true,
        })
        .map(|(p, _)| p)
        .collect();
    for p in &unreproduced {
        plan.diagnostics.push(Diagnostic::notice(
            Some(Path::new(p)),
            0,
            "enablement link the preset policy does not reproduce: kept as an L line",
        ));
    }
    for p in s.simulated.keys().filter(|p| !s.links.contains_key(*p)) {
        plan.diagnostics.push(Diagnostic::notice(
            Some(Path::new(p)),
            0,
            "the preset policy also creates this link, which the image did not have",
        ));
    }
    let keep_link = |p: &str| unreproduced.iter().any(|u| u.as_str() == p);
    let etc = drop_or_keep("etc", &s.etc, etc_regenerated, &keep_link, &mut plan);
    let var = drop_or_keep("var", &s.var, var_regenerated, &|_| false, &mut plan);
    let mut writes: Vec<(&str, String, &'static str)> = Vec::new();
    for (top, kept, path) in [("etc", &etc, TMPFILES_ETC), ("var", &var, TMPFILES_VAR)] {
        let (text, left_out) = lines::tmpfiles_file(top, kept, &s.names);
        for (p, why) in left_out {
            plan.diagnostics.push(Diagnostic::notice(
                Some(Path::new(&p)),
                0,
                format!("{why}: not carried over"),
            ));
        }
        writes.push((
            path,
            text,
            "recreates the tree at boot from the factory copy",
        ));
    }
    if let Some(db) = &s.db {
        writes.push((
            SYSUSERS_PIN,
            lines::sysusers_pin(db, &s.declared),
            "pins the image's users and groups",
        ));
    }
    if !s.links.is_empty() || !s.existing.contains_key(PRESET_POLICY) {
        writes.push((
            PRESET_POLICY,
            policy.to_string(),
            "reproduces the image's enablement",
        ));
    }
    writes.push((
        STATE_POLICY,
        lines::STATE_POLICY.to_string(),
        "state operator defaults",
    ));
    for (path, text, why) in writes {
        if s.existing.get(path).map(Vec::as_slice) != Some(text.as_bytes()) {
            plan.steps.push(Step::Write {
                path: path.to_string(),
                text,
                why,
            });
        }
    }
    // Drops first, moves last: a crash leaves a tree the next run converts the same way.
    let drops: Vec<Step> = plan
        .steps
        .iter()
        .filter(|s| matches!(s, Step::Drop { .. }))
        .cloned()
        .collect();
    plan.steps.retain(|s| !matches!(s, Step::Drop { .. }));
    plan.steps.extend(drops);
    for (top, tree) in [("etc", &s.etc), ("var", &s.var)] {
        for name in &tree.live_top {
            let gone = plan.steps.iter().any(
                |st| matches!(st, Step::Drop { path, .. } if *path == format!("/{top}/{name}")),
            );
            if !gone {
                plan.steps.push(Step::Move {
                    from: format!("/{top}/{name}"),
                    to: format!("{FACTORY}/{top}/{name}"),
                });
            }
        }
    }
    plan
}

/// Carries the plan out through the root handle; failures are diagnostics, the rest goes on —
/// except the moves: after a failed write or drop nothing is moved, so `/etc` and `/var` never
/// empty into a factory copy that the tmpfiles lines do not describe, and a rerun converts
/// the same tree.
pub fn apply(root: &Root, plan: &Plan, out: &mut Outcome) {
    for step in &plan.steps {
        if matches!(step, Step::Move { .. }) && out.failed() {
            out.push(Diagnostic::failed(
                None,
                "an earlier step failed: /etc and /var are left in place (run factory again)",
            ));
            return;
        }
        let r = match step {
            Step::Write { path, text, .. } => {
                let p = Path::new(path);
                p.parent()
                    .map_or(Ok(()), |d| root.mkdir_all(d, 0o755))
                    .and_then(|()| root.write_atomic(p, text.as_bytes(), &WriteOptions::default()))
                    .map(|()| out.add_count("written", 1))
            }
            Step::Drop { path, .. } => root
                .remove_tree(Path::new(path))
                .map(|_| out.add_count("dropped", 1)),
            Step::Move { from, to } => {
                let to = Path::new(to);
                to.parent()
                    .map_or(Ok(()), |d| root.mkdir_all(d, 0o755))
                    .and_then(|()| root.remove_tree(to))
                    .and_then(|_| root.rename(Path::new(from), to))
                    .map(|()| out.add_count("moved", 1))
            }
        };
        if let Err(e) = r {
            let path = match step {
                Step::Write { path, .. }
                | Step::Drop { path, .. }
                | Step::Move { from: path, .. } => path,
            };
            out.push(Diagnostic::failed(
                Some(Path::new(path)),
                format!("cannot {}: {e}", verb(step)),
            ));
        }
    }
}

fn verb(s: &Step) -> &'static str {
    match s {
        Step::Write { .. } => "write",
        Step::Drop { .. } => "remove",
        Step::Move { .. } => "move",
    }
}

/// observe → simulate → plan, the part `--dry-run` shares with a real run.
pub fn prepare(root: &Root, out: &mut Outcome) -> (Snapshot, Plan) {
    let mut s = observe(root, out);
    let policy = policy(&s);
    simulate(root, &mut s, &policy);
    let p = plan(&s, &policy);
    (s, p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regenerated_paths() {
        assert!(etc_regenerated("passwd", &Kind::File));
        assert!(etc_regenerated("ssh/ssh_host_ed25519_key.pub", &Kind::File));
        assert!(!etc_regenerated("ssh/sshd_config", &Kind::File));
        assert!(var_regenerated("log/dpkg.log", &Kind::File));
        assert!(!var_regenerated("log/apt", &Kind::Dir));
        assert!(var_regenerated("lib/dbus/machine-id", &Kind::File));
        assert!(!var_regenerated(
            "lib/dbus/machine-id",
            &Kind::Link("/etc/machine-id".into())
        ));
        assert!(!var_regenerated("logx/a", &Kind::File));
    }

    #[test]
    fn enablement_links() {
        assert!(is_enablement(
            "systemd/system/multi-user.target.wants/ssh.service",
            "/lib/systemd/system/ssh.service"
        ));
        assert!(is_enablement(
            "systemd/system/sshd.service",
            "/lib/systemd/system/ssh.service"
        ));
        assert!(!is_enablement("systemd/system/x.service", "/dev/null"));
        assert!(!is_enablement(
            "systemd/system/x.service.d/a.conf",
            "/usr/x"
        ));
        assert!(!is_enablement("ssh/x", "/y"));
    }
}
