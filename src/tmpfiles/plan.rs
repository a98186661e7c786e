//! The plan step: which line runs in which phase, in systemd's order, decided from the
//! configuration alone ([`plan`] is pure), and — once a dry run has applied it — what each
//! step would do to the tree ([`Would`]). `--dry-run` prints the applied plan's
//! [`Display`](std::fmt::Display) and nothing else ("Would …" lines, one printer).
//!
//! The order is systemd 257's: phases purge → remove + clean → create; within a phase the
//! lines of plain paths before those of globs, each in order of first appearance; for
//! creation a path's parent lines first, for removal and cleaning its children's lines first;
//! the lines of one path in type order (the ones that own the path first); each line once
//! per phase.
//!
//! What a step does to a path cannot all be decided up front, because systemd-tmpfiles
//! observes the tree *while* applying and later lines see what earlier ones made:
//! - globs (`w`, `z`, `r`, …) are expanded when their step runs, after the earlier steps
//!   created or removed what they may match;
//! - whether a path exists, has the right type, owner and mode (and so whether it is
//!   created, replaced with `=`/`+`, or adjusted) is checked at the step, after earlier steps;
//! - `C` copies and `L+`/`p+`/`c+` replacements depend on what is in the way at that moment,
//!   and the symlinks met on the way (made by earlier `L` lines) decide where a path leads.
//!
//! So the plan is the ordered list of steps; the apply phase ([`super::exec`]) executes it
//! and, in a dry run, records the actions it would take on each step instead of taking them.

use std::fmt;
use std::path::PathBuf;

use super::{Config, Item, Options};

/// The phases of one step, as a set (remove and clean run as one phase).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ops(pub(super) u8);

impl Ops {
    pub const CREATE: Ops = Ops(1);
    pub const REMOVE: Ops = Ops(2);
    pub const CLEAN: Ops = Ops(4);
    pub const PURGE: Ops = Ops(8);

    pub fn has(self, o: Ops) -> bool {
        self.0 & o.0 != 0
    }

    fn only(self, o: u8) -> Ops {
        Ops(self.0 & o)
    }
}

/// One line run in one phase.
#[derive(Debug)]
pub struct Step<'a> {
    pub ops: Ops,
    pub item: &'a Item,
    /// What the step would do, as a dry run observed it (empty before, and in a real run).
    pub would: Vec<Would>,
}

/// The ordered steps of a run.
#[derive(Debug, Default)]
pub struct Plan<'a> {
    pub steps: Vec<Step<'a>>,
}

/// One change a dry run would make (paths as the user knows them, under the root).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Would {
    /// A node of the wrong type in the way (`=`), removed recursively.
    Replace(PathBuf),
    /// An `r`/`R`/`$` path.
    Remove(PathBuf),
    /// An aged entry found while cleaning.
    CleanFile(PathBuf),
    CleanDir(PathBuf),
    CreateFile(PathBuf),
    Truncate(PathBuf),
    Write(PathBuf),
    Copy {
        from: PathBuf,
        to: PathBuf,
    },
    CreateDir(PathBuf),
    /// A FIFO or a device node.
    CreateNode {
        what: &'static str,
        path: PathBuf,
    },
    Symlink {
        path: PathBuf,
        target: PathBuf,
    },
    Chown {
        path: PathBuf,
        uid: u32,
        gid: u32,
    },
    Chmod {
        path: PathBuf,
        mode: u32,
    },
    Xattr {
        path: PathBuf,
        name: String,
    },
    Acl(PathBuf),
    Attr {
        path: PathBuf,
        flags: u32,
    },
}

