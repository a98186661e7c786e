//! The host view: everything pristine takes from outside the tree it works on, observed once per
//! run and handed to every engine as a [`HostFacts`] value.
//!
//! It owns the global options ([`Common`]: `--root`, `--cmdline`, `--credentials`, `--efivars`,
//! `--smbios-uuid`, `--log-level`) and turns them into facts: the kernel command line (parsed
//! once), whether we run in the initrd, the boot id, the credentials directory, the efivarfs
//! directory, the SMBIOS/DMI identity, the host's runtime directory and whether this run is the
//! boot of the root it provisions. The rule: an offline run (`--root` outside the initrd) takes
//! nothing from the host unless a flag passes it in, and writes nothing outside the root (no
//! runtime directory, no EFI variable). The only host values an offline run still reads are the
//! specifier values systemd's own tools take from the running system under `--root`
//! ([`RunningSystem`]), so that the differential tests keep agreeing byte for byte.
//!
//! No engine reads `/proc`, `/sys`, `/run` or the environment for these facts itself. This
//! module only reads; its one mutation, [`efi::clear_reset_request`], is for the reset to call
//! on the directory `HostFacts::efivars` names, and only when it names one.

pub mod efi;
pub mod running;

use std::path::{Path, PathBuf};

use crate::config::cmdline::{self, KernelOptions};
use crate::config::credentials::Credentials;
use crate::report::EXIT_FATAL;
use crate::text::specifier::parse_machine_id;

pub use running::RunningSystem;

/// The default efivarfs mount.
pub const DEFAULT_EFIVARS: &str = "/sys/firmware/efi/efivars";
/// The default credentials directory of a booted system (and of the initrd).
pub const DEFAULT_CREDENTIALS: &str = "/run/credentials/@system";

/// Options shared by every verb: the root and the host inputs passed in by flags.
#[derive(Clone, Debug, Default)]
pub struct Common {
    /// `--root=DIR`: operate on this tree instead of `/` (or `/sysroot` in an initrd).
    pub root: Option<PathBuf>,
    /// `--cmdline=STRING`: use this instead of `/proc/cmdline`.
    pub cmdline: Option<String>,
    /// `--efivars=DIR`: efivarfs directory (default `/sys/firmware/efi/efivars` on a boot run).
    pub efivars: Option<PathBuf>,
    /// `--credentials=DIR`: system credentials (default `$CREDENTIALS_DIRECTORY`, else
    /// `/run/credentials/@system` on a boot run).
    pub credentials: Option<PathBuf>,
    /// `--smbios-uuid=UUID`: the SMBIOS product UUID to use as the firmware's machine id
    /// (default: the host's DMI data on a boot run; none offline).
    pub smbios_uuid: Option<String>,
    /// `--log-level=LEVEL`.
    pub log_level: Option<log::LevelFilter>,
    /// `--state-device=PATH`: the block device of the state registry (`[state] device`); the
    /// only way an offline run mounts one.
    pub state_device: Option<PathBuf>,
}

impl Common {
    /// The root the verb works on: `--root`, else `/sysroot` in an initrd, else `/`.
    pub fn root_path(&self) -> PathBuf {
        match &self.root {
            Some(r) => r.clone(),
            None if crate::logging::in_initrd() => PathBuf::from("/sysroot"),
            None => PathBuf::from("/"),
        }
    }

    /// Whether a root other than the running system was named.
    pub fn has_root(&self) -> bool {
        self.root.is_some() || crate::logging::in_initrd()
    }

    /// Opens the root handle, logging a fatal error on failure.
    pub fn open_root(&self) -> Result<crate::fs::Root, u8> {
        let p = self.root_path();
        crate::fs::Root::open(&p).map_err(|e| {
            log::error!("Failed to open root directory {}: {e}", p.display());
            EXIT_FATAL
        })
    }
}

/// SMBIOS/DMI identity of the machine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Smbios {
    /// SMBIOS product UUID, as 32 lower-case hex digits.
    pub product_uuid: Option<String>,
    /// Running in one of the VMs whose product UUID systemd trusts as a machine id.
    pub trusted_vm: bool,
}

