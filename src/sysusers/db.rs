//! The four account databases as systemd-sysusers sees them: it reads existing entries with
//! glibc's `fgetpwent`/`fgetgrent`/`fgetspent`/`fgetsgent` and writes every entry back with
//! `putpwent`/`putgrent`/`putspent`/`putsgent`. This module reproduces both halves so that a
//! rewritten file is byte-identical to systemd's: comment, empty and malformed lines are
//! dropped, leading whitespace goes, numbers are printed back in canonical form. Pure code.

/// glibc's line reader: lines end at `\n`; leading whitespace is skipped; empty lines and
/// lines starting with `#` are skipped.
fn nss_lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split(|&c| c == b'\n').filter_map(|l| {
        let start = l
            .iter()
            .position(|c| !c.is_ascii_whitespace() && *c != 0x0b)
            .unwrap_or(l.len());
        let l = &l[start..];
        // A NUL ends the C string.
        let l = match l.iter().position(|&c| c == 0) {
            Some(p) => &l[..p],
            None => l,
        };
        if l.is_empty() || l[0] == b'#' {
            None
        } else {
            Some(l)
        }
    })
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// A cursor over one line with glibc's field macros.
struct Fields<'a> {
    line: &'a [u8],
}

impl<'a> Fields<'a> {
    /// `STRING_FIELD(…, ISCOLON, 0)`.
    fn string(&mut self) -> &'a [u8] {
        match self.line.iter().position(|&c| c == b':') {
            Some(p) => {
                let f = &self.line[..p];
                self.line = &self.line[p + 1..];
                f
            }
            None => {
                let f = self.line;
                self.line = &self.line[self.line.len()..];
                f
            }
        }
    }

    /// `strtoul(line, &endp, 10)`: returns the value (wrapped like C) and the bytes consumed.
    fn strtoul(s: &[u8]) -> (u64, usize) {
        let mut i = 0;
        while i < s.len() && is_space(s[i]) {
            i += 1;
        }
        let mut neg = false;
        if i < s.len() && (s[i] == b'+' || s[i] == b'-') {
            neg = s[i] == b'-';
            i += 1;
        }
        let ds = i;
        let mut v: u64 = 0;
        let mut overflow = false;
        while i < s.len() && s[i].is_ascii_digit() {
            match v
                .checked_mul(10)
                .and_then(|x| x.checked_add(u64::from(s[i] - b'0')))
            {
                Some(x) => v = x,
                None => overflow = true,
            }
            i += 1;
        }
        if i == ds {
            return (0, 0);
        }
        if overflow {
            return (u64::MAX, i);
        }
        (if neg { v.wrapping_neg() } else { v }, i)
    }

    /// `INT_FIELD(…, ISCOLON, 0, 10, …)` as glibc 2.41 has it: `strtoul` (leading blanks and
    /// a sign allowed) and the value must fit 32 bits. `None` means the line is invalid.
    fn int(&mut self) -> Option<u64> {
        let (v, n) = Self::strtoul(self.line);
        if n == 0 || v > u64::from(u32::MAX) {
            return None;
        }
        match self.line.get(n) {
            Some(b':') => self.line = &self.line[n + 1..],
            None => self.line = &self.line[n..],
            Some(_) => return None,
        }
        Some(v)
    }

    /// `INT_FIELD_MAYBE_NULL(…)`: a field not starting with a digit is empty and gives
    /// `default`; a number must fit 32 bits. `None` = invalid line.
    fn int_maybe_null(&mut self, default: u64) -> Option<u64> {
        if self.line.is_empty() {
            return None;
        }
        let (v, n) = if self.line[0].is_ascii_digit() {
            let (v, n) = Self::strtoul(self.line);
            if v > u64::from(u32::MAX) {
                return None;
            }
            (v, n)
        } else {
            (default, 0)
        };
        match self.line.get(n) {
            Some(b':') => self.line = &self.line[n + 1..],
            None => self.line = &self.line[n..],
            Some(_) => return None,
        }
        Some(v)
    }

    /// glibc's `parse_list` with `,` separating and `term` ending the list.
    fn list(&mut self, term: Option<u8>) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut line = self.line;
        loop {
            if line.is_empty() {
                break;
            }
            if Some(line[0]) == term {
                line = &line[1..];
                break;
            }
            while !line.is_empty() && is_space(line[0]) {
                line = &line[1..];
            }
            let mut i = 0;
            let mut stop = false;
            while i < line.len() && line[i] != b',' && Some(line[i]) != term {
                i += 1;
            }
            if i > 0 {
                out.push(line[..i].to_vec());
            }
            if i < line.len() {
                if Some(line[i]) == term {
                    stop = true;
                }
                line = &line[i + 1..];
            } else {
                line = &line[i..];
            }
            if stop {
                break;
            }
        }
        self.line = line;
        out
    }
}

