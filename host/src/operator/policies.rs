//! Loading the policy components a `WasmAutoscaler` names: read the source
//! (ConfigMap key, file inside the admin's roots, OCI artifact pulled within
//! the egress rules, or bundled), check the
//! sha256 pin, compile off the async workers (cached by digest in the
//! runtime, within the compile budget, in the namespace's turn), check the
//! world and the configuration.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, Client};

use super::crd::PolicySource;
use super::load_gate::{LoadGate, LoadPermit};
use super::versions::Versions;
use crate::boundary::credentials::{self, CredentialError, SecretCache, SecretSource};
use crate::boundary::files::{FileError, FileRoots};
use crate::bundled;
use crate::pipeline::PolicySpec;
use crate::registry::{Origin, PullError, Reference, Registry};
use crate::runtime::{Digest, Runtime, RuntimeError, World, MAX_COMPONENT_BYTES};

/// Why a policy could not be loaded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    #[error("{source_name}: {message}")]
    Source {
        source_name: String,
        message: String,
    },
    #[error("{source_name}: {error}")]
    File {
        source_name: String,
        error: FileError,
    },
    /// A compressed value that is not what its key says, or expands past the limit.
    #[error("{source_name}: {message}")]
    Expand {
        source_name: String,
        message: String,
        /// The stored value's stamp, so it is not expanded again.
        stamp: String,
        too_large: bool,
    },
    #[error("{source_name}: {error}")]
    Pull {
        source_name: String,
        error: PullError,
        /// The source's stamp, so a lasting failure is not pulled again.
        stamp: String,
    },
    #[error("{source_name}: {error}")]
    Credential {
        source_name: String,
        error: CredentialError,
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

impl LoadError {
    /// A stable label for the refusal metric.
    pub fn kind(&self) -> &'static str {
        match self {
            LoadError::Source { .. } => "source_unavailable",
            LoadError::File { error, .. } => error.kind(),
            LoadError::Pull { error, .. } => error.kind(),
            LoadError::Credential { error, .. } => error.kind(),
            LoadError::Expand {
                too_large: true, ..
            } => "component_too_large",
            LoadError::Expand { .. } => "decompress_failed",
            LoadError::PinMismatch { .. } => "pin_mismatch",
            LoadError::Runtime { error, .. } => match error {
                RuntimeError::OverBudget(_) | RuntimeError::CompileTimeout(_) => {
                    "compile_budget_exceeded"
                }
                e => e.kind(),
            },
            LoadError::WrongWorld { .. } => "wrong_world",
        }
    }

    /// Whether the same source contents (and spec) would fail the same way
    /// again, so the failure can be repeated without reading them again.
    pub fn is_lasting(&self) -> bool {
        match self {
            LoadError::Source { .. } | LoadError::File { .. } | LoadError::Credential { .. } => {
                false
            }
            LoadError::Pull { error, .. } => error.is_lasting(),
            LoadError::PinMismatch { .. }
            | LoadError::WrongWorld { .. }
            | LoadError::Expand { .. } => true,
            LoadError::Runtime { error, .. } => {
                error.is_lasting() || matches!(error, RuntimeError::Config(_))
            }
        }
    }

    /// The stamp of source contents that fail before they are read whole
    /// and would fail the same way again, to be skipped until they change.
    pub fn refused_stamp(&self) -> Option<&str> {
        match self {
            LoadError::Expand { stamp, .. } => Some(stamp),
            LoadError::Pull { error, stamp, .. } if error.is_lasting() => Some(stamp),
            _ => None,
        }
    }

    /// Whether the tenant's input was refused by a rule (a path, a budget),
    /// rather than failing on its own (a broken component).
    pub fn is_refusal(&self) -> bool {
        matches!(self, LoadError::Pull { error, .. } if error.is_refusal())
            || matches!(
                self,
                LoadError::File { .. }
                    | LoadError::Credential { .. }
                    | LoadError::Expand {
                        too_large: true,
                        ..
                    }
            )
            || matches!(
                self,
                LoadError::Runtime {
                    error: RuntimeError::OverBudget(_) | RuntimeError::CompileTimeout(_),
                    ..
                }
            )
    }
}

/// What a source holds now: a stamp that changes whenever its contents do,
/// and the contents when they had to be read.
pub struct Fetched {
    /// The stored bytes' digest for a ConfigMap, the file's identity for a
    /// file, the name for a bundled policy.
    pub stamp: String,
    /// The component; `None` when the stamp was one the caller knew.
    pub bytes: Option<Vec<u8>>,
    /// The load's place in the gate, held while the bytes are.
    pub permit: Option<LoadPermit>,
    /// The stamp is new, but the gate was full and the caller would not wait: nothing was read.
    pub busy: bool,
    /// For a ConfigMap read whole, the version of it the stamp was taken from.
    pub read_at: Option<ReadAt>,
}

