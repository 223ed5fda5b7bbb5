//! The tick pipeline, the same in the operator, the offline replay and the
//! benchmarks: observation → history → predictor → decider → safety layer.
//! Only where observations come from and what applies the verdict differ.

mod forecasts;
mod history;
mod long_history;

pub use forecasts::REPLICAS;
pub use history::Histories;
pub use long_history::{LongHistories, LongHistorySpec, MAX_LONG_HISTORY_POINTS};

use std::sync::Arc;

use crate::runtime::bindings::{
    DecideRequest, ForecastRequest, MetricForecast, MetricValue, TargetState,
};
use crate::runtime::{Policy, Session};
use crate::safety::{Behavior, Proposal, SafetyLayer, Signals, Verdict, ZeroRules};

/// Most bytes of opaque policy state kept between calls.
pub const MAX_STATE_BYTES: usize = 64 << 10;
/// Most bytes of a decision's reason kept for status and events.
pub const MAX_REASON_BYTES: usize = 1024;
/// Most forecast points accepted per metric.
pub const MAX_FORECAST_POINTS: usize = 10_000;

/// A policy and its configuration, as a target uses it.
#[derive(Clone)]
pub struct PolicySpec {
    pub policy: Policy,
    /// The policy's JSON configuration, as text.
    pub config: String,
}

/// Everything that shapes one target's evaluations.
#[derive(Clone)]
pub struct TargetSpec {
    pub min_replicas: u32,
    pub max_replicas: u32,
    /// Time between evaluations; also the step of forecasts.
    pub interval_ms: u64,
    /// Pods younger than this count as warming; predictors forecast at least this far ahead.
    pub warmup_ms: u64,
    /// Samples kept per metric for predictors.
    pub history_len: usize,
    /// Each metric's long history at a coarse step, if the target keeps one.
    pub long_history: Option<LongHistorySpec>,
    /// The metrics the target is evaluated on.
    pub metrics: Vec<String>,
    pub predictor: Option<PolicySpec>,
    /// A second predictor (a schedule) whose forecasts are combined with the predictor's by max.
    pub schedule: Option<PolicySpec>,
    pub decider: PolicySpec,
    pub behavior: Behavior,
    /// When the target may run no pods.
    pub zero: ZeroRules,
}

/// What the host observed about a target at one tick.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub now_ms: u64,
    /// Replicas the workload is asked to run.
    pub current_replicas: u32,
    /// Ready replicas past their warm-up.
    pub ready_replicas: u32,
    /// Replicas starting or warming up.
    pub warming_replicas: u32,
    /// The latest value of each metric; `None` when unavailable.
    pub metrics: Vec<(String, Option<f64>)>,
}

/// What one evaluation produced.
#[derive(Debug, Clone)]
pub struct TickReport {
    pub now_ms: u64,
    pub current_replicas: u32,
    /// The decider's proposal before the safety layer.
    pub proposal: Proposal,
    /// The decider's reason, or why there is no decision.
    pub reason: String,
    /// What the safety layer lets through.
    pub verdict: Verdict,
    /// The predictor's and the schedule's forecasts, combined by max (empty
    /// without either or when both failed).
    pub forecasts: Vec<MetricForecast>,
    /// Why the predictor (or the schedule) gave nothing usable, if it failed.
    pub predictor_error: Option<String>,
    /// Failed policy calls of this tick: role and error kind, for metrics.
    pub failures: Vec<(&'static str, &'static str)>,
}

impl TickReport {
    /// Whether the verdict changes the replica count.
    pub fn scales(&self) -> bool {
        self.verdict.replicas != self.current_replicas
    }
}

/// Applies a verdict to the target (the Kubernetes scale subresource, or the simulator).
pub trait Actuator {
    /// The error when scaling failed.
    type Error: std::fmt::Display;
    /// Sets the target's replica count.
    fn scale(&mut self, replicas: u32) -> Result<(), Self::Error>;
}

