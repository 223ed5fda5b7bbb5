//! The `WasmAutoscaler` custom resource (`wasmautoscaler.dev/v1alpha1`).
//!
//! `deploy/crd.yaml` is generated from these types (`wasm-autoscaler crd`)
//! and a test fails when it drifts. The schema carries what the API server
//! can check on its own; [`WasmAutoscalerSpec::validate`] checks the rest
//! (and everything again, for servers that skip CEL rules).

use std::time::Duration;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::boundary::names::{self, DATA_KEY_PATTERN, OBJECT_NAME_PATTERN};
use crate::pipeline::{LongHistorySpec, MAX_LONG_HISTORY_POINTS};
use crate::safety::{Behavior, ZeroRules};

/// API group of the resource.
pub const GROUP: &str = "wasmautoscaler.dev";
/// The annotation that pauses an autoscaler (`"true"`): it keeps deciding
/// and reporting but never scales.
pub const PAUSE_ANNOTATION: &str = "wasmautoscaler.dev/paused";

const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";
/// Most metrics one autoscaler may have: each is fetched every tick.
pub const MAX_METRICS: usize = 16;
/// Most explicit endpoints one `scrape` metric may list.
pub const MAX_ENDPOINTS: usize = 64;
/// Longest a metric request may be given (`prometheus.timeout`).
pub const MAX_METRIC_TIMEOUT: Duration = Duration::from_secs(30);

/// Scales one workload with WebAssembly policies.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[kube(
    group = "wasmautoscaler.dev",
    version = "v1alpha1",
    kind = "WasmAutoscaler",
    shortname = "was",
    namespaced,
    status = "WasmAutoscalerStatus",
    printcolumn = r#"{"name": "Target", "type": "string", "jsonPath": ".spec.scaleTargetRef.name"}"#,
    printcolumn = r#"{"name": "Min", "type": "integer", "jsonPath": ".spec.minReplicas"}"#,
    printcolumn = r#"{"name": "Max", "type": "integer", "jsonPath": ".spec.maxReplicas"}"#,
    printcolumn = r#"{"name": "Current", "type": "integer", "jsonPath": ".status.currentReplicas"}"#,
    printcolumn = r#"{"name": "Desired", "type": "integer", "jsonPath": ".status.desiredReplicas"}"#,
    printcolumn = r#"{"name": "Reason", "type": "string", "jsonPath": ".status.lastDecision.reason", "priority": 1}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("minReplicas must not exceed maxReplicas"))]
#[serde(rename_all = "camelCase")]
pub struct WasmAutoscalerSpec {
    /// The workload to scale: any resource with a `scale` subresource.
    pub scale_target_ref: ScaleTargetRef,
    /// Fewest replicas the autoscaler sets. With 0, the target idles at zero replicas and is
    /// woken by a metric's `activationThreshold` (at least one metric needs one).
    #[serde(default = "default_min")]
    #[schemars(range(min = 0))]
    pub min_replicas: u32,
    /// Most replicas the autoscaler sets.
    #[schemars(range(min = 1))]
    pub max_replicas: u32,
    /// Time between evaluations, e.g. `15s`.
    #[serde(default = "default_interval")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub interval: String,
    /// Pods younger than this count as warming, not capacity; predictors forecast at least this far ahead.
    #[serde(default = "default_warmup")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub warmup: String,
    /// Samples of history kept per metric for predictors.
    #[serde(default = "default_history")]
    #[schemars(range(min = 2, max = 10000))]
    pub history: u32,
    /// The signals policies decide on (at most 16).
    #[schemars(length(min = 1, max = 16))]
    pub metrics: Vec<MetricSpec>,
    /// Forecasts the metrics; optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predictor: Option<PolicySource>,
    /// A second predictor for known events, typically `bundled: schedule`; its forecasts are
    /// combined with the predictor's by max, and its `replicas` forecast is a floor on replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<PolicySource>,
    /// Turns metrics and forecasts into a replica count.
    pub decider: PolicySource,
    /// A second decider evaluated every tick and reported, never applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<PolicySource>,
    /// Limits on how fast and how often the target may change.
    #[serde(default)]
    pub behavior: Behavior,
    /// Decide and report, never scale.
    #[serde(default)]
    pub dry_run: bool,
    /// With `minReplicas: 0`: how long every activation metric must stay at or below its
    /// threshold before the target goes to zero, e.g. `5m` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub idle_after: Option<String>,
    /// Each metric's long history for seasonal predictors: its mean every `step` over the last
    /// `window` (at most 10,080 steps). Prometheus metrics are filled from Prometheus' past
    /// when the autoscaler is first evaluated, so an operator restart does not forget it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long_history: Option<LongHistory>,
}

