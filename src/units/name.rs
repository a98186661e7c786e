//! Unit names as systemd 257 defines them (`unit-name.c`): validation, the plain / instance /
//! template classification, template and instance manipulation, and the alias rules
//! (`unit-file.c`). Pure string functions; nothing here touches a file.

/// Longest valid unit name plus one (systemd's `UNIT_NAME_MAX`).
pub const UNIT_NAME_MAX: usize = 256;

/// The unit types, by suffix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitType {
    Service,
    Socket,
    Target,
    Device,
    Mount,
    Automount,
    Swap,
    Timer,
    Path,
    Slice,
    Scope,
}

impl UnitType {
    pub fn from_suffix(s: &str) -> Option<UnitType> {
        Self::from_suffix_bytes(s.as_bytes())
    }

    fn from_suffix_bytes(s: &[u8]) -> Option<UnitType> {
        Some(match s {
            b"service" => UnitType::Service,
            b"socket" => UnitType::Socket,
            b"target" => UnitType::Target,
            b"device" => UnitType::Device,
            b"mount" => UnitType::Mount,
            b"automount" => UnitType::Automount,
            b"swap" => UnitType::Swap,
            b"timer" => UnitType::Timer,
            b"path" => UnitType::Path,
            b"slice" => UnitType::Slice,
            b"scope" => UnitType::Scope,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            UnitType::Service => "service",
            UnitType::Socket => "socket",
            UnitType::Target => "target",
            UnitType::Device => "device",
            UnitType::Mount => "mount",
            UnitType::Automount => "automount",
            UnitType::Swap => "swap",
            UnitType::Timer => "timer",
            UnitType::Path => "path",
            UnitType::Slice => "slice",
            UnitType::Scope => "scope",
        }
    }

    /// Whether `Alias=` and alias symlinks are allowed for this type.
    pub fn may_alias(self) -> bool {
        matches!(
            self,
            UnitType::Service
                | UnitType::Socket
                | UnitType::Target
                | UnitType::Device
                | UnitType::Timer
                | UnitType::Path
        )
    }

    /// Whether templates and instances exist for this type.
    pub fn may_template(self) -> bool {
        matches!(
            self,
            UnitType::Service
                | UnitType::Socket
                | UnitType::Target
                | UnitType::Timer
                | UnitType::Path
        )
    }
}

/// Which kinds of names a check accepts (systemd's `UnitNameFlags`).
pub const PLAIN: u8 = 1;
pub const INSTANCE: u8 = 2;
pub const TEMPLATE: u8 = 4;
pub const ANY: u8 = PLAIN | INSTANCE | TEMPLATE;

fn valid_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b':' | b'-' | b'_' | b'.' | b'\\')
}

/// The kind of a valid unit name (`PLAIN`, `INSTANCE` or `TEMPLATE`), or `None` if invalid.
pub fn classify(n: &str) -> Option<u8> {
    classify_typed(n).map(|(k, _)| k)
}

/// [`classify`] and the unit type in one pass (this runs for every candidate path of every
/// unit lookup, so it avoids `str` pattern searches).
fn classify_typed(n: &str) -> Option<(u8, UnitType)> {
    let b = n.as_bytes();
    if b.is_empty() || b.len() >= UNIT_NAME_MAX {
        return None;
    }
    let e = b.iter().rposition(|&c| c == b'.')?;
    if e == 0 {
        return None;
    }
    let t = UnitType::from_suffix_bytes(&b[e + 1..])?;
    let mut at = None;
    for (i, &c) in b[..e].iter().enumerate() {
        if c == b'@' {
            if at.is_none() {
                at = Some(i);
            }
        } else if !valid_char(c) {
            return None;
        }
    }
    let k = match at {
        Some(0) => return None,
        None => PLAIN,
        Some(a) if e > a + 1 => INSTANCE,
        Some(_) => TEMPLATE,
    };
    Some((k, t))
}

/// `unit_name_is_valid(n, flags)`.
pub fn is_valid(n: &str, flags: u8) -> bool {
    classify(n).is_some_and(|k| k & flags != 0)
}

/// The unit type of a valid name.
pub fn unit_type(n: &str) -> Option<UnitType> {
    classify_typed(n).map(|(_, t)| t)
}

/// `unit_instance_is_valid`: non-empty, valid characters plus `@`.
pub fn instance_is_valid(i: &str) -> bool {
    !i.is_empty() && i.bytes().all(|c| c == b'@' || valid_char(c))
}

/// The template of an instance or template name (`foo@bar.service` → `foo@.service`).
pub fn template_of(n: &str) -> Option<String> {
    if !is_valid(n, INSTANCE | TEMPLATE) {
        return None;
    }
    let at = n.find('@')?;
    let dot = n.rfind('.')?;
    Some(format!("{}{}", &n[..=at], &n[dot..]))
}

/// The instance part (`Some("")` for a template, `None` for a plain or invalid name).
pub fn instance_of(n: &str) -> Option<&str> {
    if !is_valid(n, ANY) {
        return None;
    }
    let at = n.find('@')?;
    let rest = &n[at + 1..];
    let dot = rest.rfind('.')?;
    Some(&rest[..dot])
}

/// `unit_name_replace_instance`: `foo@.service` + `a` → `foo@a.service`.
pub fn replace_instance(n: &str, instance: &str) -> Option<String> {
    if !is_valid(n, INSTANCE | TEMPLATE) || !instance_is_valid(instance) {
        return None;
    }
    let at = n.find('@')?;
    let dot = n.rfind('.')?;
    let s = format!("{}{}{}", &n[..=at], instance, &n[dot..]);
    is_valid(&s, INSTANCE).then_some(s)
}

