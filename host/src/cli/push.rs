//! `wasm-autoscaler push`: put a policy component in a registry and print
//! the pinned reference a spec's `oci.reference` takes.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::output::outln;
use super::registry::RegistryArgs;
use super::SandboxArgs;
use crate::boundary::files::read_bounded;
use crate::runtime::{InstanceMode, MAX_COMPONENT_BYTES};

/// Arguments of `push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The component to push.
    file: PathBuf,
    /// Where to: `registry/repository` or `registry/repository:tag`.
    reference: String,
    #[command(flatten)]
    registry: RegistryArgs,
}

pub fn run(args: PushArgs, sandbox: &SandboxArgs) -> Result<()> {
    let shown = args.file.display().to_string();
    let bytes = read_bounded(&args.file, MAX_COMPONENT_BYTES)?;
    // Only a component the operator would load is worth a registry's space.
    let runtime = sandbox.runtime(InstanceMode::PerCall)?;
    let policy = runtime.load(&bytes).with_context(|| shown.clone())?;
    let login = args.registry.login()?;
    let pushed = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(crate::registry::push(
            &bytes,
            &args.reference,
            args.registry.plain_http(),
            login.as_ref(),
        ))
        .with_context(|| format!("pushing {shown} to {}", args.reference))?;
    eprintln!(
        "pushed {shown}: {} component, {} bytes, sha256 {}",
        policy.world(),
        bytes.len(),
        pushed.component_sha256
    );
    outln!("{}", pushed.reference)?;
    Ok(())
}
