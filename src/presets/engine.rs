//! The enablement engine: systemd 257's `install.c` logic for `preset` and `preset-all`
//! (discovering a unit through aliases and linked files, loading `[Install]` with drop-ins,
//! collecting units to enable and to disable, removing the disabled units' symlinks from
//! `/etc/systemd/system`, creating `WantedBy=`/`RequiredBy=`/`UpheldBy=`/`Alias=` links for
//! the enabled ones, following `Also=`), reimplemented over [`Vfs`] so that planning is
//! separate from writing. The order of processing — the kernel's directory order for the search
//! path, insertion order for the install contexts — is systemd's, because conflicts (two units
//! claiming one alias) are decided by it.
//!
//! Never writes: it only plans operations on the [`Vfs`] and records [`Change`]s.

use std::collections::{HashMap, HashSet, VecDeque};

use rustix::io::Errno;

use super::rules::{Action, PresetRules};
use super::vfs::{hidden_or_backup, DirState, Kind, Vfs};
use crate::text::specifier::{self, SpecError, SystemValues};
use crate::text::word::{self, Flags};
use crate::units::lookup::{self, file_name, join, parent_of, LookupPaths, PERSISTENT_CONFIG};
use crate::units::{ini, name};

/// How presets are applied (`--preset-mode=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PresetMode {
    #[default]
    Full,
    EnableOnly,
    DisableOnly,
}

impl PresetMode {
    pub fn parse(s: &str) -> Option<PresetMode> {
        Some(match s {
            "full" => PresetMode::Full,
            "enable-only" => PresetMode::EnableOnly,
            "disable-only" => PresetMode::DisableOnly,
            _ => return None,
        })
    }
}

/// What happened (systemd's `InstallChange`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Symlink,
    Unlink,
    IsMasked,
    IsDangling,
    DestinationNotPresent,
    AuxiliaryFailed,
    Error(Errno),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    /// In-root path or unit name.
    pub path: String,
    pub source: Option<String>,
    /// The unit whose enablement made this change (for symlinks).
    pub unit: Option<String>,
}

impl Change {
    /// systemctl's wording; `host` turns an in-root path into the printed path.
    pub fn message(&self, host: &dyn Fn(&str) -> String) -> String {
        let p = if self.path.starts_with('/') {
            host(&self.path)
        } else {
            self.path.clone()
        };
        let src = self.source.clone().unwrap_or_default();
        match &self.kind {
            ChangeKind::Symlink => format!("Created symlink '{p}' \u{2192} '{src}'."),
            ChangeKind::Unlink => format!("Removed '{p}'."),
            ChangeKind::IsMasked => format!("Unit {p} is masked, ignoring."),
            ChangeKind::IsDangling => {
                format!("Unit {p} is an alias to a non-existent unit, ignoring.")
            }
            ChangeKind::DestinationNotPresent => {
                format!("Unit {src} is added as a dependency to a non-existent unit {p}.")
            }
            ChangeKind::AuxiliaryFailed => {
                format!("Failed to enable auxiliary unit {p}, ignoring.")
            }
            ChangeKind::Error(e) => {
                let m = match *e {
                    Errno::EXIST => match &self.source {
                        Some(s) => format!("File '{p}' already exists and is a symlink to {s}"),
                        None => format!("File '{p}' already exists"),
                    },
                    Errno::RFKILL => format!("Unit {p} is masked"),
                    Errno::ADDRNOTAVAIL => format!("Unit {p} is transient or generated"),
                    Errno::BADSLT => format!("Invalid specifier in unit {p}"),
                    Errno::IDRM => format!(
                        "Refusing to operate on template unit {src} when destination unit {p} is a non-template unit"
                    ),
                    Errno::UCLEAN => format!("Invalid unit name {p}"),
                    Errno::LOOP => format!("Refusing to operate on linked unit file {p}"),
                    Errno::XDEV => match &self.source {
                        Some(s) => format!("Cannot alias {s} as {p}"),
                        None => format!("Invalid unit reference {p}"),
                    },
                    Errno::NOENT => format!("Unit {p} does not exist"),
                    Errno::NOLINK => format!("Unit {p} is an unresolvable alias"),
                    Errno::UNATCH => format!("Cannot resolve specifiers in unit {p}"),
                    other => {
                        let m = crate::report::strerror(other.raw_os_error());
                        return format!("Failed to preset unit {p}: {m}");
                    }
                };
                format!("Failed to preset unit: {m}")
            }
        }
    }

