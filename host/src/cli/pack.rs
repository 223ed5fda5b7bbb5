//! `wasm-autoscaler pack`: put data (a model) into a component beside its
//! code, so that one file, and one digest, carries both.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::output::outln;
use super::SandboxArgs;
use crate::boundary::files::read_bounded;
use crate::bundled;
use crate::runtime::{InstanceMode, MAX_COMPONENT_BYTES};

/// Arguments of `pack`.
#[derive(Debug, Args)]
pub struct PackArgs {
    /// The component: a file, or `bundled:NAME` (e.g. `bundled:onnx`).
    component: String,
    /// Data to pack, as `NAME=FILE` (repeat for several); the policy reads it by NAME.
    #[arg(long = "artifact", value_name = "NAME=FILE", required = true)]
    artifacts: Vec<String>,
    /// Where to write the packed component.
    #[arg(short, long, value_name = "FILE")]
    out: PathBuf,
    /// The policy's configuration as JSON, to check the packed component with
    /// (`validate-config`) before it is written.
    #[arg(long)]
    config: Option<String>,
}

pub fn run(args: PackArgs, sandbox: &SandboxArgs) -> Result<()> {
    let mut component = match args.component.strip_prefix("bundled:") {
        Some(name) => bundled::require(name).map_err(anyhow::Error::msg)?.to_vec(),
        None => read_bounded(std::path::Path::new(&args.component), MAX_COMPONENT_BYTES)?,
    };
    for spec in &args.artifacts {
        let Some((name, file)) = spec.split_once('=') else {
            bail!("--artifact `{spec}`: give NAME=FILE");
        };
        let data = read_bounded(std::path::Path::new(file), MAX_COMPONENT_BYTES)
            .with_context(|| format!("--artifact {name}"))?;
        component = crate::runtime::pack(&component, name, &data)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("--artifact {name}"))?;
    }
    if component.len() as u64 > MAX_COMPONENT_BYTES {
        bail!(
            "the packed component is {} bytes, more than a component may be ({MAX_COMPONENT_BYTES})",
            component.len()
        );
    }
    if let Some(config) = &args.config {
        let runtime = sandbox.runtime(InstanceMode::PerCall)?;
        runtime
            .load(&component)
            .and_then(|p| p.instantiate())
            .and_then(|mut i| i.validate_config(config))
            .context("the packed component refuses the configuration")?;
    }
    std::fs::write(&args.out, &component)
        .with_context(|| format!("writing {}", args.out.display()))?;
    outln!(
        "{} ({} bytes, sha256 {}) written to {}",
        args.component,
        component.len(),
        crate::runtime::Digest::of(&component).hex(),
        args.out.display()
    )?;
    Ok(())
}
