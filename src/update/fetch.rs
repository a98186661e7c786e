//! Device side: verify, then assemble the new image into the inactive slot.
//!
//! Order of work (nothing is written before step 4): (1) the signature of the manifest against
//! the keys of the running `/usr`, (2) the version against the installed one, (3) the index
//! against the manifest, (4) every chunk, taken from the active slot (by its stored index), the
//! `--seed=` files, the target slot itself (an interrupted earlier run), or the source, is
//! hashed and compared with its id before it is written, (5) the whole-image digest (computed
//! while assembling, from the target as its placed prefix grows), fsync, (6) the stored index
//! and then the state record (pending, tries) are replaced atomically. The active slot is
//! never opened for writing: the target is checked against it (and against the device backing
//! the running `/usr`) by device and inode, on its path and again on the opened descriptor.
//! The installed version must be known (fail closed) unless a first install is allowed.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read as _;
use std::os::unix::fs::{FileExt as _, FileTypeExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};

use super::chunker::Chunker;
use super::compress;
use super::index::{chunk_path, Chunk, Index};
use super::manifest::{self, Manifest, SigError};
use super::progress::{Counters, Progress};
use super::source::{FetchError, Source};
use super::state::{compare_versions, SlotStatus, State, StateDir};
use crate::config::UpdateSettings;
use crate::error::{Error, IoContext, Result};
use crate::fs::Root;

/// Vendor-shipped index of the image the running `/usr` came from (used when no index is
/// stored for the active slot yet).
pub const SHIPPED_INDEX: &str = "/usr/lib/pristine/update/image.caibx";

#[derive(Clone, Debug, Default)]
pub struct FetchOptions {
    pub source: String,
    pub seeds: Vec<PathBuf>,
    pub allow_downgrade: bool,
    /// Accept the update although the installed version is unknown (the first install).
    pub allow_unknown_installed: bool,
    /// Verify and plan only: nothing is written.
    pub dry_run: bool,
}

/// Why a fetch stopped; `Refused` means the update itself is not acceptable.
#[derive(Debug)]
pub enum FetchFailure {
    Refused(Error),
    Failed(Error),
}

impl std::fmt::Display for FetchFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchFailure::Refused(e) => write!(f, "Update refused: {e}"),
            FetchFailure::Failed(e) => write!(f, "Update failed: {e}"),
        }
    }
}

/// An error of the system (not of the update) stops the fetch as failed.
impl From<Error> for FetchFailure {
    fn from(e: Error) -> FetchFailure {
        FetchFailure::Failed(e)
    }
}

impl From<FetchFailure> for Error {
    fn from(f: FetchFailure) -> Error {
        match f {
            FetchFailure::Refused(e) | FetchFailure::Failed(e) => e,
        }
    }
}

use FetchFailure::{Failed, Refused};

#[derive(Debug, serde::Serialize)]
pub struct FetchReport {
    pub version: String,
    pub slot: usize,
    pub slot_path: String,
    pub counters: Counters,
    pub seconds: f64,
}

/// Identity of a slot on the host: the file or device node, the block device number, and for
/// a loop device the file behind it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ident {
    pub dev: u64,
    pub ino: u64,
    pub rdev: Option<u64>,
    pub backing: Option<(u64, u64)>,
}

/// The (dev, ino) of the file behind loop device `rdev`, if it is one.
fn loop_backing(rdev: u64) -> Option<(u64, u64)> {
    let (maj, min) = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
    let p =
        std::fs::read_to_string(format!("/sys/dev/block/{maj}:{min}/loop/backing_file")).ok()?;
    let m = std::fs::metadata(p.trim()).ok()?;
    Some((m.dev(), m.ino()))
}

pub fn ident(path: &Path) -> std::io::Result<Ident> {
    Ok(ident_of(&std::fs::metadata(path)?))
}

fn ident_of(m: &std::fs::Metadata) -> Ident {
    let rdev = m.file_type().is_block_device().then(|| m.rdev());
    Ident {
        dev: m.dev(),
        ino: m.ino(),
        rdev,
        backing: rdev.and_then(loop_backing),
    }
}

