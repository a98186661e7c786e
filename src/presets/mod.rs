//! Presets: `pristine preset-all` and `pristine preset`, creating and removing exactly the
//! enablement symlinks under `/etc/systemd/system` that `systemctl --root=DIR preset-all`
//! (systemd 257) does, plus `--new-only`, which applies presets only to units pristine has not
//! preset before (recorded in [`STATE_FILE`]) and cleans up the links it made for units that
//! are gone.
//!
//! Flow: read the preset policy ([`rules`]) → observe the unit tree through a planning view
//! ([`vfs`]) → plan with systemd's algorithm ([`engine`]) → apply the planned operations through
//! the root handle → report. This module must never write outside `/etc/systemd/system` and its
//! own state file, and never touch a link it did not decide on by systemd's rules (or, with
//! `--new-only`, by its own record).

pub mod cli;
pub mod engine;
pub mod rules;
pub mod vfs;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;

use crate::fs::{Root, WriteOptions};
use crate::report::{Diagnostic, Outcome};
use crate::units::lookup::{LookupPaths, PERSISTENT_CONFIG};
use engine::Engine;
pub use engine::{Change, ChangeKind, PresetMode};
use rules::PresetRules;
use vfs::{Kind, Op, Vfs};

/// The `--new-only` record: units already preset, links pristine created. Lives in `/etc`, so a
/// factory reset (which empties `/etc`) forgets it and the next run is a full `preset-all`.
pub const STATE_FILE: &str = "/etc/pristine/presets.state";

/// Whether a link path read from [`STATE_FILE`] is a plain absolute path strictly below
/// [`PERSISTENT_CONFIG`] (no `.`, `..`, empty or trailing components).
fn recorded_link_in_unit_dir(p: &str) -> bool {
    let Some(rest) = p
        .strip_prefix(PERSISTENT_CONFIG)
        .and_then(|r| r.strip_prefix('/'))
    else {
        return false;
    };
    !rest.is_empty()
        && rest
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

/// Options of a preset run.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub mode: PresetMode,
    /// Apply presets only to units not recorded in [`STATE_FILE`] (all units on the first run).
    pub new_only: bool,
    /// Plan and print, change nothing.
    pub dry_run: bool,
    /// Log the per-unit errors `preset-all` ignores (masked, generated or transient units…) at
    /// info level instead of as errors: `pristine provision` meets the same masked vendor units
    /// on every first boot, and they are expected there, not alarms on the console.
    pub ignored_as_info: bool,
    /// The running system's specifier values (`%H %b %l %v %a`…), which systemctl takes from
    /// the running system even with `--root`: observed once by the caller
    /// ([`crate::host::HostFacts::running`]) and passed in.
    pub running: crate::host::RunningSystem,
}

/// What a run did (or, with `dry_run`, would do).
#[derive(Debug, Default)]
pub struct PresetOutcome {
    /// systemctl's change list (symlinks created/removed, masked units, errors it reports).
    pub changes: Vec<Change>,
    /// The filesystem operations, in order.
    pub ops: Vec<Op>,
    /// Diagnostics (bad preset lines, failed operations); decides the exit code.
    pub outcome: Outcome,
    /// `--new-only`: whether this was a first (full) run.
    pub first_run: bool,
    /// `--new-only`: the units presets were applied to.
    pub applied_to: Vec<String>,
}

impl PresetOutcome {
    /// The exit code. Like `systemctl preset-all`, problems with individual units are reported
    /// but do not fail the run; a failed write does (73).
    pub fn exit_code(&self) -> u8 {
        if self.outcome.failed() {
            crate::report::EXIT_OP_FAILED
        } else {
            crate::report::EXIT_OK
        }
    }
}

/// The parsed `--new-only` state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    pub units: BTreeSet<String>,
    /// `(unit, link path, link target)`.
    pub links: BTreeSet<(String, String, String)>,
}

impl State {
    pub fn parse(text: &str) -> State {
        let mut st = State::default();
        for l in text.lines() {
            let mut w = l.split(' ');
            match (w.next(), w.next(), w.next(), w.next()) {
                (Some("unit"), Some(u), None, None) => {
                    st.units.insert(u.to_string());
                }
                (Some("link"), Some(u), Some(p), Some(t)) => {
                    st.links
                        .insert((u.to_string(), p.to_string(), t.to_string()));
                }
                _ => {}
            }
        }
        st
    }

