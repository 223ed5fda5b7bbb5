//! Status conditions: what a person reading `kubectl describe` needs to act on.

use super::crd::Condition;

/// The condition types an autoscaler reports.
pub const READY: &str = "Ready";
pub const POLICY_LOADED: &str = "PolicyLoaded";
pub const METRICS_AVAILABLE: &str = "MetricsAvailable";
pub const SCALING_LIMITED: &str = "ScalingLimited";

/// Conditions being assembled for one status update; transition times are
/// kept from the previous status when a condition's status did not change.
pub struct Conditions {
    previous: Vec<Condition>,
    now: String,
    generation: Option<i64>,
    next: Vec<Condition>,
}

impl Conditions {
    /// Starts from the conditions last written.
    pub fn new(previous: &[Condition], now: String, generation: Option<i64>) -> Self {
        Conditions {
            previous: previous.to_vec(),
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
}
