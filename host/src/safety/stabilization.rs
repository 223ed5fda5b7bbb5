//! Stabilization windows, as the Kubernetes HPA computes them: a scale-up
//! goes no higher than the lowest recommendation within the up window, a
//! scale-down no lower than the highest within the down window.

use std::collections::VecDeque;

/// Recent recommendations of one target, newest last.
#[derive(Debug, Clone, Default)]
pub(super) struct Recommendations {
    seen: VecDeque<(u64, u32)>,
}

impl Recommendations {
    /// Records a recommendation without evaluating one (a past known to a new leader).
    pub(super) fn seed(&mut self, now_ms: u64, replicas: u32) {
        self.seen.push_back((now_ms, replicas));
    }

    /// Records `desired` at `now_ms` and returns the stabilized count.
    pub(super) fn stabilize(
        &mut self,
        now_ms: u64,
        current: u32,
        desired: u32,
        up_ms: u64,
        down_ms: u64,
    ) -> u32 {
        let keep_from = now_ms.saturating_sub(up_ms.max(down_ms));
        while self.seen.front().is_some_and(|&(t, _)| t < keep_from) {
            self.seen.pop_front();
        }
        let (mut up, mut down) = (desired, desired);
        for &(t, r) in &self.seen {
            if now_ms.saturating_sub(t) < up_ms {
                up = up.min(r);
            }
            if now_ms.saturating_sub(t) < down_ms {
                down = down.max(r);
            }
        }
        self.seen.push_back((now_ms, desired));
        current.max(up).min(down)
    }
}
