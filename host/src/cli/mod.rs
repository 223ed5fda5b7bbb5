//! The `wasm-autoscaler` command line: argument parsing and dispatch.
//! Each subcommand lives in its own file and prints its own output.

mod bench;
mod check;
pub mod crd;
mod export;
mod metrics;
mod operator;
mod output;
mod pack;
mod progress;
mod push;
mod registry;
mod simulate;
mod wit;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::runtime::{
    CompileBudget, InstanceMode, Limits, PoolLimits, Runtime, RuntimeConfig, WorkerCommand,
};

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
    /// Pack data (an ONNX model, say) into a component beside its code, e.g.
    /// `pack bundled:onnx --artifact model=forecaster.onnx -o forecaster.wasm`.
    Pack(pack::PackArgs),
    /// Push a policy component to a registry as a Wasm OCI artifact and print its pinned
    /// reference (for a spec's `oci.reference`).
    Push(push::PushArgs),
    /// Print the WasmAutoscaler CustomResourceDefinition (YAML).
    Crd,
    /// Print the WIT contract policies implement (worlds `predictor`, `model-predictor`,
    /// `history-predictor` and `decider`).
    Wit,
    /// Write a bundled policy component to a file, e.g. to put it in a ConfigMap.
    Export(export::ExportArgs),
    /// Fetch each metric of a WasmAutoscaler manifest once and show its value and health
    /// (exit status 1 if any is unavailable).
    Metrics(metrics::MetricsArgs),
    /// Compile a component read on stdin under limits (started by the operator itself).
    #[command(hide = true)]
    CompileWorker(CompileWorkerArgs),
}

/// Arguments of the hidden `compile-worker`.
#[derive(Debug, Args)]
struct CompileWorkerArgs {
    #[arg(long)]
    cpu_seconds: u64,
    #[arg(long)]
    memory_bytes: u64,
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
    /// (entries go to a private `compiled-v1` subfolder; the operator keeps pulled
    /// `oci` artifacts beside them, in `oci-v1`).
    #[arg(long, global = true, env = "WASM_AUTOSCALER_COMPILE_CACHE")]
    compile_cache: Option<PathBuf>,
    /// Most CPU time compiling one component may take (in a child process, all threads), e.g. `60s`.
    #[arg(long, global = true, default_value = "60s", value_parser = humantime::parse_duration)]
    compile_cpu: Duration,
    /// Most memory (address space) the process compiling one component may map, in MiB.
    #[arg(long, global = true, default_value_t = 1024)]
    compile_memory_mib: u64,
    /// Most bytes of code (all function bodies) a component may hold, in MiB; checked before compiling.
    #[arg(long, global = true, default_value_t = 32)]
    compile_max_code_mib: u64,
    /// Most functions a component may hold; checked before compiling.
    #[arg(long, global = true, default_value_t = 100_000)]
    compile_max_functions: u64,
    /// Largest single function a component may hold, in KiB; checked before compiling.
    #[arg(long, global = true, default_value_t = 1024)]
    compile_max_function_kib: u64,
    /// How many components may compile at once (waiting compiles take turns by namespace).
    #[arg(long, global = true, default_value_t = 1)]
    compile_slots: usize,
    /// Most guest memory, in MiB, that idle policy instances kept for reuse may hold; each
    /// serves only the namespace it was made for. 0 makes a fresh instance for every call.
    #[arg(long, global = true, default_value_t = 128)]
    instance_pool_mib: usize,
}

impl SandboxArgs {
    fn runtime(&self, instance_mode: InstanceMode) -> Result<Runtime> {
        let worker = WorkerCommand::this_binary().map_err(|e| {
            anyhow::anyhow!("cannot find this program to compile policies in a child process: {e}")
        })?;
        Ok(Runtime::new(RuntimeConfig {
            deadline: self.policy_deadline,
            limits: Limits {
                memory_bytes: self.policy_memory_mib << 20,
                ..Limits::default()
            },
            instance_mode,
            pool: PoolLimits {
                idle_bytes: self.instance_pool_mib << 20,
                ..PoolLimits::default()
            },
            cache_dir: self.compile_cache.clone(),
            compile_budget: self.compile_budget(),
            compile_worker: Some(worker),
            compile_slots: self.compile_slots,
        })?)
    }

