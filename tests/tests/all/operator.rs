//! The operator against the in-process Kubernetes API test server, through
//! the real kube-rs client: scaling, retries under injected faults, watch
//! loss, leader hand-over, HPA refusal, dry-run, shadow and policy changes.
//!
//! Every test scales a Deployment whose pods serve a real exposition
//! endpoint on loopback (the test's exporter); the bundled `forecast`
//! decider sizes it at `ceil(rps / 10)`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::Method;
use serde_json::{json, Value};
use wasm_autoscaler::boundary::egress::EgressPolicy;
use wasm_autoscaler::boundary::files::FileRoots;
use wasm_autoscaler::bundled;
use wasm_autoscaler::operator::{self, telemetry::Metrics, LeaseSettings, Settings};
use wasm_autoscaler::runtime::{Runtime, RuntimeConfig};
use wasm_autoscaler_tests::apiserver::{rbac, ApiServer};
pub(crate) use wasm_autoscaler_tests::fixtures::eventually;
use wasm_autoscaler_tests::fixtures::{base64, variant};

pub(crate) const NS: &str = "default";
/// The operator's own namespace (its Lease lives there).
pub(crate) const OPERATOR_NS: &str = "wasm-autoscaler";

/// A pod metrics endpoint whose `rps` gauge the test sets.
pub(crate) struct Exporter {
    rps: Arc<AtomicU64>,
    pub(crate) port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Exporter {
    pub(crate) async fn start(rps: f64) -> Self {
        Self::start_on("127.0.0.1", rps).await
    }

    /// An exporter on another loopback address (all of 127.0.0.0/8 is this machine).
    pub(crate) async fn start_on(ip: &str, rps: f64) -> Self {
        let value = Arc::new(AtomicU64::new(rps.to_bits()));
        let served = Arc::clone(&value);
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let v = f64::from_bits(served.load(Ordering::Relaxed));
                async move { format!("# TYPE rps gauge\nrps {v}\n") }
            }),
        );
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Exporter {
            rps: value,
            port,
            task,
        }
    }

    pub(crate) fn set(&self, rps: f64) {
        self.rps.store(rps.to_bits(), Ordering::Relaxed);
    }
}

/// One operator replica running in this process.
pub(crate) struct Operator {
    pub(crate) task: tokio::task::JoinHandle<()>,
    pub(crate) metrics: Arc<Metrics>,
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) fn runtime() -> Arc<Runtime> {
    Arc::new(Runtime::new(RuntimeConfig::default()).unwrap())
}

pub(crate) fn start_operator(server: &ApiServer, identity: &str, lease: bool) -> Operator {
    let mut settings = Settings::new(identity);
    settings.lease = lease.then(|| LeaseSettings {
        namespace: OPERATOR_NS.into(),
        name: "wasm-autoscaler-leader".into(),
        identity: identity.into(),
        duration: Duration::from_secs(2),
        renew_every: Duration::from_millis(400),
        shards: 1,
    });
    settings.metric_timeout = Duration::from_secs(2);
    // The tests' exporters and Prometheus listen on loopback.
    settings.egress = loopback_egress();
    start_with(server, settings)
}

/// One replica without leader election that writes the status at every tick, for
/// tests that read what each tick decided from the status writes.
pub(crate) fn start_operator_writing_every_tick(server: &ApiServer) -> Operator {
    let mut settings = Settings::new("solo");
    settings.metric_timeout = Duration::from_secs(2);
    settings.egress = loopback_egress();
    settings.status_refresh = Duration::ZERO;
    start_with(server, settings)
}

/// One replica that may read `file` sources inside `root` (what `--allow-file-root` sets).
pub(crate) fn start_operator_reading(server: &ApiServer, root: &std::path::Path) -> Operator {
    let mut settings = Settings::new("solo");
    settings.metric_timeout = Duration::from_secs(2);
    settings.egress = loopback_egress();
    settings.file_roots = FileRoots::new([root.to_path_buf()]).unwrap();
    start_with(server, settings)
}

/// Egress rules that let metric requests reach loopback, as the tests' servers are there.
pub(crate) fn loopback_egress() -> EgressPolicy {
    EgressPolicy::new(&["127.0.0.0/8".parse().unwrap()], &[]).unwrap()
}

/// One operator replica with `settings`, against `server`.
pub(crate) fn start_with(server: &ApiServer, settings: Settings) -> Operator {
    let metrics = Arc::new(Metrics::default());
    let task = tokio::spawn(operator::run(
        server.client(),
        runtime(),
        settings,
        Arc::clone(&metrics),
        futures::future::pending(),
    ));
    Operator { task, metrics }
}

/// What `deploy/operator/rbac.yaml` grants the operator, plus `more` manifests applied in `namespace`.
pub(crate) fn deployed_rbac_with(more: &[&str], namespace: &str) -> Vec<rbac::Grant> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/operator/rbac.yaml");
    let deployed = std::fs::read_to_string(path).unwrap();
    let mut grants = rbac::operator_grants(&[&deployed]);
    grants.extend(rbac::grants(more, namespace, rbac::OPERATOR));
    grants
}

pub(crate) fn deployed_rbac() -> Vec<rbac::Grant> {
    deployed_rbac_with(&[], NS)
}

pub(crate) fn deployment(name: &str, replicas: u32) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}}},
    })
}

pub(crate) fn sizing(capacity: f64) -> Value {
    json!({"metric": "rps", "capacityPerPod": capacity, "targetUtilization": 1.0, "scaleDownTolerance": 0.0})
}

/// An autoscaler for Deployment `target`, evaluated every second, scaling freely.
pub(crate) fn autoscaler(name: &str, target: &str, port: u16, extra: Value) -> Value {
    let mut spec = json!({
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
        "minReplicas": 1, "maxReplicas": 10, "interval": "1s", "warmup": "0s",
        "metrics": [{"name": "rps", "scrape": {"port": port, "metric": "rps", "aggregation": "avg"}}],
        "decider": {"bundled": "forecast", "config": sizing(10.0)},
        "behavior": {"scaleUp": {}, "scaleDown": {}},
    });
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    json!({
        "apiVersion": "wasmautoscaler.dev/v1alpha1", "kind": "WasmAutoscaler",
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    })
}

pub(crate) fn replicas(server: &ApiServer, name: &str) -> u64 {
    server.get("Deployment", NS, name).unwrap()["spec"]["replicas"]
        .as_u64()
        .unwrap()
}

