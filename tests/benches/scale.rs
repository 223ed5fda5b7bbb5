//! Many autoscalers in one operator: the real operator code against the
//! in-process API server holding N `WasmAutoscaler` objects and their
//! Deployments, a 15 s interval, metrics scraped from one loopback exporter.
//! The mix: half on the bundled `forecast` decider with the `ewma-trend`
//! predictor, four in ten on the bundled `hpa` decider alone, one in ten on
//! a ConfigMap component (100 distinct digests, so 100 compiles at start).
//!
//! Printed, side by side: time from operator start to every object's first
//! decision (compiles included), then over a steady window: the process's
//! RSS and CPU (as % of one core; the API server and the exporter run in
//! the same process and are included), tick lag p50/p99 (the gap between an
//! object's consecutive status writes minus the interval), API requests per
//! second by verb, and metric requests per second.
//!
//! Run: `cargo bench -p wasm-autoscaler-tests --bench scale -- [N] [STEADY_SECONDS]`
//! (defaults 1000 and 60). Each object holds its policy instances: about
//! 1–2 MiB of guest memory per object, so N = 10,000 needs more than 16 GiB.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wasm_autoscaler::boundary::egress::EgressPolicy;
use wasm_autoscaler::bundled;
use wasm_autoscaler::operator::{self, telemetry::Metrics, Settings};
use wasm_autoscaler::runtime::{Runtime, RuntimeConfig};
use wasm_autoscaler_tests::apiserver::ApiServer;
use wasm_autoscaler_tests::fixtures::{base64, variant};

const NS: &str = "default";
const INTERVAL_S: f64 = 15.0;
/// Distinct ConfigMap components.
const DIGESTS: usize = 100;

/// The decider (and predictor) of object `i`.
fn policies(i: usize) -> Value {
    let forecast = json!({"metric": "rps", "capacityPerPod": 10});
    match i % 10 {
        0 => json!({"decider": {
            "configMapRef": {"name": format!("policy-{}", (i / 10) % DIGESTS), "key": "decider.wasm"},
            "config": forecast}}),
        1..=5 => json!({"predictor": {"bundled": "ewma-trend"},
                        "decider": {"bundled": "forecast", "config": forecast}}),
        _ => json!({"decider": {"bundled": "hpa", "config": {"metric": "rps", "target": 10}}}),
    }
}

fn autoscaler(i: usize, port: u16) -> Value {
    let mut spec = json!({
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": format!("w{i}")},
        "minReplicas": 1, "maxReplicas": 20, "interval": format!("{INTERVAL_S}s"), "warmup": "0s",
        "metrics": [{"name": "rps", "scrape": {"port": port, "metric": "rps",
                                               "endpoints": [format!("127.0.0.1:{port}")]}}],
    });
    for (k, v) in policies(i).as_object().unwrap() {
        spec[k] = v.clone();
    }
    json!({
        "apiVersion": "wasmautoscaler.dev/v1alpha1", "kind": "WasmAutoscaler",
        "metadata": {"name": format!("w{i}"), "namespace": NS},
        "spec": spec,
    })
}

fn deployment(i: usize) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": format!("w{i}"), "namespace": NS},
        "spec": {"replicas": 4, "selector": {"matchLabels": {"app": format!("w{i}")}}},
    })
}

/// (RSS in MiB, CPU seconds used so far) of this process.
fn process_usage() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command's closing parenthesis; utime and stime are the 12th and 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // USER_HZ is 100 on Linux.
    (rss_kib / 1024.0, (ticks(11) + ticks(12)) / 100.0)
}

/// The resource a request is about, with its subresource: `deployments/scale`, `wasmautoscalers/status`.
fn resource_of(path: &str) -> String {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let at = parts
        .iter()
        .position(|p| *p == "namespaces")
        .map_or(parts.len().saturating_sub(1), |i| i + 2);
    match &parts[at.min(parts.len())..] {
        [kind, _, sub, ..] => format!("{kind}/{sub}"),
        [kind, ..] => kind.to_string(),
        [] => path.to_string(),
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let steady_s: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(60);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(n, steady_s));
}

