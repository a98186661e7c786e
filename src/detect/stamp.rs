//! Stamps: what `/etc` and `/var` were last brought up to date with.
//!
//! Two records per directory. `.updated` is systemd-update-done's, byte for byte: three comment
//! lines and `TIMESTAMP_NSEC=`, with atime and mtime set to `/usr`'s mtime; ConditionNeedsUpdate
//! compares against it; `pristine stamp` writes it. Provisioning does not write it, so that
//! systemd's own ConditionNeedsUpdate units (ldconfig, hwdb, catalog) still run after an update.
//!
//! `.pristine-stamp` is pristine's own record of what it last provisioned from, in the same env
//! format: the OS identity (`ID`, `VERSION_ID`, `IMAGE_ID`, `IMAGE_VERSION`, `BUILD_ID`), a
//! SHA-256 of os-release and /usr's mtime, so that a `/usr` swap is seen even when mtimes do not
//! move forward (a downgrade, a reproducible build with a fixed mtime).

use std::collections::HashMap;
use std::io;
use std::path::Path;

use serde::Serialize;
use sha2::Digest as _;

use crate::fs::{Root, WriteOptions};
use crate::text::envfile;

/// Name of pristine's stamp inside /etc and /var.
pub const STAMP_NAME: &str = ".pristine-stamp";

/// The OS identity of a /usr.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OsStamp {
    pub id: Option<String>,
    pub version_id: Option<String>,
    pub image_id: Option<String>,
    pub image_version: Option<String>,
    pub build_id: Option<String>,
    pub os_release_sha256: Option<String>,
    /// /usr's mtime in nanoseconds when the stamp was taken.
    pub usr_mtime_nsec: Option<String>,
}

const FIELDS: [&str; 7] = [
    "ID",
    "VERSION_ID",
    "IMAGE_ID",
    "IMAGE_VERSION",
    "BUILD_ID",
    "OS_RELEASE_SHA256",
    "USR_MTIME_NSEC",
];

impl OsStamp {
    pub fn from_os_release(
        fields: Option<&HashMap<String, String>>,
        raw: Option<&[u8]>,
    ) -> OsStamp {
        let mut s = OsStamp::from_fields(|k| {
            fields
                .and_then(|f| f.get(k))
                .filter(|v| !v.is_empty())
                .cloned()
        });
        s.os_release_sha256 = raw.map(|r| crate::util::hex(&sha2::Sha256::digest(r)));
        s.usr_mtime_nsec = None;
        s
    }

    /// Builds a stamp from a lookup of its env-file keys.
    fn from_fields(get: impl Fn(&str) -> Option<String>) -> OsStamp {
        OsStamp {
            id: get("ID"),
            version_id: get("VERSION_ID"),
            image_id: get("IMAGE_ID"),
            image_version: get("IMAGE_VERSION"),
            build_id: get("BUILD_ID"),
            os_release_sha256: get("OS_RELEASE_SHA256"),
            usr_mtime_nsec: get("USR_MTIME_NSEC"),
        }
    }

    fn values(&self) -> [&Option<String>; 7] {
        [
            &self.id,
            &self.version_id,
            &self.image_id,
            &self.image_version,
            &self.build_id,
            &self.os_release_sha256,
            &self.usr_mtime_nsec,
        ]
    }

    /// Whether /usr changed since the stamp: any field differs (os-release content or
    /// identity, or /usr's mtime in either direction).
    pub fn differs_from(&self, now: &OsStamp) -> bool {
        self != now
    }

    /// The file content.
    pub fn render(&self) -> String {
        let mut s = String::from(
            "# Written by pristine: the OS this directory was last provisioned from.\n",
        );
        for (k, v) in FIELDS.iter().zip(self.values()) {
            s.push_str(&format!("{k}={}\n", v.as_deref().unwrap_or("")));
        }
        s
    }

    pub fn parse(text: &str) -> OsStamp {
        let m: HashMap<String, String> = envfile::parse(text).into_iter().collect();
        OsStamp::from_fields(|k| m.get(k).filter(|v| !v.is_empty()).cloned())
    }
}

/// Reads `DIR/.pristine-stamp`, if any.
pub fn read(root: &Root, dir: &Path) -> Option<OsStamp> {
    root.read_optional_max(&dir.join(STAMP_NAME), crate::fs::limits::SMALL)
        .ok()
        .flatten()
        .map(|t| OsStamp::parse(&t))
}

