//! `wasm-autoscaler export`: write a bundled policy component to a file.

use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use clap::Args;

use crate::bundled;

/// Arguments of `export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The bundled policy: `hpa`, `ewma-trend` or `forecast`.
    name: String,
    /// Where to write the component.
    #[arg(long, short = 'o', value_name = "FILE.wasm")]
    out: PathBuf,
}

pub fn run(args: ExportArgs) -> Result<()> {
    let bytes = bundled::require(&args.name).map_err(|e| anyhow!(e))?;
    std::fs::write(&args.out, bytes).with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "{} ({} bytes, sha256 {}) written to {}",
        args.name,
        bytes.len(),
        crate::runtime::Digest::of(bytes).hex(),
        args.out.display()
    );
    Ok(())
}
