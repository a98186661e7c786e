//! Slot state: which slot holds which version, which one is booted, which one is pending, and
//! the boot-time decision. The state is one small JSON file (`update.json` in the configured
//! state directory), always replaced atomically; the indexes of installed versions sit next to
//! it as `slotN.caibx`. Decisions ([`boot_select`], [`confirm`], [`rollback`]) are pure
//! functions on [`State`]; loading and saving are separate.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::fs::{Root, WriteOptions};

pub const STATE_FILE: &str = "update.json";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SlotStatus {
    /// Nothing known to be installed.
    #[default]
    Empty,
    /// Being written, or a write was interrupted: never bootable.
    Incomplete,
    /// Installed and verified, waiting to prove it boots.
    Pending,
    /// Booted and confirmed.
    Good,
    /// Gave up on it (boot tries exhausted or rolled back).
    Bad,
}

impl SlotStatus {
    pub fn name(self) -> &'static str {
        match self {
            SlotStatus::Empty => "empty",
            SlotStatus::Incomplete => "incomplete",
            SlotStatus::Pending => "pending",
            SlotStatus::Good => "good",
            SlotStatus::Bad => "bad",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct SlotRecord {
    pub status: SlotStatus,
    pub version: Option<String>,
    /// Boot attempts left (pending only).
    pub tries: u32,
    pub image_size: u64,
    pub image_digest: Option<String>,
    pub index_digest: Option<String>,
    /// Why the status last changed, for `status`.
    pub reason: Option<String>,
    /// The image carries a dm-verity tree with this root hash (from the signed manifest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verity: Option<super::verity::VerityInfo>,
    /// The slot's content was checked against the manifest's digest (or verity root hash)
    /// at boot, before its first use.
    pub checked: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct State {
    pub format: u32,
    /// The slot booted now (set by the boot decision or `adopt`).
    pub booted: Option<usize>,
    /// The slot to fall back to.
    pub last_good: Option<usize>,
    pub slots: Vec<SlotRecord>,
}

/// What the boot decision chose.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BootDecision {
    pub slot: usize,
    pub reason: String,
}

impl State {
    /// Makes sure there is a record per configured slot.
    pub fn fit(&mut self, n: usize) {
        self.format = 1;
        if self.slots.len() < n {
            self.slots.resize(n, SlotRecord::default());
        }
    }

    pub fn slot(&self, i: usize) -> SlotRecord {
        self.slots.get(i).cloned().unwrap_or_default()
    }

    /// The installed (booted, else last good) version.
    pub fn installed_version(&self) -> Option<String> {
        let i = self.booted.or(self.last_good)?;
        self.slots.get(i)?.version.clone()
    }

    /// The slot a fetch writes to: never the booted slot nor the last good one when another
    /// exists; prefers empty/bad/incomplete slots, then the oldest version.
    pub fn pick_target(&self, n: usize) -> Option<usize> {
        let candidates: Vec<usize> = (0..n)
            .filter(|&i| Some(i) != self.booted && Some(i) != self.last_good)
            .collect();
        let rank = |i: &usize| match self.slot(*i).status {
            SlotStatus::Empty | SlotStatus::Bad | SlotStatus::Incomplete => 0,
            SlotStatus::Pending => 1,
            SlotStatus::Good => 2,
        };
        candidates.iter().copied().min_by_key(|i| rank(i))
    }
}

/// The boot-time decision (pure): a pending slot with tries left is booted and loses a try;
/// a pending slot without tries is marked bad and the last good slot booted instead.
pub fn boot_select(st: &mut State) -> Option<BootDecision> {
    let mut notes = Vec::new();
    for i in 0..st.slots.len() {
        if st.slots[i].status != SlotStatus::Pending {
            continue;
        }
        let r = &mut st.slots[i];
        if r.tries > 0 {
            r.tries -= 1;
            st.booted = Some(i);
            return Some(BootDecision {
                slot: i,
                reason: format!(
                    "booting pending slot {i} (version {}), {} tries left after this one",
                    r.version.as_deref().unwrap_or("?"),
                    r.tries
                ),
            });
        }
        r.status = SlotStatus::Bad;
        let why = format!(
            "slot {i} (version {}) was booted without being confirmed until its tries ran out",
            r.version.as_deref().unwrap_or("?")
        );
        r.reason = Some(why.clone());
        notes.push(why);
    }
    let good = st
        .last_good
        .filter(|&g| st.slot(g).status == SlotStatus::Good)
        .or_else(|| (0..st.slots.len()).find(|&i| st.slots[i].status == SlotStatus::Good))?;
    st.booted = Some(good);
    st.last_good = Some(good);
    let mut reason = format!(
        "booting good slot {good} (version {})",
        st.slot(good).version.as_deref().unwrap_or("?")
    );
    if !notes.is_empty() {
        reason = format!("{}; reverted: {reason}", notes.join("; "));
    }
    Some(BootDecision { slot: good, reason })
}

/// Gives up on slot `i` (its content failed verification before it was used): it becomes bad
/// with `why`, and is never chosen again.
pub fn mark_bad(st: &mut State, i: usize, why: String) {
    if let Some(r) = st.slots.get_mut(i) {
        r.status = SlotStatus::Bad;
        r.tries = 0;
        r.reason = Some(why);
    }
    if st.booted == Some(i) {
        st.booted = None;
    }
}

/// Marks the booted slot good.
pub fn confirm(st: &mut State) -> Result<usize> {
    let refuse = |why: String| Error::msg("confirm", why);
    let b = st
        .booted
        .ok_or_else(|| refuse("no slot is recorded as booted".into()))?;
    let r = st
        .slots
        .get_mut(b)
        .ok_or_else(|| refuse("booted slot is not configured".into()))?;
    match r.status {
        SlotStatus::Pending | SlotStatus::Good => {
            r.status = SlotStatus::Good;
            r.tries = 0;
            r.reason = Some("confirmed".into());
            st.last_good = Some(b);
            Ok(b)
        }
        s => Err(refuse(format!(
            "booted slot {b} is {}, cannot confirm it",
            s.name()
        ))),
    }
}

/// Gives up on the newest install: a pending slot is cancelled; otherwise the booted slot is
/// marked bad and the other good slot becomes the one to boot. Returns the slot that boots next.
pub fn rollback(st: &mut State) -> Result<usize> {
    let refuse = |why: &'static str| Error::msg("roll back", why);
    if let Some(p) = (0..st.slots.len()).find(|&i| st.slots[i].status == SlotStatus::Pending) {
        if Some(p) != st.booted {
            st.slots[p].status = SlotStatus::Bad;
            st.slots[p].reason = Some("rolled back before it was booted".into());
            return st.last_good.ok_or_else(|| refuse("no good slot to boot"));
        }
    }
    let b = st
        .booted
        .ok_or_else(|| refuse("no slot is recorded as booted"))?;
    let other = (0..st.slots.len())
        .filter(|&i| i != b && st.slots[i].status == SlotStatus::Good)
        .max_by(|&x, &y| version_cmp(&st.slot(x).version, &st.slot(y).version))
        .ok_or_else(|| refuse("no other good slot to roll back to"))?;
    st.slots[b].status = SlotStatus::Bad;
    st.slots[b].tries = 0;
    st.slots[b].reason = Some("rolled back".into());
    st.last_good = Some(other);
    Ok(other)
}

fn version_cmp(a: &Option<String>, b: &Option<String>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => compare_versions(a, b),
        (a, b) => a.is_some().cmp(&b.is_some()),
    }
}

fn take<'a>(s: &mut &'a [u8], f: fn(&u8) -> bool) -> &'a [u8] {
    let n = s.iter().position(|c| !f(c)).unwrap_or(s.len());
    let (h, t) = s.split_at(n);
    *s = t;
    h
}