/// The step and window of a long history.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LongHistory {
    /// Spacing of the samples, e.g. `5m`: at least the interval, at most `24h`.
    #[schemars(pattern(DURATION_PATTERN))]
    pub step: String,
    /// How far back, e.g. `168h` for a week: at most `840h` (35 days).
    #[schemars(pattern(DURATION_PATTERN))]
    pub window: String,
}

fn default_min() -> u32 {
    1
}
fn default_interval() -> String {
    "15s".into()
}
fn default_warmup() -> String {
    "60s".into()
}
fn default_history() -> u32 {
    240
}

/// Names the workload to scale.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaleTargetRef {
    /// For example `apps/v1`.
    pub api_version: String,
    /// For example `Deployment`.
    pub kind: String,
    /// Name of the workload in the autoscaler's namespace.
    #[schemars(pattern(OBJECT_NAME_PATTERN), length(max = 253))]
    pub name: String,
}

/// One named signal and where it comes from.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.prometheus) != has(self.scrape)").message("set exactly one of prometheus, scrape"))]
#[serde(rename_all = "camelCase")]
pub struct MetricSpec {
    /// The name policies see, e.g. `rps`.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// A PromQL instant query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusMetric>,
    /// Scrape the target's pods directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrape: Option<ScrapeMetric>,
    /// With `minReplicas: 0`: above this value the metric wakes the target from zero (at once,
    /// whatever the behavior's windows and limits), and the target goes to zero only after every
    /// such metric has stayed at or below its threshold for `idleAfter`. Only metrics that exist
    /// with no pods can have one: `prometheus`, or `scrape` with explicit `endpoints`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub activation_threshold: Option<f64>,
    /// For `prometheus`: unavailable when the samples the query returns are older than this
    /// (e.g. `1m`). Prometheus stamps computed results with the query time, so this applies to
    /// queries that select stored series directly (e.g. `queue_depth{queue="orders"}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub stale_after: Option<String>,
}

/// A PromQL query returning one number.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusMetric {
    /// Base URL of the Prometheus server, e.g. `http://prometheus.monitoring:9090`; the
    /// operator's egress rules (`--egress-allow`) decide whether it may be contacted.
    #[schemars(pattern(r"^https?://"), length(max = 2048))]
    pub address: String,
    /// The query; it must return one series or a scalar, unless `aggregation` says how to combine several.
    #[schemars(length(min = 1, max = 16384))]
    pub query: String,
    /// How several returned series combine; without it, several series are an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregation: Option<Aggregation>,
    /// A bearer token from a key of a Secret in the autoscaler's namespace (which must grant
    /// the operator `get` on it); re-read every 30 s, so a rotated token is picked up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_secret: Option<SecretKeyRef>,
    /// PEM CA certificate(s) the server's certificate is checked against, from a key of a
    /// Secret in the autoscaler's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret: Option<SecretKeyRef>,
    /// A credential the operator's admin declared (`--credential`), by name: its token and CA,
    /// sent only to the address it was declared for. A Secret reference given too wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(OBJECT_NAME_PATTERN), length(max = 253))]
    pub credential: Option<String>,
    /// Removed: a spec may not name files on the operator's disk (use `bearerTokenSecret`).
    #[serde(default, skip_serializing)]
    #[schemars(skip)]
    pub bearer_token_file: Option<serde_json::Value>,
    /// Removed: a spec may not name files on the operator's disk (use `caSecret`).
    #[serde(default, skip_serializing)]
    #[schemars(skip)]
    pub ca_file: Option<serde_json::Value>,
    /// Longest a query may take, e.g. `2s` (at most `30s`); the operator's `--metric-timeout` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub timeout: Option<String>,
}

/// A metric read from each pod's exposition endpoint and aggregated.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScrapeMetric {
    /// Port of the pods' metrics endpoint.
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// Path of the metrics endpoint.
    #[serde(default = "default_path")]
    #[schemars(pattern(r"^/[^\s#]*$"), length(max = 1024))]
    pub path: String,
    /// Name of the gauge to read.
    pub metric: String,
    /// How the pods' values combine.
    #[serde(default)]
    pub aggregation: Aggregation,
    /// For a histogram: the quantile (0–1) of the observations between two scrapes, across pods,
    /// interpolated within buckets as PromQL's `histogram_quantile` does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub quantile: Option<f64>,
    /// Scrape these `host:port` endpoints (at most 64) instead of the target's pods (targets
    /// that are not pods, and `wasm-autoscaler metrics` outside a cluster); the operator's
    /// egress rules apply to them as to any address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub endpoints: Vec<String>,
}