    pub fn is_error(&self) -> bool {
        matches!(self.kind, ChangeKind::Error(_))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Invalid,
    Regular,
    Linked,
    Alias,
    Masked,
}

#[derive(Clone, Debug)]
struct Info {
    name: String,
    path: Option<String>,
    mode: Mode,
    aliases: Vec<String>,
    wanted_by: Vec<String>,
    required_by: Vec<String>,
    upheld_by: Vec<String>,
    also: Vec<String>,
    default_instance: Option<String>,
    symlink_target: Option<String>,
    auxiliary: bool,
}

impl Info {
    fn new(name: &str, path: Option<String>, auxiliary: bool) -> Info {
        Info {
            name: name.to_string(),
            path,
            mode: Mode::Invalid,
            aliases: Vec::new(),
            wanted_by: Vec::new(),
            required_by: Vec::new(),
            upheld_by: Vec::new(),
            also: Vec::new(),
            default_instance: None,
            symlink_target: None,
            auxiliary,
        }
    }
}

/// An install context: infos by name, with the queue still to process in insertion order.
#[derive(Default)]
struct Ctx {
    infos: Vec<Info>,
    index: super::vfs::FxMap<String, usize>,
    will: VecDeque<usize>,
}

impl Ctx {
    fn find(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// `install_info_add`: `(id, newly added)`.
    fn add(&mut self, name: &str, path: Option<String>, auxiliary: bool) -> Result<usize, Errno> {
        if !name::is_valid(name, name::ANY) {
            return Err(Errno::INVAL);
        }
        if let Some(id) = self.find(name) {
            let i = &mut self.infos[id];
            i.auxiliary = i.auxiliary && auxiliary;
            return Ok(id);
        }
        let id = self.infos.len();
        self.infos.push(Info::new(name, path, auxiliary));
        self.index.insert(name.to_string(), id);
        self.will.push_back(id);
        Ok(id)
    }
}

const SEARCH_LOAD: u8 = 1;
const SEARCH_FOLLOW_CONFIG_SYMLINKS: u8 = 2;
const SEARCH_DROPIN: u8 = 4;
const FOLLOW_SYMLINK_MAX: usize = 64;

const QUIET_SECTIONS: &[&str] = &[
    "Unit",
    "Automount",
    "Device",
    "Mount",
    "Path",
    "Scope",
    "Service",
    "Slice",
    "Socket",
    "Swap",
    "Target",
    "Timer",
];

/// Lexes the `[Install]` section of a unit file or drop-in (the other sections of a unit are
/// known and skipped quietly).
pub(crate) fn lex_install(data: &[u8]) -> ini::Parsed {
    ini::parse(data, &["Install"], QUIET_SECTIONS)
}

/// What can make a search directory's resolution change while planned changes only create
/// entries (see `Engine::search_dirs`).
enum Watch {
    /// It is a directory: it stays one.
    Nothing,
    /// It is missing: an entry created at this path or at a prefix of it.
    Path(String),
    /// Any change.
    Any,
}

/// The planning engine.
pub struct Engine<'v, 'r> {
    pub vfs: &'v mut Vfs<'r>,
    pub lp: LookupPaths,
    pub rules: PresetRules,
    pub changes: Vec<Change>,
    /// Whether the root is the host's `/` (then systemd also matches removed link paths).
    pub root_is_host: bool,
    /// Units never to enable through this run (`--new-only`: units seen before).
    pub protected: HashSet<String>,
    /// Warnings about unit files: `(path, line, message)`.
    pub warnings: Vec<(String, usize, String)>,
    /// Whether systemd's `execute_preset` would have returned an error (systemctl's `preset`
    /// then exits 1; `preset-all` ignores it).
    pub exec_failed: bool,
    sys: Option<SystemValues>,
    /// The running system's specifier values, passed in by the caller; `None` only for the
    /// entry points whose callers hold no [`crate::host::HostFacts`] yet (drift, saved
    /// states, simulation), which then observe it when a specifier needs it.
    running: Option<crate::host::RunningSystem>,
    search_path: std::rc::Rc<Vec<String>>,
    /// The search directories resolved at `sp_generation` of the planning view.
    sp_dirs: std::rc::Rc<Vec<DirState>>,
    sp_generation: Option<u64>,
    /// What may change each search directory's state while entries are only created.
    sp_watch: Vec<Watch>,
    /// The planning view's (creations, removals) when `sp_dirs` was made or last confirmed.
    sp_changes: (usize, u64),
    plus: Ctx,
    minus: Ctx,
}

impl<'v, 'r> Engine<'v, 'r> {
    pub fn new(vfs: &'v mut Vfs<'r>, lp: LookupPaths, rules: PresetRules) -> Engine<'v, 'r> {
        let root_is_host = vfs.root().host() == std::path::Path::new("/");
        let search_path = std::rc::Rc::new(lp.search_path.clone());
        Engine {
            vfs,
            lp,
            rules,
            changes: Vec::new(),
            root_is_host,
            protected: HashSet::new(),
            warnings: Vec::new(),
            exec_failed: false,
            sys: None,
            running: None,
            search_path,
            sp_dirs: std::rc::Rc::new(Vec::new()),
            sp_generation: None,
            sp_watch: Vec::new(),
            sp_changes: (0, 0),
            plus: Ctx::default(),
            minus: Ctx::default(),
        }
    }

    /// The specifier values, if a unit file needed them (observed then, once).
    pub fn system_values(&self) -> Option<&crate::text::specifier::SystemValues> {
        self.sys.as_ref()
    }

    /// The running system's specifier values (see [`crate::presets::Options::running`]).
    pub fn set_running(&mut self, running: crate::host::RunningSystem) {
        self.running = Some(running);
    }

    fn change(&mut self, kind: ChangeKind, path: &str, source: Option<&str>) {
        self.changes.push(Change {
            kind,
            path: path.to_string(),
            source: source.map(str::to_string),
            unit: None,
        });
    }

    fn err(&mut self, e: Errno, path: &str, source: Option<&str>) -> Errno {
        self.change(ChangeKind::Error(e), path, source);
        e
    }

    fn warn(&mut self, file: &str, line: usize, msg: String) {
        log::warn!("{}:{line}: {msg}", self.host(file));
        self.warnings.push((file.to_string(), line, msg));
    }

    /// The host path of an in-root path, for messages.
    pub fn host(&self, p: &str) -> String {
        self.vfs
            .root()
            .display_path(std::path::Path::new(p))
            .display()
            .to_string()
    }

    // ---- specifiers ----

