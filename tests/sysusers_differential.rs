//! Differential test against the reference systemd-sysusers 257: identical trees, one run of
//! each tool, then passwd, group, shadow, gshadow, their `-` backups (content, mode, times) and
//! the list of files in /etc must agree byte for byte (`SOURCE_DATE_EPOCH` fixed). Cases: this
//! machine's real `/usr/lib/sysusers.d` into an empty root, and generated trees (random `u`,
//! `u!`, `g`, `m`, `r` lines with every ID form, bad lines, duplicates, pre-existing account
//! files with comments and NIS lines, path-owned IDs, credentials). Every case also runs a
//! second time to check that nothing changes. On a mismatch the seed and the whole tree are
//! printed.

// Test code (including the shared helpers in tests/common) may unwrap.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{pristine, Rng, TempDir};

const EPOCH: &str = "1700000000";

/// A tree description: relative path → content, plus owned files and credentials.
#[derive(Clone, Debug, Default)]
struct Case {
    files: BTreeMap<String, String>,
    /// Files whose owner matters (path → (uid, gid)).
    owned: Vec<(String, u32, u32)>,
    creds: BTreeMap<String, String>,
    /// Mode and owner given to pre-existing files (path, mode, uid, gid).
    modes: Vec<(String, u32, u32, u32)>,
}

impl Case {
    fn materialize(&self, root: &Path, creds: &Path) {
        for (p, c) in &self.files {
            common::write(root, p, c);
        }
        for (p, u, g) in &self.owned {
            common::write(root, p, "");
            std::os::unix::fs::chown(root.join(p), Some(*u), Some(*g)).unwrap();
        }
        std::fs::create_dir_all(creds).unwrap();
        for (n, c) in &self.creds {
            std::fs::write(creds.join(n), c).unwrap();
        }
        for (p, m, u, g) in &self.modes {
            let p = root.join(p);
            if p.exists() {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*m)).unwrap();
                std::os::unix::fs::chown(&p, Some(*u), Some(*g)).unwrap();
            }
        }
        // Fixed times on pre-existing account files so backups can be compared.
        for f in ["passwd", "group", "shadow", "gshadow"] {
            let p = root.join("etc").join(f);
            if p.exists() {
                let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
                let file = std::fs::File::options().write(true).open(&p).unwrap();
                file.set_times(std::fs::FileTimes::new().set_accessed(t).set_modified(t))
                    .unwrap();
            }
        }
    }

    fn describe(&self) -> String {
        let mut s = String::new();
        for (p, c) in &self.files {
            s.push_str(&format!("=== {p}\n{c}"));
            if !c.ends_with('\n') {
                s.push('\n');
            }
        }
        for (p, u, g) in &self.owned {
            s.push_str(&format!("=== {p} owned by {u}:{g}\n"));
        }
        for (p, m, u, g) in &self.modes {
            s.push_str(&format!("=== {p} mode {m:o} owner {u}:{g}\n"));
        }
        for (n, c) in &self.creds {
            s.push_str(&format!("=== credential {n}: {c:?}\n"));
        }
        s
    }
}

fn run_tool(mut c: Command, root: &Path, creds: &Path) -> Output {
    c.arg(format!("--root={}", root.display()))
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .env("CREDENTIALS_DIRECTORY", creds)
        .env_remove("SYSTEMD_LOG_LEVEL")
        .output()
        .unwrap()
}

fn reference_cmd() -> Command {
    common::reference("systemd-sysusers")
}

fn pristine_cmd() -> Command {
    let mut c = pristine();
    c.arg("sysusers");
    c
}

/// Everything compared after a run: /etc listing and the account files with metadata.
fn state(root: &Path) -> String {
    let etc = root.join("etc");
    let mut names: Vec<String> = std::fs::read_dir(&etc)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut s = format!("etc: {names:?}\n");
    for f in [
        "group", "gshadow", "passwd", "shadow", "group-", "gshadow-", "passwd-", "shadow-",
    ] {
        let p = etc.join(f);
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let content = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
        let times = if f.ends_with('-') {
            // Backups of pre-existing files keep the fixed time; backups of files written by
            // the first run carry that run's wall-clock time, which differs between the tools.
            if md.mtime() == 1_600_000_000 {
                " mtime=original".to_string()
            } else {
                " mtime=(written by a run)".to_string()
            }
        } else {
            String::new()
        };
        s.push_str(&format!(
            "--- {f} mode={:o} owner={}:{}{times}\n{content}",
            md.permissions().mode() & 0o7777,
            md.uid(),
            md.gid()
        ));
    }
    s
}

