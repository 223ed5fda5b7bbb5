//! Synthetic policy inputs: for `check`'s smoke call and for benchmarks.
//! A daily-looking wave with noise, deterministic so runs compare.

use super::bindings::{
    DecideRequest, ForecastPoint, ForecastRequest, MetricForecast, MetricHistory, MetricValue,
    Sample, TargetState,
};

/// Spacing of synthetic samples, in ms.
pub const STEP_MS: f64 = 15_000.0;
/// The time of the synthetic "now", in ms (2026-01-01T00:00:00Z).
pub const NOW_MS: f64 = 1_767_225_600_000.0;

/// `len` samples of a request rate ending at [`NOW_MS`].
pub fn history(len: usize) -> Vec<Sample> {
    (0..len)
        .map(|i| {
            let k = i as f64;
            let wave = 300.0 + 200.0 * (k / 40.0).sin();
            // A fixed pseudo-random wobble (no RNG, so every run is identical).
            let noise = 15.0 * ((k * 12.9898).sin() * 43_758.545).fract();
            Sample {
                time_ms: NOW_MS - (len - 1 - i) as f64 * STEP_MS,
                value: wave + noise,
            }
        })
        .collect()
}

/// A forecast request over `len` samples of `rps`, two minutes ahead.
pub fn forecast_request(len: usize, config: &str) -> ForecastRequest {
    ForecastRequest {
        now_ms: NOW_MS,
        horizon_ms: 120_000.0,
        step_ms: STEP_MS,
        histories: vec![MetricHistory {
            name: "rps".into(),
            samples: history(len),
        }],
        config: config.to_string(),
        state: None,
    }
}

/// A decide request for a 10-pod target seeing `rps` and `utilization`,
/// with `forecasts` (empty for none).
pub fn decide_request(config: &str, forecasts: Vec<MetricForecast>) -> DecideRequest {
    let rps = history(1)[0].value;
    DecideRequest {
        target: TargetState {
            now_ms: NOW_MS,
            current_replicas: 10,
            ready_replicas: 9,
            warming_replicas: 1,
            min_replicas: 1,
            max_replicas: 100,
        },
        metrics: vec![
            MetricValue {
                name: "rps".into(),
                value: Some(rps),
            },
            MetricValue {
                name: "utilization".into(),
                value: Some(rps / (9.0 * 50.0)),
            },
        ],
        forecasts,
        config: config.to_string(),
        state: None,
    }
}

/// An 8-point rising forecast of `rps`, for deciders benchmarked without a predictor.
pub fn forecast_of_rps() -> Vec<MetricForecast> {
    vec![MetricForecast {
        name: "rps".into(),
        points: (1..=8)
            .map(|k| ForecastPoint {
                time_ms: NOW_MS + k as f64 * STEP_MS,
                value: 400.0 + 10.0 * k as f64,
            })
            .collect(),
    }]
}
