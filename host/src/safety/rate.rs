//! The sliding window of scale actions behind `behavior.maxActions`.

use std::collections::VecDeque;

use super::ActionWindow;

/// Times of the actions applied within the current window.
#[derive(Debug, Clone, Default)]
pub(super) struct ActionLog {
    times: VecDeque<u64>,
}

impl ActionLog {
    /// Whether one more action at `now_ms` stays within the window.
    pub(super) fn allows(&self, now_ms: u64, window: &Option<ActionWindow>) -> bool {
        let Some(w) = window else { return true };
        let window_ms = w.window_seconds * 1000;
        let recent = self
            .times
            .iter()
            .filter(|&&t| now_ms.saturating_sub(t) < window_ms);
        recent.count() < w.count as usize
    }

    pub(super) fn record(&mut self, now_ms: u64, window: &Option<ActionWindow>) {
        let Some(w) = window else { return };
        let window_ms = w.window_seconds * 1000;
        while self
            .times
            .front()
            .is_some_and(|&t| now_ms.saturating_sub(t) >= window_ms)
        {
            self.times.pop_front();
        }
        self.times.push_back(now_ms);
    }
}
