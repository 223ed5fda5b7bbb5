//! `adaptive` — a predictor that forecasts an upper band: where the load
//! will be one horizon ahead, plus the margin its own recent forecasts
//! needed to cover what actually came.
//!
//! Three ideas, each measured on the shared traces (`docs/benchmarks.md`):
//!
//! - **A small ensemble of Holt forecasters** (level + trend, from slow and
//!   trend-free to fast and trend-following), replayed over the history the
//!   host sends; the one whose horizon-ahead errors were smallest answers.
//!   Smooth diurnal traffic picks a fast one, noisy low-rate traffic a slow
//!   one, with no per-workload tuning.
//! - **A conformal margin**: the `quantile` of that model's horizon-ahead
//!   errors over the history. It is wide where the load is bursty and
//!   narrow where it is smooth, so a decider can size close to its SLO line
//!   without guessing the noise.
//! - **An anomaly guard** after EWMA + Z-score: a sample more than `zScore`
//!   robust deviations above the level is an anomaly. A run shorter than
//!   `sustained` samples is not chased (it neither moves the forecast nor
//!   widens the margin); a run that lasts is the new level at once.
//!
//! Everything is recomputed from the history each call, so the forecast
//! survives restarts and hot swaps without `state`.

use serde::Deserialize;
use wasm_autoscaler_guest::log;
use wasm_autoscaler_guest::math::{least_squares, quantile};
use wasm_autoscaler_guest::{
    export_predictor, forecast_times, history, ForecastPoint, ForecastRequest, ForecastResponse,
    MetricForecast, MetricHistory, Predictor,
};
/// Horizon-ahead errors a margin needs before it is trusted.
const MIN_ERRORS: usize = 20;
/// The margin before there are enough errors: a fraction of the level.
const COLD_MARGIN: f64 = 0.2;
/// (level smoothing, trend smoothing) of the ensemble's Holt forecasters.
const ENSEMBLE: [(f64, f64); 4] = [(0.1, 0.0), (0.2, 0.05), (0.4, 0.1), (0.7, 0.2)];
/// Samples the look-ahead trend is fitted to.
const TREND_SAMPLES: usize = 40;

/// Configuration of the `adaptive` predictor.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// The metric to forecast.
    #[serde(default = "default_metric")]
    pub metric: String,
    /// How many past horizon-ahead forecasts the band would have covered, in (0.5, 1].
    #[serde(default = "default_quantile")]
    pub quantile: f64,
    /// A sample this many robust deviations above the level is an anomaly (≥ 2).
    #[serde(default = "default_z_score")]
    pub z_score: f64,
    /// Consecutive anomalies after which they are the new level (≥ 1; 1 chases every one).
    #[serde(default = "default_sustained")]
    pub sustained: usize,
    /// While the load rises, add this many seconds more of its recent trend,
    /// so a scale-up covers the next minutes and is not followed by another.
    #[serde(default)]
    pub lookahead_seconds: f64,
}

fn default_metric() -> String {
    "rps".to_string()
}

fn default_quantile() -> f64 {
    0.95
}

fn default_z_score() -> f64 {
    4.0
}

fn default_sustained() -> usize {
    3
}

/// The adaptive upper-band predictor.
pub struct Adaptive;

impl Predictor for Adaptive {
    type Config = Config;

    fn validate(config: &Config) -> Result<(), String> {
        if !(config.quantile > 0.5 && config.quantile <= 1.0) {
            return Err(format!(
                "`quantile` must be in (0.5, 1], got {}",
                config.quantile
            ));
        }
        if !(config.z_score.is_finite() && config.z_score >= 2.0) {
            return Err(format!("`zScore` must be ≥ 2, got {}", config.z_score));
        }
        if config.sustained == 0 {
            return Err("`sustained` must be at least 1".into());
        }
        if !(config.lookahead_seconds.is_finite()
            && (0.0..=3600.0).contains(&config.lookahead_seconds))
        {
            return Err(format!(
                "`lookaheadSeconds` must be in [0, 3600], got {}",
                config.lookahead_seconds
            ));
        }
        Ok(())
    }