fn default_path() -> String {
    "/metrics".into()
}

/// How per-pod values combine into one.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Aggregation {
    #[default]
    Sum,
    Avg,
    Max,
    Min,
}

impl Aggregation {
    /// Combines `values` (not empty).
    pub fn apply(self, values: &[f64]) -> f64 {
        match self {
            Aggregation::Sum => values.iter().sum(),
            Aggregation::Avg => values.iter().sum::<f64>() / values.len() as f64,
            Aggregation::Max => values.iter().copied().fold(f64::MIN, f64::max),
            Aggregation::Min => values.iter().copied().fold(f64::MAX, f64::min),
        }
    }
}

/// Where a policy component comes from, and its configuration.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("[has(self.configMapRef), has(self.file), has(self.bundled), has(self.oci)].filter(x, x).size() == 1").message("set exactly one of configMapRef, file, bundled, oci"))]
#[serde(rename_all = "camelCase")]
pub struct PolicySource {
    /// A key of a ConfigMap's `binaryData` in the autoscaler's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ConfigMapKey>,
    /// An absolute path inside a folder the operator's admin allowed (`--allow-file-root`),
    /// e.g. a mounted volume; refused when no folder is allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub file: Option<String>,
    /// A policy shipped inside the operator: `hpa`, `ewma-trend`, `forecast`, `schedule` or `onnx`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundled: Option<String>,
    /// A Wasm OCI artifact in a registry, pinned by digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci: Option<OciSource>,
    /// The policy's configuration, passed to it as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub config: Option<serde_json::Value>,
    /// Refuse a component whose sha256 (lowercase hex) differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[0-9a-f]{64}$"))]
    pub sha256: Option<String>,
}

/// A Wasm OCI artifact, pinned by the digest of its manifest.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OciSource {
    /// `registry/repository@sha256:<64 hex digits>`; a tag is refused (the digest is the pin).
    #[schemars(length(min = 1, max = 512), pattern(r"^[^@\s]+@sha256:[0-9a-f]{64}$"))]
    pub reference: String,
    /// A `kubernetes.io/dockerconfigjson` Secret in the autoscaler's namespace holding a
    /// login for the registry (read with `get`, as metric credentials are).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(OBJECT_NAME_PATTERN), length(max = 253))]
    pub pull_secret: Option<String>,
}

/// A key of a ConfigMap in the autoscaler's namespace.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKey {
    #[schemars(pattern(OBJECT_NAME_PATTERN), length(max = 253))]
    pub name: String,
    #[schemars(pattern(DATA_KEY_PATTERN), length(max = 253))]
    pub key: String,
}

/// A key of a Secret in the autoscaler's namespace (there is deliberately no namespace field).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    #[schemars(pattern(OBJECT_NAME_PATTERN), length(max = 253))]
    pub name: String,
    #[schemars(pattern(DATA_KEY_PATTERN), length(max = 253))]
    pub key: String,
}

fn any_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

impl PolicySource {
    /// A short description for status and logs, e.g. `configMap/policies#forecast.wasm`.
    pub fn describe(&self) -> String {
        match (&self.config_map_ref, &self.file, &self.bundled, &self.oci) {
            (Some(c), ..) => format!("configMap/{}#{}", c.name, c.key),
            (_, Some(f), ..) => format!("file:{f}"),
            (_, _, Some(b), _) => format!("bundled:{b}"),
            (.., Some(o)) => format!("oci:{}", o.reference),
            _ => "none".into(),
        }
    }

    /// The policy's configuration as JSON text (empty when absent).
    pub fn config_text(&self) -> String {
        self.config
            .as_ref()
            .map_or_else(String::new, |v| v.to_string())
    }

