//! What a replay measured, as a table for people and JSON for machines.

use std::fmt::Write as _;

use serde::Serialize;

use super::limit::Limit;
use super::{Point, SimParams, Trace};
use crate::pipeline::TickReport;

/// The measurements of one set-up over a whole trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub setup: String,
    /// Seconds in which the load exceeded the ready capacity.
    pub overload_seconds: u64,
    /// Seconds in which the load exceeded `sloUtilization` of the ready capacity.
    pub slo_violation_seconds: u64,
    /// Pod-hours paid for, counting pods from creation (starting pods cost too).
    pub pod_hours: f64,
    pub scale_actions: u32,
    pub scale_ups: u32,
    pub scale_downs: u32,
    pub peak_replicas: u32,
    /// Ticks at which the policy gave no usable decision.
    pub failed_decisions: u32,
    /// Ticks at which a predictor failed (the decider then ran without a forecast).
    pub failed_forecasts: u32,
    /// Seconds of load that met no ready pod at all: cold starts of a set-up that idles at zero.
    pub cold_start_seconds: u64,
    /// Pod-hours as a multiple of the clairvoyant limit's (absent for the limit itself, or when it costs nothing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_hours_vs_limit: Option<f64>,
    #[serde(skip)]
    pod_seconds: u64,
}

impl Summary {
    pub(super) fn new(setup: &str) -> Self {
        Summary {
            setup: setup.to_string(),
            overload_seconds: 0,
            slo_violation_seconds: 0,
            pod_hours: 0.0,
            scale_actions: 0,
            scale_ups: 0,
            scale_downs: 0,
            peak_replicas: 0,
            failed_decisions: 0,
            failed_forecasts: 0,
            cold_start_seconds: 0,
            pod_hours_vs_limit: None,
            pod_seconds: 0,
        }
    }

    pub(super) fn record_tick(&mut self, report: &TickReport, failed: bool) {
        if report.scales() {
            self.scale_actions += 1;
            if report.verdict.replicas > report.current_replicas {
                self.scale_ups += 1;
            } else {
                self.scale_downs += 1;
            }
        }
        self.failed_decisions += u32::from(failed);
        self.failed_forecasts += u32::from(report.predictor_error.is_some());
    }

    /// Counts one second; true when it violated the SLO.
    pub(super) fn record_second(
        &mut self,
        load: f64,
        capacity: f64,
        slo_utilization: f64,
        replicas: u32,
    ) -> bool {
        let violated = load > capacity * slo_utilization;
        self.overload_seconds += u64::from(load > capacity);
        self.cold_start_seconds += u64::from(load > 0.0 && capacity <= 0.0);
        self.slo_violation_seconds += u64::from(violated);
        self.pod_seconds += u64::from(replicas);
        self.peak_replicas = self.peak_replicas.max(replicas);
        violated
    }

    pub(super) fn finish(&mut self) {
        // Rounded so the JSON is stable and readable; 0.01 pod-hours is 36 pod-seconds.
        self.pod_hours = (self.pod_seconds as f64 / 36.0).round() / 100.0;
    }
}

/// A set-up's summary and its per-tick time series (for plots).
#[derive(Debug, Clone)]
pub struct SetupResult {
    pub summary: Summary,
    pub series: Vec<Point>,
}

/// The outcome of a comparison run.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub trace: TraceInfo,
    pub params: SimParams,
    pub setups: Vec<Summary>,
    /// What an autoscaler that knew the whole trace would need (see [`super::limit`]).
    pub limit: Summary,
    /// Each set-up's series, in the order of `setups`.
    #[serde(skip)]
    pub series: Vec<Vec<Point>>,
    /// The limit's series.
    #[serde(skip)]
    pub limit_series: Vec<Point>,
}

/// What was replayed.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceInfo {
    pub name: String,
    pub step_seconds: u64,
    pub duration_seconds: u64,
    pub peak_rps: f64,
}

