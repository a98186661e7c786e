//! `provision` plans the presets step on a second thread while the steps before it run, when
//! the unit files lie on a read-only mount, and checks afterwards that nothing the plan
//! observed changed (`presets::Plan::verify`). Each case provisions the same vendor tree twice:
//! once with `/usr` bind-mounted read-only (planned ahead), once with `/usr` a plain writable
//! copy (planned in turn, after tmpfiles). The enablement under `/etc/systemd` must be the same;
//! where an earlier step changes what presets sees, the plan made ahead must have been dropped
//! and made again. Needs root (bind mounts), as the pipeline test does. With `--features
//! fault-injection` (scripts/test passes it) the plan is made before those steps run
//! (`PRISTINE_PLAN_AHEAD_FIRST`), so that which plan was applied is asserted too; without,
//! a slow helper thread may plan after them, and only the outcome is compared.

// Fixtures are built directly, not through src/fs.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{pristine, write, TempDir};
use serde_json::Value;

const MID: &str = "0123456789abcdef0123456789abcdef";

struct Mounted(PathBuf);
impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// The vendor tree: three units, a preset policy enabling two of them, tmpfiles lines.
fn vendor(usr: &Path, tmpfiles: &str, extra_unit: Option<(&str, &str)>) {
    write(usr, "lib/os-release", "ID=test\nVERSION_ID=1\n");
    for (name, wanted_by) in [
        ("alpha.service", "multi-user.target"),
        ("beta.service", "multi-user.target"),
        ("gamma.service", "graphical.target"),
    ] {
        write(
            usr,
            &format!("lib/systemd/system/{name}"),
            &format!("[Unit]\nDescription={name}\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy={wanted_by}\n"),
        );
    }
    write(
        usr,
        "lib/systemd/system/multi-user.target",
        "[Unit]\nDescription=Multi-User\n",
    );
    write(
        usr,
        "lib/systemd/system/graphical.target",
        "[Unit]\nDescription=Graphical\n",
    );
    if let Some((name, text)) = extra_unit {
        write(usr, &format!("lib/systemd/system/{name}"), text);
    }
    write(
        usr,
        "lib/systemd/system-preset/90-test.preset",
        "enable alpha.service\nenable beta.service\nenable id-*.service\ndisable *\n",
    );
    write(usr, "lib/tmpfiles.d/test.conf", tmpfiles);
}

fn make_root(root: &Path) {
    for d in ["etc", "var", "usr", "run", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for (l, t) in [("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib")] {
        std::os::unix::fs::symlink(t, root.join(l)).unwrap();
    }
}

fn copy_tree(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success(), "copy {} to {}", from.display(), to.display());
}

/// Provisions `root` with `env` added; returns the presets step of the report, the tree
/// under etc/systemd and the messages.
fn provision(
    root: &Path,
    report: &Path,
    env: &[(&str, &str)],
) -> (Value, BTreeMap<String, String>, String) {
    let out = pristine()
        .envs(env.iter().copied())
        .arg(format!("--root={}", root.display()))
        .arg(format!("--cmdline=systemd.machine_id={MID}"))
        .arg("--efivars=/nonexistent")
        .arg("provision")
        .arg(format!("--report={}", report.display()))
        .env("SYSTEMD_IN_INITRD", "0")
        .env("SYSTEMD_LOG_TARGET", "console")
        .env("PRISTINE_PLAN_AHEAD_FIRST", "1")
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .unwrap();
    let v: Value =
        serde_json::from_slice(&std::fs::read(report).unwrap_or_else(|e| {
            panic!("no report ({e}): {}", String::from_utf8_lossy(&out.stderr))
        }))
        .unwrap();
    let presets = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "presets")
        .unwrap_or_else(|| panic!("no presets step: {v}"))
        .clone();
    let tree = pristine::presets::list_links(&root.join("etc/systemd"));
    let root_text = root.display().to_string();
    let messages = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.contains(" ms") && !l.contains("changed while presets were planned"))
        .map(|l| l.replace(&root_text, "ROOT"))
        .collect::<Vec<_>>()
        .join("\n");
    (presets, tree, messages)
}

/// Whether the plan was made before the steps that may change what it saw (see the header).
const ORDERED: bool = cfg!(feature = "fault-injection");

