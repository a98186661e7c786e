//! What a tmpfiles run may change, bounded by path, worked out from its plan before it is
//! applied ([`reach`]; pure): `provision` applies the presets plan on another thread while
//! tmpfiles applies, when no path one may touch is a path the other observes or writes.
//!
//! The bound is conservative. Each step names the path it acts on and whether it may change
//! what lies below it ([`Touch::below`]): the kinds that only make or adjust a directory
//! (`d`, `D`, `v`, `q`, `Q`, `e`, and `z`, `t`, `a`, `h`) leave its entries alone; everything
//! else (files, links, copies, the recursive adjustments, `=` replacing what is in the way)
//! may change anything at or below its path. A `C` line's source and an `L?` line's target are
//! read, so they count as touched too. Parents are made as plain directories on the way.
//!
//! Literal paths mean what they say only if nothing on the way is a symlink: the run is
//! [`Reach::unbounded`] when a link or copy line's path is, or lies above, another line's path
//! (the other line would act through what that line made), when a glob has magic before its
//! last component (it may match a symlink on the way), or when a path holds `..`. Symlinks
//! already in the tree are the caller's to rule out ([`Reach::chains`]).

use std::os::unix::ffi::OsStrExt as _;

use super::plan::{Ops, Plan};
use super::Kind;
use crate::units::lookup::{clean_startswith, components, parent_of};

/// One path a run may change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Touch {
    /// In-root, absolute, simplified.
    pub path: String,
    /// Whether what lies below `path` may change too (else only `path` itself, as a
    /// directory made or adjusted).
    pub below: bool,
}

/// What a run may change (see the module docs).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reach {
    pub touched: Vec<Touch>,
    /// The paths link and copy lines make (each may be a symlink once made; no other line
    /// acts at or below one).
    pub links: Vec<String>,
    /// Why the run cannot be bounded by path, if it cannot.
    pub unbounded: Option<String>,
}

impl Reach {
    /// The paths whose existing components must all be plain directories (no symlink on the
    /// way) for the bound to hold: every path touched.
    pub fn chains(&self) -> impl Iterator<Item = &str> {
        self.touched.iter().map(|t| t.path.as_str())
    }
}

/// The reach of `plan` (see the module docs).
pub fn reach(plan: &Plan<'_>) -> Reach {
    let mut r = Reach::default();
    // The line behind each entry of `r.touched`.
    let mut owner: Vec<*const super::Item> = Vec::new();
    // Paths of lines that make links or copies, with the line: no other line may act at or
    // below them.
    let mut links: Vec<(String, *const super::Item)> = Vec::new();
    for step in &plan.steps {
        let item = step.item;
        let Some(path) = clean(item.path.as_os_str().as_bytes()) else {
            r.unbounded = Some(format!("{}: not a plain path", item.path.display()));
            return r;
        };
        let removal =
            step.ops.has(Ops::REMOVE) || step.ops.has(Ops::CLEAN) || step.ops.has(Ops::PURGE);
        if !step.ops.has(Ops::CREATE) && !removal {
            continue;
        }
        let below = removal
            || item.try_replace
            || !matches!(
                item.kind,
                Kind::Dir { .. }
                    | Kind::EmptyDir
                    | Kind::Adjust { recursive: false }
                    | Kind::Xattr {
                        recursive: false,
                        ..
                    }
                    | Kind::Acl {
                        recursive: false,
                        ..
                    }
                    | Kind::Attr {
                        recursive: false,
                        ..
                    }
            );
        if !removal && matches!(item.kind, Kind::Ignore { .. } | Kind::Remove { .. }) {
            // Nothing to create: these lines act only when removing or cleaning.
            continue;
        }
        let path = if item.kind.needs_glob() && super::glob::is_glob(path.as_bytes()) {
            match glob_base(&path) {
                Some(base) => {
                    r.touched.push(Touch {
                        path: base,
                        below: true,
                    });
                    owner.push(item);
                    continue;
                }
                None => {
                    r.unbounded = Some(format!("{path}: magic before the last component"));
                    return r;
                }
            }
        } else {
            path
        };
        // What the line reads: a copy's source, where an `L?` line's target leads.
        let read = match &item.kind {
            Kind::Copy { .. } => Some(
                item.argument
                    .as_deref()
                    .and_then(clean)
                    .ok_or("copy source not a plain path"),
            ),
            Kind::Symlink {
                if_target_exists: true,
                ..
            } => Some(
                link_target(&path, item.argument.as_deref().unwrap_or_default())
                    .ok_or("link target not UTF-8"),
            ),
            _ => None,
        };
        match read {
            Some(Ok(p)) => {
                r.touched.push(Touch {
                    path: p,
                    below: true,
                });
                owner.push(item);
            }
            Some(Err(why)) => {
                r.unbounded = Some(format!("{path}: {why}"));
                return r;
            }
            None => {}
        }
        if matches!(item.kind, Kind::Copy { .. } | Kind::Symlink { .. }) {
            links.push((path.clone(), item));
        }
        r.touched.push(Touch { path, below });
        owner.push(item);
    }
    r.links = links.iter().map(|(l, _)| l.clone()).collect();
    for (l, own) in &links {
        // Another line at or below it would act through what this one made.
        let other = r
            .touched
            .iter()
            .zip(&owner)
            .any(|(t, o)| !std::ptr::eq(*o, *own) && clean_startswith(&t.path, l));
        if other {
            r.unbounded = Some(format!(
                "{l}: made by a link or copy line, and another line acts there"
            ));
            return r;
        }
    }
    r
}

