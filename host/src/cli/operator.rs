//! `wasm-autoscaler run`: the operator.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use std::path::PathBuf;

use ipnet::IpNet;

use super::SandboxArgs;
use crate::boundary::credentials::{AdminCredential, AdminCredentials};
use crate::boundary::egress::{self, AllowRule, EgressPolicy};
use crate::boundary::files::FileRoots;
use crate::operator::{self, telemetry, LeaseSettings, Settings};
use crate::registry::RegistrySettings;
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
    /// Name of the Lease that elects the leader; with several shards, the prefix of the
    /// shard Leases (`NAME-I-of-N`) and of each replica's member Lease (`NAME-member-…`).
    #[arg(long, default_value = "wasm-autoscaler-leader")]
    lease_name: String,
    /// Split the autoscalers into this many shards, each held through its own Lease by one
    /// live replica; the replicas share them evenly. Every replica must run with the same
    /// count (while some disagree, none acts). 1 is plain leader election.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    shards: u32,
    /// Namespace of the Lease; the pod's own namespace in a cluster.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// How long the lease holds without renewal; a dead leader is replaced within it.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    lease_duration: Duration,
    /// This replica's name in the lease and in Events; the pod name in a cluster.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Most requests to the API server waiting for a response at once; the others queue
    /// (a start or a shard take-over ticks thousands of autoscalers together).
    #[arg(long, default_value_t = operator::api_client::DEFAULT_IN_FLIGHT,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    api_in_flight: u32,
    /// Threads that run the ticks' requests and bookkeeping (policy calls and compiles have
    /// threads of their own). One keeps 10,000 autoscalers under a tenth of a core; each more
    /// costs cross-thread wake-ups and allocator contention, and pays only when one thread cannot
    /// keep up.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    async_threads: u16,
    /// Timeout of one metric request.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    metric_timeout: Duration,
    /// How old an unchanged decision in an autoscaler's status may grow before it is written
    /// again (a changed decision, condition or policy is written at once); 0s writes every tick.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    status_refresh: Duration,
    /// A folder `file` policy sources may be read from (repeat for several). Without any,
    /// `file` sources are refused: a spec may not make the operator read its own files.
    #[arg(long = "allow-file-root", value_name = "DIR")]
    file_roots: Vec<PathBuf>,
    /// Addresses metric requests and registry pulls may reach: a CIDR, an address, a host name or `*.domain`
    /// (repeat for several). Default: every address except the denied ones.
    #[arg(long = "egress-allow", value_name = "CIDR|HOST")]
    egress_allow: Vec<AllowRule>,
    /// Addresses metric requests and registry pulls may not reach, besides link-local, loopback, cloud metadata and
    /// the API server (repeat for several).
    #[arg(long = "egress-deny", value_name = "CIDR", value_parser = egress::parse_net)]
    egress_deny: Vec<IpNet>,
    /// A credential for one metrics server, mounted into the operator, that specs may name:
    /// `NAME:address=URL[,token=FILE][,ca=FILE]`. It is only sent to that address.
    #[arg(long = "credential", value_name = "NAME:address=URL,...")]
    credentials: Vec<AdminCredential>,
    /// A registry (`host[:port]`) `oci` policy sources may reach over plain HTTP instead of
    /// HTTPS (repeat for several). Pulls are bound by the egress rules either way.
    #[arg(long = "plain-http-registry", value_name = "HOST[:PORT]")]
    plain_http_registries: Vec<String>,
}

pub fn run(args: RunArgs, sandbox: &SandboxArgs) -> Result<()> {
    if !operator::memory::tune_allocator() {
        tracing::warn!("the allocator's background purging is off; freed heap returns more slowly");
    }
    let runtime = Arc::new(sandbox.runtime(InstanceMode::PerTenant)?);
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(usize::from(args.async_threads))
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let file_roots = FileRoots::new(args.file_roots.clone()).context("--allow-file-root")?;
    let mut egress =
        EgressPolicy::new(&args.egress_allow, &args.egress_deny).map_err(anyhow::Error::msg)?;
    let credentials =
        AdminCredentials::new(args.credentials.clone()).map_err(anyhow::Error::msg)?;
    // The operator runs as a task on the async workers, not on this thread: the
    // controller then hands each reconcile to a worker and back without a
    // cross-thread wake-up.
    let cache_dir = sandbox.compile_cache.clone();
    let operator = async move {
        let config = kube::Config::infer()
            .await
            .context("finding Kubernetes (in-cluster config or KUBECONFIG)")?;
        let cluster_url = config.cluster_url.clone();
        let clients = operator::api_client::clients(config, args.api_in_flight)
            .context("connecting to Kubernetes")?;
        let client = clients.work.clone();
        egress.refuse_api_server(operator::api_server_addresses(&client, &cluster_url).await);
        tracing::info!(
            file_roots = ?file_roots.folders().collect::<Vec<_>>(),
            egress = %egress,
            credentials = ?credentials.names().collect::<Vec<_>>(),
            "tenant boundary"
        );
        let identity = args.identity.clone().unwrap_or_else(default_identity);
        let settings = Settings {
            namespace: args.namespace.clone(),
            lease: (!args.no_leader_election).then(|| LeaseSettings {
                namespace: args.lease_namespace.clone(),
                name: args.lease_name.clone(),
                identity: identity.clone(),
                duration: args.lease_duration,
                renew_every: args.lease_duration / 3,
                shards: args.shards,
            }),
            identity,
            metric_timeout: args.metric_timeout,
            status_refresh: args.status_refresh,
            file_roots,
            egress,
            credentials,
            registry: RegistrySettings {
                plain_http: args.plain_http_registries.clone(),
                cache_dir,
                ..RegistrySettings::default()
            },
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
        operator::run(clients, runtime, settings, metrics, shutdown_signal()).await;
        tracing::info!("operator stopped");
        Ok(())
    };
    tokio.block_on(async { tokio::spawn(operator).await.context("the operator task")? })
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