/// A temporary directory on tmpfs when there is one (both tools fsync every file they write).
struct ShmDir(PathBuf);

impl ShmDir {
    fn new() -> ShmDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let p = base.join(format!("pristine-sysusers-diff-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        ShmDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ShmDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs both tools twice on copies of `case`; returns a failure description, if any.
fn check(label: &str, case: &Case) -> Option<String> {
    let t = ShmDir::new();
    let (ra, rb) = (t.path().join("ref"), t.path().join("pri"));
    let (ca, cb) = (t.path().join("cred-ref"), t.path().join("cred-pri"));
    case.materialize(&ra, &ca);
    case.materialize(&rb, &cb);
    let oa = run_tool(reference_cmd(), &ra, &ca);
    let ob = run_tool(pristine_cmd(), &rb, &cb);
    let (sa, sb) = (state(&ra), state(&rb));
    let codes_agree = match oa.status.code() {
        Some(0) => matches!(ob.status.code(), Some(0) | Some(65)),
        _ => matches!(ob.status.code(), Some(73) | Some(1)),
    };
    if sa != sb || !codes_agree {
        return Some(format!(
            "{label}: first run differs (exit ref {:?}, pristine {:?})\n{}\n--- reference stderr\n{}--- pristine stderr\n{}\n{}",
            oa.status.code(),
            ob.status.code(),
            diff(&sa, &sb),
            String::from_utf8_lossy(&oa.stderr),
            String::from_utf8_lossy(&ob.stderr),
            case.describe()
        ));
    }
    // Second run: pristine must change nothing, and must agree with the reference again.
    let before = state(&rb);
    let oa2 = run_tool(reference_cmd(), &ra, &ca);
    let ob2 = run_tool(pristine_cmd(), &rb, &cb);
    let (sa2, sb2) = (state(&ra), state(&rb));
    if sa2 != sb2 {
        return Some(format!(
            "{label}: second run differs from the reference\n{}\n--- reference stderr\n{}--- pristine stderr\n{}\n{}",
            diff(&sa2, &sb2),
            String::from_utf8_lossy(&oa2.stderr),
            String::from_utf8_lossy(&ob2.stderr),
            case.describe()
        ));
    }
    if ob.status.code() == Some(0) && before != sb2 {
        return Some(format!(
            "{label}: second run changed something\n{}\n{}",
            diff(&before, &sb2),
            case.describe()
        ));
    }
    None
}

fn diff(a: &str, b: &str) -> String {
    let mut out = String::new();
    let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    for i in 0..la.len().max(lb.len()) {
        let (x, y) = (la.get(i), lb.get(i));
        if x != y {
            out.push_str(&format!(
                "line {}: reference {:?}\n         pristine  {:?}\n",
                i + 1,
                x,
                y
            ));
        }
    }
    out
}

#[test]
fn this_machines_sysusers_d_into_empty_root() {
    let mut case = Case::default();
    let dir = Path::new("/usr/lib/sysusers.d");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        if name.ends_with(".conf") {
            case.files.insert(
                format!("usr/lib/sysusers.d/{name}"),
                std::fs::read_to_string(e.path()).unwrap(),
            );
            n += 1;
        }
    }
    assert!(n > 0, "no sysusers.d files on this machine");
    if let Some(f) = check("host /usr/lib/sysusers.d", &case) {
        panic!("{f}");
    }
    // And once more with /bin/bash present (root's shell) and the host's os-release.
    case.files.insert("bin/bash".into(), String::new());
    if let Ok(osr) = std::fs::read_to_string("/usr/lib/os-release") {
        case.files.insert("usr/lib/os-release".into(), osr);
    }
    if let Some(f) = check("host /usr/lib/sysusers.d with /bin/bash", &case) {
        panic!("{f}");
    }
}

const NAMES: &[&str] = &[
    "root", "daemon", "alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta", "iota",
    "kappa", "lambda", "mu", "nobody", "_svc", "svc-x",
];

fn id(r: &mut Rng) -> String {
    let pool = [
        0, 1, 2, 5, 99, 100, 101, 500, 997, 998, 999, 1000, 1001, 4242, 65534,
    ];
    if r.chance(60) {
        r.pick(&pool).to_string()
    } else {
        (r.below(1100)).to_string()
    }
}

fn user_id(r: &mut Rng, files: &[String]) -> String {
    match r.below(12) {
        0..=2 => "-".into(),
        3..=5 => id(r),
        6 => format!("{}:{}", id(r), id(r)),
        7 => format!("{}:{}", id(r), r.pick(NAMES)),
        8 => format!("-:{}", id(r)),
        9 => format!("-:{}", r.pick(NAMES)),
        10 if !files.is_empty() => r.pick(files).clone(),
        _ => r
            .pick(&["abc", "1:bad!", "01", "65535", "9999999999", "-1", "5:"])
            .to_string(),
    }
}

fn group_id(r: &mut Rng, files: &[String]) -> String {
    match r.below(8) {
        0..=2 => "-".into(),
        3..=5 => id(r),
        6 if !files.is_empty() => r.pick(files).clone(),
        _ => r.pick(&["x", "007", "4294967295", "/"]).to_string(),
    }
}

fn gen_line(r: &mut Rng, files: &[String]) -> String {
    let name = r.pick(NAMES).to_string();
    match r.below(20) {
        0..=7 => {
            let bang = if r.chance(15) { "!" } else { "" };
            let mut l = format!("u{bang} {name} {}", user_id(r, files));
            let gecos = r.pick(&[
                "-",
                "\"A user\"",
                "'Svc %a'",
                "x",
                "\"bad:gecos\"",
                "%%",
                "\"%m %o %w\"",
                "%B",
                "\"\"",
                "a\\ b",
            ]);
            let home = r.pick(&[
                "-",
                "/",
                "/var/lib/x",
                "/home//y/",
                "rel",
                "/a/../b",
                "%T/x",
                "/srv/%M",
            ]);
            let shell = r.pick(&["-", "/bin/zsh", "/usr/sbin/nologin", "/bin/false", "/x/"]);
            match r.below(4) {
                0 => {}
                1 => l.push_str(&format!(" {gecos}")),
                2 => l.push_str(&format!(" {gecos} {home}")),
                _ => l.push_str(&format!(" {gecos} {home} {shell}")),
            }
            l
        }
        8..=12 => format!("g {name} {}", group_id(r, files)),
        13..=16 => format!("m {name} {}", r.pick(NAMES)),
        17 => {
            let a = r.below(1000) + 1;
            let b = a + r.below(300);
            if r.chance(30) {
                format!("r - {a}")
            } else {
                format!("r - {a}-{b}")
            }
        }
        18 => r
            .pick(&[
                "x foo",
                "u",
                "u! ",
                "g! grp 5",
                "m user",
                "r name 1-2",
                "u a b c d e f g",
                "u \"unbalanced",
                "u 1bad -",
                "g grp - gecos",
                "uu foo",
                "u %z -",
            ])
            .to_string(),
        _ => format!("u {name} - \"{}\"", r.pick(&["Same", "Other"])),
    }
}

fn gen_passwd(r: &mut Rng, n: usize) -> String {
    let mut s = String::new();
    if r.chance(70) {
        s.push_str("root:x:0:0:root:/root:/bin/bash\n");
    }
    for _ in 0..n {
        match r.below(14) {
            0 => s.push_str("# a comment\n"),
            1 => s.push('\n'),
            2 => s.push_str("+\n"),
            3 => s.push_str("+nis:x::::/home/nis:/bin/sh\n"),
            4 => s.push_str("broken line\n"),
            5 => s.push_str(&format!("  {}:x:{}:{}::/:\n", r.pick(NAMES), id(r), id(r))),
            6 => s.push_str(&format!("{}:x:0{}:{}\n", r.pick(NAMES), id(r), id(r))),
            7 => s.push_str(r.pick::<&str>(&[
                "odd:x: 12:+13:g:h:s\n",
                "neg:x:-1:-2::/:\n",
                "big:x:4294967296:99999999999999999999::/:\n",
                "short:x:5\n",
                "trail:x:6:7:a:b:c \n",
                "\tws:x:8:9::/:/bin/sh\n",
                "-minus:x:1:2:::\n",
                "col:x:10:11:g:/h:/s:extra\n",
                "nul:x:12:13::/:\n",
            ])),
            _ => s.push_str(&format!(
                "{}:x:{}:{}:Some One:/home/{}:/bin/sh\n",
                r.pick(NAMES),
                id(r),
                id(r),
                r.below(9)
            )),
        }
    }
    s
}

fn gen_group(r: &mut Rng, n: usize) -> (String, Vec<String>) {
    let mut s = String::new();
    let mut names = Vec::new();
    if r.chance(70) {
        s.push_str("root:x:0:\n");
        names.push("root".to_string());
    }
    for _ in 0..n {
        match r.below(12) {
            0 => s.push_str("# comment\n"),
            1 => s.push_str("+\n"),
            2 => s.push_str("-bad::\n"),
            3 => s.push_str("nogid:x:\n"),
            4 => s.push_str(r.pick::<&str>(&[
                "sp:x:77: a , b,,c\n",
                "zz:x:0078:m1,m2,\n",
                "+grp:x::m\n",
                "nomem:x:79\n",
                "neg:x:-5:\n",
            ])),
            _ => {
                let g = r.pick(NAMES).to_string();
                let members: Vec<&str> = (0..r.below(3)).map(|_| *r.pick(NAMES)).collect();
                s.push_str(&format!("{g}:x:{}:{}\n", id(r), members.join(",")));
                names.push(g);
            }
        }
    }
    (s, names)
}

fn gen_case(seed: u64) -> Case {
    let mut r = Rng::new(seed);
    let mut c = Case::default();
    let mut owned_paths = Vec::new();
    for k in 0..r.below(3) {
        let p = format!("srv/owned{k}");
        let (u, g) = (r.below(1100) as u32, r.below(1100) as u32);
        c.owned.push((p.clone(), u, g));
        owned_paths.push(format!("/{p}"));
    }
    if r.chance(20) {
        owned_paths.push("/srv/missing".into());
    }
    if r.chance(50) {
        c.files.insert("bin/bash".into(), String::new());
    }
    if r.chance(30) {
        let mid = r.pick(&[
            "0123456789abcdef0123456789abcdef\n",
            "uninitialized\n",
            "\n",
        ]);
        c.files.insert("etc/machine-id".into(), mid.to_string());
    }
    if r.chance(30) {
        c.files.insert(
            "usr/lib/os-release".into(),
            "ID=testos\nVERSION_ID=\"1.2\"\nIMAGE_ID=img\n".into(),
        );
    }
    if r.chance(40) {
        let n = 1 + r.below(8) as usize;
        c.files.insert("etc/passwd".into(), gen_passwd(&mut r, n));
    }
    let mut gnames = Vec::new();
    if r.chance(40) {
        let n = 1 + r.below(8) as usize;
        let (g, names) = gen_group(&mut r, n);
        c.files.insert("etc/group".into(), g);
        gnames = names;
    }
    if r.chance(30) {
        let mut s = String::new();
        for _ in 0..r.below(5) {
            match r.below(6) {
                0 => s.push_str("+\n"),
                1 => s.push_str(r.pick::<&str>(&[
                    "x:pw:1:2\n",
                    "y:pw:1:2:3\n",
                    "z:pw:1:2:3:4\n",
                    "w:pw:a:b:c:d:e:f:g\n",
                    "v:pw:-1:4294967295:99999999999:::: \n",
                    "u:pw:1:2:3:4:5:6:7\n",
                    "t:pw\n",
                    "+s:x:1:::::: \n",
                ])),
                2 => s.push_str(&format!("{}:!*:19000:0:99999:7:::\n", r.pick(NAMES))),
                _ => s.push_str(&format!("{}:!*:{}::::::\n", r.pick(NAMES), r.below(20000))),
            }
        }
        c.files.insert("etc/shadow".into(), s);
    }
    if r.chance(30) && !gnames.is_empty() {
        // gshadow entries only for groups that exist in group (a group only in gshadow is
        // systemd 257's test-17 failure, where pristine deliberately differs).
        let mut s = String::new();
        for g in &gnames {
            if r.chance(70) {
                let m = if r.chance(30) { *r.pick(NAMES) } else { "" };
                match r.below(5) {
                    0 => s.push_str(&format!("{g}:!:adm1, adm2:{m}\n")),
                    1 => s.push_str(&format!("{g}:!\n")),
                    _ => s.push_str(&format!("{g}:!::{m}\n")),
                }
            }
        }
        c.files.insert("etc/gshadow".into(), s);
    }
    for f in ["etc/passwd", "etc/group", "etc/shadow", "etc/gshadow"] {
        if r.chance(25) {
            let m = *r.pick(&[0o600u32, 0o640, 0o444, 0o000, 0o664]);
            c.modes.push((
                f.into(),
                m,
                r.below(3) as u32,
                r.pick(&[0u32, 42]).to_owned(),
            ));
        }
    }
    let nfiles = 1 + r.below(3);
    for f in 0..nfiles {
        let dir = if r.chance(70) {
            "usr/lib/sysusers.d"
        } else {
            "etc/sysusers.d"
        };
        let mut text = String::new();
        for _ in 0..1 + r.below(12) {
            text.push_str(&gen_line(&mut r, &owned_paths));
            text.push('\n');
        }
        c.files.insert(format!("{dir}/f{f}.conf"), text);
    }
    if r.chance(20) {
        let n = r.pick(NAMES);
        c.creds
            .insert(format!("passwd.shell.{n}"), "/bin/credshell".into());
        let n = r.pick(NAMES);
        c.creds.insert(
            format!("passwd.hashed-password.{n}"),
            "$6$abc$hashhash".into(),
        );
        c.creds.insert(
            "sysusers.extra".into(),
            format!("u {} - \"From cred\"\n", r.pick(NAMES)),
        );
    }
    c
}

#[test]
fn generated_trees_agree_with_reference() {
    let cases: u64 = std::env::var("SYSUSERS_DIFF_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(520);
    let mut failures = Vec::new();
    for seed in 0..cases {
        let case = gen_case(seed);
        if let Some(f) = check(&format!("seed {seed}"), &case) {
            failures.push(f);
            if failures.len() >= 3 {
                break;
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn large_synthetic_config_agrees() {
    // 2000 lines: groups, users, members, in the default range and beyond it.
    let mut text = String::from("r - 1-4000\n");
    for k in 0..699 {
        text.push_str(&format!("g grp{k} -\n"));
    }
    for k in 0..900 {
        text.push_str(&format!("u usr{k} - \"User {k}\" /var/lib/usr{k}\n"));
    }
    for k in 0..400 {
        text.push_str(&format!("m usr{} grp{}\n", k % 900, k % 699));
    }
    let mut case = Case::default();
    case.files
        .insert("usr/lib/sysusers.d/big.conf".into(), text);
    case.files.insert(
        "etc/passwd".into(),
        "root:x:0:0:root:/root:/bin/bash\n".into(),
    );
    if let Some(f) = check("large synthetic", &case) {
        panic!("{}", &f[..f.len().min(20000)]);
    }
}

#[test]
fn plaintext_password_credential_is_hashed() {
    let t = TempDir::new("sysusers-cred");
    let root = t.path().join("root");
    let creds: PathBuf = t.path().join("creds");
    common::write(&root, "usr/lib/sysusers.d/a.conf", "u alice -\n");
    std::fs::create_dir_all(&creds).unwrap();
    std::fs::write(creds.join("passwd.plaintext-password.alice"), "s3cret").unwrap();
    let out = run_tool(pristine_cmd(), &root, &creds);
    assert_eq!(out.status.code(), Some(0));
    let shadow = std::fs::read_to_string(root.join("etc/shadow")).unwrap();
    let line = shadow.lines().find(|l| l.starts_with("alice:")).unwrap();
    let hash = line.split(':').nth(1).unwrap();
    assert!(hash.starts_with("$6$"), "{line}");
    let salt = hash.split('$').nth(2).unwrap();
    assert_eq!(
        pristine::sysusers::crypt::sha512_crypt(b"s3cret", salt),
        hash,
        "hash must verify"
    );
    assert!(
        line.ends_with(&format!(":{}::::::", 1700000000 / 86400)),
        "{line}"
    );
}
