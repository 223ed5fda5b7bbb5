//! wasm-autoscaler: a Kubernetes autoscaler whose forecasting and scaling
//! decisions are WebAssembly components.
//!
//! The tick pipeline ([`pipeline`]) reads metrics, asks the policies
//! ([`runtime`]) for a forecast and a decision, and lets the [`safety`] layer
//! bound what is applied. The offline replay ([`sim`]) runs that same
//! pipeline against a simulated target.

// Audited exceptions: two load compiled components wasmtime made, from the
// disk cache (`runtime::disk_cache`) and from a compile worker
// (`runtime::deserialize_artifact`); two ask glibc to return freed heap and
// to cap its arenas and map large blocks on their own (`operator::memory`).
#![deny(unsafe_code)]

pub mod boundary;
pub mod bundled;
pub mod cli;
pub mod metrics;
pub mod operator;
pub mod pipeline;
pub mod registry;
pub mod runtime;
pub mod safety;
pub mod sim;
