//! The kernel command line: systemd's splitting and quoting rules, its `rd.` prefix handling and
//! the options pristine understands. Parsing is pure (a string in, options and warnings out); a
//! bad value is a warning naming the option, never an error.

use crate::text::parse_boolean;
use crate::text::word::{split_words, Flags, WHITESPACE};

/// `systemd.volatile=` / `pristine.mode=` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// /etc and /var persistent (the default).
    Stateful,
    /// tmpfs on /var (`systemd.volatile=state`).
    Volatile,
    /// tmpfs on /etc and /var (`systemd.volatile=yes`).
    Stateless,
    /// overlayfs over the root (`systemd.volatile=overlay`), set up by systemd-volatile-root.
    Overlay,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Stateful => "stateful",
            Mode::Volatile => "volatile",
            Mode::Stateless => "stateless",
            Mode::Overlay => "overlay",
        }
    }
}

/// Options pristine takes from the kernel command line. `None` means "not given".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelOptions {
    /// `systemd.factory_reset=` (only honoured in the initrd, as systemd does).
    pub factory_reset: Option<bool>,
    /// `systemd.volatile=`.
    pub volatile: Option<Mode>,
    /// `systemd.machine_id=`: a 32-hex-digit id or `firmware`.
    pub machine_id: Option<String>,
    /// `systemd.condition_needs_update=`.
    pub condition_needs_update: Option<bool>,
    /// `systemd.condition_first_boot=`.
    pub condition_first_boot: Option<bool>,
    /// `systemd.firstboot=`.
    pub firstboot: Option<bool>,
    /// `systemd.hostname=`.
    pub hostname: Option<String>,
    /// `pristine.mode=` (wins over `systemd.volatile=`).
    pub pristine_mode: Option<Mode>,
    /// `pristine.provision=`: `0` skips provisioning entirely.
    pub pristine_provision: Option<bool>,
    /// `pristine.log_level=`.
    pub pristine_log_level: Option<log::LevelFilter>,
}

impl KernelOptions {
    /// The mode asked for on the command line, if any (`pristine.mode=` wins).
    pub fn mode(&self) -> Option<Mode> {
        self.pristine_mode.or(self.volatile)
    }
}

/// Splits a command line into words with systemd's rules (`EXTRACT_UNQUOTE | EXTRACT_RELAX |
/// EXTRACT_RETAIN_ESCAPE`: quotes group and are removed, backslashes are literal, an
/// unbalanced quote runs to the end).
pub fn split(line: &str) -> Vec<String> {
    let flags = Flags::UNQUOTE | Flags::RELAX | Flags::RETAIN_ESCAPE;
    match split_words(line.as_bytes(), WHITESPACE, flags) {
        Ok(words) => words
            .into_iter()
            .map(|w| String::from_utf8_lossy(&w).into_owned())
            .collect(),
        Err(_) => Vec::new(), // cannot happen with RELAX
    }
}

/// Key/value pairs of the command line after systemd's `rd.` handling: in the initrd `rd.X`
/// counts as `X`; outside it `rd.` options are dropped.
pub fn pairs(line: &str, in_initrd: bool) -> Vec<(String, Option<String>)> {
    split(line)
        .into_iter()
        .filter_map(|w| {
            let w = match w.strip_prefix("rd.") {
                Some(rest) if in_initrd => rest.to_string(),
                Some(_) => return None,
                None => w,
            };
            Some(match w.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (w, None),
            })
        })
        .collect()
}

/// systemd's `proc_cmdline_key_streq`: `-` and `_` are the same.
pub fn key_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes().zip(b.bytes()).all(|(x, y)| {
            let n = |c: u8| if c == b'-' { b'_' } else { c };
            n(x) == n(y)
        })
}

fn parse_mode(v: &str) -> Option<Mode> {
    match v {
        "state" => Some(Mode::Volatile),
        "overlay" => Some(Mode::Overlay),
        "volatile" => Some(Mode::Volatile),
        "stateless" => Some(Mode::Stateless),
        "stateful" => Some(Mode::Stateful),
        _ => parse_boolean(v).map(|b| if b { Mode::Stateless } else { Mode::Stateful }),
    }
}

