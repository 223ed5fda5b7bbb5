//! Many autoscalers in one operator: the release build of the operator, run
//! as its own process, against the in-process API server holding N
//! `WasmAutoscaler` objects and their targets (eight in ten Deployments, one
//! in ten StatefulSets, one in ten a custom resource with a `scale`
//! subresource shaped like Argo Rollouts' `Rollout`), a 15 s interval, metrics
//! scraped from one loopback exporter. The mix: half on the bundled
//! `forecast` decider with the `ewma-trend` predictor (one in 250 with the
//! Python build of `ewma-trend` instead, mounted as a file, when
//! `scripts/build-policies` has built it), four in ten on the bundled `hpa`
//! decider alone, one in ten on a ConfigMap component (100 distinct digests,
//! so 100 compiles at start).
//!
//! Printed, side by side: time from operator start to every object's first
//! decision (compiles included), then over a steady window: the operator
//! process's RSS and CPU (as % of one core; its compile workers are other
//! processes), tick lag p50/p99 (the gap between an object's consecutive
//! scrapes of its own metrics path, one per tick, minus the interval),
//! API requests per second by verb, and metric requests per second. Then the
//! load steps up for every object at once, and it prints the decision
//! latency: from the new value being served to the object's scale write,
//! against the target of one interval plus 50 ms.
//!
//! Run: `cargo build --release -p wasm-autoscaler && cargo bench -p
//! wasm-autoscaler-tests --bench scale -- [N] [STEADY_SECONDS]` (defaults
//! 1000 and 60). With `SCALE_REPLICAS=R` (R > 1), R operator processes share
//! the autoscalers in 16 shards (`--shards 16`), and RSS and CPU are printed
//! per replica. `SCALE_OPERATOR_ARGS` adds flags to the operator's command
//! line; `SCALE_OPERATOR_LOG` sets its log filter (default `info`, the
//! deployment's; the log goes to a file beside the bench's kubeconfig).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wasm_autoscaler::bundled;
use wasm_autoscaler::runtime::Digest;
use wasm_autoscaler_tests::apiserver::ApiServer;
use wasm_autoscaler_tests::fixtures::{base64, built_policy, built_policy_path, variant};

const NS: &str = "default";
const INTERVAL_S: f64 = 15.0;
/// Where the exporter listens: loopback, but not the API server's address,
/// which the operator never sends metric requests to.
const EXPORTER_IP: &str = "127.0.0.2";
/// Distinct ConfigMap components.
const DIGESTS: usize = 100;

/// The Python build of `ewma-trend`, as a file source: its path and sha256.
type PythonPolicy = Option<(String, String)>;

/// The decider (and predictor) of object `i`.
fn policies(i: usize, python: &PythonPolicy) -> Value {
    let forecast = json!({"metric": "rps", "capacityPerPod": 10});
    match (i % 10, python) {
        (0, _) => json!({"decider": {
            "configMapRef": {"name": format!("policy-{}", (i / 10) % DIGESTS), "key": "decider.wasm"},
            "config": forecast}}),
        (1, Some((path, sha256))) if i % 250 == 1 => json!({
            "predictor": {"file": path, "sha256": sha256},
            "decider": {"bundled": "forecast", "config": forecast}}),
        (1..=5, _) => json!({"predictor": {"bundled": "ewma-trend"},
                        "decider": {"bundled": "forecast", "config": forecast}}),
        // The exporter's value is per pod and does not fall as pods are added, so HPA's
        // target is the steady load itself: it holds until the load steps up.
        _ => json!({"decider": {"bundled": "hpa", "config": {"metric": "rps", "target": 40}}}),
    }
}

/// The target of object `i`: API version and kind.
fn target_kind(i: usize) -> (&'static str, &'static str) {
    match i % 10 {
        7 => ("apps/v1", "StatefulSet"),
        8 => ("argoproj.io/v1alpha1", "Rollout"),
        _ => ("apps/v1", "Deployment"),
    }
}

fn autoscaler(i: usize, port: u16, python: &PythonPolicy) -> Value {
    let (api_version, kind) = target_kind(i);
    let mut spec = json!({
        "scaleTargetRef": {"apiVersion": api_version, "kind": kind, "name": format!("w{i}")},
        "minReplicas": 1, "maxReplicas": 20, "interval": format!("{INTERVAL_S}s"), "warmup": "0s",
        // A path per object, so the exporter tells each object's ticks apart.
        "metrics": [{"name": "rps", "scrape": {"port": port, "metric": "rps", "path": format!("/metrics/w{i}"),
                                               "endpoints": [format!("{EXPORTER_IP}:{port}")]}}],
    });
    for (k, v) in policies(i, python).as_object().unwrap() {
        spec[k] = v.clone();
    }
    json!({
        "apiVersion": "wasmautoscaler.dev/v1alpha1", "kind": "WasmAutoscaler",
        "metadata": {"name": format!("w{i}"), "namespace": NS},
        "spec": spec,
    })
}

