//! Replaying a `WasmAutoscaler` manifest: the set-up exactly as the object
//! describes it (policies, their config and pins, behavior, bounds), so a
//! team can try the object before applying it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::ConfigMap;

use super::setup::{PullFn, Setup, SetupError};
use super::METRICS;
use crate::boundary::files::FileRoots;
use crate::operator::crd::{read_manifests, PolicySource};
use crate::operator::policies;
use crate::pipeline::LongHistorySpec;
use crate::runtime::{Runtime, World, MAX_COMPONENT_BYTES};

/// A manifest's set-up and the target bounds it sets for the replay.
pub struct Manifest {
    pub setup: Setup,
    pub min_replicas: u32,
    pub max_replicas: u32,
    pub interval_seconds: u64,
    pub history: usize,
}

/// Reads the one `WasmAutoscaler` in the YAML files at `paths`; the other
/// documents may hold the ConfigMaps its policies come from (as
/// `kubectl create configmap … --dry-run=client -o yaml` writes them).
/// `aliases` maps manifest metric names to the simulated `rps` or
/// `utilization`; metrics already called that need no alias. `file` sources
/// are read as the operator reads them — bounded, regular files only —
/// relative to the manifest and only inside `roots` (the manifest's folder
/// when empty).
pub fn from_manifest(
    runtime: &Runtime,
    paths: &[PathBuf],
    aliases: &BTreeMap<String, String>,
    roots: &[PathBuf],
    pull: PullFn<'_>,
) -> Result<Manifest, SetupError> {
    let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let invalid = |message: String| SetupError::Invalid {
        path: shown.join(", "),
        message,
    };
    let found = read_manifests(paths).map_err(|e| SetupError::Invalid {
        path: e.path,
        message: e.message,
    })?;
    let (path, autoscaler, rest) = found.single().map_err(invalid)?;
    let maps = rest.config_maps;
    let name = autoscaler
        .metadata
        .name
        .clone()
        .unwrap_or_else(|| "manifest".into());
    let spec = &autoscaler.spec;
    let checked = spec.validate().map_err(|m| SetupError::Setup {
        setup: name.clone(),
        message: m,
    })?;
    let base = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let roots = if roots.is_empty() {
        vec![base.clone()]
    } else {
        roots.to_vec()
    };
    let roots = FileRoots::new(roots).map_err(|e| invalid(format!("file roots: {e}")))?;
    let load = |source: &PolicySource, world| -> Result<_, SetupError> {
        let bytes = read_offline(source, &base, &roots, &maps, pull).map_err(|message| {
            SetupError::Setup {
                setup: name.clone(),
                message: format!("{}: {message}", source.describe()),
            }
        })?;
        policies::check(runtime, source, &bytes, world).map_err(|e| SetupError::Setup {
            setup: name.clone(),
            message: e.to_string(),
        })
    };
    let predictor = match &spec.predictor {
        Some(p) => Some(load(p, World::Predictor)?),
        None => None,
    };
    let schedule = match &spec.schedule {
        Some(p) => Some(load(p, World::Predictor)?),
        None => None,
    };
    let decider = load(&spec.decider, World::Decider)?;
    let mut metric_names = super::setup::plain_metric_names();
    for m in &spec.metrics {
        let simulated = aliases.get(&m.name).map_or(m.name.as_str(), String::as_str);
        let Some(slot) = METRICS.iter().position(|s| *s == simulated) else {
            return Err(SetupError::Setup {
                setup: name.clone(),
                message: format!(
                    "metric `{}` has no simulated counterpart: the replay provides {}; map it with --metric {}=rps",
                    m.name,
                    METRICS.join(" and "),
                    m.name
                ),
            });
        };
        metric_names[slot] = m.name.clone();
        // With no pods there is no utilization: only the load can wake the target.
        if m.activation_threshold.is_some() && METRICS[slot] != "rps" {
            return Err(SetupError::Setup {
                setup: name.clone(),
                message: format!(
                    "metric `{}` has an activationThreshold but replays as `{}`, which does not exist at zero replicas; map it with --metric {}=rps",
                    m.name, METRICS[slot], m.name
                ),
            });
        }
    }
    Ok(Manifest {
        setup: Setup {
            name,
            predictor,
            schedule,
            decider,
            behavior: spec.behavior.clone(),
            metric_names,
            warmup_seconds: Some(checked.warmup.as_secs()),
            zero: checked.zero.clone(),
            // The replay has no Prometheus: every metric's long history comes from its samples.
            long_history: checked.long_history.clone().map(|l| LongHistorySpec {
                filled: Vec::new(),
                ..l
            }),
        },
        min_replicas: spec.min_replicas,
        max_replicas: spec.max_replicas,
        interval_seconds: checked.interval.as_secs().max(1),
        history: spec.history as usize,
    })
}

/// A policy's bytes without a cluster: bundled, a file relative to the
/// manifest (inside `roots`), a ConfigMap in the given files, decompressed
/// as the operator would, or an OCI artifact given to `pull`.
fn read_offline(
    source: &PolicySource,
    base: &Path,
    roots: &FileRoots,
    maps: &[ConfigMap],
    pull: PullFn<'_>,
) -> Result<Vec<u8>, String> {
    if let Some(oci) = &source.oci {
        return pull(&oci.reference);
    }
    if let Some(name) = &source.bundled {
        return crate::bundled::require(name).map(<[u8]>::to_vec);
    }
    if let Some(file) = &source.file {
        return roots
            .read(Some(base), file, MAX_COMPONENT_BYTES)
            .map_err(|e| e.to_string());
    }
    if let Some(r) = &source.config_map_ref {
        let map = maps
            .iter()
            .find(|m| m.metadata.name.as_deref() == Some(r.name.as_str()))
            .ok_or_else(|| {
                format!(
                    "ConfigMap `{}` is not in the given files; add it (e.g. `kubectl create configmap … --dry-run=client -o yaml`) with another --file",
                    r.name
                )
            })?;
        let stored = map
            .binary_data
            .as_ref()
            .and_then(|d| d.get(&r.key))
            .map(|b| b.0.clone())
            .ok_or_else(|| format!("ConfigMap `{}` has no binaryData key `{}`", r.name, r.key))?;
        return policies::decompress(&r.key, stored).map_err(|e| e.to_string());
    }
    Err("no source set".into())
}
