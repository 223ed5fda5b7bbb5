//! End-to-end: install the CRD, RBAC and operator from `deploy/` into the
//! cluster `KUBECONFIG` points at, deploy the example, and check that a
//! scale-up and a scale-down happen and are reported.
//!
//! Needs `KUBECONFIG` and `E2E_IMAGE` (an operator image the cluster can
//! pull, built with `deploy/Dockerfile`; for kind: `kind load docker-image`).
//! Without them the test says it was skipped and why.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::ByteString;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::{discovery, Api, Client, ResourceExt};
use serde_json::{json, Value};
use wasm_autoscaler::bundled;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const NS: &str = "wasm-autoscaler-e2e";

fn skip_reason() -> Option<&'static str> {
    if std::env::var_os("KUBECONFIG").is_none() {
        return Some("KUBECONFIG is not set");
    }
    if std::env::var_os("E2E_IMAGE").is_none() {
        return Some("E2E_IMAGE (an operator image the cluster can pull) is not set");
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_up_and_down_in_a_real_cluster() {
    if let Some(why) = skip_reason() {
        // Straight to stderr: the test harness captures `eprintln!`, and a
        // skip must be visible in the suite's output.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED e2e: {why}; see README, \"End-to-end tests\""
        );
        return;
    }
    let image = std::env::var("E2E_IMAGE").unwrap();
    let client = Client::try_default()
        .await
        .expect("a client from KUBECONFIG");

    apply_file(&client, "deploy/crd.yaml", None, &image).await;
    wait("the CRD to be served", Duration::from_secs(60), || async {
        let gvk = GroupVersionKind::gvk("wasmautoscaler.dev", "v1alpha1", "WasmAutoscaler");
        discovery::pinned_kind(&client, &gvk)
            .await
            .is_ok()
            .then_some(())
    })
    .await;
    for file in ["namespace", "rbac", "deployment", "service"] {
        apply_file(
            &client,
            &format!("deploy/operator/{file}.yaml"),
            None,
            &image,
        )
        .await;
    }
    apply(
        &client,
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
        None,
    )
    .await;
    apply_file(&client, "deploy/examples/demo-app.yaml", Some(NS), &image).await;
    let policy = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "demo-policy", "labels": {"wasmautoscaler.dev/policy": "true"}},
        "binaryData": {"decider.wasm": serde_json::to_value(ByteString(bundled::FORECAST.to_vec())).unwrap()},
    });
    apply(&client, &policy, Some(NS)).await;
    apply_file(&client, "deploy/examples/autoscaler.yaml", Some(NS), &image).await;

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let replicas = |d: Deployment| d.spec.replicas.unwrap_or(0);
    // rps 40 at 10 per pod.
    wait("scale-up to 4", Duration::from_secs(300), || async {
        let d = deployments.get("demo").await.ok()?;
        (replicas(d) == 4).then_some(())
    })
    .await;
    let loads: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let lower = json!({"data": {"metrics": "# TYPE rps gauge\nrps 15\n"}});
    loads
        .patch("demo-load", &PatchParams::default(), &Patch::Merge(&lower))
        .await
        .expect("lowering the demo load");
    // The kubelet refreshes the mounted file within about a minute; then a 60 s window.
    wait("scale-down to 2", Duration::from_secs(420), || async {
        let d = deployments.get("demo").await.ok()?;
        (replicas(d) == 2).then_some(())
    })
    .await;

    let autoscalers = api_for(
        &client,
        "wasmautoscaler.dev/v1alpha1",
        "WasmAutoscaler",
        Some(NS),
    )
    .await;
    let demo = autoscalers.get("demo").await.expect("the autoscaler");
    let status = &demo.data["status"];
    assert_eq!(status["currentReplicas"], 2, "{status}");
    assert!(status["lastScaleTime"].is_string(), "{status}");
    let events = api_for(&client, "events.k8s.io/v1", "Event", Some(NS)).await;
    let reasons: Vec<String> = events
        .list(&Default::default())
        .await
        .expect("events")
        .items
        .iter()
        .filter_map(|e| e.data["reason"].as_str().map(str::to_string))
        .collect();
    for want in ["ScaledUp", "ScaledDown"] {
        assert!(
            reasons.iter().any(|r| r == want),
            "no {want} event in {reasons:?}"
        );
    }

    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ns in [NS, "wasm-autoscaler"] {
        let _ = namespaces.delete(ns, &DeleteParams::default()).await;
    }
}

async fn wait<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<()>>,
{
    let start = Instant::now();
    while check().await.is_none() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn api_for(
    client: &Client,
    api_version: &str,
    kind: &str,
    ns: Option<&str>,
) -> Api<DynamicObject> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (resource, caps) = discovery::pinned_kind(client, &gvk)
        .await
        .unwrap_or_else(|e| panic!("the cluster does not serve {api_version} {kind}: {e}"));
    match (caps.scope, ns) {
        (discovery::Scope::Namespaced, Some(ns)) => {
            Api::namespaced_with(client.clone(), ns, &resource)
        }
        (discovery::Scope::Namespaced, None) => {
            Api::default_namespaced_with(client.clone(), &resource)
        }
        (discovery::Scope::Cluster, _) => Api::all_with(client.clone(), &resource),
    }
}

/// Server-side applies every document of a file from the repository.
async fn apply_file(client: &Client, file: &str, ns: Option<&str>, image: &str) {
    let text = std::fs::read_to_string(format!("{ROOT}/{file}")).expect("manifest exists");
    let text = text.replace("image: wasm-autoscaler:dev", &format!("image: {image}"));
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value: Value = serde::Deserialize::deserialize(doc).expect("valid YAML");
        if !value.is_null() {
            apply(client, &value, ns).await;
        }
    }
}

async fn apply(client: &Client, value: &Value, ns: Option<&str>) {
    let object: DynamicObject = serde_json::from_value(value.clone()).expect("a Kubernetes object");
    let types = object.types.clone().expect("apiVersion and kind");
    let namespace = ns.map(str::to_string).or_else(|| object.namespace());
    let api = api_for(
        client,
        &types.api_version,
        &types.kind,
        namespace.as_deref(),
    )
    .await;
    api.patch(
        &object.name_any(),
        &PatchParams::apply("wasm-autoscaler-e2e").force(),
        &Patch::Apply(&object),
    )
    .await
    .unwrap_or_else(|e| panic!("applying {} {}: {e}", types.kind, object.name_any()));
}
