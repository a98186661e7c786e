//! systemd's word splitting (`extract_first_word`) and C-style unescaping, on bytes.
//!
//! Every config format pristine reads splits its lines with these rules; each format picks its
//! flags exactly as systemd does for it. Output is bytes because `\xff` and octal escapes may
//! produce bytes that are not UTF-8.

/// Flags with the meaning of systemd's `ExtractFlags`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags(u16);

impl Flags {
    /// Allow unbalanced quotes and eat a trailing backslash.
    pub const RELAX: Flags = Flags(1);
    /// Unescape known C escape sequences.
    pub const CUNESCAPE: Flags = Flags(1 << 1);
    /// Keep unknown escape sequences and a trailing backslash verbatim.
    pub const UNESCAPE_RELAX: Flags = Flags(1 << 2);
    /// Unescape separators (and the backslash itself).
    pub const UNESCAPE_SEPARATORS: Flags = Flags(1 << 3);
    /// Quotes group words but are kept in the output.
    pub const KEEP_QUOTE: Flags = Flags(1 << 4);
    /// Quotes group words and are removed.
    pub const UNQUOTE: Flags = Flags(1 << 5);
    /// Every separator ends a word (empty words possible).
    pub const DONT_COALESCE_SEPARATORS: Flags = Flags(1 << 6);
    /// The backslash is an ordinary character.
    pub const RETAIN_ESCAPE: Flags = Flags(1 << 7);
    /// Do not consume the separator after the word.
    pub const RETAIN_SEPARATORS: Flags = Flags(1 << 8);

    pub const fn empty() -> Flags {
        Flags(0)
    }
    pub const fn union(self, o: Flags) -> Flags {
        Flags(self.0 | o.0)
    }
    pub const fn has(self, o: Flags) -> bool {
        self.0 & o.0 != 0
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, o: Flags) -> Flags {
        self.union(o)
    }
}

/// A word (if any) and the unparsed rest (`None` once the input is exhausted).
pub type Extracted<'a> = (Option<Vec<u8>>, Option<&'a [u8]>);

/// Words and the unparsed rest.
pub type Words<'a> = (Vec<Vec<u8>>, Option<&'a [u8]>);

/// Whitespace as systemd defines it (`WHITESPACE`).
pub const WHITESPACE: &[u8] = b" \t\n\r";

/// Why a word could not be extracted (systemd's `-EINVAL` cases).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WordError {
    /// A quote was opened and never closed.
    UnbalancedQuotes,
    /// A trailing backslash or an unknown escape sequence.
    BadEscape,
}

impl std::fmt::Display for WordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WordError::UnbalancedQuotes => f.write_str("unbalanced quoting"),
            WordError::BadEscape => f.write_str("invalid escape sequence"),
        }
    }
}

/// One C escape sequence after the backslash. Returns the decoded value, whether it is a raw
/// byte (`\x`, octal) rather than a code point, and how many input bytes it used.
pub fn cunescape_one(p: &[u8], accept_nul: bool) -> Option<(u32, bool, usize)> {
    let hexv = |c: u8| (c as char).to_digit(16);
    let octv = |c: u8| (c as char).to_digit(8);
    let c0 = *p.first()?;
    let simple = match c0 {
        b'a' => Some(7),
        b'b' => Some(8),
        b'f' => Some(12),
        b'n' => Some(10),
        b'r' => Some(13),
        b't' => Some(9),
        b'v' => Some(11),
        b'\\' => Some(b'\\' as u32),
        b'"' => Some(b'"' as u32),
        b'\'' => Some(b'\'' as u32),
        b's' => Some(b' ' as u32),
        _ => None,
    };
    if let Some(v) = simple {
        return Some((v, false, 1));
    }
    match c0 {
        b'x' => {
            let a = hexv(*p.get(1)?)?;
            let b = hexv(*p.get(2)?)?;
            if a == 0 && b == 0 && !accept_nul {
                return None;
            }
            Some(((a << 4) | b, true, 3))
        }
        b'u' | b'U' => {
            let n = if c0 == b'u' { 4 } else { 8 };
            let mut v: u32 = 0;
            for i in 0..n {
                v = (v << 4) | hexv(*p.get(1 + i)?)?;
            }
            if v == 0 && !accept_nul {
                return None;
            }
            if c0 == b'U' && char::from_u32(v).is_none() {
                return None;
            }
            Some((v, false, n + 1))
        }
        b'0'..=b'7' => {
            let a = octv(*p.first()?)?;
            let b = octv(*p.get(1)?)?;
            let c = octv(*p.get(2)?)?;
            if a == 0 && b == 0 && c == 0 && !accept_nul {
                return None;
            }
            let m = (a << 6) | (b << 3) | c;
            if m > 255 {
                return None;
            }
            Some((m, true, 3))
        }
        _ => None,
    }
}

