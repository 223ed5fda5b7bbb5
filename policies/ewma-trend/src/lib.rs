//! `ewma-trend` — a predictor: the EWMA of each metric plus the
//! least-squares trend of its last `window` samples, projected `horizon`
//! ahead.
//!
//! An EWMA of a steadily rising series lags behind it by about
//! `slope × spacing × (1 − α) / α`; the forecast adds that lag back, so on a
//! ramp it tracks the ramp instead of trailing it (as Holt's linear method
//! does). Forecasts never go below zero.

use serde::Deserialize;
use wasm_autoscaler_guest::math::{ewma, least_squares};
use wasm_autoscaler_guest::{
    export_predictor, ForecastPoint, ForecastRequest, ForecastResponse, MetricForecast,
    MetricHistory, Predictor,
};

/// Most points one forecast may hold, whatever horizon and step are asked.
const MAX_POINTS: usize = 1_000;

/// Configuration of the `ewma-trend` predictor.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// EWMA smoothing factor in (0, 1]: higher follows the latest values more closely.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// How many of the latest samples the trend is fitted to (at least 2).
    #[serde(default = "default_window")]
    pub window: usize,
    /// Minimum forecast horizon in ms; the host's horizon (at least the warm-up) wins when longer.
    #[serde(default)]
    pub horizon_ms: f64,
    /// The metrics to forecast; all of them when absent.
    #[serde(default)]
    pub metrics: Option<Vec<String>>,
}

fn default_alpha() -> f64 {
    0.5
}

fn default_window() -> usize {
    8
}

/// The EWMA-plus-trend predictor.
pub struct EwmaTrend;

impl Predictor for EwmaTrend {
    type Config = Config;

    fn validate(config: &Config) -> Result<(), String> {
        if !(config.alpha > 0.0 && config.alpha <= 1.0) {
            return Err(format!("`alpha` must be in (0, 1], got {}", config.alpha));
        }
        if config.window < 2 {
            return Err(format!(
                "`window` must be at least 2, got {}",
                config.window
            ));
        }
        if !(config.horizon_ms.is_finite() && config.horizon_ms >= 0.0) {
            return Err(format!(
                "`horizonMs` must be ≥ 0, got {}",
                config.horizon_ms
            ));
        }
        Ok(())
    }

    fn forecast(config: &Config, request: &ForecastRequest) -> Result<ForecastResponse, String> {
        let horizon = request.horizon_ms.max(config.horizon_ms);
        let step = if request.step_ms > 0.0 {
            request.step_ms
        } else {
            horizon
        };
        let points = if horizon > 0.0 && step > 0.0 {
            ((horizon / step).ceil() as usize).clamp(1, MAX_POINTS)
        } else {
            0
        };
        let forecasts = request
            .histories
            .iter()
            .filter(|h| config.metrics.as_ref().is_none_or(|m| m.contains(&h.name)))
            .map(|h| MetricForecast {
                name: h.name.clone(),
                points: project(config, h, request.now_ms, step, points),
            })
            .collect();
        Ok(ForecastResponse {
            forecasts,
            state: None,
        })
    }
}

/// The forecast points of one metric; none when it has no samples.
fn project(
    config: &Config,
    history: &MetricHistory,
    now: f64,
    step: f64,
    n: usize,
) -> Vec<ForecastPoint> {
    let samples = &history.samples;
    let Some(level) = ewma(samples.iter().map(|s| s.value), config.alpha) else {
        return Vec::new();
    };
    let tail = &samples[samples.len().saturating_sub(config.window)..];
    let fit: Vec<(f64, f64)> = tail.iter().map(|s| (s.time_ms, s.value)).collect();
    let slope = least_squares(&fit).map_or(0.0, |l| l.slope);
    let last = samples[samples.len() - 1].time_ms;
    let spacing = if tail.len() > 1 {
        (last - tail[0].time_ms) / (tail.len() - 1) as f64
    } else {
        0.0
    };
    let lag = spacing * (1.0 - config.alpha) / config.alpha;
    (1..=n)
        .map(|k| {
            let t = now + k as f64 * step;
            ForecastPoint {
                time_ms: t,
                value: (level + slope * (t - last + lag)).max(0.0),
            }
        })
        .collect()
}

export_predictor!(EwmaTrend);

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_autoscaler_guest::{harness, Sample};

    fn request(values: &[f64], config: &str) -> ForecastRequest {
        let samples: Vec<Sample> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| Sample {
                time_ms: i as f64 * 15_000.0,
                value: v,
            })
            .collect();
        let now = samples.last().map_or(0.0, |s| s.time_ms);
        ForecastRequest {
            now_ms: now,
            horizon_ms: 60_000.0,
            step_ms: 15_000.0,
            histories: vec![MetricHistory {
                name: "rps".into(),
                samples,
            }],
            config: config.into(),
            state: None,
        }
    }

    #[test]
    fn flat_history_forecasts_flat() {
        let r = harness::forecast::<EwmaTrend>(&request(&[10.0; 20], "")).unwrap();
        let pts = &r.forecasts[0].points;
        assert_eq!(pts.len(), 4);
        assert!(pts.iter().all(|p| (p.value - 10.0).abs() < 1e-9), "{pts:?}");
    }

    #[test]
    fn a_ramp_is_tracked_not_trailed() {
        let ramp: Vec<f64> = (0..40).map(|i| 100.0 + 5.0 * i as f64).collect();
        let r = harness::forecast::<EwmaTrend>(&request(&ramp, "")).unwrap();
        let last = r.forecasts[0].points.last().unwrap();
        // 60 s ahead of the last sample the ramp is at 295 + 4 × 5 = 315.
        assert!((last.value - 315.0).abs() < 1e-6, "{last:?}");
    }

    #[test]
    fn forecasts_never_go_negative() {
        let fall: Vec<f64> = (0..20).map(|i| 100.0 - 6.0 * i as f64).collect();
        let r = harness::forecast::<EwmaTrend>(&request(&fall, "")).unwrap();
        assert!(r.forecasts[0].points.iter().all(|p| p.value >= 0.0));
    }

    #[test]
    fn empty_history_gives_no_points() {
        let r = harness::forecast::<EwmaTrend>(&request(&[], "")).unwrap();
        assert!(r.forecasts[0].points.is_empty());
    }

    #[test]
    fn config_horizon_extends_the_hosts() {
        let r = harness::forecast::<EwmaTrend>(&request(&[1.0; 5], r#"{"horizonMs": 120000}"#))
            .unwrap();
        assert_eq!(r.forecasts[0].points.len(), 8);
    }

    #[test]
    fn rejects_bad_configs() {
        for (c, needle) in [
            (r#"{"alpha": 0}"#, "alpha"),
            (r#"{"window": 1}"#, "window"),
            (r#"{"alfa": 1}"#, "unknown field"),
        ] {
            let e = harness::validate_predictor_config::<EwmaTrend>(c).unwrap_err();
            assert!(e.contains(needle), "{c}: {e}");
        }
    }
}
