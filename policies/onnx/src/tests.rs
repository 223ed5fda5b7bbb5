//! The example model (`model/`, made by `scripts/train-onnx-model`) run
//! through the policy natively, against what scikit-learn and onnxruntime
//! gave for the same inputs when it was exported.

use wasm_autoscaler_guest::{artifact, harness, ForecastRequest, MetricHistory, Sample};

const MODEL: &[u8] = include_bytes!("../model/forecaster.onnx");
const EXAMPLES: &str = include_str!("../model/examples.json");
/// float32 inference against scikit-learn's float64: agreement to this, in units of the inputs.
const TOLERANCE: f64 = 1e-4;

struct Pair {
    input: Vec<f64>,
    sklearn: Vec<f64>,
    onnxruntime: Vec<f64>,
}

fn pairs() -> Vec<Pair> {
    let v: serde_json::Value = serde_json::from_str(EXAMPLES).unwrap();
    let list = |p: &serde_json::Value, k: &str| -> Vec<f64> {
        p[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    v["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| Pair {
            input: list(p, "input"),
            sklearn: list(p, "sklearn"),
            onnxruntime: list(p, "onnxruntime"),
        })
        .collect()
}

/// A request whose `rps` history is `values`, one a minute, ending now.
fn request(values: &[f64], config: &str) -> ForecastRequest {
    let now = 10_000_000.0;
    let n = values.len();
    ForecastRequest {
        now_ms: now,
        horizon_ms: 300_000.0,
        step_ms: 60_000.0,
        histories: vec![MetricHistory {
            name: "rps".into(),
            samples: values
                .iter()
                .enumerate()
                .map(|(i, v)| Sample {
                    time_ms: now - 60_000.0 * (n - 1 - i) as f64,
                    value: *v,
                })
                .collect(),
        }],
        config: config.into(),
        state: None,
    }
}

fn forecast(values: &[f64], config: &str) -> Result<Vec<f64>, String> {
    let response = harness::forecast::<crate::Onnx>(&request(values, config))?;
    Ok(response.forecasts[0]
        .points
        .iter()
        .map(|p| p.value)
        .collect())
}

fn close(a: &[f64], b: &[f64], tolerance: f64) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tolerance)
}

#[test]
fn forecasts_match_the_exporting_framework_and_an_independent_runtime() {
    artifact::set_for_tests("model", Some(MODEL.to_vec()));
    let pairs = pairs();
    assert!(pairs.len() >= 4);
    for pair in &pairs {
        assert!(
            close(&pair.sklearn, &pair.onnxruntime, TOLERANCE),
            "the references agree"
        );
        let got = forecast(&pair.input, r#"{"window": 16}"#).unwrap();
        // The policy clamps at zero, as every forecast does.
        let want: Vec<f64> = pair.sklearn.iter().map(|v| v.max(0.0)).collect();
        assert!(close(&got, &want, TOLERANCE), "{got:?} vs {want:?}");
    }
    // Normalized by the window's mean, the same shape at 250× the size
    // forecasts 250× the values.
    let pair = &pairs[0];
    let mean = pair.input.iter().sum::<f64>() / pair.input.len() as f64;
    let scaled: Vec<f64> = pair.input.iter().map(|v| v * 250.0).collect();
    let got = forecast(&scaled, r#"{"window": 16, "normalize": "windowMean"}"#).unwrap();
    let want: Vec<f64> = pair
        .sklearn
        .iter()
        .map(|v| (v * 250.0 * mean).max(0.0))
        .collect();
    assert!(
        close(&got, &want, 250.0 * TOLERANCE * 10.0),
        "{got:?} vs {want:?}"
    );
}

#[test]
fn a_malformed_or_missing_model_is_refused_at_validate_config() {
    artifact::set_for_tests("broken", Some(b"not an onnx model".to_vec()));
    let err = harness::validate_predictor_config::<crate::Onnx>(
        r#"{"window": 16, "artifact": "broken"}"#,
    )
    .unwrap_err();
    assert!(err.contains("not a usable ONNX model"), "{err}");

    let err = harness::validate_predictor_config::<crate::Onnx>(
        r#"{"window": 16, "artifact": "absent"}"#,
    )
    .unwrap_err();
    assert!(
        err.contains("no model is packed") && err.contains("wasm-autoscaler pack"),
        "{err}"
    );

    artifact::set_for_tests("model", Some(MODEL.to_vec()));
    let err = harness::validate_predictor_config::<crate::Onnx>(r#"{"window": 8}"#).unwrap_err();
    assert!(err.contains("[1, 8]"), "{err}");
    let err =
        harness::validate_predictor_config::<crate::Onnx>(r#"{"window": 16, "inputScale": 0}"#)
            .unwrap_err();
    assert!(err.contains("inputScale"), "{err}");
    harness::validate_predictor_config::<crate::Onnx>(r#"{"window": 16}"#).unwrap();
}

#[test]
fn a_short_history_is_padded_and_no_traffic_forecasts_none() {
    artifact::set_for_tests("model", Some(MODEL.to_vec()));
    let config = r#"{"window": 16, "normalize": "windowMean"}"#;
    let got = forecast(&[40.0, 42.0, 41.0], config).unwrap();
    assert_eq!(got.len(), 5);
    assert!(got.iter().all(|v| (30.0..55.0).contains(v)), "{got:?}");
    assert_eq!(forecast(&[0.0; 20], config).unwrap(), vec![0.0; 5]);
}