/// Asserts the plan made ahead was applied (`true`) or made again (`false`), where the order
/// is known.
fn assert_planned_ahead(step: &Value, ahead: bool) {
    if !ORDERED {
        return;
    }
    assert_eq!(count(step, "planned_ahead"), u64::from(ahead), "{step}");
    let detail = step["detail"].as_str().unwrap();
    assert_eq!(detail.contains("planned again"), !ahead, "{step}");
}

/// [`assert_planned_ahead`] and [`assert_beside`].
fn assert_ran(step: &Value, ahead: bool, beside: bool) {
    assert_planned_ahead(step, ahead);
    assert_beside(step, beside);
}

/// Asserts the plan was applied beside tmpfiles (`true`) or in turn (`false`), where the
/// order is known; in turn, the detail says why not beside.
fn assert_beside(step: &Value, beside: bool) {
    if !ORDERED {
        return;
    }
    assert_eq!(count(step, "applied_beside"), u64::from(beside), "{step}");
    let detail = step["detail"].as_str().unwrap();
    assert_eq!(detail.contains("applied beside tmpfiles"), beside, "{step}");
    assert_eq!(detail.contains("not beside tmpfiles: "), !beside, "{step}");
}

/// Asserts whether `unit` is wanted by multi-user.target among `links`.
fn assert_wanted(links: &BTreeMap<String, String>, unit: &str, wanted: bool) {
    let link = format!("system/multi-user.target.wants/{unit}");
    assert_eq!(links.contains_key(&link), wanted, "{link} in {links:?}");
}

fn count(step: &Value, name: &str) -> u64 {
    common::step_counter(step, name).unwrap_or_else(|| panic!("no count {name}: {step}"))
}

/// Provisions the vendor tree `usr` (in `tmp`) with a read-only and with a writable /usr, the
/// read-only run with `env` added, each root set up by `prepare` first; asserts the same
/// links and messages, and that the writable one planned in turn; returns the presets step
/// of the read-only run and the links.
fn ro_and_rw(
    tmp: &TempDir,
    usr: &Path,
    env: &[(&str, &str)],
    prepare: fn(&Path),
) -> (Value, BTreeMap<String, String>) {
    let ro = tmp.path().join("ro");
    make_root(&ro);
    prepare(&ro);
    let st = Command::new("mount")
        .args(["--bind", "-o", "ro"])
        .arg(usr)
        .arg(ro.join("usr"))
        .status()
        .unwrap();
    assert!(
        st.success(),
        "bind-mount the vendor /usr (tests run as root)"
    );
    let _m = Mounted(ro.join("usr"));
    let _ = Command::new("mount")
        .args(["-o", "remount,bind,ro"])
        .arg(ro.join("usr"))
        .status();
    let (step_ro, links_ro, said_ro) = provision(&ro, &tmp.path().join("ro.json"), env);

    let rw = tmp.path().join("rw");
    make_root(&rw);
    prepare(&rw);
    copy_tree(usr, &rw.join("usr"));
    let (step_rw, links_rw, said_rw) = provision(&rw, &tmp.path().join("rw.json"), &[]);

    assert_eq!(
        links_ro, links_rw,
        "read-only /usr (planned ahead: {step_ro}) and writable /usr ({step_rw}) disagree"
    );
    // And all else the two runs made: tmpfiles' side too, modes and contents.
    let (tree_ro, tree_rw) = (describe(&ro), describe(&rw));
    for k in tree_ro.keys().chain(tree_rw.keys()) {
        assert_eq!(
            tree_ro.get(k),
            tree_rw.get(k),
            "{k}: read-only /usr ({step_ro}) and writable /usr ({step_rw}) disagree"
        );
    }
    // The same messages in the same order, wherever the plan was made and applied.
    assert_eq!(said_ro, said_rw, "{step_ro}");
    assert_eq!(count(&step_rw, "planned_ahead"), 0, "{step_rw}");
    assert_eq!(count(&step_rw, "applied_beside"), 0, "{step_rw}");
    (step_ro, links_ro)
}