    fn forecast(config: &Config, request: &ForecastRequest) -> Result<ForecastResponse, String> {
        let history = history(request, &config.metric)?;
        let band = Band::of(config, history, request.horizon_ms);
        if let (Some(b), Some(last)) = (&band, history.samples.last()) {
            if b.guarded {
                log::debug(&format!(
                    "`{}` {:.3} is an anomaly above the level {:.3}: not chased until it lasts {} samples",
                    config.metric, last.value, b.level, config.sustained
                ));
            }
        }
        let forecasts = band
            .map(|band| MetricForecast {
                name: config.metric.clone(),
                points: forecast_times(request)
                    .map(|t| ForecastPoint {
                        time_ms: t,
                        value: band.at(t),
                    })
                    .collect(),
            })
            .into_iter()
            .collect();
        Ok(ForecastResponse {
            forecasts,
            state: None,
        })
    }
}

/// The upper band of one metric, from its history.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Band {
    /// The chosen forecaster's level and trend (per ms) at the last sample.
    pub level: f64,
    pub trend_per_ms: f64,
    /// The floor the band never forecasts below: the level, or the last
    /// sample unless it is an anomaly not yet sustained.
    pub floor: f64,
    pub last_ms: f64,
    /// Added on top: the conformal margin, and the look-ahead of a rising trend.
    pub margin: f64,
    pub lookahead: f64,
    /// The last sample is an anomaly the band does not chase (yet).
    pub guarded: bool,
}

impl Band {
    /// The band's value at time `t_ms`.
    pub fn at(&self, t_ms: f64) -> f64 {
        let point = self.level + self.trend_per_ms * (t_ms - self.last_ms);
        (point.max(self.floor) + self.margin + self.lookahead).max(0.0)
    }

    /// Fits the band to `history`, forecasting `horizon_ms` ahead; none without samples.
    pub fn of(config: &Config, history: &MetricHistory, horizon_ms: f64) -> Option<Band> {
        let samples = &history.samples;
        let last = samples.last()?;
        let values: Vec<f64> = samples.iter().map(|s| s.value).collect();
        let spacing = if samples.len() > 1 {
            ((last.time_ms - samples[0].time_ms) / (samples.len() - 1) as f64).max(1.0)
        } else {
            1.0
        };
        let ahead = ((horizon_ms / spacing).ceil() as usize).max(1);
        let guard = guard(&values, config.z_score, config.sustained);
        let fits = ENSEMBLE.map(|(alpha, beta)| Holt::replay(&guard, ahead, alpha, beta));
        let best = fits
            .iter()
            .min_by(|a, b| a.rms().total_cmp(&b.rms()))
            .expect("the ensemble is not empty");
        let margin = if best.errors.len() >= MIN_ERRORS {
            quantile(&best.errors, config.quantile)
                .unwrap_or(0.0)
                .max(0.0)
        } else {
            COLD_MARGIN * best.level.max(last.value).max(0.0)
        };
        let guarded = guard.pending > 0;
        // Not the last sample: the margin was measured for this forecaster's
        // own errors, and sizing for a noisy high sample plus the margin
        // would count the noise twice.
        let floor = best.level;
        let tail = &samples[samples.len().saturating_sub(TREND_SAMPLES)..];
        let fit: Vec<(f64, f64)> = tail.iter().map(|s| (s.time_ms, s.value)).collect();
        let rising = least_squares(&fit).map_or(0.0, |l| l.slope.max(0.0));
        Some(Band {
            level: best.level,
            trend_per_ms: best.trend / spacing,
            floor,
            last_ms: last.time_ms,
            margin,
            lookahead: if guarded {
                0.0
            } else {
                rising * config.lookahead_seconds * 1000.0
            },
            guarded,
        })
    }
}

