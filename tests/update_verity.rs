//! `update make --verity`: the hash tree and root hash pristine writes are accepted by the real
//! `veritysetup verify` (cryptsetup-bin), and a flipped data byte makes it fail; a tree made by
//! `veritysetup format` is accepted by pristine's own check at boot.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure
mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{pristine, run_ok as ok, Rng, TempDir};

fn veritysetup() -> Command {
    assert!(
        Command::new("veritysetup")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "veritysetup is required (scripts/setup installs cryptsetup-bin)"
    );
    Command::new("veritysetup")
}

fn manifest_value(out: &Path, key: &str) -> String {
    let text = std::fs::read_to_string(out.join("manifest.toml")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no {key} in {text}"));
    line.split_once(" = ")
        .unwrap()
        .1
        .trim_matches('"')
        .to_string()
}

/// A scratch directory with a minisign key pair `k.key`/`k.pub`, and `blocks` blocks of data.
fn setup(tag: &str, blocks: u64, seed: u64) -> (TempDir, Vec<u8>) {
    let dir = TempDir::new(tag);
    let d = dir.path();
    ok(Command::new("minisign")
        .args(["-G", "-W", "-p"])
        .arg(d.join("k.pub"))
        .arg("-s")
        .arg(d.join("k.key"))
        .stdin(Stdio::null()));
    let mut r = Rng::new(seed);
    let data = (0..blocks * 4096).map(|_| r.next() as u8).collect();
    (dir, data)
}

#[test]
fn veritysetup_verify_accepts_pristine_tree_and_refuses_a_flipped_byte() {
    // 129 data blocks: two level-0 hash blocks, so the tree has two levels.
    let blocks = 129u64;
    let (dir, data) = setup("upd-verity", blocks, 7);
    let d = dir.path();
    std::fs::write(d.join("img"), &data).unwrap();
    ok(pristine()
        .args(["update", "make", "--verity", "--version=2"])
        .arg(format!("--key={}", d.join("k.key").display()))
        .arg(d.join("img"))
        .arg(d.join("out")));
    let root = manifest_value(&d.join("out"), "root-hash");
    let data_size: u64 = manifest_value(&d.join("out"), "data-size").parse().unwrap();
    assert_eq!(data_size, blocks * 4096);
    // The slot image is what the index describes: data, superblock, tree.
    ok(Command::new("casync")
        .args(["extract", "--store"])
        .arg(d.join("out/image.castr"))
        .arg(d.join("out/image.caibx"))
        .arg(d.join("slot.img")));
    let slot = std::fs::read(d.join("slot.img")).unwrap();
    assert_eq!(&slot[..data.len()], &data[..]);
    let image_size: u64 = manifest_value(&d.join("out"), "image-size")
        .parse()
        .unwrap();
    assert_eq!(slot.len() as u64, image_size);
    let verify = |img: &Path| {
        veritysetup()
            .arg("verify")
            .arg(format!("--hash-offset={data_size}"))
            .arg(img)
            .arg(img)
            .arg(&root)
            .output()
            .unwrap()
    };
    let o = verify(&d.join("slot.img"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let dump = ok(veritysetup()
        .arg("dump")
        .arg(format!("--hash-offset={data_size}"))
        .arg(d.join("slot.img")));
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dump.contains(&format!("Data blocks:     \t{blocks}")),
        "{dump}"
    );
    assert!(dump.contains("Hash algorithm:  \tsha256"), "{dump}");
    let mut bad = slot.clone();
    bad[4096 * 100 + 17] ^= 0x01;
    std::fs::write(d.join("bad.img"), &bad).unwrap();
    let o = verify(&d.join("bad.img"));
    assert!(!o.status.success(), "veritysetup accepted a flipped byte");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Verification failed"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn sign_verity_takes_the_root_hash_of_a_veritysetup_tree_in_a_casync_store() {
    let blocks = 300u64;
    let (dir, data) = setup("upd-verity-sign", blocks, 11);
    let d = dir.path();
    let img = d.join("img");
    std::fs::write(&img, &data).unwrap();
    let o = ok(veritysetup()
        .arg("format")
        .arg(format!("--hash-offset={}", data.len()))
        .arg(&img)
        .arg(&img));
    let text = String::from_utf8_lossy(&o.stdout);
    let root = text
        .lines()
        .find_map(|l| l.strip_prefix("Root hash:"))
        .unwrap_or_else(|| panic!("no root hash in: {text}"))
        .trim()
        .to_string();
    ok(Command::new("casync")
        .args(["make", "--store"])
        .arg(d.join("store"))
        .arg(d.join("img.caibx"))
        .arg(&img));
    let sign = |outdir: &str| {
        pristine()
            .args(["update", "sign", "--verity", "--version=2"])
            .arg(format!("--key={}", d.join("k.key").display()))
            .arg(format!("--store={}", d.join("store").display()))
            .arg(d.join("img.caibx"))
            .arg(d.join(outdir))
            .output()
            .unwrap()
    };
    let o = sign("out");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(manifest_value(&d.join("out"), "root-hash"), root);
    assert_eq!(
        manifest_value(&d.join("out"), "data-size"),
        data.len().to_string()
    );
    // Without a tree in the image: refused, nothing signed.
    std::fs::write(&img, &data).unwrap();
    std::fs::remove_dir_all(d.join("store")).unwrap();
    ok(Command::new("casync")
        .args(["make", "--store"])
        .arg(d.join("store"))
        .arg(d.join("img.caibx"))
        .arg(&img));
    let o = sign("out2");
    assert_eq!(o.status.code(), Some(73));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no verity superblock"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!d.join("out2/manifest.toml.minisig").exists());
}