/// Every entry under etc/, var/ and run/ of `root` (but the stamps, which record when they
/// were written) with its type, mode, and link target or contents.
fn describe(root: &Path) -> BTreeMap<String, String> {
    use std::os::unix::fs::MetadataExt as _;
    let mut out = BTreeMap::new();
    let mut todo: Vec<PathBuf> = ["etc", "var", "run"].iter().map(|d| root.join(d)).collect();
    while let Some(p) = todo.pop() {
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        if rel.ends_with(".pristine-stamp") {
            continue;
        }
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let what = if m.file_type().is_symlink() {
            format!("-> {}", std::fs::read_link(&p).unwrap().display())
        } else if m.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                todo.push(e.unwrap().path());
            }
            "dir".to_string()
        } else {
            String::from_utf8_lossy(&std::fs::read(&p).unwrap_or_default()).into_owned()
        };
        out.insert(rel, format!("{:o} {what}", m.mode()));
    }
    out
}

/// [`ro_and_rw`] on the vendor tree with these tmpfiles lines and extra unit.
fn both(
    tag: &str,
    tmpfiles: &str,
    extra_unit: Option<(&str, &str)>,
) -> (Value, BTreeMap<String, String>) {
    both_prepared(tag, tmpfiles, extra_unit, |_| {})
}

/// [`both`] with each root set up by `prepare` first.
fn both_prepared(
    tag: &str,
    tmpfiles: &str,
    extra_unit: Option<(&str, &str)>,
    prepare: fn(&Path),
) -> (Value, BTreeMap<String, String>) {
    let tmp = TempDir::new(tag);
    let usr = tmp.path().join("vendor-usr");
    vendor(&usr, tmpfiles, extra_unit);
    let (step_ro, links_ro) = ro_and_rw(&tmp, &usr, &[], prepare);
    if count(&step_ro, "planned_ahead") == 1 {
        // The plan applied is the one made from the unit files read ahead.
        let units = 5 + usize::from(extra_unit.is_some());
        assert_eq!(count(&step_ro, "read_ahead") as usize, units, "{step_ro}");
    }
    (step_ro, links_ro)
}

#[test]
fn a_plan_made_ahead_is_applied_when_nothing_it_saw_changed() {
    // tmpfiles writes elsewhere in /etc and /run, even below the missing /run/systemd/system.
    let (step, links) = both(
        "ahead-kept",
        "d /run/systemd 0755 - - -\nf /etc/motd 0644 - - - hello\nd /var/lib/test 0755 - - -\n",
        None,
    );
    // Nothing tmpfiles does meets the plan: it was applied while tmpfiles applied.
    assert_ran(&step, true, true);
    assert_wanted(&links, "alpha.service", true);
    assert!(!links.keys().any(|k| k.contains("gamma")), "{links:?}");
}

#[test]
fn a_mask_made_by_tmpfiles_is_seen() {
    // Before presets runs, tmpfiles masks alpha: it must stay disabled, as in turn.
    let (step, links) = both(
        "ahead-mask",
        "L /etc/systemd/system/alpha.service - - - - /dev/null\n",
        None,
    );
    assert_ran(&step, false, false);
    assert_eq!(
        links.get("system/alpha.service").map(String::as_str),
        Some("/dev/null")
    );
    assert_wanted(&links, "alpha.service", false);
    assert_wanted(&links, "beta.service", true);
}

#[test]
fn a_preset_file_written_by_tmpfiles_is_seen() {
    // An admin preset in /etc, made by tmpfiles, disables beta.
    let (step, links) = both(
        "ahead-preset",
        "f /etc/systemd/system-preset/10-admin.preset 0644 - - - disable beta.service\n",
        None,
    );
    assert_ran(&step, false, false);
    assert_wanted(&links, "beta.service", false);
    assert_wanted(&links, "alpha.service", true);
}

#[test]
fn a_unit_file_written_by_tmpfiles_is_seen() {
    // tmpfiles installs an admin unit in /etc that presets enables.
    let (step, links) = both(
        "ahead-unit",
        "f /etc/systemd/system/id-admin.service 0644 - - - [Install]\\nWantedBy=multi-user.target\n",
        None,
    );
    assert_ran(&step, false, false);
    assert_wanted(&links, "id-admin.service", true);
}

