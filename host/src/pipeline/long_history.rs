//! Each metric's long history: days of it at a coarse step, for predictors
//! that know the time of day or week (`long-history` in the WIT contract).
//!
//! A step's sample is the metric's mean over the step, stamped with the
//! step's end; steps are aligned to multiples of the step since the Unix
//! epoch, so the same step has the same time whoever computed it. A metric
//! is kept in one of two ways: from the samples the pipeline sees (a step
//! joins once a sample of a later step arrives), or filled from outside —
//! the operator asks Prometheus for the steps that have passed — so that a
//! restarted operator has the same long history as the one before it.

use std::sync::Arc;

use crate::runtime::bindings::{CoarseHistory, Sample};
use crate::runtime::LongHistory;

/// Most samples kept per metric (a week at one minute).
pub const MAX_LONG_HISTORY_POINTS: usize = 10_080;

/// The step and window of a target's long history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LongHistorySpec {
    /// Spacing of the samples, in ms.
    pub step_ms: u64,
    /// How far back the history reaches, in ms.
    pub window_ms: u64,
    /// Metrics filled from outside ([`LongHistories::fill`]) instead of from their samples.
    pub filled: Vec<String>,
}

impl LongHistorySpec {
    /// Samples kept per metric.
    pub fn points(&self) -> usize {
        ((self.window_ms / self.step_ms.max(1)) as usize).clamp(1, MAX_LONG_HISTORY_POINTS)
    }

    /// The end of the step that holds `time_ms`; a time on a boundary ends its step.
    pub fn step_end(&self, time_ms: u64) -> u64 {
        time_ms.div_ceil(self.step_ms) * self.step_ms
    }
}

/// The step being averaged.
#[derive(Debug, Clone, Copy)]
struct OpenStep {
    end_ms: u64,
    sum: f64,
    count: u32,
}

/// The long histories of one target's metrics.
#[derive(Debug, Clone)]
pub struct LongHistories {
    spec: LongHistorySpec,
    /// Shared with a policy instance during a call, never while it is being changed.
    series: LongHistory,
    /// The open step of each series, by index.
    open: Vec<Option<OpenStep>>,
}

impl LongHistories {
    /// Empty long histories of `metrics`.
    pub fn new(spec: LongHistorySpec, metrics: &[String]) -> Self {
        let series = metrics
            .iter()
            .map(|m| CoarseHistory {
                name: m.clone(),
                step_ms: spec.step_ms as f64,
                samples: Vec::new(),
            })
            .collect();
        LongHistories {
            open: vec![None; metrics.len()],
            series: Arc::new(series),
            spec,
        }
    }

    /// These histories under a new spec: kept if the step is the same (trimmed to the
    /// window), started afresh if it is not.
    pub fn reconfigure(self, spec: LongHistorySpec, metrics: &[String]) -> Self {
        let mut next = LongHistories::new(spec, metrics);
        if next.spec.step_ms != self.spec.step_ms {
            return next;
        }
        for (i, m) in metrics.iter().enumerate() {
            if let Some(j) = self.series.iter().position(|h| &h.name == m) {
                Arc::make_mut(&mut next.series)[i].samples = self.series[j].samples.clone();
                next.open[i] = self.open[j];
                next.trim(i);
            }
        }
        next
    }

    /// The histories as policies see them.
    pub fn view(&self) -> &LongHistory {
        &self.series
    }

    /// Adds a sample of `metric` to its step; the previous step joins the
    /// history when this one is later. Unavailable values, samples older
    /// than the open step and filled metrics are left alone.
    pub fn record(&mut self, metric: &str, time_ms: u64, value: Option<f64>) {
        let Some(value) = value.filter(|v| v.is_finite()) else {
            return;
        };
        if self.spec.filled.iter().any(|m| m == metric) {
            return;
        }
        let Some(i) = self.index(metric) else { return };
        let end_ms = self.spec.step_end(time_ms);
        match &mut self.open[i] {
            Some(open) if open.end_ms == end_ms => {
                open.sum += value;
                open.count += 1;
                return;
            }
            Some(open) if open.end_ms > end_ms => return,
            _ => {}
        }
        if let Some(done) = self.open[i].replace(OpenStep {
            end_ms,
            sum: value,
            count: 1,
        }) {
            self.append(i, done.end_ms, done.sum / f64::from(done.count));
        }
    }

    /// Appends past steps of `metric` (as (step end in ms, value), oldest
    /// first); steps not after the newest one held, and unusable values, are skipped.
    pub fn fill(&mut self, metric: &str, points: &[(u64, f64)]) {
        let Some(i) = self.index(metric) else { return };
        for &(time_ms, value) in points {
            if value.is_finite() && value >= 0.0 {
                self.append(i, time_ms, value);
            }
        }
    }

    /// How many samples metric `name` holds.
    pub fn len(&self, name: &str) -> usize {
        self.index(name).map_or(0, |i| self.series[i].samples.len())
    }

    fn index(&self, metric: &str) -> Option<usize> {
        self.series.iter().position(|h| h.name == metric)
    }

