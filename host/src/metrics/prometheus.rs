//! The `prometheus` source: one PromQL instant query per tick.

use serde::Deserialize;

use super::MetricError;

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum Data {
    Vector(Vec<Series>),
    Scalar((f64, String)),
    Matrix(serde::de::IgnoredAny),
    String(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct Series {
    value: (f64, String),
}

/// Runs `query` against the server at `address` and returns its one number.
pub async fn query(http: &reqwest::Client, address: &str, query: &str) -> Result<f64, MetricError> {
    let url = format!("{}/api/v1/query", address.trim_end_matches('/'));
    let response = http
        .get(&url)
        .query(&[("query", query)])
        .send()
        .await
        .map_err(|e| MetricError::Request {
            url: url.clone(),
            message: e.to_string(),
        })?;
    let status = response.status();
    let body = response.text().await.map_err(|e| MetricError::Request {
        url: url.clone(),
        message: e.to_string(),
    })?;
    let malformed = |message: String| MetricError::Malformed {
        url: url.clone(),
        message,
    };
    let answer: Answer = match serde_json::from_str(&body) {
        Ok(a) => a,
        Err(_) if !status.is_success() => {
            return Err(MetricError::Status {
                url,
                status: status.as_u16(),
                body: body.chars().take(200).collect(),
            })
        }
        Err(e) => return Err(malformed(e.to_string())),
    };
    if answer.status != "success" {
        return Err(malformed(format!(
            "query failed: {}",
            answer.error.unwrap_or_default()
        )));
    }
    let sample = match answer.data {
        Some(Data::Scalar(v)) => v,
        Some(Data::Vector(series)) => match series.len() {
            0 => return Err(MetricError::NoSeries),
            1 => series.into_iter().next().expect("one series").value,
            n => return Err(MetricError::SeveralSeries(n)),
        },
        Some(_) => {
            return Err(malformed(
                "the query must return a vector or a scalar".into(),
            ))
        }
        None => return Err(malformed("no data in the answer".into())),
    };
    sample
        .1
        .parse::<f64>()
        .map_err(|e| malformed(format!("value `{}`: {e}", sample.1)))
}
