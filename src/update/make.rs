//! Vendor side: chunk an image into a casync store and `.caibx` (`make`), or take an index and
//! store made by `casync make` (`sign`), and write the signed manifest.
//!
//! Output goes to a build directory on the vendor's machine, never to a target root. Chunk
//! files are written under a temporary name and renamed into place; the index, manifest and
//! signature are written atomically last, so a half-made OUTDIR never carries a signature.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::path::Path;
use std::sync::Mutex;

use sha2::Digest as _;

use super::chunker::Chunker;
use super::compress::{self, Compression};
use super::index::{chunk_path, Chunk, ChunkParams, Digest, Index};
use super::manifest::{self, Manifest};
use crate::error::{Error, IoContext, Result};
use crate::fs::{Root, WriteOptions};

pub const INDEX_NAME: &str = "image.caibx";
pub const STORE_NAME: &str = "image.castr";

#[derive(Clone, Debug)]
pub struct MakeOptions {
    pub version: String,
    pub digest: Digest,
    pub compression: Compression,
    pub params: ChunkParams,
    /// Append a dm-verity hash tree to the image (see `update::verity`).
    pub verity: bool,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct MakeReport {
    pub chunks: u64,
    pub new_chunks: u64,
    pub image_size: u64,
    pub stored_bytes: u64,
}

fn store_chunk(
    store: &Path,
    id: &[u8; 32],
    data: &[u8],
    enc: &mut compress::Encoder,
    rep: &mut MakeReport,
) -> Result<()> {
    let rel = chunk_path(id);
    let path = store.join(&rel);
    if path.exists() {
        return Ok(());
    }
    let dir = path.parent().unwrap_or(store);
    std::fs::create_dir_all(dir).op("create directory", dir)?;
    let z = enc.compress(data).op("compress", &path)?;
    let tmp = dir.join(format!(".#{}", crate::util::hex(&id[..8])));
    let mut f = File::create(&tmp).op("create", &tmp)?;
    f.write_all(&z).op("write", &tmp)?;
    std::fs::rename(&tmp, &path).op("rename into place", &path)?;
    rep.new_chunks += 1;
    rep.stored_bytes += z.len() as u64;
    Ok(())
}

/// Chunks `image` (followed by `tail`) into `outdir/image.castr` and writes `image.caibx`;
/// returns the index and the whole-image digest.
pub fn make_store(
    image: &Path,
    tail: &[u8],
    outdir: &Path,
    o: &MakeOptions,
    rep: &mut MakeReport,
) -> Result<(Index, String)> {
    o.params.check()?;
    let store = outdir.join(STORE_NAME);
    let f = File::open(image).op("open", image)?;
    let mut f = f.chain(tail);
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8);
    // Chunking and hashing here; compressing and writing in `workers` threads.
    let (tx, rx) = std::sync::mpsc::sync_channel::<([u8; 32], Vec<u8>)>(workers * 2);
    let rx = Mutex::new(rx);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let (rx, store) = (&rx, &store);
                scope.spawn(move || {
                    let mut r = MakeReport::default();
                    let (mut enc, mut err) =
                        match compress::Encoder::new(o.compression, o.params.max) {
                            Ok(e) => (Some(e), None),
                            Err(e) => (
                                None,
                                Some(Error::io(
                                    format!("set up {} compression for", o.compression.name()),
                                    store,
                                    e,
                                )),
                            ),
                        };
                    loop {
                        // After an error keep draining, so the sender never blocks.
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => {
                                return Err(Error::msg("write the store", "worker lock poisoned"))
                            }
                        };
                        let Ok((id, data)) = job else {
                            return err.map_or(Ok(r), Err);
                        };
                        if let (None, Some(enc)) = (&err, &mut enc) {
                            if let Err(e) = store_chunk(store, &id, &data, enc, &mut r) {
                                err = Some(e);
                            }
                        }
                    }
                })
            })
            .collect();
        let cut = cut_and_hash(&mut f, image, o, &tx);
        drop(tx);
        for h in handles {
            let r = h
                .join()
                .unwrap_or_else(|_| Err(Error::msg("write the store", "worker thread panicked")))?;
            rep.new_chunks += r.new_chunks;
            rep.stored_bytes += r.stored_bytes;
        }
        let (chunks, whole) = cut?;
        rep.chunks = chunks.len() as u64;
        rep.image_size = chunks.last().map(|c| c.offset + c.len).unwrap_or(0);
        Ok((Index::new(o.digest, o.params, chunks), whole))
    })
}

type Job = ([u8; 32], Vec<u8>);

/// Cuts the image into chunks and hands each new chunk to the store writers.
fn cut_and_hash(
    f: &mut dyn std::io::Read,
    image: &Path,
    o: &MakeOptions,
    tx: &std::sync::mpsc::SyncSender<Job>,
) -> Result<(Vec<Chunk>, String)> {
    let mut ch = Chunker::new(&o.params);
    let mut whole = sha2::Sha256::new();
    let mut chunks = Vec::new();
    let mut sent = std::collections::HashSet::new();
    let mut cur: Vec<u8> = Vec::new();
    let mut off = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    let mut emit = |cur: &mut Vec<u8>, off: &mut u64| {
        let id = o.digest.id(cur);
        chunks.push(Chunk {
            offset: *off,
            len: cur.len() as u64,
            id,
        });
        *off += cur.len() as u64;
        let data = std::mem::take(cur);
        if sent.insert(id) {
            tx.send((id, data))
                .map_err(|_| Error::msg("write the store", "the store writers stopped"))?;
        }
        Ok::<(), Error>(())
    };
    loop {
        let n = f.read(&mut buf).op("read", image)?;
        if n == 0 {
            break;
        }
        whole.update(&buf[..n]);
        for (run, ends) in ch.split(&buf[..n]) {
            cur.extend_from_slice(run);
            if ends {
                emit(&mut cur, &mut off)?;
            }
        }
    }
    if !cur.is_empty() {
        emit(&mut cur, &mut off)?;
    }
    Ok((
        chunks,
        format!("sha256:{}", crate::util::hex(&whole.finalize())),
    ))
}

