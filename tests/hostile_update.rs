//! Hostile update sources and devices (issue 12, the update classes): each test builds its
//! device and its source from scratch, runs the real binary, and checks that the attack ends in
//! a clear error naming what failed — no panic, no hang, bounded memory, no write to the active
//! slot, no silent acceptance.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure
mod common;
mod update_support;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use update_support::*;

/// Chunk files of `out`'s store that a device holding `env.v1` must fetch.
fn needed_chunks(env: &Env, out: &Path) -> Vec<PathBuf> {
    let old: std::collections::HashSet<_> = index_ids(&env.dir.path().join("v1/image.caibx"))
        .into_iter()
        .collect();
    let mut v: Vec<PathBuf> = index_ids(&out.join("image.caibx"))
        .into_iter()
        .filter(|id| !old.contains(id))
        .map(|id| {
            let h = hex(&id);
            out.join("image.castr")
                .join(&h[..4])
                .join(format!("{h}.cacnk"))
        })
        .collect();
    v.dedup();
    assert!(!v.is_empty());
    v
}

/// Runs `cmd` under `/usr/bin/time`; returns its output and peak RSS in KiB.
fn with_peak_rss(cmd: &mut Command, dir: &Path) -> (std::process::Output, u64) {
    let t = dir.join("time.out");
    let prog = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let o = Command::new("/usr/bin/time")
        .args(["-f", "%M", "-o"])
        .arg(&t)
        .arg(prog)
        .args(args)
        .output()
        .expect("/usr/bin/time is required (scripts/setup installs time)");
    let rss = std::fs::read_to_string(&t)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (o, rss)
}

/// Runs `cmd`, killing it after `limit`; returns its output and how long it ran.
fn bounded(cmd: &mut Command, limit: Duration) -> (std::process::Output, Duration) {
    let t0 = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > limit {
            child.kill().unwrap();
            let o = child.wait_with_output().unwrap();
            panic!(
                "still running after {limit:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (child.wait_with_output().unwrap(), t0.elapsed())
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A server that answers every request with `respond(path, stream)` on its own thread.
fn serve(respond: fn(&str, &mut std::net::TcpStream)) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut req = String::new();
                if r.read_line(&mut req).unwrap_or(0) == 0 {
                    return;
                }
                let mut h = String::new();
                while r.read_line(&mut h).unwrap_or(0) > 0 && h != "\r\n" {
                    h.clear();
                }
                let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
                respond(&path, &mut s);
            });
        }
    });
    port
}

#[test]
fn chunked_body_with_a_wrapping_size_is_an_error_not_a_panic() {
    let env = Env::new("hu-chunked");
    let before = env.snapshot();
    for respond in [
        |_: &str, s: &mut std::net::TcpStream| {
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nab",
            );
        },
        |_: &str, s: &mut std::net::TcpStream| {
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                  2\r\nab\r\nfffffffffffffffe\r\nab",
            );
        },
        |_: &str, s: &mut std::net::TcpStream| {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\n");
        },
    ] {
        let port = serve(respond);
        let url = format!("http://127.0.0.1:{port}/");
        let (o, _) = bounded(
            env.pristine().args(["update", "fetch", &url]),
            Duration::from_secs(60),
        );
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(73), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(err.contains(&format!("{url}manifest.toml")), "{err}");
        assert!(env.snapshot() == before);
    }
}

/// Writes a store in which one needed chunk is a decompression bomb made by `bomb`.
fn bomb_store(env: &Env, name: &str, compression: &str, bomb: &[u8]) -> PathBuf {
    let v2 = changed(&env.v1, 4, 77);
    let img = env.dir.path().join(format!("{name}.img"));
    std::fs::write(&img, &v2).unwrap();
    let out = env.dir.path().join(name);
    env.make(&img, "2", &out, &[&format!("--compression={compression}")]);
    let chunk = needed_chunks(env, &out).remove(0);
    std::fs::write(&chunk, bomb).unwrap();
    out
}

/// CRC-32 (IEEE), for patching an xz block header.
fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xedb8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

