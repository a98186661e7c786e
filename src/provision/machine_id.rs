//! machine-id for the target, decided in the initrd before PID 1 starts, with systemd 257's
//! order of sources (`machine_id_setup`): a valid `/etc/machine-id` is kept; else
//! `systemd.machine_id=` from the kernel command line; else the D-Bus machine id
//! (`/var/lib/dbus/machine-id`, not a symlink); else the `system.machine_id` credential; else the
//! SMBIOS/DMI product UUID on KVM, QEMU, Amazon, Xen and bhyve VMs (or when `firmware` was asked
//! for); else random.
//!
//! Policy (`pristine.toml` `machine-id =`): `persist` writes the id to `/etc/machine-id` (mode
//! 0444), so PID 1 does not treat the boot as a first boot (pristine applies presets itself);
//! `uninitialized` writes `uninitialized` so PID 1 runs its first-boot units (Debian's
//! systemd-firstboot then prompts on the console); `transient` writes the id only to the
//! initrd's `/run/machine-id`, which PID 1 reuses, and leaves the disk alone; offline (`--root`
//! outside the initrd) it writes nothing at all, like `systemd-machine-id-setup --root` never
//! touches the host: the image keeps whatever `/etc/machine-id` it has. The kernel command
//! line, credentials and SMBIOS come from [`crate::host::HostFacts`] (offline: only from flags).

use serde::Serialize;

use crate::config::credentials::Credentials;
use crate::host::Smbios;
use crate::text::specifier::parse_machine_id;

pub use crate::config::MachineIdPolicy as Policy;

/// Where the id came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    Existing,
    KernelCommandLine,
    Dbus,
    Credential,
    Firmware,
    Random,
}

/// Decides the machine id. `existing` is the current `/etc/machine-id` content, `dbus` the
/// D-Bus id file's (None if missing or a symlink).
pub fn decide(
    existing: Option<&str>,
    kernel: Option<&str>,
    dbus: Option<&str>,
    creds: &Credentials,
    host: &Smbios,
    random: impl FnOnce() -> String,
) -> (String, Source) {
    let mut firmware = false;
    if let Some(k) = kernel {
        if k == "firmware" {
            firmware = true;
        } else if let Ok(id) = parse_machine_id(k) {
            return (id, Source::KernelCommandLine);
        }
    }
    if !firmware {
        if let Some(id) = existing.and_then(|s| parse_machine_id(s).ok()) {
            return (id, Source::Existing);
        }
    }
    if let Some(id) = dbus.and_then(|s| parse_machine_id(s).ok()) {
        return (id, Source::Dbus);
    }
    if let Some(c) = creds.get("system.machine_id") {
        let c = c.trim();
        if c == "firmware" {
            firmware = true;
        } else if let Ok(id) = parse_machine_id(c) {
            return (id, Source::Credential);
        } else {
            log::warn!("Failed to parse system.machine_id credential, ignoring.");
        }
    }
    if host.trusted_vm || firmware {
        if let Some(u) = &host.product_uuid {
            return (u.clone(), Source::Firmware);
        }
    }
    (random(), Source::Random)
}

/// A random v4-style id as systemd makes them (`sd_id128_randomize`).
pub fn random_id() -> String {
    let mut b = [0u8; 16];
    if crate::util::random_bytes(&mut b).is_err() {
        // getrandom cannot fail on Linux ≥ 3.17 once the pool is initialised; fall back to time.
        let (s, n) = crate::util::now();
        b[..8].copy_from_slice(&s.to_le_bytes());
        b[8..].copy_from_slice(&n.to_le_bytes());
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    crate::util::hex(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0123456789abcdef0123456789abcdef";
    const B: &str = "fedcba9876543210fedcba9876543210";

    #[test]
    fn order_of_sources() {
        let none = Credentials::from_dir(None);
        let vm = Smbios {
            product_uuid: Some(B.into()),
            trusted_vm: true,
        };
        let bare = Smbios {
            product_uuid: Some(B.into()),
            trusted_vm: false,
        };
        let rnd = || "r".repeat(32);
        assert_eq!(
            decide(Some(A), None, None, &none, &vm, rnd).1,
            Source::Existing
        );
        assert_eq!(
            decide(Some(A), Some(B), None, &none, &vm, rnd),
            (B.to_string(), Source::KernelCommandLine)
        );
        assert_eq!(
            decide(Some("uninitialized\n"), None, Some(A), &none, &vm, rnd),
            (A.to_string(), Source::Dbus)
        );
        assert_eq!(
            decide(None, None, None, &none, &vm, rnd),
            (B.to_string(), Source::Firmware)
        );
        assert_eq!(
            decide(None, None, None, &none, &bare, rnd).1,
            Source::Random
        );
        assert_eq!(
            decide(Some(A), Some("firmware"), None, &none, &bare, rnd),
            (B.to_string(), Source::Firmware)
        );
    }

    #[test]
    fn random_ids_are_valid_v4() {
        let id = random_id();
        assert!(parse_machine_id(&id).is_ok());
        assert_eq!(&id[12..13], "4");
        assert_ne!(random_id(), id);
    }
}
