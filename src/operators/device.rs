//! A registry on its own block device (`[state] device = "PARTLABEL=pristine-state"`), mounted
//! by pristine for the length of one run.
//!
//! [`Spec::parse`] reads the setting; [`resolve`] finds the device node: first through udev's
//! `/dev/disk/by-*` links, then — busybox initrds have no udev — by scanning `/sys/class/block`
//! and reading what identifies each device itself: the kernel's `PARTNAME` (the GPT partition
//! name) and the GPT partition entry of the parent disk for `PARTLABEL=` and `PARTUUID=`, the
//! ext2/3/4 or FAT superblock for `LABEL=` and `UUID=`. [`attach`] mounts the device on a private
//! directory of the runtime directory (`/run/pristine/state-registry`), unless it is mounted
//! already (`/proc/self/mountinfo`, a running system's `state save`), in which case that mount
//! is used; the returned [`Mounted`] unmounts what pristine mounted when dropped.
//!
//! Every read is a bounded `pread` of a fixed range; nothing here writes to a device. The
//! directories (`sys`, `dev`) are parameters so that tests run on a synthetic tree.

use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// How the setting names the device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Spec {
    PartLabel(String),
    Label(String),
    PartUuid(String),
    Uuid(String),
    Path(PathBuf),
}

/// File system types a registry may live on.
pub const FSTYPES: &[&str] = &["ext4", "ext3", "ext2", "xfs", "btrfs", "vfat"];

impl Spec {
    /// `PARTLABEL=NAME`, `LABEL=NAME`, `PARTUUID=UUID`, `UUID=UUID` or `/dev/…`.
    pub fn parse(s: &str) -> Result<Spec> {
        let bad = |why: &'static str| Error::msg(format!("use [state] device '{s}'"), why);
        let value = |v: &str| -> Result<String> {
            if v.is_empty() || v.len() > 255 || v.contains('\0') {
                return Err(bad("the name is empty, too long or has a NUL"));
            }
            Ok(v.to_string())
        };
        if let Some(v) = s.strip_prefix("PARTLABEL=") {
            return Ok(Spec::PartLabel(value(v)?));
        }
        if let Some(v) = s.strip_prefix("LABEL=") {
            return Ok(Spec::Label(value(v)?));
        }
        if let Some(v) = s.strip_prefix("PARTUUID=") {
            return Ok(Spec::PartUuid(value(v)?.to_ascii_lowercase()));
        }
        if let Some(v) = s.strip_prefix("UUID=") {
            return Ok(Spec::Uuid(value(v)?.to_ascii_lowercase()));
        }
        if s.starts_with("/dev/") && !s.split('/').any(|c| c == "..") {
            return Ok(Spec::Path(PathBuf::from(s)));
        }
        Err(bad(
            "expected PARTLABEL=, LABEL=, PARTUUID=, UUID= or a /dev/ path",
        ))
    }

    /// The udev link directory and link name, when udev would have made one.
    fn by_link(&self) -> Option<(&'static str, String)> {
        let (dir, v) = match self {
            Spec::PartLabel(v) => ("by-partlabel", v),
            Spec::Label(v) => ("by-label", v),
            Spec::PartUuid(v) => ("by-partuuid", v),
            Spec::Uuid(v) => ("by-uuid", v),
            Spec::Path(_) => return None,
        };
        // udev escapes everything else (`\x20`); such names are found by the scan.
        let plain = v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"#+-.:=@_".contains(&b));
        plain.then(|| (dir, v.clone()))
    }
}

