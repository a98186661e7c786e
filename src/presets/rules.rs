//! Preset policy files (`*.preset` in `{etc,run,usr/local/lib,usr/lib}/systemd/system-preset/`)
//! as systemd 257's `read_presets()` and `query_presets()` read them: files by basename
//! precedence in name order; lines `enable PATTERN [INSTANCE…]`, `disable PATTERN`,
//! `ignore PATTERN`; `#`/`;` comments; the first matching rule over all files wins; no match
//! means enable. Patterns are `fnmatch(3)` globs without escapes.
//!
//! Parsing is pure; [`PresetRules::load`] only reads the files through the root handle.

use std::path::Path;

use crate::fs::Root;
use crate::text::word::{self, Flags};
use crate::units::name;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Enable,
    Disable,
    Ignore,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub pattern: String,
    pub action: Action,
    /// `enable foo@.service a b`: the instances to enable.
    pub instances: Option<Vec<String>>,
}

/// All rules, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PresetRules {
    pub rules: Vec<Rule>,
    /// `(file, line, message)` for lines that were skipped.
    pub warnings: Vec<(String, usize, String)>,
}

/// The preset directories, highest priority first.
pub const DIRS: [&str; 4] = [
    "/etc/systemd/system-preset",
    "/run/systemd/system-preset",
    "/usr/local/lib/systemd/system-preset",
    "/usr/lib/systemd/system-preset",
];

/// systemd's `first_word`: `s` starts with `word` followed by whitespace or the end.
fn first_word<'a>(s: &'a str, word: &str) -> Option<&'a str> {
    let rest = s.strip_prefix(word)?;
    if rest.is_empty() {
        return Some(rest);
    }
    let trimmed = rest.trim_start_matches([' ', '\t', '\n', '\r']);
    (trimmed.len() != rest.len()).then_some(trimmed)
}

impl PresetRules {
    /// Parses one preset file's text, appending its rules.
    pub fn parse_into(&mut self, file: &str, data: &[u8]) {
        for (n, raw) in crate::text::lines::split(data) {
            let line = String::from_utf8_lossy(&raw);
            let line = line.trim_matches([' ', '\t', '\n', '\r']);
            if line.is_empty() || line.starts_with(['#', ';']) {
                continue;
            }
            let mut rule = None;
            if let Some(param) = first_word(line, "enable") {
                match split_pattern(param) {
                    Some((pattern, instances)) => {
                        rule = Some(Rule {
                            pattern,
                            action: Action::Enable,
                            instances,
                        })
                    }
                    None => {
                        self.warn(file, n, line);
                        continue;
                    }
                }
            }
            if let Some(param) = first_word(line, "disable") {
                rule = Some(Rule {
                    pattern: param.to_string(),
                    action: Action::Disable,
                    instances: None,
                });
            }
            if let Some(param) = first_word(line, "ignore") {
                rule = Some(Rule {
                    pattern: param.to_string(),
                    action: Action::Ignore,
                    instances: None,
                });
            }
            match rule {
                Some(r) => self.rules.push(r),
                None => self.warn(file, n, line),
            }
        }
    }

    fn warn(&mut self, file: &str, n: usize, line: &str) {
        let msg = format!("Couldn't parse line '{line}'. Ignoring.");
        log::warn!("{file}:{n}: {msg}");
        self.warnings.push((file.to_string(), n, msg));
    }

    /// Reads every preset file of the root.
    pub fn load(root: &Root) -> PresetRules {
        let mut names: Vec<(String, String)> = Vec::new();
        for dir in DIRS {
            let Ok(entries) = root.read_dir(Path::new(dir)) else {
                continue;
            };
            for e in entries {
                let Some(n) = e.name.to_str() else { continue };
                if !n.ends_with(".preset")
                    || super::vfs::hidden_or_backup(n)
                    || names.iter().any(|(b, _)| b == n)
                {
                    continue;
                }
                names.push((n.to_string(), format!("{dir}/{n}")));
            }
        }
        names.sort();
        let mut rules = PresetRules::default();
        for (_, path) in names {
            match root.read(Path::new(&path)) {
                Ok(data) => rules.parse_into(&path, &data),
                Err(e) => log::warn!(
                    "Failed to read {}: {e}",
                    root.display_path(Path::new(&path)).display()
                ),
            }
        }
        rules
    }

    /// `query_presets`: the action for unit `unit`, and for a template matched by an
    /// `enable` rule with instances, the instance names to enable.
    pub fn query(&self, unit: &str) -> (Action, Option<Vec<String>>) {
        for r in &self.rules {
            if let Some(m) = match_instances(r, unit) {
                return (r.action, m);
            }
            if fnmatch(r.pattern.as_bytes(), unit.as_bytes()) {
                return (r.action, None);
            }
        }
        (Action::Enable, None)
    }
}

