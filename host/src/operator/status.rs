//! Status conditions: what a person reading `kubectl describe` needs to act on.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::crd::{Condition, DecisionStatus, WasmAutoscalerStatus};

/// The condition types an autoscaler reports.
pub const READY: &str = "Ready";
pub const POLICY_LOADED: &str = "PolicyLoaded";
pub const METRICS_AVAILABLE: &str = "MetricsAvailable";
pub const SCALING_LIMITED: &str = "ScalingLimited";

/// Conditions being assembled for one status update; transition times are
/// kept from the previous status when a condition's status did not change.
pub struct Conditions<'a> {
    previous: &'a [Condition],
    now: String,
    generation: Option<i64>,
    next: Vec<Condition>,
}

impl<'a> Conditions<'a> {
    /// Starts from the conditions last written.
    pub fn new(previous: &'a [Condition], now: String, generation: Option<i64>) -> Self {
        Conditions {
            previous,
            now,
            generation,
            next: Vec::new(),
        }
    }

    /// Sets condition `type_`.
    pub fn set(&mut self, type_: &str, status: bool, reason: &str, message: impl Into<String>) {
        let status = if status { "True" } else { "False" };
        self.put(type_, status, reason, message.into());
    }

    /// Sets condition `type_` to `Unknown`.
    pub fn unknown(&mut self, type_: &str, reason: &str, message: impl Into<String>) {
        self.put(type_, "Unknown", reason, message.into());
    }

    /// Carries a condition over unchanged if it was set before and not now.
    pub fn keep(&mut self, type_: &str) {
        if self.next.iter().any(|c| c.type_ == type_) {
            return;
        }
        if let Some(c) = self.previous.iter().find(|c| c.type_ == type_) {
            self.next.push(c.clone());
        }
    }

    /// Whether condition `type_` changes status (or appears) with this update.
    pub fn transitions(&self, type_: &str) -> bool {
        let old = self.previous.iter().find(|c| c.type_ == type_);
        let new = self.next.iter().find(|c| c.type_ == type_);
        match (old, new) {
            (Some(o), Some(n)) => o.status != n.status || o.reason != n.reason,
            (None, Some(_)) => true,
            _ => false,
        }
    }

    /// The conditions, in a stable order.
    pub fn finish(mut self) -> Vec<Condition> {
        let order = [READY, POLICY_LOADED, METRICS_AVAILABLE, SCALING_LIMITED];
        self.next.sort_by_key(|c| {
            order
                .iter()
                .position(|t| *t == c.type_)
                .unwrap_or(order.len())
        });
        self.next
    }

    fn put(&mut self, type_: &str, status: &str, reason: &str, message: String) {
        let last_transition_time = match self.previous.iter().find(|c| c.type_ == type_) {
            Some(c) if c.status == status => c.last_transition_time.clone(),
            _ => self.now.clone(),
        };
        self.next.retain(|c| c.type_ != type_);
        self.next.push(Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message,
            last_transition_time,
            observed_generation: self.generation,
        });
    }
}

/// Whether `next` is worth a write over `previous`, the status the object has now.
///
/// A decision that comes out the same as the last one is not: its time, reason and
/// forecast numbers move every tick, and writing them would cost an API write per
/// autoscaler and tick. They are brought up to date once the written decision is
/// older than `refresh` (a zero `refresh` writes every tick). Anything else that
/// changed (replicas, limits, policies, conditions, generation) is written at once.
pub fn worth_writing(
    previous: &WasmAutoscalerStatus,
    next: &WasmAutoscalerStatus,
    now: Timestamp,
    refresh: Duration,
) -> bool {
    if refresh.is_zero() || !same_outcome(previous, next) {
        return true;
    }
    let written = previous
        .last_decision
        .as_ref()
        .and_then(|d| d.time.parse::<Timestamp>().ok());
    match written {
        Some(t) => now.duration_since(t).unsigned_abs() >= refresh,
        // No decision on either side, and nothing else changed.
        None => false,
    }
}

