//! pristine's own configuration and the shared config machinery.
//!
//! `pristine.toml` settings are read from `usr/lib/pristine/*.toml`, then `run/pristine/*.toml`,
//! then `etc/pristine/*.toml` (each directory sorted by name); a later file wins per key, so
//! `/etc` overrides `/run` overrides `/usr/lib`, as in systemd. A missing file means defaults.
//! An unknown key or a bad value is a warning naming file and line; the key is ignored and its
//! default used. Nothing here ever fails the boot.

pub mod cmdline;
pub mod confdirs;
pub mod credentials;
pub mod os_release;

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fs::Root;
use crate::report::Diagnostic;

pub use cmdline::Mode;

/// Where `pristine.toml` fragments live, lowest priority first.
pub const SETTINGS_DIRS: [&str; 3] = ["/usr/lib/pristine", "/run/pristine", "/etc/pristine"];

/// What provisioning does with the machine id (see `provision::machine_id`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MachineIdPolicy {
    #[default]
    Persist,
    Uninitialized,
    Transient,
}

/// What a factory reset flushes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ResetLevel {
    /// /etc and /var.
    #[default]
    Full,
    /// /var only.
    Var,
}

/// What happens to the machine id on a factory reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ResetMachineId {
    /// A new machine id is generated after the reset.
    #[default]
    Regenerate,
    /// The machine id survives the reset.
    Keep,
}

/// `[reset]`: factory reset policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ResetSettings {
    pub level: ResetLevel,
    /// In-root absolute paths under /etc or /var that survive a reset.
    pub keep: Vec<String>,
    pub machine_id: ResetMachineId,
}

impl Default for ResetSettings {
    fn default() -> Self {
        ResetSettings {
            level: ResetLevel::Full,
            keep: Vec::new(),
            machine_id: ResetMachineId::Regenerate,
        }
    }
}

/// `[firstboot]`: values written to /etc when missing (credentials and the kernel command line
/// win over these).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct FirstbootSettings {
    pub hostname: Option<String>,
    pub timezone: Option<String>,
    pub locale: Option<String>,
    pub locale_messages: Option<String>,
    pub keymap: Option<String>,
}

/// All settings. Every field has a default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// The mode when the kernel command line names none.
    pub mode: Option<Mode>,
    /// What provisioning does with the machine id.
    pub machine_id: MachineIdPolicy,
    pub firstboot: FirstbootSettings,
    pub reset: ResetSettings,
    pub update: UpdateSettings,
    pub accounts: AccountsSettings,
    pub state: StateSettings,
}

/// `[accounts]`: the UID/GID ledger's policy (see `docs/sysusers.md`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct AccountsSettings {
    /// When a name's ID differs from the ledger's, give the files under /var owned by the old
    /// ID to the new one (otherwise they are only reported).
    pub repair_ownership: bool,
}

/// `[state]`: the state operators' registry (see `docs/state.md`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct StateSettings {
    /// In-root directory of the registry, on a file system that persists (not under /etc).
    pub registry: String,
    /// Upper bound in bytes on what the registry holds (objects plus manifest).
    pub max_size: u64,
    /// A block device that holds the registry, mounted by pristine for the run:
    /// `PARTLABEL=`, `LABEL=`, `PARTUUID=`, `UUID=` or a `/dev/…` path. Empty: the registry
    /// is the in-root directory `registry`.
    pub device: String,
    /// The device's file system type (`ext4`, `ext3`, `ext2`, `xfs`, `btrfs` or `vfat`).
    pub fstype: String,
}

impl Default for StateSettings {
    fn default() -> Self {
        StateSettings {
            registry: "/var/lib/pristine/state".to_string(),
            max_size: 256 << 20,
            device: String::new(),
            fstype: "ext4".to_string(),
        }
    }
}

/// `[update]`: A/B `/usr` image updates (see `pristine update`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct UpdateSettings {
    /// Host paths of the slots (block devices or image files), at least two.
    pub slots: Vec<String>,
    /// Host directory of the state file and the stored indexes of installed versions.
    pub state_dir: String,
    /// Boot attempts a freshly installed image gets before it is given up.
    pub tries: u32,
    /// A pinned CA bundle (PEM, a path inside the root) that `https://` sources are verified
    /// against instead of the root's trust store.
    pub ca_file: Option<String>,
    /// Seconds to connect to an HTTP(S) source.
    pub timeout_connect: u64,
    /// Seconds an HTTP(S) source may send nothing before the transfer is given up.
    pub timeout_stall: u64,
    /// Seconds one whole HTTP(S) transfer (one file) may take.
    pub timeout_transfer: u64,
    /// Accept a signed update when the installed version is unknown (no state record and no
    /// `IMAGE_VERSION=`): the first install. Otherwise such a fetch is refused.
    pub allow_unknown_installed: bool,
    /// A local update source `update boot` completes an `incomplete` slot from, in the initrd:
    /// a published update directory inside the root (`/var/cache/updates/current`), or on a
    /// block device mounted read-only for it (`/dev/disk/by-label/UPDATES:/current`).
    pub boot_source: Option<String>,
}

