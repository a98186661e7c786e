//! `pristine sysusers`: creates system users and groups from `sysusers.d` files, producing the
//! same `/etc/passwd`, `/etc/group`, `/etc/shadow` and `/etc/gshadow` bytes as
//! systemd-sysusers 257.
//!
//! It owns the whole run: reading configuration (config dirs with `--replace=`, files, stdin,
//! `--inline` lines, the `sysusers.extra` credential), the allocation of IDs ([`engine`]), the
//! glibc-compatible reading and writing of the account files ([`db`]) and the write itself
//! (lock, temporary files, `-` backups, renames). It never modifies an existing account
//! (only `m` lines add members to existing groups), never consults the host's NSS for a
//! `--root` target, never aborts on a bad line (the line is reported and skipped, exit 65),
//! and touches the target only through [`crate::fs::Root`].

pub mod cli;
pub mod crypt;
pub mod db;
pub mod engine;
pub mod parse;

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

use crate::config::confdirs;
use crate::error::{Error, IoContext as _, Result};
use crate::fs::{Root, Txn, WriteOptions};
use crate::report::{Diagnostic, Outcome, Severity};
use crate::text::specifier::SystemValues;
use crate::userdb::UserDb;
use engine::{Added, Config, Extras, Snapshot};

/// Options of one run.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub replace: Option<PathBuf>,
    pub inline: bool,
    pub dry_run: bool,
    pub cat_config: bool,
    pub args: Vec<String>,
    /// Whether a root other than `/` was named (`--root`).
    pub has_root: bool,
    /// The host view: credentials (`sysusers.extra`, passwords, shells) and specifier values.
    pub host: crate::host::HostFacts,
    /// Consult and extend the UID/GID ledger ([`crate::accounts`]): names keep their IDs and
    /// IDs are never given to another name. Off, allocation is exactly systemd-sysusers'.
    pub ledger: bool,
    /// With `ledger`: give files under `/var` owned by a name's old ID to its new ID.
    pub repair_ownership: bool,
}

/// Reads configuration into `cfg`, reporting bad lines.
struct Reader<'a> {
    root: &'a Root,
    sv: SystemValues,
    cfg: Config,
    out: Outcome,
}

impl Reader<'_> {
    /// Parses a file line by line as it is read; a line of 1 MiB or more ends the file (the
    /// lines before it stand) with a notice, as systemd's reader does.
    fn parse_text(&mut self, file: &str, text: impl io::BufRead) {
        let r = crate::text::lines::for_each_config_line(text, b"#", |n, l| {
            self.parse_one(file, n, l);
        });
        if let Err(e) = r {
            self.out.push(Diagnostic::notice(
                Some(Path::new(file)),
                e.line,
                format!(
                    "Failed to read '{file}', ignoring the rest of the file: {}",
                    errno_text(&e.error)
                ),
            ));
        }
    }

    fn parse_one(&mut self, file: &str, n: usize, l: &str) {
        match parse::parse_line(&self.sv, l, file, n) {
            Ok(line) => {
                let root = self.root;
                let same = |a: &str, b: &str| same_file(root, a, b);
                if let Added::Conflict(msg) = self.cfg.add(line, &same) {
                    log::warn!("{file}:{n}: {msg}");
                }
            }
            Err(msg) => self
                .out
                .push(Diagnostic::bad_config(Path::new(file), n, msg.0)),
        }
    }

    /// systemd's `read_config_file` for a command-line argument.
    fn read_arg(&mut self, arg: &str) {
        if arg == "-" {
            let mut buf = Vec::new();
            if let Err(e) = io::Read::read_to_end(&mut io::stdin(), &mut buf) {
                self.out.push(Diagnostic::failed(
                    None,
                    format!("Failed to read '<stdin>': {}", errno_text(&e)),
                ));
                return;
            }
            self.parse_text("<stdin>", &buf[..]);
        } else if arg.contains('/') {
            let p = std::path::absolute(arg).unwrap_or_else(|_| PathBuf::from(arg));
            let name = p.display().to_string();
            match std::fs::File::open(&p) {
                Ok(f) => self.parse_text(&name, io::BufReader::new(f)),
                Err(e) => self.out.push(Diagnostic::failed(
                    None,
                    format!("Failed to read '{name}': {}", errno_text(&e)),
                )),
            }
        } else {
            for dir in confdirs::search_dirs("sysusers.d") {
                let p = dir.join(arg);
                match self.root.open_config(&p) {
                    Ok(f) => {
                        let name = self.root.display_path(&p).display().to_string();
                        self.parse_text(&name, f);
                        return;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        self.out.push(Diagnostic::failed(
                            None,
                            format!("Failed to read '{arg}': {}", errno_text(&e)),
                        ));
                        return;
                    }
                }
            }
            self.out.push(Diagnostic::failed(
                None,
                format!("Failed to read '{arg}': No such file or directory"),
            ));
        }
    }

    fn parse_arguments(&mut self, opts: &Options) {
        for (pos, a) in opts.args.iter().enumerate() {
            if opts.inline {
                self.parse_one("(argument)", pos + 1, a.trim());
            } else {
                self.read_arg(a);
            }
        }
    }

    fn read_config_files(&mut self, opts: &Options) {
        let dirs = confdirs::search_dirs("sysusers.d");
        let mut files = confdirs::list(self.root, "sysusers.d", ".conf");
        if let Some(r) = &opts.replace {
            confdirs::insert_replacement(&mut files, &dirs, r);
        }
        for f in files {
            if opts.replace.as_deref() == Some(f.path.as_path()) {
                self.parse_arguments(opts);
                continue;
            }
            if f.masked {
                continue;
            }
            let name = self.root.display_path(&f.path).display().to_string();
            match self.root.open_config(&f.path) {
                Ok(file) => self.parse_text(&name, file),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => self.out.push(Diagnostic::failed(
                    None,
                    format!("Failed to read '{name}': {}", errno_text(&e)),
                )),
            }
        }
    }
}

