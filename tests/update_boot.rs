//! The boot side of `pristine update`: the pending slot's content is verified before its first
//! boot (whole-image digest or dm-verity tree), the slot state machine converges after a crash
//! at every write (fault injection), and an offline `--root` run keeps its state and slots
//! inside the root. Needs `--features fault-injection` (scripts/test passes it).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{pristine, run_ok as ok, Rng, TempDir};

const STATE: &str = "var/lib/pristine/update";

struct Device {
    dir: TempDir,
    root: PathBuf,
    key: PathBuf,
}

fn image(seed: u64, blocks: usize) -> Vec<u8> {
    let mut r = Rng::new(seed);
    (0..blocks * 4096).map(|_| r.next() as u8).collect()
}

impl Device {
    /// A root whose slot A holds version 1 (adopted), slot B empty, `tries` boot attempts.
    fn new(tag: &str, tries: u32, verity: bool) -> Device {
        let dir = TempDir::new(tag);
        let root = dir.path().join("root");
        let keys = root.join("usr/lib/pristine/keys");
        std::fs::create_dir_all(&keys).unwrap();
        std::fs::create_dir_all(root.join("slots")).unwrap();
        let key = dir.path().join("k.key");
        ok(Command::new("minisign")
            .args(["-G", "-W", "-p"])
            .arg(keys.join("k.pub"))
            .arg("-s")
            .arg(&key)
            .stdin(Stdio::null()));
        std::fs::write(
            root.join("usr/lib/pristine/pristine.toml"),
            format!(
                "[update]\nslots = [\"/slots/a.img\", \"/slots/b.img\"]\ntries = {tries}\n\
                 state-dir = \"/{STATE}\"\n"
            ),
        )
        .unwrap();
        let d = Device { dir, root, key };
        let v1 = d.vendor(&image(1, 64), "1", "v1", verity);
        std::fs::copy(d.dir.path().join("v1.img"), d.root.join("slots/a.img")).unwrap();
        std::fs::write(d.root.join("slots/b.img"), b"").unwrap();
        ok(d.pristine()
            .args(["update", "adopt", "--slot=0", "--version=1", "--index"])
            .arg(v1.join("image.caibx")));
        d
    }

    fn pristine(&self) -> Command {
        let mut c = pristine();
        c.arg(format!("--root={}", self.root.display()));
        c.env("SYSTEMD_LOG_TARGET", "console");
        c
    }

    /// Makes version `version` of `data` (with a verity tree if asked); returns its directory.
    fn vendor(&self, data: &[u8], version: &str, name: &str, verity: bool) -> PathBuf {
        let img = self.dir.path().join(format!("{name}.img"));
        std::fs::write(&img, data).unwrap();
        let out = self.dir.path().join(name);
        let mut c = pristine();
        c.args(["update", "make", &format!("--version={version}")])
            .arg(format!("--key={}", self.key.display()));
        if verity {
            c.arg("--verity");
        }
        ok(c.arg(&img).arg(&out));
        out
    }

    fn fetch(&self, src: &Path) {
        ok(self.pristine().args(["update", "fetch"]).arg(src));
    }

    fn slot(&self, i: usize) -> PathBuf {
        self.root.join(["slots/a.img", "slots/b.img"][i])
    }

    fn boot(&self, fault: Option<usize>) -> Output {
        let mut c = self.pristine();
        c.args(["update", "boot", "--json"]);
        if let Some(n) = fault {
            c.env("PRISTINE_FAULT_AFTER", n.to_string());
        }
        c.output().unwrap()
    }

    /// The booted slot's path of a successful boot.
    fn booted(o: &Output) -> String {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["path"].as_str().unwrap().to_string()
    }