pub(crate) fn status(server: &ApiServer, name: &str) -> Value {
    server
        .get("WasmAutoscaler", NS, name)
        .map(|o| o["status"].clone())
        .unwrap_or(Value::Null)
}

/// The statuses the server accepted for autoscaler `namespace/name`, oldest
/// first, each with when it arrived: what a later write replaced is still here.
pub(crate) fn status_writes(
    server: &ApiServer,
    namespace: &str,
    name: &str,
) -> Vec<(Instant, Value)> {
    server
        .seen_matching(
            &Method::PATCH,
            &format!("/namespaces/{namespace}/wasmautoscalers/{name}/status"),
        )
        .into_iter()
        .filter(|s| s.status == 200)
        .filter_map(|s| {
            let body: Value = serde_json::from_str(&s.body).ok()?;
            Some((s.at, body["status"].clone()))
        })
        .collect()
}

pub(crate) fn condition(
    server: &ApiServer,
    name: &str,
    type_: &str,
) -> Option<(String, String, String)> {
    server.condition(NS, name, type_)
}

pub(crate) fn event_reasons(server: &ApiServer) -> Vec<String> {
    server
        .list("Event", NS)
        .iter()
        .filter_map(|e| e["reason"].as_str().map(str::to_string))
        .collect()
}

