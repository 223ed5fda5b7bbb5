//! Scale to zero and back through the real operator: a Prometheus metric
//! (a real Prometheus server scraping the test's exporter) wakes a target
//! idling at zero replicas as soon as it crosses its activation threshold,
//! a target with traffic is never sent to zero whatever its decider says,
//! and an idle one goes to zero only after its idle period. At zero, the
//! pods' own metric is unavailable, never a zero.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wasm_autoscaler_tests::apiserver::ApiServer;

use crate::operator::{
    deployment, eventually, loopback_egress, replicas, start_with, status_writes, NS, WAIT,
};
use crate::prometheus::{prometheus, set_queue_depth};

/// An autoscaler that may idle at zero: `queue` wakes it above 0.5, and the
/// decider sizes on `decide_on` at 2 per pod.
fn idling(name: &str, prometheus: &str, decide_on: &str) -> Value {
    json!({
        "apiVersion": "wasmautoscaler.dev/v1alpha1", "kind": "WasmAutoscaler",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": 0, "maxReplicas": 10, "interval": "1s", "warmup": "0s", "idleAfter": "3s",
            "metrics": [
                {"name": "queue", "activationThreshold": 0.5,
                 "prometheus": {"address": prometheus, "query": "queue_depth"}},
                {"name": "nothing", "prometheus": {"address": prometheus, "query": "queue_depth * 0"}},
                {"name": "rps", "scrape": {"port": 9, "metric": "rps"}},
            ],
            "decider": {"bundled": "forecast", "config": {
                "metric": decide_on, "capacityPerPod": 2, "targetUtilization": 1.0, "scaleDownTolerance": 0.0}},
            "behavior": {"scaleUp": {}, "scaleDown": {}},
        },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metric_wakes_the_target_from_zero_and_idleness_sends_it_back() {
    let address = tokio::task::spawn_blocking(|| prometheus().address.clone())
        .await
        .unwrap();
    set_queue_depth(0.0);
    // Let Prometheus see the zero before anything starts.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let server = ApiServer::start().await;
    server.create(deployment("sized", 0));
    server.create(deployment("floor", 0));
    server.create(idling("sized", &address, "queue"));
    // This one's decider always says 0: only the activation rules keep it up.
    server.create(idling("floor", &address, "nothing"));
    let mut settings = wasm_autoscaler::operator::Settings::new("zero");
    settings.metric_timeout = Duration::from_secs(2);
    settings.egress = loopback_egress();
    let _op = start_with(&server, settings);

    // At zero with no traffic: held, and the pods' metric is unavailable, not 0.
    let (_, _, message) = eventually("a tick at zero", WAIT, || {
        server
            .condition(NS, "sized", "MetricsAvailable")
            .filter(|c| c.0 == "False")
    })
    .await;
    assert!(
        message.contains("rps: no ready pods to scrape"),
        "{message}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        (replicas(&server, "sized"), replicas(&server, "floor")),
        (0, 0)
    );

    // Traffic: both wake at once, to what the decider wants (at least one).
    set_queue_depth(5.0);
    let woken = Instant::now();
    eventually("woken", WAIT, || {
        (replicas(&server, "sized") > 0 && replicas(&server, "floor") > 0).then_some(())
    })
    .await;
    let to_first_replica = woken.elapsed();
    eventually("sized for the queue", WAIT, || {
        (replicas(&server, "sized") == 3).then_some(())
    })
    .await;
    assert_eq!(replicas(&server, "floor"), 1);
    // The event and the status follow the scale PATCH, so each is waited for.
    let activated = eventually("an Activated event", WAIT, || {
        server
            .events_about(NS, "sized")
            .into_iter()
            .find(|(r, _)| r == "Activated")
    })
    .await;
    assert!(
        activated.1.contains("queue is 5") && activated.1.contains("threshold 0.5"),
        "{activated:?}"
    );
    // The next tick's status has no transition, so the writes are searched.
    let transition = eventually("floor's activation in a status write", WAIT, || {
        status_writes(&server, NS, "floor")
            .into_iter()
            .find_map(|(_, s)| s["lastDecision"]["transition"].as_str().map(str::to_string))
    })
    .await;
    assert!(transition.starts_with("activated: queue"), "{transition}");

    // Traffic goes on well past the idle period: the decider's 0 never wins.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        replicas(&server, "floor"),
        1,
        "a target with traffic stays up"
    );

    // No traffic: zero, but only after the idle period.
    set_queue_depth(0.0);
    let quiet = Instant::now();
    eventually("idled", WAIT, || {
        (replicas(&server, "sized") == 0 && replicas(&server, "floor") == 0).then_some(())
    })
    .await;
    let to_zero = quiet.elapsed();
    println!(
        "scale to zero: first replica {to_first_replica:.1?} after the metric rose (Prometheus scrapes every 1 s, ticks every 1 s); zero {to_zero:.1?} after it fell (idleAfter 3 s)"
    );
    assert!(
        to_zero >= Duration::from_secs(3),
        "went to zero after {to_zero:?}, inside the 3 s idle period"
    );
    eventually("an Idled event", WAIT, || {
        server
            .events_about(NS, "floor")
            .iter()
            .any(|(r, n)| r == "Idled" && n.contains("idled"))
            .then_some(())
    })
    .await;
}
