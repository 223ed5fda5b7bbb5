//! Three operator replicas share a few hundred autoscalers through shard
//! Leases on the in-process API server: every autoscaler has exactly one owner,
//! a killed replica's shards are taken over within the lease duration, and no
//! target is ever scaled by two replicas.
//!
//! The targets are Deployments, StatefulSets and a custom resource with a
//! `scale` subresource shaped like Argo Rollouts' `Rollout` (its selector read
//! from `status.selector`), so "any `scale` subresource" is exercised, not only
//! documented.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::http::Method;
use serde_json::{json, Value};
use wasm_autoscaler::operator::shards::{shard_lease_name, shard_of};
use wasm_autoscaler::operator::{self, telemetry::Metrics, LeaseSettings, Settings};
use wasm_autoscaler_tests::apiserver::ApiServer;

use crate::operator::{eventually, loopback_egress, runtime, Exporter, Operator, NS, OPERATOR_NS};

const SHARDS: u32 = 12;
const PER_KIND: usize = 80;
const LEASE: Duration = Duration::from_secs(2);
const RENEW: Duration = Duration::from_millis(500);
const REPLICAS: [&str; 3] = ["replica-a", "replica-b", "replica-c"];
/// The three kinds of target: API version, kind, plural (for request paths).
const KINDS: [(&str, &str, &str); 3] = [
    ("apps/v1", "Deployment", "deployments"),
    ("apps/v1", "StatefulSet", "statefulsets"),
    ("argoproj.io/v1alpha1", "Rollout", "rollouts"),
];

/// A replica sending its requests as `identity`, so the server tells them apart.
fn replica(server: &ApiServer, identity: &str) -> Operator {
    let mut settings = Settings::new(identity);
    settings.lease = Some(LeaseSettings {
        namespace: OPERATOR_NS.into(),
        name: "wasm-autoscaler-leader".into(),
        identity: identity.into(),
        duration: LEASE,
        renew_every: RENEW,
        shards: SHARDS,
    });
    settings.metric_timeout = Duration::from_secs(2);
    settings.egress = loopback_egress();
    let metrics = std::sync::Arc::new(Metrics::default());
    let task = tokio::spawn(operator::run(
        server.client_as(identity),
        runtime(),
        settings,
        std::sync::Arc::clone(&metrics),
        futures::future::pending(),
    ));
    Operator { task, metrics }
}

fn workload(api_version: &str, kind: &str, name: &str) -> Value {
    json!({
        "apiVersion": api_version, "kind": kind,
        "metadata": {"name": name, "namespace": NS},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}}},
    })
}

/// An autoscaler every 2 s sizing its target at `ceil(rps / 10)`, the metric read
/// from one endpoint (one request per tick, whatever the pod count).
fn autoscaler(name: &str, api_version: &str, kind: &str, port: u16) -> Value {
    json!({
        "apiVersion": "wasmautoscaler.dev/v1alpha1", "kind": "WasmAutoscaler",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "scaleTargetRef": {"apiVersion": api_version, "kind": kind, "name": name},
            "minReplicas": 1, "maxReplicas": 10, "interval": "2s", "warmup": "0s",
            "metrics": [{"name": "rps", "scrape": {"port": port, "metric": "rps",
                         "endpoints": [format!("127.0.0.1:{port}")]}}],
            "decider": {"bundled": "forecast", "config": crate::operator::sizing(10.0)},
            "behavior": {"scaleUp": {}, "scaleDown": {}},
        },
    })
}

/// Every autoscaler: its name and its target's kind and plural.
fn objects() -> Vec<(String, &'static str, &'static str, &'static str)> {
    KINDS
        .iter()
        .flat_map(|&(api, kind, plural)| {
            (0..PER_KIND).map(move |i| {
                (
                    format!("{}-{i}", plural.trim_end_matches('s')),
                    api,
                    kind,
                    plural,
                )
            })
        })
        .collect()
}

