use super::*;
use wasm_autoscaler_guest::{harness, Sample};

const STEP_MS: f64 = 15_000.0;

fn request(values: &[f64], config: &str) -> ForecastRequest {
    let samples: Vec<Sample> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| Sample {
            time_ms: i as f64 * STEP_MS,
            value: v,
        })
        .collect();
    ForecastRequest {
        now_ms: samples.last().map_or(0.0, |s| s.time_ms),
        horizon_ms: 75_000.0,
        step_ms: STEP_MS,
        histories: vec![MetricHistory {
            name: "rps".into(),
            samples,
        }],
        config: config.into(),
        state: None,
    }
}

/// The highest point of the forecast.
fn peak(values: &[f64], config: &str) -> f64 {
    let r = harness::forecast::<Adaptive>(&request(values, config)).unwrap();
    let points = &r.forecasts[0].points;
    assert_eq!(points.len(), 5);
    points.iter().map(|p| p.value).fold(f64::MIN, f64::max)
}

/// A deterministic, zero-mean wobble of amplitude `a` (a fixed pseudo-random sequence).
fn wobble(n: usize, level: f64, a: f64) -> Vec<f64> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            level + a * ((x % 2001) as f64 / 1000.0 - 1.0)
        })
        .collect()
}

#[test]
fn a_flat_history_forecasts_itself() {
    let p = peak(&[50.0; 120], "");
    assert!((p - 50.0).abs() < 1e-9, "{p}");
}

#[test]
fn the_margin_grows_with_the_noise() {
    let calm = peak(&wobble(240, 100.0, 5.0), "");
    let bursty = peak(&wobble(240, 100.0, 30.0), "");
    assert!(calm > 100.0 && calm < 112.0, "{calm}");
    assert!(bursty > calm + 15.0, "calm {calm}, bursty {bursty}");
    // A higher quantile covers more, so it is wider.
    let wide = peak(&wobble(240, 100.0, 30.0), r#"{"quantile": 0.99}"#);
    assert!(wide > bursty, "{bursty} vs {wide}");
}

#[test]
fn a_ramp_is_forecast_ahead_not_trailed() {
    let ramp: Vec<f64> = (0..120).map(|i| 100.0 + 2.0 * i as f64).collect();
    // The last sample is 338; 75 s (5 samples) ahead the ramp is at 348.
    let p = peak(&ramp, "");
    assert!((347.0..360.0).contains(&p), "{p}");
    // The look-ahead adds the next two minutes of the rise (8 samples, 16 rps).
    let batched = peak(&ramp, r#"{"lookaheadSeconds": 120}"#);
    assert!((batched - p - 16.0).abs() < 0.5, "{p} → {batched}");
}

#[test]
fn a_lone_spike_is_not_chased_and_a_sustained_one_is() {
    let mut history = wobble(200, 100.0, 3.0);
    let quiet = peak(&history, "");
    history.push(400.0);
    let spiked = peak(&history, "");
    assert!((spiked - quiet).abs() < 3.0, "{quiet} vs {spiked}");
    let band = Band::of(
        &Config {
            metric: "rps".into(),
            quantile: 0.95,
            z_score: 4.0,
            sustained: 3,
            lookahead_seconds: 0.0,
        },
        &request(&history, "").histories[0],
        75_000.0,
    )
    .unwrap();
    assert!(band.guarded);
    history.extend([400.0, 400.0]);
    let sustained = peak(&history, "");
    assert!(sustained >= 400.0, "three samples at 400: {sustained}");
}

#[test]
fn a_spike_in_the_past_does_not_widen_the_margin() {
    let base = wobble(240, 100.0, 3.0);
    let mut spiked = base.clone();
    spiked[100] = 900.0;
    let (a, b) = (peak(&base, ""), peak(&spiked, ""));
    assert!((a - b).abs() < 1.0, "{a} vs {b}");
}

#[test]
fn no_samples_no_points() {
    let r = harness::forecast::<Adaptive>(&request(&[], "")).unwrap();
    assert!(r.forecasts.is_empty());
}

#[test]
fn rejects_bad_configs() {
    for (config, needle) in [
        (r#"{"quantile": 0.4}"#, "quantile"),
        (r#"{"zScore": 1}"#, "zScore"),
        (r#"{"sustained": 0}"#, "sustained"),
        (r#"{"lookaheadSeconds": -1}"#, "lookaheadSeconds"),
        (r#"{"alpha": 1}"#, "unknown field"),
    ] {
        let e = harness::validate_predictor_config::<Adaptive>(config).unwrap_err();
        assert!(e.contains(needle), "{config}: {e}");
    }
}