/// A history with its anomalies marked.
#[derive(Debug)]
struct Guarded {
    /// The values a forecaster learns from: anomalies not sustained are
    /// replaced by the level they interrupted.
    values: Vec<f64>,
    /// Whether a sustained run began at each sample: forecasters restart there.
    jumps: Vec<bool>,
    /// Samples whose horizon-ahead errors are left out of the margin.
    ignored: Vec<bool>,
    /// Length of an anomalous run still open at the end (not yet sustained).
    pending: usize,
}

/// Marks anomalies: a sample more than `z` robust deviations of the
/// one-step changes above the last accepted value.
fn guard(values: &[f64], z: f64, sustained: usize) -> Guarded {
    let mut out = Guarded {
        values: values.to_vec(),
        jumps: vec![false; values.len()],
        ignored: vec![false; values.len()],
        pending: 0,
    };
    let Some(&first) = values.first() else {
        return out;
    };
    // The mean absolute change, once more without the changes beyond the
    // first cut: a robust scale that a few spikes do not inflate.
    let changes: Vec<f64> = values.windows(2).map(|w| (w[1] - w[0]).abs()).collect();
    if changes.is_empty() {
        return out;
    }
    let mean = |cap: f64| {
        let kept: Vec<f64> = changes.iter().copied().filter(|&c| c <= cap).collect();
        kept.iter().sum::<f64>() / kept.len().max(1) as f64
    };
    let rough = mean(f64::INFINITY);
    let deviation = 1.25 * mean(z * 1.25 * rough);
    if deviation <= 0.0 {
        return out;
    }
    let mut base = first;
    let mut i = 1;
    while i < values.len() {
        if values[i] - base > z * deviation {
            let start = i;
            while i < values.len() && values[i] - base > z * deviation {
                i += 1;
            }
            let run = i - start;
            if run >= sustained {
                out.jumps[start] = true;
                base = values[i - 1];
            } else {
                for k in start..i {
                    out.values[k] = base;
                    out.ignored[k] = true;
                }
                if i == values.len() {
                    out.pending = run;
                }
            }
        } else {
            base = values[i];
            i += 1;
        }
    }
    out
}

/// One Holt forecaster replayed over a guarded history.
struct Holt {
    level: f64,
    /// Per sample spacing.
    trend: f64,
    /// Its `ahead`-step forecasts' errors (actual − forecast), anomalies left out.
    errors: Vec<f64>,
}

impl Holt {
    fn replay(history: &Guarded, ahead: usize, alpha: f64, beta: f64) -> Holt {
        let values = &history.values;
        let (mut level, mut trend) = (values[0], 0.0);
        let mut pending: std::collections::VecDeque<(usize, f64)> = Default::default();
        let mut errors = Vec::with_capacity(values.len());
        for (i, &x) in values.iter().enumerate() {
            if history.jumps[i] {
                // A sustained change: start from it rather than chase it.
                (level, trend) = (x, 0.0);
                pending.clear();
            }
            while pending.front().is_some_and(|&(due, _)| due <= i) {
                let (due, forecast) = pending.pop_front().expect("checked above");
                if due == i && !history.ignored[i] {
                    errors.push(x - forecast);
                }
            }
            let predicted = level + trend;
            let error = x - predicted;
            level = predicted + alpha * error;
            trend += alpha * beta * error;
            pending.push_back((i + ahead, level + trend * ahead as f64));
        }
        Holt {
            level,
            trend,
            errors,
        }
    }

    fn rms(&self) -> f64 {
        if self.errors.is_empty() {
            return f64::INFINITY;
        }
        (self.errors.iter().map(|e| e * e).sum::<f64>() / self.errors.len() as f64).sqrt()
    }
}

export_predictor!(Adaptive);

#[cfg(test)]
mod tests;