    fn printf(&mut self, info: &Info, fmt: &str) -> Result<String, Errno> {
        if !fmt.contains('%') {
            return Ok(fmt.to_string());
        }
        // The values of the tree and the running system (systemctl takes the latter from the
        // running system even with --root): observed when a specifier first needs them.
        let (sys, running, root) = (&mut self.sys, &mut self.running, self.vfs.root());
        let mut system = |c: char| -> Option<Result<String, SpecError>> {
            let s = sys.get_or_insert_with(|| {
                running
                    .take()
                    .unwrap_or_else(crate::host::RunningSystem::observe)
                    .system_values(root, true)
            });
            s.system(c).or_else(|| s.creds(c))
        };
        let mut lookup = |c: char| -> Option<Result<String, SpecError>> {
            let n = &info.name;
            let bad = || SpecError::Unresolvable(c, "invalid unit name".into());
            Some(match c {
                'i' => match name::instance_of(n) {
                    Some("") => Ok(info.default_instance.clone().unwrap_or_default()),
                    Some(i) => Ok(i.to_string()),
                    None if name::is_valid(n, name::PLAIN) => {
                        Ok(info.default_instance.clone().unwrap_or_default())
                    }
                    None => Err(bad()),
                },
                'j' => match name::prefix_of(n) {
                    Some(p) => Ok(p.rsplit('-').next().unwrap_or(p).to_string()),
                    None => Err(bad()),
                },
                'n' => match (&info.default_instance, name::is_valid(n, name::TEMPLATE)) {
                    (Some(d), true) => name::replace_instance(n, d).ok_or_else(bad),
                    _ => Ok(n.clone()),
                },
                'N' => match name::prefix_and_instance(n) {
                    Some(p) => match &info.default_instance {
                        Some(d) if p.ends_with('@') => Ok(format!("{p}{d}")),
                        _ => Ok(p.to_string()),
                    },
                    None => Err(bad()),
                },
                'p' => name::prefix_of(n).map(str::to_string).ok_or_else(bad),
                _ => return system(c),
            })
        };
        specifier::expand(fmt, name::UNIT_NAME_MAX, &mut lookup).map_err(|e| match e {
            SpecError::Unknown(_) => Errno::BADSLT,
            SpecError::TooLong => Errno::NAMETOOLONG,
            SpecError::Unresolvable(..) => Errno::UNATCH,
        })
    }

    // ---- loading ----

    fn parse_strv(
        &mut self,
        file: &str,
        line: usize,
        key: &str,
        value: &str,
    ) -> Option<Vec<String>> {
        let flags = Flags::UNQUOTE.union(Flags::RETAIN_ESCAPE);
        match word::split_words(value.as_bytes(), word::WHITESPACE, flags) {
            Ok(ws) => Some(
                ws.into_iter()
                    .map(|w| String::from_utf8_lossy(&w).into_owned())
                    .collect(),
            ),
            Err(_) => {
                self.warn(
                    file,
                    line,
                    format!("Failed to parse {key}={value}, ignoring."),
                );
                None
            }
        }
    }

    /// Parses `[Install]` of `data` into `ctx.infos[id]` (systemd's `config_parse` with the
    /// install table). Errors are the ones that abort systemd's parse.
    fn parse_install(
        &mut self,
        ctx: &mut Ctx,
        id: usize,
        file: &str,
        parsed: &ini::Parsed,
    ) -> Result<(), Errno> {
        for (line, w) in &parsed.warnings {
            self.warn(file, *line, w.clone());
        }
        let unit = ctx.infos[id].name.clone();
        for a in &parsed.assignments {
            let (line, key, value) = (a.line, a.key.as_str(), a.value.as_str());
            match key {
                "Alias" => {
                    let t = name::unit_type(&unit);
                    if !t.is_some_and(|t| t.may_alias()) {
                        let tn = t.map_or("unknown", |t| t.as_str());
                        self.warn(
                            file,
                            line,
                            format!("Alias= is not allowed for {tn} units, ignoring."),
                        );
                        continue;
                    }
                    self.strv_assign(ctx, id, file, line, key, value);
                }
                "WantedBy" | "RequiredBy" | "UpheldBy" => {
                    self.strv_assign(ctx, id, file, line, key, value)
                }
                "DefaultInstance" => {
                    if name::is_valid(&unit, name::INSTANCE) {
                        continue;
                    }
                    if !name::is_valid(&unit, name::TEMPLATE) {
                        self.warn(
                            file,
                            line,
                            "DefaultInstance= only makes sense for template units, ignoring."
                                .into(),
                        );
                        continue;
                    }
                    let info = ctx.infos[id].clone();
                    let printed = match self.printf(&info, value) {
                        Ok(p) => p,
                        Err(e) => {
                            self.warn(file, line, format!("Failed to resolve instance name in DefaultInstance=\"{value}\": {e}"));
                            return Err(e);
                        }
                    };
                    if !printed.is_empty() && !name::instance_is_valid(&printed) {
                        self.warn(
                            file,
                            line,
                            format!("Invalid DefaultInstance= value \"{printed}\"."),
                        );
                        return Err(Errno::INVAL);
                    }
                    ctx.infos[id].default_instance = (!printed.is_empty()).then_some(printed);
                }
                "Also" => {
                    let mut rest = Some(value.as_bytes());
                    loop {
                        let (w, r) =
                            word::extract_first_word(rest, word::WHITESPACE, Flags::empty())
                                .map_err(|_| Errno::INVAL)?;
                        rest = r;
                        let Some(w) = w else { break };
                        let w = String::from_utf8_lossy(&w).into_owned();
                        let info = ctx.infos[id].clone();
                        let printed = match self.printf(&info, &w) {
                            Ok(p) => p,
                            Err(e) => {
                                self.warn(
                                    file,
                                    line,
                                    format!("Failed to resolve unit name in Also=\"{w}\": {e}"),
                                );
                                return Err(e);
                            }
                        };
                        ctx.add(&printed, None, true)?;
                        ctx.infos[id].also.push(printed);
                    }
                }
                k if k.starts_with("X-") => {}
                k => self.warn(
                    file,
                    line,
                    format!("Unknown key '{k}' in section [Install], ignoring."),
                ),
            }
        }
        if let Some((line, msg)) = &parsed.fatal {
            self.warn(file, *line, msg.clone());
            return Err(Errno::BADMSG);
        }
        Ok(())
    }

    fn strv_assign(
        &mut self,
        ctx: &mut Ctx,
        id: usize,
        file: &str,
        line: usize,
        key: &str,
        value: &str,
    ) {
        let list = if value.is_empty() {
            None
        } else {
            match self.parse_strv(file, line, key, value) {
                Some(l) => Some(l),
                None => return,
            }
        };
        let info = &mut ctx.infos[id];
        let target = match key {
            "Alias" => &mut info.aliases,
            "WantedBy" => &mut info.wanted_by,
            "RequiredBy" => &mut info.required_by,
            _ => &mut info.upheld_by,
        };
        match list {
            None => target.clear(),
            Some(l) => target.extend(l),
        }
    }

