//! The `ewma-trend` predictor written in Python, JavaScript, C and Zig (built by
//! `scripts/build-policies`) gives the Rust reference's answers: the same
//! accepted and refused configurations, the same number of points, and
//! forecasts within [`TOLERANCE`].
//!
//! The components are found in `target/policies/`. When they are missing
//! the tests say so and skip, unless `WASM_AUTOSCALER_REQUIRE_LANGUAGES=1`
//! (set by `scripts/test`, which builds them first) makes that a failure.

use std::sync::OnceLock;
use std::time::Duration;

use wasm_autoscaler::bundled;
use wasm_autoscaler::runtime::bindings::{
    ForecastRequest, ForecastResponse, MetricHistory, Sample,
};
use wasm_autoscaler::runtime::{Instance, Runtime, RuntimeConfig, World};
use wasm_autoscaler::sim::Trace;
use wasm_autoscaler_tests::fixtures::{built_policy, POLICY_LANGUAGES};

/// Largest relative difference allowed between two forecast values (the
/// implementations do the same operations in the same order, so in practice
/// they agree exactly; this leaves room for a libm that rounds differently).
const TOLERANCE: f64 = 1e-9;

/// The built component of each language, or `None` (after saying why) when
/// they were not built and not required.
pub(crate) fn built() -> Option<Vec<(&'static str, Vec<u8>)>> {
    let mut found = Vec::new();
    for lang in POLICY_LANGUAGES {
        match built_policy(lang) {
            Ok(bytes) => found.push((lang, bytes)),
            Err(why) => {
                if std::env::var("WASM_AUTOSCALER_REQUIRE_LANGUAGES").as_deref() == Ok("1") {
                    panic!("other-language policies are required: {why}");
                }
                eprintln!("SKIPPED other-language policy test: {why}");
                return None;
            }
        }
    }
    Some(found)
}

/// One runtime for the module, so each large component is compiled once.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    // The deadline is not under test here; a generous one keeps a loaded CI
    // machine from turning a slow call into a difference.
    RUNTIME.get_or_init(|| {
        Runtime::new(RuntimeConfig {
            deadline: Duration::from_secs(2),
            ..RuntimeConfig::default()
        })
        .unwrap()
    })
}

