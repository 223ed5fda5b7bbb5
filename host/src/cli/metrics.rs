//! `wasm-autoscaler metrics`: fetch each metric of a `WasmAutoscaler`
//! manifest once and show its value and health — for debugging metric
//! configuration, in or outside a cluster.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use clap::Args;
use serde::Serialize;

use crate::metrics::{Fetcher, MetricError, ScrapeState};
use crate::operator::crd::{read_manifests, MetricSpec};

/// Arguments of `metrics`.
#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// The WasmAutoscaler manifest (YAML).
    #[arg(long, short = 'f', value_name = "AUTOSCALER.yaml")]
    file: PathBuf,
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
}

/// Returns whether every metric had a usable value.
pub fn run(args: MetricsArgs) -> Result<bool> {
    let (_, autoscaler, _) = read_manifests(std::slice::from_ref(&args.file))?
        .single()
        .map_err(|e| anyhow!("{}: {e}", args.file.display()))?;
    autoscaler
        .spec
        .validate()
        .map_err(|e| anyhow!("{}: {e}", args.file.display()))?;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let outcomes = tokio.block_on(async {
        let fetcher = Fetcher::new(args.timeout);
        let mut outcomes = Vec::new();
        for spec in &autoscaler.spec.metrics {
            let result = fetch(&fetcher, spec, args.gap).await;
            outcomes.push(Outcome {
                name: spec.name.clone(),
                source: describe(spec),
                health: if result.is_ok() { "ok" } else { "unavailable" },
                value: result.as_ref().ok().copied(),
                kind: result.as_ref().err().map(MetricError::kind),
                error: result.err().map(|e| e.to_string()),
            });
        }
        outcomes
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcomes)?);
    } else {
        for o in &outcomes {
            match (o.value, &o.error) {
                (Some(v), _) => println!("{:<16} ok           {v:<14} {}", o.name, o.source),
                (None, Some(e)) => println!("{:<16} unavailable  {e}  [{}]", o.name, o.source),
                _ => {}
            }
        }
    }
    Ok(outcomes.iter().all(|o| o.value.is_some()))
}

async fn fetch(fetcher: &Fetcher, spec: &MetricSpec, gap: Duration) -> Result<f64, MetricError> {
    if let Some(s) = &spec.scrape {
        if s.endpoints.is_empty() {
            return Err(MetricError::Config(
                "outside a cluster a scrape metric needs `endpoints` (host:port list)".into(),
            ));
        }
    }
    let mut state = ScrapeState::default();
    match fetcher.fetch(spec, &[], &mut state).await {
        // Counters and histograms need a second look.
        Err(MetricError::FirstScrape) => {
            tokio::time::sleep(gap).await;
            fetcher.fetch(spec, &[], &mut state).await
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
