//! Device-mapper: creates a read-only dm-verity mapping through the kernel's
//! `/dev/mapper/control` ioctls (create the device, load a one-target table, resume it) and
//! removes a mapping again. This is the one module of the update code allowed `unsafe`: the
//! `ioctl(2)` calls, each with its `// SAFETY:` argument. Everything else (the ioctl buffer
//! layout, the table) is plain byte handling that the tests check.
//!
//! Must never map anything writable, never pass the kernel a buffer shorter than the size it
//! is told, and never leave a half-made mapping behind (a failed load removes the device).
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::fs::File;
use std::os::fd::AsFd;

use rustix::ioctl::{opcode, Ioctl, IoctlOutput, Opcode};

use crate::error::{Error, IoContext, Result};

const CONTROL: &str = "/dev/mapper/control";
/// `struct dm_ioctl` (include/uapi/linux/dm-ioctl.h), 312 bytes.
const HEADER: usize = 312;
const NAME_LEN: usize = 128;
const UUID_LEN: usize = 129;
/// `struct dm_target_spec`, 40 bytes.
const SPEC: usize = 40;
const DM_READONLY_FLAG: u32 = 1;
const DM_IOCTL_TYPE: u8 = 0xfd;
const DM_DEV_CREATE: u8 = 3;
const DM_DEV_REMOVE: u8 = 4;
const DM_DEV_SUSPEND: u8 = 6;
const DM_TABLE_LOAD: u8 = 9;
/// Room for what the kernel writes back (it never writes beyond `data_size`).
const BUFFER: usize = 16 * 1024;

/// One device-mapper ioctl over an 8-byte-aligned buffer that starts with a `dm_ioctl` header.
struct Cmd<'a> {
    nr: u8,
    buf: &'a mut [u64],
}

// SAFETY: the opcode is _IOWR(0xfd, nr, struct dm_ioctl), which is how every device-mapper
// command is declared; the pointer is to `buf`, which is 8-byte aligned, at least `HEADER`
// bytes long and exactly as long as the header's `data_size` field says (set by `header`), so
// the kernel reads and writes only inside it; the output is the return value only.
unsafe impl Ioctl for Cmd<'_> {
    type Output = ();
    const IS_MUTATING: bool = true;

    fn opcode(&self) -> Opcode {
        opcode::read_write::<[u8; HEADER]>(DM_IOCTL_TYPE, self.nr)
    }

    fn as_ptr(&mut self) -> *mut c_void {
        self.buf.as_mut_ptr().cast()
    }

    unsafe fn output_from_ptr(_out: IoctlOutput, _ptr: *mut c_void) -> rustix::io::Result<()> {
        Ok(())
    }
}

/// A request: the `dm_ioctl` header for `name`, then `payload` at `data_start` = 312.
fn request(name: &str, flags: u32, target_count: u32, payload: &[u8]) -> Result<Vec<u8>> {
    if name.is_empty() || name.len() >= NAME_LEN || name.contains('/') {
        return Err(Error::msg(
            "build device-mapper request",
            format!("bad device-mapper name '{name}'"),
        ));
    }
    let size = (HEADER + payload.len()).max(BUFFER).div_ceil(8) * 8;
    let mut b = vec![0u8; size];
    for (i, v) in [4u32, 0, 0].iter().enumerate() {
        b[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
    }
    let size32 = u32::try_from(size).map_err(|_| {
        Error::msg(
            "build device-mapper request",
            "device-mapper request too large",
        )
    })?;
    b[12..16].copy_from_slice(&size32.to_le_bytes());
    b[16..20].copy_from_slice(&(HEADER as u32).to_le_bytes());
    b[20..24].copy_from_slice(&target_count.to_le_bytes());
    b[28..32].copy_from_slice(&flags.to_le_bytes());
    b[48..48 + name.len()].copy_from_slice(name.as_bytes());
    let _ = UUID_LEN; // the uuid field (176..305) stays empty
    b[HEADER..HEADER + payload.len()].copy_from_slice(payload);
    Ok(b)
}

/// The payload of a one-target table: `dm_target_spec` and the NUL-terminated parameters.
fn target(sectors: u64, kind: &str, params: &str) -> Result<Vec<u8>> {
    let bad = |why| Error::msg("build device-mapper table", why);
    if kind.len() >= 16 || params.contains('\0') {
        return Err(bad("bad device-mapper target"));
    }
    let len = (SPEC + params.len() + 1).div_ceil(8) * 8;
    let mut b = vec![0u8; len];
    b[8..16].copy_from_slice(&sectors.to_le_bytes());
    let next = u32::try_from(len).map_err(|_| bad("device-mapper table too large"))?;
    b[20..24].copy_from_slice(&next.to_le_bytes());
    b[24..24 + kind.len()].copy_from_slice(kind.as_bytes());
    b[SPEC..SPEC + params.len()].copy_from_slice(params.as_bytes());
    Ok(b)
}

/// Runs one command; returns the header's `dev` field as the kernel left it.
fn run(control: &File, nr: u8, req: &[u8]) -> rustix::io::Result<u64> {
    let mut words: Vec<u64> = req
        .chunks(8)
        .map(|c| {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            u64::from_le_bytes(w)
        })
        .collect();
    let cmd = Cmd {
        nr,
        buf: &mut words,
    };
    // SAFETY: `control` is an open descriptor of /dev/mapper/control and `cmd` satisfies the
    // contract of its `Ioctl` impl (see there): the buffer outlives the call and is as large as
    // its header says.
    unsafe { rustix::ioctl::ioctl(control.as_fd(), cmd) }?;
    // dm_ioctl.dev is at byte 40, i.e. word 5.
    Ok(words.get(5).copied().unwrap_or(0))
}

/// Splits the kernel's `huge_encode_dev` form into (major, minor).
fn decode_dev(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xfff) as u32;
    let minor = ((dev & 0xff) | ((dev >> 12) & 0xfff00)) as u32;
    (major, minor)
}

