use super::*;
use wasm_autoscaler_guest::{harness, ForecastPoint, MetricForecast, MetricValue, TargetState};

fn request(now: f64, forecast: &[f64]) -> DecideRequest {
    DecideRequest {
        target: TargetState {
            now_ms: 0.0,
            current_replicas: 3,
            ready_replicas: 3,
            warming_replicas: 0,
            min_replicas: 1,
            max_replicas: 50,
        },
        metrics: vec![MetricValue {
            name: "rps".into(),
            value: Some(now),
        }],
        forecasts: vec![MetricForecast {
            name: "rps".into(),
            points: forecast
                .iter()
                .enumerate()
                .map(|(i, &v)| ForecastPoint {
                    time_ms: (i + 1) as f64 * 15_000.0,
                    value: v,
                })
                .collect(),
        }],
        config: r#"{"capacityPerPod": 10, "targetUtilization": 0.5}"#.into(),
        state: None,
    }
}

#[test]
fn sizes_for_the_forecast_peak() {
    let d = harness::decide::<ForecastSizing>(&request(20.0, &[30.0, 61.0, 40.0])).unwrap();
    assert_eq!(d.desired_replicas, 13);
    assert!(
        d.reason.contains("forecast peak 61.0 in 30s"),
        "{}",
        d.reason
    );
}

#[test]
fn never_sizes_below_current_load() {
    let d = harness::decide::<ForecastSizing>(&request(40.0, &[10.0])).unwrap();
    assert_eq!(d.desired_replicas, 8);
}

#[test]
fn small_dips_hold_the_current_count() {
    let mut r = request(14.0, &[]);
    r.target.current_replicas = 3;
    // 14 / 5 → 3: no change; 10 / 5 → 2 is a third below 3: scale down.
    assert_eq!(
        harness::decide::<ForecastSizing>(&r)
            .unwrap()
            .desired_replicas,
        3
    );
    r.target.current_replicas = 30;
    r.metrics[0].value = Some(140.0);
    // 28 is within 10% of 30.
    let d = harness::decide::<ForecastSizing>(&r).unwrap();
    assert_eq!(d.desired_replicas, 30, "{}", d.reason);
    r.metrics[0].value = Some(100.0);
    assert_eq!(
        harness::decide::<ForecastSizing>(&r)
            .unwrap()
            .desired_replicas,
        20
    );
}

#[test]
fn headroom_adds_capacity() {
    let mut r = request(40.0, &[]);
    r.config = r#"{"capacityPerPod": 10, "targetUtilization": 0.5, "headroom": 0.25}"#.into();
    assert_eq!(
        harness::decide::<ForecastSizing>(&r)
            .unwrap()
            .desired_replicas,
        10
    );
}

#[test]
fn scale_down_utilization_is_a_hysteresis_band() {
    // 10 pods, load for 7.9 at 0.5 per pod (8 pods): down to 8 without
    // the band; at 0.4 per pod it needs 10 and holds.
    let mut r = request(39.5, &[]);
    r.target.current_replicas = 10;
    assert_eq!(
        harness::decide::<ForecastSizing>(&r)
            .unwrap()
            .desired_replicas,
        8
    );
    r.config =
        r#"{"capacityPerPod": 10, "targetUtilization": 0.5, "scaleDownUtilization": 0.4}"#.into();
    let d = harness::decide::<ForecastSizing>(&r).unwrap();
    assert_eq!(d.desired_replicas, 10, "{}", d.reason);
    assert!(d.reason.contains("above 0.4 utilization"), "{}", d.reason);
    // Far enough down it scales, sized at the band's utilization: 20 / 4 → 5.
    r.metrics[0].value = Some(20.0);
    assert_eq!(
        harness::decide::<ForecastSizing>(&r)
            .unwrap()
            .desired_replicas,
        5
    );
    // Scale-ups are sized at the target: 60 / 5 → 12.
    r.metrics[0].value = Some(60.0);
    assert_eq!(
        harness::decide::<ForecastSizing>(&r)
            .unwrap()
            .desired_replicas,
        12
    );
}

#[test]
fn without_use_current_the_forecast_alone_decides() {
    // A spike in the current value the predictor chose not to chase.
    let mut r = request(100.0, &[20.0, 20.0]);
    assert_eq!(
        harness::decide::<ForecastSizing>(&r)
            .unwrap()
            .desired_replicas,
        20
    );
    r.config = r#"{"capacityPerPod": 10, "targetUtilization": 0.5, "useCurrent": false}"#.into();
    assert_eq!(
        harness::decide::<ForecastSizing>(&r)
            .unwrap()
            .desired_replicas,
        4
    );
    // With no forecast the current value is all there is.
    r.forecasts.clear();
    assert_eq!(
        harness::decide::<ForecastSizing>(&r)
            .unwrap()
            .desired_replicas,
        20
    );
}

