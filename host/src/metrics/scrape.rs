//! The `scrape` source: read a metric from each pod's exposition endpoint
//! and combine the pods' values. Gauges are combined as they are; counters
//! become per-second rates between two consecutive scrapes of the same pod;
//! histograms give a quantile of the observations made between two scrapes,
//! across pods.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use futures::StreamExt;

use super::{MetricError, Remote, Requester, SCRAPE_BODY_LIMIT};
use crate::operator::crd::ScrapeMetric;

/// One pod (or explicit endpoint) to scrape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Stable identity (the pod's uid), so a restarted pod's counter is not
    /// taken for a reset of its predecessor's.
    pub id: String,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// The port, when not the metric's `port` (explicit endpoints).
    pub port: Option<u16>,
}

impl Endpoint {
    /// An explicit `host:port` endpoint (`[v6]:port` for IPv6).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("endpoint `{text}` is not host:port"))?;
        let port = port
            .parse()
            .map_err(|_| format!("endpoint `{text}` has no valid port"))?;
        let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(v6) => v6
                .parse::<std::net::Ipv6Addr>()
                .map_err(|_| format!("endpoint `{text}`: `[{v6}]` is not an IPv6 address"))?
                .to_string(),
            // A host name or IPv4 address: nothing that could change what the URL means.
            None if !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') =>
            {
                host.to_string()
            }
            None => return Err(format!("endpoint `{text}` has no valid host")),
        };
        Ok(Endpoint {
            id: text.to_string(),
            host,
            port: Some(port),
        })
    }
}

/// What earlier scrapes of one target left behind: counter and histogram
/// readings per metric and endpoint.
#[derive(Debug, Default)]
pub struct ScrapeState {
    metrics: HashMap<String, Readings>,
}

impl ScrapeState {
    pub(super) fn for_metric(&mut self, name: &str) -> &mut Readings {
        self.metrics.entry(name.to_string()).or_default()
    }
}

/// The last cumulative reading of each endpoint.
#[derive(Debug, Default)]
pub struct Readings(HashMap<String, (Instant, Reading)>);

/// One endpoint's value of a metric, summed over its label sets.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    Gauge(f64),
    Counter(f64),
    /// Cumulative bucket counts by upper bound (`+Inf` last).
    Histogram(Vec<(f64, f64)>),
}

/// Pods of one target scraped at once; the rest wait, so a target with many
/// pods does not take every request slot of the operator.
const CONCURRENCY: usize = 8;

/// Scrapes `endpoints` concurrently and combines their values.
pub(super) async fn fetch(
    requester: &Requester<'_>,
    spec: &ScrapeMetric,
    endpoints: &[Endpoint],
    readings: &mut Readings,
) -> Result<f64, MetricError> {
    if endpoints.is_empty() {
        return Err(MetricError::NoPods);
    }
    let now = Instant::now();
    // The futures are made first: a closure in the stream's type trips the
    // compiler's `Send` check of the controller's future.
    let pending: Vec<_> = endpoints
        .iter()
        .map(|e| scrape_one(requester, spec, e))
        .collect();
    let results: Vec<_> = futures::stream::iter(pending)
        .buffered(CONCURRENCY)
        .collect()
        .await;
    let mut values = Vec::new();
    let mut increases: BTreeMap<u64, f64> = BTreeMap::new();
    let mut first_error = None;
    let mut waiting_for_second = false;
    let mut seen = HashMap::new();
    for (endpoint, result) in endpoints.iter().zip(results) {
        let reading = match result {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(endpoint = %endpoint.host, error = %e, "scrape failed");
                first_error.get_or_insert(e);
                continue;
            }
        };
        let previous = readings.0.get(&endpoint.id);
        match (&reading, previous) {
            (Reading::Gauge(v), _) => values.push(*v),
            (Reading::Counter(v), Some((then, Reading::Counter(before)))) => {
                let seconds = now.duration_since(*then).as_secs_f64();
                if seconds > 0.0 {
                    values.push(counter_increase(*before, *v) / seconds);
                }
            }
            (Reading::Histogram(buckets), Some((_, Reading::Histogram(before)))) => {
                for (le, count) in buckets {
                    let old = before
                        .iter()
                        .find(|(b, _)| b == le)
                        .map_or(0.0, |(_, c)| *c);
                    *increases.entry(le.to_bits()).or_default() += counter_increase(old, *count);
                }
            }
            _ => waiting_for_second = true,
        }
        if !matches!(reading, Reading::Gauge(_)) {
            seen.insert(endpoint.id.clone(), (now, reading));
        }
    }
    // Endpoints that are gone are forgotten; those that failed this time keep their reading.
    readings
        .0
        .retain(|id, _| endpoints.iter().any(|e| &e.id == id));
    readings.0.extend(seen);

    if let Some(q) = spec.quantile {
        if increases.is_empty() {
            return Err(first_error.unwrap_or(if waiting_for_second {
                MetricError::FirstScrape
            } else {
                MetricError::NotExposed(spec.metric.clone())
            }));
        }
        let mut buckets: Vec<(f64, f64)> = increases
            .into_iter()
            .map(|(le, c)| (f64::from_bits(le), c))
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        return histogram_quantile(q, &buckets).ok_or(MetricError::NoObservations);
    }
    if values.is_empty() {
        return Err(if waiting_for_second {
            MetricError::FirstScrape
        } else if let Some(e) = first_error {
            e
        } else {
            MetricError::NotExposed(spec.metric.clone())
        });
    }
    Ok(spec.aggregation.apply(&values))
}

