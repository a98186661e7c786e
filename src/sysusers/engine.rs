//! Allocation and composition (pure): the parsed configuration plus a snapshot of the account
//! files in, the decisions and the new file contents out. Follows systemd-sysusers 257's
//! `process_item`/`add_group`/`add_user` and `write_temporary_*` step by step, including the
//! order of every check, because that order decides which IDs are handed out.

use std::collections::HashMap;

use super::db::{self, GShadow, Group, Passwd, Shadow};
use super::parse::{Item, Kind, Line};
use crate::accounts::ledger::{Ledger, Space};

/// A name-keyed map that remembers insertion order (systemd's `OrderedHashmap`).
#[derive(Clone, Debug, Default)]
pub struct Ordered<V> {
    keys: Vec<String>,
    map: HashMap<String, V>,
}

impl<V> Ordered<V> {
    pub fn get(&self, k: &str) -> Option<&V> {
        self.map.get(k)
    }
    pub fn get_mut(&mut self, k: &str) -> Option<&mut V> {
        self.map.get_mut(k)
    }
    pub fn insert(&mut self, k: String, v: V) {
        if self.map.insert(k.clone(), v).is_none() {
            self.keys.push(k);
        }
    }
    pub fn keys(&self) -> &[String] {
        &self.keys
    }
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Everything the configuration asked for.
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub items: Vec<Item>,
    /// User name → index into `items`.
    pub users: Ordered<usize>,
    /// Group name → index into `items`.
    pub groups: Ordered<usize>,
    /// Group → members, from `m` lines.
    pub members: Ordered<Vec<String>>,
    /// Coalesced ranges from `r` lines (inclusive bounds), sorted.
    pub ranges: Vec<(u32, u32)>,
}

/// Outcome of adding one parsed line.
pub enum Added {
    Ok,
    /// A duplicate that differs from the first definition (the first wins): the warning text.
    Conflict(String),
}

impl Config {
    /// Adds a parsed line. `same_shell` decides whether two shell paths name the same file.
    pub fn add(&mut self, line: Line, same_shell: &dyn Fn(&str, &str) -> bool) -> Added {
        match line {
            Line::Range(a, b) => {
                self.ranges.push((a, b));
                self.ranges.sort();
                let mut merged: Vec<(u32, u32)> = Vec::new();
                for (s, e) in self.ranges.drain(..) {
                    match merged.last_mut() {
                        Some(last) if u64::from(s) <= u64::from(last.1) + 1 => {
                            last.1 = last.1.max(e)
                        }
                        _ => merged.push((s, e)),
                    }
                }
                self.ranges = merged;
                Added::Ok
            }
            Line::Member { user, group } => {
                match self.members.get_mut(&group) {
                    Some(l) => {
                        if !l.contains(&user) {
                            l.push(user)
                        }
                    }
                    None => self.members.insert(group, vec![user]),
                }
                Added::Ok
            }
            Line::Item(kind, item) => {
                let map = match kind {
                    Kind::User => &self.users,
                    Kind::Group => &self.groups,
                };
                if let Some(&ex) = map.get(&item.name) {
                    let existing = &self.items[ex];
                    if !equivalent(&item, existing, same_shell) {
                        let what = if item.is_user { "user" } else { "group" };
                        return Added::Conflict(match &existing.origin {
                            Some((f, l)) => format!(
                                "Conflict with earlier configuration for {what} '{}' in {f}:{l}, ignoring line.",
                                item.name
                            ),
                            None => format!(
                                "Conflict with earlier configuration for {what} '{}', ignoring line.",
                                item.name
                            ),
                        });
                    }
                    return Added::Ok;
                }
                let idx = self.items.len();
                let name = item.name.clone();
                self.items.push(item);
                match kind {
                    Kind::User => self.users.insert(name, idx),
                    Kind::Group => self.groups.insert(name, idx),
                }
                Added::Ok
            }
        }
    }

    /// systemd's `add_implicit`: users and groups named only by `m` lines.
    pub fn add_implicit(&mut self) {
        let groups: Vec<String> = self.members.keys().to_vec();
        for g in groups {
            let members = self.members.get(&g).cloned().unwrap_or_default();
            for m in members {
                if self.users.get(&m).is_none() {
                    let idx = self.items.len();
                    self.items.push(Item {
                        is_user: true,
                        name: m.clone(),
                        ..Item::default()
                    });
                    self.users.insert(m, idx);
                }
            }
            if self.users.get(&g).is_none() && self.groups.get(&g).is_none() {
                let idx = self.items.len();
                self.items.push(Item {
                    is_user: false,
                    name: g.clone(),
                    ..Item::default()
                });
                self.groups.insert(g, idx);
            }
        }
    }
}

