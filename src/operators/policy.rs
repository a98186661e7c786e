//! The state policy: `state.d/*.toml` rules read from pristine's configuration directories
//! (`/etc/pristine/state.d` over `/run/pristine/state.d` over `/usr/local/lib/pristine/state.d`
//! over `/usr/lib/pristine/state.d`, same-name masking as everywhere in systemd), and the one
//! question it answers: which operator owns a path. Parsing is pure ([`Policy::parse_into`]);
//! the only I/O is [`Policy::load`] reading the files through the root handle. It never writes.
//!
//! A rule names a path or a glob (`*`, `?`, `[…]` within one component) and a kind; it claims
//! the paths it matches and, when they are directories, everything below them. Among the rules
//! claiming a path, the winner is the one from the highest-priority directory, then the one
//! matching deepest (`/etc/app/secret` beats `/etc/app`), then a literal path over a glob. Two
//! rules tied on all three are ambiguous: the path falls back to the mode's default and the
//! conflict is a configuration error naming both rules.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::{confdirs, line_of};
use crate::fs::Root;
use crate::report::Diagnostic;

/// The operator kinds.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Parsed into values, re-rendered at boot.
    Parsed,
    /// Kept byte for byte.
    Stash,
    /// Never stored; follows the vendor's copy in `/usr/share/factory`.
    Reference,
    /// Created once by a generator when missing, then kept like a stash.
    Generate,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Parsed => "parsed",
            Kind::Stash => "stash",
            Kind::Reference => "reference",
            Kind::Generate => "generate",
        }
    }
}

/// How a `parsed` path is read and rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `KEY=value` lines (locale.conf, vconsole.conf, machine-info, /etc/default/*).
    Env,
    /// `/etc/hostname`: one name.
    Hostname,
    /// `/etc/localtime`: a link to a zone, stored as the zone name.
    Timezone,
    /// `/etc/systemd/system`: unit enablement, stored as unit states.
    Units,
    /// `/etc/passwd` (with group, shadow, gshadow, subuid, subgid): the admin's accounts and
    /// fields, merged record by record around sysusers ([`crate::accounts::merge`]).
    Accounts,
}

impl Format {
    /// The format a `parsed` rule gets when it names none.
    pub fn infer(path: &str) -> Format {
        match path {
            "/etc/hostname" => Format::Hostname,
            "/etc/localtime" => Format::Timezone,
            "/etc/systemd/system" => Format::Units,
            "/etc/passwd" => Format::Accounts,
            _ => Format::Env,
        }
    }
}

/// The generators pristine has built in.
pub const GENERATORS: &[&str] = &["ssh-host-keys"];

/// One rule, with where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// In-root path of the file that holds the rule.
    pub file: PathBuf,
    pub line: usize,
    /// Index into [`confdirs::DIRS`]: 0 is `/etc`, the highest priority.
    pub level: usize,
    pub pattern: String,
    pub kind: Kind,
    /// For `parsed`.
    pub format: Option<Format>,
    /// For `generate`.
    pub generator: Option<String>,
}

impl Rule {
    /// `file:line`.
    pub fn origin(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }

    fn components(&self) -> Vec<&str> {
        components(&self.pattern)
    }

    fn literal(&self) -> bool {
        !self.pattern.contains(['*', '?', '['])
    }

    /// The depth (components) at which the rule matches `path` (the path itself or one of its
    /// ancestors), or `None`.
    fn match_depth(&self, path: &[&str]) -> Option<usize> {
        let pat = self.components();
        if pat.len() > path.len() {
            return None;
        }
        pat.iter()
            .zip(path)
            .all(|(p, c)| crate::presets::rules::fnmatch(p.as_bytes(), c.as_bytes()))
            .then_some(pat.len())
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} ({})",
            self.pattern,
            self.kind.as_str(),
            self.origin()
        )?;
        if let Some(g) = &self.generator {
            write!(f, " generator={g}")?;
        }
        Ok(())
    }
}

