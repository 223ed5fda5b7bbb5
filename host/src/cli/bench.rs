//! `wasm-autoscaler bench`: what one decision of a policy costs.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;

use super::output::{outln, OutputError};
use super::registry::RegistryArgs;
use super::SandboxArgs;
use crate::runtime::{synthetic, Instance, InstanceMode, RuntimeError, World};

/// Arguments of `bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The component to measure: a file, or `oci:REGISTRY/REPOSITORY@sha256:…` pulled from a registry.
    component: String,
    #[command(flatten)]
    registry: RegistryArgs,
    /// The policy's configuration as JSON.
    #[arg(long, default_value = "")]
    config: String,
    /// Calls measured per figure.
    #[arg(long, default_value_t = 2000)]
    iterations: usize,
}

pub fn run(args: BenchArgs, sandbox: &SandboxArgs) -> Result<()> {
    let shown = args.component.clone();
    let bytes = args.registry.read_component(&args.component)?;
    let runtime = sandbox.runtime(InstanceMode::PerCall)?;

    let started = Instant::now();
    let policy = runtime.load(&bytes).with_context(|| shown.clone())?;
    let compile = started.elapsed();
    policy
        .instantiate()
        .and_then(|mut i| i.validate_config(&args.config))
        .with_context(|| {
            format!("{shown}: validate-config (pass the policy's config with --config)")
        })?;

    let call = |i: &mut Instance| call_once(i, policy.world(), &args.config);
    let fresh = measure(args.iterations, || {
        policy.instantiate().and_then(|mut i| call(&mut i))
    })
    .with_context(|| format!("{shown}: call"))?;
    let mut live = policy.instantiate()?;
    let reused =
        measure(args.iterations, || call(&mut live)).with_context(|| format!("{shown}: call"))?;
    let instantiate = measure(args.iterations, || policy.instantiate().map(drop))?;

    outln!(
        "{shown}: {} component, {} bytes",
        policy.world(),
        bytes.len()
    )?;
    outln!(
        "  input: synthetic 240-sample history, {} iterations",
        args.iterations
    )?;
    outln!("  compile:                         {}", fmt(compile))?;
    print_row("decision, fresh instance", &fresh)?;
    print_row("decision, reused instance", &reused)?;
    print_row("instantiation alone", &instantiate)?;
    Ok(())
}

fn call_once(instance: &mut Instance, world: World, config: &str) -> Result<(), RuntimeError> {
    match world {
        World::Predictor => instance
            .forecast(&synthetic::forecast_request(240, config))
            .map(drop),
        World::Decider => instance
            .decide(&synthetic::decide_request(
                config,
                synthetic::forecast_of_rps(),
            ))
            .map(drop),
    }
}

/// Median and p99 of `n` timed runs of `f`, after a short warm-up.
fn measure(
    n: usize,
    mut f: impl FnMut() -> Result<(), RuntimeError>,
) -> Result<[Duration; 2], RuntimeError> {
    for _ in 0..n.min(50) {
        f()?;
    }
    let mut times = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed());
    }
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    Ok([at(0.5), at(0.99)])
}

fn print_row(what: &str, [median, p99]: &[Duration; 2]) -> Result<(), OutputError> {
    outln!(
        "  {what:<31}  median {:>10}   p99 {:>10}",
        fmt(*median),
        fmt(*p99)
    )
}

fn fmt(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.1} µs")
    } else {
        format!("{:.2} ms", us / 1000.0)
    }
}