/// The nologin shell path of this build (Debian: `/usr/sbin/nologin`).
pub const NOLOGIN: &str = "/usr/sbin/nologin";

fn is_nologin_shell(s: &str) -> bool {
    matches!(
        s,
        "/bin/nologin"
            | "/sbin/nologin"
            | "/usr/bin/nologin"
            | "/usr/sbin/nologin"
            | "/bin/false"
            | "/usr/bin/false"
            | "/bin/true"
            | "/usr/bin/true"
    )
}

/// The shell systemd picks for a user item when the line gives none.
pub fn pick_shell(i: &Item, root_shell: &str) -> String {
    match &i.shell {
        Some(s) => s.clone(),
        None if i.uid_set && i.uid == 0 => root_shell.to_string(),
        None => NOLOGIN.to_string(),
    }
}

fn equivalent(a: &Item, b: &Item, same_shell: &dyn Fn(&str, &str) -> bool) -> bool {
    if a.is_user != b.is_user
        || a.name != b.name
        || a.uid_path != b.uid_path
        || a.gid_path != b.gid_path
        || a.description != b.description
        || a.uid_set != b.uid_set
        || (a.uid_set && a.uid != b.uid)
        || a.gid_set != b.gid_set
        || (a.gid_set && a.gid != b.gid)
        || a.home != b.home
    {
        return false;
    }
    if !a.is_user {
        return true;
    }
    // pick_shell's root default is the same for both sides when both have uid 0.
    let sa = pick_shell(a, "/bin/sh");
    let sb = pick_shell(b, "/bin/sh");
    sa == sb || (is_nologin_shell(&sa) && is_nologin_shell(&sb)) || same_shell(&sa, &sb)
}

/// What the allocation reads: the existing databases and a few facts about the root.
pub struct Snapshot<'a> {
    pub passwd: Option<&'a [u8]>,
    pub group: Option<&'a [u8]>,
    pub shadow: Option<&'a [u8]>,
    pub gshadow: Option<&'a [u8]>,
    /// `stat` of an in-root path (following symlinks): `(uid, gid)`.
    pub owner: &'a dyn Fn(&str) -> Option<(u32, u32)>,
    /// IDs given out before (empty: allocation exactly as systemd-sysusers').
    pub ledger: &'a Ledger,
}

/// A message from allocation: `Err` lines are errors (bad configuration), `Ok` are info.
pub type Log = Vec<Result<String, Refusal>>;

/// Why an entry was not allocated or the account files could not be composed. Prints in
/// systemd-sysusers' words (the differential tests pin them).
#[derive(Debug)]
pub enum Refusal {
    /// No free ID left in the range for `name` (`user`: a UID, else a GID).
    NoFreeId { user: bool, name: String },
    /// The user `name` with `uid`/`gid` is requested twice or conflicts with another user.
    DuplicateUser { name: String, uid: u32, gid: u32 },
    /// The group `name` with `gid` is requested twice or conflicts with another group.
    DuplicateGroup { name: String, gid: u32 },
    /// A strict `g name GID` whose GID is free: systemd leaves creating it to the admin.
    CreateGid { name: String, gid: u32 },
    /// The primary group `group` of a user does not exist.
    NoGroup { group: String },
    /// An entry to add is already in `file` (`user`: passwd, else group).
    Exists {
        file: String,
        user: bool,
        name: String,
    },
    /// An ID to give out is already used in `file`.
    Collision { file: String, user: bool, id: u32 },
    /// An entry could not be written to the temporary copy of `file` (a field that cannot be
    /// stored: systemd's `EINVAL`).
    Unwritable {
        new: bool,
        user: bool,
        name: String,
        file: &'static str,
    },
    /// The password credential could not be used.
    Password(crate::error::Error),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = |user: bool| if user { "user" } else { "group" };
        match self {
            Refusal::NoFreeId { user, name } => {
                let id = if *user { "user" } else { "group" };
                write!(f, "No free {id} ID available for {name}.")
            }
            Refusal::DuplicateUser { name, uid, gid } => write!(
                f,
                "Requested user {name} with UID {uid} and gid{gid} to be created is duplicated or conflicts with another user."
            ),
            Refusal::DuplicateGroup { name, gid } => write!(
                f,
                "Requested group {name} with GID {gid} to be created is duplicated or conflicts with another user."
            ),
            Refusal::CreateGid { name, gid } => {
                write!(f, "Failed to create {name}: please create GID {gid}")
            }
            Refusal::NoGroup { group } => write!(f, "Group {group} not found."),
            Refusal::Exists { file, user, name } => {
                let k = if *user { "User" } else { "Group" };
                write!(f, "{file}: {k} \"{name}\" already exists.")
            }
            Refusal::Collision { file, user, id } => {
                let k = if *user { "UID" } else { "GID" };
                write!(f, "{file}: Detected collision for {k} {id}.")
            }
            Refusal::Unwritable {
                new,
                user,
                name,
                file,
            } => {
                let age = if *new { "new" } else { "existing" };
                write!(
                    f,
                    "Failed to add {age} {} \"{name}\" to temporary {file} file: Invalid argument",
                    kind(*user)
                )
            }
            Refusal::Password(e) => write!(f, "{e}"),
        }
    }
}

