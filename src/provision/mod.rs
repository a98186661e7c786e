//! `pristine provision`: the boot pipeline. In the initrd, before PID 1 starts, it brings the
//! target root from whatever state it is in (empty, stale after a /usr update, reset requested,
//! fine) to a bootable, provisioned system, in one process.
//!
//! Steps, each skipped when not needed and each timed: detect → factory reset → mounts for the
//! mode → machine-id → firstboot basics → sysusers → tmpfiles (`--create --boot`; in the
//! initrd, lines under /run, /tmp, /dev, /proc and /sys are left to the real system) → presets
//! (`preset-all` on a fresh /etc, `--new-only` after a /usr update) → record
//! (`.pristine-stamp`). A failed step is reported and the next one still runs; the boot is never
//! blocked. A run with nothing to do only reads.
//!
//! Everything from the host comes in a [`HostFacts`]; an offline run (`--root` outside the
//! initrd) gets none of the host's facts unless flags pass them in, writes no report, marker
//! or transient machine id outside the root, and runs no `syncfs` (see the sync step).

mod beside;
pub mod firstboot;
pub mod machine_id;
pub mod mounts;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::config::Settings;
use crate::detect::stamp::{self, OsStamp, StampResult};
use crate::detect::{self, BootState, DirState};
use crate::error::IoContext as _;
use crate::fs::{Root, WriteOptions};
use crate::host::{Common, HostFacts};
use crate::report::usage_error;
use crate::report::{Diagnostic, Outcome};

/// Why /etc (or /var) gets work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// Empty or absent (or just reset, or a fresh tmpfs).
    Fresh,
    /// /usr changed since pristine last provisioned (or it never did).
    Updated,
    /// Nothing to do.
    UpToDate,
}

/// What one step did.
#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    pub name: &'static str,
    pub ran: bool,
    /// Why it did not run, or what it did.
    pub detail: String,
    pub duration_us: u128,
    /// Named counts (users, paths, links, …).
    pub counts: Vec<(String, u64)>,
    pub failed: bool,
}

/// The whole run's report (`/run/pristine/report.json`).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub version: &'static str,
    pub root: PathBuf,
    pub dry_run: bool,
    pub etc: Reason,
    pub var: Reason,
    pub reset: bool,
    pub steps: Vec<StepReport>,
    pub duration_us: u128,
    pub exit_code: u8,
    pub diagnostics: Vec<Diagnostic>,
}

/// The classification of one directory (pure).
pub fn classify(state: DirState, recorded: Option<&OsStamp>, now: &OsStamp) -> Reason {
    match state {
        DirState::Absent | DirState::Empty => Reason::Fresh,
        DirState::Populated => match recorded {
            Some(r) if !r.differs_from(now) => Reason::UpToDate,
            _ => Reason::Updated,
        },
    }
}

struct Run<'a> {
    root: &'a Root,
    dry_run: bool,
    /// Provisioning the running boot (initrd, or the root is `/`), not an image tree.
    boot: bool,
    out: Outcome,
    steps: Vec<StepReport>,
}

impl Run<'_> {
    fn step(
        &mut self,
        name: &'static str,
        f: impl FnOnce(&mut Outcome) -> crate::error::Result<(String, Vec<(String, u64)>)>,
    ) {
        let t = Instant::now();
        let before = self.out.diagnostics.len();
        let r = f(&mut self.out);
        let duration_us = t.elapsed().as_micros();
        let failed_diag = self.out.diagnostics[before..]
            .iter()
            .any(|d| d.severity == crate::report::Severity::Failed);
        let (detail, counts, failed) = match r {
            Ok((d, c)) => (d, c, failed_diag),
            Err(e) => {
                let detail = e.to_string();
                self.out.push(Diagnostic::failed(
                    e.path.as_deref(),
                    format!("{name}: {detail}"),
                ));
                (detail, Vec::new(), true)
            }
        };
        log::info!("{name}: {detail} ({:.1} ms)", duration_us as f64 / 1000.0);
        self.steps.push(StepReport {
            name,
            ran: true,
            detail,
            duration_us,
            counts,
            failed,
        });
    }

    fn skip(&mut self, name: &'static str, why: &str) {
        log::debug!("{name}: skipped, {why}");
        self.steps.push(StepReport {
            name,
            ran: false,
            detail: why.to_string(),
            duration_us: 0,
            counts: Vec::new(),
            failed: false,
        });
    }
}

/// Options of `pristine provision`.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub dry_run: bool,
    /// Where to write the JSON report; `None` for the default (see [`default_report_path`]).
    pub report: Option<PathBuf>,
    /// Whether a root other than the running system was named (`%T`/`%V` in tmpfiles).
    pub has_root: bool,
}

/// The report goes to the host's `/run/pristine/report.json` when provisioning the running
/// boot (in the initrd, or the root is `/`); offline runs on image trees write none unless
/// `--report=` names a file.
pub fn default_report_path(host: &HostFacts) -> Option<PathBuf> {
    host.runtime_dir.as_ref().map(|d| d.join("report.json"))
}

