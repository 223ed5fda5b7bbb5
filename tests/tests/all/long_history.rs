//! The long history through the operator: filled from a real Prometheus
//! (the `prometheus` module's server) when an autoscaler is first evaluated,
//! so a restarted operator's predictor sees the long history the one before
//! it saw. The predictor is the `guest-history-echo` test guest, which
//! forecasts what it read: the number of steps, the newest step's end and
//! the sum of the values.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wasm_autoscaler_tests::apiserver::ApiServer;
use wasm_autoscaler_tests::fixtures::base64;

use wasm_autoscaler::pipeline::{LongHistorySpec, Observation, Pipeline, PolicySpec, TargetSpec};
use wasm_autoscaler::runtime::{Runtime, RuntimeConfig};
use wasm_autoscaler::{bundled, safety::Behavior};

use crate::guests::history_echo;
use crate::operator::{
    deployment, eventually, start_operator, start_operator_writing_every_tick, status_writes, NS,
    WAIT,
};
use crate::prometheus::prometheus;

/// Seconds per long-history step in these tests.
const STEP_S: f64 = 5.0;

/// An autoscaler on Prometheus' `requests_total` (growing 10/s), keeping six 5 s steps.
fn autoscaler(address: &str) -> Value {
    json!({
        "apiVersion": "wasmautoscaler.dev/v1alpha1", "kind": "WasmAutoscaler",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 1, "maxReplicas": 3, "interval": "1s", "warmup": "0s",
            "metrics": [{"name": "load", "prometheus": {"address": address, "query": "requests_total"}}],
            "longHistory": {"step": "5s", "window": "30s"},
            "predictor": {"configMapRef": {"name": "echo", "key": "predictor.wasm"}, "config": {"metric": "load"}},
            "decider": {"bundled": "forecast", "config": {"metric": "load", "capacityPerPod": 1e9}},
        },
    })
}

/// What the echo predictor saw, from a status: (steps, newest step end in s, sum).
fn seen_by_predictor(status: &Value) -> Option<(f64, f64, f64)> {
    let forecast = status["lastDecision"]["forecast"].as_array()?;
    let value = |metric: &str| {
        forecast
            .iter()
            .find(|f| f["metric"] == metric)
            .and_then(|f| f["value"].as_f64())
    };
    Some((
        value("long-steps")?,
        value("long-newest-s")?,
        value("long-sum")?,
    ))
}

/// Every status patch's view, in order, with when it arrived.
fn views(server: &ApiServer) -> Vec<(Instant, (f64, f64, f64))> {
    status_writes(server, NS, "web")
        .into_iter()
        .filter_map(|(at, status)| Some((at, seen_by_predictor(&status)?)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_operator_refills_the_long_history_and_forecasts_as_before() {
    let address = tokio::task::spawn_blocking(|| prometheus().address.clone())
        .await
        .unwrap();
    let server = ApiServer::start().await;
    server.create(deployment("web", 1));
    server.create(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "echo", "namespace": NS, "labels": {"wasmautoscaler.dev/policy": "true"}},
        "binaryData": {"predictor.wasm": base64(&history_echo())},
    }));
    server.create(autoscaler(&address));
    // Each tick's forecast is read from its status write.
    let mut operator = Some(start_operator_writing_every_tick(&server));
    // Three settled steps: the window is filling from Prometheus, step by step.
    eventually("three long-history steps", Duration::from_secs(60), || {
        views(&server)
            .last()
            .filter(|(_, v)| v.0 >= 3.0)
            .map(|_| ())
    })
    .await;

    // A restart lands between two step ends unless one settles meanwhile:
    // then the views differ by design, and the restart is tried again.
    for attempt in 1..=4 {
        let before = *views(&server).last().map(|(_, v)| v).unwrap();
        drop(operator.take());
        // A status write the stopped replica had in flight lands before this mark.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let restarted = Instant::now();
        operator = Some(start_operator_writing_every_tick(&server));
        // A restart compiles the policy and backfills from Prometheus again: on a busy
        // two-core CI machine that once took longer than `WAIT`.
        let first = eventually(
            "the restarted operator's first decision",
            Duration::from_secs(60),
            || {
                views(&server)
                    .into_iter()
                    .find(|(at, _)| *at > restarted)
                    .map(|(_, v)| v)
            },
        )
        .await;
        let (steps, newest, _) = first;
        assert!(
            steps >= before.0,
            "attempt {attempt}: the first forecast after the restart saw {steps} steps, {} before: the long history was not refilled",
            before.0
        );
        assert_eq!(newest % STEP_S, 0.0, "steps end on multiples of the step");
        assert!(steps <= 6.0, "the window holds six steps, saw {steps}");
        if newest == before.1 {
            assert_eq!(
                first, before,
                "attempt {attempt}: (steps, newest step end, sum) after the restart vs before"
            );
            println!(
                "long history across a restart: {steps} steps, newest ending at {newest} s, sum {}: the same before and after (attempt {attempt})",
                first.2
            );
            return;
        }
        assert!(
            newest > before.1,
            "time only moves on: {first:?} after {before:?}"
        );
    }
    panic!("a step settled during each of four restarts");
}

