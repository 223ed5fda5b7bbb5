//! Scale to zero and back: an idle workload runs no pods, and wakes as soon
//! as one of its activation metrics crosses its threshold.
//!
//! At zero replicas nothing but an activation metric can wake the target
//! (with no pods there is no utilization and nothing to scrape), so the
//! rules here, not the decider, decide about zero: a target at zero stays
//! there until an activation metric is above its threshold, and then goes to
//! at least one replica at once — no stabilization window, step or action
//! limit holds a workload at zero while it has traffic. A running target
//! goes to zero only after every activation metric has been at or below its
//! threshold, with a value, for the whole idle period; an unavailable metric
//! never counts as idle.

/// When a target may run no pods.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ZeroRules {
    /// (metric, threshold): above its threshold a metric activates the target.
    pub activation: Vec<(String, f64)>,
    /// How long every activation metric must stay at or below its threshold before zero.
    pub idle_ms: u64,
}

/// A move to or from zero, and why.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// Woken from zero by `metric` at `value`, above `threshold`.
    Activated {
        metric: String,
        value: f64,
        threshold: f64,
    },
    /// Sent to zero after every activation metric stayed idle for `idle_ms`.
    Idled { idle_ms: u64 },
}

impl std::fmt::Display for Transition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transition::Activated {
                metric,
                value,
                threshold,
            } => write!(
                f,
                "activated: {metric} is {value}, above its activation threshold {threshold}"
            ),
            Transition::Idled { idle_ms } => write!(
                f,
                "idled: every activation metric at or below its threshold for {} s",
                idle_ms / 1000
            ),
        }
    }
}

/// What the activation metrics say this tick.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Activity {
    /// This metric is above its threshold.
    Active {
        metric: String,
        value: f64,
        threshold: f64,
    },
    /// Every activation metric has a value at or below its threshold.
    Idle,
    /// Some activation metric has no value: neither wake nor idle on it.
    Unknown,
}

impl ZeroRules {
    /// Whether the rules do anything (some metric can activate the target).
    pub fn enabled(&self) -> bool {
        !self.activation.is_empty()
    }

    /// Reads the activation metrics among this tick's `metrics`.
    pub(super) fn assess(&self, metrics: &[(String, Option<f64>)]) -> Activity {
        let mut unknown = false;
        for (name, threshold) in &self.activation {
            let value = metrics
                .iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, v)| *v)
                .filter(|v| v.is_finite());
            match value {
                Some(v) if v > *threshold => {
                    return Activity::Active {
                        metric: name.clone(),
                        value: v,
                        threshold: *threshold,
                    }
                }
                Some(_) => {}
                None => unknown = true,
            }
        }
        if unknown {
            Activity::Unknown
        } else {
            Activity::Idle
        }
    }
}

/// Since when every activation metric has been idle.
#[derive(Debug, Clone, Default)]
pub(super) struct IdleClock {
    since_ms: Option<u64>,
}

impl IdleClock {
    /// Records this tick's activity; returns whether the idle period has passed.
    pub(super) fn tick(&mut self, now_ms: u64, activity: &Activity, idle_ms: u64) -> bool {
        match activity {
            Activity::Idle => {
                let since = *self.since_ms.get_or_insert(now_ms);
                now_ms.saturating_sub(since) >= idle_ms
            }
            _ => {
                self.since_ms = None;
                false
            }
        }
    }

    /// Starts over (the target just woke).
    pub(super) fn reset(&mut self) {
        self.since_ms = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> ZeroRules {
        ZeroRules {
            activation: vec![("queue".into(), 1.0), ("rps".into(), 0.5)],
            idle_ms: 10_000,
        }
    }

    fn values(queue: Option<f64>, rps: Option<f64>) -> Vec<(String, Option<f64>)> {
        vec![("queue".into(), queue), ("rps".into(), rps)]
    }

    #[test]
    fn any_metric_above_its_threshold_activates() {
        let r = rules();
        assert_eq!(r.assess(&values(Some(0.0), Some(0.0))), Activity::Idle);
        assert_eq!(
            r.assess(&values(Some(1.0), Some(0.5))),
            Activity::Idle,
            "at the threshold is idle"
        );
        assert!(
            matches!(r.assess(&values(Some(0.0), Some(0.6))), Activity::Active { metric, .. } if metric == "rps")
        );
        assert!(
            matches!(r.assess(&values(None, Some(3.0))), Activity::Active { .. }),
            "one is enough"
        );
        assert_eq!(
            r.assess(&values(None, Some(0.0))),
            Activity::Unknown,
            "a missing value is not idle"
        );
        assert_eq!(
            r.assess(&values(Some(f64::NAN), Some(0.0))),
            Activity::Unknown
        );
    }

    #[test]
    fn the_idle_period_runs_only_while_everything_is_idle() {
        let mut clock = IdleClock::default();
        let idle = Activity::Idle;
        assert!(!clock.tick(0, &idle, 10_000));
        assert!(!clock.tick(9_999, &idle, 10_000));
        assert!(
            !clock.tick(10_500, &Activity::Unknown, 10_000),
            "a gap restarts it"
        );
        assert!(!clock.tick(11_000, &idle, 10_000));
        assert!(clock.tick(21_000, &idle, 10_000));
    }
}