    /// `unit_file_load`. `at`: what `lstat(path)` gives, when the caller knows it already.
    fn load(
        &mut self,
        ctx: &mut Ctx,
        id: usize,
        path: &str,
        at: Option<(String, Kind)>,
        flags: u8,
    ) -> Result<usize, Errno> {
        let install;
        if flags & SEARCH_DROPIN == 0 {
            let n = ctx.infos[id].name.clone();
            let t = name::unit_type(&n).ok_or(Errno::INVAL)?;
            if name::is_valid(&n, name::TEMPLATE | name::INSTANCE) && !t.may_template() {
                log::error!(
                    "{}: unit type {} cannot be templated, ignoring.",
                    self.host(path),
                    t.as_str()
                );
                return Err(Errno::INVAL);
            }
            let (canon, kind) = match at {
                Some(at) => at,
                None => self.vfs.lstat(path)?,
            };
            if flags & SEARCH_LOAD == 0 {
                ctx.infos[id].mode = match kind {
                    Kind::Link => return Err(Errno::LOOP),
                    Kind::Dir => return Err(Errno::ISDIR),
                    Kind::Reg | Kind::Chr => {
                        if self.vfs.null_or_empty(&canon, kind)? {
                            Mode::Masked
                        } else {
                            Mode::Regular
                        }
                    }
                    Kind::Other => return Err(Errno::NOTTY),
                };
                return Ok(0);
            }
            match kind {
                Kind::Link => return Err(Errno::LOOP),
                Kind::Dir => return Err(Errno::ISDIR),
                Kind::Other => return Err(Errno::BADFD),
                Kind::Chr => {
                    ctx.infos[id].mode = Mode::Masked;
                    return Ok(0);
                }
                Kind::Reg => {}
            }
            match self.vfs.load_install(&canon)? {
                Some(p) => install = p,
                None => {
                    ctx.infos[id].mode = Mode::Masked;
                    return Ok(0);
                }
            }
        } else {
            if flags & SEARCH_LOAD == 0 {
                return Ok(0);
            }
            let (canon, kind) = self.vfs.stat(path)?;
            match kind {
                Kind::Chr => return Ok(0),
                Kind::Dir => return Err(Errno::ISDIR),
                Kind::Reg => {}
                _ => return Err(Errno::BADFD),
            }
            match self.vfs.load_install(&canon)? {
                Some(p) => install = p,
                None => return Ok(0),
            }
        }
        self.parse_install(ctx, id, path, &install)?;
        let info = &mut ctx.infos[id];
        if flags & SEARCH_DROPIN == 0 {
            info.mode = Mode::Regular;
        }
        Ok(info.aliases.len()
            + info.wanted_by.len()
            + info.required_by.len()
            + info.upheld_by.len())
    }

    /// `unit_file_resolve_symlink` with `resolve_destination_target`: `(target, linked)`.
    fn resolve_symlink(&mut self, path: &str) -> Result<(String, bool), Errno> {
        let target = self.vfs.readlink(path)?;
        let abs = if target.starts_with('/') {
            target
        } else {
            join(parent_of(path), &target)
        };
        let (simplified, _) = self.vfs.chase(&abs, false, true)?;
        if self.lp.under_search_path(&simplified) {
            name::validate_alias(file_name(path), file_name(&simplified)).map_err(|e| match e {
                name::AliasError::Invalid => Errno::INVAL,
                name::AliasError::Mismatch => Errno::XDEV,
                name::AliasError::SelfAlias => Errno::LOOP,
            })?;
            Ok((simplified, false))
        } else {
            Ok((simplified, true))
        }
    }

    /// `unit_file_load_or_readlink`.
    fn load_or_readlink(
        &mut self,
        ctx: &mut Ctx,
        id: usize,
        path: &str,
        flags: u8,
    ) -> Result<usize, Errno> {
        self.load_or_readlink_at(ctx, id, path, None, flags)
    }

    /// [`Engine::load_or_readlink`] of a unit file whose `lstat` the caller knows.
    fn load_or_readlink_at(
        &mut self,
        ctx: &mut Ctx,
        id: usize,
        path: &str,
        at: Option<(String, Kind)>,
        flags: u8,
    ) -> Result<usize, Errno> {
        let r = self.load(ctx, id, path, at, flags);
        if r != Err(Errno::LOOP) || flags & SEARCH_DROPIN != 0 {
            return r;
        }
        let (target, linked) = self.resolve_symlink(path)?;
        ctx.infos[id].symlink_target = Some(target.clone());
        // systemd's null_or_empty_path_with_root(): a link to /dev/null is a mask; otherwise it
        // stats the target with the root prefixed twice, which finds nothing under --root, so
        // only on the host root does a link to an empty file count as a mask.
        let masked = if lookup::path_equal(&target, "/dev/null") {
            true
        } else if !self.root_is_host {
            false
        } else {
            match self.vfs.stat(&target) {
                Ok((canon, k)) => self.vfs.null_or_empty(&canon, k)?,
                Err(Errno::NOENT) => false,
                Err(e) => return Err(e),
            }
        };
        ctx.infos[id].mode = if masked {
            Mode::Masked
        } else if linked {
            Mode::Linked
        } else {
            Mode::Alias
        };
        Ok(0)
    }