impl Default for UpdateSettings {
    fn default() -> Self {
        UpdateSettings {
            slots: Vec::new(),
            state_dir: "/var/lib/pristine/update".to_string(),
            tries: 3,
            ca_file: None,
            timeout_connect: 10,
            timeout_stall: 30,
            timeout_transfer: 300,
            allow_unknown_installed: false,
            boot_source: None,
        }
    }
}

/// systemd's `hostname_is_valid` (without trailing dot): 1–64 chars of `[a-zA-Z0-9-.]`, labels
/// non-empty, not starting or ending with `-` or `.`.
pub fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 64
        && h.split('.')
            .all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'))
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// A locale, keymap or similar single word: printable ASCII without quotes, `$` or `\\`.
pub fn valid_word(s: &str) -> bool {
    !s.is_empty()
        && s.len() < 256
        && s.chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\\' | '\'' | '$' | '`'))
}

/// A time zone name: a word that is a relative path without `.`/`..` or empty components.
pub fn valid_timezone(s: &str) -> bool {
    valid_word(s)
        && !s.starts_with('/')
        && !s.split('/').any(|c| c.is_empty() || c == "." || c == "..")
}

/// A `[reset] keep` entry: an absolute, normalized path strictly below `/etc` or `/var`.
pub fn valid_keep_path(k: &str) -> bool {
    let p = Path::new(k);
    p.is_absolute()
        && !k.contains('\0')
        && p.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        && (p.starts_with("/var") || p.starts_with("/etc"))
        && p.components().count() > 2
}

/// One key assignment found in a file: its dotted path, value, and where it came from.
struct Leaf {
    path: Vec<String>,
    value: toml::Value,
    file: PathBuf,
    line: usize,
    /// For an array, the line of each element.
    item_lines: Vec<usize>,
}

/// Checks the meaning of a well-typed value. Returns the value to use (an array without its bad
/// elements) or `None` to ignore the key; each problem is a diagnostic at its file and line.
fn check_value(leaf: &Leaf, diags: &mut Vec<Diagnostic>) -> Option<toml::Value> {
    let key = leaf.path.join(".");
    let (check, what): (fn(&str) -> bool, &str) = match key.as_str() {
        "firstboot.hostname" => (valid_hostname, "a valid host name"),
        "firstboot.timezone" => (valid_timezone, "a valid time zone name"),
        "firstboot.locale" | "firstboot.locale-messages" => (valid_word, "a valid locale"),
        "firstboot.keymap" => (valid_word, "a valid keymap"),
        "reset.keep" => (valid_keep_path, "an absolute path below /etc or /var"),
        _ => return Some(leaf.value.clone()),
    };
    match &leaf.value {
        toml::Value::String(s) if !check(s) => {
            let msg = format!("bad value for '{key}': '{s}' is not {what}, ignoring");
            diags.push(Diagnostic::bad_config(&leaf.file, leaf.line, msg));
            None
        }
        toml::Value::Array(items) => {
            let mut good = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some(s) if !check(s) => {
                        let line = leaf.item_lines.get(i).copied().unwrap_or(leaf.line);
                        let msg = format!("bad entry in '{key}': '{s}' is not {what}, ignoring");
                        diags.push(Diagnostic::bad_config(&leaf.file, line, msg));
                    }
                    _ => good.push(item.clone()),
                }
            }
            Some(toml::Value::Array(good))
        }
        v => Some(v.clone()),
    }
}

pub fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn collect_leaves(
    table: &toml::Table,
    spans: Option<&toml::de::DeTable<'_>>,
    prefix: &mut Vec<String>,
    text: &str,
    file: &Path,
    fallback_line: usize,
    out: &mut Vec<Leaf>,
) {
    for (k, v) in table {
        let span = spans.and_then(|s| {
            s.iter()
                .find(|(key, _)| key.get_ref().as_ref() == k.as_str())
        });
        let line = span
            .map(|(key, _)| line_of(text, key.span().start))
            .unwrap_or(fallback_line);
        prefix.push(k.clone());
        match v {
            toml::Value::Table(t) => {
                let sub = span.and_then(|(_, val)| match val.get_ref() {
                    toml::de::DeValue::Table(t) => Some(t),
                    _ => None,
                });
                collect_leaves(t, sub, prefix, text, file, line, out);
            }
            _ => {
                let item_lines = match span.map(|(_, val)| val.get_ref()) {
                    Some(toml::de::DeValue::Array(a)) => {
                        a.iter().map(|i| line_of(text, i.span().start)).collect()
                    }
                    _ => Vec::new(),
                };
                out.push(Leaf {
                    path: prefix.clone(),
                    value: v.clone(),
                    file: file.to_path_buf(),
                    line,
                    item_lines,
                })
            }
        }
        prefix.pop();
    }
}