/// `unit_name_to_prefix`: everything before the first `@`, or before the suffix.
pub fn prefix_of(n: &str) -> Option<&str> {
    if !is_valid(n, ANY) {
        return None;
    }
    let end = n.find('@').or_else(|| n.rfind('.'))?;
    Some(&n[..end])
}

/// `unit_name_to_prefix_and_instance`: the name without its suffix.
pub fn prefix_and_instance(n: &str) -> Option<&str> {
    if !is_valid(n, ANY) {
        return None;
    }
    Some(&n[..n.rfind('.')?])
}

/// Why an alias is refused (systemd's error codes, kept for messages and control flow).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AliasError {
    /// `-EINVAL`: bad source name or type.
    Invalid,
    /// `-EXDEV`: the target does not match the source.
    Mismatch,
    /// `-ELOOP`: an alias to itself.
    SelfAlias,
}

/// `unit_validate_alias_symlink_or_warn`: may the file named `src` be an alias symlink to the
/// unit named `dst`?
pub fn validate_alias(src: &str, dst: &str) -> Result<(), AliasError> {
    let src_kind = classify(src).ok_or(AliasError::Invalid)?;
    let src_type = unit_type(src).ok_or(AliasError::Invalid)?;
    if !src_type.may_alias() {
        return Err(AliasError::Invalid);
    }
    if src_kind != PLAIN && !src_type.may_template() {
        return Err(AliasError::Invalid);
    }
    if src == dst {
        return Err(AliasError::SelfAlias);
    }
    let dst_kind = classify(dst).ok_or(AliasError::Mismatch)?;
    if !(dst_kind == src_kind || (src_kind == INSTANCE && dst_kind == TEMPLATE)) {
        return Err(AliasError::Mismatch);
    }
    if dst_kind == INSTANCE && instance_of(src) != instance_of(dst) {
        return Err(AliasError::Mismatch);
    }
    if unit_type(dst) != Some(src_type) {
        return Err(AliasError::Mismatch);
    }
    Ok(())
}

/// `unit_symlink_name_compatible`: may a `.wants/`-style link named `symlink` point to the unit
/// `target`?
pub fn symlink_name_compatible(symlink: &str, target: &str, instance_propagation: bool) -> bool {
    let k1 = classify(symlink);
    if symlink == target && k1.is_some_and(|k| k & (PLAIN | INSTANCE) != 0) {
        return true;
    }
    let Some(template) = template_of(symlink) else {
        return false;
    };
    let k2 = classify(target);
    if k1 == Some(INSTANCE) && k2 == Some(TEMPLATE) && template == target {
        return true;
    }
    instance_propagation && k1 == Some(TEMPLATE) && k2 == Some(TEMPLATE) && template == target
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert_eq!(classify("foo.service"), Some(PLAIN));
        assert_eq!(classify("foo@bar.service"), Some(INSTANCE));
        assert_eq!(classify("foo@.service"), Some(TEMPLATE));
        assert_eq!(classify("foo@a@b.socket"), Some(INSTANCE));
        assert_eq!(classify("@foo.service"), None);
        assert_eq!(classify(".service"), None);
        assert_eq!(classify("foo.bar"), None);
        assert_eq!(classify("foo bar.service"), None);
        assert_eq!(classify("foo"), None);
        assert_eq!(classify(&format!("{}.service", "a".repeat(250))), None);
        assert_eq!(classify("a-b_c:d\\x2d.mount"), Some(PLAIN));
    }

    #[test]
    fn manipulation() {
        assert_eq!(
            template_of("foo@bar.service").as_deref(),
            Some("foo@.service")
        );
        assert_eq!(template_of("foo.service"), None);
        assert_eq!(instance_of("foo@bar.baz.service"), Some("bar.baz"));
        assert_eq!(instance_of("foo@.service"), Some(""));
        assert_eq!(instance_of("foo.service"), None);
        assert_eq!(
            replace_instance("foo@.service", "x").as_deref(),
            Some("foo@x.service")
        );
        assert_eq!(
            replace_instance("foo@y.service", "x").as_deref(),
            Some("foo@x.service")
        );
        assert_eq!(replace_instance("foo@.service", "a b"), None);
        assert_eq!(prefix_of("foo-bar@x.service"), Some("foo-bar"));
        assert_eq!(prefix_and_instance("foo@x.service"), Some("foo@x"));
    }

    #[test]
    fn aliases() {
        assert_eq!(validate_alias("a.service", "b.service"), Ok(()));
        assert_eq!(
            validate_alias("a.service", "a.service"),
            Err(AliasError::SelfAlias)
        );
        assert_eq!(
            validate_alias("a.service", "b.socket"),
            Err(AliasError::Mismatch)
        );
        assert_eq!(
            validate_alias("a.mount", "b.mount"),
            Err(AliasError::Invalid)
        );
        assert_eq!(validate_alias("a@x.service", "b@.service"), Ok(()));
        assert_eq!(
            validate_alias("a@x.service", "b@y.service"),
            Err(AliasError::Mismatch)
        );
        assert_eq!(
            validate_alias("a@.service", "b.service"),
            Err(AliasError::Mismatch)
        );
        assert!(symlink_name_compatible("a@x.service", "a@.service", false));
        assert!(!symlink_name_compatible("a@.service", "a@.service", false));
        assert!(symlink_name_compatible("a@.service", "a@.service", true));
    }
}
