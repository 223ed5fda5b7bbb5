//! The bundled reference policies, compiled to components and run by the host.

use wasm_autoscaler::bundled;
use wasm_autoscaler::runtime::bindings::DecideRequest;
use wasm_autoscaler::runtime::{synthetic, Runtime, RuntimeConfig, RuntimeError, World};

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig::default()).unwrap()
}

#[test]
fn every_bundled_policy_loads_and_reports_its_world() {
    let rt = runtime();
    for (name, world) in [
        ("hpa", World::Decider),
        ("ewma-trend", World::Predictor),
        ("forecast", World::Decider),
    ] {
        let policy = rt.load(bundled::policy(name).unwrap()).unwrap();
        assert_eq!(policy.world(), world, "{name}");
        for import in &policy.info().imports {
            assert!(
                import.starts_with("wasi:") || import.starts_with("wasm-autoscaler:policy/"),
                "{name} imports {import}"
            );
        }
    }
}

#[test]
fn ewma_trend_forecasts_through_wasm() {
    let rt = runtime();
    let mut i = rt.load(bundled::EWMA_TREND).unwrap().instantiate().unwrap();
    let r = i
        .forecast(&synthetic::forecast_request(240, r#"{"alpha": 0.5}"#))
        .unwrap();
    assert_eq!(r.forecasts.len(), 1);
    // A 120 s horizon at 15 s steps.
    assert_eq!(r.forecasts[0].points.len(), 8);
    assert!(r.forecasts[0]
        .points
        .iter()
        .all(|p| p.value.is_finite() && p.value >= 0.0));
}

#[test]
fn forecast_decider_sizes_for_the_forecast_through_wasm() {
    let rt = runtime();
    let mut i = rt.load(bundled::FORECAST).unwrap().instantiate().unwrap();
    let config = r#"{"capacityPerPod": 50, "targetUtilization": 0.5}"#;
    let d = i
        .decide(&synthetic::decide_request(
            config,
            synthetic::forecast_of_rps(),
        ))
        .unwrap();
    // The forecast peaks at 480 rps; 480 / 25 → 20 pods.
    assert_eq!(d.desired_replicas, 20, "{}", d.reason);
    assert!(d.reason.contains("forecast peak 480.0"), "{}", d.reason);
}

#[test]
fn forecast_decider_keeps_its_anomaly_guard_in_state_through_wasm() {
    let rt = runtime();
    let mut i = rt.load(bundled::FORECAST).unwrap().instantiate().unwrap();
    let config = r#"{"capacityPerPod": 50, "targetUtilization": 0.5, "anomaly": {}}"#;
    let mut request = synthetic::decide_request(config, Vec::new());
    // Thirty ticks at 240–242 rps (10 pods), each handed the last one's state as
    // the host does, then one at 2,000.
    let mut decide = |rps: f64, request: &mut DecideRequest| {
        request.metrics[0].value = Some(rps);
        request.target.now_ms += 15_000.0;
        let d = i.decide(request).unwrap();
        request.state = d.state.clone();
        d
    };
    for k in 0..30 {
        let d = decide(240.0 + f64::from(k % 3), &mut request);
        assert_eq!(d.desired_replicas, 10, "{}", d.reason);
    }
    assert!(request.state.is_some(), "the guard keeps its EWMA in state");
    let d = decide(2_000.0, &mut request);
    assert_eq!(d.desired_replicas, 10, "{}", d.reason);
    assert!(
        d.reason.contains("`rps` 2000.0 is an anomaly") && d.reason.contains("not chased"),
        "{}",
        d.reason
    );
    // Without the state handed back, the guard has learnt nothing and the
    // same value is sized for: 2,000 / 25 → 80 pods.
    request.state = None;
    let d = decide(2_000.0, &mut request);
    assert_eq!(d.desired_replicas, 80, "{}", d.reason);
}

#[test]
fn a_bad_config_is_reported_by_validate_config() {
    let rt = runtime();
    let mut i = rt.load(bundled::FORECAST).unwrap().instantiate().unwrap();
    match i.validate_config(r#"{"capacityPerPod": -3}"#) {
        Err(RuntimeError::Config(m)) => assert!(m.contains("capacityPerPod"), "{m}"),
        other => panic!("expected a config error, got {other:?}"),
    }
    match i.validate_config(r#"{"capacityPerPod": 3, "bogus": 1}"#) {
        Err(RuntimeError::Config(m)) => assert!(m.contains("unknown field `bogus`"), "{m}"),
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn the_same_component_compiles_once() {
    let rt = runtime();
    let a = rt.load(bundled::HPA).unwrap();
    let digest = a.digest();
    assert!(rt.cached(&digest).is_some());
    let b = rt.load(bundled::HPA).unwrap();
    assert_eq!(a.digest(), b.digest());
}
