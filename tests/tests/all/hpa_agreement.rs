//! The `hpa` component against an independent native statement of the
//! Kubernetes HPA replica calculation, on thousands of generated inputs.

use wasm_autoscaler::bundled;
use wasm_autoscaler::runtime::bindings::{DecideRequest, MetricValue, TargetState};
use wasm_autoscaler::runtime::{Runtime, RuntimeConfig};

/// The HPA replica calculator for a per-pod resource metric
/// (`pkg/controller/podautoscaler/replica_calculator.go`), written out step
/// by step: unready pods are ignored except on a scale-up, where they count
/// as idle and the direction and tolerance checks are re-run.
fn reference(
    value: f64,
    target: f64,
    tolerance: f64,
    current: u32,
    ready: u32,
    unready: u32,
) -> Option<u32> {
    if current == 0 {
        return Some(0);
    }
    if ready == 0 {
        return None;
    }
    let usage_ratio = value / target;
    let rebalance_ignored = unready > 0 && usage_ratio > 1.0;
    if !rebalance_ignored {
        if (1.0 - usage_ratio).abs() <= tolerance {
            return Some(current);
        }
        return Some((usage_ratio * ready as f64).ceil() as u32);
    }
    let total_usage = value * ready as f64;
    let pods = (ready + unready) as f64;
    let new_usage_ratio = total_usage / pods / target;
    if (1.0 - new_usage_ratio).abs() <= tolerance || new_usage_ratio < 1.0 {
        return Some(current);
    }
    let new_replicas = (new_usage_ratio * pods).ceil() as u32;
    if new_replicas < current {
        return Some(current);
    }
    Some(new_replicas)
}

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[test]
fn hpa_component_matches_the_reference_on_5000_inputs() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let mut instance = rt.load(bundled::HPA).unwrap().instantiate().unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut compared = 0;
    for case in 0..5000 {
        let current = rng.below(60) as u32;
        let unready = if rng.below(3) == 0 {
            rng.below(current as u64 + 1) as u32
        } else {
            0
        };
        let ready = current - unready;
        let target = [0.5, 0.7, 0.8, 100.0][rng.below(4) as usize];
        let tolerance = [0.1, 0.0, 0.05][rng.below(3) as usize];
        // Values near the target hit the tolerance edges; others scale far.
        let value = if rng.below(2) == 0 {
            target * (0.8 + 0.4 * rng.unit())
        } else {
            target * 4.0 * rng.unit()
        };
        let request = DecideRequest {
            target: TargetState {
                now_ms: 0.0,
                current_replicas: current,
                ready_replicas: ready,
                warming_replicas: unready,
                min_replicas: 1,
                max_replicas: 1000,
            },
            metrics: vec![MetricValue {
                name: "utilization".into(),
                value: Some(value),
            }],
            forecasts: vec![],
            config: format!(r#"{{"target": {target}, "tolerance": {tolerance}}}"#),
            state: None,
        };
        let got = instance.decide(&request).ok().map(|d| d.desired_replicas);
        let want = reference(value, target, tolerance, current, ready, unready);
        assert_eq!(
            got, want,
            "case {case}: value {value} target {target} tolerance {tolerance} current {current} ready {ready} unready {unready}"
        );
        if got.is_none() {
            // A failed call drops nothing here, but start clean to be sure.
            instance = rt.load(bundled::HPA).unwrap().instantiate().unwrap();
        }
        compared += 1;
    }
    assert_eq!(compared, 5000);
}
