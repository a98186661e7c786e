//! Host-side runtime files: the few things pristine changes outside the target tree, on a boot
//! run only (its device node under `/run/pristine`, the EFI variables that request a factory
//! reset). They are host paths, not in-root paths, so they do not go through [`super::Root`];
//! they are here so that every mutating call stays in `src/fs`. None of them is a
//! fault-injection point: the crash tests exercise the target tree.

use std::io;
use std::path::Path;

use rustix::fs::{FileType, Mode};

/// Removes the file `p` if it exists (`Ok(false)` if it did not), first clearing the
/// immutable attribute efivarfs puts on variables (best effort: a file system without
/// attributes just refuses the removal, which is the error returned).
pub fn remove_file(p: &Path) -> io::Result<bool> {
    match std::fs::File::open(p) {
        Ok(f) => {
            if let Ok(flags) = rustix::fs::ioctl_getflags(&f) {
                if flags.contains(rustix::fs::IFlags::IMMUTABLE) {
                    let _ = rustix::fs::ioctl_setflags(&f, flags - rustix::fs::IFlags::IMMUTABLE);
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    }
    match std::fs::remove_file(p) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Makes the block device node `p` for `dev` (major, minor) with `mode`, creating its parent
/// directories and replacing whatever was at `p`.
pub fn block_node(p: &Path, dev: (u32, u32), mode: u32) -> io::Result<()> {
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::remove_file(p) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    Ok(rustix::fs::mknodat(
        rustix::fs::CWD,
        p,
        FileType::BlockDevice,
        Mode::from_raw_mode(mode),
        rustix::fs::makedev(dev.0, dev.1),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_file_says_whether_it_was_there() {
        let d = crate::util::test_dir("fs-host-runtime");
        let p = d.join("var");
        std::fs::write(&p, "x").unwrap();
        assert!(remove_file(&p).unwrap());
        assert!(!p.exists());
        assert!(!remove_file(&p).unwrap());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
