//! Metric sources: where the numbers a target is evaluated on come from.
//!
//! Each tick every metric of a target is fetched once; a value that is
//! missing, not a number or negative is reported as unavailable with the
//! reason, never passed on as a number to scale on.

mod prometheus;
mod scrape;

use std::time::Duration;

pub use prometheus::query as prometheus_query;
pub use scrape::{Endpoint, ScrapeState};

use crate::operator::crd::MetricSpec;

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
    #[error("the query returned {0} series; aggregate it to one (e.g. sum(...))")]
    SeveralSeries(usize),
    #[error("no pod exposes `{0}`")]
    NotExposed(String),
    #[error("no pods to scrape")]
    NoPods,
    #[error("a counter needs two scrapes for a rate; the first was just taken")]
    FirstScrape,
    #[error("value {0} is not a usable number (NaN, infinite or negative)")]
    Invalid(f64),
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
            MetricError::Invalid(_) => "invalid",
        }
    }
}

/// Fetches metrics over HTTP with a per-request timeout.
#[derive(Clone)]
pub struct Fetcher {
    http: reqwest::Client,
}

impl Fetcher {
    /// A fetcher whose requests give up after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .expect("a plain HTTP client builds");
        Fetcher { http }
    }

    /// The current value of `spec`; pods matter only to `scrape` metrics.
    pub async fn fetch(
        &self,
        spec: &MetricSpec,
        endpoints: &[Endpoint],
        scrape_state: &mut ScrapeState,
    ) -> Result<f64, MetricError> {
        let value = match (&spec.prometheus, &spec.scrape) {
            (Some(p), _) => prometheus::query(&self.http, &p.address, &p.query).await?,
            (None, Some(s)) => {
                scrape::fetch(
                    &self.http,
                    s,
                    endpoints,
                    scrape_state.for_metric(&spec.name),
                )
                .await?
            }
            (None, None) => unreachable!("validated specs name a source"),
        };
        if value.is_finite() && value >= 0.0 {
            Ok(value)
        } else {
            Err(MetricError::Invalid(value))
        }
    }
}
