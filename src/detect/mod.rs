//! Boot-state detection: what state the target's `/etc` and `/var` are in, whether this is a
//! first boot, whether `/usr` is newer than `/etc` and `/var` (systemd's ConditionNeedsUpdate,
//! evaluated on the target root, which systemd itself cannot do inside the initrd), whether the
//! OS image changed since pristine last provisioned, whether a factory reset was requested, and
//! which mode (stateful, volatile, stateless, overlay) applies.
//!
//! Detection only reads: it observes through the root handle and takes everything else from
//! [`HostFacts`] (kernel command line, EFI variables, boot id), then decides with pure
//! functions that tests drive with tables.

pub mod cli;
pub mod stamp;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::cmdline::Mode;
use crate::config::Settings;
use crate::fs::Root;
use crate::host::HostFacts;
use crate::text::specifier::parse_machine_id;

/// The request file `pristine reset request` writes, in-root.
pub const RESET_REQUEST_FILE: &str = "/var/lib/pristine/factory-reset";

/// State of `/etc` or `/var`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DirState {
    Absent,
    Empty,
    Populated,
}

/// A `stat` timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mtime {
    pub sec: i64,
    pub nsec: i64,
}

/// What the ConditionNeedsUpdate algorithm looks at, for one directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeedsUpdateInput {
    /// `systemd.condition_needs_update=` from the kernel command line.
    pub kernel_override: Option<bool>,
    /// The directory's filesystem is read-only.
    pub read_only: bool,
    /// mtime of `DIR/.updated` (lstat), or `None` if it cannot be stat'ed.
    pub updated_mtime: Option<Mtime>,
    /// mtime of `/usr/` (following a symlink), or `None`.
    pub usr_mtime: Option<Mtime>,
    /// Contents of `DIR/.updated` (read only when the nanosecond rule needs it).
    pub updated_content: Option<String>,
}

/// The verdict and the rule that decided it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub value: bool,
    pub reason: String,
}

fn verdict(value: bool, reason: &str) -> Verdict {
    Verdict {
        value,
        reason: reason.to_string(),
    }
}

/// systemd 257's `condition_test_needs_update`, minus its in-initrd shortcut (pristine
/// evaluates the target, not the initrd).
pub fn needs_update(i: &NeedsUpdateInput) -> Verdict {
    if let Some(b) = i.kernel_override {
        return verdict(
            b,
            "systemd.condition_needs_update= on the kernel command line",
        );
    }
    if i.read_only {
        return verdict(false, "file system is read-only");
    }
    let Some(other) = i.updated_mtime else {
        return verdict(true, ".updated is missing");
    };
    let Some(usr) = i.usr_mtime else {
        return verdict(true, "cannot stat /usr");
    };
    if usr.sec != other.sec {
        return verdict(
            usr.sec > other.sec,
            "seconds of /usr and .updated mtime compared",
        );
    }
    if usr.nsec == 0 || other.nsec > 0 {
        return verdict(
            usr.nsec > other.nsec,
            "nanoseconds of /usr and .updated mtime compared",
        );
    }
    let ts = i
        .updated_content
        .as_deref()
        .and_then(|c| crate::text::envfile::get(c, "TIMESTAMP_NSEC"))
        .filter(|s| !s.is_empty());
    let Some(ts) = ts else {
        return verdict(true, "no TIMESTAMP_NSEC in .updated");
    };
    match ts.parse::<u64>() {
        Ok(t) => {
            let usr_ns = (usr.sec as i128) * 1_000_000_000 + usr.nsec as i128;
            verdict(usr_ns > t as i128, "TIMESTAMP_NSEC in .updated compared")
        }
        Err(_) => verdict(true, "TIMESTAMP_NSEC in .updated is not a number"),
    }
}

/// First boot: systemd's rule (machine-id missing or `uninitialized`; an empty file is not a
/// first boot), overridable with `systemd.condition_first_boot=`.
pub fn first_boot(machine_id: Option<&str>, kernel_override: Option<bool>) -> Verdict {
    if let Some(b) = kernel_override {
        return verdict(
            b,
            "systemd.condition_first_boot= on the kernel command line",
        );
    }
    match machine_id {
        None => verdict(true, "/etc/machine-id is missing"),
        Some(s) if s.trim_end_matches('\n') == "uninitialized" => {
            verdict(true, "/etc/machine-id is uninitialized")
        }
        Some(_) => verdict(false, "/etc/machine-id is present"),
    }
}