impl Report {
    pub(super) fn new(
        trace: &Trace,
        params: &SimParams,
        results: Vec<SetupResult>,
        limit: Limit,
    ) -> Self {
        let (mut setups, series): (Vec<Summary>, Vec<Vec<Point>>) =
            results.into_iter().map(|r| (r.summary, r.series)).unzip();
        if limit.summary.pod_hours > 0.0 {
            for s in &mut setups {
                let ratio = s.pod_hours / limit.summary.pod_hours;
                s.pod_hours_vs_limit = Some((ratio * 1000.0).round() / 1000.0);
            }
        }
        Report {
            trace: TraceInfo {
                name: trace.name.clone(),
                step_seconds: trace.step_s,
                duration_seconds: trace.duration_s(),
                peak_rps: trace.peak(),
            },
            params: params.clone(),
            setups,
            series,
            limit: limit.summary,
            limit_series: limit.series,
        }
    }

    /// The report as pretty JSON (deterministic: same inputs, same bytes).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }

    /// The report as a table, with each set-up's numbers next to the baseline's.
    pub fn to_table(&self) -> String {
        let p = &self.params;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "trace {} — {:.1} days at {} s steps, peak {:.0} rps",
            self.trace.name,
            self.trace.duration_seconds as f64 / 86_400.0,
            self.trace.step_seconds,
            self.trace.peak_rps
        );
        let _ = writeln!(
            out,
            "target: {:.1} rps per pod, {} s start-up, {}..{} replicas (start {}), tick {} s, SLO utilization {:.0}%\n",
            p.capacity_per_pod,
            p.startup_seconds,
            p.min_replicas,
            p.max_replicas,
            p.initial_replicas,
            p.interval_seconds,
            p.slo_utilization * 100.0
        );
        // Cold starts exist only where a set-up may idle at zero.
        let cold = p.min_replicas == 0;
        let _ = writeln!(
            out,
            "{:<14} {:>12} {:>14} {:>11} {:>7} {:>15} {:>8} {:>8}{}",
            "setup",
            "overload s",
            "SLO-violation s",
            "pod-hours",
            "×limit",
            "actions(↑/↓)",
            "peak",
            "failed",
            if cold { "  cold-start s" } else { "" }
        );
        let base = self.setups.first();
        for s in self.setups.iter().chain([&self.limit]) {
            let vs = |v: f64, b: f64| {
                if base.is_some_and(|b0| b0.setup != s.setup) && b > 0.0 {
                    format!(" ({:.2}×)", v / b)
                } else {
                    String::new()
                }
            };
            let b = base.expect("a report has set-ups");
            let _ = writeln!(
                out,
                "{:<14} {:>12} {:>14} {:>11} {:>7} {:>15} {:>8} {:>8}{}",
                s.setup,
                s.overload_seconds,
                s.slo_violation_seconds,
                format!("{:.1}", s.pod_hours),
                s.pod_hours_vs_limit
                    .map_or_else(|| "—".to_string(), |r| format!("{r:.2}")),
                format!("{} ({}/{})", s.scale_actions, s.scale_ups, s.scale_downs),
                s.peak_replicas,
                s.failed_decisions + s.failed_forecasts,
                if cold {
                    format!("  {:>12}", s.cold_start_seconds)
                } else {
                    String::new()
                }
            );
            let ratios = [
                vs(s.overload_seconds as f64, b.overload_seconds as f64),
                vs(
                    s.slo_violation_seconds as f64,
                    b.slo_violation_seconds as f64,
                ),
                vs(s.pod_hours, b.pod_hours),
            ];
            if ratios.iter().any(|r| !r.is_empty()) {
                let _ = writeln!(
                    out,
                    "{:<14} {:>12} {:>14} {:>11}",
                    "  vs baseline",
                    ratios[0].trim(),
                    ratios[1].trim(),
                    ratios[2].trim()
                );
            }
        }
        out
    }
}
