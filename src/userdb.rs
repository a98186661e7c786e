//! The target root's user and group database (`/etc/passwd`, `/etc/group`), parsed without
//! NSS: owners in the target are always resolved against the target, never against the host.
//! Parsing is pure; [`UserDb::load`] is the observe step.

use std::io;
use std::path::Path;

use crate::fs::Root;

/// One `/etc/passwd` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub gecos: String,
    pub home: String,
    pub shell: String,
}

/// One `/etc/group` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// Users and groups of a root, in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserDb {
    pub users: Vec<User>,
    pub groups: Vec<Group>,
}

/// Parses passwd lines; NIS (`+`/`-`) lines, comments and malformed lines are skipped.
pub fn parse_passwd(text: &str) -> Vec<User> {
    text.lines()
        .filter_map(|l| {
            if l.starts_with(['+', '-', '#']) {
                return None;
            }
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 7 || f[0].is_empty() {
                return None;
            }
            Some(User {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                gecos: f[4].to_string(),
                home: f[5].to_string(),
                shell: f[6].to_string(),
            })
        })
        .collect()
}

/// Parses group lines; NIS lines, comments and malformed lines are skipped.
pub fn parse_group(text: &str) -> Vec<Group> {
    text.lines()
        .filter_map(|l| {
            if l.starts_with(['+', '-', '#']) {
                return None;
            }
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 || f[0].is_empty() {
                return None;
            }
            Some(Group {
                name: f[0].to_string(),
                gid: f[2].parse().ok()?,
                members: f[3]
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::to_string)
                    .collect(),
            })
        })
        .collect()
}

impl UserDb {
    pub fn parse(passwd: &str, group: &str) -> UserDb {
        UserDb {
            users: parse_passwd(passwd),
            groups: parse_group(group),
        }
    }

    /// Reads the root's `/etc/passwd` and `/etc/group` (missing files are empty).
    pub fn load(root: &Root) -> io::Result<UserDb> {
        let passwd = root
            .read_optional_max(Path::new("/etc/passwd"), crate::fs::limits::ACCOUNTS)?
            .unwrap_or_default();
        let group = root
            .read_optional_max(Path::new("/etc/group"), crate::fs::limits::ACCOUNTS)?
            .unwrap_or_default();
        Ok(UserDb::parse(&passwd, &group))
    }

    pub fn user_by_name(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }
    pub fn user_by_uid(&self, uid: u32) -> Option<&User> {
        self.users.iter().find(|u| u.uid == uid)
    }
    pub fn group_by_name(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }
    pub fn group_by_gid(&self, gid: u32) -> Option<&Group> {
        self.groups.iter().find(|g| g.gid == gid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn parse_db() {
        let db = UserDb::parse(
            "root:x:0:0:root:/root:/bin/bash\n+nis\nbad\nfoo:x:1000:100::/home/foo:/bin/sh\n",
            "root:x:0:\nusers:x:100:foo,bar\n-nis\n",
        );
        assert_eq!(db.users.len(), 2);
        assert_eq!(db.user_by_name("foo").map(|u| u.uid), Some(1000));
        assert_eq!(db.user_by_uid(0).map(|u| u.name.as_str()), Some("root"));
        assert_eq!(db.group_by_gid(100).map(|g| g.members.len()), Some(2));
        assert!(db.group_by_name("nis").is_none());
    }
}
