//! `pristine update VERB …`: argument parsing and reporting for the update verbs.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use lexopt::prelude::*;

use super::compress::Compression;
use super::index::{ChunkParams, Digest, CHUNK_LIMIT_MAX};
use super::make::{self, MakeOptions};
use super::state::{self, SlotStatus, StateDir};
use super::{fetch, FetchFailure, FetchOptions};
use crate::error::{Error, IoContext, Result};
use crate::host::Common;
use crate::report::usage_error;
use crate::report::{Outcome, EXIT_BAD_CONFIG, EXIT_FATAL, EXIT_OK, EXIT_OP_FAILED};

pub const USAGE: &str = "\
Usage: pristine update VERB [OPTIONS]
  make --key=SECRET.key --version=V [--digest=sha512-256|sha256]
       [--compression=zstd|xz|none] [--chunk-size=MIN:AVG:MAX|AVG] [--verity] IMAGE OUTDIR
  sign --key=SECRET.key --version=V --store=STORE [--store-name=NAME] [--verity] INDEX.caibx OUTDIR
  fetch [--seed=PATH]... [--allow-downgrade] [--allow-unknown-installed] [--dry-run] [--json] SOURCE
  status [--json]
  confirm
  rollback
  boot [--json] [--mount[=DIR]] [--fstype=TYPE]
  adopt --slot=N --version=V [--index=FILE]
";

/// Parses a size with an optional K/M/G suffix (powers of 1024).
fn parse_size(s: &str) -> Option<u64> {
    let (num, mul) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 1024),
        'M' | 'm' => (&s[..s.len() - 1], 1024 * 1024),
        'G' | 'g' => (&s[..s.len() - 1], 1024 * 1024 * 1024),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mul)
}

/// `--chunk-size=`: `MIN:AVG:MAX`, or `AVG` (min = avg/4, max = avg*4, as casync does).
pub fn parse_chunk_size(s: &str) -> Result<ChunkParams> {
    let bad = |why| Error::msg("parse --chunk-size=", why);
    let parts: Vec<&str> = s.split(':').collect();
    let p = match parts.as_slice() {
        [a] => {
            let avg = parse_size(a).ok_or_else(|| bad("bad chunk size"))?;
            ChunkParams {
                min: (avg / 4).max(1),
                avg,
                max: avg.saturating_mul(4).min(CHUNK_LIMIT_MAX),
            }
        }
        [a, b, c] => ChunkParams {
            min: parse_size(a).ok_or_else(|| bad("bad minimum chunk size"))?,
            avg: parse_size(b).ok_or_else(|| bad("bad average chunk size"))?,
            max: parse_size(c).ok_or_else(|| bad("bad maximum chunk size"))?,
        },
        _ => return Err(bad("wants AVG or MIN:AVG:MAX")),
    };
    p.check()?;
    Ok(p)
}

fn read_key(path: &Path) -> Result<minisign::SecretKey> {
    let text = std::fs::read_to_string(path).op("read", path)?;
    super::manifest::load_secret_key(&text).map_err(|e| e.at(path))
}

pub fn main(common: &Common, rest: Vec<OsString>) -> u8 {
    let mut p = lexopt::Parser::from_args(rest);
    let verb = match p.next() {
        Ok(Some(Value(v))) => v.to_string_lossy().to_string(),
        Ok(Some(Long("help") | Short('h'))) => {
            print!("{USAGE}");
            return EXIT_OK;
        }
        // A missing sub-verb is a usage error, like any other missing argument.
        Ok(None) => {
            eprint!("{USAGE}");
            return usage_error("update", "expected a verb");
        }
        Ok(Some(a)) => return usage_error("update", a.unexpected()),
        Err(e) => return usage_error("update", e),
    };
    let r = match verb.as_str() {
        "make" => cmd_make(p),
        "sign" => cmd_sign(p),
        "fetch" => cmd_fetch(common, p),
        "status" => cmd_status(common, p),
        "confirm" | "rollback" => cmd_state(common, &verb, p),
        "boot" => cmd_boot(common, p),
        "adopt" => cmd_adopt(common, p),
        other => Err(Usage(format!("unknown update verb '{other}'"))),
    };
    match r {
        Ok(code) => code,
        Err(Usage(e)) => usage_error("update", e),
    }
}

