//! `hpa` — the Kubernetes HorizontalPodAutoscaler (autoscaling/v2) replica
//! rule as a decider, for baselines and for teams migrating from HPA.
//!
//! It reproduces the replica calculator for a per-pod average metric
//! (like CPU utilization): `ceil(ratio × ready pods)` where
//! `ratio = metric / target`, no change while `|1 − ratio| ≤ tolerance`,
//! and on a scale-up with pods still starting, those pods count as using
//! nothing and the ratio is recomputed (HPA's "unready pods" rule). HPA's
//! stabilization windows and rate policies are not here: they belong to the
//! host's safety layer (`behavior`), which applies to every policy.

use serde::Deserialize;
use wasm_autoscaler_guest::{export_decider, metric, DecideRequest, Decider, Decision};

/// Configuration of the `hpa` decider.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// The per-pod average metric to hold at `target` (for example `utilization`).
    #[serde(default = "default_metric")]
    pub metric: String,
    /// The value of the metric per pod that the workload should run at.
    pub target: f64,
    /// The ratio band around 1.0 inside which nothing changes (HPA's default 0.1).
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
}

fn default_metric() -> String {
    "utilization".to_string()
}

fn default_tolerance() -> f64 {
    0.1
}

/// The HPA replica rule.
pub struct Hpa;

impl Decider for Hpa {
    type Config = Config;

    fn validate(config: &Config) -> Result<(), String> {
        if !(config.target.is_finite() && config.target > 0.0) {
            return Err(format!(
                "`target` must be a positive number, got {}",
                config.target
            ));
        }
        if !(0.0..1.0).contains(&config.tolerance) {
            return Err(format!(
                "`tolerance` must be in [0, 1), got {}",
                config.tolerance
            ));
        }
        Ok(())
    }

    fn decide(config: &Config, request: &DecideRequest) -> Result<Decision, String> {
        let value = metric(request, &config.metric)?;
        let t = &request.target;
        let keep = |why: String| Decision {
            desired_replicas: t.current_replicas,
            reason: why,
            state: None,
        };
        if t.current_replicas == 0 {
            return Ok(keep("scaling is disabled at 0 replicas, as in HPA".into()));
        }
        if t.ready_replicas == 0 {
            return Err("no ready pods to measure".into());
        }
        let ratio = value / config.target;
        let ready = f64::from(t.ready_replicas);
        let name = &config.metric;

        let unready_on_scale_up = t.warming_replicas > 0 && ratio > 1.0;
        if !unready_on_scale_up {
            if (1.0 - ratio).abs() <= config.tolerance {
                return Ok(keep(format!(
                    "{name} {value:.3} is within tolerance of target {:.3}",
                    config.target
                )));
            }
            let desired = (ratio * ready).ceil() as u32;
            return Ok(Decision {
                desired_replicas: desired,
                reason: format!(
                    "{name} {value:.3} vs target {:.3} (ratio {ratio:.2}) over {} ready pods",
                    config.target, t.ready_replicas
                ),
                state: None,
            });
        }

        // Starting pods are assumed to use nothing, which damps scale-ups
        // that the new pods may already cover.
        let counted = ready + f64::from(t.warming_replicas);
        let new_ratio = value * ready / (config.target * counted);
        if (1.0 - new_ratio).abs() <= config.tolerance || new_ratio < 1.0 {
            return Ok(keep(format!(
                "{name} {value:.3} is covered by {} starting pods",
                t.warming_replicas
            )));
        }
        let desired = (new_ratio * counted).ceil() as u32;
        if desired < t.current_replicas {
            return Ok(keep(format!("{name} {value:.3}: holding while pods start")));
        }
        Ok(Decision {
            desired_replicas: desired,
            reason: format!(
                "{name} {value:.3} vs target {:.3} (ratio {new_ratio:.2} counting {} starting pods as idle)",
                config.target, t.warming_replicas
            ),
            state: None,
        })
    }
}

export_decider!(Hpa);

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_autoscaler_guest::{harness, MetricValue, TargetState};

    fn request(value: f64, current: u32, ready: u32, warming: u32) -> DecideRequest {
        DecideRequest {
            target: TargetState {
                now_ms: 0.0,
                current_replicas: current,
                ready_replicas: ready,
                warming_replicas: warming,
                min_replicas: 1,
                max_replicas: 100,
            },
            metrics: vec![MetricValue {
                name: "utilization".into(),
                value: Some(value),
            }],
            forecasts: vec![],
            config: r#"{"target": 0.5}"#.into(),
            state: None,
        }
    }

    fn desired(r: &DecideRequest) -> u32 {
        harness::decide::<Hpa>(r).unwrap().desired_replicas
    }

    #[test]
    fn scales_by_the_ratio() {
        assert_eq!(desired(&request(1.0, 4, 4, 0)), 8);
        assert_eq!(desired(&request(0.25, 4, 4, 0)), 2);
    }

    #[test]
    fn holds_inside_tolerance() {
        assert_eq!(desired(&request(0.54, 4, 4, 0)), 4);
        assert_eq!(desired(&request(0.46, 4, 4, 0)), 4);
        assert_eq!(desired(&request(0.56, 4, 4, 0)), 5);
    }

    #[test]
    fn starting_pods_damp_a_scale_up() {
        // 4 ready at 2× target would want 8, but 4 starting pods cover it.
        assert_eq!(desired(&request(1.0, 8, 4, 4)), 8);
        // 4 ready at 4× target with 2 starting: (4×2)/(6×0.5)... ratio 2.67 → 16
        assert_eq!(desired(&request(2.0, 6, 4, 2)), 16);
    }

    #[test]
    fn unavailable_metric_is_an_error() {
        let mut r = request(1.0, 4, 4, 0);
        r.metrics[0].value = None;
        assert!(harness::decide::<Hpa>(&r)
            .unwrap_err()
            .contains("unavailable"));
    }

    #[test]
    fn rejects_a_bad_config() {
        let e = harness::validate_decider_config::<Hpa>(r#"{"target": -1}"#).unwrap_err();
        assert!(e.contains("target"), "{e}");
        assert!(harness::validate_decider_config::<Hpa>("{}")
            .unwrap_err()
            .contains("missing field `target`"));
    }
}
