//! The workload a `WasmAutoscaler` scales: found through discovery by its
//! `scaleTargetRef`, read and changed only through its `scale` subresource,
//! and its pods found by the selector the scale status reports.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::{discovery, Api, Client};

use super::crd::ScaleTargetRef;
use super::pods::{PodCache, PodView, Selector};
use super::Error;
use crate::metrics::Endpoint;

/// Resolves `scaleTargetRef`s to API resources, remembering what discovery found.
#[derive(Default)]
pub struct Resolver {
    /// By `apiVersion`, then kind: nested so a look-up borrows its keys.
    known: Mutex<HashMap<String, HashMap<String, Arc<ApiResource>>>>,
}

impl Resolver {
    /// The target in `namespace`, read and changed through `client`.
    pub async fn target<'a>(
        &self,
        client: &'a Client,
        namespace: &'a str,
        target: &'a ScaleTargetRef,
    ) -> Result<Target<'a>, Error> {
        let cached = self
            .known
            .lock()
            .expect("resolver lock")
            .get(&target.api_version)
            .and_then(|kinds| kinds.get(&target.kind))
            .cloned();
        let resource = match cached {
            Some(r) => r,
            None => {
                let (group, version) = match target.api_version.split_once('/') {
                    Some((g, v)) => (g.to_string(), v.to_string()),
                    None => (String::new(), target.api_version.clone()),
                };
                let gvk = GroupVersionKind::gvk(&group, &version, &target.kind);
                let (resource, _caps) =
                    discovery::pinned_kind(client, &gvk).await.map_err(|e| {
                        Error::TargetUnknown {
                            target: format!("{}/{}", target.api_version, target.kind),
                            message: e.to_string(),
                        }
                    })?;
                let resource = Arc::new(resource);
                self.known
                    .lock()
                    .expect("resolver lock")
                    .entry(target.api_version.clone())
                    .or_default()
                    .insert(target.kind.clone(), Arc::clone(&resource));
                resource
            }
        };
        Ok(Target {
            client,
            resource,
            namespace,
            name: &target.name,
            kind: &target.kind,
        })
    }
}

/// One workload, through its scale subresource. Borrowed from the spec for a
/// tick: a tick whose scale is reused builds no request.
pub struct Target<'a> {
    client: &'a Client,
    resource: Arc<ApiResource>,
    namespace: &'a str,
    name: &'a str,
    kind: &'a str,
}

/// The scale of a workload as its subresource reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleView {
    /// Replicas asked for.
    pub spec_replicas: u32,
    /// Replicas running.
    pub status_replicas: u32,
    /// Label selector of the pods, shared by the ticks that reuse this read.
    pub selector: Option<Arc<Selector>>,
}

/// Pods split by whether they serve yet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodCounts {
    /// Ready and older than the warm-up.
    pub ready: u32,
    /// Not ready yet, or ready but still warming up.
    pub warming: u32,
    /// Where to scrape the pods that have an address.
    pub endpoints: Vec<Endpoint>,
}

impl Target<'_> {
    /// The workload's kind and name, e.g. `Deployment/web`.
    pub fn describe(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }

    /// The workload's API resource.
    pub fn resource(&self) -> &Arc<ApiResource> {
        &self.resource
    }

    /// The workload's namespace.
    pub fn namespace(&self) -> &str {
        self.namespace
    }

    /// The workload's name.
    pub fn name(&self) -> &str {
        self.name
    }

    fn api(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), self.namespace, &*self.resource)
    }

    /// Reads the scale subresource, and the workload's `resourceVersion` it was read at.
    pub async fn scale(&self) -> Result<(ScaleView, Option<String>), Error> {
        let scale: Scale = self
            .api()
            .get_scale(self.name)
            .await
            .map_err(|e| Error::Kube {
                action: format!("reading the scale of {}", self.describe()),
                source: e,
            })?;
        let spec = scale.spec.and_then(|s| s.replicas).unwrap_or(0);
        let status = scale.status.unwrap_or_default();
        let view = ScaleView {
            spec_replicas: spec.max(0) as u32,
            status_replicas: status.replicas.max(0) as u32,
            selector: status
                .selector
                .filter(|s| !s.is_empty())
                .map(|s| Arc::new(Selector::parse(s))),
        };
        Ok((view, scale.metadata.resource_version))
    }

    /// Sets the replica count. The patch holds the absolute number, so a
    /// retry after an answer that was lost cannot scale twice.
    pub async fn set_replicas(&self, replicas: u32) -> Result<(), kube::Error> {
        let patch = serde_json::json!({ "spec": { "replicas": replicas } });
        self.api()
            .patch_scale(self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
    }

    /// Counts the pods matching `selector`, from `cache` when it can answer and
    /// by a LIST otherwise; pods created less than `warmup` ago, or not Ready,
    /// are warming. The ready pods' addresses are found only when `addresses`
    /// asks for them (a metric scrapes the pods).
    pub async fn pods(
        &self,
        cache: &PodCache,
        selector: &Selector,
        warmup: std::time::Duration,
        now: Timestamp,
        addresses: bool,
    ) -> Result<PodCounts, Error> {
        if let Some(views) = cache.select(self.namespace, selector) {
            return Ok(count(views.iter().map(|v| &**v), warmup, now, addresses));
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), self.namespace);
        let pods = pods
            .list(&ListParams::default().labels(selector.as_str()))
            .await
            .map_err(|e| Error::Kube {
                action: format!("listing the pods of {}", self.describe()),
                source: e,
            })?;
        let views: Vec<PodView> = pods.items.iter().map(PodView::from).collect();
        Ok(count(views.iter(), warmup, now, addresses))
    }
}

/// Splits pods into ready and warming, and finds the ready ones' addresses.
fn count<'a>(
    pods: impl Iterator<Item = &'a PodView>,
    warmup: std::time::Duration,
    now: Timestamp,
    addresses: bool,
) -> PodCounts {
    let mut counts = PodCounts::default();
    for pod in pods.filter(|p| !p.gone) {
        let warm = pod
            .started
            .is_some_and(|t| now.duration_since(t).as_secs_f64() >= warmup.as_secs_f64());
        if pod.ready && warm {
            counts.ready += 1;
        } else {
            counts.warming += 1;
        }
        if let (true, true, Some(ip), Some(uid)) = (addresses, pod.ready, &pod.ip, &pod.uid) {
            counts.endpoints.push(Endpoint {
                id: String::from(&**uid),
                host: String::from(&**ip),
                port: None,
            });
        }
    }
    counts
}
