//! The `wasm-autoscaler` command line: argument parsing and dispatch.
//! Each subcommand lives in its own file and prints its own output.

mod bench;
mod check;
pub mod crd;
mod export;
mod metrics;
mod operator;
mod simulate;
mod wit;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::runtime::{InstanceMode, Limits, Runtime, RuntimeConfig};

/// Kubernetes autoscaling whose forecasting and scaling decisions are WebAssembly components.
#[derive(Debug, Parser)]
#[command(
    name = "wasm-autoscaler",
    version,
    after_help = "Logs go to stderr; WASM_AUTOSCALER_LOG sets the filter (for example `info`, default `error`)."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(flatten)]
    sandbox: SandboxArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replay a traffic trace through policy set-ups against a simulated target (the default).
    Simulate(simulate::SimulateArgs),
    /// Check that a file is a valid policy component: world, imports, exports, config, one call.
    Check(check::CheckArgs),
    /// Measure what one decision of a policy costs.
    Bench(bench::BenchArgs),
    /// Run the operator: watch WasmAutoscaler objects and scale their targets (needs a cluster).
    Run(operator::RunArgs),
    /// Print the WasmAutoscaler CustomResourceDefinition (YAML).
    Crd,
    /// Print the WIT contract policies implement (worlds `predictor` and `decider`).
    Wit,
    /// Write a bundled policy component to a file, e.g. to put it in a ConfigMap.
    Export(export::ExportArgs),
    /// Fetch each metric of a WasmAutoscaler manifest once and show its value and health
    /// (exit status 1 if any is unavailable).
    Metrics(metrics::MetricsArgs),
}

/// Log output formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Limits of the policy sandbox.
#[derive(Debug, Args)]
struct SandboxArgs {
    /// Longest one policy call may run, e.g. `50ms`.
    #[arg(long, global = true, default_value = "50ms", value_parser = humantime::parse_duration)]
    policy_deadline: Duration,
    /// Most linear memory one policy instance may use, in MiB.
    #[arg(long, global = true, default_value_t = 64)]
    policy_memory_mib: usize,
    /// Folder for compiled policies, so a restart loads them without compiling
    /// (entries go to a private `compiled-v1` subfolder).
    #[arg(long, global = true, env = "WASM_AUTOSCALER_COMPILE_CACHE")]
    compile_cache: Option<PathBuf>,
}

impl SandboxArgs {
    fn runtime(&self, instance_mode: InstanceMode) -> Result<Runtime> {
        Ok(Runtime::new(RuntimeConfig {
            deadline: self.policy_deadline,
            limits: Limits {
                memory_bytes: self.policy_memory_mib << 20,
                ..Limits::default()
            },
            instance_mode,
            cache_dir: self.compile_cache.clone(),
        })?)
    }
}

/// Runs the command line; `simulate` with its defaults when no subcommand is given.
pub fn run(cli: Cli) -> Result<()> {
    init_logging(cli.log_format);
    match cli
        .command
        .unwrap_or_else(|| Command::Simulate(simulate::SimulateArgs::defaults()))
    {
        Command::Simulate(args) => simulate::run(args, &cli.sandbox),
        Command::Check(args) => check::run(args, &cli.sandbox),
        Command::Bench(args) => bench::run(args, &cli.sandbox),
        Command::Run(args) => operator::run(args, &cli.sandbox),
        Command::Crd => crd::run(),
        Command::Wit => {
            wit::run();
            Ok(())
        }
        Command::Export(args) => export::run(args),
        Command::Metrics(args) => {
            if metrics::run(args)? {
                Ok(())
            } else {
                Err(anyhow::anyhow!("some metrics are unavailable"))
            }
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WASM_AUTOSCALER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
