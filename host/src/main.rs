use std::process::ExitCode;

use clap::Parser;
use wasm_autoscaler::cli::{self, Cli};

fn main() -> ExitCode {
    match cli::run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, whatever RUST_BACKTRACE says: the user needs the
            // cause chain, not a backtrace of the CLI.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

// A tick's many small allocations cost glibc's allocator a third of the
// operator's CPU; why jemalloc and how freed pages go back: `operator::memory`.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