/// The device node `spec` names, under `dev` (normally `/dev`), looking in `sys` (normally
/// `/sys`). Two devices that both match are an error: a registry must be unambiguous.
pub fn resolve(spec: &Spec, sys: &Path, dev: &Path) -> Result<PathBuf> {
    if let Spec::Path(p) = spec {
        let rel = p.strip_prefix("/dev").unwrap_or(p);
        return Ok(dev.join(rel));
    }
    if let Some((dir, name)) = spec.by_link() {
        let link = dev.join("disk").join(dir).join(name);
        if let Ok(p) = std::fs::canonicalize(&link) {
            return Ok(p);
        }
    }
    let class = sys.join("class/block");
    let mut names: Vec<String> = std::fs::read_dir(&class)
        .op("list", &class)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    let mut found: Vec<PathBuf> = Vec::new();
    for name in names {
        let d = class.join(&name);
        let uevent = read_small(&d.join("uevent")).unwrap_or_default();
        let field = |k: &str| {
            uevent
                .lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
                .map(str::to_string)
        };
        let devname = field("DEVNAME").unwrap_or_else(|| name.clone());
        if devname.split('/').any(|c| c == "..") {
            continue;
        }
        let node = dev.join(&devname);
        let hit = match spec {
            Spec::PartLabel(want) => {
                field("PARTNAME").as_deref() == Some(want.as_str())
                    || gpt_of(&d, dev).is_some_and(|e| e.name == *want)
            }
            Spec::PartUuid(want) => gpt_of(&d, dev).is_some_and(|e| e.uuid == *want),
            Spec::Label(want) => fs_ident(&node).is_some_and(|i| i.label.as_ref() == Some(want)),
            Spec::Uuid(want) => fs_ident(&node).is_some_and(|i| {
                i.uuid.as_deref().map(str::to_ascii_lowercase) == Some(want.clone())
            }),
            Spec::Path(_) => false,
        };
        if hit {
            found.push(node);
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(Error::msg(
            format!("find the state device {spec:?}"),
            "no block device matches (is the partition there and the driver loaded?)",
        )),
        _ => Err(Error::msg(
            format!("find the state device {spec:?}"),
            format!(
                "it matches {} devices ({}); name it unambiguously",
                found.len(),
                found
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// A bounded read of a small sysfs attribute: a regular file only (opened non-blocking, so a
/// FIFO in its place cannot stall the boot).
fn read_small(p: &Path) -> Option<String> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(p)
        .ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut buf = vec![0u8; 4096];
    let n = f.read_at(&mut buf, 0).ok()?;
    buf.truncate(n);
    String::from_utf8(buf).ok()
}

/// Reads exactly `len` bytes at `off` from a block device or image file (never a FIFO or a
/// character device).
fn read_range(node: &Path, off: u64, len: usize) -> Option<Vec<u8>> {
    let md = std::fs::metadata(node).ok()?;
    if !(md.file_type().is_block_device() || md.file_type().is_file()) {
        return None;
    }
    let f = File::open(node).ok()?;
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, off).ok()?;
    Some(buf)
}

/// One GPT partition entry: its name and unique GUID (lower case, as udev prints it).
#[derive(Debug, PartialEq, Eq)]
pub struct GptEntry {
    pub name: String,
    pub uuid: String,
}

/// The GPT entry of the partition whose sysfs directory is `part` (its `partition` number, the
/// parent disk found through the sysfs link), read from the parent disk's node under `dev`.
fn gpt_of(part: &Path, dev: &Path) -> Option<GptEntry> {
    let number: u32 = read_small(&part.join("partition"))?.trim().parse().ok()?;
    let real = std::fs::canonicalize(part).ok()?;
    let disk_dir = real.parent()?;
    let disk = disk_dir.file_name()?.to_str()?.to_string();
    let lbs: u64 = read_small(&disk_dir.join("queue/logical_block_size"))
        .and_then(|s| s.trim().parse().ok())
        .filter(|n| [512, 1024, 2048, 4096].contains(n))
        .unwrap_or(512);
    gpt_entry(&dev.join(disk), lbs, number)
}

/// Entry `number` (1-based) of the GPT on `disk` with logical blocks of `lbs` bytes.
pub fn gpt_entry(disk: &Path, lbs: u64, number: u32) -> Option<GptEntry> {
    let hdr = read_range(disk, lbs, 92)?;
    if &hdr[0..8] != b"EFI PART" {
        return None;
    }
    let u64_at = |b: &[u8], o: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[o..o + 8]);
        u64::from_le_bytes(a)
    };
    let u32_at = |b: &[u8], o: usize| {
        let mut a = [0u8; 4];
        a.copy_from_slice(&b[o..o + 4]);
        u32::from_le_bytes(a)
    };
    let table = u64_at(&hdr, 72);
    let count = u32_at(&hdr, 80);
    let size = u32_at(&hdr, 84);
    if number == 0 || number > count || !(128..=4096).contains(&size) {
        return None;
    }
    let off = table
        .checked_mul(lbs)?
        .checked_add(u64::from(number - 1) * u64::from(size))?;
    let e = read_range(disk, off, 128)?;
    if e[0..16].iter().all(|&b| b == 0) {
        return None; // unused entry
    }
    let units: Vec<u16> = e[56..128]
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    Some(GptEntry {
        name: String::from_utf16_lossy(&units),
        uuid: guid(&e[16..32]),
    })
}

/// A GUID in its mixed-endian on-disk layout, printed the usual way.
fn guid(b: &[u8]) -> String {
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{}",
        b[3],
        b[2],
        b[1],
        b[0],
        b[5],
        b[4],
        b[7],
        b[6],
        b[8],
        b[9],
        crate::util::hex(&b[10..16])
    )
}

/// A file system's label and UUID as blkid prints them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FsIdent {
    pub label: Option<String>,
    pub uuid: Option<String>,
}

