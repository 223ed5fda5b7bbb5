//! Bindings generated from `wit/` by wit-bindgen. Policy authors use the
//! re-exports at the crate root and the `export_*!` macros instead.

/// The `predictor` world; it owns the shared `types` and `log` interfaces.
#[allow(clippy::too_many_arguments)]
pub mod predictor {
    wit_bindgen::generate!({
        world: "predictor",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_predictor_world",
        default_bindings_module: "wasm_autoscaler_guest::__bindings::predictor",
    });
}

/// The `decider` world, reusing the predictor world's interface types so a
/// policy author sees one `MetricForecast`, not two.
#[allow(clippy::too_many_arguments)]
pub mod decider {
    wit_bindgen::generate!({
        world: "decider",
        path: "../wit",
        with: {
            "wasm-autoscaler:policy/types@0.1.1": crate::__bindings::predictor::wasm_autoscaler::policy::types,
            "wasm-autoscaler:policy/log@0.1.1": crate::__bindings::predictor::wasm_autoscaler::policy::log,
        },
        pub_export_macro: true,
        export_macro_name: "__export_decider_world",
        default_bindings_module: "wasm_autoscaler_guest::__bindings::decider",
    });
}

/// The `model-predictor` world: a predictor that also reads data packed
/// into its component (`artifact`).
#[allow(clippy::too_many_arguments)]
pub mod model_predictor {
    wit_bindgen::generate!({
        world: "model-predictor",
        path: "../wit",
        with: {
            "wasm-autoscaler:policy/types@0.1.1": crate::__bindings::predictor::wasm_autoscaler::policy::types,
            "wasm-autoscaler:policy/log@0.1.1": crate::__bindings::predictor::wasm_autoscaler::policy::log,
        },
        pub_export_macro: true,
        export_macro_name: "__export_model_predictor_world",
        default_bindings_module: "wasm_autoscaler_guest::__bindings::model_predictor",
    });
}

/// The `history-predictor` world: a predictor that also reads each metric's
/// long history (`long-history`).
#[allow(clippy::too_many_arguments)]
pub mod history_predictor {
    wit_bindgen::generate!({
        world: "history-predictor",
        path: "../wit",
        with: {
            "wasm-autoscaler:policy/types@0.1.1": crate::__bindings::predictor::wasm_autoscaler::policy::types,
            "wasm-autoscaler:policy/log@0.1.1": crate::__bindings::predictor::wasm_autoscaler::policy::log,
        },
        pub_export_macro: true,
        export_macro_name: "__export_history_predictor_world",
        default_bindings_module: "wasm_autoscaler_guest::__bindings::history_predictor",
    });
}
