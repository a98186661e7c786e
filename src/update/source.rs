//! Where an update comes from: a local directory (a path or a `file://` URL), or an `http://`
//! or `https://` URL fetched with `ureq` (kept-alive connections, rustls on ring for TLS).
//!
//! Owns every byte that comes in from a source, and bounds it: each read has a caller-given
//! size limit (refused before reading when the size is announced), a directory source opens
//! only regular files (non-blocking, checked with `fstat` on the opened descriptor, so a FIFO
//! never blocks), and an HTTP transfer has a connect timeout, a per-read stall timeout and an
//! overall deadline. `https://` verifies the server against the trust store of the root being
//! updated (or a pinned CA from `[update] ca-file`); `http://` relies on the signed manifest
//! and the chunk ids alone. Never writes anything and never reads the host's environment
//! (no proxy variables, no host trust store under `--root`).

use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::fs::Root;

#[derive(Debug)]
pub enum FetchError {
    NotFound(String),
    TooLarge(String),
    Other(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::NotFound(s) => write!(f, "{s}: not found"),
            FetchError::TooLarge(s) => write!(f, "{s}: larger than allowed"),
            FetchError::Other(s) => f.write_str(s),
        }
    }
}

impl From<FetchError> for Error {
    fn from(e: FetchError) -> Error {
        match e {
            FetchError::NotFound(what) => {
                Error::io("fetch", what, io::Error::from(io::ErrorKind::NotFound))
            }
            FetchError::TooLarge(what) => Error::invalid("fetch", what, "larger than allowed"),
            FetchError::Other(s) => Error::msg("fetch", s),
        }
    }
}

/// The trust store files looked for inside the root, first found wins (Debian/Ubuntu/Arch,
/// Fedora/RHEL, openSUSE, Alpine/others).
pub const TRUST_STORES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];
/// Largest trust store or pinned CA file read.
const TRUST_LIMIT: u64 = 4 << 20;

/// Deadlines of one HTTP transfer (one file: manifest, signature, index or chunk).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadlines {
    pub connect: Duration,
    /// Longest wait for any single read from the server.
    pub stall: Duration,
    /// The whole transfer, from connecting to the last body byte.
    pub transfer: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            connect: Duration::from_secs(10),
            stall: Duration::from_secs(30),
            transfer: Duration::from_secs(300),
        }
    }
}

/// How to reach a source: deadlines, and where `https://` trust comes from.
#[derive(Clone, Debug, Default)]
pub struct Connect {
    pub deadlines: Deadlines,
    /// A pinned CA bundle (PEM), a path inside the root; `None`: the root's trust store.
    pub ca_file: Option<String>,
}

pub enum Source {
    Dir(PathBuf),
    Http(Http),
}

pub struct Http {
    /// `scheme://host[:port]/prefix/`, ending in `/`.
    base: String,
    agent: ureq::Agent,
    /// The whole-transfer deadline, kept across the requests that resume one transfer.
    transfer: Duration,
}

impl Source {
    /// A source without TLS (a directory, `file://` or `http://`).
    pub fn parse(s: &str) -> Result<Source> {
        Source::open(s, None, &Connect::default())
    }