#[test]
fn a_specifier_reading_the_machine_id_agrees() {
    // %m is the machine id, which the machine-id step writes while the plan may be made.
    let (step, links) = both(
        "ahead-spec",
        "",
        Some((
            "id-alias.service",
            "[Service]\nExecStart=/bin/true\n[Install]\nAlias=id-%m.service\nWantedBy=multi-user.target\n",
        )),
    );
    assert!(
        links.contains_key(&format!("system/id-{MID}.service")),
        "{links:?}"
    );
    assert_beside(&step, true);
}

#[test]
fn a_line_through_a_symlink_keeps_the_plan_in_turn() {
    // /var/lib/sd leads to /etc: the preset file tmpfiles writes through it lands among the
    // admin's presets, though its path does not say so. Applied beside (and first, as the
    // tests order it), beta would stay enabled.
    let (step, links) = both_prepared(
        "ahead-through-link",
        "f /var/lib/sd/systemd/system-preset/10-admin.preset 0644 - - - disable beta.service\n",
        None,
        |root| {
            std::fs::create_dir_all(root.join("var/lib")).unwrap();
            std::os::unix::fs::symlink("/etc", root.join("var/lib/sd")).unwrap();
        },
    );
    assert_ran(&step, false, false);
    let detail = step["detail"].as_str().unwrap();
    assert!(
        detail.contains("a symlink lies on the way: /var/lib/sd"),
        "{step}"
    );
    assert_wanted(&links, "beta.service", false);
    assert_wanted(&links, "alpha.service", true);
}

#[test]
fn a_line_below_a_link_line_keeps_the_plan_in_turn() {
    // The link made by the first line leads the second among the admin's presets; no
    // symlink is on the way before tmpfiles runs. Applied beside (and first), beta would
    // stay enabled.
    let (step, links) = both(
        "ahead-below-link",
        "L /var/lib/e - - - - /etc\n\
         f /var/lib/e/systemd/system-preset/10-admin.preset 0644 - - - disable beta.service\n",
        None,
    );
    assert_ran(&step, false, false);
    let detail = step["detail"].as_str().unwrap();
    assert!(detail.contains("made by a link or copy line"), "{step}");
    assert_wanted(&links, "beta.service", false);
}

#[test]
fn hostile_unit_files_read_ahead_are_refused_as_in_turn() {
    // What the thread reads before it knows it will plan: a FIFO (never opened for a
    // blocking read), a file over the 16 MiB read limit, a symlink loop, a dangling link, a
    // directory with a unit name and a name that is not UTF-8. The run must end, and agree
    // with the run that reads them in turn.
    let tmp = TempDir::new("ahead-hostile");
    let usr = tmp.path().join("vendor-usr");
    vendor(&usr, "", None);
    let units = usr.join("lib/systemd/system");
    let st = Command::new("mkfifo")
        .arg(units.join("fifo.service"))
        .status()
        .unwrap();
    assert!(st.success(), "mkfifo");
    let big = std::fs::File::create(units.join("big.service")).unwrap();
    big.set_len((16 << 20) + 1).unwrap();
    std::os::unix::fs::symlink("loop.service", units.join("loop.service")).unwrap();
    std::os::unix::fs::symlink("/nowhere/x.service", units.join("dangling.service")).unwrap();
    std::fs::create_dir(units.join("dir.service")).unwrap();
    std::fs::write(
        units.join(std::ffi::OsStr::from_bytes(b"bad\xff.service")),
        "[Install]\nWantedBy=multi-user.target\n",
    )
    .unwrap();

    let (step_ro, links_ro) = ro_and_rw(&tmp, &usr, &[], |_| {});
    assert_ran(&step_ro, true, true);
    if ORDERED {
        // Read ahead: the five plain unit files; the others were tried and refused.
        assert_eq!(count(&step_ro, "read_ahead"), 5, "{step_ro}");
    }
    assert_wanted(&links_ro, "alpha.service", true);
}

#[test]
fn the_main_thread_lists_when_the_helper_starts_late() {
    // The helper thread's CPU busy at first: the main thread lists the unit files itself, the
    // helper reads beside it once it runs, and the plan made ahead is the same.
    let tmp = TempDir::new("ahead-late");
    let usr = tmp.path().join("vendor-usr");
    vendor(&usr, "d /var/lib/test 0755 - - -\n", None);
    let (step_ro, links_ro) = ro_and_rw(&tmp, &usr, &[("PRISTINE_HELPER_LATE", "1")], |_| {});
    assert_ran(&step_ro, true, true);
    if ORDERED {
        assert_eq!(count(&step_ro, "read_ahead"), 5, "{step_ro}");
    }
    assert_wanted(&links_ro, "alpha.service", true);
    assert_wanted(&links_ro, "beta.service", true);
}

