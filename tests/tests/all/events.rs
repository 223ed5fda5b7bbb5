//! Events about autoscalers, sent through the deployed RBAC to the in-process
//! API server: a repeat counts on the first Event's series, anything else is
//! a new Event.

use serde_json::json;
use wasm_autoscaler::operator::crd::WasmAutoscaler;
use wasm_autoscaler::operator::events::{EventType, Recorder};
use wasm_autoscaler_tests::apiserver::ApiServer;

use crate::operator::{autoscaler, deployed_rbac, NS};

#[tokio::test]
async fn a_repeated_event_counts_on_its_series_and_a_new_note_is_a_new_event() {
    let server = ApiServer::start().await;
    server.enforce_rbac(deployed_rbac());
    let created = server.create(autoscaler("web", "web", 9, json!({})));
    let obj: WasmAutoscaler = serde_json::from_value(created).unwrap();
    let recorder = Recorder::new(server.client(), "wasm-autoscaler", "test");

    for note in ["denied", "denied", "denied", "timed out"] {
        recorder
            .publish(&obj, EventType::Warning, "ScaleFailed", note)
            .await
            .expect("published");
    }
    recorder
        .publish(&obj, EventType::Normal, "ScaleFailed", "denied")
        .await
        .expect("published");

    let events: Vec<_> = server
        .list("Event", NS)
        .into_iter()
        .filter(|e| e["regarding"]["name"] == "web")
        .collect();
    let mut seen: Vec<(String, String, i64)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_string(),
                e["note"].as_str().unwrap().to_string(),
                e["series"]["count"].as_i64().unwrap_or(1),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("Normal".into(), "denied".into(), 1),
            ("Warning".into(), "denied".into(), 3),
            ("Warning".into(), "timed out".into(), 1),
        ]
    );
    let series = events.iter().find(|e| e["series"].is_object()).unwrap();
    assert!(series["series"]["lastObservedTime"].is_string());
    assert_eq!(series["reportingController"], "wasm-autoscaler");
    assert_eq!(series["regarding"]["kind"], "WasmAutoscaler");
}

#[tokio::test]
async fn an_event_gone_from_the_server_is_created_again() {
    let server = ApiServer::start().await;
    let created = server.create(autoscaler("api", "api", 9, json!({})));
    let obj: WasmAutoscaler = serde_json::from_value(created).unwrap();
    let recorder = Recorder::new(server.client(), "wasm-autoscaler", "test");
    recorder
        .publish(&obj, EventType::Normal, "PolicyLoaded", "decider")
        .await
        .unwrap();
    let first = server.list("Event", NS)[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    // Events expire on the server after their TTL.
    server.delete("Event", NS, &first);
    recorder
        .publish(&obj, EventType::Normal, "PolicyLoaded", "decider")
        .await
        .expect("a new Event instead of a failed series update");
    let events = server.list("Event", NS);
    assert_eq!(events.len(), 1);
    assert_ne!(events[0]["metadata"]["name"], first.as_str());
}
