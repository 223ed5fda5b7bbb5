//! The `scrape` metric source against several real HTTP exporters on
//! loopback: counter rates and resets, pods that come and go, a slow pod,
//! malformed exposition text, histograms across pods.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasm_autoscaler::boundary::credentials::Auth;
use wasm_autoscaler::boundary::egress::EgressPolicy;
use wasm_autoscaler::metrics::{Endpoint, Fetcher, MetricError, ScrapeState};
use wasm_autoscaler::operator::crd::{Aggregation, MetricSpec, ScrapeMetric};

/// A pod's metrics endpoint: serves `body` after `delay`.
struct Pod {
    body: Arc<Mutex<(String, Duration)>>,
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Pod {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Pod {
    async fn start(body: &str) -> Self {
        let state = Arc::new(Mutex::new((body.to_string(), Duration::ZERO)));
        let served = Arc::clone(&state);
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let (body, delay) = served.lock().unwrap().clone();
                async move {
                    tokio::time::sleep(delay).await;
                    body
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Pod {
            body: state,
            port,
            task,
        }
    }

    fn set(&self, body: &str) {
        self.body.lock().unwrap().0 = body.to_string();
    }

    fn slow(&self, delay: Duration) {
        self.body.lock().unwrap().1 = delay;
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint {
            id: format!("pod-{}", self.port),
            host: "127.0.0.1".into(),
            port: Some(self.port),
        }
    }
}

fn spec(metric: &str, aggregation: Aggregation, quantile: Option<f64>) -> MetricSpec {
    MetricSpec {
        name: "m".into(),
        prometheus: None,
        scrape: Some(ScrapeMetric {
            port: 1,
            path: "/metrics".into(),
            metric: metric.into(),
            aggregation,
            quantile,
            endpoints: Vec::new(),
        }),
        stale_after: None,
        activation_threshold: None,
    }
}

fn counter(v: f64) -> String {
    format!("# TYPE req_total counter\nreq_total{{code=\"200\"}} {v}\n")
}

/// Fetches and returns the value with bounds on the seconds since `since`.
async fn timed(
    fetcher: &Fetcher,
    spec: &MetricSpec,
    pods: &[Endpoint],
    state: &mut ScrapeState,
) -> (Result<f64, MetricError>, Instant, Instant) {
    let before = Instant::now();
    let r = fetcher.fetch(spec, &Auth::default(), pods, state).await;
    (r, before, Instant::now())
}

#[tokio::test]
async fn counters_become_rates_and_survive_resets_and_pod_churn() {
    let a = Pod::start(&counter(100.0)).await;
    let b = Pod::start(&counter(1000.0)).await;
    let fetcher = Fetcher::new(Duration::from_secs(2), EgressPolicy::unrestricted());
    let s = spec("req_total", Aggregation::Sum, None);
    let mut state = ScrapeState::default();
    let pods = [a.endpoint(), b.endpoint()];
    let (first, t0_before, t0_after) = timed(&fetcher, &s, &pods, &mut state).await;
    assert_eq!(first, Err(MetricError::FirstScrape));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // a counts 20 more; b restarted and counted 30 since.
    a.set(&counter(120.0));
    b.set(&counter(30.0));
    let (rate, t1_before, t1_after) = timed(&fetcher, &s, &pods, &mut state).await;
    let rate = rate.unwrap();
    // Each fetch timed its scrape somewhere within its call.
    let (lo, hi) = (
        50.0 / (t1_after - t0_before).as_secs_f64(),
        50.0 / (t1_before - t0_after).as_secs_f64(),
    );
    assert!(
        rate >= lo * 0.99 && rate <= hi * 1.01,
        "rate {rate} not in [{lo}, {hi}]"
    );

    // b goes away, c arrives: c has no rate yet, a still does.
    let c = Pod::start(&counter(5.0)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.set(&counter(130.0));
    let pods = [a.endpoint(), c.endpoint()];
    let rate = fetcher
        .fetch(&s, &Auth::default(), &pods, &mut state)
        .await
        .unwrap();
    assert!(
        rate > 0.0 && rate < 10.0 / 0.3 * 1.01,
        "only a's 10 more count: {rate}"
    );
}

#[tokio::test]
async fn gauges_aggregate_and_a_slow_or_broken_pod_does_not_break_the_rest() {
    let a = Pod::start("# TYPE q gauge\nq 4\n").await;
    let b = Pod::start("# TYPE q gauge\nq 10\n").await;
    let slow = Pod::start("# TYPE q gauge\nq 1000\n").await;
    slow.slow(Duration::from_secs(5));
    let broken = Pod::start("<html>502 Bad Gateway</html>\n").await;
    let fetcher = Fetcher::new(Duration::from_millis(300), EgressPolicy::unrestricted());
    let pods = [
        a.endpoint(),
        b.endpoint(),
        slow.endpoint(),
        broken.endpoint(),
    ];
    let mut state = ScrapeState::default();
    for (aggregation, want) in [
        (Aggregation::Sum, 14.0),
        (Aggregation::Avg, 7.0),
        (Aggregation::Max, 10.0),
        (Aggregation::Min, 4.0),
    ] {
        let started = Instant::now();
        let v = fetcher
            .fetch(
                &spec("q", aggregation, None),
                &Auth::default(),
                &pods,
                &mut state,
            )
            .await;
        assert_eq!(v, Ok(want), "{aggregation:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "pods are scraped concurrently"
        );
    }
    // Alone, each bad pod is a clear error.
    let err = fetcher
        .fetch(
            &spec("q", Aggregation::Sum, None),
            &Auth::default(),
            &[slow.endpoint()],
            &mut state,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "request", "{err}");
    let err = fetcher
        .fetch(
            &spec("q", Aggregation::Sum, None),
            &Auth::default(),
            &[broken.endpoint()],
            &mut state,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "malformed");
    assert!(
        err.to_string()
            .contains("line 1 is not in the exposition format"),
        "{err}"
    );
    let err = fetcher
        .fetch(
            &spec("absent", Aggregation::Sum, None),
            &Auth::default(),
            &[a.endpoint()],
            &mut state,
        )
        .await
        .unwrap_err();
    assert_eq!(err, MetricError::NotExposed("absent".into()));
    assert_eq!(
        fetcher
            .fetch(
                &spec("q", Aggregation::Sum, None),
                &Auth::default(),
                &[],
                &mut state
            )
            .await,
        Err(MetricError::NoPods)
    );
    let negative = Pod::start("q -3\n").await;
    assert_eq!(
        fetcher
            .fetch(
                &spec("q", Aggregation::Sum, None),
                &Auth::default(),
                &[negative.endpoint()],
                &mut state
            )
            .await,
        Err(MetricError::Invalid(-3.0))
    );
}

fn histogram(low: f64, mid: f64, all: f64) -> String {
    format!(
        "# TYPE lat histogram\nlat_bucket{{le=\"0.1\"}} {low}\nlat_bucket{{le=\"0.5\"}} {mid}\nlat_bucket{{le=\"+Inf\"}} {all}\nlat_count {all}\nlat_sum 1\n"
    )
}

#[tokio::test]
async fn histogram_quantiles_cover_the_observations_between_scrapes_across_pods() {
    let a = Pod::start(&histogram(1000.0, 1000.0, 1000.0)).await;
    let b = Pod::start(&histogram(0.0, 0.0, 0.0)).await;
    let fetcher = Fetcher::new(Duration::from_secs(2), EgressPolicy::unrestricted());
    let s = spec("lat", Aggregation::Sum, Some(0.7));
    let mut state = ScrapeState::default();
    let pods = [a.endpoint(), b.endpoint()];
    assert_eq!(
        fetcher.fetch(&s, &Auth::default(), &pods, &mut state).await,
        Err(MetricError::FirstScrape)
    );
    // Since then: a saw 50 fast requests; b saw 40 medium and 10 slow ones.
    a.set(&histogram(1050.0, 1050.0, 1050.0));
    b.set(&histogram(0.0, 40.0, 50.0));
    let p70 = fetcher
        .fetch(&s, &Auth::default(), &pods, &mut state)
        .await
        .unwrap();
    // 100 observations: 50 ≤ 0.1, 90 ≤ 0.5 → rank 70 is halfway through (0.1, 0.5].
    assert!((p70 - 0.3).abs() < 1e-9, "{p70}");
    // Nothing new: no observations to take a quantile of.
    assert_eq!(
        fetcher.fetch(&s, &Auth::default(), &pods, &mut state).await,
        Err(MetricError::NoObservations)
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    /// Whatever a pod serves, parsing gives a value or an error, never a panic.
    #[test]
    fn exposition_parsing_never_panics(text in "\\PC{0,400}") {
        let _ = wasm_autoscaler::metrics::parse_exposition(&text, "m");
    }

    /// Text built from exposition-like pieces (types, labels, odd numbers) never panics either.
    #[test]
    fn near_valid_exposition_never_panics(
        lines in proptest::collection::vec(
            proptest::prop_oneof![
                "# TYPE m (counter|gauge|histogram|summary|untyped|bogus)",
                "m(_bucket|_sum|_count)?(\\{(le|code)=\"[-+0-9.eInfNa]{0,6}\"\\})? [-+0-9.eInfNa]{0,10}( [0-9]{0,14})?",
                "m\\{[a-z]{0,3}=?\"?[^\\n]{0,8}\\}? ?[^\\n]{0,12}",
                "#[^\\n]{0,20}",
            ],
            0..30,
        )
    ) {
        let text = lines.join("\n");
        let _ = wasm_autoscaler::metrics::parse_exposition(&text, "m");
    }
}
