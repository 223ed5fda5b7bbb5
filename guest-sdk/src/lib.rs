//! The Rust SDK for wasm-autoscaler policies.
//!
//! A policy is a type that implements [`Predictor`] or [`Decider`], exported
//! with [`export_predictor!`] or [`export_decider!`] and built for
//! `wasm32-wasip2`. The same type runs natively through [`harness`], so a
//! policy is unit-tested with plain `cargo test`, no Wasm involved.
//!
//! ```
//! use wasm_autoscaler_guest::{Decider, DecideRequest, Decision};
//!
//! #[derive(serde::Deserialize)]
//! struct Config { per_pod: f64 }
//!
//! struct Simple;
//! impl Decider for Simple {
//!     type Config = Config;
//!     fn decide(config: &Config, request: &DecideRequest) -> Result<Decision, String> {
//!         let rps = wasm_autoscaler_guest::metric(request, "rps")?;
//!         let desired = (rps / config.per_pod).ceil() as u32;
//!         Ok(Decision { desired_replicas: desired, reason: format!("{rps} rps"), state: None })
//!     }
//! }
//! wasm_autoscaler_guest::export_decider!(Simple);
//! ```

#[doc(hidden)]
#[path = "bindings.rs"]
pub mod __bindings;

pub mod artifact;
pub mod config;
pub mod harness;
pub mod log;
pub mod long_history;
pub mod math;

pub use __bindings::predictor::wasm_autoscaler::policy::types::{
    DecideRequest, Decision, ForecastPoint, ForecastRequest, ForecastResponse, MetricForecast,
    MetricHistory, MetricValue, Sample, TargetState,
};
pub use serde;

use serde::de::DeserializeOwned;

/// A policy that forecasts metrics (the `predictor` world).
pub trait Predictor {
    /// The policy's configuration, parsed from the autoscaler spec's JSON.
    type Config: DeserializeOwned;

    /// Checks a parsed configuration beyond what its type already enforces.
    fn validate(_config: &Self::Config) -> Result<(), String> {
        Ok(())
    }

    /// Forecasts the request's metrics up to its horizon.
    fn forecast(
        config: &Self::Config,
        request: &ForecastRequest,
    ) -> Result<ForecastResponse, String>;
}

/// A policy that decides the desired replica count (the `decider` world).
pub trait Decider {
    /// The policy's configuration, parsed from the autoscaler spec's JSON.
    type Config: DeserializeOwned;

    /// Checks a parsed configuration beyond what its type already enforces.
    fn validate(_config: &Self::Config) -> Result<(), String> {
        Ok(())
    }

    /// Decides how many replicas the target should run.
    fn decide(config: &Self::Config, request: &DecideRequest) -> Result<Decision, String>;
}

/// The latest value of metric `name`, or an error naming it when it is
/// missing from the request or unavailable this tick.
pub fn metric(request: &DecideRequest, name: &str) -> Result<f64, String> {
    match request.metrics.iter().find(|m| m.name == name) {
        Some(MetricValue { value: Some(v), .. }) => Ok(*v),
        Some(_) => Err(format!("metric `{name}` is unavailable this tick")),
        None => Err(format!("metric `{name}` is not configured for this target")),
    }
}

/// The history of metric `name` in a forecast request, or an error naming
/// it when the target has no such metric.
pub fn history<'a>(request: &'a ForecastRequest, name: &str) -> Result<&'a MetricHistory, String> {
    request
        .histories
        .iter()
        .find(|h| h.name == name)
        .ok_or_else(|| format!("metric `{name}` is not configured for this target"))
}

/// Most points [`forecast_times`] gives, whatever horizon and step a request asks.
pub const MAX_FORECAST_POINTS: usize = 1_000;

/// The times a forecast answers for: every `step-ms` after `now-ms` up to
/// the horizon (one point at the horizon when there is no step), at most
/// [`MAX_FORECAST_POINTS`].
pub fn forecast_times(request: &ForecastRequest) -> impl Iterator<Item = f64> + '_ {
    let step = if request.step_ms > 0.0 {
        request.step_ms
    } else {
        request.horizon_ms
    };
    let points = if request.horizon_ms > 0.0 && step > 0.0 {
        ((request.horizon_ms / step).ceil() as usize).clamp(1, MAX_FORECAST_POINTS)
    } else {
        0
    };
    (1..=points).map(move |k| request.now_ms + k as f64 * step)
}

/// The forecast of metric `name`, if the request carries one.
pub fn forecast<'a>(request: &'a DecideRequest, name: &str) -> Option<&'a MetricForecast> {
    request.forecasts.iter().find(|f| f.name == name)
}

/// Exports a [`Predictor`] implementation as the component's `predictor` world.
///
/// The export exists only in Wasm builds: natively a policy crate is a plain
/// library (run through [`harness`]), so several policies can link into one
/// test or benchmark binary.
#[macro_export]
macro_rules! export_predictor {
    ($policy:ty) => {
        $crate::__export_predictor_as!($policy, predictor, __export_predictor_world);
    };
}

/// Exports a [`Predictor`] implementation as the component's `model-predictor`
/// world: a predictor that reads data packed into its component with
/// [`artifact::get`]. Like [`export_predictor!`], only in Wasm builds.
#[macro_export]
macro_rules! export_model_predictor {
    ($policy:ty) => {
        $crate::__export_predictor_as!($policy, model_predictor, __export_model_predictor_world);
    };
}

/// Exports a [`Predictor`] implementation as the component's
/// `history-predictor` world: a predictor that reads each metric's long
/// history with [`long_history::get`]. Like [`export_predictor!`], only in Wasm builds.
#[macro_export]
macro_rules! export_history_predictor {
    ($policy:ty) => {
        $crate::__export_predictor_as!(
            $policy,
            history_predictor,
            __export_history_predictor_world
        );
    };
}

/// The predictor exports of `$policy` in the bindings module `$world`, whose
/// world-export macro is `$export`: the worlds differ only in their imports.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_predictor_as {
    ($policy:ty, $world:ident, $export:ident) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __WasmAutoscalerExport;
            impl $crate::__bindings::$world::Guest for __WasmAutoscalerExport {
                fn forecast(
                    request: $crate::ForecastRequest,
                ) -> ::core::result::Result<$crate::ForecastResponse, ::std::string::String>
                {
                    $crate::harness::forecast::<$policy>(&request)
                }
                fn validate_config(
                    config: ::std::string::String,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::harness::validate_predictor_config::<$policy>(&config)
                }
            }
            $crate::__bindings::$world::$export!(
                __WasmAutoscalerExport with_types_in $crate::__bindings::$world
            );
        };
    };
}

/// Exports a [`Decider`] implementation as the component's `decider` world.
///
/// Like [`export_predictor!`], only in Wasm builds.
#[macro_export]
macro_rules! export_decider {
    ($policy:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __WasmAutoscalerExport;
            impl $crate::__bindings::decider::Guest for __WasmAutoscalerExport {
                fn decide(
                    request: $crate::DecideRequest,
                ) -> ::core::result::Result<$crate::Decision, ::std::string::String> {
                    $crate::harness::decide::<$policy>(&request)
                }
                fn validate_config(
                    config: ::std::string::String,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::harness::validate_decider_config::<$policy>(&config)
                }
            }
            $crate::__bindings::decider::__export_decider_world!(
                __WasmAutoscalerExport with_types_in $crate::__bindings::decider
            );
        };
    };
}
