//! POSIX ACLs for `a`/`A` lines without libacl: the text form is parsed here (named users and
//! groups resolved in the *target root's* database, where systemd 252–257 asks the host), and
//! ACLs are read and written as the kernel's `system.posix_acl_access` /
//! `system.posix_acl_default` extended attributes (version 2, little-endian entries sorted by
//! tag and id). The merge (`a+`), mask and base-entry rules follow systemd's acl-util.

use std::io;

use crate::error::Error;
use crate::userdb::UserDb;

pub const USER_OBJ: u16 = 0x01;
pub const USER: u16 = 0x02;
pub const GROUP_OBJ: u16 = 0x04;
pub const GROUP: u16 = 0x08;
pub const MASK: u16 = 0x10;
pub const OTHER: u16 = 0x20;
const UNDEFINED_ID: u32 = u32::MAX;

pub const ACCESS_XATTR: &str = "system.posix_acl_access";
pub const DEFAULT_XATTR: &str = "system.posix_acl_default";

/// One ACL entry: tag, qualifier (uid/gid for named entries), permission bits (r=4 w=2 x=1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub tag: u16,
    pub id: u32,
    pub perm: u16,
}

/// The parsed argument of an `a`/`A` line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Acl {
    pub access: Option<Vec<Entry>>,
    /// Entries that had an `X` (conditional execute), with `X` turned into `x`.
    pub access_exec: Option<Vec<Entry>>,
    pub default: Option<Vec<Entry>>,
}

fn parse_perm(s: &str) -> Option<u16> {
    let mut p = 0;
    if s.is_empty() {
        return None;
    }
    for c in s.chars() {
        match c {
            'r' => p |= 4,
            'w' => p |= 2,
            'x' => p |= 1,
            '-' => {}
            _ => return None,
        }
    }
    Some(p)
}

/// libacl's `acl_from_text` for one comma-separated list (short entries `tag:qualifier:perm`).
fn from_text(text: &[String], db: &UserDb) -> crate::error::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for e in text {
        let f: Vec<&str> = e.split(':').collect();
        if f.len() != 3 {
            return Err(Error::msg("parse ACL", format!("invalid ACL entry '{e}'")));
        }
        let perm = parse_perm(f[2])
            .ok_or_else(|| Error::msg("parse ACL", format!("invalid permissions in '{e}'")))?;
        let (tag, id) = match f[0] {
            "u" | "user" if f[1].is_empty() => (USER_OBJ, UNDEFINED_ID),
            "u" | "user" => (
                USER,
                super::parse::resolve_user(db, f[1])
                    .ok_or_else(|| Error::msg("parse ACL", format!("unknown user '{}'", f[1])))?,
            ),
            "g" | "group" if f[1].is_empty() => (GROUP_OBJ, UNDEFINED_ID),
            "g" | "group" => (
                GROUP,
                super::parse::resolve_group(db, f[1])
                    .ok_or_else(|| Error::msg("parse ACL", format!("unknown group '{}'", f[1])))?,
            ),
            "m" | "mask" if f[1].is_empty() => (MASK, UNDEFINED_ID),
            "o" | "other" if f[1].is_empty() => (OTHER, UNDEFINED_ID),
            _ => return Err(Error::msg("parse ACL", format!("invalid ACL entry '{e}'"))),
        };
        out.push(Entry { tag, id, perm });
    }
    Ok(out)
}

/// systemd's `calc_acl_mask_if_needed`: adds a mask (union of group-class entries) when there
/// are named entries and no mask yet.
pub fn calc_mask_if_needed(acl: &mut Vec<Entry>) {
    if acl.iter().any(|e| e.tag == MASK) {
        return;
    }
    if !acl.iter().any(|e| e.tag == USER || e.tag == GROUP) {
        return;
    }
    let perm = acl
        .iter()
        .filter(|e| matches!(e.tag, USER | GROUP_OBJ | GROUP))
        .fold(0, |a, e| a | e.perm);
    acl.push(Entry {
        tag: MASK,
        id: UNDEFINED_ID,
        perm,
    });
}

