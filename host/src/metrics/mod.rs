//! Metric sources: where the numbers a target is evaluated on come from.
//!
//! Each tick every metric of a target is fetched once. A value that is
//! missing, stale, not a number or negative is reported as unavailable with
//! the reason — to the policy (as an absent value), in status and in the
//! fetch-error metric — never passed on as a number to scale on.

mod prometheus;
mod scrape;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use sha2::Digest as _;
use tokio::sync::Semaphore;

pub use scrape::{histogram_quantile, parse as parse_exposition, Endpoint, Reading, ScrapeState};

use crate::boundary::credentials::Auth;
use crate::boundary::egress::{self, EgressPolicy};
use crate::operator::crd::{MetricSpec, PrometheusMetric};

/// Bytes a remote server sent, kept for the operator's debug log and the
/// local `metrics` command. They are never part of an error's message: that
/// message goes into the autoscaler's status, which the tenant reads, and a
/// tenant could otherwise read any internal service through the operator.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Remote(pub String);

impl Remote {
    /// The first bytes of `body` (the rest is of no use to a reader).
    fn of(body: &str) -> Self {
        Remote(body.chars().take(512).collect())
    }
}

/// Why a metric has no value this tick.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricError {
    #[error("request to {url} failed: {message}")]
    Request { url: String, message: String },
    #[error("request to {url} refused: {refused}")]
    Egress {
        url: String,
        refused: crate::boundary::egress::Refused,
    },
    #[error("{0}")]
    Credentials(#[from] crate::boundary::credentials::CredentialError),
    #[error("{url} answered HTTP {status}")]
    Status {
        url: String,
        status: u16,
        remote: Remote,
    },
    #[error("{url} answered more than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    #[error("cannot read the answer of {url}: {message}")]
    Malformed {
        url: String,
        message: String,
        remote: Remote,
    },
    #[error("the query failed on {url} ({error_type}); the server's message is in the operator's debug log and `wasm-autoscaler metrics`")]
    QueryFailed {
        url: String,
        error_type: &'static str,
        remote: Remote,
    },
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
            MetricError::Egress { .. } => "egress_denied",
            MetricError::Credentials(e) => e.kind(),
            MetricError::Status { .. } => "status",
            MetricError::TooLarge { .. } => "too_large",
            MetricError::Malformed { .. } => "malformed",
            MetricError::QueryFailed { .. } => "query_failed",
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

    /// What the remote sent, when the error is about its answer (never in the message).
    pub fn remote_detail(&self) -> Option<&str> {
        match self {
            MetricError::Status { remote, .. }
            | MetricError::Malformed { remote, .. }
            | MetricError::QueryFailed { remote, .. } => {
                Some(remote.0.as_str()).filter(|r| !r.is_empty())
            }
            _ => None,
        }
    }

    /// Whether this is a refusal of tenant input (an address, a credential), not a failure.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            MetricError::Egress { .. } | MetricError::Credentials(_)
        )
    }
}

/// Most bytes of a Prometheus answer read (a range query of 10,000 samples fits many times).
pub const PROMETHEUS_BODY_LIMIT: usize = 8 << 20;
/// Most bytes of one pod's exposition page read.
pub const SCRAPE_BODY_LIMIT: usize = 4 << 20;
/// Most metric requests in flight at once in the whole operator, so the
/// memory their answers take is bounded (at most this × the body limits).
const MAX_IN_FLIGHT: usize = 32;
/// Most clients kept for distinct CA bundles.
const MAX_CA_CLIENTS: usize = 64;

/// Fetches metrics over HTTP(S) with a per-request timeout, only from
/// addresses the egress rules allow, never following redirects or proxies.
pub struct Fetcher {
    http: reqwest::Client,
    timeout: Duration,
    egress: Arc<EgressPolicy>,
    /// Clients that trust a custom CA, by the CA bundle's digest.
    with_ca: Mutex<HashMap<[u8; 32], reqwest::Client>>,
    in_flight: Arc<Semaphore>,
}

impl Fetcher {
    /// A fetcher whose requests give up after `timeout` unless a metric says
    /// otherwise, and reach only what `egress` allows.
    pub fn new(timeout: Duration, egress: EgressPolicy) -> Self {
        let egress = Arc::new(egress);
        Fetcher {
            http: egress
                .http_client(timeout, None)
                .expect("a plain HTTP client builds"),
            timeout,
            egress,
            with_ca: Mutex::new(HashMap::new()),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        }
    }

