//! `wasm-autoscaler simulate`: replay a trace through several set-ups.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::output::{out, outln};
use super::registry::{RegistryArgs, OCI_PREFIX};
use super::{progress, SandboxArgs};
use crate::bundled;
use crate::runtime::InstanceMode;
use crate::sim::{self, setup, SimParams, Trace};

/// Arguments of `simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Trace CSV (`t_seconds,rps`, then optionally more signal columns such as `cpu`, which
    /// policies see as metrics of those names); the bundled World Cup 1998 week when absent.
    #[arg(long)]
    trace: Option<PathBuf>,
    /// JSON file of set-ups to compare; the bundled set-ups when absent. The HPA baseline is always included.
    #[arg(long, conflicts_with = "file")]
    setups: Option<PathBuf>,
    /// A WasmAutoscaler manifest (YAML) to replay beside the HPA baseline: its policies, config,
    /// behavior, bounds, interval and warm-up. Repeat to add files holding the ConfigMaps its
    /// `configMapRef` policies come from.
    #[arg(long, short = 'f', value_name = "AUTOSCALER.yaml")]
    file: Vec<PathBuf>,
    /// With --file: a folder `file` policy sources may be read from (repeat for several); the
    /// manifest's folder when none is given. Paths outside, devices and FIFOs are refused.
    #[arg(long = "allow-file-root", value_name = "DIR", requires = "file")]
    file_roots: Vec<PathBuf>,
    /// With --file: feed the simulated `rps` or `utilization` to a metric of another name, e.g. `requests=rps`.
    #[arg(long = "metric", value_name = "NAME=rps|utilization", value_parser = parse_alias, requires = "file")]
    metric_aliases: Vec<(String, String)>,
    /// Requests per second one pod serves, rounded to 0.001; by default the trace's peak / 40.
    #[arg(long)]
    capacity: Option<f64>,
    /// Seconds from pod creation until it serves.
    #[arg(long, default_value_t = 60)]
    startup: u64,
    /// Seconds between evaluations.
    #[arg(long, default_value_t = 15)]
    interval: u64,
    /// Pods at the start; by default enough for the first load at 70% utilization.
    #[arg(long)]
    initial_replicas: Option<u32>,
    /// Fewest replicas the autoscaler may run.
    #[arg(long, default_value_t = 1)]
    min_replicas: u32,
    /// Most replicas the autoscaler may run.
    #[arg(long, default_value_t = 100)]
    max_replicas: u32,
    /// Samples of history kept per metric.
    #[arg(long, default_value_t = 240)]
    history: usize,
    /// Utilization of ready capacity above which a second violates the SLO.
    #[arg(long, default_value_t = 0.8)]
    slo_utilization: f64,
    /// Wall-clock time of the trace's first second (RFC 3339), which policies see as `now`
    /// (a schedule's windows fall by it).
    #[arg(long, default_value = "1970-01-01T00:00:00Z", value_parser = parse_start)]
    start: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Also draw load, ready capacity (each set-up's and the clairvoyant limit's) and replicas
    /// over time to this SVG file, SLO violations shaded, with a zoom on one episode.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// With --plot: the zoom's span in hours from the trace's start, e.g. `30..34.5`; by
    /// default the span (a twelfth of the trace, 1 to 6 hours) with the most SLO violations.
    #[arg(long, value_name = "FROM..TO", value_parser = parse_window, requires = "plot")]
    plot_window: Option<sim::Window>,
    /// How `oci:` policies (in --setups or a manifest's `oci` sources) are pulled; a
    /// manifest's `pullSecret` is not read offline.
    #[command(flatten)]
    registry: RegistryArgs,
}

impl SimulateArgs {
    /// The arguments of a bare `simulate`, with every default as `--help` shows it.
    pub fn defaults() -> Self {
        #[derive(clap::Parser)]
        struct Bare {
            #[command(flatten)]
            args: SimulateArgs,
        }
        <Bare as clap::Parser>::parse_from(["simulate"]).args
    }
}