/// `pattern_match_multiple_instances`: `Some(list)` when the rule matches through its
/// instances (`Some(None)` for an instance name that is listed).
fn match_instances(rule: &Rule, unit: &str) -> Option<Option<Vec<String>>> {
    let instances = rule.instances.as_ref()?;
    let template = name::template_of(unit)?;
    if rule.pattern != template {
        return None;
    }
    if name::is_valid(unit, name::TEMPLATE) {
        let mut out = Vec::new();
        for i in instances {
            out.push(name::replace_instance(unit, i)?);
        }
        Some(Some(out))
    } else {
        let inst = name::instance_of(unit)?;
        instances.iter().any(|i| i == inst).then_some(None)
    }
}

/// `split_pattern_into_name_and_instances`.
fn split_pattern(param: &str) -> Option<(String, Option<Vec<String>>)> {
    let (w, rest) = word::extract_first_word(
        Some(param.as_bytes()),
        word::WHITESPACE,
        Flags::RETAIN_ESCAPE,
    )
    .ok()?;
    let unit = String::from_utf8(w?).ok()?;
    match rest {
        Some(rest) => {
            if !name::is_valid(&unit, name::TEMPLATE) {
                return None;
            }
            let rest = String::from_utf8_lossy(rest);
            let inst = rest
                .split([' ', '\t', '\n', '\r'])
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            Some((unit, Some(inst)))
        }
        None => Some((unit, None)),
    }
}

/// `fnmatch(pattern, s, FNM_NOESCAPE)`.
pub fn fnmatch(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() {
            match p[pi] {
                b'*' => {
                    star = Some((pi, si));
                    pi += 1;
                    continue;
                }
                b'?' => {
                    pi += 1;
                    si += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = bracket(&p[pi..], s[si]) {
                        if matched {
                            pi += next;
                            si += 1;
                            continue;
                        }
                    } else if s[si] == b'[' {
                        pi += 1;
                        si += 1;
                        continue;
                    }
                }
                c if c == s[si] => {
                    pi += 1;
                    si += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, ss)) => {
                pi = sp + 1;
                si = ss + 1;
                star = Some((sp, ss + 1));
            }
            None => return false,
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

/// Matches `c` against the bracket expression at the start of `p`: `(matched, length)`, or
/// `None` if the bracket is not closed (then `[` is literal).
fn bracket(p: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(i), Some(b'!') | Some(b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let ch = *p.get(i)?;
        if ch == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if ch == b'[' && p.get(i + 1) == Some(&b':') {
            let end = p[i + 2..].windows(2).position(|w| w == b":]")?;
            let class = &p[i + 2..i + 2 + end];
            matched |= match class {
                b"alpha" => c.is_ascii_alphabetic(),
                b"digit" => c.is_ascii_digit(),
                b"alnum" => c.is_ascii_alphanumeric(),
                b"upper" => c.is_ascii_uppercase(),
                b"lower" => c.is_ascii_lowercase(),
                b"space" => c.is_ascii_whitespace(),
                b"punct" => c.is_ascii_punctuation(),
                b"xdigit" => c.is_ascii_hexdigit(),
                _ => false,
            };
            i += end + 4;
            continue;
        }
        if p.get(i + 1) == Some(&b'-') && p.get(i + 2).is_some_and(|&e| e != b']') {
            let hi = p[i + 2];
            matched |= ch <= c && c <= hi;
            i += 3;
        } else {
            matched |= ch == c;
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(fnmatch(b"*", b"a.service"));
        assert!(fnmatch(b"a*.service", b"abc.service"));
        assert!(!fnmatch(b"a*.service", b"abc.socket"));
        assert!(fnmatch(b"?.service", b"a.service"));
        assert!(fnmatch(b"[ab].service", b"b.service"));
        assert!(!fnmatch(b"[!ab].service", b"b.service"));
        assert!(fnmatch(b"[a-c]x*", b"bx"));
        assert!(fnmatch(b"[]]", b"]"));
        assert!(fnmatch(b"a[", b"a["));
        assert!(fnmatch(b"a\\b", b"a\\b"));
        assert!(fnmatch(b"*@*.service", b"getty@tty1.service"));
        assert!(fnmatch(b"[[:digit:]]x", b"1x"));
    }

    #[test]
    fn rules_and_queries() {
        let mut r = PresetRules::default();
        r.parse_into(
            "/t.preset",
            b"# c\n; c\nenable a.service\ndisable b*\nignore c.service\nenable t@.service x y\n\
              enable u.service x\nbogus line\nenablex y\ndisable d.service e.service\n",
        );
        assert_eq!(r.rules.len(), 5);
        assert_eq!(
            r.warnings.iter().map(|w| w.1).collect::<Vec<_>>(),
            vec![7, 8, 9]
        );
        assert_eq!(r.query("a.service"), (Action::Enable, None));
        assert_eq!(r.query("bx.socket").0, Action::Disable);
        assert_eq!(r.query("c.service").0, Action::Ignore);
        assert_eq!(
            r.query("t@.service"),
            (
                Action::Enable,
                Some(vec!["t@x.service".into(), "t@y.service".into()])
            )
        );
        assert_eq!(r.query("t@y.service"), (Action::Enable, None));
        assert_eq!(r.query("d.service").0, Action::Enable);
        assert_eq!(r.query("zzz.service").0, Action::Enable);
    }
}
