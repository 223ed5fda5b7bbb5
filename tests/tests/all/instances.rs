//! Instances shared within a namespace: the operator's policies keep idle
//! instances in the runtime's pool, and the pool's two promises hold, in the
//! runtime and in the operator — an instance serves only the namespace it was
//! made for, and a call that failed never hands its instance to the next one. The `memory` mode of the
//! misbehave guest counts its calls in guest memory, so a reused instance
//! shows in its reason.

use std::time::Duration;

use serde_json::{json, Value};
use wasm_autoscaler::operator::Settings;
use wasm_autoscaler::runtime::{
    synthetic, InstanceMode, Policy, PoolLimits, Runtime, RuntimeConfig, RuntimeError, Session,
};
use wasm_autoscaler_tests::apiserver::ApiServer;
use wasm_autoscaler_tests::fixtures::base64;

use crate::guests::{misbehave, misbehave_policy, mode};
use crate::operator::{
    autoscaler, deployment, eventually, loopback_egress, start_with, status_writes, Exporter, WAIT,
};

fn pooled_runtime(pool: PoolLimits) -> Runtime {
    Runtime::new(RuntimeConfig {
        instance_mode: InstanceMode::PerTenant,
        pool,
        ..RuntimeConfig::default()
    })
    .unwrap()
}

/// One target's session of `policy` in `namespace`.
fn target(policy: &Policy, namespace: &str) -> Session {
    Session::new(policy.clone().shared_within(namespace))
}

fn call(session: &mut Session, mode_name: &str) -> Result<String, RuntimeError> {
    let request = synthetic::decide_request(&mode(mode_name), synthetic::forecast_of_rps());
    session.with(|i| i.decide(&request)).map(|d| d.reason)
}

#[test]
fn an_idle_instance_serves_the_next_target_of_its_namespace_and_of_no_other() {
    let rt = pooled_runtime(PoolLimits::default());
    let policy = misbehave_policy(&rt);
    let mut targets = [
        target(&policy, "team-a"),
        target(&policy, "team-a"),
        target(&policy, "team-b"),
    ];
    let reasons: Vec<String> = [0, 1, 2, 0, 2]
        .into_iter()
        .map(|k| call(&mut targets[k], "memory").unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "instance call 1", // team-a's instance is made
            "instance call 2", // and serves team-a's other target
            "instance call 1", // team-b gets its own
            "instance call 3",
            "instance call 2",
        ]
    );
    assert_eq!(rt.pooled().0, 2, "one idle instance per namespace");

    // An untagged policy (as `simulate` loads them) keeps an instance per target.
    let (mut x, mut y) = (Session::new(policy.clone()), Session::new(policy.clone()));
    assert_eq!(call(&mut x, "memory").unwrap(), "instance call 1");
    assert_eq!(call(&mut y, "memory").unwrap(), "instance call 1");
    assert_eq!(call(&mut x, "memory").unwrap(), "instance call 2");
}

#[test]
fn a_failed_call_never_hands_its_instance_to_the_next() {
    let rt = pooled_runtime(PoolLimits::default());
    let policy = misbehave_policy(&rt);
    let (mut good, mut bad) = (target(&policy, "team-a"), target(&policy, "team-a"));
    assert_eq!(call(&mut good, "memory").unwrap(), "instance call 1");
    assert_eq!(call(&mut good, "memory").unwrap(), "instance call 2");
    // The bad target takes the idle instance, and its call traps.
    assert!(matches!(call(&mut bad, "trap"), Err(RuntimeError::Trap(_))));
    assert_eq!(rt.pooled().0, 0, "the trapped instance is gone");
    assert_eq!(call(&mut good, "memory").unwrap(), "instance call 1");
    // An error result is a failure too.
    assert!(matches!(
        call(&mut bad, "no-such-mode"),
        Err(RuntimeError::Policy(_))
    ));
    assert_eq!(call(&mut good, "memory").unwrap(), "instance call 1");
}