/// The label and UUID of an ext2/3/4 or FAT file system on `node`.
pub fn fs_ident(node: &Path) -> Option<FsIdent> {
    let b = read_range(node, 0, 2048)?;
    let text = |r: &[u8]| {
        let s = String::from_utf8_lossy(r)
            .trim_end_matches(['\0', ' '])
            .to_string();
        (!s.is_empty()).then_some(s)
    };
    if b[1080..1082] == [0x53, 0xEF] {
        let u = &b[1128..1144];
        let uuid = format!(
            "{}-{}-{}-{}-{}",
            crate::util::hex(&u[0..4]),
            crate::util::hex(&u[4..6]),
            crate::util::hex(&u[6..8]),
            crate::util::hex(&u[8..10]),
            crate::util::hex(&u[10..16])
        );
        return Some(FsIdent {
            label: text(&b[1144..1160]),
            uuid: Some(uuid),
        });
    }
    if b[510..512] == [0x55, 0xAA] {
        let (label, id) = if &b[82..87] == b"FAT32" {
            (&b[71..82], &b[67..71])
        } else if &b[54..57] == b"FAT" {
            (&b[43..54], &b[39..43])
        } else {
            return None;
        };
        let uuid = format!("{:02X}{:02X}-{:02X}{:02X}", id[3], id[2], id[1], id[0]);
        return Some(FsIdent {
            label: text(label).filter(|l| l != "NO NAME"),
            uuid: Some(uuid),
        });
    }
    None
}

/// Where `/proc/self/mountinfo` (`text`) says the device `major:minor` is mounted with its
/// root directory, if anywhere.
pub fn mounted_at(text: &str, major: u32, minor: u32) -> Option<PathBuf> {
    let want = format!("{major}:{minor}");
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.len() > 4 && f[2] == want && f[3] == "/").then(|| PathBuf::from(unescape(f[4])))
    })
}

/// mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A registry file system made available for this run.
#[derive(Debug)]
pub struct Mounted {
    /// Where the file system is (its root is the registry).
    pub dir: PathBuf,
    /// pristine mounted it (and unmounts it when dropped).
    ours: bool,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if !self.ours {
            return;
        }
        use rustix::mount::{unmount, UnmountFlags};
        if let Err(e) = unmount(&self.dir, UnmountFlags::empty()) {
            log::warn!(
                "cannot unmount the state registry at {}: {e}; detaching it",
                self.dir.display()
            );
            let _ = unmount(&self.dir, UnmountFlags::DETACH);
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Makes the registry device `node` available: its existing mount (`mountinfo`), else mounted
/// by pristine (`fstype`, nosuid, nodev, noexec) on the new private directory `dir`.
pub fn attach(node: &Path, fstype: &str, mountinfo: &str, dir: &Path) -> Result<Mounted> {
    if !FSTYPES.contains(&fstype) {
        return Err(Error::msg(
            format!("mount the state device '{}'", node.display()),
            format!(
                "[state] fstype '{fstype}' is not one of {}",
                FSTYPES.join(", ")
            ),
        ));
    }
    let md = std::fs::metadata(node).op("find the state device", node)?;
    if !md.file_type().is_block_device() {
        return Err(Error::invalid(
            "use the state device",
            node,
            "not a block device (attach an image file with losetup first)",
        ));
    }
    let rdev = md.rdev();
    let (major, minor) = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
    if let Some(dir) = mounted_at(mountinfo, major, minor) {
        log::debug!(
            "state registry: {} is mounted on {}",
            node.display(),
            dir.display()
        );
        return Ok(Mounted { dir, ours: false });
    }
    let dir = dir.to_path_buf();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .op("create the mount point", &dir)?;
    use rustix::mount::{mount, MountFlags};
    let data: Option<&std::ffi::CStr> = (fstype == "vfat").then_some(c"quiet,umask=0077");
    mount(
        node,
        &dir,
        fstype,
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        data,
    )
    .map_err(std::io::Error::from)
    .op(format!("mount '{}' ({fstype}) on", node.display()), &dir)?;
    log::debug!(
        "state registry: mounted {} on {}",
        node.display(),
        dir.display()
    );
    Ok(Mounted { dir, ours: true })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn guid_bytes(s: &str) -> [u8; 16] {
        let h: String = s.chars().filter(|c| *c != '-').collect();
        let raw: Vec<u8> = (0..16)
            .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).expect("hex"))
            .collect();
        let mut b = [0u8; 16];
        b.copy_from_slice(&raw);
        b[0..4].reverse();
        b[4..6].reverse();
        b[6..8].reverse();
        b
    }

    /// A disk image with a GPT of two partitions (entries at LBA 2, 512-byte blocks).
    fn gpt_disk(parts: &[(&str, &str)]) -> Vec<u8> {
        let mut img = vec![0u8; 512 * 40];
        img[512..520].copy_from_slice(b"EFI PART");
        img[512 + 72..512 + 80].copy_from_slice(&2u64.to_le_bytes());
        img[512 + 80..512 + 84].copy_from_slice(&128u32.to_le_bytes());
        img[512 + 84..512 + 88].copy_from_slice(&128u32.to_le_bytes());
        for (i, (name, uuid)) in parts.iter().enumerate() {
            let e = 1024 + i * 128;
            img[e] = 0xaf; // any non-zero type GUID
            img[e + 16..e + 32].copy_from_slice(&guid_bytes(uuid));
            for (j, u) in name.encode_utf16().enumerate() {
                img[e + 56 + 2 * j..e + 58 + 2 * j].copy_from_slice(&u.to_le_bytes());
            }
        }
        img
    }

    fn ext4_image(label: &str, uuid: &str) -> Vec<u8> {
        let mut img = vec![0u8; 4096];
        img[1080..1082].copy_from_slice(&[0x53, 0xEF]);
        let u: Vec<u8> = uuid
            .replace('-', "")
            .as_bytes()
            .chunks(2)
            .map(|c| u8::from_str_radix(std::str::from_utf8(c).expect("utf8"), 16).expect("hex"))
            .collect();
        img[1128..1144].copy_from_slice(&u);
        img[1144..1144 + label.len()].copy_from_slice(label.as_bytes());
        img
    }

    fn fat32_image(label: &str, id: u32) -> Vec<u8> {
        let mut img = vec![0u8; 4096];
        img[510..512].copy_from_slice(&[0x55, 0xAA]);
        img[82..90].copy_from_slice(b"FAT32   ");
        img[67..71].copy_from_slice(&id.to_le_bytes());
        let mut l = [b' '; 11];
        l[..label.len()].copy_from_slice(label.as_bytes());
        img[71..82].copy_from_slice(&l);
        img
    }

