//! Per-metric history rings: the samples a predictor sees.

use std::collections::{BTreeMap, VecDeque};

use crate::runtime::bindings::{MetricHistory, Sample};

/// The last `capacity` valid samples of each metric, oldest first.
#[derive(Debug, Clone)]
pub struct Histories {
    capacity: usize,
    rings: BTreeMap<String, VecDeque<Sample>>,
}

impl Histories {
    /// Empty histories keeping at most `capacity` samples per metric.
    pub fn new(capacity: usize, metrics: impl IntoIterator<Item = String>) -> Self {
        Histories {
            capacity: capacity.max(1),
            rings: metrics.into_iter().map(|m| (m, VecDeque::new())).collect(),
        }
    }

    /// Keeps at most `capacity` samples of exactly `metrics`, dropping the
    /// oldest samples and the histories of metrics no longer listed.
    pub fn resize(&mut self, capacity: usize, metrics: impl IntoIterator<Item = String>) {
        self.capacity = capacity.max(1);
        let mut rings = BTreeMap::new();
        for m in metrics {
            let mut ring = self.rings.remove(&m).unwrap_or_default();
            while ring.len() > self.capacity {
                ring.pop_front();
            }
            rings.insert(m, ring);
        }
        self.rings = rings;
    }

    /// Appends a valid value; unavailable values leave a gap instead of a made-up sample.
    pub fn push(&mut self, metric: &str, time_ms: u64, value: Option<f64>) {
        let Some(value) = value else { return };
        let ring = self.rings.entry(metric.to_string()).or_default();
        if ring.len() == self.capacity {
            ring.pop_front();
        }
        ring.push_back(Sample {
            time_ms: time_ms as f64,
            value,
        });
    }

    /// The histories in the shape the predictor world takes.
    pub fn to_wit(&self) -> Vec<MetricHistory> {
        self.rings
            .iter()
            .map(|(name, ring)| MetricHistory {
                name: name.clone(),
                samples: ring.iter().copied().collect(),
            })
            .collect()
    }

    /// How many samples metric `name` holds.
    pub fn len(&self, name: &str) -> usize {
        self.rings.get(name).map_or(0, VecDeque::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_samples_and_skips_gaps() {
        let mut h = Histories::new(3, ["rps".to_string()]);
        for t in 0..5 {
            h.push("rps", t, Some(t as f64));
        }
        h.push("rps", 5, None);
        let w = h.to_wit();
        let values: Vec<f64> = w[0].samples.iter().map(|s| s.value).collect();
        assert_eq!(values, [2.0, 3.0, 4.0]);
        assert_eq!(h.len("rps"), 3);
        h.resize(2, ["rps".to_string(), "lat".to_string()]);
        assert_eq!((h.len("rps"), h.len("lat")), (2, 0));
        assert_eq!(h.to_wit()[1].samples[0].value, 3.0);
    }
}