#[test]
fn idle_instances_stay_within_the_memory_budget() {
    let probe = pooled_runtime(PoolLimits::default());
    let mut one = target(&misbehave_policy(&probe), "probe");
    call(&mut one, "memory").unwrap();
    let (_, size) = probe.pooled();
    assert!(size > 0);

    // A budget for two instances, and five namespaces each leaving one behind.
    let rt = pooled_runtime(PoolLimits {
        idle_bytes: 2 * size,
        idle_per_key: 4,
    });
    let policy = misbehave_policy(&rt);
    let mut targets: Vec<Session> = (0..5)
        .map(|k| target(&policy, &format!("team-{k}")))
        .collect();
    for t in &mut targets {
        assert_eq!(call(t, "memory").unwrap(), "instance call 1");
    }
    assert_eq!(rt.pooled(), (2, 2 * size));
    // The two most recently used were kept; the oldest were dropped.
    assert_eq!(call(&mut targets[4], "memory").unwrap(), "instance call 2");
    assert_eq!(call(&mut targets[0], "memory").unwrap(), "instance call 1");

    // No budget: every call gets a fresh instance.
    let rt = pooled_runtime(PoolLimits {
        idle_bytes: 0,
        idle_per_key: 4,
    });
    let mut t = target(&misbehave_policy(&rt), "team-a");
    assert_eq!(call(&mut t, "memory").unwrap(), "instance call 1");
    assert_eq!(call(&mut t, "memory").unwrap(), "instance call 1");
    assert_eq!(rt.pooled().0, 0);
}

/// An autoscaler in `namespace` whose decider is the misbehave guest in mode `memory`.
fn counting_autoscaler(namespace: &str, name: &str, port: u16) -> Value {
    let mut a = autoscaler(name, name, port, json!({}));
    a["metadata"]["namespace"] = json!(namespace);
    a["spec"]["decider"] = json!({
        "configMapRef": {"name": "counting", "key": "decider.wasm"},
        "config": {"mode": "memory"},
    });
    a
}

fn in_namespace(mut object: Value, namespace: &str) -> Value {
    object["metadata"]["namespace"] = json!(namespace);
    object
}

/// The call counts an autoscaler's status writes reported, in order.
fn counts(server: &ApiServer, namespace: &str, name: &str) -> Vec<u32> {
    status_writes(server, namespace, name)
        .into_iter()
        .filter_map(|(_, status)| {
            status["lastDecision"]["reason"]
                .as_str()?
                .strip_prefix("instance call ")?
                .parse()
                .ok()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_shares_instances_within_a_namespace_and_never_across() {
    let server = ApiServer::start().await;
    let exporter = Exporter::start(40.0).await;
    for ns in ["team-a", "team-b"] {
        server.create(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "counting", "namespace": ns},
            "binaryData": {"decider.wasm": base64(&misbehave())},
        }));
    }
    for name in ["a1", "a2"] {
        server.create(in_namespace(deployment(name, 2), "team-a"));
        server.create(counting_autoscaler("team-a", name, exporter.port));
    }
    // Each tick's reason is read from its status write.
    let mut settings = Settings::new("solo");
    settings.egress = loopback_egress();
    settings.status_refresh = Duration::ZERO;
    let _operator = start_with(&server, settings);
    eventually("six decisions of a1", WAIT, || {
        (counts(&server, "team-a", "a1").len() >= 6).then_some(())
    })
    .await;

    server.create(in_namespace(deployment("b1", 2), "team-b"));
    server.create(counting_autoscaler("team-b", "b1", exporter.port));
    let first = eventually("b1's first decision", WAIT, || {
        counts(&server, "team-b", "b1").first().copied()
    })
    .await;
    assert_eq!(
        first, 1,
        "team-b's first call ran in an instance team-a had used"
    );

    // Within team-a, a target's k-th call counting past k ran in an instance the other had used.
    let shared = ["a1", "a2"].iter().any(|name| {
        counts(&server, "team-a", name)
            .iter()
            .enumerate()
            .any(|(k, c)| *c as usize > k + 1)
    });
    assert!(
        shared,
        "team-a's targets never shared an instance: a1 {:?}, a2 {:?}",
        counts(&server, "team-a", "a1"),
        counts(&server, "team-a", "a2")
    );
}