    /// The search directories as they resolve now. Re-resolved after planned changes, unless
    /// they only created entries none of which lies on the way to a missing search directory
    /// (a directory that exists stays one while nothing is removed; a missing one can only
    /// appear through an entry created at its first missing component, a prefix of where it
    /// would be).
    fn search_dirs(&mut self) -> std::rc::Rc<Vec<DirState>> {
        let g = self.vfs.generation();
        if self.sp_generation == Some(g) {
            return std::rc::Rc::clone(&self.sp_dirs);
        }
        if self.sp_generation.is_some() {
            if let Some(created) = self.vfs.created_since(self.sp_changes.0, self.sp_changes.1) {
                let under = |p: &str, c: &str| {
                    c == p || (c.starts_with(p) && c.as_bytes().get(p.len()) == Some(&b'/'))
                };
                let affected = created.iter().any(|p| {
                    self.sp_watch.iter().any(|w| match w {
                        Watch::Nothing => false,
                        Watch::Path(c) => under(p, c),
                        Watch::Any => true,
                    })
                });
                if !affected {
                    self.sp_generation = Some(g);
                    self.sp_changes = self.vfs.change_counts();
                    return std::rc::Rc::clone(&self.sp_dirs);
                }
            }
        }
        let sp = std::rc::Rc::clone(&self.search_path);
        let mut dirs = Vec::with_capacity(sp.len());
        let mut watch = Vec::with_capacity(sp.len());
        for d in sp.iter() {
            let state = self.vfs.dir_state(d);
            watch.push(match &state {
                DirState::Dir(_) => Watch::Nothing,
                DirState::Missing => match self.vfs.chase(d, true, true) {
                    Ok((p, false)) => Watch::Path(p),
                    _ => Watch::Any,
                },
                DirState::Unsure => Watch::Any,
            });
            dirs.push(state);
        }
        self.sp_dirs = std::rc::Rc::new(dirs);
        self.sp_watch = watch;
        self.sp_generation = Some(g);
        self.sp_changes = self.vfs.change_counts();
        std::rc::Rc::clone(&self.sp_dirs)
    }

    /// `conf_files_list_strv(…, ".conf", NULL, 0, dirs)` for the drop-in directories named
    /// `dropins` in every search-path directory (in that order).
    fn conf_files(&mut self, sp: &[String], dropins: &[String]) -> Vec<String> {
        let mut seen: HashMap<String, String> = HashMap::new();
        let sds = self.search_dirs();
        for dn in dropins {
            for (d, sd) in sp.iter().zip(sds.iter()) {
                // Cheap existence check through the (cached) search directory first.
                let DirState::Dir(sd) = sd else {
                    continue;
                };
                if self.vfs.kind_in(sd, dn).is_none() {
                    continue;
                }
                let dir = join(d, dn);
                let Ok((canon, true)) = self.vfs.chase(&dir, true, false) else {
                    continue;
                };
                for (n, _) in self.vfs.list(&canon) {
                    if hidden_or_backup(&n) || !n.ends_with(".conf") || seen.contains_key(&n) {
                        continue;
                    }
                    let p = join(&dir, &n);
                    seen.insert(n, p);
                }
            }
        }
        let mut v: Vec<(String, String)> = seen.into_iter().collect();
        v.sort();
        v.into_iter().map(|(_, p)| p).collect()
    }

    /// `unit_file_search`.
    fn search(&mut self, ctx: &mut Ctx, id: usize, flags: u8) -> Result<usize, Errno> {
        if ctx.infos[id].mode != Mode::Invalid {
            return Ok(0);
        }
        if let Some(p) = ctx.infos[id].path.clone() {
            return self.load_or_readlink(ctx, id, &p, flags);
        }
        let n = ctx.infos[id].name.clone();
        let template = if name::is_valid(&n, name::INSTANCE) {
            name::template_of(&n)
        } else {
            None
        };
        let sp = std::rc::Rc::clone(&self.search_path);
        // `load` refuses a bad name before looking at any path: do that once, not per path.
        if flags & SEARCH_DROPIN == 0 {
            let t = name::unit_type(&n).ok_or(Errno::INVAL)?;
            if name::is_valid(&n, name::TEMPLATE | name::INSTANCE) && !t.may_template() {
                log::error!(
                    "{}: unit type {} cannot be templated, ignoring.",
                    self.host(&join(&sp[0], &n)),
                    t.as_str()
                );
                return Err(Errno::INVAL);
            }
        }
        let mut result = None;
        let sds = self.search_dirs();
        for cand in std::iter::once(&n).chain(template.iter()) {
            for (d, sd) in sp.iter().zip(sds.iter()) {
                // Most candidates do not exist: ask the listing of the search directory
                // (cached) before building and resolving the path. Exactly the cases in which
                // `load_or_readlink` fails with ENOENT/ENOTDIR are skipped. A candidate that
                // exists is loaded, which plans nothing: `sds` stays valid for the loop.
                // The candidate's `lstat` is the listing's answer in the resolved directory.
                let at = match sd {
                    DirState::Missing => continue,
                    DirState::Dir(c) => match self.vfs.kind_in(c, cand) {
                        None => continue,
                        Some(k) => Some((join(c, cand), k)),
                    },
                    DirState::Unsure => None,
                };
                let path = join(d, cand);
                match self.load_or_readlink_at(ctx, id, &path, at, flags) {
                    Ok(r) => {
                        ctx.infos[id].path = Some(path);
                        result = Some(r);
                        break;
                    }
                    Err(Errno::NOENT | Errno::NOTDIR | Errno::ACCESS) => {}
                    Err(e) => return Err(e),
                }
            }
            if result.is_some() {
                break;
            }
        }
        let Some(result) = result else {
            return Err(Errno::NOENT);
        };
        // Drop-ins are only read when loading (`unit_file_load` returns at once for a drop-in
        // otherwise): without SEARCH_LOAD, listing them changes nothing.
        if ctx.infos[id].mode == Mode::Masked || flags & SEARCH_LOAD == 0 {
            return Ok(result);
        }
        let dot_d = |u: &str| {
            let mut d = String::with_capacity(u.len() + 2);
            d.push_str(u);
            d.push_str(".d");
            d
        };
        let mut dropins = vec![dot_d(&n)];
        if let Some(t) = &template {
            dropins.push(dot_d(t));
        }
        for f in self.conf_files(&sp, &dropins) {
            self.load_or_readlink(ctx, id, &f, flags | SEARCH_DROPIN)?;
        }
        Ok(result)
    }