fn push_unichar(out: &mut Vec<u8>, v: u32) {
    // systemd's utf8_encode_unichar also encodes surrogates; mirror that byte pattern.
    if v < 0x80 {
        out.push(v as u8);
    } else if v < 0x800 {
        out.push(0xc0 | (v >> 6) as u8);
        out.push(0x80 | (v & 0x3f) as u8);
    } else if v < 0x10000 {
        out.push(0xe0 | (v >> 12) as u8);
        out.push(0x80 | ((v >> 6) & 0x3f) as u8);
        out.push(0x80 | (v & 0x3f) as u8);
    } else {
        out.push(0xf0 | (v >> 18) as u8);
        out.push(0x80 | ((v >> 12) & 0x3f) as u8);
        out.push(0x80 | ((v >> 6) & 0x3f) as u8);
        out.push(0x80 | (v & 0x3f) as u8);
    }
}

/// Undoes C escaping over a whole string (systemd's `cunescape` with `relax`: unknown escapes
/// and a trailing backslash kept verbatim).
pub fn cunescape(s: &[u8], relax: bool) -> Result<Vec<u8>, WordError> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] != b'\\' {
            out.push(s[i]);
            i += 1;
            continue;
        }
        if i + 1 == s.len() {
            if relax {
                out.push(b'\\');
                i += 1;
                continue;
            }
            return Err(WordError::BadEscape);
        }
        match cunescape_one(&s[i + 1..], false) {
            Some((v, eight_bit, n)) => {
                if eight_bit {
                    out.push(v as u8);
                } else {
                    push_unichar(&mut out, v);
                }
                i += 1 + n;
            }
            None if relax => {
                out.push(b'\\');
                i += 1;
            }
            None => return Err(WordError::BadEscape),
        }
    }
    Ok(out)
}