/// A ConfigMap key's stamp and the ConfigMap's `resourceVersion` it was taken
/// at: while the version stays, so do the contents, and a tick reads only the
/// ConfigMap's metadata instead of its whole body.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadAt {
    pub name: String,
    pub key: String,
    pub resource_version: String,
    pub stamp: String,
    /// When the API server last reported this version.
    pub confirmed: Instant,
}

/// The longest a labelled ConfigMap's watch alone vouches for its version:
/// a watch that silently stopped delivering costs at most this much staleness.
pub const MAX_UNCONFIRMED: Duration = Duration::from_secs(300);

/// What reading a policy source may use, on behalf of one namespace.
pub struct SourceAccess<'a> {
    pub client: &'a Client,
    pub namespace: &'a str,
    /// Folders `file` sources may be read from.
    pub roots: &'a FileRoots,
    /// Pulls `oci` sources within the egress rules.
    pub registry: &'a Registry,
    /// Pull Secrets, read in `namespace` only.
    pub secrets: &'a SecretCache,
    /// Bounds the component bytes loads hold.
    pub gate: &'a LoadGate,
    /// Whether to wait for a place in the gate; without, a full gate reads nothing ([`Fetched::busy`]).
    pub wait_for_gate: bool,
    /// The versions of the labelled policy ConfigMaps, when their watch may
    /// vouch for an unchanged one (not when a change was just announced).
    pub map_versions: Option<&'a Versions>,
}

/// Reads what a source names: a ConfigMap of the namespace through the API,
/// a file only inside the roots, an OCI artifact with the namespace's own
/// pull Secret, at most [`MAX_COMPONENT_BYTES`] in every case. When its
/// stamp is one of `known` (contents loaded or refused before), nothing is
/// read, pulled, decompressed or held; otherwise the bytes are read inside
/// the load gate. A ConfigMap whose version is still `last`'s, with `last`'s
/// stamp known, is not read beyond its metadata.
pub async fn read(
    access: &SourceAccess<'_>,
    source: &PolicySource,
    known: &[String],
    last: Option<&ReadAt>,
) -> Result<Fetched, LoadError> {
    let SourceAccess {
        client,
        namespace,
        roots,
        gate,
        ..
    } = *access;
    let fail = |message: String| LoadError::Source {
        source_name: source.describe(),
        message,
    };
    let unchanged = |stamp: String| Fetched {
        stamp,
        bytes: None,
        permit: None,
        busy: false,
        read_at: None,
    };
    let busy = |stamp: String| Fetched {
        busy: true,
        ..unchanged(stamp)
    };
    if let Some(r) = &source.config_map_ref {
        let cannot_read = |e| fail(format!("cannot read the ConfigMap: {e}"));
        let maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        let still =
            last.filter(|at| at.name == r.name && at.key == r.key && known.contains(&at.stamp));
        if let Some(at) = still {
            if vouched(at, namespace, access.map_versions) {
                return Ok(unchanged(at.stamp.clone()));
            }
            // Otherwise every tick reads the source; the body (up to a MiB,
            // the tenant's to choose) only when the version moved.
            let meta = maps.get_metadata(&r.name).await.map_err(cannot_read)?;
            if meta.metadata.resource_version.as_deref() == Some(at.resource_version.as_str()) {
                return Ok(Fetched {
                    read_at: Some(ReadAt {
                        confirmed: Instant::now(),
                        ..at.clone()
                    }),
                    ..unchanged(at.stamp.clone())
                });
            }
        }
        let map = maps.get(&r.name).await.map_err(cannot_read)?;
        let resource_version = map.metadata.resource_version;
        let stored = map
            .binary_data
            .and_then(|mut d| d.remove(&r.key))
            .map(|b| b.0)
            .ok_or_else(|| fail(format!("the ConfigMap has no binaryData key `{}`", r.key)))?;
        let stamp = format!("configmap:{}", Digest::of(&stored).hex());
        let read_at = resource_version.map(|resource_version| ReadAt {
            name: r.name.clone(),
            key: r.key.clone(),
            resource_version,
            stamp: stamp.clone(),
            confirmed: Instant::now(),
        });
        if known.contains(&stamp) {
            return Ok(Fetched {
                read_at,
                ..unchanged(stamp)
            });
        }
        let Some(mut permit) = gate.enter_or_not(namespace, access.wait_for_gate).await else {
            return Ok(Fetched {
                read_at,
                ..busy(stamp)
            });
        };
        let key = r.key.clone();
        let bytes = tokio::task::spawn_blocking(move || decompress(&key, stored))
            .await
            .expect("decompressing does not panic")
            .map_err(|e| LoadError::Expand {
                source_name: source.describe(),
                too_large: matches!(e, ExpandError::TooLarge(_)),
                message: e.to_string(),
                stamp: stamp.clone(),
            })?;
        permit.shrink_to(bytes.len());
        return Ok(Fetched {
            stamp,
            bytes: Some(bytes),
            permit: Some(permit),
            busy: false,
            read_at,
        });
    }
    if let Some(path) = &source.file {
        let file_error = |error| LoadError::File {
            source_name: source.describe(),
            error,
        };
        let (r, p) = (roots.clone(), path.clone());
        let stamp = tokio::task::spawn_blocking(move || r.identity(None, &p))
            .await
            .expect("reading metadata does not panic")
            .map_err(file_error)?;
        if known.contains(&stamp) {
            return Ok(unchanged(stamp));
        }
        let Some(mut permit) = gate.enter_or_not(namespace, access.wait_for_gate).await else {
            return Ok(busy(stamp));
        };
        let (r, p) = (roots.clone(), path.clone());
        let bytes = tokio::task::spawn_blocking(move || r.read(None, &p, MAX_COMPONENT_BYTES))
            .await
            .expect("reading a file does not panic")
            .map_err(file_error)?;
        permit.shrink_to(bytes.len());
        return Ok(Fetched {
            stamp,
            bytes: Some(bytes),
            permit: Some(permit),
            busy: false,
            read_at: None,
        });
    }
    if let Some(oci) = &source.oci {
        // The digest pins the contents: a reference loaded once is never pulled again.
        let stamp = format!("oci:{}", oci.reference);
        if known.contains(&stamp) {
            return Ok(unchanged(stamp));
        }
        let Some(mut permit) = gate.enter_or_not(namespace, access.wait_for_gate).await else {
            return Ok(busy(stamp));
        };
        let bytes = pull(access, source, oci, &stamp).await?;
        permit.shrink_to(bytes.len());
        return Ok(Fetched {
            stamp,
            bytes: Some(bytes),
            permit: Some(permit),
            busy: false,
            read_at: None,
        });
    }
    if let Some(name) = &source.bundled {
        let stamp = format!("bundled:{name}");
        if known.contains(&stamp) {
            return Ok(unchanged(stamp));
        }
        let bytes = bundled::require(name).map(<[u8]>::to_vec).map_err(fail)?;
        return Ok(Fetched {
            stamp,
            bytes: Some(bytes),
            permit: None,
            busy: false,
            read_at: None,
        });
    }
    Err(fail("no source set".into()))
}

