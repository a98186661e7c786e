//! Helpers shared by the integration tests: the reference systemd, temp trees, running the
//! pristine binary, a small deterministic PRNG.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub mod cutloop;

/// The pristine binary under test.
pub fn pristine() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pristine"))
}

/// Runs pristine with `args`; returns the output.
pub fn run_pristine(args: &[&str]) -> Output {
    pristine().args(args).output().expect("run pristine")
}

/// `../shared` next to the repository.
pub fn shared_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared")
}

/// The bin folder of the reference systemd 257 (set up on first use by
/// `../shared/reference/systemd`). Panics if it cannot be had: differential tests never skip.
pub fn reference_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let script = shared_dir().join("reference/systemd");
        let out = Command::new("bash")
            .arg(&script)
            .output()
            .expect("run shared/reference/systemd");
        assert!(
            out.status.success(),
            "reference systemd setup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bin = PathBuf::from(
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .lines()
                .last()
                .unwrap_or("")
                .to_string(),
        );
        assert!(
            bin.join("systemd-sysusers").exists(),
            "no reference systemd-sysusers in {}",
            bin.display()
        );
        bin
    })
}

/// A reference systemd tool by name.
pub fn reference(tool: &str) -> Command {
    Command::new(reference_bin().join(tool))
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p =
            std::env::temp_dir().join(format!("pristine-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `content` to `root/rel`, creating parents.
pub fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

/// A small deterministic PRNG (xorshift64*), so generated cases are reproducible by seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E3779B97F4A7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545F4914F6CDD1D)
    }
    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// A counter of one step of a `pristine provision` JSON report (`step`, an entry of its
/// `steps`), if it has that counter.
#[allow(dead_code)] // not every test binary that includes this module checks reports
pub fn step_counter(step: &serde_json::Value, key: &str) -> Option<u64> {
    step["counts"].as_array()?.iter().find(|c| c[0] == key)?[1].as_u64()
}

/// The counter `key` of the step named `step` of a `pristine provision` JSON report.
#[allow(dead_code)] // not every test binary that includes this module checks reports
pub fn step_count(report: &serde_json::Value, step: &str, key: &str) -> Option<u64> {
    let s = report["steps"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == step)?;
    step_counter(s, key)
}

/// Asserts that a `pristine provision` JSON report says each of `steps` ran.
#[allow(dead_code)] // not every test binary that includes this module checks reports
pub fn assert_steps_ran(report: &serde_json::Value, steps: &[&str]) {
    let all = report["steps"].as_array().expect("report has steps");
    for step in steps {
        assert!(
            all.iter().any(|s| s["name"] == *step && s["ran"] == true),
            "step {step} did not run: {report}"
        );
    }
}

/// Asserts that a finished command exited with `code`, showing its stderr if not.
#[allow(dead_code)] // not every test binary that includes this module runs commands
pub fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs pristine offline on the tree `root` (`--root`, an empty kernel command line, no EFI
/// variables, not in an initrd, messages on stderr) with `args`.
pub fn run_offline(root: &Path, args: &[&str]) -> Output {
    pristine()
        .arg(format!("--root={}", root.display()))
        .arg("--cmdline=")
        .arg("--efivars=/nonexistent")
        .args(args)
        .env("SYSTEMD_IN_INITRD", "0")
        .env("SYSTEMD_LOG_TARGET", "console")
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .expect("run pristine")
}

/// The stderr of a run, as text.
pub fn stderr_text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `c`, asserts it succeeded (showing its stderr and stdout if not), returns its output.
pub fn run_ok(c: &mut Command) -> Output {
    let o = c.output().expect("run command");
    assert!(
        o.status.success(),
        "{c:?} failed: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    o
}

/// The static release binary for VM tests: `$PRISTINE_STATIC_BIN` (scripts/test sets it), else
/// built by scripts/build-static.
pub fn static_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("PRISTINE_STATIC_BIN") {
        return PathBuf::from(p);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-static");
    let out = Command::new(script)
        .output()
        .expect("run scripts/build-static");
    assert!(
        out.status.success(),
        "build-static failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}
