//! Shared test infrastructure. The integration tests live in `tests/`; the
//! test guests are built by `build.rs`.

pub mod apiserver;
pub mod fixtures;
pub mod registry;
