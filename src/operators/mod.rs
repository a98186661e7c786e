//! State operators: every path under `/etc` has exactly one owner, and the admin's chosen
//! changes survive stateless boots, `/usr` updates and empty-`/etc` boots. A declarative policy
//! ([`policy`], `state.d/*.toml`) gives each path to one of four operators — `parsed` (values,
//! re-rendered: [`parsed`]), `stash` (bytes, mode, owner, xattrs), `reference` (follows
//! `/usr/share/factory`) or `generate` (made once, e.g. ssh host keys: [`keys`]) — and a
//! registry ([`store`]) on persistent storage keeps what they capture as content-addressed
//! generations switched by one atomic rename.
//!
//! Flow per verb: config (`[state]`, `state.d`) → parse ([`policy`]) → observe ([`capture`],
//! [`restore::observe`], read-only through the root handle) → plan (a [`store::Generation`] to
//! write, or a [`restore::Plan`]; pure) → apply (through `src/fs` only: registry commit, staged
//! `/etc` swap) → report. This module never writes outside `/etc`, the staging directory
//! beside it and the registry directory, and never follows a symlink when writing.

pub mod capture;
pub mod cli;
pub mod device;
pub mod keys;
pub mod parsed;
pub mod policy;
pub mod restore;
pub mod store;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::{Mode, Settings};
use crate::error::{Error, IoContext, Result};
use crate::fs::Root;
use crate::host::HostFacts;
use crate::report::{Diagnostic, Outcome};
use policy::{Default as PolicyDefault, Format, Kind, Policy};
use store::{Data, Generation, RegistryRoot, Store};

/// The policy and the registry of a root.
pub struct Context<'r> {
    /// The target root.
    pub root: &'r Root,
    pub policy: Policy,
    /// The registry; `None` when it cannot be had (reported when loading).
    pub store: Option<Store<'r>>,
    /// The generation last read, until something is committed (restore reads it twice).
    read: std::cell::RefCell<Option<Option<Generation>>>,
    /// The registry device pristine mounted (after `store`: dropped, i.e. unmounted, last).
    _device: Option<device::Mounted>,
}

impl<'r> Context<'r> {
    /// Loads the policy and locates the registry — an in-root directory, or a block device
    /// mounted for the run (only when a rule needs it); problems go to `out`.
    pub fn load(
        root: &'r Root,
        settings: &Settings,
        mode: Mode,
        host: &HostFacts,
        out: &mut Outcome,
    ) -> Context<'r> {
        let policy = Policy::load(root, PolicyDefault::for_mode(mode));
        out.extend(policy.diagnostics.iter().cloned());
        let max = settings.state.max_size;
        let mut ctx = Context {
            root,
            policy,
            store: None,
            read: std::cell::RefCell::new(None),
            _device: None,
        };
        let st = &settings.state;
        if st.device.is_empty() && host.state_device.is_none() {
            let dir = match store::registry_dir(&st.registry) {
                Ok(d) => d,
                Err(e) => {
                    out.push(Diagnostic::bad_config(
                        Path::new("/etc/pristine"),
                        0,
                        format!("{e}; using the default"),
                    ));
                    PathBuf::from(crate::config::StateSettings::default().registry)
                }
            };
            ctx.store = Some(Store::new(RegistryRoot::Target(root), dir, max));
            return ctx;
        }
        if ctx.policy.rules.is_empty() {
            return ctx; // nothing to save or restore: nothing mounted
        }
        match attach_device(st, host) {
            Ok((m, r)) => {
                ctx.store = Some(Store::new(RegistryRoot::Device(r), PathBuf::from("/"), max));
                ctx._device = Some(m);
            }
            Err(e) if e.is_bad_input() && !host.boot && host.state_device.is_none() => {
                out.push(Diagnostic::notice(None, 0, e.to_string()));
            }
            Err(e) => out.push(e.diagnostic()),
        }
        ctx
    }

    /// The current generation; an unreadable registry is reported and treated as empty.
    pub fn generation(&self, out: &mut Outcome) -> Option<Generation> {
        if let Some(g) = self.read.borrow().as_ref() {
            return g.clone();
        }
        let g = match self.store.as_ref()?.read() {
            Ok(g) => g,
            Err(e) => {
                out.push(Diagnostic::failed(None, format!("registry: {e}")));
                return None;
            }
        };
        *self.read.borrow_mut() = Some(g.clone());
        g
    }

    /// Forgets the generation read (after a commit).
    fn changed(&self) {
        *self.read.borrow_mut() = None;
    }
}

