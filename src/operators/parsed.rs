//! The `parsed` operator's formats, pure: a file's bytes → values, values → the bytes the
//! current software expects. Capture reads values, not bytes, so a `/usr` update that changes a
//! format only needs a new renderer. Unit enablement, the fourth format, needs the preset engine
//! and lives in `units`. Nothing here does I/O.

use std::collections::BTreeMap;

use super::policy::Format;

/// Where zone files live; `/etc/localtime` links into it.
pub const ZONEINFO: &str = "/usr/share/zoneinfo/";

/// Values from a file's contents (`text`) or, for the timezone, its link target.
pub fn capture(format: Format, text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut v = BTreeMap::new();
    match format {
        Format::Env => {
            for (k, val) in crate::text::envfile::parse(text) {
                v.insert(k, val);
            }
        }
        Format::Hostname => {
            let name = text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with('#'))
                .ok_or("no hostname in the file")?;
            if !crate::config::valid_hostname(name) {
                return Err(format!("'{name}' is not a valid hostname"));
            }
            v.insert("hostname".into(), name.into());
        }
        Format::Timezone => {
            let zone = text
                .find("zoneinfo/")
                .map(|i| &text[i + "zoneinfo/".len()..])
                .filter(|z| valid_zone(z))
                .ok_or_else(|| format!("link target '{text}' is not a zone under {ZONEINFO}"))?;
            v.insert("zone".into(), zone.into());
        }
        Format::Units | Format::Accounts => {
            return Err("unit states and accounts are not read from one file".into())
        }
    }
    Ok(v)
}

/// A zone name as timedatectl accepts it: relative, no `..`, no odd characters.
pub fn valid_zone(z: &str) -> bool {
    !z.is_empty()
        && !z.starts_with('/')
        && z.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
        && z.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_-+".contains(&b))
}

/// The file contents (or, for the timezone, the link target) for `values`.
pub fn render(format: Format, values: &BTreeMap<String, String>) -> Result<String, String> {
    match format {
        Format::Env => {
            let mut s = String::new();
            for (k, v) in values {
                if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    return Err(format!("'{k}' is not a variable name"));
                }
                s.push_str(k);
                s.push('=');
                s.push_str(&quote(v));
                s.push('\n');
            }
            Ok(s)
        }
        Format::Hostname => {
            let h = values.get("hostname").ok_or("no hostname stored")?;
            if !crate::config::valid_hostname(h) {
                return Err(format!("stored hostname '{h}' is not valid"));
            }
            Ok(format!("{h}\n"))
        }
        Format::Timezone => {
            let z = values.get("zone").ok_or("no zone stored")?;
            if !valid_zone(z) {
                return Err(format!("stored zone '{z}' is not valid"));
            }
            // systemd (timedatectl, firstboot) writes the link relative to /etc.
            Ok(format!("..{ZONEINFO}{z}"))
        }
        Format::Units | Format::Accounts => {
            Err("unit states and accounts are not rendered to one file".into())
        }
    }
}

/// An env value, bare when that is unambiguous, else double-quoted with systemd's escapes.
fn quote(v: &str) -> String {
    if !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.,:/@%+-".contains(&b))
    {
        return v.to_string();
    }
    let mut s = String::from("\"");
    for c in v.chars() {
        if matches!(c, '"' | '\\' | '`' | '$') {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_round_trip() {
        let text = "# comment\nLANG=de_DE.UTF-8\nPRETTY_HOSTNAME=\"Mein \\\"Rechner\\\" $x\"\n";
        let v = capture(Format::Env, text).expect("parse");
        assert_eq!(v["PRETTY_HOSTNAME"], "Mein \"Rechner\" $x");
        let out = render(Format::Env, &v).expect("render");
        assert_eq!(capture(Format::Env, &out).expect("reparse"), v);
        assert!(out.contains("LANG=de_DE.UTF-8\n"));
    }

    #[test]
    fn hostname_and_zone() {
        let h = capture(Format::Hostname, "\n  box-1 \n").expect("hostname");
        assert_eq!(render(Format::Hostname, &h).expect("render"), "box-1\n");
        assert!(capture(Format::Hostname, "-bad-\n").is_err());
        let z = capture(Format::Timezone, "../usr/share/zoneinfo/Europe/Berlin").expect("zone");
        assert_eq!(z["zone"], "Europe/Berlin");
        assert_eq!(
            render(Format::Timezone, &z).expect("render"),
            "../usr/share/zoneinfo/Europe/Berlin"
        );
        assert!(capture(Format::Timezone, "/usr/share/zoneinfo/../../etc/shadow").is_err());
    }
}