    /// `install_info_follow`.
    fn follow(
        &mut self,
        ctx: &mut Ctx,
        id: usize,
        flags: u8,
        ignore_different_name: bool,
    ) -> Result<usize, Errno> {
        let info = &mut ctx.infos[id];
        if !matches!(info.mode, Mode::Alias | Mode::Linked) {
            return Err(Errno::INVAL);
        }
        let Some(target) = info.symlink_target.clone() else {
            return Err(Errno::INVAL);
        };
        if !ignore_different_name && file_name(&target) != info.name {
            return Err(Errno::XDEV);
        }
        info.path = Some(target.clone());
        info.symlink_target = None;
        info.mode = Mode::Invalid;
        self.load_or_readlink(ctx, id, &target, flags)
    }

    /// `install_info_traverse`: the id of the final unit.
    fn traverse(&mut self, ctx: &mut Ctx, start: usize, flags: u8) -> Result<usize, Errno> {
        self.search(ctx, start, flags)?;
        let mut i = start;
        let mut k = 0;
        while matches!(ctx.infos[i].mode, Mode::Alias | Mode::Linked) {
            k += 1;
            if k > FOLLOW_SYMLINK_MAX {
                return Err(Errno::LOOP);
            }
            if flags & SEARCH_FOLLOW_CONFIG_SYMLINKS == 0 {
                if let Some(p) = &ctx.infos[i].path {
                    if self.lp.parent_is_config(p) {
                        return Err(Errno::LOOP);
                    }
                }
            }
            let linked = ctx.infos[i].mode == Mode::Linked;
            let mut r = self.follow(ctx, i, flags, linked);
            if r == Err(Errno::XDEV) {
                if let Some(target) = ctx.infos[i].symlink_target.clone() {
                    let target_name = file_name(&target).to_string();
                    let cur = ctx.infos[i].name.clone();
                    let bn = if name::is_valid(&cur, name::INSTANCE)
                        && name::is_valid(&target_name, name::TEMPLATE)
                    {
                        let inst = name::instance_of(&cur).ok_or(Errno::INVAL)?;
                        let unit_instance =
                            name::replace_instance(&target_name, inst).ok_or(Errno::INVAL)?;
                        if unit_instance == cur {
                            self.follow(ctx, i, flags, true)?;
                            continue;
                        }
                        unit_instance
                    } else {
                        target_name
                    };
                    i = ctx.add(&bn, None, false)?;
                    r = match self.search(ctx, i, flags) {
                        Err(Errno::NOENT) => return Err(Errno::NOLINK),
                        other => other,
                    };
                }
            }
            r?;
        }
        Ok(i)
    }

    /// `install_info_discover`.
    fn discover(&mut self, ctx: &mut Ctx, name_: &str, flags: u8) -> Result<usize, Errno> {
        let r = ctx
            .add(name_, None, false)
            .and_then(|id| self.traverse(ctx, id, flags));
        r.map_err(|e| self.err(e, name_, None))
    }

    /// `install_info_discover_and_check`.
    fn discover_and_check(
        &mut self,
        ctx: &mut Ctx,
        name_: &str,
        flags: u8,
    ) -> Result<usize, Errno> {
        let id = self.discover(ctx, name_, flags)?;
        let info = &ctx.infos[id];
        let path = info.path.clone().unwrap_or_default();
        if info.mode == Mode::Masked {
            return Err(self.err(Errno::RFKILL, &path, None));
        }
        if self.lp.is_generator_or_transient(&path) {
            return Err(self.err(Errno::ADDRNOTAVAIL, &path, None));
        }
        Ok(id)
    }

    // ---- preset ----

    /// `preset_prepare_one`.
    pub fn prepare_one(&mut self, unit: &str) -> Result<(), Errno> {
        if self.plus.find(unit).is_some() || self.minus.find(unit).is_some() {
            return Ok(());
        }
        let mut tmp = Ctx::default();
        let id = self.discover(&mut tmp, unit, SEARCH_FOLLOW_CONFIG_SYMLINKS)?;
        if tmp.infos[id].name != unit {
            log::debug!(
                "Skipping {unit} because it is an alias for {}.",
                tmp.infos[id].name
            );
            return Ok(());
        }
        let (action, instances) = self.rules.query(unit);
        let mut plus = std::mem::take(&mut self.plus);
        let mut minus = std::mem::take(&mut self.minus);
        let r = match action {
            Action::Enable => {
                let names = instances.unwrap_or_else(|| vec![unit.to_string()]);
                let mut r = Ok(());
                for n in names {
                    if let Err(e) = self.discover_and_check(
                        &mut plus,
                        &n,
                        SEARCH_LOAD | SEARCH_FOLLOW_CONFIG_SYMLINKS,
                    ) {
                        r = Err(e);
                        break;
                    }
                }
                r
            }
            Action::Disable => self
                .discover(&mut minus, unit, SEARCH_FOLLOW_CONFIG_SYMLINKS)
                .map(|_| ()),
            Action::Ignore => Ok(()),
        };
        self.plus = plus;
        self.minus = minus;
        r
    }

    /// The unit names `preset-all` enumerates, in systemd's order.
    pub fn enumerate(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        for d in self.lp.search_path.clone() {
            let Ok((canon, true)) = self.vfs.chase(&d, true, false) else {
                continue;
            };
            self.vfs.each(&canon, |n, k| {
                if matches!(k, Kind::Link | Kind::Reg)
                    && !hidden_or_backup(n)
                    && name::is_valid(n, name::ANY)
                {
                    out.push(n.to_string());
                }
            });
        }
        out
    }

    /// `unit_file_preset_all`'s loop: errors about generated, missing, masked or invalid units
    /// are ignored, as systemd ignores them.
    pub fn prepare_all(&mut self, units: &[String]) {
        for n in units {
            let _ = self.prepare_one(n);
        }
    }

