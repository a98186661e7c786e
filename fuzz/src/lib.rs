//! The bodies of pristine's fuzz targets, one function per parser that reads untrusted bytes.
//!
//! Each `fuzz_targets/NAME.rs` is a one-line libFuzzer entry calling `NAME` here, so the
//! targets share their fixtures (a fixed system description, a fixed trusted key) and nothing
//! is written twice. A target must never touch the file system, the network or the host: it
//! feeds bytes to a pure parser and checks the invariants that parser promises (a panic, an
//! overflow, an allocation failure or a timeout is a crash).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use pristine::text::specifier::{Running, SystemValues};
use pristine::userdb::UserDb;

/// A fixed description of the system the config is parsed for (nothing read from the host).
fn system() -> SystemValues {
    let mut os = HashMap::new();
    os.insert("ID".to_string(), "debian".to_string());
    os.insert("VERSION_ID".to_string(), "12".to_string());
    SystemValues {
        os_release: Some(os),
        machine_id: Ok("0123456789abcdef0123456789abcdef".into()),
        running: Running {
            hostname: "fuzz".into(),
            kernel_release: "6.1.0".into(),
            ..Running::default()
        },
        has_root: true,
    }
}

fn users() -> UserDb {
    UserDb::parse(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/usr/sbin/nologin\n",
        "root:x:0:\nnogroup:x:65534:\n",
    )
}

/// One `tmpfiles.d` file: every line through the line parser, as `systemd-tmpfiles` reads it.
pub fn tmpfiles(data: &[u8]) {
    let values = system();
    let users = users();
    let env = pristine::tmpfiles::parse::ParseEnv {
        values: &values,
        users: &users,
        boot: true,
        graceful: false,
        home: "/root".into(),
        source_exists: &|p: &Path| p.as_os_str().len() % 2 == 0,
        include: &|_: &Path| true,
        credential: &|n: &str| (n == "cred").then(|| b"secret".to_vec()),
    };
    let file = Path::new("/usr/lib/tmpfiles.d/fuzz.conf");
    let _ = pristine::text::lines::for_each_config_line(data, b"#", |n, line| {
        let mut notes = Vec::new();
        let r = pristine::tmpfiles::parse::parse_line(&env, file, n, line, &mut notes);
        if let Err(d) = r {
            // A diagnostic always names the line it is about.
            let at = format!("{}:{n}: ", file.display());
            assert!(
                d.to_string().starts_with(&at),
                "diagnostic not at {at}: {d}"
            );
        }
    });
}

/// One `sysusers.d` file.
pub fn sysusers(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let values = system();
    for (n, line) in pristine::text::lines::config_lines(&text) {
        let _ = pristine::sysusers::parse::parse_line(&values, &line, "fuzz.conf", n);
    }
}

/// A unit file, lexed as `systemctl preset` reads `[Install]`.
pub fn unit_file(data: &[u8]) {
    let p = pristine::units::ini::parse(data, &["Install"], &["Unit", "Service"]);
    if let Some((line, _)) = p.fatal {
        assert!(line >= 1, "fatal error on line 0");
    }
}

/// A `*.preset` file.
pub fn preset(data: &[u8]) {
    let mut rules = pristine::presets::rules::PresetRules::default();
    rules.parse_into("fuzz.preset", data);
    for name in ["a.service", "getty@tty1.service", "x.socket", ""] {
        let _ = rules.query(name);
    }
}

/// `pristine.toml` (two fragments, so merging is exercised too).
pub fn settings(data: &[u8]) {
    let text = String::from_utf8_lossy(data).into_owned();
    let half = text.len() / 2;
    let cut = (0..=half)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    let fragments = vec![
        (
            PathBuf::from("/usr/lib/pristine.toml"),
            text[..cut].to_string(),
        ),
        (PathBuf::from("/etc/pristine.toml"), text.clone()),
    ];
    let _ = pristine::config::parse_settings(&fragments);
}

/// The kernel command line.
pub fn cmdline(data: &[u8]) {
    let line = String::from_utf8_lossy(data);
    let _ = pristine::config::cmdline::parse(&line, true);
    let _ = pristine::config::cmdline::parse(&line, false);
}

