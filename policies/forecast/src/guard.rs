//! The anomaly guard: an EWMA of the load metric and of its variance, kept in
//! the decider's `state`; a value more than `zScore` deviations from the EWMA
//! is an anomaly (the seeds' EWMA + Z-score).

use serde::Deserialize;

/// Values the guard learns from before it calls any of them an anomaly.
pub const WARMUP_VALUES: u32 = 10;
/// The smallest deviation, as a fraction of the level: without it the first
/// move of a metric that was flat would be infinitely many deviations away.
const MIN_DEVIATION: f64 = 0.02;

/// Configuration of the anomaly guard (`anomaly` in the decider's config).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AnomalyConfig {
    /// A value this many deviations from the EWMA is an anomaly (≥ 2).
    #[serde(default = "default_z_score")]
    pub z_score: f64,
    /// The EWMA's smoothing factor, in (0, 1).
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Anomalies in a row, on the same side, after which they are the new
    /// level and are followed at once (1..=1000; 1 follows every one).
    #[serde(default = "default_sustained")]
    pub sustained: u32,
}

fn default_z_score() -> f64 {
    4.0
}

fn default_alpha() -> f64 {
    0.1
}

fn default_sustained() -> u32 {
    3
}

impl AnomalyConfig {
    /// The error naming the first field out of range, if any.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.z_score.is_finite() && self.z_score >= 2.0) {
            return Err(format!(
                "`anomaly.zScore` must be a number ≥ 2, got {}",
                self.z_score
            ));
        }
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            return Err(format!(
                "`anomaly.alpha` must be in (0, 1), got {}",
                self.alpha
            ));
        }
        if !(1..=1000).contains(&self.sustained) {
            return Err(format!(
                "`anomaly.sustained` must be in 1..=1000, got {}",
                self.sustained
            ));
        }
        Ok(())
    }
}

/// What the guard made of one value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// An ordinary value: it moved the EWMA.
    Normal,
    /// An anomaly not (yet) believed: the EWMA stands at `level`, and this is
    /// the `run`-th anomaly in a row on this side.
    Held { z: f64, level: f64, run: u32 },
    /// The `run`-th anomaly in a row on the same side: the new level.
    Followed { run: u32 },
}

/// The guard's memory between calls.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Guard {
    pub level: f64,
    pub variance: f64,
    /// Values learnt from, up to [`WARMUP_VALUES`] (counting stops there).
    pub seen: u32,
    /// Anomalies in a row: positive above the level, negative below.
    pub run: i32,
}

impl Guard {
    /// Judges `value` and learns from it.
    pub fn observe(&mut self, config: &AnomalyConfig, value: f64) -> Verdict {
        if self.seen == 0
            || !(self.level.is_finite() && self.variance.is_finite() && self.variance >= 0.0)
        {
            *self = Guard {
                level: value,
                variance: 0.0,
                seen: 1,
                run: 0,
            };
            return Verdict::Normal;
        }
        let deviation = self
            .variance
            .sqrt()
            .max(MIN_DEVIATION * self.level.abs())
            .max(f64::MIN_POSITIVE);
        let z = (value - self.level) / deviation;
        if self.seen >= WARMUP_VALUES && z.abs() > config.z_score {
            let side = if z > 0.0 { 1 } else { -1 };
            let run = if self.run.signum() == side {
                self.run.unsigned_abs() + 1
            } else {
                1
            };
            if run < config.sustained {
                self.run = side * run as i32;
                return Verdict::Held {
                    z,
                    level: self.level,
                    run,
                };
            }
            // A shift that lasts: start from it, keeping the noise learnt so far.
            self.level = value;
            self.run = 0;
            return Verdict::Followed { run };
        }
        self.run = 0;
        let diff = value - self.level;
        self.level += config.alpha * diff;
        self.variance = (1.0 - config.alpha) * (self.variance + config.alpha * diff * diff);
        self.seen = (self.seen + 1).min(WARMUP_VALUES);
        Verdict::Normal
    }
}
