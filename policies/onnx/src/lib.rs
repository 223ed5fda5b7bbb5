//! `onnx` — a predictor that runs a forecasting model exported to ONNX,
//! with tract (a pure-Rust inference engine) compiled into the component.
//!
//! The model travels inside the component: `wasm-autoscaler pack onnx.wasm
//! --artifact model=forecaster.onnx -o forecaster.wasm` packs it beside the
//! code, so one digest pins both. The model takes the last `window` values
//! of `metric`, `stepSeconds` apart (as a `[1, window]` float tensor), and
//! gives the next values at the same spacing (a `[1, horizon]` tensor).
//! Inputs are divided by the window's mean (`"normalize": "windowMean"`,
//! so one model fits traffic of any size) and then offset and scaled as
//! the config says; outputs are mapped back the same way.

use std::sync::{Arc, Mutex};

use serde::Deserialize;
use tract_onnx::prelude::*;
use wasm_autoscaler_guest::{
    artifact, export_model_predictor, ForecastPoint, ForecastRequest, ForecastResponse,
    MetricForecast, Predictor,
};

/// Longest input window.
const MAX_WINDOW: usize = 4096;
/// Most points one forecast may hold.
const MAX_POINTS: usize = 1_000;

/// How values are scaled around the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Normalize {
    /// As they are (then offset and scale).
    #[default]
    None,
    /// Divided by the input window's mean (multiplied back on the way out).
    WindowMean,
}

/// Configuration of the `onnx` predictor.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// The metric the model forecasts.
    #[serde(default = "default_metric")]
    pub metric: String,
    /// How many past values the model takes.
    pub window: usize,
    /// The spacing of the model's inputs and outputs, in seconds.
    #[serde(default = "default_step")]
    pub step_seconds: f64,
    #[serde(default)]
    pub normalize: Normalize,
    /// Model input = (value − inputOffset) / inputScale, after `normalize`.
    #[serde(default)]
    pub input_offset: f64,
    #[serde(default = "one")]
    pub input_scale: f64,
    /// Forecast = model output × outputScale + outputOffset, before `normalize` is undone.
    #[serde(default)]
    pub output_offset: f64,
    #[serde(default = "one")]
    pub output_scale: f64,
    /// The name the model is packed under.
    #[serde(default = "default_artifact")]
    pub artifact: String,
}

fn default_metric() -> String {
    "rps".into()
}
fn default_step() -> f64 {
    60.0
}
fn one() -> f64 {
    1.0
}
fn default_artifact() -> String {
    "model".into()
}

type Plan = TypedSimplePlan;

/// A model ready to run, and what it was made for.
struct Loaded {
    artifact: String,
    window: usize,
    horizon: usize,
    plan: Arc<Plan>,
}

/// The model, loaded once per instance (the packed bytes cannot change under it).
static MODEL: Mutex<Option<Loaded>> = Mutex::new(None);

/// The model packed as `artifact` for a `[1, window]` input, and its horizon.
fn model(artifact_name: &str, window: usize) -> Result<(Arc<Plan>, usize), String> {
    let mut slot = MODEL
        .lock()
        .map_err(|_| "the model lock is poisoned".to_string())?;
    if let Some(m) = slot.as_ref() {
        if m.artifact == artifact_name && m.window == window {
            return Ok((Arc::clone(&m.plan), m.horizon));
        }
    }
    let bytes = artifact::get(artifact_name).ok_or_else(|| {
        format!(
            "no model is packed into this component as `{artifact_name}`; pack one with \
             `wasm-autoscaler pack onnx.wasm --artifact {artifact_name}=MODEL.onnx -o OUT.wasm`"
        )
    })?;
    let (plan, horizon) = load(&bytes, window)?;
    *slot = Some(Loaded {
        artifact: artifact_name.to_string(),
        window,
        horizon,
        plan: Arc::clone(&plan),
    });
    Ok((plan, horizon))
}

/// Parses and checks an ONNX model for a `[1, window]` float input.
fn load(bytes: &[u8], window: usize) -> Result<(Arc<Plan>, usize), String> {
    let bad = |e: TractError| format!("the packed model is not a usable ONNX model: {e}");
    let mut graph = tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])
        .map_err(bad)?;
    if graph.input_outlets().map_err(bad)?.len() != 1 {
        return Err("the model must have exactly one input".into());
    }
    graph
        .set_input_fact(0, f32::fact([1, window]).into())
        .map_err(bad)?;
    let typed = graph.into_optimized().map_err(|e| {
        format!("the model does not take a [1, {window}] float input (`window`): {e}")
    })?;
    let outputs = typed.output_outlets().map_err(bad)?.to_vec();
    let first = outputs.first().ok_or("the model has no output")?;
    let fact = typed.outlet_fact(*first).map_err(bad)?;
    let shape: Option<Vec<usize>> = fact.shape.as_concrete().map(<[usize]>::to_vec);
    // A [1, horizon] tensor, or the same values shaped [horizon, 1] or
    // [horizon] (skl2onnx reshapes a regressor's outputs to [-1, 1]).
    let horizon = match shape.as_deref() {
        Some(dims) if !dims.is_empty() && dims.iter().filter(|d| **d != 1).count() <= 1 => {
            dims.iter().product::<usize>()
        }
        _ => {
            return Err(format!(
            "the model's first output must hold one row of forecasts ([1, horizon]), it is [{:?}]",
            fact.shape
        ))
        }
    };
    if fact.datum_type != f32::datum_type() {
        return Err(format!(
            "the model's output must be float32, it is {:?}",
            fact.datum_type
        ));
    }
    let plan = typed.into_runnable().map_err(bad)?;
    Ok((plan, horizon))
}

