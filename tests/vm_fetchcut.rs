//! The power-cut test of `pristine update fetch` (issue 12 item 4): tests/vm/fetchcut.sh boots
//! a busybox initramfs with two /usr slots (slot A holds version 1, good and booted), the root
//! file system holding the update state and a store disk with versions 2 and 3, and kills qemu
//! at random points while `pristine update fetch` runs (2 and 3 alternate, so every cut lands
//! in a fresh fetch over a pending slot). After every cut the next boot must find slot A's
//! bytes unchanged, a state `pristine update status --json` reads, slot A still good, active
//! and last good, and slot B pending or good only if its bytes are that version's; then the
//! interrupted fetch must finish (exit code 0) with slot B pending with the right bytes.
//!
//! `PRISTINE_POWERCUTS` sets the number of cuts that must interrupt a fetch (default 20;
//! `benches/fetchcut.sh` runs more), `PRISTINE_POWERCUT_SEED` the seed (printed either way).

mod common;

/// The checks every boot's /init reports (tests/vm/fetchcut-init).
const CHECKS: [&str; 6] = [
    "slot-a",
    "status-json",
    "slot-a-state",
    "slot-b-left",
    "slot-b-fetched",
    "slot-a-after",
];

#[test]
fn fetch_converges_after_power_cuts_and_damages_neither_slot() {
    common::cutloop::run("fetchcut.sh", "a fetch", |log, ctx| {
        let results: Vec<&str> = log
            .lines()
            .filter_map(|l| l.split("PRISTINE-CUT-CHECK ").nth(1))
            .map(str::trim_end)
            .collect();
        for what in CHECKS {
            let r: Vec<&&str> = results
                .iter()
                .filter(|r| r.split(' ').next() == Some(what))
                .collect();
            assert_eq!(r.len(), 1, "check {what} missing: {}", ctx());
            assert!(
                r[0].starts_with(&format!("{what} ok")),
                "check failed: {}\n{}",
                r[0],
                ctx()
            );
        }
        assert_eq!(results.len(), CHECKS.len(), "{results:?}\n{}", ctx());
        assert!(
            log.contains("PRISTINE-CUT: run 1 exit code 0 "),
            "the interrupted fetch did not finish: {}",
            ctx()
        );
    });
}