fn components(p: &str) -> Vec<&str> {
    p.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect()
}

/// What a path falls to when no rule (or an ambiguous pair) claims it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Default {
    /// Stateless and volatile modes: admin edits are discarded, the vendor's copy stands.
    Discard,
    /// Stateful: pristine leaves the path alone.
    LeaveAlone,
}

impl Default {
    pub fn for_mode(mode: crate::config::Mode) -> Default {
        match mode {
            crate::config::Mode::Stateful => Default::LeaveAlone,
            _ => Default::Discard,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Default::Discard => "default (reference: discarded at boot)",
            Default::LeaveAlone => "default (left alone)",
        }
    }
}

/// The answer to "who owns this path".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner<'a> {
    Rule(&'a Rule),
    Default(Default),
    /// Two rules tie; the path falls back to the default.
    Ambiguous(&'a Rule, &'a Rule, Default),
}

impl Owner<'_> {
    /// The owning rule, when one does.
    pub fn rule(&self) -> Option<&Rule> {
        match self {
            Owner::Rule(r) => Some(r),
            _ => None,
        }
    }
}

/// A claim's rank: directory priority, match depth, literal over glob (greater wins).
type Precedence = (std::cmp::Reverse<usize>, usize, bool);

/// All rules of a root, and the default.
#[derive(Clone, Debug)]
pub struct Policy {
    pub rules: Vec<Rule>,
    pub default: Default,
    /// Bad rules and files, `file:line: message`.
    pub diagnostics: Vec<Diagnostic>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rule: Vec<toml::Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    path: String,
    kind: Kind,
    format: Option<Format>,
    generator: Option<String>,
}

impl Policy {
    /// An empty policy with the default for `mode`.
    pub fn new(default: Default) -> Policy {
        Policy {
            rules: Vec::new(),
            default,
            diagnostics: Vec::new(),
        }
    }

    /// Reads `state.d/*.toml` from the root's configuration directories.
    pub fn load(root: &Root, default: Default) -> Policy {
        let mut policy = Policy::new(default);
        let dirs = confdirs::search_dirs("pristine/state.d");
        for f in confdirs::list_in(root, &dirs, ".toml") {
            if f.masked {
                continue;
            }
            let level = dirs
                .iter()
                .position(|d| f.path.starts_with(d))
                .unwrap_or(dirs.len());
            match root.read(&f.path) {
                Ok(data) => match String::from_utf8(data) {
                    Ok(text) => policy.parse_into(&f.path, level, &text),
                    Err(_) => policy.diagnostics.push(Diagnostic::bad_config(
                        &f.path,
                        0,
                        "not valid UTF-8, file ignored",
                    )),
                },
                Err(e) => policy.diagnostics.push(Diagnostic::bad_config(
                    &f.path,
                    0,
                    format!("cannot read: {e}"),
                )),
            }
        }
        policy
    }

