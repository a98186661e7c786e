//! Parsing of tmpfiles.d lines into [`Item`]s (pure: text and observed values in, items and
//! diagnostics out). Follows systemd 257's `parse_line()` step by step: the six fields are split
//! with `EXTRACT_UNQUOTE | EXTRACT_CUNESCAPE`, the rest of the line is the argument (kept
//! verbatim: quotes stay, C escapes are processed later for the types that write it), then
//! modifiers, specifiers, `/var/run` rewriting, type checks, owners, mode and age.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt as _;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::report::Diagnostic;
use crate::text::specifier::{SpecError, SystemValues};
use crate::text::word::{self, Flags};
use crate::userdb::UserDb;

use super::acl;
use super::kind::Kind;

/// Age selectors (systemd's `AgeBy`).
pub const AGE_ATIME: u8 = 1;
pub const AGE_BTIME: u8 = 2;
pub const AGE_CTIME: u8 = 4;
pub const AGE_MTIME: u8 = 8;
pub const AGE_DEFAULT_FILE: u8 = 15;
pub const AGE_DEFAULT_DIR: u8 = AGE_ATIME | AGE_BTIME | AGE_MTIME;

/// One configuration line.
#[derive(Clone, Debug, Default)]
pub struct Item {
    /// What the line does.
    pub kind: Kind,
    /// The type letter as written (`F` and `m` included): only for systemd's order of the
    /// lines of one path and for messages.
    pub letter: char,
    /// In-root absolute path (a glob for the glob types).
    pub path: PathBuf,
    /// The argument after unescaping and specifier expansion (for the types that use it).
    pub argument: Option<Vec<u8>>,
    /// `-`: a failure to create is only a notice.
    pub allow_failure: bool,
    /// `=`: what is in the way of the path or its parents is removed.
    pub try_replace: bool,
    /// `$`: removed by `--purge`.
    pub purge: bool,
    pub uid: Option<u32>,
    pub uid_only_create: bool,
    pub gid: Option<u32>,
    pub gid_only_create: bool,
    pub mode: u32,
    pub mode_set: bool,
    pub mode_only_create: bool,
    pub mask_perms: bool,
    /// Age in microseconds.
    pub age: Option<u64>,
    pub age_by_file: u8,
    pub age_by_dir: u8,
    pub keep_first_level: bool,
    /// Where the line came from.
    pub file: PathBuf,
    pub line: usize,
}

/// The kind of a known type letter with its modifiers; the payload of `c`/`b`, `t`/`T`,
/// `a`/`A` and `h`/`H` is filled in by the caller.
fn kind_of(letter: char, plus: bool, if_target_exists: bool) -> Option<Kind> {
    Some(match letter {
        'f' => Kind::CreateFile { truncate: plus },
        'F' => Kind::CreateFile { truncate: true },
        'w' => Kind::Write { append: plus },
        'd' | 'v' | 'q' | 'Q' => Kind::Dir {
            remove_contents: false,
        },
        'D' => Kind::Dir {
            remove_contents: true,
        },
        'e' => Kind::EmptyDir,
        'p' => Kind::Fifo { force: plus },
        'L' => Kind::Symlink {
            force: plus,
            if_target_exists,
        },
        'c' | 'b' => Kind::Device {
            block: letter == 'b',
            force: plus,
            dev: (0, 0),
        },
        'C' => Kind::Copy { merge: plus },
        'x' | 'X' => Kind::Ignore {
            recursive: letter == 'X',
        },
        'r' | 'R' => Kind::Remove {
            recursive: letter == 'R',
        },
        'z' | 'm' => Kind::Adjust { recursive: false },
        'Z' => Kind::Adjust { recursive: true },
        't' | 'T' => Kind::Xattr {
            recursive: letter == 'T',
            xattrs: Vec::new(),
        },
        'a' | 'A' => Kind::Acl {
            recursive: letter == 'A',
            append: plus,
            acl: None,
        },
        'h' | 'H' => Kind::Attr {
            recursive: letter == 'H',
            value: 0,
            mask: 0,
        },
        _ => return None,
    })
}

