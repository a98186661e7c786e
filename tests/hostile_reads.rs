//! Hostile trees whose files are huge: every whole-file read is bounded (`src/fs/limits.rs`), a
//! larger file is refused with an error naming it before anything is allocated, and the run goes
//! on without it. Also configuration files (read whole since `Root::open_config`) that are FIFOs
//! or hold NUL bytes. Each file here is a 64 GiB sparse file (it costs no disk); before the bound,
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

#[test]
fn a_fifo_in_place_of_a_config_file_is_refused_without_blocking() {
    use std::os::unix::fs::OpenOptionsExt as _;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let (_tmp, t) = tree("fifo-config");
    let fifos = [
        "usr/lib/tmpfiles.d/fifo.conf",
        "usr/lib/sysusers.d/fifo.conf",
    ];
    for rel in fifos {
        // Tests build hostile trees with raw calls (the rule is for the product's code).
        #[allow(clippy::disallowed_methods)]
        rustix::fs::mknodat(
            rustix::fs::CWD,
            t.join(rel),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
    }
    // A reader blocked in open() on a FIFO is released by a writer after a while: the test then
    // fails instead of hanging.
    let (done, released) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let watchdog = {
        let (done, released, t) = (Arc::clone(&done), Arc::clone(&released), t.clone());
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while !done.load(Ordering::Acquire) {
                std::thread::sleep(std::time::Duration::from_millis(50));
                if std::time::Instant::now() < deadline {
                    continue;
                }
                // Opening the write side succeeds only while a reader waits on the other.
                for rel in fifos {
                    let w = std::fs::OpenOptions::new()
                        .write(true)
                        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
                        .open(t.join(rel));
                    if w.is_ok() {
                        released.store(true, Ordering::Release);
                    }
                }
            }
        })
    };
    let o = run_offline(&t, &["provision"]);
    done.store(true, Ordering::Release);
    watchdog.join().unwrap();
    let e = stderr_text(&o);
    assert!(
        !released.load(Ordering::Acquire),
        "a reader blocked on a FIFO: {e}"
    );
    for rel in fifos {
        let shown = t.join(rel);
        assert!(
            e.contains(&format!("{} is not a regular file", shown.display())),
            "no refusal naming {}: {e}",
            shown.display()
        );
    }
    assert!(
        t.join("var/lib/app").is_dir(),
        "the other tmpfiles file was applied: {e}"
    );
    let passwd = std::fs::read_to_string(t.join("etc/passwd")).unwrap();
    assert!(
        passwd.contains("\napp:") || passwd.starts_with("app:"),
        "the other sysusers file was applied: {passwd}"
    );
}

#[test]
fn nul_bytes_in_a_config_file_end_lines_and_the_rest_is_read() {
    let (_tmp, t) = tree("nul-config");
    std::fs::write(
        t.join("usr/lib/tmpfiles.d/nul.conf"),
        b"d /var/lib/one 0755 - - -\0bogus line\nd /var/lib/two 0755 - - -\n",
    )
    .unwrap();
    let o = run_offline(&t, &["tmpfiles", "--create"]);
    let e = stderr_text(&o);
    assert!(
        t.join("var/lib/one").is_dir(),
        "the line before the NUL: {e}"
    );
    assert!(t.join("var/lib/two").is_dir(), "the line after it: {e}");
    let shown = t.join("usr/lib/tmpfiles.d/nul.conf");
    assert!(
        e.contains(&format!("{}:2:", shown.display())),
        "what follows the NUL is line 2, reported by file and line: {e}"
    );
}
