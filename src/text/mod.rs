//! Text shared by every config format: systemd's word splitting and C escapes ([`word`]),
//! specifier expansion ([`specifier`]), env-style files such as os-release ([`envfile`]) and
//! config-line iteration. Everything here is pure: `&str`/`&[u8]` in, values out, no I/O.

pub mod envfile;
pub mod specifier;
pub mod word;

/// Iterates the meaningful lines of a config file the way systemd's tmpfiles/sysusers readers
/// do: each line stripped of surrounding whitespace, empty lines and lines starting with one of
/// `comment` skipped. Yields 1-based line numbers.
pub fn config_lines<'a>(
    text: &'a str,
    comment: &'a [char],
) -> impl Iterator<Item = (usize, &'a str)> + 'a {
    text.split('\n').enumerate().filter_map(move |(i, l)| {
        let l = l.trim_matches(|c: char| matches!(c, ' ' | '\t' | '\n' | '\r'));
        if l.is_empty() || l.starts_with(comment) {
            None
        } else {
            Some((i + 1, l))
        }
    })
}

/// systemd's `parse_boolean`.
pub fn parse_boolean(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "yes" | "y" | "true" | "t" | "on" => Some(true),
        "0" | "no" | "n" | "false" | "f" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn lines() {
        let t = "# c\n  a b  \n\n;x\n\tc\n";
        let v: Vec<_> = config_lines(t, &['#', ';']).collect();
        assert_eq!(v, vec![(2, "a b"), (5, "c")]);
    }
    #[test]
    fn booleans() {
        assert_eq!(parse_boolean("YES"), Some(true));
        assert_eq!(parse_boolean("off"), Some(false));
        assert_eq!(parse_boolean("2"), None);
    }
}