    /// `execute_preset`.
    pub fn execute(&mut self, mode: PresetMode) {
        if mode != PresetMode::EnableOnly {
            let set = self.mark_for_removal();
            self.remove_marked(set);
        }
        if mode != PresetMode::DisableOnly {
            self.context_apply();
        }
    }

    fn mark_for_removal(&mut self) -> HashSet<String> {
        let mut set = HashSet::new();
        let mut minus = std::mem::take(&mut self.minus);
        while let Some(id) = minus.will.pop_front() {
            let r = self.traverse(&mut minus, id, SEARCH_LOAD | SEARCH_FOLLOW_CONFIG_SYMLINKS);
            let info = &minus.infos[id];
            let label = info.path.clone().unwrap_or_else(|| info.name.clone());
            match r {
                Err(Errno::NOLINK) => self.change(ChangeKind::IsDangling, &label, None),
                Err(Errno::NOENT) => {
                    if !info.auxiliary {
                        self.change(ChangeKind::Error(Errno::NOENT), &label, None);
                    }
                }
                Err(e) => self.change(ChangeKind::Error(e), &label, None),
                Ok(_) if info.mode == Mode::Masked => {
                    self.change(ChangeKind::IsMasked, &label, None);
                    continue;
                }
                Ok(_) if info.mode != Mode::Regular => continue,
                Ok(_) => {}
            }
            set.insert(minus.infos[id].name.clone());
        }
        self.minus = minus;
        set
    }

    fn remove_marked(&mut self, mut set: HashSet<String>) {
        if set.is_empty() {
            return;
        }
        let Ok((config, true)) = self.vfs.chase(PERSISTENT_CONFIG, true, false) else {
            return;
        };
        loop {
            let mut restart = false;
            self.remove_marked_in(&mut set, &config, &config, &mut restart);
            if !restart {
                break;
            }
        }
    }

    fn remove_marked_in(
        &mut self,
        set: &mut HashSet<String>,
        dir: &str,
        config: &str,
        restart: &mut bool,
    ) {
        for (n, k) in self.vfs.list(dir) {
            if hidden_or_backup(&n) {
                continue;
            }
            let p = join(dir, &n);
            if k == Kind::Dir {
                self.remove_marked_in(set, &p, config, restart);
                continue;
            }
            if k != Kind::Link || !name::is_valid(&n, name::ANY) {
                continue;
            }
            let mut found =
                set.contains(&n) || name::template_of(&n).is_some_and(|t| set.contains(&t));
            if !found {
                match self.vfs.chase(&p, true, true) {
                    Err(Errno::NOENT) => continue,
                    Err(e) => {
                        self.change(ChangeKind::Error(e), &p, None);
                        self.exec_failed = true;
                        continue;
                    }
                    Ok((dest, _)) => {
                        found = (self.root_is_host && set.contains(&dest))
                            || set.contains(file_name(&dest));
                    }
                }
            }
            if !found {
                continue;
            }
            match self.vfs.unlink(&p) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(e) => {
                    self.change(ChangeKind::Error(e), &p, None);
                    self.exec_failed = true;
                    continue;
                }
            }
            self.vfs.rmdir_parents(&p, config);
            self.change(ChangeKind::Unlink, &p, None);
            if set.insert(p) {
                *restart = true;
            }
        }
    }

    fn context_apply(&mut self) {
        let mut plus = std::mem::take(&mut self.plus);
        while let Some(id) = plus.will.pop_front() {
            if let Err(e) = self.traverse(&mut plus, id, SEARCH_LOAD) {
                let n = plus.infos[id].name.clone();
                if plus.infos[id].auxiliary {
                    self.change(ChangeKind::AuxiliaryFailed, &n, None);
                    continue;
                }
                self.change(ChangeKind::Error(e), &n, None);
                self.exec_failed = true;
                break;
            }
            let info = plus.infos[id].clone();
            if info.mode == Mode::Masked {
                self.change(
                    ChangeKind::IsMasked,
                    info.path.as_deref().unwrap_or(&info.name),
                    None,
                );
                continue;
            }
            if info.mode != Mode::Regular {
                continue;
            }
            if self.protected.contains(&info.name) {
                log::info!("Leaving {} as it is: it was preset before.", info.name);
                continue;
            }
            let before = self.changes.len();
            if self.apply_one(&info).is_err() {
                self.exec_failed = true;
            }
            for c in &mut self.changes[before..] {
                if c.kind == ChangeKind::Symlink {
                    c.unit = Some(info.name.clone());
                }
            }
        }
        self.plus = plus;
    }

    /// `create_symlink` (`old` and `new` in-root).
    fn create_symlink(&mut self, old: &str, new: &str, force: bool) -> Result<(), Errno> {
        self.vfs.mkdir_parents(new);
        match self.vfs.symlink(old, new) {
            Ok(()) => {
                self.change(ChangeKind::Symlink, new, Some(old));
                return Ok(());
            }
            Err(Errno::EXIST) => {}
            Err(e) => return Err(self.err(e, new, None)),
        }
        let dest = match self.vfs.readlink(new) {
            Ok(d) => d,
            Err(Errno::INVAL) => return Err(self.err(Errno::EXIST, new, None)),
            Err(e) => return Err(self.err(e, new, None)),
        };
        if self.equivalent(new, &dest, old) {
            log::debug!("Symlink {new} \u{2192} {dest} already exists");
            return Ok(());
        }
        if !force {
            return Err(self.err(Errno::EXIST, new, Some(&dest)));
        }
        if let Err(e) = self.vfs.replace_symlink(old, new) {
            return Err(self.err(e, new, None));
        }
        self.change(ChangeKind::Unlink, new, None);
        self.change(ChangeKind::Symlink, new, Some(old));
        Ok(())
    }