/// Test builds only (`fault-injection`): with `PRISTINE_TEST_PAUSE=NAME:PATH` the fetch
/// creates `PATH.ready` at the point NAME and waits (at most 30 s) for `PATH.go`, so a test can
/// act between two steps (swap a slot path between its check and its opening).
fn pause_point(name: &str) {
    #[cfg(feature = "fault-injection")]
    if let Some(p) = std::env::var("PRISTINE_TEST_PAUSE")
        .ok()
        .and_then(|v| v.strip_prefix(&format!("{name}:")).map(PathBuf::from))
    {
        let _ = std::fs::write(p.with_extension("ready"), b"");
        for _ in 0..300 {
            if p.with_extension("go").exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    let _ = name;
}

/// How to reach the source, from `[update]`.
fn connect(s: &UpdateSettings) -> super::source::Connect {
    let secs = |n: u64| std::time::Duration::from_secs(n.max(1));
    super::source::Connect {
        deadlines: super::source::Deadlines {
            connect: secs(s.timeout_connect),
            stall: secs(s.timeout_stall),
            transfer: secs(s.timeout_transfer),
        },
        ca_file: s.ca_file.clone(),
    }
}

impl Ident {
    /// The data this names, as (dev, ino) of a regular file, if any.
    fn file(&self) -> Option<(u64, u64)> {
        match self.rdev {
            None => Some((self.dev, self.ino)),
            Some(_) => self.backing,
        }
    }

    /// Whether writing through `self` would write the data of `other`.
    pub fn aliases(&self, other: &Ident) -> bool {
        (self.dev, self.ino) == (other.dev, other.ino)
            || (self.rdev.is_some() && self.rdev == other.rdev)
            || (self.file().is_some() && self.file() == other.file())
    }
}

/// Whether the slot at `id` backs the mounted `/usr` (device `usr_dev`): the block device
/// itself, or the backing file of a loop device.
fn backs_usr(id: &Ident, usr_dev: u64) -> bool {
    id.rdev == Some(usr_dev) || loop_backing(usr_dev).is_some_and(|b| id.file() == Some(b))
}

/// The active slot: the one backing the running `/usr`, else the one the state says is booted.
pub fn active_slot(root: &Root, slots: &[String], st: &State) -> Result<usize> {
    if let Ok(usr) = root.stat(Path::new("/usr"), true) {
        for (i, s) in slots.iter().enumerate() {
            if ident(Path::new(s)).is_ok_and(|id| backs_usr(&id, usr.st_dev)) {
                return Ok(i);
            }
        }
    }
    st.booted.filter(|&b| b < slots.len()).ok_or_else(|| {
        Error::msg(
            "tell which slot is running",
            "none backs /usr and the state records none \
             (record the installed slot with 'pristine update adopt')",
        )
    })
}

pub fn load_index_for(
    root: &Root,
    sd: Option<&StateDir>,
    slot: usize,
    st: &State,
) -> Option<Index> {
    let stored = sd.and_then(|d| d.read_index(slot));
    let bytes = match stored {
        Some(b) => b,
        None if st.booted == Some(slot) || st.booted.is_none() => root
            .read_max(Path::new(SHIPPED_INDEX), crate::fs::limits::INDEX)
            .ok()?,
        None => return None,
    };
    Index::parse(&bytes).ok()
}

/// A place chunks can be copied from.
struct Seed {
    name: String,
    file: File,
    /// id → (offset, len)
    map: HashMap<[u8; 32], (u64, u64)>,
}

/// Opens a slot or seed for reading: only a regular file or a block device, and without
/// blocking on anything else (a FIFO).
fn open_image(path: &Path) -> std::io::Result<File> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)?;
    let t = f.metadata()?.file_type();
    if !(t.is_file() || t.is_block_device()) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "neither a regular file nor a block device",
        ));
    }
    Ok(f)
}

fn seed_from_index(name: String, path: &Path, index: &Index) -> Option<Seed> {
    let file = open_image(path).ok()?;
    let map = index
        .chunks
        .iter()
        .map(|c| (c.id, (c.offset, c.len)))
        .collect();
    Some(Seed { name, file, map })
}