/// `p` as an absolute path in systemd's spelling ([`crate::text::path::simplify`]), if it is
/// one without `..` and in UTF-8.
fn clean(p: &[u8]) -> Option<String> {
    let s = String::from_utf8(crate::text::path::simplify(p)).ok()?;
    (s.starts_with('/') && !components(&s).any(|c| c == "..")).then_some(s)
}

/// The directory a glob's matches lie in, if its magic is all in the last component.
fn glob_base(pattern: &str) -> Option<String> {
    let (dir, last) = pattern.rsplit_once('/')?;
    if super::glob::is_glob(dir.as_bytes()) || last.is_empty() {
        return None;
    }
    Some(if dir.is_empty() {
        "/".into()
    } else {
        dir.into()
    })
}

/// The in-root path a link at `path` to `target` leads to, lexically (`..` at the root stays
/// there, as resolving in the root does), given that the link's directory is a plain
/// directory; `None` if the target is not UTF-8.
pub fn link_target(path: &str, target: &[u8]) -> Option<String> {
    let target = std::str::from_utf8(target).ok()?;
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        components(parent_of(path)).collect()
    };
    for c in components(target) {
        if c == ".." {
            parts.pop();
        } else {
            parts.push(c);
        }
    }
    Some(format!("/{}", parts.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::Root;
    use crate::tmpfiles::{configure, plan::plan, Options, Source};

    fn reach_of(conf: &str) -> Reach {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t = crate::util::test_dir(&format!("reach-{n}"));
        // Copy lines whose source is missing are skipped when parsed.
        for src in ["usr/share/factory/etc/pam.d", "usr/share/x"] {
            #[allow(clippy::disallowed_methods)]
            std::fs::create_dir_all(t.join(src)).unwrap();
        }
        let root = Root::open(&t).unwrap();
        let opts = Options {
            create: true,
            boot: true,
            ..Default::default()
        };
        let src = [Source::Text {
            name: "/x.conf".into(),
            text: conf.into(),
        }];
        let (cfg, _) = configure(&root, &opts, &src).unwrap();
        reach(&plan(&cfg, &opts))
    }

    fn t(path: &str, below: bool) -> Touch {
        Touch {
            path: path.into(),
            below,
        }
    }

    #[test]
    fn directories_reach_only_themselves_and_the_rest_reach_below() {
        let r = reach_of(
            "d /run/systemd 0755 - - -\nz /etc 0755 - - -\nZ /var/log 0755 - - -\n\
             f /etc/motd 0644 - - - hi\nd= /var/lib/x 0755 - - -\nL+ /etc/mtab - - - - ../proc/self/mounts\n\
             x /tmp/foo-*\nr /run/gone\n",
        );
        assert_eq!(r.unbounded, None);
        let mut got = r.touched.clone();
        got.sort_by(|a, b| a.path.cmp(&b.path));
        assert_eq!(
            got,
            vec![
                t("/etc", false),
                t("/etc/motd", true),
                t("/etc/mtab", true),
                t("/run/systemd", false),
                t("/var/lib/x", true),
                t("/var/log", true),
            ]
        );
    }

    #[test]
    fn copy_sources_link_targets_and_glob_directories_are_touched() {
        let r = reach_of(
            "C /etc/pam.d - - - - /usr/share/factory/etc/pam.d\nL? /etc/a - - - - ../usr/lib/a\n\
             L? /etc/b - - - - /opt/b\nL? /etc/c - - - - ../../x\nz /var/log/journal/*.journal 0640 - - -\n",
        );
        assert_eq!(r.unbounded, None);
        for want in [
            t("/usr/share/factory/etc/pam.d", true),
            t("/etc/pam.d", true),
            t("/usr/lib/a", true),
            t("/x", true),
            t("/opt/b", true),
            t("/var/log/journal", true),
        ] {
            assert!(r.touched.contains(&want), "{want:?} in {:?}", r.touched);
        }
    }

    #[test]
    fn what_cannot_be_bounded_by_path_says_why() {
        for (conf, why) in [
            ("L /srv/l - - - - ../run\nd /srv/l/x 0755 - - -\n", "/srv/l"),
            (
                "C /etc/x - - - - /usr/share/x\nf /etc/x/y 0644 - - -\n",
                "/etc/x",
            ),
            ("L /etc/l - - - - /x\nz /etc/l 0644 - - -\n", "/etc/l"),
            ("z /etc/*/foo 0644 - - -\n", "/etc/*/foo"),
        ] {
            let r = reach_of(conf);
            let u = r.unbounded.unwrap_or_else(|| panic!("{conf}: bounded"));
            assert!(u.starts_with(why), "{conf}: {u}");
        }
    }
}
