//! Parsing of `sysusers.d` lines into typed items (pure: text and specifier values in, items
//! and messages out). Messages are worded exactly as systemd-sysusers 257 words them.

use crate::text::specifier::{self, SpecError, SystemValues};
use crate::text::word::{extract_many_words, Flags, WHITESPACE};

/// The kind of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    User,
    Group,
}

/// A `u` or `g` line (or an implicit one created for an `m` line).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Item {
    pub is_user: bool,
    pub name: String,
    pub group_name: Option<String>,
    pub uid_path: Option<String>,
    pub gid_path: Option<String>,
    pub description: Option<String>,
    pub home: Option<String>,
    pub shell: Option<String>,
    pub uid: u32,
    pub gid: u32,
    pub uid_set: bool,
    pub gid_set: bool,
    /// The group given by number or name must already exist (or be created by this run).
    pub id_set_strict: bool,
    pub locked: bool,
    /// Where the line came from (`None` for implicit items).
    pub origin: Option<(String, usize)>,
    pub todo_user: bool,
    pub todo_group: bool,
}

/// What one line means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    Item(Kind, Item),
    /// `m USER GROUP`.
    Member {
        user: String,
        group: String,
    },
    /// `r - FIRST[-LAST]`.
    Range(u32, u32),
}

/// `strerror` texts of the errno values the parser reports.
pub const EINVAL: &str = "Invalid argument";
pub const ERANGE: &str = "Numerical result out of range";
pub const ENXIO: &str = "No such device or address";

/// systemd's `parse_uid`: decimal, no sign, no leading zero, no whitespace, fits 32 bits, not
/// one of the two invalid ids. The error is the `strerror` text systemd prints.
pub fn parse_uid(s: &str) -> Result<u32, &'static str> {
    let b = s.as_bytes();
    if b.is_empty() || WHITESPACE.contains(&b[0]) || b[0] == b'+' || b[0] == b'-' {
        return Err(EINVAL);
    }
    if b[0] == b'0' && s != "0" {
        return Err(EINVAL);
    }
    if !b.iter().all(u8::is_ascii_digit) {
        return Err(EINVAL);
    }
    let v: u64 = match s.parse() {
        Ok(v) => v,
        Err(_) => return Err(ERANGE),
    };
    if v > u64::from(u32::MAX) {
        return Err(ERANGE);
    }
    let v = v as u32;
    if v == u32::MAX || v == 0xFFFF {
        return Err(ENXIO);
    }
    Ok(v)
}

/// systemd's `parse_uid_range`: `N` or `N-M` with N ≤ M.
pub fn parse_uid_range(s: &str) -> Option<(u32, u32)> {
    match s.split_once('-') {
        None => parse_uid(s).ok().map(|u| (u, u)),
        Some((a, b)) => {
            let l = parse_uid(a).ok()?;
            let u = parse_uid(b).ok()?;
            (l <= u).then_some((l, u))
        }
    }
}

/// systemd's strict `valid_user_group_name`.
pub fn valid_user_group_name(u: &str) -> bool {
    let b = u.as_bytes();
    if b.is_empty() || parse_uid(u).is_ok() {
        return false;
    }
    if !(b[0].is_ascii_alphabetic() || b[0] == b'_') {
        return false;
    }
    if !b[1..]
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-')
    {
        return false;
    }
    b.len() <= 31
}

fn has_cc(s: &str) -> bool {
    s.chars().any(|c| (c as u32) < 0x20 || c as u32 == 0x7f)
}

/// Config text is read lossily; U+FFFD stands for bytes that were not UTF-8, which systemd's
/// `utf8_is_valid` rejects.
fn utf8_ok(s: &str) -> bool {
    !s.contains('\u{FFFD}')
}

/// systemd's `valid_gecos`.
pub fn valid_gecos(d: &str) -> bool {
    utf8_ok(d) && !has_cc(d) && !d.contains(':')
}

/// systemd's `path_is_normalized` for an absolute path.
fn path_is_normalized(p: &str) -> bool {
    if p.contains("//") {
        return false;
    }
    !p.split('/').any(|c| c == "." || c == "..")
}

/// systemd's `valid_home`.
pub fn valid_home(p: &str) -> bool {
    !p.is_empty()
        && utf8_ok(p)
        && !has_cc(p)
        && p.starts_with('/')
        && path_is_normalized(p)
        && !p.contains(':')
}

/// systemd's `valid_shell`.
pub fn valid_shell(p: &str) -> bool {
    valid_home(p) && !p.ends_with('/')
}

pub use crate::text::path::simplify_str as path_simplify;

/// The `strerror` text systemd prints for a failed specifier expansion.
fn spec_errno(e: &SpecError) -> &'static str {
    match e {
        SpecError::Unknown(_) => "Invalid slot",
        SpecError::TooLong => "File name too long",
        // systemd: an "uninitialized" machine-id is ENOPKG, a malformed one EUCLEAN, a missing
        // one (or a missing os-release) EUNATCH.
        SpecError::Unresolvable('m', why) if why.contains("uninitialized") => {
            "Package not installed"
        }
        SpecError::Unresolvable('m', why) if !why.starts_with("no ") => "Structure needs cleaning",
        SpecError::Unresolvable(..) => "Protocol driver not attached",
    }
}

