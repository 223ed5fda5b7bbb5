//! Metric sources: where the numbers a target is evaluated on come from.
//!
//! Each tick every metric of a target is fetched once. A value that is
//! missing, stale, not a number or negative is reported as unavailable with
//! the reason — to the policy (as an absent value), in status and in the
//! fetch-error metric — never passed on as a number to scale on.

mod prometheus;
mod scrape;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

pub use scrape::{histogram_quantile, parse as parse_exposition, Endpoint, Reading, ScrapeState};

use crate::operator::crd::{MetricSpec, PrometheusMetric};

/// Why a metric has no value this tick.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricError {
    #[error("request to {url} failed: {message}")]
    Request { url: String, message: String },
    #[error("{url} answered HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("cannot read the answer of {url}: {message}")]
    Malformed { url: String, message: String },
    #[error("the query returned no series")]
    NoSeries,
    #[error(
        "the query returned {0} series; set `aggregation` or aggregate in PromQL (e.g. sum(...))"
    )]
    SeveralSeries(usize),
    #[error("no pod exposes `{0}`")]
    NotExposed(String),
    #[error("no ready pods to scrape")]
    NoPods,
    #[error("a counter or histogram needs two scrapes; the first was just taken")]
    FirstScrape,
    #[error("no observations in the histogram since the last scrape")]
    NoObservations,
    #[error("the samples are {age:.0} s old (staleAfter {limit:.0} s)")]
    Stale { age: f64, limit: f64 },
    #[error("value {0} is not a usable number (NaN, infinite or negative)")]
    Invalid(f64),
    #[error("{0}")]
    Config(String),
}

impl MetricError {
    /// A stable label for the fetch-error metric.
    pub fn kind(&self) -> &'static str {
        match self {
            MetricError::Request { .. } => "request",
            MetricError::Status { .. } => "status",
            MetricError::Malformed { .. } => "malformed",
            MetricError::NoSeries => "no_series",
            MetricError::SeveralSeries(_) => "several_series",
            MetricError::NotExposed(_) => "not_exposed",
            MetricError::NoPods => "no_pods",
            MetricError::FirstScrape => "first_scrape",
            MetricError::NoObservations => "no_observations",
            MetricError::Stale { .. } => "stale",
            MetricError::Invalid(_) => "invalid",
            MetricError::Config(_) => "config",
        }
    }
}

/// Fetches metrics over HTTP(S) with a per-request timeout.
pub struct Fetcher {
    http: reqwest::Client,
    timeout: Duration,
    /// Clients that trust a custom CA, by CA file.
    with_ca: Mutex<HashMap<String, reqwest::Client>>,
}

impl Fetcher {
    /// A fetcher whose requests give up after `timeout` unless a metric says otherwise.
    pub fn new(timeout: Duration) -> Self {
        Fetcher {
            http: client(timeout, None).expect("a plain HTTP client builds"),
            timeout,
            with_ca: Mutex::new(HashMap::new()),
        }
    }

    /// The current value of `spec`. `endpoints` are the target's ready pods
    /// (used by `scrape` metrics without explicit endpoints).
    pub async fn fetch(
        &self,
        spec: &MetricSpec,
        endpoints: &[Endpoint],
        scrape_state: &mut ScrapeState,
    ) -> Result<f64, MetricError> {
        let value = match (&spec.prometheus, &spec.scrape) {
            (Some(p), _) => {
                let http = self.client_for(p)?;
                let query = prometheus::Query {
                    http: &http,
                    spec: p,
                    timeout: self.timeout_of(p),
                };
                let (value, _) = query.instant().await?;
                if let Some(limit) = stale_after(spec) {
                    let age = unix_seconds(SystemTime::now()) - query.oldest_sample().await?;
                    if age > limit.as_secs_f64() {
                        return Err(MetricError::Stale {
                            age,
                            limit: limit.as_secs_f64(),
                        });
                    }
                }
                value
            }
            (None, Some(s)) => {
                let explicit: Vec<Endpoint>;
                let targets = if s.endpoints.is_empty() {
                    endpoints
                } else {
                    explicit = s
                        .endpoints
                        .iter()
                        .map(|e| Endpoint::parse(e))
                        .collect::<Result<_, _>>()
                        .map_err(MetricError::Config)?;
                    &explicit
                };
                scrape::fetch(&self.http, s, targets, scrape_state.for_metric(&spec.name)).await?
            }
            (None, None) => return Err(MetricError::Config("the metric names no source".into())),
        };
        if value.is_finite() && value >= 0.0 {
            Ok(value)
        } else {
            Err(MetricError::Invalid(value))
        }
    }

    /// Past values of a `prometheus` metric, `samples` of them `step` apart
    /// up to `end`, oldest first, as (Unix milliseconds, value); unusable
    /// values are left out. Other sources have no past: empty.
    pub async fn backfill(
        &self,
        spec: &MetricSpec,
        end: SystemTime,
        step: Duration,
        samples: usize,
    ) -> Result<Vec<(u64, f64)>, MetricError> {
        let Some(p) = &spec.prometheus else {
            return Ok(Vec::new());
        };
        let http = self.client_for(p)?;
        let query = prometheus::Query {
            http: &http,
            spec: p,
            timeout: self.timeout_of(p),
        };
        let end = unix_seconds(end);
        let step = step.as_secs_f64().max(1.0);
        let start = end - step * samples.saturating_sub(1) as f64;
        let points = query.range(start, end, step).await?;
        Ok(points
            .into_iter()
            .filter(|(_, v)| v.is_finite() && *v >= 0.0)
            .map(|(t, v)| ((t * 1000.0).round() as u64, v))
            .collect())
    }

    fn timeout_of(&self, p: &PrometheusMetric) -> Duration {
        p.timeout
            .as_deref()
            .and_then(|t| humantime::parse_duration(t).ok())
            .unwrap_or(self.timeout)
    }

    fn client_for(&self, p: &PrometheusMetric) -> Result<reqwest::Client, MetricError> {
        let Some(ca) = &p.ca_file else {
            return Ok(self.http.clone());
        };
        let mut clients = self.with_ca.lock().expect("client cache lock");
        if let Some(c) = clients.get(ca) {
            return Ok(c.clone());
        }
        let pem = std::fs::read(ca)
            .map_err(|e| MetricError::Config(format!("cannot read the CA file {ca}: {e}")))?;
        if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
            return Err(MetricError::Config(format!(
                "the CA file {ca} holds no PEM certificate"
            )));
        }
        let c = client(self.timeout, Some(&pem))
            .map_err(|e| MetricError::Config(format!("the CA file {ca} is not usable: {e}")))?;
        clients.insert(ca.clone(), c.clone());
        Ok(c)
    }
}

fn stale_after(spec: &MetricSpec) -> Option<Duration> {
    spec.stale_after
        .as_deref()
        .and_then(|t| humantime::parse_duration(t).ok())
}

fn client(timeout: Duration, ca_pem: Option<&[u8]>) -> Result<reqwest::Client, reqwest::Error> {
    let mut builder = reqwest::Client::builder().timeout(timeout);
    if let Some(pem) = ca_pem {
        for cert in reqwest::Certificate::from_pem_bundle(pem)? {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build()
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