    /// Parses one policy file (in-root path `file`, directory priority `level`).
    pub fn parse_into(&mut self, file: &Path, level: usize, text: &str) {
        let raw: RawFile = match toml::from_str(text) {
            Ok(r) => r,
            Err(e) => {
                let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(0);
                self.diagnostics.push(Diagnostic::bad_config(
                    file,
                    line,
                    format!("{}, file ignored", e.message()),
                ));
                return;
            }
        };
        for spanned in raw.rule {
            let line = line_of(text, spanned.span().start);
            let r = spanned.into_inner();
            let bad = |m: String| Diagnostic::bad_config(file, line, m);
            if !r.path.starts_with("/etc/") && r.path != "/etc" {
                self.diagnostics.push(bad(format!(
                    "rule path '{}' is not under /etc, rule ignored",
                    r.path
                )));
                continue;
            }
            if r.path.split('/').any(|c| c == "..") {
                self.diagnostics.push(bad(format!(
                    "rule path '{}' contains '..', rule ignored",
                    r.path
                )));
                continue;
            }
            if r.format.is_some() && r.kind != Kind::Parsed {
                self.diagnostics.push(bad(format!(
                    "'format' only applies to kind 'parsed', rule for '{}' ignored",
                    r.path
                )));
                continue;
            }
            match (&r.generator, r.kind) {
                (None, Kind::Generate) => {
                    self.diagnostics.push(bad(format!(
                        "kind 'generate' needs a 'generator' (one of: {}), rule for '{}' ignored",
                        GENERATORS.join(", "),
                        r.path
                    )));
                    continue;
                }
                (Some(g), Kind::Generate) if !GENERATORS.contains(&g.as_str()) => {
                    self.diagnostics.push(bad(format!(
                        "unknown generator '{g}' (known: {}), rule ignored",
                        GENERATORS.join(", ")
                    )));
                    continue;
                }
                (Some(_), k) if k != Kind::Generate => {
                    self.diagnostics.push(bad(format!(
                        "'generator' only applies to kind 'generate', rule for '{}' ignored",
                        r.path
                    )));
                    continue;
                }
                _ => {}
            }
            let pattern = format!("/{}", components(&r.path).join("/"));
            let format = (r.kind == Kind::Parsed)
                .then(|| r.format.unwrap_or_else(|| Format::infer(&pattern)));
            self.rules.push(Rule {
                file: file.to_path_buf(),
                line,
                level,
                pattern,
                kind: r.kind,
                format,
                generator: r.generator,
            });
        }
    }

    /// Who owns in-root absolute `path`.
    pub fn owner(&self, path: &str) -> Owner<'_> {
        let comps = components(path);
        // Precedence: higher-priority directory, deeper match, literal over glob.
        let key = |r: &Rule, depth: usize| (std::cmp::Reverse(r.level), depth, r.literal());
        let mut best: Option<(&Rule, Precedence)> = None;
        let mut tie: Option<&Rule> = None;
        for r in &self.rules {
            let Some(depth) = r.match_depth(&comps) else {
                continue;
            };
            let k = key(r, depth);
            match &best {
                Some((_, bk)) if k < *bk => {}
                Some((_, bk)) if k == *bk => tie = tie.or(Some(r)),
                _ => {
                    best = Some((r, k));
                    tie = None;
                }
            }
        }
        match (best, tie) {
            (Some((a, _)), Some(b)) => Owner::Ambiguous(a, b, self.default),
            (Some((a, _)), None) => Owner::Rule(a),
            (None, _) => Owner::Default(self.default),
        }
    }

    /// Whether some rule could claim a path strictly below `dir` (a walk must go on).
    pub fn may_claim_below(&self, dir: &str) -> bool {
        let comps = components(dir);
        self.rules.iter().any(|r| {
            let pat = r.components();
            pat.len() > comps.len()
                && pat
                    .iter()
                    .zip(&comps)
                    .all(|(p, c)| crate::presets::rules::fnmatch(p.as_bytes(), c.as_bytes()))
        })
    }

    /// The configuration error for an ambiguous path: `file:line: message` naming both rules.
    pub fn ambiguity(a: &Rule, b: &Rule, path: &str, default: Default) -> Diagnostic {
        Diagnostic::bad_config(
            &a.file,
            a.line,
            format!(
                "'{path}' is claimed by two rules at the same precedence: {a} and {b}; \
                 it falls back to the {}",
                default.as_str()
            ),
        )
    }

    /// The literal top directories of the rules of `kind` (where a walk for them starts).
    pub fn rules_of(&self, kind: Kind) -> impl Iterator<Item = &Rule> {
        self.rules.iter().filter(move |r| r.kind == kind)
    }
}