/// A first boot's /var with a symlink to /etc in it.
fn var_link_to_etc(root: &Path) {
    std::fs::create_dir_all(root.join("var/lib")).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("var/lib/sd")).unwrap();
}

/// A first boot's /var with a symlink to the admin's unit directory, not made yet.
fn var_link_to_units(root: &Path) {
    std::fs::create_dir_all(root.join("var/lib")).unwrap();
    std::os::unix::fs::symlink("/etc/systemd/system", root.join("var/lib/sd")).unwrap();
}

#[test]
fn randomized_tmpfiles_lines_give_the_tree_made_in_turn() {
    // Lines of every kind on paths presets reads or writes, above them, beside them and
    // through symlinks: whether the plan is applied beside tmpfiles (first, as the tests
    // order it) or in turn, the tree and the messages must be the ones made one step after
    // the other.
    const PATHS: &[&str] = &[
        "/etc",
        "/etc/motd",
        "/etc/pristine",
        "/etc/systemd",
        "/etc/systemd/system",
        "/etc/systemd/system/alpha.service",
        "/etc/systemd/system/multi-user.target.wants",
        "/etc/systemd/system-preset/10-x.preset",
        "/var/lib/a",
        "/var/lib/e",
        "/var/lib/e/systemd/system-preset/20-y.preset",
        "/var/lib/sd/systemd/system-preset/20-y.preset",
        "/var/lib/sd/beta.service",
        "/run/systemd",
        "/run/systemd/system",
        "/run/x",
    ];
    // None into /usr: writing through a link there fails differently when /usr is read-only
    // (the first run) and when it is refused (the second), which this test does not compare.
    const TARGETS: &[&str] = &["/dev/null", "/etc", "/etc/systemd/system", "/etc/motd"];
    const MODES: &[&str] = &["0755", "0700", "2755"];
    let prepares: [fn(&Path); 3] = [|_| {}, var_link_to_etc, var_link_to_units];
    let mut rng = common::Rng::new(0x5eed_0fbe_51de);
    let mut next = |n: usize| rng.below(n as u64) as usize;
    let (mut beside, mut cases) = (0, 0);
    for case in 0..200 {
        let mut lines = String::new();
        for _ in 0..1 + next(3) {
            let p = PATHS[next(PATHS.len())];
            let m = MODES[next(MODES.len())];
            let t = TARGETS[next(TARGETS.len())];
            lines += &match next(10) {
                0 => format!("d {p} {m} - - -\n"),
                1 => format!("f {p} 0644 - - - disable beta.service\n"),
                2 => format!("L {p} - - - - {t}\n"),
                3 => format!("L+ {p} - - - - {t}\n"),
                4 => format!("z {p} {m} - - -\n"),
                5 => format!("e {p} {m} - - -\n"),
                6 => format!("Z {p} {m} - - -\n"),
                7 => format!("w {p} - - - - disable alpha.service\n"),
                8 => format!("C {p} - - - - /usr/share/factory/presets\n"),
                _ => format!("z {}/*.service {m} - - -\n", PATHS[next(PATHS.len())]),
            };
        }
        let prepare = prepares[next(prepares.len())];
        let tmp = TempDir::new(&format!("ahead-random-{case}"));
        let usr = tmp.path().join("vendor-usr");
        vendor(&usr, &lines, None);
        write(
            &usr,
            "share/factory/presets/30-z.preset",
            "disable alpha.service\n",
        );
        let (step, _) = std::panic::catch_unwind(|| ro_and_rw(&tmp, &usr, &[], prepare))
            .unwrap_or_else(|_| panic!("case {case}, lines:\n{lines}"));
        cases += 1;
        beside += count(&step, "applied_beside");
    }
    eprintln!("{beside} of {cases} cases applied beside tmpfiles");
    if ORDERED {
        // Both ways were taken.
        assert!(
            beside > 0 && beside < cases,
            "{beside} of {cases} applied beside"
        );
    }
}
