//! The `parsed` operator's formats, pure: a file's bytes → values, values → the bytes the
//! current software expects. Capture reads values, not bytes, so a `/usr` update that changes a
//! format only needs a new renderer. Unit enablement, the fourth format, needs the preset engine
//! and lives in `units`. Nothing here does I/O.

use std::collections::BTreeMap;

use super::policy::Format;
use crate::error::{Error, Result};

fn unreadable(why: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::msg("parse", why)
}

fn unrenderable(why: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::msg("render saved values", why)
}

/// Where zone files live; `/etc/localtime` links into it.
pub const ZONEINFO: &str = "/usr/share/zoneinfo/";

/// Values from a file's contents (`text`) or, for the timezone, its link target.
pub fn capture(format: Format, text: &str) -> Result<BTreeMap<String, String>> {
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
                .ok_or_else(|| unreadable("no hostname in the file"))?;
            if !crate::config::valid_hostname(name) {
                return Err(unreadable(format!("'{name}' is not a valid hostname")));
            }
            v.insert("hostname".into(), name.into());
        }
        Format::Timezone => {
            let zone = text
                .find("zoneinfo/")
                .map(|i| &text[i + "zoneinfo/".len()..])
                .filter(|z| valid_zone(z))
                .ok_or_else(|| {
                    unreadable(format!(
                        "link target '{text}' is not a zone under {ZONEINFO}"
                    ))
                })?;
            v.insert("zone".into(), zone.into());
        }
        Format::Units | Format::Accounts => {
            return Err(unreadable(
                "unit states and accounts are not read from one file",
            ))
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
pub fn render(format: Format, values: &BTreeMap<String, String>) -> Result<String> {
    match format {
        Format::Env => {
            let mut s = String::new();
            for (k, v) in values {
                if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    return Err(unrenderable(format!("'{k}' is not a variable name")));
                }
                s.push_str(k);
                s.push('=');
                s.push_str(&quote(v));
                s.push('\n');
            }
            Ok(s)
        }
        Format::Hostname => {
            let h = values
                .get("hostname")
                .ok_or_else(|| unrenderable("no hostname stored"))?;
            if !crate::config::valid_hostname(h) {
                return Err(unrenderable(format!("stored hostname '{h}' is not valid")));
            }
            Ok(format!("{h}\n"))
        }
        Format::Timezone => {
            let z = values
                .get("zone")
                .ok_or_else(|| unrenderable("no zone stored"))?;
            if !valid_zone(z) {
                return Err(unrenderable(format!("stored zone '{z}' is not valid")));
            }
            // systemd (timedatectl, firstboot) writes the link relative to /etc.
            Ok(format!("..{ZONEINFO}{z}"))
        }
        Format::Units | Format::Accounts => Err(unrenderable(
            "unit states and accounts are not rendered to one file",
        )),
    }
}

/// `values` as an env file laid out like `template` (the vendor's copy): its comments, blank
/// lines and key order are kept, a key whose value the admin kept keeps its line verbatim, a
/// changed value is rewritten in place, a key the admin removed is dropped, and keys the
/// template lacks are appended in name order. A template whose assignments cannot be read one
/// line at a time (continuation lines, multi-line quotes) is not used: then, and when the
/// result would not parse back to `values`, the plain rendering is returned.
pub fn render_env(values: &BTreeMap<String, String>, template: Option<&str>) -> Result<String> {
    let plain = render(Format::Env, values)?;
    let Some(template) = template else {
        return Ok(plain);
    };
    let mut out = String::new();
    let mut done = std::collections::BTreeSet::new();
    for line in template.lines() {
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let parsed = crate::text::envfile::parse(line);
        let [(k, v)] = parsed.as_slice() else {
            return Ok(plain);
        };
        if line.ends_with('\\') || !done.insert(k.clone()) {
            return Ok(plain);
        }
        match values.get(k) {
            Some(now) if now == v => out.push_str(line),
            Some(now) => {
                out.push_str(k);
                out.push('=');
                out.push_str(&quote(now));
            }
            None => continue,
        }
        out.push('\n');
    }
    for (k, v) in values.iter().filter(|(k, _)| !done.contains(*k)) {
        out.push_str(k);
        out.push('=');
        out.push_str(&quote(v));
        out.push('\n');
    }
    let back: BTreeMap<String, String> = crate::text::envfile::parse(&out).into_iter().collect();
    Ok(if back == *values { out } else { plain })
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
    fn env_keeps_the_vendor_layout() {
        let vendor = "# Vendor defaults\nLANG=en_US.UTF-8\n\n# keyboard\nKEYMAP='us'\nFONT=lat9w\n";
        let mut v = capture(Format::Env, vendor).expect("parse");
        v.insert("LANG".into(), "de_DE.UTF-8".into());
        v.remove("FONT");
        v.insert("XKBLAYOUT".into(), "de nodeadkeys".into());
        let out = render_env(&v, Some(vendor)).expect("render");
        assert_eq!(
            out,
            "# Vendor defaults\nLANG=de_DE.UTF-8\n\n# keyboard\nKEYMAP='us'\nXKBLAYOUT=\"de nodeadkeys\"\n"
        );
        assert_eq!(capture(Format::Env, &out).expect("reparse"), v);
        // A template with a continuation line is not used.
        let odd = "A=1 \\\n2\n";
        assert_eq!(
            render_env(&v, Some(odd)).expect("plain"),
            render(Format::Env, &v).expect("r")
        );
        assert_eq!(
            render_env(&v, None).expect("plain"),
            render(Format::Env, &v).expect("r")
        );
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