/// The longest literal prefix of a pattern (where walking for its matches starts).
pub fn literal_prefix(pattern: &str) -> String {
    let mut out = String::new();
    for c in components(pattern) {
        if c.contains(['*', '?', '[']) {
            break;
        }
        out.push('/');
        out.push_str(c);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(files: &[(&str, usize, &str)]) -> Policy {
        let mut p = Policy::new(Default::Discard);
        for (f, level, text) in files {
            p.parse_into(Path::new(f), *level, text);
        }
        p
    }

    #[test]
    fn deepest_and_local_rule_wins() {
        let p = policy(&[
            (
                "/usr/lib/pristine/state.d/v.toml",
                3,
                "[[rule]]\npath = \"/etc/app\"\nkind = \"stash\"\n\n[[rule]]\npath = \"/etc/app/cache\"\nkind = \"reference\"\n",
            ),
            (
                "/etc/pristine/state.d/l.toml",
                0,
                "[[rule]]\npath = \"/etc/hostname\"\nkind = \"stash\"\n",
            ),
            (
                "/usr/lib/pristine/state.d/h.toml",
                3,
                "[[rule]]\npath = \"/etc/hostname\"\nkind = \"parsed\"\n",
            ),
        ]);
        assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
        assert_eq!(
            p.owner("/etc/app/x/y").rule().map(|r| r.kind),
            Some(Kind::Stash)
        );
        assert_eq!(
            p.owner("/etc/app/cache/z").rule().map(|r| r.kind),
            Some(Kind::Reference)
        );
        let h = p.owner("/etc/hostname");
        assert_eq!(h.rule().map(|r| (r.kind, r.line)), Some((Kind::Stash, 1)));
        assert_eq!(p.owner("/etc/other"), Owner::Default(Default::Discard));
    }

    #[test]
    fn same_precedence_is_ambiguous_and_names_both() {
        let p = policy(&[(
            "/etc/pristine/state.d/a.toml",
            0,
            "[[rule]]\npath = \"/etc/ssh/*_key\"\nkind = \"stash\"\n\n[[rule]]\npath = \"/etc/ssh/ssh_*\"\nkind = \"reference\"\n",
        )]);
        let Owner::Ambiguous(a, b, d) = p.owner("/etc/ssh/ssh_host_ed25519_key") else {
            panic!("not ambiguous");
        };
        let msg = Policy::ambiguity(a, b, "/etc/ssh/ssh_host_ed25519_key", d).message;
        assert!(
            msg.contains("a.toml:1") && msg.contains("a.toml:5"),
            "{msg}"
        );
        // A path only one of the globs matches has that owner; one neither matches, the default.
        assert_eq!(
            p.owner("/etc/ssh/ssh_config").rule().map(|r| r.kind),
            Some(Kind::Reference)
        );
        assert_eq!(
            p.owner("/etc/ssh/sshd_config"),
            Owner::Default(Default::Discard)
        );
    }

    #[test]
    fn bad_rules_name_file_and_line() {
        let p = policy(&[(
            "/etc/pristine/state.d/b.toml",
            0,
            "[[rule]]\npath = \"/var/x\"\nkind = \"stash\"\n\n[[rule]]\npath = \"/etc/k\"\nkind = \"generate\"\ngenerator = \"nope\"\n\n[[rule]]\npath = \"/etc/ok\"\nkind = \"stash\"\n",
        )]);
        let lines: Vec<usize> = p.diagnostics.iter().map(|d| d.line).collect();
        assert_eq!(lines, vec![1, 5]);
        assert_eq!(p.rules.len(), 1);
        let q = policy(&[("/etc/pristine/state.d/c.toml", 0, "[[rule]]\npath = 3\n")]);
        assert_eq!(q.diagnostics.len(), 1);
        assert_eq!(q.diagnostics[0].line, 2);
    }

    #[test]
    fn literal_prefixes() {
        assert_eq!(literal_prefix("/etc/ssh/ssh_host_*"), "/etc/ssh");
        assert_eq!(literal_prefix("/etc/app"), "/etc/app");
    }
}