    fn validate(&self, field: &str) -> Result<(), String> {
        let set = [
            self.config_map_ref.is_some(),
            self.file.is_some(),
            self.bundled.is_some(),
            self.oci.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if set != 1 {
            return Err(format!(
                "{field}: set exactly one of configMapRef, file, bundled, oci"
            ));
        }
        if let Some(o) = &self.oci {
            o.reference
                .parse::<crate::registry::Reference>()
                .map_err(|e| format!("{field}.oci.reference: {e}"))?;
            if let Some(secret) = &o.pull_secret {
                names::object_name(&format!("{field}.oci.pullSecret"), secret)?;
            }
        }
        if let Some(r) = &self.config_map_ref {
            names::object_name(&format!("{field}.configMapRef.name"), &r.name)?;
            names::data_key(&format!("{field}.configMapRef.key"), &r.key)?;
        }
        if let Some(f) = &self.file {
            if f.is_empty() || f.len() > 4096 || f.contains('\0') {
                return Err(format!("{field}.file must be a path of 1 to 4096 bytes"));
            }
        }
        if let Some(pin) = &self.sha256 {
            if pin.len() != 64
                || !pin
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            {
                return Err(format!("{field}.sha256 must be 64 lowercase hex digits"));
            }
        }
        Ok(())
    }
}

impl PrometheusMetric {
    fn validate(&self, field: &str) -> Result<(), String> {
        let url = reqwest::Url::parse(&self.address)
            .map_err(|e| format!("{field}.address: not a URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!(
                "{field}.address must be an http or https URL with a host"
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!("{field}.address must not have a query or fragment"));
        }
        if self.query.is_empty() || self.query.len() > 16384 {
            return Err(format!("{field}.query must be 1 to 16384 bytes"));
        }
        if let Some(t) = &self.timeout {
            let timeout = parse_duration(&format!("{field}.timeout"), t)?;
            if timeout > MAX_METRIC_TIMEOUT || timeout.is_zero() {
                return Err(format!(
                    "{field}.timeout must be more than 0 and at most {}s, got {t}",
                    MAX_METRIC_TIMEOUT.as_secs()
                ));
            }
        }
        if self.bearer_token_file.is_some() || self.ca_file.is_some() {
            return Err(format!(
                "{field}: bearerTokenFile and caFile were removed, because a spec may not make the operator read its own files; use bearerTokenSecret and caSecret (a Secret in this namespace) or an admin-declared credential"
            ));
        }
        for (what, r) in [
            ("bearerTokenSecret", &self.bearer_token_secret),
            ("caSecret", &self.ca_secret),
        ] {
            if let Some(r) = r {
                names::object_name(&format!("{field}.{what}.name"), &r.name)?;
                names::data_key(&format!("{field}.{what}.key"), &r.key)?;
            }
        }
        if let Some(c) = &self.credential {
            names::object_name(&format!("{field}.credential"), c)?;
        }
        Ok(())
    }
}

impl ScrapeMetric {
    fn validate(&self, field: &str) -> Result<(), String> {
        let path_ok = self.path.starts_with('/')
            && self.path.len() <= 1024
            && !self
                .path
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '#');
        // Starting with `/` keeps the path from changing the URL's host (`@evil`).
        if !path_ok {
            return Err(format!(
                "{field}.path must start with `/` and hold no spaces or `#`"
            ));
        }
        if self.endpoints.len() > MAX_ENDPOINTS {
            return Err(format!(
                "{field}.endpoints: at most {MAX_ENDPOINTS}, got {}",
                self.endpoints.len()
            ));
        }
        for e in &self.endpoints {
            crate::metrics::Endpoint::parse(e)
                .map_err(|err| format!("{field}.endpoints: {err}"))?;
        }
        if let Some(q) = self.quantile {
            if !(0.0..=1.0).contains(&q) {
                return Err(format!("{field}.quantile must be in [0, 1], got {q}"));
            }
        }
        Ok(())
    }
}

/// A spec checked and converted to what the pipeline uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub interval: Duration,
    pub warmup: Duration,
    /// When the target may run no pods (empty unless `minReplicas` is 0).
    pub zero: ZeroRules,
    /// The long history kept, if any; its Prometheus metrics are filled from Prometheus.
    pub long_history: Option<LongHistorySpec>,
}

/// Longest `longHistory.step`.
const MAX_LONG_STEP: Duration = Duration::from_secs(24 * 3600);
/// Longest `longHistory.window`.
const MAX_LONG_WINDOW: Duration = Duration::from_secs(35 * 24 * 3600);

/// How long activation metrics must be idle before zero, unless `idleAfter` says.
pub const DEFAULT_IDLE_AFTER: Duration = Duration::from_secs(300);
/// Longest `idleAfter`.
const MAX_IDLE_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

