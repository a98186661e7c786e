//! What a tmpfiles.d line does: one [`Kind`] variant per family of systemd line types, with the
//! `+` modifier and the type's own argument (device numbers, xattrs, ACL, attributes) folded
//! in, so that the executor matches on meaning and never on a letter. The letter as written
//! stays on the [`Item`](super::Item) only for systemd's per-path order.

use super::acl::Acl;

/// The action of a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `f` (create if missing), `f+` and the deprecated `F` (`truncate`: create or truncate).
    CreateFile { truncate: bool },
    /// `w` (write existing files, glob), `w+` (`append`).
    Write { append: bool },
    /// `d`, `v`, `q`, `Q` (subvolumes are made as directories) and `D` (`remove_contents`:
    /// emptied by `--remove`).
    Dir { remove_contents: bool },
    /// `e`: adjust and clean existing directories (glob).
    EmptyDir,
    /// `p`; `p+` (`force`) replaces what is in the way.
    Fifo { force: bool },
    /// `L`; `L+` (`force`) replaces what is in the way; `L?` (`if_target_exists`) skips the
    /// line when the target is missing.
    Symlink { force: bool, if_target_exists: bool },
    /// `c` and `b` (`block`) with their device number; `+` (`force`) replaces.
    Device {
        block: bool,
        force: bool,
        dev: (u32, u32),
    },
    /// `C`; `C+` (`merge`) copies into an existing directory.
    Copy { merge: bool },
    /// `x`, `X` (`recursive`): kept out of cleaning (glob).
    Ignore { recursive: bool },
    /// `r`, `R` (`recursive`): removed by `--remove` (glob).
    Remove { recursive: bool },
    /// `z`, `Z` (`recursive`) and the deprecated `m` (= `z`): mode and owner (glob).
    Adjust { recursive: bool },
    /// `t`, `T` (`recursive`): extended attributes (glob).
    Xattr {
        recursive: bool,
        xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// `a`, `A` (`recursive`); `+` (`append`) merges into the present ACL. `None` when the
    /// argument did not parse (the line still counts, as in systemd).
    Acl {
        recursive: bool,
        append: bool,
        acl: Option<Acl>,
    },
    /// `h`, `H` (`recursive`): file attributes, `(value, mask)`.
    Attr {
        recursive: bool,
        value: u32,
        mask: u32,
    },
}

impl Default for Kind {
    /// The line that does nothing while creating (`x`), for building items field by field.
    fn default() -> Kind {
        Kind::Ignore { recursive: false }
    }
}

impl Kind {
    /// Whether the path is a glob (systemd's `needs_glob`).
    pub fn needs_glob(&self) -> bool {
        matches!(
            self,
            Kind::Write { .. }
                | Kind::EmptyDir
                | Kind::Ignore { .. }
                | Kind::Remove { .. }
                | Kind::Adjust { .. }
                | Kind::Xattr { .. }
                | Kind::Acl { .. }
                | Kind::Attr { .. }
        )
    }

    /// Whether the line creates (and so owns) its path (systemd's `takes_ownership`).
    pub fn takes_ownership(&self) -> bool {
        matches!(
            self,
            Kind::CreateFile { .. }
                | Kind::Dir { .. }
                | Kind::Fifo { .. }
                | Kind::Symlink { .. }
                | Kind::Device { .. }
                | Kind::Copy { .. }
                | Kind::Write { .. }
                | Kind::EmptyDir
                | Kind::Ignore { .. }
                | Kind::Remove { .. }
        )
    }

    /// Whether `$` may purge the line's path (systemd's `needs_purge`): the owning kinds
    /// but `x`/`X` and `r`/`R`.
    pub fn purgeable(&self) -> bool {
        self.takes_ownership() && !matches!(self, Kind::Ignore { .. } | Kind::Remove { .. })
    }

    /// Whether `+` asks to replace what is in the way (`p+`, `L+`, `c+`, `b+`).
    pub fn force(&self) -> bool {
        matches!(
            self,
            Kind::Fifo { force: true }
                | Kind::Symlink { force: true, .. }
                | Kind::Device { force: true, .. }
        )
    }

    /// The device number of a `c`/`b` line.
    pub fn device(&self) -> Option<(u32, u32)> {
        match self {
            Kind::Device { dev, .. } => Some(*dev),
            _ => None,
        }
    }
}