/// What `pristine provision` starts before anything else: the root handle and the presets
/// thread (see [`Early::start`]).
pub struct Early {
    root: Root,
    ahead: Option<PresetsAhead>,
}

impl Early {
    /// Opens the root and starts the presets thread first thing, before the host is observed:
    /// the thread then lists the unit files while this one observes the host and detects
    /// (measured: the listing used to end some 90 us later).
    /// `None` if the root cannot be opened: [`main`] opens it again and says why.
    pub fn start(common: &Common) -> Option<Early> {
        let root = Root::open(common.root_path()).ok()?;
        let ahead = PresetsAhead::spawn(&root);
        Some(Early { root, ahead })
    }
}

/// Entry point of `pristine provision`; `early` is what [`Early::start`] started, if it ran.
pub fn main(common: &Common, host: &HostFacts, args: Vec<OsString>, early: Option<Early>) -> u8 {
    let mut opts = Options {
        has_root: common.has_root(),
        ..Default::default()
    };
    let mut p = lexopt::Parser::from_args(args);
    loop {
        match p.next() {
            Ok(Some(lexopt::Arg::Long("dry-run"))) => opts.dry_run = true,
            Ok(Some(lexopt::Arg::Long("report"))) => match p.value() {
                Ok(v) => opts.report = Some(PathBuf::from(v)),
                Err(e) => return usage_error("provision", e),
            },
            Ok(Some(a)) => return usage_error("provision", a.unexpected()),
            Ok(None) => break,
            Err(e) => return usage_error("provision", e),
        }
    }
    let (root, ahead) = match early {
        Some(e) => (e.root, e.ahead),
        None => match common.open_root() {
            Ok(r) => (r, None),
            Err(code) => return code,
        },
    };
    let report_path = opts.report.clone().or_else(|| default_report_path(host));
    let report = provision(&root, host, &opts, ahead);
    if let Some(path) = report_path {
        if !opts.dry_run {
            write_report(&path, &report);
        }
    }
    report.exit_code
}

fn write_report(path: &Path, report: &Report) {
    let Ok(json) = serde_json::to_vec_pretty(report) else {
        return;
    };
    if let Err(e) = write_host_file(path, &json) {
        log::warn!("Cannot write report: {e}");
    }
}

/// Writes a file of the host's (the report, the runtime marker) atomically through
/// [`crate::fs`], creating its directory.
fn write_host_file(path: &Path, data: &[u8]) -> crate::error::Result<()> {
    let path = &std::path::absolute(path).op("resolve", path)?;
    let host = Root::open("/").op("open", "/")?;
    let dir = path.parent().unwrap_or(Path::new("/"));
    host.mkdir_all(dir, 0o755).op("create directory", dir)?;
    let opts = WriteOptions {
        mode: Some(0o644),
        ..Default::default()
    };
    host.write_atomic(path, data, &opts).op("write", path)
}

/// Directories whose file systems the pipeline writes (flushed once each at the end).
const SYNCED: &[&str] = &["/etc", "/var"];