/// Extracts the first word of `input`. Returns the word (or `None` when only separators are
/// left) and the rest of the input (`None` when the input is exhausted, as systemd sets `*p`
/// to NULL).
pub fn extract_first_word<'a>(
    input: Option<&'a [u8]>,
    separators: &[u8],
    flags: Flags,
) -> Result<Extracted<'a>, WordError> {
    let Some(p) = input else {
        return Ok((None, None));
    };
    let is_sep = |c: u8| separators.contains(&c);
    let mut i = 0;
    let mut s: Option<Vec<u8>> = None;
    if flags.has(Flags::DONT_COALESCE_SEPARATORS) {
        s = Some(Vec::new());
    }
    // Skip leading separators.
    loop {
        let Some(&c) = p.get(i) else {
            return Ok((s, None));
        };
        if is_sep(c) {
            if flags.has(Flags::DONT_COALESCE_SEPARATORS) {
                if !flags.has(Flags::RETAIN_SEPARATORS) {
                    i += 1;
                }
                return Ok((s, Some(&p[i..])));
            }
            i += 1;
        } else {
            break;
        }
    }
    let mut out = Vec::new();
    let mut quote: u8 = 0;
    let mut backslash = false;
    loop {
        let c = p.get(i).copied();
        if backslash {
            let Some(c) = c else {
                if flags.has(Flags::UNESCAPE_RELAX) && (quote == 0 || flags.has(Flags::RELAX)) {
                    out.push(b'\\');
                    return Ok((Some(out), None));
                }
                if flags.has(Flags::RELAX) {
                    return Ok((Some(out), None));
                }
                return Err(WordError::BadEscape);
            };
            if flags.has(Flags::CUNESCAPE) || flags.has(Flags::UNESCAPE_SEPARATORS) {
                let decoded = if flags.has(Flags::CUNESCAPE) {
                    cunescape_one(&p[i..], false)
                } else {
                    None
                };
                if let Some((v, eight_bit, n)) = decoded {
                    i += n - 1;
                    if eight_bit {
                        out.push(v as u8);
                    } else {
                        push_unichar(&mut out, v);
                    }
                } else if flags.has(Flags::UNESCAPE_SEPARATORS) && (is_sep(c) || c == b'\\') {
                    out.push(c);
                } else if flags.has(Flags::UNESCAPE_RELAX) {
                    out.push(b'\\');
                    out.push(c);
                } else {
                    return Err(WordError::BadEscape);
                }
            } else {
                out.push(c);
            }
            backslash = false;
            i += 1;
        } else if quote != 0 {
            loop {
                let Some(c) = p.get(i).copied() else {
                    if flags.has(Flags::RELAX) {
                        return Ok((Some(out), None));
                    }
                    return Err(WordError::UnbalancedQuotes);
                };
                if c == quote {
                    quote = 0;
                    if flags.has(Flags::UNQUOTE) {
                        i += 1;
                        break;
                    }
                } else if c == b'\\' && !flags.has(Flags::RETAIN_ESCAPE) {
                    backslash = true;
                    i += 1;
                    break;
                }
                out.push(c);
                i += 1;
                if quote == 0 {
                    break;
                }
            }
        } else {
            loop {
                let Some(c) = p.get(i).copied() else {
                    return Ok((Some(out), None));
                };
                if (c == b'\'' || c == b'"')
                    && (flags.has(Flags::KEEP_QUOTE) || flags.has(Flags::UNQUOTE))
                {
                    quote = c;
                    if flags.has(Flags::UNQUOTE) {
                        i += 1;
                        break;
                    }
                } else if c == b'\\' && !flags.has(Flags::RETAIN_ESCAPE) {
                    backslash = true;
                    i += 1;
                    break;
                } else if is_sep(c) {
                    if flags.has(Flags::DONT_COALESCE_SEPARATORS) {
                        if !flags.has(Flags::RETAIN_SEPARATORS) {
                            i += 1;
                        }
                        return Ok((Some(out), Some(&p[i..])));
                    }
                    if !flags.has(Flags::RETAIN_SEPARATORS) {
                        loop {
                            match p.get(i) {
                                None => return Ok((Some(out), None)),
                                Some(&c) if is_sep(c) => i += 1,
                                Some(_) => break,
                            }
                        }
                    }
                    return Ok((Some(out), Some(&p[i..])));
                }
                out.push(c);
                i += 1;
                if quote != 0 && flags.has(Flags::KEEP_QUOTE) {
                    break;
                }
            }
        }
    }
}

/// Splits up to `n` words off `input` (systemd's `extract_many_words`): returns the words found
/// (fewer than `n` when the input ran out) and the unparsed rest.
pub fn extract_many_words<'a>(
    input: &'a [u8],
    separators: &[u8],
    flags: Flags,
    n: usize,
) -> Result<Words<'a>, WordError> {
    let mut words = Vec::with_capacity(n);
    let mut rest = Some(input);
    for _ in 0..n {
        let (w, r) = extract_first_word(rest, separators, flags)?;
        rest = r;
        match w {
            Some(w) => words.push(w),
            None => break,
        }
    }
    Ok((words, rest))
}

