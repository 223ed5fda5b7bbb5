//! `wasm-autoscaler export`: write a bundled policy component to a file,
//! raw or as a ConfigMap manifest ready for `kubectl apply`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use clap::Args;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::ByteString;
use kube::api::ObjectMeta;

use crate::bundled;
use crate::operator::controller::POLICY_LABEL;
use crate::runtime::Digest;

/// Arguments of `export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The bundled policy: `hpa`, `ewma-trend` or `forecast`.
    name: String,
    /// Where to write it.
    #[arg(long, short = 'o', value_name = "FILE")]
    out: PathBuf,
    /// Write a ConfigMap of this name (YAML, labelled for immediate reloads) instead of the raw component.
    #[arg(long, value_name = "NAME")]
    configmap: Option<String>,
    /// The ConfigMap key holding the component.
    #[arg(long, default_value = "policy.wasm", requires = "configmap")]
    key: String,
}

pub fn run(args: ExportArgs) -> Result<()> {
    let bytes = bundled::require(&args.name).map_err(|e| anyhow!(e))?;
    let content = match &args.configmap {
        Some(name) => serde_yaml::to_string(&ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(BTreeMap::from([(
                    POLICY_LABEL.to_string(),
                    "true".to_string(),
                )])),
                ..ObjectMeta::default()
            },
            binary_data: Some(BTreeMap::from([(
                args.key.clone(),
                ByteString(bytes.to_vec()),
            )])),
            ..ConfigMap::default()
        })?
        .into_bytes(),
        None => bytes.to_vec(),
    };
    std::fs::write(&args.out, &content)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "{} ({} bytes, sha256 {}) written to {}",
        args.name,
        bytes.len(),
        Digest::of(bytes).hex(),
        args.out.display()
    );
    Ok(())
}
