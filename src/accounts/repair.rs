//! Ownership repair: when a name's ID differs from the one the ledger recorded for it (a ledger
//! made after the fact, a pin that changed, an ID taken by the admin), files under `/var` still
//! carry the old ID and would belong to whoever gets that ID next. This finds them (one walk of
//! `/var`, no symlink followed, no mount crossed), reports each, and with
//! `[accounts] repair-ownership = true` gives them to the name's new ID.

use std::path::Path;

use super::ledger::Space;
use super::Moved;
use crate::fs::walk;
use crate::fs::Root;
use crate::report::{Diagnostic, Outcome};

/// Paths listed one by one in the log; the rest are counted.
const SHOWN: usize = 20;

/// Finds (and with `repair` changes) the owners of the files under `/var` that belong to the
/// old ID of a moved name. Counts go into `out` as `ownership-stale` and `ownership-repaired`.
pub fn run(root: &Root, moved: &[Moved], repair: bool, out: &mut Outcome) {
    if moved.is_empty() {
        return;
    }
    for m in moved {
        log::warn!(
            "{} {}: ID changed from {} to {}; looking for files under /var owned by {}.",
            if m.space == Space::User {
                "User"
            } else {
                "Group"
            },
            m.name,
            m.old,
            m.new,
            m.old
        );
    }
    let var = Path::new("/var");
    let dir = match root.stat(var, false) {
        Ok(st) if (st.st_mode & 0o170000) == 0o040000 => root.open_dir(var),
        Ok(_) => return, // a symlink or no directory: nothing of ours to walk
        Err(_) => return,
    };
    let dir = match dir {
        Ok(d) => d,
        Err(e) => {
            out.push(Diagnostic::failed(
                Some(&root.display_path(var)),
                format!("Failed to open /var for ownership repair: {e}"),
            ));
            return;
        }
    };
    let (mut stale, mut repaired) = (0u64, 0u64);
    let mut failures = Vec::new();
    let mut walk_failures = Vec::new();
    let r = walk::walk(
        std::os::fd::AsFd::as_fd(&dir),
        var,
        |parent, name, path, st| {
            let uid = moved
                .iter()
                .find(|m| m.space == Space::User && m.old == st.st_uid)
                .map(|m| m.new);
            let gid = moved
                .iter()
                .find(|m| m.space == Space::Group && m.old == st.st_gid)
                .map(|m| m.new);
            if uid.is_none() && gid.is_none() {
                return;
            }
            stale += 1;
            if stale as usize <= SHOWN {
                log::warn!(
                    "{}: owned by the old ID ({}:{}){}",
                    path.display(),
                    st.st_uid,
                    st.st_gid,
                    if repair { ", repairing" } else { "" }
                );
            }
            if repair {
                match walk::chown_nofollow(parent, name, path, st, uid, gid) {
                    Ok(()) => repaired += 1,
                    Err(e) => failures.push((path.to_path_buf(), e)),
                }
            }
        },
        |path, e| walk_failures.push((path.to_path_buf(), e)),
    );
    if let Err(e) = r {
        walk_failures.push((var.to_path_buf(), e));
    }
    failures.append(&mut walk_failures);
    for (p, e) in failures {
        out.push(Diagnostic::failed(
            Some(&root.display_path(&p)),
            format!("Ownership repair of {}: {e}", p.display()),
        ));
    }
    if stale as usize > SHOWN {
        log::warn!(
            "…and {} more paths owned by old IDs.",
            stale as usize - SHOWN
        );
    }
    if stale > 0 && !repair {
        log::warn!(
            "{stale} paths under /var are owned by old IDs; set [accounts] repair-ownership = true to give them to the new IDs."
        );
    }
    out.add_count("ownership-stale", stale);
    out.add_count("ownership-repaired", repaired);
}