/// Successful scale-subresource writes.
pub(crate) fn scale_writes(server: &ApiServer, name: &str) -> Vec<u64> {
    server
        .seen_matching(&Method::PATCH, &format!("/deployments/{name}/scale"))
        .into_iter()
        .filter(|s| s.status == 200)
        .map(|s| {
            serde_json::from_str::<Value>(&s.body).unwrap()["spec"]["replicas"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// Requests of `method` to paths containing `path` since `since`.
fn requests_since(server: &ApiServer, method: &Method, path: &str, since: Instant) -> usize {
    server
        .seen_matching(method, path)
        .iter()
        .filter(|s| s.at >= since)
        .count()
}

/// LISTs of pods by label selector (a tick's own look-up) since `since`.
fn pod_lists_since(server: &ApiServer, since: Instant) -> usize {
    server
        .seen_matching(&Method::GET, "/pods")
        .iter()
        .filter(|s| {
            s.at >= since && s.query.contains("labelSelector") && !s.query.contains("watch")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_come_from_one_watch_and_from_a_list_only_without_it() {
    for watch_granted in [true, false] {
        let server = ApiServer::start().await;
        let exporter = Exporter::start(40.0).await;
        server.create(deployment("web", 1));
        server.create(autoscaler("web", "web", exporter.port, json!({})));
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/operator/rbac.yaml");
        let mut deployed = std::fs::read_to_string(path).unwrap();
        if !watch_granted {
            let granted = "resources: [\"pods\"]\n    verbs: [\"list\", \"watch\"]";
            assert!(
                deployed.contains(granted),
                "the deployed RBAC grants a pod watch"
            );
            deployed = deployed.replace(granted, "resources: [\"pods\"]\n    verbs: [\"list\"]");
        }
        server.enforce_rbac(rbac::operator_grants(&[&deployed]));
        let op = start_operator(&server, "solo", false);
        // The metric is averaged over the pods' own endpoints, so a scale-up needs the pods.
        eventually("scale-up to 4", WAIT, || {
            (replicas(&server, "web") == 4).then_some(())
        })
        .await;
        exporter.set(15.0);
        eventually("scale-down to 2 over the four pods", WAIT, || {
            (replicas(&server, "web") == 2).then_some(())
        })
        .await;
        let since = Instant::now();
        let before = ticks(&op);
        eventually("three more ticks", WAIT, || {
            (ticks(&op) >= before + 3).then_some(())
        })
        .await;
        let lists = pod_lists_since(&server, since);
        if watch_granted {
            assert_eq!(lists, 0, "pod LISTs over three ticks with the watch");
        } else {
            assert!(
                lists >= 3,
                "{lists} pod LISTs over three ticks without the watch"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_is_written_when_the_decision_changes_not_at_every_tick() {
    let server = ApiServer::start().await;
    let exporter = Exporter::start(40.0).await;
    server.create(deployment("web", 1));
    server.create(autoscaler("web", "web", exporter.port, json!({})));
    let op = start_operator(&server, "solo", false);
    eventually("the status of the scale-up to 4", WAIT, || {
        (status(&server, "web")["currentReplicas"] == 4).then_some(())
    })
    .await;

    // The decision (4) stays the same. Five ticks are over once the sixth has begun.
    let steady = Instant::now();
    let before = ticks(&op);
    eventually("five ticks", WAIT, || {
        (ticks(&op) >= before + 6).then_some(())
    })
    .await;
    let writes = requests_since(
        &server,
        &Method::PATCH,
        "/wasmautoscalers/web/status",
        steady,
    );
    assert_eq!(
        writes, 0,
        "status writes over five ticks of an unchanged decision"
    );
    let page = op.metrics.encode();
    assert!(
        metric_value(
            &page,
            "wasm_autoscaler_status_writes_total{outcome=\"unchanged\"}"
        ) >= 5.0,
        "{page}"
    );

    // A new decision is written at its tick.
    exporter.set(15.0);
    eventually("the status of the scale-down to 2", WAIT, || {
        (status(&server, "web")["desiredReplicas"] == 2).then_some(())
    })
    .await;
    assert!(
        requests_since(
            &server,
            &Method::PATCH,
            "/wasmautoscalers/web/status",
            steady
        ) >= 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scales_up_and_down_as_the_policy_decides_and_reports_it() {
    let server = ApiServer::start().await;
    let exporter = Exporter::start(40.0).await;
    server.create(deployment("web", 1));
    server.create(autoscaler("web", "web", exporter.port, json!({})));
    // The operator gets exactly what deploy/operator/rbac.yaml grants it.
    server.enforce_rbac(deployed_rbac());
    let op = start_operator(&server, "solo", true);

    eventually("scale-up to 4", WAIT, || {
        (replicas(&server, "web") == 4).then_some(())
    })
    .await;
    exporter.set(15.0);
    eventually("scale-down to 2", WAIT, || {
        (replicas(&server, "web") == 2).then_some(())
    })
    .await;
    assert_eq!(
        scale_writes(&server, "web"),
        [4, 2],
        "one write per change, nothing else"
    );

    let s = eventually("status of the scale-down", WAIT, || {
        let s = status(&server, "web");
        (s["currentReplicas"] == 2).then_some(s)
    })
    .await;
    assert_eq!(s["desiredReplicas"], 2);
    assert!(s["lastScaleTime"].is_string());
    assert!(
        s["lastDecision"]["reason"]
            .as_str()
            .unwrap()
            .contains("rps"),
        "{s}"
    );
    assert_eq!(s["policies"][0]["role"], "decider");
    assert_eq!(s["policies"][0]["source"], "bundled:forecast");
    assert!(s["policies"][0]["digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert_eq!(s["observedGeneration"], 1);
    for (type_, want) in [
        ("Ready", "True"),
        ("PolicyLoaded", "True"),
        ("MetricsAvailable", "True"),
    ] {
        let (status, reason, _) = condition(&server, "web", type_).unwrap();
        assert_eq!(status, want, "{type_} ({reason})");
    }
    let forbidden: Vec<_> = server
        .seen()
        .into_iter()
        .filter(|s| s.status == 403)
        .collect();
    assert!(
        forbidden.is_empty(),
        "deploy/operator/rbac.yaml lacks: {forbidden:#?}"
    );
    let reasons = event_reasons(&server);
    for want in ["PolicyLoaded", "ScaledUp", "ScaledDown"] {
        assert!(
            reasons.iter().any(|r| r == want),
            "no {want} event in {reasons:?}"
        );
    }

    // The operator's own metrics, as Prometheus would scrape them.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let health = Arc::new(operator::telemetry::Health::default());
    let serving = tokio::spawn(operator::telemetry::serve(
        listener,
        Arc::clone(&op.metrics),
        health,
    ));
    let page = http_get(addr, "/metrics").await;
    serving.abort();
    assert!(page.contains("application/openmetrics-text"), "{page}");
    let evaluations = metric_value(&page, "wasm_autoscaler_policy_evaluation_seconds_count");
    assert!(
        evaluations >= 2.0,
        "decision latency histogram not populated:\n{page}"
    );
    assert_eq!(
        metric_value(
            &page,
            "wasm_autoscaler_scale_actions_total{direction=\"up\"}"
        ),
        1.0
    );
    assert_eq!(
        metric_value(
            &page,
            "wasm_autoscaler_scale_actions_total{direction=\"down\"}"
        ),
        1.0
    );
}

pub(crate) async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

/// Ticks that reached the target so far: each needs the target's scale once, read or reused.
fn ticks(op: &Operator) -> u64 {
    let page = op.metrics.encode();
    ["read", "reused"]
        .iter()
        .map(|outcome| {
            let series = format!("wasm_autoscaler_scale_reads_total{{outcome=\"{outcome}\"}}");
            page.lines()
                .find_map(|l| l.strip_prefix(series.as_str()))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0) as u64
        })
        .sum()
}

/// Reads of `web`'s scale over `n` ticks after its first decision (4 replicas).
async fn scale_reads_over_ticks(server: &ApiServer, op: &Operator, n: u64) -> usize {
    eventually("a first decision", WAIT, || {
        (status(server, "web")["desiredReplicas"] == 4).then_some(())
    })
    .await;
    let steady = Instant::now();
    let before = ticks(op);
    eventually("more ticks", WAIT, || {
        (ticks(op) >= before + n).then_some(())
    })
    .await;
    requests_since(server, &Method::GET, "/deployments/web/scale", steady)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_targets_scale_is_reused_and_a_change_by_someone_else_is_read_at_once() {
    let server = ApiServer::start().await;
    let exporter = Exporter::start(40.0).await;
    server.create(deployment("web", 4));
    server.create(autoscaler("web", "web", exporter.port, json!({})));
    // A kind without a scale subresource, which the operator may list: never watched for it.
    server.create(autoscaler(
        "odd",
        "odd",
        exporter.port,
        json!({"scaleTargetRef": {"apiVersion": "v1", "kind": "ConfigMap", "name": "odd"}}),
    ));
    server.enforce_rbac(deployed_rbac());
    let op = start_operator(&server, "solo", false);
    let reads = scale_reads_over_ticks(&server, &op, 5).await;
    assert!(
        reads <= 1,
        "{reads} scale reads over five ticks of an unchanged Deployment"
    );
    let page = op.metrics.encode();
    assert!(
        metric_value(
            &page,
            "wasm_autoscaler_scale_reads_total{outcome=\"reused\"}"
        ) >= 4.0,
        "{page}"
    );

    // Someone scales it down by hand: the next tick reads the new scale and
    // brings it back, which a tick that trusted its old read (4) would not.
    server.patch("Deployment", NS, "web", json!({"spec": {"replicas": 2}}));
    eventually("back to 4", WAIT, || {
        (scale_writes(&server, "web") == [4]).then_some(())
    })
    .await;
    assert_eq!(replicas(&server, "web"), 4);

    let forbidden: Vec<_> = server
        .seen()
        .into_iter()
        // Reading the scale of a ConfigMap is refused, as it should be.
        .filter(|s| s.status == 403 && !s.path.ends_with("/configmaps/odd/scale"))
        .collect();
    assert!(
        forbidden.is_empty(),
        "deploy/operator/rbac.yaml lacks: {forbidden:#?}"
    );
    let (ready, reason, _) = condition(&server, "odd", "Ready").unwrap();
    assert_eq!(
        (ready.as_str(), reason.as_str()),
        ("False", "TargetUnavailable")
    );
    // Besides the labelled policy ConfigMaps' versions, which every operator watches.
    let metadata_watches: Vec<String> = server
        .seen()
        .into_iter()
        .filter(|s| s.metadata_only && s.query.contains("watch=true"))
        .filter(|s| {
            !s.query
                .contains("labelSelector=wasmautoscaler.dev%2Fpolicy")
        })
        .map(|s| s.path)
        .collect();
    assert!(
        metadata_watches.iter().all(|p| p.ends_with("/deployments")),
        "{metadata_watches:?}"
    );
    assert!(!metadata_watches.is_empty(), "the Deployments are watched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_watch_of_the_target_kind_the_scale_is_read_every_tick() {
    let server = ApiServer::start().await;
    let exporter = Exporter::start(40.0).await;
    server.create(deployment("web", 4));
    server.create(autoscaler("web", "web", exporter.port, json!({})));
    // The deployed RBAC less list and watch on Deployments.
    let grants = deployed_rbac()
        .into_iter()
        .map(|mut g| {
            if g.rule.verbs.iter().any(|v| v == "watch") {
                g.rule.resources.retain(|r| r != "deployments");
            }
            g
        })
        .collect();
    server.enforce_rbac(grants);
    let op = start_operator(&server, "solo", false);
    let reads = scale_reads_over_ticks(&server, &op, 4).await;
    assert!(
        reads >= 3,
        "{reads} scale reads over four ticks without a watch"
    );
    assert_eq!(status(&server, "web")["conditions"][0]["status"], "True");
}

pub(crate) fn metric_value(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("no `{series}` in the metrics page:\n{page}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_and_server_errors_are_retried_without_double_scaling() {
    let server = ApiServer::start().await;
    let exporter = Exporter::start(40.0).await;
    server.create(deployment("web", 1));
    server.fail(Method::PATCH, "/deployments/web/scale", 409, 1);
    server.fail(Method::PATCH, "/deployments/web/scale", 500, 1);
    server.create(autoscaler("web", "web", exporter.port, json!({})));
    let _op = start_operator(&server, "solo", false);

    eventually("scale-up to 4 through the faults", WAIT, || {
        (replicas(&server, "web") == 4).then_some(())
    })
    .await;
    let attempts: Vec<u16> = server
        .seen_matching(&Method::PATCH, "/deployments/web/scale")
        .iter()
        .map(|s| s.status)
        .collect();
    assert_eq!(
        attempts,
        [409, 500, 200],
        "retried twice, then applied once"
    );
    // A few more ticks at the same load: nothing more is written.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(scale_writes(&server, "web"), [4]);
    assert_eq!(replicas(&server, "web"), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_scale_request_is_reported_and_not_counted_as_done() {
    let server = ApiServer::start().await;
    let exporter = Exporter::start(40.0).await;
    server.create(deployment("web", 1));
    // More failures than one tick's attempts. (500: the kube client itself
    // already retries 429, 503 and 504.)
    server.fail(Method::PATCH, "/deployments/web/scale", 500, 4);
    server.create(autoscaler("web", "web", exporter.port, json!({})));
    let _op = start_operator(&server, "solo", false);
    eventually("a ScaleFailed condition", WAIT, || {
        condition(&server, "web", "Ready").filter(|c| c.1 == "ScaleFailed")
    })
    .await;
    assert!(event_reasons(&server).iter().any(|r| r == "ScaleFailed"));
    // The next tick tries again and succeeds.
    eventually("scale-up to 4 after the outage", WAIT, || {
        (replicas(&server, "web") == 4).then_some(())
    })
    .await;
    assert_eq!(scale_writes(&server, "web"), [4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_and_expired_watches_resume() {
    let server = ApiServer::start().await;
    let exporter = Exporter::start(40.0).await;
    server.create(deployment("a", 1));
    server.create(deployment("b", 1));
    server.create(autoscaler("a", "a", exporter.port, json!({})));
    let _op = start_operator(&server, "solo", false);
    eventually("a scaled", WAIT, || {
        (replicas(&server, "a") == 4).then_some(())
    })
    .await;

    server.drop_watches();
    server.create(autoscaler(
        "b",
        "b",
        exporter.port,
        json!({"decider": {"bundled": "forecast", "config": sizing(20.0)}}),
    ));
    eventually("b scaled after a dropped watch", WAIT, || {
        (replicas(&server, "b") == 2).then_some(())
    })
    .await;

    // History compacted: resuming from the last version is 410 Gone; the client relists.
    server.compact();
    // Let the closed watches notice before the next change, so it cannot
    // reach them on the old connection.
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.patch(
        "WasmAutoscaler",
        NS,
        "b",
        json!({"spec": {"decider": {"config": sizing(5.0)}}}),
    );
    eventually("b rescaled after 410 Gone", WAIT, || {
        (replicas(&server, "b") == 8).then_some(())
    })
    .await;
    let relisted = server
        .seen()
        .iter()
        .filter(|s| s.path.ends_with("/wasmautoscalers") && !s.query.contains("watch"))
        .count();
    let requests: Vec<String> = server
        .seen()
        .iter()
        .filter(|s| s.path.ends_with("/wasmautoscalers"))
        .map(|s| format!("{} {}?{} → {}", s.method, s.path, s.query, s.status))
        .collect();
    assert!(
        relisted >= 2,
        "the watcher should have relisted after 410: {requests:#?}"
    );
    eventually("status of generation 2", WAIT, || {
        (status(&server, "b")["observedGeneration"] == 2).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_an_hpa_also_scales_is_refused() {
    let server = ApiServer::start().await;
    let exporter = Exporter::start(40.0).await;
    server.create(deployment("web", 1));
    server.create(json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "legacy", "namespace": NS},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "minReplicas": 1, "maxReplicas": 5},
    }));
    server.create(autoscaler("web", "web", exporter.port, json!({})));
    let _op = start_operator(&server, "solo", false);
    let (status, _, message) = eventually("the ConflictingHPA condition", WAIT, || {
        condition(&server, "web", "Ready").filter(|c| c.1 == "ConflictingHPA")
    })
    .await;
    assert_eq!(status, "False");
    assert!(message.contains("legacy"), "{message}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        server.seen_matching(&Method::PATCH, "/scale").is_empty(),
        "never fights the HPA"
    );
    assert_eq!(replicas(&server, "web"), 1);

    // Once the HPA is gone, the autoscaler takes over.
    server.delete("HorizontalPodAutoscaler", NS, "legacy");
    eventually("scale-up once the HPA is gone", WAIT, || {
        (replicas(&server, "web") == 4).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_pause_and_shadow_never_scale() {
    let server = ApiServer::start().await;
    let exporter = Exporter::start(40.0).await;
    for name in ["dry", "paused", "shadowed"] {
        server.create(deployment(name, 1));
    }
    server.create(autoscaler(
        "dry",
        "dry",
        exporter.port,
        json!({"dryRun": true}),
    ));
    let mut paused = autoscaler("paused", "paused", exporter.port, json!({}));
    paused["metadata"]["annotations"] = json!({"wasmautoscaler.dev/paused": "true"});
    server.create(paused);
    // The active decider holds at 1 (capacity 100); the shadow would go to 8.
    server.create(autoscaler(
        "shadowed",
        "shadowed",
        exporter.port,
        json!({"decider": {"bundled": "forecast", "config": sizing(100.0)},
               "shadow": {"bundled": "forecast", "config": sizing(5.0)}}),
    ));
    let op = start_operator(&server, "solo", false);

    let s = eventually("the dry-run decision", WAIT, || {
        let s = status(&server, "dry");
        (s["desiredReplicas"] == 4).then_some(s)
    })
    .await;
    assert!(
        s["lastDecision"]["limits"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "DryRun"),
        "{s}"
    );
    assert_eq!(condition(&server, "dry", "Ready").unwrap().1, "DryRun");
    eventually("the paused decision", WAIT, || {
        condition(&server, "paused", "Ready").filter(|c| c.1 == "Paused")
    })
    .await;
    let s = eventually("the shadow decision", WAIT, || {
        let s = status(&server, "shadowed");
        (s["shadowDecision"]["desiredReplicas"] == 8).then_some(s)
    })
    .await;
    assert_eq!(s["desiredReplicas"], 1);
    assert_eq!(s["policies"].as_array().unwrap().len(), 2, "{s}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        server.seen_matching(&Method::PATCH, "/scale").is_empty(),
        "nothing was scaled"
    );
    for name in ["dry", "paused", "shadowed"] {
        assert_eq!(replicas(&server, name), 1, "{name}");
    }
    let page = op.metrics.encode();
    assert!(
        page.contains("wasm_autoscaler_shadow_decisions_total{outcome=\"scale_up\"}"),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_leader_is_replaced_and_its_successor_does_not_flap() {
    let server = ApiServer::start().await;
    let exporter = Exporter::start(40.0).await;
    server.create(deployment("web", 1));
    let mut spec = autoscaler("web", "web", exporter.port, json!({}));
    spec["spec"]["behavior"]["scaleDown"] = json!({"stabilizationSeconds": 30});
    server.create(spec);
    let mut a = Some(start_operator(&server, "replica-a", true));
    let mut b = Some(start_operator(&server, "replica-b", true));

    let holder = |server: &ApiServer| {
        server
            .get("Lease", OPERATOR_NS, "wasm-autoscaler-leader")
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
    };
    let first = eventually("a leader", WAIT, || holder(&server)).await;
    eventually("scale-up to 4", WAIT, || {
        (replicas(&server, "web") == 4).then_some(())
    })
    .await;
    // The event follows the scale PATCH, so it may not be there yet.
    let scaled_by = eventually("the scale-up's event", WAIT, || {
        Some(scaled_up_by(&server)).filter(|by| !by.is_empty())
    })
    .await;
    assert_eq!(
        scaled_by,
        std::slice::from_ref(&first),
        "only the leader scales"
    );

    // The leader dies without releasing the lease; the load dips at the same time.
    exporter.set(15.0);
    let killed = Instant::now();
    if first == "replica-a" {
        a.take()
    } else {
        b.take()
    };
    let second = eventually("a new leader", Duration::from_secs(10), || {
        holder(&server).filter(|h| *h != first)
    })
    .await;
    let handover = killed.elapsed();
    assert!(
        handover < Duration::from_secs(6),
        "hand-over took {handover:?} with a 2 s lease"
    );
    // The successor respects the scale-down window the old leader was in: no
    // immediate drop to 2 just because its memory is fresh.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        scale_writes(&server, "web"),
        [4],
        "the new leader must not flap the target"
    );
    // It does scale when load rises again.
    exporter.set(60.0);
    eventually("the new leader scales up", WAIT, || {
        (replicas(&server, "web") == 6).then_some(())
    })
    .await;
    eventually("the new leader's scale-up event", WAIT, || {
        (scaled_up_by(&server).last() == Some(&second)).then_some(())
    })
    .await;
    drop((a, b));
}

/// The replicas that reported each ScaledUp event, oldest first (the events'
/// names end in their creation time).
fn scaled_up_by(server: &ApiServer) -> Vec<String> {
    server
        .list("Event", NS)
        .iter()
        .filter(|e| e["reason"] == "ScaledUp")
        .map(|e| e["reportingInstance"].as_str().unwrap().to_string())
        .collect()
}

pub(crate) fn policy_map(bytes: &[u8]) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "policies", "namespace": NS, "labels": {"wasmautoscaler.dev/policy": "true"}},
        "binaryData": {"decider.wasm": base64(bytes)},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_configmap_policy_is_picked_up_and_a_broken_one_refused() {
    let server = ApiServer::start().await;
    let exporter = Exporter::start(40.0).await;
    let v1 = variant(bundled::FORECAST, "v1");
    let _op = scaling_with_a_configmap_policy(&server, exporter.port, policy_map(&v1)).await;
    let digest = |server: &ApiServer| {
        status(server, "web")["policies"][0]["digest"]
            .as_str()
            .map(str::to_string)
    };
    let d1 = digest(&server).unwrap();
    assert!(d1.ends_with(&wasm_autoscaler::runtime::Digest::of(&v1).hex()));

    // A new version of the same policy.
    let v2 = variant(bundled::FORECAST, "v2");
    server.patch(
        "ConfigMap",
        NS,
        "policies",
        json!({"binaryData": {"decider.wasm": base64(&v2)}}),
    );
    eventually("the new digest in status", WAIT, || {
        digest(&server).filter(|d| d.ends_with(&wasm_autoscaler::runtime::Digest::of(&v2).hex()))
    })
    .await;

    // A predictor where a decider belongs: refused, and the last good version keeps serving.
    server.patch(
        "ConfigMap",
        NS,
        "policies",
        json!({"binaryData": {"decider.wasm": base64(bundled::EWMA_TREND)}}),
    );
    let (status_, reason, message) = eventually("PolicyLoaded=False", WAIT, || {
        condition(&server, "web", "PolicyLoaded").filter(|c| c.0 == "False")
    })
    .await;
    assert_eq!(reason, "LoadFailed");
    assert!(
        message.contains("predictor world") && message.contains("last good version"),
        "{status_}: {message}"
    );
    assert!(event_reasons(&server).iter().any(|r| r == "PolicyRejected"));
    exporter.set(60.0);
    eventually("still scaling on the last good version", WAIT, || {
        (replicas(&server, "web") == 6).then_some(())
    })
    .await;
}

/// A burst of reads through the operator's API client never has more than its
/// bound in flight; the same burst through an unbounded client does, so the
/// server can tell the two apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_client_bounds_the_requests_in_flight() {
    use k8s_openapi::api::apps::v1::Deployment;
    let server = ApiServer::start().await;
    for i in 0..32 {
        server.create(deployment(&format!("d{i}"), 1));
    }
    server.delay_requests(Duration::from_millis(50));
    let burst = |client: kube::Client| async move {
        let api: kube::Api<Deployment> = kube::Api::namespaced(client, NS);
        let reads = (0..32).map(|i| {
            let api = api.clone();
            async move { api.get_scale(&format!("d{i}")).await }
        });
        for read in futures::future::join_all(reads).await {
            read.expect("every read is served, late or not");
        }
    };
    burst(operator::api_client::bounded(server.config(), 4).expect("a client")).await;
    let bounded = server.peak_in_flight();
    assert!(
        (1..=4).contains(&bounded),
        "{bounded} in flight with a bound of 4"
    );
    burst(server.client()).await;
    assert!(
        server.peak_in_flight() > 4,
        "the unbounded burst never had more than 4 in flight: the server cannot tell"
    );
}

/// Reads of ConfigMap `name` since `since`: (whole, metadata only).
fn map_reads_since(server: &ApiServer, name: &str, since: Instant) -> (usize, usize) {
    let reads: Vec<bool> = server
        .seen_matching(&Method::GET, &format!("/configmaps/{name}"))
        .iter()
        .filter(|s| s.at >= since && s.status == 200)
        .map(|s| s.metadata_only)
        .collect();
    let metadata = reads.iter().filter(|m| **m).count();
    (reads.len() - metadata, metadata)
}

/// Creates ConfigMap `map` (holding a decider) and autoscaler `web` deciding
/// through it, starts an operator and waits for the first scale-up and the
/// status that records it, which the tick writes after its scale PATCH.
async fn scaling_with_a_configmap_policy(server: &ApiServer, port: u16, map: Value) -> Operator {
    let name = map["metadata"]["name"].as_str().unwrap().to_string();
    server.create(deployment("web", 1));
    server.create(map);
    server.create(autoscaler(
        "web",
        "web",
        port,
        json!({"decider": {"configMapRef": {"name": name, "key": "decider.wasm"}, "config": sizing(10.0)}}),
    ));
    let op = start_operator(server, "solo", false);
    eventually("scale-up with the ConfigMap policy", WAIT, || {
        (replicas(server, "web") == 4).then_some(())
    })
    .await;
    eventually("the decider's digest in status", WAIT, || {
        policy_digest(server, "web", "decider")
    })
    .await;
    op
}

/// Puts a new version of the decider in ConfigMap `name`, waits for it to serve
/// `web`, and checks that the ConfigMap was read whole for it.
async fn swap_in_a_new_version(server: &ApiServer, name: &str) {
    let v2 = variant(bundled::FORECAST, "v2");
    let changed = Instant::now();
    server.patch(
        "ConfigMap",
        NS,
        name,
        json!({"binaryData": {"decider.wasm": base64(&v2)}}),
    );
    let v2_digest = wasm_autoscaler::runtime::Digest::of(&v2).hex();
    eventually("the new version serving", WAIT, || {
        status(server, "web")["policies"][0]["digest"]
            .as_str()
            .filter(|d| d.ends_with(&v2_digest))
            .map(str::to_string)
    })
    .await;
    assert!(map_reads_since(server, name, changed).0 >= 1);
}

/// Without the policy label no watch tells of a change, so each tick reads the
/// ConfigMap: its metadata only while its version stays, all of it once the
/// version moves, and the new contents serve from that tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_configmap_policy_costs_a_tick_its_metadata_only() {
    let server = ApiServer::start().await;
    let exporter = Exporter::start(40.0).await;
    let unlabelled = |bytes: &[u8]| {
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "quiet", "namespace": NS},
            "binaryData": {"decider.wasm": base64(bytes)},
        })
    };
    let v1 = variant(bundled::FORECAST, "v1");
    let _op = scaling_with_a_configmap_policy(&server, exporter.port, unlabelled(&v1)).await;

    let since = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (whole, metadata) = map_reads_since(&server, "quiet", since);
    assert_eq!(whole, 0, "an unchanged ConfigMap was read whole");
    assert!(
        metadata >= 2,
        "{metadata} metadata reads in 4 s of 1 s ticks"
    );

    swap_in_a_new_version(&server, "quiet").await;

    let since = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        map_reads_since(&server, "quiet", since).0,
        0,
        "the new version was read whole again"
    );
}

/// A labelled ConfigMap's watch tells of every change, so an unchanged policy
/// costs a tick no request at all; a change is still read and served at once,
/// and once the label is taken off, ticks ask the API server again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_labelled_configmap_policy_costs_a_tick_nothing() {
    let server = ApiServer::start().await;
    let exporter = Exporter::start(40.0).await;
    let v1 = variant(bundled::FORECAST, "v1");
    let _op = scaling_with_a_configmap_policy(&server, exporter.port, policy_map(&v1)).await;
    let since = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        map_reads_since(&server, "policies", since),
        (0, 0),
        "(whole, metadata-only) reads of a watched, unchanged ConfigMap in 4 s of 1 s ticks"
    );

    swap_in_a_new_version(&server, "policies").await;
    let since = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(map_reads_since(&server, "policies", since), (0, 0));

    // Unlabelled, the ConfigMap drops out of the watch: its changes would go
    // unseen, so each tick asks for its version again.
    server.patch(
        "ConfigMap",
        NS,
        "policies",
        json!({"metadata": {"labels": {"wasmautoscaler.dev/policy": null}}}),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let since = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (whole, metadata) = map_reads_since(&server, "policies", since);
    assert!(
        metadata >= 2,
        "{metadata} metadata reads in 4 s of 1 s ticks once unlabelled"
    );
    assert_eq!(whole, 0, "an unchanged ConfigMap was read whole");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_spec_is_reported_and_changes_nothing() {
    let server = ApiServer::start().await;
    let exporter = Exporter::start(40.0).await;
    server.create(deployment("web", 3));
    server.create(autoscaler(
        "web",
        "web",
        exporter.port,
        json!({"minReplicas": 5, "maxReplicas": 2}),
    ));
    let _op = start_operator(&server, "solo", false);
    let (status, _, message) = eventually("InvalidSpec", WAIT, || {
        condition(&server, "web", "Ready").filter(|c| c.1 == "InvalidSpec")
    })
    .await;
    assert_eq!(status, "False");
    assert!(
        message.contains("minReplicas (5) must not exceed maxReplicas (2)"),
        "{message}"
    );
    assert!(server.seen_matching(&Method::PATCH, "/scale").is_empty());
    assert_eq!(replicas(&server, "web"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_metric_is_reported_and_never_turned_into_a_scale() {
    let server = ApiServer::start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    server.create(deployment("web", 3));
    server.create(autoscaler("web", "web", closed, json!({})));
    let op = start_operator(&server, "solo", false);
    let (_, reason, message) = eventually("MetricsAvailable=False", WAIT, || {
        condition(&server, "web", "MetricsAvailable").filter(|c| c.0 == "False")
    })
    .await;
    assert_eq!(reason, "Unavailable");
    assert!(
        message.starts_with("rps: request to http://127.0.0.1:"),
        "{message}"
    );
    eventually("a MetricsUnavailable event", WAIT, || {
        event_reasons(&server)
            .iter()
            .any(|r| r == "MetricsUnavailable")
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        server.seen_matching(&Method::PATCH, "/scale").is_empty(),
        "held, not scaled"
    );
    assert_eq!(replicas(&server, "web"), 3);
    let s = status(&server, "web");
    assert!(
        s["lastDecision"]["limits"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "HeldOnFailure"),
        "{s}"
    );
    let page = op.metrics.encode();
    assert!(page.contains("wasm_autoscaler_metric_fetch_errors_total{namespace=\"default\",autoscaler=\"web\",metric=\"rps\",kind=\"request\"}"), "{page}");
    assert!(
        page.contains("wasm_autoscaler_decisions_total{outcome=\"failed\"}"),
        "{page}"
    );
}

pub(crate) fn digest_of(bytes: &[u8]) -> String {
    wasm_autoscaler::runtime::Digest::of(bytes).to_string()
}

pub(crate) fn decider_digest(server: &ApiServer, name: &str) -> Option<String> {
    policy_digest(server, name, "decider")
}

/// The digest of the policy serving `role` that status reports.
pub(crate) fn policy_digest(server: &ApiServer, name: &str, role: &str) -> Option<String> {
    status(server, name)["policies"]
        .as_array()?
        .iter()
        .find(|p| p["role"] == role)?["digest"]
        .as_str()
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_swapped_under_load_miss_no_tick_and_never_serve_a_broken_one() {
    const TARGETS: usize = 6;
    let server = ApiServer::start().await;
    let exporter = Exporter::start(40.0).await;
    let versions: Vec<Vec<u8>> = ["v1", "v2", "v3"]
        .iter()
        .map(|t| variant(bundled::FORECAST, t))
        .collect();
    let good: Vec<String> = versions.iter().map(|v| digest_of(v)).collect();
    server.create(policy_map(&versions[0]));
    for i in 0..TARGETS {
        let name = format!("t{i}");
        server.create(deployment(&name, 1));
        server.create(autoscaler(
            &name,
            &name,
            exporter.port,
            json!({"predictor": {"bundled": "ewma-trend"},
                   "decider": {"configMapRef": {"name": "policies", "key": "decider.wasm"}, "config": sizing(10.0)}}),
        ));
    }
    let op = start_operator(&server, "solo", false);
    for i in 0..TARGETS {
        let name = format!("t{i}");
        eventually("the first decision", WAIT, || {
            (decider_digest(&server, &name) == Some(good[0].clone())).then_some(())
        })
        .await;
    }
    let started = Instant::now();
    let broken = bundled::EWMA_TREND; // a predictor where a decider belongs
                                      // Each version for 2.5 s at least, and a good one until every target serves it
                                      // (a compile runs at low priority, so a busy machine can take longer).
    let steps: [(&[u8], Option<&String>); 3] = [
        (&versions[1], Some(&good[1])),
        (broken, None),
        (&versions[2], Some(&good[2])),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for (bytes, expected) in steps {
        server.patch(
            "ConfigMap",
            NS,
            "policies",
            json!({"binaryData": {"decider.wasm": base64(bytes)}}),
        );
        let patched = Instant::now();
        loop {
            let mut all_expected = true;
            for i in 0..TARGETS {
                let d = decider_digest(&server, &format!("t{i}"));
                all_expected &= expected.is_none_or(|e| d.as_ref() == Some(e));
                seen.extend(d);
            }
            let waited = patched.elapsed();
            if (all_expected && waited >= Duration::from_millis(2500)) || waited > WAIT {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    for d in &seen {
        assert!(
            good.contains(d),
            "a digest that is not a good version served: {d}"
        );
    }
    assert!(
        seen.contains(&good[1]) && seen.contains(&good[2]),
        "{seen:?}"
    );
    for i in 0..TARGETS {
        assert_eq!(
            decider_digest(&server, &format!("t{i}")),
            Some(good[2].clone())
        );
    }
    let page = op.metrics.encode();
    assert!(
        !page.contains("wasm_autoscaler_decisions_total{outcome=\"failed\"}"),
        "{page}"
    );
    let decisions: f64 = ["scale_up", "scale_down", "hold"]
        .iter()
        .filter_map(|o| {
            page.lines().find_map(|l| {
                l.strip_prefix(&format!(
                    "wasm_autoscaler_decisions_total{{outcome=\"{o}\"}}"
                ))
                .and_then(|v| v.trim().parse::<f64>().ok())
            })
        })
        .sum();
    // One tick per target per second at least (swaps add early ticks, never remove one).
    assert!(
        decisions >= (TARGETS as f64) * elapsed.floor(),
        "{decisions} decisions in {elapsed:.1} s for {TARGETS} targets"
    );
    assert_eq!(
        metric_value(
            &page,
            "wasm_autoscaler_policy_reloads_total{outcome=\"rejected\"}"
        ),
        TARGETS as f64
    );
}

/// A folder laid out as the kubelet mounts a ConfigMap volume: `key` is a
/// symlink through `..data`, which points at a versioned folder; returns the
/// path of `key`.
pub(crate) fn mounted_volume(name: &str, key: &str, bytes: &[u8]) -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("..v1")).unwrap();
    std::fs::write(dir.join("..v1").join(key), bytes).unwrap();
    std::os::unix::fs::symlink("..v1", dir.join("..data")).unwrap();
    std::os::unix::fs::symlink(format!("..data/{key}"), dir.join(key)).unwrap();
    dir.join(key)
}

/// Updates a [`mounted_volume`] as the kubelet does: the new version in a
/// new folder, then `..data` swapped to it atomically by a rename.
pub(crate) fn update_mounted(file: &std::path::Path, version: &str, bytes: &[u8]) {
    let dir = file.parent().unwrap();
    let key = file.file_name().unwrap();
    std::fs::create_dir_all(dir.join(version)).unwrap();
    std::fs::write(dir.join(version).join(key), bytes).unwrap();
    std::os::unix::fs::symlink(version, dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_policy_is_swapped_in_at_once_not_at_the_next_tick() {
    let server = ApiServer::start().await;
    let exporter = Exporter::start(40.0).await;
    // ConfigMap source, through the API watch.
    server.create(deployment("cm", 1));
    let v1 = variant(bundled::FORECAST, "v1");
    server.create(policy_map(&v1));
    let slow = json!({"interval": "60s",
        "decider": {"configMapRef": {"name": "policies", "key": "decider.wasm"}, "config": sizing(10.0)}});
    server.create(autoscaler("cm", "cm", exporter.port, slow));
    // File source laid out as the kubelet mounts a ConfigMap.
    let file = mounted_volume("mounted", "decider.wasm", &v1);
    server.create(deployment("file", 1));
    let path = file.display().to_string();
    server.create(autoscaler(
        "file",
        "file",
        exporter.port,
        json!({"interval": "60s",
        "decider": {"file": path, "config": sizing(10.0)}}),
    ));
    let _op = start_operator_reading(&server, file.parent().unwrap());
    for name in ["cm", "file"] {
        eventually("the first tick", WAIT, || {
            (decider_digest(&server, name) == Some(digest_of(&v1))).then_some(())
        })
        .await;
    }

    let v2 = variant(bundled::FORECAST, "v2");
    let changed = Instant::now();
    server.patch(
        "ConfigMap",
        NS,
        "policies",
        json!({"binaryData": {"decider.wasm": base64(&v2)}}),
    );
    eventually("the new ConfigMap version", Duration::from_secs(10), || {
        (decider_digest(&server, "cm") == Some(digest_of(&v2))).then_some(())
    })
    .await;
    assert!(
        changed.elapsed() < Duration::from_secs(10),
        "swapped well before the 60 s tick"
    );

    update_mounted(&file, "..v2", &v2);
    eventually("the new file version", Duration::from_secs(10), || {
        (decider_digest(&server, "file") == Some(digest_of(&v2))).then_some(())
    })
    .await;
}

/// A 18 MB Python predictor is too large for a ConfigMap even compressed;
/// mounted as a file with a sha256 pin it serves, a swapped-in file that
/// does not match the pin is refused while the pinned one keeps serving,
/// and moving the pin brings the new file in without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_python_predictor_mounted_as_a_file_serves_under_its_pin() {
    let Some(built) = crate::languages::built() else {
        return;
    };
    let component = |lang: &str| built.iter().find(|(l, _)| *l == lang).unwrap().1.clone();
    let (python, js) = (component("python"), component("js"));
    let server = ApiServer::start().await;
    let exporter = Exporter::start(40.0).await;
    let file = mounted_volume("mounted-large", "predictor.wasm", &python);
    let path = file.display().to_string();
    let pin = |bytes: &[u8]| wasm_autoscaler::runtime::Digest::of(bytes).hex();
    server.create(deployment("web", 1));
    server.create(autoscaler(
        "web",
        "web",
        exporter.port,
        json!({"predictor": {"file": path, "sha256": pin(&python), "config": {"alpha": 0.5}}}),
    ));
    let _op = start_operator_reading(&server, file.parent().unwrap());
    let predictor = |server: &ApiServer| policy_digest(server, "web", "predictor");
    // Compiling 18 MB takes seconds (tens of seconds on a loaded debug build).
    let slow = Duration::from_secs(120);
    eventually("the Python predictor loaded", slow, || {
        (predictor(&server) == Some(digest_of(&python))).then_some(())
    })
    .await;
    eventually("scaled up with the Python forecast", WAIT, || {
        (replicas(&server, "web") == 4).then_some(())
    })
    .await;

    // The kubelet swaps in a file the pin does not allow.
    update_mounted(&file, "..v2", &js);
    let (_, _, message) = eventually("PolicyLoaded=False", WAIT, || {
        condition(&server, "web", "PolicyLoaded").filter(|c| c.0 == "False")
    })
    .await;
    assert!(
        message.contains("does not match the pinned sha256"),
        "{message}"
    );
    exporter.set(60.0);
    eventually("still scaling with the pinned Python version", WAIT, || {
        (replicas(&server, "web") == 6).then_some(())
    })
    .await;
    assert_eq!(predictor(&server), Some(digest_of(&python)));

    // Moving the pin is a spec change: the JavaScript file is loaded.
    server.patch(
        "WasmAutoscaler",
        NS,
        "web",
        json!({"spec": {"predictor": {"file": path, "sha256": pin(&js), "config": {"alpha": 0.5}}}}),
    );
    eventually("the JavaScript predictor loaded", slow, || {
        (predictor(&server) == Some(digest_of(&js))).then_some(())
    })
    .await;
    eventually("PolicyLoaded=True again", WAIT, || {
        condition(&server, "web", "PolicyLoaded").filter(|c| c.0 == "True")
    })
    .await;
}

/// A `schedule` beside the decider: its `replicas` window is a floor the
/// operator keeps, while outside its windows it adds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_window_keeps_the_target_up_to_its_replicas() {
    let server = ApiServer::start().await;
    let exporter = Exporter::start(40.0).await;
    let window = |cron: &str| {
        json!({"schedule": {"bundled": "schedule", "config": {"timeZone": "Europe/Berlin",
            "windows": [{"cron": cron, "duration": "24h", "minReplicas": 6}]}}})
    };
    server.create(deployment("on", 1));
    server.create(autoscaler("on", "on", exporter.port, window("* * * * *")));
    // 30 February: never on.
    server.create(deployment("off", 1));
    server.create(autoscaler(
        "off",
        "off",
        exporter.port,
        window("0 0 30 2 *"),
    ));
    let _op = start_operator(&server, "solo", false);
    eventually("the floor applied", WAIT, || {
        (replicas(&server, "on") == 6).then_some(())
    })
    .await;
    eventually("the decider alone elsewhere", WAIT, || {
        (replicas(&server, "off") == 4).then_some(())
    })
    .await;
    // The status is written after the scale (and its Event): wait for it.
    let s = eventually("the floor named in the status", WAIT, || {
        let s = status(&server, "on");
        s["lastDecision"]["limits"]
            .as_array()?
            .iter()
            .any(|l| l == "ForecastFloor")
            .then_some(s)
    })
    .await;
    assert!(
        s["policies"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["role"] == "schedule" && p["source"] == "bundled:schedule"),
        "{s}"
    );
    assert_eq!(
        s["lastDecision"]["proposedReplicas"], 4,
        "the decider still says 4"
    );
}
