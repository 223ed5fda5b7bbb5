//! The path every call takes from the contract to a policy's trait methods:
//! parse the config, validate it, call. The export macros use it inside Wasm,
//! and policy unit tests call it natively to exercise exactly the same code.

use crate::{
    config, DecideRequest, Decider, Decision, ForecastRequest, ForecastResponse, Predictor,
};

/// Runs `P::forecast` on a request, as the component export would.
pub fn forecast<P: Predictor>(request: &ForecastRequest) -> Result<ForecastResponse, String> {
    let config: P::Config = config::parse(&request.config)?;
    P::validate(&config)?;
    P::forecast(&config, request)
}

/// Runs `D::decide` on a request, as the component export would.
pub fn decide<D: Decider>(request: &DecideRequest) -> Result<Decision, String> {
    let config: D::Config = config::parse(&request.config)?;
    D::validate(&config)?;
    D::decide(&config, request)
}

/// Runs a predictor's `validate-config`, as the component export would.
pub fn validate_predictor_config<P: Predictor>(text: &str) -> Result<(), String> {
    P::validate(&config::parse(text)?)
}

/// Runs a decider's `validate-config`, as the component export would.
pub fn validate_decider_config<D: Decider>(text: &str) -> Result<(), String> {
    D::validate(&config::parse(text)?)
}