    /// A synthetic /sys and /dev: disk `vda` with partitions `vda1` (GPT name "esp") and
    /// `vda2` ("pristine-state", ext4 "state"), and a FAT32 `sdb` without a partition table.
    fn tree(tag: &str, partname_in_uevent: bool) -> PathBuf {
        let d = crate::util::test_dir(tag);
        let sys = d.join("sys");
        let dev = d.join("dev");
        let disk = sys.join("devices/virtual/block/vda");
        for p in ["vda1", "vda2"] {
            std::fs::create_dir_all(disk.join(p)).expect("mkdir");
        }
        std::fs::create_dir_all(disk.join("queue")).expect("mkdir");
        std::fs::create_dir_all(sys.join("devices/virtual/block/sdb")).expect("mkdir");
        std::fs::create_dir_all(sys.join("class/block")).expect("mkdir");
        std::fs::create_dir_all(&dev).expect("mkdir");
        std::fs::write(disk.join("queue/logical_block_size"), "512\n").expect("write");
        std::fs::write(disk.join("uevent"), "DEVTYPE=disk\nDEVNAME=vda\n").expect("write");
        for (i, (p, name)) in [("vda1", "esp"), ("vda2", "pristine-state")]
            .iter()
            .enumerate()
        {
            let mut ev = format!("DEVTYPE=partition\nPARTN={}\nDEVNAME={p}\n", i + 1);
            if partname_in_uevent {
                ev.push_str(&format!("PARTNAME={name}\n"));
            }
            std::fs::write(disk.join(p).join("uevent"), ev).expect("write");
            std::fs::write(disk.join(p).join("partition"), format!("{}\n", i + 1)).expect("write");
            symlink(disk.join(p), sys.join("class/block").join(p)).expect("link");
        }
        symlink(&disk, sys.join("class/block/vda")).expect("link");
        std::fs::write(
            sys.join("devices/virtual/block/sdb/uevent"),
            "DEVTYPE=disk\nDEVNAME=sdb\n",
        )
        .expect("write");
        symlink(
            sys.join("devices/virtual/block/sdb"),
            sys.join("class/block/sdb"),
        )
        .expect("link");
        std::fs::write(
            dev.join("vda"),
            gpt_disk(&[
                ("esp", "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"),
                ("pristine-state", "0fc63daf-8483-4772-8e79-3d69d8477de4"),
            ]),
        )
        .expect("write");
        std::fs::write(dev.join("vda1"), fat32_image("EFI", 0x1234_abcd)).expect("write");
        std::fs::write(
            dev.join("vda2"),
            ext4_image("state", "6f1c2a3b-4d5e-4f60-8a9b-0c1d2e3f4a5b"),
        )
        .expect("write");
        std::fs::write(dev.join("sdb"), fat32_image("STICK", 0x0102_0304)).expect("write");
        d
    }

    #[test]
    fn resolves_by_partlabel_partuuid_label_and_uuid_without_udev() {
        for uevent in [true, false] {
            let d = tree(&format!("state-device-scan-{uevent}"), uevent);
            let (sys, dev) = (d.join("sys"), d.join("dev"));
            let r = |s: &str| resolve(&Spec::parse(s).expect("spec"), &sys, &dev);
            assert_eq!(
                r("PARTLABEL=pristine-state").expect("partlabel"),
                dev.join("vda2")
            );
            assert_eq!(
                r("PARTUUID=0FC63DAF-8483-4772-8E79-3D69D8477DE4").expect("partuuid"),
                dev.join("vda2")
            );
            assert_eq!(r("LABEL=state").expect("label"), dev.join("vda2"));
            assert_eq!(r("LABEL=STICK").expect("fat label"), dev.join("sdb"));
            assert_eq!(r("UUID=0102-0304").expect("fat uuid"), dev.join("sdb"));
            assert_eq!(
                r("UUID=6f1c2a3b-4d5e-4f60-8a9b-0c1d2e3f4a5b").expect("ext uuid"),
                dev.join("vda2")
            );
            assert_eq!(r("/dev/vdz").expect("path"), dev.join("vdz"));
            let e = r("PARTLABEL=nope").expect_err("missing");
            assert!(e.to_string().contains("no block device matches"), "{e}");
            let _ = std::fs::remove_dir_all(&d);
        }
    }

