//! The safety layer: native rules that bound what any policy can do to a
//! workload. A policy proposes; this layer decides what is applied.
//!
//! Order of the rules in [`SafetyLayer::evaluate`]: failure handling and
//! fallback → reject absurd output → clamp to `[min, max]` → stabilization
//! windows → max step per action → max actions per sliding window → bounds
//! again (the configured bounds always win over step limits).

mod behavior;
mod rate;
mod stabilization;

pub use behavior::{ActionWindow, Backoff, Behavior, DirectionRules, Fallback};

use rate::ActionLog;
use stabilization::Recommendations;

/// A decider's output before the safety layer, or why there is none.
#[derive(Debug, Clone, PartialEq)]
pub enum Proposal {
    /// The policy asked for this many replicas.
    Desired(u32),
    /// No usable decision this tick (policy error, trap, timeout, unavailable metric…).
    Failed(String),
}

/// A rule that changed or held the policy's proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Limit {
    /// Raised to `minReplicas`.
    ClampedToMin,
    /// Lowered to `maxReplicas`.
    ClampedToMax,
    /// Held back by the scale-up stabilization window.
    ScaleUpStabilized,
    /// Held back by the scale-down stabilization window.
    ScaleDownStabilized,
    /// Cut to the largest step one action may take.
    StepLimited,
    /// Held because the sliding window's actions are used up.
    ActionRateLimited,
    /// Held because the policy failed.
    HeldOnFailure,
    /// Set by the fallback after too many consecutive failures.
    Fallback,
}

/// What the safety layer lets through.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The replica count to run; equal to the current count means no action.
    pub replicas: u32,
    /// The rules that shaped it, in the order they applied.
    pub limits: Vec<Limit>,
}

/// The safety state of one target.
#[derive(Debug, Clone)]
pub struct SafetyLayer {
    behavior: Behavior,
    min: u32,
    max: u32,
    recommendations: Recommendations,
    actions: ActionLog,
    consecutive_failures: u32,
}

impl SafetyLayer {
    /// A safety layer for a target bounded by `[min, max]`.
    pub fn new(behavior: Behavior, min: u32, max: u32) -> Self {
        SafetyLayer {
            behavior,
            min,
            max: max.max(min),
            recommendations: Recommendations::default(),
            actions: ActionLog::default(),
            consecutive_failures: 0,
        }
    }

    /// Changes the bounds and rules, keeping the recent recommendations and
    /// actions so a spec edit does not reopen the stabilization windows.
    pub fn reconfigure(&mut self, behavior: Behavior, min: u32, max: u32) {
        self.behavior = behavior;
        self.min = min;
        self.max = max.max(min);
    }

    /// The largest output treated as a real answer; above it the policy is
    /// assumed broken (an overflow, a unit mistake) rather than clamped to
    /// `maxReplicas`, which would scale a workload to its ceiling on a bug.
    pub fn absurd_limit(&self) -> u32 {
        self.max.saturating_mul(10).max(1000)
    }

    /// How many evaluations in a row have failed.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Bounds `proposal` for a target now running `current` replicas.
    pub fn evaluate(&mut self, now_ms: u64, current: u32, proposal: &Proposal) -> Verdict {
        let mut limits = Vec::new();
        let desired = match proposal {
            Proposal::Desired(d) if *d <= self.absurd_limit() => {
                self.consecutive_failures = 0;
                Some(*d)
            }
            _ => {
                self.consecutive_failures += 1;
                None
            }
        };

        let target = match desired {
            Some(d) => {
                let clamped = self.clamp(d, &mut limits);
                self.stabilize(now_ms, current, clamped, &mut limits)
            }
            None => match self.behavior.fallback.replicas {
                Some(n) if self.consecutive_failures >= self.behavior.fallback.after_failures => {
                    limits.push(Limit::Fallback);
                    self.clamp(n, &mut limits)
                }
                _ => {
                    limits.push(Limit::HeldOnFailure);
                    current
                }
            },
        };

        let stepped = self.limit_step(current, target, &mut limits);
        let rated =
            if stepped != current && !self.actions.allows(now_ms, &self.behavior.max_actions) {
                limits.push(Limit::ActionRateLimited);
                current
            } else {
                stepped
            };
        let replicas = rated.clamp(self.min, self.max);
        if replicas != rated {
            limits.push(if replicas > rated {
                Limit::ClampedToMin
            } else {
                Limit::ClampedToMax
            });
        }
        Verdict { replicas, limits }
    }

