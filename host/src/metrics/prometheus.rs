//! The `prometheus` source: a PromQL instant query per tick, and a range
//! query to backfill history when a target is first seen.

use std::time::Duration;

use serde::Deserialize;

use super::{MetricError, Remote, Requester, PROMETHEUS_BODY_LIMIT};
use crate::operator::crd::{Aggregation, PrometheusMetric};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error_type: Option<String>,
}

/// The error types Prometheus' API documents; anything else is reported as `other`, so a
/// server's own words never reach the status.
const ERROR_TYPES: &[&str] = &[
    "bad_data",
    "execution",
    "canceled",
    "timeout",
    "internal",
    "unavailable",
    "not_found",
    "none",
];

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum Data {
    Vector(Vec<Instant>),
    Scalar((f64, String)),
    Matrix(Vec<Range>),
    String(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct Instant {
    value: (f64, String),
}

#[derive(Deserialize)]
struct Range {
    values: Vec<(f64, String)>,
}

/// A query against one server.
pub(super) struct Query<'a> {
    pub requester: Requester<'a>,
    pub spec: &'a PrometheusMetric,
    pub bearer_token: Option<&'a str>,
    pub timeout: Duration,
}

impl Query<'_> {
    /// The query's one number now, and the time (Unix seconds) of its sample.
    pub async fn instant(&self) -> Result<(f64, f64), MetricError> {
        let answer = self
            .get("query", &[("query", self.spec.query.clone())])
            .await?;
        match answer {
            Data::Scalar(sample) => Ok((self.number(&sample.1)?, sample.0)),
            Data::Vector(series) => {
                let samples: Vec<(f64, String)> = series.into_iter().map(|s| s.value).collect();
                self.combine(&samples)
            }
            _ => Err(self.malformed("an instant query must return a vector or a scalar".into())),
        }
    }

    /// The time (Unix seconds) of the oldest sample the query returns, for
    /// stored series; the query time for computed results.
    pub async fn oldest_sample(&self) -> Result<f64, MetricError> {
        let query = format!("min(timestamp({}))", self.spec.query);
        match self.get("query", &[("query", query)]).await? {
            Data::Vector(series) => match series.first() {
                Some(s) => self.number(&s.value.1),
                None => Err(MetricError::NoSeries),
            },
            Data::Scalar(sample) => Ok(sample.0),
            _ => Err(self.malformed("a timestamp query must return a vector".into())),
        }
    }

    /// Samples `[start, end]` every `step` seconds, oldest first, as (Unix seconds, value).
    pub async fn range(
        &self,
        start: f64,
        end: f64,
        step: f64,
    ) -> Result<Vec<(f64, f64)>, MetricError> {
        let params = [
            ("query", self.spec.query.clone()),
            ("start", format!("{start:.3}")),
            ("end", format!("{end:.3}")),
            ("step", format!("{step:.3}")),
        ];
        let series = match self.get("query_range", &params).await? {
            Data::Matrix(series) => series,
            _ => return Err(self.malformed("a range query must return a matrix".into())),
        };
        // Several series are combined per timestamp, as the instant query is.
        let mut by_time: std::collections::BTreeMap<i64, Vec<(f64, String)>> = Default::default();
        for s in series {
            for (t, v) in s.values {
                by_time
                    .entry((t * 1000.0).round() as i64)
                    .or_default()
                    .push((t, v));
            }
        }
        by_time
            .into_values()
            .map(|samples| self.combine(&samples).map(|(v, t)| (t, v)))
            .collect()
    }

    fn combine(&self, samples: &[(f64, String)]) -> Result<(f64, f64), MetricError> {
        match (samples.len(), self.spec.aggregation) {
            (0, _) => Err(MetricError::NoSeries),
            (1, _) => Ok((self.number(&samples[0].1)?, samples[0].0)),
            (n, None) => Err(MetricError::SeveralSeries(n)),
            (_, Some(aggregation)) => {
                let values = samples
                    .iter()
                    .map(|(_, v)| self.number(v))
                    .collect::<Result<Vec<_>, _>>()?;
                let oldest = samples.iter().map(|(t, _)| *t).fold(f64::MAX, f64::min);
                Ok((Aggregation::apply(aggregation, &values), oldest))
            }
        }
    }

    fn number(&self, text: &str) -> Result<f64, MetricError> {
        // Prometheus writes NaN and ±Inf as text; they parse and are judged by the caller.
        text.parse::<f64>().map_err(|_| MetricError::Malformed {
            url: self.url("query"),
            message: "a sample value is not a number".into(),
            remote: Remote::of(text),
        })
    }

    fn url(&self, endpoint: &str) -> String {
        format!(
            "{}/api/v1/{endpoint}",
            self.spec.address.trim_end_matches('/')
        )
    }

    fn malformed(&self, message: String) -> MetricError {
        MetricError::Malformed {
            url: self.url("query"),
            message,
            remote: Remote::default(),
        }
    }

    async fn get(&self, endpoint: &str, params: &[(&str, String)]) -> Result<Data, MetricError> {
        let url = self.url(endpoint);
        let (status, body) = self
            .requester
            .get(
                &url,
                params,
                self.bearer_token,
                Some(self.timeout),
                PROMETHEUS_BODY_LIMIT,
            )
            .await?;
        let answer: Answer = match serde_json::from_str(&body) {
            Ok(a) => a,
            Err(_) if !status.is_success() => {
                return Err(MetricError::Status {
                    url,
                    status: status.as_u16(),
                    remote: Remote::of(&body),
                });
            }
            Err(e) => {
                // serde's message can quote the answer; only its position is kept (the
                // answer itself is logged at debug by whoever reports the error).
                let what = if e.is_syntax() || e.is_eof() {
                    "not JSON"
                } else {
                    "JSON, but not a Prometheus API answer"
                };
                return Err(MetricError::Malformed {
                    url,
                    message: format!("{what} (at line {} column {})", e.line(), e.column()),
                    remote: Remote::of(&body),
                });
            }
        };
        if answer.status != "success" {
            let error_type = answer
                .error_type
                .as_deref()
                .and_then(|t| ERROR_TYPES.iter().find(|k| **k == t))
                .copied()
                .unwrap_or("other");
            return Err(MetricError::QueryFailed {
                url,
                error_type,
                remote: Remote::of(&body),
            });
        }
        answer.data.ok_or(MetricError::Malformed {
            url,
            message: "no data in the answer".into(),
            remote: Remote::default(),
        })
    }
}