/// Chunks a seed file with the update's parameters (casync's way of seeding).
fn seed_by_chunking(path: &Path, m: &Manifest) -> Result<Seed> {
    let name = path.display().to_string();
    let digest = m.digest()?;
    let mut f = open_image(path).op("open seed", path)?;
    let mut ch = Chunker::new(&m.params());
    let mut map = HashMap::new();
    let mut cur: Vec<u8> = Vec::new();
    let mut off = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).op("read seed", path)?;
        if n == 0 {
            if !cur.is_empty() {
                map.insert(digest.id(&cur), (off, cur.len() as u64));
            }
            break;
        }
        for (run, ends) in ch.split(&buf[..n]) {
            cur.extend_from_slice(run);
            if ends {
                map.insert(digest.id(&cur), (off, cur.len() as u64));
                off += cur.len() as u64;
                cur.clear();
            }
        }
    }
    Ok(Seed { name, file: f, map })
}

impl Seed {
    /// Reads the chunk `c` from this seed into `buf` if the seed has it and it hashes right.
    fn copy_into(&self, c: &Chunk, digest: super::index::Digest, buf: &mut Vec<u8>) -> bool {
        let Some(&(off, len)) = self.map.get(&c.id) else {
            return false;
        };
        if len == c.len && read_at(&self.file, buf, off, len) && digest.id(buf) == c.id {
            return true;
        }
        log::debug!(
            "{}: chunk {} does not match its id, not reused",
            self.name,
            c.id_hex()
        );
        false
    }
}

fn read_at(f: &File, buf: &mut Vec<u8>, off: u64, len: u64) -> bool {
    buf.resize(len as usize, 0);
    f.read_exact_at(buf, off).is_ok()
}

/// Reads manifest and signature and verifies them; returns the manifest and the key used.
pub fn verified_manifest(
    root: &Root,
    src: &mut Source,
) -> Result<(Manifest, Vec<u8>, String), FetchFailure> {
    let (keys, errs) = manifest::load_keys(root);
    for e in errs {
        log::warn!("{e}");
    }
    if keys.is_empty() {
        return Err(Refused(Error::invalid(
            "load trusted keys from",
            root.display_path(Path::new(manifest::KEYS_DIR)),
            "no keys in it",
        )));
    }
    let mtext = src
        .get(manifest::MANIFEST, 64 * 1024)
        .map_err(|e| Failed(e.into()))?;
    let sig = src
        .get(manifest::SIGNATURE, 16 * 1024)
        .map_err(|e| Failed(e.into()))?;
    let sig = String::from_utf8_lossy(&sig).to_string();
    let key = manifest::verify(&mtext, &sig, &keys).map_err(|e| {
        let what = src.describe(manifest::SIGNATURE);
        match e {
            SigError::UnknownKey(_) | SigError::Bad(_) | SigError::Malformed(_) => {
                Refused(Error::from(e).at(what))
            }
        }
    })?;
    let mpath = src.describe(manifest::MANIFEST);
    let text = std::str::from_utf8(&mtext)
        .map_err(|_| Refused(Error::invalid("parse manifest", &mpath, "not UTF-8")))?;
    let m = Manifest::parse(text).map_err(|e| Refused(e.at(&mpath)))?;
    Ok((m, mtext, key))
}

/// Fetches and checks the index the manifest names.
pub fn verified_index(src: &mut Source, m: &Manifest) -> Result<(Index, Vec<u8>), FetchFailure> {
    let params = m.params();
    let max_chunks = (m.image_size / params.min.max(1)).saturating_add(2);
    let limit = max_chunks
        .saturating_mul(40)
        .saturating_add(104)
        .min(1 << 28);
    let what = src.describe(&m.index);
    let bytes = src.get(&m.index, limit).map_err(|e| match e {
        FetchError::TooLarge(_) => Refused(e.into()),
        _ => Failed(e.into()),
    })?;
    let refuse = |why: String| Refused(Error::invalid("verify index", &what, why));
    if manifest::sha256_tag(&bytes) != m.index_digest {
        return Err(refuse("digest does not match the signed manifest".into()));
    }
    let idx = Index::parse(&bytes).map_err(|e| Refused(e.at(&what)))?;
    if idx.params != params {
        return Err(refuse("chunk sizes differ from the manifest's".into()));
    }
    if m.digest().ok() != Some(idx.digest()) {
        return Err(refuse("chunk digest differs from the manifest's".into()));
    }
    if idx.size() != m.image_size {
        return Err(refuse(format!(
            "describes {} bytes, the manifest {}",
            idx.size(),
            m.image_size
        )));
    }
    Ok((idx, bytes))
}

