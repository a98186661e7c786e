//! The one line lexer every config format uses: systemd 257's `read_line_full` semantics
//! (`src/basic/fileio.c`), streamed from any [`BufRead`] with a bounded line.
//!
//! A line ends at `\n`, `\r` or NUL. One line break absorbs the following break characters as
//! long as each is of a kind not seen yet in this break (so `\r\n` and `\n\r` are one break,
//! `\n\n` two) and no NUL was among them (a NUL ends the line and nothing after it belongs to
//! that break). A file ending in a break has no empty last line. A line of
//! [`LONG_LINE_MAX`] bytes or more is refused with `ENOBUFS` ("No buffer space available") and
//! ends the file, as systemd's readers do: lines already returned stand. Continuation lines
//! (`\` at the end) are the business of the formats that have them, not of this lexer.
//!
//! This module only reads from the reader it is handed: it opens nothing, and never holds
//! more than one line (plus the reader's buffer) in memory.

use std::io::{self, BufRead};

/// systemd's `LONG_LINE_MAX`: the longest line a config reader accepts (exclusive).
pub const LONG_LINE_MAX: usize = 1024 * 1024;

const EOL_NEWLINE: u8 = 1;
const EOL_CR: u8 = 2;
const EOL_NUL: u8 = 4;

fn eol_kind(c: u8) -> u8 {
    match c {
        b'\n' => EOL_NEWLINE,
        b'\r' => EOL_CR,
        0 => EOL_NUL,
        _ => 0,
    }
}

/// Reads lines from `inner` one at a time.
pub struct Lines<R> {
    inner: R,
    limit: usize,
    number: usize,
    done: bool,
    /// The reader reported its end: it is not asked again (a stdio stream's end is sticky too,
    /// and asking costs a `read` for nothing).
    eof: bool,
}

impl<R: BufRead> Lines<R> {
    /// A lexer with systemd's line limit.
    pub fn new(inner: R) -> Self {
        Self::with_limit(inner, LONG_LINE_MAX)
    }

    /// A lexer refusing lines of `limit` bytes or more.
    pub fn with_limit(inner: R, limit: usize) -> Self {
        Lines {
            inner,
            limit,
            number: 0,
            done: false,
            eof: false,
        }
    }

    /// The 1-based number of the line last returned (0 before the first).
    pub fn number(&self) -> usize {
        self.number
    }

    /// Reads the next line, without its line break, into `buf` (cleared first). `Ok(false)` at
    /// the end of the input. An error (`ENOBUFS` for an over-long line, or the reader's) ends
    /// the input: later calls return `Ok(false)`.
    pub fn read_line(&mut self, buf: &mut Vec<u8>) -> io::Result<bool> {
        buf.clear();
        if self.done || self.eof {
            return Ok(false);
        }
        let r = self.read_inner(buf);
        if !matches!(r, Ok(true)) {
            self.done = true;
        }
        if matches!(r, Ok(true)) {
            self.number += 1;
        }
        r
    }

    fn read_inner(&mut self, buf: &mut Vec<u8>) -> io::Result<bool> {
        // Break characters seen after the content (0: still in the content).
        let mut eol: u8 = 0;
        let mut any = false;
        loop {
            let chunk = match self.inner.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                self.eof = true;
                return Ok(any);
            }
            any = true;
            let mut used = 0;
            let mut finished = false;
            while used < chunk.len() {
                if eol == 0 {
                    let rest = &chunk[used..];
                    let p = memchr::memchr3(b'\n', b'\r', 0, rest).unwrap_or(rest.len());
                    let room = self.limit.saturating_sub(buf.len());
                    if p >= room {
                        buf.extend_from_slice(&rest[..room]);
                        return Err(io::Error::from_raw_os_error(enobufs()));
                    }
                    buf.extend_from_slice(&rest[..p]);
                    used += p;
                    if used < chunk.len() {
                        eol = eol_kind(chunk[used]);
                        used += 1;
                    }
                } else {
                    let k = eol_kind(chunk[used]);
                    if eol & EOL_NUL != 0 || k == 0 || eol & k != 0 {
                        finished = true;
                        break;
                    }
                    eol |= k;
                    used += 1;
                }
            }
            self.inner.consume(used);
            if finished {
                return Ok(true);
            }
        }
    }
}

fn enobufs() -> i32 {
    rustix::io::Errno::NOBUFS.raw_os_error()
}

/// The lines of an in-memory text, as [`Lines`] reads them, with 1-based numbers. Stops at an
/// over-long line (the error is dropped: callers holding the whole text in memory are those
/// whose files are bounded by their reader).
pub fn split(data: &[u8]) -> impl Iterator<Item = (usize, Vec<u8>)> + '_ {
    let mut lines = Lines::new(data);
    std::iter::from_fn(move || {
        let mut buf = Vec::new();
        match lines.read_line(&mut buf) {
            Ok(true) => Some((lines.number(), buf)),
            _ => None,
        }
    })
}

/// systemd's `strstrip` whitespace (`WHITESPACE`: space, tab, newline, carriage return).
pub fn strip(b: &[u8]) -> &[u8] {
    const WS: &[u8] = b" \t\n\r";
    let s = b.iter().position(|c| !WS.contains(c)).unwrap_or(b.len());
    let e = b.iter().rposition(|c| !WS.contains(c)).map_or(s, |e| e + 1);
    &b[s..e]
}

/// A reading error that ended a file early, with the number of the line it stopped at.
#[derive(Debug)]
pub struct LineError {
    pub line: usize,
    pub error: io::Error,
}

