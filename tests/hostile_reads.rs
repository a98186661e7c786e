//! Hostile trees whose files are huge: every whole-file read is bounded (`src/fs/limits.rs`), a
//! larger file is refused with an error naming it before anything is allocated, and the run goes
//! on without it. Each file here is a 64 GiB sparse file (it costs no disk); before the bound,
//! each of these runs aborted allocating it. Each test builds its tree from scratch and runs the
//! real binary.

mod common;

use std::path::Path;
use std::process::Output;

use common::{run_offline, stderr_text, write, TempDir};

const HUGE: u64 = 64 << 30;

/// Makes `rel` a sparse file of `HUGE` bytes.
fn huge(root: &Path, rel: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(HUGE).unwrap();
}

/// A small bootable tree: os-release, one system user, one tmpfiles line, one preset.
fn tree(tag: &str) -> (TempDir, std::path::PathBuf) {
    let tmp = TempDir::new(tag);
    let t = tmp.path().join("root");
    write(&t, "usr/lib/os-release", "ID=test\nVERSION_ID=1\n");
    write(
        &t,
        "usr/lib/sysusers.d/app.conf",
        "u app - \"App\" /var/lib/app\n",
    );
    write(
        &t,
        "usr/lib/tmpfiles.d/app.conf",
        "d /var/lib/app 0750 - - -\n",
    );
    write(
        &t,
        "usr/lib/systemd/system/app.service",
        "[Install]\nWantedBy=multi-user.target\n",
    );
    write(
        &t,
        "usr/lib/systemd/system-preset/90-app.preset",
        "enable app.service\ndisable *\n",
    );
    (tmp, t)
}

/// Whether the preset made `unit`'s `WantedBy=multi-user.target` link.
fn enabled(t: &Path, unit: &str) -> bool {
    std::fs::symlink_metadata(
        t.join("etc/systemd/system/multi-user.target.wants")
            .join(unit),
    )
    .is_ok()
}

/// The refusal names the file (as the host sees it) and says why.
fn assert_refused(o: &Output, t: &Path, rel: &str) {
    let e = stderr_text(o);
    let shown = t.join(rel);
    assert!(
        e.contains(&format!("{} is larger than", shown.display())),
        "no refusal naming {}: {e}",
        shown.display()
    );
}

#[test]
fn a_huge_machine_id_is_replaced_and_the_boot_goes_on() {
    let (_tmp, t) = tree("huge-mid");
    huge(&t, "etc/machine-id");
    let o = run_offline(&t, &["provision"]);
    common::assert_exit(&o, 0);
    assert_refused(&o, &t, "etc/machine-id");
    let id = std::fs::read_to_string(t.join("etc/machine-id")).unwrap();
    assert_eq!(id.len(), 33, "a fresh machine id: {id:?}");
    assert!(t.join("var/lib/app").is_dir(), "tmpfiles ran");
}

#[test]
fn a_huge_passwd_fails_sysusers_only() {
    let (_tmp, t) = tree("huge-passwd");
    huge(&t, "etc/passwd");
    let o = run_offline(&t, &["provision"]);
    common::assert_exit(&o, 73);
    assert_refused(&o, &t, "etc/passwd");
    assert!(
        stderr_text(&o).contains("Failed to load user database:"),
        "{}",
        stderr_text(&o)
    );
    assert_eq!(
        std::fs::metadata(t.join("etc/passwd")).unwrap().len(),
        HUGE,
        "left alone"
    );
    assert!(t.join("etc/machine-id").exists(), "the boot went on");
    assert!(t.join("var/lib/app").is_dir(), "tmpfiles ran");
}

#[test]
fn a_huge_os_release_is_skipped() {
    let (_tmp, t) = tree("huge-osrel");
    huge(&t, "etc/os-release");
    let o = run_offline(&t, &["provision"]);
    assert_refused(&o, &t, "etc/os-release");
    assert!(t.join("etc/machine-id").exists(), "the boot went on");
    assert!(t.join("var/lib/app").is_dir(), "tmpfiles ran");
}

#[test]
fn a_huge_unit_file_is_skipped_by_presets() {
    let (_tmp, t) = tree("huge-unit");
    huge(&t, "usr/lib/systemd/system/big.service");
    write(
        &t,
        "usr/lib/systemd/system-preset/80-big.preset",
        "enable big.service\n",
    );
    let o = run_offline(&t, &["provision"]);
    common::assert_exit(&o, 0);
    let e = stderr_text(&o);
    assert!(e.contains("big.service: File too large"), "{e}");
    assert!(enabled(&t, "app.service"), "the other unit is enabled: {e}");
}

#[test]
fn a_huge_settings_file_is_reported_with_65() {
    let (_tmp, t) = tree("huge-toml");
    huge(&t, "etc/pristine/big.toml");
    let o = run_offline(&t, &["provision"]);
    common::assert_exit(&o, 65);
    assert_refused(&o, &t, "etc/pristine/big.toml");
    assert!(t.join("etc/machine-id").exists(), "the boot went on");
}

#[test]
fn a_huge_tmpfiles_file_is_skipped() {
    let (_tmp, t) = tree("huge-tmpfiles");
    huge(&t, "usr/lib/tmpfiles.d/big.conf");
    let o = run_offline(&t, &["tmpfiles", "--create"]);
    assert_refused(&o, &t, "usr/lib/tmpfiles.d/big.conf");
    assert!(
        t.join("var/lib/app").is_dir(),
        "the other file was applied: {}",
        stderr_text(&o)
    );
}
