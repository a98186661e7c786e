//! The tmpfiles.d engine: creates, adjusts, empties and removes files, directories, links,
//! copies and special nodes as systemd-tmpfiles 257 does, on a target root.
//!
//! It owns tmpfiles.d parsing ([`parse`]), the ordering of items (purge → remove + clean →
//! create; non-glob before glob; parents before children for creation, children before parents
//! for removal; per path the type order of systemd) and their execution ([`exec`]). Owners are
//! resolved in the target root's passwd/group, copy sources and globs are resolved inside the
//! root. It must never touch anything outside the root: every path is opened through
//! [`crate::fs::Root`] with the chase-safe walk (unsafe ownership transitions refused), the last
//! component is never followed where systemd does not follow it, and recursive operations
//! never follow symlinks nor cross mount points.
//!
//! Library entry: [`run`] with [`Options`] and the configuration [`Source`]s; the `pristine
//! tmpfiles` verb is in [`cli`].

pub mod acl;
pub mod cli;
mod exec;
pub mod glob;
pub mod kind;
pub mod parse;
pub mod plan;
pub mod reach;
pub mod refresh;

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use crate::config::confdirs;
use crate::error::{Error, IoContext as _};
use crate::fs::Root;
use crate::report::{Diagnostic, Outcome};
use crate::text::specifier::SystemValues;
use crate::userdb::UserDb;

pub use kind::Kind;
pub use parse::Item;

/// What to do, as the command-line switches of `systemd-tmpfiles`.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub create: bool,
    pub remove: bool,
    pub clean: bool,
    pub purge: bool,
    pub boot: bool,
    pub dry_run: bool,
    pub graceful: bool,
    /// Only lines whose path starts with one of these (`--prefix`).
    pub prefixes: Vec<PathBuf>,
    /// Lines whose path starts with one of these are skipped (`--exclude-prefix`); the initrd
    /// uses [`Options::leave_runtime_to_real_system`].
    pub exclude_prefixes: Vec<PathBuf>,
    /// `--replace=PATH`: the given sources take the place of this file.
    pub replace: Option<PathBuf>,
    /// Whether a root other than the running system is targeted (`%T`, `%V`).
    pub has_root: bool,
    /// The host view: credentials (`tmpfiles.extra`, `^` lines) and specifier values.
    pub host: crate::host::HostFacts,
    /// Resolve users and groups in this database instead of the root's (`provision
    /// --dry-run` passes the one its sysusers step would write).
    pub users: Option<UserDb>,
}

impl Options {
    /// Adds the API and runtime file systems to the excluded prefixes (`/run /tmp /dev /proc
    /// /sys`): what an initrd leaves to the booted system.
    pub fn leave_runtime_to_real_system(&mut self) {
        for p in ["/run", "/tmp", "/dev", "/proc", "/sys"] {
            self.exclude_prefixes.push(PathBuf::from(p));
        }
    }

    fn include(&self, p: &Path) -> bool {
        if self.exclude_prefixes.iter().any(|x| p.starts_with(x)) {
            return false;
        }
        self.prefixes.is_empty() || self.prefixes.iter().any(|x| p.starts_with(x))
    }
}

/// A configuration source given explicitly.
#[derive(Clone, Debug)]
pub enum Source {
    /// A file name searched in the root's tmpfiles.d directories.
    Name(String),
    /// Text read by the caller; `name` is used in messages.
    Text { name: PathBuf, text: String },
    /// A host file named on the command line, streamed when the configuration is read.
    Host(PathBuf),
    /// Standard input (`-`), streamed when the configuration is read.
    Stdin,
}

/// All items of one path (systemd's `ItemArray`).
#[derive(Debug)]
pub(crate) struct Array {
    pub path: PathBuf,
    pub glob: bool,
    pub items: Vec<Item>,
    pub parent: Option<usize>,
    pub children: Vec<usize>,
}

/// The parsed configuration: arrays of non-glob paths first, then glob paths, each in order
/// of first appearance.
#[derive(Debug, Default)]
pub struct Config {
    pub(crate) arrays: Vec<Array>,
    /// Keyed by the path's bytes: item paths are simplified when parsed, so equal bytes are
    /// equal paths (and hashing a `Path` walks its components).
    pub(crate) by_path: HashMap<(bool, std::ffi::OsString), usize>,
}