pub fn run(args: SimulateArgs, sandbox: &SandboxArgs) -> Result<()> {
    let trace = match &args.trace {
        Some(path) => Trace::from_file(path)?,
        None => Trace::parse(bundled::TRACE_NAME, bundled::TRACE).context("the bundled trace")?,
    };
    let runtime = sandbox.runtime(InstanceMode::PerTarget)?;
    let pull = |reference: &str| {
        args.registry
            .read_component(&format!("{OCI_PREFIX}{reference}"))
            .map_err(|e| format!("{e:#}"))
    };
    let (params, setups) = match args.file.clone() {
        files if !files.is_empty() => {
            let aliases = args.metric_aliases.iter().cloned().collect();
            let manifest = sim::from_manifest(&runtime, &files, &aliases, &args.file_roots, &pull)?;
            let bounded = SimulateArgs {
                min_replicas: manifest.min_replicas,
                max_replicas: manifest.max_replicas,
                interval: manifest.interval_seconds,
                history: manifest.history,
                ..args
            };
            let params = params(&bounded, &trace)?;
            let mut setups = setup::bundled(&runtime, &params)?;
            setups.truncate(1);
            setups.push(manifest.setup);
            return report(&bounded, &trace, &params, &setups);
        }
        _ => {
            let params = params(&args, &trace)?;
            let setups = match &args.setups {
                Some(path) => setup::from_file(&runtime, &params, path, &pull)?,
                None => setup::bundled(&runtime, &params)?,
            };
            (params, setups)
        }
    };
    report(&args, &trace, &params, &setups)
}

fn parse_start(text: &str) -> Result<u64, String> {
    let t: k8s_openapi::jiff::Timestamp = text
        .parse()
        .map_err(|e| format!("`{text}` is not an RFC 3339 time like 2026-06-15T00:00:00Z: {e}"))?;
    u64::try_from(t.as_millisecond()).map_err(|_| format!("`{text}` is before 1970"))
}

fn parse_window(text: &str) -> Result<sim::Window, String> {
    let bad = || format!("expected FROM..TO in hours, like 30..34.5, got `{text}`");
    let (from, to) = text.split_once("..").ok_or_else(bad)?;
    let hours = |h: &str| -> Result<u64, String> {
        let h: f64 = h.trim().parse().map_err(|_| bad())?;
        if !(h.is_finite() && h >= 0.0) {
            return Err(bad());
        }
        Ok((h * 3600.0).round() as u64)
    };
    let (from_s, to_s) = (hours(from)?, hours(to)?);
    if to_s <= from_s {
        return Err(format!("--plot-window: `{text}` ends before it begins"));
    }
    Ok(sim::Window { from_s, to_s })
}

fn parse_alias(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, sim)) if !name.is_empty() && sim::METRICS.contains(&sim) => {
            Ok((name.to_string(), sim.to_string()))
        }
        _ => Err(format!(
            "expected NAME=rps or NAME=utilization, got `{text}`"
        )),
    }
}

fn report(
    args: &SimulateArgs,
    trace: &Trace,
    params: &SimParams,
    setups: &[setup::Setup],
) -> Result<()> {
    if let Some(w) = args.plot_window {
        if w.to_s > trace.duration_s() {
            bail!(
                "--plot-window ends after the trace, which lasts {:.2} hours",
                trace.duration_s() as f64 / 3600.0
            );
        }
    }
    let bar = progress::Bar::new(sim::ticks(trace, params) * setups.len() as u64, !args.json);
    let report = sim::compare_with_progress(trace, params, setups, &|n| bar.advance(n));
    bar.finish();
    if let Some(path) = &args.plot {
        std::fs::write(path, sim::render_svg(&report, args.plot_window))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        outln!("{}", report.to_json())?;
    } else {
        out!("{}", report.to_table())?;
        if let Some(path) = &args.plot {
            outln!("\nplot written to {}", path.display())?;
        }
    }
    Ok(())
}

fn params(args: &SimulateArgs, trace: &Trace) -> Result<SimParams> {
    let capacity = args
        .capacity
        .unwrap_or_else(|| (trace.peak() / 40.0).max(0.01));
    if !(capacity.is_finite() && capacity > 0.0) {
        bail!("--capacity must be a positive number of requests per second, got {capacity}");
    }
    if args.min_replicas > args.max_replicas {
        bail!(
            "--min-replicas ({}) is above --max-replicas ({})",
            args.min_replicas,
            args.max_replicas
        );
    }
    if !(args.slo_utilization > 0.0 && args.slo_utilization <= 1.0) {
        bail!(
            "--slo-utilization must be in (0, 1], got {}",
            args.slo_utilization
        );
    }
    if args.interval == 0 {
        bail!("--interval must be at least 1 second");
    }
    let initial = args
        .initial_replicas
        .unwrap_or_else(|| (trace.rps_at(0) / (capacity * 0.7)).ceil() as u32)
        .clamp(args.min_replicas, args.max_replicas);
    Ok(SimParams {
        capacity_per_pod: (capacity * 1000.0).round() / 1000.0,
        startup_seconds: args.startup,
        initial_replicas: initial,
        min_replicas: args.min_replicas,
        max_replicas: args.max_replicas,
        interval_seconds: args.interval,
        history_len: args.history.max(2),
        slo_utilization: args.slo_utilization,
        start_ms: args.start,
    })
}
