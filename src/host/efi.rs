//! EFI variables of systemd's vendor GUID in an efivarfs directory: reading one, and removing
//! the factory-reset requests. Only [`super::HostFacts`] decides which directory (if any) is in
//! reach; nothing here picks a default.

use std::io::{self, Read as _};
use std::path::{Path, PathBuf};

/// systemd's vendor GUID for its EFI variables.
pub const SYSTEMD_EFI_GUID: &str = "8cf2644b-4b0b-428f-9387-6d876050dc67";

/// Largest EFI variable read (systemd's own variables are a few hundred bytes).
const MAX_VAR: u64 = 64 * 1024;

/// The path of a systemd variable in `efivars`.
pub fn var_path(efivars: &Path, name: &str) -> PathBuf {
    efivars.join(format!("{name}-{SYSTEMD_EFI_GUID}"))
}

/// Reads an efivarfs variable: 4 bytes of attributes, then the data (returned).
pub fn read_var(efivars: &Path, name: &str) -> Option<Vec<u8>> {
    let mut data = Vec::new();
    std::fs::File::open(var_path(efivars, name))
        .ok()?
        .take(MAX_VAR)
        .read_to_end(&mut data)
        .ok()?;
    data.get(4..).map(<[u8]>::to_vec)
}

/// Removes the EFI variables that request a factory reset (efivarfs marks them immutable).
pub fn clear_reset_request(efivars: &Path) -> io::Result<()> {
    for name in ["FactoryReset", "FactoryResetRequest"] {
        crate::fs::host_runtime::remove_file(&var_path(efivars, name))?;
    }
    Ok(())
}