impl Config {
    /// All items in processing order (for `--dry-run` listings and tests).
    pub fn items(&self) -> impl Iterator<Item = &Item> {
        let mut order: Vec<&Array> = self.arrays.iter().filter(|a| !a.glob).collect();
        order.extend(self.arrays.iter().filter(|a| a.glob));
        order.into_iter().flat_map(|a| a.items.iter())
    }

    fn add(&mut self, it: Item, notes: &mut Outcome) {
        let glob = it.kind.needs_glob();
        let key = (glob, it.path.as_os_str().to_os_string());
        if let Some(&idx) = self.by_path.get(&key) {
            let arr = &mut self.arrays[idx];
            if arr.items.iter().any(|e| duplicated(e, &it)) {
                notes.push(Diagnostic::notice(
                    Some(&it.file),
                    it.line,
                    format!(
                        "Duplicate line for path \"{}\", ignoring.",
                        it.path.display()
                    ),
                ));
                return;
            }
            arr.items.push(it);
            arr.items.sort_by_key(item_order);
        } else {
            self.by_path.insert(key, self.arrays.len());
            self.arrays.push(Array {
                path: it.path.clone(),
                glob,
                items: vec![it],
                parent: None,
                children: Vec::new(),
            });
        }
    }
}

/// systemd's order of the lines of one path: the ones that own it first, then by type letter.
fn item_order(i: &Item) -> (bool, char) {
    (!i.kind.takes_ownership(), i.letter)
}

fn binary_arg(i: &Item) -> &[u8] {
    i.argument.as_deref().unwrap_or(&[])
}

fn compatible(a: &Item, b: &Item) -> bool {
    if !(a.kind.takes_ownership() && b.kind.takes_ownership()) {
        return true;
    }
    binary_arg(a) == binary_arg(b)
        && a.uid == b.uid
        && a.uid_only_create == b.uid_only_create
        && a.gid == b.gid
        && a.gid_only_create == b.gid_only_create
        && a.mode_set == b.mode_set
        && a.mode == b.mode
        && a.mode_only_create == b.mode_only_create
        && a.age == b.age
        && a.age_by_file == b.age_by_file
        && a.age_by_dir == b.age_by_dir
        && a.mask_perms == b.mask_perms
        && a.keep_first_level == b.keep_first_level
        && a.kind.device() == b.kind.device()
}

fn duplicated(existing: &Item, new: &Item) -> bool {
    if compatible(existing, new) {
        return false;
    }
    let append = |i: &Item| i.kind == Kind::Write { append: true };
    !(append(existing) && append(new))
}

