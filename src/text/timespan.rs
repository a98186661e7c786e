//! Time spans as systemd 257's `parse_sec` reads them (`parse_time` with seconds as the default
//! unit), in exact integer microseconds: a sum of `NUMBER[.FRACTION][UNIT]` parts, `infinity`,
//! and `ERANGE` (reported as invalid) for anything at or beyond `USEC_INFINITY`. Pure.

/// `USEC_INFINITY`.
pub const INFINITY: u64 = u64::MAX;

const SEC: u64 = 1_000_000;
const MINUTE: u64 = 60 * SEC;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;
const WEEK: u64 = 7 * DAY;
const MONTH: u64 = 2_629_800 * SEC;
const YEAR: u64 = 31_557_600 * SEC;

/// systemd's suffix table, in its order (the first matching prefix wins).
const UNITS: &[(&str, u64)] = &[
    ("seconds", SEC),
    ("second", SEC),
    ("sec", SEC),
    ("s", SEC),
    ("minutes", MINUTE),
    ("minute", MINUTE),
    ("min", MINUTE),
    ("months", MONTH),
    ("month", MONTH),
    ("M", MONTH),
    ("msec", 1000),
    ("ms", 1000),
    ("m", MINUTE),
    ("hours", HOUR),
    ("hour", HOUR),
    ("hr", HOUR),
    ("h", HOUR),
    ("days", DAY),
    ("day", DAY),
    ("d", DAY),
    ("weeks", WEEK),
    ("week", WEEK),
    ("w", WEEK),
    ("years", YEAR),
    ("year", YEAR),
    ("y", YEAR),
    ("usec", 1),
    ("us", 1),
    ("\u{3bc}s", 1),
    ("\u{b5}s", 1),
];

fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(|&c| is_ws(c)) {
        i += 1;
    }
    i
}

/// systemd's `parse_sec`: microseconds, `None` for an invalid or out-of-range span.
pub fn parse_sec(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let mut p = skip_ws(b, 0);
    if let Some(rest) = b[p..].strip_prefix(b"infinity") {
        return rest.iter().all(|&c| is_ws(c)).then_some(INFINITY);
    }
    let mut usec: u64 = 0;
    let mut something = false;
    loop {
        p = skip_ws(b, p);
        if p == b.len() {
            return something.then_some(usec);
        }
        // strtoll: an optional sign, then digits; a negative value (even "-0") is refused.
        let mut q = p;
        if b[q] == b'-' {
            return None;
        }
        if b[q] == b'+' {
            q += 1;
        }
        let digits_start = q;
        while b.get(q).is_some_and(u8::is_ascii_digit) {
            q += 1;
        }
        let whole: u64 = if q > digits_start {
            // Too large for a long long: ERANGE.
            let n: i64 = s[digits_start..q].parse().ok()?;
            u64::try_from(n).ok()?
        } else {
            0
        };
        let e = if q > digits_start { q } else { p };
        let frac_start;
        if b.get(e) == Some(&b'.') {
            frac_start = Some(e + 1);
            p = e + 1;
            while b.get(p).is_some_and(u8::is_ascii_digit) {
                p += 1;
            }
        } else if e == p {
            return None;
        } else {
            frac_start = None;
            p = e;
        }
        let unit_at = skip_ws(b, p);
        let (mult, after) = UNITS
            .iter()
            .find(|(name, _)| b[unit_at..].starts_with(name.as_bytes()))
            .map_or((SEC, unit_at), |&(name, m)| (m, unit_at + name.len()));
        if after == unit_at && unit_at == p && p < b.len() {
            // "12.34.56": no unit and not at a space or the end.
            return None;
        }
        p = after;
        if whole >= INFINITY / mult {
            return None;
        }
        let k = whole * mult;
        if k >= INFINITY - usec {
            return None;
        }
        usec += k;
        something = true;
        if let Some(f) = frac_start {
            let mut m = mult / 10;
            let mut i = f;
            while let Some(d) = b.get(i).filter(|c| c.is_ascii_digit()) {
                let k = u64::from(d - b'0') * m;
                if k >= INFINITY - usec {
                    return None;
                }
                usec += k;
                m /= 10;
                i += 1;
            }
            if i == f {
                return None;
            }
        }
        if p >= b.len() {
            return Some(usec);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_systemd_parses_them() {
        // Valid and invalid as systemd-tmpfiles 257 judged them as ages.
        let valid = [
            ("1.5", 1_500_000),
            ("+5", 5 * SEC),
            (".5s", 500_000),
            ("1.000001s", 1_000_001),
            ("1\u{b5}s", 1),
            ("1\u{3bc}s", 1),
            ("18446744073708s", 18_446_744_073_708 * SEC),
            ("1s1", 2 * SEC),
            ("5m6", 5 * MINUTE + 6 * SEC),
            ("12.34s.56", 12_340_000 + 560_000),
            ("01", SEC),
            ("infinity", INFINITY),
            ("10d", 10 * DAY),
            ("1w2d", WEEK + 2 * DAY),
            ("584541y", 584_541 * YEAR),
            ("0", 0),
            ("5 min", 5 * MINUTE),
        ];
        for (s, want) in valid {
            assert_eq!(parse_sec(s), Some(want), "{s}");
        }
        let invalid = [
            "1000ns",
            "1ns",
            "3.sec",
            "3.",
            "0x10",
            "-0",
            "213503982d",
            "213503983d",
            "12.34.56",
            "1e3",
            "1sx",
            "584542y",
            "18446744073710s",
            "18446744073709s",
            "99999999999999999999",
            "",
            "infinityx",
            "s",
        ];
        for s in invalid {
            assert_eq!(parse_sec(s), None, "{s}");
        }
    }
}