    /// `root` is the root being updated: its trust store verifies `https://` servers.
    pub fn open(s: &str, root: Option<&Root>, conn: &Connect) -> Result<Source> {
        let bad = |why: String| Error::invalid("use source", s, why);
        if let Some(path) = s.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(bad(
                    "a file:// URL needs an absolute path (file:///…)".into()
                ));
            }
            return Ok(Source::Dir(PathBuf::from(path)));
        }
        let tls = s.starts_with("https://");
        let Some(rest) = s
            .strip_prefix("http://")
            .or_else(|| s.strip_prefix("https://"))
        else {
            if s.contains("://") {
                return Err(bad(
                    "only directories, file://, http:// and https:// URLs are supported".into(),
                ));
            }
            return Ok(Source::Dir(PathBuf::from(s)));
        };
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        if host.is_empty() || host.starts_with(':') || host.contains('@') {
            return Err(bad("no host in it".into()));
        }
        if rest.contains(['?', '#']) {
            return Err(bad("a source URL takes no query or fragment".into()));
        }
        let mut base = s.to_string();
        if !base.ends_with('/') {
            base.push('/');
        }
        base.parse::<ureq::http::Uri>()
            .map_err(|e| bad(format!("bad URL: {e}")))?;
        let d = conn.deadlines;
        let mut cfg = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .user_agent("pristine")
            .accept_encoding("identity")
            .timeout_connect(Some(d.connect))
            .timeout_resolve(Some(d.connect))
            .timeout_per_read(Some(d.stall))
            .timeout_per_write(Some(d.stall))
            .timeout_global(Some(d.transfer));
        if tls {
            let root = root.ok_or_else(|| bad("https needs a trust store".into()))?;
            let certs = trust_roots(root, conn.ca_file.as_deref())?;
            cfg = cfg.tls_config(
                ureq::tls::TlsConfig::builder()
                    .provider(ureq::tls::TlsProvider::Rustls)
                    .root_certs(ureq::tls::RootCerts::Specific(Arc::new(certs)))
                    .build(),
            );
        } else {
            cfg = cfg.https_only(false);
        }
        Ok(Source::Http(Http {
            base,
            agent: cfg.build().new_agent(),
            transfer: d.transfer,
        }))
    }

    pub fn describe(&self, rel: &str) -> String {
        match self {
            Source::Dir(d) => d.join(rel).display().to_string(),
            Source::Http(h) => format!("{}{rel}", h.base),
        }
    }

    /// Reads `rel` (a relative path) whole, refusing more than `limit` bytes.
    pub fn get(&mut self, rel: &str, limit: u64) -> Result<Vec<u8>, FetchError> {
        let what = self.describe(rel);
        match self {
            Source::Dir(d) => {
                let fd = rustix::fs::open(
                    d.join(rel),
                    rustix::fs::OFlags::RDONLY
                        | rustix::fs::OFlags::NONBLOCK
                        | rustix::fs::OFlags::NOCTTY
                        | rustix::fs::OFlags::CLOEXEC,
                    rustix::fs::Mode::empty(),
                )
                .map_err(|e| {
                    if e == rustix::io::Errno::NOENT {
                        FetchError::NotFound(what.clone())
                    } else {
                        other(&what, io::Error::from(e))
                    }
                })?;
                read_bounded(fd, limit, &what)
            }
            Source::Http(h) => {
                // A kept-alive connection the server closed meanwhile fails once; retry once.
                match h.get(rel, limit, &what) {
                    Err(FetchError::Other(e)) if e.ends_with(RETRYABLE) => h.get(rel, limit, &what),
                    r => r,
                }
            }
        }
    }
}

const RETRYABLE: &str = "(connection lost)";

fn other(what: &str, e: impl std::fmt::Display) -> FetchError {
    FetchError::Other(format!("{what}: {e}"))
}

/// Reads an opened file whole if it is a regular file of at most `limit` bytes.
fn read_bounded(fd: OwnedFd, limit: u64, what: &str) -> Result<Vec<u8>, FetchError> {
    let st = rustix::fs::fstat(&fd).map_err(|e| other(what, io::Error::from(e)))?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(other(what, "not a regular file, not read"));
    }
    if u64::try_from(st.st_size).unwrap_or(u64::MAX) > limit {
        return Err(FetchError::TooLarge(what.into()));
    }
    let mut buf = Vec::new();
    std::fs::File::from(fd)
        .take(limit.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| other(what, e))?;
    if buf.len() as u64 > limit {
        return Err(FetchError::TooLarge(what.into()));
    }
    Ok(buf)
}