    fn append(&mut self, i: usize, time_ms: u64, value: f64) {
        let samples = &mut Arc::make_mut(&mut self.series)[i].samples;
        if samples.last().is_some_and(|s| s.time_ms >= time_ms as f64) {
            return;
        }
        samples.push(Sample {
            time_ms: time_ms as f64,
            value,
        });
        self.trim(i);
    }

    /// Drops the samples that fell out of the window (of the newest one) or over the cap.
    fn trim(&mut self, i: usize) {
        let window = self.spec.window_ms as f64;
        let cap = self.spec.points();
        let samples = &mut Arc::make_mut(&mut self.series)[i].samples;
        let Some(newest) = samples.last().map(|s| s.time_ms) else {
            return;
        };
        let old = samples
            .iter()
            .take_while(|s| s.time_ms <= newest - window)
            .count();
        let excess = samples.len().saturating_sub(cap).max(old);
        samples.drain(..excess);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(step_s: u64, window_s: u64, filled: &[&str]) -> LongHistorySpec {
        LongHistorySpec {
            step_ms: step_s * 1000,
            window_ms: window_s * 1000,
            filled: filled.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn samples(h: &LongHistories, metric: &str) -> Vec<(f64, f64)> {
        let i = h.index(metric).unwrap();
        h.view()[i]
            .samples
            .iter()
            .map(|s| (s.time_ms / 1000.0, s.value))
            .collect()
    }

    #[test]
    fn a_step_is_the_mean_of_its_samples_stamped_with_its_end() {
        let mut h = LongHistories::new(spec(60, 3600, &[]), &["rps".into()]);
        // Samples every 15 s from t = 15 s: the step (0, 60] holds 15, 30, 45, 60.
        for (t, v) in [(15, 1.0), (30, 2.0), (45, 3.0), (60, 6.0), (75, 10.0)] {
            h.record("rps", t * 1000, Some(v));
        }
        assert_eq!(samples(&h, "rps"), [(60.0, 3.0)]);
        // A gap, an unusable value and a late sample change nothing.
        h.record("rps", 80_000, None);
        h.record("rps", 85_000, Some(f64::NAN));
        h.record("rps", 30_000, Some(100.0));
        // A step with no samples is left out, not made up.
        h.record("rps", 200_000, Some(4.0));
        assert_eq!(samples(&h, "rps"), [(60.0, 3.0), (120.0, 10.0)]);
        assert_eq!(h.view()[0].step_ms, 60_000.0);
    }

    #[test]
    fn the_window_and_the_cap_bound_what_is_kept() {
        let mut h = LongHistories::new(spec(60, 300, &[]), &["rps".into()]);
        for minute in 1..=20u64 {
            h.record("rps", minute * 60_000, Some(minute as f64));
        }
        // Steps end at 60..1140 s (the 1200 s step is still open); five fit the window.
        assert_eq!(
            samples(&h, "rps").iter().map(|s| s.1).collect::<Vec<_>>(),
            [15.0, 16.0, 17.0, 18.0, 19.0]
        );
        let huge = spec(1, 10 * MAX_LONG_HISTORY_POINTS as u64, &[]);
        assert_eq!(huge.points(), MAX_LONG_HISTORY_POINTS);
    }

    #[test]
    fn filled_metrics_take_only_what_is_filled_in_order() {
        let mut h = LongHistories::new(spec(60, 3600, &["rps"]), &["rps".into(), "cpu".into()]);
        h.record("rps", 30_000, Some(5.0));
        h.record("rps", 90_000, Some(5.0));
        assert_eq!(h.len("rps"), 0, "samples do not feed a filled metric");
        h.fill("rps", &[(60_000, 1.0), (120_000, f64::NAN), (180_000, 3.0)]);
        h.fill("rps", &[(120_000, 2.0), (240_000, 4.0)]);
        assert_eq!(
            samples(&h, "rps"),
            [(60.0, 1.0), (180.0, 3.0), (240.0, 4.0)]
        );
        h.record("cpu", 30_000, Some(0.5));
        h.record("cpu", 90_000, Some(0.7));
        assert_eq!(samples(&h, "cpu"), [(60.0, 0.5)]);
    }

    #[test]
    fn a_new_window_trims_and_a_new_step_starts_afresh() {
        let metrics = ["rps".to_string()];
        let mut h = LongHistories::new(spec(60, 3600, &[]), &metrics);
        for minute in 1..=10u64 {
            h.record("rps", minute * 60_000, Some(minute as f64));
        }
        assert_eq!(h.len("rps"), 9);
        let h = h.reconfigure(spec(60, 180, &[]), &metrics);
        assert_eq!(h.len("rps"), 3);
        let h = h.reconfigure(spec(300, 3600, &[]), &metrics);
        assert_eq!(h.len("rps"), 0);
    }

    #[test]
    fn a_policy_holding_the_view_does_not_see_later_changes() {
        let mut h = LongHistories::new(spec(60, 3600, &[]), &["rps".into()]);
        h.fill("rps", &[(60_000, 1.0)]);
        let seen = Arc::clone(h.view());
        h.fill("rps", &[(120_000, 2.0)]);
        assert_eq!(seen[0].samples.len(), 1);
        assert_eq!(h.len("rps"), 2);
    }
}