struct Ctx<'c> {
    cfg: &'c mut Config,
    todo_uids: Vec<(u32, usize)>,
    todo_gids: Vec<(u32, usize)>,
    by_uid: HashMap<u32, String>,
    by_username: HashMap<String, u32>,
    by_gid: HashMap<u32, String>,
    by_groupname: HashMap<String, u32>,
    search_uid: u32,
    ranges: Vec<(u32, u32)>,
    owner: &'c dyn Fn(&str) -> Option<(u32, u32)>,
    ledger: &'c Ledger,
    log: Log,
    warnings: Vec<String>,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Ctx<'_> {
    fn todo_uid(&self, uid: u32) -> Option<usize> {
        self.todo_uids.iter().find(|(u, _)| *u == uid).map(|x| x.1)
    }
    fn todo_gid(&self, gid: u32) -> Option<usize> {
        self.todo_gids.iter().find(|(g, _)| *g == gid).map(|x| x.1)
    }

    fn range_contains(&self, id: u32) -> bool {
        self.ranges.iter().any(|&(a, b)| a <= id && id <= b)
    }

    /// Whether the ledger lets `name` have `id` in `space`: the ID belongs to no other name,
    /// and (like systemd's uid/gid pairing) in the other space to no other name either.
    fn ledger_ok(&self, space: Space, id: u32, name: &str) -> bool {
        let other = match space {
            Space::User => Space::Group,
            Space::Group => Space::User,
        };
        self.ledger.free_for(space, id, name) && self.ledger.free_for(other, id, name)
    }

    /// The ledger's ID for `name` when it is still usable, else `None`. A pinned or
    /// path-derived ID that differs from the ledger is reported by the caller.
    fn ledger_id(&self, space: Space, name: &str) -> Option<u32> {
        let id = self.ledger.id_of(space, name)?;
        let ok = match space {
            Space::User => self.uid_is_ok(id, name, false),
            Space::Group => self.gid_is_ok(id, name, false),
        };
        if !ok {
            return None;
        }
        Some(id)
    }

    /// Reports a chosen ID that differs from the ledger's for the same name.
    fn check_against_ledger(&mut self, space: Space, name: &str, id: u32) {
        if let Some(l) = self.ledger.id_of(space, name) {
            if l != id {
                let what = match space {
                    Space::User => "user",
                    Space::Group => "group",
                };
                self.warnings.push(format!(
                    "{what} {name}: ID {id} differs from the ID {l} recorded in the ledger; files owned by {l} may belong to {name}."
                ));
            }
        }
    }

    fn next_lower(&mut self) -> bool {
        if self.search_uid == 0 {
            return false;
        }
        let candidate = self.search_uid - 1;
        let mut closest = None;
        for &(a, b) in &self.ranges {
            if candidate >= a && candidate <= b {
                self.search_uid = candidate;
                return true;
            }
            if b < candidate {
                closest = Some(b);
            }
        }
        match closest {
            Some(c) => {
                self.search_uid = c;
                true
            }
            None => false,
        }
    }

    fn uid_is_ok(&self, uid: u32, name: &str, check_with_gid: bool) -> bool {
        if self.todo_uid(uid).is_some() {
            return false;
        }
        if check_with_gid {
            if let Some(i) = self.todo_gid(uid) {
                if self.cfg.items[i].name != name {
                    return false;
                }
            }
        }
        if self.by_uid.contains_key(&uid) {
            return false;
        }
        if check_with_gid {
            if let Some(n) = self.by_gid.get(&uid) {
                if n != name {
                    return false;
                }
            }
        }
        true
    }

    fn gid_is_ok(&self, gid: u32, name: &str, check_with_uid: bool) -> bool {
        if self.todo_gid(gid).is_some() {
            return false;
        }
        if check_with_uid {
            if let Some(i) = self.todo_uid(gid) {
                if self.cfg.items[i].name != name {
                    return false;
                }
            }
        }
        if self.by_gid.contains_key(&gid) {
            return false;
        }
        if check_with_uid {
            if let Some(n) = self.by_uid.get(&gid) {
                if n != name {
                    return false;
                }
            }
        }
        true
    }

    /// systemd's `read_id_from_file`.
    fn read_id_from_file(&self, i: usize, want_uid: bool) -> Option<u32> {
        let it = &self.cfg.items[i];
        let st = |p: &Option<String>| p.as_deref().and_then(|p| (self.owner)(p));
        if want_uid {
            if let Some((u, _)) = st(&it.uid_path) {
                return Some(u);
            }
            st(&it.gid_path).map(|(_, g)| g)
        } else {
            if let Some((_, g)) = st(&it.gid_path) {
                return Some(g);
            }
            st(&it.uid_path).map(|(_, g)| g)
        }
    }

    fn add_user(&mut self, i: usize) -> Result<(), Refusal> {
        let name = self.cfg.items[i].name.clone();
        if let Some(&uid) = self.by_username.get(&name) {
            let it = &mut self.cfg.items[i];
            it.uid = uid;
            it.uid_set = true;
            return Ok(());
        }
        let it = &self.cfg.items[i];
        if it.uid_set && !self.uid_is_ok(it.uid, &name, !it.id_set_strict) {
            self.log.push(Ok(format!(
                "Suggested user ID {} for {name} already used.",
                it.uid
            )));
            self.cfg.items[i].uid_set = false;
        }
        if !self.cfg.items[i].uid_set {
            if let Some(c) = self.read_id_from_file(i, true) {
                if c != 0 && self.range_contains(c) && self.uid_is_ok(c, &name, true) {
                    let it = &mut self.cfg.items[i];
                    it.uid = c;
                    it.uid_set = true;
                }
            }
        }
        if !self.cfg.items[i].uid_set {
            if let Some(l) = self.ledger_id(Space::User, &name) {
                let it = &mut self.cfg.items[i];
                it.uid = l;
                it.uid_set = true;
            }
        }
        let it = &self.cfg.items[i];
        if !it.uid_set
            && it.gid_set
            && self.uid_is_ok(it.gid, &name, true)
            && self.ledger_ok(Space::User, it.gid, &name)
        {
            let it = &mut self.cfg.items[i];
            it.uid = it.gid;
            it.uid_set = true;
        }
        if !self.cfg.items[i].uid_set {
            loop {
                if !self.next_lower() {
                    return Err(Refusal::NoFreeId { user: true, name });
                }
                if self.uid_is_ok(self.search_uid, &name, true)
                    && self.ledger_ok(Space::User, self.search_uid, &name)
                {
                    break;
                }
            }
            let it = &mut self.cfg.items[i];
            it.uid_set = true;
            it.uid = self.search_uid;
        }
        let it = &self.cfg.items[i];
        if self.todo_uid(it.uid).is_some() {
            return Err(Refusal::DuplicateUser {
                name,
                uid: it.uid,
                gid: it.gid,
            });
        }
        let uid = it.uid;
        self.check_against_ledger(Space::User, &name, uid);
        let it = &self.cfg.items[i];
        self.todo_uids.push((it.uid, i));
        self.log.push(Ok(format!(
            "Creating user '{name}' ({}) with UID {} and GID {}.",
            it.description.as_deref().unwrap_or("n/a"),
            it.uid,
            it.gid
        )));
        self.cfg.items[i].todo_user = true;
        Ok(())
    }

    fn add_group(&mut self, i: usize) -> Result<(), Refusal> {
        let name = self.cfg.items[i].name.clone();
        if let Some(&gid) = self.by_groupname.get(&name) {
            let it = &mut self.cfg.items[i];
            it.gid = gid;
            it.gid_set = true;
            return Ok(());
        }
        let it = &self.cfg.items[i];
        if it.gid_set {
            let ok = self.gid_is_ok(it.gid, &name, false);
            if it.id_set_strict {
                if ok {
                    return Err(Refusal::CreateGid { name, gid: it.gid });
                }
                return Ok(());
            }
            if !ok {
                self.log.push(Ok(format!(
                    "Suggested group ID {} for {name} already used.",
                    it.gid
                )));
                self.cfg.items[i].gid_set = false;
            }
        }
        let it = &self.cfg.items[i];
        if !it.gid_set && it.uid_set && self.gid_is_ok(it.uid, &name, true) {
            let it = &mut self.cfg.items[i];
            it.gid = it.uid;
            it.gid_set = true;
        }
        if !self.cfg.items[i].gid_set {
            if let Some(c) = self.read_id_from_file(i, false) {
                if c != 0 && self.range_contains(c) && self.gid_is_ok(c, &name, true) {
                    let it = &mut self.cfg.items[i];
                    it.gid = c;
                    it.gid_set = true;
                }
            }
        }
        if !self.cfg.items[i].gid_set {
            if let Some(l) = self.ledger_id(Space::Group, &name) {
                let it = &mut self.cfg.items[i];
                it.gid = l;
                it.gid_set = true;
            }
        }
        if !self.cfg.items[i].gid_set {
            loop {
                if !self.next_lower() {
                    return Err(Refusal::NoFreeId { user: false, name });
                }
                if self.gid_is_ok(self.search_uid, &name, true)
                    && self.ledger_ok(Space::Group, self.search_uid, &name)
                {
                    break;
                }
            }
            let it = &mut self.cfg.items[i];
            it.gid_set = true;
            it.gid = self.search_uid;
        }
        let gid = self.cfg.items[i].gid;
        self.check_against_ledger(Space::Group, &name, gid);
        if self.todo_gid(gid).is_some() {
            return Err(Refusal::DuplicateGroup { name, gid });
        }
        self.todo_gids.push((gid, i));
        self.cfg.items[i].todo_group = true;
        self.log
            .push(Ok(format!("Creating group '{name}' with GID {gid}.")));
        Ok(())
    }

    fn process_user(&mut self, i: usize) -> Result<(), Refusal> {
        let it = &self.cfg.items[i];
        let mut j = None;
        if !it.gid_set {
            let key = it.group_name.clone().unwrap_or_else(|| it.name.clone());
            j = self.cfg.groups.get(&key).copied();
            if j.is_none() {
                if let Some(g) = &it.group_name {
                    j = self.cfg.users.get(g).copied();
                }
            }
        }
        match j {
            Some(j) if self.cfg.items[j].todo_group => {
                let (gs, g) = (self.cfg.items[j].gid_set, self.cfg.items[j].gid);
                let it = &mut self.cfg.items[i];
                it.gid_set = gs;
                it.gid = g;
                it.id_set_strict = true;
            }
            _ => {
                if let Some(g) = self.cfg.items[i].group_name.clone() {
                    let Some(&gid) = self.by_groupname.get(&g) else {
                        return Err(Refusal::NoGroup { group: g });
                    };
                    let it = &mut self.cfg.items[i];
                    it.gid = gid;
                    it.gid_set = true;
                    it.id_set_strict = true;
                } else {
                    self.add_group(i)?;
                }
            }
        }
        self.add_user(i)
    }
}

