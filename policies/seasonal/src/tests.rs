use super::*;
use policy_ewma_trend::EwmaTrend;
use wasm_autoscaler_guest::long_history::{self, CoarseHistory};
use wasm_autoscaler_guest::{harness, MetricHistory, Sample};

const STEP_MS: f64 = 15_000.0;
const HORIZON_MS: f64 = 75_000.0;

fn request(samples: &[Sample], config: &str, state: Option<Vec<u8>>) -> ForecastRequest {
    ForecastRequest {
        now_ms: samples.last().map_or(0.0, |s| s.time_ms),
        horizon_ms: HORIZON_MS,
        step_ms: STEP_MS,
        histories: vec![MetricHistory {
            name: "rps".into(),
            samples: samples.to_vec(),
        }],
        config: config.into(),
        state,
    }
}

/// A daily sine between 20 and 180 with a small pseudo-random wobble (±1.5), one sample per 15 s.
fn daily_sine(days: usize) -> Vec<Sample> {
    let per_day = (DAY_S * 1000) as f64 / STEP_MS;
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    (0..(days as f64 * per_day) as usize)
        .map(|i| {
            let t = i as f64 * STEP_MS;
            let phase = std::f64::consts::TAU * t / (DAY_S as f64 * 1000.0);
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let wobble = 3.0 * (x % 1001) as f64 / 1000.0 - 1.5;
            Sample {
                time_ms: t,
                value: 100.0 + 80.0 * phase.sin() + wobble,
            }
        })
        .collect()
}

/// Replays `samples` as the host would (the latest 240 each tick, the state
/// handed back), and returns the mean absolute error of the horizon-ahead
/// forecast over the last day.
fn replay_error<P: Predictor>(samples: &[Sample], config: &str) -> f64 {
    let per_day = (DAY_S * 1000) as f64 / STEP_MS;
    let scored_from = samples.len() - per_day as usize;
    let ahead = (HORIZON_MS / STEP_MS) as usize;
    let (mut state, mut sum, mut n) = (None, 0.0, 0);
    for end in 1..samples.len() - ahead {
        let window = &samples[end.saturating_sub(240)..end];
        let r = harness::forecast::<P>(&request(window, config, state.take())).unwrap();
        state = r.state;
        if end >= scored_from {
            let forecast = r.forecasts[0].points.last().unwrap().value;
            sum += (forecast - samples[end - 1 + ahead].value).abs();
            n += 1;
        }
    }
    sum / f64::from(n)
}

#[test]
fn on_a_daily_sine_it_beats_ewma_trend() {
    let samples = daily_sine(3);
    let seasonal = replay_error::<Seasonal>(&samples, "");
    let trend = replay_error::<EwmaTrend>(&samples, "");
    eprintln!(
        "day 3, 75 s ahead, mean absolute error: seasonal {seasonal:.3}, ewma-trend {trend:.3}"
    );
    assert!(
        seasonal < 0.8 * trend,
        "seasonal {seasonal:.3} vs ewma-trend {trend:.3} mean absolute error"
    );
}