fn expand(sv: &SystemValues, s: &str, max: usize) -> Result<String, SpecError> {
    specifier::expand(s, max, &mut |c| sv.system(c).or_else(|| sv.tmp(c)))
}

const NAME_MAX: usize = 255;
const PATH_MAX_1: usize = 4095;
const LONG_LINE_MAX: usize = 1024 * 1024;

fn empty_or_dash(w: Option<String>) -> Option<String> {
    w.filter(|s| !s.is_empty() && s != "-")
}

fn field_name(desc: bool, home: bool) -> &'static str {
    if desc {
        "GECOS"
    } else if home {
        "home directory"
    } else {
        "login shell"
    }
}

/// Why a line was refused, in systemd-sysusers' words (without `file:line: `): bad input,
/// reported as bad configuration and skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadLine(pub String);

impl std::fmt::Display for BadLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadLine {}

impl From<String> for BadLine {
    fn from(s: String) -> BadLine {
        BadLine(s)
    }
}

impl From<&str> for BadLine {
    fn from(s: &str) -> BadLine {
        BadLine(s.to_string())
    }
}

/// Parses one stripped, non-comment line.
pub fn parse_line(sv: &SystemValues, text: &str, file: &str, line: usize) -> Result<Line, BadLine> {
    let (words, rest) = extract_many_words(text.as_bytes(), WHITESPACE, Flags::UNQUOTE, 6)
        .map_err(|_| "Syntax error.".to_string())?;
    if words.len() < 2 {
        return Err("Missing action and name columns.".into());
    }
    if rest.is_some_and(|r| !r.is_empty()) {
        return Err("Trailing garbage.".into());
    }
    let mut w: Vec<Option<String>> = words
        .into_iter()
        .map(|b| Some(String::from_utf8_lossy(&b).into_owned()))
        .collect();
    w.resize(6, None);
    let action = w[0].take().unwrap_or_default();
    if action.is_empty() {
        return Err("Empty command specification.".into());
    }
    let mut locked = false;
    for c in action.chars().skip(1) {
        if c == '!' && !locked {
            locked = true;
        } else {
            return Err(format!("Unknown modifiers in command '{action}'.").into());
        }
    }
    let kind = action.as_bytes()[0];
    if !matches!(kind, b'u' | b'g' | b'm' | b'r') {
        return Err(format!(
            "Unknown command type '{}'.",
            action.chars().next().unwrap_or('?')
        )
        .into());
    }
    let name = empty_or_dash(w[1].take());
    let id = empty_or_dash(w[2].take());
    let description = empty_or_dash(w[3].take());
    let home = empty_or_dash(w[4].take());
    let shell = empty_or_dash(w[5].take());
    let spec_err = |s: &str, e: SpecError| {
        format!("Failed to replace specifiers in '{s}': {}", spec_errno(&e))
    };

    let resolved_name = match &name {
        Some(n) => {
            let r = expand(sv, n, NAME_MAX).map_err(|e| spec_err(n, e))?;
            if !valid_user_group_name(&r) {
                return Err(format!("'{r}' is not a valid user or group name.").into());
            }
            Some(r)
        }
        None => None,
    };
    let resolved_id = match &id {
        Some(i) => Some(expand(sv, i, PATH_MAX_1).map_err(|e| {
            // systemd names the name column here, not the id.
            spec_err(name.as_deref().unwrap_or("(null)"), e)
        })?),
        None => None,
    };
    let resolved_description = match &description {
        Some(d) => {
            let r = expand(sv, d, LONG_LINE_MAX).map_err(|e| spec_err(d, e))?;
            if !valid_gecos(&r) {
                return Err(format!("'{r}' is not a valid GECOS field.").into());
            }
            Some(r)
        }
        None => None,
    };
    let resolved_home = match &home {
        Some(h) => {
            let r = path_simplify(&expand(sv, h, PATH_MAX_1).map_err(|e| spec_err(h, e))?);
            if !valid_home(&r) {
                return Err(format!("'{r}' is not a valid home directory field.").into());
            }
            Some(r)
        }
        None => None,
    };
    let resolved_shell = match &shell {
        Some(s) => {
            let r = path_simplify(&expand(sv, s, PATH_MAX_1).map_err(|e| spec_err(s, e))?);
            if !valid_shell(&r) {
                return Err(format!("'{r}' is not a valid login shell field.").into());
            }
            Some(r)
        }
        None => None,
    };
    let extra = description.is_some() || home.is_some() || shell.is_some();
    let no_extra = |c: char| {
        format!(
            "Lines of type '{c}' don't take a {} field.",
            field_name(description.is_some(), home.is_some())
        )
    };
    let raw_id = id.as_deref().unwrap_or("(null)");

    match kind {
        b'r' => {
            if locked {
                return Err("Flag '!' not permitted on lines of type 'r'.".into());
            }
            if resolved_name.is_some() {
                return Err("Lines of type 'r' don't take a name field.".into());
            }
            let Some(rid) = resolved_id else {
                return Err("Lines of type 'r' require an ID range in the third field.".into());
            };
            if extra {
                return Err(no_extra('r').into());
            }
            match parse_uid_range(&rid) {
                Some((a, b)) => Ok(Line::Range(a, b)),
                None => Err(format!("Invalid UID range {rid}.").into()),
            }
        }
        b'm' => {
            let Some(user) = resolved_name else {
                return Err("Lines of type 'm' require a user name in the second field.".into());
            };
            if locked {
                return Err("Flag '!' not permitted on lines of type 'm'.".into());
            }
            let Some(group) = resolved_id else {
                return Err("Lines of type 'm' require a group name in the third field.".into());
            };
            if !valid_user_group_name(&group) {
                return Err(format!("'{group}' is not a valid user or group name.").into());
            }
            if extra {
                return Err(no_extra('m').into());
            }
            Ok(Line::Member { user, group })
        }
        b'u' => {
            let Some(uname) = resolved_name else {
                return Err("Lines of type 'u' require a user name in the second field.".into());
            };
            let mut it = Item {
                is_user: true,
                name: uname,
                origin: Some((file.to_string(), line)),
                ..Item::default()
            };
            if let Some(rid) = resolved_id {
                if rid.starts_with('/') {
                    it.uid_path = Some(path_simplify(&rid));
                } else {
                    let mut uid_part = rid.clone();
                    if let Some((u, g)) = rid.split_once(':') {
                        match parse_uid(g) {
                            Ok(gid) => {
                                it.gid = gid;
                                it.gid_set = true;
                                it.id_set_strict = true;
                            }
                            Err(e) => {
                                if valid_user_group_name(g) {
                                    it.group_name = Some(g.to_string());
                                } else {
                                    return Err(
                                        format!("Failed to parse GID: '{raw_id}': {e}").into()
                                    );
                                }
                            }
                        }
                        uid_part = u.to_string();
                    }
                    if uid_part != "-" {
                        it.uid = parse_uid(&uid_part)
                            .map_err(|e| format!("Failed to parse UID: '{raw_id}': {e}"))?;
                        it.uid_set = true;
                    }
                }
            }
            it.description = resolved_description;
            it.home = resolved_home;
            it.shell = resolved_shell;
            it.locked = locked;
            Ok(Line::Item(Kind::User, it))
        }
        _ => {
            let Some(gname) = resolved_name else {
                return Err("Lines of type 'g' require a user name in the second field.".into());
            };
            if locked {
                return Err("Flag '!' not permitted on lines of type 'g'.".into());
            }
            if extra {
                return Err(no_extra('g').into());
            }
            let mut it = Item {
                is_user: false,
                name: gname,
                origin: Some((file.to_string(), line)),
                ..Item::default()
            };
            if let Some(rid) = resolved_id {
                if rid.starts_with('/') {
                    it.gid_path = Some(path_simplify(&rid));
                } else {
                    it.gid = parse_uid(&rid)
                        .map_err(|e| format!("Failed to parse GID: '{raw_id}': {e}"))?;
                    it.gid_set = true;
                }
            }
            Ok(Line::Item(Kind::Group, it))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids() {
        assert_eq!(parse_uid("0"), Ok(0));
        assert_eq!(parse_uid("999"), Ok(999));
        assert_eq!(parse_uid("01"), Err(EINVAL));
        assert_eq!(parse_uid("+1"), Err(EINVAL));
        assert_eq!(parse_uid("9999999999"), Err(ERANGE));
        assert_eq!(parse_uid("65535"), Err(ENXIO));
        assert_eq!(parse_uid("4294967295"), Err(ENXIO));
        assert_eq!(parse_uid("1x"), Err(EINVAL));
        assert_eq!(parse_uid_range("5-3"), None);
        assert_eq!(parse_uid_range("3-5"), Some((3, 5)));
        assert_eq!(parse_uid_range("7"), Some((7, 7)));
        assert_eq!(parse_uid_range("7-"), None);
    }

    #[test]
    fn names_and_paths() {
        assert!(valid_user_group_name("_foo-1"));
        assert!(!valid_user_group_name("1foo"));
        assert!(!valid_user_group_name("123"));
        assert!(!valid_user_group_name("a.b"));
        assert!(!valid_user_group_name(&"a".repeat(32)));
        assert_eq!(path_simplify("//a/./b//"), "/a/b");
        assert_eq!(path_simplify("/"), "/");
        assert!(!valid_home("/a/../b"));
        assert!(!valid_shell("/bin/"));
        assert!(valid_shell("/bin/sh"));
        assert!(!valid_gecos("a\u{FFFD}b"));
        assert!(!valid_gecos("a\tb"));
        assert!(valid_gecos("Jürgen"));
    }
}