impl fmt::Display for Would {
    /// systemd-tmpfiles 257's `--dry-run` messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Would::Replace(p) | Would::CleanFile(p) => {
                write!(f, "Would remove \"{}\"", p.display())
            }
            Would::Remove(p) => write!(f, "Would remove \"{}\".", p.display()),
            Would::CleanDir(p) => write!(f, "Would remove directory \"{}\"", p.display()),
            Would::CreateFile(p) => write!(f, "Would create file {}", p.display()),
            Would::Truncate(p) => write!(f, "Would truncate {}", p.display()),
            Would::Write(p) => write!(f, "Would write to \"{}\"", p.display()),
            Would::Copy { from, to } => write!(
                f,
                "Would copy tree \"{}\" to \"{}\"",
                from.display(),
                to.display()
            ),
            Would::CreateDir(p) => write!(f, "Would create directory {}", p.display()),
            Would::CreateNode { what, path } => {
                write!(f, "Would create {what} {}", path.display())
            }
            Would::Symlink { path, target } => write!(
                f,
                "Would create symlink {} -> {}",
                path.display(),
                target.display()
            ),
            Would::Chown { path, uid, gid } => {
                write!(
                    f,
                    "Would change \"{}\" to owner {uid}:{gid}",
                    path.display()
                )
            }
            Would::Chmod { path, mode } => {
                write!(f, "Would change \"{}\" to mode {mode:o}", path.display())
            }
            Would::Xattr { path, name } => write!(
                f,
                "Would set extended attribute '{name}' on {}",
                path.display()
            ),
            Would::Acl(p) => write!(f, "Would set ACL on {}", p.display()),
            Would::Attr { path, flags } => write!(
                f,
                "Would try to set file attributes 0x{flags:08x} on {}",
                path.display()
            ),
        }
    }
}

impl fmt::Display for Plan<'_> {
    /// What `--dry-run` prints: every step's changes, one per line, in order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for w in self.steps.iter().flat_map(|s| &s.would) {
            writeln!(f, "{w}")?;
        }
        Ok(())
    }
}

/// The steps `opts` asks for over `cfg`, in systemd's order (see the module docs).
pub fn plan<'a>(cfg: &'a Config, opts: &Options) -> Plan<'a> {
    let mut done: Vec<Vec<u8>> = cfg.arrays.iter().map(|a| vec![0; a.items.len()]).collect();
    let mut order: Vec<usize> = (0..cfg.arrays.len())
        .filter(|&i| !cfg.arrays[i].glob)
        .collect();
    order.extend((0..cfg.arrays.len()).filter(|&i| cfg.arrays[i].glob));
    let mut phases = Vec::new();
    if opts.purge {
        phases.push(Ops::PURGE);
    }
    let rc =
        (if opts.remove { Ops::REMOVE.0 } else { 0 }) | (if opts.clean { Ops::CLEAN.0 } else { 0 });
    if rc != 0 {
        phases.push(Ops(rc));
    }
    if opts.create {
        phases.push(Ops::CREATE);
    }
    let mut plan = Plan::default();
    for ops in phases {
        for &idx in &order {
            visit(cfg, &mut done, idx, ops, &mut plan.steps);
        }
    }
    plan
}