/// Reads and parses the configuration.
pub fn load(
    root: &Root,
    opts: &Options,
    sources: &[Source],
    values: &SystemValues,
    users: &UserDb,
    outcome: &mut Outcome,
) -> crate::error::Result<Config> {
    let include = |p: &Path| opts.include(p);
    let exists = |p: &Path| !matches!(root.stat(p, false), Err(e) if e.kind() == std::io::ErrorKind::NotFound);
    let credential = |name: &str| opts.host.credentials.get_bytes(name);
    let env = parse::ParseEnv {
        values,
        users,
        boot: opts.boot,
        graceful: opts.graceful,
        home: opts.host.running.home.clone(),
        source_exists: &exists,
        include: &include,
        credential: &credential,
    };
    let mut cfg = Config::default();
    let dirs = confdirs::search_dirs("tmpfiles.d");
    // A configuration named explicitly that cannot be read is fatal (exit 1), as in systemd.
    let read_source = |cfg: &mut Config,
                       src: &Source,
                       outcome: &mut Outcome|
     -> crate::error::Result<()> {
        match src {
            Source::Text { name, text } => {
                parse_reader(cfg, &env, name, text.as_bytes(), outcome);
            }
            Source::Host(p) => {
                let f = std::fs::File::open(p).op("open", p)?;
                parse_reader(cfg, &env, p, std::io::BufReader::new(f), outcome);
            }
            Source::Stdin => {
                let name = Path::new("<stdin>");
                parse_reader(cfg, &env, name, std::io::stdin().lock(), outcome);
            }
            Source::Name(n) => {
                let found = dirs.iter().map(|d| d.join(n)).find(|p| root.exists(p));
                // A masking symlink to /dev/null reads as empty.
                if let Some(p) = found.as_ref().filter(|p| confdirs::is_mask(root, p)) {
                    log::debug!("{} is masked", root.display_path(p).display());
                    return Ok(());
                }
                match found.map(|p| (root.open_config(&p), p)) {
                    Some((Ok(reader), p)) => {
                        parse_reader(cfg, &env, &root.display_path(&p), reader, outcome);
                    }
                    Some((Err(e), p)) => return Err(Error::io("read", root.display_path(&p), e)),
                    None => {
                        let enoent = std::io::Error::from(std::io::ErrorKind::NotFound);
                        return Err(Error::io("read", n, enoent));
                    }
                }
            }
        }
        Ok(())
    };
    if opts.replace.is_some() || sources.is_empty() {
        let mut files = confdirs::list(root, "tmpfiles.d", ".conf");
        if let Some(r) = &opts.replace {
            confdirs::insert_replacement(&mut files, &dirs, r);
        }
        for f in files {
            if opts.replace.as_deref() == Some(f.path.as_path()) {
                for s in sources {
                    read_source(&mut cfg, s, outcome)?;
                }
                continue;
            }
            if f.masked {
                continue;
            }
            match root.open_config(&f.path) {
                Ok(reader) => {
                    parse_reader(&mut cfg, &env, &root.display_path(&f.path), reader, outcome);
                }
                Err(e) => log::warn!(
                    "Failed to open '{}', ignoring: {e}",
                    root.display_path(&f.path).display()
                ),
            }
        }
    } else {
        for s in sources {
            read_source(&mut cfg, s, outcome)?;
        }
    }
    // Extra lines passed as the `tmpfiles.extra` credential (host side, like systemd).
    let creds = &opts.host.credentials;
    if let (Some(p), Some(b)) = (
        creds.path("tmpfiles.extra"),
        creds.get_bytes("tmpfiles.extra"),
    ) {
        parse_reader(&mut cfg, &env, &p, &b[..], outcome);
    }
    inherit_x_ages(&mut cfg);
    link_parents(&mut cfg);
    Ok(cfg)
}

/// Parses one configuration file line by line as it is read (systemd's `read_config_file`):
/// only `#` starts a comment; a read error (a line of 1 MiB or more) ends the file, keeping
/// the lines before it, and is reported without changing the exit code, as in systemd.
fn parse_reader(
    cfg: &mut Config,
    env: &parse::ParseEnv<'_>,
    file: &Path,
    reader: impl std::io::BufRead,
    outcome: &mut Outcome,
) {
    let r = crate::text::lines::for_each_config_line(reader, b"#", |n, line| {
        let mut notes = Vec::new();
        let r = parse::parse_line(env, file, n, line, &mut notes);
        for d in notes {
            outcome.push(d);
        }
        match r {
            Ok(parse::Parsed::Item(it)) => cfg.add(*it, outcome),
            Ok(parse::Parsed::Skip) => {}
            Err(d) => outcome.push(d),
        }
    });
    if let Err(e) = r {
        outcome.push(Diagnostic::notice(
            Some(file),
            e.line,
            format!(
                "Failed to read '{}', ignoring the rest of the file: {}",
                file.display(),
                crate::report::errno_text(&e.error)
            ),
        ));
    }
}

/// `X` lines take the age of the `d`/`D`/`v`/`q`/`Q` line they are nested in (systemd's
/// `read_config_file` post-processing; done once over all files here, which gives the same
/// result because it only looks at lines parsed so far and later lines never shrink it).
fn inherit_x_ages(cfg: &mut Config) {
    let has_x = |a: &Array| {
        a.glob
            && a.items
                .iter()
                .any(|i| i.kind == Kind::Ignore { recursive: true })
    };
    if !cfg.arrays.iter().any(has_x) {
        return;
    }
    let dirs: Vec<(PathBuf, Option<u64>)> = cfg
        .arrays
        .iter()
        .filter(|a| !a.glob)
        .flat_map(|a| a.items.iter())
        .filter(|j| matches!(j.kind, Kind::Dir { .. }))
        .map(|j| (j.path.clone(), j.age))
        .collect();
    for arr in cfg.arrays.iter_mut().filter(|a| a.glob) {
        for i in arr
            .items
            .iter_mut()
            .filter(|i| i.kind == Kind::Ignore { recursive: true })
        {
            let ib = i.path.as_os_str().as_bytes();
            let mut cand: Option<&(PathBuf, Option<u64>)> = None;
            for j in &dirs {
                if j.0 == i.path {
                    cand = Some(j);
                    break;
                }
                let better = match cand {
                    Some(c) => {
                        j.0.starts_with(&c.0) && glob::fnmatch(ib, j.0.as_os_str().as_bytes(), true)
                    }
                    None => i.path.starts_with(&j.0),
                };
                if better {
                    cand = Some(j);
                }
            }
            if let Some((_, Some(age))) = cand {
                i.age = Some(*age);
            }
        }
    }
}

