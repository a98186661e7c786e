//! Firstboot basics, written only when missing, in systemd-firstboot's formats: `/etc/hostname`
//! (`NAME\n`), `/etc/localtime` (symlink to `../usr/share/zoneinfo/ZONE`, only if that zone
//! exists in the target), `/etc/locale.conf` (`LANG=`, `LC_MESSAGES=`), `/etc/vconsole.conf`
//! (`KEYMAP=`). Sources in order: kernel command line (`systemd.hostname=`), credentials
//! (`system.hostname`, `firstboot.timezone`, `firstboot.locale`, `firstboot.locale-messages`,
//! `firstboot.keymap`), then `[firstboot]` in pristine.toml.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::credentials::Credentials;
use crate::config::{valid_hostname, valid_timezone, valid_word, FirstbootSettings};
use crate::fs::{Root, WriteOptions};

/// One planned write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Op {
    WriteFile { path: PathBuf, content: String },
    Symlink { path: PathBuf, target: PathBuf },
}

/// What the target already has (observe).
#[derive(Clone, Debug, Default)]
pub struct Existing {
    pub hostname: bool,
    pub localtime: bool,
    pub locale: bool,
    pub vconsole: bool,
}

impl Existing {
    pub fn observe(root: &Root) -> Existing {
        let e = |p: &str| root.exists(Path::new(p));
        Existing {
            hostname: e("/etc/hostname"),
            localtime: e("/etc/localtime"),
            locale: e("/etc/locale.conf"),
            vconsole: e("/etc/vconsole.conf"),
        }
    }
}

/// Plans the writes (pure, apart from checking that a zone file exists via `zone_exists`).
pub fn plan(
    existing: &Existing,
    kernel_hostname: Option<&str>,
    creds: &Credentials,
    cfg: &FirstbootSettings,
    zone_exists: &dyn Fn(&str) -> bool,
    warnings: &mut Vec<String>,
) -> Vec<Op> {
    let cred = |n: &str| {
        creds
            .get(n)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let mut ops = Vec::new();
    if !existing.hostname {
        let h = kernel_hostname
            .map(str::to_string)
            .or_else(|| cred("system.hostname"))
            .or_else(|| cfg.hostname.clone());
        match h {
            Some(h) if valid_hostname(&h) => ops.push(Op::WriteFile {
                path: "/etc/hostname".into(),
                content: format!("{h}\n"),
            }),
            Some(h) => warnings.push(format!(
                "hostname '{h}' is not valid, not writing /etc/hostname"
            )),
            None => {}
        }
    }
    if !existing.localtime {
        if let Some(tz) = cred("firstboot.timezone").or_else(|| cfg.timezone.clone()) {
            if !valid_timezone(&tz) {
                warnings.push(format!(
                    "timezone '{tz}' is not valid, not writing /etc/localtime"
                ));
            } else if !zone_exists(&tz) {
                warnings.push(format!(
                    "timezone '{tz}' is not in /usr/share/zoneinfo, not writing /etc/localtime"
                ));
            } else {
                ops.push(Op::Symlink {
                    path: "/etc/localtime".into(),
                    target: PathBuf::from("../usr/share/zoneinfo").join(&tz),
                });
            }
        }
    }
    if !existing.locale {
        let lang = cred("firstboot.locale").or_else(|| cfg.locale.clone());
        let msgs = cred("firstboot.locale-messages").or_else(|| cfg.locale_messages.clone());
        let mut content = String::new();
        for (k, v) in [("LANG", lang), ("LC_MESSAGES", msgs)] {
            match v {
                Some(v) if valid_word(&v) => content.push_str(&format!("{k}={v}\n")),
                Some(v) => warnings.push(format!("locale '{v}' is not valid, ignoring")),
                None => {}
            }
        }
        if !content.is_empty() {
            ops.push(Op::WriteFile {
                path: "/etc/locale.conf".into(),
                content,
            });
        }
    }
    if !existing.vconsole {
        match cred("firstboot.keymap").or_else(|| cfg.keymap.clone()) {
            Some(k) if valid_word(&k) => ops.push(Op::WriteFile {
                path: "/etc/vconsole.conf".into(),
                content: format!("KEYMAP={k}\n"),
            }),
            Some(k) => warnings.push(format!("keymap '{k}' is not valid, ignoring")),
            None => {}
        }
    }
    ops
}

/// Applies the planned writes through the root handle.
pub fn apply(root: &Root, ops: &[Op]) -> std::io::Result<usize> {
    root.mkdir_all(Path::new("/etc"), 0o755)?;
    for op in ops {
        match op {
            Op::WriteFile { path, content } => root.write_atomic(
                path,
                content.as_bytes(),
                &WriteOptions {
                    mode: Some(0o644),
                    ..Default::default()
                },
            )?,
            Op::Symlink { path, target } => root.symlink_atomic(target, path)?,
        }
    }
    Ok(ops.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_only_missing_and_valid() {
        let creds = Credentials::from_dir(None);
        let cfg = FirstbootSettings {
            hostname: Some("cfg-host".into()),
            timezone: Some("Europe/Berlin".into()),
            locale: Some("C.UTF-8".into()),
            locale_messages: None,
            keymap: Some("de".into()),
        };
        let mut w = Vec::new();
        let ops = plan(
            &Existing::default(),
            Some("kernel-host"),
            &creds,
            &cfg,
            &|z| z == "Europe/Berlin",
            &mut w,
        );
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(ops.len(), 4);
        assert_eq!(
            ops[0],
            Op::WriteFile {
                path: "/etc/hostname".into(),
                content: "kernel-host\n".into()
            }
        );
        assert_eq!(
            ops[1],
            Op::Symlink {
                path: "/etc/localtime".into(),
                target: "../usr/share/zoneinfo/Europe/Berlin".into()
            }
        );
        let all = Existing {
            hostname: true,
            localtime: true,
            locale: true,
            vconsole: true,
        };
        assert!(plan(&all, Some("x"), &creds, &cfg, &|_| true, &mut w).is_empty());
        let bad = FirstbootSettings {
            hostname: Some("-bad".into()),
            timezone: Some("../../etc/passwd".into()),
            ..Default::default()
        };
        assert!(plan(&Existing::default(), None, &creds, &bad, &|_| true, &mut w).is_empty());
        assert_eq!(w.len(), 2);
    }
}