/// The reference instance and one per language.
fn instances(rt: &Runtime, built: &[(&'static str, Vec<u8>)]) -> Vec<(&'static str, Instance)> {
    let mut all = vec![(
        "rust",
        rt.load(bundled::EWMA_TREND).unwrap().instantiate().unwrap(),
    )];
    for (lang, bytes) in built {
        let policy = rt
            .load(bytes)
            .unwrap_or_else(|e| panic!("{lang} policy does not load: {e}"));
        assert_eq!(policy.world(), World::Predictor, "{lang}");
        all.push((lang, policy.instantiate().unwrap()));
    }
    all
}

fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= TOLERANCE * a.abs().max(b.abs()).max(1.0)
}

fn same_forecast(case: &str, lang: &str, want: &ForecastResponse, got: &ForecastResponse) {
    assert_eq!(
        want.forecasts.len(),
        got.forecasts.len(),
        "{case}: {lang} forecast a different set of metrics"
    );
    for (w, g) in want.forecasts.iter().zip(&got.forecasts) {
        assert_eq!(w.name, g.name, "{case}: {lang}");
        assert_eq!(
            w.points.len(),
            g.points.len(),
            "{case}: {lang} gave a different number of points for {}",
            w.name
        );
        for (k, (wp, gp)) in w.points.iter().zip(&g.points).enumerate() {
            assert!(
                close(wp.time_ms, gp.time_ms) && close(wp.value, gp.value),
                "{case}: {lang} point {k} of {} is ({}, {}), the reference says ({}, {})",
                w.name,
                gp.time_ms,
                gp.value,
                wp.time_ms,
                wp.value
            );
        }
    }
    assert!(got.state.is_none(), "{case}: {lang} returned state");
}

/// Runs `request` through every instance and compares each with the reference.
fn agree(case: &str, all: &mut [(&'static str, Instance)], request: &ForecastRequest) {
    let (reference, others) = all.split_first_mut().unwrap();
    let want = reference.1.forecast(request).map_err(|e| e.to_string());
    for (lang, instance) in others {
        let got = instance.forecast(request).map_err(|e| e.to_string());
        match (&want, &got) {
            (Ok(w), Ok(g)) => same_forecast(case, lang, w, g),
            (Err(_), Err(_)) => {}
            _ => panic!("{case}: the reference gave {want:?} but {lang} gave {got:?}"),
        }
    }
}

fn series(name: &str, points: &[(f64, f64)]) -> MetricHistory {
    MetricHistory {
        name: name.into(),
        samples: points
            .iter()
            .map(|&(time_ms, value)| Sample { time_ms, value })
            .collect(),
    }
}

/// `n` samples every 15 s from `t0` following `f(i)`.
fn regular(name: &str, t0: f64, n: usize, f: impl Fn(usize) -> f64) -> MetricHistory {
    let points: Vec<(f64, f64)> = (0..n).map(|i| (t0 + i as f64 * 15_000.0, f(i))).collect();
    series(name, &points)
}

fn request(histories: Vec<MetricHistory>, config: &str) -> ForecastRequest {
    let now = histories
        .iter()
        .filter_map(|h| h.samples.last())
        .map(|s| s.time_ms)
        .fold(0.0, f64::max);
    ForecastRequest {
        now_ms: now,
        horizon_ms: 120_000.0,
        step_ms: 15_000.0,
        histories,
        config: config.into(),
        state: None,
    }
}

#[test]
fn other_languages_accept_and_refuse_the_same_configs() {
    let Some(built) = built() else { return };
    let rt = runtime();
    let mut all = instances(rt, &built);
    for config in [
        "",
        "  \n",
        "{}",
        r#"{"alpha": 0.3, "window": 4}"#,
        r#"{"alpha": 1, "window": 2, "horizonMs": 300000}"#,
        r#"{"metrics": null}"#,
        r#"{"metrics": []}"#,
        r#"{"metrics": ["rps", "r\u00e9qs"]}"#,
        r#"{"alpha": 0}"#,
        r#"{"alpha": 1.5}"#,
        r#"{"alpha": -0.1}"#,
        r#"{"alpha": "0.5"}"#,
        r#"{"alpha": null}"#,
        r#"{"alpha": 1e400}"#,
        r#"{"window": 1}"#,
        r#"{"window": -3}"#,
        r#"{"window": 2.5}"#,
        r#"{"window": true}"#,
        r#"{"horizonMs": -5}"#,
        r#"{"metrics": ["rps", 1]}"#,
        r#"{"metrics": "rps"}"#,
        r#"{"alpa": 0.5}"#,
        r#"[1, 2]"#,
        "null",
        "{",
        r#"{"alpha": 0.5} trailing"#,
        r#"{"alpha": 0.5,}"#,
        "NaN",
    ] {
        let (reference, others) = all.split_first_mut().unwrap();
        let want = reference.1.validate_config(config);
        for (lang, instance) in others.iter_mut() {
            let got = instance.validate_config(config);
            assert_eq!(
                want.is_ok(),
                got.is_ok(),
                "config {config:?}: the reference gave {want:?}, {lang} gave {got:?}"
            );
        }
    }
}

#[test]
fn other_languages_forecast_like_the_reference_on_edge_cases() {
    let Some(built) = built() else { return };
    let rt = runtime();
    let mut all = instances(rt, &built);
    let epoch = 1.7e12;
    let ramp = |i: usize| 100.0 + 7.5 * i as f64;
    let cases: Vec<(&str, ForecastRequest)> = vec![
        ("no metrics", request(vec![], "")),
        ("no samples", request(vec![series("rps", &[])], "")),
        (
            "one sample",
            request(vec![series("rps", &[(epoch, 42.0)])], ""),
        ),
        (
            "equal timestamps",
            request(vec![series("rps", &[(epoch, 1.0), (epoch, 9.0)])], ""),
        ),
        ("ramp", request(vec![regular("rps", epoch, 40, ramp)], "")),
        (
            "falling to zero",
            request(
                vec![regular("rps", epoch, 30, |i| {
                    (300.0 - 20.0 * i as f64).max(0.0)
                })],
                r#"{"alpha": 0.2, "window": 5}"#,
            ),
        ),
        (
            "window longer than history",
            request(vec![regular("rps", epoch, 3, ramp)], r#"{"window": 50}"#),
        ),
        (
            "alpha 1 and window 2",
            request(
                vec![regular("rps", epoch, 20, ramp)],
                r#"{"alpha": 1, "window": 2}"#,
            ),
        ),
        (
            "tiny alpha",
            request(vec![regular("rps", epoch, 20, ramp)], r#"{"alpha": 0.001}"#),
        ),
        (
            "huge and tiny values",
            request(
                vec![
                    regular("big", epoch, 20, |i| 1e15 * (1.0 + i as f64)),
                    regular("small", epoch, 20, |i| 1e-300 * i as f64),
                    regular("flat-zero", epoch, 20, |_| 0.0),
                ],
                "",
            ),
        ),
        (
            "overflow to infinity",
            request(vec![regular("rps", 0.0, 10, |i| 1e307 * i as f64)], ""),
        ),
        (
            "only the configured metrics",
            request(
                vec![
                    regular("rps", epoch, 20, ramp),
                    regular("cpu", epoch, 20, |i| i as f64 / 20.0),
                ],
                r#"{"metrics": ["cpu"]}"#,
            ),
        ),
        (
            "no configured metric",
            request(vec![regular("rps", epoch, 20, ramp)], r#"{"metrics": []}"#),
        ),
        (
            "config horizon longer than the host's",
            request(
                vec![regular("rps", epoch, 20, ramp)],
                r#"{"horizonMs": 600000}"#,
            ),
        ),
        (
            "invalid config",
            request(vec![regular("rps", epoch, 20, ramp)], r#"{"alpha": 2}"#),
        ),
    ];
    for (case, request) in &cases {
        agree(case, &mut all, request);
    }
    // The host's horizon and step at their edges: no horizon at all, no
    // step (one point at the horizon), and far more points than the cap.
    let base = request(vec![regular("rps", epoch, 20, ramp)], "");
    for (case, horizon, step) in [
        ("zero horizon", 0.0, 15_000.0),
        ("zero step", 60_000.0, 0.0),
        ("step longer than horizon", 60_000.0, 90_000.0),
        ("points capped", 1e9, 1.0),
    ] {
        let r = ForecastRequest {
            horizon_ms: horizon,
            step_ms: step,
            state: Some(vec![1, 2, 3]),
            ..base.clone()
        };
        agree(case, &mut all, &r);
    }
}

#[test]
fn other_languages_forecast_like_the_reference_along_a_real_trace() {
    let Some(built) = built() else { return };
    let rt = runtime();
    let mut all = instances(rt, &built);
    let trace = Trace::parse(bundled::TRACE_NAME, bundled::TRACE).unwrap();
    let step_ms = trace.step_s as f64 * 1000.0;
    let t0 = 898_000_000_000.0; // June 1998, in ms since the epoch
    let window = 40;
    // Every 23rd position of the week: a few hundred histories with the
    // trace's ramps, peaks and quiet nights.
    for end in (window..trace.rps.len()).step_by(23) {
        let samples: Vec<(f64, f64)> = (end - window..end)
            .map(|i| (t0 + i as f64 * step_ms, trace.rps[i]))
            .collect();
        let mut r = request(
            vec![series("rps", &samples)],
            r#"{"alpha": 0.4, "window": 10}"#,
        );
        r.step_ms = step_ms;
        r.horizon_ms = 5.0 * step_ms;
        agree(&format!("trace position {end}"), &mut all, &r);
    }
}