impl WasmAutoscalerSpec {
    /// Checks what the schema cannot (or a server did not), naming the first bad field.
    pub fn validate(&self) -> Result<Checked, String> {
        if self.min_replicas > self.max_replicas {
            return Err(format!(
                "minReplicas ({}) must not exceed maxReplicas ({})",
                self.min_replicas, self.max_replicas
            ));
        }
        if self.max_replicas == 0 {
            return Err("maxReplicas must be at least 1".into());
        }
        let interval = parse_duration("interval", &self.interval)?;
        if interval < Duration::from_secs(1) {
            return Err(format!(
                "interval must be at least 1s, got {}",
                self.interval
            ));
        }
        let warmup = parse_duration("warmup", &self.warmup)?;
        if !(2..=10_000).contains(&self.history) {
            return Err(format!(
                "history must be in 2..=10000, got {}",
                self.history
            ));
        }
        names::object_name("scaleTargetRef.name", &self.scale_target_ref.name)?;
        if self.metrics.is_empty() {
            return Err("metrics: at least one metric is needed".into());
        }
        if self.metrics.len() > MAX_METRICS {
            return Err(format!(
                "metrics: at most {MAX_METRICS} metrics, got {}",
                self.metrics.len()
            ));
        }
        for (i, m) in self.metrics.iter().enumerate() {
            if m.name.is_empty() {
                return Err(format!("metrics[{i}].name must not be empty"));
            }
            if self.metrics[..i].iter().any(|o| o.name == m.name) {
                return Err(format!("metrics[{i}].name `{}` is used twice", m.name));
            }
            if m.prometheus.is_some() == m.scrape.is_some() {
                return Err(format!(
                    "metrics[{i}]: set exactly one of prometheus, scrape"
                ));
            }
            if let Some(p) = &m.prometheus {
                p.validate(&format!("metrics[{i}].prometheus"))?;
            }
            if let Some(s) = &m.scrape {
                s.validate(&format!("metrics[{i}].scrape"))?;
            }
            if let Some(t) = &m.stale_after {
                parse_duration(&format!("metrics[{i}].staleAfter"), t)?;
                if m.prometheus.is_none() {
                    return Err(format!(
                        "metrics[{i}].staleAfter applies to prometheus metrics only"
                    ));
                }
            }
        }
        let zero = self.zero_rules()?;
        if let Some(p) = &self.predictor {
            p.validate("predictor")?;
        }
        if let Some(p) = &self.schedule {
            p.validate("schedule")?;
        }
        self.decider.validate("decider")?;
        if let Some(s) = &self.shadow {
            s.validate("shadow")?;
        }
        self.behavior.validate()?;
        let long_history = self.long_history_spec(interval)?;
        Ok(Checked {
            interval,
            warmup,
            zero,
            long_history,
        })
    }

    /// The long history's step and window, bounded: a tenant sets them, and
    /// every step kept costs memory and every step backfilled a query.
    fn long_history_spec(&self, interval: Duration) -> Result<Option<LongHistorySpec>, String> {
        let Some(l) = &self.long_history else {
            return Ok(None);
        };
        let step = parse_duration("longHistory.step", &l.step)?;
        let window = parse_duration("longHistory.window", &l.window)?;
        if step < interval.max(Duration::from_secs(1)) || step > MAX_LONG_STEP {
            return Err(format!(
                "longHistory.step must be at least the interval ({}) and at most 24h, got {}",
                self.interval, l.step
            ));
        }
        if step.as_millis() % 1000 != 0 {
            return Err(format!(
                "longHistory.step must be whole seconds, got {}",
                l.step
            ));
        }
        if window < step || window > MAX_LONG_WINDOW {
            return Err(format!(
                "longHistory.window must be at least the step and at most 840h, got {}",
                l.window
            ));
        }
        let points = window.as_millis() / step.as_millis();
        if points > MAX_LONG_HISTORY_POINTS as u128 {
            return Err(format!(
                "longHistory: {} / {} is {points} steps, more than {MAX_LONG_HISTORY_POINTS}; use a longer step or a shorter window",
                l.window, l.step
            ));
        }
        Ok(Some(LongHistorySpec {
            step_ms: step.as_millis() as u64,
            window_ms: window.as_millis() as u64,
            filled: self
                .metrics
                .iter()
                .filter(|m| m.prometheus.is_some())
                .map(|m| m.name.clone())
                .collect(),
        }))
    }

