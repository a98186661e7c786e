//! Base64 as systemd's `unbase64mem` decodes it (standard alphabet, whitespace ignored,
//! padding optional, at most two `=`). Pure.

/// Base64 decoding as systemd's `unbase64mem` (whitespace ignored, padding optional).
pub fn decode(input: &[u8]) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        })
    };
    let chars: Vec<u8> = input
        .iter()
        .copied()
        .filter(|c| !b" \t\n\r".contains(c))
        .collect();
    let mut end = chars.len();
    while end > 0 && chars[end - 1] == b'=' {
        end -= 1;
    }
    if chars.len() - end > 2 {
        return None;
    }
    let body = &chars[..end];
    if body.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    for chunk in body.chunks(4) {
        let mut acc = 0u32;
        for (k, &c) in chunk.iter().enumerate() {
            acc |= val(c)? << (18 - 6 * k);
        }
        out.push((acc >> 16) as u8);
        if chunk.len() > 2 {
            out.push((acc >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(acc as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_as_unbase64mem() {
        assert_eq!(decode(b"aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(decode(b"aGVs bG8\n"), Some(b"hello".to_vec()));
        assert_eq!(decode(b"aGVsbG8h"), Some(b"hello!".to_vec()));
        assert_eq!(decode(b"a"), None);
        assert_eq!(decode(b"aGVsbG8==="), None);
        assert_eq!(decode(b"a*bc"), None);
    }
}