    fn state(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.root.join(STATE).join("update.json")).unwrap();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("state unreadable: {e}: {text}"))
    }

    fn save_state(&self) -> Vec<(PathBuf, Vec<u8>)> {
        std::fs::read_dir(self.root.join(STATE))
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                let b = std::fs::read(&p).unwrap();
                (p, b)
            })
            .collect()
    }

    fn restore_state(&self, saved: &[(PathBuf, Vec<u8>)]) {
        let d = self.root.join(STATE);
        std::fs::remove_dir_all(&d).unwrap();
        std::fs::create_dir_all(&d).unwrap();
        for (p, b) in saved {
            std::fs::write(p, b).unwrap();
        }
    }
}

fn flip_byte(p: &Path, at: usize) {
    let mut b = std::fs::read(p).unwrap();
    b[at] ^= 0x20;
    std::fs::write(p, b).unwrap();
}

#[test]
fn a_pending_slot_is_verified_before_its_first_boot() {
    for verity in [false, true] {
        let d = Device::new("upd-boot-verify", 2, verity);
        let a = d.slot(0).display().to_string();
        let b = d.slot(1).display().to_string();
        let v2 = d.vendor(&image(2, 64), "2", "v2", verity);
        d.fetch(&v2);
        // Intact: booted, checked once.
        assert_eq!(Device::booted(&d.boot(None)), b, "verity={verity}");
        assert_eq!(d.state()["slots"][1]["checked"], true);
        assert_eq!(d.state()["slots"][1]["tries"], 1);
        if verity {
            assert!(d.state()["slots"][1]["verity"]["root-hash"].is_string());
        }
        ok(d.pristine().args(["update", "confirm"]));
        assert_eq!(d.state()["slots"][1]["status"], "good");

        // Version 3 in slot A, one byte flipped after the fetch: never booted.
        let v3 = d.vendor(&image(3, 64), "3", "v3", verity);
        d.fetch(&v3);
        flip_byte(&d.slot(0), 4096 * 10 + 5);
        let o = d.boot(None);
        assert_eq!(Device::booted(&o), b, "verity={verity}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("failed verification"), "{err}");
        let st = d.state();
        assert_eq!(st["slots"][0]["status"], "bad", "{st}");
        assert!(
            st["slots"][0]["reason"]
                .as_str()
                .unwrap()
                .contains("before its first boot"),
            "{st}"
        );
        assert_eq!(st["booted"], 1);
        assert_eq!(Device::booted(&d.boot(None)), b);
        let o = ok(d.pristine().args(["update", "status"]));
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            text.contains("slot 0:") && text.contains("bad version 3"),
            "{text}"
        );
        assert!(text.contains("failed verification"), "{text}");
        let _ = a;
    }
}

/// Runs `step` with a crash before its 1st, 2nd, … write until it completes; after each crash
/// `check` sees the state the next (uncrashed) boot leaves. Every run starts from the state
/// as it was, and that state is restored at the end; returns the number of writes.
fn at_every_write(
    d: &Device,
    mut step: impl FnMut(Option<usize>) -> Output,
    mut check: impl FnMut(usize, &Device),
) -> usize {
    let saved = d.save_state();
    for n in 0.. {
        d.restore_state(&saved);
        let o = step(Some(n));
        if o.status.success() {
            d.restore_state(&saved);
            return n;
        }
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("fault injection"),
            "failed without a fault: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        check(n, d);
    }
    unreachable!()
}