    /// The scale-to-zero rules: empty with `minReplicas` above 0; with 0, at
    /// least one activation metric, each one that exists with no pods.
    fn zero_rules(&self) -> Result<ZeroRules, String> {
        let idle = match &self.idle_after {
            Some(t) => {
                let d = parse_duration("idleAfter", t)?;
                if d > MAX_IDLE_AFTER {
                    return Err(format!("idleAfter must be at most 7 days, got {t}"));
                }
                d
            }
            None => DEFAULT_IDLE_AFTER,
        };
        let mut activation = Vec::new();
        for (i, m) in self.metrics.iter().enumerate() {
            let Some(threshold) = m.activation_threshold else {
                continue;
            };
            if !(threshold.is_finite() && threshold >= 0.0) {
                return Err(format!(
                    "metrics[{i}].activationThreshold must be a number ≥ 0, got {threshold}"
                ));
            }
            let at_zero = m.prometheus.is_some()
                || m.scrape.as_ref().is_some_and(|s| !s.endpoints.is_empty());
            if !at_zero {
                return Err(format!(
                    "metrics[{i}].activationThreshold: `{}` scrapes the target's pods, which do not exist at zero replicas; use a prometheus metric or scrape explicit endpoints",
                    m.name
                ));
            }
            activation.push((m.name.clone(), threshold));
        }
        if self.min_replicas > 0 {
            return Ok(ZeroRules::default());
        }
        if activation.is_empty() {
            return Err(
                "minReplicas is 0, but no metric has an activationThreshold: nothing could wake the target from zero"
                    .into(),
            );
        }
        Ok(ZeroRules {
            activation,
            idle_ms: idle.as_millis() as u64,
        })
    }
}

/// The Kubernetes objects of YAML manifest files that matter here.
#[derive(Debug, Default)]
pub struct Manifests {
    /// Each autoscaler with the file it came from.
    pub autoscalers: Vec<(std::path::PathBuf, WasmAutoscaler)>,
    pub config_maps: Vec<k8s_openapi::api::core::v1::ConfigMap>,
    pub secrets: Vec<k8s_openapi::api::core::v1::Secret>,
}

/// A manifest file that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ManifestError {
    pub path: String,
    pub message: String,
}

/// Largest manifest file read (a ConfigMap holds at most 1 MiB).
const MAX_MANIFEST_BYTES: u64 = 16 << 20;

/// Reads the `WasmAutoscaler`, `ConfigMap` and `Secret` documents of multi-document YAML files.
pub fn read_manifests(paths: &[std::path::PathBuf]) -> Result<Manifests, ManifestError> {
    let mut found = Manifests::default();
    for path in paths {
        let fail = |message: String| ManifestError {
            path: path.display().to_string(),
            message,
        };
        let bytes = crate::boundary::files::read_bounded(path, MAX_MANIFEST_BYTES)
            .map_err(|e| fail(e.to_string()))?;
        let text = String::from_utf8(bytes).map_err(|_| fail("not UTF-8 text".into()))?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(doc).map_err(|e| fail(e.to_string()))?;
            match value.get("kind").and_then(|k| k.as_str()) {
                Some("WasmAutoscaler") => found.autoscalers.push((
                    path.clone(),
                    serde_yaml::from_value(value)
                        .map_err(|e| fail(format!("WasmAutoscaler: {e}")))?,
                )),
                Some("ConfigMap") => found.config_maps.push(
                    serde_yaml::from_value(value).map_err(|e| fail(format!("ConfigMap: {e}")))?,
                ),
                Some("Secret") => found
                    .secrets
                    .push(serde_yaml::from_value(value).map_err(|e| fail(format!("Secret: {e}")))?),
                _ => {}
            }
        }
    }
    Ok(found)
}

impl Manifests {
    /// The one autoscaler, or an error saying there is none or several.
    pub fn single(mut self) -> Result<(std::path::PathBuf, WasmAutoscaler, Self), String> {
        match self.autoscalers.len() {
            1 => {
                let (path, a) = self.autoscalers.remove(0);
                Ok((path, a, self))
            }
            0 => Err("no WasmAutoscaler in the given files".into()),
            n => Err(format!(
                "{n} WasmAutoscalers in the given files; give one at a time"
            )),
        }
    }
}

fn parse_duration(field: &str, text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{field}: `{text}` is not a duration like 15s or 2m ({e})"))
}

/// What the autoscaler last observed and did.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WasmAutoscalerStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Replicas the target was asked to run at the last evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_replicas: Option<u32>,
    /// Replicas the safety layer allowed at the last evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_replicas: Option<u32>,
    /// When the autoscaler last changed the target (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<String>,
    /// The last decision of the active policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_decision: Option<DecisionStatus>,
    /// The last decision of the shadow decider, never applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_decision: Option<DecisionStatus>,
    /// The policy components in use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<LoadedPolicy>,
    /// `Ready`, `PolicyLoaded`, `MetricsAvailable`, `ScalingLimited`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The operator replica that evaluates this autoscaler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owned_by: Option<String>,
    /// The shard this autoscaler belongs to (see the operator's `--shards`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<u32>,
}