/// Whether a labelled ConfigMap's watch vouches that it is still at the
/// version `at` was read at: its watch tells of every change, so nothing
/// need be asked of the API server.
fn vouched(at: &ReadAt, namespace: &str, map_versions: Option<&Versions>) -> bool {
    at.confirmed.elapsed() < MAX_UNCONFIRMED
        && map_versions.is_some_and(|v| v.holds(namespace, &at.name, &at.resource_version))
}

/// Whether `source`'s contents are still those serving (stamp `serving`,
/// read at `last` for a ConfigMap) under an unchanged spec, known without
/// reading anything: a bundled policy and a digest-pinned OCI reference
/// always are, a ConfigMap when its watch vouches for the version read, a
/// file never (its identity is read from disk).
pub fn known_unchanged(
    source: &PolicySource,
    namespace: &str,
    serving: &str,
    last: Option<&ReadAt>,
    map_versions: Option<&Versions>,
) -> bool {
    match (&source.config_map_ref, &source.file) {
        (Some(r), _) => last.is_some_and(|at| {
            at.name == r.name
                && at.key == r.key
                && at.stamp == serving
                && vouched(at, namespace, map_versions)
        }),
        (None, Some(_)) => false,
        (None, None) => source.bundled.is_some() || source.oci.is_some(),
    }
}