/// The evaluation state of one target: its policy sessions, histories,
/// policy state bytes and safety state.
pub struct Pipeline {
    spec: TargetSpec,
    predictor: Option<Forecaster>,
    schedule: Option<Forecaster>,
    decider: Session,
    histories: Histories,
    long_history: Option<LongHistories>,
    safety: SafetyLayer,
    decider_state: Option<Vec<u8>>,
}

/// A predictor's session and the state it returned last.
struct Forecaster {
    session: Session,
    state: Option<Vec<u8>>,
}

impl Forecaster {
    fn new(spec: Option<&PolicySpec>) -> Option<Self> {
        spec.map(|p| Forecaster {
            session: Session::new(p.policy.clone()),
            state: None,
        })
    }
}

impl Pipeline {
    /// A pipeline for one target.
    pub fn new(spec: TargetSpec) -> Self {
        Pipeline {
            predictor: Forecaster::new(spec.predictor.as_ref()),
            schedule: Forecaster::new(spec.schedule.as_ref()),
            decider: Session::new(spec.decider.policy.clone()),
            histories: Histories::new(spec.history_len, spec.metrics.iter().cloned()),
            long_history: spec
                .long_history
                .clone()
                .map(|l| LongHistories::new(l, &spec.metrics)),
            safety: SafetyLayer::new(spec.behavior.clone(), spec.min_replicas, spec.max_replicas)
                .with_zero(spec.zero.clone()),
            decider_state: None,
            spec,
        }
    }

    /// Changes the target's settings (a new spec or a swapped policy) without
    /// forgetting what was learned: histories, the safety layer's windows and
    /// action log, and the state of every policy that did not change.
    pub fn respec(&mut self, spec: TargetSpec) {
        let same = |a: Option<&PolicySpec>, b: Option<&PolicySpec>| match (a, b) {
            (Some(a), Some(b)) => a.policy.digest() == b.policy.digest(),
            (None, None) => true,
            _ => false,
        };
        if !same(self.spec.predictor.as_ref(), spec.predictor.as_ref()) {
            self.predictor = Forecaster::new(spec.predictor.as_ref());
        }
        if !same(self.spec.schedule.as_ref(), spec.schedule.as_ref()) {
            self.schedule = Forecaster::new(spec.schedule.as_ref());
        }
        if !same(Some(&self.spec.decider), Some(&spec.decider)) {
            self.decider = Session::new(spec.decider.policy.clone());
            self.decider_state = None;
        }
        self.histories
            .resize(spec.history_len, spec.metrics.iter().cloned());
        self.long_history = match (self.long_history.take(), spec.long_history.clone()) {
            (Some(kept), Some(l)) => Some(kept.reconfigure(l, &spec.metrics)),
            (None, Some(l)) => Some(LongHistories::new(l, &spec.metrics)),
            (_, None) => None,
        };
        self.safety.reconfigure(
            spec.behavior.clone(),
            spec.min_replicas,
            spec.max_replicas,
            spec.zero.clone(),
        );
        self.spec = spec;
    }

    /// Adds past samples of `metric` (oldest first, before any tick's), so
    /// predictors forecast from the first tick instead of after many.
    pub fn backfill(&mut self, metric: &str, samples: &[(u64, f64)]) {
        for (t, v) in samples {
            self.histories.push(metric, *t, Some(*v));
        }
    }

    /// Appends past steps of `metric`'s long history (see [`LongHistories::fill`]).
    pub fn fill_long_history(&mut self, metric: &str, points: &[(u64, f64)]) {
        if let Some(l) = self.long_history.as_mut() {
            l.fill(metric, points);
        }
    }

    /// Tells the safety layer about a target taken over mid-flight; see [`SafetyLayer::seed`].
    pub fn seed(&mut self, now_ms: u64, current: u32, last_action_ms: Option<u64>) {
        self.safety.seed(now_ms, current, last_action_ms);
    }

