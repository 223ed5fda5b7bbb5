//! Loading the policy components a `WasmAutoscaler` names: read the source
//! (ConfigMap key, file or bundled), check the sha256 pin, compile off the
//! async workers (cached by digest in the runtime), check the world and
//! the configuration.

use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, Client};

use super::crd::PolicySource;
use crate::bundled;
use crate::pipeline::PolicySpec;
use crate::runtime::{Digest, Runtime, World};

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{source_name}: {message}")]
    Source {
        source_name: String,
        message: String,
    },
    #[error("{source_name}: digest {actual} does not match the pinned sha256 {pinned}")]
    PinMismatch {
        source_name: String,
        actual: String,
        pinned: String,
    },
    #[error("{source_name}: {error}")]
    Runtime {
        source_name: String,
        error: crate::runtime::RuntimeError,
    },
    #[error("{source_name} implements the {actual} world, but is used as a {expected}")]
    WrongWorld {
        source_name: String,
        actual: World,
        expected: World,
    },
}

/// Reads the bytes a source names.
pub async fn read(
    client: &Client,
    namespace: &str,
    source: &PolicySource,
) -> Result<Vec<u8>, LoadError> {
    let fail = |message: String| LoadError::Source {
        source_name: source.describe(),
        message,
    };
    if let Some(r) = &source.config_map_ref {
        let maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        let map = maps
            .get(&r.name)
            .await
            .map_err(|e| fail(format!("cannot read the ConfigMap: {e}")))?;
        let stored = map
            .binary_data
            .and_then(|mut d| d.remove(&r.key))
            .map(|b| b.0)
            .ok_or_else(|| fail(format!("the ConfigMap has no binaryData key `{}`", r.key)))?;
        return decompress(&r.key, stored).map_err(fail);
    }
    if let Some(path) = &source.file {
        return tokio::fs::read(path)
            .await
            .map_err(|e| fail(format!("cannot read the file: {e}")));
    }
    if let Some(name) = &source.bundled {
        return bundled::require(name).map(<[u8]>::to_vec).map_err(fail);
    }
    Err(fail("no source set".into()))
}

/// Most bytes a ConfigMap may hold (the API server's limit).
pub const CONFIGMAP_MAX_BYTES: usize = 1 << 20;

/// Most bytes a compressed ConfigMap value may expand to.
pub const MAX_COMPONENT_BYTES: usize = 64 << 20;

/// The component stored under `key`: gzip-compressed when the key ends in
/// `.gz`, zstd-compressed when it ends in `.zst`, as is otherwise. (A
/// ConfigMap holds at most 1 MiB; Python and JavaScript components are
/// 10–20 MB and compress to a few.)
pub fn decompress(key: &str, stored: Vec<u8>) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let reader: Box<dyn Read> = if key.ends_with(".gz") {
        Box::new(flate2::read::GzDecoder::new(stored.as_slice()))
    } else if key.ends_with(".zst") {
        Box::new(
            ruzstd::decoding::StreamingDecoder::new(stored.as_slice())
                .map_err(|e| format!("`{key}` is not zstd data: {e}"))?,
        )
    } else {
        return Ok(stored);
    };
    let mut out = Vec::new();
    // One byte past the cap tells "too large" from "exactly at the cap".
    reader
        .take(MAX_COMPONENT_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("cannot decompress `{key}`: {e}"))?;
    if out.len() > MAX_COMPONENT_BYTES {
        return Err(format!(
            "`{key}` decompresses to more than {} MiB",
            MAX_COMPONENT_BYTES >> 20
        ));
    }
    Ok(out)
}

/// Turns bytes into a checked policy for `world`, compiling off the async workers.
pub async fn load(
    runtime: &Arc<Runtime>,
    source: &PolicySource,
    bytes: Vec<u8>,
    world: World,
) -> Result<PolicySpec, LoadError> {
    let runtime = Arc::clone(runtime);
    let source = source.clone();
    // Compiling takes tens of milliseconds to seconds.
    tokio::task::spawn_blocking(move || check(&runtime, &source, &bytes, world))
        .await
        .expect("policy loading does not panic")
}

/// Turns bytes into a checked policy for `world`: pin, compile (cached by
/// digest), world, configuration.
pub fn check(
    runtime: &Runtime,
    source: &PolicySource,
    bytes: &[u8],
    world: World,
) -> Result<PolicySpec, LoadError> {
    let source_name = source.describe();
    let digest = Digest::of(bytes);
    if let Some(pin) = &source.sha256 {
        if *pin != digest.hex() {
            return Err(LoadError::PinMismatch {
                source_name,
                actual: digest.hex(),
                pinned: pin.clone(),
            });
        }
    }
    let runtime_error = |error| LoadError::Runtime {
        source_name: source_name.clone(),
        error,
    };
    let policy = runtime.load(bytes).map_err(runtime_error)?;
    if policy.world() != world {
        return Err(LoadError::WrongWorld {
            source_name,
            actual: policy.world(),
            expected: world,
        });
    }
    let config = source.config_text();
    let mut instance = policy.instantiate().map_err(runtime_error)?;
    instance.validate_config(&config).map_err(runtime_error)?;
    smoke_call(&mut instance, world, &config).map_err(runtime_error)?;
    Ok(PolicySpec { policy, config })
}

/// One call on a synthetic input before a component may serve: a trap, a
/// timeout or a memory-cap hit refuses it; an error it returns does not
/// (the synthetic input may lack the metrics its config names).
fn smoke_call(
    instance: &mut crate::runtime::Instance,
    world: World,
    config: &str,
) -> Result<(), crate::runtime::RuntimeError> {
    use crate::runtime::{synthetic, RuntimeError};
    let result = match world {
        World::Predictor => instance
            .forecast(&synthetic::forecast_request(240, config))
            .map(|_| ()),
        World::Decider => instance
            .decide(&synthetic::decide_request(
                config,
                synthetic::forecast_of_rps(),
            ))
            .map(|_| ()),
    };
    match result {
        Err(RuntimeError::Policy(_)) | Ok(()) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_values_expand_and_bombs_are_refused() {
        use std::io::Write;
        let component = b"\0asm component bytes".repeat(1000);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&component).unwrap();
        let packed = gz.finish().unwrap();
        assert!(packed.len() < component.len() / 10);
        assert_eq!(decompress("policy.wasm.gz", packed).unwrap(), component);
        assert_eq!(
            decompress("policy.wasm", component.clone()).unwrap(),
            component
        );
        assert!(decompress("policy.wasm.gz", b"not gzip".to_vec())
            .unwrap_err()
            .contains("cannot decompress"));
        assert!(decompress("policy.wasm.zst", b"not zstd".to_vec())
            .unwrap_err()
            .contains("zstd"));
        let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..(MAX_COMPONENT_BYTES >> 20) + 1 {
            bomb.write_all(&zeros).unwrap();
        }
        let err = decompress("policy.wasm.gz", bomb.finish().unwrap()).unwrap_err();
        assert!(err.contains("more than 64 MiB"), "{err}");
    }
}