const BOMB: usize = 96 << 20;
/// Peak RSS a fetch of a 4 MiB image with 256 KiB chunks must stay under, bomb or not.
const RSS_LIMIT_KIB: u64 = 40 * 1024;

#[test]
fn xz_bombs_are_refused_in_bounded_memory() {
    let env = Env::new("hu-xz");
    let zeros = vec![0u8; BOMB];
    let mut xz = Vec::new();
    let mut enc = xz2::write::XzEncoder::new(&mut xz, 1);
    enc.write_all(&zeros).unwrap();
    enc.finish().unwrap();
    // The same bomb declaring a 1 GiB dictionary: the block header (12 bytes at offset 12:
    // size, flags, LZMA2 filter id, props size, dictionary byte, padding, CRC-32).
    assert_eq!(
        &xz[12..16],
        &[0x02, 0x00, 0x21, 0x01],
        "unexpected xz block header"
    );
    let mut big_dict = xz.clone();
    big_dict[16] = 36; // 2 << (36 / 2 + 11) = 1 GiB
    let crc = crc32(&big_dict[12..20]);
    big_dict[20..24].copy_from_slice(&crc.to_le_bytes());
    for (name, bomb, what) in [
        ("xzbomb", &xz, "decompresses to more than"),
        ("xzdict", &big_dict, "bytes of memory to decode"),
    ] {
        let out = bomb_store(&env, name, "xz", bomb);
        let before = env.snapshot();
        let mut cmd = env.pristine();
        cmd.args(["update", "fetch"]).arg(&out);
        let (o, rss) = with_peak_rss(&mut cmd, env.dir.path());
        refused(&o, what);
        assert!(env.snapshot() == before);
        assert!(rss < RSS_LIMIT_KIB, "{name}: peak RSS {rss} KiB");
    }
}

#[test]
fn zstd_bombs_are_refused_in_bounded_memory() {
    let env = Env::new("hu-zstd");
    let zeros = vec![0u8; BOMB];
    let mut c = zstd::bulk::Compressor::new(19).unwrap();
    c.set_parameter(zstd::zstd_safe::CParameter::WindowLog(27))
        .unwrap();
    let bomb = c.compress(&zeros).unwrap();
    let out = bomb_store(&env, "zbomb", "zstd", &bomb);
    let before = env.snapshot();
    let mut cmd = env.pristine();
    cmd.args(["update", "fetch"]).arg(&out);
    let (o, rss) = with_peak_rss(&mut cmd, env.dir.path());
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(73), "{err}");
    assert!(
        err.contains("decompresses to more than") || err.contains("Frame requires too much memory"),
        "{err}"
    );
    assert!(env.snapshot() == before);
    assert!(rss < RSS_LIMIT_KIB, "peak RSS {rss} KiB");
}

fn mkfifo(p: &Path) {
    let _ = std::fs::remove_file(p);
    ok(Command::new("mkfifo").arg(p));
}

#[test]
fn fifos_in_a_directory_source_never_block() {
    let env = Env::new("hu-fifo");
    // A FIFO as manifest.toml.
    let out = env.vendor(&changed(&env.v1, 4, 9), "2", "pub");
    std::fs::copy(out.join("manifest.toml"), env.dir.path().join("m.toml")).unwrap();
    mkfifo(&out.join("manifest.toml"));
    let (o, _) = bounded(
        env.pristine().args(["update", "fetch"]).arg(&out),
        Duration::from_secs(30),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(73), "{err}");
    assert!(err.contains("manifest.toml: not a regular file"), "{err}");
    // A FIFO as a chunk file.
    std::fs::remove_file(out.join("manifest.toml")).unwrap();
    std::fs::copy(env.dir.path().join("m.toml"), out.join("manifest.toml")).unwrap();
    let chunk = needed_chunks(&env, &out).remove(0);
    mkfifo(&chunk);
    let (o, _) = bounded(
        env.pristine().args(["update", "fetch"]).arg(&out),
        Duration::from_secs(30),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(73), "{err}");
    assert!(err.contains(".cacnk: not a regular file"), "{err}");
    assert!(std::fs::read(&env.slots[0]).unwrap() == env.v1);
}