fn link_parents(cfg: &mut Config) {
    // One lookup table by the paths' bytes (hashing a `Path` walks its components): item paths
    // are simplified at parse time, so equal bytes are equal paths.
    let mut by_bytes: HashMap<&[u8], (Option<usize>, Option<usize>)> = HashMap::new();
    for (&(glob, ref p), &idx) in &cfg.by_path {
        let e = by_bytes.entry(p.as_bytes()).or_default();
        if glob {
            e.1 = Some(idx);
        } else {
            e.0 = Some(idx);
        }
    }
    let mut links = Vec::new();
    for (idx, arr) in cfg.arrays.iter().enumerate() {
        for prefix in arr.path.ancestors().skip(1) {
            let found = by_bytes
                .get(prefix.as_os_str().as_bytes())
                .and_then(|&(plain, glob)| plain.or(glob));
            if let Some(p) = found {
                links.push((idx, p));
                break;
            }
        }
    }
    for (idx, p) in links {
        cfg.arrays[idx].parent = Some(p);
        cfg.arrays[p].children.push(idx);
    }
}

/// Runs tmpfiles on `root`: observes the root, parses the configuration, executes the phases.
/// `Err` is a fatal error before anything was done (an explicitly named configuration that
/// cannot be read): exit code 1.
pub fn run(root: &Root, opts: &Options, sources: &[Source]) -> crate::error::Result<Outcome> {
    run_with_copies(root, opts, sources, |_| {}).map(|(o, _)| o)
}