fn nis(name: &[u8]) -> bool {
    matches!(name.first(), Some(b'+') | Some(b'-'))
}

/// One passwd entry as glibc parses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Passwd {
    pub name: Vec<u8>,
    pub passwd: Option<Vec<u8>>,
    pub uid: u32,
    pub gid: u32,
    pub gecos: Option<Vec<u8>>,
    pub dir: Option<Vec<u8>>,
    pub shell: Option<Vec<u8>>,
}

/// One group entry as glibc parses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub name: Vec<u8>,
    pub passwd: Option<Vec<u8>>,
    pub gid: u32,
    pub members: Vec<Vec<u8>>,
}

/// One shadow entry as glibc parses it (`-1` = unset).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shadow {
    pub name: Vec<u8>,
    pub pwdp: Option<Vec<u8>>,
    pub lstchg: i64,
    pub min: i64,
    pub max: i64,
    pub warn: i64,
    pub inact: i64,
    pub expire: i64,
    pub flag: u64,
}

/// One gshadow entry as glibc parses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GShadow {
    pub name: Vec<u8>,
    pub passwd: Option<Vec<u8>>,
    pub admins: Vec<Vec<u8>>,
    pub members: Vec<Vec<u8>>,
}

pub fn parse_passwd(text: &[u8]) -> Vec<Passwd> {
    nss_lines(text)
        .filter_map(|l| {
            let mut f = Fields { line: l };
            let name = f.string().to_vec();
            if f.line.is_empty() && nis(&name) {
                return Some(Passwd {
                    name,
                    passwd: None,
                    uid: 0,
                    gid: 0,
                    gecos: None,
                    dir: None,
                    shell: None,
                });
            }
            let passwd = Some(f.string().to_vec());
            let (uid, gid) = if nis(&name) {
                (f.int_maybe_null(0)?, f.int_maybe_null(0)?)
            } else {
                (f.int()?, f.int()?)
            };
            let gecos = Some(f.string().to_vec());
            let dir = Some(f.string().to_vec());
            let shell = Some(f.line.to_vec());
            Some(Passwd {
                name,
                passwd,
                uid: uid as u32,
                gid: gid as u32,
                gecos,
                dir,
                shell,
            })
        })
        .collect()
}

pub fn parse_group(text: &[u8]) -> Vec<Group> {
    nss_lines(text)
        .filter_map(|l| {
            let mut f = Fields { line: l };
            let name = f.string().to_vec();
            let (passwd, gid) = if f.line.is_empty() && nis(&name) {
                (None, 0)
            } else {
                let p = Some(f.string().to_vec());
                let g = if nis(&name) {
                    f.int_maybe_null(0)?
                } else {
                    f.int()?
                };
                (p, g)
            };
            let members = f.list(None);
            Some(Group {
                name,
                passwd,
                gid: gid as u32,
                members,
            })
        })
        .collect()
}

