//! The offline replay: a real traffic trace through the same pipeline the
//! operator runs, against a simulated target, several set-ups side by side.

pub mod limit;
mod manifest;
mod plot;
mod report;
pub mod setup;
mod target;
mod trace;

pub use limit::{clairvoyant, Limit};
pub use manifest::{from_manifest, Manifest};
pub use plot::{render_svg, Window};
pub use report::{Report, SetupResult, Summary};
pub use setup::{Setup, SetupError};
pub use target::SimulatedTarget;
pub use trace::{Trace, TraceError};

use serde::Serialize;

use crate::pipeline::{Observation, Pipeline, TargetSpec};
use crate::safety::Proposal;

/// The simulated target and how it is measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SimParams {
    /// Requests per second one pod serves at 100% utilization.
    pub capacity_per_pod: f64,
    /// Seconds from a pod's creation until it serves.
    pub startup_seconds: u64,
    /// Pods at the start of the trace, all ready.
    pub initial_replicas: u32,
    pub min_replicas: u32,
    pub max_replicas: u32,
    /// Seconds between evaluations.
    pub interval_seconds: u64,
    /// Samples of history kept per metric.
    pub history_len: usize,
    /// Utilization of ready capacity above which a second counts as an SLO violation.
    pub slo_utilization: f64,
    /// The wall-clock time of the trace's first second (Unix ms): what `now`
    /// policies see, so a schedule's windows fall where they would.
    pub start_ms: u64,
}

/// The metrics the simulator publishes to policies each tick, besides the
/// trace's own signal columns.
pub const METRICS: [&str; 2] = ["rps", "utilization"];

/// One point of a set-up's time series, taken at every tick.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    pub t_s: u64,
    pub load_rps: f64,
    pub ready_capacity_rps: f64,
    pub replicas: u32,
    /// Seconds from this tick to the next that violated the SLO.
    pub slo_violation_s: u32,
}

/// Told how many ticks a replay has just finished, from any replay thread.
pub type Progress<'a> = &'a (dyn Fn(u64) + Sync);

/// Ticks between two progress reports: often enough for a smooth bar, rare
/// enough to cost nothing.
const PROGRESS_EVERY: u64 = 512;

/// Replays `trace` through one set-up.
pub fn run(trace: &Trace, params: &SimParams, setup: &Setup) -> SetupResult {
    run_with_progress(trace, params, setup, &|_| {})
}