    /// How many evaluations in a row have failed.
    pub fn consecutive_failures(&self) -> u32 {
        self.safety.consecutive_failures()
    }

    /// The target's settings.
    pub fn spec(&self) -> &TargetSpec {
        &self.spec
    }

    /// Evaluates one tick: records the metrics, forecasts, decides and bounds
    /// the decision. Nothing is applied; see [`Pipeline::tick`].
    pub fn evaluate(&mut self, obs: &Observation) -> TickReport {
        let metrics = sanitize(&obs.metrics);
        for (name, value) in &metrics {
            self.histories.push(name, obs.now_ms, *value);
            if let Some(l) = self.long_history.as_mut() {
                l.record(name, obs.now_ms, *value);
            }
        }
        let mut failures = Vec::new();
        let mut predictor_error = None;
        let mut forecasts = Vec::new();
        for role in ["predictor", "schedule"] {
            match self.forecast(role, obs) {
                Ok(f) => forecasts = forecasts::combine_by_max(forecasts, f),
                Err((e, kind)) => {
                    tracing::warn!(role, error = %e, "forecast failed; deciding without it");
                    failures.push((role, kind));
                    predictor_error.get_or_insert(format!("{role}: {e}"));
                }
            }
        }
        let (proposal, reason) = match self.decide(obs, &metrics, &forecasts) {
            Ok((desired, reason)) => (Proposal::Desired(desired), reason),
            Err((e, kind)) => {
                failures.push(("decider", kind));
                (Proposal::Failed(e.clone()), e)
            }
        };
        let now = obs.now_ms as f64;
        let signals = Signals {
            metrics: &metrics,
            floor: forecasts::floor(&forecasts, now, now + self.horizon_ms()),
        };
        let verdict =
            self.safety
                .evaluate_with(obs.now_ms, obs.current_replicas, &proposal, &signals);
        TickReport {
            now_ms: obs.now_ms,
            current_replicas: obs.current_replicas,
            proposal,
            reason,
            verdict,
            forecasts,
            predictor_error,
            failures,
        }
    }

    /// Records that the verdict of the tick at `now_ms` was applied.
    pub fn record_action(&mut self, now_ms: u64) {
        self.safety.record_action(now_ms);
    }

    /// Evaluates one tick and applies the verdict through `actuator`.
    pub fn tick<A: Actuator>(
        &mut self,
        obs: &Observation,
        actuator: &mut A,
    ) -> Result<TickReport, A::Error> {
        let report = self.evaluate(obs);
        if report.scales() {
            actuator.scale(report.verdict.replicas)?;
            self.record_action(obs.now_ms);
        }
        Ok(report)
    }

    /// How far ahead forecasts reach: the warm-up, or one interval if longer.
    fn horizon_ms(&self) -> f64 {
        self.spec.warmup_ms.max(self.spec.interval_ms) as f64
    }

    /// The forecasts of the predictor or the schedule (`role`); none without one.
    fn forecast(
        &mut self,
        role: &str,
        obs: &Observation,
    ) -> Result<Vec<MetricForecast>, (String, &'static str)> {
        let horizon_ms = self.horizon_ms();
        let (forecaster, spec) = match role {
            "schedule" => (self.schedule.as_mut(), self.spec.schedule.as_ref()),
            _ => (self.predictor.as_mut(), self.spec.predictor.as_ref()),
        };
        let (Some(forecaster), Some(spec)) = (forecaster, spec) else {
            return Ok(Vec::new());
        };
        let request = ForecastRequest {
            now_ms: obs.now_ms as f64,
            horizon_ms,
            step_ms: self.spec.interval_ms as f64,
            histories: self.histories.to_wit(),
            config: spec.config.clone(),
            state: forecaster.state.clone(),
        };
        let long_history = self
            .long_history
            .as_ref()
            .map(|l| Arc::clone(l.view()))
            .unwrap_or_default();
        let response = forecaster
            .session
            .with(|i| i.forecast_with(&request, &long_history))
            .map_err(|e| (e.to_string(), e.kind()))?;
        forecasts::check(&response.forecasts).map_err(|e| (e, "bad_output"))?;
        forecaster.state = keep_state(response.state, role);
        Ok(response.forecasts)
    }

