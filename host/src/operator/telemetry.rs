//! The operator's own metrics (OpenMetrics at `/metrics`) and its health
//! endpoints (`/healthz`, `/readyz`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Direction {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Failure {
    role: &'static str,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MetricFailure {
    namespace: String,
    autoscaler: String,
    metric: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorKind {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Refusal {
    namespace: String,
    reason: &'static str,
}

/// The operator's metrics.
pub struct Metrics {
    registry: Registry,
    decisions: Family<Outcome, Counter>,
    shadow_decisions: Family<Outcome, Counter>,
    evaluation_seconds: Histogram,
    policy_failures: Family<Failure, Counter>,
    scale_actions: Family<Direction, Counter>,
    metric_fetch_errors: Family<MetricFailure, Counter>,
    reconcile_lag_seconds: Histogram,
    reconcile_errors: Family<ErrorKind, Counter>,
    reloads: Family<Outcome, Counter>,
    refusals: Family<Refusal, Counter>,
    status_writes: Family<Outcome, Counter>,
    scale_reads: Family<Outcome, Counter>,
    leader: Gauge,
    shard_held: Family<Shard, Gauge>,
    owned: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Shard {
    shard: String,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("wasm_autoscaler");
        let decisions = Family::<Outcome, Counter>::default();
        registry.register(
            "decisions",
            "Evaluations by outcome (scale_up, scale_down, hold, failed)",
            decisions.clone(),
        );
        let shadow_decisions = Family::<Outcome, Counter>::default();
        registry.register(
            "shadow_decisions",
            "Shadow decider evaluations by what they would have done",
            shadow_decisions.clone(),
        );
        let evaluation_seconds = Histogram::new(exponential_buckets(0.000_01, 2.5, 14));
        registry.register(
            "policy_evaluation_seconds",
            "Time of one evaluation's policy calls (predictor and decider)",
            evaluation_seconds.clone(),
        );
        let policy_failures = Family::<Failure, Counter>::default();
        registry.register(
            "policy_failures",
            "Failed policy calls by role and kind (trap, timeout, memory_cap, policy, ...)",
            policy_failures.clone(),
        );
        let scale_actions = Family::<Direction, Counter>::default();
        registry.register(
            "scale_actions",
            "Scale changes applied, by direction",
            scale_actions.clone(),
        );
        let metric_fetch_errors = Family::<MetricFailure, Counter>::default();
        registry.register(
            "metric_fetch_errors",
            "Metrics that had no usable value at a tick, by autoscaler, metric and reason",
            metric_fetch_errors.clone(),
        );
        let reconcile_lag_seconds = Histogram::new(exponential_buckets(0.001, 3.0, 12));
        registry.register(
            "reconcile_lag_seconds",
            "How late an evaluation ran after it was due",
            reconcile_lag_seconds.clone(),
        );
        let reconcile_errors = Family::<ErrorKind, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by kind",
            reconcile_errors.clone(),
        );
        let reloads = Family::<Outcome, Counter>::default();
        registry.register(
            "policy_reloads",
            "Policy components loaded or rejected, by outcome",
            reloads.clone(),
        );
        let refusals = Family::<Refusal, Counter>::default();
        registry.register(
            "refusals",
            "Tenant input refused by a rule (a file outside the allowed folders, an address egress does not allow, a Secret not granted, a component over the compile budget, an invalid spec), by namespace and reason; counted when reported",
            refusals.clone(),
        );
        let status_writes = Family::<Outcome, Counter>::default();
        registry.register(
            "status_writes",
            "Autoscaler statuses written, or left as they were because the decision did not change (outcome written, unchanged)",
            status_writes.clone(),
        );
        let scale_reads = Family::<Outcome, Counter>::default();
        registry.register(
            "scale_reads",
            "Target scales a tick needed: read from the API server, or reused because the workload's version had not changed since the last read (outcome read, reused)",
            scale_reads.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader lease, or with several shards any shard lease",
            leader.clone(),
        );
        let shard_held = Family::<Shard, Gauge>::default();
        registry.register(
            "shard_held",
            "1 for each shard whose lease this replica holds (an autoscaler's status names its shard and owner)",
            shard_held.clone(),
        );
        let owned = Gauge::default();
        registry.register(
            "owned_autoscalers",
            "Autoscalers this replica evaluates now",
            owned.clone(),
        );
        Metrics {
            registry,
            decisions,
            shadow_decisions,
            evaluation_seconds,
            policy_failures,
            scale_actions,
            metric_fetch_errors,
            reconcile_lag_seconds,
            reconcile_errors,
            reloads,
            refusals,
            status_writes,
            scale_reads,
            leader,
            shard_held,
            owned,
        }
    }
}

