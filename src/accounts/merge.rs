//! Record-level merge of the account databases (`passwd`, `group`, `shadow`, `gshadow`,
//! `subuid`, `subgid`): the `parsed` operator of these files. Pure: bytes in, bytes and
//! findings out.
//!
//! Records that sysusers.d declares are **vendor records**: sysusers re-derives them at every
//! boot (with the ID ledger, so their IDs stay). Everything else the admin did is captured as
//! values, one per record or field:
//!
//! | key | value | captured when |
//! |---|---|---|
//! | `passwd:NAME` | the passwd line | NAME is not a vendor user (a human user, `useradd`) |
//! | `group:NAME` | the group line | NAME is not a vendor group |
//! | `shadow:NAME` | the shadow line | an admin user, or a vendor user whose password or aging changed |
//! | `gshadow:NAME` | the gshadow line | an admin group, or a vendor group whose password or admins changed |
//! | `members:GROUP` | members the admin added, comma-separated | GROUP is a vendor group |
//! | `gecos:NAME`, `home:NAME`, `shell:NAME` | the field | NAME is a vendor user and the admin changed it |
//! | `subuid:NAME`, `subgid:NAME` | `START:COUNT` lines | NAME has subordinate ID ranges |
//!
//! Restore runs in two halves around sysusers. [`add_admin_records`] (before) writes the admin's
//! own records into the databases where no record of that name exists, so sysusers then works
//! around them exactly as on a system whose `/etc` was never emptied. [`overlay`] (after) puts the
//! admin's fields and members back on the vendor records sysusers made. The conflict rule is
//! systemd-sysusers' own: an existing record is never modified, so an admin record whose name a
//! newer `/usr` declares is kept (the vendor line creates nothing), and a vendor pin on an ID the
//! admin's record holds moves the vendor user to another ID; both are reported.

use std::collections::{BTreeMap, BTreeSet};

use crate::sysusers::db::{self, GShadow, Group, Passwd, Shadow};

/// The six databases, as bytes (missing files are empty).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dbs {
    pub passwd: Vec<u8>,
    pub group: Vec<u8>,
    pub shadow: Vec<u8>,
    pub gshadow: Vec<u8>,
    pub subuid: Vec<u8>,
    pub subgid: Vec<u8>,
}

/// The captured values: key → value (see the module table).
pub type Values = BTreeMap<String, String>;

fn name(n: &[u8]) -> String {
    String::from_utf8_lossy(n).into_owned()
}

fn line_of<T>(put: fn(&T, &mut Vec<u8>) -> Result<(), db::Invalid>, r: &T) -> Option<String> {
    let mut v = Vec::new();
    put(r, &mut v).ok()?;
    while v.last() == Some(&b'\n') {
        v.pop();
    }
    String::from_utf8(v).ok()
}

fn members(m: &[Vec<u8>]) -> BTreeSet<String> {
    m.iter().map(|x| name(x)).collect()
}

/// `subuid`/`subgid` lines by name (`name:start:count`), in file order.
fn sub_lines(text: &[u8]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in String::from_utf8_lossy(text).lines() {
        let f: Vec<&str> = l.trim().split(':').collect();
        if let [n, start, count] = f[..] {
            if !n.is_empty()
                && !n.starts_with('#')
                && start.parse::<u32>().is_ok()
                && count.parse::<u32>().is_ok()
            {
                out.entry(n.to_string())
                    .or_default()
                    .push(format!("{start}:{count}"));
            }
        }
    }
    out
}

