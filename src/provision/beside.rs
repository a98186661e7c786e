//! The presets plan made ahead, applied on its thread while tmpfiles applies its own plan,
//! when the two cannot meet: on ext4 the presets step's links and directories (about 1 ms of
//! journalled creations) then cost nothing on the main thread's path.
//!
//! The order systemd's commands run in is tmpfiles, then presets; applying both at once gives
//! the same tree and the same messages exactly when neither changes what the other sees.
//! The rule ([`clash`], pure) compares what tmpfiles may change ([`Reach`], bounded by path)
//! with everything the presets plan observed, read and writes ([`Footprint`]):
//! - a tmpfiles path at or below a presets path clashes;
//! - a tmpfiles path above a presets path clashes unless that line only makes or adjusts the
//!   directory itself (`d /run/systemd` leaves `/run/systemd/system` missing), and even then
//!   above a path the plan writes (a default ACL, the set-group-ID bit or an inherited file
//!   attribute given to a directory passes on to what is made in it);
//! - literal paths mean what they say only if no symlink lies on their way: [`plain_chains`]
//!   checks every existing component of each of them, the paths themselves too (but those a
//!   link or copy line makes). The main thread runs it before tmpfiles applies, when on a
//!   first boot most of the way does not exist yet, and sends what it found with the reach.
//!
//! Only then is the plan verified ([`Plan::verify`]: nothing the steps before tmpfiles did
//! changed what it saw) and applied, its log records held and emitted by the main thread in
//! the presets step's place, after tmpfiles'. Otherwise the plan goes back to the main thread,
//! which checks and applies it in turn, as before.

use std::collections::HashSet;
use std::path::Path;

use rustix::fs::FileType;

use crate::fs::Root;
use crate::presets::{Footprint, Options, Plan, PresetOutcome};
use crate::tmpfiles::reach::Reach;
use crate::units::lookup::clean_startswith;

/// What the main thread hands over before tmpfiles applies.
pub struct Beside {
    pub reach: Reach,
    /// Whether writes are made durable one by one (as the main thread's root handle says).
    pub durable: bool,
}

/// What the presets thread hands back.
pub enum Ahead {
    /// The plan, to be checked and applied in turn; with why it was not applied beside
    /// tmpfiles, if that was asked.
    Plan(Box<Plan>, Option<String>),
    /// Applied beside tmpfiles: the outcome and the log records held back meanwhile.
    Applied {
        outcome: PresetOutcome,
        held: crate::logging::Held,
        read_ahead: usize,
    },
}

/// Applies `plan` beside tmpfiles if the rule allows (see the module docs).
pub fn try_apply(root: &Root, plan: Plan, opts: &Options, beside: Beside) -> Ahead {
    // Logged by the main thread, in the presets step's place.
    let refuse = |plan, why: String| Ahead::Plan(Box::new(plan), Some(why));
    let Some(footprint) = plan.footprint() else {
        return refuse(plan, "the plan was not made ahead".into());
    };
    if let Some(why) = &beside.reach.unbounded {
        return refuse(plan, why.clone());
    }
    if let Some(why) = clash(&beside.reach, &footprint) {
        return refuse(plan, why);
    }
    if let Err(what) = plan.verify(root, opts) {
        // The main thread finds the same when it checks the plan: tmpfiles cannot change it.
        return refuse(plan, format!("{what} changed"));
    }
    root.set_deferred_sync(!beside.durable);
    crate::logging::hold();
    let read_ahead = plan.read_ahead;
    let outcome = crate::presets::apply_plan(root, plan, opts);
    let held = crate::logging::release();
    Ahead::Applied {
        outcome,
        held,
        read_ahead,
    }
}

/// The first pair of a tmpfiles path and a presets path that may meet (see the module docs),
/// as a message; `None` if there is none. A path's ancestors are looked up in the set of
/// presets paths that count with all below them, and what lies below a path is found by
/// bisecting the presets paths, sorted.
pub fn clash(reach: &Reach, footprint: &Footprint) -> Option<String> {
    let writes = footprint.writes.iter().map(String::as_str);
    let with_below: HashSet<&str> = footprint
        .paths
        .iter()
        .filter(|(_, below)| *below)
        .map(|(p, _)| p.as_str())
        .chain(footprint.literal.iter().copied())
        .chain(writes.clone())
        .collect();
    let sorted = |paths: &mut Vec<&str>| {
        paths.sort_unstable();
        paths.dedup();
    };
    let mut all: Vec<&str> = footprint
        .paths
        .iter()
        .map(|(p, _)| p.as_str())
        .chain(footprint.literal.iter().copied())
        .chain(writes.clone())
        .collect();
    sorted(&mut all);
    let mut written: Vec<&str> = writes.collect();
    sorted(&mut written);
    let say = |t: &str, f: &str| Some(format!("tmpfiles may change {t} and presets needs {f}"));
    for t in &reach.touched {
        let p = t.path.as_str();
        // At or below a presets path that counts with all below it.
        let ancestors = p
            .match_indices('/')
            .map(|(i, _)| if i == 0 { "/" } else { &p[..i] })
            .chain(std::iter::once(p));
        for a in ancestors {
            if with_below.contains(a) {
                return say(p, a);
            }
        }
        // At or above a presets path: any, if the line may change what lies below it; else
        // one the plan writes (which inherits from the directory).
        let below = if t.below { &all } else { &written };
        if let Some(f) = first_at_or_below(below, p) {
            return say(p, f);
        }
    }
    None
}