/// Gets, decompresses (bounded) and verifies one chunk from the source.
pub fn fetch_chunk(
    src: &mut Source,
    m: &Manifest,
    idx: &Index,
    c: &Chunk,
) -> Result<(Vec<u8>, u64), FetchFailure> {
    let rel = format!("{}/{}", m.store, chunk_path(&c.id));
    let what = src.describe(&rel);
    let stored = src
        .get(&rel, idx.params.max * 2 + 64 * 1024)
        .map_err(|e| Failed(e.into()))?;
    let data = compress::decompress(&stored, c.len as usize, m.compression == "none")
        .map_err(|e| Refused(e.at(&what)))?;
    if data.len() as u64 != c.len || idx.digest().id(&data) != c.id {
        return Err(Refused(Error::invalid(
            "verify chunk",
            &what,
            "content does not match its chunk id",
        )));
    }
    Ok((data, stored.len() as u64))
}

/// The whole fetch. See the module documentation.
pub fn fetch(
    root: &Root,
    settings: &UpdateSettings,
    opts: &FetchOptions,
) -> Result<FetchReport, FetchFailure> {
    let slots = &settings.slots;
    if slots.len() < 2 {
        return Err(Failed(Error::msg(
            "fetch",
            "[update] slots needs at least two slots",
        )));
    }
    let sd_path = Path::new(&settings.state_dir);
    let sd = StateDir::open(sd_path, false).ok();
    let mut st = match &sd {
        Some(d) => d.load()?,
        None => State::default(),
    };
    st.fit(slots.len());
    let active = active_slot(root, slots, &st)?;
    st.booted = Some(active);
    let mut src = Source::open(&opts.source, Some(root), &connect(settings))?;
    let (m, _mtext, key) = verified_manifest(root, &mut src)?;
    log::info!("Manifest for version {} verified with {key}.", m.version);
    let installed = st.slot(active).version.or_else(|| os_release_version(root));
    match &installed {
        Some(cur) => {
            if compare_versions(&m.version, cur) != std::cmp::Ordering::Greater
                && !opts.allow_downgrade
            {
                return Err(Refused(Error::msg(
                    format!("install version {}", m.version),
                    format!("not newer than the installed {cur} (use --allow-downgrade)"),
                )));
            }
        }
        // Fail closed: with nothing to compare against, an old signed manifest (a replay)
        // would pass as an upgrade.
        None if !(opts.allow_unknown_installed || settings.allow_unknown_installed) => {
            return Err(Refused(Error::msg(
                format!("install version {}", m.version),
                format!(
                    "the installed version is unknown (no record for slot {active}, no \
                     IMAGE_VERSION= in /usr/lib/os-release), so it cannot be checked to be \
                     newer; record it with 'pristine update adopt --version=…', or allow a \
                     first install with --allow-unknown-installed or [update] \
                     allow-unknown-installed = true"
                ),
            )));
        }
        None => log::warn!(
            "Installed version unknown; accepting version {} as a first install.",
            m.version
        ),
    }
    let (idx, idx_bytes) = verified_index(&mut src, &m)?;

    // Target slot: never the active one, checked by identity.
    let target = st.pick_target(slots.len()).ok_or_else(|| {
        Failed(Error::msg(
            "find a slot to write to",
            "the other slot holds the last good version (confirm the running one first)",
        ))
    })?;
    let tpath = PathBuf::from(&slots[target]);
    let apath = PathBuf::from(&slots[active]);
    let aid = ident(&apath).op("stat", &apath)?;
    let tid = ident(&tpath).op("stat", &tpath)?;
    let usr_dev = root.stat(Path::new("/usr"), true).ok().map(|s| s.st_dev);
    if tid.aliases(&aid) || usr_dev.is_some_and(|d| backs_usr(&tid, d)) {
        return Err(Failed(Error::invalid(
            "write to",
            &tpath,
            format!(
                "it is the active slot (same device/inode or backing file as {})",
                apath.display()
            ),
        )));
    }

    // Seeds: the active slot by its stored index, then --seed= files (chunked lazily).
    let mut seeds = Vec::new();
    if let Some(ai) = load_index_for(root, sd.as_ref(), active, &st) {
        if ai.digest() == idx.digest() {
            if let Some(s) = seed_from_index(format!("slot {active}"), &apath, &ai) {
                seeds.push(s);
            }
        }
    }
    // --seed= files are chunked only if the active slot lacks some chunk.
    if !opts.seeds.is_empty()
        && idx
            .chunks
            .iter()
            .any(|c| !seeds.iter().any(|s| s.map.contains_key(&c.id)))
    {
        for p in &opts.seeds {
            seeds.push(seed_by_chunking(p, &m)?);
        }
    }

    if opts.dry_run {
        // The plan: what seeds would give (by their indexes; hashes are checked only when
        // copying) and what the source must.
        let mut c = Counters {
            total_bytes: m.image_size,
            total_chunks: idx.chunks.len() as u64,
            ..Counters::default()
        };
        for ch in &idx.chunks {
            if seeds.iter().any(|s| s.map.contains_key(&ch.id)) {
                c.reused_bytes += ch.len;
            } else {
                c.fetched_chunks += 1;
            }
        }
        return Ok(FetchReport {
            version: m.version.clone(),
            slot: target,
            slot_path: tpath.display().to_string(),
            counters: c,
            seconds: 0.0,
        });
    }

    pause_point("slot-open");
    let tfile = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(&tpath)
        .op("open", &tpath)?;
    let tmeta = tfile.metadata().op("stat", &tpath)?;
    // The path may have been swapped since it was checked: what counts is what was opened.
    let opened = ident_of(&tmeta);
    if !(tmeta.file_type().is_file() || tmeta.file_type().is_block_device()) {
        return Err(Failed(Error::invalid(
            "write to",
            &tpath,
            "neither a regular file nor a block device",
        )));
    }
    if opened != tid || opened.aliases(&aid) || usr_dev.is_some_and(|d| backs_usr(&opened, d)) {
        return Err(Failed(Error::invalid(
            "write to",
            &tpath,
            format!(
                "it changed between its check and its opening (now device {}:{}, inode {})",
                rustix::fs::major(tmeta.dev()),
                rustix::fs::minor(tmeta.dev()),
                tmeta.ino()
            ),
        )));
    }
    if tmeta.file_type().is_block_device() {
        let size = device_size(&tfile).op("get the size of", &tpath)?;
        if size < m.image_size {
            return Err(Failed(Error::invalid(
                "write to",
                &tpath,
                format!("it holds {size} bytes, the image needs {}", m.image_size),
            )));
        }
    }

    let progress = Mutex::new(Progress::new(m.image_size, idx.chunks.len() as u64));
    // Before the first write: a slot that held something bootable no longer does.
    mark_incomplete(sd_path, &mut st, target)?;
    let job = Assembly {
        idx: &idx,
        seeds: &seeds,
        tfile: &tfile,
        tpath: &tpath,
        progress: &progress,
        stop: AtomicBool::new(false),
        written: Mutex::new(HashMap::new()),
        placed: Mutex::new((vec![false; idx.chunks.len()], 0)),
        advanced: Condvar::new(),
    };
    // The whole-image digest is computed while the image is assembled: a hasher follows the
    // placed prefix of the target (hot in the page cache), so no second pass over the image,
    // and hands what it hashed to the disk, so the final sync has little left to do.
    let (assembly, whole) = std::thread::scope(|scope| {
        let hasher = scope.spawn(|| job.hash_in_order());
        let r = job.run(&mut src, &m);
        job.stop.store(true, Ordering::Relaxed);
        job.advanced.notify_all();
        let whole = hasher
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("hasher thread panicked")));
        (r, whole)
    });
    assembly?;
    let whole = whole.op("hash", &tpath)?;
    let mut progress = progress.into_inner().unwrap_or_else(|e| e.into_inner());
    progress.finish();
    let assembled = progress.elapsed();
    if tmeta.file_type().is_file() {
        tfile.set_len(m.image_size).op("truncate", &tpath)?;
    }
    // The target's data only (and its size): most of it is already on its way to the disk.
    tfile.sync_data().op("sync", &tpath)?;
    log::debug!(
        "Assembled and hashed in {:.2}s, synced in {:.2}s.",
        assembled.as_secs_f64(),
        (progress.elapsed() - assembled).as_secs_f64(),
    );
    if whole != m.image_digest {
        return Err(Refused(Error::invalid(
            "verify",
            &tpath,
            "assembled image does not match the manifest's image digest",
        )));
    }
    let sd = StateDir::open(sd_path, true)?;
    sd.write_index(target, &idx_bytes)?;
    let r = &mut st.slots[target];
    r.status = SlotStatus::Pending;
    r.tries = settings.tries;
    r.version = Some(m.version.clone());
    r.image_size = m.image_size;
    r.image_digest = Some(m.image_digest.clone());
    r.index_digest = Some(m.index_digest.clone());
    r.reason = Some(format!("fetched from {}", opts.source));
    r.verity = m.verity.clone();
    r.checked = false;
    sd.save(&st)?;
    Ok(FetchReport {
        version: m.version.clone(),
        slot: target,
        slot_path: tpath.display().to_string(),
        counters: progress.c.clone(),
        seconds: progress.elapsed().as_secs_f64(),
    })
}