/// [`run`], reporting progress as it goes.
pub fn run_with_progress(
    trace: &Trace,
    params: &SimParams,
    setup: &Setup,
    progress: Progress<'_>,
) -> SetupResult {
    let interval = params.interval_seconds.max(1);
    // Only a set-up that can be woken from zero may go there.
    let min_replicas = if setup.zero.enabled() {
        params.min_replicas
    } else {
        params.min_replicas.max(1)
    };
    let mut pipeline = Pipeline::new(TargetSpec {
        min_replicas,
        max_replicas: params.max_replicas,
        interval_ms: interval * 1000,
        warmup_ms: setup.warmup_seconds.unwrap_or(params.startup_seconds) * 1000,
        history_len: params.history_len,
        long_history: setup.long_history.clone(),
        metrics: setup
            .metric_names
            .iter()
            .cloned()
            .chain(trace.signals.iter().map(|s| s.name.clone()))
            .collect(),
        predictor: setup.predictor.clone(),
        schedule: setup.schedule.clone(),
        decider: setup.decider.clone(),
        behavior: setup.behavior.clone(),
        zero: setup.zero.clone(),
    });
    let initial = params.initial_replicas.max(min_replicas);
    let mut target = SimulatedTarget::new(initial, params.startup_seconds);
    let mut summary = Summary::new(&setup.name);
    let mut series = Vec::new();
    let (mut window_sum, mut window_len) = (0.0, 0u64);
    // The trace's further signals, averaged over each interval like the load.
    let mut signal_sums = vec![0.0; trace.signals.len()];

    for t in 0..trace.duration_s() {
        if t % interval == 0 {
            // Policies see the mean load of the interval that just ended, as a
            // rate over a scrape window would show it; never the future.
            let rps = if window_len > 0 {
                window_sum / window_len as f64
            } else {
                trace.rps_at(0)
            };
            let signals: Vec<(String, Option<f64>)> = trace
                .signals
                .iter()
                .enumerate()
                .map(|(k, s)| {
                    let mean = if window_len > 0 {
                        signal_sums[k] / window_len as f64
                    } else {
                        trace.signal_at(k, 0)
                    };
                    (s.name.clone(), Some(mean))
                })
                .collect();
            signal_sums.iter_mut().for_each(|v| *v = 0.0);
            (window_sum, window_len) = (0.0, 0);
            let ready = target.ready(t);
            let utilization =
                (ready > 0).then(|| rps / (f64::from(ready) * params.capacity_per_pod));
            let obs = Observation {
                now_ms: params.start_ms + t * 1000,
                current_replicas: target.replicas(),
                ready_replicas: ready,
                warming_replicas: target.replicas() - ready,
                metrics: [
                    (setup.metric_names[0].clone(), Some(rps)),
                    (setup.metric_names[1].clone(), utilization),
                ]
                .into_iter()
                .chain(signals)
                .collect(),
            };
            target.set_now(t);
            let report = match pipeline.tick(&obs, &mut target) {
                Ok(r) => r,
                Err(never) => match never {},
            };
            summary.record_tick(&report, matches!(report.proposal, Proposal::Failed(_)));
            if series.len() as u64 % PROGRESS_EVERY == PROGRESS_EVERY - 1 {
                progress(PROGRESS_EVERY);
            }
            series.push(Point {
                t_s: t,
                load_rps: trace.rps_at(t),
                ready_capacity_rps: f64::from(target.ready(t)) * params.capacity_per_pod,
                replicas: target.replicas(),
                slo_violation_s: 0,
            });
        }
        let load = trace.rps_at(t);
        window_sum += load;
        window_len += 1;
        for (k, sum) in signal_sums.iter_mut().enumerate() {
            *sum += trace.signal_at(k, t);
        }
        let capacity = f64::from(target.ready(t)) * params.capacity_per_pod;
        record_second(
            &mut summary,
            &mut series,
            params,
            load,
            capacity,
            target.replicas(),
        );
    }
    summary.finish();
    progress(series.len() as u64 % PROGRESS_EVERY);
    SetupResult { summary, series }
}

/// Counts one second of a replay in its summary, and a violation also in the
/// series' latest point, which the plot shades.
fn record_second(
    summary: &mut Summary,
    series: &mut [Point],
    params: &SimParams,
    load: f64,
    capacity: f64,
    replicas: u32,
) {
    if summary.record_second(load, capacity, params.slo_utilization, replicas) {
        if let Some(p) = series.last_mut() {
            p.slo_violation_s += 1;
        }
    }
}

/// Replays `trace` through every set-up, each on its own thread, beside the
/// clairvoyant limit.
pub fn compare(trace: &Trace, params: &SimParams, setups: &[Setup]) -> Report {
    compare_with_progress(trace, params, setups, &|_| {})
}

/// Ticks one set-up's replay makes: the unit of [`Progress`].
pub fn ticks(trace: &Trace, params: &SimParams) -> u64 {
    trace.duration_s().div_ceil(params.interval_seconds.max(1))
}

/// [`compare`], reporting every set-up's ticks to `progress` as they finish.
pub fn compare_with_progress(
    trace: &Trace,
    params: &SimParams,
    setups: &[Setup],
    progress: Progress<'_>,
) -> Report {
    let (results, limit) = std::thread::scope(|scope| {
        let handles: Vec<_> = setups
            .iter()
            .map(|s| scope.spawn(move || run_with_progress(trace, params, s, progress)))
            .collect();
        let limit = clairvoyant(trace, params);
        let results: Vec<SetupResult> = handles
            .into_iter()
            .map(|h| h.join().expect("a simulation thread panicked"))
            .collect();
        (results, limit)
    });
    Report::new(trace, params, results, limit)
}