/// Creates the read-only mapping `name` with one `kind` target of `sectors` 512-byte sectors
/// and `params`, and activates it. Returns the new device's (major, minor).
pub fn create(name: &str, sectors: u64, kind: &str, params: &str) -> Result<(u32, u32)> {
    let control = File::options()
        .read(true)
        .write(true)
        .open(CONTROL)
        .op("open (is the dm_mod module loaded?)", CONTROL)?;
    let node = mapper_path(name);
    let dev = run(&control, DM_DEV_CREATE, &request(name, 0, 0, &[])?)
        .map_err(|e| Error::io("create device-mapper device", &node, e.into()))?;
    let loaded = target(sectors, kind, params)
        .and_then(|t| request(name, DM_READONLY_FLAG, 1, &t))
        .and_then(|req| {
            run(&control, DM_TABLE_LOAD, &req)
                .map_err(|e| Error::io(format!("load the {kind} table of"), &node, e.into()))
        })
        .and_then(|_| {
            // DM_DEV_SUSPEND without DM_SUSPEND_FLAG resumes: the loaded table goes live.
            run(
                &control,
                DM_DEV_SUSPEND,
                &request(name, DM_READONLY_FLAG, 0, &[])?,
            )
            .map_err(|e| Error::io("activate", &node, e.into()))
        });
    if let Err(e) = loaded {
        let _ = remove_with(&control, name);
        return Err(e);
    }
    Ok(decode_dev(dev))
}

fn remove_with(control: &File, name: &str) -> Result<()> {
    run(control, DM_DEV_REMOVE, &request(name, 0, 0, &[])?)
        .map(|_| ())
        .map_err(|e| Error::io("remove device-mapper device", mapper_path(name), e.into()))
}

/// The path a mapping is known by, for messages.
fn mapper_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new("/dev/mapper").join(name)
}

/// Removes the mapping `name`.
pub fn remove(name: &str) -> Result<()> {
    let control = File::options()
        .read(true)
        .write(true)
        .open(CONTROL)
        .op("open", CONTROL)?;
    remove_with(&control, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_layout() {
        let t = target(2048, "verity", "1 8:1 8:1 4096 4096 256 257 sha256 ab cd").unwrap();
        assert_eq!(t.len() % 8, 0);
        assert_eq!(&t[8..16], &2048u64.to_le_bytes());
        assert_eq!(
            u32::from_le_bytes(t[20..24].try_into().unwrap()) as usize,
            t.len()
        );
        assert_eq!(&t[24..30], b"verity");
        assert_eq!(t[SPEC + 41], 0);
        let r = request("pristine-usr", DM_READONLY_FLAG, 1, &t).unwrap();
        assert_eq!(r.len() % 8, 0);
        assert_eq!(&r[..4], &4u32.to_le_bytes());
        assert_eq!(
            u32::from_le_bytes(r[12..16].try_into().unwrap()) as usize,
            r.len()
        );
        assert_eq!(&r[16..20], &312u32.to_le_bytes());
        assert_eq!(&r[20..24], &1u32.to_le_bytes());
        assert_eq!(&r[28..32], &1u32.to_le_bytes());
        assert_eq!(&r[48..60], b"pristine-usr");
        assert_eq!(&r[HEADER..HEADER + t.len()], &t[..]);
        assert!(request("", 0, 0, &[]).is_err());
        assert!(request(&"x".repeat(128), 0, 0, &[]).is_err());
        assert!(target(1, "verity", "a\0b").is_err());
        // 253:0 and 259:300 as huge_encode_dev writes them.
        assert_eq!(decode_dev(253 << 8), (253, 0));
        assert_eq!(decode_dev((259 << 8) | 44 | (256 << 12)), (259, 300));
    }
}