/// [`run`], also returning the `C` lines of the configuration (for [`refresh`]).
pub fn run_with_copies(
    root: &Root,
    opts: &Options,
    sources: &[Source],
    before_apply: impl FnOnce(&plan::Plan<'_>),
) -> crate::error::Result<(Outcome, Vec<refresh::Copy>)> {
    let (cfg, mut outcome) = configure(root, opts, sources)?;
    let copies = cfg
        .items()
        .filter(|i| matches!(i.kind, Kind::Copy { .. }))
        .filter_map(|i| {
            Some(refresh::Copy {
                target: i.path.clone(),
                source: parse::bytes_to_path(i.argument.clone()?),
            })
        })
        .collect();
    let mut plan = plan::plan(&cfg, opts);
    before_apply(&plan);
    apply(root, opts, &cfg, &mut plan, &mut outcome);
    if opts.dry_run {
        for line in plan.to_string().lines() {
            log::info!("{line}");
        }
    }
    Ok((outcome, copies))
}

/// Observes what parsing needs from the root (specifier values, its user database) and
/// reads the configuration: the first half of [`run`]; the diagnostics so far come with it.
pub fn configure(
    root: &Root,
    opts: &Options,
    sources: &[Source],
) -> crate::error::Result<(Config, Outcome)> {
    let mut outcome = Outcome::default();
    let values = opts.host.running.system_values(root, opts.has_root);
    let users = match opts.users.clone().map_or_else(|| UserDb::load(root), Ok) {
        Ok(u) => u,
        Err(e) => {
            log::warn!("Failed to read the root's user database: {e}");
            UserDb::default()
        }
    };
    let cfg = load(root, opts, sources, &values, &users, &mut outcome)?;
    Ok((cfg, outcome))
}

/// Applies `plan` (made by [`plan::plan`] from `cfg`) to the root: the second half of
/// [`run`]. With `opts.dry_run` nothing changes and the steps record what they would do.
pub fn apply(
    root: &Root,
    opts: &Options,
    cfg: &Config,
    plan: &mut plan::Plan<'_>,
    outcome: &mut Outcome,
) {
    exec::apply(root, opts, cfg, plan, outcome);
}

/// systemd-tmpfiles' exit code: bad configuration (65) takes precedence over failed
/// operations (73).
pub fn exit_code(o: &Outcome) -> u8 {
    if o.bad_config() {
        crate::report::EXIT_BAD_CONFIG
    } else if o.failed() {
        crate::report::EXIT_OP_FAILED
    } else {
        crate::report::EXIT_OK
    }
}

/// `--cat-config`: the configuration files as systemd prints them.
pub fn cat_config(root: &Root) -> String {
    let files = confdirs::list(root, "tmpfiles.d", ".conf");
    let mut out = String::new();
    for (i, f) in files.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let shown = root.display_path(&f.path);
        if f.masked {
            // systemd prints just the header of a masking file.
            out.push_str(&format!("# {}\n", shown.display()));
            continue;
        }
        out.push_str(&format!("# {}\n", shown.display()));
        if let Ok(text) = root.read(&f.path) {
            out.push_str(&String::from_utf8_lossy(&text));
            if !text.is_empty() && !text.ends_with(b"\n") {
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_filters() {
        let mut o = Options::default();
        assert!(o.include(Path::new("/run/x")));
        o.leave_runtime_to_real_system();
        for p in ["/run/x", "/tmp", "/dev/shm", "/proc/1", "/sys/fs"] {
            assert!(!o.include(Path::new(p)), "{p}");
        }
        assert!(
            o.include(Path::new("/runner")),
            "prefixes match whole components"
        );
        assert!(o.include(Path::new("/etc/x")));
        o.prefixes.push(PathBuf::from("/var"));
        assert!(o.include(Path::new("/var/lib")) && !o.include(Path::new("/etc/x")));
    }

    /// A fresh tree (named after `tag`) whose only tmpfiles.d file holds `conf`, its root and
    /// `--create` options.
    fn tree_with_config(tag: &str, conf: &str) -> (PathBuf, Root, Options) {
        let t = crate::util::test_dir(&format!("tmpfiles-{tag}"));
        std::fs::create_dir_all(t.join("etc/tmpfiles.d")).unwrap();
        std::fs::write(t.join("etc/tmpfiles.d/x.conf"), conf).unwrap();
        let root = Root::open(&t).unwrap();
        let opts = Options {
            create: true,
            ..Default::default()
        };
        (t, root, opts)
    }

    #[test]
    fn chown_of_a_resolved_directory_is_seen_by_later_items() {
        // /a/b is resolved while creating /a/b/c, then handed to uid 1000 through the alias
        // /l/b: stepping from it into the root-owned /a/b/c is now an unsafe transition.
        let (t, root, opts) = tree_with_config(
            "chown",
            "d /a/b/c 0755 - -\nL /l - - - - /a\nd /l/b 0755 1000 1000\nd /a/b/c/d 0755 - -\n",
        );
        let o = run(&root, &opts, &[]).unwrap();
        assert_eq!(
            std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(t.join("a/b")).unwrap()),
            1000
        );
        assert!(o.failed(), "{:?}", o.diagnostics);
        assert!(
            o.diagnostics
                .iter()
                .any(|d| d.message.contains("unsafe path transition")),
            "{:?}",
            o.diagnostics
        );
        assert!(!t.join("a/b/c/d").exists());
        let _ = std::fs::remove_dir_all(&t);
    }

    #[test]
    fn counts_created_and_changed_paths_once() {
        let (t, root, opts) = tree_with_config(
            "count",
            "d /a/b 0700 - - -\nf /a/b/f 0600 1 1 - hello\nL /c - - - - /a\n",
        );
        // /a (a missing parent), /a/b, /a/b/f (created, then chowned: one path), /c.
        let o = run(&root, &opts, &[]).unwrap();
        assert_eq!(o.count("paths"), 4, "{:?}", o.diagnostics);
        assert_eq!(std::fs::read(t.join("a/b/f")).unwrap(), b"hello");
        // Everything in place: nothing is counted.
        assert_eq!(run(&root, &opts, &[]).unwrap().count("paths"), 0);
        // One mode drifted: one path adjusted.
        std::fs::set_permissions(
            t.join("a/b"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        assert_eq!(run(&root, &opts, &[]).unwrap().count("paths"), 1);
        // --dry-run changes and counts nothing.
        std::fs::remove_file(t.join("c")).unwrap();
        let dry = Options {
            dry_run: true,
            ..opts.clone()
        };
        assert_eq!(run(&root, &dry, &[]).unwrap().count("paths"), 0);
        assert!(std::fs::symlink_metadata(t.join("c")).is_err());
        let _ = std::fs::remove_dir_all(&t);
    }
}
