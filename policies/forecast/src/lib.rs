//! `forecast` — a decider that sizes the target for the highest load it
//! expects within the forecast horizon (or the current load, if higher),
//! at a target utilization per pod plus optional headroom.
//!
//! With no predictor it sizes for the current load, which makes it a plain
//! proportional autoscaler on a throughput metric.

use serde::Deserialize;
use wasm_autoscaler_guest::{export_decider, forecast, metric, DecideRequest, Decider, Decision};

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
        Ok(())
    }

    fn decide(config: &Config, request: &DecideRequest) -> Result<Decision, String> {
        let now = metric(request, &config.metric)?;
        let peak = forecast(request, &config.metric)
            .and_then(|f| f.points.iter().max_by(|a, b| a.value.total_cmp(&b.value)));
        let (demand, why) = match peak {
            Some(p) if p.value > now || !config.use_current => {
                let ahead_s = ((p.time_ms - request.target.now_ms) / 1000.0).max(0.0);
                (
                    p.value,
                    format!(
                        "forecast peak {:.1} in {ahead_s:.0}s (now {now:.1})",
                        p.value
                    ),
                )
            }
            _ => (now, format!("current {now:.1}")),
        };
        let per_pod = config.capacity_per_pod * config.target_utilization;
        let needed = demand * (1.0 + config.headroom);
        let mut sized = (needed / per_pod).ceil();
        let current = f64::from(request.target.current_replicas);
        if let (true, Some(down)) = (sized < current, config.scale_down_utilization) {
            sized = (needed / (config.capacity_per_pod * down)).ceil();
            if sized >= current {
                return Ok(Decision {
                    desired_replicas: request.target.current_replicas,
                    reason: format!(
                        "holding: fewer pods would run above {down} utilization ({why})"
                    ),
                    state: None,
                });
            }
        }
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
            reason: format!(
                "sized for {} {}: {why}, at {:.1} per pod",
                fmt_num(demand),
                config.metric,
                per_pod
            ),
            state: None,
        })
    }
}

fn fmt_num(v: f64) -> String {
    format!("{v:.1}")
}

export_decider!(ForecastSizing);

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_autoscaler_guest::{harness, ForecastPoint, MetricForecast, MetricValue, TargetState};

    fn request(now: f64, forecast: &[f64]) -> DecideRequest {
        DecideRequest {
            target: TargetState {
                now_ms: 0.0,
                current_replicas: 3,
                ready_replicas: 3,
                warming_replicas: 0,
                min_replicas: 1,
                max_replicas: 50,
            },
            metrics: vec![MetricValue {
                name: "rps".into(),
                value: Some(now),
            }],
            forecasts: vec![MetricForecast {
                name: "rps".into(),
                points: forecast
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| ForecastPoint {
                        time_ms: (i + 1) as f64 * 15_000.0,
                        value: v,
                    })
                    .collect(),
            }],
            config: r#"{"capacityPerPod": 10, "targetUtilization": 0.5}"#.into(),
            state: None,
        }
    }

    #[test]
    fn sizes_for_the_forecast_peak() {
        let d = harness::decide::<ForecastSizing>(&request(20.0, &[30.0, 61.0, 40.0])).unwrap();
        assert_eq!(d.desired_replicas, 13);
        assert!(
            d.reason.contains("forecast peak 61.0 in 30s"),
            "{}",
            d.reason
        );
    }

    #[test]
    fn never_sizes_below_current_load() {
        let d = harness::decide::<ForecastSizing>(&request(40.0, &[10.0])).unwrap();
        assert_eq!(d.desired_replicas, 8);
    }

    #[test]
    fn small_dips_hold_the_current_count() {
        let mut r = request(14.0, &[]);
        r.target.current_replicas = 3;
        // 14 / 5 → 3: no change; 10 / 5 → 2 is a third below 3: scale down.
        assert_eq!(
            harness::decide::<ForecastSizing>(&r)
                .unwrap()
                .desired_replicas,
            3
        );
        r.target.current_replicas = 30;
        r.metrics[0].value = Some(140.0);
        // 28 is within 10% of 30.
        let d = harness::decide::<ForecastSizing>(&r).unwrap();
        assert_eq!(d.desired_replicas, 30, "{}", d.reason);
        r.metrics[0].value = Some(100.0);
        assert_eq!(
            harness::decide::<ForecastSizing>(&r)
                .unwrap()
                .desired_replicas,
            20
        );
    }

    #[test]
    fn headroom_adds_capacity() {
        let mut r = request(40.0, &[]);
        r.config = r#"{"capacityPerPod": 10, "targetUtilization": 0.5, "headroom": 0.25}"#.into();
        assert_eq!(
            harness::decide::<ForecastSizing>(&r)
                .unwrap()
                .desired_replicas,
            10
        );
    }

    #[test]
    fn scale_down_utilization_is_a_hysteresis_band() {
        // 10 pods, load for 7.9 at 0.5 per pod (8 pods): down to 8 without
        // the band; at 0.4 per pod it needs 10 and holds.
        let mut r = request(39.5, &[]);
        r.target.current_replicas = 10;
        assert_eq!(
            harness::decide::<ForecastSizing>(&r)
                .unwrap()
                .desired_replicas,
            8
        );
        r.config =
            r#"{"capacityPerPod": 10, "targetUtilization": 0.5, "scaleDownUtilization": 0.4}"#
                .into();
        let d = harness::decide::<ForecastSizing>(&r).unwrap();
        assert_eq!(d.desired_replicas, 10, "{}", d.reason);
        assert!(d.reason.contains("above 0.4 utilization"), "{}", d.reason);
        // Far enough down it scales, sized at the band's utilization: 20 / 4 → 5.
        r.metrics[0].value = Some(20.0);
        assert_eq!(
            harness::decide::<ForecastSizing>(&r)
                .unwrap()
                .desired_replicas,
            5
        );
        // Scale-ups are sized at the target: 60 / 5 → 12.
        r.metrics[0].value = Some(60.0);
        assert_eq!(
            harness::decide::<ForecastSizing>(&r)
                .unwrap()
                .desired_replicas,
            12
        );
    }

    #[test]
    fn without_use_current_the_forecast_alone_decides() {
        // A spike in the current value the predictor chose not to chase.
        let mut r = request(100.0, &[20.0, 20.0]);
        assert_eq!(
            harness::decide::<ForecastSizing>(&r)
                .unwrap()
                .desired_replicas,
            20
        );
        r.config =
            r#"{"capacityPerPod": 10, "targetUtilization": 0.5, "useCurrent": false}"#.into();
        assert_eq!(
            harness::decide::<ForecastSizing>(&r)
                .unwrap()
                .desired_replicas,
            4
        );
        // With no forecast the current value is all there is.
        r.forecasts.clear();
        assert_eq!(
            harness::decide::<ForecastSizing>(&r)
                .unwrap()
                .desired_replicas,
            20
        );
    }

    #[test]
    fn rejects_bad_configs() {
        for (c, needle) in [
            (r#"{}"#, "capacityPerPod"),
            (r#"{"capacityPerPod": 0}"#, "capacityPerPod"),
            (
                r#"{"capacityPerPod": 1, "targetUtilization": 0.7, "scaleDownUtilization": 0.8}"#,
                "scaleDownUtilization",
            ),
            (
                r#"{"capacityPerPod": 1, "targetUtilization": 1.5}"#,
                "targetUtilization",
            ),
        ] {
            let e = harness::validate_decider_config::<ForecastSizing>(c).unwrap_err();
            assert!(e.contains(needle), "{c}: {e}");
        }
    }
}