/// The CA certificates `https://` sources are verified against: the pinned `ca_file`, else the
/// first trust store of [`TRUST_STORES`] found in the root. Both are read inside the root.
pub fn trust_roots(
    root: &Root,
    ca_file: Option<&str>,
) -> Result<Vec<ureq::tls::Certificate<'static>>> {
    let pinned = ca_file.map(|f| [f]);
    let candidates: &[&str] = match &pinned {
        Some(p) => p,
        None => TRUST_STORES,
    };
    for f in candidates {
        let p = Path::new(f);
        let what = root.display_path(p).display().to_string();
        let fd = match root.open_path(
            p,
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY,
            rustix::fs::Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound && pinned.is_none() => continue,
            Err(e) => return Err(Error::io("open", &what, e)),
        };
        let pem = read_bounded(fd, TRUST_LIMIT, &what)?;
        let mut certs = Vec::new();
        for item in ureq::tls::parse_pem(&pem) {
            match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
                Ok(_) => {}
                Err(e) => return Err(Error::invalid("parse", &what, e.to_string())),
            }
        }
        if certs.is_empty() {
            return Err(Error::invalid("parse", &what, "no certificates in it"));
        }
        log::debug!(
            "Verifying https sources against {} CAs from {what}.",
            certs.len()
        );
        return Ok(certs);
    }
    Err(Error::invalid(
        "verify https sources for",
        root.host(),
        format!(
            "no trust store for https (looked for {}; or pin a CA with [update] ca-file)",
            TRUST_STORES.join(", ")
        ),
    ))
}

/// Says what an error of the client means, naming the URL.
fn describe_error(what: &str, e: &ureq::Error) -> FetchError {
    match e {
        ureq::Error::Timeout(t) => other(what, format!("timed out ({t} deadline)")),
        ureq::Error::Io(io) => describe_io(what, io),
        e => other(what, e),
    }
}

fn describe_io(what: &str, e: &io::Error) -> FetchError {
    if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<ureq::Error>()) {
        return describe_error(what, inner);
    }
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            other(what, "timed out (per read deadline)")
        }
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::UnexpectedEof => other(what, format!("{e} {RETRYABLE}")),
        _ => other(what, e),
    }
}

/// How many times one transfer is resumed after losing its connection mid-body (each resume
/// must have brought at least one new byte).
const MAX_RESUMES: u32 = 16;

/// The `Content-Range: bytes FIRST-LAST/TOTAL` of a 206 answer, if well-formed.
fn content_range(resp: &ureq::http::Response<ureq::Body>) -> Option<(u64, u64, u64)> {
    let v = resp.headers().get("content-range")?.to_str().ok()?;
    let (range, total) = v.strip_prefix("bytes ")?.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let (first, last, total) = (
        first.parse::<u64>().ok()?,
        last.parse::<u64>().ok()?,
        total.parse::<u64>().ok()?,
    );
    (first <= last && last < total).then_some((first, last, total))
}

