//! The `pristine` binary: see the library for everything.

#![warn(clippy::unwrap_used, clippy::expect_used)]

/// The static musl build's allocator (see Cargo.toml); glibc builds keep glibc's malloc.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    std::process::ExitCode::from(pristine::cli::run(args))
}
