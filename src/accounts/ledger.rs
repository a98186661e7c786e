//! The UID/GID ledger: every name → ID allocation pristine made, and every ID it found in an
//! existing `passwd`/`group`, kept so that a name keeps its ID across boots with an empty `/etc`,
//! factory resets that keep `/var`, and `/usr` updates that add users, and so that an ID once
//! given to a name is never given to another name, even after that user is removed.
//!
//! The file is text, one record a line, append-only in meaning (a later line never erases an
//! earlier one):
//!
//! ```text
//! # pristine ID ledger, format 1
//! user appsvc 999
//! group appsvc 999
//! ```
//!
//! A name may have several records when its ID was changed by a pin or by the admin: the last
//! one is the name's current ID, and every ID recorded for it stays reserved for it. An ID
//! recorded for one name is never recorded for another (the first record wins; a later
//! conflicting one is reported and dropped). This module is pure: parsing and rendering; the
//! file is read and written by the caller through the root handle.

use std::collections::HashMap;
use std::fmt;

/// In-root path of the ledger.
pub const PATH: &str = "/var/lib/pristine/ids.ledger";
/// Largest ledger read (a ledger of 100,000 names is about 2.5 MB).
pub const MAX_SIZE: u64 = 16 << 20;
const HEADER: &str = "# pristine ID ledger, format 1";

/// Users or groups: two separate ID spaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Space {
    User,
    Group,
}

impl Space {
    fn word(self) -> &'static str {
        match self {
            Space::User => "user",
            Space::Group => "group",
        }
    }
}

/// An ID that belongs to another name already: never given to a second one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taken {
    /// The name the ID was recorded for first.
    pub owner: String,
}

#[derive(Clone, Debug, Default)]
struct Table {
    /// Records in order: (name, id).
    records: Vec<(String, u32)>,
    /// Name → current (last recorded) ID.
    current: HashMap<String, u32>,
    /// ID → the name it belongs to (first record wins).
    owner: HashMap<u32, String>,
}

impl Table {
    /// Adds a record; `Err` names the earlier owner when the ID belongs to another name.
    fn add(&mut self, name: &str, id: u32) -> Result<bool, Taken> {
        if let Some(o) = self.owner.get(&id) {
            if o != name {
                return Err(Taken { owner: o.clone() });
            }
            if self.current.get(name) == Some(&id) {
                return Ok(false);
            }
        }
        self.owner.entry(id).or_insert_with(|| name.to_string());
        self.current.insert(name.to_string(), id);
        self.records.push((name.to_string(), id));
        Ok(true)
    }
}

/// The ledger: a table per ID space.
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    users: Table,
    groups: Table,
    changed: bool,
}

/// A ledger line that could not be used: 1-based line number and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadLine {
    pub line: usize,
    pub message: String,
}

impl Ledger {
    fn table(&self, s: Space) -> &Table {
        match s {
            Space::User => &self.users,
            Space::Group => &self.groups,
        }
    }

    fn table_mut(&mut self, s: Space) -> &mut Table {
        match s {
            Space::User => &mut self.users,
            Space::Group => &mut self.groups,
        }
    }

    /// Parses the ledger's text. Bad lines are returned and skipped; the rest is used.
    pub fn parse(text: &str) -> (Ledger, Vec<BadLine>) {
        let mut l = Ledger::default();
        let mut bad = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let w: Vec<&str> = line.split_ascii_whitespace().collect();
            let space = match w.first() {
                Some(&"user") => Space::User,
                Some(&"group") => Space::Group,
                _ => {
                    bad.push(BadLine {
                        line: n + 1,
                        message: format!("unknown record '{line}', ignoring"),
                    });
                    continue;
                }
            };
            let (Some(name), Some(id), None) = (w.get(1), w.get(2), w.get(3)) else {
                bad.push(BadLine {
                    line: n + 1,
                    message: format!("expected '{} NAME ID', ignoring", space.word()),
                });
                continue;
            };
            let id = match id.parse::<u32>() {
                Ok(id) if id != u32::MAX && id != u32::MAX - 1 => id,
                _ => {
                    bad.push(BadLine {
                        line: n + 1,
                        message: format!("invalid ID '{id}', ignoring"),
                    });
                    continue;
                }
            };
            if let Err(Taken { owner: o }) = l.table_mut(space).add(name, id) {
                bad.push(BadLine {
                    line: n + 1,
                    message: format!(
                        "{} ID {id} of '{name}' was recorded for '{o}' before, ignoring",
                        space.word()
                    ),
                });
            }
        }
        (l, bad)
    }

    /// The current ID of `name`.
    pub fn id_of(&self, s: Space, name: &str) -> Option<u32> {
        self.table(s).current.get(name).copied()
    }

    /// The name `id` belongs to.
    pub fn owner_of(&self, s: Space, id: u32) -> Option<&str> {
        self.table(s).owner.get(&id).map(String::as_str)
    }

    /// Whether `id` may be given to `name`: it belongs to no other name.
    pub fn free_for(&self, s: Space, id: u32, name: &str) -> bool {
        self.owner_of(s, id).is_none_or(|o| o == name)
    }

    /// Records that `name` has `id`. `Err` names the other name the ID belongs to (nothing is
    /// recorded then).
    pub fn record(&mut self, s: Space, name: &str, id: u32) -> Result<(), Taken> {
        let added = self.table_mut(s).add(name, id)?;
        self.changed |= added;
        Ok(())
    }

    /// Whether records were added since parsing.
    pub fn changed(&self) -> bool {
        self.changed
    }

    pub fn is_empty(&self) -> bool {
        self.users.records.is_empty() && self.groups.records.is_empty()
    }
}

impl fmt::Display for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{HEADER}")?;
        for (s, t) in [(Space::User, &self.users), (Space::Group, &self.groups)] {
            for (name, id) in &t.records {
                writeln!(f, "{} {name} {id}", s.word())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_current_id() {
        let (l, bad) = Ledger::parse("# c\nuser a 999\ngroup a 999\nuser a 500\n\n");
        assert!(bad.is_empty());
        assert_eq!(l.id_of(Space::User, "a"), Some(500));
        assert_eq!(l.owner_of(Space::User, 999), Some("a"));
        assert!(!l.free_for(Space::User, 999, "b"));
        assert!(l.free_for(Space::User, 998, "b"));
        assert_eq!(
            l.to_string(),
            format!("{HEADER}\nuser a 999\nuser a 500\ngroup a 999\n")
        );
        let (again, _) = Ledger::parse(&l.to_string());
        assert_eq!(again.to_string(), l.to_string());
    }

    #[test]
    fn an_id_never_goes_to_a_second_name() {
        let (mut l, bad) = Ledger::parse("user a 10\nuser b 10\n");
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].line, 2);
        assert_eq!(
            l.record(Space::User, "c", 10),
            Err(Taken {
                owner: "a".to_string()
            })
        );
        assert!(!l.changed());
        assert_eq!(l.record(Space::User, "a", 10), Ok(()));
        assert!(!l.changed());
        assert_eq!(l.record(Space::Group, "c", 10), Ok(()));
        assert!(l.changed());
    }

    #[test]
    fn bad_lines_are_named_and_skipped() {
        let (l, bad) =
            Ledger::parse("user\nuser x y\nuser x 4294967295\nwho x 1\nuser x 1 2\nuser ok 7\n");
        assert_eq!(
            bad.iter().map(|b| b.line).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
        assert_eq!(l.id_of(Space::User, "ok"), Some(7));
    }
}