impl Http {
    /// One transfer: a GET, and when the connection is lost in the middle of the body, GETs
    /// with `Range: bytes=N-` for the rest. A 206 must continue exactly where the body stopped
    /// (and agree on the total size); a 200 (the server ignores ranges) starts the body over.
    /// The transfer deadline covers all of them together; the limit holds for the whole body.
    fn get(&mut self, rel: &str, limit: u64, what: &str) -> Result<Vec<u8>, FetchError> {
        let url = format!("{}{rel}", self.base);
        let start = std::time::Instant::now();
        let mut body: Vec<u8> = Vec::new();
        // The body's full size when known (Content-Length of the 200, or a 206's total).
        let mut total: Option<u64> = None;
        let mut resumes = 0u32;
        loop {
            let left = self
                .transfer
                .checked_sub(start.elapsed())
                .unwrap_or_default();
            if left.is_zero() {
                return Err(other(what, "timed out (transfer deadline)"));
            }
            let resuming = !body.is_empty();
            let mut req = self.agent.get(&url);
            if resuming {
                req = req.header("Range", format!("bytes={}-", body.len()));
            }
            let mut resp = req
                .config()
                .timeout_global(Some(left))
                .build()
                .call()
                .map_err(|e| describe_error(what, &e))?;
            let code = resp.status().as_u16();
            let announced = resp.body().content_length();
            match code {
                200 => {
                    if resuming {
                        log::debug!("{what}: the server ignores ranges, downloading it again.");
                        body.clear();
                    }
                    total = announced;
                }
                206 if resuming => match content_range(&resp) {
                    Some((first, last, size))
                        if first == body.len() as u64
                            && total.is_none_or(|t| t == size)
                            && announced
                                .is_none_or(|n| Some(n) == (last - first).checked_add(1)) =>
                    {
                        total = Some(size);
                    }
                    _ => {
                        return Err(other(
                            what,
                            format!(
                                "answered the resume from byte {} with a range that does not \
                                 continue the body",
                                body.len()
                            ),
                        ))
                    }
                },
                _ => {
                    // Error bodies are read (bounded) only to keep the connection usable.
                    if announced.is_none_or(|n| n <= 64 * 1024) {
                        let _ = resp
                            .body_mut()
                            .as_reader()
                            .take(64 * 1024)
                            .read_to_end(&mut Vec::new());
                    }
                    return Err(match code {
                        404 | 410 => FetchError::NotFound(what.into()),
                        _ => other(what, format!("HTTP status {code}")),
                    });
                }
            }
            if total.is_some_and(|t| t > limit) {
                return Err(FetchError::TooLarge(what.into()));
            }
            let had = body.len();
            let room = limit.saturating_sub(had as u64).saturating_add(1);
            let read = resp
                .body_mut()
                .as_reader()
                .take(room)
                .read_to_end(&mut body);
            if body.len() as u64 > limit {
                return Err(FetchError::TooLarge(what.into()));
            }
            match read {
                Ok(_) if total.is_none_or(|t| t == body.len() as u64) => return Ok(body),
                Ok(_) => {
                    return Err(other(
                        what,
                        format!(
                            "the body ended after {} of {} bytes",
                            body.len(),
                            total.unwrap_or_default()
                        ),
                    ))
                }
                Err(e) => {
                    let e = describe_io(what, &e);
                    let lost = matches!(&e, FetchError::Other(m) if m.ends_with(RETRYABLE));
                    if !lost || body.len() == had || resumes >= MAX_RESUMES {
                        return Err(e);
                    }
                    resumes += 1;
                    log::debug!("{e}; resuming from byte {}.", body.len());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead as _, BufReader, Write as _};

    fn base(s: &str) -> String {
        match Source::parse(s).unwrap() {
            Source::Http(h) => h.base,
            Source::Dir(d) => format!("dir {}", d.display()),
        }
    }

    #[test]
    fn parse_sources() {
        assert_eq!(
            base("http://127.0.0.1:8080/upd"),
            "http://127.0.0.1:8080/upd/"
        );
        assert_eq!(base("http://[::1]:81/x/"), "http://[::1]:81/x/");
        assert_eq!(base("http://example.org"), "http://example.org/");
        assert_eq!(base("/srv/x"), "dir /srv/x");
        assert_eq!(base("file:///srv/x"), "dir /srv/x");
        assert!(Source::parse("file://srv/x").is_err());
        assert!(Source::parse("ftp://x/").is_err());
        assert!(Source::parse("http://:80/").is_err());
        assert!(Source::parse("http://u@h/").is_err());
        assert!(Source::parse("http://h/?q").is_err());
        // https needs the root's trust store.
        let e = Source::parse("https://x/").err().unwrap().to_string();
        assert!(e.contains("trust store"), "{e}");
    }

    /// A one-connection server answering each request with the next canned response.
    fn serve(responses: Vec<&'static str>) -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            for resp in responses {
                let mut line = String::new();
                while r.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
                    line.clear();
                }
                s.write_all(resp.as_bytes()).unwrap();
            }
        });
        port
    }

    #[test]
    fn http_bodies_and_errors() {
        let port = serve(vec![
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
        ]);
        let mut src = Source::parse(&format!("http://127.0.0.1:{port}/p")).unwrap();
        assert_eq!(src.get("a", 10).unwrap(), b"hello");
        assert_eq!(src.get("b", 10).unwrap(), b"abcde");
        assert!(matches!(src.get("c", 10), Err(FetchError::TooLarge(_))));
        let port = serve(vec![
            "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno",
        ]);
        let mut src = Source::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
        assert!(matches!(src.get("x", 10), Err(FetchError::NotFound(_))));
    }

    #[test]
    fn hostile_chunk_sizes_are_errors() {
        for resp in [
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nab",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nfffffffffffffffd\r\nab",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\nab",
        ] {
            let port = serve(vec![resp]);
            let mut src = Source::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
            assert!(src.get("x", 10).is_err(), "{resp}");
        }
    }

    /// A server answering one request per connection: connection `n` gets `answer(n, range)`
    /// (`range`: the request's `Range:` value) and is closed after it. Counts connections.
    fn serve_each(
        answer: fn(usize, Option<&str>) -> Vec<u8>,
    ) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for (n, s) in l.incoming().enumerate() {
                let Ok(mut s) = s else { return };
                let mut r = BufReader::new(s.try_clone().unwrap());
                let (mut line, mut range) = (String::new(), None);
                while r.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("range:") {
                        range = Some(v.trim().to_string());
                    }
                    line.clear();
                }
                log.lock().unwrap().push(range.clone());
                let _ = s.write_all(&answer(n, range.as_deref()));
            }
        });
        (port, seen)
    }

    const BODY: &[u8] = b"0123456789abcdefghij";

    /// The first answer announces the whole body and is cut after 8 bytes.
    fn cut(n: usize) -> Option<Vec<u8>> {
        (n == 0).then(|| {
            let mut v =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", BODY.len()).into_bytes();
            v.extend_from_slice(&BODY[..8]);
            v
        })
    }

    fn partial(from: usize) -> Vec<u8> {
        let mut v = format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {from}-{}/{}\r\n\
             Content-Length: {}\r\n\r\n",
            BODY.len() - 1,
            BODY.len(),
            BODY.len() - from
        )
        .into_bytes();
        v.extend_from_slice(&BODY[from..]);
        v
    }

    #[test]
    fn a_body_cut_mid_way_resumes_with_a_range_request() {
        // A server that honours ranges: the rest comes with a 206.
        let (port, seen) = serve_each(|n, range| match cut(n) {
            Some(v) => v,
            None if range == Some("bytes=8-") => partial(8),
            None => b"HTTP/1.1 400 Bad\r\nContent-Length: 0\r\n\r\n".to_vec(),
        });
        let mut src = Source::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
        assert_eq!(src.get("x", 100).unwrap(), BODY);
        assert_eq!(*seen.lock().unwrap(), [None, Some("bytes=8-".into())]);

        // One that ignores them: the whole body again (a 200), not appended.
        let (port, seen) = serve_each(|n, _| {
            cut(n).unwrap_or_else(|| {
                let mut v = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", BODY.len())
                    .into_bytes();
                v.extend_from_slice(BODY);
                v
            })
        });
        let mut src = Source::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
        assert_eq!(src.get("x", 100).unwrap(), BODY);
        assert_eq!(seen.lock().unwrap().len(), 2);

        // A 206 that does not continue where the body stopped is an error, nothing spliced.
        let (port, _) = serve_each(|n, _| cut(n).unwrap_or_else(|| partial(5)));
        let mut src = Source::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
        let e = src.get("x", 100).unwrap_err().to_string();
        assert!(e.contains("does not continue the body"), "{e}");

        // A server that cuts every answer short: resumed while bytes come, then given up.
        let (port, seen) = serve_each(|n, _| {
            if n == 0 {
                return cut(0).unwrap();
            }
            let mut v = partial(8);
            v.truncate(v.len() - (BODY.len() - 8));
            v
        });
        let mut src = Source::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
        assert!(src.get("x", 100).is_err());
        assert!(
            seen.lock().unwrap().len() <= 4,
            "{:?}",
            seen.lock().unwrap()
        );
    }
}