/// Reads the meaningful lines of a config file the way systemd's tmpfiles/sysusers readers
/// do (`read_stripped_line`): each line stripped of whitespace, empty lines and lines starting
/// with one of `comment` skipped. Calls `each(number, line)`; returns the reading error that
/// ended the file early, if any (lines before it have been handed out).
pub fn for_each_config_line<R: BufRead>(
    reader: R,
    comment: &[u8],
    mut each: impl FnMut(usize, &str),
) -> Result<(), LineError> {
    let mut lines = Lines::new(reader);
    let mut buf = Vec::new();
    loop {
        match lines.read_line(&mut buf) {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(error) => {
                return Err(LineError {
                    line: lines.number() + 1,
                    error,
                })
            }
        }
        let l = strip(&buf);
        if l.first().is_none_or(|c| comment.contains(c)) {
            continue;
        }
        each(lines.number(), &String::from_utf8_lossy(l));
    }
}

/// The meaningful lines of an in-memory config text (`#` comments), as
/// [`for_each_config_line`] hands them out: `(number, line)`.
pub fn config_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let _ = for_each_config_line(text.as_bytes(), b"#", |n, l| out.push((n, l.to_string())));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(data: &[u8]) -> Vec<(usize, String)> {
        split(data)
            .map(|(n, l)| (n, String::from_utf8_lossy(&l).into_owned()))
            .collect()
    }

    #[test]
    fn breaks_as_systemd_reads_them() {
        // Verified against systemd-tmpfiles 257's line numbers.
        let v = all(b"a\0garbage\n\n\rd\n\0\nxx\n");
        let want: Vec<(usize, String)> = [
            (1, "a"),
            (2, "garbage"),
            (3, ""),
            (4, "d"),
            (5, ""),
            (6, "xx"),
        ]
        .iter()
        .map(|&(n, s)| (n, s.to_string()))
        .collect();
        assert_eq!(v, want);
        assert_eq!(all(b"one\rtwo"), vec![(1, "one".into()), (2, "two".into())]);
        assert_eq!(
            all(b"a\r\nb\n\rc\r\rd"),
            vec![
                (1, "a".into()),
                (2, "b".into()),
                (3, "c".into()),
                (4, "".into()),
                (5, "d".into())
            ]
        );
        assert!(all(b"").is_empty());
        assert_eq!(all(b"\n"), vec![(1, String::new())]);
    }

    #[test]
    fn long_lines_end_the_file() {
        let mut data = b"first\n".to_vec();
        data.extend(std::iter::repeat_n(b'x', 10));
        data.extend_from_slice(b"\nlast\n");
        let mut l = Lines::with_limit(&data[..], 10);
        let mut buf = Vec::new();
        assert!(l.read_line(&mut buf).unwrap());
        assert_eq!(buf, b"first");
        let e = l.read_line(&mut buf).unwrap_err();
        assert_eq!(
            e.raw_os_error(),
            Some(rustix::io::Errno::NOBUFS.raw_os_error())
        );
        assert!(buf.len() <= 10);
        assert!(
            !l.read_line(&mut buf).unwrap(),
            "the file ends at the long line"
        );
        // One byte less is a line; break characters do not count.
        let mut l = Lines::with_limit(&b"123456789\r\n\0x"[..], 10);
        assert!(l.read_line(&mut buf).unwrap());
        assert_eq!(buf, b"123456789");
        assert!(l.read_line(&mut buf).unwrap());
        assert_eq!(buf, b"x");
    }

    #[test]
    fn small_reader_buffers_give_the_same_lines() {
        let data = b"a\r\n\nb\0\ncc\r\r\n\0dd\n";
        let whole = all(data);
        let mut lines = Lines::new(io::BufReader::with_capacity(1, &data[..]));
        let mut v = Vec::new();
        let mut buf = Vec::new();
        while lines.read_line(&mut buf).unwrap() {
            v.push((lines.number(), String::from_utf8_lossy(&buf).into_owned()));
        }
        assert_eq!(v, whole);
    }

    #[test]
    fn config_lines_skip_comments_and_blanks() {
        let mut v = Vec::new();
        for_each_config_line(&b"# c\n  a b  \n\n;x\n\tc\rd"[..], b"#;", |n, l| {
            v.push((n, l.to_string()))
        })
        .unwrap();
        assert_eq!(v, vec![(2, "a b".into()), (5, "c".into()), (6, "d".into())]);
        let long = [&b"a\n\nb\n"[..], &[b'x'; LONG_LINE_MAX], b"\nc\n"].concat();
        let mut v = Vec::new();
        let e = for_each_config_line(&long[..], b"#", |n, _| v.push(n)).unwrap_err();
        assert_eq!((v, e.line), (vec![1, 3], 4));
    }

    /// A reader that counts the times it was asked for more after its end.
    struct Counting<'a> {
        data: &'a [u8],
        asked_at_end: usize,
    }

    impl io::Read for Counting<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = io::Read::read(&mut self.data, buf)?;
            self.asked_at_end += usize::from(n == 0);
            Ok(n)
        }
    }

    impl BufRead for Counting<'_> {
        fn fill_buf(&mut self) -> io::Result<&[u8]> {
            self.asked_at_end += usize::from(self.data.is_empty());
            Ok(self.data)
        }
        fn consume(&mut self, n: usize) {
            self.data = &self.data[n..];
        }
    }

    #[test]
    fn the_end_of_the_input_is_asked_for_once() {
        for data in [&b"a\nb\n"[..], b"a\nb", b""] {
            let mut r = Counting {
                data,
                asked_at_end: 0,
            };
            let mut lines = Lines::new(&mut r);
            let mut buf = Vec::new();
            while lines.read_line(&mut buf).unwrap() {}
            assert!(!lines.read_line(&mut buf).unwrap());
            assert_eq!(r.asked_at_end, 1, "{data:?}");
        }
    }
}
