//! `wasm-autoscaler check`: is this file a policy component, and does it work?

use anyhow::{Context, Result};
use clap::Args;

use super::output::outln;
use super::registry::RegistryArgs;
use super::SandboxArgs;
use crate::runtime::{synthetic, InstanceMode, Shape, World};

/// Arguments of `check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The component to check: a file, or `oci:REGISTRY/REPOSITORY@sha256:…` pulled from a registry.
    component: String,
    #[command(flatten)]
    registry: RegistryArgs,
    /// The policy's configuration as JSON (as in the autoscaler spec).
    #[arg(long, default_value = "")]
    config: String,
}

pub fn run(args: CheckArgs, sandbox: &SandboxArgs) -> Result<()> {
    let shown = args.component.clone();
    let bytes = args.registry.read_component(&args.component)?;
    let runtime = sandbox.runtime(InstanceMode::PerCall)?;
    let policy = runtime.load(&bytes).with_context(|| shown.clone())?;
    let info = policy.info();
    outln!(
        "{shown}: {} component, {} bytes, {}",
        info.world,
        info.size,
        info.digest
    )?;
    outln!("  imports: {}", info.imports.join(", "))?;
    outln!("  exports: {}", info.exports.join(", "))?;
    // What the compile budget weighs (`--compile-max-*`).
    let shape = Shape::of(&bytes).with_context(|| shown.clone())?;
    outln!(
        "  code: {} module(s), {} functions, {} bytes, the largest {} bytes",
        shape.modules,
        shape.functions,
        shape.code_bytes,
        shape.largest_function
    )?;

    policy
        .instantiate()
        .and_then(|mut i| i.validate_config(&args.config))
        .with_context(|| format!("{shown}: validate-config"))?;
    outln!("  validate-config: ok")?;

    let mut instance = policy.instantiate().with_context(|| shown.clone())?;
    match info.world {
        World::Predictor => {
            let response = instance
                .forecast(&synthetic::forecast_request(240, &args.config))
                .with_context(|| format!("{shown}: smoke call of forecast"))?;
            let points: usize = response.forecasts.iter().map(|f| f.points.len()).sum();
            outln!(
                "  smoke call: forecast returned {} metric(s), {points} point(s)",
                response.forecasts.len()
            )?;
        }
        World::Decider => {
            let decision = instance
                .decide(&synthetic::decide_request(
                    &args.config,
                    synthetic::forecast_of_rps(),
                ))
                .with_context(|| format!("{shown}: smoke call of decide"))?;
            outln!(
                "  smoke call: decide → {} replicas ({})",
                decision.desired_replicas,
                decision.reason
            )?;
        }
    }
    Ok(())
}