#[test]
fn trickling_and_stalled_servers_are_cut_off_with_the_url() {
    let env = Env::new("hu-trickle");
    env.settings("timeout-stall = 2\ntimeout-transfer = 4\n");
    let before = env.snapshot();
    // One byte a second, for ever: every read succeeds, only the overall deadline stops it.
    let trickle = serve(|_, s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 60000\r\n\r\n");
        for _ in 0..120 {
            if s.write_all(b"x").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    // Headers, then silence: the stall deadline.
    let stall = serve(|_, s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nab");
        std::thread::sleep(Duration::from_secs(60));
    });
    for (port, min, max) in [(trickle, 3.5, 15.0), (stall, 1.5, 15.0)] {
        let url = format!("http://127.0.0.1:{port}/");
        let (o, took) = bounded(
            env.pristine().args(["update", "fetch", &url]),
            Duration::from_secs(40),
        );
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(73), "{err}");
        assert!(
            err.contains(&format!("{url}manifest.toml: timed out")),
            "{err}"
        );
        assert!(!err.contains("temporarily unavailable"), "{err}");
        let s = took.as_secs_f64();
        assert!(s > min && s < max, "{url}: cut off after {s:.1}s");
        assert!(env.snapshot() == before);
    }
}

#[test]
fn unknown_installed_version_fails_closed() {
    let env = Env::new("hu-unknown");
    // The record of slot A loses its version; os-release has no IMAGE_VERSION=.
    let sp = env.state.join("update.json");
    let mut st: serde_json::Value = serde_json::from_slice(&std::fs::read(&sp).unwrap()).unwrap();
    st["slots"][0]["version"] = serde_json::Value::Null;
    std::fs::write(&sp, serde_json::to_vec(&st).unwrap()).unwrap();
    std::fs::create_dir_all(env.root.join("usr/lib")).unwrap();
    std::fs::write(env.root.join("usr/lib/os-release"), "ID=test\n").unwrap();
    let before = env.snapshot();
    // An old signed image, replayed.
    let out = env.vendor(&changed(&env.v1, 4, 3), "0.1", "old");
    let o = env.fetch(out.to_str().unwrap(), &[]);
    refused(&o, "installed version is unknown");
    assert!(env.snapshot() == before);
    // The documented ways to allow a first install: the flag, or the setting.
    let o = env.fetch(out.to_str().unwrap(), &["--allow-unknown-installed"]);
    assert_eq!(counters(&o)["total_bytes"], env.v1.len() as u64);
    assert_eq!(env.status()["state"]["slots"][1]["version"], "0.1");
    std::fs::write(
        env.root.join("usr/lib/os-release"),
        "ID=test\nIMAGE_VERSION=0.2\n",
    )
    .unwrap();
    let o = env.fetch(out.to_str().unwrap(), &["--allow-unknown-installed"]);
    refused(&o, "not newer than the installed 0.2");
}

#[test]
fn a_slot_swapped_between_check_and_open_is_not_written() {
    let env = Env::new("hu-swap");
    let out = env.vendor(&changed(&env.v1, 4, 21), "2", "pub");
    let pause = env.dir.path().join("pause");
    let mut child = env
        .pristine()
        .env(
            "PRISTINE_TEST_PAUSE",
            format!("slot-open:{}", pause.display()),
        )
        .args(["update", "fetch"])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !pause.with_extension("ready").exists() {
        assert!(
            t0.elapsed().as_secs() < 60,
            "fetch never reached the slot opening"
        );
        assert!(child.try_wait().unwrap().is_none(), "fetch ended early");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Slot B's path now leads to slot A.
    let b = &env.slots[1];
    std::fs::rename(b, b.with_extension("moved")).unwrap();
    std::os::unix::fs::symlink(&env.slots[0], b).unwrap();
    std::fs::write(pause.with_extension("go"), b"").unwrap();
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(73), "{err}");
    assert!(
        err.contains("changed between its check and its opening"),
        "{err}"
    );
    assert!(
        std::fs::read(&env.slots[0]).unwrap() == env.v1,
        "active slot written"
    );
}