pub fn parse_shadow(text: &[u8]) -> Vec<Shadow> {
    let cv = |v: u64| i64::from(v as u32 as i32);
    nss_lines(text)
        .filter_map(|l| {
            let mut f = Fields { line: l };
            let name = f.string().to_vec();
            if f.line.is_empty() && nis(&name) {
                return Some(Shadow {
                    name,
                    pwdp: None,
                    lstchg: 0,
                    min: 0,
                    max: 0,
                    warn: -1,
                    inact: -1,
                    expire: -1,
                    flag: u64::MAX,
                });
            }
            let pwdp = Some(f.string().to_vec());
            let m1 = u64::MAX;
            let lstchg = f.int_maybe_null(m1).map(cv)?;
            let min = f.int_maybe_null(m1).map(cv)?;
            let max = f.int_maybe_null(m1).map(cv)?;
            while !f.line.is_empty() && is_space(f.line[0]) {
                f.line = &f.line[1..];
            }
            let (warn, inact, expire, flag) = if f.line.is_empty() {
                (-1, -1, -1, u64::MAX)
            } else {
                let warn = f.int_maybe_null(m1).map(cv)?;
                let inact = f.int_maybe_null(m1).map(cv)?;
                let expire = f.int_maybe_null(m1).map(cv)?;
                let flag = if f.line.is_empty() {
                    u64::MAX
                } else {
                    f.int_maybe_null(u64::MAX)?
                };
                if !f.line.is_empty() {
                    return None;
                }
                (warn, inact, expire, flag)
            };
            Some(Shadow {
                name,
                pwdp,
                lstchg,
                min,
                max,
                warn,
                inact,
                expire,
                flag,
            })
        })
        .collect()
}

pub fn parse_gshadow(text: &[u8]) -> Vec<GShadow> {
    nss_lines(text)
        .map(|l| {
            let mut f = Fields { line: l };
            let name = f.string().to_vec();
            if f.line.is_empty() && nis(&name) {
                return GShadow {
                    name,
                    passwd: None,
                    admins: Vec::new(),
                    members: Vec::new(),
                };
            }
            let passwd = Some(f.string().to_vec());
            let admins = f.list(Some(b':'));
            let members = f.list(None);
            GShadow {
                name,
                passwd,
                admins,
                members,
            }
        })
        .collect()
}

/// Why an entry cannot be written (glibc's `EINVAL`).
#[derive(Debug, PartialEq, Eq)]
pub struct Invalid;

fn valid_field(f: &Option<Vec<u8>>) -> bool {
    f.as_ref()
        .is_none_or(|v| !v.iter().any(|&c| c == b':' || c == b'\n'))
}

fn valid_list(l: &[Vec<u8>]) -> bool {
    l.iter()
        .all(|v| !v.iter().any(|&c| c == b':' || c == b'\n' || c == b','))
}

fn s(f: &Option<Vec<u8>>) -> &[u8] {
    f.as_deref().unwrap_or(b"")
}

/// `putpwent`.
pub fn put_passwd(p: &Passwd, out: &mut Vec<u8>) -> Result<(), Invalid> {
    let name = Some(p.name.clone());
    if !valid_field(&name)
        || !valid_field(&p.passwd)
        || !valid_field(&p.dir)
        || !valid_field(&p.shell)
    {
        return Err(Invalid);
    }
    let gecos: Vec<u8> = s(&p.gecos)
        .iter()
        .map(|&c| if c == b':' || c == b'\n' { b' ' } else { c })
        .collect();
    out.extend_from_slice(&p.name);
    out.push(b':');
    out.extend_from_slice(s(&p.passwd));
    if nis(&p.name) {
        out.extend_from_slice(b":::");
    } else {
        out.extend_from_slice(format!(":{}:{}:", p.uid, p.gid).as_bytes());
    }
    out.extend_from_slice(&gecos);
    out.push(b':');
    out.extend_from_slice(s(&p.dir));
    out.push(b':');
    out.extend_from_slice(s(&p.shell));
    out.push(b'\n');
    Ok(())
}

fn join(out: &mut Vec<u8>, l: &[Vec<u8>]) {
    for (i, m) in l.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(m);
    }
}

/// `putgrent`.
pub fn put_group(g: &Group, out: &mut Vec<u8>) -> Result<(), Invalid> {
    if !valid_field(&Some(g.name.clone())) || !valid_field(&g.passwd) || !valid_list(&g.members) {
        return Err(Invalid);
    }
    out.extend_from_slice(&g.name);
    out.push(b':');
    out.extend_from_slice(s(&g.passwd));
    if nis(&g.name) {
        out.extend_from_slice(b"::");
    } else {
        out.extend_from_slice(format!(":{}:", g.gid).as_bytes());
    }
    join(out, &g.members);
    out.push(b'\n');
    Ok(())
}