/// systemd's `process_item_array`: the parent's lines first when creating, the children's
/// first when removing or cleaning, then the array's own lines not yet run in this phase.
fn visit<'a>(cfg: &'a Config, done: &mut [Vec<u8>], idx: usize, ops: Ops, out: &mut Vec<Step<'a>>) {
    let removal = Ops::REMOVE.0 | Ops::CLEAN.0 | Ops::PURGE.0;
    if ops.has(Ops::CREATE) {
        if let Some(p) = cfg.arrays[idx].parent {
            visit(cfg, done, p, ops.only(Ops::CREATE.0), out);
        }
    }
    if ops.0 & removal != 0 {
        for &c in &cfg.arrays[idx].children {
            visit(cfg, done, c, ops.only(removal), out);
        }
    }
    for (k, item) in cfg.arrays[idx].items.iter().enumerate() {
        if ops.0 & !done[idx][k] == 0 {
            continue;
        }
        done[idx][k] |= ops.0;
        out.push(Step {
            ops,
            item,
            would: Vec::new(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::Root;
    use crate::tmpfiles::{apply, configure, Source};
    use std::path::Path;

    /// Plans and applies `conf` on `root`: what the plan prints, and the outcome.
    fn run(root: &Root, opts: &Options, conf: &str) -> (String, crate::report::Outcome) {
        let src = [Source::Text {
            name: PathBuf::from("/x.conf"),
            text: conf.into(),
        }];
        let (cfg, mut out) = configure(root, opts, &src).unwrap();
        let mut plan = plan(&cfg, opts);
        apply(root, opts, &cfg, &mut plan, &mut out);
        (plan.to_string(), out)
    }

    /// Every entry under `t` with its type, mode, size and link target.
    fn listing(t: &Path) -> Vec<String> {
        use std::os::unix::fs::MetadataExt as _;
        let mut out = Vec::new();
        let mut todo = vec![t.to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                let m = std::fs::symlink_metadata(&p).unwrap();
                let link = std::fs::read_link(&p).ok();
                out.push(format!("{p:?} {:o} {} {link:?}", m.mode(), m.len()));
                if m.is_dir() {
                    todo.push(p);
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn steps_follow_systemds_order_without_touching_the_tree() {
        let t = crate::util::test_dir("tmpfiles-plan-order");
        let root = Root::open(&t).unwrap();
        let opts = Options {
            create: true,
            remove: true,
            ..Default::default()
        };
        // Globs after plain paths; a parent's lines before its children's when creating,
        // after them when removing; the lines of one path in type order.
        let conf = "r /a/x*\nz /a 0700\nd /a/b\nd /a\nD /a\nR /a/b/old\n";
        let src = [Source::Text {
            name: PathBuf::from("/x.conf"),
            text: conf.into(),
        }];
        let (cfg, _) = configure(&root, &opts, &src).unwrap();
        let plan = plan(&cfg, &opts);
        let steps: Vec<(u8, char, String)> = plan
            .steps
            .iter()
            .map(|s| (s.ops.0, s.item.letter, s.item.path.display().to_string()))
            .collect();
        let rm = Ops::REMOVE.0;
        let mk = Ops::CREATE.0;
        assert_eq!(
            steps,
            [
                (rm, 'R', "/a/b/old"),
                (rm, 'd', "/a/b"),
                (rm, 'r', "/a/x*"),
                (rm, 'D', "/a"),
                (rm, 'd', "/a"),
                (rm, 'z', "/a"),
                (mk, 'D', "/a"),
                (mk, 'd', "/a"),
                (mk, 'd', "/a/b"),
                (mk, 'r', "/a/x*"),
                (mk, 'z', "/a"),
                (mk, 'R', "/a/b/old"),
            ]
            .map(|(o, l, p)| (o, l, p.to_string()))
        );
        assert!(plan.steps.iter().all(|s| s.would.is_empty()));
        assert_eq!(plan.to_string(), "", "an unapplied plan has nothing to say");
        assert!(listing(&t).is_empty());
        let _ = std::fs::remove_dir_all(&t);
    }

    #[test]
    fn a_dry_run_prints_the_plan_and_writes_nothing() {
        let t = crate::util::test_dir("tmpfiles-plan-dry");
        std::fs::create_dir_all(t.join("old/sub")).unwrap();
        std::fs::write(t.join("old/sub/f"), "x").unwrap();
        std::fs::write(t.join("e"), "text").unwrap();
        let root = Root::open(&t).unwrap();
        let opts = Options {
            create: true,
            remove: true,
            dry_run: true,
            ..Default::default()
        };
        let conf = "d /a/b 0700\nf /a/b/f 0600 - - - hello\nL /c - - - - /a\n\
                    z /e 0600\nw /e - - - - more\nR /old\n";
        let before = listing(&t);
        let (printed, out) = run(&root, &opts, conf);
        assert!(!out.failed(), "{:?}", out.diagnostics);
        assert_eq!(listing(&t), before, "a dry run changed the tree");
        let s = |p: &str| root.display_path(Path::new(p)).display().to_string();
        let expected = [
            format!("Would remove \"{}\"", s("/old/sub/f")),
            format!("Would remove directory \"{}\"", s("/old/sub")),
            format!("Would create directory {}", s("/a/b")),
            format!("Would create file {}", s("/a/b/f")),
            format!("Would create symlink {} -> /a", s("/c")),
            format!("Would write to \"{}\"", s("/e")),
            format!("Would change \"{}\" to mode 600", s("/e")),
        ];
        assert_eq!(printed, expected.map(|l| l + "\n").concat());
        // The same plan applied for real does what it said.
        let real = Options {
            dry_run: false,
            ..opts.clone()
        };
        let (printed, out) = run(&root, &real, conf);
        assert!(!out.failed(), "{:?}", out.diagnostics);
        assert_eq!(printed, "", "a real run records nothing to print");
        assert_eq!(std::fs::read(t.join("a/b/f")).unwrap(), b"hello");
        assert_eq!(std::fs::read(t.join("e")).unwrap(), b"more");
        assert!(!t.join("old").exists());
        let _ = std::fs::remove_dir_all(&t);
    }
}
