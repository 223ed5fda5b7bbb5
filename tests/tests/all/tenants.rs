//! A tenant turning the operator against the cluster, tried through its own
//! objects against the real operator, the in-process API server (with the
//! deployed RBAC enforced) and the real kube-rs client: files outside the
//! admin's folders, Secrets of other namespaces, addresses the admin did
//! not allow, and remote answers leaking into status. Each attack could
//! succeed if its defense were missing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wasm_autoscaler::boundary::egress::EgressPolicy;
use wasm_autoscaler::boundary::files::FileRoots;
use wasm_autoscaler::bundled;
use wasm_autoscaler::operator::Settings;
use wasm_autoscaler_tests::apiserver::ApiServer;

use crate::operator::{
    autoscaler, condition, deployed_rbac, deployed_rbac_with, deployment, eventually,
    loopback_egress, mounted_volume, replicas, sizing, start_with, status, Exporter, NS, WAIT,
};

/// This process's resident memory, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

fn settings(identity: &str) -> Settings {
    let mut s = Settings::new(identity);
    s.metric_timeout = Duration::from_secs(2);
    s.egress = loopback_egress();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sources_outside_the_allowed_folders_are_refused_quickly_and_read_nothing() {
    let server = ApiServer::start().await;
    let exporter = Exporter::start(40.0).await;
    let good = bundled::FORECAST;
    // The admin's folder, laid out as the kubelet mounts a ConfigMap volume.
    let inside = mounted_volume("tenant-root", "decider.wasm", good);
    let root = inside.parent().unwrap().to_path_buf();
    let outside = root.with_file_name(format!("tenant-outside-{}", std::process::id()));
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("decider.wasm"), good).unwrap();
    std::os::unix::fs::symlink(outside.join("decider.wasm"), root.join("link-out.wasm")).unwrap();
    let fifo = root.join("pipe.wasm");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo");
    // Sparse: its size says 65 MiB, reading it would take that much.
    let big = std::fs::File::create(root.join("big.wasm")).unwrap();
    big.set_len((64 << 20) + (1 << 20)).unwrap();

    let root_text = root.display().to_string();
    let attacks = [
        (
            "outside",
            outside.join("decider.wasm").display().to_string(),
            "FileOutsideRoots",
        ),
        (
            "link-out",
            format!("{root_text}/link-out.wasm"),
            "FileOutsideRoots",
        ),
        (
            "dotdot",
            format!(
                "{root_text}/../{}/decider.wasm",
                outside.file_name().unwrap().to_str().unwrap()
            ),
            "FileOutsideRoots",
        ),
        (
            "token",
            "/var/run/secrets/kubernetes.io/serviceaccount/token".to_string(),
            "FileOutsideRoots",
        ),
        ("devzero", "/dev/zero".to_string(), "FileOutsideRoots"),
        ("fifo", fifo.display().to_string(), "FileNotRegular"),
        ("big", format!("{root_text}/big.wasm"), "FileTooLarge"),
        ("relative", "decider.wasm".to_string(), "FilePathRelative"),
    ];
    for (name, path, _) in &attacks {
        server.create(deployment(name, 1));
        server.create(autoscaler(
            name,
            name,
            exporter.port,
            json!({"decider": {"file": path, "config": sizing(10.0)}}),
        ));
    }
    server.create(deployment("legit", 1));
    server.create(autoscaler(
        "legit",
        "legit",
        exporter.port,
        json!({"decider": {"file": inside.display().to_string(), "config": sizing(10.0)}}),
    ));

    let mut s = settings("files");
    s.file_roots = FileRoots::new([root.clone()]).unwrap();
    let before = rss_kib();
    let started = Instant::now();
    let op = start_with(&server, s);
    for (name, _, reason) in &attacks {
        let (_, got, message) = eventually(&format!("{name} refused"), WAIT, || {
            condition(&server, name, "PolicyLoaded").filter(|c| c.0 == "False")
        })
        .await;
        assert_eq!(&got, reason, "{name}: {message}");
        assert!(
            server
                .events_about(NS, name)
                .iter()
                .any(|(r, _)| r == reason),
            "{name}: an Event with reason {reason}"
        );
        assert_eq!(replicas(&server, name), 1, "{name} was never scaled");
    }
    let refused_after = started.elapsed();
    let legit = tokio::time::timeout(WAIT, async {
        while replicas(&server, "legit") != 4 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        legit.is_ok(),
        "the file inside the root serves: {}",
        status(&server, "legit")
    );
    let grown_mib = rss_kib().saturating_sub(before) / 1024;
    println!(
        "file attacks: {} refused in {refused_after:.1?}; operator RSS {} MiB before, grew {grown_mib} MiB",
        attacks.len(),
        before / 1024
    );
    assert!(
        refused_after < Duration::from_secs(15),
        "refusals took {refused_after:?}"
    );
    // A read of /dev/zero or the 65 MiB file would have added 64 MiB at least.
    assert!(grown_mib < 48, "operator memory grew {grown_mib} MiB");
    let page = op.metrics.encode();
    for reason in ["file_outside_roots", "file_not_regular", "file_too_large"] {
        assert!(
            page.lines()
                .any(|l| l.starts_with("wasm_autoscaler_refusals_total")
                    && l.contains(&format!("reason=\"{reason}\""))),
            "{reason} not counted:\n{page}"
        );
    }
    // Without any root, even the legitimate file is refused.
    let server2 = ApiServer::start().await;
    server2.create(deployment("legit", 1));
    server2.create(autoscaler(
        "legit",
        "legit",
        exporter.port,
        json!({"decider": {"file": inside.display().to_string(), "config": sizing(10.0)}}),
    ));
    let _op2 = start_with(&server2, settings("no-roots"));
    let (_, reason, message) = eventually("refused without roots", WAIT, || {
        condition(&server2, "legit", "PolicyLoaded").filter(|c| c.0 == "False")
    })
    .await;
    assert_eq!(reason, "FileSourcesDisabled", "{message}");
    assert!(message.contains("--allow-file-root"), "{message}");
    std::fs::remove_dir_all(&outside).unwrap();
}

/// Prometheus behind a gate that answers 401 unless the request carries
/// `Authorization: Bearer <token>`, recording every Authorization header.
struct AuthGate {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AuthGate {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AuthGate {
    async fn start(upstream: &str, token: &str) -> Self {
        use axum::extract::Request;
        use axum::response::IntoResponse;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (record, upstream, want) = (
            Arc::clone(&seen),
            upstream.to_string(),
            format!("Bearer {token}"),
        );
        let http = reqwest::Client::new();
        let app = axum::Router::new().fallback(move |request: Request| {
            let (record, upstream, want, http) =
                (record.clone(), upstream.clone(), want.clone(), http.clone());
            async move {
                let auth = request
                    .headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                record.lock().unwrap().push(auth.clone());
                if auth != want {
                    return (axum::http::StatusCode::UNAUTHORIZED, "no").into_response();
                }
                let url = format!(
                    "{upstream}{}",
                    request.uri().path_and_query().map_or("", |p| p.as_str())
                );
                let answer = http.get(url).send().await.unwrap();
                let code = answer.status().as_u16();
                let body = answer.text().await.unwrap();
                (axum::http::StatusCode::from_u16(code).unwrap(), body).into_response()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        AuthGate { url, seen, task }
    }
}

fn secret_autoscaler(namespace: &str, name: &str, address: &str, secret: Value) -> Value {
    let mut a = autoscaler(name, name, 1, json!({}));
    a["metadata"]["namespace"] = json!(namespace);
    a["spec"]["metrics"] = json!([{"name": "rps", "prometheus": {
        "address": address, "query": "inflight", "bearerTokenSecret": secret}}]);
    // `inflight` is 7: at 1 per pod, 7 replicas.
    a["spec"]["decider"]["config"] = sizing(1.0);
    a
}

fn namespaced_deployment(namespace: &str, name: &str) -> Value {
    let mut d = deployment(name, 1);
    d["metadata"]["namespace"] = json!(namespace);
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_token_reaches_prometheus_only_where_the_namespace_granted_it() {
    let prometheus =
        tokio::task::spawn_blocking(|| crate::prometheus::prometheus().address.clone())
            .await
            .unwrap();
    let gate = AuthGate::start(&prometheus, "team-a-s3cret").await;
    let server = ApiServer::start().await;
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/examples/metric-credentials.yaml"
    ))
    .unwrap();
    // team-a applies the example: its Secret, and the Role and RoleBinding
    // that let the operator read that one Secret there.
    server.enforce_rbac(deployed_rbac_with(&[&example], "team-a"));
    let secret = |ns: &str, token: &str| {
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "prometheus-reader", "namespace": ns},
               "stringData": {"token": token}})
    };
    server.create(secret("team-a", "team-a-s3cret"));
    let reference = json!({"name": "prometheus-reader", "key": "token"});
    server.create(namespaced_deployment("team-a", "web"));
    server.create(secret_autoscaler(
        "team-a",
        "web",
        &gate.url,
        reference.clone(),
    ));
    // team-b has a Secret of the same name but granted nothing.
    server.create(secret("team-b", "team-b-token"));
    server.create(namespaced_deployment("team-b", "web"));
    server.create(secret_autoscaler("team-b", "web", &gate.url, reference));
    // team-c tries to name team-a's Secret through the path.
    server.create(namespaced_deployment("team-c", "web"));
    server.create(secret_autoscaler(
        "team-c",
        "web",
        &gate.url,
        json!({"name": "../../team-a/secrets/prometheus-reader", "key": "token"}),
    ));
    let _op = start_with(&server, settings("secrets"));

    let in_ns = |ns: &str, name: &str| {
        server.get("Deployment", ns, name).unwrap()["spec"]["replicas"].as_u64()
    };
    eventually("team-a scaled on its authenticated metric", WAIT, || {
        (in_ns("team-a", "web") == Some(7)).then_some(())
    })
    .await;
    let cond = |ns: &str, type_: &str| {
        server
            .condition(ns, "web", type_)
            .map(|(_, reason, message)| (reason, message))
    };
    let (reason, message) = eventually("team-b refused", WAIT, || {
        cond("team-b", "MetricsAvailable").filter(|c| c.0 != "Fetched")
    })
    .await;
    assert_eq!(reason, "SecretForbidden", "{message}");
    assert!(
        server
            .events_about("team-b", "web")
            .iter()
            .any(|(r, _)| r == "SecretForbidden"),
        "an Event says so"
    );
    let (reason, message) = eventually("team-c refused", WAIT, || {
        cond("team-c", "Ready").filter(|c| c.0 == "InvalidSpec")
    })
    .await;
    assert!(
        message.contains("bearerTokenSecret.name"),
        "{reason}: {message}"
    );
    assert_eq!(in_ns("team-b", "web"), Some(1));
    assert_eq!(in_ns("team-c", "web"), Some(1));

    // The operator asked only for the Secrets of the namespaces it served, by name.
    let reads: Vec<String> = server
        .seen()
        .into_iter()
        .filter(|s| s.path.contains("/secrets"))
        .map(|s| format!("{} {}", s.path, s.status))
        .collect();
    assert!(
        reads.iter().all(|r| r
            .starts_with("/api/v1/namespaces/team-a/secrets/prometheus-reader 200")
            || r.starts_with("/api/v1/namespaces/team-b/secrets/prometheus-reader 403")),
        "{reads:#?}"
    );
    assert!(
        reads.iter().any(|r| r.contains("team-b")),
        "team-b's read was tried and refused"
    );
    // Only team-a's token ever reached the server.
    let tokens: std::collections::BTreeSet<String> =
        gate.seen.lock().unwrap().iter().cloned().collect();
    assert_eq!(
        tokens.into_iter().collect::<Vec<_>>(),
        ["Bearer team-a-s3cret"],
        "no request without the token, and no other token"
    );
}

/// A TCP listener that counts connections and answers each with `answer`.
struct Listener {
    port: u16,
    connections: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listener {
    async fn start(ip: &str, answer: String) -> std::io::Result<Self> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let socket = tokio::net::TcpListener::bind((ip, 0)).await?;
        let port = socket.local_addr()?.port();
        let connections = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&connections);
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = socket.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = stream.read(&mut buf).await;
                    let _ = stream.write_all(answer.as_bytes()).await;
                });
            }
        });
        Ok(Listener {
            port,
            connections,
            task,
        })
    }

    fn count(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }
}