#[test]
fn rejects_bad_configs() {
    for (c, needle) in [
        (r#"{}"#, "capacityPerPod"),
        (r#"{"capacityPerPod": 0}"#, "capacityPerPod"),
        (
            r#"{"capacityPerPod": 1, "targetUtilization": 0.7, "scaleDownUtilization": 0.8}"#,
            "scaleDownUtilization",
        ),
        (
            r#"{"capacityPerPod": 1, "targetUtilization": 1.5}"#,
            "targetUtilization",
        ),
    ] {
        let e = harness::validate_decider_config::<ForecastSizing>(c).unwrap_err();
        assert!(e.contains(needle), "{c}: {e}");
    }
}

/// Decides on each value in turn, 15 s apart, handing each decision's state
/// and replica count to the next; the last decision.
fn run(config: &str, current: u32, values: &[f64]) -> Decision {
    let mut r = request(values[0], &[]);
    r.forecasts.clear();
    r.config = config.into();
    r.target.current_replicas = current;
    let mut last = None;
    for (i, &v) in values.iter().enumerate() {
        r.target.now_ms = i as f64 * 15_000.0;
        r.metrics[0].value = Some(v);
        let d = harness::decide::<ForecastSizing>(&r).unwrap();
        r.state = d.state.clone();
        r.target.current_replicas = d.desired_replicas;
        last = Some(d);
    }
    last.unwrap()
}

/// `n` values around `level`, ±2%, in a fixed pattern.
fn steady(n: usize, level: f64) -> Vec<f64> {
    (0..n)
        .map(|i| level * (1.0 + 0.02 * [0.0, 1.0, -1.0, 0.5, -0.5][i % 5]))
        .collect()
}

const GUARDED: &str = r#"{"capacityPerPod": 10, "targetUtilization": 0.5, "anomaly": {}}"#;
const PLAIN: &str = r#"{"capacityPerPod": 10, "targetUtilization": 0.5}"#;

#[test]
fn a_lone_spike_is_not_chased_and_the_reason_says_why() {
    let mut values = steady(30, 100.0);
    let before = run(GUARDED, 20, &values).desired_replicas;
    values.push(400.0);
    // Without the guard the spike is sized for: 400 / 5 → 80 pods.
    assert_eq!(run(PLAIN, 20, &values).desired_replicas, 80);
    let d = run(GUARDED, 20, &values);
    assert_eq!(d.desired_replicas, before, "{}", d.reason);
    assert!(
        d.reason.contains("`rps` 400.0 is an anomaly"),
        "{}",
        d.reason
    );
    assert!(d.reason.contains("above its EWMA"), "{}", d.reason);
    assert!(d.reason.contains("not chased"), "{}", d.reason);
    // The next ordinary value is sized as usual.
    values.push(106.0);
    let d = run(GUARDED, 20, &values);
    assert_eq!(d.desired_replicas, 22, "{}", d.reason);
    assert!(!d.reason.contains("anomaly"), "{}", d.reason);
}

#[test]
fn a_sustained_run_of_anomalies_is_followed_at_once() {
    let mut values = steady(30, 100.0);
    let before = run(GUARDED, 20, &values).desired_replicas;
    values.extend([400.0, 400.0]);
    assert_eq!(run(GUARDED, 20, &values).desired_replicas, before);
    values.push(400.0);
    let d = run(GUARDED, 20, &values);
    assert_eq!(d.desired_replicas, 80, "{}", d.reason);
    assert!(
        d.reason.contains("the anomaly 3 in a row: the new level"),
        "{}",
        d.reason
    );
    // `sustained: 1` follows every anomaly.
    let d = run(
        r#"{"capacityPerPod": 10, "targetUtilization": 0.5, "anomaly": {"sustained": 1}}"#,
        20,
        &values[..31],
    );
    assert_eq!(d.desired_replicas, 80, "{}", d.reason);
}

#[test]
fn a_lone_drop_is_no_reason_to_scale_down() {
    let mut values = steady(30, 100.0);
    let before = run(GUARDED, 20, &values).desired_replicas;
    values.push(5.0);
    assert_eq!(run(PLAIN, 20, &values).desired_replicas, 1);
    let d = run(GUARDED, 20, &values);
    assert_eq!(d.desired_replicas, before, "{}", d.reason);
    assert!(
        d.reason
            .starts_with("holding: no scale-down on an anomaly: `rps` 5.0 is an anomaly"),
        "{}",
        d.reason
    );
    assert!(d.reason.contains("below its EWMA"), "{}", d.reason);
}

#[test]
fn nothing_is_an_anomaly_before_the_guard_has_learnt() {
    // The fifth value is four times the first four: too early to judge.
    let d = run(GUARDED, 20, &[100.0, 100.0, 100.0, 100.0, 400.0]);
    assert_eq!(d.desired_replicas, 80, "{}", d.reason);
}

const DWELL: &str =
    r#"{"capacityPerPod": 10, "targetUtilization": 0.5, "scaleDownDwellSeconds": 60}"#;

#[test]
fn a_scale_down_waits_out_the_dwell_and_takes_the_most_it_wanted() {
    // 100 → 20 pods; then 50, 60, 40, 40, 40 (10, 12, 8, 8, 8 pods): the
    // dwell starts at the first of them (15 s) and ends at 75 s.
    let d = run(DWELL, 20, &[100.0, 50.0, 60.0, 40.0, 40.0]);
    assert_eq!(d.desired_replicas, 20, "{}", d.reason);
    assert!(
        d.reason.contains("the scale-down dwell ends in 15s"),
        "{}",
        d.reason
    );
    let d = run(DWELL, 20, &[100.0, 50.0, 60.0, 40.0, 40.0, 40.0]);
    assert_eq!(d.desired_replicas, 12, "{}", d.reason);
    assert!(
        d.reason
            .starts_with("12 pods, the most any decision of the last 60s wanted"),
        "{}",
        d.reason
    );
    // Without the dwell the first dip scales down.
    assert_eq!(run(PLAIN, 20, &[100.0, 50.0]).desired_replicas, 10);
}

#[test]
fn a_tick_that_wants_no_fewer_pods_starts_the_dwell_again() {
    // The dip at 15–45 s is broken at 60 s; from 75 s it needs 60 s more.
    let values = [100.0, 50.0, 50.0, 50.0, 100.0, 50.0, 50.0, 50.0, 50.0];
    assert_eq!(run(DWELL, 20, &values).desired_replicas, 20);
    let mut longer = values.to_vec();
    longer.push(50.0);
    assert_eq!(run(DWELL, 20, &longer).desired_replicas, 10);
}

#[test]
fn a_dwell_never_scales_up_when_the_count_fell_under_it() {
    // 12 pods wanted at 15 s, then someone scales the target to 10 by hand;
    // the dwell ends at 75 s wanting 8, the most of the dwell being 12.
    let mut r = request(60.0, &[]);
    r.forecasts.clear();
    r.config = DWELL.into();
    r.target.current_replicas = 20;
    for (i, (load, current)) in [(60.0, 20), (40.0, 10), (40.0, 10), (40.0, 10), (40.0, 10)]
        .into_iter()
        .enumerate()
    {
        r.target.now_ms = (i + 1) as f64 * 15_000.0;
        r.target.current_replicas = current;
        r.metrics[0].value = Some(load);
        let d = harness::decide::<ForecastSizing>(&r).unwrap();
        assert!(d.desired_replicas <= current, "{}: {}", i, d.reason);
        if i == 4 {
            assert!(
                d.reason
                    .starts_with("holding: the scale-down dwell ended wanting 12 pods"),
                "{}",
                d.reason
            );
        }
        r.state = d.state;
    }
}

#[test]
fn state_is_kept_only_when_a_guard_needs_it_and_foreign_state_starts_afresh() {
    assert_eq!(run(PLAIN, 20, &[100.0]).state, None);
    let kept = run(GUARDED, 20, &[100.0])
        .state
        .expect("the guard keeps state");
    let mut r = request(100.0, &[]);
    r.forecasts.clear();
    r.target.current_replicas = 20;
    r.config = GUARDED.into();
    for foreign in [
        vec![],
        vec![7u8; kept.len()],
        kept[..kept.len() - 1].to_vec(),
    ] {
        r.state = Some(foreign);
        let d = harness::decide::<ForecastSizing>(&r).unwrap();
        assert_eq!(d.desired_replicas, 20, "{}", d.reason);
        assert_eq!(d.state.as_ref(), Some(&kept));
    }
    // A damaged guard (a NaN level) learns again instead of judging by it.
    let mut damaged = kept.clone();
    damaged[1..9].copy_from_slice(&f64::NAN.to_le_bytes());
    r.state = Some(damaged);
    r.metrics[0].value = Some(400.0);
    assert_eq!(
        harness::decide::<ForecastSizing>(&r)
            .unwrap()
            .desired_replicas,
        80
    );
}

#[test]
fn rejects_bad_guard_configs() {
    for (c, needle) in [
        (r#""anomaly": {"zScore": 1}"#, "anomaly.zScore"),
        (r#""anomaly": {"alpha": 1}"#, "anomaly.alpha"),
        (r#""anomaly": {"alpha": 0}"#, "anomaly.alpha"),
        (r#""anomaly": {"sustained": 0}"#, "anomaly.sustained"),
        (r#""anomaly": {"sustained": 5000}"#, "anomaly.sustained"),
        (r#""anomaly": {"window": 3}"#, "window"),
        (r#""scaleDownDwellSeconds": -1"#, "scaleDownDwellSeconds"),
        (r#""scaleDownDwellSeconds": 1e9"#, "scaleDownDwellSeconds"),
    ] {
        let config = format!(r#"{{"capacityPerPod": 1, {c}}}"#);
        let e = harness::validate_decider_config::<ForecastSizing>(&config).unwrap_err();
        assert!(e.contains(needle), "{config}: {e}");
    }
}