/// The result of allocation and composition.
#[derive(Debug, Default)]
pub struct Plan {
    /// Info and error messages in the order systemd prints them.
    pub log: Log,
    /// New contents, `None` when the file is left alone. Order: group, gshadow, passwd, shadow.
    pub group: Option<Vec<u8>>,
    pub gshadow: Option<Vec<u8>>,
    pub passwd: Option<Vec<u8>>,
    pub shadow: Option<Vec<u8>>,
    /// A fatal write error (nothing is written): the message.
    pub write_error: Option<Refusal>,
    /// Users created (name, uid, gid) and groups created (name, gid), for --dry-run.
    pub created_users: Vec<(String, u32, u32)>,
    pub created_groups: Vec<(String, u32)>,
    /// Chosen IDs that differ from the ledger's for the same name.
    pub warnings: Vec<String>,
}

/// Per-user facts composition needs from outside: credentials and the root shell.
pub struct Extras<'a> {
    /// `passwd.shell.NAME` credential.
    pub shell_cred: &'a dyn Fn(&str) -> Option<String>,
    /// The password for a new shadow entry (already hashed), or an error message.
    pub password: &'a dyn Fn(&str) -> crate::error::Result<Option<String>>,
    pub root_shell: &'a str,
    /// Days since the epoch for the shadow "last changed" field.
    pub lstchg: i64,
    /// Host paths of the four files, for messages.
    pub paths: [String; 4],
}