async fn run(n: usize, steady_s: u64) {
    let server = ApiServer::start().await;
    let scrapes = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&scrapes);
    let exporter = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = exporter.local_addr().unwrap().port();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            counted.fetch_add(1, Ordering::Relaxed);
            async { "# TYPE rps gauge\nrps 40\n" }
        }),
    );
    tokio::spawn(async move { axum::serve(exporter, app).await.unwrap() });
    for d in 0..DIGESTS.min(n.div_ceil(10)) {
        server.create(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("policy-{d}"), "namespace": NS,
                         "labels": {"wasmautoscaler.dev/policy": "true"}},
            "binaryData": {"decider.wasm": base64(&variant(bundled::FORECAST, &format!("d{d}")))},
        }));
    }
    for i in 0..n {
        server.create(deployment(i));
        server.create(autoscaler(i, port));
    }
    let (rss_before, _) = process_usage();
    println!("{n} autoscalers, interval {INTERVAL_S} s; process RSS before the operator {rss_before:.0} MiB");

    let mut settings = Settings::new("bench");
    settings.metric_timeout = Duration::from_secs(2);
    settings.egress = EgressPolicy::unrestricted();
    let started = Instant::now();
    let operator = tokio::spawn(operator::run(
        server.client(),
        Arc::new(Runtime::new(RuntimeConfig::default()).unwrap()),
        settings,
        Arc::new(Metrics::default()),
        futures::future::pending(),
    ));
    // Every object's first decision.
    loop {
        let decided = (0..n)
            .filter(|i| {
                server
                    .get("WasmAutoscaler", NS, &format!("w{i}"))
                    .is_some_and(|o| !o["status"]["lastDecision"].is_null())
            })
            .count();
        if decided == n {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "only {decided} of {n} decided in 30 minutes"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let first_decisions = started.elapsed();

    // The steady state: a window starting one interval after the last first decision.
    tokio::time::sleep(Duration::from_secs_f64(INTERVAL_S)).await;
    let (_, cpu_0) = process_usage();
    let (scrapes_0, window_start) = (scrapes.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(Duration::from_secs(steady_s)).await;
    let (rss, cpu_1) = process_usage();
    let window = window_start.elapsed().as_secs_f64();
    let scrape_rate = (scrapes.load(Ordering::Relaxed) - scrapes_0) as f64 / window;
    let seen = server.seen();
    let in_window: Vec<_> = seen.iter().filter(|s| s.at >= window_start).collect();
    let mut by_verb: BTreeMap<String, usize> = BTreeMap::new();
    for s in &in_window {
        *by_verb
            .entry(format!("{} {}", s.method, resource_of(&s.path)))
            .or_default() += 1;
    }
    // Tick lag: consecutive status writes of one object, minus the interval.
    let mut writes: BTreeMap<&str, Vec<Instant>> = BTreeMap::new();
    for s in seen
        .iter()
        .filter(|s| s.method == "PATCH" && s.path.ends_with("/status"))
    {
        writes.entry(s.path.as_str()).or_default().push(s.at);
    }
    let mut lags: Vec<f64> = writes
        .values()
        .flat_map(|w| {
            w.windows(2)
                .filter(|p| p[0] >= window_start)
                .map(|p| ((p[1] - p[0]).as_secs_f64() - INTERVAL_S).max(0.0))
                .collect::<Vec<_>>()
        })
        .collect();
    lags.sort_by(f64::total_cmp);
    operator.abort();

    println!(
        "start to every first decision     {:>8.1} s",
        first_decisions.as_secs_f64()
    );
    println!("steady window                     {window:>8.1} s");
    println!("process RSS                       {rss:>8.0} MiB ({:.2} MiB per autoscaler over the API server's)", (rss - rss_before) / n as f64);
    println!(
        "CPU                               {:>8.1} % of one core",
        (cpu_1 - cpu_0) / window * 100.0
    );
    println!(
        "tick lag p50 / p99                {:>8.0} / {:.0} ms ({} ticks)",
        percentile(&lags, 0.5) * 1000.0,
        percentile(&lags, 0.99) * 1000.0,
        lags.len()
    );
    let verbs: Vec<String> = by_verb
        .iter()
        .map(|(v, c)| format!("{v} {:.1}", *c as f64 / window))
        .collect();
    println!("API requests per second           {}", verbs.join(", "));
    println!(
        "                                  (total {:.1})",
        in_window.len() as f64 / window
    );
    println!(
        "metric requests per second        {scrape_rate:>8.1} (one per object per tick: {:.1})",
        n as f64 / INTERVAL_S
    );
}
