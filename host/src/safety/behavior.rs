//! The `behavior` settings of an autoscaler: how fast, how often and after
//! how long it may change a target, and what it does when policies fail.
//! The JSON shape here is the one the `WasmAutoscaler` spec uses.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Longest stabilization or action window (the HPA allows an hour too).
pub const MAX_WINDOW_SECONDS: u64 = 3600;
const MIN_BACKOFF_SECONDS: f64 = 0.05;
const MAX_BACKOFF_SECONDS: f64 = 60.0;
const MAX_ATTEMPTS: u32 = 10;

/// Limits on scaling, shared by every policy of a target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Behavior {
    pub scale_up: DirectionRules,
    pub scale_down: DirectionRules,
    /// At most this many scale actions within a sliding window; unlimited when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_actions: Option<ActionWindow>,
    pub fallback: Fallback,
    /// Retries of a failed scale request.
    pub backoff: Backoff,
}

impl Default for Behavior {
    /// The Kubernetes HPA's default behavior: scale up at once by up to
    /// max(4 pods, 100%) per action, scale down after a 300 s window.
    fn default() -> Self {
        Behavior {
            scale_up: DirectionRules {
                stabilization_seconds: 0,
                max_step_pods: Some(4),
                max_step_percent: Some(100.0),
            },
            scale_down: DirectionRules {
                stabilization_seconds: 300,
                max_step_pods: None,
                max_step_percent: Some(100.0),
            },
            max_actions: None,
            fallback: Fallback::default(),
            backoff: Backoff::default(),
        }
    }
}

impl Behavior {
    /// No stabilization and no step or action limits (tests and experiments).
    pub fn unrestricted() -> Self {
        Behavior {
            scale_up: DirectionRules::default(),
            scale_down: DirectionRules::default(),
            max_actions: None,
            fallback: Fallback::default(),
            backoff: Backoff::default(),
        }
    }

    /// Checks the settings, naming the first bad field.
    pub fn validate(&self) -> Result<(), String> {
        for (name, rules) in [("scaleUp", &self.scale_up), ("scaleDown", &self.scale_down)] {
            // Each tick inside the window is remembered: the window bounds that memory.
            if rules.stabilization_seconds > MAX_WINDOW_SECONDS {
                return Err(format!(
                    "behavior.{name}.stabilizationSeconds must be at most {MAX_WINDOW_SECONDS}, got {}",
                    rules.stabilization_seconds
                ));
            }
            if let Some(p) = rules.max_step_percent {
                if !(p.is_finite() && p > 0.0) {
                    return Err(format!(
                        "behavior.{name}.maxStepPercent must be > 0, got {p}"
                    ));
                }
            }
            if rules.max_step_pods == Some(0) {
                return Err(format!("behavior.{name}.maxStepPods must be ≥ 1"));
            }
        }
        if let Some(w) = &self.max_actions {
            if w.count == 0 || w.window_seconds == 0 || w.window_seconds > MAX_WINDOW_SECONDS {
                return Err(format!(
                    "behavior.maxActions needs count ≥ 1 and 1 ≤ windowSeconds ≤ {MAX_WINDOW_SECONDS}"
                ));
            }
        }
        let b = &self.backoff;
        // The floor and the attempt cap bound the requests a failing target sends per tick.
        if !(b.initial_seconds.is_finite()
            && b.initial_seconds >= MIN_BACKOFF_SECONDS
            && b.max_seconds.is_finite()
            && b.max_seconds >= b.initial_seconds
            && b.max_seconds <= MAX_BACKOFF_SECONDS)
        {
            return Err(format!(
                "behavior.backoff needs {MIN_BACKOFF_SECONDS} ≤ initialSeconds ≤ maxSeconds ≤ {MAX_BACKOFF_SECONDS}"
            ));
        }
        if !(1..=MAX_ATTEMPTS).contains(&b.attempts) {
            return Err(format!(
                "behavior.backoff.attempts must be in 1..={MAX_ATTEMPTS}, got {}",
                b.attempts
            ));
        }
        if self.fallback.after_failures == 0 {
            return Err("behavior.fallback.afterFailures must be ≥ 1".into());
        }
        Ok(())
    }
}

/// Rules for one direction of scaling.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct DirectionRules {
    /// The decision applied is the least extreme one seen within this many seconds (at most 3600).
    #[schemars(range(max = 3600))]
    pub stabilization_seconds: u64,
    /// One action may add or remove at most this many pods…
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_step_pods: Option<u32>,
    /// …or this percentage of the current replicas, whichever allows more.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_step_percent: Option<f64>,
}

impl DirectionRules {
    pub(super) fn stabilization_ms(&self) -> u64 {
        self.stabilization_seconds.saturating_mul(1000)
    }

    /// Most pods one scale-up from `current` may add; `None` for no limit.
    pub(super) fn max_step_up(&self, current: u32) -> Option<u32> {
        let by_percent = self
            .max_step_percent
            .map(|p| (f64::from(current) * p / 100.0).ceil() as u32);
        max_of(self.max_step_pods, by_percent)
    }

    /// Most pods one scale-down from `current` may remove; `None` for no limit.
    pub(super) fn max_step_down(&self, current: u32) -> Option<u32> {
        // As HPA: a percent policy keeps at least ceil(current × (1 − p)).
        let by_percent = self.max_step_percent.map(|p| {
            let keep = (f64::from(current) * (1.0 - p / 100.0)).ceil().max(0.0) as u32;
            current.saturating_sub(keep)
        });
        max_of(self.max_step_pods, by_percent)
    }
}

fn max_of(a: Option<u32>, b: Option<u32>) -> Option<u32> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// A cap on scale actions within a sliding window ("at most 3 changes a minute").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ActionWindow {
    #[schemars(range(min = 1))]
    pub count: u32,
    /// At most 3600.
    #[schemars(range(min = 1, max = 3600))]
    pub window_seconds: u64,
}

/// What happens after consecutive failed evaluations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Fallback {
    /// How many failed evaluations in a row trigger the fallback.
    pub after_failures: u32,
    /// Scale to this many replicas (within bounds and step limits); hold when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
}

impl Default for Fallback {
    fn default() -> Self {
        Fallback {
            after_failures: 3,
            replicas: None,
        }
    }
}

/// Exponential backoff between attempts of a failed scale request within one tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Backoff {
    /// Wait before the first retry (at least 0.05); doubled after each failure.
    #[schemars(range(min = 0.05))]
    pub initial_seconds: f64,
    /// Longest wait between two attempts (at most 60).
    #[schemars(range(max = 60.0))]
    pub max_seconds: f64,
    /// Most attempts per tick, the first included (1 to 10).
    #[schemars(range(min = 1, max = 10))]
    pub attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial_seconds: 0.2,
            max_seconds: 5.0,
            attempts: 4,
        }
    }
}

impl Backoff {
    /// The wait after the `failures`-th failed attempt (1-based).
    pub fn delay(&self, failures: u32) -> Duration {
        let factor = 2f64.powi(failures.saturating_sub(1).min(30) as i32);
        Duration::from_secs_f64((self.initial_seconds * factor).min(self.max_seconds))
    }
}
