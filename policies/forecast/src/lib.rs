//! `forecast` — a decider that sizes the target for the highest load it
//! expects within the forecast horizon (or the current load, if higher),
//! at a target utilization per pod plus optional headroom.
//!
//! With no predictor it sizes for the current load, which makes it a plain
//! proportional autoscaler on a throughput metric. Two optional guards keep
//! their memory in the policy's `state`: an anomaly guard (EWMA + Z-score)
//! that neither chases a lone outlier nor scales down on one, and a
//! scale-down dwell.

mod dwell;
mod guard;
mod memory;

pub use guard::AnomalyConfig;

use dwell::Step;
use guard::Verdict;
use memory::Memory;
use serde::Deserialize;
use wasm_autoscaler_guest::{export_decider, forecast, metric, DecideRequest, Decider, Decision};

/// The longest scale-down dwell: a day.
const MAX_DWELL_SECONDS: f64 = 86_400.0;

/// Configuration of the `forecast` decider.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// The load metric, in the same unit as `capacityPerPod` (for example `rps`).
    #[serde(default = "default_metric")]
    pub metric: String,
    /// How much load one pod serves at 100% utilization.
    pub capacity_per_pod: f64,
    /// The utilization each pod should run at, in (0, 1].
    #[serde(default = "default_target_utilization")]
    pub target_utilization: f64,
    /// Extra capacity on top, as a fraction (0.1 = 10% more pods' worth).
    #[serde(default)]
    pub headroom: f64,
    /// Scale down only when the sized count is more than this fraction below
    /// the current one, so small dips do not cause a change every tick.
    #[serde(default = "default_down_tolerance")]
    pub scale_down_tolerance: f64,
    /// Size scale-downs at this lower utilization, in (0, `targetUtilization`]:
    /// a hysteresis band, so a count just sized down is not sized up again by
    /// the next small rise. Scale-ups use `targetUtilization`.
    #[serde(default)]
    pub scale_down_utilization: Option<f64>,
    /// Size for the current value too (the default), or, when false, for the
    /// forecast alone whenever there is one: for a predictor that decides
    /// what a spike in the current value means (such as `adaptive`'s guard).
    #[serde(default = "default_use_current")]
    pub use_current: bool,
    /// Watch the metric for anomalies: a lone outlier is neither chased nor
    /// a reason to scale down, a sustained run of them is followed at once.
    #[serde(default)]
    pub anomaly: Option<AnomalyConfig>,
    /// Scale down only after every decision for this many seconds wanted
    /// fewer pods, and then to the most any of them wanted (0: at once).
    #[serde(default)]
    pub scale_down_dwell_seconds: f64,
}

fn default_use_current() -> bool {
    true
}

fn default_down_tolerance() -> f64 {
    0.1
}

fn default_metric() -> String {
    "rps".to_string()
}

fn default_target_utilization() -> f64 {
    0.7
}

/// The forecast-sizing decider.
pub struct ForecastSizing;

impl Decider for ForecastSizing {
    type Config = Config;

    fn validate(config: &Config) -> Result<(), String> {
        if !(config.capacity_per_pod.is_finite() && config.capacity_per_pod > 0.0) {
            return Err(format!(
                "`capacityPerPod` must be a positive number, got {}",
                config.capacity_per_pod
            ));
        }
        if !(config.target_utilization > 0.0 && config.target_utilization <= 1.0) {
            return Err(format!(
                "`targetUtilization` must be in (0, 1], got {}",
                config.target_utilization
            ));
        }
        if !(config.headroom.is_finite() && config.headroom >= 0.0) {
            return Err(format!("`headroom` must be ≥ 0, got {}", config.headroom));
        }
        if let Some(down) = config.scale_down_utilization {
            if !(down > 0.0 && down <= config.target_utilization) {
                return Err(format!(
                    "`scaleDownUtilization` must be in (0, targetUtilization = {}], got {down}",
                    config.target_utilization
                ));
            }
        }
        if !(0.0..1.0).contains(&config.scale_down_tolerance) {
            return Err(format!(
                "`scaleDownTolerance` must be in [0, 1), got {}",
                config.scale_down_tolerance
            ));
        }
        if !(0.0..=MAX_DWELL_SECONDS).contains(&config.scale_down_dwell_seconds) {
            return Err(format!(
                "`scaleDownDwellSeconds` must be in [0, {MAX_DWELL_SECONDS}], got {}",
                config.scale_down_dwell_seconds
            ));
        }
        if let Some(anomaly) = &config.anomaly {
            anomaly.validate()?;
        }
        Ok(())
    }