    /// The current value of `spec`, asked with `auth` (a `prometheus`
    /// metric's resolved credentials). `endpoints` are the target's ready
    /// pods (used by `scrape` metrics without explicit endpoints).
    pub async fn fetch(
        &self,
        spec: &MetricSpec,
        auth: &Auth,
        endpoints: &[Endpoint],
        scrape_state: &mut ScrapeState,
    ) -> Result<f64, MetricError> {
        let value = match (&spec.prometheus, &spec.scrape) {
            (Some(p), _) => {
                let http = self.client_for(auth)?;
                let query = self.query(&http, p, auth);
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
                let requester = self.requester(&self.http);
                scrape::fetch(&requester, s, targets, scrape_state.for_metric(&spec.name)).await?
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
        auth: &Auth,
        end: SystemTime,
        step: Duration,
        samples: usize,
    ) -> Result<Vec<(u64, f64)>, MetricError> {
        let Some(p) = &spec.prometheus else {
            return Ok(Vec::new());
        };
        let http = self.client_for(auth)?;
        let query = self.query(&http, p, auth);
        let end = unix_seconds(end);
        let step = step.as_secs_f64().max(1.0);
        let start = end - step * samples.saturating_sub(1) as f64;
        let points = query.range(start, end, step).await?;
        Ok(usable_past(points))
    }

    /// The long history of a `prometheus` metric: for each step end from
    /// `from_ms` to `to_ms` (Unix ms, multiples of `step_ms`), the mean of the
    /// query over that step, sampled every `resolution`; oldest first, as
    /// (Unix ms, value), unusable values left out. Other sources: empty.
    pub async fn long_history(
        &self,
        spec: &MetricSpec,
        auth: &Auth,
        from_ms: u64,
        to_ms: u64,
        step_ms: u64,
        resolution: Duration,
    ) -> Result<Vec<(u64, f64)>, MetricError> {
        let Some(p) = &spec.prometheus else {
            return Ok(Vec::new());
        };
        let step_s = (step_ms / 1000).max(1);
        let averaged = PrometheusMetric {
            // A subquery: the step's mean as the pipeline computes it from its own samples.
            query: format!(
                "avg_over_time(({})[{step_s}s:{}s])",
                p.query,
                resolution.as_secs().max(1)
            ),
            ..p.clone()
        };
        let http = self.client_for(auth)?;
        let query = self.query(&http, &averaged, auth);
        let points = query
            .range(
                from_ms as f64 / 1000.0,
                to_ms as f64 / 1000.0,
                step_s as f64,
            )
            .await?;
        Ok(usable_past(points))
    }

    fn query<'a>(
        &'a self,
        http: &'a reqwest::Client,
        spec: &'a PrometheusMetric,
        auth: &'a Auth,
    ) -> prometheus::Query<'a> {
        prometheus::Query {
            requester: self.requester(http),
            spec,
            bearer_token: auth.bearer_token.as_deref(),
            timeout: self.timeout_of(spec),
        }
    }

    fn requester<'a>(&'a self, http: &'a reqwest::Client) -> Requester<'a> {
        Requester {
            http,
            egress: &self.egress,
            in_flight: &self.in_flight,
        }
    }

    fn timeout_of(&self, p: &PrometheusMetric) -> Duration {
        p.timeout
            .as_deref()
            .and_then(|t| humantime::parse_duration(t).ok())
            .map_or(self.timeout, |t| {
                t.min(crate::operator::crd::MAX_METRIC_TIMEOUT)
            })
    }

    fn client_for(&self, auth: &Auth) -> Result<reqwest::Client, MetricError> {
        let Some(pem) = &auth.ca_pem else {
            return Ok(self.http.clone());
        };
        let key: [u8; 32] = sha2::Sha256::digest(pem).into();
        let mut clients = self.with_ca.lock().expect("client cache lock");
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let c = self
            .egress
            .http_client(self.timeout, Some(pem))
            .map_err(|e| MetricError::Config(format!("the CA certificate is not usable: {e}")))?;
        // Bounded: a tenant changing its CA every tick must not grow this without end.
        if clients.len() >= MAX_CA_CLIENTS {
            clients.clear();
        }
        clients.insert(key, c.clone());
        Ok(c)
    }
}

/// Sends one GET within the egress rules and the in-flight bound, and reads
/// at most `limit` bytes of the answer.
pub(crate) struct Requester<'a> {
    http: &'a reqwest::Client,
    egress: &'a EgressPolicy,
    in_flight: &'a Semaphore,
}

impl Requester<'_> {
    /// The status and body of `url`.
    pub(crate) async fn get(
        &self,
        url: &str,
        query: &[(&str, String)],
        bearer_token: Option<&str>,
        timeout: Option<Duration>,
        limit: usize,
    ) -> Result<(reqwest::StatusCode, String), MetricError> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| MetricError::Config(format!("`{url}` is not a URL: {e}")))?;
        self.egress
            .check_url(&parsed)
            .map_err(|refused| MetricError::Egress {
                url: url.to_string(),
                refused,
            })?;
        let _slot = self.in_flight.acquire().await.expect("never closed");
        let mut request = self.http.get(parsed);
        if !query.is_empty() {
            // Even an empty query costs a serializer and an allocation.
            request = request.query(query);
        }
        if let Some(t) = timeout {
            request = request.timeout(t);
        }
        if let Some(token) = bearer_token {
            request = request.bearer_auth(token);
        }
        let failed = |e: reqwest::Error| match egress::refusal_in(&e) {
            Some(refused) => MetricError::Egress {
                url: url.to_string(),
                refused: refused.clone(),
            },
            None => MetricError::Request {
                url: url.to_string(),
                message: error_chain(&e),
            },
        };
        let mut response = request.send().await.map_err(failed)?;
        let status = response.status();
        let too_large = || MetricError::TooLarge {
            url: url.to_string(),
            limit,
        };
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let mut body = Vec::with_capacity(response.content_length().unwrap_or(0) as usize);
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        // Text as sent when it is UTF-8 (nearly always), without copying it.
        let text = String::from_utf8(body)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        Ok((status, text))
    }
}

/// The error and its causes on one line (reqwest hides the cause, e.g. a TLS failure).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Past (Unix seconds, value) points as (Unix ms, value), unusable values left out.
fn usable_past(points: Vec<(f64, f64)>) -> Vec<(u64, f64)> {
    points
        .into_iter()
        .filter(|(_, v)| v.is_finite() && *v >= 0.0)
        .map(|(t, v)| ((t * 1000.0).round() as u64, v))
        .collect()
}

fn stale_after(spec: &MetricSpec) -> Option<Duration> {
    spec.stale_after
        .as_deref()
        .and_then(|t| humantime::parse_duration(t).ok())
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