/// Runs the pipeline on an open root, with the presets thread started early on it, if one was.
fn provision(root: &Root, host: &HostFacts, opts: &Options, ahead: Option<PresetsAhead>) -> Report {
    let t0 = Instant::now();
    let preset_opts = preset_options(host, opts.dry_run);
    let ahead = ahead.filter(|_| host.kernel.pristine_provision != Some(false));
    let mut run = Run {
        root,
        dry_run: opts.dry_run,
        boot: host.boot,
        out: Outcome::default(),
        steps: Vec::new(),
    };
    run.out.extend(host.kernel_diagnostics());
    let (settings, diags) = crate::config::load_settings(root);
    run.out.extend(diags);

    if host.kernel.pristine_provision == Some(false) {
        run.skip(
            "provision",
            "pristine.provision=0 on the kernel command line",
        );
        return finish(run, t0, Reason::UpToDate, Reason::UpToDate, false);
    }

    // Detect.
    let t = Instant::now();
    let state = detect::detect(root, host, &settings);
    run.steps.push(StepReport {
        name: "detect",
        ran: true,
        detail: format!(
            "/etc {:?}, /var {:?}, mode {}",
            state.etc.state,
            state.var.state,
            state.mode.as_str()
        )
        .to_lowercase(),
        duration_us: t.elapsed().as_micros(),
        counts: Vec::new(),
        failed: false,
    });

    // Factory reset.
    let did_reset = step_reset(&mut run, host, &settings, &state);

    // Mounts for the mode.
    step_mounts(&mut run, &state);

    // Bulk work from here on: every file still appears whole (temp + rename), durability comes
    // from one syncfs at the end instead of two fsyncs per file. Only a boot run syncs: an
    // offline run builds an image, which nothing boots before whoever seals it (unmount, the
    // builder's own sync) has made it durable, and a crash while building it means building
    // it again; a syncfs there would flush a file system it may share with the host (a build
    // host's busy disk: 0.1-0.7 s for nothing), and fsyncs one by one cost more than that on
    // ext4 (one journal commit each).
    let bulk_sync = host.boot;
    root.set_deferred_sync(true);

    // What each directory needs, after reset and mounts.
    let now = stamp::current(root);
    let classify_dir = |dir: &str| {
        let st = match root.read_dir(Path::new(dir)) {
            Ok(e) if e.is_empty() => DirState::Empty,
            Ok(_) => DirState::Populated,
            Err(_) => DirState::Absent,
        };
        classify(st, stamp::read(root, Path::new(dir)).as_ref(), &now)
    };
    let etc = if did_reset {
        Reason::Fresh
    } else {
        classify_dir("/etc")
    };
    let var = classify_dir("/var");

    // The presets step is planned on a second thread while the steps before it run (see
    // `presets::plan_ahead`): the unit files on a read-only /usr cannot change meanwhile, and
    // everything else the plan observed is checked again before it is applied.
    let mut ahead = ahead.filter(|_| etc != Reason::UpToDate);
    if let Some(a) = &ahead {
        a.go(&preset_opts);
    }

    // State operators: after a reset the registry is emptied (but for the keep-list); then the
    // saved state, reference files and generated keys are rendered into /etc.
    let operators =
        crate::operators::Context::load(root, &settings, state.mode, host, &mut run.out);
    step_state_restore(&mut run, &operators, &settings, did_reset);

    step_machine_id(&mut run, host, &settings);
    step_firstboot(&mut run, host, &settings);
    if let Some(a) = ahead.as_mut() {
        a.help(root);
    }
    let accounts = crate::operators::account_values(&operators, &mut run.out);
    let would_be_users = step_sysusers(&mut run, host, opts, &settings, accounts.as_ref(), etc);
    // The presets plan may be applied while tmpfiles applies (see `beside`), where the
    // presets step is to apply it: not in a dry run (its printed plan comes after tmpfiles'),
    // and not when the step only adopts what exists. Whether the record exists cannot change
    // meanwhile: tmpfiles touching it keeps the plan from being applied beside.
    let beside = ahead.as_ref().filter(|_| {
        !run.dry_run
            && (etc == Reason::Fresh
                || (etc == Reason::Updated && root.exists(Path::new(crate::presets::STATE_FILE))))
    });
    step_tmpfiles(&mut run, host, opts, etc, var, would_be_users, beside);
    let planned = ahead.and_then(|a| a.plan(root));
    step_presets(&mut run, &preset_opts, etc, planned);
    step_state_units(&mut run, &operators, etc);

    // Durability: everything written above becomes durable with one syncfs before the record
    // is written, so a stamp never outlives the files it vouches for after a crash. The stamps
    // themselves need no fsync: a stamp lost in a crash only makes the next boot provision
    // again, which changes nothing that is already in place.
    let wrote = run.steps.iter().any(|s| s.ran && s.name != "detect") && !run.dry_run;
    if wrote && !bulk_sync {
        run.skip(
            "sync",
            "offline: the image's builder makes it durable when sealing it",
        );
    } else if wrote {
        run.step("sync", |_| {
            root.sync(SYNCED)
                .map(|()| ("file systems synced".into(), Vec::new()))
                .op("sync the file systems of", "/etc and /var")
        });
    }

    // Record, unless an operation failed: then the next boot tries again.
    if etc == Reason::UpToDate && var == Reason::UpToDate {
        run.skip("record", "stamps up to date");
    } else if run.dry_run {
        run.skip("record", "dry run");
    } else if run.out.failed() {
        run.skip(
            "record",
            "an operation failed; the next boot provisions again",
        );
    } else {
        run.step("record", |out| {
            let mut written = 0;
            for dir in ["/etc", "/var"] {
                if let Err(e) = root.mkdir_all(Path::new(dir), 0o755) {
                    out.push(Diagnostic::failed(
                        Some(Path::new(dir)),
                        format!("cannot create directory: {e}"),
                    ));
                    continue;
                }
                match stamp::write_os_stamp(root, Path::new(dir), &now) {
                    Ok(StampResult::Written) => written += 1,
                    Ok(_) => {}
                    Err(e) => out.push(Diagnostic::failed(
                        Some(Path::new(dir)),
                        format!("cannot write {}: {e}", stamp::STAMP_NAME),
                    )),
                }
            }
            Ok((
                format!("{written} stamp(s) written"),
                vec![("stamps".into(), written)],
            ))
        });
    }
    root.set_deferred_sync(false);
    finish(run, t0, etc, var, did_reset)
}