/// Fields of the status, and of a decision in it, that may be absent.
const OPTIONAL_FIELDS: [&str; 10] = [
    "observedGeneration",
    "currentReplicas",
    "desiredReplicas",
    "lastScaleTime",
    "lastDecision",
    "shadowDecision",
    "policies",
    "conditions",
    "ownedBy",
    "shard",
];
const OPTIONAL_DECISION_FIELDS: [&str; 4] =
    ["proposedReplicas", "limits", "transition", "forecast"];

/// A JSON merge patch that makes the object's status exactly `status`: a field it
/// leaves out is set to null, since a merge patch keeps whatever it does not name
/// (a limit, a shadow decision, a transition would otherwise outlive its decision).
pub fn merge_patch(status: &WasmAutoscalerStatus) -> serde_json::Value {
    let mut value = serde_json::to_value(status).expect("a status serializes");
    fill_nulls(&mut value, &OPTIONAL_FIELDS);
    for decision in ["lastDecision", "shadowDecision"] {
        if value[decision].is_object() {
            fill_nulls(&mut value[decision], &OPTIONAL_DECISION_FIELDS);
        }
    }
    serde_json::json!({ "status": value })
}

fn fill_nulls(object: &mut serde_json::Value, fields: &[&str]) {
    if let Some(map) = object.as_object_mut() {
        for field in fields {
            map.entry(*field).or_insert(serde_json::Value::Null);
        }
    }
}

/// Whether two statuses differ only in what moves at every tick of an unchanged
/// decision. Compared in place (this runs at every tick); the field lists are
/// exhaustive, so a new status field must be placed on one side or the other.
fn same_outcome(a: &WasmAutoscalerStatus, b: &WasmAutoscalerStatus) -> bool {
    let WasmAutoscalerStatus {
        observed_generation,
        current_replicas,
        desired_replicas,
        last_scale_time,
        last_decision,
        shadow_decision,
        policies,
        conditions,
        owned_by,
        shard,
    } = a;
    *observed_generation == b.observed_generation
        && *current_replicas == b.current_replicas
        && *desired_replicas == b.desired_replicas
        && *last_scale_time == b.last_scale_time
        && *policies == b.policies
        && *conditions == b.conditions
        && *owned_by == b.owned_by
        && *shard == b.shard
        && same_decision(last_decision, &b.last_decision)
        && same_decision(shadow_decision, &b.shadow_decision)
}

