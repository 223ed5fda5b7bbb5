//! What one tick of the `scrape` source costs for a target of 200 pods on
//! loopback, next to parsing the same 200 bodies without the network.
//!
//! Run: `cargo bench -p wasm-autoscaler --bench scrape`.

use std::time::{Duration, Instant};

use wasm_autoscaler::boundary::credentials::Auth;
use wasm_autoscaler::boundary::egress::EgressPolicy;
use wasm_autoscaler::metrics::{parse_exposition, Endpoint, Fetcher, ScrapeState};
use wasm_autoscaler::operator::crd::{Aggregation, MetricSpec, ScrapeMetric};

const PODS: usize = 200;
const TICKS: usize = 30;

/// A pod's page: the counter the autoscaler reads among ~150 other series,
/// about the size of a typical Go or JVM service's.
fn page(pod: usize) -> String {
    let mut s = String::new();
    for i in 0..50 {
        s.push_str(&format!(
            "# HELP other_{i} Other series.\n# TYPE other_{i} gauge\n"
        ));
        for l in 0..3 {
            s.push_str(&format!(
                "other_{i}{{pod=\"{pod}\",l=\"{l}\"}} {}.5\n",
                i * l
            ));
        }
    }
    s.push_str(&format!(
        "# TYPE http_requests_total counter\nhttp_requests_total{{code=\"200\"}} {}\n",
        1000 + pod
    ));
    s
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let endpoints: Vec<Endpoint> = rt.block_on(async {
        let mut endpoints = Vec::new();
        for pod in 0..PODS {
            let body = page(pod);
            let app = axum::Router::new().route(
                "/metrics",
                axum::routing::get(move || {
                    let b = body.clone();
                    async move { b }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            endpoints.push(Endpoint {
                id: format!("pod-{pod}"),
                host: "127.0.0.1".into(),
                port: Some(port),
            });
        }
        endpoints
    });
    let spec = MetricSpec {
        name: "rps".into(),
        prometheus: None,
        scrape: Some(ScrapeMetric {
            port: 0,
            path: "/metrics".into(),
            metric: "http_requests_total".into(),
            aggregation: Aggregation::Sum,
            quantile: None,
            endpoints: Vec::new(),
        }),
        stale_after: None,
        activation_threshold: None,
    };
    let fetcher = Fetcher::new(Duration::from_secs(5), EgressPolicy::unrestricted());
    let mut state = ScrapeState::default();
    let mut ticks = Vec::new();
    rt.block_on(async {
        // The first tick only records counters.
        let _ = fetcher
            .fetch(&spec, &Auth::default(), &endpoints, &mut state)
            .await;
        for _ in 0..TICKS {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let started = Instant::now();
            fetcher
                .fetch(&spec, &Auth::default(), &endpoints, &mut state)
                .await
                .unwrap();
            ticks.push(started.elapsed());
        }
    });
    let pages: Vec<String> = (0..PODS).map(page).collect();
    let mut parses = Vec::new();
    for _ in 0..TICKS {
        let started = Instant::now();
        for p in &pages {
            parse_exposition(p, "http_requests_total").unwrap();
        }
        parses.push(started.elapsed());
    }
    let tick = median(ticks);
    let parse = median(parses);
    println!(
        "scrape source, {PODS} pods on loopback, {} bytes per page, median of {TICKS} ticks",
        pages[0].len()
    );
    println!(
        "  one tick (scrape all, parse, rate, sum): {:>9.2} ms  ({:.1} µs per pod)",
        tick.as_secs_f64() * 1e3,
        tick.as_secs_f64() * 1e6 / PODS as f64
    );
    println!(
        "  parsing the same {PODS} pages alone:     {:>9.2} ms  ({:.1} µs per pod)",
        parse.as_secs_f64() * 1e3,
        parse.as_secs_f64() * 1e6 / PODS as f64
    );
    println!(
        "  tick / parse-only: {:.1}x",
        tick.as_secs_f64() / parse.as_secs_f64()
    );
}
