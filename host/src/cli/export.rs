//! `wasm-autoscaler export`: write a bundled policy component (or any
//! component file) to a file, raw or as a ConfigMap manifest ready for
//! `kubectl apply`, compressed when the key ends in `.gz` or `.zst`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use clap::Args;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::ByteString;
use kube::api::ObjectMeta;

use super::output::outln;
use crate::boundary::files::read_bounded;
use crate::bundled;
use crate::operator::controller::POLICY_LABEL;
use crate::operator::policies::CONFIGMAP_MAX_BYTES;
use crate::runtime::{Digest, MAX_COMPONENT_BYTES};

/// Arguments of `export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A bundled policy (`hpa`, `forecast`, `weighted`, `ewma-trend`, `adaptive`, `seasonal`, `schedule`, `onnx`) or the path of a component file.
    name: String,
    /// Where to write it.
    #[arg(long, short = 'o', value_name = "FILE")]
    out: PathBuf,
    /// Write a ConfigMap of this name (YAML, labelled for immediate reloads) instead of the raw component.
    #[arg(long, value_name = "NAME")]
    configmap: Option<String>,
    /// The ConfigMap key holding the component; ending in `.gz` or `.zst` compresses it.
    #[arg(long, default_value = "policy.wasm", requires = "configmap")]
    key: String,
}

/// The component named by `name`: a bundled policy, else a file.
fn component(name: &str) -> Result<Vec<u8>> {
    if let Some(bytes) = bundled::policy(name) {
        return Ok(bytes.to_vec());
    }
    read_bounded(std::path::Path::new(name), MAX_COMPONENT_BYTES).map_err(|e| {
        anyhow!(
            "`{name}` is neither a bundled policy ({}) nor a readable file: {e}",
            bundled::POLICIES
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// `bytes` as stored under `key`: compressed when the key asks for it.
fn encode(key: &str, bytes: &[u8]) -> Result<Vec<u8>> {
    use std::io::Write;
    if key.ends_with(".gz") {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(bytes)?;
        Ok(gz.finish()?)
    } else if key.ends_with(".zst") {
        Ok(ruzstd::encoding::compress_to_vec(
            bytes,
            ruzstd::encoding::CompressionLevel::Fastest,
        ))
    } else {
        Ok(bytes.to_vec())
    }
}

pub fn run(args: ExportArgs) -> Result<()> {
    let bytes = component(&args.name)?;
    let bytes = bytes.as_slice();
    let content = match &args.configmap {
        Some(name) => {
            let stored = encode(&args.key, bytes)?;
            if stored.len() > CONFIGMAP_MAX_BYTES {
                return Err(anyhow!(
                    "{} is {} bytes as stored under `{}`, more than a ConfigMap holds (1 MiB){}; \
                     mount it as a file instead (a `file` policy source, see docs/writing-policies.md)",
                    args.name,
                    stored.len(),
                    args.key,
                    if stored.len() == bytes.len() {
                        ", try a key ending in .zst or .gz"
                    } else {
                        " even compressed"
                    }
                ));
            }
            serde_yaml::to_string(&ConfigMap {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    labels: Some(BTreeMap::from([(
                        POLICY_LABEL.to_string(),
                        "true".to_string(),
                    )])),
                    ..ObjectMeta::default()
                },
                binary_data: Some(BTreeMap::from([(args.key.clone(), ByteString(stored))])),
                ..ConfigMap::default()
            })?
            .into_bytes()
        }
        None => bytes.to_vec(),
    };
    std::fs::write(&args.out, &content)
        .with_context(|| format!("writing {}", args.out.display()))?;
    outln!(
        "{} ({} bytes, sha256 {}) written to {}",
        args.name,
        bytes.len(),
        Digest::of(bytes).hex(),
        args.out.display()
    )?;
    Ok(())
}