impl Smbios {
    /// Reads DMI data from sysfs.
    fn observe() -> Smbios {
        let read = |f: &str| {
            read_text(&Path::new("/sys/class/dmi/id").join(f)).map(|s| s.trim().to_string())
        };
        let product_uuid = read("product_uuid").and_then(|u| normalize_uuid(&u));
        let vendor = [
            read("sys_vendor"),
            read("board_vendor"),
            read("bios_vendor"),
            read("product_name"),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
        let trusted_vm = ["QEMU", "KVM", "Amazon EC2", "Xen", "BHYVE"]
            .iter()
            .any(|v| vendor.contains(v));
        Smbios {
            product_uuid,
            trusted_vm,
        }
    }
}

/// Largest host file read as text here (`/proc/cmdline`, DMI fields, boot id).
const MAX_HOST_TEXT: u64 = 64 * 1024;

/// Reads a small host file (`/proc`, `/sys`) as text, at most [`MAX_HOST_TEXT`] bytes;
/// `None` when it is missing or unreadable.
pub(crate) fn read_text(path: &Path) -> Option<String> {
    use std::io::Read as _;
    let mut s = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_HOST_TEXT)
        .read_to_string(&mut s)
        .ok()?;
    Some(s)
}

/// A UUID (with or without dashes) as a machine id, if valid.
pub fn normalize_uuid(u: &str) -> Option<String> {
    parse_machine_id(&u.trim().replace('-', "").to_ascii_lowercase()).ok()
}

/// Everything pristine takes from the host, observed once.
#[derive(Clone, Debug, Default)]
pub struct HostFacts {
    /// Running inside an initrd.
    pub in_initrd: bool,
    /// This run provisions the running boot (in the initrd, or the root is `/`), not an image.
    pub boot: bool,
    /// The kernel command line's options (`--cmdline`, else `/proc/cmdline` on a boot run,
    /// else empty), parsed once.
    pub kernel: KernelOptions,
    /// One warning per kernel command line option that was ignored.
    pub kernel_warnings: Vec<String>,
    /// The running boot id (32 hex digits) on a boot run or with `--efivars=`, for 258-style
    /// reset requests.
    pub boot_id: Option<String>,
    /// Where system credentials come from.
    pub credentials: Credentials,
    /// The efivarfs directory, or `None`: no EFI variable is read or written.
    pub efivars: Option<PathBuf>,
    /// SMBIOS/DMI identity (empty offline unless `--smbios-uuid` is given).
    pub smbios: Smbios,
    /// The host's runtime directory for pristine (`/run/pristine`, `$PRISTINE_RUNTIME_DIR` for
    /// tests) on a boot run; `None` offline.
    pub runtime_dir: Option<PathBuf>,
    /// The state registry's block device: `--state-device`; `None` leaves a boot run to find
    /// `[state] device` itself and an offline run without a device registry.
    pub state_device: Option<PathBuf>,
    /// Values of the specifiers systemd takes from the running system.
    pub running: RunningSystem,
}

impl HostFacts {
    /// Observes the host as the options allow.
    pub fn observe(common: &Common) -> HostFacts {
        let in_initrd = crate::logging::in_initrd();
        let boot = in_initrd || common.root_path() == Path::new("/");
        Self::observe_as(common, in_initrd, boot)
    }

