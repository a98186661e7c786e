//! Bad input is reported where it is: `file:line` and exit 65 for a bad value, the file named
//! for an unreadable database. Each test builds its tree from scratch and runs the real binary.

mod common;

use common::{run_offline, stderr_text, write, TempDir};

fn tree(tag: &str) -> (TempDir, std::path::PathBuf) {
    let tmp = TempDir::new(tag);
    let t = tmp.path().join("root");
    write(&t, "usr/lib/os-release", "ID=test\n");
    write(&t, "usr/share/zoneinfo/Europe/Berlin", "TZif");
    (tmp, t)
}

#[test]
fn invalid_firstboot_values_name_their_line_and_exit_65() {
    let (_tmp, t) = tree("msg-firstboot");
    write(
        &t,
        "usr/lib/pristine/pristine.toml",
        "[firstboot]\nhostname = \"bad_host!\"\ntimezone = \"../../etc/shadow\"\n\
         locale = \"C.UTF-8\"\nkeymap = \"a b\"\n",
    );
    let o = run_offline(&t, &["provision"]);
    common::assert_exit(&o, 65);
    let e = stderr_text(&o);
    let file = "/usr/lib/pristine/pristine.toml";
    for (line, key) in [(2, "hostname"), (3, "timezone"), (5, "keymap")] {
        let want = format!("{file}:{line}: bad value for 'firstboot.{key}'");
        assert!(e.contains(&want), "no '{want}' in: {e}");
    }
    // The good value is still applied, the bad ones write nothing.
    assert_eq!(
        std::fs::read_to_string(t.join("etc/locale.conf")).unwrap(),
        "LANG=C.UTF-8\n"
    );
    assert!(!t.join("etc/hostname").exists() && !t.join("etc/localtime").exists());
}

#[test]
fn bad_keep_entries_name_their_line() {
    let (_tmp, t) = tree("msg-keep");
    write(
        &t,
        "etc/pristine/reset.toml",
        "[reset]\nkeep = [\n  \"/var/lib/good\",\n  \"relative\",\n  \"/usr/bin\",\n  \"/var/../usr\",\n]\n",
    );
    let o = run_offline(&t, &["provision"]);
    common::assert_exit(&o, 65);
    let e = stderr_text(&o);
    for (line, entry) in [(4, "relative"), (5, "/usr/bin"), (6, "/var/../usr")] {
        let want = format!("/etc/pristine/reset.toml:{line}: bad entry in 'reset.keep': '{entry}'");
        assert!(e.contains(&want), "no '{want}' in: {e}");
    }
    assert!(
        !e.contains("'/var/lib/good'"),
        "the good entry is kept: {e}"
    );
}

#[test]
fn a_symlink_loop_as_passwd_names_the_file() {
    let (_tmp, t) = tree("msg-eloop");
    std::fs::create_dir_all(t.join("etc")).unwrap();
    std::os::unix::fs::symlink("passwd", t.join("etc/passwd")).unwrap();
    write(&t, "usr/lib/sysusers.d/a.conf", "u app - \"App\"\n");
    let o = run_offline(&t, &["sysusers"]);
    common::assert_exit(&o, 73);
    let want = format!(
        "Failed to load user database: {}: Too many levels of symbolic links",
        t.join("etc/passwd").display()
    );
    assert!(
        stderr_text(&o).contains(&want),
        "no '{want}' in: {}",
        stderr_text(&o)
    );
}