    pub fn render(&self) -> String {
        let mut s = String::from(
            "# pristine preset-all --new-only: units already preset, links pristine created.\n",
        );
        for u in &self.units {
            for part in ["unit ", u, "\n"] {
                s.push_str(part);
            }
        }
        for (u, p, t) in &self.links {
            for part in ["link ", u, " ", p, " ", t, "\n"] {
                s.push_str(part);
            }
        }
        s
    }
}

/// A `preset-all` plan: what it changes, in order, and what it reports, made without writing
/// anything. Its `Display` is what `--dry-run` prints; [`apply_plan`] carries it out.
#[derive(Default)]
pub struct Plan {
    /// The outcome the plan leads to (changes, operations, diagnostics so far).
    pub outcome: PresetOutcome,
    /// The change messages systemctl prints, with their levels, for when the plan is applied.
    messages: Vec<(log::Level, String)>,
    /// `--new-only`: the record to write after applying, if it changes.
    record: Option<String>,
    /// A plan made ahead (see [`plan_ahead`]): what it was made from, to check before it is
    /// applied.
    inputs: Option<Inputs>,
    /// Unit files that were read ahead (see [`prefetch`]).
    pub read_ahead: usize,
}

impl std::fmt::Display for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for op in &self.outcome.ops {
            writeln!(f, "{op}")?;
        }
        Ok(())
    }
}

/// Everything a plan was made from besides the read-only files preloaded into it.
struct Inputs {
    lookup: LookupPaths,
    rules: PresetRules,
    /// The `--new-only` record as read (`Err` if it could not be); `None` without
    /// `--new-only`.
    record: Option<Result<Option<String>, String>>,
    /// The specifier values, if a unit file needed them.
    system: Option<crate::text::specifier::SystemValues>,
    /// The log records made while planning, emitted when the plan is applied.
    held: crate::logging::Held,
    tree: vfs::Witness,
}

impl Plan {
    /// For a plan made ahead: asks every question it was made from again (the search path,
    /// the preset files, the record, the specifier values, each observation of the tree) and
    /// says which answer changed, if one did. A plan made in place has nothing to check.
    pub fn verify(&self, root: &Root, opts: &Options) -> Result<(), String> {
        let Some(i) = &self.inputs else {
            return Ok(());
        };
        if LookupPaths::for_root(root) != i.lookup {
            return Err("the unit search path".into());
        }
        if i.record
            .as_ref()
            .is_some_and(|was| read_record(root) != *was)
        {
            return Err(STATE_FILE.into());
        }
        // Loading logs what is wrong in the preset files: that was logged (held) already.
        crate::logging::hold();
        let rules = PresetRules::load(root);
        drop(crate::logging::release());
        if rules != i.rules {
            return Err("the preset files".into());
        }
        if let Some(sys) = &i.system {
            if opts.running.system_values(root, true) != *sys {
                return Err("/etc/machine-id or os-release".into());
            }
        }
        i.tree.verify(root)
    }
}

/// What a plan made ahead depends on and changes, by path (see [`Plan::footprint`]).
#[derive(Debug, Default)]
pub struct Footprint {
    /// Canonical paths, as `(path, below)`: with `below`, anything at or below `path` counts;
    /// without, only `path` itself, a directory that must remain one.
    pub paths: Vec<(String, bool)>,
    /// Paths read or written as spelled ([`LITERAL_INPUTS`]): they count, with all below
    /// them, only while no symlink lies on their way, themselves included.
    pub literal: &'static [&'static str],
    /// What applying the plan makes, changes or removes (among the paths above): what a
    /// directory above one of them is given (a default ACL, the set-group-ID bit, inherited
    /// file attributes) is passed on to what is made in it, so such a directory counts too.
    pub writes: Vec<String>,
}

/// The paths a plan made ahead reads or writes as spelled, not resolved by its planner: the
/// preset directories, the record and its directory, and the sources of specifier values.
pub const LITERAL_INPUTS: &[&str] = &[
    rules::DIRS[0],
    rules::DIRS[1],
    rules::DIRS[2],
    rules::DIRS[3],
    "/etc/pristine",
    STATE_FILE,
    "/etc/machine-id",
    crate::config::os_release::PATHS[0],
    crate::config::os_release::PATHS[1],
];