/// systemd's `parse_acl`.
pub fn parse(text: &str, want_mask: bool, db: &UserDb) -> crate::error::Result<Acl> {
    let (mut a, mut e, mut d) = (Vec::new(), Vec::new(), Vec::new());
    for entry in text.split(',') {
        let mut parts: Vec<String> = entry.split(':').map(str::to_string).collect();
        let n = parts.len();
        if !(3..=4).contains(&n) {
            return Err(Error::msg("parse ACL", "Invalid argument"));
        }
        parts[n - 1] = parts[n - 1].replace('X', "x");
        if n == 4 {
            if parts[0] != "default" && parts[0] != "d" {
                return Err(Error::msg("parse ACL", "Invalid argument"));
            }
            d.push(parts[1..].join(":"));
        } else {
            let joined = parts.join(":");
            if joined != entry {
                e.push(joined);
            } else {
                a.push(joined);
            }
        }
    }
    let mut acl = Acl::default();
    if !a.is_empty() {
        let mut v = from_text(&a, db)?;
        if want_mask {
            calc_mask_if_needed(&mut v);
        }
        acl.access = Some(v);
    }
    if !e.is_empty() {
        acl.access_exec = Some(from_text(&e, db)?);
    }
    if !d.is_empty() {
        let mut v = from_text(&d, db)?;
        if want_mask {
            calc_mask_if_needed(&mut v);
        }
        acl.default = Some(v);
    }
    Ok(acl)
}

/// The ACL a mode stands for (`acl_from_mode`).
pub fn from_mode(mode: u32) -> Vec<Entry> {
    vec![
        Entry {
            tag: USER_OBJ,
            id: UNDEFINED_ID,
            perm: ((mode >> 6) & 7) as u16,
        },
        Entry {
            tag: GROUP_OBJ,
            id: UNDEFINED_ID,
            perm: ((mode >> 3) & 7) as u16,
        },
        Entry {
            tag: OTHER,
            id: UNDEFINED_ID,
            perm: (mode & 7) as u16,
        },
    ]
}

/// Decodes an ACL xattr value.
pub fn decode(b: &[u8]) -> io::Result<Vec<Entry>> {
    if b.len() < 4 || (b.len() - 4) % 8 != 0 || b[..4] != [2, 0, 0, 0] {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "malformed ACL xattr",
        ));
    }
    Ok(b[4..]
        .chunks(8)
        .map(|c| Entry {
            tag: u16::from_le_bytes([c[0], c[1]]),
            perm: u16::from_le_bytes([c[2], c[3]]),
            id: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect())
}

/// Encodes an ACL as the kernel's xattr value (entries sorted as the kernel requires).
pub fn encode(acl: &[Entry]) -> Vec<u8> {
    let mut v = acl.to_vec();
    v.sort_by_key(|e| {
        (
            e.tag,
            if matches!(e.tag, USER | GROUP) {
                e.id
            } else {
                0
            },
        )
    });
    let mut out = vec![2, 0, 0, 0];
    for e in v {
        out.extend_from_slice(&e.tag.to_le_bytes());
        out.extend_from_slice(&e.perm.to_le_bytes());
        let id = if matches!(e.tag, USER | GROUP) {
            e.id
        } else {
            UNDEFINED_ID
        };
        out.extend_from_slice(&id.to_le_bytes());
    }
    out
}

fn same_slot(a: &Entry, b: &Entry) -> bool {
    a.tag == b.tag && (!matches!(a.tag, USER | GROUP) || a.id == b.id)
}

/// `acls_for_file`: `applied` (what the file has) with `acl`'s entries replacing or added.
pub fn merge(applied: &mut Vec<Entry>, acl: &[Entry]) {
    for e in acl {
        match applied.iter_mut().find(|x| same_slot(x, e)) {
            Some(x) => *x = *e,
            None => applied.push(*e),
        }
    }
}

/// `add_base_acls_if_needed`: the owner, group and other entries from `mode` where missing.
pub fn add_base_if_needed(acl: &mut Vec<Entry>, mode: u32) {
    for base in from_mode(mode) {
        if !acl.iter().any(|e| e.tag == base.tag) {
            acl.push(base);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_encode() {
        let db = UserDb::parse("foo:x:1000:1000::/:/bin/sh\n", "bar:x:2000:\n");
        let acl = parse("u:foo:rwx,g:bar:r-X,d:u::rw,o::r", true, &db).unwrap();
        let a = acl.access.unwrap();
        assert!(a.contains(&Entry {
            tag: USER,
            id: 1000,
            perm: 7
        }));
        assert!(a.iter().any(|e| e.tag == MASK && e.perm == 7));
        assert_eq!(
            acl.access_exec.unwrap(),
            vec![Entry {
                tag: GROUP,
                id: 2000,
                perm: 5
            }]
        );
        assert_eq!(acl.default.unwrap().len(), 1);
        assert!(parse("u:nobody-here:rwx", true, &db).is_err());
        assert!(parse("x:y", true, &db).is_err());
        let enc = encode(&from_mode(0o754));
        assert_eq!(decode(&enc).unwrap(), from_mode(0o754));
    }
}
