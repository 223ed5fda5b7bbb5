//! One integration-test binary, one module per feature: the host driving
//! real compiled components (the bundled policies and the test guests).

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
