//! The `pristine` binary: see the library for everything.

#![warn(clippy::unwrap_used, clippy::expect_used)]

fn main() -> std::process::ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    std::process::ExitCode::from(pristine::cli::run(args))
}
