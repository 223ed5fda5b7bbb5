//! Building Wasm guests from this workspace inside a build script: shared by
//! `host/build.rs` (the bundled policies) and `tests/build.rs` (test guests).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The target every guest is built for.
pub const TARGET: &str = "wasm32-wasip2";

/// Builds `packages` for [`TARGET`] in release mode and returns the folder
/// holding the `.wasm` files. `root` is the workspace root; `sources` are the
/// folders (relative to it) holding those packages, so that only a change
/// there, in the SDK, the contract or the lock file, reruns the build.
pub fn build(root: &Path, packages: &[&str], sources: &[&str]) -> Result<PathBuf> {
    for watched in sources.iter().chain(&["guest-sdk", "wit", "Cargo.lock"]) {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    // A target dir of its own: the outer cargo holds a lock on the main one.
    let target_dir = root.join("target").join("guests");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(["build", "--release", "--target", TARGET, "--target-dir"])
        .arg(&target_dir);
    for name in packages {
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
    let output = cmd.output().context("running cargo to build Wasm guests")?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let hint = if stderr.contains("may not be installed")
            || stderr.contains("can't find crate for `core`")
        {
            format!("\nthe {TARGET} target is missing: run `rustup target add {TARGET}` (scripts/setup does)")
        } else {
            String::new()
        };
        bail!("building Wasm guests {packages:?} failed:\n{stderr}{hint}");
    }
    Ok(target_dir.join(TARGET).join("release"))
}
