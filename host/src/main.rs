use clap::Parser;
use wasm_autoscaler::cli::{self, Cli};

fn main() -> anyhow::Result<()> {
    cli::run(Cli::parse())
}