/// Version order in the spirit of systemd's `strverscmp_improved`: runs of digits compare as
/// numbers, runs of letters as strings, `~` sorts before everything (pre-releases), other
/// separators only split.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        let skip = |s: &mut &[u8]| {
            while let Some(&c) = s.first() {
                if c.is_ascii_alphanumeric() || c == b'~' {
                    break;
                }
                *s = &s[1..];
            }
        };
        skip(&mut a);
        skip(&mut b);
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (Some(b'~'), Some(b'~')) => {
                a = &a[1..];
                b = &b[1..];
                continue;
            }
            (Some(b'~'), _) => return Ordering::Less,
            (_, Some(b'~')) => return Ordering::Greater,
            (None, _) => return Ordering::Less,
            (_, None) => return Ordering::Greater,
            _ => {}
        }
        let digit = |s: &[u8]| s.first().is_some_and(u8::is_ascii_digit);
        match (digit(a), digit(b)) {
            (true, true) => {
                let x = take(&mut a, u8::is_ascii_digit);
                let y = take(&mut b, u8::is_ascii_digit);
                let strip = |s: &[u8]| {
                    let n = s.iter().position(|&c| c != b'0').unwrap_or(s.len());
                    s[n..].to_vec()
                };
                let (x, y) = (strip(x), strip(y));
                let o = x.len().cmp(&y.len()).then(x.cmp(&y));
                if o != Ordering::Equal {
                    return o;
                }
            }
            (true, false) => return Ordering::Greater,
            (false, true) => return Ordering::Less,
            (false, false) => {
                let x = take(&mut a, u8::is_ascii_alphabetic);
                let y = take(&mut b, u8::is_ascii_alphabetic);
                let o = x.cmp(y);
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
    }
}