/// Splits a whole string into words.
pub fn split_words(
    input: &[u8],
    separators: &[u8],
    flags: Flags,
) -> Result<Vec<Vec<u8>>, WordError> {
    let mut words = Vec::new();
    let mut rest = Some(input);
    loop {
        let (w, r) = extract_first_word(rest, separators, flags)?;
        rest = r;
        match w {
            Some(w) => words.push(w),
            None => return Ok(words),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(s: &str, flags: Flags) -> Result<(Option<String>, Option<String>), WordError> {
        let (w, r) = extract_first_word(Some(s.as_bytes()), WHITESPACE, flags)?;
        Ok((
            w.map(|w| String::from_utf8(w).unwrap()),
            r.map(|r| String::from_utf8(r.to_vec()).unwrap()),
        ))
    }

    // Cases from systemd's test-extract-word.c semantics, written anew.
    #[test]
    fn table() {
        let u = Flags::UNQUOTE;
        let c = Flags::CUNESCAPE;
        type Case<'a> = (
            &'a str,
            Flags,
            Result<(Option<&'a str>, Option<&'a str>), WordError>,
        );
        let cases: &[Case] = &[
            (
                "foo bar waldo",
                Flags::empty(),
                Ok((Some("foo"), Some("bar waldo"))),
            ),
            ("   foo   ", Flags::empty(), Ok((Some("foo"), None))),
            ("", Flags::empty(), Ok((None, None))),
            ("   ", Flags::empty(), Ok((None, None))),
            ("'foo' 'bar'", u, Ok((Some("foo"), Some("'bar'")))),
            ("'fo\"o' x", u, Ok((Some("fo\"o"), Some("x")))),
            ("\"foo", u, Err(WordError::UnbalancedQuotes)),
            ("\"foo", u | Flags::RELAX, Ok((Some("foo"), None))),
            ("a\\", Flags::empty(), Err(WordError::BadEscape)),
            ("a\\", Flags::RELAX, Ok((Some("a"), None))),
            ("a\\", c | Flags::UNESCAPE_RELAX, Ok((Some("a\\"), None))),
            ("\\x41b c", c, Ok((Some("Ab"), Some("c")))),
            ("\\q", c, Err(WordError::BadEscape)),
            ("\\q", c | Flags::UNESCAPE_RELAX, Ok((Some("\\q"), None))),
            ("\\q", Flags::empty(), Ok((Some("q"), None))),
            ("a\\ b", Flags::empty(), Ok((Some("a b"), None))),
            (
                "x'a b'y z",
                Flags::KEEP_QUOTE,
                Ok((Some("x'a b'y"), Some("z"))),
            ),
            ("x'a b'y z", u, Ok((Some("xa by"), Some("z")))),
            ("a\\b", Flags::RETAIN_ESCAPE, Ok((Some("a\\b"), None))),
            ("'a\\'b' c", u | c, Ok((Some("a'b"), Some("c")))),
            ("\\u00e9", c, Ok((Some("é"), None))),
            ("\\x00", c, Err(WordError::BadEscape)),
            ("\\s", c, Ok((Some(" "), None))),
        ];
        for (input, flags, want) in cases {
            let got = first(input, *flags);
            let want = want.map(|(a, b)| (a.map(str::to_string), b.map(str::to_string)));
            assert_eq!(got, want, "input {input:?} flags {flags:?}");
        }
    }

    #[test]
    fn dont_coalesce() {
        let f = Flags::DONT_COALESCE_SEPARATORS;
        let w = split_words(b"a::b:", b":", f).unwrap();
        assert_eq!(
            w,
            vec![b"a".to_vec(), b"".to_vec(), b"b".to_vec(), b"".to_vec()]
        );
    }

    #[test]
    fn many() {
        let (w, rest) =
            extract_many_words(b"u foo 1 \"a b\" rest of it", WHITESPACE, Flags::UNQUOTE, 4)
                .unwrap();
        assert_eq!(w.len(), 4);
        assert_eq!(w[3], b"a b");
        assert_eq!(rest, Some(&b"rest of it"[..]));
    }

    #[test]
    fn cunescape_whole() {
        assert_eq!(cunescape(b"a\\nb\\101", false).unwrap(), b"a\nbA");
        assert_eq!(cunescape(b"a\\", true).unwrap(), b"a\\");
        assert!(cunescape(b"a\\", false).is_err());
        assert_eq!(cunescape(b"\\z", true).unwrap(), b"\\z");
        assert_eq!(cunescape(b"\\xff", false).unwrap(), vec![0xff]);
    }
}
