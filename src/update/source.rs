//! Where an update comes from: a local directory or an `http://` URL. Every read is bounded by
//! a caller-given size limit. The HTTP client is a small HTTP/1.1 GET over one kept-alive
//! `TcpStream` (Content-Length or chunked bodies, reconnect once on a dropped connection);
//! no TLS: integrity comes from the signed manifest and the chunk ids, not the transport.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

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

pub enum Source {
    Dir(PathBuf),
    Http(Http),
}

pub struct Http {
    host: String,
    port: u16,
    prefix: String,
    conn: Option<BufReader<TcpStream>>,
}

impl Source {
    pub fn parse(s: &str) -> Result<Source, String> {
        if let Some(rest) = s.strip_prefix("http://") {
            let (hostport, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/"),
            };
            let bracketed = hostport.starts_with('[') && hostport.ends_with(']');
            let (host, port) = match hostport.rsplit_once(':') {
                Some((h, p)) if !bracketed && (!h.contains(':') || h.ends_with(']')) => (
                    h.to_string(),
                    p.parse::<u16>().map_err(|_| format!("bad port in {s}"))?,
                ),
                _ => (hostport.to_string(), 80),
            };
            if host.is_empty() {
                return Err(format!("no host in {s}"));
            }
            let mut prefix = path.to_string();
            if !prefix.ends_with('/') {
                prefix.push('/');
            }
            return Ok(Source::Http(Http {
                host,
                port,
                prefix,
                conn: None,
            }));
        }
        if s.contains("://") {
            return Err(format!(
                "{s}: only directories and http:// URLs are supported"
            ));
        }
        Ok(Source::Dir(PathBuf::from(s)))
    }

    pub fn describe(&self, rel: &str) -> String {
        match self {
            Source::Dir(d) => d.join(rel).display().to_string(),
            Source::Http(h) => format!("http://{}:{}{}{}", h.host, h.port, h.prefix, rel),
        }
    }

    /// Reads `rel` (a relative path) whole, refusing more than `limit` bytes.
    pub fn get(&mut self, rel: &str, limit: u64) -> Result<Vec<u8>, FetchError> {
        let what = self.describe(rel);
        match self {
            Source::Dir(d) => {
                let f = std::fs::File::open(d.join(rel)).map_err(|e| {
                    if e.kind() == io::ErrorKind::NotFound {
                        FetchError::NotFound(what.clone())
                    } else {
                        FetchError::Other(format!("{what}: {e}"))
                    }
                })?;
                let mut buf = Vec::new();
                f.take(limit + 1)
                    .read_to_end(&mut buf)
                    .map_err(|e| FetchError::Other(format!("{what}: {e}")))?;
                if buf.len() as u64 > limit {
                    return Err(FetchError::TooLarge(what));
                }
                Ok(buf)
            }
            Source::Http(h) => {
                let reused = h.conn.is_some();
                match h.get(rel, limit, &what) {
                    Err(FetchError::Other(_)) if reused => {
                        h.conn = None;
                        h.get(rel, limit, &what)
                    }
                    r => r,
                }
            }
        }
    }
}

fn other(what: &str, e: impl std::fmt::Display) -> FetchError {
    FetchError::Other(format!("{what}: {e}"))
}

impl Http {
    fn connect(&mut self, what: &str) -> Result<&mut BufReader<TcpStream>, FetchError> {
        if self.conn.is_none() {
            use std::net::ToSocketAddrs as _;
            let addrs = (self.host.trim_matches(['[', ']']), self.port)
                .to_socket_addrs()
                .map_err(|e| other(what, e))?;
            let mut last = None;
            for a in addrs {
                match TcpStream::connect_timeout(&a, Duration::from_secs(10)) {
                    Ok(s) => {
                        let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
                        let _ = s.set_write_timeout(Some(Duration::from_secs(30)));
                        let _ = s.set_nodelay(true);
                        self.conn = Some(BufReader::with_capacity(64 * 1024, s));
                        break;
                    }
                    Err(e) => last = Some(e),
                }
            }
            if self.conn.is_none() {
                return Err(other(
                    what,
                    last.map(|e| e.to_string())
                        .unwrap_or_else(|| "no address".into()),
                ));
            }
        }
        self.conn
            .as_mut()
            .ok_or_else(|| FetchError::Other(what.into()))
    }