fn finish(run: Run<'_>, t0: Instant, etc: Reason, var: Reason, reset: bool) -> Report {
    let duration_us = t0.elapsed().as_micros();
    let exit_code = run.out.exit_code();
    let count = |k: &str| {
        run.steps
            .iter()
            .flat_map(|s| s.counts.iter())
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v)
            .sum::<u64>()
    };
    let what = match etc {
        Reason::Fresh if reset => "/etc provisioned (reset)",
        Reason::Fresh => "/etc provisioned",
        Reason::Updated => "/etc updated",
        Reason::UpToDate => "/etc up to date",
    };
    let summary = format!(
        "{what}: {} users, {} paths, {} links, {:.1} ms",
        count("users"),
        count("paths"),
        count("links"),
        duration_us as f64 / 1000.0
    );
    if run.boot && !run.dry_run {
        // In the kernel log on every boot, whatever the log target.
        crate::logging::boot_summary(&summary);
    } else {
        log::info!("pristine: {summary}");
    }
    Report {
        version: env!("CARGO_PKG_VERSION"),
        root: run.root.host().to_path_buf(),
        dry_run: run.dry_run,
        etc,
        var,
        reset,
        steps: run.steps,
        duration_us,
        exit_code,
        diagnostics: run.out.diagnostics,
    }
}

/// Marker in the host's runtime directory: a reset already happened in this boot (a kernel
/// command line trigger cannot be cleared, and must not reset twice).
const RESET_DONE_MARKER: &str = "factory-reset-complete";

fn step_reset(run: &mut Run<'_>, host: &HostFacts, settings: &Settings, state: &BootState) -> bool {
    let resumed = crate::reset::pending(run.root);
    let only_kernel = state.factory_reset.sources.iter().all(|s| s == "kernel");
    let done_this_boot = host.in_initrd
        && only_kernel
        && host
            .runtime_dir
            .as_ref()
            .is_some_and(|d| d.join(RESET_DONE_MARKER).exists());
    let requested = state.factory_reset.requested && !done_this_boot;
    if !requested && resumed.is_empty() {
        run.skip("reset", "no factory reset requested");
        return false;
    }
    let mut out = Outcome::default();
    let req = crate::reset::Request::from_settings(
        settings,
        state.factory_reset.sources.clone(),
        host.efivars.clone(),
        &mut out,
    );
    run.out.extend(out.diagnostics);
    let plan = crate::reset::plan(run.root, &req, resumed, requested);
    if run.dry_run {
        for l in plan.to_string().lines() {
            println!("reset: {l}");
        }
        run.skip("reset", "dry run");
        return true;
    }
    let root = run.root;
    run.step("reset", |out| {
        crate::reset::apply(root, &plan, out);
        if let Some(dir) = host.runtime_dir.as_ref().filter(|_| host.in_initrd) {
            if let Err(e) = write_host_file(&dir.join(RESET_DONE_MARKER), b"") {
                log::warn!("{e}");
            }
        }
        Ok((
            format!(
                "flushed {} (sources: {})",
                req.dirs().join(" and "),
                req.sources.join(", ")
            ),
            Vec::new(),
        ))
    });
    true
}

fn step_mounts(run: &mut Run<'_>, state: &BootState) {
    let dirs = mounts::tmpfs_dirs(state.mode);
    if dirs.is_empty() {
        run.skip(
            "mounts",
            &format!("mode {} needs no mounts", state.mode.as_str()),
        );
        return;
    }
    let root = run.root;
    let todo: Vec<&str> = dirs
        .iter()
        .copied()
        .filter(|d| !mounts::is_tmpfs_mount(root, Path::new(d)).unwrap_or(false))
        .collect();
    if todo.is_empty() {
        run.skip("mounts", "tmpfs already mounted");
        return;
    }
    if run.dry_run {
        println!("mounts: tmpfs on {}", todo.join(" and "));
        run.skip("mounts", "dry run");
        return;
    }
    run.step("mounts", |out| {
        let mut n = 0;
        for d in &todo {
            match mounts::mount_tmpfs(root, Path::new(d)) {
                Ok(()) => n += 1,
                Err(e) => out.push(Diagnostic::failed(
                    Some(Path::new(d)),
                    format!("cannot mount tmpfs: {e}"),
                )),
            }
        }
        Ok((
            format!("tmpfs on {}", todo.join(" and ")),
            vec![("mounts".into(), n)],
        ))
    });
}