/// One directory's detection result.
#[derive(Clone, Debug, Serialize)]
pub struct DirReport {
    pub state: DirState,
    /// systemd's ConditionNeedsUpdate for this directory.
    pub needs_update: Verdict,
    /// The OS identity recorded when pristine last provisioned it, if any.
    pub stamp: Option<stamp::OsStamp>,
    /// Whether the OS image differs from the recorded one (`None` without a record).
    pub os_changed: Option<bool>,
}

/// Factory-reset request sources.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ResetRequest {
    pub requested: bool,
    /// Which sources asked: `kernel`, `efi-factory-reset`, `efi-factory-reset-request`, `file`.
    pub sources: Vec<String>,
    /// `systemd.factory_reset=0` was given: everything else is overridden.
    pub disabled_by_kernel: bool,
    /// A 258-style request exists but is meant for the next boot (same boot id).
    pub pending: bool,
}

/// Everything `pristine status` shows.
#[derive(Clone, Debug, Serialize)]
pub struct BootState {
    pub root: PathBuf,
    pub in_initrd: bool,
    pub mode: Mode,
    /// `kernel`, `config` or `default`.
    pub mode_source: String,
    pub etc: DirReport,
    pub var: DirReport,
    pub first_boot: Verdict,
    pub machine_id: Option<String>,
    pub os: stamp::OsStamp,
    pub factory_reset: ResetRequest,
}

fn mtime(st: &rustix::fs::Stat) -> Mtime {
    Mtime {
        sec: st.st_mtime,
        nsec: st.st_mtime_nsec as i64,
    }
}

fn dir_state(root: &Root, dir: &Path) -> DirState {
    match root.read_dir(dir) {
        Ok(entries) if entries.is_empty() => DirState::Empty,
        Ok(_) => DirState::Populated,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => DirState::Absent,
        // Exists but unreadable or not a directory: treat as populated (never wipe or
        // re-provision what we cannot see).
        Err(_) => DirState::Populated,
    }
}

fn is_read_only(root: &Root, dir: &Path) -> bool {
    root.open_path(
        dir,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
        rustix::fs::Mode::empty(),
    )
    .is_ok_and(crate::fs::on_read_only_mount)
}

/// Gathers the ConditionNeedsUpdate inputs for `dir` (observe step).
pub fn observe_needs_update(
    root: &Root,
    dir: &Path,
    kernel_override: Option<bool>,
) -> NeedsUpdateInput {
    let updated = dir.join(".updated");
    let updated_mtime = root.stat(&updated, false).ok().map(|s| mtime(&s));
    let usr_mtime = root.stat(Path::new("/usr"), true).ok().map(|s| mtime(&s));
    let updated_content = root
        .read_optional_max(&updated, crate::fs::limits::SMALL)
        .ok()
        .flatten();
    NeedsUpdateInput {
        kernel_override,
        read_only: is_read_only(root, dir),
        updated_mtime,
        usr_mtime,
        updated_content,
    }
}

/// Decodes a UTF-16LE EFI string (systemd's `efi_get_variable_string`), trailing NULs dropped.
pub fn efi_string(data: &[u8]) -> String {
    let units: Vec<u16> = data
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let s = String::from_utf16_lossy(&units);
    s.trim_end_matches('\0').to_string()
}

/// Decides whether a 258-style `FactoryResetRequest` JSON applies to this OS and boot.
/// Returns `Some(true)` for a request for this boot, `Some(false)` for one pending for the next
/// boot, `None` when it is invalid or for another OS.
pub fn efi_request_applies(
    json: &str,
    os_id: Option<&str>,
    image_id: Option<&str>,
    boot_id: Option<&str>,
) -> Option<bool> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let id = v.get("osReleaseId")?.as_str()?;
    let req_boot = v
        .get("bootId")?
        .as_str()?
        .replace('-', "")
        .to_ascii_lowercase();
    let req_image = v.get("osReleaseImageId").and_then(|x| x.as_str());
    if Some(id) != os_id || req_image != image_id {
        return None;
    }
    Some(boot_id.is_none_or(|b| b != req_boot))
}

