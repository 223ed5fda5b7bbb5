//! Host bindings generated from `wit/`, one module per world. The decider
//! world reuses the predictor world's `types` and `log`, so the pipeline
//! passes one `MetricForecast` type from a predictor to a decider.

/// The `predictor` world; it owns the shared interface types.
pub mod predictor {
    wasmtime::component::bindgen!({
        world: "predictor",
        path: "../wit",
    });
}

/// The `decider` world.
pub mod decider {
    wasmtime::component::bindgen!({
        world: "decider",
        path: "../wit",
        with: {
            "wasm-autoscaler:policy/types": crate::runtime::bindings::predictor::wasm_autoscaler::policy::types,
            "wasm-autoscaler:policy/log": crate::runtime::bindings::predictor::wasm_autoscaler::policy::log,
        },
    });
}

/// The `model-predictor` world: a predictor that also imports `artifact`.
pub mod model_predictor {
    wasmtime::component::bindgen!({
        world: "model-predictor",
        path: "../wit",
        with: {
            "wasm-autoscaler:policy/types": crate::runtime::bindings::predictor::wasm_autoscaler::policy::types,
            "wasm-autoscaler:policy/log": crate::runtime::bindings::predictor::wasm_autoscaler::policy::log,
        },
    });
}

/// The `history-predictor` world: a predictor that also imports `long-history`.
pub mod history_predictor {
    wasmtime::component::bindgen!({
        world: "history-predictor",
        path: "../wit",
        with: {
            "wasm-autoscaler:policy/types": crate::runtime::bindings::predictor::wasm_autoscaler::policy::types,
            "wasm-autoscaler:policy/log": crate::runtime::bindings::predictor::wasm_autoscaler::policy::log,
        },
    });
}

pub use history_predictor::wasm_autoscaler::policy::long_history::CoarseHistory;
pub use predictor::wasm_autoscaler::policy::log::Level as LogLevel;
pub use predictor::wasm_autoscaler::policy::types::{
    DecideRequest, Decision, ForecastPoint, ForecastRequest, ForecastResponse, MetricForecast,
    MetricHistory, MetricValue, Sample, TargetState,
};