/// The registry device of `[state] device` (or `--state-device`), mounted or found mounted,
/// and a root handle on it. An offline run uses only `--state-device`.
fn attach_device(
    st: &crate::config::StateSettings,
    host: &HostFacts,
) -> Result<(device::Mounted, Root)> {
    let node = match (&host.state_device, host.boot) {
        (Some(p), _) => p.clone(),
        (None, true) => device::resolve(
            &device::Spec::parse(&st.device)?,
            Path::new("/sys"),
            Path::new("/dev"),
        )?,
        (None, false) => {
            return Err(Error::msg(
                format!("use the state registry on '{}'", st.device),
                "an offline --root run mounts no host device; pass --state-device=PATH",
            ))
        }
    };
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let dir = match &host.runtime_dir {
        Some(run) => run.join("state-registry"),
        None => std::env::temp_dir().join(format!("pristine-state.{}", std::process::id())),
    };
    let m = device::attach(&node, &st.fstype, &mountinfo, &dir)?;
    let r = Root::open(&m.dir).op("open the state registry", &m.dir)?;
    Ok((m, r))
}

/// What `state save` did.
#[derive(Debug, Default)]
pub struct SaveResult {
    pub entries: usize,
    pub written: bool,
}

/// `state save`: captures the managed space and writes it as a new generation (nothing is
/// written when it equals the current one).
pub fn save(ctx: &Context<'_>, dry_run: bool, out: &mut Outcome) -> SaveResult {
    let root = ctx.root;
    let Some(store) = ctx.store.as_ref() else {
        return SaveResult::default();
    };
    let cap = capture::capture(root, &ctx.policy, store.max_size);
    out.extend(cap.diagnostics);
    let prev = ctx.generation(out);
    let next_no = prev.as_ref().map_or(1, |g| g.generation + 1);
    let mut entries = cap.entries;
    // Bad configuration loses nothing: what was saved for an ambiguous path is kept.
    for e in prev.iter().flat_map(|g| &g.entries) {
        if cap.ambiguous.contains(&e.path) && !entries.iter().any(|n| n.path == e.path) {
            entries.push(e.clone());
        }
    }
    let next = Generation::new(next_no, entries);
    let mut res = SaveResult {
        entries: next.entries.len(),
        written: false,
    };
    let unchanged = prev.as_ref().is_some_and(|p| {
        p.entries == next.entries && next.objects().iter().all(|h| store.has_object(p, h))
    });
    if unchanged && !dry_run {
        // A save interrupted after its switch may have left unreferenced objects.
        if let Some(Err(e)) = prev.as_ref().map(|p| store.tidy(p)) {
            out.push(e.diagnostic());
        }
    }
    if unchanged || (prev.is_none() && next.entries.is_empty()) || dry_run {
        return res;
    }
    ctx.changed();
    match store.commit(&next, &cap.objects) {
        Ok(()) => res.written = true,
        Err(e) => out.push(Diagnostic::failed(Some(&store.dir), e.to_string())),
    }
    res
}

/// One line of `state diff`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DiffLine {
    pub path: String,
    pub operator: String,
    /// `added` (no factory copy), `modified` (differs from the factory copy), `values`
    /// (parsed values), `unit` (enablement against presets), `discarded` (a reference or
    /// default-discard path that differs from the vendor and will be reverted at boot).
    pub change: String,
    /// Parsed values or unit states, `key=value`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// `state diff`: what differs from the factory state, per path and operator.
