//! The running system's values behind systemd's specifiers (`%b %H %l %q %v %u %U %g %G %h %T
//! %V`): systemd-tmpfiles and systemd-sysusers take these from the system they run on even
//! with `--root`, so pristine does too, to agree with them byte for byte. Observed once here;
//! the engines get them inside [`super::HostFacts`] and never read them themselves.

use std::path::Path;

use crate::fs::Root;
use crate::text::envfile;
use crate::text::specifier::{parse_machine_id, Running, SystemValues};

/// Specifier values of the running system (the data type lives in `text`, which is pure).
pub type RunningSystem = Running;

fn name_of(db: &str, id: u32) -> Option<String> {
    db.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let _ = f.next()?;
        let n: u32 = f.next()?.parse().ok()?;
        (n == id).then(|| name.to_string())
    })
}

impl Running {
    /// Observes the running system (uname, ids, `/proc`, the host's own `/etc`).
    pub fn observe() -> Running {
        let boot_id = super::read_text(Path::new("/proc/sys/kernel/random/boot_id"))
            .map(|s| s.trim().replace('-', ""))
            .ok_or_else(|| "cannot read /proc/sys/kernel/random/boot_id".to_string());
        let uts = rustix::system::uname();
        let pretty_hostname = super::read_text(Path::new("/etc/machine-info"))
            .and_then(|t| envfile::get(&t, "PRETTY_HOSTNAME"))
            .filter(|s| !s.is_empty());
        let uid = rustix::process::getuid();
        let gid = rustix::process::getgid().as_raw();
        let passwd = super::read_text(Path::new("/etc/passwd")).unwrap_or_default();
        let group = super::read_text(Path::new("/etc/group")).unwrap_or_default();
        let uname = name_of(&passwd, uid.as_raw()).unwrap_or_else(|| uid.as_raw().to_string());
        let gname = name_of(&group, gid).unwrap_or_else(|| gid.to_string());
        let home = match std::env::var("HOME") {
            Ok(h) if h.starts_with('/') => h,
            _ if uid.is_root() => "/root".into(),
            _ => "/".into(),
        };
        let tmp_dir = ["TMPDIR", "TEMP", "TMP"]
            .iter()
            .find_map(|k| std::env::var(k).ok().filter(|v| v.starts_with('/')));
        Running {
            boot_id,
            hostname: uts.nodename().to_string_lossy().into_owned(),
            pretty_hostname,
            kernel_release: uts.release().to_string_lossy().into_owned(),
            user: (uname, uid.as_raw()),
            group: (gname, gid),
            home,
            tmp_dir,
        }
    }

    /// The specifier values for `root`: os-release and machine-id from the tree, the rest
    /// from the running system.
    pub fn system_values(&self, root: &Root, has_root: bool) -> SystemValues {
        let machine_id =
            match root.read_optional_max(Path::new("etc/machine-id"), crate::fs::limits::SMALL) {
                Ok(Some(s)) => parse_machine_id(&s),
                Ok(None) => Err("no /etc/machine-id".into()),
                Err(e) => Err(e.to_string()),
            };
        SystemValues {
            os_release: crate::config::os_release::read(root).map(|o| o.fields),
            machine_id,
            running: self.clone(),
            has_root,
        }
    }
}
