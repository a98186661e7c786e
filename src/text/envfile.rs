//! Env-style files (`KEY=VALUE` with shell-like quoting): os-release, machine-info, locale.conf.
//! Parsing follows systemd's `parse_env_file`: `#`/`;` comment lines, double quotes with
//! backslash escapes for `"\\`$`, single quotes literal, unquoted values with backslash escapes
//! and trailing whitespace trimmed, a backslash-newline continues a line.

/// Parses `text` into (key, value) pairs in file order. Malformed lines are skipped.
pub fn parse(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let b: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < b.len() {
        // Start of a line: skip whitespace.
        while i < b.len() && matches!(b[i], ' ' | '\t' | '\r' | '\n') {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        if b[i] == '#' || b[i] == ';' {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
            continue;
        }
        let start = i;
        while i < b.len() && b[i] != '=' && b[i] != '\n' {
            i += 1;
        }
        if i >= b.len() || b[i] == '\n' {
            continue; // no '=': not an assignment
        }
        let key: String = b[start..i].iter().collect::<String>().trim().to_string();
        i += 1; // '='
        while i < b.len() && matches!(b[i], ' ' | '\t') {
            i += 1;
        }
        let mut val = String::new();
        let mut trailing_ws = 0usize; // unquoted whitespace at the end, to trim
        while let Some(&c) = b.get(i) {
            match c {
                '\n' => {
                    i += 1;
                    break;
                }
                '"' => {
                    i += 1;
                    while let Some(&c) = b.get(i) {
                        i += 1;
                        if c == '"' {
                            break;
                        }
                        if c == '\\' {
                            match b.get(i) {
                                Some('\n') => i += 1,
                                Some(&n @ ('"' | '\\' | '`' | '$')) => {
                                    val.push(n);
                                    i += 1;
                                }
                                Some(_) => val.push('\\'),
                                None => {}
                            }
                        } else {
                            val.push(c);
                        }
                    }
                    trailing_ws = 0;
                }
                '\'' => {
                    i += 1;
                    while let Some(&c) = b.get(i) {
                        i += 1;
                        if c == '\'' {
                            break;
                        }
                        val.push(c);
                    }
                    trailing_ws = 0;
                }
                '\\' => {
                    i += 1;
                    match b.get(i) {
                        Some('\n') => i += 1,
                        Some(&n) => {
                            val.push(n);
                            i += 1;
                        }
                        None => {}
                    }
                    trailing_ws = 0;
                }
                ' ' | '\t' | '\r' => {
                    val.push(c);
                    trailing_ws += 1;
                    i += 1;
                }
                _ => {
                    val.push(c);
                    trailing_ws = 0;
                    i += 1;
                }
            }
        }
        for _ in 0..trailing_ws {
            val.pop();
        }
        if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            out.push((key, val));
        }
    }
    out
}

/// The last value of `key` in `text`.
pub fn get(text: &str, key: &str) -> Option<String> {
    parse(text)
        .into_iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn os_release() {
        let t = "# comment\nNAME=\"Debian GNU/Linux\"\nID=debian\nVERSION_ID='12'\nX=a\\ b  \nPRETTY=\"a \\\"q\\\" \\$x\"\nBAD LINE\n";
        let v = parse(t);
        assert_eq!(get(t, "NAME").as_deref(), Some("Debian GNU/Linux"));
        assert_eq!(get(t, "ID").as_deref(), Some("debian"));
        assert_eq!(get(t, "VERSION_ID").as_deref(), Some("12"));
        assert_eq!(get(t, "X").as_deref(), Some("a b"));
        assert_eq!(get(t, "PRETTY").as_deref(), Some("a \"q\" $x"));
        assert_eq!(v.len(), 5);
    }
}
