//! The `prometheus` metric source against a real Prometheus server
//! (Debian's `prometheus` package, installed by `scripts/setup --test-deps`),
//! started on a loopback port with a generated config, scraping an exporter
//! served by the test itself.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use wasm_autoscaler::boundary::credentials::Auth;
use wasm_autoscaler::boundary::egress::EgressPolicy;
use wasm_autoscaler::metrics::{Fetcher, MetricError, ScrapeState};
use wasm_autoscaler::operator::crd::{Aggregation, MetricSpec, PrometheusMetric};
use wasm_autoscaler_tests::fixtures::{free_port, serve_text, which};

/// A Prometheus server for this test binary; killed when the binary exits.
pub(crate) struct Prometheus {
    child: Child,
    pub(crate) address: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `queue_depth` gauge the exporter publishes, set by the test that uses it.
static QUEUE_DEPTH: AtomicU64 = AtomicU64::new(0);

/// Sets the exporter's `queue_depth` (Prometheus sees it at its next scrape, within 1 s).
pub(crate) fn set_queue_depth(value: f64) {
    QUEUE_DEPTH.store(value.to_bits(), Ordering::Relaxed);
}

/// The exporter's series, as functions of the seconds since it started:
/// `inflight` 7; `lagging` 5, stamped 30 s in the past; `requests_total`
/// growing by 10/s; `latency_seconds` observations growing by 10/s, half
/// ≤ 0.1 s, 90% ≤ 0.5 s; and `queue_depth`, whatever [`set_queue_depth`] set.
fn exposition(t: f64) -> String {
    let lagging_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        - 30_000;
    format!(
        "# TYPE inflight gauge\ninflight 7\n# TYPE lagging gauge\nlagging 5 {lagging_ms}\n\
         # TYPE requests_total counter\nrequests_total{{code=\"200\"}} {}\n\
         # TYPE latency_seconds histogram\n\
         latency_seconds_bucket{{le=\"0.1\"}} {}\nlatency_seconds_bucket{{le=\"0.5\"}} {}\n\
         latency_seconds_bucket{{le=\"+Inf\"}} {}\nlatency_seconds_sum {}\nlatency_seconds_count {}\n\
         # TYPE queue_depth gauge\nqueue_depth {}\n",
        10.0 * t,
        5.0 * t,
        9.0 * t,
        10.0 * t,
        2.0 * t,
        10.0 * t,
        f64::from_bits(QUEUE_DEPTH.load(Ordering::Relaxed))
    )
}

/// The shared server, started once, with at least `history` seconds of samples.
pub(crate) fn prometheus() -> &'static Prometheus {
    static SERVER: OnceLock<Prometheus> = OnceLock::new();
    SERVER.get_or_init(|| {
        let binary = which("prometheus").unwrap_or_else(|| {
            panic!("the `prometheus` binary is missing: run `scripts/setup --test-deps` (Debian's prometheus package)")
        });
        let started = Instant::now();
        let exporter_port =
            serve_text("127.0.0.1", move || exposition(started.elapsed().as_secs_f64()));
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("prometheus-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: exporter\n    static_configs:\n      - targets: ['127.0.0.1:{exporter_port}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        // Statics are never dropped, so a watchdog shell stops the server
        // (and removes its data) as soon as this test process is gone.
        let watchdog = r#"
            "$1" --config.file="$2" --storage.tsdb.path="$3" --web.listen-address="$4" >/dev/null 2>&1 &
            server=$!
            while kill -0 "$5" 2>/dev/null && kill -0 "$server" 2>/dev/null; do sleep 0.5; done
            kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -rf "$3"
        "#;
        let child = Command::new("sh")
            .args(["-c", watchdog, "sh"])
            .arg(&binary)
            .arg(&config)
            .arg(dir.join("data"))
            .arg(format!("127.0.0.1:{port}"))
            .arg(std::process::id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts");
        let server = Prometheus {
            child,
            address: format!("http://127.0.0.1:{port}"),
        };
        // Enough scrapes for a 5 s rate window.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = value_now(&server.address, "count_over_time(inflight[20s])")
                .is_ok_and(|n| n >= 7.0);
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "prometheus did not collect samples within 60 s");
            std::thread::sleep(Duration::from_millis(500));
        }
        server
    })
}

