//! `pristine update`: interop with the real casync and minisign, HTTP from a real nginx,
//! refusals that must leave everything untouched, resume, slot logic.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure
mod common;
mod update_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use update_support::*;

#[test]
fn pristine_store_matches_casync_and_extracts_with_casync() {
    let env = Env::new("upd-interop-out");
    let img = env.dir.path().join("v1.img");
    std::fs::write(&img, &env.v1).unwrap();
    for (digest, compression, sizes) in [
        ("sha512-256", "zstd", None),
        ("sha256", "xz", Some("4K:16K:64K")),
    ] {
        let out = env.dir.path().join(format!("out-{digest}-{compression}"));
        let mut extra = vec![
            format!("--digest={digest}"),
            format!("--compression={compression}"),
        ];
        let mut cas = casync();
        cas.arg("make").arg(format!("--digest={digest}"));
        if let Some(s) = sizes {
            extra.push(format!("--chunk-size={s}"));
            cas.arg(format!("--chunk-size={s}"));
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        env.make(&img, "1", &out, &extra);
        // Same chunk ids as casync make on the same image and parameters.
        let cidx = env.dir.path().join(format!("casync-{digest}.caibx"));
        ok(cas
            .arg(format!(
                "--store={}",
                env.dir.path().join("cstore").display()
            ))
            .arg(&cidx)
            .arg(&img));
        let ours = index_ids(&out.join("image.caibx"));
        assert!(ours.len() > 10);
        assert_eq!(ours, index_ids(&cidx), "{digest}");
        assert_eq!(
            std::fs::read(out.join("image.caibx")).unwrap(),
            std::fs::read(&cidx).unwrap()
        );
        // casync extracts it bit-identically.
        let x = env.dir.path().join("extracted");
        let _ = std::fs::remove_file(&x);
        ok(casync()
            .arg("extract")
            .arg(format!("--store={}", out.join("image.castr").display()))
            .arg(out.join("image.caibx"))
            .arg(&x));
        assert!(std::fs::read(&x).unwrap() == env.v1);
        // And the real minisign accepts the manifest signature.
        ok(Command::new("minisign")
            .arg("-V")
            .arg("-p")
            .arg(env.root.join("usr/lib/pristine/keys/vendor.pub"))
            .arg("-m")
            .arg(out.join("manifest.toml")));
    }
}

#[test]
fn casync_made_stores_fetch_bit_identical() {
    for (i, (digest, compression)) in [
        ("sha512-256", "zstd"),
        ("sha256", "xz"),
        ("sha512-256", "gzip"),
        ("sha256", "zstd"),
    ]
    .into_iter()
    .enumerate()
    {
        let env = Env::new("upd-interop-in");
        let v2 = changed(&env.v1, 6, 10 + i as u64);
        let img = env.dir.path().join("v2.img");
        std::fs::write(&img, &v2).unwrap();
        let out = env.dir.path().join("pub");
        std::fs::create_dir_all(&out).unwrap();
        ok(casync()
            .arg("make")
            .arg(format!("--digest={digest}"))
            .arg(format!("--compression={compression}"))
            .arg(format!("--store={}", out.join("image.castr").display()))
            .arg(env.dir.path().join("casync.caibx"))
            .arg(&img));
        ok(env
            .pristine()
            .args(["update", "sign", "--version=2"])
            .arg(format!("--key={}", env.key.display()))
            .arg(format!("--store={}", out.join("image.castr").display()))
            .arg(env.dir.path().join("casync.caibx"))
            .arg(&out));
        let c = counters(&env.fetch(out.to_str().unwrap(), &[]));
        assert!(
            std::fs::read(&env.slots[1]).unwrap() == v2,
            "{digest}/{compression}"
        );
        assert_eq!(std::fs::read(&env.slots[0]).unwrap(), env.v1);
        let new_ids = index_ids(&env.dir.path().join("casync.caibx"));
        if digest == "sha512-256" {
            // Seeded from slot A by its stored index: only changed chunks come from the store.
            let old: std::collections::HashSet<_> =
                index_ids(&env.dir.path().join("v1/image.caibx"))
                    .into_iter()
                    .collect();
            let missing: std::collections::HashSet<_> =
                new_ids.iter().filter(|id| !old.contains(*id)).collect();
            assert!(!missing.is_empty());
            assert_eq!(c["fetched_chunks"], missing.len() as u64, "{c}");
            assert!(c["reused_bytes"].as_u64().unwrap() > 3 * MIB as u64, "{c}");
        } else {
            assert_eq!(c["fetched_chunks"], new_ids.len() as u64, "{c}");
        }
        let st = env.status();
        assert_eq!(st["state"]["slots"][1]["status"], "pending");
        assert_eq!(st["state"]["slots"][1]["tries"], 3);
        assert_eq!(st["state"]["slots"][1]["version"], "2");
        assert_eq!(st["active"], 0);
    }
}

#[test]
fn http_fetch_from_nginx_with_resume_after_the_store_went_away() {
    let env = Env::new("upd-http");
    let v2 = changed(&env.v1, 8, 77);
    let out = env.vendor(&v2, "2", "pub");
    let nginx = Nginx::start(env.dir.path(), &out);
    let url = format!("http://127.0.0.1:{}/", nginx.port);

    // Half of the chunks that must come from the store go away.
    let old: std::collections::HashSet<_> = index_ids(&env.dir.path().join("v1/image.caibx"))
        .into_iter()
        .collect();
    let needed: Vec<_> = index_ids(&out.join("image.caibx"))
        .into_iter()
        .filter(|id| !old.contains(id))
        .collect();
    assert!(needed.len() >= 4, "{}", needed.len());
    let gone = env.dir.path().join("gone");
    std::fs::create_dir_all(&gone).unwrap();
    let moved: Vec<_> = needed[needed.len() / 2..].to_vec();
    for id in &moved {
        let h = hex(id);
        std::fs::rename(
            out.join(format!("image.castr/{}/{h}.cacnk", &h[..4])),
            gone.join(&h),
        )
        .unwrap();
    }
    let before = env.snapshot();
    let o = env.fetch(&url, &[]);
    refused(&o, "not found");
    assert!(
        env.snapshot() == before,
        "state, active slot or root changed"
    );

    // The whole server goes away: refused the same way, nothing recorded.
    drop(nginx);
    let o = env.fetch(&url, &[]);
    assert_eq!(o.status.code(), Some(73));
    assert!(
        env.snapshot() == before,
        "state, active slot or root changed"
    );

    // The store comes back (on another port): only what was not yet written is fetched.
    let nginx = Nginx::start(env.dir.path(), &out);
    let url = format!("http://127.0.0.1:{}/", nginx.port);
    for id in &moved {
        let h = hex(id);
        std::fs::rename(
            gone.join(&h),
            out.join(format!("image.castr/{}/{h}.cacnk", &h[..4])),
        )
        .unwrap();
    }
    let c = counters(&env.fetch(&url, &[]));
    assert_eq!(c["fetched_chunks"], moved.len() as u64, "{c}");
    assert!(std::fs::read(&env.slots[1]).unwrap() == v2);
    let log = std::fs::read_to_string(env.dir.path().join("nginx/access.log")).unwrap();
    assert!(log.contains("GET /manifest.toml HTTP/1.1\" 200"), "{log}");
    drop(nginx);
}

/// Rewrites `out`'s index with `f`, fixes the manifest's index digest and re-signs it with the
/// real minisign tool.
fn tamper_index(env: &Env, out: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let ip = out.join("image.caibx");
    let mut b = std::fs::read(&ip).unwrap();
    f(&mut b);
    std::fs::write(&ip, &b).unwrap();
    let digest = {
        let o = ok(Command::new("sha256sum").arg(&ip));
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let mp = out.join("manifest.toml");
    let m = std::fs::read_to_string(&mp).unwrap();
    let m: String = m
        .lines()
        .map(|l| {
            if l.starts_with("index-digest") {
                format!("index-digest = \"sha256:{digest}\"\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&mp, m).unwrap();
    ok(Command::new("minisign")
        .args(["-S", "-s"])
        .arg(&env.key)
        .arg("-m")
        .arg(&mp)
        .stdin(Stdio::null()));
}

#[test]
fn refusals_leave_everything_untouched() {
    let env = Env::new("upd-refuse");
    let v2 = changed(&env.v1, 4, 5);
    let before = env.snapshot();
    let check = |o: std::process::Output, what: &str| {
        refused(&o, what);
        assert!(env.snapshot() == before, "{what}: something changed");
    };

    // Bad signature: the manifest changed after signing.
    let out = env.vendor(&v2, "2", "badsig");
    let mp = out.join("manifest.toml");
    let m = std::fs::read_to_string(&mp)
        .unwrap()
        .replace("\"2\"", "\"3\"");
    std::fs::write(&mp, m).unwrap();
    check(env.fetch(out.to_str().unwrap(), &[]), "bad signature");

    // Unknown key.
    let (_, other) = keypair(env.dir.path(), "other");
    let img = env.dir.path().join("v2.img");
    std::fs::write(&img, &v2).unwrap();
    let out = env.dir.path().join("otherkey");
    ok(env
        .pristine()
        .args(["update", "make", "--version=2"])
        .arg(format!("--key={}", other.display()))
        .arg(&img)
        .arg(&out));
    check(env.fetch(out.to_str().unwrap(), &[]), "unknown key");

    // Older and equal versions.
    let out = env.vendor(&v2, "0.9", "older");
    check(env.fetch(out.to_str().unwrap(), &[]), "not newer");
    let out = env.vendor(&v2, "1", "same");
    check(env.fetch(out.to_str().unwrap(), &[]), "not newer");

    // Index digest not the signed one.
    let out = env.vendor(&v2, "2", "idxdigest");
    let ip = out.join("image.caibx");
    let mut b = std::fs::read(&ip).unwrap();
    b[70] ^= 1;
    std::fs::write(&ip, b).unwrap();
    check(
        env.fetch(out.to_str().unwrap(), &[]),
        "does not match the signed",
    );

    // Truncated index (signed as such).
    let out = env.vendor(&v2, "2", "trunc");
    tamper_index(&env, &out, |b| b.truncate(b.len() - 60));
    check(env.fetch(out.to_str().unwrap(), &[]), "truncated");

    // Absurd maximum chunk size.
    let out = env.vendor(&v2, "2", "absurdmax");
    tamper_index(&env, &out, |b| {
        b[40..48].copy_from_slice(&(1u64 << 40).to_le_bytes())
    });
    check(env.fetch(out.to_str().unwrap(), &[]), "out of range");

    // Offsets going backwards.
    let out = env.vendor(&v2, "2", "offsets");
    tamper_index(&env, &out, |b| {
        b[104..112].copy_from_slice(&1u64.to_le_bytes())
    });
    check(env.fetch(out.to_str().unwrap(), &[]), "not after");

    // A chunk whose content does not match its id; and a decompression bomb in its place.
    let out = env.vendor(&v2, "2", "badchunk");
    let old: std::collections::HashSet<_> = index_ids(&env.dir.path().join("v1/image.caibx"))
        .into_iter()
        .collect();
    let ids = index_ids(&out.join("image.caibx"));
    let (pos, victim) = ids
        .iter()
        .enumerate()
        .rfind(|(_, id)| !old.contains(*id))
        .map(|(i, id)| (i, hex(id)))
        .unwrap();
    let vp = out.join(format!("image.castr/{}/{victim}.cacnk", &victim[..4]));
    let good = std::fs::read(&vp).unwrap();
    // Where the victim chunk lies in the image.
    let b = std::fs::read(out.join("image.caibx")).unwrap();
    let end_of = |i: usize| u64::from_le_bytes(b[64 + i * 40..72 + i * 40].try_into().unwrap());
    let (start, end) = (
        if pos == 0 { 0 } else { end_of(pos - 1) } as usize,
        end_of(pos) as usize,
    );
    // Same size, other content.
    let fake = pristine::update::compress::compress(
        pristine::update::compress::Compression::Zstd,
        &random_image(99, end - start),
    )
    .unwrap();
    std::fs::write(&vp, fake).unwrap();
    check(
        env.fetch(out.to_str().unwrap(), &[]),
        "does not match its chunk id",
    );
    let slot_b = std::fs::read(&env.slots[1]).unwrap();
    assert!(
        slot_b.len() <= start || slot_b[start..end.min(slot_b.len())].iter().all(|&x| x == 0),
        "bad chunk was written"
    );

    let bomb = pristine::update::compress::compress(
        pristine::update::compress::Compression::Zstd,
        &vec![0u8; 8 * MIB],
    )
    .unwrap();
    assert!(bomb.len() < 64 * 1024);
    std::fs::write(&vp, &bomb).unwrap();
    check(
        env.fetch(out.to_str().unwrap(), &[]),
        "decompresses to more than",
    );

    // Put the good chunk back: the same update now goes through, with nothing refetched
    // that was already written.
    std::fs::write(&vp, good).unwrap();
    let c = counters(&env.fetch(out.to_str().unwrap(), &[]));
    assert!(std::fs::read(&env.slots[1]).unwrap() == v2);
    assert!(c["present_bytes"].as_u64().unwrap() > 0, "{c}");
    assert_eq!(c["fetched_chunks"], 1, "{c}");

    // Downgrade on request.
    let env2 = Env::new("upd-downgrade");
    let out = env2.vendor(&v2, "0.9", "older");
    let c = counters(&env2.fetch(out.to_str().unwrap(), &["--allow-downgrade"]));
    assert!(c["fetched_chunks"].as_u64().unwrap() > 0);
}

#[test]
fn never_writes_the_active_slot() {
    let env = Env::new("upd-alias");
    // Slot B names the same file as slot A through a symlink.
    std::fs::remove_file(&env.slots[1]).unwrap();
    std::os::unix::fs::symlink("a.img", &env.slots[1]).unwrap();
    let out = env.vendor(&changed(&env.v1, 3, 9), "2", "pub");
    let before = env.snapshot();
    let o = env.fetch(out.to_str().unwrap(), &[]);
    refused(&o, "is the active slot");
    assert!(env.snapshot() == before);
}

#[test]
fn slot_logic_boot_counting_confirm_rollback() {
    let env = Env::new("upd-slots");
    let v2 = changed(&env.v1, 4, 3);
    let out = env.vendor(&v2, "2", "pub");
    // A dry run plans and writes nothing.
    let before = env.snapshot();
    let plan = counters(&env.fetch(out.to_str().unwrap(), &["--dry-run"]));
    assert!(env.snapshot() == before);
    assert!(std::fs::read(&env.slots[1]).unwrap().is_empty());
    let c = counters(&env.fetch(out.to_str().unwrap(), &[]));
    assert_eq!(plan["fetched_chunks"], c["fetched_chunks"], "{plan} {c}");
    assert_eq!(plan["reused_bytes"], c["reused_bytes"], "{plan} {c}");
    let boot = || {
        let o = ok(env.pristine().args(["update", "boot", "--json"]));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        (v["path"].as_str().unwrap().to_string(), v)
    };
    let b = env.slots[1].display().to_string();
    let a = env.slots[0].display().to_string();
    for left in [2, 1, 0] {
        assert_eq!(boot().0, b);
        assert_eq!(env.status()["state"]["slots"][1]["tries"], left);
    }
    let (p, v) = boot();
    assert_eq!(p, a, "{v}");
    assert!(v["reason"].as_str().unwrap().contains("reverted"), "{v}");
    assert_eq!(env.status()["state"]["slots"][1]["status"], "bad");

    // Fetch again (the bad slot is rewritten), boot it once, confirm: it stays.
    counters(&env.fetch(out.to_str().unwrap(), &[]));
    assert_eq!(boot().0, b);
    ok(env.pristine().args(["update", "confirm"]));
    let st = env.status();
    assert_eq!(st["state"]["slots"][1]["status"], "good");
    for _ in 0..4 {
        assert_eq!(boot().0, b);
    }
    // Rollback returns to version 1.
    ok(env.pristine().args(["update", "rollback"]));
    assert_eq!(boot().0, a);
    assert_eq!(env.status()["state"]["slots"][1]["status"], "bad");
    let o = ok(env.pristine().args(["update", "status"]));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("slot 0:") && text.contains("version 1"),
        "{text}"
    );
}

#[test]
fn seed_files_and_shipped_index() {
    let env = Env::new("upd-seed");
    let v2 = changed(&env.v1, 5, 21);
    let out = env.vendor(&v2, "2", "pub");
    let old: std::collections::HashSet<_> = index_ids(&env.dir.path().join("v1/image.caibx"))
        .into_iter()
        .collect();
    let ids = index_ids(&out.join("image.caibx"));
    let missing = ids.iter().filter(|id| !old.contains(*id)).count() as u64;
    assert!(missing > 0 && missing < ids.len() as u64);
    // Without any index for the active slot, every chunk comes from the source …
    std::fs::remove_file(env.state.join("slot0.caibx")).unwrap();
    let c = counters(&env.fetch(out.to_str().unwrap(), &[]));
    assert_eq!(c["fetched_chunks"], ids.len() as u64, "{c}");
    assert!(std::fs::read(&env.slots[1]).unwrap() == v2);
    // … with a --seed= file (chunked like casync does) only the changed ones.
    ok(env
        .pristine()
        .args(["update", "adopt", "--slot=0", "--version=1"]));
    std::fs::write(&env.slots[1], b"").unwrap();
    let seed = env.dir.path().join("seed.img");
    std::fs::copy(&env.slots[0], &seed).unwrap();
    let c = counters(&env.fetch(
        out.to_str().unwrap(),
        &[&format!("--seed={}", seed.display())],
    ));
    assert_eq!(c["fetched_chunks"], missing, "{c}");
    assert!(std::fs::read(&env.slots[1]).unwrap() == v2);
    // The vendor-shipped index of the running image seeds as well.
    ok(env
        .pristine()
        .args(["update", "adopt", "--slot=0", "--version=1"]));
    std::fs::write(&env.slots[1], b"").unwrap();
    std::fs::create_dir_all(env.root.join("usr/lib/pristine/update")).unwrap();
    std::fs::copy(
        env.dir.path().join("v1/image.caibx"),
        env.root.join("usr/lib/pristine/update/image.caibx"),
    )
    .unwrap();
    let c = counters(&env.fetch(out.to_str().unwrap(), &[]));
    assert_eq!(c["fetched_chunks"], missing, "{c}");
    assert!(std::fs::read(&env.slots[1]).unwrap() == v2);
}

/// A minimal keep-alive HTTP server over `dir` that stops answering (but keeps the connection
/// open) once it has been asked for `stall_after` chunk files. Returns the port and the count.
fn stalling_server(
    dir: PathBuf,
    stall_after: usize,
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let mut r = BufReader::new(s.try_clone().unwrap());
            loop {
                let mut req = String::new();
                if r.read_line(&mut req).unwrap_or(0) == 0 {
                    break;
                }
                let mut h = String::new();
                while r.read_line(&mut h).unwrap_or(0) > 0 && h != "\r\n" {
                    h.clear();
                }
                let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
                if path.ends_with(".cacnk") && c.fetch_add(1, Ordering::SeqCst) + 1 >= stall_after {
                    std::thread::sleep(std::time::Duration::from_secs(60));
                    return;
                }
                match std::fs::read(dir.join(path.trim_start_matches('/'))) {
                    Ok(b) => {
                        let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", b.len());
                        let _ = s.write_all(&b);
                    }
                    Err(_) => {
                        let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
                    }
                }
            }
        }
    });
    (port, count)
}

#[test]
fn killed_fetch_resumes_without_refetching() {
    let env = Env::new("upd-kill");
    let v2 = changed(&env.v1, 8, 31);
    let out = env.vendor(&v2, "2", "pub");
    let old: std::collections::HashSet<_> = index_ids(&env.dir.path().join("v1/image.caibx"))
        .into_iter()
        .collect();
    let needed = index_ids(&out.join("image.caibx"))
        .into_iter()
        .filter(|id| !old.contains(id))
        .collect::<std::collections::HashSet<_>>()
        .len();
    assert!(needed >= 6, "{needed}");
    let stall = needed / 2;
    let (port, count) = stalling_server(out.clone(), stall);
    let before = env.snapshot();
    let mut child = env
        .pristine()
        .args(["update", "fetch", &format!("http://127.0.0.1:{port}/")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while count.load(std::sync::atomic::Ordering::SeqCst) < stall {
        assert!(t0.elapsed().as_secs() < 60, "fetch never reached the stall");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        env.snapshot() == before,
        "a killed fetch changed state, active slot or root"
    );
    // Rerun: only the chunks not yet written come from the source.
    let c = counters(&env.fetch(out.to_str().unwrap(), &[]));
    assert_eq!(c["fetched_chunks"], (needed - (stall - 1)) as u64, "{c}");
    assert!(std::fs::read(&env.slots[1]).unwrap() == v2);
    assert_eq!(env.status()["state"]["slots"][1]["status"], "pending");
}

#[test]
fn encrypted_minisign_key_with_password_from_environment() {
    let env = Env::new("upd-enckey");
    let (p, s) = (
        env.dir.path().join("enc.pub"),
        env.dir.path().join("enc.key"),
    );
    let mut g = Command::new("minisign")
        .args(["-G", "-p"])
        .arg(&p)
        .arg("-s")
        .arg(&s)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        g.stdin
            .take()
            .unwrap()
            .write_all(b"sesame\nsesame\n")
            .unwrap();
    }
    assert!(g.wait().unwrap().success());
    let img = env.dir.path().join("v2.img");
    std::fs::write(&img, changed(&env.v1, 2, 8)).unwrap();
    let make = |pw: &str| {
        env.pristine()
            .args(["update", "make", "--version=2"])
            .arg(format!("--key={}", s.display()))
            .arg(&img)
            .arg(env.dir.path().join("enc-out"))
            .env("PRISTINE_KEY_PASSWORD", pw)
            .output()
            .unwrap()
    };
    let o = make("wrong");
    assert!(!o.status.success());
    assert!(!env
        .dir
        .path()
        .join("enc-out/manifest.toml.minisig")
        .exists());
    let o = make("sesame");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    ok(Command::new("minisign")
        .arg("-V")
        .arg("-p")
        .arg(&p)
        .arg("-m")
        .arg(env.dir.path().join("enc-out/manifest.toml")));
    // The device trusts that key too: the update verifies and installs.
    std::fs::copy(&p, env.root.join("usr/lib/pristine/keys/enc.pub")).unwrap();
    let c = counters(&env.fetch(env.dir.path().join("enc-out").to_str().unwrap(), &[]));
    assert!(c["reused_bytes"].as_u64().unwrap() > 0, "{c}");
}

#[test]
fn repeated_chunks_are_fetched_once() {
    let env = Env::new("upd-dup");
    // 2 MiB of zeros in the middle: eight identical maximum-size chunks.
    let mut v2 = changed(&env.v1, 2, 4);
    for b in &mut v2[MIB..3 * MIB] {
        *b = 0;
    }
    let out = env.vendor(&v2, "2", "pub");
    let ids = index_ids(&out.join("image.caibx"));
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert!(
        ids.len() >= unique.len() + 6,
        "{} {}",
        ids.len(),
        unique.len()
    );
    // No seed at all: a first install.
    std::fs::remove_file(env.state.join("slot0.caibx")).unwrap();
    let c = counters(&env.fetch(out.to_str().unwrap(), &[]));
    assert_eq!(c["fetched_chunks"], unique.len() as u64, "{c}");
    assert!(std::fs::read(&env.slots[1]).unwrap() == v2);
}

#[test]
fn https_from_nginx_verifies_against_the_roots_trust_store_or_a_pinned_ca() {
    let env = Env::new("upd-https");
    let v2 = changed(&env.v1, 8, 55);
    let out = env.vendor(&v2, "2", "pub");
    let (ca, cert, key) = make_ca_and_server_cert(env.dir.path(), "good");
    let (wrong_ca, _, _) = make_ca_and_server_cert(env.dir.path(), "wrong");
    let nginx = Nginx::start_tls(env.dir.path(), &out, &cert, &key);
    let url = format!("https://127.0.0.1:{}/", nginx.port);

    // No trust store in the root: the host's is never used.
    let o = env.fetch(&url, &[]);
    refused(&o, "no trust store for https");
    // The root's trust store holds another CA: the server is not trusted.
    let store = env.root.join("etc/ssl/certs/ca-certificates.crt");
    std::fs::create_dir_all(store.parent().unwrap()).unwrap();
    std::fs::copy(&wrong_ca, &store).unwrap();
    let before = env.snapshot();
    let o = env.fetch(&url, &[]);
    refused(&o, "manifest.toml");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("certificate"), "{err}");
    assert!(
        env.snapshot() == before,
        "a refused https fetch changed something"
    );
    // A pinned CA that is not the server's: refused too, although the store would do.
    std::fs::copy(&ca, &store).unwrap();
    std::fs::copy(&wrong_ca, env.root.join("etc/pinned.pem")).unwrap();
    env.settings("ca-file = \"/etc/pinned.pem\"\n");
    refused(&env.fetch(&url, &[]), "certificate");
    // The root's trust store with the right CA.
    env.settings("");
    let c = counters(&env.fetch(&url, &[]));
    assert!(c["fetched_chunks"].as_u64().unwrap() >= 1, "{c}");
    assert!(std::fs::read(&env.slots[1]).unwrap() == v2);
    let log = std::fs::read_to_string(env.dir.path().join("nginx/access.log")).unwrap();
    assert!(log.contains("GET /manifest.toml HTTP/1.1\" 200"), "{log}");
    drop(nginx);
}