/// Writes index (if given), manifest and signature into `outdir`.
pub fn write_signed(
    outdir: &Path,
    index_bytes: Option<&[u8]>,
    m: &Manifest,
    sk: &minisign::SecretKey,
) -> Result<()> {
    let root = Root::open(outdir).op("open", outdir)?;
    let w = |name: &str, data: &[u8]| {
        root.write_atomic(Path::new(name), data, &WriteOptions::default())
            .op("write", outdir.join(name))
    };
    if let Some(b) = index_bytes {
        w(&m.index, b)?;
    }
    let text = m.to_toml();
    let sig = manifest::sign(
        sk,
        text.as_bytes(),
        &format!("pristine update {} {}", m.version, m.image_digest),
    )?;
    w(manifest::MANIFEST, text.as_bytes())?;
    w(manifest::SIGNATURE, sig.as_bytes())
}

/// `pristine update make`.
pub fn make(
    image: &Path,
    outdir: &Path,
    o: &MakeOptions,
    sk: &minisign::SecretKey,
) -> Result<MakeReport> {
    std::fs::create_dir_all(outdir).op("create directory", outdir)?;
    let mut rep = MakeReport::default();
    let verity = if o.verity {
        Some(super::verity::build_for_file(image)?)
    } else {
        None
    };
    let tail = verity
        .as_ref()
        .map(|t| t.appended.as_slice())
        .unwrap_or(&[]);
    let (idx, whole) = make_store(image, tail, outdir, o, &mut rep)?;
    let ib = idx.to_bytes();
    let m = Manifest {
        format: 1,
        version: o.version.clone(),
        image_size: rep.image_size,
        image_digest: whole,
        index: INDEX_NAME.into(),
        index_digest: manifest::sha256_tag(&ib),
        chunk_digest: o.digest.name().into(),
        compression: o.compression.name().into(),
        chunk_size_min: o.params.min,
        chunk_size_avg: o.params.avg,
        chunk_size_max: o.params.max,
        store: STORE_NAME.into(),
        verity: verity.map(|t| t.info()),
    };
    write_signed(outdir, Some(&ib), &m, sk)?;
    Ok(rep)
}

/// `pristine update sign`: manifest for an index and store made by casync. Every chunk is read
/// from `store`, decompressed and checked against its id, and the whole-image digest computed.
pub fn sign_existing(
    index_path: &Path,
    store: &Path,
    store_name: &str,
    outdir: &Path,
    version: &str,
    sk: &minisign::SecretKey,
    verity: bool,
) -> Result<MakeReport> {
    let ib = std::fs::read(index_path).op("read", index_path)?;
    let idx = Index::parse(&ib).map_err(|e| e.at(index_path))?;
    let mut whole = sha2::Sha256::new();
    let mut compression = None;
    let mut rep = MakeReport::default();
    let read_chunk = |c: &Chunk| {
        let p = store.join(chunk_path(&c.id));
        let z = std::fs::read(&p).op("read", &p)?;
        let d = compress::decompress(&z, c.len as usize, false).map_err(|e| e.at(&p))?;
        if d.len() as u64 != c.len || idx.digest().id(&d) != c.id {
            return Err(Error::invalid(
                "verify chunk",
                &p,
                "content does not match its chunk id",
            ));
        }
        Ok::<_, Error>((z, d))
    };
    let mut scan = verity.then(super::verity::StreamCheck::default);
    for c in &idx.chunks {
        let (z, d) = read_chunk(c)?;
        compression = compression.or(Compression::detect(&z));
        whole.update(&d);
        if let Some(s) = scan.as_mut() {
            s.find(&d);
        }
        rep.chunks += 1;
        rep.stored_bytes += z.len() as u64;
    }
    // The tree is checked against the data in a second pass (the salt is known only now).
    let verity = match scan {
        Some(mut s) => {
            s.second_pass().map_err(|e| e.at(index_path))?;
            for c in &idx.chunks {
                s.hash(&read_chunk(c)?.1);
            }
            Some(s.finish().map_err(|e| e.at(index_path))?)
        }
        None => None,
    };
    rep.image_size = idx.size();
    std::fs::create_dir_all(outdir).op("create directory", outdir)?;
    let m = Manifest {
        format: 1,
        version: version.into(),
        image_size: idx.size(),
        image_digest: format!("sha256:{}", crate::util::hex(&whole.finalize())),
        index: INDEX_NAME.into(),
        index_digest: manifest::sha256_tag(&ib),
        chunk_digest: idx.digest().name().into(),
        compression: compression.map(|c| c.name()).unwrap_or("auto").into(),
        chunk_size_min: idx.params.min,
        chunk_size_avg: idx.params.avg,
        chunk_size_max: idx.params.max,
        store: store_name.into(),
        verity,
    };
    Manifest::parse(&m.to_toml())?;
    write_signed(outdir, Some(&ib), &m, sk)?;
    Ok(rep)
}
