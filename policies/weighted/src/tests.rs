use super::*;
use wasm_autoscaler_guest::{harness, ForecastPoint, MetricForecast, MetricValue, TargetState};

/// CPU 7 cores at 0.7 per pod (10 pods), memory 6000 MiB at 1500 (4 pods),
/// rps 270 at 45 (6 pods); 5 pods now.
fn request(config: &str) -> DecideRequest {
    DecideRequest {
        target: TargetState {
            now_ms: 0.0,
            current_replicas: 5,
            ready_replicas: 5,
            warming_replicas: 0,
            min_replicas: 1,
            max_replicas: 100,
        },
        metrics: [("cpu", 7.0), ("memory", 6000.0), ("rps", 270.0)]
            .into_iter()
            .map(|(name, v)| MetricValue {
                name: name.into(),
                value: Some(v),
            })
            .collect(),
        forecasts: Vec::new(),
        config: config.into(),
        state: None,
    }
}

const SEEDS: &str = r#"{"signals": [
    {"metric": "cpu", "perPod": 0.7, "weight": 0.2},
    {"metric": "memory", "perPod": 1500, "weight": 0.3},
    {"metric": "rps", "perPod": 45, "weight": 0.5}]}"#;

fn decide(r: &DecideRequest) -> Decision {
    harness::decide::<Weighted>(r).unwrap()
}

#[test]
fn the_seeds_weights_combine_the_needs() {
    // 0.2 × 10 + 0.3 × 4 + 0.5 × 6 = 6.2 → 7 pods.
    let d = decide(&request(SEEDS));
    assert_eq!(d.desired_replicas, 7, "{}", d.reason);
    assert!(
        d.reason.contains("cpu 10.0 pods (weight 0.2)"),
        "{}",
        d.reason
    );
}

#[test]
fn weights_change_the_decision() {
    // CPU-heavy: 0.8 × 10 + 0.1 × 4 + 0.1 × 6 = 9 → 9 pods.
    let cpu_heavy = SEEDS
        .replace("0.2}", "0.8}")
        .replace("0.3}", "0.1}")
        .replace("0.5}", "0.1}");
    assert_eq!(decide(&request(&cpu_heavy)).desired_replicas, 9);
    // Only the ratios matter: weights ×10 decide the same.
    let scaled = SEEDS
        .replace("0.2}", "2}")
        .replace("0.3}", "3}")
        .replace("0.5}", "5}");
    assert_eq!(decide(&request(&scaled)).desired_replicas, 7);
    // `max` gives the busiest signal the say: CPU's 10 pods.
    let max = SEEDS.replacen('{', r#"{"combine": "max", "#, 1);
    assert_eq!(decide(&request(&max)).desired_replicas, 10);
}

#[test]
fn a_forecast_peak_raises_its_signal() {
    let mut r = request(SEEDS);
    r.forecasts.push(MetricForecast {
        name: "rps".into(),
        points: vec![ForecastPoint {
            time_ms: 60_000.0,
            value: 450.0,
        }],
    });
    // rps needs 10: 2 + 1.2 + 5 = 8.2 → 9.
    assert_eq!(decide(&r).desired_replicas, 9);
}

#[test]
fn an_unavailable_signal_is_left_out_and_said() {
    let mut r = request(SEEDS);
    r.metrics[1].value = None;
    // (0.2 × 10 + 0.5 × 6) / 0.7 = 7.14 → 8.
    let d = decide(&r);
    assert_eq!(d.desired_replicas, 8, "{}", d.reason);
    assert!(d.reason.contains("unavailable: memory"), "{}", d.reason);
    for m in &mut r.metrics {
        m.value = None;
    }
    let e = harness::decide::<Weighted>(&r).unwrap_err();
    assert!(e.contains("no signal is available"), "{e}");
}

#[test]
fn small_dips_hold_the_count() {
    let mut r = request(SEEDS);
    r.target.current_replicas = 7;
    // rps 5.6 pods: 2 + 1.2 + 2.8 = 6.0 → 6, more than 10% below 7: down.
    r.metrics[2].value = Some(252.0);
    assert_eq!(decide(&r).desired_replicas, 6);
    // 2 + 1.2 + 2.9 = 6.1 → 7: no change.
    r.metrics[2].value = Some(261.0);
    assert_eq!(decide(&r).desired_replicas, 7);
    r.config = SEEDS.replacen('{', r#"{"scaleDownTolerance": 0.2, "#, 1);
    r.metrics[2].value = Some(252.0);
    let d = decide(&r);
    assert_eq!(d.desired_replicas, 7, "{}", d.reason);
    assert!(d.reason.starts_with("holding"), "{}", d.reason);
}

#[test]
fn rejects_bad_configs() {
    for (config, needle) in [
        (r#"{"signals": []}"#, "1 to 16 signals"),
        (r#"{"signals": [{"metric": "cpu", "perPod": 0}]}"#, "perPod"),
        (
            r#"{"signals": [{"metric": "cpu", "perPod": 1, "weight": -1}]}"#,
            "weight",
        ),
        (
            r#"{"signals": [{"metric": "cpu", "perPod": 1}, {"metric": "cpu", "perPod": 2}]}"#,
            "listed twice",
        ),
        (
            r#"{"signals": [{"metric": "cpu", "perPod": 1, "weight": 0}]}"#,
            "weight 0",
        ),
        (
            r#"{"signals": [{"metric": "cpu", "perPod": 1}], "combine": "sum"}"#,
            "unknown variant",
        ),
        (
            r#"{"signals": [{"metric": "cpu", "perPod": 1}], "scaleDownTolerance": 1}"#,
            "scaleDownTolerance",
        ),
    ] {
        let e = harness::validate_decider_config::<Weighted>(config).unwrap_err();
        assert!(e.contains(needle), "{config}: {e}");
    }
}