    fn decide(
        &mut self,
        obs: &Observation,
        metrics: &[(String, Option<f64>)],
        forecasts: &[MetricForecast],
    ) -> Result<(u32, String), (String, &'static str)> {
        let request = DecideRequest {
            target: TargetState {
                now_ms: obs.now_ms as f64,
                current_replicas: obs.current_replicas,
                ready_replicas: obs.ready_replicas,
                warming_replicas: obs.warming_replicas,
                min_replicas: self.spec.min_replicas,
                max_replicas: self.spec.max_replicas,
            },
            metrics: metrics
                .iter()
                .map(|(name, value)| MetricValue {
                    name: name.clone(),
                    value: *value,
                })
                .collect(),
            forecasts: forecasts.to_vec(),
            config: self.spec.decider.config.clone(),
            state: self.decider_state.clone(),
        };
        let decision = self
            .decider
            .with(|i| i.decide(&request))
            .map_err(|e| (e.to_string(), e.kind()))?;
        // An absurd answer is a broken policy (an overflow, a unit mistake),
        // so it fails the decision like a trap would, state and all.
        let limit = self.safety.absurd_limit();
        if decision.desired_replicas > limit {
            tracing::warn!(
                desired = decision.desired_replicas,
                limit,
                "decision rejected as absurd"
            );
            return Err((
                format!(
                    "the decider answered {} replicas, above the absurd limit of {limit}, and was refused ({})",
                    decision.desired_replicas,
                    truncate(decision.reason, MAX_REASON_BYTES / 2)
                ),
                "absurd",
            ));
        }
        self.decider_state = keep_state(decision.state, "decider");
        Ok((
            decision.desired_replicas,
            truncate(decision.reason, MAX_REASON_BYTES),
        ))
    }
}

/// NaN, infinite and negative values are unavailable, never a number to scale on.
fn sanitize(metrics: &[(String, Option<f64>)]) -> Vec<(String, Option<f64>)> {
    metrics
        .iter()
        .map(|(name, v)| {
            let valid = v.filter(|x| x.is_finite() && *x >= 0.0);
            if v.is_some() && valid.is_none() {
                tracing::warn!(metric = %name, value = ?v, "invalid metric value treated as unavailable");
            }
            (name.clone(), valid)
        })
        .collect()
}

fn keep_state(state: Option<Vec<u8>>, who: &str) -> Option<Vec<u8>> {
    match state {
        Some(s) if s.len() > MAX_STATE_BYTES => {
            tracing::warn!(
                policy = who,
                bytes = s.len(),
                max = MAX_STATE_BYTES,
                "policy state over the cap was dropped"
            );
            None
        }
        other => other,
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_values_become_unavailable() {
        let m = vec![
            ("a".to_string(), Some(f64::NAN)),
            ("b".to_string(), Some(-1.0)),
            ("c".to_string(), Some(f64::INFINITY)),
            ("d".to_string(), Some(2.5)),
            ("e".to_string(), None),
        ];
        let s: Vec<_> = sanitize(&m).into_iter().map(|(_, v)| v).collect();
        assert_eq!(s, [None, None, None, Some(2.5), None]);
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("ééé".into(), 3), "é…");
        assert_eq!(truncate("abc".into(), 3), "abc");
    }

    #[test]
    fn oversized_state_is_dropped() {
        assert_eq!(keep_state(Some(vec![0; MAX_STATE_BYTES + 1]), "x"), None);
        assert_eq!(keep_state(Some(vec![1]), "x"), Some(vec![1]));
    }
}