fn step_machine_id(run: &mut Run<'_>, host: &HostFacts, settings: &Settings) {
    use machine_id::Policy;
    let root = run.root;
    let path = Path::new("/etc/machine-id");
    let existing = match root.read_optional_max(path, crate::fs::limits::SMALL) {
        Ok(s) => s,
        Err(e) => {
            // Unreadable (too large, not UTF-8, not a regular file): not a machine id.
            log::warn!("Ignoring /etc/machine-id: {e}");
            None
        }
    };
    let valid = existing
        .as_deref()
        .is_some_and(|s| crate::text::specifier::parse_machine_id(s).is_ok());
    let kernel = host.kernel.machine_id.as_deref();
    let want_change =
        kernel.is_some_and(|k| k != "firmware" && existing.as_deref().map(str::trim) != Some(k));
    let policy = settings.machine_id;
    if policy == Policy::Transient && host.transient_machine_id_path().is_none() {
        run.skip(
            "machine-id",
            "transient, offline: the image keeps its /etc/machine-id, nothing written to the host",
        );
        return;
    }
    let needed = match policy {
        Policy::Persist => !valid || want_change,
        Policy::Uninitialized => existing.is_none(),
        Policy::Transient => {
            !valid
                && host
                    .transient_machine_id_path()
                    .is_some_and(|p| !p.exists())
        }
    };
    if !needed {
        run.skip("machine-id", "already set");
        return;
    }
    let dbus = {
        let p = Path::new("/var/lib/dbus/machine-id");
        match root.file_type(p) {
            Ok(Some(rustix::fs::FileType::RegularFile)) => root
                .read_optional_max(p, crate::fs::limits::SMALL)
                .ok()
                .flatten(),
            _ => None,
        }
    };
    let (id, source) = machine_id::decide(
        existing.as_deref(),
        kernel,
        dbus.as_deref(),
        &host.credentials,
        &host.smbios,
        machine_id::random_id,
    );
    if run.dry_run {
        println!("machine-id: {policy:?} from {source:?}");
        run.skip("machine-id", "dry run");
        return;
    }
    run.step("machine-id", |_| {
        let opts = WriteOptions {
            mode: Some(0o444),
            ..Default::default()
        };
        let etc = Path::new("/etc");
        match policy {
            Policy::Persist => {
                root.mkdir_all(etc, 0o755).op("create directory", etc)?;
                root.write_atomic(path, format!("{id}\n").as_bytes(), &opts)
                    .op("write", path)?;
                Ok((format!("{id} from {source:?}").to_lowercase(), Vec::new()))
            }
            Policy::Uninitialized => {
                root.mkdir_all(etc, 0o755).op("create directory", etc)?;
                root.write_atomic(path, b"uninitialized\n", &opts)
                    .op("write", path)?;
                Ok((
                    "uninitialized (PID 1 sets it on first boot)".into(),
                    Vec::new(),
                ))
            }
            Policy::Transient => {
                // Only a boot run gets here: an offline root has no /run of its own to
                // write (see `transient_machine_id_path`).
                let Some(p) = host.transient_machine_id_path() else {
                    return Ok(("transient: nothing to write offline".into(), Vec::new()));
                };
                write_host_file(&p, format!("{id}\n").as_bytes())?;
                Ok((format!("{id} in {} only", p.display()), Vec::new()))
            }
        }
    });
}

/// Runs the sysusers step; in a dry run, returns the user database it would leave behind.
fn step_sysusers(
    run: &mut Run<'_>,
    host: &HostFacts,
    po: &Options,
    settings: &Settings,
    accounts: Option<&crate::accounts::merge::Values>,
    etc: Reason,
) -> Option<crate::userdb::UserDb> {
    if etc == Reason::UpToDate {
        run.skip("sysusers", "/etc up to date");
        return None;
    }
    let root = run.root;
    let opts = crate::sysusers::Options {
        dry_run: run.dry_run,
        has_root: po.has_root,
        host: host.clone(),
        ledger: true,
        repair_ownership: settings.accounts.repair_ownership,
        ..Default::default()
    };
    let mut would_be = None;
    let dry_run = run.dry_run;
    run.step("sysusers", |out| {
        // The admin's saved accounts go in first, so sysusers works around them as on an /etc
        // that was never emptied; the admin's fields go back on the vendor records after.
        let merged_before = accounts.map_or(0, |v| {
            crate::accounts::restore_records(root, v, dry_run, out)
        });
        let o = crate::sysusers::run_planned(root, &opts, &mut would_be);
        let merged_after = accounts.map_or(0, |v| {
            crate::accounts::restore_overlay(root, v, dry_run, out)
        });
        let (users, groups) = (o.count("users"), o.count("groups"));
        let mut counts = vec![("users".into(), users), ("groups".into(), groups)];
        if accounts.is_some() {
            counts.push((
                "accounts-merged".into(),
                (merged_before + merged_after) as u64,
            ));
        }
        for k in ["ownership-stale", "ownership-repaired"] {
            if o.counts.contains_key(k) {
                counts.push((k.into(), o.count(k)));
            }
        }
        out.extend(o.diagnostics);
        Ok((
            format!("{users} user(s), {groups} group(s) created"),
            counts,
        ))
    });
    would_be
}