#[test]
fn the_slot_state_converges_after_a_crash_at_every_write() {
    let d = Device::new("upd-boot-crash", 1, true);
    let a = d.slot(0).display().to_string();
    let b = d.slot(1).display().to_string();
    d.fetch(&d.vendor(&image(2, 64), "2", "v2", true));

    // The boot decision: a crash before the try is saved leaves the try; one after spends it.
    let (mut kept, mut spent) = (0, 0);
    let writes = at_every_write(
        &d,
        |f| d.boot(f),
        |n, d| {
            let st = d.state();
            assert_eq!(st["slots"][0]["status"], "good", "crash {n}: {st}");
            assert_eq!(st["last-good"], 0, "crash {n}: {st}");
            let next = Device::booted(&d.boot(None));
            let st = d.state();
            if st["slots"][1]["status"] == "bad" {
                assert_eq!(next, a, "crash {n}: {st}");
                assert!(st["slots"][1]["reason"]
                    .as_str()
                    .unwrap()
                    .contains("tries ran out"));
                spent += 1;
            } else {
                assert_eq!(next, b, "crash {n}: {st}");
                assert_eq!(st["slots"][1]["tries"], 0, "crash {n}: {st}");
                assert_eq!(st["slots"][1]["checked"], true, "crash {n}: {st}");
                kept += 1;
            }
        },
    );
    assert!(writes >= 2, "the boot wrote {writes} times");
    assert!(kept >= 1 && spent >= 1, "kept {kept}, spent {spent}");

    // Booted once; the confirm after a crash at any write either happened or not, and a
    // second confirm always ends good, slot A still the fallback until then.
    assert_eq!(Device::booted(&d.boot(None)), b);
    at_every_write(
        &d,
        |f| {
            let mut c = d.pristine();
            c.args(["update", "confirm"]);
            if let Some(n) = f {
                c.env("PRISTINE_FAULT_AFTER", n.to_string());
            }
            c.output().unwrap()
        },
        |n, d| {
            let st = d.state();
            let s1 = st["slots"][1]["status"].as_str().unwrap().to_string();
            assert!(s1 == "pending" || s1 == "good", "crash {n}: {st}");
            assert_eq!(st["slots"][0]["status"], "good", "crash {n}: {st}");
            ok(d.pristine().args(["update", "confirm"]));
            assert_eq!(d.state()["slots"][1]["status"], "good");
            assert_eq!(d.state()["last-good"], 1);
        },
    );

    ok(d.pristine().args(["update", "confirm"]));

    // A slot whose content is corrupted is never booted, whatever write a crash hits.
    d.fetch(&d.vendor(&image(3, 64), "3", "v3", true));
    flip_byte(&d.slot(0), 4096 * 3);
    at_every_write(
        &d,
        |f| {
            let o = d.boot(f);
            if o.status.success() {
                assert_eq!(Device::booted(&o), b);
            }
            o
        },
        |n, d| {
            assert_eq!(Device::booted(&d.boot(None)), b, "crash {n}");
            assert_eq!(d.state()["slots"][0]["status"], "bad", "crash {n}");
        },
    );
}

#[test]
fn an_offline_root_keeps_state_and_slots_inside_it() {
    let d = Device::new("upd-boot-confine", 3, false);
    let toml = d.root.join("usr/lib/pristine/pristine.toml");
    // The adopt in Device::new wrote the state inside the root.
    assert!(d.root.join(STATE).join("update.json").is_file());
    let outside = d.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let victim = outside.join("victim");
    std::fs::write(&victim, b"host data").unwrap();
    let v2 = d.vendor(&image(2, 64), "2", "v2", false);
    let refused = |what: &str| {
        let o = d
            .pristine()
            .args(["update", "fetch"])
            .arg(&v2)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(65), "{what}: {err}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"host data", "{what}");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1, "{what}");
        err.to_string()
    };
    let set = |slots: &str, state: &str| {
        std::fs::write(
            &toml,
            format!("[update]\nslots = [{slots}]\nstate-dir = \"{state}\"\n"),
        )
        .unwrap();
    };
    // A slot naming a host file is looked up inside the root.
    set(
        &format!("\"/slots/a.img\", \"{}\"", victim.display()),
        &format!("/{STATE}"),
    );
    assert!(refused("host path").contains("no such file inside the root"));
    // A slot that is a symlink out of the root.
    std::fs::remove_file(d.slot(1)).unwrap();
    std::os::unix::fs::symlink(&victim, d.slot(1)).unwrap();
    // (its target exists inside the root too, so only the host lookup differs)
    let shadow = d.root.join(victim.strip_prefix("/").unwrap());
    std::fs::create_dir_all(shadow.parent().unwrap()).unwrap();
    std::fs::write(&shadow, b"").unwrap();
    set("\"/slots/a.img\", \"/slots/b.img\"", &format!("/{STATE}"));
    assert!(refused("symlink slot").contains("leads out of the root"));
    std::fs::remove_file(d.slot(1)).unwrap();
    std::fs::write(d.slot(1), b"").unwrap();
    // A state directory that is a symlink out of the root.
    std::os::unix::fs::symlink(&outside, d.root.join("var/lib/evil")).unwrap();
    set("\"/slots/a.img\", \"/slots/b.img\"", "/var/lib/evil/update");
    assert!(refused("symlink state").contains("leads out of the root"));
    // Paths that are not plain, or in /usr.
    for bad in ["/var/lib/../../x", "var/lib/x", "/usr/lib/pristine/state"] {
        set("\"/slots/a.img\", \"/slots/b.img\"", bad);
        refused(bad);
    }
    // Back to sane settings: the fetch works and writes only inside the root.
    set("\"/slots/a.img\", \"/slots/b.img\"", &format!("/{STATE}"));
    d.fetch(&v2);
    assert_eq!(d.state()["slots"][1]["status"], "pending");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
}