struct Usage(String);

/// A bad option value (a typed error of its parser) is a usage error.
impl From<Error> for Usage {
    fn from(e: Error) -> Self {
        Usage(e.to_string())
    }
}

impl From<lexopt::Error> for Usage {
    fn from(e: lexopt::Error) -> Self {
        Usage(e.to_string())
    }
}

fn string(v: OsString) -> Result<String, Usage> {
    v.into_string()
        .map_err(|_| Usage("argument is not valid UTF-8".into()))
}

fn cmd_make(mut p: lexopt::Parser) -> Result<u8, Usage> {
    let (mut key, mut version, mut pos) = (None, None, Vec::new());
    let mut o = MakeOptions {
        version: String::new(),
        digest: Digest::Sha512_256,
        compression: Compression::Zstd,
        params: ChunkParams::default(),
        verity: false,
    };
    while let Some(a) = p.next()? {
        match a {
            Long("key") => key = Some(PathBuf::from(p.value()?)),
            Long("version") => version = Some(string(p.value()?)?),
            Long("digest") => {
                let v = string(p.value()?)?;
                o.digest = Digest::parse(&v).ok_or(Usage(format!("unknown digest '{v}'")))?;
            }
            Long("compression") => {
                let v = string(p.value()?)?;
                o.compression = Compression::parse(&v)
                    .filter(|c| *c != Compression::Gzip)
                    .ok_or(Usage(format!("unsupported compression '{v}'")))?;
            }
            Long("chunk-size") => o.params = parse_chunk_size(&string(p.value()?)?)?,
            Long("verity") => o.verity = true,
            Value(v) => pos.push(PathBuf::from(v)),
            _ => return Err(a.unexpected().into()),
        }
    }
    let (Some(key), Some(version), [image, outdir]) = (key, version, pos.as_slice()) else {
        return Err(Usage(
            "make needs --key=, --version=, IMAGE and OUTDIR".into(),
        ));
    };
    o.version = version;
    let sk = match read_key(&key) {
        Ok(k) => k,
        Err(e) => {
            log::error!("{e}");
            return Ok(EXIT_OP_FAILED);
        }
    };
    match make::make(image, outdir, &o, &sk) {
        Ok(r) => {
            log::info!(
                "Made version {} of {}: {} bytes in {} chunks ({} new, {} bytes stored) in {}.",
                o.version,
                image.display(),
                r.image_size,
                r.chunks,
                r.new_chunks,
                r.stored_bytes,
                outdir.display()
            );
            Ok(EXIT_OK)
        }
        Err(e) => {
            log::error!("update make: {e}");
            Ok(EXIT_OP_FAILED)
        }
    }
}

fn cmd_sign(mut p: lexopt::Parser) -> Result<u8, Usage> {
    let (mut key, mut version, mut store, mut pos) = (None, None, None, Vec::new());
    let mut store_name = make::STORE_NAME.to_string();
    let mut verity = false;
    while let Some(a) = p.next()? {
        match a {
            Long("key") => key = Some(PathBuf::from(p.value()?)),
            Long("version") => version = Some(string(p.value()?)?),
            Long("store") => store = Some(PathBuf::from(p.value()?)),
            Long("store-name") => store_name = string(p.value()?)?,
            Long("verity") => verity = true,
            Value(v) => pos.push(PathBuf::from(v)),
            _ => return Err(a.unexpected().into()),
        }
    }
    let (Some(key), Some(version), Some(store), [index, outdir]) =
        (key, version, store, pos.as_slice())
    else {
        return Err(Usage(
            "sign needs --key=, --version=, --store=, INDEX and OUTDIR".into(),
        ));
    };
    let sk = match read_key(&key) {
        Ok(k) => k,
        Err(e) => {
            log::error!("{e}");
            return Ok(EXIT_OP_FAILED);
        }
    };
    match make::sign_existing(index, &store, &store_name, outdir, &version, &sk, verity) {
        Ok(r) => {
            log::info!(
                "Signed version {version}: {} bytes in {} chunks, all verified.",
                r.image_size,
                r.chunks
            );
            Ok(EXIT_OK)
        }
        Err(e) => {
            log::error!("update sign: {e}");
            Ok(EXIT_OP_FAILED)
        }
    }
}