fn step_tmpfiles(
    run: &mut Run<'_>,
    host: &HostFacts,
    po: &Options,
    etc: Reason,
    var: Reason,
    users: Option<crate::userdb::UserDb>,
    beside: Option<&PresetsAhead>,
) {
    if etc == Reason::UpToDate && var == Reason::UpToDate {
        run.skip("tmpfiles", "/etc and /var up to date");
        return;
    }
    let root = run.root;
    let mut opts = crate::tmpfiles::Options {
        create: true,
        boot: true,
        dry_run: run.dry_run,
        has_root: po.has_root,
        host: host.clone(),
        users,
        ..Default::default()
    };
    if host.in_initrd {
        opts.leave_runtime_to_real_system();
    }
    let dry_run = run.dry_run;
    run.step("tmpfiles", |out| {
        let hand_over = |plan: &crate::tmpfiles::plan::Plan<'_>| {
            if let Some(a) = beside {
                let mut reach = crate::tmpfiles::reach::reach(plan);
                // The factory copies' record, written after the copies are refreshed.
                reach.touched.push(crate::tmpfiles::reach::Touch {
                    path: crate::tmpfiles::refresh::RECORD.into(),
                    below: true,
                });
                // Checked here, before tmpfiles makes anything: on a first boot most of the
                // way is missing, so this is a few lookups.
                if reach.unbounded.is_none() {
                    let literal = crate::presets::LITERAL_INPUTS;
                    if let Err(why) = beside::plain_chains(root, &reach, literal) {
                        reach.unbounded = Some(why);
                    }
                }
                a.beside(reach, root.durable());
            }
        };
        let (mut o, copies) = crate::tmpfiles::run_with_copies(root, &opts, &[], hand_over)?;
        // Factory copies follow the vendor when the admin did not change them.
        crate::tmpfiles::refresh::run(root, &copies, dry_run, &mut o);
        let paths = o.count("paths");
        let mut counts = vec![("paths".into(), paths)];
        for k in ["copies-refreshed", "copies-removed", "copies-conflicts"] {
            if o.count(k) > 0 {
                counts.push((k.into(), o.count(k)));
            }
        }
        out.extend(o.diagnostics);
        Ok((format!("{paths} path(s) created or adjusted"), counts))
    });
}

/// The presets step planned ahead on a second thread (see [`crate::presets::plan_ahead`]),
/// and applied there beside tmpfiles where nothing can tell (see [`beside`]).
struct PresetsAhead {
    thread: Option<std::thread::JoinHandle<()>>,
    /// What to plan with, if it is to plan (handed over once).
    go: std::sync::Arc<crate::util::Handoff<Option<crate::presets::Options>>>,
    /// The unit files to read, until this thread has read its share.
    queue: Option<std::sync::Arc<crate::presets::PrefetchQueue>>,
    helped: std::sync::Arc<crate::util::Handoff<crate::presets::Prefetched>>,
    /// Set once the plan is made (before it is handed back).
    made: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// What tmpfiles may change, if the plan is to be applied beside it (handed over once).
    beside: std::sync::Arc<crate::util::Handoff<Option<beside::Beside>>>,
    planned: std::sync::Arc<crate::util::Handoff<Option<beside::Ahead>>>,
}

impl PresetsAhead {
    /// Starts the thread first thing, before it is known whether the presets step runs: a
    /// CPU that was idle takes a while to wake (measured here: a run right after an idle
    /// spell took 0.4 ms longer), and it wakes while this thread detects. The thread then
    /// waits for [`PresetsAhead::go`]; dropped without it, the thread ends.
    fn spawn(root: &Root) -> Option<PresetsAhead> {
        use std::sync::Arc;
        let r = root.try_clone().ok()?;
        let go = Arc::new(crate::util::Handoff::default());
        let queue = Arc::new(crate::presets::PrefetchQueue::default());
        let helped = Arc::new(crate::util::Handoff::default());
        let made = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let beside = Arc::new(crate::util::Handoff::default());
        let planned = Arc::new(crate::util::Handoff::default());
        let (g, q, h, m, b, p) = (
            Arc::clone(&go),
            Arc::clone(&queue),
            Arc::clone(&helped),
            Arc::clone(&made),
            Arc::clone(&beside),
            Arc::clone(&planned),
        );
        // With a CPU of its own, the thread reads the unit files before it knows it will
        // plan: only read-only mounts, nothing changes for it, and most boots that plan
        // would otherwise wait for that reading (on one CPU it would only slow the others).
        let own_cpu = rustix::thread::sched_getaffinity(None).is_ok_and(|m| m.count() >= 2);
        let thread = crate::util::spawn_beside("presets", move || {
            crate::fs::hold_helper_until(|| q.is_claimed());
            let pre = if own_cpu {
                // This thread's creator finishes a listing it claimed.
                crate::presets::prefetch(&r, &q, || false)
            } else {
                crate::presets::Prefetched::default()
            };
            let Some(Some(o)) = g.take(|| true) else {
                return;
            };
            crate::presets::plan_ahead(&r, &o, q, &h, pre, |plan| {
                m.store(true, std::sync::atomic::Ordering::Release);
                let Some(plan) = plan else {
                    return p.put(None);
                };
                // The creator always says, before it waits for the plan.
                let ahead = match b.take(|| true).flatten() {
                    Some(b) => beside::try_apply(&r, plan, &o, b),
                    None => beside::Ahead::Plan(Box::new(plan), None),
                };
                p.put(Some(ahead));
            });
        })
        .ok()?;
        Some(PresetsAhead {
            thread: Some(thread),
            go,
            queue: Some(queue),
            helped,
            made,
            beside,
            planned,
        })
    }

