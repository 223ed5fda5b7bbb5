//! Builds the bundled reference policies (`policies/*`) for `wasm32-wasip2`
//! so the binary can embed them: `wasm-autoscaler simulate` with no
//! arguments replays a real trace through them, with nothing else installed.
//!
//! Set `WASM_AUTOSCALER_POLICY_DIR` to a folder holding prebuilt
//! `policy_*.wasm` files to skip the nested build (container images do).

#[path = "build/guests.rs"]
mod guests;

use std::env;
use std::path::PathBuf;

use anyhow::{Context, Result};

/// (crate name, file stem) of each bundled policy.
const POLICIES: &[(&str, &str)] = &[
    ("policy-hpa", "policy_hpa"),
    ("policy-ewma-trend", "policy_ewma_trend"),
    ("policy-forecast", "policy_forecast"),
    ("policy-schedule", "policy_schedule"),
    ("policy-onnx", "policy_onnx"),
    ("policy-adaptive", "policy_adaptive"),
    ("policy-weighted", "policy_weighted"),
    ("policy-seasonal", "policy_seasonal"),
];

fn main() -> Result<()> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest
        .parent()
        .context("host/ has a parent")?
        .to_path_buf();
    println!("cargo:rerun-if-env-changed=WASM_AUTOSCALER_POLICY_DIR");
    let dir = match env::var_os("WASM_AUTOSCALER_POLICY_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => guests::build(
            &root,
            &POLICIES.iter().map(|(name, _)| *name).collect::<Vec<_>>(),
            &["policies"],
        )?,
    };
    let out = PathBuf::from(env::var("OUT_DIR")?);
    for (_, stem) in POLICIES {
        let file = dir.join(format!("{stem}.wasm"));
        std::fs::copy(&file, out.join(format!("{stem}.wasm")))
            .with_context(|| format!("copying the bundled policy {}", file.display()))?;
    }
    Ok(())
}