    /// Starts a layer that takes over a target mid-flight (a new leader, a
    /// restart): the current count counts as a recommendation made now, so
    /// nothing scales down before a full window has passed, and the last
    /// known scale action counts against the action window.
    pub fn seed(&mut self, now_ms: u64, current: u32, last_action_ms: Option<u64>) {
        self.recommendations.seed(now_ms, current);
        if let Some(t) = last_action_ms {
            self.actions
                .record(t.min(now_ms), &self.behavior.max_actions);
        }
    }

    /// Records that a scale action was applied at `now_ms`, for the action window.
    pub fn record_action(&mut self, now_ms: u64) {
        self.actions.record(now_ms, &self.behavior.max_actions);
    }

    fn clamp(&self, desired: u32, limits: &mut Vec<Limit>) -> u32 {
        if desired < self.min {
            limits.push(Limit::ClampedToMin);
        } else if desired > self.max {
            limits.push(Limit::ClampedToMax);
        }
        desired.clamp(self.min, self.max)
    }

    fn stabilize(
        &mut self,
        now_ms: u64,
        current: u32,
        desired: u32,
        limits: &mut Vec<Limit>,
    ) -> u32 {
        let up = self.behavior.scale_up.stabilization_ms();
        let down = self.behavior.scale_down.stabilization_ms();
        let stable = self
            .recommendations
            .stabilize(now_ms, current, desired, up, down);
        if stable < desired {
            limits.push(Limit::ScaleUpStabilized);
        } else if stable > desired {
            limits.push(Limit::ScaleDownStabilized);
        }
        stable
    }

