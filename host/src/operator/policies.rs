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
        return map
            .binary_data
            .and_then(|mut d| d.remove(&r.key))
            .map(|b| b.0)
            .ok_or_else(|| fail(format!("the ConfigMap has no binaryData key `{}`", r.key)));
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
    policy
        .instantiate()
        .and_then(|mut i| i.validate_config(&config))
        .map_err(runtime_error)?;
    Ok(PolicySpec { policy, config })
}