/// systemd-update-done's `.updated` content for a /usr mtime.
pub fn updated_content(usr_sec: i64, usr_nsec: i64) -> String {
    let nsec = (usr_sec as i128) * 1_000_000_000 + usr_nsec as i128;
    format!(
        "# This file was created by systemd-update-done. Its only \n\
         # purpose is to hold a timestamp of the time this directory\n\
         # was updated. See man:systemd-update-done.service(8).\n\
         TIMESTAMP_NSEC={nsec}\n"
    )
}

/// What writing a stamp did for one directory.
#[derive(Debug, PartialEq, Eq)]
pub enum StampResult {
    Written,
    /// Already up to date: nothing written.
    Unchanged,
    /// The directory is on a read-only file system (tolerated, as systemd-update-done does).
    ReadOnly,
    /// The directory does not exist.
    Missing,
}

fn is_rofs(e: &io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::ROFS.raw_os_error())
}

/// Writes `DIR/.updated` exactly as systemd-update-done does (content, mode 0644, atime and
/// mtime = /usr's mtime). Nothing is written when it already says the same.
pub fn write_updated(root: &Root, dir: &Path) -> io::Result<StampResult> {
    if root.file_type(dir)?.is_none() {
        return Ok(StampResult::Missing);
    }
    let usr = root.stat(Path::new("/usr"), true)?;
    let (sec, nsec) = (usr.st_mtime, usr.st_mtime_nsec as i64);
    let content = updated_content(sec, nsec);
    let updated = dir.join(".updated");
    let current = root
        .read_optional_max(&updated, crate::fs::limits::SMALL)
        .ok()
        .flatten();
    let cur_st = root.stat(&updated, false).ok();
    if current.as_deref() == Some(content.as_str())
        && cur_st.is_some_and(|st| st.st_mtime == sec && st.st_mtime_nsec as i64 == nsec)
    {
        return Ok(StampResult::Unchanged);
    }
    let opts = WriteOptions {
        mode: Some(0o644),
        owner: None,
        times: Some(((sec, nsec), (sec, nsec))),
    };
    match root.write_atomic(&updated, content.as_bytes(), &opts) {
        Ok(()) => Ok(StampResult::Written),
        Err(e) if is_rofs(&e) => Ok(StampResult::ReadOnly),
        Err(e) => Err(e),
    }
}

/// Writes pristine's `DIR/.pristine-stamp` for `os` unless it already says the same.
pub fn write_os_stamp(root: &Root, dir: &Path, os: &OsStamp) -> io::Result<StampResult> {
    if root.file_type(dir)?.is_none() {
        return Ok(StampResult::Missing);
    }
    let path = dir.join(STAMP_NAME);
    let text = os.render();
    if root
        .read_optional_max(&path, crate::fs::limits::SMALL)
        .ok()
        .flatten()
        .as_deref()
        == Some(text.as_str())
    {
        return Ok(StampResult::Unchanged);
    }
    match root.write_atomic(
        &path,
        text.as_bytes(),
        &WriteOptions {
            mode: Some(0o644),
            ..Default::default()
        },
    ) {
        Ok(()) => Ok(StampResult::Written),
        Err(e) if is_rofs(&e) => Ok(StampResult::ReadOnly),
        Err(e) => Err(e),
    }
}

/// The OS identity of the target's /usr now: os-release fields, its hash and /usr's mtime.
pub fn current(root: &Root) -> OsStamp {
    let os = crate::config::os_release::read(root);
    let mut s = OsStamp::from_os_release(
        os.as_ref().map(|o| &o.fields),
        os.as_ref().map(|o| o.raw.as_slice()),
    );
    s.usr_mtime_nsec = root
        .stat(Path::new("/usr"), true)
        .ok()
        .map(|st| ((st.st_mtime as i128) * 1_000_000_000 + st.st_mtime_nsec as i128).to_string());
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updated_bytes() {
        let c = updated_content(1700000000, 123);
        assert!(c.starts_with("# This file was created by systemd-update-done. Its only \n"));
        assert!(c.ends_with("TIMESTAMP_NSEC=1700000000000000123\n"));
        assert_eq!(c.lines().count(), 4);
    }

    #[test]
    fn stamp_roundtrip() {
        let s = OsStamp {
            id: Some("debian".into()),
            version_id: Some("12".into()),
            ..Default::default()
        };
        assert_eq!(OsStamp::parse(&s.render()), s);
        let mut t = s.clone();
        t.version_id = Some("13".into());
        assert!(s.differs_from(&t));
    }
}
