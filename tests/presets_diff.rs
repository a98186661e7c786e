//! Differential tests: `pristine preset-all` against the reference `systemctl --root preset-all`
//! (systemd 257) on this machine's units and presets and on generated trees. Every link and
//! directory under `etc/` and the exit code must agree.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure
mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{pristine, reference, Rng};

/// A scratch directory, on tmpfs when there is one (the generated cases create many small
/// trees), removed on drop.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let base = if Path::new("/dev/shm").is_dir() {
            std::path::PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let p = base.join(format!("pristine-presets-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Clone, Debug)]
enum Node {
    Dir(String),
    File(String, String),
    Link(String, String),
}

/// Builds the same tree (same operations in the same order, hence the same directory order) in
/// `root`.
fn build(root: &Path, nodes: &[Node]) {
    for n in nodes {
        match n {
            Node::Dir(p) => std::fs::create_dir_all(root.join(p)).unwrap(),
            Node::File(p, c) => {
                let f = root.join(p);
                std::fs::create_dir_all(f.parent().unwrap()).unwrap();
                std::fs::write(f, c).unwrap();
            }
            Node::Link(p, t) => {
                let f = root.join(p);
                std::fs::create_dir_all(f.parent().unwrap()).unwrap();
                let _ = std::fs::remove_file(&f);
                std::os::unix::fs::symlink(t, f).unwrap();
            }
        }
    }
}

/// Every entry under `root/etc` (links with their targets, directories, files).
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    pristine::presets::list_links(&root.join("etc"))
        .into_iter()
        .filter(|(k, _)| !k.starts_with("pristine"))
        .collect()
}

fn diff(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> String {
    let mut s = String::new();
    for (k, v) in a {
        match b.get(k) {
            Some(w) if w == v => {}
            Some(w) => s.push_str(&format!("  ~ {k}: systemctl {v} | pristine {w}\n")),
            None => s.push_str(&format!("  - {k} -> {v} (only systemctl)\n")),
        }
    }
    for (k, v) in b {
        if !a.contains_key(k) {
            s.push_str(&format!("  + {k} -> {v} (only pristine)\n"));
        }
    }
    s
}

fn describe(nodes: &[Node]) -> String {
    let mut s = String::new();
    for n in nodes {
        match n {
            Node::Dir(p) => s.push_str(&format!("dir  {p}\n")),
            Node::File(p, c) => s.push_str(&format!(
                "file {p}\n{}\n",
                c.trim_end().replace('\n', "\n    | ")
            )),
            Node::Link(p, t) => s.push_str(&format!("link {p} -> {t}\n")),
        }
    }
    s
}

/// Runs both tools on copies of `nodes`; returns a failure report or `None`.
fn compare(tag: &str, nodes: &[Node], mode: &str) -> Option<String> {
    let a = Scratch::new(&format!("{tag}-ref"));
    let b = Scratch::new(&format!("{tag}-pri"));
    build(a.path(), nodes);
    build(b.path(), nodes);
    let mode_arg = format!("--preset-mode={mode}");
    let ra = reference("systemctl")
        .arg(format!("--root={}", a.path().display()))
        .arg("preset-all")
        .arg(&mode_arg)
        .output()
        .expect("run reference systemctl");
    let rb = pristine()
        .arg(format!("--root={}", b.path().display()))
        .arg("preset-all")
        .arg(&mode_arg)
        .output()
        .expect("run pristine");
    let (sa, sb) = (snapshot(a.path()), snapshot(b.path()));
    if sa != sb || ra.status.code() != rb.status.code() {
        return Some(format!(
            "{tag} mode={mode}: exit systemctl {:?} pristine {:?}\nlink diff:\n{}\nsystemctl said:\n{}\npristine said:\n{}\ntree:\n{}",
            ra.status.code(),
            rb.status.code(),
            diff(&sa, &sb),
            String::from_utf8_lossy(&ra.stderr),
            String::from_utf8_lossy(&rb.stderr),
            describe(nodes)
        ));
    }
    None
}

/// This machine's units and presets copied into an empty root.
fn host_nodes() -> Vec<Node> {
    let mut nodes = vec![
        Node::Dir("etc".into()),
        Node::Link("lib".into(), "usr/lib".into()),
    ];
    fn walk(host: &Path, rel: &str, nodes: &mut Vec<Node>) {
        let Ok(rd) = std::fs::read_dir(host) else {
            return;
        };
        let mut ents: Vec<_> = rd.flatten().collect();
        ents.sort_by_key(|e| e.file_name());
        for e in ents {
            let name = e.file_name().to_string_lossy().into_owned();
            let r = format!("{rel}/{name}");
            let ft = e.file_type().unwrap();
            if ft.is_symlink() {
                nodes.push(Node::Link(
                    r,
                    std::fs::read_link(e.path()).unwrap().display().to_string(),
                ));
            } else if ft.is_dir() {
                nodes.push(Node::Dir(r.clone()));
                walk(&e.path(), &r, nodes);
            } else if ft.is_file() {
                nodes.push(Node::File(
                    r,
                    std::fs::read_to_string(e.path()).unwrap_or_default(),
                ));
            }
        }
    }
    for d in ["system", "system-preset"] {
        nodes.push(Node::Dir(format!("usr/lib/systemd/{d}")));
        walk(
            &Path::new("/usr/lib/systemd").join(d),
            &format!("usr/lib/systemd/{d}"),
            &mut nodes,
        );
    }
    nodes
}

/// Fails, showing the first three of `failures`, unless there are none; `what` names the
/// cases that differed.
fn assert_none_differ(failures: &[String], what: &str) {
    assert!(
        failures.is_empty(),
        "{} {what} differ:\n{}",
        failures.len(),
        failures[..failures.len().min(3)].join("\n")
    );
}

#[test]
fn host_units_all_modes() {
    let nodes = host_nodes();
    assert!(
        nodes.len() > 50,
        "this machine has too few units to test with"
    );
    let mut failures = Vec::new();
    for mode in ["full", "enable-only", "disable-only"] {
        failures.extend(compare("host", &nodes, mode));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---- generated trees ----

const TYPES: &[&str] = &[
    "service",
    "socket",
    "target",
    "timer",
    "path",
    "mount",
    "slice",
    "device",
    "automount",
    "swap",
    "scope",
];
const UNIT_DIRS: &[&str] = &[
    "usr/lib/systemd/system",
    "usr/lib/systemd/system",
    "usr/lib/systemd/system",
    "etc/systemd/system",
    "usr/local/lib/systemd/system",
    "run/systemd/system",
];

struct Gen {
    rng: Rng,
    plain: Vec<String>,
    templates: Vec<String>,
}

impl Gen {
    fn name(&mut self) -> String {
        match self.rng.below(10) {
            0..=5 => self.rng.pick(&self.plain).clone(),
            6..=7 => self.rng.pick(&self.templates).clone(),
            8 => {
                let t = self.rng.pick(&self.templates).clone();
                t.replace("@.", &format!("@i{}.", self.rng.below(3)))
            }
            _ => format!("missing{}.{}", self.rng.below(3), self.rng.pick(TYPES)),
        }
    }

    fn target(&mut self) -> String {
        match self.rng.below(14) {
            12 => "%N-y.target".into(),
            13 => "%j.target".into(),
            0..=5 => format!("t{}.target", self.rng.below(4)),
            6 => "multi-user.target".into(),
            7 => format!("%p-x.{}", self.rng.pick(TYPES)),
            8 => format!("g{}@.target", self.rng.below(2)),
            9 => format!("g{}@%i.target", self.rng.below(2)),
            10 => "bad name.target".into(),
            _ => self.name(),
        }
    }

    fn words(&mut self, f: &mut dyn FnMut(&mut Gen) -> String) -> String {
        let n = self.rng.below(3) + 1;
        (0..n).map(|_| f(self)).collect::<Vec<_>>().join(" ")
    }

    fn alias_for(&mut self, unit: &str) -> String {
        let ty = unit.rsplit('.').next().unwrap().to_string();
        match self.rng.below(8) {
            0..=3 if unit.contains('@') => format!("al{}@.{ty}", self.rng.below(4)),
            0..=3 => format!("al{}.{ty}", self.rng.below(6)),
            4 => format!("al{}.socket", self.rng.below(3)),
            5 => unit.to_string(),
            6 => format!("t{}.target.wants/{}", self.rng.below(3), unit),
            7 if self.rng.chance(50) => "%n".into(),
            _ => format!("%p-al.{ty}"),
        }
    }

    fn install(&mut self, unit: &str) -> String {
        let mut s = String::new();
        if self.rng.chance(30) {
            s.push_str("[Unit]\nDescription=generated\n\n");
        }
        if self.rng.chance(10) {
            return s + "[Service]\nExecStart=/bin/true\n";
        }
        s.push_str("[Install]\n");
        let n = self.rng.below(5) + 1;
        for _ in 0..n {
            let line = match self.rng.below(22) {
                0..=5 => format!("WantedBy={}", self.words(&mut |g| g.target())),
                6..=7 => format!("RequiredBy={}", self.words(&mut |g| g.target())),
                8 => format!("UpheldBy={}", self.target()),
                9..=11 => {
                    let u = unit.to_string();
                    format!("Alias={}", self.words(&mut |g| g.alias_for(&u)))
                }
                12..=14 => format!("Also={}", self.words(&mut |g| g.name())),
                15..=16 => match self.rng.below(4) {
                    0 => "DefaultInstance=".into(),
                    1 => "DefaultInstance=bad/inst".into(),
                    _ => format!("DefaultInstance=i{}", self.rng.below(3)),
                },
                17 => "WantedBy=".into(),
                18 => "# comment\n; other".into(),
                19 => format!(
                    "WantedBy=t{}.target \\\n  t{}.target",
                    self.rng.below(4),
                    self.rng.below(4)
                ),
                20 => "X-Foo=bar\nUnknownKey=1\nwantedby=t1.target".into(),
                _ => format!(
                    "[Socket]\nListen=1\n[Install]\nWantedBy=t{}.target",
                    self.rng.below(4)
                ),
            };
            s.push_str(&line);
            s.push('\n');
        }
        s
    }
}

fn generate(seed: u64) -> Vec<Node> {
    let mut rng = Rng::new(seed);
    let nplain = 4 + rng.below(10) as usize;
    let ntempl = 1 + rng.below(4) as usize;
    let plain: Vec<String> = (0..nplain)
        .map(|i| format!("u{i}.{}", rng.pick(TYPES)))
        .collect();
    let templates: Vec<String> = (0..ntempl)
        .map(|i| {
            format!(
                "v{i}@.{}",
                rng.pick(&["service", "socket", "timer", "target", "mount"])
            )
        })
        .collect();
    let mut g = Gen {
        rng,
        plain,
        templates,
    };
    let mut nodes = vec![
        Node::Dir("etc/systemd/system".into()),
        Node::Link("lib".into(), "usr/lib".into()),
    ];
    // Targets that exist.
    for t in 0..3 {
        if g.rng.chance(70) {
            nodes.push(Node::File(
                format!("usr/lib/systemd/system/t{t}.target"),
                "[Unit]\nDescription=t\n".into(),
            ));
        }
    }
    let units: Vec<String> = g.plain.iter().chain(g.templates.iter()).cloned().collect();
    for u in &units {
        let dir = g.rng.pick(UNIT_DIRS).to_string();
        let body = if g.rng.chance(4) {
            String::new()
        } else if g.rng.chance(2) {
            "[Install\nWantedBy=t0.target\n".into()
        } else {
            g.install(u)
        };
        nodes.push(Node::File(format!("{dir}/{u}"), body));
        if g.rng.chance(12) {
            let other = g.rng.pick(UNIT_DIRS).to_string();
            nodes.push(Node::File(format!("{other}/{u}"), g.install(u)));
        }
        if g.rng.chance(20) {
            let ddir = g.rng.pick(UNIT_DIRS).to_string();
            let n = g.rng.below(3);
            let body = g.install(u);
            nodes.push(Node::File(format!("{ddir}/{u}.d/{n}-x.conf"), body));
        }
        if g.rng.chance(8) {
            nodes.push(Node::Link(
                format!("etc/systemd/system/{u}"),
                "/dev/null".into(),
            ));
        }
    }
    // Instances present as files or links.
    for _ in 0..g.rng.below(3) {
        let t = g.rng.pick(&g.templates).clone();
        let i = t.replace("@.", &format!("@i{}.", g.rng.below(3)));
        if g.rng.chance(50) {
            nodes.push(Node::Link(format!("usr/lib/systemd/system/{i}"), t));
        } else {
            let body = g.install(&i);
            nodes.push(Node::File(format!("usr/lib/systemd/system/{i}"), body));
        }
    }
    // Aliases in the unit path and pre-existing links in /etc.
    for _ in 0..g.rng.below(6) {
        let u = g.rng.pick(&units).clone();
        let ty = u.rsplit('.').next().unwrap().to_string();
        let (p, t) = match g.rng.below(7) {
            0 => (
                format!("usr/lib/systemd/system/al{}.{ty}", g.rng.below(4)),
                u.clone(),
            ),
            1 => (
                format!("etc/systemd/system/al{}.{ty}", g.rng.below(4)),
                format!("/usr/lib/systemd/system/{u}"),
            ),
            2 => (
                format!("etc/systemd/system/t{}.target.wants/{u}", g.rng.below(3)),
                format!("/usr/lib/systemd/system/{u}"),
            ),
            3 => (
                format!("etc/systemd/system/t{}.target.wants/{u}", g.rng.below(3)),
                format!("/lib/systemd/system/{u}"),
            ),
            4 => (
                format!("etc/systemd/system/multi-user.target.wants/{u}"),
                "/nonexistent/x.service".into(),
            ),
            5 if g.rng.chance(50) => (
                format!("etc/systemd/system/t{}.target.upholds/{u}", g.rng.below(3)),
                format!("/usr/lib/systemd/system/{u}"),
            ),
            5 => (
                format!("etc/systemd/system/t{}.target.requires/{u}", g.rng.below(3)),
                format!("../{u}"),
            ),
            _ => (format!("etc/systemd/system/{u}"), format!("/opt/units/{u}")),
        };
        nodes.push(Node::Link(p, t));
        if g.rng.chance(30) {
            let body = g.install(&u);
            nodes.push(Node::File(format!("opt/units/{u}"), body));
        }
    }
    // Preset files.
    let nfiles = g.rng.below(3) + 1;
    for f in 0..nfiles {
        let dir = if g.rng.chance(30) { "etc" } else { "usr/lib" };
        let mut body = String::from("# generated\n");
        for _ in 0..g.rng.below(6) + 1 {
            let line = match g.rng.below(12) {
                0..=2 => format!("enable {}", g.name()),
                3..=4 => format!("disable {}", g.name()),
                5 => format!("ignore {}", g.name()),
                6 => format!("enable u{}*", g.rng.below(10)),
                7 => format!("disable *.{}", g.rng.pick(TYPES)),
                8 => {
                    let t = g.rng.pick(&g.templates).clone();
                    format!("enable {t} i{} i{}", g.rng.below(3), g.rng.below(3))
                }
                9 => format!("disable [uv]{}*", g.rng.below(5)),
                10 => "bogus line".into(),
                _ => format!("enable al{}.service", g.rng.below(4)),
            };
            body.push_str(&line);
            body.push('\n');
        }
        if g.rng.chance(50) {
            body.push_str("disable *\n");
        }
        nodes.push(Node::File(
            format!(
                "{dir}/systemd/system-preset/{:02}-gen.preset",
                f * 10 + g.rng.below(10)
            ),
            body,
        ));
    }
    nodes
}

#[test]
fn generated_trees_all_modes() {
    const CASES: u64 = 520;
    let modes = ["full", "enable-only", "disable-only"];
    // Two workers: each case is independent and most of the time is spent in processes.
    let failures: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..2u64)
            .map(|w| {
                s.spawn(move || {
                    let mut failures = Vec::new();
                    for seed in (0..CASES).filter(|s| s % 2 == w) {
                        let nodes = generate(seed);
                        for mode in modes {
                            if let Some(f) = compare(&format!("seed{seed}"), &nodes, mode) {
                                failures.push(format!("seed {seed}:\n{f}"));
                            }
                        }
                    }
                    failures
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_none_differ(&failures, &format!("of {CASES} generated cases × 3 modes"));
}

/// `preset UNIT...` on generated trees: the same links and the same exit code as
/// `systemctl --root preset UNIT...`.
#[test]
fn preset_named_units() {
    const CASES: u64 = 200;
    let mut failures = Vec::new();
    for seed in 1000..1000 + CASES {
        let nodes = generate(seed);
        let mut rng = Rng::new(seed);
        let mut names: Vec<String> = nodes
            .iter()
            .filter_map(|n| match n {
                Node::File(p, _) | Node::Link(p, _)
                    if p.contains("/systemd/system/") && !p.contains(".d/") =>
                {
                    p.rsplit('/').next().map(str::to_string)
                }
                _ => None,
            })
            .filter(|n| !n.contains(".wants") && !n.contains(".requires"))
            .collect();
        names.dedup();
        if names.is_empty() {
            continue;
        }
        let mut pick: Vec<String> = (0..1 + rng.below(3))
            .map(|_| rng.pick(&names).clone())
            .collect();
        if rng.chance(10) {
            pick.push("nosuchunit.service".into());
        }
        let mode = *rng.pick(&["full", "enable-only", "disable-only"]);
        let a = Scratch::new(&format!("p{seed}-ref"));
        let b = Scratch::new(&format!("p{seed}-pri"));
        build(a.path(), &nodes);
        build(b.path(), &nodes);
        let ra = reference("systemctl")
            .arg(format!("--root={}", a.path().display()))
            .arg("preset")
            .arg(format!("--preset-mode={mode}"))
            .args(&pick)
            .output()
            .unwrap();
        let rb = pristine()
            .arg(format!("--root={}", b.path().display()))
            .arg("preset")
            .arg(format!("--preset-mode={mode}"))
            .args(&pick)
            .output()
            .unwrap();
        let (sa, sb) = (snapshot(a.path()), snapshot(b.path()));
        if sa != sb || ra.status.code() != rb.status.code() {
            failures.push(format!(
                "seed {seed} preset {pick:?} mode={mode}: exit systemctl {:?} pristine {:?}\n{}\nsystemctl said:\n{}\npristine said:\n{}\ntree:\n{}",
                ra.status.code(),
                rb.status.code(),
                diff(&sa, &sb),
                String::from_utf8_lossy(&ra.stderr),
                String::from_utf8_lossy(&rb.stderr),
                describe(&nodes)
            ));
        }
    }
    assert_none_differ(&failures, "cases");
}
