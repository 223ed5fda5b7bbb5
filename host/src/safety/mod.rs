//! The safety layer: native rules that bound what any policy can do to a
//! workload. A policy proposes; this layer decides what is applied.
//!
//! Order of the rules in [`SafetyLayer::evaluate`]: scale to zero (a target
//! at zero stays there or is activated; one idle long enough goes there) →
//! failure handling and fallback → reject absurd output → clamp to
//! `[min, max]` → a forecast floor (`replicas`) → stabilization windows →
//! max step per action → max actions per sliding window → bounds again (the
//! configured bounds always win over step limits).

mod behavior;
mod rate;
mod stabilization;
mod zero;

pub use behavior::{ActionWindow, Backoff, Behavior, DirectionRules, Fallback};
pub use zero::{Transition, ZeroRules};

use rate::ActionLog;
use stabilization::Recommendations;
use zero::{Activity, IdleClock};

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
    /// Raised to the replicas a forecast of `replicas` asks for (a schedule).
    ForecastFloor,
    /// Kept at zero: no activation metric is above its threshold.
    HeldAtZero,
    /// Woken from zero at once by an activation metric.
    Activated,
    /// Sent to zero after the idle period.
    Idled,
}

/// What the safety layer lets through.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The replica count to run; equal to the current count means no action.
    pub replicas: u32,
    /// The rules that shaped it, in the order they applied.
    pub limits: Vec<Limit>,
    /// A move to or from zero, when this verdict makes one.
    pub transition: Option<Transition>,
}