/// Where the state lives (a host directory, opened as its own root).
pub struct StateDir {
    pub root: Root,
    pub path: PathBuf,
}

impl StateDir {
    pub fn open(path: &Path, create: bool) -> Result<StateDir> {
        if create {
            std::fs::create_dir_all(path).op("create directory", path)?;
        }
        Ok(StateDir {
            root: Root::open(path).op("open state directory", path)?,
            path: path.to_path_buf(),
        })
    }

    pub fn load(&self) -> Result<State> {
        let path = self.path.join(STATE_FILE);
        match self.root.read_optional(Path::new(STATE_FILE)) {
            Ok(None) => Ok(State::default()),
            Ok(Some(t)) => {
                serde_json::from_str(&t).map_err(|e| Error::invalid("parse", &path, e.to_string()))
            }
            Err(e) => Err(Error::io("read", &path, e)),
        }
    }

    pub fn save(&self, st: &State) -> Result<()> {
        let path = self.path.join(STATE_FILE);
        let mut text = serde_json::to_string_pretty(st)
            .map_err(|e| Error::invalid("serialize", &path, e.to_string()))?;
        text.push('\n');
        self.root
            .write_atomic(
                Path::new(STATE_FILE),
                text.as_bytes(),
                &WriteOptions::default(),
            )
            .op("write", &path)
    }

    pub fn index_name(slot: usize) -> String {
        format!("slot{slot}.caibx")
    }

    pub fn read_index(&self, slot: usize) -> Option<Vec<u8>> {
        self.root
            .read_max(Path::new(&Self::index_name(slot)), crate::fs::limits::INDEX)
            .ok()
    }

    pub fn write_index(&self, slot: usize, data: &[u8]) -> Result<()> {
        self.root
            .write_atomic(
                Path::new(&Self::index_name(slot)),
                data,
                &WriteOptions::default(),
            )
            .op("write", self.path.join(Self::index_name(slot)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_slots() -> State {
        let mut st = State::default();
        st.fit(2);
        st.slots[0].status = SlotStatus::Good;
        st.slots[0].version = Some("1".into());
        st.booted = Some(0);
        st.last_good = Some(0);
        st
    }

    #[test]
    fn pending_reverts_after_three_unconfirmed_boots() {
        let mut st = two_slots();
        st.slots[1].status = SlotStatus::Pending;
        st.slots[1].tries = 3;
        st.slots[1].version = Some("2".into());
        for left in [2, 1, 0] {
            let d = boot_select(&mut st).unwrap();
            assert_eq!(d.slot, 1);
            assert_eq!(st.slots[1].tries, left);
        }
        let d = boot_select(&mut st).unwrap();
        assert_eq!(d.slot, 0);
        assert!(d.reason.contains("reverted"), "{}", d.reason);
        assert_eq!(st.slots[1].status, SlotStatus::Bad);
        assert_eq!(st.booted, Some(0));
    }

    #[test]
    fn confirm_makes_good_and_rollback_returns() {
        let mut st = two_slots();
        st.slots[1].status = SlotStatus::Pending;
        st.slots[1].tries = 3;
        st.slots[1].version = Some("2".into());
        assert_eq!(boot_select(&mut st).unwrap().slot, 1);
        assert_eq!(confirm(&mut st).unwrap(), 1);
        assert_eq!(st.slots[1].status, SlotStatus::Good);
        assert_eq!(st.last_good, Some(1));
        assert_eq!(boot_select(&mut st).unwrap().slot, 1);
        assert_eq!(st.pick_target(2), Some(0));
        assert_eq!(rollback(&mut st).unwrap(), 0);
        assert_eq!(st.slots[1].status, SlotStatus::Bad);
        assert_eq!(boot_select(&mut st).unwrap().slot, 0);
        assert!(rollback(&mut st).is_err());
    }

    #[test]
    fn versions() {
        use Ordering::*;
        assert_eq!(compare_versions("1.10", "1.9"), Greater);
        assert_eq!(compare_versions("2", "2.0.1"), Less);
        assert_eq!(compare_versions("1.0~rc1", "1.0"), Less);
        assert_eq!(compare_versions("v1.02", "v1.2"), Equal);
        assert_eq!(compare_versions("1.0a", "1.0b"), Less);
        assert_eq!(compare_versions("20240101", "20231231"), Greater);
    }
}
