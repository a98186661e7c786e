//! Builds `src/mem.c` (memcpy, memmove, memcmp, bcmp) into the x86_64 musl build (the release
//! binary `scripts/build-static` makes), where it replaces musl's slower versions of those
//! routines; see the file's comment. glibc builds keep glibc's.

fn main() {
    println!("cargo:rerun-if-changed=src/mem.c");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    if var("CARGO_CFG_TARGET_ENV") == "musl" && var("CARGO_CFG_TARGET_ARCH") == "x86_64" {
        cc::Build::new()
            .file("src/mem.c")
            .opt_level(2)
            .flag("-fno-builtin")
            .flag("-fno-tree-loop-distribute-patterns")
            .compile("pristine_mem");
    }
}