fn same_decision(a: &Option<DecisionStatus>, b: &Option<DecisionStatus>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            let DecisionStatus {
                time: _,
                reason: _,
                forecast: _,
                proposed_replicas,
                desired_replicas,
                limits,
                transition,
            } = a;
            *proposed_replicas == b.proposed_replicas
                && *desired_replicas == b.desired_replicas
                && *limits == b.limits
                && *transition == b.transition
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_on_a_status_change() {
        let mut c = Conditions::new(&[], "t0".into(), Some(1));
        c.set(READY, true, "Evaluating", "ok");
        let first = c.finish();
        let mut c = Conditions::new(&first, "t1".into(), Some(1));
        c.set(READY, true, "Evaluating", "still ok");
        assert!(!c.transitions(READY));
        let second = c.finish();
        assert_eq!(second[0].last_transition_time, "t0");
        let mut c = Conditions::new(&second, "t2".into(), Some(2));
        c.set(READY, false, "TargetMissing", "gone");
        assert!(c.transitions(READY));
        assert_eq!(c.finish()[0].last_transition_time, "t2");
    }

    fn decided(time: &str, desired: u32, reason: &str) -> WasmAutoscalerStatus {
        WasmAutoscalerStatus {
            desired_replicas: Some(desired),
            last_decision: Some(DecisionStatus {
                time: time.into(),
                desired_replicas: desired,
                reason: reason.into(),
                ..DecisionStatus::default()
            }),
            ..WasmAutoscalerStatus::default()
        }
    }

    #[test]
    fn an_unchanged_decision_is_written_only_once_it_is_older_than_the_refresh() {
        let refresh = Duration::from_secs(300);
        let at = |t: &str| t.parse::<Timestamp>().unwrap();
        let written = decided("2026-01-01T00:00:00Z", 3, "rps 30.1 needs 3");
        let same = decided("2026-01-01T00:00:15Z", 3, "rps 29.7 needs 3");
        assert!(!worth_writing(
            &written,
            &same,
            at("2026-01-01T00:00:15Z"),
            refresh
        ));
        assert!(worth_writing(
            &written,
            &same,
            at("2026-01-01T00:05:00Z"),
            refresh
        ));
        assert!(worth_writing(
            &written,
            &same,
            at("2026-01-01T00:00:15Z"),
            Duration::ZERO
        ));
        let more = decided("2026-01-01T00:00:15Z", 4, "rps 40 needs 4");
        assert!(worth_writing(
            &written,
            &more,
            at("2026-01-01T00:00:15Z"),
            refresh
        ));
    }

    #[test]
    fn a_changed_condition_or_policy_is_written_at_once() {
        let refresh = Duration::from_secs(300);
        let now = "2026-01-01T00:00:15Z".parse::<Timestamp>().unwrap();
        let written = decided("2026-01-01T00:00:00Z", 3, "r");
        let mut c = Conditions::new(&[], "t".into(), Some(1));
        c.set(METRICS_AVAILABLE, false, "Unavailable", "rps: timed out");
        let next = WasmAutoscalerStatus {
            conditions: c.finish(),
            ..written.clone()
        };
        assert!(worth_writing(&written, &next, now, refresh));
        let next = WasmAutoscalerStatus {
            observed_generation: Some(2),
            ..written.clone()
        };
        assert!(worth_writing(&written, &next, now, refresh));
        // Nothing decided yet, and nothing changed: no write.
        let empty = WasmAutoscalerStatus::default();
        assert!(!worth_writing(&empty, &empty.clone(), now, refresh));
    }

    #[test]
    fn the_patch_clears_what_the_new_status_leaves_out() {
        use crate::operator::crd::{ForecastStatus, LoadedPolicy};
        let full_decision = DecisionStatus {
            time: "t".into(),
            proposed_replicas: Some(3),
            desired_replicas: 2,
            reason: "r".into(),
            limits: vec!["StepLimited".into()],
            transition: Some("activated".into()),
            forecast: vec![ForecastStatus {
                metric: "rps".into(),
                horizon_seconds: 60.0,
                value: 1.0,
            }],
        };
        let mut c = Conditions::new(&[], "t".into(), Some(1));
        c.set(READY, true, "Scaling", "m");
        let full = WasmAutoscalerStatus {
            observed_generation: Some(1),
            current_replicas: Some(2),
            desired_replicas: Some(2),
            last_scale_time: Some("t".into()),
            last_decision: Some(full_decision.clone()),
            shadow_decision: Some(full_decision),
            policies: vec![LoadedPolicy {
                role: "decider".into(),
                source: "s".into(),
                digest: "d".into(),
            }],
            conditions: c.finish(),
            owned_by: Some("replica-a".into()),
            shard: Some(3),
        };
        // Another replica taking the autoscaler over is news worth writing.
        let moved = WasmAutoscalerStatus {
            owned_by: Some("replica-b".into()),
            ..full.clone()
        };
        assert!(same_outcome(&full, &full));
        assert!(!same_outcome(&full, &moved));
        // Every field that can be absent is named, so none can outlive its decision.
        let written = serde_json::to_value(&full).unwrap();
        let names = |v: &serde_json::Value| -> Vec<String> {
            v.as_object().unwrap().keys().cloned().collect()
        };
        for key in names(&written) {
            assert!(OPTIONAL_FIELDS.contains(&key.as_str()), "{key}");
        }
        for key in names(&written["lastDecision"]) {
            assert!(
                OPTIONAL_DECISION_FIELDS.contains(&key.as_str())
                    || ["time", "desiredReplicas", "reason"].contains(&key.as_str()),
                "{key}"
            );
        }

        let bare = WasmAutoscalerStatus {
            last_decision: Some(DecisionStatus {
                limits: Vec::new(),
                ..full.last_decision.clone().unwrap()
            }),
            shadow_decision: None,
            ..full
        };
        let patch = merge_patch(&bare);
        assert!(patch["status"]["shadowDecision"].is_null());
        assert!(patch["status"]["lastDecision"]
            .as_object()
            .unwrap()
            .contains_key("limits"));
        assert!(patch["status"]["lastDecision"]["limits"].is_null());
        assert_eq!(patch["status"]["currentReplicas"], 2);
    }
}