fn spec(address: &str, query: &str) -> MetricSpec {
    MetricSpec {
        name: "m".into(),
        prometheus: Some(PrometheusMetric {
            address: address.into(),
            query: query.into(),
            aggregation: None,
            bearer_token_secret: None,
            ca_secret: None,
            credential: None,
            bearer_token_file: None,
            ca_file: None,
            timeout: None,
        }),
        scrape: None,
        stale_after: None,
        activation_threshold: None,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn fetch(spec: &MetricSpec) -> Result<f64, MetricError> {
    fetch_with(spec, &Auth::default())
}

fn fetch_with(spec: &MetricSpec, auth: &Auth) -> Result<f64, MetricError> {
    runtime().block_on(async {
        // The server is on loopback, which the default rules refuse.
        Fetcher::new(Duration::from_secs(5), EgressPolicy::unrestricted())
            .fetch(spec, auth, &[], &mut ScrapeState::default())
            .await
    })
}

fn value_now(address: &str, query: &str) -> Result<f64, MetricError> {
    fetch(&spec(address, query))
}

#[test]
fn a_gauge_reads_exactly_what_the_exporter_published() {
    let p = prometheus();
    assert_eq!(value_now(&p.address, "inflight").unwrap(), 7.0);
    assert_eq!(value_now(&p.address, "scalar(inflight) * 2").unwrap(), 14.0);
}

#[test]
fn a_counter_rate_matches_the_exporters_rate() {
    let p = prometheus();
    let rate = value_now(&p.address, "sum(rate(requests_total[5s]))").unwrap();
    assert!(
        (rate - 10.0).abs() < 0.5,
        "rate {rate}, exporter counts 10/s"
    );
}

#[test]
fn histogram_quantile_matches_the_exporters_distribution() {
    let p = prometheus();
    let q = value_now(
        &p.address,
        "histogram_quantile(0.7, sum by (le) (rate(latency_seconds_bucket[5s])))",
    )
    .unwrap();
    // 70% of observations: all of (0, 0.1] (50%) and half of (0.1, 0.5] (40%): 0.1 + 0.4/2.
    assert!((q - 0.3).abs() < 0.01, "p70 {q}");
}

#[test]
fn several_series_are_an_error_unless_an_aggregation_is_set() {
    let p = prometheus();
    let query = "inflight or label_replace(inflight * 3, \"copy\", \"yes\", \"\", \"\")";
    let mut s = spec(&p.address, query);
    assert_eq!(fetch(&s), Err(MetricError::SeveralSeries(2)));
    s.prometheus.as_mut().unwrap().aggregation = Some(Aggregation::Max);
    assert_eq!(fetch(&s).unwrap(), 21.0);
    s.prometheus.as_mut().unwrap().aggregation = Some(Aggregation::Sum);
    assert_eq!(fetch(&s).unwrap(), 28.0);
    assert_eq!(
        value_now(&p.address, "absent_metric_name"),
        Err(MetricError::NoSeries)
    );
}

#[test]
fn unusable_values_and_bad_queries_are_unavailable_with_the_reason() {
    let p = prometheus();
    assert!(
        matches!(value_now(&p.address, "vector(0) / 0"), Err(MetricError::Invalid(v)) if v.is_nan())
    );
    assert_eq!(
        value_now(&p.address, "-inflight"),
        Err(MetricError::Invalid(-7.0))
    );
    // The server's own words stay out of the message (it goes to the
    // tenant-readable status) and are kept for the debug log.
    let err = value_now(&p.address, "sum(").unwrap_err();
    assert_eq!(err.kind(), "query_failed", "{err}");
    assert!(err.to_string().contains("bad_data"), "{err}");
    assert!(!err.to_string().contains("parse error"), "{err}");
    assert!(
        err.remote_detail()
            .is_some_and(|d| d.contains("parse error")),
        "{err:?}"
    );
    let nowhere = value_now(&format!("http://127.0.0.1:{}", free_port()), "up").unwrap_err();
    assert_eq!(nowhere.kind(), "request", "{nowhere}");
}

#[test]
fn backfill_returns_the_past_window_from_query_range() {
    let p = prometheus();
    let s = spec(&p.address, "inflight");
    let points = runtime()
        .block_on(async {
            Fetcher::new(Duration::from_secs(5), EgressPolicy::unrestricted())
                .backfill(
                    &s,
                    &Auth::default(),
                    SystemTime::now(),
                    Duration::from_secs(1),
                    5,
                )
                .await
        })
        .unwrap();
    assert!(points.len() >= 4, "{points:?}");
    assert!(points.iter().all(|(_, v)| *v == 7.0), "{points:?}");
    assert!(
        points.windows(2).all(|w| w[1].0 - w[0].0 == 1000),
        "one sample per step: {points:?}"
    );
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(now_ms - points.last().unwrap().0 < 5_000);
}

#[test]
fn a_bearer_token_is_sent() {
    use std::io::{Read, Write};
    // A one-shot HTTP peer that records the request and answers as the Prometheus API does.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let peer = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = [0u8; 8192];
        let n = stream.read(&mut buf).unwrap();
        let body =
            r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"5"]}}"#;
        write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        String::from_utf8_lossy(&buf[..n]).to_lowercase()
    });
    let auth = Auth {
        bearer_token: Some("s3cret".into()),
        ca_pem: None,
    };
    assert_eq!(fetch_with(&spec(&address, "up"), &auth).unwrap(), 5.0);
    let request = peer.join().unwrap();
    assert!(
        request.contains("authorization: bearer s3cret"),
        "{request}"
    );
}

#[test]
fn samples_older_than_stale_after_are_unavailable() {
    let p = prometheus();
    let mut s = spec(&p.address, "lagging");
    assert_eq!(
        fetch(&s).unwrap(),
        5.0,
        "without staleAfter the old sample is used"
    );
    s.stale_after = Some("10s".into());
    let err = fetch(&s).unwrap_err();
    assert_eq!(err.kind(), "stale", "{err}");
    assert!(err.to_string().contains("staleAfter 10 s"), "{err}");
    let mut fresh = spec(&p.address, "inflight");
    fresh.stale_after = Some("10s".into());
    assert_eq!(fetch(&fresh).unwrap(), 7.0);
}