    fn limit_step(&self, current: u32, target: u32, limits: &mut Vec<Limit>) -> u32 {
        let limited = if target > current {
            match self.behavior.scale_up.max_step_up(current) {
                Some(step) => target.min(current.saturating_add(step)),
                None => target,
            }
        } else {
            match self.behavior.scale_down.max_step_down(current) {
                Some(step) => target.max(current.saturating_sub(step)),
                None => target,
            }
        };
        if limited != target {
            limits.push(Limit::StepLimited);
        }
        limited
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(behavior: Behavior) -> SafetyLayer {
        SafetyLayer::new(behavior, 2, 20)
    }

    fn free() -> Behavior {
        Behavior::unrestricted()
    }

    #[test]
    fn a_seeded_layer_waits_a_full_window_before_scaling_down() {
        let mut b = free();
        b.scale_down.stabilization_seconds = 300;
        let mut s = layer(b);
        s.seed(1_000_000, 10, None);
        assert_eq!(
            s.evaluate(1_015_000, 10, &Proposal::Desired(4)).replicas,
            10
        );
        assert_eq!(s.evaluate(1_301_000, 10, &Proposal::Desired(4)).replicas, 4);
    }

    #[test]
    fn clamps_to_bounds() {
        let mut s = layer(free());
        assert_eq!(s.evaluate(0, 5, &Proposal::Desired(50)).replicas, 20);
        assert_eq!(s.evaluate(0, 5, &Proposal::Desired(0)).replicas, 2);
        let v = s.evaluate(0, 5, &Proposal::Desired(30));
        assert_eq!(v.limits, [Limit::ClampedToMax]);
    }

    #[test]
    fn absurd_output_is_a_failure_not_a_scale_to_max() {
        let mut s = layer(free());
        let v = s.evaluate(0, 5, &Proposal::Desired(u32::MAX));
        assert_eq!(v.replicas, 5);
        assert_eq!(v.limits, [Limit::HeldOnFailure]);
        assert_eq!(s.consecutive_failures(), 1);
    }

    #[test]
    fn a_current_count_outside_new_bounds_is_brought_in() {
        let mut s = layer(free());
        assert_eq!(
            s.evaluate(0, 40, &Proposal::Failed("x".into())).replicas,
            20
        );
        assert_eq!(s.evaluate(0, 1, &Proposal::Failed("x".into())).replicas, 2);
    }

    #[test]
    fn scale_down_waits_for_its_window() {
        let mut b = free();
        b.scale_down.stabilization_seconds = 60;
        let mut s = layer(b);
        assert_eq!(s.evaluate(0, 10, &Proposal::Desired(10)).replicas, 10);
        // Load drops: the 10 seen within the last minute holds the count.
        let v = s.evaluate(15_000, 10, &Proposal::Desired(4));
        assert_eq!(v.replicas, 10);
        assert_eq!(v.limits, [Limit::ScaleDownStabilized]);
        assert_eq!(s.evaluate(45_000, 10, &Proposal::Desired(4)).replicas, 10);
        // Past the window only 4s remain.
        assert_eq!(s.evaluate(61_000, 10, &Proposal::Desired(4)).replicas, 4);
    }

    #[test]
    fn scale_up_window_takes_the_lowest_recent_recommendation() {
        let mut b = free();
        b.scale_up.stabilization_seconds = 30;
        let mut s = layer(b);
        assert_eq!(s.evaluate(0, 5, &Proposal::Desired(5)).replicas, 5);
        let v = s.evaluate(10_000, 5, &Proposal::Desired(12));
        assert_eq!(v.replicas, 5);
        assert_eq!(v.limits, [Limit::ScaleUpStabilized]);
        assert_eq!(s.evaluate(20_000, 5, &Proposal::Desired(9)).replicas, 5);
        // At 31 s the 5 from t=0 has left the window; the lowest left is 9.
        assert_eq!(s.evaluate(31_000, 5, &Proposal::Desired(12)).replicas, 9);
    }

    #[test]
    fn steps_are_limited_by_the_larger_of_pods_and_percent() {
        let mut b = free();
        b.scale_up.max_step_pods = Some(4);
        b.scale_up.max_step_percent = Some(100.0);
        b.scale_down.max_step_pods = Some(1);
        let mut s = SafetyLayer::new(b, 1, 100);
        // From 2: max(4, 2) = 4 more.
        assert_eq!(s.evaluate(0, 2, &Proposal::Desired(50)).replicas, 6);
        // From 10: max(4, 10) = 10 more.
        let v = s.evaluate(1, 10, &Proposal::Desired(50));
        assert_eq!(
            (v.replicas, v.limits.as_slice()),
            (20, &[Limit::StepLimited][..])
        );
        assert_eq!(s.evaluate(2, 10, &Proposal::Desired(3)).replicas, 9);
    }

    #[test]
    fn percent_step_down_matches_hpa_rounding() {
        let mut b = free();
        b.scale_down.max_step_percent = Some(50.0);
        let mut s = SafetyLayer::new(b, 1, 100);
        // HPA keeps at least ceil(7 × 0.5) = 4.
        assert_eq!(s.evaluate(0, 7, &Proposal::Desired(1)).replicas, 4);
    }

    #[test]
    fn action_window_caps_changes() {
        let mut b = free();
        b.max_actions = Some(ActionWindow {
            count: 2,
            window_seconds: 60,
        });
        let mut s = layer(b);
        for (t, want) in [(0, 6), (10_000, 7)] {
            let v = s.evaluate(t, want - 1, &Proposal::Desired(want));
            assert_eq!(v.replicas, want);
            s.record_action(t);
        }
        let v = s.evaluate(20_000, 7, &Proposal::Desired(8));
        assert_eq!(v.replicas, 7);
        assert_eq!(v.limits, [Limit::ActionRateLimited]);
        // Holding still is never limited.
        assert_eq!(s.evaluate(30_000, 7, &Proposal::Desired(7)).limits, []);
        // The first action leaves the window at 60 s.
        assert_eq!(s.evaluate(60_001, 7, &Proposal::Desired(8)).replicas, 8);
    }

    #[test]
    fn failures_hold_then_fall_back_to_fixed_replicas() {
        let mut b = free();
        b.fallback = Fallback {
            after_failures: 3,
            replicas: Some(12),
        };
        b.scale_up.max_step_pods = Some(100);
        let mut s = layer(b);
        let fail = Proposal::Failed("metric unavailable".into());
        for t in 0..2 {
            let v = s.evaluate(t, 5, &fail);
            assert_eq!(
                (v.replicas, v.limits.as_slice()),
                (5, &[Limit::HeldOnFailure][..])
            );
        }
        let v = s.evaluate(3, 5, &fail);
        assert_eq!(
            (v.replicas, v.limits.as_slice()),
            (12, &[Limit::Fallback][..])
        );
        // One good decision resets the count.
        assert_eq!(s.evaluate(4, 12, &Proposal::Desired(6)).replicas, 6);
        assert_eq!(s.evaluate(5, 6, &fail).replicas, 6);
    }

    #[test]
    fn fallback_still_obeys_step_limits() {
        let mut b = free();
        b.fallback = Fallback {
            after_failures: 1,
            replicas: Some(20),
        };
        b.scale_up.max_step_pods = Some(2);
        let mut s = layer(b);
        let v = s.evaluate(0, 5, &Proposal::Failed("x".into()));
        assert_eq!(v.replicas, 7);
        assert_eq!(v.limits, [Limit::Fallback, Limit::StepLimited]);
    }

    #[test]
    fn hold_fallback_never_moves() {
        let mut b = free();
        b.fallback = Fallback {
            after_failures: 1,
            replicas: None,
        };
        let mut s = layer(b);
        for t in 0..10 {
            assert_eq!(s.evaluate(t, 7, &Proposal::Failed("x".into())).replicas, 7);
        }
    }
}