/// Pulls an `oci` source's component with the namespace's pull Secret.
async fn pull(
    access: &SourceAccess<'_>,
    source: &PolicySource,
    oci: &super::crd::OciSource,
    stamp: &str,
) -> Result<Vec<u8>, LoadError> {
    let source_name = source.describe();
    let reference: Reference = oci.reference.parse().map_err(|e| LoadError::Source {
        source_name: source_name.clone(),
        message: format!("{e}"),
    })?;
    let login = match &oci.pull_secret {
        Some(name) => {
            let secrets = SecretSource::Cluster {
                client: access.client,
                namespace: access.namespace,
                cache: access.secrets,
            };
            credentials::registry_login(&secrets, name, &reference.registry)
                .await
                .map_err(|error| LoadError::Credential {
                    source_name: source_name.clone(),
                    error,
                })?
        }
        None => None,
    };
    let pulled = access
        .registry
        .pull(
            &reference,
            login.as_ref(),
            access.namespace,
            MAX_COMPONENT_BYTES,
        )
        .await
        .map_err(|error| LoadError::Pull {
            source_name: source_name.clone(),
            error,
            stamp: stamp.to_string(),
        })?;
    if pulled.origin == Origin::CacheWhileUnreachable {
        tracing::warn!(source = %source_name, "the registry cannot be reached; using the copy this namespace pulled before");
    }
    Ok(pulled.bytes)
}

/// Most bytes a ConfigMap may hold (the API server's limit).
pub const CONFIGMAP_MAX_BYTES: usize = 1 << 20;

/// The component stored under `key`: gzip-compressed when the key ends in
/// `.gz`, zstd-compressed when it ends in `.zst`, as is otherwise. (A
/// ConfigMap holds at most 1 MiB; Python and JavaScript components are
/// 10–20 MB and compress to a few.)
pub fn decompress(key: &str, stored: Vec<u8>) -> Result<Vec<u8>, ExpandError> {
    use std::io::Read;
    let reader: Box<dyn Read> = if key.ends_with(".gz") {
        Box::new(flate2::read::GzDecoder::new(stored.as_slice()))
    } else if key.ends_with(".zst") {
        Box::new(
            ruzstd::decoding::StreamingDecoder::new(stored.as_slice())
                .map_err(|e| ExpandError::Invalid(format!("`{key}` is not zstd data: {e}")))?,
        )
    } else {
        return Ok(stored);
    };
    let mut out = Vec::new();
    // One byte past the cap tells "too large" from "exactly at the cap".
    reader
        .take(MAX_COMPONENT_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| ExpandError::Invalid(format!("cannot decompress `{key}`: {e}")))?;
    if out.len() as u64 > MAX_COMPONENT_BYTES {
        return Err(ExpandError::TooLarge(key.to_string()));
    }
    Ok(out)
}

/// Why a compressed value could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    /// Not the compression its key says, or damaged.
    #[error("{0}")]
    Invalid(String),
    /// Larger than any component may be.
    #[error("`{0}` decompresses to more than 64 MiB")]
    TooLarge(String),
}

/// Turns bytes into a checked policy for `world`, compiling off the async
/// workers in `namespace`'s turn; the task runs on even if its handle is
/// dropped, and its result is cached by digest either way.
pub fn spawn_load(
    runtime: &Arc<Runtime>,
    namespace: &str,
    source: &PolicySource,
    bytes: Vec<u8>,
    world: World,
) -> tokio::task::JoinHandle<Result<PolicySpec, LoadError>> {
    let runtime = Arc::clone(runtime);
    let (namespace, source) = (namespace.to_string(), source.clone());
    // Compiling takes tens of milliseconds to seconds.
    tokio::task::spawn_blocking(move || {
        let spec = check_for(&runtime, &namespace, &source, &bytes, world)?;
        // The namespace's targets share idle instances; no other namespace's do.
        Ok(PolicySpec {
            policy: spec.policy.shared_within(&namespace),
            ..spec
        })
    })
}

/// Turns bytes into a checked policy for `world`: pin, compile (cached by
/// digest), world, configuration.
pub fn check(
    runtime: &Runtime,
    source: &PolicySource,
    bytes: &[u8],
    world: World,
) -> Result<PolicySpec, LoadError> {
    check_for(runtime, "local", source, bytes, world)
}

/// [`check`] on behalf of `tenant`, whose compile waits its turn among tenants.
pub fn check_for(
    runtime: &Runtime,
    tenant: &str,
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
    let policy = runtime
        .load_digested(tenant, digest, bytes)
        .map_err(runtime_error)?;
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
            .to_string()
            .contains("cannot decompress"));
        assert!(decompress("policy.wasm.zst", b"not zstd".to_vec())
            .unwrap_err()
            .to_string()
            .contains("zstd"));
        let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..(MAX_COMPONENT_BYTES >> 20) + 1 {
            bomb.write_all(&zeros).unwrap();
        }
        let err = decompress("policy.wasm.gz", bomb.finish().unwrap()).unwrap_err();
        assert_eq!(err, ExpandError::TooLarge("policy.wasm.gz".into()));
        assert!(err.to_string().contains("more than 64 MiB"), "{err}");
    }
}