/// What parsing needs from the outside world (observed once).
pub struct ParseEnv<'a> {
    pub values: &'a SystemValues,
    pub users: &'a UserDb,
    /// `--boot`.
    pub boot: bool,
    /// `--graceful`.
    pub graceful: bool,
    /// Home directory for `%h`.
    pub home: String,
    /// Whether the copy source (in-root path) exists, not following a final symlink.
    pub source_exists: &'a dyn Fn(&Path) -> bool,
    /// `--prefix` / `--exclude-prefix` filter.
    pub include: &'a dyn Fn(&Path) -> bool,
    /// A credential's content by name (`^` lines), `None` when not passed.
    pub credential: &'a dyn Fn(&str) -> Option<Vec<u8>>,
}

/// systemd's `credential_name_valid`: a valid file name of at most 255 bytes.
fn credential_name_valid(n: &str) -> bool {
    !n.is_empty() && n.len() <= 255 && n != "." && n != ".." && !n.contains('/')
}

/// The result of parsing one line.
pub enum Parsed {
    Item(Box<Item>),
    /// Skipped for a legitimate reason (not `--boot`, unresolvable specifier, filtered out…).
    Skip,
}

fn lookup(env: &ParseEnv<'_>, c: char) -> Option<Result<String, SpecError>> {
    match c {
        'h' => Some(Ok(env.home.clone())),
        'C' => Some(Ok("/var/cache".into())),
        'L' => Some(Ok("/var/log".into())),
        'S' => Some(Ok("/var/lib".into())),
        't' => Some(Ok("/run".into())),
        _ => env
            .values
            .system(c)
            .or_else(|| env.values.creds(c))
            .or_else(|| env.values.tmp(c)),
    }
}

/// `specifier_printf` over bytes (arguments may hold any byte after unescaping).
fn expand_bytes(env: &ParseEnv<'_>, text: &[u8], max: usize) -> Result<Vec<u8>, SpecError> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let b = text[i];
        if b != b'%' {
            out.push(b);
            i += 1;
        } else if i + 1 == text.len() {
            out.push(b'%');
            i += 1;
        } else {
            let c = text[i + 1];
            i += 2;
            if c == b'%' {
                out.push(b'%');
            } else if c.is_ascii() {
                match lookup(env, c as char) {
                    Some(Ok(v)) => out.extend_from_slice(v.as_bytes()),
                    Some(Err(e)) => return Err(e),
                    None if c.is_ascii_alphanumeric() => return Err(SpecError::Unknown(c as char)),
                    None => {
                        out.push(b'%');
                        out.push(c);
                    }
                }
            } else {
                out.push(b'%');
                out.push(c);
            }
        }
        if out.len() > max {
            return Err(SpecError::TooLong);
        }
    }
    Ok(out)
}

pub use crate::text::path::simplify;

pub use crate::text::timespan::parse_sec;

/// systemd's `parse_mode`: octal, at most `07777`.
pub fn parse_mode(s: &str) -> Option<u32> {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r']);
    if t.is_empty() || !t.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    let v = u32::from_str_radix(t, 8).ok()?;
    (v <= 0o7777).then_some(v)
}

/// systemd's `parse_uid`: a decimal id other than the reserved `65535` and `4294967295`.
pub fn parse_id(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: u32 = s.parse().ok()?;
    (v != 65535 && v != u32::MAX).then_some(v)
}

