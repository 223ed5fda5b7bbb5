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