    fn mkfifo(p: &Path) {
        let st = std::process::Command::new("mkfifo")
            .arg(p)
            .status()
            .expect("mkfifo");
        assert!(st.success(), "mkfifo {}", p.display());
    }

    #[test]
    fn hostile_sysfs_and_disks_are_skipped_not_followed() {
        let d = tree("state-device-hostile", false);
        let (sys, dev) = (d.join("sys"), d.join("dev"));
        let part = sys.join("devices/virtual/block/vda/vda2");
        // A FIFO where the partition number belongs: skipped without blocking.
        std::fs::remove_file(part.join("partition")).expect("rm");
        mkfifo(&part.join("partition"));
        assert_eq!(read_small(&part.join("partition")), None);
        let r = |s: &str| resolve(&Spec::parse(s).expect("spec"), &sys, &dev);
        assert!(r("PARTLABEL=pristine-state").is_err());
        // A truncated disk, a huge entry count and a bad entry size: no entry, no panic.
        let full = gpt_disk(&[("a", "c12a7328-f81f-11d2-ba4b-00a0c93ec93b")]);
        let disk = d.join("disk");
        std::fs::write(&disk, &full[..600]).expect("write");
        assert_eq!(gpt_entry(&disk, 512, 1), None);
        let mut huge = full.clone();
        huge[512 + 72..512 + 80].copy_from_slice(&u64::MAX.to_le_bytes());
        std::fs::write(&disk, &huge).expect("write");
        assert_eq!(gpt_entry(&disk, 512, 1), None);
        let mut bad = full.clone();
        bad[512 + 84..512 + 88].copy_from_slice(&7u32.to_le_bytes());
        std::fs::write(&disk, &bad).expect("write");
        assert_eq!(gpt_entry(&disk, 512, 1), None);
        assert_eq!(gpt_entry(&disk, 512, u32::MAX), None);
        // A FIFO or a symlink loop in place of a device node: not read.
        let fifo = d.join("fifo");
        mkfifo(&fifo);
        assert_eq!(gpt_entry(&fifo, 512, 1), None);
        assert!(fs_ident(&fifo).is_none());
        symlink(d.join("loop"), d.join("loop")).expect("link");
        assert_eq!(gpt_entry(&d.join("loop"), 512, 1), None);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn udev_links_win_and_ambiguity_is_an_error() {
        let d = tree("state-device-udev", true);
        let (sys, dev) = (d.join("sys"), d.join("dev"));
        std::fs::create_dir_all(dev.join("disk/by-label")).expect("mkdir");
        symlink("../../sdb", dev.join("disk/by-label/other")).expect("link");
        let r = |s: &str| resolve(&Spec::parse(s).expect("spec"), &sys, &dev);
        assert_eq!(
            r("LABEL=other").expect("by link"),
            std::fs::canonicalize(dev.join("sdb")).expect("canon")
        );
        // A second file system labelled "state": refused, both named.
        std::fs::write(
            dev.join("sdb"),
            ext4_image("state", "00000000-0000-0000-0000-000000000001"),
        )
        .expect("write");
        let e = r("LABEL=state").expect_err("ambiguous");
        assert!(e.to_string().contains("2 devices"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn bad_specs_and_mountinfo() {
        for s in [
            "",
            "LABEL=",
            "/dev/../etc/shadow",
            "state",
            "PARTLABEL=a\0b",
        ] {
            assert!(Spec::parse(s).is_err(), "{s:?}");
        }
        let mi = "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n\
                  40 22 259:3 /sub /mnt/x rw - ext4 /dev/vdb rw\n\
                  41 22 259:3 / /run/my\\040state rw - ext4 /dev/vdb rw\n";
        assert_eq!(mounted_at(mi, 259, 3), Some(PathBuf::from("/run/my state")));
        assert_eq!(mounted_at(mi, 8, 2), None);
        let e = attach(
            Path::new("/dev/null"),
            "ext4",
            "",
            Path::new("/nonexistent"),
        )
        .expect_err("not a block device");
        assert!(e.to_string().contains("not a block device"), "{e}");
        assert!(attach(Path::new("/dev/null"), "ntfs", "", Path::new("/x")).is_err());
    }
}
