//! Text shared by every config format: systemd's word splitting and C escapes ([`word`]),
//! specifier expansion ([`specifier`]), env-style files such as os-release ([`envfile`]) and
//! the line lexer every config format reads with ([`lines`]), time spans ([`timespan`]), path
//! simplification ([`path`]) and base64 ([`base64`]). Everything here is pure: text or a
//! reader handed in, values out; nothing here opens a file.

pub mod base64;
pub mod envfile;
pub mod lines;
pub mod path;
pub mod specifier;
pub mod timespan;
pub mod word;

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
    fn booleans() {
        assert_eq!(parse_boolean("YES"), Some(true));
        assert_eq!(parse_boolean("off"), Some(false));
        assert_eq!(parse_boolean("2"), None);
    }
}