impl Plan {
    /// For a plan made ahead, every path it observed ([`vfs::Witness::paths`]) or read to
    /// make it, and every path applying it writes: work that touches none of them neither
    /// changes what [`Plan::verify`] checks nor sees what applying the plan changes. `None`
    /// for a plan made in place.
    pub fn footprint(&self) -> Option<Footprint> {
        let i = self.inputs.as_ref()?;
        let mut f = Footprint::default();
        i.tree.paths(&mut f.paths);
        for op in &self.outcome.ops {
            let p = match op {
                Op::Mkdir(p) | Op::Unlink(p) | Op::Rmdir(p) => p,
                Op::Symlink { path, .. } | Op::ReplaceSymlink { path, .. } => path,
            };
            f.writes.push(p.clone());
        }
        f.writes.extend(["/etc/pristine".into(), STATE_FILE.into()]);
        // The search path's inputs: whether /lib is a directory, and the split-usr marker
        // below it.
        f.paths.push(("/lib".into(), true));
        f.literal = LITERAL_INPUTS;
        Some(f)
    }
}

fn read_record(root: &Root) -> Result<Option<String>, String> {
    root.read_optional(Path::new(STATE_FILE))
        .map_err(|e| e.to_string())
}

/// Carries out a plan: logs its changes as systemctl does (or, with `dry_run`, prints its
/// operations), applies the operations through the root handle, then writes the record.
pub fn apply_plan(root: &Root, mut plan: Plan, opts: &Options) -> PresetOutcome {
    if let Some(i) = plan.inputs.take() {
        i.held.emit();
    }
    if opts.dry_run {
        print!("{plan}");
        return plan.outcome;
    }
    let Plan {
        mut outcome,
        messages,
        record,
        ..
    } = plan;
    for (level, m) in messages {
        log::log!(level, "{m}");
    }
    if let Err((op, e)) = Vfs::apply(root, &outcome.ops) {
        outcome
            .outcome
            .push(Diagnostic::failed(None, format!("Failed to {op}: {e}")));
    }
    if outcome.outcome.failed() {
        return outcome;
    }
    let Some(text) = record else {
        return outcome;
    };
    let write = root
        .mkdir_all(Path::new("/etc/pristine"), 0o755)
        .and_then(|_| {
            root.write_atomic(
                Path::new(STATE_FILE),
                text.as_bytes(),
                &WriteOptions::default(),
            )
        });
    if let Err(e) = write {
        outcome.outcome.push(Diagnostic::failed(
            Some(Path::new(STATE_FILE)),
            format!("Failed to write: {e}"),
        ));
    }
    outcome
}

/// The messages of systemctl's change list, rendered with host paths.
fn change_messages(
    engine: &Engine,
    changes: &[Change],
    ignored_as_info: bool,
) -> Vec<(log::Level, String)> {
    let host = |p: &str| engine.host(p);
    changes
        .iter()
        .map(|c| {
            let m = c.message(&host);
            match c.kind {
                ChangeKind::Error(_) if ignored_as_info => {
                    (log::Level::Info, format!("{m}, ignored"))
                }
                ChangeKind::Error(_) => (log::Level::Error, m),
                ChangeKind::DestinationNotPresent | ChangeKind::AuxiliaryFailed => {
                    (log::Level::Warn, m)
                }
                _ => (log::Level::Info, m),
            }
        })
        .collect()
}

/// Plans from the engine's state and applies the plan, after `out`.
fn finish_and_apply(
    root: &Root,
    engine: Engine,
    opts: &Options,
    out: PresetOutcome,
) -> PresetOutcome {
    let mut plan = Plan {
        outcome: out,
        ..Plan::default()
    };
    finish(engine, opts, &mut plan);
    apply_plan(root, plan, opts)
}

/// The plan's part of a run: the change list, its messages, the preset files' warnings and the
/// operations, taken from the engine.
fn finish(engine: Engine, opts: &Options, plan: &mut Plan) {
    let out = &mut plan.outcome;
    out.changes = engine.changes.clone();
    plan.messages = change_messages(&engine, &out.changes, opts.ignored_as_info);
    for (f, l, m) in &engine.rules.warnings {
        out.outcome
            .diagnostics
            .push(Diagnostic::notice(Some(Path::new(f)), *l, m.clone()));
    }
    out.ops = std::mem::take(&mut engine.vfs.ops);
}

/// Unit files read ahead, on another thread, while earlier provisioning steps run (see
/// [`prefetch`]): their bytes with their `[Install]` section already lexed, and the listings of
/// the read-only directories they were found in.
#[derive(Debug, Default)]
pub struct Prefetched {
    files: Vec<vfs::Preloaded>,
    dirs: Vec<(String, vfs::DirList)>,
    links: Vec<(String, String)>,
}

impl Prefetched {
    /// Number of files read ahead.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Adds files read by a helper.
    pub fn extend(&mut self, other: Prefetched) {
        self.files.extend(other.files);
        self.dirs.extend(other.dirs);
        self.links.extend(other.links);
    }