fn cmd_fetch(common: &Common, mut p: lexopt::Parser) -> Result<u8, Usage> {
    let mut o = FetchOptions::default();
    let mut json = false;
    let mut src = None;
    while let Some(a) = p.next()? {
        match a {
            Long("seed") => o.seeds.push(PathBuf::from(p.value()?)),
            Long("allow-downgrade") => o.allow_downgrade = true,
            Long("allow-unknown-installed") => o.allow_unknown_installed = true,
            Long("dry-run") => o.dry_run = true,
            Long("json") => json = true,
            Value(v) if src.is_none() => src = Some(string(v)?),
            _ => return Err(a.unexpected().into()),
        }
    }
    o.source = src.ok_or(Usage("fetch needs SOURCE".into()))?;
    let root = match common.open_root() {
        Ok(r) => r,
        Err(c) => return Ok(c),
    };
    let mut out = Outcome::default();
    let settings = super::settings(&root, &mut out);
    let settings = match resolved(common, &root, &settings, !o.dry_run) {
        Ok(s) => s,
        Err(c) => return Ok(c),
    };
    match fetch(&root, &settings, &o) {
        Ok(r) if o.dry_run => {
            let c = &r.counters;
            if json {
                println!("{}", serde_json::to_string(&r).unwrap_or_default());
            } else {
                println!(
                    "Would write version {} ({} bytes, {} chunks) to slot {} ({}): {} bytes from \
                     seeds, {} chunks from {}.",
                    r.version,
                    c.total_bytes,
                    c.total_chunks,
                    r.slot,
                    r.slot_path,
                    c.reused_bytes,
                    c.fetched_chunks,
                    o.source
                );
            }
            Ok(out.exit_code())
        }
        Ok(r) => {
            let c = &r.counters;
            log::info!(
                "Version {} written to slot {} ({}) and marked pending: {} chunks, {} bytes reused, \
                 {} already present, {} chunks ({} bytes) fetched, {:.2}s.",
                r.version,
                r.slot,
                r.slot_path,
                c.total_chunks,
                c.reused_bytes,
                c.present_bytes,
                c.fetched_chunks,
                c.fetched_bytes,
                r.seconds
            );
            if json {
                println!("{}", serde_json::to_string(&r).unwrap_or_default());
            }
            Ok(out.exit_code())
        }
        Err(e) => {
            log::error!("{e}");
            Ok(match e {
                FetchFailure::Refused(_) | FetchFailure::Failed(_) => EXIT_OP_FAILED,
            })
        }
    }
}

/// `[update]` settings with state directory and slots resolved for the root (see
/// [`super::place`]); slots under `/dev/` are the host's unless `--root` was given.
fn resolved(
    common: &Common,
    root: &crate::fs::Root,
    settings: &crate::config::UpdateSettings,
    create: bool,
) -> Result<crate::config::UpdateSettings, u8> {
    super::place::resolve(root, settings, common.root.is_none(), create).map_err(|e| {
        log::error!("{e}");
        EXIT_BAD_CONFIG
    })
}

fn open_state(
    common: &Common,
    create: bool,
) -> Result<
    (
        crate::config::UpdateSettings,
        StateDir,
        state::State,
        Outcome,
    ),
    u8,
> {
    let root = common.open_root()?;
    let mut out = Outcome::default();
    let settings = super::settings(&root, &mut out);
    if settings.slots.len() < 2 {
        log::error!("[update] slots needs at least two slots");
        return Err(EXIT_FATAL);
    }
    let settings = resolved(common, &root, &settings, create)?;
    let sd = StateDir::open(Path::new(&settings.state_dir), create).map_err(|e| {
        log::error!("{e}");
        EXIT_OP_FAILED
    })?;
    let mut st = sd.load().map_err(|e| {
        log::error!("{e}");
        EXIT_OP_FAILED
    })?;
    st.fit(settings.slots.len());
    Ok((settings, sd, st, out))
}

