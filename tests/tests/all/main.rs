//! One integration-test binary, one module per feature: the host driving
//! real compiled components (the bundled policies and the test guests).

// The operators these tests start in-process allocate as the binary does.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod bundled_policies;
mod compile_cache;
mod events;
mod file_roots;
mod guests;
mod hpa_agreement;
mod instances;
mod languages;
mod loading;
mod long_history;
mod onnx;
mod operator;
mod prometheus;
mod registry;
mod sandbox;
mod scale_to_zero;
mod scrape;
mod shards;
mod simulate;
mod tenants;