    fn compile_budget(&self) -> CompileBudget {
        CompileBudget {
            max_code_bytes: self.compile_max_code_mib << 20,
            max_functions: self.compile_max_functions,
            max_function_bytes: self.compile_max_function_kib << 10,
            cpu: self.compile_cpu,
            memory_bytes: self.compile_memory_mib << 20,
        }
    }
}

/// Runs the command line; `simulate` with its defaults when no subcommand is given.
pub fn run(cli: Cli) -> Result<()> {
    if let Some(Command::CompileWorker(args)) = &cli.command {
        // Its only output is the artifact on stdout, its errors on stderr.
        std::process::exit(crate::runtime::worker_main(
            args.cpu_seconds,
            args.memory_bytes,
        ));
    }
    init_logging(cli.log_format);
    let command = cli
        .command
        .unwrap_or_else(|| Command::Simulate(simulate::SimulateArgs::defaults()));
    match dispatch(command, &cli.sandbox) {
        Err(e) if output::is_closed(&e) => Ok(()),
        other => other,
    }
}

fn dispatch(command: Command, sandbox: &SandboxArgs) -> Result<()> {
    match command {
        Command::Simulate(args) => simulate::run(args, sandbox),
        Command::Check(args) => check::run(args, sandbox),
        Command::Bench(args) => bench::run(args, sandbox),
        Command::Push(args) => push::run(args, sandbox),
        Command::Pack(args) => pack::run(args, sandbox),
        Command::Run(args) => operator::run(args, sandbox),
        Command::Crd => crd::run(),
        Command::Wit => Ok(wit::run()?),
        Command::Export(args) => export::run(args),
        Command::CompileWorker(_) => unreachable!("handled by `run`"),
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
    use tracing_subscriber::layer::{Layer, SubscriberExt};
    use tracing_subscriber::util::SubscriberInitExt;

    let asked = std::env::var("WASM_AUTOSCALER_LOG").unwrap_or_else(|_| "error".into());
    let output = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let output = match format {
        LogFormat::Text => output.boxed(),
        LogFormat::Json => output.json().boxed(),
    };
    let _ = log_filters(&asked).with(output).try_init();
}

/// What `WASM_AUTOSCALER_LOG` asks for (`error` if it cannot be parsed), narrowed
/// by [`quiet_kube`]: an event is logged only if both let it through.
fn log_filters(
    asked: &str,
) -> impl tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> {
    use tracing_subscriber::layer::SubscriberExt;

    let asked_filter = tracing_subscriber::EnvFilter::try_new(asked)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    tracing_subscriber::registry()
        .with(asked_filter)
        .with(quiet_kube(asked))
}

/// kube's controller opens an `info` span per reconcile, that is per autoscaler
/// and tick (a point of a core at 10,000 autoscalers), naming the object our own
/// `tick` span names already: below `warn` it is left out, unless the filter
/// says something of `kube_runtime` itself. Only ever narrows what was asked.
fn quiet_kube(asked: &str) -> Option<tracing_subscriber::filter::Targets> {
    use tracing_subscriber::filter::{LevelFilter, Targets};

    (!asked.contains("kube_runtime")).then(|| {
        Targets::new()
            .with_default(LevelFilter::TRACE)
            .with_target("kube_runtime::controller", LevelFilter::WARN)
    })
}

#[cfg(test)]
mod tests {
    use super::log_filters;
    use tracing::Level;

    /// Which of (our `info`, kube's controller `info`, kube's controller `warn`) `asked` logs.
    fn logged(asked: &str) -> [bool; 3] {
        tracing::subscriber::with_default(log_filters(asked), || {
            [
                tracing::enabled!(target: "wasm_autoscaler::operator", Level::INFO),
                tracing::enabled!(target: "kube_runtime::controller", Level::INFO),
                tracing::enabled!(target: "kube_runtime::controller", Level::WARN),
            ]
        })
    }

    #[test]
    fn kube_s_per_reconcile_span_is_left_out_unless_asked_for() {
        assert_eq!(logged("info"), [true, false, true]);
        assert_eq!(logged("info,kube_runtime=info"), [true, true, true]);
    }

    #[test]
    fn leaving_kube_out_never_logs_more_than_was_asked() {
        assert_eq!(logged("error"), [false, false, false]);
        assert_eq!(logged("wasm_autoscaler=info"), [true, false, false]);
        // An unparsable filter falls back to errors only.
        assert_eq!(logged("not=a=filter"), [false, false, false]);
    }
}