impl Metrics {
    /// Counts an evaluation's outcome.
    pub fn decision(&self, outcome: &'static str, shadow: bool) {
        let family = if shadow {
            &self.shadow_decisions
        } else {
            &self.decisions
        };
        family.get_or_create(&Outcome { outcome }).inc();
    }

    /// Records how long an evaluation's policy calls took.
    pub fn evaluation(&self, seconds: f64) {
        self.evaluation_seconds.observe(seconds);
    }

    /// Counts a failed policy call.
    pub fn policy_failure(&self, role: &'static str, kind: &'static str) {
        self.policy_failures
            .get_or_create(&Failure { role, kind })
            .inc();
    }

    /// Counts an applied scale change.
    pub fn scale_action(&self, up: bool) {
        let direction = if up { "up" } else { "down" };
        self.scale_actions
            .get_or_create(&Direction { direction })
            .inc();
    }

    /// Counts a metric without a usable value.
    pub fn metric_error(
        &self,
        namespace: &str,
        autoscaler: &str,
        metric: &str,
        kind: &'static str,
    ) {
        self.metric_fetch_errors
            .get_or_create(&MetricFailure {
                namespace: namespace.into(),
                autoscaler: autoscaler.into(),
                metric: metric.into(),
                kind,
            })
            .inc();
    }

    /// Counts a refusal of a tenant's input.
    pub fn refusal(&self, namespace: &str, reason: &'static str) {
        self.refusals
            .get_or_create(&Refusal {
                namespace: namespace.into(),
                reason,
            })
            .inc();
    }

    /// Counts a status written or, unchanged, not written.
    pub fn status_write(&self, written: bool) {
        let outcome = if written { "written" } else { "unchanged" };
        self.status_writes.get_or_create(&Outcome { outcome }).inc();
    }

    /// Counts a target scale read from the API server or, unchanged, reused.
    pub fn scale_read(&self, reused: bool) {
        let outcome = if reused { "reused" } else { "read" };
        self.scale_reads.get_or_create(&Outcome { outcome }).inc();
    }

    /// Records how late a tick ran.
    pub fn lag(&self, seconds: f64) {
        self.reconcile_lag_seconds.observe(seconds.max(0.0));
    }

    /// Counts a failed reconcile.
    pub fn reconcile_error(&self, kind: &'static str) {
        self.reconcile_errors
            .get_or_create(&ErrorKind { kind })
            .inc();
    }

    /// Counts a policy load (`loaded`) or refusal (`rejected`).
    pub fn reload(&self, outcome: &'static str) {
        self.reloads.get_or_create(&Outcome { outcome }).inc();
    }

    /// Sets which of `count` shards this replica holds.
    pub fn set_shards(&self, count: u32, held: &[u32]) {
        self.leader.set(i64::from(!held.is_empty()));
        for shard in 0..count {
            self.shard_held
                .get_or_create(&Shard {
                    shard: shard.to_string(),
                })
                .set(i64::from(held.contains(&shard)));
        }
    }

    /// Sets how many autoscalers this replica evaluates.
    pub fn set_owned(&self, count: usize) {
        self.owned.set(count as i64);
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String does not fail");
        out
    }
}

/// What the health endpoints report.
#[derive(Default)]
pub struct Health {
    ready: AtomicBool,
}

impl Health {
    /// Marks the operator ready (it reached the API server).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }
}

#[derive(Clone)]
struct Shared {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until the task is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(Shared { metrics, health });
    axum::serve(listener, app).await
}

/// Binds the telemetry address, so a taken port fails at start-up.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

async fn metrics_page(State(s): State<Shared>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

async fn readyz(State(s): State<Shared>) -> impl IntoResponse {
    if s.health.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}