/// What the safety layer weighs besides the proposal.
#[derive(Debug, Clone, Copy, Default)]
pub struct Signals<'a> {
    /// This tick's metric values (`None`: unavailable), for the activation thresholds.
    pub metrics: &'a [(String, Option<f64>)],
    /// At least this many replicas, from a forecast of `replicas` (a schedule).
    pub floor: Option<u32>,
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
    zero: ZeroRules,
    idle: IdleClock,
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
            zero: ZeroRules::default(),
            idle: IdleClock::default(),
        }
    }

    /// Lets the target run no pods (only with `min` 0 and an activation metric).
    pub fn with_zero(mut self, zero: ZeroRules) -> Self {
        self.zero = zero;
        self
    }

    /// Changes the bounds and rules, keeping the recent recommendations and
    /// actions so a spec edit does not reopen the stabilization windows.
    pub fn reconfigure(&mut self, behavior: Behavior, min: u32, max: u32, zero: ZeroRules) {
        self.behavior = behavior;
        self.min = min;
        self.max = max.max(min);
        self.zero = zero;
    }

    /// Whether the target may run no pods.
    fn zero_enabled(&self) -> bool {
        self.min == 0 && self.zero.enabled()
    }

    /// The fewest replicas a running target is kept at: with scale to zero,
    /// zero is reached only through the idle period, never by a decision.
    fn lower_bound(&self) -> u32 {
        if self.zero_enabled() {
            self.min.max(1)
        } else {
            self.min
        }
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
        self.evaluate_with(now_ms, current, proposal, &Signals::default())
    }

    /// [`SafetyLayer::evaluate`] with this tick's metrics and forecast floor.
    pub fn evaluate_with(
        &mut self,
        now_ms: u64,
        current: u32,
        proposal: &Proposal,
        signals: &Signals,
    ) -> Verdict {
        let zero = self.zero_enabled();
        let activity = if zero {
            self.zero.assess(signals.metrics)
        } else {
            Activity::Unknown
        };
        if zero && current == 0 {
            return self.at_zero(now_ms, proposal, activity, signals.floor);
        }
        let idle_due = zero && self.idle.tick(now_ms, &activity, self.zero.idle_ms);
        let verdict = self.running(now_ms, current, proposal, signals.floor);
        if idle_due && self.actions.allows(now_ms, &self.behavior.max_actions) {
            self.idle.reset();
            return Verdict {
                replicas: 0,
                limits: vec![Limit::Idled],
                transition: Some(Transition::Idled {
                    idle_ms: self.zero.idle_ms,
                }),
            };
        }
        verdict
    }

    /// A target at zero stays there unless an activation metric wakes it;
    /// then it goes to what was decided (at least one) at once.
    fn at_zero(
        &mut self,
        now_ms: u64,
        proposal: &Proposal,
        activity: Activity,
        floor: Option<u32>,
    ) -> Verdict {
        let desired = self.accept(proposal);
        let Activity::Active {
            metric,
            value,
            threshold,
        } = activity
        else {
            let limits = if desired.unwrap_or(0) > 0 || floor.unwrap_or(0) > 0 {
                vec![Limit::HeldAtZero]
            } else {
                Vec::new()
            };
            return Verdict {
                replicas: 0,
                limits,
                transition: None,
            };
        };
        self.idle.reset();
        let replicas = desired
            .unwrap_or(1)
            .max(floor.unwrap_or(0))
            .clamp(1, self.max);
        // Later stabilization windows see the wake-up as a recommendation.
        self.recommendations.seed(now_ms, replicas);
        Verdict {
            replicas,
            limits: vec![Limit::Activated],
            transition: Some(Transition::Activated {
                metric,
                value,
                threshold,
            }),
        }
    }

    /// The proposal as a count, or `None` when it failed or is absurd (a failure).
    fn accept(&mut self, proposal: &Proposal) -> Option<u32> {
        match proposal {
            Proposal::Desired(d) if *d <= self.absurd_limit() => {
                self.consecutive_failures = 0;
                Some(*d)
            }
            _ => {
                self.consecutive_failures += 1;
                None
            }
        }
    }

    /// The rules for a running target.
    fn running(
        &mut self,
        now_ms: u64,
        current: u32,
        proposal: &Proposal,
        floor: Option<u32>,
    ) -> Verdict {
        let mut limits = Vec::new();
        let desired = self.accept(proposal);
        let target = match desired {
            Some(d) => {
                let mut clamped = self.clamp(d, &mut limits);
                if let Some(f) = floor.map(|f| f.min(self.max)) {
                    if f > clamped {
                        limits.push(Limit::ForecastFloor);
                        clamped = f;
                    }
                }
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
        let replicas = rated.clamp(self.lower_bound(), self.max);
        if replicas != rated {
            limits.push(if replicas > rated {
                Limit::ClampedToMin
            } else {
                Limit::ClampedToMax
            });
        }
        Verdict {
            replicas,
            limits,
            transition: None,
        }
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
        let min = self.lower_bound();
        if desired < min {
            limits.push(Limit::ClampedToMin);
        } else if desired > self.max {
            limits.push(Limit::ClampedToMax);
        }
        desired.clamp(min, self.max)
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

    /// A layer with `minReplicas` 0, woken by `queue` above 1, idle after 60 s.
    fn zero_layer(behavior: Behavior) -> SafetyLayer {
        SafetyLayer::new(behavior, 0, 20).with_zero(ZeroRules {
            activation: vec![("queue".into(), 1.0)],
            idle_ms: 60_000,
        })
    }

    fn queue(v: Option<f64>) -> Vec<(String, Option<f64>)> {
        vec![("queue".into(), v)]
    }

    fn at(s: &mut SafetyLayer, t: u64, current: u32, d: u32, q: Option<f64>) -> Verdict {
        let m = queue(q);
        let signals = Signals {
            metrics: &m,
            floor: None,
        };
        s.evaluate_with(t, current, &Proposal::Desired(d), &signals)
    }

    #[test]
    fn zero_holds_until_an_activation_metric_crosses_its_threshold() {
        // Limits that would otherwise hold a change: a long up-window, one
        // pod per step, one action an hour, and an action just taken.
        let mut b = free();
        b.scale_up.stabilization_seconds = 3600;
        b.scale_up.max_step_pods = Some(1);
        b.max_actions = Some(ActionWindow {
            count: 1,
            window_seconds: 3600,
        });
        let mut s = zero_layer(b);
        s.record_action(0);
        let v = at(&mut s, 1_000, 0, 5, Some(1.0));
        assert_eq!(
            (v.replicas, v.limits.clone()),
            (0, vec![Limit::HeldAtZero]),
            "at the threshold"
        );
        assert_eq!(
            at(&mut s, 2_000, 0, 5, None).replicas,
            0,
            "unavailable never wakes"
        );
        let v = at(&mut s, 3_000, 0, 5, Some(1.5));
        assert_eq!(v.replicas, 5, "what the decider wants, at once");
        assert_eq!(v.limits, [Limit::Activated]);
        assert!(
            matches!(v.transition, Some(Transition::Activated { ref metric, .. }) if metric == "queue")
        );
        // A failed or zero decision still wakes to one.
        let mut s = zero_layer(free());
        let m = queue(Some(3.0));
        let signals = Signals {
            metrics: &m,
            floor: None,
        };
        let v = s.evaluate_with(0, 0, &Proposal::Failed("no metric".into()), &signals);
        assert_eq!(v.replicas, 1);
        assert_eq!(at(&mut zero_layer(free()), 0, 0, 0, Some(3.0)).replicas, 1);
    }

    #[test]
    fn a_running_target_goes_to_zero_only_after_the_idle_period() {
        let mut s = zero_layer(free());
        // The decider says 0; with traffic the target keeps a pod.
        for t in 0..10 {
            let v = at(&mut s, t * 15_000, 3, 0, Some(4.0));
            assert_eq!(v.replicas, 1, "traffic at {t}");
            assert!(v.transition.is_none());
        }
        // Idle from 150 s: zero at 210 s, not before; a gap restarts the clock.
        assert_eq!(at(&mut s, 150_000, 1, 0, Some(0.0)).replicas, 1);
        assert_eq!(
            at(&mut s, 165_000, 1, 0, None).replicas,
            1,
            "unavailable is not idle"
        );
        assert_eq!(at(&mut s, 180_000, 1, 0, Some(0.0)).replicas, 1);
        assert_eq!(
            at(&mut s, 225_000, 1, 0, Some(0.0)).replicas,
            1,
            "45 s idle"
        );
        let v = at(&mut s, 240_000, 1, 0, Some(0.0));
        assert_eq!(v.replicas, 0, "60 s idle");
        assert_eq!(v.transition, Some(Transition::Idled { idle_ms: 60_000 }));
        // Without an activation metric, min 0 is only a bound: no zero logic.
        let mut plain = SafetyLayer::new(free(), 0, 20);
        assert_eq!(plain.evaluate(0, 3, &Proposal::Desired(0)).replicas, 0);
    }

    #[test]
    fn a_forecast_floor_raises_the_decision_within_bounds() {
        let mut s = layer(free());
        let floor = |f| Signals {
            metrics: &[],
            floor: Some(f),
        };
        let v = s.evaluate_with(0, 5, &Proposal::Desired(4), &floor(12));
        assert_eq!((v.replicas, v.limits), (12, vec![Limit::ForecastFloor]));
        assert_eq!(
            s.evaluate_with(0, 5, &Proposal::Desired(15), &floor(12))
                .replicas,
            15
        );
        assert_eq!(
            s.evaluate_with(0, 5, &Proposal::Desired(4), &floor(99))
                .replicas,
            20
        );
    }
}
