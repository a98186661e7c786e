//! The power-cut test (issue 12 item 4): tests/vm/powercut.sh boots a Debian 12 image with a
//! factory reset requested in a busybox initramfs that runs `pristine provision` and never
//! leaves the initrd, and kills qemu at random points while pristine runs. After every cut the
//! next boot must finish with exit code 0, every file on the keep-list must have its checksum,
//! and nothing of the reset may be left (work areas, request file, the flushed junk).
//!
//! `PRISTINE_POWERCUTS` sets the number of cuts that must interrupt pristine (default 20;
//! `benches/powercut.sh` runs more), `PRISTINE_POWERCUT_SEED` the seed (printed either way).

mod common;

#[test]
fn reset_converges_after_power_cuts_and_keeps_the_keep_list() {
    common::cutloop::run("powercut.sh", "pristine", |log, ctx| {
        assert!(
            log.contains("PRISTINE-CUT: run 1 exit code 0 "),
            "pristine did not converge: {}",
            ctx()
        );
        let sums: Vec<&str> = log
            .lines()
            .filter_map(|l| l.split("PRISTINE-CUT-SHA ").nth(1))
            .collect();
        assert_eq!(sums.len(), 4, "keep-list checksums missing: {}", ctx());
        assert!(
            sums.iter().all(|s| s.trim_end().ends_with(": OK")),
            "keep-list damaged: {sums:?}\n{}",
            ctx()
        );
        assert!(
            !log.contains("PRISTINE-CUT-LEFT"),
            "the reset left something behind: {}",
            ctx()
        );
    });
}
