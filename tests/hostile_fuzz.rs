//! Every crash the fuzz targets (`fuzz/`) found, replayed against the library: each input is
//! checked in under `fuzz/corpus/TARGET/regress-*` (so the CI fuzz run starts from it too) and
//! must now be refused cleanly instead of panicking.

use pristine::update::manifest::{public_key_from_text, verify, SigError, TrustedKey};

/// The public half of the key the fuzz corpus' signatures were made with (`fuzz/src/lib.rs`).
const FUZZ_PUBLIC_KEY: &str = "untrusted comment: minisign public key 128CDD05330B4A36\n\
RWQ2SgszBd2MEp6axTw+EbMZ3T9QUIS1+51Ap+mJDJKgO9Iedq3h7EOc\n";

fn keys() -> Vec<TrustedKey> {
    vec![TrustedKey {
        file: "fuzz.pub".into(),
        key: public_key_from_text(FUZZ_PUBLIC_KEY).expect("fuzz key parses"),
    }]
}

/// `SIGNATURE \0 DATA`, as the minisign target splits its input.
fn split(input: &[u8]) -> (String, &[u8]) {
    let nul = input.iter().position(|&b| b == 0).expect("a NUL");
    (
        String::from_utf8_lossy(&input[..nul]).into_owned(),
        &input[nul + 1..],
    )
}

#[test]
fn a_short_global_signature_is_malformed_not_a_panic() {
    // minisign 0.10 slices the global signature as 64 bytes without checking: a downloaded
    // `manifest.toml.minisig` with a short last line aborted `update fetch` before any check.
    let input = include_bytes!("../fuzz/corpus/minisign/regress-short-global-sig");
    let (sig, data) = split(input);
    match verify(data, &sig, &keys()) {
        Err(SigError::Malformed(m)) => assert!(m.contains("64 bytes"), "{m}"),
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(k) => panic!("accepted by {k}"),
    }
}

#[test]
fn the_good_seed_signature_still_verifies() {
    // The same signature with its real global signature: the length check refuses nothing valid.
    let input = include_bytes!("../fuzz/corpus/minisign/manifest-sig");
    let (sig, data) = split(input);
    assert_eq!(
        verify(data, &sig, &keys()).ok().as_deref(),
        Some("fuzz.pub")
    );
}