/// The first of the sorted `paths` at or below `dir`.
fn first_at_or_below<'a>(paths: &[&'a str], dir: &str) -> Option<&'a str> {
    let from = paths.partition_point(|f| *f < dir);
    if paths.get(from) == Some(&dir) {
        return Some(paths[from]);
    }
    let prefix = if dir == "/" {
        String::from("/")
    } else {
        format!("{dir}/")
    };
    let from = paths.partition_point(|f| *f < prefix.as_str());
    paths.get(from).copied().filter(|f| f.starts_with(&prefix))
}

/// Whether `node`, a symlink, is one of the presets' `literal` paths and leads (in one hop,
/// read lexically) to another of them, which is checked in its own right: Debian's
/// `/etc/os-release` → `../usr/lib/os-release`.
fn leads_to_literal(root: &Root, node: &str, literal: &[&str]) -> bool {
    if !literal.contains(&node) {
        return false;
    }
    let Ok(target) = rustix::fs::readlinkat(root.fd(), node.trim_start_matches('/'), Vec::new())
    else {
        return false;
    };
    crate::tmpfiles::reach::link_target(node, target.as_bytes())
        .is_some_and(|t| t != node && literal.contains(&t.as_str()))
}

/// Checks that no existing component of a literal path is a symlink or not a directory (the
/// last one may be any type but a symlink, unless a link or copy line makes it, or it is a
/// presets path leading to another): the paths touched by tmpfiles, the literal paths of
/// presets. `Err` says where one is.
///
/// Each component is looked at once, parents first, and not at all below one found missing:
/// on a first boot that is a few dozen `lstat`s. A component is looked up from the root
/// without following a final symlink, once every component above it was found to be a
/// directory, so no lookup passes a symlink.
pub fn plain_chains(root: &Root, reach: &Reach, literal: &[&str]) -> Result<(), String> {
    use rustix::fs::AtFlags;
    // Created as one by a link or copy line (which is alone at its path, see `Reach`).
    let made: HashSet<&str> = reach.links.iter().map(String::as_str).collect();
    // Every path and every component on its way, each once; `true` for those with others
    // below them (which must be directories).
    let mut nodes: std::collections::BTreeMap<&str, bool> = std::collections::BTreeMap::new();
    for path in reach.chains().chain(literal.iter().copied()) {
        nodes.entry(path).or_insert(false);
        for (i, _) in path.match_indices('/').filter(|(i, _)| *i > 0) {
            nodes.insert(&path[..i], true);
        }
    }
    let mut missing: Vec<&str> = Vec::new();
    // Parents sort before their children.
    for (&node, &parent) in &nodes {
        if missing.iter().any(|m| clean_startswith(node, m)) {
            continue;
        }
        let rel = node.trim_start_matches('/');
        if rel.is_empty() {
            continue;
        }
        let ft = match rustix::fs::statat(root.fd(), rel, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => FileType::from_raw_mode(st.st_mode),
            Err(rustix::io::Errno::NOENT) => {
                missing.push(node);
                continue;
            }
            Err(e) => return Err(format!("{node}: {e}")),
        };
        match ft {
            FileType::Directory => {}
            FileType::Symlink if parent => {
                return Err(format!("a symlink lies on the way: {node}"))
            }
            FileType::Symlink if leads_to_literal(root, node, literal) => {}
            FileType::Symlink if !made.contains(node) => {
                return Err(format!("{node} is a symlink"))
            }
            _ if parent => return Err(format!("not a directory on the way: {node}")),
            _ => {}
        }
    }
    if root.file_type(Path::new("/etc")).ok().flatten() != Some(FileType::Directory) {
        // Both sides would make it.
        return Err("/etc is not a directory yet".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tmpfiles::reach::Touch;

    fn reach(t: &[(&str, bool)]) -> Reach {
        Reach {
            touched: t
                .iter()
                .map(|(p, below)| Touch {
                    path: p.to_string(),
                    below: *below,
                })
                .collect(),
            ..Reach::default()
        }
    }

    fn footprint(p: &[(&str, bool)]) -> Footprint {
        Footprint {
            paths: p.iter().map(|(p, b)| (p.to_string(), *b)).collect(),
            literal: &["/etc/systemd/system-preset", "/etc/pristine/presets.state"],
            writes: vec![
                "/etc/systemd/system/multi-user.target.wants".into(),
                "/etc/pristine".into(),
            ],
        }
    }

    #[test]
    fn paths_apart_or_directories_above_do_not_clash() {
        let f = footprint(&[
            ("/etc", false),
            ("/etc/systemd", true),
            ("/run/systemd/system", true),
            ("/usr/lib/systemd/system", true),
        ]);
        for t in [
            ("/etc/motd", true),
            // Above what the plan only looks at: making or adjusting it changes nothing
            // there.
            ("/run/systemd", false),
            ("/usr/lib", false),
            ("/run/systemd/netif", false),
            ("/run/systemd/systemx", true),
            ("/var/lib/systemd", true),
        ] {
            assert_eq!(clash(&reach(&[t]), &f), None, "{t:?}");
        }
    }

    #[test]
    fn paths_at_below_or_replacing_above_clash() {
        let f = footprint(&[
            ("/etc", false),
            ("/etc/systemd", true),
            ("/run/systemd/system", true),
        ]);
        for t in [
            // At or below what presets saw, made or read.
            ("/etc/systemd", false),
            ("/etc/systemd/system/a.service", true),
            ("/run/systemd/system", false),
            ("/etc/systemd/system-preset/10-x.preset", true),
            ("/etc/pristine/presets.state", true),
            ("/etc/pristine/presets.state", false),
            // Above, and it may change what lies below.
            ("/run/systemd", true),
            ("/etc", true),
            ("/", true),
            ("/etc/pristine", true),
            // Above what the plan makes: a default ACL, the set-group-ID bit or an
            // inherited attribute given to it passes on to what is made in it.
            ("/etc/pristine", false),
            ("/etc", false),
        ] {
            let why = clash(&reach(&[t]), &f);
            assert!(why.is_some(), "{t:?}");
            assert!(why.unwrap().contains(t.0), "{t:?}");
        }
    }

    #[test]
    fn symlinks_on_the_way_are_found() {
        let t = crate::util::test_dir("beside-chains");
        #[allow(clippy::disallowed_methods)]
        {
            std::fs::create_dir_all(t.join("etc")).unwrap();
            std::fs::create_dir_all(t.join("var/lib")).unwrap();
            std::os::unix::fs::symlink("/etc/systemd", t.join("var/lib/sd")).unwrap();
            std::fs::write(t.join("var/file"), "x").unwrap();
        }
        let root = Root::open(&t).unwrap();
        let f = footprint(&[]);
        let ok = |touched: &[(&str, bool)], links: &[&str]| {
            let mut r = reach(touched);
            r.links = links.iter().map(|s| s.to_string()).collect();
            plain_chains(&root, &r, f.literal)
        };
        assert_eq!(
            ok(&[("/var/lib/x/y", true), ("/var/file", true)], &[]),
            Ok(())
        );
        assert_eq!(
            ok(&[("/var/lib/sd/a.service", true)], &[]),
            Err("a symlink lies on the way: /var/lib/sd".into())
        );
        assert_eq!(
            ok(&[("/var/lib/sd", false)], &[]),
            Err("/var/lib/sd is a symlink".into())
        );
        // A link line's own path may be its link.
        assert_eq!(ok(&[("/var/lib/sd", true)], &["/var/lib/sd"]), Ok(()));
        assert_eq!(
            ok(&[("/var/file/x", true)], &[]),
            Err("not a directory on the way: /var/file".into())
        );
        // A presets path may lead to another one; not elsewhere.
        #[allow(clippy::disallowed_methods)]
        {
            std::fs::create_dir_all(t.join("usr/lib")).unwrap();
            std::os::unix::fs::symlink("../usr/lib/os-release", t.join("etc/os-release")).unwrap();
            std::os::unix::fs::symlink("/var/file", t.join("etc/machine-id")).unwrap();
        }
        let release = ["/etc/os-release", "/usr/lib/os-release"];
        assert_eq!(plain_chains(&root, &reach(&[]), &release), Ok(()));
        assert_eq!(
            plain_chains(
                &root,
                &reach(&[]),
                &["/etc/machine-id", "/usr/lib/os-release"]
            ),
            Err("/etc/machine-id is a symlink".into())
        );
        assert_eq!(
            plain_chains(&root, &reach(&[("/etc/os-release", true)]), &[]),
            Err("/etc/os-release is a symlink".into())
        );
        // A path below another checks the other's way, and itself.
        assert_eq!(
            ok(&[("/var/lib", true), ("/var/lib/sd", true)], &[]),
            Err("/var/lib/sd is a symlink".into())
        );
    }
}
