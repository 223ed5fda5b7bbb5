//! The `scrape` source: read a metric from each pod's exposition endpoint
//! and combine the pods' values. Counters become per-second rates from two
//! consecutive scrapes of the same pod.

use std::collections::HashMap;
use std::time::Instant;

use futures::future::join_all;

use super::MetricError;
use crate::operator::crd::{Aggregation, ScrapeMetric};

/// One pod (or explicit endpoint) to scrape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Stable identity (the pod's uid), so a restarted pod's counter is not
    /// taken for a reset of its predecessor's.
    pub id: String,
    /// Host or IP address.
    pub host: String,
}

/// What earlier scrapes of one target left behind: counter readings per metric and pod.
#[derive(Debug, Default)]
pub struct ScrapeState {
    metrics: HashMap<String, CounterReadings>,
}

impl ScrapeState {
    pub(super) fn for_metric(&mut self, name: &str) -> &mut CounterReadings {
        self.metrics.entry(name.to_string()).or_default()
    }
}

/// The last counter reading of each endpoint.
#[derive(Debug, Default)]
pub struct CounterReadings(HashMap<String, (Instant, f64)>);

enum Reading {
    Gauge(f64),
    Counter(f64),
}

pub(super) async fn fetch(
    http: &reqwest::Client,
    spec: &ScrapeMetric,
    endpoints: &[Endpoint],
    counters: &mut CounterReadings,
) -> Result<f64, MetricError> {
    if endpoints.is_empty() {
        return Err(MetricError::NoPods);
    }
    let now = Instant::now();
    let results = join_all(endpoints.iter().map(|e| scrape_one(http, spec, e))).await;
    let mut values = Vec::new();
    let mut first_error = None;
    let mut seen: HashMap<String, (Instant, f64)> = HashMap::new();
    let mut counter_pending = false;
    for (endpoint, result) in endpoints.iter().zip(results) {
        match result {
            Ok(Some(Reading::Gauge(v))) => values.push(v),
            Ok(Some(Reading::Counter(v))) => {
                if let Some((then, before)) = counters.0.get(&endpoint.id) {
                    let seconds = now.duration_since(*then).as_secs_f64();
                    if seconds > 0.0 {
                        // A drop means the process restarted and counts from zero again.
                        let increase = if v >= *before { v - before } else { v };
                        values.push(increase / seconds);
                    }
                } else {
                    counter_pending = true;
                }
                seen.insert(endpoint.id.clone(), (now, v));
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(endpoint = %endpoint.host, error = %e, "scrape failed");
                first_error.get_or_insert(e);
            }
        }
    }
    // Pods that are gone are forgotten; pods that failed this time keep their old reading.
    counters
        .0
        .retain(|id, _| endpoints.iter().any(|e| &e.id == id));
    counters.0.extend(seen);
    if values.is_empty() {
        return Err(if counter_pending {
            MetricError::FirstScrape
        } else if let Some(e) = first_error {
            e
        } else {
            MetricError::NotExposed(spec.metric.clone())
        });
    }
    Ok(match spec.aggregation {
        Aggregation::Sum => values.iter().sum(),
        Aggregation::Avg => values.iter().sum::<f64>() / values.len() as f64,
        Aggregation::Max => values.iter().copied().fold(f64::MIN, f64::max),
    })
}

async fn scrape_one(
    http: &reqwest::Client,
    spec: &ScrapeMetric,
    endpoint: &Endpoint,
) -> Result<Option<Reading>, MetricError> {
    let url = format!("http://{}:{}{}", endpoint.host, spec.port, spec.path);
    let request = |e: reqwest::Error| MetricError::Request {
        url: url.clone(),
        message: e.to_string(),
    };
    let response = http.get(&url).send().await.map_err(request)?;
    let status = response.status();
    let body = response.text().await.map_err(request)?;
    if !status.is_success() {
        return Err(MetricError::Status {
            url,
            status: status.as_u16(),
            body: body.chars().take(200).collect(),
        });
    }
    parse(&body, &spec.metric).map_err(|message| MetricError::Malformed { url, message })
}

/// The value of `metric` in exposition text, summed over its label sets.
fn parse(body: &str, metric: &str) -> Result<Option<Reading>, String> {
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).map_err(|e| e.to_string())?;
    let mut total = None;
    for sample in scrape.samples.iter().filter(|s| s.metric == metric) {
        let reading = match sample.value {
            prometheus_parse::Value::Counter(v) => Reading::Counter(v),
            prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => {
                Reading::Gauge(v)
            }
            _ => {
                return Err(format!(
                    "`{metric}` is a histogram or summary, not a number"
                ))
            }
        };
        total = Some(match (total, reading) {
            (None, r) => r,
            (Some(Reading::Gauge(a)), Reading::Gauge(b)) => Reading::Gauge(a + b),
            (Some(Reading::Counter(a)), Reading::Counter(b)) => Reading::Counter(a + b),
            _ => return Err(format!("`{metric}` mixes counter and gauge samples")),
        });
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_label_sets_and_knows_counters() {
        let text = "# TYPE req_total counter\nreq_total{code=\"200\"} 10\nreq_total{code=\"500\"} 2\n# TYPE inflight gauge\ninflight 3.5\n";
        assert!(matches!(parse(text, "req_total"), Ok(Some(Reading::Counter(v))) if v == 12.0));
        assert!(matches!(parse(text, "inflight"), Ok(Some(Reading::Gauge(v))) if v == 3.5));
        assert!(matches!(parse(text, "absent"), Ok(None)));
    }
}
