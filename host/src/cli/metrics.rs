//! `wasm-autoscaler metrics`: fetch each metric of a `WasmAutoscaler`
//! manifest once and show its value and health — for debugging metric
//! configuration, in or outside a cluster.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use clap::Args;
use serde::Serialize;

use super::output::outln;
use crate::boundary::credentials::{self, AdminCredential, AdminCredentials, Auth, SecretSource};
use crate::boundary::egress::EgressPolicy;
use crate::metrics::{Fetcher, MetricError, ScrapeState};
use crate::operator::crd::{read_manifests, MetricSpec};

/// Arguments of `metrics`.
#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// The WasmAutoscaler manifest (YAML). Repeat to add files holding the Secrets its
    /// `bearerTokenSecret` and `caSecret` name.
    #[arg(long, short = 'f', value_name = "AUTOSCALER.yaml", required = true)]
    file: Vec<PathBuf>,
    /// A credential a metric names (`credential:`), as the operator's admin declares it:
    /// `NAME:address=URL[,token=FILE][,ca=FILE]`.
    #[arg(long = "credential", value_name = "NAME:address=URL,...")]
    credentials: Vec<AdminCredential>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Timeout of each request.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Wait between the two scrapes a counter rate or histogram quantile needs.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    gap: Duration,
}

/// One metric's outcome.
#[derive(Debug, Serialize)]
struct Outcome {
    name: String,
    source: String,
    /// `ok` or `unavailable`.
    health: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    /// What the server answered, when the error is about its answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    answer: Option<String>,
}

/// Returns whether every metric had a usable value.
pub fn run(args: MetricsArgs) -> Result<bool> {
    let shown = args.file[0].display();
    let (_, autoscaler, rest) = read_manifests(&args.file)?
        .single()
        .map_err(|e| anyhow!("{shown}: {e}"))?;
    autoscaler
        .spec
        .validate()
        .map_err(|e| anyhow!("{shown}: {e}"))?;
    let admin = AdminCredentials::new(args.credentials.clone()).map_err(anyhow::Error::msg)?;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let outcomes = tokio.block_on(async {
        // Run by a user on their own machine: no one else's input, so no egress rules.
        let fetcher = Fetcher::new(args.timeout, EgressPolicy::unrestricted());
        let secrets = SecretSource::Manifests(&rest.secrets);
        let mut outcomes = Vec::new();
        for spec in &autoscaler.spec.metrics {
            let result = match &spec.prometheus {
                Some(p) => credentials::resolve(p, &secrets, &admin)
                    .await
                    .map_err(MetricError::from),
                None => Ok(Auth::default()),
            };
            let result = match result {
                Ok(auth) => fetch(&fetcher, spec, &auth, args.gap).await,
                Err(e) => Err(e),
            };
            outcomes.push(Outcome {
                name: spec.name.clone(),
                source: describe(spec),
                health: if result.is_ok() { "ok" } else { "unavailable" },
                value: result.as_ref().ok().copied(),
                kind: result.as_ref().err().map(MetricError::kind),
                answer: result
                    .as_ref()
                    .err()
                    .and_then(|e| e.remote_detail().map(str::to_string)),
                error: result.err().map(|e| e.to_string()),
            });
        }
        outcomes
    });
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&outcomes)?)?;
    } else {
        for o in &outcomes {
            match (o.value, &o.error) {
                (Some(v), _) => outln!("{:<16} ok           {v:<14} {}", o.name, o.source)?,
                (None, Some(e)) => {
                    outln!("{:<16} unavailable  {e}  [{}]", o.name, o.source)?;
                    if let Some(answer) = &o.answer {
                        outln!("{:<16} answered     {answer}", "")?;
                    }
                }
                _ => {}
            }
        }
    }
    Ok(outcomes.iter().all(|o| o.value.is_some()))
}

async fn fetch(
    fetcher: &Fetcher,
    spec: &MetricSpec,
    auth: &Auth,
    gap: Duration,
) -> Result<f64, MetricError> {
    if let Some(s) = &spec.scrape {
        if s.endpoints.is_empty() {
            return Err(MetricError::Config(
                "outside a cluster a scrape metric needs `endpoints` (host:port list)".into(),
            ));
        }
    }
    let mut state = ScrapeState::default();
    match fetcher.fetch(spec, auth, &[], &mut state).await {
        // Counters and histograms need a second look.
        Err(MetricError::FirstScrape) => {
            tokio::time::sleep(gap).await;
            fetcher.fetch(spec, auth, &[], &mut state).await
        }
        other => other,
    }
}

fn describe(spec: &MetricSpec) -> String {
    match (&spec.prometheus, &spec.scrape) {
        (Some(p), _) => format!("prometheus {} `{}`", p.address, p.query),
        (_, Some(s)) => format!("scrape `{}` from {}", s.metric, s.endpoints.join(", ")),
        _ => String::new(),
    }
}