fn with_members(l: &[Vec<u8>], add: Option<&Vec<String>>) -> (Vec<Vec<u8>>, bool) {
    let mut out = l.to_vec();
    let mut added = false;
    if let Some(a) = add {
        for m in a {
            if !out.iter().any(|x| x == m.as_bytes()) {
                out.push(m.as_bytes().to_vec());
                added = true;
            }
        }
    }
    if added {
        out.sort();
        out.dedup();
    }
    (out, added)
}

/// Runs the allocation over `cfg` against `snap`, then composes the new files.
pub fn plan(cfg: &mut Config, snap: &Snapshot<'_>, ex: &Extras<'_>) -> Plan {
    let passwd = snap.passwd.map(db::parse_passwd).unwrap_or_default();
    let group = snap.group.map(db::parse_group).unwrap_or_default();
    let mut ctx = Ctx {
        ranges: if cfg.ranges.is_empty() {
            vec![(1, 999)]
        } else {
            cfg.ranges.clone()
        },
        cfg,
        todo_uids: Vec::new(),
        todo_gids: Vec::new(),
        by_uid: HashMap::new(),
        by_username: HashMap::new(),
        by_gid: HashMap::new(),
        by_groupname: HashMap::new(),
        search_uid: u32::MAX,
        owner: snap.owner,
        ledger: snap.ledger,
        log: Vec::new(),
        warnings: Vec::new(),
    };
    for p in &passwd {
        let n = lossy(&p.name);
        ctx.by_username.entry(n.clone()).or_insert(p.uid);
        ctx.by_uid.entry(p.uid).or_insert(n);
    }
    for g in &group {
        let n = lossy(&g.name);
        ctx.by_groupname.entry(n.clone()).or_insert(g.gid);
        ctx.by_gid.entry(g.gid).or_insert(n);
    }
    let gkeys: Vec<usize> = ctx
        .cfg
        .groups
        .keys()
        .iter()
        .filter_map(|k| ctx.cfg.groups.get(k).copied())
        .collect();
    for i in gkeys {
        if let Err(e) = ctx.add_group(i) {
            ctx.log.push(Err(e));
        }
    }
    let ukeys: Vec<usize> = ctx
        .cfg
        .users
        .keys()
        .iter()
        .filter_map(|k| ctx.cfg.users.get(k).copied())
        .collect();
    for i in ukeys {
        if let Err(e) = ctx.process_user(i) {
            ctx.log.push(Err(e));
        }
    }
    let mut plan = Plan {
        log: std::mem::take(&mut ctx.log),
        warnings: std::mem::take(&mut ctx.warnings),
        ..Plan::default()
    };
    let todo_uids = ctx.todo_uids.clone();
    let todo_gids = ctx.todo_gids.clone();
    drop(ctx);
    for &(gid, i) in &todo_gids {
        plan.created_groups.push((cfg.items[i].name.clone(), gid));
    }
    for &(uid, i) in &todo_uids {
        plan.created_users
            .push((cfg.items[i].name.clone(), uid, cfg.items[i].gid));
    }
    if let Err(e) = compose(
        cfg, snap, ex, &group, &passwd, &todo_uids, &todo_gids, &mut plan,
    ) {
        plan.write_error = Some(e);
        plan.group = None;
        plan.gshadow = None;
        plan.passwd = None;
        plan.shadow = None;
    }
    plan
}