pub use crate::report::errno_text;

/// Whether two shell paths name the same file in the root (both must exist).
fn same_file(root: &Root, a: &str, b: &str) -> bool {
    match (root.stat(Path::new(a), true), root.stat(Path::new(b), true)) {
        (Ok(x), Ok(y)) => x.st_dev == y.st_dev && x.st_ino == y.st_ino,
        _ => false,
    }
}

/// `SOURCE_DATE_EPOCH` (else now) in days, as the shadow "last changed" field.
fn lstchg() -> i64 {
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim_start().parse::<u64>().ok())
        .map(|e| {
            if e > u64::MAX / 1_000_000 {
                u64::MAX / 1_000_000
            } else {
                e
            }
        })
        .unwrap_or_else(|| crate::util::now().0.max(0) as u64);
    (secs / 86400) as i64
}

/// Reads an in-root file, `None` when missing.
fn read_opt(root: &Root, p: &str) -> io::Result<Option<Vec<u8>>> {
    match root.read_max(Path::new(p), crate::fs::limits::ACCOUNTS) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Takes `/etc/.pwd.lock` as systemd does (creating `/etc` if needed).
fn take_lock(root: &Root) -> io::Result<OwnedFd> {
    root.mkdir_all(Path::new("/etc"), 0o755)?;
    let (dir, name) = root.parent(Path::new("/etc/.pwd.lock"))?;
    crate::fs::mutating("lock", Path::new("/etc/.pwd.lock"))?;
    let fd = rustix::fs::openat(
        &dir,
        name.as_os_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NOFOLLOW,
        Mode::from_raw_mode(0o600),
    )?;
    rustix::fs::fcntl_lock(&fd, rustix::fs::FlockOperation::LockExclusive)?;
    Ok(fd)
}

/// `--cat-config` as systemd-sysusers prints it: host paths, masked files as an empty body.
fn cat_config(root: &Root) -> String {
    let mut out = String::new();
    for (i, f) in confdirs::list(root, "sysusers.d", ".conf")
        .iter()
        .enumerate()
    {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!("# {}\n", root.display_path(&f.path).display()));
        if f.masked {
            continue;
        }
        if let Ok(text) = root.read(&f.path) {
            out.push_str(&String::from_utf8_lossy(&text));
            if !text.is_empty() && !text.ends_with(b"\n") {
                out.push('\n');
            }
        }
    }
    out
}

/// Runs sysusers on `root`. Returns the outcome (the exit code derives from it).
pub fn run(root: &Root, opts: &Options) -> Outcome {
    run_planned(root, opts, &mut None)
}