/// What the echo predictor forecast in a pipeline's report: (steps, newest step end in s, sum).
fn echoed(report: &wasm_autoscaler::pipeline::TickReport) -> (f64, f64, f64) {
    let value = |name: &str| {
        report
            .forecasts
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.points[0].value)
            .unwrap_or_else(|| panic!("no `{name}` forecast: {:?}", report.predictor_error))
    };
    (
        value("long-steps"),
        value("long-newest-s"),
        value("long-sum"),
    )
}

/// The path `simulate` and `scrape` metrics take: the pipeline averages its
/// own samples into steps and serves them to a compiled component through
/// the `long-history` import.
#[test]
fn the_pipeline_averages_its_samples_into_steps_and_serves_them_to_the_policy() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let spec = |policy, config: &str| PolicySpec {
        policy,
        config: config.into(),
    };
    let mut pipeline = Pipeline::new(TargetSpec {
        min_replicas: 1,
        max_replicas: 10,
        interval_ms: 15_000,
        warmup_ms: 60_000,
        history_len: 16,
        long_history: Some(LongHistorySpec {
            step_ms: 60_000,
            window_ms: 180_000,
            filled: Vec::new(),
        }),
        metrics: vec!["rps".into()],
        predictor: Some(spec(
            rt.load(&history_echo()).unwrap(),
            r#"{"metric": "rps"}"#,
        )),
        schedule: None,
        decider: spec(
            rt.load(bundled::FORECAST).unwrap(),
            r#"{"metric": "rps", "capacityPerPod": 10}"#,
        ),
        behavior: Behavior::default(),
        zero: Default::default(),
    });
    // Ticks every 15 s; in minute k the load is k (and one tick has no value).
    let mut last = None;
    for tick in 1..=24u64 {
        let t_ms = tick * 15_000;
        let minute = t_ms.div_ceil(60_000);
        let value = (tick != 6).then_some(minute as f64);
        last = Some(pipeline.evaluate(&Observation {
            now_ms: 1_800_000_000_000 + t_ms,
            current_replicas: 1,
            ready_replicas: 1,
            warming_replicas: 0,
            metrics: vec![("rps".into(), value)],
        }));
        if tick == 4 {
            // Minute 1 is still open at its last tick: nothing to serve yet.
            assert_eq!(echoed(last.as_ref().unwrap()).0, 0.0);
        }
    }
    // Minutes 1–5 have closed (minute 6 is open); the 3-minute window keeps minutes 3, 4 and 5.
    let (steps, newest_s, sum) = echoed(last.as_ref().unwrap());
    assert_eq!(steps, 3.0);
    assert_eq!(newest_s, 1_800_000_000.0 + 300.0);
    assert_eq!(sum, 3.0 + 4.0 + 5.0);
}

/// A query whose long history cannot be had (Prometheus refuses the averaging
/// subquery, as it does for a scalar) is asked for again a minute later, not at every tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_long_history_query_is_not_repeated_every_tick() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let (averaged, instant) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (a, i) = (Arc::clone(&averaged), Arc::clone(&instant));
    let app = axum::Router::new()
        .route(
            "/api/v1/query",
            axum::routing::get(move || {
                i.fetch_add(1, Ordering::Relaxed);
                async { r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"5"]}}"# }
            }),
        )
        .route(
            "/api/v1/query_range",
            axum::routing::get(move |q: axum::extract::RawQuery| {
                if q.0.unwrap_or_default().contains("avg_over_time") {
                    a.fetch_add(1, Ordering::Relaxed);
                }
                async {
                    r#"{"status":"error","errorType":"bad_data","error":"subquery is only allowed on instant vector, got scalar"}"#
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let server = ApiServer::start().await;
    server.create(deployment("web", 1));
    let mut spec = autoscaler(&address);
    spec["spec"]["metrics"][0]["prometheus"]["query"] = json!("scalar(up)");
    spec["spec"]["longHistory"] = json!({"step": "1s", "window": "20s"});
    spec["spec"]["predictor"] = json!({"bundled": "seasonal", "config": {"metric": "load"}});
    server.create(spec);
    let _operator = start_operator(&server, "solo", false);
    eventually("six ticks", WAIT, || {
        (instant.load(Ordering::Relaxed) >= 6).then_some(())
    })
    .await;
    assert_eq!(
        averaged.load(Ordering::Relaxed),
        1,
        "the refused long-history query is asked once in {} ticks",
        instant.load(Ordering::Relaxed)
    );
}