/// How one chunk came to be in place.
enum Placed {
    Seed,
    Present,
    Fetched(u64),
}

/// The chunk loop, shared by the worker threads: seed copiers (the chunks some seed has, in
/// interleaved runs, hashed in parallel) and one source fetcher (the chunks no seed has, in
/// order, over the one connection). Chunks a seed turned out not to match go to the fetcher's
/// sequential pass at the end.
struct Assembly<'a> {
    idx: &'a Index,
    seeds: &'a [Seed],
    tfile: &'a File,
    tpath: &'a Path,
    progress: &'a Mutex<Progress>,
    stop: AtomicBool,
    /// Chunks the fetcher placed so far: id → offset in the target.
    written: Mutex<HashMap<[u8; 32], u64>>,
    /// Which chunks are in place, and how many from the start are (the placed prefix).
    placed: Mutex<(Vec<bool>, usize)>,
    /// Signalled when the placed prefix grows (or the assembly stops).
    advanced: Condvar,
}

const RUN: usize = 32;
/// The hasher starts writeback of the target each time it got this many bytes further.
const WRITEBACK_STEP: u64 = 32 << 20;

impl Assembly<'_> {
    fn write(&self, data: &[u8], c: &Chunk) -> Result<(), FetchFailure> {
        crate::fs::mutating("write", self.tpath).op("write", self.tpath)?;
        self.tfile
            .write_all_at(data, c.offset)
            .op("write", self.tpath)
            .map_err(Failed)
    }

    fn remember(&self, c: &Chunk) {
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(c.id)
            .or_insert(c.offset);
    }

    fn done(&self, c: &Chunk, how: Placed) {
        if let Ok(i) = self
            .idx
            .chunks
            .binary_search_by_key(&c.offset, |x| x.offset)
        {
            let mut pl = self.placed.lock().unwrap_or_else(|e| e.into_inner());
            let (flags, prefix) = &mut *pl;
            flags[i] = true;
            let before = *prefix;
            while flags.get(*prefix).copied().unwrap_or(false) {
                *prefix += 1;
            }
            if *prefix != before {
                self.advanced.notify_one();
            }
        }
        let mut p = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        match how {
            Placed::Seed => p.c.reused_bytes += c.len,
            Placed::Present => p.c.present_bytes += c.len,
            Placed::Fetched(n) => {
                p.c.fetched_chunks += 1;
                p.c.fetched_bytes += n;
            }
        }
        p.c.done_bytes += c.len;
        p.c.done_chunks += 1;
        p.tick();
    }

    /// From a seed; `false` if no seed has it intact.
    fn copy_from_seed(&self, c: &Chunk, buf: &mut Vec<u8>) -> Result<bool, FetchFailure> {
        let digest = self.idx.digest();
        if self.seeds.iter().any(|s| s.copy_into(c, digest, buf)) {
            self.write(buf, c)?;
            self.done(c, Placed::Seed);
            return Ok(true);
        }
        Ok(false)
    }

    /// Already in the target, else from the source.
    fn take_present_or_fetch(
        &self,
        c: &Chunk,
        buf: &mut Vec<u8>,
        src: &mut Source,
        m: &Manifest,
    ) -> Result<(), FetchFailure> {
        let digest = self.idx.digest();
        if read_at(self.tfile, buf, c.offset, c.len) && digest.id(buf) == c.id {
            self.remember(c);
            self.done(c, Placed::Present);
            return Ok(());
        }
        // The same chunk earlier in this image (runs of zeros, duplicated files)?
        let earlier = self
            .written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&c.id)
            .copied();
        if let Some(off) = earlier {
            if read_at(self.tfile, buf, off, c.len) && digest.id(buf) == c.id {
                self.write(buf, c)?;
                self.done(c, Placed::Seed);
                return Ok(());
            }
        }
        let (d, stored) = fetch_chunk(src, m, self.idx, c)?;
        self.write(&d, c)?;
        self.remember(c);
        self.done(c, Placed::Fetched(stored));
        Ok(())
    }

    /// `sha256:HEX` of the image, read back from the target as its placed prefix grows; `Err`
    /// if the assembly stopped before every chunk was placed. Behind it, the written data is
    /// handed to the disk early.
    fn hash_in_order(&self) -> std::io::Result<String> {
        use sha2::Digest as _;
        let chunks = &self.idx.chunks;
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut hashed = 0usize;
        let mut flushed = 0u64;
        while hashed < chunks.len() {
            let upto = {
                let mut pl = self.placed.lock().unwrap_or_else(|e| e.into_inner());
                while pl.1 == hashed && !self.stop.load(Ordering::Relaxed) {
                    pl = self
                        .advanced
                        .wait_timeout(pl, std::time::Duration::from_millis(200))
                        .map(|(g, _)| g)
                        .unwrap_or_else(|e| e.into_inner().0);
                }
                pl.1
            };
            if upto == hashed {
                return Err(std::io::Error::other("assembly stopped"));
            }
            let (mut off, end) = (
                chunks[hashed].offset,
                chunks[upto - 1].offset + chunks[upto - 1].len,
            );
            while off < end {
                let n = (end - off).min(buf.len() as u64) as usize;
                self.tfile.read_exact_at(&mut buf[..n], off)?;
                h.update(&buf[..n]);
                off += n as u64;
            }
            hashed = upto;
            if end - flushed >= WRITEBACK_STEP {
                // Starts writeback of the hashed range (its pages leave the cache once clean;
                // nothing reads them again). Only a hint: its failure changes nothing.
                let _ = rustix::fs::fadvise(
                    self.tfile,
                    flushed,
                    std::num::NonZeroU64::new(end - flushed),
                    rustix::fs::Advice::DontNeed,
                );
                flushed = end;
            }
        }
        Ok(format!("sha256:{}", crate::util::hex(&h.finalize())))
    }

    fn run(&self, src: &mut Source, m: &Manifest) -> Result<(), FetchFailure> {
        let chunks = &self.idx.chunks;
        let (seeded, unseeded): (Vec<usize>, Vec<usize>) = (0..chunks.len())
            .partition(|&i| self.seeds.iter().any(|s| s.map.contains_key(&chunks[i].id)));
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 4);
        let leftovers = Mutex::new(Vec::new());
        let results: Vec<Result<(), FetchFailure>> = std::thread::scope(|scope| {
            let mut handles = Vec::new();
            for t in 0..threads {
                let seeded = &seeded;
                let leftovers = &leftovers;
                handles.push(scope.spawn(move || {
                    let mut buf = Vec::new();
                    for run in seeded.chunks(RUN).skip(t).step_by(threads) {
                        for &i in run {
                            if self.stop.load(Ordering::Relaxed) {
                                return Ok(());
                            }
                            match self.copy_from_seed(&chunks[i], &mut buf) {
                                Ok(true) => {}
                                Ok(false) => {
                                    leftovers.lock().unwrap_or_else(|e| e.into_inner()).push(i)
                                }
                                Err(e) => {
                                    self.stop.store(true, Ordering::Relaxed);
                                    return Err(e);
                                }
                            }
                        }
                    }
                    Ok(())
                }));
            }
            let src = &mut *src;
            handles.push(scope.spawn(move || {
                let mut buf = Vec::new();
                for &i in &unseeded {
                    if self.stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    if let Err(e) = self.take_present_or_fetch(&chunks[i], &mut buf, src, m) {
                        self.stop.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                }
                Ok(())
            }));
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(Failed(Error::msg("assemble", "worker thread panicked")))
                    })
                })
                .collect()
        });
        // The fetcher's error is the interesting one (refusals); any error stops the fetch.
        let mut results = results;
        if let Some(e) = results.pop().and_then(Result::err) {
            return Err(e);
        }
        if let Some(e) = results.into_iter().find_map(Result::err) {
            return Err(e);
        }
        let mut left = leftovers.into_inner().unwrap_or_else(|e| e.into_inner());
        left.sort_unstable();
        let mut buf = Vec::new();
        for i in left {
            self.take_present_or_fetch(&chunks[i], &mut buf, src, m)?;
        }
        Ok(())
    }
}

