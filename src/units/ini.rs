//! The unit-file syntax of systemd's `config_parse()`: lines ending in `\n`, `\r\n` or `\r`,
//! comment lines starting with `#` or `;` (even inside a continuation), a backslash at the end
//! of a line continues it (the backslash becomes a space), `[Section]` headers, `Key=Value`
//! assignments with case-sensitive keys, whitespace stripped around both.
//!
//! Pure: bytes in, assignments and diagnostics out. Sections outside `wanted` are ignored (with a
//! warning unless listed in `quiet` or named `X-…`). A line systemd treats as fatal for the whole
//! file (an invalid section header, invalid UTF-8) ends the parse: the assignments before it are
//! kept, as systemd has already applied them, and [`Parsed::fatal`] says why.

/// One `Key=Value` in a wanted section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    pub line: usize,
    /// The section, as its index in the `wanted` list given to [`parse`].
    pub section: usize,
    pub key: String,
    pub value: String,
}

/// The result of lexing one file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    pub assignments: Vec<Assignment>,
    /// `(line, message)` warnings, worded as systemd words them.
    pub warnings: Vec<(usize, String)>,
    /// `(line, message)` of the line that stopped the parse.
    pub fatal: Option<(usize, String)>,
}

/// systemd's `string_is_safe`: no control characters, quotes or backslashes.
fn string_is_safe(s: &str) -> bool {
    s.bytes()
        .all(|c| !((1..b' ').contains(&c) || matches!(c, b'"' | b'\'' | b'\\' | 0x7f)))
}

const WS: &[u8] = b" \t\n\r";

fn trim(b: &[u8]) -> &[u8] {
    let s = b.iter().position(|c| !WS.contains(c)).unwrap_or(b.len());
    let e = b.iter().rposition(|c| !WS.contains(c)).map_or(s, |e| e + 1);
    &b[s..e.max(s)]
}

/// Lexes `data`. `wanted`: sections whose assignments are returned; `quiet`: sections ignored
/// without a warning.
pub fn parse(data: &[u8], wanted: &[&str], quiet: &[&str]) -> Parsed {
    let mut out = Parsed::default();
    let mut section: Option<usize> = None;
    let mut section_ignored = false;
    let mut continuation: Option<Vec<u8>> = None;
    let mut line = 0usize;
    let mut bom_seen = false;
    let mut handle = |l: &[u8], line: usize, out: &mut Parsed| -> bool {
        let l = trim(l);
        if l.is_empty() {
            return true;
        }
        let Ok(l) = std::str::from_utf8(l) else {
            out.fatal = Some((line, "Invalid UTF-8 in line, ignoring.".into()));
            return false;
        };
        if let Some(rest) = l.strip_prefix('[') {
            let Some(n) = rest.strip_suffix(']') else {
                out.fatal = Some((line, format!("Invalid section header '{l}'")));
                return false;
            };
            if !string_is_safe(n) {
                out.fatal = Some((line, format!("Bad characters in section header '{l}'")));
                return false;
            }
            if let Some(i) = wanted.iter().position(|w| *w == n) {
                section = Some(i);
                section_ignored = false;
            } else {
                if !n.starts_with("X-") && !quiet.contains(&n) {
                    out.warnings
                        .push((line, format!("Unknown section '{n}'. Ignoring.")));
                }
                section = None;
                section_ignored = true;
            }
            return true;
        }
        let Some(sec) = section else {
            if !section_ignored {
                out.warnings
                    .push((line, "Assignment outside of section. Ignoring.".into()));
            }
            return true;
        };
        let Some((k, v)) = l.split_once('=') else {
            out.warnings
                .push((line, "Missing '=', ignoring line.".into()));
            return true;
        };
        if k.is_empty() {
            out.warnings
                .push((line, "Missing key name before '=', ignoring line.".into()));
            return true;
        }
        let k = std::str::from_utf8(trim(k.as_bytes())).unwrap_or_default();
        let v = std::str::from_utf8(trim(v.as_bytes())).unwrap_or_default();
        out.assignments.push(Assignment {
            line,
            section: sec,
            key: k.to_string(),
            value: v.to_string(),
        });
        true
    };
    let mut lines = crate::text::lines::Lines::new(data);
    let mut raw = Vec::new();
    loop {
        match lines.read_line(&mut raw) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                out.fatal = Some((
                    line + 1,
                    format!(
                        "Failed to read configuration file: {}",
                        crate::report::errno_text(&e)
                    ),
                ));
                return out;
            }
        }
        line += 1;
        let mut l: &[u8] = &raw;
        let lead = l.iter().position(|c| !WS.contains(c)).unwrap_or(l.len());
        if lead < l.len() && (l[lead] == b'#' || l[lead] == b';') {
            continue;
        }
        if !bom_seen {
            if let Some(r) = l.strip_prefix(b"\xef\xbb\xbf") {
                l = r;
                bom_seen = true;
            }
        }
        // The line continues when it ends in an odd number of backslashes (an even run is
        // escaped backslashes).
        let continued = |p: &[u8]| p.iter().rev().take_while(|&&c| c == b'\\').count() % 2 == 1;
        match continuation.take() {
            Some(mut c) => {
                c.extend_from_slice(l);
                if continued(&c) {
                    if let Some(last) = c.last_mut() {
                        *last = b' ';
                    }
                    continuation = Some(c);
                    continue;
                }
                if !handle(&c, line, &mut out) {
                    return out;
                }
            }
            None => {
                if continued(l) {
                    let mut c = l.to_vec();
                    if let Some(last) = c.last_mut() {
                        *last = b' ';
                    }
                    continuation = Some(c);
                    continue;
                }
                if !handle(l, line, &mut out) {
                    return out;
                }
            }
        }
    }
    if let Some(c) = continuation {
        line += 1;
        handle(&c, line, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_comments_continuations() {
        let text =
            b"[Unit]\nDescription=x\n[Install]\n# c\n; c\nWantedBy=a.target \\\n  b.target\n\
            \x20 Alias = x.service  \nwantedby=no\nFoo\n=bar\n[X-Foo]\nA=b\n[Bogus]\nC=d\n";
        let p = parse(text, &["Install"], &["Unit"]);
        let kv: Vec<_> = p
            .assignments
            .iter()
            .map(|a| (a.line, a.key.as_str(), a.value.as_str()))
            .collect();
        assert_eq!(
            kv,
            vec![
                (7, "WantedBy", "a.target    b.target"),
                (8, "Alias", "x.service"),
                (9, "wantedby", "no")
            ]
        );
        assert_eq!(p.fatal, None);
        let w: Vec<_> = p.warnings.iter().map(|w| w.0).collect();
        assert_eq!(w, vec![10, 11, 14]);
    }

    #[test]
    fn fatal_lines_stop() {
        let p = parse(
            b"[Install]\nAlias=a.service\n[Broken\nAlias=b.service\n",
            &["Install"],
            &[],
        );
        assert_eq!(p.assignments.len(), 1);
        assert_eq!(p.fatal.as_ref().map(|f| f.0), Some(3));
        let p = parse(b"[Install]\r\nA=1\rB=2\x00C=3", &["Install"], &[]);
        assert_eq!(p.assignments.len(), 3);
        let p = parse(b"Foo=bar\n", &["Install"], &[]);
        assert_eq!(p.warnings.len(), 1);
    }
}
