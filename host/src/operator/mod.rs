//! The Kubernetes operator: the `WasmAutoscaler` resource ([`crd`]), the
//! controller that evaluates each one every `interval` ([`controller`]),
//! the workload it scales ([`target`]), policy loading ([`policies`]), its
//! client of the API server ([`api_client`]),
//! sharding across replicas through Leases ([`shards`], [`lease`]) and the
//! operator's own metrics and health endpoints ([`telemetry`]).

pub mod api_client;
pub mod controller;
pub mod crd;
mod evaluator;
pub mod events;
mod files;
pub mod lease;
pub mod load_gate;
pub mod memory;
pub mod pods;
pub mod policies;
pub mod scales;
pub mod shards;
pub mod status;
pub mod target;
pub mod telemetry;
pub mod versions;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use std::net::IpAddr;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::{Api, Client};

use crate::boundary::credentials::AdminCredentials;
use crate::boundary::egress::EgressPolicy;
use crate::boundary::files::FileRoots;
use crate::registry::RegistrySettings;
use crate::runtime::Runtime;

pub use controller::Context;
pub use lease::LeaseSettings;

/// Why a reconcile could not finish.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot resolve the scale target {target}: {message}")]
    TargetUnknown { target: String, message: String },
}

impl Error {
    /// A stable label for the reconcile-error metric.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "kube_api",
            Error::TargetUnknown { .. } => "target_unknown",
        }
    }
}

/// How the operator runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Watch only this namespace; all namespaces when absent.
    pub namespace: Option<String>,
    /// Leader election and sharding; without it this replica scales every autoscaler on its own.
    pub lease: Option<LeaseSettings>,
    /// Name in Events and the lease.
    pub identity: String,
    /// Timeout of one metric request.
    pub metric_timeout: Duration,
    /// Folders `file` sources may be read from (none: `file` sources are refused).
    pub file_roots: FileRoots,
    /// Which addresses metric requests may reach.
    pub egress: EgressPolicy,
    /// Credentials the admin declared, which specs may name.
    pub credentials: AdminCredentials,
    /// How `oci` policy sources are pulled (within `egress`).
    pub registry: RegistrySettings,
    /// How old an unchanged decision in an autoscaler's status may grow before it is
    /// written again; zero writes the status at every tick.
    pub status_refresh: Duration,
}

impl Settings {
    /// A replica called `identity` with the safe defaults: all namespaces,
    /// no leader election, a 5 s metric timeout, no file roots, the default
    /// egress rules, no admin credentials, registries over HTTPS only, no
    /// artifact cache on disk, and an unchanged decision written every 5 minutes.
    pub fn new(identity: &str) -> Self {
        Settings {
            namespace: None,
            lease: None,
            identity: identity.into(),
            metric_timeout: Duration::from_secs(5),
            file_roots: FileRoots::default(),
            egress: EgressPolicy::default(),
            credentials: AdminCredentials::default(),
            registry: RegistrySettings::default(),
            status_refresh: DEFAULT_STATUS_REFRESH,
        }
    }
}

/// How often an unchanged decision is written to the status by default.
pub const DEFAULT_STATUS_REFRESH: Duration = Duration::from_secs(300);

/// The addresses of the Kubernetes API server, which metric requests never
/// reach: the client's URL, the in-cluster service address and the
/// endpoints of the `kubernetes` service (read when RBAC allows; see
/// `deploy/operator/rbac.yaml`).
pub async fn api_server_addresses(client: &Client, cluster_url: &http::Uri) -> Vec<IpAddr> {
    let mut found = Vec::new();
    let bare = |host: &str| {
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string()
    };
    let mut hosts = Vec::new();
    if let Some(host) = cluster_url.host() {
        hosts.push((bare(host), cluster_url.port_u16().unwrap_or(443)));
    }
    if let Ok(host) = std::env::var("KUBERNETES_SERVICE_HOST") {
        hosts.push((bare(&host), 443));
    }
    for (host, port) in hosts {
        match host.parse::<IpAddr>() {
            Ok(ip) => found.push(ip),
            Err(_) => match tokio::net::lookup_host((host.as_str(), port)).await {
                Ok(addrs) => found.extend(addrs.map(|a| a.ip())),
                Err(e) => tracing::warn!(%host, error = %e, "cannot resolve the API server's name"),
            },
        }
    }
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    match slices.get_opt("kubernetes").await {
        Ok(Some(slice)) => found.extend(
            slice
                .endpoints
                .iter()
                .flatten()
                .flat_map(|e| e.addresses.iter())
                .filter_map(|a| a.parse::<IpAddr>().ok()),
        ),
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the API server's endpoints; only its service address is refused to metric requests")
        }
    }
    found.sort();
    found.dedup();
    found
}

/// Runs the operator until `shutdown` completes: with leases, acting only on
/// the autoscalers of the shards this replica holds.
pub async fn run(
    clients: impl Into<api_client::ApiClients>,
    runtime: Arc<Runtime>,
    settings: Settings,
    metrics: Arc<telemetry::Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let api_client::ApiClients { work, leases } = clients.into();
    let ownership = Arc::new(match &settings.lease {
        None => shards::Ownership::everything(&settings.identity),
        Some(lease) => shards::Ownership::sharded(&settings.identity, lease.shards),
    });
    let ctx = Arc::new(Context::new(
        work,
        runtime,
        Arc::clone(&metrics),
        Arc::clone(&ownership),
        &settings,
    ));
    let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
    let controller = controller::run(
        Arc::clone(&ctx),
        settings.namespace.clone(),
        shutdown.clone(),
    );
    match settings.lease.clone() {
        None => {
            metrics.set_shards(1, &[0]);
            controller.await;
        }
        Some(lease) => {
            // Standby replicas keep their watches warm, so a shard taken over is evaluated at once.
            let changed = move |change| match change {
                shards::Change::Gained(_) => ctx.wake_all(),
                shards::Change::Lost(shard) => ctx.forget_shard(shard),
            };
            let leases = shards::run(leases, lease, ownership, metrics, changed, shutdown);
            futures::future::join(controller, leases).await;
        }
    }
}