/// A counter's increase; a drop means the process restarted and counts from zero again.
fn counter_increase(before: f64, now: f64) -> f64 {
    if now >= before {
        now - before
    } else {
        now
    }
}

/// The `q` quantile of cumulative `buckets` (sorted by upper bound, `+Inf`
/// last), interpolated linearly within the bucket as PromQL's
/// `histogram_quantile` does. `None` without observations.
pub fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let &(last_le, total) = buckets.last()?;
    if last_le != f64::INFINITY || buckets.len() < 2 || total <= 0.0 {
        return None;
    }
    if q <= 0.0 {
        // The lower bound of the lowest bucket (0 unless that bucket is below zero).
        return Some(buckets[0].0.min(0.0));
    }
    if q >= 1.0 {
        return Some(buckets[buckets.len() - 2].0);
    }
    let rank = q * total;
    let i = buckets.iter().position(|(_, c)| *c >= rank)?;
    if i == buckets.len() - 1 {
        return Some(buckets[buckets.len() - 2].0);
    }
    let (le, count) = buckets[i];
    let (start, start_count) = if i == 0 {
        if le <= 0.0 {
            return Some(le);
        }
        (0.0, 0.0)
    } else {
        buckets[i - 1]
    };
    if count == start_count {
        return Some(le);
    }
    Some(start + (le - start) * (rank - start_count) / (count - start_count))
}

async fn scrape_one(
    requester: &Requester<'_>,
    spec: &ScrapeMetric,
    endpoint: &Endpoint,
) -> Result<Option<Reading>, MetricError> {
    let host = if endpoint.host.contains(':') {
        format!("[{}]", endpoint.host)
    } else {
        endpoint.host.clone()
    };
    let url = format!(
        "http://{host}:{}{}",
        endpoint.port.unwrap_or(spec.port),
        spec.path
    );
    let (status, body) = requester
        .get(&url, &[], None, None, SCRAPE_BODY_LIMIT)
        .await?;
    if !status.is_success() {
        return Err(MetricError::Status {
            url,
            status: status.as_u16(),
            remote: Remote::of(&body),
        });
    }
    parse(&body, &spec.metric).map_err(|message| MetricError::Malformed {
        url,
        message,
        remote: Remote::of(&body),
    })
}

