//! Helpers shared by the update integration tests: a device with two slots and a trusted key
//! (`Env`), vendor images, casync, and nginx serving a store over http or https.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::{pristine, Rng, TempDir};

pub const MIB: usize = 1024 * 1024;

pub fn ok(c: &mut Command) -> std::process::Output {
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "{c:?} failed: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    o
}

pub fn casync() -> Command {
    let c = Command::new("casync");
    assert!(
        Command::new("casync")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "casync is required (scripts/setup installs it)"
    );
    c
}

pub fn random_image(seed: u64, len: usize) -> Vec<u8> {
    let mut r = Rng::new(seed);
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        v.extend_from_slice(&r.next().to_le_bytes());
    }
    v.truncate(len);
    v
}

/// `base` with `n` scattered 2 KiB changes.
pub fn changed(base: &[u8], n: usize, seed: u64) -> Vec<u8> {
    let mut v = base.to_vec();
    let mut r = Rng::new(seed);
    for i in 0..n {
        let at = (i * v.len() / n) + r.below((v.len() / n - 4096) as u64) as usize;
        for b in &mut v[at..at + 2048] {
            *b = r.next() as u8;
        }
    }
    v
}

/// Chunk ids of a `.caibx`, in order (read by hand, independently of the crate).
pub fn index_ids(path: &Path) -> Vec<Vec<u8>> {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[8..16], &0x96824d9c7b129ff9u64.to_le_bytes());
    b[64..b.len() - 40]
        .chunks(40)
        .map(|r| r[8..40].to_vec())
        .collect()
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A device: running root with trusted key and settings, slot A holding version 1 (adopted,
/// with its index), slot B empty; a vendor directory with the secret key.
pub type Snapshot = (Vec<u8>, Vec<u8>, Vec<(PathBuf, Vec<u8>)>);

pub struct Env {
    pub dir: TempDir,
    pub root: PathBuf,
    pub slots: [PathBuf; 2],
    pub state: PathBuf,
    pub key: PathBuf,
    pub v1: Vec<u8>,
}

pub fn keypair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (p, s) = (
        dir.join(format!("{name}.pub")),
        dir.join(format!("{name}.key")),
    );
    ok(Command::new("minisign")
        .args(["-G", "-W", "-p"])
        .arg(&p)
        .arg("-s")
        .arg(&s)
        .stdin(Stdio::null()));
    (p, s)
}

impl Env {
    pub fn new(tag: &str) -> Env {
        let dir = TempDir::new(tag);
        let root = dir.path().join("root");
        let keys = root.join("usr/lib/pristine/keys");
        std::fs::create_dir_all(&keys).unwrap();
        let (p, key) = keypair(dir.path(), "vendor");
        std::fs::copy(&p, keys.join("vendor.pub")).unwrap();
        // Slots and state live inside the root: an offline run never touches the host's.
        let slots = [root.join("slots/a.img"), root.join("slots/b.img")];
        let state = root.join("var/lib/pristine/update");
        std::fs::create_dir_all(root.join("slots")).unwrap();
        let v1 = random_image(1, 4 * MIB);
        std::fs::write(&slots[0], &v1).unwrap();
        std::fs::write(&slots[1], b"").unwrap();
        let env = Env {
            dir,
            root,
            slots,
            state,
            key,
            v1,
        };
        env.settings("");
        // Version 1 as the vendor made it; the device adopts slot A with its index.
        let out = env.dir.path().join("v1");
        env.make(&env.slots[0], "1", &out, &[]);
        ok(env
            .pristine()
            .args(["update", "adopt", "--slot=0", "--version=1", "--index"])
            .arg(out.join("image.caibx")));
        env
    }

    /// Writes the root's `pristine.toml`: the slots and state directory, then `extra` lines
    /// of `[update]`.
    pub fn settings(&self, extra: &str) {
        std::fs::write(
            self.root.join("usr/lib/pristine/pristine.toml"),
            format!(
                "[update]\nslots = [\"/slots/a.img\", \"/slots/b.img\"]\n\
                 state-dir = \"/var/lib/pristine/update\"\n{extra}"
            ),
        )
        .unwrap();
    }

    pub fn pristine(&self) -> Command {
        let mut c = pristine();
        c.arg(format!("--root={}", self.root.display()));
        c
    }

    pub fn make(&self, image: &Path, version: &str, out: &Path, extra: &[&str]) {
        ok(self
            .pristine()
            .args(["update", "make", &format!("--version={version}")])
            .arg(format!("--key={}", self.key.display()))
            .args(extra)
            .arg(image)
            .arg(out));
    }

