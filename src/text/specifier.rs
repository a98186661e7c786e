//! `%`-specifier expansion with systemd's rules (`specifier_printf`): `%%` is a percent sign,
//! a known specifier is replaced by its value (an empty value adds nothing), an unknown
//! alphanumeric specifier is an error, any other `%c` is kept verbatim, a trailing `%` stays.
//!
//! [`SystemValues`] holds the values of systemd's common system, credential and tmp
//! specifiers; [`crate::host::RunningSystem::system_values`] fills it from the target root
//! (os-release, machine-id) and the running host (hostname, kernel, boot id), exactly where
//! systemd 257 takes each from. Nothing here does I/O.

use std::collections::HashMap;

/// Why expansion failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpecError {
    /// `%c` where `c` is alphanumeric and not in the table (systemd: `-EBADSLT`).
    Unknown(char),
    /// The value cannot be determined here, e.g. no machine-id yet (systemd: `-EUNATCH`,
    /// `-ENOMEDIUM`, …). Callers usually skip the line.
    Unresolvable(char, String),
    /// The result exceeds the maximum length.
    TooLong,
}

impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpecError::Unknown(c) => write!(f, "unknown specifier %{c}"),
            SpecError::Unresolvable(c, why) => {
                write!(f, "specifier %{c} cannot be resolved: {why}")
            }
            SpecError::TooLong => f.write_str("result too long"),
        }
    }
}

/// Expands `text`. `lookup(c)` returns `None` when `c` is not a specifier of this table.
pub fn expand(
    text: &str,
    max_len: usize,
    lookup: &mut dyn FnMut(char) -> Option<Result<String, SpecError>>,
) -> Result<String, SpecError> {
    let mut out = String::with_capacity(text.len());
    let mut percent = false;
    for c in text.chars() {
        if percent {
            percent = false;
            if c == '%' {
                out.push('%');
            } else {
                match lookup(c) {
                    Some(Ok(v)) => out.push_str(&v),
                    Some(Err(e)) => return Err(e),
                    None if c.is_ascii_alphanumeric() => return Err(SpecError::Unknown(c)),
                    None => {
                        out.push('%');
                        out.push(c);
                    }
                }
            }
        } else if c == '%' {
            percent = true;
        } else {
            out.push(c);
        }
        if out.len() > max_len {
            return Err(SpecError::TooLong);
        }
    }
    if percent {
        out.push('%');
        if out.len() > max_len {
            return Err(SpecError::TooLong);
        }
    }
    Ok(out)
}

/// systemd's name for the architecture this binary runs on (`%a`).
pub fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x86-64",
        "x86" => "x86",
        "aarch64" => "arm64",
        "arm" => "arm",
        "riscv64" => "riscv64",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64-le",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        "loongarch64" => "loongarch64",
        other => other,
    }
}

/// The values of the specifiers systemd takes from the running system, even with `--root`
/// (`%b %H %l %q %v %u %U %g %G %h`, and `%T %V` without `--root`). Plain data: the host view
/// fills it (`crate::host::RunningSystem`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Running {
    /// The boot id (32 hex digits), or why it is unknown.
    pub boot_id: Result<String, String>,
    pub hostname: String,
    pub pretty_hostname: Option<String>,
    pub kernel_release: String,
    /// Name and id of the user running pristine, and its group.
    pub user: (String, u32),
    pub group: (String, u32),
    /// `%h`: `$HOME` if absolute, else the running user's home.
    pub home: String,
    /// `$TMPDIR`, `$TEMP` or `$TMP` of the running system, if absolute.
    pub tmp_dir: Option<String>,
}

impl Default for Running {
    /// Nothing known (tests and library callers that pass no host).
    fn default() -> Running {
        Running {
            boot_id: Err("no boot id".into()),
            hostname: String::new(),
            pretty_hostname: None,
            kernel_release: String::new(),
            user: ("root".into(), 0),
            group: ("root".into(), 0),
            home: "/root".into(),
            tmp_dir: None,
        }
    }
}

/// Values of the common specifiers, observed once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemValues {
    /// os-release of the target (`etc/os-release`, else `usr/lib/os-release`); `None` if neither.
    pub os_release: Option<HashMap<String, String>>,
    /// The target's machine id if `etc/machine-id` holds a valid one; else why not.
    pub machine_id: Result<String, String>,
    /// What the running system contributes.
    pub running: Running,
    /// Whether a `--root` was given (then `%T`/`%V` are `/tmp` and `/var/tmp`).
    pub has_root: bool,
}