    /// [`HostFacts::observe`] with the initrd and boot decisions given (tests).
    pub fn observe_as(common: &Common, in_initrd: bool, boot: bool) -> HostFacts {
        let line = match &common.cmdline {
            Some(c) => c.clone(),
            None if boot => read_text(Path::new("/proc/cmdline")).unwrap_or_default(),
            None => String::new(),
        };
        let (kernel, kernel_warnings) = cmdline::parse(&line, in_initrd);
        // The boot id only matters next to EFI variables (258-style reset requests name the
        // boot they were made in): read on a boot run, or when `--efivars=` passes them in.
        let boot_id = (boot || common.efivars.is_some())
            .then(|| read_text(Path::new("/proc/sys/kernel/random/boot_id")))
            .flatten()
            .map(|s| s.trim().replace('-', ""));
        let credentials = match &common.credentials {
            Some(d) => Credentials::from_dir(Some(d.clone())),
            None => Credentials::from_env(boot.then_some(Path::new(DEFAULT_CREDENTIALS))),
        };
        let efivars = common
            .efivars
            .clone()
            .or_else(|| boot.then(|| PathBuf::from(DEFAULT_EFIVARS)));
        let smbios = match &common.smbios_uuid {
            Some(u) => Smbios {
                product_uuid: normalize_uuid(u),
                trusted_vm: true,
            },
            None if boot => Smbios::observe(),
            None => Smbios::default(),
        };
        let runtime_dir = boot.then(|| {
            std::env::var_os("PRISTINE_RUNTIME_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/run/pristine"))
        });
        HostFacts {
            in_initrd,
            boot,
            kernel,
            kernel_warnings,
            boot_id,
            credentials,
            efivars,
            smbios,
            runtime_dir,
            state_device: common.state_device.clone(),
            running: RunningSystem::observe(),
        }
    }

    /// The ignored kernel command line options, as notices for a run's outcome.
    pub fn kernel_diagnostics(&self) -> Vec<crate::report::Diagnostic> {
        self.kernel_warnings
            .iter()
            .map(|w| crate::report::Diagnostic::notice(None, 0, w.clone()))
            .collect()
    }

    /// Where a `transient` machine id goes: the running system's `/run/machine-id` (in the
    /// initrd, the /run PID 1 takes over) on a boot run. `None` offline: an image tree has no
    /// /run of its own and the host's is not ours, so nothing is written and the image boots
    /// with the /etc/machine-id it has (systemd then makes the transient id itself).
    pub fn transient_machine_id_path(&self) -> Option<PathBuf> {
        self.boot.then(|| PathBuf::from("/run/machine-id"))
    }

    /// An EFI variable of systemd's vendor GUID (data without the attribute word), if an
    /// efivarfs directory is in reach and holds it.
    pub fn efi_var(&self, name: &str) -> Option<Vec<u8>> {
        efi::read_var(self.efivars.as_deref()?, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_takes_nothing_unless_passed() {
        let common = Common {
            root: Some(PathBuf::from("/img")),
            ..Default::default()
        };
        let f = HostFacts::observe_as(&common, false, false);
        assert_eq!(f.kernel, KernelOptions::default());
        assert!(f.efivars.is_none());
        assert!(f.runtime_dir.is_none());
        assert!(f.boot_id.is_none());
        assert!(
            f.credentials.dir().is_none() || std::env::var_os("CREDENTIALS_DIRECTORY").is_some()
        );
        assert_eq!(f.smbios, Smbios::default());

        let common = Common {
            root: Some(PathBuf::from("/img")),
            cmdline: Some("systemd.hostname=box".into()),
            efivars: Some(PathBuf::from("/efi")),
            smbios_uuid: Some("01234567-89AB-CDEF-0123-456789ABCDEF".into()),
            credentials: Some(PathBuf::from("/creds")),
            ..Default::default()
        };
        let f = HostFacts::observe_as(&common, false, false);
        assert_eq!(f.kernel.hostname.as_deref(), Some("box"));
        assert_eq!(f.efivars.as_deref(), Some(Path::new("/efi")));
        assert_eq!(f.credentials.dir(), Some(Path::new("/creds")));
        assert_eq!(
            f.smbios.product_uuid.as_deref(),
            Some("0123456789abcdef0123456789abcdef")
        );
    }

    #[test]
    fn boot_run_defaults() {
        let f = HostFacts::observe_as(&Common::default(), false, true);
        assert_eq!(f.efivars.as_deref(), Some(Path::new(DEFAULT_EFIVARS)));
        assert!(f.runtime_dir.is_some());
    }
}
