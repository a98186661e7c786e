//! The command line answers for itself: every verb the top-level help lists answers `--help`
//! with its own usage, the top-level help lists every update verb, and `update` without a verb
//! is a usage error. The verb lists come from the binary's own help, not from this file.

mod common;

use common::{assert_exit, run_pristine};

fn stdout(args: &[&str]) -> String {
    let out = run_pristine(args);
    assert_exit(&out, 0);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The first word of each indented line of the section that starts with `heading`.
fn section_words(help: &str, heading: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with(heading))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn every_verb_answers_help() {
    let top = stdout(&["--help"]);
    let verbs = section_words(&top, "Verbs:");
    assert!(verbs.len() >= 9, "too few verbs parsed: {verbs:?}");
    for verb in &verbs {
        for flag in ["--help", "-h"] {
            let out = run_pristine(&[verb, flag]);
            assert_exit(&out, 0);
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.contains("Usage: pristine") || text.contains(&format!("pristine {verb}")),
                "{verb} {flag}: {text}"
            );
        }
    }
    // Each listed verb is also dispatched: an unknown option reaches the verb's own parser
    // (a usage error naming the verb), not the "Unknown verb" fallback.
    for verb in verbs.iter().filter(|v| *v != "help") {
        let out = run_pristine(&[verb, "--no-such-option"]);
        assert_exit(&out, 1);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("Unknown verb"), "{verb}: {err}");
        assert!(err.contains(&format!("pristine {verb}")), "{verb}: {err}");
    }
    // `--help` after other options of the verb still shows help instead of running it.
    let out = run_pristine(&["provision", "--dry-run", "--help"]);
    assert_exit(&out, 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Usage: pristine provision"));
}

#[test]
fn top_level_help_lists_every_update_verb() {
    let top = stdout(&["--help"]);
    let update = stdout(&["update", "--help"]);
    let subs = section_words(&update, "Usage: pristine update VERB");
    assert!(subs.iter().any(|s| s == "adopt"), "{subs:?}");
    for s in &subs {
        assert!(
            top.contains(&format!("update {s}")),
            "top-level help lacks 'update {s}'"
        );
        let out = run_pristine(&["update", s, "--help"]);
        assert_exit(&out, 0);
    }
}

#[test]
fn update_without_a_verb_is_a_usage_error() {
    let out = run_pristine(&["update"]);
    assert_exit(&out, 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected a verb"));
}