    /// Writes `data` as an image file and makes version `version` of it.
    pub fn vendor(&self, data: &[u8], version: &str, name: &str) -> PathBuf {
        let img = self.dir.path().join(format!("{name}.img"));
        std::fs::write(&img, data).unwrap();
        let out = self.dir.path().join(name);
        self.make(&img, version, &out, &[]);
        out
    }

    pub fn fetch(&self, src: &str, extra: &[&str]) -> std::process::Output {
        self.pristine()
            .args(["update", "fetch", "--json"])
            .args(extra)
            .arg(src)
            .output()
            .unwrap()
    }

    /// Everything a refusal must leave alone.
    pub fn snapshot(&self) -> Snapshot {
        let mut tree = Vec::new();
        walk(&self.root, &mut tree);
        // The target slot is checked by each test on its own.
        tree.retain(|(p, _)| *p != self.slots[1]);
        (
            std::fs::read(&self.slots[0]).unwrap(),
            std::fs::read(self.state.join("update.json")).unwrap(),
            tree,
        )
    }

    pub fn status(&self) -> serde_json::Value {
        let o = ok(self.pristine().args(["update", "status", "--json"]));
        serde_json::from_slice(&o.stdout).unwrap()
    }
}

pub fn walk(p: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    let mut es: Vec<_> = std::fs::read_dir(p)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    es.sort();
    for e in es {
        if e.is_dir() {
            walk(&e, out);
        } else {
            out.push((e.clone(), std::fs::read(&e).unwrap()));
        }
    }
}

pub fn counters(o: &std::process::Output) -> serde_json::Value {
    assert!(
        o.status.success(),
        "fetch failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["counters"].clone()
}

pub fn refused(o: &std::process::Output, what: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(73), "{err}");
    assert!(err.contains(what), "expected '{what}' in: {err}");
}

pub struct Nginx {
    pub child: std::process::Child,
    pub port: u16,
}

impl Nginx {
    pub fn start(dir: &Path, serve: &Path) -> Nginx {
        Nginx::start_with(dir, serve, None)
    }

    /// nginx serving `serve` over https with the certificate and key `tls` (PEM files).
    pub fn start_tls(dir: &Path, serve: &Path, cert: &Path, key: &Path) -> Nginx {
        Nginx::start_with(dir, serve, Some((cert, key)))
    }

    fn start_with(dir: &Path, serve: &Path, tls: Option<(&Path, &Path)>) -> Nginx {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let prefix = dir.join("nginx");
        std::fs::create_dir_all(prefix.join("tmp")).unwrap();
        let p = prefix.display();
        let conf = format!(
            "daemon off; master_process off; pid {p}/nginx.pid; error_log {p}/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{ access_log {p}/access.log; client_body_temp_path {p}/tmp;\n\
               proxy_temp_path {p}/tmp; fastcgi_temp_path {p}/tmp; uwsgi_temp_path {p}/tmp;\n\
               scgi_temp_path {p}/tmp;\n\
               server {{ listen 127.0.0.1:{port}{}; root {}; {} }} }}\n",
            if tls.is_some() { " ssl" } else { "" },
            serve.display(),
            tls.map(|(c, k)| format!(
                "ssl_certificate {}; ssl_certificate_key {};",
                c.display(),
                k.display()
            ))
            .unwrap_or_default()
        );
        std::fs::write(prefix.join("nginx.conf"), conf).unwrap();
        let mut child = Command::new("nginx")
            .arg("-e")
            .arg(prefix.join("error.log"))
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(prefix.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx is required (scripts/setup installs nginx-light)");
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Nginx { child, port };
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "nginx did not start: {}",
            std::fs::read_to_string(prefix.join("error.log")).unwrap_or_default()
        );
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA and a server certificate for `127.0.0.1` and `localhost` signed by it, made with
/// `openssl` in `dir`: returns (ca.pem, server.pem, server.key).
pub fn make_ca_and_server_cert(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let p = |f: &str| dir.join(format!("{name}-{f}"));
    let (ca, cakey, csr, cert, key, ext) = (
        p("ca.pem"),
        p("ca.key"),
        p("server.csr"),
        p("server.pem"),
        p("server.key"),
        p("ext.cnf"),
    );
    let openssl = |args: &[&str]| {
        let mut c = Command::new("openssl");
        c.args(args).stdin(Stdio::null());
        ok(&mut c)
    };
    let s = |p: &PathBuf| p.display().to_string();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
        "-subj",
        &format!("/CN={name} test CA"),
        "-keyout",
        &s(&cakey),
        "-out",
        &s(&ca),
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &s(&key),
        "-out",
        &s(&csr),
    ]);
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         extendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &s(&csr),
        "-CA",
        &s(&ca),
        "-CAkey",
        &s(&cakey),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &s(&ext),
        "-out",
        &s(&cert),
    ]);
    (ca, cert, key)
}
