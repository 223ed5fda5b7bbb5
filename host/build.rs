//! Builds the bundled reference policies (`policies/*`) for `wasm32-wasip2`
//! so the binary can embed them: `wasm-autoscaler simulate` with no
//! arguments replays a real trace through them, with nothing else installed.
//!
//! Set `WASM_AUTOSCALER_POLICY_DIR` to a folder holding prebuilt
//! `policy_*.wasm` files to skip the nested build (container images do).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// (crate name, file stem) of each bundled policy.
const POLICIES: &[(&str, &str)] = &[
    ("policy-hpa", "policy_hpa"),
    ("policy-ewma-trend", "policy_ewma_trend"),
    ("policy-forecast", "policy_forecast"),
];

const TARGET: &str = "wasm32-wasip2";

fn main() -> Result<()> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest
        .parent()
        .context("host/ has a parent")?
        .to_path_buf();
    for watched in ["policies", "guest-sdk", "wit", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    println!("cargo:rerun-if-env-changed=WASM_AUTOSCALER_POLICY_DIR");

    let dir = match env::var_os("WASM_AUTOSCALER_POLICY_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => build_policies(&root)?,
    };
    let out = PathBuf::from(env::var("OUT_DIR")?);
    for (_, stem) in POLICIES {
        let file = dir.join(format!("{stem}.wasm"));
        std::fs::copy(&file, out.join(format!("{stem}.wasm")))
            .with_context(|| format!("copying the bundled policy {}", file.display()))?;
    }
    Ok(())
}

fn build_policies(root: &Path) -> Result<PathBuf> {
    // A target dir of its own: the outer cargo holds a lock on the main one.
    let target_dir = root.join("target").join("policies");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            TARGET,
            "--target-dir",
        ])
        .arg(&target_dir);
    for (name, _) in POLICIES {
        cmd.args(["-p", name]);
    }
    // The outer build's flags and wrappers (clippy, coverage, host RUSTFLAGS)
    // are for the host, not for the guests.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let output = cmd
        .output()
        .context("running cargo to build the bundled policies")?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let hint = if stderr.contains("may not be installed")
            || stderr.contains("can't find crate for `core`")
        {
            format!("\nthe {TARGET} target is missing: run `rustup target add {TARGET}` (scripts/setup does)")
        } else {
            String::new()
        };
        bail!("building the bundled policies failed:\n{stderr}{hint}");
    }
    Ok(target_dir.join(TARGET).join("release"))
}