/// Parses the command line. Returns the options and one warning per ignored option.
pub fn parse(line: &str, in_initrd: bool) -> (KernelOptions, Vec<String>) {
    let mut o = KernelOptions::default();
    let mut warnings = Vec::new();
    for (k, v) in pairs(line, in_initrd) {
        let mut bad = |what: &str| {
            warnings.push(format!(
                "kernel command line: {k}={}: {what}, ignoring",
                v.as_deref().unwrap_or("")
            ))
        };
        let boolean = |v: &Option<String>| match v {
            None => Some(true),
            Some(s) => parse_boolean(s),
        };
        let is = |name: &str| key_eq(&k, name);
        if is("systemd.factory_reset") {
            // systemd honours this only in the initrd.
            match boolean(&v) {
                Some(b) if in_initrd => o.factory_reset = Some(b),
                Some(_) => {}
                None => bad("not a boolean"),
            }
        } else if is("systemd.volatile") {
            match v.as_deref().map_or(Some(Mode::Stateless), parse_mode) {
                Some(Mode::Stateless | Mode::Stateful)
                    if v.as_deref().is_some_and(|s| {
                        s == "stateless" || s == "stateful" || s == "volatile"
                    }) =>
                {
                    bad("not a systemd.volatile= value")
                }
                Some(m) => o.volatile = Some(m),
                None => bad("not a systemd.volatile= value"),
            }
        } else if is("systemd.machine_id") {
            match v.as_deref() {
                Some("firmware") => o.machine_id = Some("firmware".into()),
                Some(s) if crate::text::specifier::parse_machine_id(s).is_ok() => {
                    o.machine_id = Some(s.to_ascii_lowercase())
                }
                _ => bad("not a valid machine id"),
            }
        } else if is("systemd.condition_needs_update") {
            match boolean(&v) {
                Some(b) => o.condition_needs_update = Some(b),
                None => bad("not a boolean"),
            }
        } else if is("systemd.condition_first_boot") {
            match boolean(&v) {
                Some(b) => o.condition_first_boot = Some(b),
                None => bad("not a boolean"),
            }
        } else if is("systemd.firstboot") {
            match boolean(&v) {
                Some(b) => o.firstboot = Some(b),
                None => bad("not a boolean"),
            }
        } else if is("systemd.hostname") {
            match v.as_deref() {
                Some(h) if crate::config::valid_hostname(h) => o.hostname = Some(h.to_string()),
                _ => bad("not a valid hostname"),
            }
        } else if is("pristine.mode") {
            match v.as_deref().and_then(|s| match s {
                "stateful" => Some(Mode::Stateful),
                "volatile" => Some(Mode::Volatile),
                "stateless" => Some(Mode::Stateless),
                "overlay" => Some(Mode::Overlay),
                _ => None,
            }) {
                Some(m) => o.pristine_mode = Some(m),
                None => bad("expected stateful, volatile, stateless or overlay"),
            }
        } else if is("pristine.provision") {
            match boolean(&v) {
                Some(b) => o.pristine_provision = Some(b),
                None => bad("not a boolean"),
            }
        } else if is("pristine.log_level") {
            match v.as_deref().and_then(crate::logging::parse_level) {
                Some(l) => o.pristine_log_level = Some(l),
                None => bad("not a log level"),
            }
        } else if k.starts_with("pristine.") {
            bad("unknown pristine option");
        }
    }
    (o, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitting() {
        assert_eq!(
            split(r#"a "b c" d='e f' g\h"#),
            vec!["a", "b c", "d=e f", r"g\h"]
        );
        assert_eq!(split(r#"x="unterminated"#), vec!["x=unterminated"]);
        assert_eq!(split("  "), Vec::<String>::new());
    }

    #[test]
    fn rd_prefix() {
        let p = pairs("rd.systemd.factory_reset=1 quiet", true);
        assert_eq!(p[0], ("systemd.factory_reset".into(), Some("1".into())));
        let p = pairs("rd.systemd.factory_reset=1 quiet", false);
        assert_eq!(p, vec![("quiet".to_string(), None)]);
    }

    #[test]
    fn options() {
        let (o, w) = parse(
            "systemd.factory-reset systemd.volatile=state systemd.machine_id=0123456789ABCDEF0123456789abcdef \
             systemd.condition_needs_update=0 pristine.mode=stateless systemd.hostname=box",
            true,
        );
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(o.factory_reset, Some(true));
        assert_eq!(o.volatile, Some(Mode::Volatile));
        assert_eq!(
            o.machine_id.as_deref(),
            Some("0123456789abcdef0123456789abcdef")
        );
        assert_eq!(o.condition_needs_update, Some(false));
        assert_eq!(o.mode(), Some(Mode::Stateless));
        assert_eq!(o.hostname.as_deref(), Some("box"));
    }

    #[test]
    fn factory_reset_only_in_initrd() {
        let (o, _) = parse("systemd.factory_reset=1", false);
        assert_eq!(o.factory_reset, None);
    }

    #[test]
    fn bad_values_warn() {
        let (o, w) = parse("systemd.volatile=banana systemd.machine_id=xyz pristine.frobnicate=1 systemd.firstboot=maybe", true);
        assert_eq!(o, KernelOptions::default());
        assert_eq!(w.len(), 4, "{w:?}");
        assert!(w[0].contains("systemd.volatile=banana"));
    }

    #[test]
    fn later_wins() {
        let (o, _) = parse("systemd.volatile=yes systemd.volatile=no", true);
        assert_eq!(o.volatile, Some(Mode::Stateful));
    }
}