fn insert_leaf(table: &mut toml::Table, path: &[String], value: toml::Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut t = table;
    for p in parents {
        let entry = t
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(next) = entry else {
            return;
        };
        t = next;
    }
    t.insert(last.clone(), value);
}

/// Parses settings from (file, text) fragments in priority order (lowest first). Pure.
pub fn parse_settings(fragments: &[(PathBuf, String)]) -> (Settings, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let mut leaves: Vec<Leaf> = Vec::new();
    for (file, text) in fragments {
        let table: toml::Table = match toml::from_str(text) {
            Ok(t) => t,
            Err(e) => {
                let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(0);
                let msg = e.message().trim().to_string();
                diags.push(Diagnostic::bad_config(
                    file,
                    line,
                    format!("{msg}, ignoring file"),
                ));
                continue;
            }
        };
        let spans = toml::de::DeTable::parse(text).ok();
        let spans_ref = spans.as_ref().map(|s| s.get_ref());
        collect_leaves(
            &table,
            spans_ref,
            &mut Vec::new(),
            text,
            file,
            1,
            &mut leaves,
        );
    }
    // Later fragments win per key.
    let mut merged = toml::Table::new();
    for leaf in &leaves {
        let mut single = toml::Table::new();
        insert_leaf(&mut single, &leaf.path, leaf.value.clone());
        if let Err(e) = Settings::deserialize(toml::Value::Table(single)) {
            let key = leaf.path.join(".");
            let msg = e.to_string();
            let what = if msg.contains("unknown field") {
                format!("unknown key '{key}', ignoring")
            } else {
                format!(
                    "bad value for '{key}': {}, ignoring",
                    msg.trim().lines().last().unwrap_or("").trim()
                )
            };
            diags.push(Diagnostic::bad_config(&leaf.file, leaf.line, what));
            continue;
        }
        if let Some(value) = check_value(leaf, &mut diags) {
            insert_leaf(&mut merged, &leaf.path, value);
        }
    }
    let settings = Settings::deserialize(toml::Value::Table(merged)).unwrap_or_default();
    (settings, diags)
}

/// Reads every settings fragment from the target root (observe step) and parses it.
pub fn load_settings(root: &Root) -> (Settings, Vec<Diagnostic>) {
    let mut fragments = Vec::new();
    let mut diags = Vec::new();
    for dir in SETTINGS_DIRS {
        let Ok(entries) = root.read_dir(Path::new(dir)) else {
            continue;
        };
        for e in entries {
            let name = Path::new(&e.name);
            if name.extension().is_none_or(|x| x != "toml") {
                continue;
            }
            let path = Path::new(dir).join(name);
            match root.read_to_string(&path) {
                Ok(text) => fragments.push((path, text)),
                Err(err) => diags.push(Diagnostic::bad_config(
                    &path,
                    0,
                    format!("cannot read: {err}, ignoring"),
                )),
            }
        }
    }
    let (s, mut d) = parse_settings(&fragments);
    diags.append(&mut d);
    (s, diags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frag(name: &str, text: &str) -> (PathBuf, String) {
        (PathBuf::from(name), text.to_string())
    }

    #[test]
    fn defaults_when_empty() {
        let (s, d) = parse_settings(&[]);
        assert_eq!(s, Settings::default());
        assert!(d.is_empty());
    }

    #[test]
    fn later_wins_per_key() {
        let (s, d) = parse_settings(&[
            frag(
                "/usr/lib/pristine/pristine.toml",
                "mode = \"volatile\"\n[reset]\nlevel = \"var\"\nkeep = [\"/var/a\"]\n",
            ),
            frag("/etc/pristine/local.toml", "[reset]\nkeep = [\"/var/b\"]\n"),
        ]);
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(s.mode, Some(Mode::Volatile));
        assert_eq!(s.reset.level, ResetLevel::Var);
        assert_eq!(s.reset.keep, vec!["/var/b".to_string()]);
    }

    #[test]
    fn unknown_key_and_bad_value_warn_with_line() {
        let (s, d) = parse_settings(&[frag(
            "/etc/pristine/x.toml",
            "# c\nfrobnicate = 1\n[reset]\nlevel = \"everything\"\nmachine-id = \"keep\"\n",
        )]);
        assert_eq!(s.reset.machine_id, ResetMachineId::Keep);
        assert_eq!(s.reset.level, ResetLevel::Full);
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(d[0].line, 2);
        assert!(d[0].message.contains("unknown key 'frobnicate'"));
        assert_eq!(d[1].line, 4);
        assert!(d[1].message.contains("reset.level"));
    }

    #[test]
    fn syntax_error_skips_file() {
        let (s, d) = parse_settings(&[frag("/etc/pristine/bad.toml", "mode = \n")]);
        assert_eq!(s, Settings::default());
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].line, 1);
    }

    #[test]
    fn hostnames() {
        assert!(valid_hostname("a-b.example"));
        assert!(!valid_hostname("-a"));
        assert!(!valid_hostname("a..b"));
        assert!(!valid_hostname(""));
        assert!(!valid_hostname("a_b"));
    }
}