/// A device whose slot A was being overwritten by version 3 when the fetch stopped (the source
/// lost the second half of its chunks): slot A is `incomplete`, slot B (version 2) is good.
/// Returns the device and the intact version 3 directory.
fn interrupted_fetch(tag: &str) -> (Device, PathBuf) {
    let d = Device::new(tag, 2, true);
    d.fetch(&d.vendor(&image(2, 64), "2", "v2", true));
    assert_eq!(
        Device::booted(&d.boot(None)),
        d.slot(1).display().to_string()
    );
    ok(d.pristine().args(["update", "confirm"]));
    let v3 = d.vendor(&image(3, 256), "3", "v3", true);
    let broken = d.dir.path().join("v3-broken");
    ok(Command::new("cp").arg("-a").arg(&v3).arg(&broken));
    // The chunk ids of the index, in image order (casync's .caibx: a 48-byte header, a 16-byte
    // table header, 40-byte items of end offset and id, a 40-byte tail).
    let caibx = std::fs::read(v3.join("image.caibx")).unwrap();
    let ids: Vec<String> = caibx[64..caibx.len() - 40]
        .chunks(40)
        .map(|item| item[8..].iter().map(|b| format!("{b:02x}")).collect())
        .collect();
    assert!(ids.len() >= 4, "{} chunks", ids.len());
    // The source loses the last chunk: everything before it is written, then the fetch stops.
    let last = &ids[ids.len() - 1];
    assert_eq!(ids.iter().filter(|i| *i == last).count(), 1);
    std::fs::remove_file(
        broken
            .join("image.castr")
            .join(&last[..4])
            .join(format!("{last}.cacnk")),
    )
    .unwrap();
    let o = d
        .pristine()
        .args(["update", "fetch"])
        .arg(&broken)
        .output()
        .unwrap();
    assert!(
        !o.status.success(),
        "the fetch from a broken store succeeded"
    );
    let st = d.state();
    assert_eq!(st["slots"][0]["status"], "incomplete", "{st}");
    (d, v3)
}

fn set_boot_source(d: &Device, source: Option<&str>) {
    let toml = d.root.join("usr/lib/pristine/pristine.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    if let Some(s) = source {
        text.push_str(&format!("boot-source = \"{s}\"\n"));
    }
    std::fs::write(&toml, text).unwrap();
}

