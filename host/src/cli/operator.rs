//! `wasm-autoscaler run`: the operator.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use super::SandboxArgs;
use crate::operator::{self, telemetry, LeaseSettings, Settings};
use crate::runtime::InstanceMode;

/// Arguments of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Watch only this namespace; all namespaces when absent.
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Scale without leader election (only for a single replica).
    #[arg(long)]
    no_leader_election: bool,
    /// Name of the Lease that elects the leader.
    #[arg(long, default_value = "wasm-autoscaler-leader")]
    lease_name: String,
    /// Namespace of the Lease; the pod's own namespace in a cluster.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// How long the lease holds without renewal; a dead leader is replaced within it.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    lease_duration: Duration,
    /// This replica's name in the lease and in Events; the pod name in a cluster.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Timeout of one metric request.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    metric_timeout: Duration,
}

pub fn run(args: RunArgs, sandbox: &SandboxArgs) -> Result<()> {
    let runtime = Arc::new(sandbox.runtime(InstanceMode::PerTarget)?);
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    tokio.block_on(async move {
        let client = kube::Client::try_default()
            .await
            .context("connecting to Kubernetes (in-cluster config or KUBECONFIG)")?;
        let identity = args.identity.clone().unwrap_or_else(default_identity);
        let settings = Settings {
            namespace: args.namespace.clone(),
            lease: (!args.no_leader_election).then(|| LeaseSettings {
                namespace: args.lease_namespace.clone(),
                name: args.lease_name.clone(),
                identity: identity.clone(),
                duration: args.lease_duration,
                renew_every: args.lease_duration / 3,
            }),
            identity,
            metric_timeout: args.metric_timeout,
        };
        let metrics = Arc::new(telemetry::Metrics::default());
        let health = Arc::new(telemetry::Health::default());
        let listener = telemetry::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        tokio::spawn(telemetry::serve(
            listener,
            Arc::clone(&metrics),
            Arc::clone(&health),
        ));
        client
            .apiserver_version()
            .await
            .context("reaching the Kubernetes API server")?;
        health.set_ready(true);
        tracing::info!(listen = %args.listen, "operator started");
        operator::run(client, runtime, settings, metrics, shutdown_signal()).await;
        tracing::info!("operator stopped");
        Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler installs");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn default_identity() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "wasm-autoscaler".into());
    format!("{host}-{}", std::process::id())
}