fn cmd_status(common: &Common, mut p: lexopt::Parser) -> Result<u8, Usage> {
    let mut json = false;
    while let Some(a) = p.next()? {
        match a {
            Long("json") => json = true,
            _ => return Err(a.unexpected().into()),
        }
    }
    let root = match common.open_root() {
        Ok(r) => r,
        Err(c) => return Ok(c),
    };
    let mut out = Outcome::default();
    let settings = super::settings(&root, &mut out);
    if settings.slots.is_empty() && !json {
        println!("No update slots configured ([update] slots in pristine.toml).");
        return Ok(out.exit_code());
    }
    let settings = match resolved(common, &root, &settings, false) {
        Ok(s) => s,
        Err(c) => return Ok(c),
    };
    let st = StateDir::open(Path::new(&settings.state_dir), false)
        .ok()
        .map(|d| d.load())
        .transpose();
    let mut st = match st {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => {
            log::error!("{e}");
            return Ok(EXIT_OP_FAILED);
        }
    };
    st.fit(settings.slots.len());
    let active = super::fetch::active_slot(&root, &settings.slots, &st).ok();
    if json {
        let v = serde_json::json!({
            "slots": settings.slots,
            "active": active,
            "state": st,
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        for (i, path) in settings.slots.iter().enumerate() {
            let r = st.slot(i);
            let mut flags = Vec::new();
            if active == Some(i) {
                flags.push("active".to_string());
            }
            if st.last_good == Some(i) {
                flags.push("last good".to_string());
            }
            if r.status == SlotStatus::Pending {
                flags.push(format!("{} tries left", r.tries));
            }
            println!(
                "slot {i}: {path}: {} version {}{}{}",
                r.status.name(),
                r.version.as_deref().unwrap_or("-"),
                if flags.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", flags.join(", "))
                },
                r.reason
                    .as_deref()
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(out.exit_code())
}

fn cmd_boot(common: &Common, mut p: lexopt::Parser) -> Result<u8, Usage> {
    let (mut json, mut mount, mut fstype) = (false, None, None);
    while let Some(a) = p.next()? {
        match a {
            Long("json") => json = true,
            Long("mount") => mount = Some(p.optional_value().map(PathBuf::from)),
            Long("fstype") => fstype = Some(string(p.value()?)?),
            _ => return Err(a.unexpected().into()),
        }
    }
    let root = match common.open_root() {
        Ok(r) => r,
        Err(c) => return Ok(c),
    };
    let mut out = Outcome::default();
    let mut settings = super::settings(&root, &mut out);
    // /sysroot/usr is what is about to be chosen: in the initrd, its settings and trusted keys
    // are the initrd's own copy (the dracut module installs them).
    let initrd = (common.root.is_none() && crate::logging::in_initrd())
        .then(|| crate::fs::Root::open("/").ok())
        .flatten();
    if settings.slots.is_empty() {
        if let Some(initrd) = &initrd {
            settings = super::settings(initrd, &mut out);
        }
    }
    let settings = match resolved(common, &root, &settings, false) {
        Ok(s) => s,
        Err(c) => return Ok(c),
    };
    match super::boot::complete_incomplete(&root, initrd.as_ref().unwrap_or(&root), &settings) {
        Ok(Some(r)) => log::info!(
            "Incomplete slot {} completed with version {} from the boot source: {} bytes \
             already in the slot, {} from the good slot, {} chunks ({} bytes) read from the source.",
            r.slot,
            r.version,
            r.counters.present_bytes,
            r.counters.reused_bytes,
            r.counters.fetched_chunks,
            r.counters.fetched_bytes
        ),
        Ok(None) => {}
        Err(e) => log::warn!("Incomplete slot not completed, skipping it: {e}"),
    }
    let (d, path) = match super::boot(&settings) {
        Ok(x) => x,
        Err(e) => {
            log::error!("update boot: {e}");
            return Ok(EXIT_OP_FAILED);
        }
    };
    let mut mounted = None;
    if let Some(target) = mount {
        let target = target.unwrap_or_else(|| root.host().join("usr"));
        let rec = StateDir::open(Path::new(&settings.state_dir), false)
            .and_then(|sd| sd.load())
            .map(|st| st.slot(d.slot));
        match rec.and_then(|r| super::boot::mount(&path, &r, &target, fstype.as_deref())) {
            Ok(what) => {
                log::info!("Mounted {what} read-only at {}.", target.display());
                mounted = Some(what);
            }
            Err(e) => {
                log::error!("update boot: {e}");
                return Ok(EXIT_OP_FAILED);
            }
        }
    }
    if json {
        let v = serde_json::json!({"slot": d.slot, "path": path, "reason": d.reason, "mounted": mounted});
        println!("{v}");
    } else {
        println!("{path}");
    }
    Ok(out.exit_code())
}

fn cmd_state(common: &Common, verb: &str, mut p: lexopt::Parser) -> Result<u8, Usage> {
    if let Some(a) = p.next()? {
        return Err(a.unexpected().into());
    }
    let (_settings, sd, mut st, out) = match open_state(common, false) {
        Ok(x) => x,
        Err(c) => return Ok(c),
    };
    let r = if verb == "confirm" {
        state::confirm(&mut st).map(|s| format!("Slot {s} confirmed good."))
    } else {
        state::rollback(&mut st).map(|s| format!("Rolled back: slot {s} boots next."))
    };
    match r.and_then(|msg| sd.save(&st).map(|_| msg)) {
        Ok(msg) => {
            log::info!("{msg}");
            Ok(out.exit_code())
        }
        Err(e) => {
            log::error!("update {verb}: {e}");
            Ok(EXIT_OP_FAILED)
        }
    }
}

fn cmd_adopt(common: &Common, mut p: lexopt::Parser) -> Result<u8, Usage> {
    let (mut slot, mut version, mut index) = (None, None, None);
    while let Some(a) = p.next()? {
        match a {
            Long("slot") => {
                slot = Some(
                    string(p.value()?)?
                        .parse::<usize>()
                        .map_err(|_| Usage("bad --slot".into()))?,
                )
            }
            Long("version") => version = Some(string(p.value()?)?),
            Long("index") => index = Some(PathBuf::from(p.value()?)),
            _ => return Err(a.unexpected().into()),
        }
    }
    let (Some(slot), Some(version)) = (slot, version) else {
        return Err(Usage("adopt needs --slot= and --version=".into()));
    };
    let (settings, sd, mut st, out) = match open_state(common, true) {
        Ok(x) => x,
        Err(c) => return Ok(c),
    };
    if slot >= settings.slots.len() {
        return Err(Usage(format!("slot {slot} is not configured")));
    }
    if let Some(ip) = index {
        let r = std::fs::read(&ip).op("read", &ip).and_then(|b| {
            super::index::Index::parse(&b).map_err(|e| e.at(&ip))?;
            sd.write_index(slot, &b)
        });
        if let Err(e) = r {
            log::error!("{e}");
            return Ok(EXIT_OP_FAILED);
        }
    }
    let r = &mut st.slots[slot];
    r.status = SlotStatus::Good;
    r.version = Some(version);
    r.tries = 0;
    r.reason = Some("adopted as installed".into());
    st.booted = Some(slot);
    st.last_good = Some(slot);
    match sd.save(&st) {
        Ok(()) => Ok(out.exit_code()),
        Err(e) => {
            log::error!("{e}");
            Ok(EXIT_OP_FAILED)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes() {
        assert_eq!(
            parse_chunk_size("16K:64K:256K").unwrap(),
            ChunkParams::default()
        );
        assert_eq!(parse_chunk_size("64K").unwrap(), ChunkParams::default());
        assert!(parse_chunk_size("64K:16K:256K").is_err());
        assert!(parse_chunk_size("1:2").is_err());
        assert!(parse_chunk_size("1G:1G:1G").is_err());
    }
}
