//! The floor of a run: applies a mutation trace (`PRISTINE_TRACE_MUTATIONS=FILE`, see
//! `pristine::fs::trace`) to a fresh tree with the same calls, in the same order, through the
//! same `pristine::fs::at` functions, and nothing else: no reading of configuration, no
//! deciding. Directories are opened once each (a cache of descriptors), files created by the
//! trace stay open until they are renamed, as in the run that made the trace. Data is written
//! as zeros of the traced length.
//!
//! Usage: replay TRACE [FROM TO] — paths starting with FROM are replayed under TO instead.
//! Prints "N ops, E failed" on stderr; failed calls are counted, not fatal (the run they come
//! from succeeded, so a failure means the tree was not fresh).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Write as _};
use std::os::fd::{AsFd as _, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::process::ExitCode;

use pristine::fs::at;

/// `\xNN` escapes back to bytes.
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') {
            if let Some(v) = s
                .get(i + 2..i + 4)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn split(path: &[u8]) -> (&[u8], &OsStr) {
    match path.iter().rposition(|&c| c == b'/') {
        Some(0) => (b"/", OsStr::from_bytes(&path[1..])),
        Some(i) => (&path[..i], OsStr::from_bytes(&path[i + 1..])),
        None => (b".", OsStr::from_bytes(path)),
    }
}

struct Replay {
    dirs: HashMap<Vec<u8>, File>,
    files: HashMap<Vec<u8>, OwnedFd>,
    zeros: Vec<u8>,
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

fn num(s: Option<&&str>, radix: u32) -> io::Result<u64> {
    s.and_then(|s| u64::from_str_radix(s, radix).ok())
        .ok_or_else(|| bad("bad number"))
}

fn id(s: Option<&&str>) -> io::Result<Option<u32>> {
    match s.map(|s| s.parse::<i64>()) {
        Some(Ok(-1)) => Ok(None),
        Some(Ok(v)) => u32::try_from(v).map(Some).map_err(|_| bad("bad id")),
        _ => Err(bad("bad id")),
    }
}

impl Replay {
    fn dir(&mut self, path: &[u8]) -> io::Result<&File> {
        if !self.dirs.contains_key(path) {
            let f = File::open(OsStr::from_bytes(path))?;
            self.dirs.insert(path.to_vec(), f);
        }
        self.dirs.get(path).ok_or_else(|| bad("dir"))
    }

    /// Forgets cached descriptors at or below `path` (it was renamed or removed).
    fn forget(&mut self, path: &[u8]) {
        self.dirs.retain(|k, _| {
            !(k.starts_with(path) && (k.len() == path.len() || k[path.len()] == b'/'))
        });
    }

    /// The open file at `path`, or the file opened now (read-only is enough for `f*` calls; only
    /// regular files are traced with those).
    fn file(&mut self, path: &[u8]) -> io::Result<&OwnedFd> {
        if !self.files.contains_key(path) {
            let f = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc_flags())
                .open(OsStr::from_bytes(path))?;
            self.files.insert(path.to_vec(), OwnedFd::from(f));
        }
        self.files.get(path).ok_or_else(|| bad("file"))
    }

    fn apply(&mut self, op: &str, path: &[u8], args: &[&str]) -> io::Result<()> {
        let (parent, name) = split(path);
        match op {
            "mkdir" => {
                let mode = num(args.first(), 8)? as u32;
                at::mkdir(self.dir(parent)?, name, mode)
            }
            "symlink" => {
                let target = unescape(args.first().ok_or_else(|| bad("target"))?);
                at::symlink(OsStr::from_bytes(&target), self.dir(parent)?, name)
            }
            "create" => {
                let mode = num(args.first(), 8)? as u32;
                let fd = at::create_new(self.dir(parent)?, name, mode)?;
                self.files.insert(path.to_vec(), fd);
                Ok(())
            }
            "write" => {
                let len = num(args.first(), 10)? as usize;
                if self.zeros.len() < len {
                    self.zeros.resize(len, 0);
                }
                let zeros = std::mem::take(&mut self.zeros);
                let r = File::from(self.file(path)?.try_clone()?).write_all(&zeros[..len]);
                self.zeros = zeros;
                r
            }
            "chmod" if !self.files.contains_key(path) => {
                // As pristine chmods what it did not just create: through an O_PATH descriptor,
                // so a device node is never opened.
                let mode = num(args.first(), 8)? as u32;
                let fd = rustix::fs::open(
                    OsStr::from_bytes(path),
                    rustix::fs::OFlags::PATH
                        | rustix::fs::OFlags::NOFOLLOW
                        | rustix::fs::OFlags::CLOEXEC,
                    rustix::fs::Mode::empty(),
                )?;
                pristine::fs::safe::fchmod_opath(&fd, mode, std::path::Path::new(""))
            }
            "chmod" => {
                let mode = num(args.first(), 8)? as u32;
                at::fchmod(self.file(path)?, mode)
            }
            "chown" | "lchown" if !self.files.contains_key(path) => {
                let (uid, gid) = (id(args.first())?, id(args.get(1))?);
                at::lchown(self.dir(parent)?, name, uid, gid)
            }
            "chown" | "lchown" => {
                let (uid, gid) = (id(args.first())?, id(args.get(1))?);
                at::fchown(self.file(path)?, uid, gid)
            }
            "truncate" => at::truncate(self.file(path)?, num(args.first(), 10)?),
            "setxattr" => {
                let key = unescape(args.first().ok_or_else(|| bad("name"))?);
                let len = num(args.get(1), 10)? as usize;
                let value = vec![b'x'; len];
                at::set_xattr(self.file(path)?, OsStr::from_bytes(&key), &value)
            }
            "fsync" => at::fsync(self.file(path)?),
            "futimens" | "utimes" => Ok(()),
            "unlink" => {
                self.files.remove(path);
                at::unlink(self.dir(parent)?, name)
            }
            "rmdir" => {
                self.forget(path);
                at::rmdir(self.dir(parent)?, name)
            }
            "mknod" => {
                let kind = rustix::fs::FileType::from_raw_mode(num(args.first(), 8)? as u32);
                let mode = num(args.get(1), 8)? as u32;
                let dev = (num(args.get(2), 10)? as u32, num(args.get(3), 10)? as u32);
                at::mknod(self.dir(parent)?, name, kind, mode, dev)
            }
            "rename" | "rename_noreplace" | "exchange" => {
                let to = unescape(args.first().ok_or_else(|| bad("to"))?);
                let (tparent, tname) = split(&to);
                self.files.remove(path);
                self.forget(path);
                self.forget(&to);
                let from_dir = self.dir(parent)?.as_fd().try_clone_to_owned()?;
                let to_dir = self.dir(tparent)?;
                match op {
                    "rename" => at::rename(&from_dir, name, to_dir, tname),
                    "exchange" => at::exchange(&from_dir, name, to_dir, tname),
                    _ => at::rename_noreplace(&from_dir, name, to_dir, tname),
                }
            }
            _ => Err(bad("unknown op")),
        }
    }
}

/// `O_NOFOLLOW | O_NONBLOCK`, as pristine opens what it changes.
fn libc_flags() -> i32 {
    (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(trace) = args.first() else {
        eprintln!("usage: replay TRACE [FROM TO]");
        return ExitCode::from(2);
    };
    let map = match (args.get(1), args.get(2)) {
        (Some(f), Some(t)) => Some((f.as_bytes(), t.as_bytes())),
        _ => None,
    };
    let text = match std::fs::read_to_string(trace) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("replay: {trace}: {e}");
            return ExitCode::from(1);
        }
    };
    // Parsed before the first call: the replay itself only calls.
    let ops: Vec<(&str, Vec<u8>, Vec<&str>)> = text
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let op = f.next()?;
            let mut path = unescape(f.next()?);
            if let Some((from, to)) = map {
                if let Some(rest) = path.strip_prefix(from) {
                    path = [to, rest].concat();
                }
            }
            Some((op, path, f.collect()))
        })
        .collect();
    let mut r = Replay {
        dirs: HashMap::new(),
        files: HashMap::new(),
        zeros: Vec::new(),
    };
    let mut failed = 0;
    for (op, path, args) in &ops {
        if let Err(e) = r.apply(op, path, args) {
            failed += 1;
            if failed <= 5 {
                eprintln!(
                    "replay: {op} {}: {e}",
                    String::from_utf8_lossy(path.as_slice())
                );
            }
        }
    }
    eprintln!("replay: {} ops, {failed} failed", ops.len());
    ExitCode::SUCCESS
}