/// The value of `metric` in exposition text, summed over its label sets;
/// `None` when the text does not have it. Text that is not the exposition
/// format is an error naming the first bad line (by number: its text is the
/// remote's, and errors reach the autoscaler's status).
pub fn parse(body: &str, metric: &str) -> Result<Option<Reading>, String> {
    // Only the metric's own lines go through the (regex) parser; every
    // other line gets a cheap shape check, so a page of HTML is still
    // refused but a large page costs little more than reading it.
    let mut relevant = Vec::new();
    for (n, line) in body.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.split_whitespace();
            if matches!(words.next(), Some("TYPE" | "HELP")) && words.next() == Some(metric) {
                relevant.push(line);
            }
            continue;
        }
        let name_end = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(line.len());
        let name = &line[..name_end];
        let starts_like_a_sample = name_end > 0
            && !line.as_bytes()[0].is_ascii_digit()
            && line[name_end..].starts_with([' ', '{', '\t']);
        let mine = name == metric
            || name
                .strip_prefix(metric)
                .is_some_and(|rest| matches!(rest, "_bucket" | "_sum" | "_count"));
        if !starts_like_a_sample
            || (mine
                && matches!(
                    prometheus_parse::LineInfo::parse(line),
                    prometheus_parse::LineInfo::Ignored
                ))
        {
            return Err(format!("line {} is not in the exposition format", n + 1));
        }
        if mine {
            relevant.push(line);
        }
    }
    let lines = relevant.into_iter().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).map_err(|e| e.to_string())?;
    let mut total: Option<Reading> = None;
    for sample in scrape.samples.iter().filter(|s| s.metric == metric) {
        let reading = match &sample.value {
            prometheus_parse::Value::Counter(v) => Reading::Counter(*v),
            prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => {
                Reading::Gauge(*v)
            }
            prometheus_parse::Value::Histogram(h) => {
                let mut buckets: Vec<(f64, f64)> =
                    h.iter().map(|b| (b.less_than, b.count)).collect();
                buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
                Reading::Histogram(buckets)
            }
            prometheus_parse::Value::Summary(_) => {
                return Err(format!(
                    "`{metric}` is a summary; use a gauge, counter or histogram"
                ))
            }
        };
        total = Some(match (total, reading) {
            (None, r) => r,
            (Some(Reading::Gauge(a)), Reading::Gauge(b)) => Reading::Gauge(a + b),
            (Some(Reading::Counter(a)), Reading::Counter(b)) => Reading::Counter(a + b),
            (Some(Reading::Histogram(a)), Reading::Histogram(b)) => {
                let mut sum = a;
                for (le, c) in b {
                    match sum.iter_mut().find(|(l, _)| *l == le) {
                        Some((_, s)) => *s += c,
                        None => sum.push((le, c)),
                    }
                }
                sum.sort_by(|x, y| x.0.total_cmp(&y.0));
                Reading::Histogram(sum)
            }
            _ => return Err(format!("`{metric}` mixes metric types across its samples")),
        });
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_label_sets_and_knows_the_types() {
        let text = "# TYPE req_total counter\nreq_total{code=\"200\"} 10\nreq_total{code=\"500\"} 2\n# TYPE inflight gauge\ninflight 3.5\n";
        assert_eq!(parse(text, "req_total"), Ok(Some(Reading::Counter(12.0))));
        assert_eq!(parse(text, "inflight"), Ok(Some(Reading::Gauge(3.5))));
        assert_eq!(parse(text, "absent"), Ok(None));
    }

    #[test]
    fn malformed_text_names_the_line() {
        let err = parse("# TYPE a gauge\na 1\n<html>oops</html>\n", "a").unwrap_err();
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn histograms_merge_and_interpolate_like_promql() {
        let text = "# TYPE lat histogram\nlat_bucket{le=\"0.1\"} 50\nlat_bucket{le=\"0.5\"} 90\nlat_bucket{le=\"+Inf\"} 100\nlat_sum 20\nlat_count 100\n";
        let Ok(Some(Reading::Histogram(b))) = parse(text, "lat") else {
            panic!("a histogram")
        };
        assert_eq!(b, [(0.1, 50.0), (0.5, 90.0), (f64::INFINITY, 100.0)]);
        // Median: rank 50 falls at the top of the first bucket.
        assert!((histogram_quantile(0.5, &b).unwrap() - 0.1).abs() < 1e-12);
        // p70: rank 70, halfway through (0.1, 0.5].
        assert!((histogram_quantile(0.7, &b).unwrap() - 0.3).abs() < 1e-12);
        // p99 falls in +Inf: the highest finite bound.
        assert_eq!(histogram_quantile(0.99, &b), Some(0.5));
        assert_eq!(
            histogram_quantile(0.5, &[(0.1, 0.0), (f64::INFINITY, 0.0)]),
            None
        );
    }
}