pub fn diff(ctx: &Context<'_>, out: &mut Outcome) -> Vec<DiffLine> {
    let root = ctx.root;
    let max = ctx.store.as_ref().map_or(u64::MAX, |s| s.max_size);
    let cap = capture::capture(root, &ctx.policy, max);
    out.extend(cap.diagnostics);
    let mut lines = Vec::new();
    for e in &cap.entries {
        let factory = format!("{}{}", restore::FACTORY, e.path);
        let change = match &e.data {
            Data::Values { format, values } => {
                // Account records carry password hashes: only their keys are shown.
                let vals = values
                    .iter()
                    .map(|(k, v)| match format {
                        Format::Accounts => k.clone(),
                        _ => format!("{k}={v}"),
                    })
                    .collect();
                let change = if *format == Format::Units {
                    "unit"
                } else {
                    "values"
                };
                lines.push(DiffLine {
                    path: e.path.clone(),
                    operator: e.operator.as_str().into(),
                    change: change.into(),
                    values: vals,
                });
                continue;
            }
            Data::Dir { .. } => {
                if root.exists(Path::new(&factory)) {
                    continue;
                }
                "added"
            }
            Data::Symlink { target } => match root.read_link(Path::new(&factory)) {
                Ok(t) if t == Path::new(target) => continue,
                Ok(_) => "modified",
                Err(_) => "added",
            },
            Data::File { object, mode, .. } => match root.stat(Path::new(&factory), false) {
                Ok(st) => {
                    let same = root
                        .read(Path::new(&factory))
                        .is_ok_and(|b| store::hash(&b) == *object)
                        && st.st_mode & 0o7777 == *mode;
                    if same {
                        continue;
                    }
                    "modified"
                }
                Err(_) => "added",
            },
        };
        lines.push(DiffLine {
            path: e.path.clone(),
            operator: e.operator.as_str().into(),
            change: change.into(),
            values: Vec::new(),
        });
    }
    // Reference paths that will be reverted.
    let o = restore::observe(root, &ctx.policy, None);
    for (path, kind, want) in &o.wanted {
        if *kind != Kind::Reference {
            continue;
        }
        let cur = o.current.get(path);
        let differs = match (want, cur) {
            (restore::Want::File { hash, .. }, Some(restore::Current::File { hash: h, .. })) => {
                hash != h
            }
            (restore::Want::Link { target }, Some(restore::Current::Link { target: t })) => {
                target != t
            }
            (restore::Want::Dir { .. }, Some(restore::Current::Dir)) => false,
            (_, Some(restore::Current::Missing) | None) => false,
            _ => true,
        };
        if differs {
            lines.push(DiffLine {
                path: path.clone(),
                operator: "reference".into(),
                change: "discarded".into(),
                values: Vec::new(),
            });
        }
    }
    lines.sort_by(|a, b| a.path.cmp(&b.path));
    lines
}

/// The restore step of `provision` (before sysusers): renders saved state, reference files and
/// generated keys into `/etc`, then records generated keys in the registry. Returns
/// (paths written, entries added to the registry).
pub fn restore(ctx: &Context<'_>, dry_run: bool, out: &mut Outcome) -> (usize, usize) {
    let root = ctx.root;
    let t = std::time::Instant::now();
    let generation = ctx.generation(out);
    let t_read = t.elapsed();
    let observed = restore::observe(root, &ctx.policy, generation.as_ref());
    let t_observe = t.elapsed();
    let plan = restore::plan(observed);
    log::debug!(
        "state restore: registry read {:?}, observed {:?}, planned {:?}, {} action(s)",
        t_read,
        t_observe - t_read,
        t.elapsed() - t_observe,
        plan.actions.len()
    );
    out.extend(plan.diagnostics.iter().cloned());
    if dry_run {
        print!("{plan}");
        return (plan.actions.len(), plan.adopt.len());
    }
    let Some(store) = ctx.store.as_ref() else {
        return (0, 0);
    };
    let written = restore::apply(root, store, &plan, out);
    let mut adopted = 0;
    if !plan.adopt.is_empty() {
        let mut entries = generation
            .as_ref()
            .map(|g| g.entries.clone())
            .unwrap_or_default();
        entries.retain(|e| !plan.adopt.iter().any(|a| a.path == e.path));
        entries.extend(plan.adopt.iter().cloned());
        let next = Generation::new(generation.as_ref().map_or(1, |g| g.generation + 1), entries);
        ctx.changed();
        match store.commit(&next, &plan.adopt_objects) {
            Ok(()) => adopted = plan.adopt.len(),
            Err(e) => out.push(Diagnostic::failed(
                Some(&store.dir),
                format!("cannot record generated files: {e}"),
            )),
        }
    }
    (written, adopted)
}

