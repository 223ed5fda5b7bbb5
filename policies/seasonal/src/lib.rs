//! `seasonal` — a predictor that knows the daily (or weekly) shape of the
//! traffic: the current level, plus the change the same stretch of the
//! period brought last time.
//!
//! It keeps a profile of the period in slots (five minutes by default):
//! each slot's mean, blended across periods so that a one-off day fades.
//! The forecast for `t + h` is the EWMA of the recent samples plus the
//! profile's change from the EWMA's time to `t + h`: the level comes from
//! now, the shape from the past. Anchoring on the current level, not on last period's values,
//! keeps a growing or shrinking service from being sized for last week.
//! Until a slot has been seen, its change counts as zero and the forecast
//! is the EWMA.
//!
//! Where the autoscaler keeps a long history (`longHistory` in its spec), the
//! profile is rebuilt from it at every call, so it is there from the first
//! call after an operator restart (the operator refills the long history from
//! Prometheus) and the policy keeps no state. Without one, the profile lives in
//! the policy's `state` (≈1.2 KB for a day, 8 KB for a week, at five-minute
//! slots): learned while the policy runs and lost when the operator restarts.

use serde::Deserialize;
use wasm_autoscaler_guest::long_history::{self, CoarseHistory};
use wasm_autoscaler_guest::math::ewma;
use wasm_autoscaler_guest::{
    export_history_predictor, forecast_times, history, ForecastPoint, ForecastRequest,
    ForecastResponse, MetricForecast, Predictor, Sample,
};

mod profile;

pub use profile::Profile;

const DAY_S: u64 = 86_400;

/// Configuration of the `seasonal` predictor.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// The metric to forecast.
    #[serde(default = "default_metric")]
    pub metric: String,
    /// The season: `day` or `week`.
    #[serde(default)]
    pub period: Period,
    /// Seconds per profile slot (60 to 3600, dividing the day).
    #[serde(default = "default_slot_seconds")]
    pub slot_seconds: u64,
    /// Weight of the newest period in a slot's mean, in (0, 1]: 1 remembers only the last one.
    #[serde(default = "default_blend")]
    pub blend: f64,
    /// EWMA smoothing of the recent samples (the level), in (0, 1].
    #[serde(default = "default_alpha")]
    pub alpha: f64,
}

/// The length of the season.
#[derive(Debug, Default, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Period {
    #[default]
    Day,
    Week,
}

impl Period {
    fn seconds(self) -> u64 {
        match self {
            Period::Day => DAY_S,
            Period::Week => 7 * DAY_S,
        }
    }
}

fn default_metric() -> String {
    "rps".to_string()
}

fn default_slot_seconds() -> u64 {
    300
}

fn default_blend() -> f64 {
    0.5
}

fn default_alpha() -> f64 {
    // Smoother than a trend model can afford: the shape comes from the
    // profile, so the level only has to average the noise away.
    0.2
}

/// The seasonal predictor.
pub struct Seasonal;

impl Predictor for Seasonal {
    type Config = Config;

    fn validate(config: &Config) -> Result<(), String> {
        if !(60..=3600).contains(&config.slot_seconds) || !DAY_S.is_multiple_of(config.slot_seconds)
        {
            return Err(format!(
                "`slotSeconds` must be 60 to 3600 and divide a day, got {}",
                config.slot_seconds
            ));
        }
        if !(config.blend > 0.0 && config.blend <= 1.0) {
            return Err(format!("`blend` must be in (0, 1], got {}", config.blend));
        }
        if !(config.alpha > 0.0 && config.alpha <= 1.0) {
            return Err(format!("`alpha` must be in (0, 1], got {}", config.alpha));
        }
        Ok(())
    }

    fn forecast(config: &Config, request: &ForecastRequest) -> Result<ForecastResponse, String> {
        let history = history(request, &config.metric)?;
        let slots = (config.period.seconds() / config.slot_seconds) as usize;
        let long = long_history::get(&config.metric).filter(|h| !h.samples.is_empty());
        let samples = &history.samples;
        let profile = match &long {
            Some(long) => {
                let mut profile = Profile::new(slots, config.slot_seconds);
                profile.learn(&spread(long, config.slot_seconds), config.blend);
                // The recent samples after the long history's last step complete it.
                let end = long.samples.last().map_or(f64::NEG_INFINITY, |s| s.time_ms);
                let newer: Vec<Sample> = samples
                    .iter()
                    .filter(|s| s.time_ms > end)
                    .copied()
                    .collect();
                profile.learn(&newer, config.blend);
                profile
            }
            None => {
                // A state from another configuration (or none, or damaged) starts a new profile.
                let mut profile = request
                    .state
                    .as_deref()
                    .and_then(|bytes| Profile::decode(bytes, slots, config.slot_seconds))
                    .unwrap_or_else(|| Profile::new(slots, config.slot_seconds));
                profile.learn(samples, config.blend);
                profile
            }
        };
        let points = match ewma(samples.iter().map(|s| s.value), config.alpha) {
            Some(level) => {
                // An EWMA trails the samples by about spacing × (1 − α) / α:
                // the level is the load of that long ago, so the profile's
                // change is counted from there.
                let spacing = match (samples.first(), samples.last()) {
                    (Some(a), Some(b)) if samples.len() > 1 => {
                        (b.time_ms - a.time_ms) / (samples.len() - 1) as f64
                    }
                    _ => 0.0,
                };
                let level_ms = request.now_ms - spacing * (1.0 - config.alpha) / config.alpha;
                forecast_times(request)
                    .map(|t| ForecastPoint {
                        time_ms: t,
                        value: (level + profile.change(level_ms, t)).max(0.0),
                    })
                    .collect()
            }
            None => Vec::new(),
        };
        Ok(ForecastResponse {
            forecasts: vec![MetricForecast {
                name: config.metric.clone(),
                points,
            }],
            // Rebuilt from the long history at every call, the profile needs no state.
            state: long.is_none().then(|| profile.encode()),
        })
    }
}

/// The long history's steps as samples where the profile's slots are: a
/// step's mean (stamped with the step's end) at the middle of each slot-long
/// part of the step, so a step longer than a slot fills every slot it spans.
fn spread(long: &CoarseHistory, slot_seconds: u64) -> Vec<Sample> {
    let step = long.step_ms.max(1.0);
    let parts = (step / (slot_seconds as f64 * 1000.0)).round().max(1.0);
    let part = step / parts;
    long.samples
        .iter()
        .flat_map(|s| {
            (0..parts as usize).map(move |k| Sample {
                time_ms: s.time_ms - step + (k as f64 + 0.5) * part,
                value: s.value,
            })
        })
        .collect()
}

export_history_predictor!(Seasonal);

#[cfg(test)]
mod tests;