/// Detects the factory reset request from all sources.
pub fn detect_reset(root: &Root, host: &HostFacts, os: &stamp::OsStamp) -> ResetRequest {
    let mut r = ResetRequest::default();
    if host.kernel.factory_reset == Some(false) {
        r.disabled_by_kernel = true;
        return r;
    }
    if host.kernel.factory_reset == Some(true) {
        r.sources.push("kernel".into());
    }
    if let Some(data) = host.efi_var("FactoryReset") {
        if crate::text::parse_boolean(efi_string(&data).trim()) == Some(true) {
            r.sources.push("efi-factory-reset".into());
        }
    }
    if let Some(data) = host.efi_var("FactoryResetRequest") {
        match efi_request_applies(
            &efi_string(&data),
            os.id.as_deref(),
            os.image_id.as_deref(),
            host.boot_id.as_deref(),
        ) {
            Some(true) => r.sources.push("efi-factory-reset-request".into()),
            Some(false) => r.pending = true,
            None => {}
        }
    }
    if root.exists(Path::new(RESET_REQUEST_FILE)) {
        r.sources.push("file".into());
    }
    r.requested = !r.sources.is_empty();
    r
}

/// Detects the whole boot state of `root`.
pub fn detect(root: &Root, host: &HostFacts, settings: &Settings) -> BootState {
    let os = stamp::current(root);
    let dir_report = |dir: &str| {
        let p = Path::new(dir);
        let state = dir_state(root, p);
        let nu = needs_update(&observe_needs_update(
            root,
            p,
            host.kernel.condition_needs_update,
        ));
        let recorded = stamp::read(root, p);
        let os_changed = recorded.as_ref().map(|s| s.differs_from(&os));
        DirReport {
            state,
            needs_update: nu,
            stamp: recorded,
            os_changed,
        }
    };
    let etc = dir_report("/etc");
    let var = dir_report("/var");
    let mid_raw = root
        .read_optional_max(Path::new("/etc/machine-id"), crate::fs::limits::SMALL)
        .ok()
        .flatten();
    let fb = first_boot(mid_raw.as_deref(), host.kernel.condition_first_boot);
    let machine_id = mid_raw.as_deref().and_then(|s| parse_machine_id(s).ok());
    let (mode, mode_source) = match (host.kernel.mode(), settings.mode) {
        (Some(m), _) => (m, "kernel"),
        (None, Some(m)) => (m, "config"),
        (None, None) => (Mode::Stateful, "default"),
    };
    BootState {
        root: root.host().to_path_buf(),
        in_initrd: host.in_initrd,
        mode,
        mode_source: mode_source.into(),
        etc,
        var,
        first_boot: fb,
        machine_id,
        factory_reset: detect_reset(root, host, &os),
        os,
    }
}