fn holder(server: &ApiServer, shard: u32) -> Option<String> {
    server
        .get(
            "Lease",
            OPERATOR_NS,
            &shard_lease_name("wasm-autoscaler-leader", shard, SHARDS),
        )
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
}

fn holders(server: &ApiServer) -> Vec<Option<String>> {
    (0..SHARDS).map(|s| holder(server, s)).collect()
}

fn held_in_metrics(op: &Operator, shard: u32) -> bool {
    op.metrics.encode().contains(&format!(
        "wasm_autoscaler_shard_held{{shard=\"{shard}\"}} 1"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_the_autoscalers_and_a_dead_ones_are_taken_over_without_double_scaling(
) {
    let server = ApiServer::start().await;
    let exporter = Exporter::start(25.0).await;
    let mut ops: BTreeMap<&str, Operator> = REPLICAS
        .iter()
        .map(|&id| (id, replica(&server, id)))
        .collect();

    // The replicas agree on an even split before any autoscaler exists, so the only
    // hand-over the autoscalers see is the one the test causes.
    eventually(
        "12 shards held, 4 by each replica",
        Duration::from_secs(30),
        || {
            let h = holders(&server);
            let even = REPLICAS
                .iter()
                .all(|id| h.iter().filter(|x| x.as_deref() == Some(*id)).count() == 4);
            even.then_some(())
        },
    )
    .await;

    for (name, api, kind, _) in objects() {
        server.create(workload(api, kind, &name));
        server.create(autoscaler(&name, api, kind, exporter.port));
    }
    let total = objects().len();
    let scaled_to = |server: &ApiServer, n: u64| {
        objects().iter().all(|(name, _, kind, _)| {
            server.get(kind, NS, name).unwrap()["spec"]["replicas"].as_u64() == Some(n)
        })
    };
    eventually(
        "every target at 3 replicas",
        Duration::from_secs(60),
        || scaled_to(&server, 3).then_some(()),
    )
    .await;

    // Every autoscaler names one owner and its shard; the owner's /metrics hold that shard
    // and no other replica's do.
    let owners = eventually(
        "every status names its owner",
        Duration::from_secs(30),
        || {
            let mut owners = BTreeMap::new();
            for (name, ..) in objects() {
                let status = server.get("WasmAutoscaler", NS, &name).unwrap()["status"].clone();
                let owner = status["ownedBy"].as_str()?.to_string();
                assert_eq!(
                    status["shard"].as_u64(),
                    Some(u64::from(shard_of(NS, &name, SHARDS))),
                    "{name}"
                );
                owners.insert(name, owner);
            }
            Some(owners)
        },
    )
    .await;
    for (name, owner) in &owners {
        let shard = shard_of(NS, name, SHARDS);
        assert_eq!(
            holder(&server, shard).as_deref(),
            Some(owner.as_str()),
            "{name}"
        );
        for (id, op) in &ops {
            assert_eq!(
                held_in_metrics(op, shard),
                id == owner,
                "{id} and shard {shard} of {name}"
            );
        }
    }
    // A replica updates its count when it next evaluates or forgets an autoscaler, which
    // on a loaded machine can trail the statuses read above: wait for the counts to agree.
    // An autoscaler evaluated by two replicas keeps the sum above the total for good.
    let owned = || -> i64 {
        ops.values()
            .map(|op| {
                let page = op.metrics.encode();
                let line = page
                    .lines()
                    .find(|l| l.starts_with("wasm_autoscaler_owned_autoscalers "))
                    .unwrap();
                line.rsplit(' ').next().unwrap().parse::<i64>().unwrap()
            })
            .sum()
    };
    eventually(
        "each autoscaler evaluated by exactly one replica",
        Duration::from_secs(15),
        || (owned() == total as i64).then_some(()),
    )
    .await;

    // Kill the replica that owns the most autoscalers, without releasing anything,
    // and raise the load at the same time.
    let victim = *REPLICAS
        .iter()
        .max_by_key(|id| owners.values().filter(|o| o == id).count())
        .unwrap();
    let orphans: Vec<&String> = owners
        .iter()
        .filter(|(_, o)| *o == victim)
        .map(|(n, _)| n)
        .collect();
    exporter.set(45.0);
    drop(ops.remove(victim));
    let killed = Instant::now();
    eventually(
        "the dead replica's shards taken over",
        Duration::from_secs(15),
        || {
            holders(&server)
                .iter()
                .all(|h| h.as_deref().is_some_and(|h| h != victim))
                .then_some(())
        },
    )
    .await;
    let takeover = killed.elapsed();
    // Its member lease is cleaned up, so dead replicas' leases do not pile up.
    eventually(
        "the dead replica's member lease deleted",
        Duration::from_secs(10),
        || {
            let left = server
                .list("Lease", OPERATOR_NS)
                .iter()
                .any(|l| l["spec"]["holderIdentity"] == victim);
            (!left).then_some(())
        },
    )
    .await;
    println!("{} autoscalers of {victim} taken over in {takeover:?} (lease {LEASE:?}, renewed every {RENEW:?})", orphans.len());
    assert!(
        // A lease is taken over once seen unchanged for its duration; seeing it takes
        // up to a renew period, and a busy test machine gets some slack on top.
        takeover <= LEASE + 4 * RENEW,
        "take-over took {takeover:?} with a {LEASE:?} lease renewed every {RENEW:?}"
    );
    eventually(
        "every target at 5 replicas",
        Duration::from_secs(60),
        || scaled_to(&server, 5).then_some(()),
    )
    .await;
    // The status of each orphan names its new owner (written just after the scale).
    eventually(
        "the orphans' statuses name a live owner",
        Duration::from_secs(10),
        || {
            orphans
                .iter()
                .all(|name| {
                    let status = server.get("WasmAutoscaler", NS, name).unwrap()["status"].clone();
                    status["ownedBy"]
                        .as_str()
                        .is_some_and(|owner| owner != victim && ops.contains_key(owner))
                })
                .then_some(())
        },
    )
    .await;

    // The scale history: each target was scaled exactly twice, 1 → 3 → 5, so no decision
    // was applied twice; and every write about an autoscaler (scale and status) came
    // from one replica at a time: its writers form runs, and none comes back.
    let seen = server.seen();
    for (name, _, _, plural) in objects() {
        let scale_path = format!("/namespaces/{NS}/{plural}/{name}/scale");
        let status_path = format!("/namespaces/{NS}/wasmautoscalers/{name}/status");
        let writes: Vec<_> = seen
            .iter()
            .filter(|s| s.method == Method::PATCH && s.status == 200)
            .filter(|s| s.path.ends_with(&scale_path) || s.path.ends_with(&status_path))
            .collect();
        let scales: Vec<u64> = writes
            .iter()
            .filter(|s| s.path.ends_with(&scale_path))
            .map(|s| {
                serde_json::from_str::<Value>(&s.body).unwrap()["spec"]["replicas"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(scales, [3, 5], "{name}: scale history");
        let mut runs: Vec<&str> = Vec::new();
        for w in &writes {
            if runs.last() != Some(&w.user.as_str()) {
                assert!(
                    !runs.contains(&w.user.as_str()),
                    "{name}: {} wrote again after {runs:?}",
                    w.user
                );
                runs.push(&w.user);
            }
        }
        assert!(runs.len() <= 2, "{name}: written by {runs:?}");
        // Killing the replica's task does not recall a write it had already handed to its
        // client (as a dying process does not recall bytes already sent): such a write may
        // land just after the kill, but never once its shard was taken over.
        let late: Vec<_> = writes
            .iter()
            .filter(|w| w.user == victim && w.at >= killed + takeover)
            .map(|w| (w.path.clone(), w.at - killed))
            .collect();
        assert!(
            late.is_empty(),
            "{name}: the dead replica wrote after its shards were taken over: {late:?}"
        );
    }
    drop(ops);
}