fn workload(i: usize) -> Value {
    let (api_version, kind) = target_kind(i);
    json!({
        "apiVersion": api_version, "kind": kind,
        "metadata": {"name": format!("w{i}"), "namespace": NS},
        "spec": {"replicas": 4, "selector": {"matchLabels": {"app": format!("w{i}")}}},
    })
}

/// (RSS in MiB, CPU seconds used so far) of process `pid` (`self` for this one).
fn process_usage(pid: &str) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
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

/// The release build of the operator, run as its own process against the test server.
struct Operator {
    child: std::process::Child,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Shards when several replicas run.
const SHARDS: u32 = 16;

impl Operator {
    /// Replica `index` of `replicas`; one replica runs without leader election.
    fn start(server: &ApiServer, python: &PythonPolicy, index: usize, replicas: usize) -> Self {
        // This bench runs from target/release/deps; the operator is built beside it.
        let binary = std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.parent()?.join("wasm-autoscaler")))
            .filter(|b| b.exists())
            .expect("build the operator first: cargo build --release -p wasm-autoscaler");
        let dir = std::env::temp_dir().join(format!("scale-bench-{}-{index}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("kubeconfig"), server.kubeconfig()).unwrap();
        let listen = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let identity = format!("scale-bench-{index}");
        let sharding: Vec<String> = if replicas > 1 {
            [
                "--shards",
                &SHARDS.to_string(),
                "--lease-namespace",
                NS,
                "--identity",
                &identity,
            ]
            .map(String::from)
            .to_vec()
        } else {
            vec!["--no-leader-election".into()]
        };
        let child = std::process::Command::new(binary)
            .args(["run", "--metric-timeout", "2s"])
            .args(sharding)
            .args(["--listen", &listen.to_string()])
            // The exporter is on loopback.
            .args(["--egress-allow", "127.0.0.0/8"])
            // The folder of the Python policy file, when there is one.
            .args(python.iter().flat_map(|(path, _)| {
                let folder = std::path::Path::new(path).parent().expect("a folder");
                [
                    "--allow-file-root".to_string(),
                    folder.display().to_string(),
                ]
            }))
            // More flags for the operator, e.g. `--instance-pool-mib 0`.
            .args(
                std::env::var("SCALE_OPERATOR_ARGS")
                    .unwrap_or_default()
                    .split_whitespace(),
            )
            .env("KUBECONFIG", dir.join("kubeconfig"))
            // The deployment's level unless told otherwise: a tick's span costs what it costs there.
            .env(
                "WASM_AUTOSCALER_LOG",
                std::env::var("SCALE_OPERATOR_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("operator.log")).unwrap())
            .spawn()
            .expect("the operator starts");
        Operator {
            child,
            _dir: TempDir(dir),
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
    // When each object's metrics were scraped: once per tick.
    let scraped: Arc<Mutex<HashMap<String, Vec<Instant>>>> = Arc::default();
    let scraped_by = Arc::clone(&scraped);
    let load = Arc::new(AtomicU64::new(40));
    let served = Arc::clone(&load);
    let exporter = tokio::net::TcpListener::bind((EXPORTER_IP, 0))
        .await
        .unwrap();
    let port = exporter.local_addr().unwrap().port();
    let app = axum::Router::new().route(
        "/metrics/{object}",
        axum::routing::get(
            move |axum::extract::Path(object): axum::extract::Path<String>| {
                counted.fetch_add(1, Ordering::Relaxed);
                scraped_by
                    .lock()
                    .unwrap()
                    .entry(object)
                    .or_default()
                    .push(Instant::now());
                let rps = served.load(Ordering::Relaxed);
                async move { format!("# TYPE rps gauge\nrps {rps}\n") }
            },
        ),
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
    let python: PythonPolicy = match built_policy("python") {
        Ok(bytes) => Some((
            built_policy_path("python").display().to_string(),
            Digest::of(&bytes).hex(),
        )),
        Err(e) => {
            println!("no Python objects in the mix: {e}");
            None
        }
    };
    for i in 0..n {
        server.create(workload(i));
        server.create(autoscaler(i, port, &python));
    }
    let (server_rss, _) = process_usage("self");
    let pythons = (0..n).filter(|i| python.is_some() && i % 250 == 1).count();
    println!("{n} autoscalers ({pythons} on the Python ewma-trend), interval {INTERVAL_S} s; the API server and the exporter hold {server_rss:.0} MiB");

    let replicas: usize = std::env::var("SCALE_REPLICAS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1)
        .max(1);
    let started = Instant::now();
    let operators: Vec<Operator> = (0..replicas)
        .map(|k| Operator::start(&server, &python, k, replicas))
        .collect();
    let pids: Vec<String> = operators.iter().map(|o| o.child.id().to_string()).collect();
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
    let cpu_0: Vec<f64> = pids.iter().map(|p| process_usage(p).1).collect();
    let (scrapes_0, window_start) = (scrapes.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(Duration::from_secs(steady_s)).await;
    let (rss, cpu_1): (Vec<f64>, Vec<f64>) = pids.iter().map(|p| process_usage(p)).unzip();
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
    // Tick lag: consecutive scrapes of one object (one per tick), minus the interval.
    let reads = scraped.lock().unwrap().clone();
    let mut lags: Vec<f64> = reads
        .values()
        .flat_map(|w| {
            w.windows(2)
                .filter(|p| p[0] >= window_start)
                .map(|p| ((p[1] - p[0]).as_secs_f64() - INTERVAL_S).max(0.0))
                .collect::<Vec<_>>()
        })
        .collect();
    lags.sort_by(f64::total_cmp);

    // Decision latency: every object's load doubles at once; each should scale at its next tick.
    let stepped = Instant::now();
    load.store(80, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(INTERVAL_S * 2.0)).await;
    let mut first_scale: BTreeMap<String, Instant> = BTreeMap::new();
    for s in server.seen().iter().filter(|s| {
        s.at >= stepped && s.method == "PATCH" && s.path.ends_with("/scale") && s.status == 200
    }) {
        first_scale.entry(s.path.clone()).or_insert(s.at);
    }
    // Which objects did not scale, by target kind and policy (i mod 10), to say where to look.
    let mut missing: BTreeMap<(&str, usize), usize> = BTreeMap::new();
    for i in 0..n {
        if !first_scale
            .keys()
            .any(|p| p.ends_with(&format!("/w{i}/scale")))
        {
            *missing.entry((target_kind(i).1, i % 10)).or_default() += 1;
        }
    }
    if !missing.is_empty() {
        println!(
            "not scaled after the step (target kind, object number mod 10: count): {missing:?}"
        );
    }
    let mut latencies: Vec<f64> = first_scale
        .values()
        .map(|at| (*at - stepped).as_secs_f64())
        .collect();
    latencies.sort_by(f64::total_cmp);
    let on_time = latencies
        .iter()
        .filter(|l| **l <= INTERVAL_S + 0.05)
        .count();
    // Who evaluates what, from the statuses.
    let mut owners: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..n {
        if let Some(o) = server.get("WasmAutoscaler", NS, &format!("w{i}")) {
            *owners
                .entry(
                    o["status"]["ownedBy"]
                        .as_str()
                        .unwrap_or("nobody")
                        .to_string(),
                )
                .or_default() += 1;
        }
    }
    drop(operators);

    println!(
        "start to every first decision     {:>8.1} s",
        first_decisions.as_secs_f64()
    );
    println!("steady window                     {window:>8.1} s");
    let cpu: Vec<f64> = cpu_1
        .iter()
        .zip(&cpu_0)
        .map(|(b, a)| (b - a) / window * 100.0)
        .collect();
    if replicas == 1 {
        println!(
            "operator RSS                      {:>8.0} MiB ({:.2} MiB per autoscaler)",
            rss[0],
            rss[0] / n as f64
        );
        println!(
            "CPU                               {:>8.1} % of one core",
            cpu[0]
        );
    } else {
        let each = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.0}"))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        println!("replicas ({SHARDS} shards)               {replicas}, owning {owners:?}");
        println!("operator RSS per replica          {} MiB", each(&rss));
        println!(
            "CPU per replica                   {} % of one core",
            each(&cpu)
        );
    }
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
    println!(
        "decision latency p50 / p99 / max  {:>8.0} / {:.0} / {:.0} ms from the load step to the scale write",
        percentile(&latencies, 0.5) * 1000.0,
        percentile(&latencies, 0.99) * 1000.0,
        latencies.last().copied().unwrap_or(f64::NAN) * 1000.0,
    );
    println!(
        "                                  {} of {n} scaled within one interval + 50 ms ({} scaled at all)",
        on_time,
        latencies.len()
    );
}