/// `putspent`.
pub fn put_shadow(sp: &Shadow, out: &mut Vec<u8>) -> Result<(), Invalid> {
    if !valid_field(&Some(sp.name.clone())) || !valid_field(&sp.pwdp) {
        return Err(Invalid);
    }
    out.extend_from_slice(&sp.name);
    out.push(b':');
    out.extend_from_slice(s(&sp.pwdp));
    out.push(b':');
    for v in [sp.lstchg, sp.min, sp.max, sp.warn, sp.inact, sp.expire] {
        if v != -1 {
            out.extend_from_slice(v.to_string().as_bytes());
        }
        out.push(b':');
    }
    if sp.flag != u64::MAX {
        out.extend_from_slice((sp.flag as i64).to_string().as_bytes());
    }
    out.push(b'\n');
    Ok(())
}

/// `putsgent`.
pub fn put_gshadow(g: &GShadow, out: &mut Vec<u8>) -> Result<(), Invalid> {
    if !valid_field(&Some(g.name.clone()))
        || !valid_field(&g.passwd)
        || !valid_list(&g.admins)
        || !valid_list(&g.members)
    {
        return Err(Invalid);
    }
    out.extend_from_slice(&g.name);
    out.push(b':');
    out.extend_from_slice(s(&g.passwd));
    out.push(b':');
    join(out, &g.admins);
    out.push(b':');
    join(out, &g.members);
    out.push(b'\n');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt_passwd(t: &str) -> String {
        let mut o = Vec::new();
        for p in parse_passwd(t.as_bytes()) {
            put_passwd(&p, &mut o).unwrap();
        }
        String::from_utf8(o).unwrap()
    }

    #[test]
    fn passwd_roundtrip() {
        assert_eq!(
            rt_passwd(
                "# c\n\n  root:x:0:0:root:/root:/bin/bash\nbad\nu:x:007:1\n+\n+nis:x::::/h:\n"
            ),
            "root:x:0:0:root:/root:/bin/bash\nu:x:7:1:::\n+::::::\n+nis:x::::/h:\n"
        );
    }

    #[test]
    fn group_roundtrip() {
        let mut o = Vec::new();
        for g in parse_group(b"a:x:5:u1,, u2 ,\nb:x:6\nc:x:\n") {
            put_group(&g, &mut o).unwrap();
        }
        assert_eq!(String::from_utf8(o).unwrap(), "a:x:5:u1,u2 \nb:x:6:\n");
    }

    #[test]
    fn shadow_roundtrip() {
        let mut o = Vec::new();
        let input = b"a:!*:19000::::::\nb:x:1:2:3\nc:x:1:2\nd:*:5:0:99999:7:::\n\
            a1:x:-1::::::\na2:x:4294967295::::::\na3:x:99999999999::::::\n\
            a4:x:2147483648::::::\na9:x:1:2:3:4:5:6:4294967295\nb1:x: 5:+6:7:: \n\
            b3:x:1:2:3:4:5:6:7:8\nb5:x:1:2:3: \n";
        for sp in parse_shadow(input) {
            put_shadow(&sp, &mut o).unwrap();
        }
        assert_eq!(
            String::from_utf8(o).unwrap(),
            "a:!*:19000::::::\nb:x:1:2:3::::\nd:*:5:0:99999:7:::\na2:x:::::::\n\
             a4:x:-2147483648::::::\na9:x:1:2:3:4:5:6:4294967295\nb5:x:1:2:3::::\n"
        );
    }

    #[test]
    fn gshadow_roundtrip() {
        let mut o = Vec::new();
        for g in parse_gshadow(b"a:!::\nb:!\nc:x:ad1, ad2:m1\n") {
            put_gshadow(&g, &mut o).unwrap();
        }
        assert_eq!(
            String::from_utf8(o).unwrap(),
            "a:!::\nb:!::\nc:x:ad1,ad2:m1\n"
        );
    }
}