/// What the admin changed: `current` is the databases now, `vendor` what sysusers makes from
/// sysusers.d on empty databases (with the ledger's IDs).
pub fn capture(current: &Dbs, vendor: &Dbs) -> Values {
    let mut v = Values::new();
    let vp: BTreeMap<String, Passwd> = db::parse_passwd(&vendor.passwd)
        .into_iter()
        .map(|p| (name(&p.name), p))
        .collect();
    let vg: BTreeMap<String, Group> = db::parse_group(&vendor.group)
        .into_iter()
        .map(|g| (name(&g.name), g))
        .collect();
    let vs: BTreeMap<String, Shadow> = db::parse_shadow(&vendor.shadow)
        .into_iter()
        .map(|s| (name(&s.name), s))
        .collect();
    let vgs: BTreeMap<String, GShadow> = db::parse_gshadow(&vendor.gshadow)
        .into_iter()
        .map(|s| (name(&s.name), s))
        .collect();
    for p in db::parse_passwd(&current.passwd) {
        let n = name(&p.name);
        if n.starts_with(['+', '-']) {
            continue;
        }
        match vp.get(&n) {
            None => {
                if let Some(l) = line_of(db::put_passwd, &p) {
                    v.insert(format!("passwd:{n}"), l);
                }
            }
            Some(w) => {
                for (key, now, was) in [
                    ("gecos", &p.gecos, &w.gecos),
                    ("home", &p.dir, &w.dir),
                    ("shell", &p.shell, &w.shell),
                ] {
                    if now != was {
                        v.insert(
                            format!("{key}:{n}"),
                            name(now.as_deref().unwrap_or_default()),
                        );
                    }
                }
            }
        }
    }
    for g in db::parse_group(&current.group) {
        let n = name(&g.name);
        if n.starts_with(['+', '-']) {
            continue;
        }
        match vg.get(&n) {
            None => {
                if let Some(l) = line_of(db::put_group, &g) {
                    v.insert(format!("group:{n}"), l);
                }
            }
            Some(w) => {
                let added: Vec<String> = members(&g.members)
                    .difference(&members(&w.members))
                    .cloned()
                    .collect();
                if !added.is_empty() {
                    v.insert(format!("members:{n}"), added.join(","));
                }
            }
        }
    }
    for s in db::parse_shadow(&current.shadow) {
        let n = name(&s.name);
        let changed = match vs.get(&n) {
            None => !vp.contains_key(&n),
            // The day of the last change differs by when the line was made; only a changed
            // password or aging is the admin's.
            Some(w) => {
                (&s.pwdp, s.min, s.max, s.warn, s.inact, s.expire)
                    != (&w.pwdp, w.min, w.max, w.warn, w.inact, w.expire)
            }
        };
        if changed {
            if let Some(l) = line_of(db::put_shadow, &s) {
                v.insert(format!("shadow:{n}"), l);
            }
        }
    }
    for s in db::parse_gshadow(&current.gshadow) {
        let n = name(&s.name);
        let changed = match vgs.get(&n) {
            None => !vg.contains_key(&n),
            Some(w) => s.passwd != w.passwd || members(&s.admins) != members(&w.admins),
        };
        if changed {
            if let Some(l) = line_of(db::put_gshadow, &s) {
                v.insert(format!("gshadow:{n}"), l);
            }
        }
    }
    for (kind, text) in [("subuid", &current.subuid), ("subgid", &current.subgid)] {
        for (n, ranges) in sub_lines(text) {
            v.insert(format!("{kind}:{n}"), ranges.join("\n"));
        }
    }
    v
}

/// A problem found while merging: reported, never silent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub key: String,
    pub message: String,
}

fn append_line(text: &mut Vec<u8>, line: &str) {
    if !text.is_empty() && !text.ends_with(b"\n") {
        text.push(b'\n');
    }
    text.extend_from_slice(line.as_bytes());
    text.push(b'\n');
}

/// Before sysusers: the admin's own records go into `dbs` where no record of that name exists
/// (on an emptied `/etc`, all of them). A record whose ID another name holds in `dbs` is not
/// added (reported). Returns whether anything was added.
pub fn add_admin_records(dbs: &mut Dbs, v: &Values, findings: &mut Vec<Finding>) -> bool {
    let users: BTreeMap<String, u32> = db::parse_passwd(&dbs.passwd)
        .into_iter()
        .map(|p| (name(&p.name), p.uid))
        .collect();
    let groups: BTreeMap<String, u32> = db::parse_group(&dbs.group)
        .into_iter()
        .map(|g| (name(&g.name), g.gid))
        .collect();
    let shadowed: BTreeSet<String> = db::parse_shadow(&dbs.shadow)
        .into_iter()
        .map(|s| name(&s.name))
        .collect();
    let gshadowed: BTreeSet<String> = db::parse_gshadow(&dbs.gshadow)
        .into_iter()
        .map(|s| name(&s.name))
        .collect();
    let mut added = false;
    // Groups first: users name their primary group by ID.
    for (prefix, ids, is_user) in [("group:", &groups, false), ("passwd:", &users, true)] {
        for (key, line) in v.range(prefix.to_string()..) {
            let Some(n) = key.strip_prefix(prefix) else {
                break;
            };
            if ids.contains_key(n) {
                continue;
            }
            let id = if is_user {
                db::parse_passwd(line.as_bytes()).first().map(|p| p.uid)
            } else {
                db::parse_group(line.as_bytes()).first().map(|g| g.gid)
            };
            let Some(id) = id else {
                findings.push(Finding {
                    key: key.clone(),
                    message: "saved record is not a valid line, not restored".into(),
                });
                continue;
            };
            if let Some((other, _)) = ids.iter().find(|(_, &i)| i == id) {
                findings.push(Finding {
                    key: key.clone(),
                    message: format!("ID {id} is held by '{other}' now; the saved record of '{n}' is not restored"),
                });
                continue;
            }
            if is_user {
                append_line(&mut dbs.passwd, line);
            } else {
                append_line(&mut dbs.group, line);
            }
            added = true;
            // Their shadow lines come with them.
            let (skey, set, text) = if is_user {
                (format!("shadow:{n}"), &shadowed, &mut dbs.shadow)
            } else {
                (format!("gshadow:{n}"), &gshadowed, &mut dbs.gshadow)
            };
            if let (Some(s), false) = (v.get(&skey), set.contains(n)) {
                append_line(text, s);
            }
        }
    }
    for (kind, text) in [("subuid:", &mut dbs.subuid), ("subgid:", &mut dbs.subgid)] {
        let have = sub_lines(text);
        for (key, ranges) in v.range(kind.to_string()..) {
            let Some(n) = key.strip_prefix(kind) else {
                break;
            };
            if have.contains_key(n) {
                continue;
            }
            for r in ranges.lines() {
                append_line(text, &format!("{n}:{r}"));
                added = true;
            }
        }
    }
    added
}