    fn get(&mut self, rel: &str, limit: u64, what: &str) -> Result<Vec<u8>, FetchError> {
        let req = format!(
            "GET {}{} HTTP/1.1\r\nHost: {}\r\nUser-Agent: pristine\r\nAccept-Encoding: identity\r\n\r\n",
            self.prefix, rel, self.host
        );
        let r = (|| {
            let c = self.connect(what)?;
            c.get_mut()
                .write_all(req.as_bytes())
                .map_err(|e| other(what, e))?;
            read_response(c, limit, what)
        })();
        match &r {
            Ok((_, keep)) if *keep => {}
            _ => self.conn = None,
        }
        r.map(|(b, _)| b)
    }
}

fn read_line(c: &mut BufReader<TcpStream>, what: &str) -> Result<String, FetchError> {
    let mut line = Vec::new();
    c.by_ref()
        .take(16 * 1024)
        .read_until(b'\n', &mut line)
        .map_err(|e| other(what, e))?;
    if !line.ends_with(b"\n") {
        return Err(other(what, "connection closed or header line too long"));
    }
    Ok(String::from_utf8_lossy(&line).trim_end().to_string())
}

/// Reads one response; returns the body and whether the connection may be reused.
fn read_response(
    c: &mut BufReader<TcpStream>,
    limit: u64,
    what: &str,
) -> Result<(Vec<u8>, bool), FetchError> {
    let status = read_line(c, what)?;
    let code: u16 = status
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| other(what, format!("bad HTTP status line '{status}'")))?;
    let mut length = None;
    let mut chunked = false;
    let mut keep = !status.starts_with("HTTP/1.0");
    for _ in 0..100 {
        let l = read_line(c, what)?;
        if l.is_empty() {
            break;
        }
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = v.parse::<u64>().ok(),
            "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
            "connection" => keep = !v.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    let body_limit = if code == 200 { limit } else { 64 * 1024 };
    let mut body = Vec::new();
    if chunked {
        loop {
            let l = read_line(c, what)?;
            let n = u64::from_str_radix(l.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| other(what, "bad chunked encoding"))?;
            if n == 0 {
                while !read_line(c, what)?.is_empty() {}
                break;
            }
            if body.len() as u64 + n > body_limit {
                return Err(FetchError::TooLarge(what.into()));
            }
            let start = body.len();
            body.resize(start + n as usize, 0);
            c.read_exact(&mut body[start..])
                .map_err(|e| other(what, e))?;
            read_line(c, what)?;
        }
    } else if let Some(n) = length {
        if n > body_limit {
            return Err(FetchError::TooLarge(what.into()));
        }
        body.resize(n as usize, 0);
        c.read_exact(&mut body).map_err(|e| other(what, e))?;
    } else {
        c.by_ref()
            .take(body_limit + 1)
            .read_to_end(&mut body)
            .map_err(|e| other(what, e))?;
        if body.len() as u64 > body_limit {
            return Err(FetchError::TooLarge(what.into()));
        }
        keep = false;
    }
    match code {
        200 => Ok((body, keep)),
        404 | 410 => Err(FetchError::NotFound(what.into())),
        _ => Err(other(what, format!("HTTP status {code}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_sources() {
        match Source::parse("http://127.0.0.1:8080/upd").unwrap() {
            Source::Http(h) => {
                assert_eq!(h.host, "127.0.0.1");
                assert_eq!(h.port, 8080);
                assert_eq!(h.prefix, "/upd/");
            }
            Source::Dir(_) => panic!(),
        }
        assert!(matches!(Source::parse("/srv/x").unwrap(), Source::Dir(_)));
        assert!(Source::parse("https://x/").is_err());
        assert!(Source::parse("http://:80/").is_err());
        for (url, host, port) in [
            ("http://[::1]:81/x", "[::1]", 81),
            ("http://[::1]/x", "[::1]", 80),
            ("http://example.org/", "example.org", 80),
        ] {
            match Source::parse(url).unwrap() {
                Source::Http(h) => assert_eq!((h.host.as_str(), h.port), (host, port), "{url}"),
                Source::Dir(_) => panic!(),
            }
        }
    }

    /// A one-shot server answering each request with the next canned response.
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
    fn http_bodies_and_errors_on_one_connection() {
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
}
