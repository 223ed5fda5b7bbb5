//! A predictor for the host's tests: it forecasts, at the horizon, what it
//! reads of its metric's long history — how many steps, the newest step's
//! end (Unix seconds) and the sum of the values — so a test can tell from
//! an autoscaler's status exactly which long history a policy saw.

use serde::Deserialize;
use wasm_autoscaler_guest::{
    export_history_predictor, long_history, ForecastPoint, ForecastRequest, ForecastResponse,
    MetricForecast, Predictor,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    metric: String,
}

pub struct HistoryEcho;

impl Predictor for HistoryEcho {
    type Config = Config;

    fn forecast(config: &Config, request: &ForecastRequest) -> Result<ForecastResponse, String> {
        let samples = long_history::get(&config.metric).map_or_else(Vec::new, |h| h.samples);
        let at_horizon = |name: &str, value: f64| MetricForecast {
            name: name.to_string(),
            points: vec![ForecastPoint {
                time_ms: request.now_ms + request.horizon_ms,
                value,
            }],
        };
        Ok(ForecastResponse {
            forecasts: vec![
                at_horizon("long-steps", samples.len() as f64),
                at_horizon(
                    "long-newest-s",
                    samples.last().map_or(0.0, |s| s.time_ms / 1000.0),
                ),
                at_horizon("long-sum", samples.iter().map(|s| s.value).sum()),
            ],
            state: None,
        })
    }
}

export_history_predictor!(HistoryEcho);