/// [`run`]; with `dry_run`, `would_be` receives the user database as the run would leave it
/// (so that a dry run of later steps resolves the users and groups this one would create).
pub fn run_planned(root: &Root, opts: &Options, would_be: &mut Option<UserDb>) -> Outcome {
    let mut rd = Reader {
        root,
        sv: opts.host.running.system_values(root, opts.has_root),
        cfg: Config::default(),
        out: Outcome::default(),
    };
    if opts.cat_config {
        print!("{}", cat_config(root));
        return rd.out;
    }
    if opts.replace.is_some() || opts.args.is_empty() {
        rd.read_config_files(opts);
    } else {
        rd.parse_arguments(opts);
    }
    let creds = &opts.host.credentials;
    if let (Some(p), Some(b)) = (
        creds.path("sysusers.extra"),
        creds.get_bytes("sysusers.extra"),
    ) {
        rd.parse_text(&p.display().to_string(), &b[..]);
    }
    let Reader {
        mut cfg, mut out, ..
    } = rd;
    cfg.add_implicit();

    let _lock = if opts.dry_run {
        None
    } else {
        match take_lock(root) {
            Ok(fd) => Some(fd),
            Err(e) => {
                out.push(Diagnostic::failed(
                    None,
                    format!("Failed to take /etc/passwd lock: {}", errno_text(&e)),
                ));
                return out;
            }
        }
    };
    let files = ["/etc/group", "/etc/gshadow", "/etc/passwd", "/etc/shadow"];
    let mut contents: [Option<Vec<u8>>; 4] = Default::default();
    for (k, f) in files.iter().enumerate() {
        match read_opt(root, f) {
            Ok(c) => contents[k] = c,
            Err(e) => {
                out.push(Diagnostic::failed(
                    None,
                    format!(
                        "Failed to load user database: {}",
                        root.error_at(Path::new(f), &e)
                    ),
                ));
                return out;
            }
        }
    }
    let owner = |p: &str| {
        root.stat(Path::new(p), true)
            .ok()
            .map(|st| (st.st_uid, st.st_gid))
    };
    let mut ledger = if opts.ledger {
        crate::accounts::load(root, &mut out)
    } else {
        crate::accounts::ledger::Ledger::default()
    };
    let snap = Snapshot {
        group: contents[0].as_deref(),
        gshadow: contents[1].as_deref(),
        passwd: contents[2].as_deref(),
        shadow: contents[3].as_deref(),
        owner: &owner,
        ledger: &ledger,
    };
    let root_shell = if root.stat(Path::new("/bin/bash"), true).is_ok() {
        "/bin/bash"
    } else {
        "/bin/sh"
    };
    let read_credential = |name: &str| opts.host.credentials.get_bytes(name);
    let shell_cred = |name: &str| {
        read_credential(&format!("passwd.shell.{name}"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    };
    let password = |name: &str| -> Result<Option<String>> {
        if let Some(h) = read_credential(&format!("passwd.hashed-password.{name}")) {
            return Ok(Some(String::from_utf8_lossy(&h).into_owned()));
        }
        match read_credential(&format!("passwd.plaintext-password.{name}")) {
            Some(p) => crypt::hash_password(&p).map(Some).map_err(|e| Error {
                op: "hash password".into(),
                path: None,
                cause: crate::error::Cause::Io(e),
            }),
            None => Ok(None),
        }
    };
    let paths = files.map(|f| root.display_path(Path::new(f)).display().to_string());
    let ex = Extras {
        shell_cred: &shell_cred,
        password: &password,
        root_shell,
        lstchg: lstchg(),
        paths,
    };
    let plan = engine::plan(&mut cfg, &snap, &ex);
    for w in &plan.warnings {
        log::warn!("{w}");
    }
    for l in &plan.log {
        match l {
            Ok(m) => log::info!("{m}"),
            Err(m) => out.push(Diagnostic {
                severity: Severity::BadConfig,
                file: None,
                line: 0,
                message: m.to_string(),
            }),
        }
    }
    if opts.dry_run {
        let text = |new: &Option<Vec<u8>>, old: &Option<Vec<u8>>| {
            String::from_utf8_lossy(new.as_ref().or(old.as_ref()).map_or(&[][..], |v| v))
                .into_owned()
        };
        *would_be = Some(UserDb::parse(
            &text(&plan.passwd, &contents[2]),
            &text(&plan.group, &contents[0]),
        ));
        let groupish = !plan.created_groups.is_empty() || !cfg.members.is_empty();
        let userish = !plan.created_users.is_empty();
        for (f, show) in files.iter().zip([groupish, groupish, userish, userish]) {
            if show {
                log::info!("Would write {f}…");
            }
        }
        return out;
    }
    if let Some(e) = plan.write_error {
        out.push(Diagnostic::failed(None, e.to_string()));
        return out;
    }
    let new = [plan.group, plan.gshadow, plan.passwd, plan.shadow];
    match apply(root, &files, &contents, &new) {
        Ok(()) => {
            out.add_count("users", plan.created_users.len() as u64);
            out.add_count("groups", plan.created_groups.len() as u64);
        }
        Err(e) => {
            out.push(Diagnostic::failed(None, e.to_string()));
            return out;
        }
    }
    if opts.ledger {
        let now = |k: usize| new[k].as_deref().or(contents[k].as_deref()).unwrap_or(b"");
        let moved = crate::accounts::record(&mut ledger, now(2), now(0));
        if let Err(e) = crate::accounts::store(root, &ledger) {
            let p = root.display_path(Path::new(crate::accounts::ledger::PATH));
            out.push(Diagnostic::failed(
                Some(&p),
                format!(
                    "Failed to write ID ledger {}: {}",
                    p.display(),
                    errno_text(&e)
                ),
            ));
        }
        crate::accounts::repair::run(root, &moved, opts.repair_ownership, &mut out);
    }
    out
}

/// The rights and times of an account file being replaced, for its replacement and backup.
fn rights_of(st: &rustix::fs::Stat) -> WriteOptions {
    WriteOptions {
        mode: Some(st.st_mode & 0o7777),
        owner: Some((st.st_uid, st.st_gid)),
        times: None,
    }
}

/// Writes the new files as systemd does: all temporaries first (group, gshadow, passwd,
/// shadow), then a `-` backup of each file being replaced, then the renames (one
/// [`Txn`] for the backups, committed first, and one for the files).
fn apply(
    root: &Root,
    files: &[&'static str; 4],
    old: &[Option<Vec<u8>>; 4],
    new: &[Option<Vec<u8>>; 4],
) -> Result<()> {
    let shown = |k: usize| root.display_path(Path::new(files[k]));
    let mut txn = Txn::for_root(root);
    let mut backups = Txn::new(false);
    let mut stats = Vec::new();
    for k in 0..4 {
        let Some(data) = &new[k] else {
            stats.push(None);
            continue;
        };
        let st = match old[k] {
            Some(_) => Some(
                root.stat(Path::new(files[k]), true)
                    .op("copy permissions from", shown(k))?,
            ),
            None => None,
        };
        let opts = match &st {
            Some(st) => rights_of(st),
            None => WriteOptions {
                mode: Some(if k % 2 == 0 { 0o644 } else { 0o000 }),
                ..Default::default()
            },
        };
        let p = Path::new(files[k]);
        txn.parent(root, p)
            .and_then(|(dir, name)| txn.file(dir, &name, data, &opts, p))
            .op("open temporary copy of", shown(k))?;
        stats.push(st);
    }
    for k in 0..4 {
        let (Some(_), Some(orig), Some(st)) = (&new[k], &old[k], &stats[k]) else {
            continue;
        };
        let opts = WriteOptions {
            times: Some((
                (st.st_atime, st.st_atime_nsec as i64),
                (st.st_mtime, st.st_mtime_nsec as i64),
            )),
            ..rights_of(st)
        };
        let p = Path::new(files[k]);
        let backup = std::ffi::OsString::from(format!("{}-", &files[k][5..]));
        backups
            .parent(root, p)
            .and_then(|(dir, _)| backups.file(dir, &backup, orig, &opts, p))
            .op("backup", shown(k))?;
    }
    // The commit errors name the in-root path: shown as the host path, like the others.
    let host = |e: Error| {
        let p = e.path.clone().unwrap_or_default();
        e.at(root.display_path(&p))
    };
    backups.commit().map_err(host)?;
    txn.commit().map_err(host)
}

/// The account databases sysusers makes from the root's sysusers.d alone on empty databases,
/// with the ledger's IDs (no credentials): the vendor records the account merge compares
/// against. Also returns the user names sysusers.d declares. Bad lines are skipped quietly
/// here; the sysusers step reports them.
pub fn vendor_dbs(
    root: &Root,
    ledger: &crate::accounts::ledger::Ledger,
) -> (
    crate::accounts::merge::Dbs,
    std::collections::BTreeSet<String>,
) {
    let mut rd = Reader {
        root,
        sv: crate::host::RunningSystem::default().system_values(root, true),
        cfg: Config::default(),
        out: Outcome::default(),
    };
    rd.read_config_files(&Options::default());
    let mut cfg = rd.cfg;
    cfg.add_implicit();
    let declared = cfg.users.keys().iter().cloned().collect();
    let owner = |p: &str| {
        root.stat(Path::new(p), true)
            .ok()
            .map(|st| (st.st_uid, st.st_gid))
    };
    let snap = Snapshot {
        passwd: None,
        group: None,
        shadow: None,
        gshadow: None,
        owner: &owner,
        ledger,
    };
    let files = ["/etc/group", "/etc/gshadow", "/etc/passwd", "/etc/shadow"];
    let ex = Extras {
        shell_cred: &|_| None,
        password: &|_| Ok(None),
        root_shell: if root.stat(Path::new("/bin/bash"), true).is_ok() {
            "/bin/bash"
        } else {
            "/bin/sh"
        },
        lstchg: lstchg(),
        paths: files.map(String::from),
    };
    let plan = engine::plan(&mut cfg, &snap, &ex);
    (
        crate::accounts::merge::Dbs {
            passwd: plan.passwd.unwrap_or_default(),
            group: plan.group.unwrap_or_default(),
            shadow: plan.shadow.unwrap_or_default(),
            gshadow: plan.gshadow.unwrap_or_default(),
            ..Default::default()
        },
        declared,
    )
}
