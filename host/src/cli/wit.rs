//! `wasm-autoscaler wit`: print the policy contract, so a policy author
//! needs nothing but this binary to start (`wasm-autoscaler wit > wit/policy.wit`).

use super::output::{out, OutputError};

/// `wit/policy.wit`, the contract this binary's host implements.
pub const POLICY_WIT: &str = include_str!("../../../wit/policy.wit");

pub fn run() -> Result<(), OutputError> {
    out!("{POLICY_WIT}")
}