/// Validates a machine-id file's content as systemd does (32 lower-case hex digits, optional
/// newline, not all zero). Returns the id or a reason.
pub fn parse_machine_id(content: &str) -> Result<String, String> {
    let t = content.strip_suffix('\n').unwrap_or(content);
    if t.is_empty() {
        return Err("machine-id is empty".into());
    }
    if t == "uninitialized" {
        return Err("machine-id is uninitialized".into());
    }
    if t.len() != 32 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("machine-id is not valid".into());
    }
    if t.bytes().all(|b| b == b'0') {
        return Err("machine-id is null".into());
    }
    Ok(t.to_ascii_lowercase())
}

impl SystemValues {
    fn os(&self, c: char, key: &str) -> Result<String, SpecError> {
        match &self.os_release {
            Some(m) => Ok(m.get(key).cloned().unwrap_or_default()),
            None => Err(SpecError::Unresolvable(c, "no os-release file".into())),
        }
    }

    fn short_hostname(&self) -> String {
        self.running
            .hostname
            .split('.')
            .next()
            .unwrap_or("")
            .to_string()
    }

    /// systemd's `COMMON_SYSTEM_SPECIFIERS` (`%a %A %b %B %H %l %q %m %M %o %v %w %W`).
    pub fn system(&self, c: char) -> Option<Result<String, SpecError>> {
        let unres = |c: char, e: &String| Err(SpecError::Unresolvable(c, e.clone()));
        Some(match c {
            'a' => Ok(architecture().to_string()),
            'A' => self.os(c, "IMAGE_VERSION"),
            'b' => self.running.boot_id.clone().or_else(|e| unres(c, &e)),
            'B' => self.os(c, "BUILD_ID"),
            'H' => Ok(self.running.hostname.clone()),
            'l' => Ok(self.short_hostname()),
            'q' => Ok(self
                .running
                .pretty_hostname
                .clone()
                .unwrap_or_else(|| self.short_hostname())),
            'm' => self.machine_id.clone().or_else(|e| unres(c, &e)),
            'M' => self.os(c, "IMAGE_ID"),
            'o' => self.os(c, "ID"),
            'v' => Ok(self.running.kernel_release.clone()),
            'w' => self.os(c, "VERSION_ID"),
            'W' => self.os(c, "VARIANT_ID"),
            _ => return None,
        })
    }

    /// systemd's `COMMON_CREDS_SPECIFIERS` (`%g %G %u %U`) for the running user.
    pub fn creds(&self, c: char) -> Option<Result<String, SpecError>> {
        Some(Ok(match c {
            'g' => self.running.group.0.clone(),
            'G' => self.running.group.1.to_string(),
            'u' => self.running.user.0.clone(),
            'U' => self.running.user.1.to_string(),
            _ => return None,
        }))
    }

    /// systemd's `COMMON_TMP_SPECIFIERS` (`%T %V`).
    pub fn tmp(&self, c: char) -> Option<Result<String, SpecError>> {
        let env_tmp = || self.running.tmp_dir.clone();
        Some(Ok(match c {
            'T' if self.has_root => "/tmp".into(),
            'V' if self.has_root => "/var/tmp".into(),
            'T' => env_tmp().unwrap_or_else(|| "/tmp".into()),
            'V' => env_tmp().unwrap_or_else(|| "/var/tmp".into()),
            _ => return None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(c: char) -> Option<Result<String, SpecError>> {
        match c {
            'x' => Some(Ok("X".into())),
            'e' => Some(Ok(String::new())),
            'u' => Some(Err(SpecError::Unresolvable('u', "no".into()))),
            _ => None,
        }
    }

    #[test]
    fn expansion_rules() {
        assert_eq!(expand("a%xb", 100, &mut t), Ok("aXb".into()));
        assert_eq!(expand("%%x", 100, &mut t), Ok("%x".into()));
        assert_eq!(expand("%e|", 100, &mut t), Ok("|".into()));
        assert_eq!(expand("a%", 100, &mut t), Ok("a%".into()));
        assert_eq!(expand("%-", 100, &mut t), Ok("%-".into()));
        assert_eq!(expand("%z", 100, &mut t), Err(SpecError::Unknown('z')));
        assert!(matches!(
            expand("%u", 100, &mut t),
            Err(SpecError::Unresolvable('u', _))
        ));
        assert_eq!(expand("%x%x%x", 2, &mut t), Err(SpecError::TooLong));
    }

    #[test]
    fn machine_ids() {
        assert!(parse_machine_id("0123456789abcdef0123456789abcdef\n").is_ok());
        assert!(parse_machine_id("uninitialized\n").is_err());
        assert!(parse_machine_id("").is_err());
        assert!(parse_machine_id("00000000000000000000000000000000").is_err());
        assert!(parse_machine_id("xyz").is_err());
    }
}
