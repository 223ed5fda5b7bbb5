//! Reload latency: from a policy source change (a ConfigMap update on the
//! in-process API server, or an atomic file replacement) to the first
//! decision made by the new version, over many swaps, for cache misses
//! (a never-seen component: compiled) and cache hits (a component compiled
//! before), next to the compile time of the same component.
//!
//! Run: `cargo bench -p wasm-autoscaler-tests --bench reload`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wasm_autoscaler::boundary::egress::EgressPolicy;
use wasm_autoscaler::boundary::files::FileRoots;
use wasm_autoscaler::bundled;
use wasm_autoscaler::operator::{self, telemetry::Metrics, Settings};
use wasm_autoscaler::runtime::{Digest, Runtime, RuntimeConfig};
use wasm_autoscaler_tests::apiserver::ApiServer;
use wasm_autoscaler_tests::fixtures::{base64, variant};

const SWAPS: usize = 100;
const NS: &str = "default";

fn autoscaler(name: &str, port: u16, decider: Value) -> Value {
    json!({
        "apiVersion": "wasmautoscaler.dev/v1alpha1", "kind": "WasmAutoscaler",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "maxReplicas": 10, "interval": "600s",
            "metrics": [{"name": "rps", "scrape": {"port": port, "metric": "rps",
                                                   "endpoints": [format!("127.0.0.1:{port}")]}}],
            "decider": decider,
        },
    })
}

fn deployment(name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}}},
    })
}

fn decider_digest(server: &ApiServer, name: &str) -> Option<String> {
    let o = server.get("WasmAutoscaler", NS, name)?;
    o["status"]["policies"]
        .as_array()?
        .iter()
        .find(|p| p["role"] == "decider")?["digest"]
        .as_str()
        .map(str::to_string)
}

async fn until_serving(server: &ApiServer, name: &str, bytes: &[u8]) -> Duration {
    let want = Digest::of(bytes).to_string();
    let started = Instant::now();
    while decider_digest(server, name).as_deref() != Some(want.as_str()) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{name} never served {want}"
        );
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    started.elapsed()
}

fn percentiles(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
    (at(0.5), at(0.99))
}

fn report(what: &str, v: Vec<Duration>) {
    let (p50, p99) = percentiles(v);
    println!("  {what:<34} p50 {p50:>8.2} ms   p99 {p99:>8.2} ms");
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let server = ApiServer::start().await;
        let exporter = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = exporter.local_addr().unwrap().port();
        let app = axum::Router::new().route("/metrics", axum::routing::get(|| async { "rps 40\n" }));
        tokio::spawn(async move { axum::serve(exporter, app).await.unwrap() });
        let dir = std::env::temp_dir().join(format!("wasm-autoscaler-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("decider.wasm");
        let a = variant(bundled::FORECAST, "a");
        let b = variant(bundled::FORECAST, "b");
        std::fs::write(&file, &a).unwrap();
        server.create(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "policies", "namespace": NS, "labels": {"wasmautoscaler.dev/policy": "true"}},
            "binaryData": {"decider.wasm": base64(&a)},
        }));
        let config = json!({"metric": "rps", "capacityPerPod": 10});
        server.create(deployment("cm"));
        server.create(autoscaler("cm", port, json!({"configMapRef": {"name": "policies", "key": "decider.wasm"}, "config": config})));
        server.create(deployment("file"));
        server.create(autoscaler("file", port, json!({"file": file.display().to_string(), "config": config})));
        let runtime = Arc::new(Runtime::new(RuntimeConfig::default()).unwrap());
        let mut settings = Settings::new("bench");
        settings.metric_timeout = Duration::from_millis(200);
        settings.egress = EgressPolicy::unrestricted();
        settings.file_roots = FileRoots::new([file.parent().unwrap().to_path_buf()]).unwrap();
        let op = tokio::spawn(operator::run(
            server.client(),
            Arc::clone(&runtime),
            settings,
            Arc::new(Metrics::default()),
            futures::future::pending(),
        ));
        until_serving(&server, "cm", &a).await;
        until_serving(&server, "file", &a).await;

        let set_map = |bytes: &[u8]| {
            server.patch("ConfigMap", NS, "policies", json!({"binaryData": {"decider.wasm": base64(bytes)}}));
        };
        let set_file = |bytes: &[u8], i: usize| {
            let tmp = dir.join(format!(".decider-{i}.tmp"));
            std::fs::write(&tmp, bytes).unwrap();
            std::fs::rename(&tmp, &file).unwrap();
        };
        let (mut map_miss, mut map_hit, mut file_miss, mut file_hit) = (vec![], vec![], vec![], vec![]);
        for i in 0..SWAPS {
            let fresh = variant(bundled::FORECAST, &format!("cm-{i}"));
            set_map(&fresh);
            map_miss.push(until_serving(&server, "cm", &fresh).await);
            let known = if i % 2 == 0 { &b } else { &a };
            set_map(known);
            map_hit.push(until_serving(&server, "cm", known).await);
        }
        for i in 0..SWAPS {
            let fresh = variant(bundled::FORECAST, &format!("file-{i}"));
            set_file(&fresh, i);
            file_miss.push(until_serving(&server, "file", &fresh).await);
            let known = if i % 2 == 0 { &b } else { &a };
            set_file(known, i);
            file_hit.push(until_serving(&server, "file", known).await);
        }
        op.abort();

        let mut compiles = Vec::new();
        for i in 0..20 {
            let bytes = variant(bundled::FORECAST, &format!("compile-{i}"));
            let started = Instant::now();
            runtime.load(&bytes).unwrap();
            compiles.push(started.elapsed());
        }
        println!(
            "reload latency, source change → first decision by the new version ({SWAPS} swaps each, forecast decider, {} KiB)",
            bundled::FORECAST.len() / 1024
        );
        report("ConfigMap update, cache miss", map_miss);
        report("ConfigMap update, cache hit", map_hit);
        report("file replaced, cache miss", file_miss);
        report("file replaced, cache hit", file_hit);
        report("compile alone (20 components)", compiles);
        let _ = std::fs::remove_dir_all(&dir);
    });
}