/// Human-readable status, one fact a line.
pub fn render_text(s: &BootState) -> String {
    let dir = |name: &str, d: &DirReport| {
        let changed = match d.os_changed {
            Some(true) => "os changed since last provisioning",
            Some(false) => "os unchanged since last provisioning",
            None => "never provisioned by pristine",
        };
        format!(
            "{name:>13}: {:?}, needs update: {} ({}), {changed}\n",
            d.state,
            if d.needs_update.value { "yes" } else { "no" },
            d.needs_update.reason
        )
        .to_lowercase()
    };
    let mut out = String::new();
    out.push_str(&format!("{:>13}: {}\n", "root", s.root.display()));
    out.push_str(&format!(
        "{:>13}: {}\n",
        "in initrd",
        if s.in_initrd { "yes" } else { "no" }
    ));
    out.push_str(&format!(
        "{:>13}: {} (from {})\n",
        "mode",
        s.mode.as_str(),
        s.mode_source
    ));
    out.push_str(&dir("/etc", &s.etc));
    out.push_str(&dir("/var", &s.var));
    out.push_str(&format!(
        "{:>13}: {} ({})\n",
        "first boot",
        if s.first_boot.value { "yes" } else { "no" },
        s.first_boot.reason
    ));
    out.push_str(&format!(
        "{:>13}: {}\n",
        "machine id",
        s.machine_id.as_deref().unwrap_or("-")
    ));
    out.push_str(&format!(
        "{:>13}: {} {}\n",
        "os",
        s.os.id.as_deref().unwrap_or("-"),
        s.os.image_version
            .as_deref()
            .or(s.os.version_id.as_deref())
            .unwrap_or("")
    ));
    let fr = &s.factory_reset;
    let fr_text = if fr.disabled_by_kernel {
        "no (systemd.factory_reset=0)".to_string()
    } else if fr.requested {
        format!("requested ({})", fr.sources.join(", "))
    } else if fr.pending {
        "pending for next boot".to_string()
    } else {
        "no".to_string()
    };
    out.push_str(&format!("{:>13}: {fr_text}\n", "factory reset"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(sec: i64, nsec: i64) -> Option<Mtime> {
        Some(Mtime { sec, nsec })
    }

    fn input(usr: Option<Mtime>, upd: Option<Mtime>, content: Option<&str>) -> NeedsUpdateInput {
        NeedsUpdateInput {
            kernel_override: None,
            read_only: false,
            updated_mtime: upd,
            usr_mtime: usr,
            updated_content: content.map(str::to_string),
        }
    }

    #[test]
    fn needs_update_table() {
        let ts = |n: u64| format!("# x\nTIMESTAMP_NSEC={n}\n");
        let cases: Vec<(NeedsUpdateInput, bool)> = vec![
            // missing .updated
            (input(m(10, 0), None, None), true),
            // /usr newer by seconds / older by seconds
            (input(m(11, 0), m(10, 999), None), true),
            (input(m(9, 999), m(10, 0), None), false),
            // equal seconds, both with nsec
            (input(m(10, 5), m(10, 4), None), true),
            (input(m(10, 4), m(10, 5), None), false),
            (input(m(10, 5), m(10, 5), None), false),
            // equal seconds, /usr nsec 0: never newer
            (input(m(10, 0), m(10, 0), None), false),
            // equal seconds, .updated without nsec, /usr with: TIMESTAMP_NSEC decides
            (input(m(10, 7), m(10, 0), Some(&ts(10_000_000_007))), false),
            (input(m(10, 7), m(10, 0), Some(&ts(10_000_000_006))), true),
            // ... missing or unparsable TIMESTAMP_NSEC: update
            (input(m(10, 7), m(10, 0), Some("# nothing\n")), true),
            (
                input(m(10, 7), m(10, 0), Some("TIMESTAMP_NSEC=abc\n")),
                true,
            ),
            (input(m(10, 7), m(10, 0), Some("TIMESTAMP_NSEC=\n")), true),
            (input(m(10, 7), m(10, 0), None), true),
            // cannot stat /usr
            (input(None, m(10, 0), None), true),
        ];
        for (i, (inp, want)) in cases.iter().enumerate() {
            assert_eq!(needs_update(inp).value, *want, "case {i}: {inp:?}");
        }
    }

    #[test]
    fn needs_update_overrides() {
        let mut i = input(m(11, 0), None, None);
        i.read_only = true;
        assert!(!needs_update(&i).value);
        i.kernel_override = Some(true);
        assert!(needs_update(&i).value);
        let mut j = input(m(11, 0), None, None);
        j.kernel_override = Some(false);
        assert!(!needs_update(&j).value);
    }

    #[test]
    fn first_boot_rules() {
        assert!(first_boot(None, None).value);
        assert!(first_boot(Some("uninitialized\n"), None).value);
        assert!(!first_boot(Some(""), None).value);
        assert!(!first_boot(Some("0123456789abcdef0123456789abcdef\n"), None).value);
        assert!(!first_boot(None, Some(false)).value);
    }

    #[test]
    fn efi_strings_and_requests() {
        let enc: Vec<u8> = "yes\0"
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect();
        assert_eq!(efi_string(&enc), "yes");
        let j = r#"{"osReleaseId":"debian","bootId":"11111111-2222-3333-4444-555555555555"}"#;
        assert_eq!(
            efi_request_applies(
                j,
                Some("debian"),
                None,
                Some("00000000000000000000000000000000")
            ),
            Some(true)
        );
        assert_eq!(
            efi_request_applies(
                j,
                Some("debian"),
                None,
                Some("11111111222233334444555555555555")
            ),
            Some(false)
        );
        assert_eq!(efi_request_applies(j, Some("fedora"), None, None), None);
        assert_eq!(
            efi_request_applies(j, Some("debian"), Some("img"), None),
            None
        );
        assert_eq!(
            efi_request_applies("not json", Some("debian"), None, None),
            None
        );
    }
}