    fn decide(config: &Config, request: &DecideRequest) -> Result<Decision, String> {
        let keeps_state = config.anomaly.is_some() || config.scale_down_dwell_seconds > 0.0;
        let mut memory = Memory::decode(request.state.as_deref());
        let observed = metric(request, &config.metric)?;
        let verdict = config
            .anomaly
            .as_ref()
            .map_or(Verdict::Normal, |a| memory.guard.observe(a, observed));
        // A held anomaly is sized as if the metric stood at its EWMA.
        let load = match verdict {
            Verdict::Held { level, .. } => level,
            _ => observed,
        };
        let (mut desired, mut reason) = size(config, request, load);
        let current = request.target.current_replicas;
        match verdict {
            Verdict::Held { z, level, run } => {
                let above = z > 0.0;
                let side = if above { "above" } else { "below" };
                let what = format!(
                    "`{}` {observed:.1} is an anomaly, {:.1} deviations {side} its EWMA {level:.1} ({run} in a row; followed at {})",
                    config.metric,
                    z.abs(),
                    config.anomaly.as_ref().map_or(0, |a| a.sustained),
                );
                if desired < current || (!above && desired == current) {
                    desired = current;
                    reason = format!("holding: no scale-down on an anomaly: {what}");
                } else {
                    reason = format!("{reason}; {what}, not chased");
                }
            }
            Verdict::Followed { run } => {
                reason = format!(
                    "{reason}; `{}` {observed:.1} is the anomaly {run} in a row: the new level",
                    config.metric
                );
            }
            Verdict::Normal => {}
        }
        if desired < current && config.scale_down_dwell_seconds > 0.0 {
            let dwell_ms = config.scale_down_dwell_seconds * 1000.0;
            match memory
                .dwell
                .want_fewer(request.target.now_ms, desired, dwell_ms)
            {
                Step::Wait { left_ms } => {
                    reason = format!(
                        "holding: {desired} pods would do ({reason}); the scale-down dwell ends in {:.0}s",
                        left_ms / 1000.0
                    );
                    desired = current;
                }
                // The count fell under the dwell's most from elsewhere: a dwell never scales up.
                Step::Go { to } if to >= current => {
                    desired = current;
                    reason = format!(
                        "holding: the scale-down dwell ended wanting {to} pods, no fewer than the {current} there are ({reason})"
                    );
                }
                Step::Go { to } => {
                    desired = to;
                    reason = format!(
                        "{to} pods, the most any decision of the last {:.0}s wanted ({reason})",
                        config.scale_down_dwell_seconds
                    );
                }
            }
        } else {
            memory.dwell.reset();
        }
        Ok(Decision {
            desired_replicas: desired,
            reason,
            state: keeps_state.then(|| memory.encode()),
        })
    }
}

/// The replicas `load` (or a higher forecast) needs, and why; the current
/// count when the change would fall inside the hysteresis band or the
/// scale-down tolerance.
fn size(config: &Config, request: &DecideRequest, load: f64) -> (u32, String) {
    let peak = forecast(request, &config.metric)
        .and_then(|f| f.points.iter().max_by(|a, b| a.value.total_cmp(&b.value)));
    let (demand, why) = match peak {
        Some(p) if p.value > load || !config.use_current => {
            let ahead_s = ((p.time_ms - request.target.now_ms) / 1000.0).max(0.0);
            (
                p.value,
                format!(
                    "forecast peak {:.1} in {ahead_s:.0}s (now {load:.1})",
                    p.value
                ),
            )
        }
        _ => (load, format!("current {load:.1}")),
    };
    let per_pod = config.capacity_per_pod * config.target_utilization;
    let needed = demand * (1.0 + config.headroom);
    let mut sized = (needed / per_pod).ceil();
    let current = request.target.current_replicas;
    let current_f = f64::from(current);
    if let (true, Some(down)) = (sized < current_f, config.scale_down_utilization) {
        sized = (needed / (config.capacity_per_pod * down)).ceil();
        if sized >= current_f {
            return (
                current,
                format!("holding: fewer pods would run above {down} utilization ({why})"),
            );
        }
    }
    if sized < current_f && sized >= current_f * (1.0 - config.scale_down_tolerance) {
        return (
            current,
            format!("holding: {sized} pods would do ({why}), within the scale-down tolerance"),
        );
    }
    (
        sized.clamp(0.0, f64::from(u32::MAX)) as u32,
        format!(
            "sized for {demand:.1} {}: {why}, at {per_pod:.1} per pod",
            config.metric
        ),
    )
}

export_decider!(ForecastSizing);

#[cfg(test)]
mod tests;