    /// `chroot_unit_symlinks_equivalent`.
    fn equivalent(&mut self, src: &str, a: &str, b: &str) -> bool {
        let dir = parent_of(src);
        let a = if a.starts_with('/') {
            a.to_string()
        } else {
            join(dir, a)
        };
        let b = if b.starts_with('/') {
            b.to_string()
        } else {
            join(dir, b)
        };
        if lookup::path_equal(&a, &b) {
            return true;
        }
        if let (Ok((ca, _)), Ok((cb, _))) = (self.vfs.stat(&a), self.vfs.stat(&b)) {
            if ca == cb {
                return true;
            }
        }
        file_name(&a) == file_name(&b)
            && self.lp.under_search_path(&a)
            && self.lp.under_search_path(&b)
    }

    /// `install_info_apply`.
    fn apply_one(&mut self, info: &Info) -> Result<(), Errno> {
        let path = info.path.clone().unwrap_or_default();
        if !self.lp.in_search_path(&path) {
            self.create_symlink(&path, &join(PERSISTENT_CONFIG, &info.name), false)?;
        }
        let mut ok = self.symlink_alias(info, &path);
        ok &= self
            .symlink_wants(info, &path, &info.wanted_by, ".wants/")
            .is_ok();
        ok &= self
            .symlink_wants(info, &path, &info.required_by, ".requires/")
            .is_ok();
        ok &= self
            .symlink_wants(info, &path, &info.upheld_by, ".upholds/")
            .is_ok();
        if ok {
            Ok(())
        } else {
            Err(Errno::INVAL)
        }
    }

    /// `unit_file_verify_alias`: the (possibly instance-propagated) alias name.
    fn verify_alias(&mut self, info: &Info, dst: &str) -> Result<Option<String>, Errno> {
        if let Some(slash) = dst.rfind('/') {
            let alias = &dst[slash + 1..];
            let dir = parent_of(dst);
            let base = dir
                .strip_suffix(".wants")
                .or_else(|| dir.strip_suffix(".requires"));
            let Some(base) = base else {
                return Err(self.err(Errno::XDEV, dst, None));
            };
            let Some(kind) = name::classify(base) else {
                return Err(self.err(Errno::XDEV, dst, None));
            };
            if !name::symlink_name_compatible(alias, &info.name, kind == name::TEMPLATE) {
                return Err(self.err(Errno::XDEV, dst, Some(&info.name)));
            }
            return Ok(None);
        }
        let mut updated = None;
        if name::is_valid(dst, name::TEMPLATE) {
            match name::classify(&info.name) {
                None => return Err(self.err(Errno::UCLEAN, &info.name, None)),
                Some(name::INSTANCE) => {
                    let inst = name::instance_of(&info.name).unwrap_or_default();
                    updated = Some(name::replace_instance(dst, inst).ok_or(Errno::INVAL)?);
                }
                Some(_) => {}
            }
        }
        let d = updated.clone().unwrap_or_else(|| dst.to_string());
        match name::validate_alias(file_name(&d), &info.name) {
            Ok(()) => Ok(updated),
            Err(name::AliasError::SelfAlias) => Err(Errno::LOOP),
            Err(_) => Err(self.err(Errno::XDEV, &d, Some(&info.name))),
        }
    }

    /// `install_info_symlink_alias`; `false` if systemd would return an error.
    fn symlink_alias(&mut self, info: &Info, path: &str) -> bool {
        let mut ok = true;
        for s in &info.aliases {
            let dst = match self.printf(info, s) {
                Ok(d) => d,
                Err(e) => {
                    self.err(e, s, None);
                    ok = false;
                    continue;
                }
            };
            let dst = match self.verify_alias(info, &dst) {
                Ok(Some(u)) => u,
                Ok(None) => dst,
                Err(e) => {
                    ok &= e == Errno::LOOP;
                    continue;
                }
            };
            let alias_path = join(PERSISTENT_CONFIG, &dst);
            let alias_target = if self.lp.in_search_path(path) {
                path.to_string()
            } else {
                join(PERSISTENT_CONFIG, &info.name)
            };
            let broken = match self.vfs.chase(&alias_path, true, true) {
                Ok((_, exists)) => !exists,
                Err(_) => {
                    ok = false;
                    continue;
                }
            };
            match self.create_symlink(&alias_target, &alias_path, broken) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(_) => ok = false,
            }
        }
        ok
    }

    fn symlink_wants(
        &mut self,
        info: &Info,
        path: &str,
        list: &[String],
        suffix: &str,
    ) -> Result<(), Errno> {
        if list.is_empty() {
            return Ok(());
        }
        let mut valid = name::ANY;
        let n;
        if name::is_valid(&info.name, name::PLAIN | name::INSTANCE) {
            n = info.name.clone();
        } else if let Some(di) = &info.default_instance {
            let iname = name::replace_instance(&info.name, di).ok_or(Errno::INVAL)?;
            let mut scratch = Ctx::default();
            scratch.infos.push(Info::new(&iname, None, false));
            self.search(&mut scratch, 0, SEARCH_FOLLOW_CONFIG_SYMLINKS)?;
            if scratch.infos[0].mode == Mode::Masked {
                let p = scratch.infos[0].path.clone().unwrap_or_default();
                return Err(self.err(Errno::RFKILL, &p, None));
            }
            n = iname;
        } else {
            valid = name::INSTANCE | name::TEMPLATE;
            n = info.name.clone();
        }
        let mut r = Ok(());
        for s in list {
            let dst = match self.printf(info, s) {
                Ok(d) => d,
                Err(e) => {
                    r = Err(self.err(e, s, None));
                    continue;
                }
            };
            if !name::is_valid(&dst, valid) {
                continue;
            }
            let link = format!("{PERSISTENT_CONFIG}/{dst}{suffix}{n}");
            if let Err(e) = self.create_symlink(path, &link, true) {
                r = Err(e);
            }
            if !self.unit_exists(&dst) {
                self.change(ChangeKind::DestinationNotPresent, &dst, Some(path));
            }
        }
        r
    }

    /// `unit_file_exists`.
    fn unit_exists(&mut self, unit: &str) -> bool {
        let mut scratch = Ctx::default();
        if scratch.add(unit, None, false).is_err() {
            return false;
        }
        self.search(&mut scratch, 0, 0).is_ok()
    }
}