/// Before the first write to a slot that held something bootable, record it as incomplete.
fn mark_incomplete(sd_path: &Path, st: &mut State, target: usize) -> Result<(), FetchFailure> {
    let r = &mut st.slots[target];
    if matches!(r.status, SlotStatus::Good | SlotStatus::Pending) {
        r.status = SlotStatus::Incomplete;
        r.tries = 0;
        r.reason = Some("being overwritten by a new version".into());
        let sd = StateDir::open(sd_path, true)?;
        sd.save(st)?;
    }
    Ok(())
}

fn device_size(f: &File) -> std::io::Result<u64> {
    use std::io::Seek as _;
    let mut f = f;
    f.seek(std::io::SeekFrom::End(0))
}

/// `sha256:HEX` of the first `size` bytes of `f`.
pub fn image_digest(f: &File, size: u64) -> std::io::Result<String> {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < size {
        let n = (size - off).min(buf.len() as u64) as usize;
        f.read_exact_at(&mut buf[..n], off)?;
        h.update(&buf[..n]);
        off += n as u64;
    }
    Ok(format!("sha256:{}", crate::util::hex(&h.finalize())))
}

/// `IMAGE_VERSION=` of the running root's os-release.
pub fn os_release_version(root: &Root) -> Option<String> {
    let text = root
        .read_optional(Path::new("/usr/lib/os-release"))
        .ok()
        .flatten()?;
    text.lines().find_map(|l| {
        let v = l.strip_prefix("IMAGE_VERSION=")?;
        Some(v.trim_matches(['"', '\'']).to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliasing() {
        let file = |dev, ino| Ident {
            dev,
            ino,
            rdev: None,
            backing: None,
        };
        let loopdev = |ino, rdev, backing| Ident {
            dev: 5,
            ino,
            rdev: Some(rdev),
            backing,
        };
        assert!(file(1, 2).aliases(&file(1, 2)));
        assert!(!file(1, 2).aliases(&file(1, 3)));
        // Two device nodes for one device.
        assert!(loopdev(10, 700, None).aliases(&loopdev(11, 700, None)));
        // A loop device and the file behind it; two loop devices on one file.
        assert!(loopdev(10, 700, Some((1, 2))).aliases(&file(1, 2)));
        assert!(file(1, 2).aliases(&loopdev(10, 700, Some((1, 2)))));
        assert!(loopdev(10, 700, Some((1, 2))).aliases(&loopdev(11, 701, Some((1, 2)))));
        assert!(!loopdev(10, 700, Some((1, 2))).aliases(&loopdev(11, 701, Some((1, 3)))));
        assert!(!loopdev(10, 700, None).aliases(&loopdev(11, 701, None)));
    }
}