/// One evaluation's outcome.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DecisionStatus {
    /// When it was made (RFC 3339).
    pub time: String,
    /// What the decider proposed; absent when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposed_replicas: Option<u32>,
    /// What the safety layer allowed.
    pub desired_replicas: u32,
    /// The decider's reason, or why there was no decision.
    pub reason: String,
    /// Safety limits that shaped the outcome.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<String>,
    /// A move to or from zero replicas and what caused it, e.g. `activated: queue is 3, above
    /// its activation threshold 1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transition: Option<String>,
    /// The forecast at the horizon, per metric.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forecast: Vec<ForecastStatus>,
}

/// A metric's forecast at the horizon.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForecastStatus {
    pub metric: String,
    /// Seconds ahead of the decision.
    pub horizon_seconds: f64,
    pub value: f64,
}

/// A policy component in use.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoadedPolicy {
    /// `predictor`, `decider` or `shadow`.
    pub role: String,
    /// Where it came from.
    pub source: String,
    /// `sha256:…` of the component.
    pub digest: String,
}

/// A status condition in the Kubernetes convention.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    pub reason: String,
    pub message: String,
    /// RFC 3339.
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> WasmAutoscalerSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    const BASE: &str = r#"
scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
maxReplicas: 10
metrics: [{name: rps, prometheus: {address: "http://p:9090", query: "up"}}]
decider: {bundled: forecast, config: {metric: rps, capacityPerPod: 10}}
"#;

    #[test]
    fn defaults_fill_in() {
        let s = spec(BASE);
        assert_eq!(s.min_replicas, 1);
        let c = s.validate().unwrap();
        assert_eq!(c.interval, Duration::from_secs(15));
        assert_eq!(c.warmup, Duration::from_secs(60));
        assert_eq!(
            s.decider.config_text(),
            r#"{"capacityPerPod":10,"metric":"rps"}"#
        );
    }

    #[test]
    fn bad_specs_name_the_field() {
        let cases = [
            (
                "minReplicas: 11",
                "minReplicas (11) must not exceed maxReplicas (10)",
            ),
            ("interval: soon", "interval: `soon`"),
            ("interval: 10ms", "interval must be at least 1s"),
            (
                "predictor: {bundled: a, file: b}",
                "predictor: set exactly one",
            ),
            ("shadow: {}", "shadow: set exactly one"),
            ("behavior: {fallback: {afterFailures: 0}}", "afterFailures"),
        ];
        for (extra, want) in cases {
            let err = spec(&format!("{BASE}{extra}\n")).validate().unwrap_err();
            assert!(err.contains(want), "{extra}: {err}");
        }
        let mut twice = spec(BASE);
        twice.metrics.push(twice.metrics[0].clone());
        assert!(twice.validate().unwrap_err().contains("used twice"));
        let mut pin = spec(BASE);
        pin.decider.sha256 = Some("ABC".into());
        assert!(pin.validate().unwrap_err().contains("sha256"));
    }

    /// What a tenant could write to reach past its namespace or make the
    /// operator spend without bound: each refused, naming the field.
    #[test]
    fn fields_a_tenant_could_abuse_are_bounded() {
        let metric = |m: &str| format!("metrics: [{{name: rps, {m}}}]\n");
        let cases = [
            (
                "scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: ../../kube-system/deployments/dns}".to_string(),
                "scaleTargetRef.name",
            ),
            (
                "decider: {configMapRef: {name: ../secrets/x, key: k}}".into(),
                "decider.configMapRef.name",
            ),
            (
                "decider: {configMapRef: {name: p, key: ../k}}".into(),
                "decider.configMapRef.key",
            ),
            (
                metric("prometheus: {address: \"http://p\", query: up, bearerTokenSecret: {name: \"a/b\", key: t}}"),
                "bearerTokenSecret.name",
            ),
            (
                metric("prometheus: {address: \"http://p\", query: up, bearerTokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token}"),
                "bearerTokenFile and caFile were removed",
            ),
            (
                metric("prometheus: {address: \"file:///etc/passwd\", query: up}"),
                "http or https URL",
            ),
            (
                metric("prometheus: {address: \"http://p\", query: up, timeout: 1h}"),
                "at most 30s",
            ),
            (
                metric("scrape: {port: 80, metric: m, path: \"@evil.example/x\"}"),
                "must start with `/`",
            ),
            (
                metric("scrape: {port: 80, metric: m, endpoints: [\"evil.example/x@10.0.0.1:80\"]}"),
                "no valid host",
            ),
            (
                "behavior: {scaleDown: {stabilizationSeconds: 31536000}}".into(),
                "at most 3600",
            ),
            (
                "behavior: {maxActions: {count: 1, windowSeconds: 31536000}}".into(),
                "windowSeconds ≤ 3600",
            ),
            (
                "behavior: {backoff: {initialSeconds: 0.000001, maxSeconds: 0.000001}}".into(),
                "0.05 ≤ initialSeconds",
            ),
            ("behavior: {backoff: {attempts: 1000000}}".into(), "1..=10"),
            // Every step kept is memory, every step backfilled a query.
            (
                "longHistory: {step: 1m, window: 840h}".into(),
                "50400 steps, more than 10080",
            ),
            (
                "longHistory: {step: 5s, window: 1h}".into(),
                "at least the interval (15s)",
            ),
            (
                "longHistory: {step: 48h, window: 840h}".into(),
                "at most 24h",
            ),
            (
                "longHistory: {step: 1h, window: 8760h}".into(),
                "at most 840h",
            ),
            (
                "longHistory: {step: 15500ms, window: 1h}".into(),
                "whole seconds",
            ),
        ];
        for (extra, want) in cases {
            let text = if extra.starts_with("metrics:")
                || extra.starts_with("decider:")
                || extra.starts_with("scaleTargetRef:")
            {
                let key = extra.split(':').next().unwrap();
                let kept: String = BASE
                    .lines()
                    .filter(|l| !l.starts_with(key))
                    .map(|l| format!("{l}\n"))
                    .collect();
                format!("{kept}{extra}\n")
            } else {
                format!("{BASE}{extra}\n")
            };
            let err = spec(&text).validate().unwrap_err();
            assert!(err.contains(want), "{extra}: {err}");
        }
        let mut many = spec(BASE);
        many.metrics = (0..17)
            .map(|i| MetricSpec {
                name: format!("m{i}"),
                ..many.metrics[0].clone()
            })
            .collect();
        assert!(many.validate().unwrap_err().contains("at most 16 metrics"));
    }

    #[test]
    fn a_long_history_is_filled_from_prometheus_metrics_only() {
        let text = format!(
            "{}metrics: [{{name: rps, prometheus: {{address: \"http://p\", query: up}}}}, {{name: q, scrape: {{port: 80, metric: q}}}}]\nlongHistory: {{step: 5m, window: 168h}}\n",
            BASE.lines()
                .filter(|l| !l.starts_with("metrics:"))
                .map(|l| format!("{l}\n"))
                .collect::<String>()
        );
        let long = spec(&text).validate().unwrap().long_history.unwrap();
        assert_eq!(
            (long.step_ms, long.window_ms, long.points()),
            (300_000, 604_800_000, 2016)
        );
        assert_eq!(long.filled, ["rps"]);
        assert_eq!(spec(BASE).validate().unwrap().long_history, None);
    }

    #[test]
    fn every_example_autoscaler_is_valid() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let found = read_manifests(std::slice::from_ref(&path)).unwrap();
            for (_, a) in found.autoscalers {
                a.spec
                    .validate()
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                seen += 1;
            }
        }
        assert!(seen >= 4, "{seen} examples");
    }

    #[test]
    fn scale_to_zero_needs_a_metric_that_exists_at_zero() {
        let zero = |metrics: &str| {
            let text = BASE.replace(
                "metrics: [{name: rps, prometheus: {address: \"http://p:9090\", query: \"up\"}}]",
                metrics,
            );
            spec(&format!("{text}minReplicas: 0\nidleAfter: 2m\n")).validate()
        };
        let err =
            zero("metrics: [{name: rps, prometheus: {address: \"http://p:9090\", query: up}}]")
                .unwrap_err();
        assert!(err.contains("nothing could wake"), "{err}");
        let err =
            zero("metrics: [{name: rps, activationThreshold: 1, scrape: {port: 80, metric: rps}}]")
                .unwrap_err();
        assert!(err.contains("do not exist at zero"), "{err}");
        let checked = zero(
            "metrics: [{name: rps, activationThreshold: 1, prometheus: {address: \"http://p:9090\", query: up}}]",
        )
        .unwrap();
        assert_eq!(checked.zero.activation, [("rps".to_string(), 1.0)]);
        assert_eq!(checked.zero.idle_ms, 120_000);
        // With a minimum above zero, thresholds wait unused.
        assert!(!spec(BASE).validate().unwrap().zero.enabled());
    }

    #[test]
    fn unknown_behavior_fields_are_refused() {
        let err = serde_yaml::from_str::<WasmAutoscalerSpec>(&format!(
            "{BASE}behavior: {{scaleUp: {{stabilisationSeconds: 3}}}}\n"
        ))
        .unwrap_err();
        assert!(err.to_string().contains("stabilisationSeconds"), "{err}");
    }
}