fn parse_devnum(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.split_once(':')?;
    let ok = |x: &str| !x.is_empty() && x.bytes().all(|c| c.is_ascii_digit());
    if !ok(a) || !ok(b) {
        return None;
    }
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Parses `chattr`-style attributes (`[+-=]letters`). Returns (value, mask).
pub fn parse_attributes(arg: &str) -> crate::error::Result<(u32, u32)> {
    const ATTRS: &[(char, u32)] = &[
        ('A', 0x80),
        ('S', 0x8),
        ('D', 0x10000),
        ('a', 0x20),
        ('c', 0x4),
        ('d', 0x40),
        ('e', 0x80000),
        ('i', 0x10),
        ('j', 0x40000),
        ('s', 0x1),
        ('u', 0x2),
        ('t', 0x8000),
        ('T', 0x20000),
        ('C', 0x800000),
        ('P', 0x20000000),
    ];
    const ALL: u32 = 0x1
        | 0x2
        | 0x4
        | 0x8
        | 0x10
        | 0x20
        | 0x40
        | 0x80
        | 0x8000
        | 0x10000
        | 0x20000
        | 0x40000
        | 0x80000
        | 0x800000
        | 0x20000000;
    let (mode, rest) = match arg.as_bytes().first() {
        Some(b'+') => (0, &arg[1..]),
        Some(b'-') => (1, &arg[1..]),
        Some(b'=') => (2, &arg[1..]),
        _ => (0, arg),
    };
    if rest.is_empty() && mode != 2 {
        return Err(Error::msg(
            "parse attributes",
            "needs an attribute specification",
        ));
    }
    let (mut value, mut mask) = (0, 0);
    for c in rest.chars() {
        let Some(&(_, v)) = ATTRS.iter().find(|(a, _)| *a == c) else {
            return Err(Error::msg(
                "parse attributes",
                format!("unknown file attribute '{c}'"),
            ));
        };
        if mode != 1 {
            value |= v;
        }
        mask |= v;
    }
    if mode == 2 {
        mask |= ALL;
    }
    Ok((value, mask))
}

pub fn bytes_to_path(b: Vec<u8>) -> PathBuf {
    PathBuf::from(OsString::from_vec(b))
}

/// Parses one line. `Err` is a bad-config diagnostic (the line is skipped and the run ends with
/// exit 65); some problems only warn (pushed to `notes`) as in systemd.
pub fn parse_line(
    env: &ParseEnv<'_>,
    file: &Path,
    line: usize,
    text: &str,
    notes: &mut Vec<Diagnostic>,
) -> Result<Parsed, Diagnostic> {
    let bad = |m: String| Diagnostic::bad_config(file, line, m);
    let (words, rest) = word::extract_many_words(
        text.as_bytes(),
        word::WHITESPACE,
        Flags::UNQUOTE.union(Flags::CUNESCAPE),
        6,
    )
    .map_err(|e| bad(format!("Failed to parse line: {e}")))?;
    if words.len() < 2 {
        return Err(bad("Syntax error.".into()));
    }
    let field = |n: usize| -> Option<String> {
        words
            .get(n)
            .map(|w| String::from_utf8_lossy(w).into_owned())
    };
    let empty_or_dash = |s: &Option<String>| s.as_deref().is_none_or(|s| s.is_empty() || s == "-");
    let action = field(0).unwrap_or_default();
    let raw_arg: Option<Vec<u8>> = rest
        .filter(|r| !r.is_empty() && *r != b"-")
        .map(|r| r.to_vec());
    let mut chars = action.chars();
    let Some(letter) = chars.next() else {
        return Err(bad(format!("Command too short '{action}'.")));
    };
    let mut it = Item {
        letter,
        age_by_file: AGE_DEFAULT_FILE,
        age_by_dir: AGE_DEFAULT_DIR,
        file: file.to_path_buf(),
        line,
        ..Default::default()
    };
    let (mut boot, mut unbase64, mut from_cred) = (false, false, false);
    let (mut plus, mut if_target_exists) = (false, false);
    for m in chars {
        let flag = match m {
            '!' => &mut boot,
            '+' => &mut plus,
            '-' => &mut it.allow_failure,
            '=' => &mut it.try_replace,
            '~' => &mut unbase64,
            '^' => &mut from_cred,
            '$' => &mut it.purge,
            '?' => &mut if_target_exists,
            _ => return Err(bad(format!("Unknown modifiers in command: {action}"))),
        };
        if *flag {
            return Err(bad(format!("Unknown modifiers in command: {action}")));
        }
        *flag = true;
    }
    if boot && !env.boot {
        return Ok(Parsed::Skip);
    }
    let raw_path = words.get(1).cloned().unwrap_or_default();
    let path = match expand_bytes(env, &raw_path, 4095) {
        Ok(p) => p,
        Err(SpecError::Unresolvable(..)) => return Ok(Parsed::Skip),
        Err(e) => {
            return Err(bad(format!(
                "Failed to replace specifiers in '{}': {e}",
                String::from_utf8_lossy(&raw_path)
            )))
        }
    };
    let mut path = path;
    if let Some(k) = path.strip_prefix(b"/var/run/") {
        if !k.is_empty() {
            let mut n = b"/run/".to_vec();
            n.extend_from_slice(k);
            notes.push(Diagnostic::notice(
                Some(file),
                line,
                format!(
                    "Line references path below legacy directory /var/run/, updating {} → {}; please update the tmpfiles.d/ drop-in file accordingly.",
                    String::from_utf8_lossy(&path),
                    String::from_utf8_lossy(&n)
                ),
            ));
            path = n;
        }
    }
    if path.first() != Some(&b'/') {
        return Err(bad(format!(
            "Path '{}' not absolute.",
            String::from_utf8_lossy(&path)
        )));
    }
    it.path = bytes_to_path(simplify(&path));
    let arg_str = raw_arg
        .as_ref()
        .map(|a| String::from_utf8_lossy(a).into_owned());
    let no_b64 = |what: &str| Err(bad(format!("base64 decoding not supported for {what}.")));
    let unknown = || bad(format!("Unknown command type '{letter}'."));
    let Some(mut kind) = kind_of(letter, plus, if_target_exists) else {
        return Err(unknown());
    };
    match letter {
        'd' | 'D' | 'v' | 'q' | 'Q' | 'e' | 'p' | 'x' | 'X' | 'r' | 'R' | 'm' | 'z' | 'Z' => {
            if raw_arg.is_some() {
                notes.push(Diagnostic::notice(
                    Some(file),
                    line,
                    format!("{letter} lines don't take argument fields, ignoring."),
                ));
            }
        }
        'f' | 'F' => {}
        'L' => {
            if unbase64 {
                return no_b64("symlink targets");
            }
        }
        'w' => {
            if raw_arg.is_none() {
                return Err(bad("Write file requires argument.".into()));
            }
        }
        'C' => {
            if unbase64 {
                return no_b64("copy sources");
            }
        }
        'c' | 'b' => {
            if unbase64 {
                return no_b64("device node creation");
            }
            let Some(a) = &arg_str else {
                return Err(bad("Device file requires argument.".into()));
            };
            let n = parse_devnum(a)
                .ok_or_else(|| bad(format!("Can't parse device file major/minor '{a}'.")))?;
            if let Kind::Device { dev, .. } = &mut kind {
                *dev = n;
            }
        }
        't' | 'T' => {
            if unbase64 {
                return no_b64("extended attributes");
            }
            let Some(a) = &raw_arg else {
                return Err(bad("Set extended attribute requires argument.".into()));
            };
            let mut rest = Some(a.as_slice());
            let mut xattrs = Vec::new();
            loop {
                match word::extract_first_word(
                    rest,
                    word::WHITESPACE,
                    Flags::UNQUOTE.union(Flags::CUNESCAPE),
                ) {
                    Ok((Some(w), r)) => {
                        rest = r;
                        match w.iter().position(|&b| b == b'=') {
                            Some(p) if p > 0 && p + 1 < w.len() => {
                                xattrs.push((w[..p].to_vec(), w[p + 1..].to_vec()))
                            }
                            _ => notes.push(Diagnostic::notice(
                                Some(file),
                                line,
                                format!(
                                    "Malformed extended attribute found, ignoring: {}",
                                    String::from_utf8_lossy(&w)
                                ),
                            )),
                        }
                    }
                    Ok((None, _)) => break,
                    Err(e) => {
                        notes.push(Diagnostic::notice(
                            Some(file),
                            line,
                            format!("Failed to parse extended attribute, ignoring: {e}"),
                        ));
                        break;
                    }
                }
            }
            if let Kind::Xattr { xattrs: x, .. } = &mut kind {
                *x = xattrs;
            }
        }
        'a' | 'A' => {
            if unbase64 {
                return no_b64("ACLs");
            }
            let Some(a) = &arg_str else {
                return Err(bad("Set ACLs requires argument.".into()));
            };
            match acl::parse(a, !plus, env.users) {
                Ok(parsed) => {
                    if let Kind::Acl { acl, .. } = &mut kind {
                        *acl = Some(parsed);
                    }
                }
                Err(e) => notes.push(Diagnostic::notice(
                    Some(file),
                    line,
                    format!("Failed to parse ACL \"{a}\", ignoring: {}", e.reason()),
                )),
            }
        }
        'h' | 'H' => {
            if unbase64 {
                return no_b64("file attributes");
            }
            let Some(a) = &arg_str else {
                return Err(bad("Set file attribute requires argument.".into()));
            };
            let (v, m) = parse_attributes(a).map_err(|e| {
                bad(format!(
                    "Setting file attribute on '{}': {}",
                    it.path.display(),
                    e.reason()
                ))
            })?;
            if let Kind::Attr { value, mask, .. } = &mut kind {
                (*value, *mask) = (v, m);
            }
        }
        _ => return Err(unknown()),
    }
    it.kind = kind;
    if it.purge && !it.kind.purgeable() {
        return Err(bad(format!(
            "Purge flag '$' combined with line type '{letter}' which does not support purging."
        )));
    }
    if if_target_exists && letter != 'L' {
        return Err(bad(format!(
            "Modifier '?' combined with line type '{letter}' which does not support this modifier."
        )));
    }
    if !(env.include)(&it.path) {
        return Ok(Parsed::Skip);
    }
    let mut argument = raw_arg.clone();
    if !unbase64 {
        if let Some(a) = &raw_arg {
            match letter {
                'C' | 'L' | 'f' | 'F' | 'w' => {
                    let un = word::cunescape(a, false).map_err(|e| {
                        bad(format!("Failed to substitute specifiers in argument: {e}"))
                    })?;
                    match expand_bytes(env, &un, 4095) {
                        Ok(v) => argument = Some(v),
                        Err(SpecError::Unresolvable(..)) => return Ok(Parsed::Skip),
                        Err(e) => {
                            return Err(bad(format!(
                                "Failed to substitute specifiers in argument: {e}"
                            )))
                        }
                    }
                }
                't' | 'T' => {
                    let xattrs = match &mut it.kind {
                        Kind::Xattr { xattrs, .. } => &mut xattrs[..],
                        _ => &mut [],
                    };
                    for (_, v) in xattrs.iter_mut() {
                        match expand_bytes(env, v, usize::MAX) {
                            Ok(x) => *v = x,
                            Err(SpecError::Unresolvable(..)) => return Ok(Parsed::Skip),
                            Err(e) => {
                                return Err(bad(format!(
                                    "Failed to substitute specifiers in argument: {e}"
                                )))
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }
    match letter {
        'L' if argument.is_none() => {
            let mut a = b"/usr/share/factory".to_vec();
            a.extend_from_slice(&path_bytes(&it.path));
            argument = Some(a);
        }
        'C' => {
            let src = match argument.take() {
                None => {
                    let mut a = b"/usr/share/factory".to_vec();
                    a.extend_from_slice(&path_bytes(&it.path));
                    a
                }
                Some(a) if a.first() == Some(&b'/') => a,
                Some(a) => {
                    return Err(bad(format!(
                        "Source path '{}' is not absolute.",
                        String::from_utf8_lossy(&a)
                    )))
                }
            };
            let src = simplify(&src);
            if !(env.source_exists)(&bytes_to_path(src.clone())) {
                return Ok(Parsed::Skip);
            }
            argument = Some(src);
        }
        _ => {}
    }
    if from_cred {
        let name = argument
            .as_deref()
            .map(|a| String::from_utf8_lossy(a).into_owned());
        let Some(name) = name else {
            log::error!(
                "{}:{line}: Reading from credential requested, but no credential name specified.",
                file.display()
            );
            return Ok(Parsed::Skip);
        };
        if !credential_name_valid(&name) {
            log::error!(
                "{}:{line}: Credential name not valid: {name}",
                file.display()
            );
            return Ok(Parsed::Skip);
        }
        match (env.credential)(&name) {
            Some(data) => argument = Some(data),
            // Not passed: skipped silently, as systemd.
            None => return Ok(Parsed::Skip),
        }
    }
    if unbase64 {
        if let Some(a) = &argument {
            argument =
                Some(base64_decode(a).ok_or_else(|| {
                    bad("Failed to base64 decode specified argument".to_string())
                })?);
        }
    }
    it.argument = argument;
    let user = field(3);
    let group = field(4);
    let mut missing = false;
    if !empty_or_dash(&user) {
        let u = user.unwrap_or_default();
        let (name, only) = match u.strip_prefix(':') {
            Some(n) => (n.to_string(), true),
            None => (u.clone(), false),
        };
        it.uid_only_create = only;
        match resolve_user(env.users, &name) {
            Some(uid) => it.uid = Some(uid),
            None if env.graceful => missing = true,
            None => {
                return Err(bad(format!(
                    "Failed to resolve user '{name}': No such process"
                )))
            }
        }
    }
    if !empty_or_dash(&group) {
        let g = group.unwrap_or_default();
        let (name, only) = match g.strip_prefix(':') {
            Some(n) => (n.to_string(), true),
            None => (g.clone(), false),
        };
        it.gid_only_create = only;
        match resolve_group(env.users, &name) {
            Some(gid) => it.gid = Some(gid),
            None if env.graceful => missing = true,
            None => {
                return Err(bad(format!(
                    "Failed to resolve group '{name}': No such process"
                )))
            }
        }
    }
    let mode = field(2);
    if !empty_or_dash(&mode) {
        let m = mode.unwrap_or_default();
        let mut rest = m.as_str();
        loop {
            if let Some(r) = rest.strip_prefix('~') {
                it.mask_perms = true;
                rest = r;
            } else if let Some(r) = rest.strip_prefix(':') {
                it.mode_only_create = true;
                rest = r;
            } else {
                break;
            }
        }
        it.mode = parse_mode(rest).ok_or_else(|| bad(format!("Invalid mode '{m}'.")))?;
        it.mode_set = true;
    } else {
        it.mode = if matches!(it.kind, Kind::Dir { .. }) {
            0o755
        } else {
            0o644
        };
    }
    if missing && it.mode & !0o777 != 0 {
        it.mode &= 0o777;
    }
    let age = field(5);
    if !empty_or_dash(&age) {
        let a = age.unwrap_or_default();
        let mut rest = a.as_str();
        if let Some(r) = rest.strip_prefix('~') {
            it.keep_first_level = true;
            rest = r;
        }
        if let Some((by, secs)) = rest.split_once(':') {
            let (f, d) = parse_age_by(by).ok_or_else(|| bad(format!("Invalid age-by '{by}'.")))?;
            it.age_by_file = f;
            it.age_by_dir = d;
            rest = secs;
        }
        it.age = Some(parse_sec(rest).ok_or_else(|| bad(format!("Invalid age '{rest}'.")))?);
    }
    Ok(Parsed::Item(Box::new(it)))
}

fn parse_age_by(s: &str) -> Option<(u8, u8)> {
    let (mut f, mut d) = (0u8, 0u8);
    if s.is_empty() {
        return None;
    }
    for c in s.chars() {
        if " \t\n\r".contains(c) {
            continue;
        }
        let bit = match c.to_ascii_lowercase() {
            'a' => AGE_ATIME,
            'b' => AGE_BTIME,
            'c' => AGE_CTIME,
            'm' => AGE_MTIME,
            _ => return None,
        };
        if c.is_ascii_lowercase() {
            f |= bit;
        } else {
            d |= bit;
        }
    }
    if f == 0 && d == 0 {
        return None;
    }
    Some((
        if f > 0 { f } else { AGE_DEFAULT_FILE },
        if d > 0 { d } else { AGE_DEFAULT_DIR },
    ))
}

/// User name or id → uid, from the target root's database (`root` is always 0).
pub fn resolve_user(db: &UserDb, name: &str) -> Option<u32> {
    if let Some(id) = parse_id(name) {
        return Some(id);
    }
    if name == "root" {
        return Some(0);
    }
    db.user_by_name(name).map(|u| u.uid)
}

/// Group name or id → gid, from the target root's database (`root` is always 0).
pub fn resolve_group(db: &UserDb, name: &str) -> Option<u32> {
    if let Some(id) = parse_id(name) {
        return Some(id);
    }
    if name == "root" {
        return Some(0);
    }
    db.group_by_name(name).map(|g| g.gid)
}

/// The bytes of a path.
pub fn path_bytes(p: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt as _;
    p.as_os_str().as_bytes().to_vec()
}

pub use crate::text::base64::decode as base64_decode;

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> SystemValues {
        SystemValues {
            os_release: Some(
                [("ID".to_string(), "deb".to_string())]
                    .into_iter()
                    .collect(),
            ),
            machine_id: Err("none".into()),
            running: crate::text::specifier::Running {
                boot_id: Err("none".into()),
                hostname: "h".into(),
                kernel_release: "6".into(),
                ..Default::default()
            },
            has_root: true,
        }
    }

    fn one(line: &str) -> Result<Option<Item>, Diagnostic> {
        let v = values();
        let db = UserDb::parse("alice:x:1000:1000::/:/bin/sh\n", "users:x:100:\n");
        let yes = |_: &Path| true;
        let nocred = |_: &str| None;
        let env = ParseEnv {
            values: &v,
            users: &db,
            boot: false,
            graceful: false,
            home: "/root".into(),
            source_exists: &yes,
            include: &yes,
            credential: &nocred,
        };
        let mut notes = Vec::new();
        match parse_line(&env, Path::new("/x.conf"), 7, line, &mut notes) {
            Ok(Parsed::Item(i)) => Ok(Some(*i)),
            Ok(Parsed::Skip) => Ok(None),
            Err(d) => Err(d),
        }
    }

    #[test]
    fn lines() {
        let i = one("f+ /var/run/x :0640 alice :users ~m:1d \"a b\"\\n%o")
            .unwrap()
            .unwrap();
        assert_eq!(
            (i.kind, i.letter),
            (Kind::CreateFile { truncate: true }, 'f')
        );
        assert_eq!(i.path, Path::new("/run/x"));
        assert_eq!(
            (i.mode, i.mode_only_create, i.mode_set),
            (0o640, true, true)
        );
        assert_eq!(
            (i.uid, i.uid_only_create, i.gid, i.gid_only_create),
            (Some(1000), false, Some(100), true)
        );
        assert_eq!(
            (i.age, i.keep_first_level, i.age_by_file),
            (Some(86_400_000_000), true, AGE_MTIME)
        );
        assert_eq!(i.argument.as_deref(), Some(&b"\"a b\"\ndeb"[..]));
        assert!(one("f! /x").unwrap().is_none(), "! lines need --boot");
        assert!(
            one("f /%m").unwrap().is_none(),
            "unresolvable specifier skips"
        );
        assert!(one("f /%Z")
            .unwrap_err()
            .to_string()
            .starts_with("/x.conf:7: "));
        assert!(one("f!! /x").is_err());
        assert!(one("Y /x").is_err());
        assert!(one("f x").is_err());
        assert!(one("f /x - nobody").is_err());
        assert!(one("d$ /x").is_ok() && one("z$ /x").is_err());
        assert!(one("L? /x").is_ok() && one("f? /x").is_err());
        assert!(one("w /x").is_err(), "w needs an argument");
        let l = one("L /etc/x").unwrap().unwrap();
        assert_eq!(
            l.argument.as_deref(),
            Some(&b"/usr/share/factory/etc/x"[..])
        );
        let c = one("c /dev/n - - - - 1:3").unwrap().unwrap();
        assert_eq!(c.kind.device(), Some((1, 3)));
        let b = one("f~ /b - - - - aGk=").unwrap().unwrap();
        assert_eq!(b.argument.as_deref(), Some(&b"hi"[..]));
        let d = one("d /d").unwrap().unwrap();
        assert_eq!((d.mode, d.mode_set), (0o755, false));
    }

    #[test]
    fn times() {
        assert_eq!(parse_sec("10"), Some(10_000_000));
        assert_eq!(parse_sec("1d"), Some(86_400_000_000));
        assert_eq!(parse_sec("1h 30min"), Some(5_400_000_000));
        assert_eq!(parse_sec("500ms"), Some(500_000));
        assert_eq!(parse_sec("2w"), Some(2 * 604_800_000_000));
        assert_eq!(parse_sec("x"), None);
        assert_eq!(parse_sec(""), None);
    }

    #[test]
    fn modes_ids_paths() {
        assert_eq!(parse_mode("0755"), Some(0o755));
        assert_eq!(parse_mode("17777"), None);
        assert_eq!(parse_mode("8"), None);
        assert_eq!(parse_id("65535"), None);
        assert_eq!(parse_id("1000"), Some(1000));
        assert_eq!(simplify(b"//a/./b//"), b"/a/b".to_vec());
        assert_eq!(base64_decode(b"aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(parse_attributes("+iA").unwrap(), (0x90, 0x90));
        assert!(parse_attributes("+q").is_err());
        assert_eq!(parse_age_by("aB"), Some((AGE_ATIME, AGE_BTIME)));
        assert_eq!(parse_age_by("x"), None);
    }
}