/// After sysusers: the admin's fields, passwords and added members go back on the vendor
/// records. `declared` holds the user names sysusers.d declares now; an admin record with such a
/// name is reported (it was kept, and sysusers created nothing for it). Returns whether
/// anything changed.
pub fn overlay(
    dbs: &mut Dbs,
    v: &Values,
    declared: &BTreeSet<String>,
    findings: &mut Vec<Finding>,
) -> bool {
    let mut changed = false;
    let mut passwd = db::parse_passwd(&dbs.passwd);
    for p in passwd.iter_mut() {
        let n = name(&p.name);
        for (key, field) in [
            ("gecos", &mut p.gecos),
            ("home", &mut p.dir),
            ("shell", &mut p.shell),
        ] {
            if let Some(val) = v.get(&format!("{key}:{n}")) {
                let new = Some(val.as_bytes().to_vec());
                if *field != new {
                    *field = new;
                    changed = true;
                }
            }
        }
    }
    let mut group = db::parse_group(&dbs.group);
    let mut gshadow = db::parse_gshadow(&dbs.gshadow);
    for (key, list) in v.range("members:".to_string()..) {
        let Some(g) = key.strip_prefix("members:") else {
            break;
        };
        let add: Vec<Vec<u8>> = list
            .split(',')
            .filter(|m| !m.is_empty())
            .map(|m| m.as_bytes().to_vec())
            .collect();
        let Some(gr) = group.iter_mut().find(|x| x.name == g.as_bytes()) else {
            findings.push(Finding {
                key: key.clone(),
                message: format!(
                    "group '{g}' no longer exists; its added members are not restored"
                ),
            });
            continue;
        };
        for m in &add {
            if !gr.members.contains(m) {
                gr.members.push(m.clone());
                changed = true;
            }
        }
        if let Some(gs) = gshadow.iter_mut().find(|x| x.name == g.as_bytes()) {
            for m in &add {
                if !gs.members.contains(m) {
                    gs.members.push(m.clone());
                    changed = true;
                }
            }
        }
    }
    let mut shadow = db::parse_shadow(&dbs.shadow);
    for s in shadow.iter_mut() {
        let n = name(&s.name);
        if let Some(line) = v.get(&format!("shadow:{n}")) {
            if let Some(saved) = db::parse_shadow(line.as_bytes()).into_iter().next() {
                if saved != *s {
                    *s = saved;
                    changed = true;
                }
            }
        }
    }
    for s in gshadow.iter_mut() {
        let n = name(&s.name);
        if let Some(line) = v.get(&format!("gshadow:{n}")) {
            if let Some(mut saved) = db::parse_gshadow(line.as_bytes()).into_iter().next() {
                // Members the vendor adds stay; the admin's were restored above.
                for m in &s.members {
                    if !saved.members.contains(m) {
                        saved.members.push(m.clone());
                    }
                }
                if saved != *s {
                    *s = saved;
                    changed = true;
                }
            }
        }
    }
    for (key, _) in v.range("passwd:".to_string()..) {
        let Some(n) = key.strip_prefix("passwd:") else {
            break;
        };
        if declared.contains(n) {
            findings.push(Finding {
                key: key.clone(),
                message: format!(
                    "'{n}' is declared by sysusers.d now; the admin's record is kept (sysusers never changes an existing record)"
                ),
            });
        }
    }
    if changed {
        dbs.passwd = render(&passwd, db::put_passwd);
        dbs.group = render(&group, db::put_group);
        dbs.shadow = render(&shadow, db::put_shadow);
        dbs.gshadow = render(&gshadow, db::put_gshadow);
    }
    changed
}