#[test]
fn an_incomplete_slot_is_completed_at_boot_from_a_local_source() {
    let (d, v3) = interrupted_fetch("upd-boot-complete");
    // The published directory is kept on the root file system (an in-root path).
    ok(Command::new("cp")
        .arg("-a")
        .arg(&v3)
        .arg(d.root.join("store-v3")));
    set_boot_source(&d, Some("/store-v3"));
    let o = d.boot(None);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    // Completed (what the interrupted fetch wrote is reused), verified, and booted.
    assert_eq!(Device::booted(&o), d.slot(0).display().to_string(), "{err}");
    let line = err
        .lines()
        .find(|l| l.contains("Incomplete slot 0 completed with version 3"))
        .unwrap_or_else(|| panic!("no completion line: {err}"));
    let present: u64 = line
        .split(" bytes already in the slot")
        .next()
        .and_then(|h| h.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(
        present > 0,
        "nothing of the interrupted fetch reused: {line}"
    );
    let st = d.state();
    assert_eq!(st["slots"][0]["status"], "pending", "{st}");
    assert_eq!(st["slots"][0]["version"], "3", "{st}");
    assert_eq!(st["slots"][0]["checked"], true, "{st}");
    assert_eq!(st["slots"][0]["tries"], 1, "{st}");
    assert_eq!(st["booted"], 0, "{st}");
    assert_eq!(st["last-good"], 1, "{st}");
    // The slot holds version 3's image exactly.
    let want = std::fs::read(d.dir.path().join("v3.img")).unwrap();
    let got = std::fs::read(d.slot(0)).unwrap();
    assert_eq!(&got[..want.len()], &want[..]);
    assert!(
        present >= (want.len() / 2) as u64,
        "only {present} bytes reused: {line}"
    );
    ok(d.pristine().args(["update", "confirm"]));
    assert_eq!(d.state()["slots"][0]["status"], "good");
}

#[test]
fn an_incomplete_slot_is_skipped_without_a_usable_local_source() {
    for source in [None, Some("/no-such-store"), Some("/dev/no-such-disk:/v3")] {
        let (d, _) = interrupted_fetch("upd-boot-skip");
        set_boot_source(&d, source);
        let before = std::fs::read(d.slot(0)).unwrap();
        let o = d.boot(None);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(
            Device::booted(&o),
            d.slot(1).display().to_string(),
            "{source:?}: {err}"
        );
        assert_eq!(
            source.is_some(),
            err.contains("Incomplete slot not completed, skipping it"),
            "{source:?}: {err}"
        );
        let st = d.state();
        assert_eq!(st["slots"][0]["status"], "incomplete", "{source:?}: {st}");
        assert_eq!(st["slots"][1]["status"], "good", "{source:?}: {st}");
        assert_eq!(st["booted"], 1, "{source:?}: {st}");
        assert_eq!(std::fs::read(d.slot(0)).unwrap(), before, "{source:?}");
    }
}

#[test]
fn a_hostile_local_source_is_skipped_and_never_left_the_root() {
    // A FIFO in the source's place (must not block the boot), and a symlink to the real
    // store outside the root (resolved inside the root: not found, never read).
    for kind in ["fifo", "escape"] {
        let (d, v3) = interrupted_fetch("upd-boot-hostile");
        let src = d.root.join("store-v3");
        if kind == "fifo" {
            ok(Command::new("mkfifo").arg(&src));
        } else {
            std::os::unix::fs::symlink(&v3, &src).unwrap();
        }
        set_boot_source(&d, Some("/store-v3"));
        let before = std::fs::read(d.slot(0)).unwrap();
        let o = d.boot(None);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(
            Device::booted(&o),
            d.slot(1).display().to_string(),
            "{kind}: {err}"
        );
        assert!(
            err.contains("Incomplete slot not completed, skipping it"),
            "{kind}: {err}"
        );
        assert_eq!(d.state()["slots"][0]["status"], "incomplete", "{kind}");
        assert_eq!(std::fs::read(d.slot(0)).unwrap(), before, "{kind}");
    }
}