    /// Takes the directory listings out of `queue` once every reader is done with it (the
    /// caller holds its last reference): they are handed to the presets step with the files.
    pub fn take_listings(&mut self, queue: std::sync::Arc<PrefetchQueue>) {
        if let Some(listing) =
            std::sync::Arc::into_inner(queue).and_then(|q| q.listing.into_inner())
        {
            self.dirs.extend(listing.dirs);
            self.links.extend(listing.links);
        }
    }
}

/// The unit files [`prefetch`] reads, listed once (by whichever caller comes first) and then
/// claimed one at a time: a step that is done early reads the rest alongside the thread instead
/// of waiting for it.
#[derive(Debug, Default)]
pub struct PrefetchQueue {
    /// Taken by the caller that lists.
    claimed: std::sync::atomic::AtomicBool,
    listing: std::sync::OnceLock<Listing>,
    next: std::sync::atomic::AtomicUsize,
}

impl PrefetchQueue {
    /// Whether the files to read have been listed (by either caller of [`prefetch`]).
    pub fn is_listed(&self) -> bool {
        self.listing.get().is_some()
    }

    /// Whether a caller of [`prefetch`] has begun listing them.
    pub fn is_claimed(&self) -> bool {
        self.claimed.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// Canonical read-only directories (with their listings, kept for the presets step) and the
/// files (directory index, name) to read in them.
#[derive(Debug, Default)]
struct Listing {
    dirs: Vec<(String, vfs::DirList)>,
    files: Vec<(usize, String)>,
    /// Symlinks in those directories: canonical path, target.
    links: Vec<(String, String)>,
}

/// Reads ahead the unit files `preset-all` will read: the regular files with unit names in
/// the search-path directories that lie on read-only mounts (an image's `/usr`), lexing their
/// `[Install]` sections on the way. Nothing in such a directory can change before the presets
/// step, not even through a symlink or a mount (a mount point cannot be renamed or replaced),
/// so the bytes read here are the bytes that step would read, and the listings made here the
/// listings it would make; directories on writable mounts are left to it.
///
/// The thread that reads ahead and the one that will run the presets step both call this with
/// the same `queue`: the first lists the files (a busy machine may not have run the thread
/// yet), the other waits for that listing, yielding its CPU (see [`crate::util::Handoff`]),
/// or gives up once `lister_gone()` says the lister ended without one. Then each reads the
/// files not claimed yet, and the two results together are all of them.
pub fn prefetch(root: &Root, queue: &PrefetchQueue, lister_gone: impl Fn() -> bool) -> Prefetched {
    use std::sync::atomic::Ordering;
    if !queue.claimed.swap(true, Ordering::AcqRel) {
        let _ = queue.listing.set(list_ahead(root));
    } else if !queue.is_listed() {
        // Waiting anyway: pay for the CPU feature detection the reading would pay.
        crate::util::detect_cpu_features();
        crate::util::yield_until(|| queue.is_listed() || lister_gone());
    }
    match queue.listing.get() {
        Some(listing) => read_claimed(listing, &queue.next),
        None => Prefetched::default(),
    }
}

/// The files [`prefetch`] reads: unit files in the read-only search directories and the
/// `.conf` files of the drop-in directories (`UNIT.d`) among them; the targets of the symlinks
/// there are read on the way.
fn list_ahead(root: &Root) -> Listing {
    let lp = LookupPaths::for_root(root);
    // Writable directories on the way (`/`, `/etc`, `/run`) are only looked into: nothing
    // here lists them, and the presets step observes them itself.
    let mut vfs = Vfs::lazy(root);
    let mut listing = Listing::default();
    let mut canon_dirs: Vec<String> = Vec::new();
    let mut dropin_dirs: Vec<String> = Vec::new();
    for d in &lp.search_path {
        let Ok((canon, true)) = vfs.chase(d, true, false) else {
            continue;
        };
        if canon_dirs.contains(&canon) || !vfs.on_read_only_mount(&canon) {
            continue;
        }
        let index = canon_dirs.len();
        for (name, kind) in vfs.list(&canon) {
            if vfs::hidden_or_backup(&name) {
                continue;
            }
            match kind {
                Kind::Reg if crate::units::name::is_valid(&name, crate::units::name::ANY) => {
                    listing.files.push((index, name));
                }
                Kind::Link => {
                    let link = crate::units::lookup::join(&canon, &name);
                    if let Ok(target) = vfs.readlink_canon(&link) {
                        listing.links.push((link, target));
                    }
                }
                Kind::Dir if name.ends_with(".d") => {
                    dropin_dirs.push(crate::units::lookup::join(&canon, &name));
                }
                _ => {}
            }
        }
        canon_dirs.push(canon);
    }
    for dir in dropin_dirs {
        // Usually on the mount of its unit directory, but it may be a mount point itself.
        if !vfs.on_read_only_mount(&dir) {
            continue;
        }
        let index = canon_dirs.len();
        for (name, kind) in vfs.list(&dir) {
            if kind == Kind::Reg && name.ends_with(".conf") && !vfs::hidden_or_backup(&name) {
                listing.files.push((index, name));
            }
        }
        canon_dirs.push(dir);
    }
    // The directories files are read from first, in order (their indexes are the files'),
    // then the other read-only directories met on the way to them.
    let mut ro = vfs.take_read_only_dirs();
    for c in &canon_dirs {
        if let Some(i) = ro.iter().position(|(p, _)| p == c) {
            listing.dirs.push(ro.swap_remove(i));
        }
    }
    if listing.dirs.len() != canon_dirs.len() {
        // A directory that could not be kept cannot be read from here: leave it all to the
        // presets step.
        return Listing::default();
    }
    listing.dirs.extend(ro);
    listing
}

/// Claims files of `listing` one at a time through `next` and reads them; a file that cannot
/// be read is left to the presets step (which then meets the same error).
fn read_claimed(listing: &Listing, next: &std::sync::atomic::AtomicUsize) -> Prefetched {
    let mut files = Vec::new();
    loop {
        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Some((d, name)) = listing.files.get(i) else {
            break;
        };
        let Some((canon, dir)) = listing.dirs.get(*d) else {
            continue;
        };
        if let Some(f) = dir.read_entry(canon, name) {
            files.push(f);
        }
    }
    Prefetched {
        files,
        ..Prefetched::default()
    }
}

/// Plans `preset-all` on a helper thread while the steps before it still run (`pristine
/// provision`): reads the unit files on read-only mounts ahead with [`prefetch`] (adding to
/// `pre`, what it read before it knew the plan was needed), together with the thread that runs
/// those steps, which reads alongside first and then hands over what it read through
/// `helped`; then makes the plan, recording what it observed of the rest of the tree and
/// holding back its log records. The plan may only be applied once
/// [`Plan::verify`] finds every observation unchanged after the steps before it are done.
///
/// The plan goes to `deliver` before the planner's view is freed. `None` when no unit
/// directory lies on a read-only mount: then nearly every observation would have to be made
/// twice, and the plan is better made in its turn.
pub fn plan_ahead(
    root: &Root,
    opts: &Options,
    queue: std::sync::Arc<PrefetchQueue>,
    helped: &crate::util::Handoff<Prefetched>,
    mut pre: Prefetched,
    deliver: impl FnOnce(Option<Plan>),
) {
    // This thread's creator outlives it: a listing it claimed gets finished.
    pre.extend(prefetch(root, &queue, || false));
    if let Some(more) = helped.take(|| true) {
        pre.extend(more);
    }
    pre.take_listings(queue);
    if pre.dirs.is_empty() {
        return deliver(None);
    }
    crate::logging::hold();
    let mut vfs = Vfs::new(root);
    let mut plan = plan_in(&mut vfs, opts, pre, true);
    let held = crate::logging::release();
    if let Some(i) = plan.inputs.as_mut() {
        i.held = held;
    }
    deliver(Some(plan));
    // Only now: the plan's taker need not wait for this.
    drop(vfs);
}

/// `preset-all` (see [`Options`]).
pub fn preset_all(root: &Root, opts: &Options) -> PresetOutcome {
    preset_all_prefetched(root, opts, Prefetched::default())
}

/// [`preset_all`] with unit files read ahead by [`prefetch`].
pub fn preset_all_prefetched(root: &Root, opts: &Options, ahead: Prefetched) -> PresetOutcome {
    apply_plan(root, plan_all(root, opts, ahead, false), opts)
}

/// Plans `preset-all` (see [`Options`]) with unit files read ahead by [`prefetch`]; with
/// `ahead`, records what the plan was made from, for [`Plan::verify`].
pub fn plan_all(root: &Root, opts: &Options, pre: Prefetched, ahead: bool) -> Plan {
    plan_in(&mut Vfs::new(root), opts, pre, ahead)
}

/// [`plan_all`] in the view `vfs` (new), which the caller drops when it likes: freeing a
/// planner's view of a few hundred units takes longer than handing its plan over.
fn plan_in(vfs: &mut Vfs<'_>, opts: &Options, pre: Prefetched, ahead: bool) -> Plan {
    let root = vfs.root();
    let mut plan = Plan {
        read_ahead: pre.len(),
        ..Plan::default()
    };
    let rules = PresetRules::load(root);
    let lp = LookupPaths::for_root(root);
    let mut inputs = ahead.then(|| (lp.clone(), rules.clone()));
    vfs.preload(pre.files, pre.dirs, pre.links);
    if ahead {
        vfs.record();
    }
    let mut engine = Engine::new(vfs, lp, rules);
    engine.set_running(opts.running.clone());
    let units = engine.enumerate();
    let mut inputs_of = |engine: &mut Engine, record: Option<Result<Option<String>, String>>| {
        inputs.take().map(|(lookup, rules)| Inputs {
            lookup,
            rules,
            record,
            system: engine.system_values().cloned(),
            held: crate::logging::Held::default(),
            tree: engine.vfs.take_witness().unwrap_or_default(),
        })
    };
    if !opts.new_only {
        engine.prepare_all(&units);
        engine.execute(opts.mode);
        plan.inputs = inputs_of(&mut engine, None);
        finish(engine, opts, &mut plan);
        return plan;
    }
    let prev_text = match read_record(root) {
        Ok(t) => t,
        Err(e) => {
            plan.outcome.outcome.push(Diagnostic::failed(
                Some(Path::new(STATE_FILE)),
                format!("Failed to read: {e}"),
            ));
            plan.inputs = inputs_of(&mut engine, Some(Err(e)));
            return plan;
        }
    };
    let prev = prev_text.as_deref().map(State::parse);
    let current: BTreeSet<String> = units.iter().cloned().collect();
    let mut state = State {
        units: current.clone(),
        links: BTreeSet::new(),
    };
    match &prev {
        None => {
            plan.outcome.first_run = true;
            plan.outcome.applied_to = units.clone();
            engine.prepare_all(&units);
            engine.execute(opts.mode);
        }
        Some(prev) => {
            let new: Vec<String> = units
                .iter()
                .filter(|u| !prev.units.contains(*u))
                .cloned()
                .collect();
            let mut seen = HashSet::new();
            plan.outcome.applied_to = new
                .iter()
                .filter(|u| seen.insert((*u).clone()))
                .cloned()
                .collect();
            engine.protected = prev.units.intersection(&current).cloned().collect();
            engine.prepare_all(&new);
            if opts.mode != PresetMode::DisableOnly {
                engine.execute(PresetMode::EnableOnly);
            }
            // Links pristine made for units that are gone: removed if still as it made them.
            for (u, p, t) in &prev.links {
                if current.contains(u) {
                    state.links.insert((u.clone(), p.clone(), t.clone()));
                    continue;
                }
                // Only a link that lies below the unit directory, reached without following
                // any link on the way, is ever removed: the record is input, not trusted.
                if !recorded_link_in_unit_dir(p) {
                    plan.outcome.outcome.push(Diagnostic::notice(
                        Some(Path::new(STATE_FILE)),
                        0,
                        format!("recorded link {p} is not below {PERSISTENT_CONFIG}, ignoring"),
                    ));
                    continue;
                }
                let Ok((canon, Kind::Link)) = engine.vfs.lstat(p) else {
                    continue;
                };
                if canon != *p {
                    continue;
                }
                if engine.vfs.readlink(p).as_deref() != Ok(t.as_str()) {
                    continue;
                }
                if engine.vfs.unlink(&canon).is_ok() {
                    engine.vfs.rmdir_parents(&canon, PERSISTENT_CONFIG);
                    engine.changes.push(Change {
                        kind: ChangeKind::Unlink,
                        path: canon,
                        source: None,
                        unit: Some(u.clone()),
                    });
                }
            }
        }
    }
    for c in &engine.changes {
        if let (ChangeKind::Symlink, Some(u), Some(t)) = (&c.kind, &c.unit, &c.source) {
            state.links.insert((u.clone(), c.path.clone(), t.clone()));
        }
    }
    let text = state.render();
    let record = Some(Ok(prev_text.clone()));
    if prev_text.as_deref() != Some(text.as_str()) {
        // Otherwise nothing new: the record stays as it is (no write).
        plan.record = Some(text);
    }
    plan.inputs = inputs_of(&mut engine, record);
    finish(engine, opts, &mut plan);
    plan
}

/// `preset UNIT…`: like `systemctl --root=DIR preset UNIT…`. A unit that cannot be found or
/// loaded stops the run before anything is changed (`Err` with the outcome so far); an error
/// while enabling (a bad alias, an unresolvable specifier) is `Err` after the rest was applied.
#[allow(clippy::result_large_err)] // Err carries the partial outcome for the report
pub fn preset(
    root: &Root,
    units: &[String],
    mode: PresetMode,
    dry_run: bool,
    running: &crate::host::RunningSystem,
) -> Result<PresetOutcome, PresetOutcome> {
    let mut out = PresetOutcome::default();
    let rules = PresetRules::load(root);
    let lp = LookupPaths::for_root(root);
    let mut vfs = Vfs::new(root);
    let mut engine = Engine::new(&mut vfs, lp, rules);
    engine.set_running(running.clone());
    for u in units {
        if engine.prepare_one(u).is_err() {
            out.changes = engine.changes.clone();
            for (level, m) in change_messages(&engine, &out.changes, false) {
                log::log!(level, "{m}");
            }
            return Err(out);
        }
    }
    engine.execute(mode);
    let failed = engine.exec_failed;
    let opts = Options {
        mode,
        dry_run,
        ..Options::default()
    };
    let out = finish_and_apply(root, engine, &opts, out);
    if failed {
        // systemctl applies what it could and exits 1.
        return Err(out);
    }
    Ok(out)
}

/// The links under `/etc/systemd/system` of a host tree (`path → target`), for tests and
/// benchmarks comparing trees.
pub fn list_links(dir: &Path) -> BTreeMap<String, String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap_or(&p).display().to_string();
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_symlink() => {
                    let t = std::fs::read_link(&p)
                        .map(|t| t.display().to_string())
                        .unwrap_or_default();
                    out.insert(rel, t);
                }
                Ok(m) if m.is_dir() => {
                    out.insert(format!("{rel}/"), String::new());
                    walk(base, &p, out);
                }
                Ok(_) => {
                    out.insert(rel, "<file>".into());
                }
                Err(_) => {}
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Adopts a system pristine has not preset before (a populated `/etc` without a
/// [`STATE_FILE`]): records every unit present now as already preset, without touching any
/// link, so that the admin's choices stand and only units that later `/usr` updates add get
/// their presets (`--new-only`). Returns the number of units recorded.
pub fn adopt(root: &Root, dry_run: bool) -> Result<usize, std::io::Error> {
    let rules = PresetRules::load(root);
    let lp = LookupPaths::for_root(root);
    let mut vfs = Vfs::new(root);
    let mut engine = Engine::new(&mut vfs, lp, rules);
    let units: BTreeSet<String> = engine.enumerate().into_iter().collect();
    let n = units.len();
    if !dry_run {
        let state = State {
            units,
            links: BTreeSet::new(),
        };
        root.mkdir_all(Path::new("/etc/pristine"), 0o755)?;
        root.write_atomic(
            Path::new(STATE_FILE),
            state.render().as_bytes(),
            &WriteOptions::default(),
        )?;
    }
    Ok(n)
}

/// The admin's deviations from the preset policy, for the state operators: units whose
/// enablement differs from what `preset-all` would make of them, `true` for enabled against
/// a `disable` preset, `false` for disabled against an `enable` preset. Read-only.
pub fn drift(root: &Root) -> BTreeMap<String, bool> {
    let rules = PresetRules::load(root);
    let lp = LookupPaths::for_root(root);
    let mut vfs = Vfs::new(root);
    let mut engine = Engine::new(&mut vfs, lp, rules);
    let units = engine.enumerate();
    engine.prepare_all(&units);
    engine.execute(PresetMode::Full);
    let mut out = BTreeMap::new();
    for c in &engine.changes {
        match (&c.kind, &c.unit) {
            // Presets would create a link: the admin disabled the unit.
            (ChangeKind::Symlink, Some(u)) => {
                out.insert(u.clone(), false);
            }
            // Presets would remove a link: the admin enabled the unit (the link's target
            // names it; the engine does not attribute removals).
            (ChangeKind::Unlink, _) => {
                let unit = root
                    .read_link(Path::new(&c.path))
                    .ok()
                    .and_then(|t| t.file_name().and_then(|n| n.to_str()).map(str::to_string))
                    .or_else(|| c.path.rsplit('/').next().map(str::to_string));
                if let Some(u) = unit {
                    out.entry(u).or_insert(true);
                }
            }
            _ => {}
        }
    }
    out
}

/// Applies explicit unit states after presets ran (the state operators' unit enablement):
/// each unit is enabled or disabled with systemd's preset algorithm as if a preset file named
/// it, so its current `[Install]` section decides the links. Units that no longer exist are
/// skipped with a notice.
pub fn apply_states(root: &Root, states: &BTreeMap<String, bool>, dry_run: bool) -> PresetOutcome {
    let mut out = PresetOutcome::default();
    let mut text = String::new();
    for (u, enable) in states {
        text.push_str(if *enable { "enable " } else { "disable " });
        text.push_str(u);
        text.push('\n');
    }
    let mut rules = PresetRules::default();
    rules.parse_into("state operators", text.as_bytes());
    let lp = LookupPaths::for_root(root);
    let mut vfs = Vfs::new(root);
    let mut engine = Engine::new(&mut vfs, lp, rules);
    let mut known = Vec::new();
    for u in states.keys() {
        if engine.prepare_one(u).is_ok() {
            known.push(u.clone());
        } else {
            out.outcome.push(Diagnostic::notice(
                None,
                0,
                format!("unit {u}: saved state not applied, the unit is gone"),
            ));
        }
    }
    if known.is_empty() {
        return out;
    }
    engine.execute(PresetMode::Full);
    let opts = Options {
        dry_run,
        ignored_as_info: true,
        ..Options::default()
    };
    finish_and_apply(root, engine, &opts, out)
}

/// The links (`path → target`) a full `preset-all` would create on this root under the one
/// preset file `text` (named `file` in messages), once the links at the in-root paths
/// `without` are gone. Planned in memory: nothing is written. `pristine factory` checks the
/// preset policy it writes with this.
pub fn simulate(
    root: &Root,
    file: &str,
    text: &[u8],
    without: &[String],
) -> BTreeMap<String, String> {
    let mut rules = PresetRules::default();
    rules.parse_into(file, text);
    let lp = LookupPaths::for_root(root);
    let mut vfs = Vfs::new(root);
    for p in without {
        // A path that is not there (or not a link) simply stays out of the picture.
        let _ = vfs.unlink(p);
    }
    let start = vfs.ops.len();
    let mut engine = Engine::new(&mut vfs, lp, rules);
    let units = engine.enumerate();
    engine.prepare_all(&units);
    engine.execute(PresetMode::Full);
    let mut links = BTreeMap::new();
    for op in engine.vfs.ops.get(start..).unwrap_or_default() {
        match op {
            Op::Symlink { target, path } | Op::ReplaceSymlink { target, path } => {
                links.insert(path.clone(), target.clone());
            }
            Op::Unlink(path) => {
                links.remove(path);
            }
            Op::Mkdir(_) | Op::Rmdir(_) => {}
        }
    }
    links
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_links_must_lie_in_the_unit_dir() {
        for ok in [
            "/etc/systemd/system/multi-user.target.wants/a.service",
            "/etc/systemd/system/a.service",
        ] {
            assert!(recorded_link_in_unit_dir(ok), "{ok}");
        }
        for bad in [
            "/bin",
            "/etc/systemd/system",
            "/etc/systemd/system/",
            "/etc/systemd/systemd/a",
            "/etc/systemd/system/../../../bin",
            "/etc/systemd/system/./a",
            "/etc/systemd/system//a",
            "etc/systemd/system/a",
        ] {
            assert!(!recorded_link_in_unit_dir(bad), "{bad}");
        }
    }

    #[test]
    fn state_round_trip() {
        let mut st = State::default();
        st.units.insert("a.service".into());
        st.units.insert("b@.socket".into());
        st.links.insert((
            "a.service".into(),
            "/etc/systemd/system/multi-user.target.wants/a.service".into(),
            "/usr/lib/systemd/system/a.service".into(),
        ));
        let text = st.render();
        assert!(text.starts_with('#'));
        assert_eq!(State::parse(&text), st);
        let junk = State::parse("garbage\nunit\nlink a b\nunit x.service\n");
        assert_eq!(junk.units.len(), 1);
        assert!(junk.links.is_empty());
    }

    #[test]
    fn change_messages_match_systemctl() {
        let host = |p: &str| format!("/r{p}");
        let c = Change {
            kind: ChangeKind::Symlink,
            path: "/etc/systemd/system/x.target.wants/a.service".into(),
            source: Some("/usr/lib/systemd/system/a.service".into()),
            unit: None,
        };
        assert_eq!(
            c.message(&host),
            "Created symlink '/r/etc/systemd/system/x.target.wants/a.service' \u{2192} '/usr/lib/systemd/system/a.service'."
        );
        let c = Change {
            kind: ChangeKind::Error(rustix::io::Errno::RFKILL),
            path: "/usr/lib/systemd/system/m.service".into(),
            source: None,
            unit: None,
        };
        assert_eq!(
            c.message(&host),
            "Failed to preset unit: Unit /r/usr/lib/systemd/system/m.service is masked"
        );
        assert!(c.is_error());
    }
}
