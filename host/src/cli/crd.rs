//! `wasm-autoscaler crd`: print the CustomResourceDefinition.

use anyhow::Result;
use kube::CustomResourceExt;

use super::output::out;
use crate::operator::crd::WasmAutoscaler;

/// The CRD as YAML, exactly as `deploy/crd.yaml` holds it.
pub fn yaml() -> Result<String> {
    Ok(serde_yaml::to_string(&WasmAutoscaler::crd())?)
}

pub fn run() -> Result<()> {
    out!("{}", yaml()?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn deploy_crd_matches_the_types() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/crd.yaml");
        let checked_in = std::fs::read_to_string(path).expect("deploy/crd.yaml exists");
        assert!(
            checked_in == super::yaml().unwrap(),
            "deploy/crd.yaml is out of date: run `cargo run -p wasm-autoscaler -- crd > deploy/crd.yaml`"
        );
    }
}
