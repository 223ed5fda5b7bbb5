//! The offline replay through the library: determinism and robustness.

use wasm_autoscaler::bundled;
use wasm_autoscaler::pipeline::PolicySpec;
use wasm_autoscaler::runtime::{Runtime, RuntimeConfig};
use wasm_autoscaler::safety::Behavior;
use wasm_autoscaler::sim::{self, setup, Setup, SimParams, Trace};

use crate::guests::{misbehave_policy, mode};

/// The first day of the bundled trace.
fn one_day() -> Trace {
    let text: String = bundled::TRACE
        .lines()
        .take(1 + 1440)
        .map(|l| format!("{l}\n"))
        .collect();
    Trace::parse("wc98-day1", &text).unwrap()
}

fn params() -> SimParams {
    SimParams {
        capacity_per_pod: 20.0,
        startup_seconds: 60,
        initial_replicas: 12,
        min_replicas: 1,
        max_replicas: 100,
        interval_seconds: 15,
        history_len: 240,
        slo_utilization: 0.8,
    }
}

#[test]
fn the_same_replay_gives_byte_identical_json() {
    let trace = one_day();
    let run = || {
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let setups = setup::bundled(&rt, &params()).unwrap();
        sim::compare(&trace, &params(), &setups).to_json()
    };
    let (a, b) = (run(), run());
    assert_eq!(a, b);
    assert!(a.contains("\"setup\": \"hpa\""));
}

#[test]
fn the_replay_measures_what_happened() {
    let trace = one_day();
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let setups = setup::bundled(&rt, &params()).unwrap();
    let report = sim::compare(&trace, &params(), &setups);
    assert_eq!(report.setups.len(), 3);
    for s in &report.setups {
        assert!(s.scale_actions > 0, "{s:?}");
        assert!(s.pod_hours > 24.0, "at least one pod all day: {s:?}");
        assert!(s.slo_violation_seconds >= s.overload_seconds, "{s:?}");
        assert_eq!(s.failed_decisions, 0, "{s:?}");
    }
    assert!(sim::render_svg(&report).starts_with("<svg"));
}

#[test]
fn a_policy_that_always_fails_holds_the_target() {
    // A trap, and an answer of 4294967295 replicas the safety layer refuses
    // as absurd: both are failed decisions in the report.
    for failure in ["trap", "absurd"] {
        let trace = one_day();
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let broken = Setup {
            name: "broken".into(),
            predictor: None,
            decider: PolicySpec {
                policy: misbehave_policy(&rt),
                config: mode(failure),
            },
            behavior: Behavior::default(),
            metric_names: sim::setup::plain_metric_names(),
            warmup_seconds: None,
        };
        let result = sim::run(&trace, &params(), &broken);
        let ticks = 86_400 / 15;
        assert_eq!(result.summary.failed_decisions, ticks, "{failure}");
        assert_eq!(result.summary.scale_actions, 0, "{failure}");
        assert_eq!(result.summary.peak_replicas, 12, "{failure}");
    }
}
