//! The Kubernetes operator: the `WasmAutoscaler` resource ([`crd`]), the
//! controller that evaluates each one every `interval` ([`controller`]),
//! the workload it scales ([`target`]), policy loading ([`policies`]),
//! leader election ([`leader`]) and the operator's own metrics and health
//! endpoints ([`telemetry`]).

pub mod controller;
pub mod crd;
mod files;
pub mod leader;
pub mod policies;
pub mod status;
pub mod target;
pub mod telemetry;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;

use crate::runtime::Runtime;

pub use controller::Context;
pub use leader::LeaseSettings;

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
    /// Leader election; without it this replica scales on its own.
    pub lease: Option<LeaseSettings>,
    /// Name in Events and the lease.
    pub identity: String,
    /// Timeout of one metric request.
    pub metric_timeout: Duration,
}

/// Runs the operator until `shutdown` completes: with a lease, only while
/// this replica leads.
pub async fn run(
    client: Client,
    runtime: Arc<Runtime>,
    settings: Settings,
    metrics: Arc<telemetry::Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let ctx = Arc::new(Context::new(
        client.clone(),
        runtime,
        Arc::clone(&metrics),
        &settings,
    ));
    let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
    match settings.lease.clone() {
        None => {
            metrics.set_leader(true);
            controller::run(ctx, settings.namespace.clone(), shutdown).await;
        }
        Some(lease) => {
            let work = || {
                controller::run(
                    Arc::clone(&ctx),
                    settings.namespace.clone(),
                    shutdown.clone(),
                )
            };
            leader::run_while_leader(client, lease, &metrics, work, shutdown.clone()).await;
        }
    }
}
