//! wasm-autoscaler: a Kubernetes autoscaler whose forecasting and scaling
//! decisions are WebAssembly components.
//!
//! The tick pipeline ([`pipeline`]) reads metrics, asks the policies
//! ([`runtime`]) for a forecast and a decision, and lets the [`safety`] layer
//! bound what is applied. The offline replay ([`sim`]) runs that same
//! pipeline against a simulated target.

// Audited exceptions: two load compiled components wasmtime made, from the
// disk cache (`runtime::disk_cache`) and from a compile worker
// (`runtime::deserialize_artifact`).
#![deny(unsafe_code)]

// The unit tests allocate as the binary does (`operator::memory`).
#[cfg(test)]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