/// The last `window` values of `samples` at `step_ms` spacing ending at
/// `now_ms`: each the latest sample at or before its time, the oldest
/// sample standing in for times before the history starts.
fn inputs(samples: &[(f64, f64)], now_ms: f64, step_ms: f64, window: usize) -> Vec<f64> {
    (0..window)
        .map(|i| {
            let at = now_ms - step_ms * (window - 1 - i) as f64;
            samples
                .iter()
                .rev()
                .find(|(t, _)| *t <= at)
                .or_else(|| samples.first())
                .map_or(0.0, |(_, v)| *v)
        })
        .collect()
}

/// The ONNX-model predictor.
pub struct Onnx;

impl Predictor for Onnx {
    type Config = Config;

    fn validate(config: &Config) -> Result<(), String> {
        if config.window == 0 || config.window > MAX_WINDOW {
            return Err(format!(
                "`window` must be 1 to {MAX_WINDOW}, got {}",
                config.window
            ));
        }
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(format!("`{name}` must be a positive number, got {v}"))
            }
        };
        positive("stepSeconds", config.step_seconds)?;
        positive("inputScale", config.input_scale)?;
        positive("outputScale", config.output_scale)?;
        if !config.input_offset.is_finite() || !config.output_offset.is_finite() {
            return Err("`inputOffset` and `outputOffset` must be numbers".into());
        }
        model(&config.artifact, config.window).map(|_| ())
    }

    fn forecast(config: &Config, request: &ForecastRequest) -> Result<ForecastResponse, String> {
        let (plan, horizon) = model(&config.artifact, config.window)?;
        let history = request
            .histories
            .iter()
            .find(|h| h.name == config.metric)
            .ok_or_else(|| {
                format!(
                    "metric `{}` is not configured for this target",
                    config.metric
                )
            })?;
        let samples: Vec<(f64, f64)> = history
            .samples
            .iter()
            .filter(|s| s.value.is_finite())
            .map(|s| (s.time_ms, s.value))
            .collect();
        if samples.is_empty() {
            return Err(format!("metric `{}` has no history yet", config.metric));
        }
        let step_ms = config.step_seconds * 1000.0;
        let raw = inputs(&samples, request.now_ms, step_ms, config.window);
        let scale = match config.normalize {
            Normalize::None => 1.0,
            Normalize::WindowMean => {
                let mean = raw.iter().sum::<f64>() / raw.len() as f64;
                if mean <= 0.0 {
                    // No traffic in the window: nothing to scale, nothing coming.
                    return Ok(none_coming(config, request, step_ms, horizon));
                }
                mean
            }
        };
        let values: Vec<f32> = raw
            .iter()
            .map(|v| ((v / scale - config.input_offset) / config.input_scale) as f32)
            .collect();
        let input: Tensor = tract_ndarray::Array2::from_shape_vec((1, config.window), values)
            .map_err(|e| e.to_string())?
            .into();
        let outputs = plan
            .run(tvec!(input.into()))
            .map_err(|e| format!("the model failed: {e}"))?;
        let out = outputs[0]
            .to_plain_array_view::<f32>()
            .map_err(|e| format!("the model's output: {e}"))?;
        let points = out
            .iter()
            .take(horizon.min(MAX_POINTS))
            .enumerate()
            .map(|(k, y)| ForecastPoint {
                time_ms: request.now_ms + step_ms * (k + 1) as f64,
                value: ((f64::from(*y) * config.output_scale + config.output_offset) * scale)
                    .max(0.0),
            })
            .collect();
        Ok(ForecastResponse {
            forecasts: vec![MetricForecast {
                name: config.metric.clone(),
                points,
            }],
            state: None,
        })
    }
}

/// A forecast of zero at every step of the model's horizon.
fn none_coming(
    config: &Config,
    request: &ForecastRequest,
    step_ms: f64,
    horizon: usize,
) -> ForecastResponse {
    ForecastResponse {
        forecasts: vec![MetricForecast {
            name: config.metric.clone(),
            points: (0..horizon.min(MAX_POINTS))
                .map(|k| ForecastPoint {
                    time_ms: request.now_ms + step_ms * (k + 1) as f64,
                    value: 0.0,
                })
                .collect(),
        }],
        state: None,
    }
}

export_model_predictor!(Onnx);

#[cfg(test)]
mod tests;