#[test]
fn without_a_profile_it_forecasts_the_ewma() {
    let samples: Vec<Sample> = (0..10)
        .map(|i| Sample {
            time_ms: i as f64 * STEP_MS,
            value: if i < 9 { 10.0 } else { 20.0 },
        })
        .collect();
    // Nine samples at 10, one at 20: the EWMA at α = 0.5 is 15.
    let r = harness::forecast::<Seasonal>(&request(&samples, r#"{"alpha": 0.5}"#, None)).unwrap();
    assert!(r.forecasts[0]
        .points
        .iter()
        .all(|p| (p.value - 15.0).abs() < 1e-9));
}

#[test]
fn the_profile_survives_in_state_and_foreign_state_is_ignored() {
    let samples = daily_sine(1);
    let mut profile = Profile::new(288, 300);
    profile.learn(&samples, 0.5);
    let bytes = profile.encode();
    assert!(bytes.len() < 1300, "{} bytes", bytes.len());
    // (NaN slots make `==` on profiles useless: compare the encodings.)
    assert_eq!(
        Profile::decode(&bytes, 288, 300).map(|p| p.encode()),
        Some(bytes.clone())
    );
    // Another slot length, a truncation, a stray byte: none is this profile.
    assert_eq!(Profile::decode(&bytes, 288, 600), None);
    assert_eq!(Profile::decode(&bytes[..bytes.len() - 1], 288, 300), None);
    assert_eq!(
        Profile::decode(&[bytes.clone(), vec![0]].concat(), 288, 300),
        None
    );
    // A predictor handed garbage starts over instead of failing.
    let r = harness::forecast::<Seasonal>(&request(&samples[..240], "", Some(vec![7; 9]))).unwrap();
    assert_eq!(r.forecasts[0].points.len(), 5);
}

#[test]
fn rejects_bad_configs() {
    for (config, needle) in [
        (r#"{"slotSeconds": 7}"#, "slotSeconds"),
        (r#"{"slotSeconds": 420}"#, "slotSeconds"),
        (r#"{"blend": 0}"#, "blend"),
        (r#"{"alpha": 2}"#, "alpha"),
        (r#"{"period": "month"}"#, "unknown variant"),
    ] {
        let e = harness::validate_predictor_config::<Seasonal>(config).unwrap_err();
        assert!(e.contains(needle), "{config}: {e}");
    }
}

/// 5-minute means of `samples`, stamped with each step's end, as the host's long history holds them.
fn five_minute_means(samples: &[Sample]) -> CoarseHistory {
    let step_ms = 300_000.0;
    let mut out: Vec<Sample> = Vec::new();
    for chunk in
        samples.chunk_by(|a, b| ((a.time_ms / step_ms) as u64) == ((b.time_ms / step_ms) as u64))
    {
        let mean = chunk.iter().map(|s| s.value).sum::<f64>() / chunk.len() as f64;
        let end = ((chunk[0].time_ms / step_ms) as u64 + 1) as f64 * step_ms;
        out.push(Sample {
            time_ms: end,
            value: mean,
        });
    }
    CoarseHistory {
        name: "rps".into(),
        step_ms,
        samples: out,
    }
}

#[test]
fn a_long_history_gives_a_fresh_instance_the_profile_it_would_have_learned() {
    // Two days and an hour of a daily sine; now is an hour into the third
    // day, while the traffic climbs, so the profile matters.
    let samples = daily_sine(3);
    let now = (2 * DAY_S * 1000) as usize / STEP_MS as usize + 240;
    let recent = &samples[now - 240..now];
    // The policy that ran all along: its profile learned through `state`.
    let mut state = None;
    for end in (240..now).step_by(40) {
        let r = harness::forecast::<Seasonal>(&request(&samples[end - 240..end], "", state.take()))
            .unwrap();
        state = r.state;
    }
    let ran_along = harness::forecast::<Seasonal>(&request(recent, "", state)).unwrap();
    // A fresh instance (an operator restart): no state, no long history.
    long_history::set_for_tests("rps", None);
    let forgot = harness::forecast::<Seasonal>(&request(recent, "", None)).unwrap();
    // A fresh instance with the long history of everything before the recent samples.
    let before = &samples[..now - 240];
    long_history::set_for_tests("rps", Some(five_minute_means(before)));
    let restored = harness::forecast::<Seasonal>(&request(recent, "", None)).unwrap();
    long_history::set_for_tests("rps", None);
    assert_eq!(
        restored.state, None,
        "with a long history it keeps no state"
    );

    let at_horizon = |r: &ForecastResponse| r.forecasts[0].points.last().unwrap().value;
    let (a, f, r) = (
        at_horizon(&ran_along),
        at_horizon(&forgot),
        at_horizon(&restored),
    );
    let truth = samples[now - 1 + (HORIZON_MS / STEP_MS) as usize].value;
    eprintln!("75 s ahead: ran along {a:.3}, forgot {f:.3}, restored {r:.3}, actual {truth:.3}");
    assert!(
        (r - a).abs() < 0.1 * (f - a).abs(),
        "restored {r:.3} should be near ran-along {a:.3}, unlike forgot {f:.3}"
    );
}

#[test]
fn a_step_longer_than_a_slot_fills_every_slot_it_spans() {
    let long = CoarseHistory {
        name: "rps".into(),
        step_ms: 3_600_000.0,
        samples: vec![Sample {
            time_ms: 7_200_000.0,
            value: 5.0,
        }],
    };
    let spread = spread(&long, 300);
    assert_eq!(spread.len(), 12);
    assert_eq!(spread[0].time_ms, 3_600_000.0 + 150_000.0);
    assert_eq!(spread[11].time_ms, 7_200_000.0 - 150_000.0);
}
