//! The compile budget, through the real binary: a compile bomb — a few
//! hundred bytes of gzip in a ConfigMap, expanding to a component whose
//! straight-line code takes cranelift over a minute to compile — is refused
//! within the budget by the operator (`wasm-autoscaler run` against the
//! in-process API server), while another namespace's autoscaler keeps
//! deciding on schedule and the bomb's target keeps its last good policy.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wasm_autoscaler::bundled;
use wasm_autoscaler_tests::apiserver::{rbac, ApiServer};
use wasm_autoscaler_tests::fixtures::{
    base64, compile_bomb, eventually, free_port, serve_text, variant,
};

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The operator binary, killed when dropped.
struct Operator {
    child: Child,
    log: PathBuf,
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Operator {
    /// Peak resident memory of the operator process so far (its compile
    /// workers are other processes, bounded by their own limit).
    fn peak_rss_mib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmHWM")
            / 1024
    }

    fn metrics_page(&self, port: u16) -> String {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut page = String::new();
        stream.read_to_string(&mut page).unwrap();
        page
    }
}

fn autoscaler(ns: &str, name: &str, port: u16, decider: Value) -> Value {
    json!({
        "apiVersion": "wasmautoscaler.dev/v1alpha1", "kind": "WasmAutoscaler",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": 1, "maxReplicas": 10, "interval": "1s", "warmup": "0s",
            // The pods' IP is the API server's (loopback): scrape the exporter beside it.
            "metrics": [{"name": "rps", "scrape": {"port": 1, "metric": "rps", "aggregation": "avg",
                         "endpoints": [format!("127.0.0.2:{port}")]}}],
            "decider": decider,
            "behavior": {"scaleUp": {}, "scaleDown": {}},
        },
    })
}

fn deployment(ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}}},
    })
}

fn policy_map(ns: &str, name: &str, gzipped: &[u8]) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns, "labels": {"wasmautoscaler.dev/policy": "true"}},
        "binaryData": {"decider.wasm.gz": base64(gzipped)},
    })
}

