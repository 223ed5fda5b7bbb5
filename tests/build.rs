//! Builds the test guests (`tests/guests/*`) for `wasm32-wasip2` and tells
//! the tests where they are through `TEST_GUEST_DIR`.

#[path = "../host/build/guests.rs"]
mod guests;

use std::env;
use std::path::PathBuf;

use anyhow::{Context, Result};

fn main() -> Result<()> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest.parent().context("tests/ has a parent")?;
    let dir = guests::build(
        root,
        &["guest-misbehave", "guest-history-echo"],
        &["tests/guests"],
    )?;
    println!("cargo:rustc-env=TEST_GUEST_DIR={}", dir.display());
    Ok(())
}