/// The unit-enablement part of restore, after presets: the saved unit states are applied over
/// whatever presets decided. Returns the number of links changed.
pub fn restore_units(ctx: &Context<'_>, dry_run: bool, out: &mut Outcome) -> usize {
    let root = ctx.root;
    let Some(generation) = ctx.generation(out) else {
        return 0;
    };
    let mut changed = 0;
    for e in &generation.entries {
        let Data::Values {
            format: Format::Units,
            values,
        } = &e.data
        else {
            continue;
        };
        if ctx.policy.owner(&e.path).rule().map(|r| r.kind) != Some(Kind::Parsed) {
            continue;
        }
        let mut states = BTreeMap::new();
        for (unit, state) in values {
            match state.as_str() {
                "enabled" => {
                    states.insert(unit.clone(), true);
                }
                "disabled" => {
                    states.insert(unit.clone(), false);
                }
                "masked" => {
                    let p = Path::new(&e.path).join(unit);
                    if root
                        .read_link(&p)
                        .is_ok_and(|t| t == Path::new("/dev/null"))
                    {
                        continue;
                    }
                    if dry_run {
                        println!("mask {}", p.display());
                        continue;
                    }
                    let r = root
                        .mkdir_all(Path::new(&e.path), 0o755)
                        .and_then(|()| root.symlink_atomic(Path::new("/dev/null"), &p));
                    match r {
                        Ok(()) => changed += 1,
                        Err(err) => {
                            out.push(Diagnostic::failed(Some(&p), format!("cannot mask: {err}")))
                        }
                    }
                }
                "unmasked" => {
                    let p = Path::new(&e.path).join(unit);
                    let masked = root
                        .read_link(&p)
                        .is_ok_and(|t| t == Path::new("/dev/null"));
                    if !masked {
                        continue;
                    }
                    if dry_run {
                        println!("unmask {}", p.display());
                        continue;
                    }
                    match root.unlink(&p) {
                        Ok(()) => changed += 1,
                        Err(err) => out.push(Error::io("unmask", &p, err).diagnostic()),
                    }
                }
                other => out.push(Diagnostic::notice(
                    Some(Path::new(&e.path)),
                    0,
                    format!("unit {unit}: unknown saved state '{other}', ignored"),
                )),
            }
        }
        if states.is_empty() {
            continue;
        }
        let o = crate::presets::apply_states(root, &states, dry_run);
        changed += o.ops.len();
        out.extend(o.outcome.diagnostics);
    }
    changed
}

/// The saved account values (the `parsed` entry of `/etc/passwd`, format `accounts`), when the
/// policy still gives that path to the `parsed` operator. Merged around sysusers by
/// [`crate::accounts`], never rendered as a file.
pub fn account_values(ctx: &Context<'_>, out: &mut Outcome) -> Option<BTreeMap<String, String>> {
    if ctx.policy.rules.is_empty() {
        return None;
    }
    let g = ctx.generation(out)?;
    g.entries.into_iter().find_map(|e| match e.data {
        Data::Values {
            format: Format::Accounts,
            values,
        } if ctx.policy.owner(&e.path).rule().map(|r| r.kind) == Some(Kind::Parsed) => Some(values),
        _ => None,
    })
}

/// After a factory reset: empties the registry except the entries under a keep-list path.
pub fn clear_after_reset(ctx: &Context<'_>, keep: &[String], out: &mut Outcome) -> usize {
    let kept = |p: &str| keep.iter().any(|k| Path::new(p).starts_with(k));
    let Some(store) = ctx.store.as_ref() else {
        return 0;
    };
    ctx.changed();
    match store.clear(kept) {
        Ok(n) => n,
        Err(e) => {
            out.push(Diagnostic::failed(
                Some(&store.dir),
                format!("cannot clear the registry after the reset: {e}"),
            ));
            0
        }
    }
}