fn from_map(name: &str) -> Value {
    json!({"configMapRef": {"name": name, "key": "decider.wasm.gz"},
           "config": {"metric": "rps", "capacityPerPod": 10, "targetUtilization": 1.0, "scaleDownTolerance": 0.0}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compile_bomb_is_refused_within_the_budget_while_others_keep_deciding() {
    let bombs: Vec<Vec<u8>> = (0..3).map(|tag| compile_bomb(17_000, tag)).collect();
    let packed: Vec<Vec<u8>> = bombs.iter().map(|b| gzip(b)).collect();
    println!(
        "compile bomb: {} KB of code, {} bytes gzipped in the ConfigMap",
        bombs[0].len() / 1000,
        packed[0].len()
    );
    let server = ApiServer::start().await;
    let port = serve_text("127.0.0.2", || "# TYPE rps gauge\nrps 40\n".to_string());
    let good = gzip(&variant(bundled::FORECAST, "good"));
    // team-a: one autoscaler on a good ConfigMap policy, soon replaced by a
    // bomb, and two more bombs of its own.
    server.create(policy_map("team-a", "victim", &good));
    for name in ["victim", "bomb-1", "bomb-2"] {
        server.create(deployment("team-a", name));
    }
    server.create(autoscaler("team-a", "victim", port, from_map("victim")));
    // team-b: an autoscaler on a bundled policy, deciding every second.
    server.create(deployment("team-b", "steady"));
    server.create(autoscaler(
        "team-b",
        "steady",
        port,
        json!({"bundled": "forecast", "config": {"metric": "rps", "capacityPerPod": 20, "targetUtilization": 1.0}}),
    ));
    let rbac_yaml = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/operator/rbac.yaml"
    ))
    .unwrap();
    server.enforce_rbac(rbac::operator_grants(&[&rbac_yaml]));

    let dir = scratch_dir("compile-bomb");
    std::fs::write(dir.join("kubeconfig"), server.kubeconfig()).unwrap();
    let listen = free_port();
    let log = dir.join("operator.log");
    let child = Command::new(env!("CARGO_BIN_EXE_wasm-autoscaler"))
        .args(["run", "--no-leader-election", "--listen"])
        .arg(format!("127.0.0.1:{listen}"))
        .args([
            "--egress-allow",
            "127.0.0.0/8",
            "--compile-cpu",
            "5s",
            "--compile-memory-mib",
            "768",
            // The victim's ticks are read from its status writes.
            "--status-refresh",
            "0s",
        ])
        .env("KUBECONFIG", dir.join("kubeconfig"))
        .env("WASM_AUTOSCALER_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("the operator starts");
    let op = Operator { child, log };
    let wait = Duration::from_secs(30);
    let replicas = |ns: &str, name: &str| {
        server.get("Deployment", ns, name).unwrap()["spec"]["replicas"].as_u64()
    };
    let started = tokio::time::timeout(wait, async {
        while replicas("team-a", "victim") != Some(4) || replicas("team-b", "steady") != Some(2) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        started.is_ok(),
        "both autoscalers scale at first; operator log:\n{}",
        std::fs::read_to_string(&op.log).unwrap_or_default()
    );

    // The bombs land: the victim's ConfigMap is replaced, two more appear.
    let bombed = Instant::now();
    server.patch(
        "ConfigMap",
        "team-a",
        "victim",
        json!({"binaryData": {"decider.wasm.gz": base64(&packed[0])}}),
    );
    for (i, name) in ["bomb-1", "bomb-2"].into_iter().enumerate() {
        server.create(policy_map("team-a", name, &packed[i + 1]));
        server.create(autoscaler("team-a", name, port, from_map(name)));
    }
    // Meanwhile team-b ships a new policy of its own, which must compile too.
    server.create(policy_map(
        "team-b",
        "newcomer",
        &gzip(&variant(bundled::FORECAST, "new")),
    ));
    server.create(deployment("team-b", "newcomer"));
    server.create(autoscaler("team-b", "newcomer", port, from_map("newcomer")));

    let budget_wall = Duration::from_secs(5 * 2 + 10);
    let (_, reason, message) = eventually("the bomb refused", budget_wall * 2, || {
        server
            .condition("team-a", "victim", "PolicyLoaded")
            .filter(|c| c.0 == "False")
    })
    .await;
    let refused_in = bombed.elapsed();
    assert_eq!(reason, "CompileBudgetExceeded", "{message}");
    assert!(message.contains("CPU budget"), "{message}");
    assert!(
        message.contains("last good version keeps serving"),
        "{message}"
    );
    let newcomer = eventually("team-b's new policy loaded", budget_wall * 3, || {
        server
            .condition("team-b", "newcomer", "PolicyLoaded")
            .filter(|c| c.0 == "True")
    })
    .await;
    let newcomer_in = bombed.elapsed();
    for name in ["bomb-1", "bomb-2"] {
        let (_, reason, message) = eventually(&format!("{name} refused"), budget_wall * 3, || {
            server
                .condition("team-a", name, "PolicyLoaded")
                .filter(|c| c.0 == "False")
        })
        .await;
        assert_eq!(reason, "CompileBudgetExceeded", "{name}: {message}");
    }
    let all_refused_in = bombed.elapsed();
    assert_eq!(newcomer.1, "Loaded");
    let events = server.list("Event", "team-a");
    assert!(
        events
            .iter()
            .any(|e| e["reason"] == "CompileBudgetExceeded"),
        "an Event says why"
    );

    // The victim keeps deciding with its last good version.
    let digest = |ns: &str, name: &str| {
        server.get("WasmAutoscaler", ns, name).unwrap()["status"]["policies"][0]["digest"]
            .as_str()
            .map(str::to_string)
    };
    let good_digest = format!(
        "sha256:{}",
        wasm_autoscaler::runtime::Digest::of(&variant(bundled::FORECAST, "good")).hex()
    );
    assert_eq!(
        digest("team-a", "victim").as_deref(),
        Some(good_digest.as_str())
    );
    assert_eq!(replicas("team-a", "victim"), Some(4));

    // The status writes of an autoscaler since the bombing (one per tick).
    let writes_of = |ns: &str, name: &str| -> Vec<Instant> {
        let path = format!("/namespaces/{ns}/wasmautoscalers/{name}/status");
        server
            .seen()
            .into_iter()
            .filter(|s| s.method == "PATCH" && s.path.ends_with(&path))
            .map(|s| s.at)
            .filter(|at| *at >= bombed)
            .collect()
    };
    // The victim's own ticks did not wait for the bomb's compile either: the
    // last good version went on deciding while it compiled in the background.
    let victim: Vec<Instant> = writes_of("team-a", "victim")
        .into_iter()
        .filter(|at| at.duration_since(bombed) <= refused_in)
        .collect();
    let victim_gap = victim
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .fold(0.0, f64::max);
    assert!(
        victim.len() as f64 >= refused_in.as_secs_f64() * 0.5 && victim_gap < 5.0,
        "the victim ticked {} times in the {refused_in:.1?} its bomb compiled, longest gap {victim_gap:.1} s",
        victim.len()
    );
    // team-b's ticks through the bombing: the gaps between its status writes.
    let writes = writes_of("team-b", "steady");
    let gaps: Vec<f64> = writes
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    let lag = |q: f64| {
        let mut sorted = gaps.clone();
        sorted.sort_by(f64::total_cmp);
        sorted[((sorted.len() - 1) as f64 * q).round() as usize] - 1.0
    };
    let peak = op.peak_rss_mib();
    println!(
        "bomb refused in {refused_in:.1?}, all three in {all_refused_in:.1?}; team-b's new policy loaded after {newcomer_in:.1?}; \
         team-b ticked {} times meanwhile, tick lag p50 {:.0} ms, max {:.0} ms; the victim ticked {} times while its bomb compiled, longest gap {victim_gap:.1} s; operator peak RSS {peak} MiB",
        writes.len(),
        lag(0.5) * 1000.0,
        lag(1.0) * 1000.0,
        victim.len()
    );
    assert!(
        writes.len() as f64 >= all_refused_in.as_secs_f64() * 0.5,
        "team-b kept deciding: {} ticks in {all_refused_in:?}",
        writes.len()
    );
    // Generous bounds: the point is that nothing waits for a compile.
    assert!(
        lag(1.0) < 5.0,
        "team-b waited {:.1} s between ticks",
        lag(1.0)
    );
    assert!(peak < 400, "operator peak RSS {peak} MiB");
    let page = op.metrics_page(listen);
    assert!(
        page.lines()
            .any(|l| l.starts_with("wasm_autoscaler_refusals_total")
                && l.contains("namespace=\"team-a\"")
                && l.contains("reason=\"compile_budget_exceeded\"")),
        "refusals counted:\n{page}"
    );
}
