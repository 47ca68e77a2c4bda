use std::process::ExitCode;

/// Allocation is on every step of the request path, often freed on another thread than it was
/// allocated on; mimalloc handles that pattern with less contention than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use cosigner_guard::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, cli::Command::Serve(_)) {
        // A command's output piped into `head` ends quietly when the reader goes away, as Unix
        // tools do, instead of panicking on the closed pipe. The server keeps Rust's default
        // (SIGPIPE ignored): a client that goes away must never stop it.
        // SAFETY: restoring a signal's default disposition at start-up, before any thread exists.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