fn http_answer(status: &str, headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Adds a link-local address to `lo` for the test's listener, and removes it
/// when dropped. Needs CAP_NET_ADMIN; `None` (with the reason) without it.
struct LinkLocal(&'static str);

impl LinkLocal {
    fn add() -> Result<Self, String> {
        const ADDRESS: &str = "169.254.77.77";
        let out = std::process::Command::new("ip")
            .args(["addr", "add", &format!("{ADDRESS}/32"), "dev", "lo"])
            .output()
            .map_err(|e| format!("cannot run `ip`: {e}"))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() || stderr.contains("File exists") {
            Ok(LinkLocal(ADDRESS))
        } else {
            Err(stderr.trim().to_string())
        }
    }
}

impl Drop for LinkLocal {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["addr", "del", &format!("{}/32", self.0), "dev", "lo"])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_egress_does_not_allow_are_never_connected_to() {
    const SECRET: &str = "INTERNAL-ONLY-7f3a";
    let server = ApiServer::start().await;
    let api_port = server
        .url()
        .rsplit(':')
        .next()
        .unwrap()
        .parse::<u16>()
        .unwrap();
    // Loopback stands for the cluster network: 127.0.0.2 is allowed, and
    // 127.0.0.1 is where the API server listens, so it is refused.
    let exporter = Exporter::start_on("127.0.0.2", 40.0).await;
    let api_ip_listener = Listener::start("127.0.0.1", http_answer("200 OK", "", SECRET))
        .await
        .unwrap();
    let redirect = Listener::start(
        "127.0.0.2",
        http_answer(
            "302 Found",
            &format!(
                "Location: http://127.0.0.1:{}/api/v1/query\r\n",
                api_ip_listener.port
            ),
            "",
        ),
    )
    .await
    .unwrap();
    // Answers that carry the marker where an error message might quote it.
    let json = "Content-Type: application/json\r\n";
    let mut leaky = Vec::new();
    for (status, headers, body) in [
        ("500 Internal Server Error", "", SECRET.to_string()),
        (
            "400 Bad Request",
            json,
            format!(r#"{{"status":"error","errorType":"{SECRET}","error":"{SECRET}"}}"#),
        ),
        (
            "200 OK",
            json,
            format!(
                r#"{{"status":"success","data":{{"resultType":"scalar","result":[1,"{SECRET}"]}}}}"#
            ),
        ),
        (
            "200 OK",
            json,
            format!(
                r#"{{"status":"success","data":{{"resultType":"scalar","result":["{SECRET}","1"]}}}}"#
            ),
        ),
    ] {
        let answer = http_answer(status, headers, &body);
        leaky.push(Listener::start("127.0.0.2", answer).await.unwrap());
    }
    let link_local = LinkLocal::add();
    let link_local_listener = match &link_local {
        Ok(l) => Some(
            Listener::start(l.0, http_answer("200 OK", "", SECRET))
                .await
                .unwrap(),
        ),
        Err(why) => {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED link-local listener: cannot add 169.254.77.77 to lo ({why}); the refusal is still checked, without a listener to show no connection"
            );
            None
        }
    };
    let link_local_port = link_local_listener.as_ref().map_or(80, |l| l.port);

    let prometheus = |address: String| json!([{"name": "rps", "prometheus": {"address": address, "query": "up"}}]);
    let mut cases: Vec<(&str, Value, &str)> = vec![
        ("api-server", prometheus(server.url()), "EgressDenied"),
        (
            "api-by-name",
            prometheus(format!("http://localhost:{}", api_ip_listener.port)),
            "EgressDenied",
        ),
        (
            "api-hex",
            prometheus(format!("http://0x7f.1:{}", api_ip_listener.port)),
            "EgressDenied",
        ),
        (
            "metadata",
            prometheus("http://169.254.169.254".into()),
            "EgressDenied",
        ),
        (
            "link-local",
            prometheus(format!("http://169.254.77.77:{link_local_port}")),
            "EgressDenied",
        ),
        (
            "scrape-api",
            json!([{"name": "rps", "scrape": {"port": 1, "metric": "rps", "endpoints": [format!("127.0.0.1:{api_port}")]}}]),
            "EgressDenied",
        ),
        (
            "redirect",
            prometheus(format!("http://127.0.0.2:{}", redirect.port)),
            "Unavailable",
        ),
    ];
    for (l, name) in leaky
        .iter()
        .zip(["leaky-500", "leaky-error", "leaky-value", "leaky-type"])
    {
        let address = format!("http://127.0.0.2:{}", l.port);
        cases.push((name, prometheus(address), "Unavailable"));
    }
    for (name, metrics, _) in &cases {
        server.create(deployment(name, 1));
        server.create(autoscaler(name, name, 1, json!({"metrics": metrics})));
    }
    server.create(deployment("allowed", 1));
    server.create(autoscaler(
        "allowed",
        "allowed",
        exporter.port,
        json!({"metrics": [{"name": "rps", "scrape": {"port": 1, "metric": "rps", "aggregation": "avg",
                             "endpoints": [format!("127.0.0.2:{}", exporter.port)]}}]}),
    ));
    server.enforce_rbac(deployed_rbac());
    let mut s = settings("egress");
    let mut egress = EgressPolicy::new(&["127.0.0.0/8".parse().unwrap()], &[]).unwrap();
    let api_url: http::Uri = server.url().parse().unwrap();
    egress.refuse_api_server(
        wasm_autoscaler::operator::api_server_addresses(&server.client(), &api_url).await,
    );
    s.egress = egress;
    let _op = start_with(&server, s);

    eventually("the allowed address serves", WAIT, || {
        (replicas(&server, "allowed") == 4).then_some(())
    })
    .await;
    for (name, _, reason) in &cases {
        let (_, got, message) = eventually(&format!("{name} unavailable"), WAIT, || {
            condition(&server, name, "MetricsAvailable").filter(|c| c.0 == "False")
        })
        .await;
        assert_eq!(&got, reason, "{name}: {message}");
        let everything = format!(
            "{} {:?}",
            status(&server, name),
            server.events_about(NS, name)
        );
        assert!(
            !everything.contains(SECRET),
            "{name}: remote bytes reached status or Events: {everything}"
        );
        assert_eq!(replicas(&server, name), 1, "{name} was never scaled");
    }
    let (_, _, message) = condition(&server, "redirect", "MetricsAvailable").unwrap();
    assert!(
        message.contains("HTTP 302"),
        "redirects are not followed: {message}"
    );
    // Wait a few more ticks, then count what reached the refused listeners.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        api_ip_listener.count(),
        0,
        "the API server's address was connected to"
    );
    if let Some(l) = &link_local_listener {
        assert_eq!(l.count(), 0, "the link-local address was connected to");
    }
    let queries_at_api = server
        .seen()
        .iter()
        .filter(|s| s.path.starts_with("/api/v1/query") || s.path.starts_with("/metrics"))
        .count();
    assert_eq!(queries_at_api, 0, "a metric request reached the API server");
    assert!(
        leaky.iter().all(|l| l.count() > 0),
        "allowed addresses were asked"
    );
}