#[allow(clippy::too_many_arguments)]
fn compose(
    cfg: &mut Config,
    snap: &Snapshot<'_>,
    ex: &Extras<'_>,
    group: &[Group],
    passwd: &[Passwd],
    todo_uids: &[(u32, usize)],
    todo_gids: &[(u32, usize)],
    plan: &mut Plan,
) -> Result<(), Refusal> {
    let [group_path, _, passwd_path, _] = &ex.paths;
    let is_todo_group = |name: &[u8]| {
        cfg.groups
            .get(&lossy(name))
            .is_some_and(|&i| cfg.items[i].todo_group)
    };
    // group
    if !todo_gids.is_empty() || !cfg.members.is_empty() {
        let mut out = Vec::new();
        let mut changed = false;
        let mut tail = group.len();
        if snap.group.is_some() {
            for (k, gr) in group.iter().enumerate() {
                if is_todo_group(&gr.name) {
                    return Err(Refusal::Exists {
                        file: group_path.clone(),
                        user: false,
                        name: lossy(&gr.name),
                    });
                }
                if todo_gids.iter().any(|(g, _)| *g == gr.gid) {
                    return Err(Refusal::Collision {
                        file: group_path.clone(),
                        user: false,
                        id: gr.gid,
                    });
                }
                if matches!(gr.name.first(), Some(b'+') | Some(b'-')) {
                    tail = k;
                    break;
                }
                let (members, added) = with_members(&gr.members, cfg.members.get(&lossy(&gr.name)));
                let g = Group {
                    members,
                    ..gr.clone()
                };
                db::put_group(&g, &mut out).map_err(|_| Refusal::Unwritable {
                    new: false,
                    user: false,
                    name: lossy(&gr.name),
                    file: "group",
                })?;
                changed |= added;
            }
        }
        for &(gid, i) in todo_gids {
            let name = &cfg.items[i].name;
            let (members, _) = with_members(&[], cfg.members.get(name));
            let g = Group {
                name: name.as_bytes().to_vec(),
                passwd: Some(b"x".to_vec()),
                gid,
                members,
            };
            db::put_group(&g, &mut out).map_err(|_| Refusal::Unwritable {
                new: true,
                user: false,
                name: name.to_string(),
                file: "group",
            })?;
            changed = true;
        }
        for gr in &group[tail..] {
            db::put_group(gr, &mut out).map_err(|_| Refusal::Unwritable {
                new: false,
                user: false,
                name: lossy(&gr.name),
                file: "group",
            })?;
        }
        if changed {
            plan.group = Some(out);
        }
    }
    // gshadow
    if !todo_gids.is_empty() || !cfg.members.is_empty() {
        let gs = snap.gshadow.map(db::parse_gshadow).unwrap_or_default();
        let mut out = Vec::new();
        let mut changed = false;
        // Deliberate difference from 257 (as systemd main): a new group that already has a
        // gshadow entry keeps that entry instead of failing the whole run.
        let mut present: Vec<Vec<u8>> = Vec::new();
        for sg in &gs {
            if is_todo_group(&sg.name) {
                present.push(sg.name.clone());
            }
            let (members, added) = with_members(&sg.members, cfg.members.get(&lossy(&sg.name)));
            let g = GShadow {
                members,
                ..sg.clone()
            };
            db::put_gshadow(&g, &mut out).map_err(|_| Refusal::Unwritable {
                new: false,
                user: false,
                name: lossy(&sg.name),
                file: "gshadow",
            })?;
            changed |= added;
        }
        for &(_, i) in todo_gids {
            let name = &cfg.items[i].name;
            if present.iter().any(|p| p == name.as_bytes()) {
                continue;
            }
            let (members, _) = with_members(&[], cfg.members.get(name));
            let g = GShadow {
                name: name.as_bytes().to_vec(),
                passwd: Some(b"!*".to_vec()),
                admins: Vec::new(),
                members,
            };
            db::put_gshadow(&g, &mut out).map_err(|_| Refusal::Unwritable {
                new: true,
                user: false,
                name: name.to_string(),
                file: "gshadow",
            })?;
            changed = true;
        }
        if changed {
            plan.gshadow = Some(out);
        }
    }
    if todo_uids.is_empty() {
        return Ok(());
    }
    // passwd
    let mut out = Vec::new();
    let mut tail = passwd.len();
    let is_todo_user = |name: &[u8]| {
        cfg.users
            .get(&lossy(name))
            .is_some_and(|&i| cfg.items[i].todo_user)
    };
    if snap.passwd.is_some() {
        for (k, pw) in passwd.iter().enumerate() {
            if is_todo_user(&pw.name) {
                return Err(Refusal::Exists {
                    file: passwd_path.clone(),
                    user: true,
                    name: lossy(&pw.name),
                });
            }
            if todo_uids.iter().any(|(u, _)| *u == pw.uid) {
                return Err(Refusal::Collision {
                    file: passwd_path.clone(),
                    user: true,
                    id: pw.uid,
                });
            }
            if matches!(pw.name.first(), Some(b'+') | Some(b'-')) {
                tail = k;
                break;
            }
            db::put_passwd(pw, &mut out).map_err(|_| Refusal::Unwritable {
                new: false,
                user: true,
                name: lossy(&pw.name),
                file: "passwd",
            })?;
        }
    }
    for &(uid, i) in todo_uids {
        let it = &cfg.items[i];
        let shell = (ex.shell_cred)(&it.name).unwrap_or_else(|| pick_shell(it, ex.root_shell));
        let p = Passwd {
            name: it.name.as_bytes().to_vec(),
            passwd: Some(b"x".to_vec()),
            uid,
            gid: it.gid,
            gecos: Some(it.description.clone().unwrap_or_default().into_bytes()),
            dir: Some(it.home.clone().unwrap_or_else(|| "/".into()).into_bytes()),
            shell: Some(shell.into_bytes()),
        };
        db::put_passwd(&p, &mut out).map_err(|_| Refusal::Unwritable {
            new: true,
            user: true,
            name: it.name.clone(),
            file: "passwd",
        })?;
    }
    for pw in &passwd[tail..] {
        db::put_passwd(pw, &mut out).map_err(|_| Refusal::Unwritable {
            new: false,
            user: true,
            name: lossy(&pw.name),
            file: "passwd",
        })?;
    }
    plan.passwd = Some(out);
    // shadow
    let sh = snap.shadow.map(db::parse_shadow).unwrap_or_default();
    let mut remaining: Vec<(u32, usize)> = todo_uids.to_vec();
    let mut out = Vec::new();
    let mut tail = sh.len();
    for (k, sp) in sh.iter().enumerate() {
        let mut sp = sp.clone();
        if let Some(&i) = cfg.users.get(&lossy(&sp.name)) {
            if cfg.items[i].todo_user {
                sp.lstchg = ex.lstchg;
                cfg.items[i].todo_user = false;
                let uid = cfg.items[i].uid;
                remaining.retain(|(u, _)| *u != uid);
            }
        }
        if matches!(sp.name.first(), Some(b'+') | Some(b'-')) {
            tail = k;
            break;
        }
        db::put_shadow(&sp, &mut out).map_err(|_| Refusal::Unwritable {
            new: false,
            user: true,
            name: lossy(&sp.name),
            file: "shadow",
        })?;
    }
    for &(_, i) in &remaining {
        let it = &cfg.items[i];
        let pw = match (ex.password)(&it.name).map_err(Refusal::Password)? {
            Some(p) => p,
            None if it.name == "root" => "!unprovisioned".to_string(),
            None => "!*".to_string(),
        };
        let sp = Shadow {
            name: it.name.as_bytes().to_vec(),
            pwdp: Some(pw.into_bytes()),
            lstchg: ex.lstchg,
            min: -1,
            max: -1,
            warn: -1,
            inact: -1,
            expire: if it.locked { 1 } else { -1 },
            flag: u64::MAX,
        };
        db::put_shadow(&sp, &mut out).map_err(|_| Refusal::Unwritable {
            new: true,
            user: true,
            name: it.name.clone(),
            file: "shadow",
        })?;
    }
    for sp in &sh[tail..] {
        db::put_shadow(sp, &mut out).map_err(|_| Refusal::Unwritable {
            new: false,
            user: true,
            name: lossy(&sp.name),
            file: "shadow",
        })?;
    }
    plan.shadow = Some(out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::specifier::SystemValues;

    fn sv() -> SystemValues {
        SystemValues {
            os_release: None,
            machine_id: Err("no /etc/machine-id".into()),
            running: crate::text::specifier::Running {
                boot_id: Err("none".into()),
                hostname: "h".into(),
                kernel_release: "k".into(),
                ..Default::default()
            },
            has_root: true,
        }
    }

    fn run(conf: &str, passwd: &str, group: &str) -> Plan {
        let mut cfg = Config::default();
        crate::text::lines::for_each_config_line(conf.as_bytes(), b"#", |n, l| {
            let line = super::super::parse::parse_line(&sv(), l, "t.conf", n).unwrap();
            let _ = cfg.add(line, &|_, _| false);
        })
        .unwrap();
        cfg.add_implicit();
        let owner = |p: &str| (p == "/owned").then_some((500, 600));
        let snap = Snapshot {
            passwd: (!passwd.is_empty()).then_some(passwd.as_bytes()),
            group: (!group.is_empty()).then_some(group.as_bytes()),
            shadow: None,
            gshadow: None,
            owner: &owner,
            ledger: &Ledger::default(),
        };
        let ex = Extras {
            shell_cred: &|_| None,
            password: &|_| Ok(None),
            root_shell: "/bin/sh",
            lstchg: 7,
            paths: Default::default(),
        };
        plan(&mut cfg, &snap, &ex)
    }

    fn text(b: &Option<Vec<u8>>) -> String {
        String::from_utf8(b.clone().unwrap_or_default()).unwrap()
    }

    #[test]
    fn groups_first_then_implicit_then_users() {
        let p = run("u a -\ng b -\nm c d\n", "", "");
        assert_eq!(text(&p.group), "b:x:999:\nd:x:998:c\na:x:997:\nc:x:996:\n");
        assert_eq!(
            text(&p.passwd),
            "a:x:997:997::/:/usr/sbin/nologin\nc:x:996:996::/:/usr/sbin/nologin\n"
        );
        assert_eq!(text(&p.shadow), "a:!*:7::::::\nc:!*:7::::::\n");
        assert_eq!(text(&p.gshadow), "b:!*::\nd:!*::c\na:!*::\nc:!*::\n");
    }

    #[test]
    fn existing_entries_untouched_and_ids_skipped() {
        let p = run(
            "u root 0\nu x -\nm x root\n",
            "root:x:0:0::/root:/bin/bash\ny:x:999:999::/:\n",
            "root:x:0:\n",
        );
        // 999 is taken by y's uid (and would pair badly): x gets 998.
        assert_eq!(text(&p.group), "root:x:0:x\nx:x:998:\n");
        assert!(text(&p.passwd).ends_with("x:x:998:998::/:/usr/sbin/nologin\n"));
    }

    #[test]
    fn path_owned_and_strict_ids() {
        let p = run("u o /owned\nu s 5:nosuch\nu t 7:8\n", "", "");
        assert!(
            text(&p.passwd).contains("o:x:500:600::/:"),
            "{}",
            text(&p.passwd)
        );
        let errs: Vec<String> = p
            .log
            .iter()
            .filter_map(|l| l.as_ref().err().map(|e| e.to_string()))
            .collect();
        assert_eq!(
            errs,
            vec![
                "Group nosuch not found.",
                "Failed to create t: please create GID 8"
            ]
        );
    }
}