    /// The presets step will run, with `opts`: plan it.
    fn go(&self, opts: &crate::presets::Options) {
        self.go.put(Some(opts.clone()));
    }

    /// Reads unit files alongside the thread and hands them over; the thread plans once it
    /// has them. The thread usually lists them while this one runs the first steps; if it has
    /// not begun (its CPU was busy), this thread lists them itself rather than wait.
    fn help(&mut self, root: &Root) {
        let Some(queue) = self.queue.take() else {
            return;
        };
        let gone = || self.thread.as_ref().is_none_or(|t| t.is_finished());
        let mine = crate::presets::prefetch(root, &queue, gone);
        drop(queue);
        self.helped.put(mine);
        if crate::fs::plan_ahead_first() {
            crate::util::yield_until(|| {
                self.made.load(std::sync::atomic::Ordering::Acquire) || gone()
            });
        }
    }

    /// tmpfiles is about to apply, and may change `reach`: the thread applies the plan
    /// beside it if that cannot meet the plan. `durable`: as the root handle's writes are.
    fn beside(&self, reach: crate::tmpfiles::reach::Reach, durable: bool) {
        if self.beside.is_ready() {
            return;
        }
        self.beside.put(Some(beside::Beside { reach, durable }));
        if crate::fs::plan_ahead_first() {
            // For tests: the plan's changes land before tmpfiles', the order in which a
            // clash that the rule missed would show.
            let gone = || self.thread.as_ref().is_none_or(|t| t.is_finished());
            crate::util::yield_until(|| self.planned.is_ready() || gone());
        }
    }

    /// The plan, or what applying it beside tmpfiles gave, once there (`None` if the thread
    /// made no plan). The thread is not joined: once it has handed over, it only frees what
    /// it used.
    fn plan(mut self, root: &Root) -> Option<beside::Ahead> {
        self.help(root);
        if !self.beside.is_ready() {
            self.beside.put(None);
        }
        let thread = self.thread.take()?;
        self.planned.take(|| !thread.is_finished()).flatten()
    }
}

impl Drop for PresetsAhead {
    fn drop(&mut self) {
        if !self.go.is_ready() {
            // Never told to plan: let the thread end.
            self.go.put(None);
        }
        if !self.beside.is_ready() {
            self.beside.put(None);
        }
    }
}

/// The options of the presets step.
fn preset_options(host: &HostFacts, dry_run: bool) -> crate::presets::Options {
    crate::presets::Options {
        mode: crate::presets::PresetMode::Full,
        new_only: true,
        dry_run,
        ignored_as_info: true,
        running: host.running.clone(),
    }
}

fn step_presets(
    run: &mut Run<'_>,
    opts: &crate::presets::Options,
    etc: Reason,
    planned: Option<beside::Ahead>,
) {
    let root = run.root;
    let dry_run = run.dry_run;
    let (planned, refused) = match planned {
        Some(beside::Ahead::Applied {
            outcome,
            held,
            read_ahead,
        }) => {
            // Applied on the presets thread while tmpfiles applied: its messages come now,
            // in the step's place.
            run.step("presets", |out| {
                held.emit();
                Ok(presets_report(
                    out,
                    outcome,
                    read_ahead,
                    "planned ahead, applied beside tmpfiles".into(),
                    (1, 1),
                ))
            });
            return;
        }
        Some(beside::Ahead::Plan(plan, refused)) => (Some(*plan), refused),
        None => (None, None),
    };
    let has_record = root.exists(Path::new(crate::presets::STATE_FILE));
    match etc {
        Reason::UpToDate => run.skip("presets", "/etc up to date"),
        Reason::Updated if !has_record => run.step("presets", |_| {
            // Never preset before: keep the admin's enablement, remember what exists now.
            let n = crate::presets::adopt(root, dry_run)
                .op("record the units of", crate::presets::STATE_FILE)?;
            Ok((
                format!("adopted: {n} existing unit(s) recorded, no link changed"),
                Vec::new(),
            ))
        }),
        Reason::Fresh | Reason::Updated => run.step("presets", |out| {
            // A plan made ahead holds if nothing it observed changed since; else it is made
            // again now.
            let (kept, mut how) = match planned {
                Some(plan) => match plan.verify(root, opts) {
                    Ok(()) => (Some(plan), "planned ahead".to_string()),
                    Err(what) => {
                        log::debug!(
                            "{what} changed while presets were planned ahead, planning again"
                        );
                        (None, format!("planned again: {what} changed"))
                    }
                },
                None => (None, "planned in turn".to_string()),
            };
            if let Some(why) = refused {
                log::debug!("Presets not applied beside tmpfiles: {why}");
                how = format!("{how}, not beside tmpfiles: {why}");
            }
            let ahead = u64::from(kept.is_some());
            let plan = kept.unwrap_or_else(|| {
                crate::presets::plan_all(root, opts, crate::presets::Prefetched::default(), false)
            });
            let read_ahead = plan.read_ahead;
            let o = crate::presets::apply_plan(root, plan, opts);
            Ok(presets_report(out, o, read_ahead, how, (ahead, 0)))
        }),
    }
}

