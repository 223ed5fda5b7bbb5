//! The bundled `onnx` predictor as a real component: the example model
//! (`policies/onnx/model/`, made by `scripts/train-onnx-model`) packed into
//! it with `wasm_autoscaler::runtime::pack` and run by tract inside the
//! sandbox gives what scikit-learn and onnxruntime gave at export time; a
//! component packed with a malformed model, or none, is refused when its
//! configuration is checked, before it could serve.

use std::time::Duration;

use wasm_autoscaler::bundled;
use wasm_autoscaler::runtime::bindings::{ForecastRequest, MetricHistory, Sample};
use wasm_autoscaler::runtime::{pack, Runtime, RuntimeConfig, RuntimeError, World};

const MODEL: &[u8] = include_bytes!("../../../policies/onnx/model/forecaster.onnx");
const EXAMPLES: &str = include_str!("../../../policies/onnx/model/examples.json");
/// float32 inference inside the component against scikit-learn's float64.
const TOLERANCE: f64 = 1e-4;

fn runtime() -> Runtime {
    // An 18 MB component: a generous deadline keeps a loaded machine from
    // failing a call that is not under test here.
    Runtime::new(RuntimeConfig {
        deadline: Duration::from_secs(5),
        ..RuntimeConfig::default()
    })
    .unwrap()
}

fn request(values: &[f64], config: &str) -> ForecastRequest {
    let now = 1_000_000_000.0;
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

#[test]
fn a_packed_model_forecasts_inside_the_component_as_it_did_at_export() {
    let rt = runtime();
    let packed = pack(bundled::ONNX, "model", MODEL).unwrap();
    let policy = rt.load(&packed).unwrap();
    assert_eq!(policy.world(), World::Predictor);
    let config = r#"{"window": 16}"#;
    let mut instance = policy.instantiate().unwrap();
    instance.validate_config(config).unwrap();
    let examples: serde_json::Value = serde_json::from_str(EXAMPLES).unwrap();
    let floats = |v: &serde_json::Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    for pair in examples["pairs"].as_array().unwrap() {
        let input = floats(&pair["input"]);
        let response = instance.forecast(&request(&input, config)).unwrap();
        let got: Vec<f64> = response.forecasts[0]
            .points
            .iter()
            .map(|p| p.value)
            .collect();
        for (reference, name) in [
            (&pair["sklearn"], "scikit-learn"),
            (&pair["onnxruntime"], "onnxruntime"),
        ] {
            let want: Vec<f64> = floats(reference).iter().map(|v| v.max(0.0)).collect();
            assert_eq!(got.len(), want.len());
            let worst = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(worst <= TOLERANCE, "{name}: {got:?} vs {want:?}");
        }
    }
}

#[test]
fn a_malformed_or_missing_model_is_refused_before_it_serves() {
    let rt = runtime();
    let config = r#"{"window": 16}"#;
    let refused = |component: &[u8]| -> String {
        let policy = rt.load(component).unwrap();
        match policy.instantiate().unwrap().validate_config(config) {
            Err(RuntimeError::Config(message)) => message,
            other => panic!("expected a config refusal, got {other:?}"),
        }
    };
    let broken = pack(bundled::ONNX, "model", &MODEL[..MODEL.len() / 2]).unwrap();
    let message = refused(&broken);
    assert!(message.contains("not a usable ONNX model"), "{message}");
    let message = refused(bundled::ONNX);
    assert!(message.contains("no model is packed"), "{message}");
}
