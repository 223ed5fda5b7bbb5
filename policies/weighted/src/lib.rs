//! `weighted` — a decider that sizes the target from several signals at
//! once: each signal says how many pods it needs (its value, or its forecast
//! peak when higher, over its own load per pod), and the needs are combined
//! by weight.
//!
//! The seeds this project started from weigh CPU 0.2, memory 0.3 and QPS
//! 0.5: a service whose cost is mostly its request rate, with CPU and
//! memory as supporting evidence. A weighted mean lets a quiet signal pull
//! the count down, which is the point (one noisy signal does not decide
//! alone) and the risk (a saturated signal is outvoted); `combine: "max"`
//! gives every signal a veto instead, as HPA does with several metrics.

use serde::Deserialize;
use wasm_autoscaler_guest::{export_decider, forecast, DecideRequest, Decider, Decision};

/// Most signals one decision combines.
const MAX_SIGNALS: usize = 16;

/// Configuration of the `weighted` decider.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// The signals and their weights.
    pub signals: Vec<Signal>,
    /// How the per-signal needs are combined.
    #[serde(default)]
    pub combine: Combine,
    /// Scale down only when the combined need is more than this fraction
    /// below the current count, so small dips do not cause a change each tick.
    #[serde(default = "default_down_tolerance")]
    pub scale_down_tolerance: f64,
}

/// One signal: a metric, the amount of it one pod handles at the target, and its weight.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Signal {
    pub metric: String,
    /// How much of the metric one pod should carry (for example 0.7 CPU cores, or 45 rps).
    pub per_pod: f64,
    /// How much this signal counts (≥ 0); only the ratios between weights matter.
    #[serde(default = "default_weight")]
    pub weight: f64,
}

/// How the per-signal needs become one count.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Combine {
    /// Σ weight × need / Σ weight, over the signals available this tick.
    #[default]
    WeightedMean,
    /// The largest need of a signal with a weight above zero.
    Max,
}

fn default_weight() -> f64 {
    1.0
}

fn default_down_tolerance() -> f64 {
    0.1
}

/// The weighted multi-signal decider.
pub struct Weighted;

impl Decider for Weighted {
    type Config = Config;

    fn validate(config: &Config) -> Result<(), String> {
        if config.signals.is_empty() || config.signals.len() > MAX_SIGNALS {
            return Err(format!(
                "`signals` must list 1 to {MAX_SIGNALS} signals, got {}",
                config.signals.len()
            ));
        }
        for (k, s) in config.signals.iter().enumerate() {
            if !(s.per_pod.is_finite() && s.per_pod > 0.0) {
                return Err(format!(
                    "signal `{}`: `perPod` must be a positive number, got {}",
                    s.metric, s.per_pod
                ));
            }
            if !(s.weight.is_finite() && s.weight >= 0.0) {
                return Err(format!(
                    "signal `{}`: `weight` must be a number ≥ 0, got {}",
                    s.metric, s.weight
                ));
            }
            if config.signals[..k].iter().any(|o| o.metric == s.metric) {
                return Err(format!("signal `{}` is listed twice", s.metric));
            }
        }
        if config.signals.iter().all(|s| s.weight == 0.0) {
            return Err("every signal has weight 0: nothing would count".into());
        }
        if !(0.0..1.0).contains(&config.scale_down_tolerance) {
            return Err(format!(
                "`scaleDownTolerance` must be in [0, 1), got {}",
                config.scale_down_tolerance
            ));
        }
        Ok(())
    }

    fn decide(config: &Config, request: &DecideRequest) -> Result<Decision, String> {
        let mut needs = Vec::new();
        let mut missing = Vec::new();
        for s in config.signals.iter().filter(|s| s.weight > 0.0) {
            match need(s, request) {
                Some(n) => needs.push((s, n)),
                None => missing.push(s.metric.as_str()),
            }
        }
        if needs.is_empty() {
            return Err(format!(
                "no signal is available this tick ({})",
                missing.join(", ")
            ));
        }
        let combined = match config.combine {
            Combine::WeightedMean => {
                let total: f64 = needs.iter().map(|(s, _)| s.weight).sum();
                needs.iter().map(|(s, n)| s.weight * n).sum::<f64>() / total
            }
            Combine::Max => needs.iter().map(|(_, n)| *n).fold(0.0, f64::max),
        };
        let parts: Vec<String> = needs
            .iter()
            .map(|(s, n)| format!("{} {n:.1} pods (weight {})", s.metric, s.weight))
            .collect();
        let mut why = format!(
            "{} of {}",
            match config.combine {
                Combine::WeightedMean => "weighted mean",
                Combine::Max => "max",
            },
            parts.join(", ")
        );
        if !missing.is_empty() {
            why.push_str(&format!("; left out, unavailable: {}", missing.join(", ")));
        }
        let sized = combined.ceil();
        let current = f64::from(request.target.current_replicas);
        if sized < current && sized >= current * (1.0 - config.scale_down_tolerance) {
            return Ok(Decision {
                desired_replicas: request.target.current_replicas,
                reason: format!(
                    "holding: {sized} pods would do ({why}), within the scale-down tolerance"
                ),
                state: None,
            });
        }
        Ok(Decision {
            desired_replicas: sized.clamp(0.0, f64::from(u32::MAX)) as u32,
            reason: format!("{combined:.2} pods: {why}"),
            state: None,
        })
    }
}

/// Pods signal `s` needs: its current value, or its forecast peak when
/// higher, over its load per pod; none when it has no value this tick.
fn need(s: &Signal, request: &DecideRequest) -> Option<f64> {
    let now = request
        .metrics
        .iter()
        .find(|m| m.name == s.metric)
        .and_then(|m| m.value)
        .filter(|v| v.is_finite())?;
    let peak = forecast(request, &s.metric)
        .into_iter()
        .flat_map(|f| f.points.iter().map(|p| p.value))
        .filter(|v| v.is_finite())
        .fold(now, f64::max);
    Some(peak.max(0.0) / s.per_pod)
}

export_decider!(Weighted);

#[cfg(test)]
mod tests;