fn render<T>(records: &[T], put: fn(&T, &mut Vec<u8>) -> Result<(), db::Invalid>) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        let mut l = Vec::new();
        if put(r, &mut l).is_ok() {
            out.extend_from_slice(&l);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dbs(passwd: &str, group: &str, shadow: &str, gshadow: &str) -> Dbs {
        Dbs {
            passwd: passwd.into(),
            group: group.into(),
            shadow: shadow.into(),
            gshadow: gshadow.into(),
            ..Dbs::default()
        }
    }

    #[test]
    fn capture_then_restore_around_sysusers() {
        let vendor = dbs(
            "root:x:0:0:root:/root:/bin/sh\nsvc:x:999:999:Svc:/:/usr/sbin/nologin\n",
            "root:x:0:\nadm:x:4:\nsudo:x:27:\nsvc:x:999:\n",
            "root:!*:20000::::::\nsvc:!*:20000::::::\n",
            "root:!*::\nadm:!*::\nsudo:!*::\nsvc:!*::\n",
        );
        let mut current = dbs(
            "root:x:0:0:root:/root:/bin/bash\nsvc:x:999:999:Svc:/:/usr/sbin/nologin\nalice:x:1000:1000:Alice:/home/alice:/bin/bash\n",
            "root:x:0:\nadm:x:4:alice\nsudo:x:27:alice\nsvc:x:999:\nalice:x:1000:\n",
            "root:$6$salt$hash:20001:0:99999:7:::\nsvc:!*:20003::::::\nalice:$6$a$b:20002:0:99999:7:::\n",
            "root:!*::\nadm:!*::alice\nsudo:!*::alice\nsvc:!*::\nalice:!::\n",
        );
        current.subuid = b"alice:100000:65536\n".to_vec();
        let v = capture(&current, &vendor);
        let keys: Vec<&str> = v.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "group:alice",
                "gshadow:alice",
                "members:adm",
                "members:sudo",
                "passwd:alice",
                "shadow:alice",
                "shadow:root",
                "shell:root",
                "subuid:alice"
            ]
        );
        // A stateless boot: /etc empty, the admin's records first, then sysusers (here: the
        // vendor lines appended), then the overlay.
        let mut fresh = Dbs::default();
        let mut f = Vec::new();
        assert!(add_admin_records(&mut fresh, &v, &mut f));
        assert!(f.is_empty(), "{f:?}");
        fresh.passwd = [vendor.passwd.clone(), fresh.passwd].concat();
        fresh.group = [vendor.group.clone(), fresh.group].concat();
        fresh.shadow = [vendor.shadow.clone(), fresh.shadow].concat();
        fresh.gshadow = [vendor.gshadow.clone(), fresh.gshadow].concat();
        assert!(overlay(&mut fresh, &v, &BTreeSet::new(), &mut f));
        assert!(f.is_empty(), "{f:?}");
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        assert_eq!(text(&fresh.passwd), text(&current.passwd));
        assert_eq!(text(&fresh.group), text(&current.group));
        assert_eq!(text(&fresh.gshadow), text(&current.gshadow));
        // svc's shadow keeps the vendor's day of creation; the rest is the admin's.
        assert_eq!(
            text(&fresh.shadow),
            "root:$6$salt$hash:20001:0:99999:7:::\nsvc:!*:20000::::::\nalice:$6$a$b:20002:0:99999:7:::\n"
        );
        assert_eq!(text(&fresh.subuid), "alice:100000:65536\n");
        // Restoring again changes nothing.
        let before = fresh.clone();
        assert!(!add_admin_records(&mut fresh, &v, &mut f));
        assert!(!overlay(&mut fresh, &v, &BTreeSet::new(), &mut f));
        assert_eq!(fresh, before);
    }

    #[test]
    fn conflicts_are_reported() {
        let mut v = Values::new();
        v.insert(
            "passwd:newsvc".into(),
            "newsvc:x:1001:1001::/:/bin/sh".into(),
        );
        v.insert(
            "passwd:bob".into(),
            "bob:x:998:998::/home/bob:/bin/sh".into(),
        );
        v.insert("members:gone".into(), "bob".into());
        let mut d = dbs("svc:x:998:998::/:/bin/sh\n", "", "", "");
        let mut f = Vec::new();
        add_admin_records(&mut d, &v, &mut f);
        assert!(String::from_utf8_lossy(&d.passwd).contains("newsvc:x:1001"));
        assert!(!String::from_utf8_lossy(&d.passwd).contains("bob:"));
        let declared: BTreeSet<String> = ["newsvc".to_string()].into();
        overlay(&mut d, &v, &declared, &mut f);
        let msgs: Vec<String> = f
            .iter()
            .map(|x| format!("{}: {}", x.key, x.message))
            .collect();
        assert_eq!(msgs.len(), 3, "{msgs:?}");
        assert!(
            msgs[0].starts_with("passwd:bob: ID 998 is held by 'svc'"),
            "{msgs:?}"
        );
        assert!(msgs[1].starts_with("members:gone"), "{msgs:?}");
        assert!(
            msgs[2].contains("'newsvc' is declared by sysusers.d now"),
            "{msgs:?}"
        );
    }
}