/// The presets step's detail and counts; its diagnostics go to `out`. `(ahead, beside)`:
/// whether the plan was made ahead, and applied beside tmpfiles.
fn presets_report(
    out: &mut Outcome,
    o: crate::presets::PresetOutcome,
    read_ahead: usize,
    how: String,
    (ahead, beside): (u64, u64),
) -> (String, Vec<(String, u64)>) {
    out.extend(o.outcome.diagnostics);
    let links = o
        .changes
        .iter()
        .filter(|c| matches!(c.kind, crate::presets::ChangeKind::Symlink))
        .count() as u64;
    let what = if o.first_run {
        "preset-all"
    } else {
        "new units only"
    };
    (
        format!(
            "{what}: {} unit(s), {links} link(s) created, {read_ahead} unit file(s) read ahead, {how}",
            o.applied_to.len()
        ),
        vec![
            ("links".into(), links),
            ("read_ahead".into(), read_ahead as u64),
            ("planned_ahead".into(), ahead),
            ("applied_beside".into(), beside),
        ],
    )
}

fn step_state_restore(
    run: &mut Run<'_>,
    ctx: &crate::operators::Context<'_>,
    settings: &Settings,
    did_reset: bool,
) {
    if ctx.policy.rules.is_empty() && !did_reset {
        run.skip("state", "no state.d rules");
        return;
    }
    let dry_run = run.dry_run;
    let mut idle = false;
    run.step("state", |out| {
        let cleared = if did_reset && !dry_run {
            crate::operators::clear_after_reset(ctx, &settings.reset.keep, out)
        } else {
            0
        };
        let (written, recorded) = crate::operators::restore(ctx, dry_run, out);
        idle = written + recorded + cleared == 0;
        Ok((
            format!("{written} path(s) restored, {recorded} recorded, {cleared} cleared"),
            vec![
                ("state_restored".into(), written as u64),
                ("state_recorded".into(), recorded as u64),
                ("state_cleared".into(), cleared as u64),
            ],
        ))
    });
    // Nothing written: the step counts as not run, so a quiet boot stays read-only (no sync).
    if idle {
        if let Some(s) = run.steps.last_mut() {
            s.ran = false;
        }
    }
}

/// The saved unit states go over what presets decided.
fn step_state_units(run: &mut Run<'_>, ctx: &crate::operators::Context<'_>, etc: Reason) {
    if etc == Reason::UpToDate {
        run.skip("state-units", "/etc up to date");
        return;
    }
    let dry_run = run.dry_run;
    run.step("state-units", |out| {
        let n = crate::operators::restore_units(ctx, dry_run, out);
        Ok((
            format!("{n} unit link(s) changed"),
            vec![("state_unit_links".into(), n as u64)],
        ))
    });
}

fn step_firstboot(run: &mut Run<'_>, host: &HostFacts, settings: &Settings) {
    let root = run.root;
    let existing = firstboot::Existing::observe(root);
    let mut warnings = Vec::new();
    let zone_exists = |z: &str| root.exists(&Path::new("/usr/share/zoneinfo").join(z));
    let ops = firstboot::plan(
        &existing,
        host.kernel.hostname.as_deref(),
        &host.credentials,
        &settings.firstboot,
        &zone_exists,
        &mut warnings,
    );
    for w in warnings {
        run.out.push(Diagnostic::notice(None, 0, w));
    }
    if ops.is_empty() {
        run.skip("firstboot", "nothing missing or nothing configured");
        return;
    }
    if run.dry_run {
        for op in &ops {
            println!(
                "firstboot: {}",
                serde_json::to_string(op).unwrap_or_default()
            );
        }
        run.skip("firstboot", "dry run");
        return;
    }
    run.step("firstboot", |_| {
        let n = firstboot::apply(root, &ops).op("write the firstboot files in", "/etc")?;
        Ok((
            format!("{n} file(s) written"),
            vec![("files".into(), n as u64)],
        ))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let now = OsStamp {
            id: Some("a".into()),
            ..Default::default()
        };
        let other = OsStamp {
            id: Some("b".into()),
            ..Default::default()
        };
        assert_eq!(classify(DirState::Empty, Some(&now), &now), Reason::Fresh);
        assert_eq!(classify(DirState::Absent, None, &now), Reason::Fresh);
        assert_eq!(classify(DirState::Populated, None, &now), Reason::Updated);
        assert_eq!(
            classify(DirState::Populated, Some(&other), &now),
            Reason::Updated
        );
        assert_eq!(
            classify(DirState::Populated, Some(&now), &now),
            Reason::UpToDate
        );
    }
}