/// os-release, machine-id, `.pristine-stamp` and other env-style files.
pub fn envfile(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let pairs = pristine::text::envfile::parse(&text);
    for (k, _) in pairs.iter().take(8) {
        assert!(
            pristine::text::envfile::get(&text, k).is_some(),
            "{k} parsed but not found by get"
        );
    }
    let _ = pristine::text::specifier::parse_machine_id(&text);
    let _ = pristine::detect::stamp::OsStamp::parse(&text);
}

/// `/etc/passwd`, `/etc/group`, `/etc/shadow`, `/etc/gshadow` as read from a tree; every entry
/// that parses must write back out (or be refused as invalid), never panic.
pub fn account_db(data: &[u8]) {
    use pristine::sysusers::db;
    let mut out = Vec::new();
    for p in db::parse_passwd(data) {
        let _ = db::put_passwd(&p, &mut out);
    }
    for g in db::parse_group(data) {
        let _ = db::put_group(&g, &mut out);
    }
    for s in db::parse_shadow(data) {
        let _ = db::put_shadow(&s, &mut out);
    }
    for g in db::parse_gshadow(data) {
        let _ = db::put_gshadow(&g, &mut out);
    }
    let text = String::from_utf8_lossy(data);
    let _ = UserDb::parse(&text, &text);
}

/// A casync blob index (`.caibx`): whatever parses must describe a contiguous image and write
/// back byte for byte.
pub fn caibx(data: &[u8]) {
    use pristine::update::index::Index;
    if let Ok(ix) = Index::parse(data) {
        let mut end = 0u64;
        for c in &ix.chunks {
            assert_eq!(c.offset, end, "chunks not contiguous");
            assert!(c.len > 0, "empty chunk accepted");
            end = c.offset.checked_add(c.len).expect("image size overflows");
        }
        let again = Index::parse(&ix.to_bytes()).expect("written index does not parse");
        assert_eq!(again.chunks, ix.chunks);
    }
}

/// The update manifest (`manifest.toml`).
pub fn manifest(data: &[u8]) {
    use pristine::update::manifest::Manifest;
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(m) = Manifest::parse(text) {
        let again = Manifest::parse(&m.to_toml()).expect("written manifest does not parse");
        assert_eq!(again.to_toml(), m.to_toml());
    }
}

/// A fixed trusted key (its secret half is not kept anywhere: nothing can be signed with it
/// now, so the target exercises parsing and refusal).
pub const FUZZ_PUBLIC_KEY: &str = "untrusted comment: minisign public key 128CDD05330B4A36\n\
RWQ2SgszBd2MEp6axTw+EbMZ3T9QUIS1+51Ap+mJDJKgO9Iedq3h7EOc\n";

/// A minisign signature over some data: the input is `SIGNATURE \0 DATA` (no NUL: empty data).
/// Also feeds the whole input to the public-key reader.
pub fn minisign(data: &[u8]) {
    use pristine::update::manifest::{public_key_from_text, verify, TrustedKey};
    let (sig, body) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Some(key) = public_key_from_text(FUZZ_PUBLIC_KEY) else {
        panic!("the fixed fuzz key does not parse");
    };
    let keys = [TrustedKey {
        file: "fuzz.pub".into(),
        key,
    }];
    let _ = verify(body, &String::from_utf8_lossy(sig), &keys);
    let _ = public_key_from_text(&String::from_utf8_lossy(data));
}

/// A stored chunk, decompressed with the limit its index gives (the first two bytes of the
/// input choose the limit, the rest is the chunk). Output never exceeds the limit.
pub fn decompress(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let limit = usize::from(u16::from_le_bytes([data[0], data[1]])) * 16;
    let chunk = &data[2..];
    for raw in [false, true] {
        if let Ok(out) = pristine::update::compress::decompress(chunk, limit, raw) {
            assert!(out.len() <= limit, "{} bytes out, limit {limit}", out.len());
        }
    }
}

/// An update source string (`https://…`, `http://…`, a directory).
pub fn update_source(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    if let Ok(src) = pristine::update::source::Source::parse(&s) {
        let _ = src.describe("manifest.toml");
    }
}
