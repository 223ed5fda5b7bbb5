//! `schedule` — a predictor for known events: business hours, a match
//! kick-off, a sale. Each window starts at the times a cron expression
//! names, in an IANA time zone, and lasts a fixed duration; while it is on,
//! the forecast says either a load level for a metric (which the decider
//! sizes for) or a number of `replicas` (which the host's safety layer keeps
//! at least). Used as an autoscaler's `schedule`, it is combined with the
//! predictor's forecast by max, so it only ever adds capacity.
//!
//! It reads the time from the request's `now` only, so a replay is exact,
//! and the time zone database is compiled into the component. Starts are
//! matched on local wall-clock minutes, the way the clocks on the wall go:
//! a start in the hour the clocks skip in spring happens when they resume
//! (at 03:00 for a 02:30 start), and a start in the hour repeated in autumn
//! happens once, at its first occurrence. Durations are real elapsed time.

mod cron;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::Deserialize;
use wasm_autoscaler_guest::{
    export_predictor, ForecastPoint, ForecastRequest, ForecastResponse, MetricForecast, Predictor,
};

pub use cron::{Cron, Fields};

/// The forecast metric a `minReplicas` window sets.
pub const REPLICAS: &str = "replicas";
/// Most points one forecast may hold.
const MAX_POINTS: usize = 1_000;
/// Longest window.
const MAX_DURATION_MS: i64 = 24 * 3_600_000;
/// Longest `lead`.
const MAX_LEAD_MS: i64 = 6 * 3_600_000;
/// More than any clock change (historic double summer time was 2 h).
const DST_MARGIN_MS: i64 = 3 * 3_600_000;
const MINUTE_MS: i64 = 60_000;

/// Configuration of the `schedule` predictor.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// The IANA time zone the cron expressions are read in, e.g. `Europe/Berlin`.
    pub time_zone: String,
    /// The windows; the largest value wins where they overlap.
    pub windows: Vec<Window>,
}

/// One recurring window.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Window {
    /// When it starts, as five cron fields (minute hour day month weekday).
    pub cron: String,
    /// How long it lasts, e.g. `90m` or `10h` (at most 24 h).
    pub duration: String,
    /// The metric whose load the window forecasts…
    #[serde(default)]
    pub metric: Option<String>,
    /// …and that load.
    #[serde(default)]
    pub value: Option<f64>,
    /// Or: at least this many replicas while it is on.
    #[serde(default)]
    pub min_replicas: Option<u32>,
    /// Be on this long before each start, e.g. `5m`, so the capacity is there
    /// when the window opens, step limits and start-up included (at most 6 h).
    #[serde(default)]
    pub lead: Option<String>,
}

/// A window, checked.
struct Plan {
    cron: Cron,
    duration_ms: i64,
    lead_ms: i64,
    metric: String,
    value: f64,
}

/// The schedule predictor.
pub struct Schedule;

impl Predictor for Schedule {
    type Config = Config;

    fn validate(config: &Config) -> Result<(), String> {
        plans(config).map(|_| ())
    }

    fn forecast(config: &Config, request: &ForecastRequest) -> Result<ForecastResponse, String> {
        let (tz, plans) = plans(config)?;
        let now = request.now_ms as i64;
        let step = if request.step_ms > 0.0 {
            request.step_ms as i64
        } else {
            MINUTE_MS
        };
        let n = ((request.horizon_ms.max(0.0) as i64) / step + 1).clamp(1, MAX_POINTS as i64);
        let times: Vec<i64> = (0..n).map(|k| now + k * step).collect();
        let last = *times.last().expect("at least one point");
        // A window on at `now` started at most its duration ago; the scan
        // starts earlier still, so a repeated hour is recognized as repeated.
        let longest = plans.iter().map(|p| p.duration_ms).max().unwrap_or(0);
        let lead = plans.iter().map(|p| p.lead_ms).max().unwrap_or(0);
        let starts = starts(&tz, &plans, now - longest - DST_MARGIN_MS, last + lead)?;
        let mut metrics: Vec<&str> = plans.iter().map(|p| p.metric.as_str()).collect();
        metrics.sort_unstable();
        metrics.dedup();
        let forecasts = metrics
            .into_iter()
            .map(|metric| MetricForecast {
                name: metric.to_string(),
                points: times
                    .iter()
                    .map(|&t| ForecastPoint {
                        time_ms: t as f64,
                        value: value_at(&plans, &starts, metric, t),
                    })
                    .collect(),
            })
            .collect();
        Ok(ForecastResponse {
            forecasts,
            state: None,
        })
    }
}

/// The time zone and the checked windows.
fn plans(config: &Config) -> Result<(TimeZone, Vec<Plan>), String> {
    let tz = TimeZone::get(&config.time_zone).map_err(|_| {
        format!(
            "`timeZone`: `{}` is not an IANA time zone",
            config.time_zone
        )
    })?;
    if config.windows.is_empty() {
        return Err("`windows` is empty".into());
    }
    let mut plans = Vec::new();
    for (i, w) in config.windows.iter().enumerate() {
        let at = |e: String| format!("windows[{i}]: {e}");
        let cron = Cron::parse(&w.cron).map_err(at)?;
        let duration_ms =
            parse_duration(&w.duration).map_err(|e| at(format!("`duration`: {e}")))?;
        let lead_ms = match &w.lead {
            Some(l) => parse_duration(l).map_err(|e| at(format!("`lead`: {e}")))?,
            None => 0,
        };
        if lead_ms > MAX_LEAD_MS {
            return Err(at("`lead` is longer than 6h".into()));
        }
        let (metric, value) = match (&w.metric, w.value, w.min_replicas) {
            (Some(m), Some(v), None) if m != REPLICAS => {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(at(format!("`value` must be a number ≥ 0, got {v}")));
                }
                (m.clone(), v)
            }
            (None, None, Some(r)) => (REPLICAS.to_string(), f64::from(r)),
            _ => {
                return Err(at(
                    "set either `metric` and `value` (a load to forecast) or `minReplicas`".into(),
                ))
            }
        };
        plans.push(Plan {
            cron,
            duration_ms,
            lead_ms,
            metric,
            value,
        });
    }
    Ok((tz, plans))
}

/// `90m`, `10h`, `1h30m`, `45s`: a positive duration of at most 24 h.
fn parse_duration(text: &str) -> Result<i64, String> {
    let bad = || format!("`{text}` is not a duration like 90m or 10h");
    let mut total = 0i64;
    let mut number = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3_600_000,
            'm' => MINUTE_MS,
            's' => 1_000,
            _ => return Err(bad()),
        };
        let n: i64 = number.parse().map_err(|_| bad())?;
        total = total.saturating_add(n.saturating_mul(unit));
        number.clear();
    }
    if !number.is_empty() || total <= 0 {
        return Err(bad());
    }
    if total > MAX_DURATION_MS {
        return Err(format!("`{text}` is longer than 24h"));
    }
    Ok(total)
}

/// Every window start in `[from, to]` (Unix ms), as (window, start).
fn starts(tz: &TimeZone, plans: &[Plan], from: i64, to: i64) -> Result<Vec<(usize, i64)>, String> {
    let mut out = Vec::new();
    let mut minute = from.div_euclid(MINUTE_MS) * MINUTE_MS;
    let mut previous: Option<jiff::civil::DateTime> = None;
    while minute <= to {
        let local = Timestamp::from_millisecond(minute)
            .map_err(|e| format!("time {minute} ms: {e}"))?
            .to_zoned(tz.clone())
            .datetime();
        match previous {
            // The clocks went back: these wall-clock minutes were matched already.
            Some(p) if local <= p => {}
            // The clocks jumped ahead: minutes that never showed start now.
            Some(p) if local > p + jiff::SignedDuration::from_mins(1) => {
                let mut skipped = p + jiff::SignedDuration::from_mins(1);
                while skipped <= local {
                    for (i, plan) in plans.iter().enumerate() {
                        if plan.cron.matches(fields(skipped)) && !out.contains(&(i, minute)) {
                            out.push((i, minute));
                        }
                    }
                    skipped += jiff::SignedDuration::from_mins(1);
                }
            }
            _ => {
                for (i, plan) in plans.iter().enumerate() {
                    if plan.cron.matches(fields(local)) {
                        out.push((i, minute));
                    }
                }
            }
        }
        if previous.is_none_or(|p| local > p) {
            previous = Some(local);
        }
        minute += MINUTE_MS;
    }
    Ok(out)
}

fn fields(local: jiff::civil::DateTime) -> Fields {
    Fields {
        minute: local.minute() as u32,
        hour: local.hour() as u32,
        day: local.day() as u32,
        month: local.month() as u32,
        weekday: local.weekday().to_sunday_zero_offset() as u32,
    }
}

/// The largest value of `metric`'s windows that are on at `t`; 0 when none is.
fn value_at(plans: &[Plan], starts: &[(usize, i64)], metric: &str, t: i64) -> f64 {
    starts
        .iter()
        .filter(|(i, s)| {
            let p = &plans[*i];
            p.metric == metric && s - p.lead_ms <= t && t < s + p.duration_ms
        })
        .map(|(i, _)| plans[*i].value)
        .fold(0.0, f64::max)
}

export_predictor!(Schedule);

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_autoscaler_guest::harness;

    fn ms(rfc3339: &str) -> f64 {
        rfc3339.parse::<Timestamp>().unwrap().as_millisecond() as f64
    }

    fn request(config: &str, now: &str, horizon_min: f64) -> ForecastRequest {
        ForecastRequest {
            now_ms: ms(now),
            horizon_ms: horizon_min * 60_000.0,
            step_ms: 60_000.0,
            histories: Vec::new(),
            config: config.into(),
            state: None,
        }
    }

    /// The value of `metric` at `now` (the first point).
    fn value(config: &str, metric: &str, now: &str) -> f64 {
        let r = harness::forecast::<Schedule>(&request(config, now, 0.0)).unwrap();
        r.forecasts
            .iter()
            .find(|f| f.name == metric)
            .map(|f| f.points[0].value)
            .unwrap()
    }

    const BUSINESS: &str = r#"{"timeZone": "Europe/Berlin", "windows": [
        {"cron": "0 8 * * MON-FRI", "duration": "10h", "metric": "rps", "value": 400},
        {"cron": "30 19 * * SAT", "duration": "2h", "minReplicas": 12}]}"#;

    #[test]
    fn windows_follow_the_local_clock() {
        // 2026-06-15 is a Monday; Berlin is UTC+2 in summer.
        assert_eq!(value(BUSINESS, "rps", "2026-06-15T05:59:00Z"), 0.0);
        assert_eq!(value(BUSINESS, "rps", "2026-06-15T06:00:00Z"), 400.0);
        assert_eq!(value(BUSINESS, "rps", "2026-06-15T15:59:00Z"), 400.0);
        assert_eq!(value(BUSINESS, "rps", "2026-06-15T16:00:00Z"), 0.0);
        assert_eq!(
            value(BUSINESS, "rps", "2026-06-20T08:00:00Z"),
            0.0,
            "Saturday"
        );
        assert_eq!(value(BUSINESS, "replicas", "2026-06-20T17:30:00Z"), 12.0);
        assert_eq!(value(BUSINESS, "replicas", "2026-06-20T19:29:00Z"), 12.0);
        assert_eq!(value(BUSINESS, "replicas", "2026-06-20T19:30:00Z"), 0.0);
        // Winter: UTC+1.
        assert_eq!(value(BUSINESS, "rps", "2026-01-12T06:30:00Z"), 0.0);
        assert_eq!(value(BUSINESS, "rps", "2026-01-12T07:00:00Z"), 400.0);
    }

    #[test]
    fn a_lead_opens_the_window_early() {
        let early = r#"{"timeZone": "UTC", "windows": [
            {"cron": "0 8 * * *", "duration": "1h", "lead": "5m", "minReplicas": 9}]}"#;
        assert_eq!(value(early, "replicas", "2026-06-15T07:54:00Z"), 0.0);
        assert_eq!(value(early, "replicas", "2026-06-15T07:55:00Z"), 9.0);
        assert_eq!(value(early, "replicas", "2026-06-15T08:59:00Z"), 9.0);
        assert_eq!(value(early, "replicas", "2026-06-15T09:00:00Z"), 0.0);
        let too_long = r#"{"timeZone": "UTC", "windows": [
            {"cron": "0 8 * * *", "duration": "1h", "lead": "7h", "minReplicas": 9}]}"#;
        let err = harness::validate_predictor_config::<Schedule>(too_long).unwrap_err();
        assert!(err.contains("`lead` is longer than 6h"), "{err}");
    }

    #[test]
    fn the_horizon_sees_a_window_coming() {
        let r = harness::forecast::<Schedule>(&request(BUSINESS, "2026-06-15T05:50:00Z", 15.0))
            .unwrap();
        let rps = r.forecasts.iter().find(|f| f.name == "rps").unwrap();
        assert_eq!(rps.points.len(), 16);
        assert_eq!(rps.points[9].value, 0.0);
        assert_eq!(
            rps.points[10].value, 400.0,
            "on at 06:00Z, ten minutes ahead"
        );
    }

    /// Daily windows across both DST changes of 2026, in two time zones.
    #[test]
    fn dst_changes_in_two_time_zones() {
        let daily = |tz: &str, cron: &str, duration: &str| {
            format!(
                r#"{{"timeZone": "{tz}", "windows": [{{"cron": "{cron}", "duration": "{duration}", "metric": "rps", "value": 1}}]}}"#
            )
        };
        // Europe/Berlin: 2026-03-29 02:00 CET → 03:00 CEST; 2026-10-25 03:00 CEST → 02:00 CET.
        let eight = daily("Europe/Berlin", "0 8 * * *", "1h");
        for (now, on) in [
            ("2026-03-28T07:00:00Z", true),  // 08:00 CET
            ("2026-03-29T06:00:00Z", true),  // 08:00 CEST: the window moved an hour in UTC
            ("2026-03-29T07:00:00Z", false), // 09:00 CEST
            ("2026-10-24T06:00:00Z", true),  // 08:00 CEST, the day before the clocks go back
            ("2026-10-25T06:00:00Z", false), // 07:00 CET
            ("2026-10-25T06:59:00Z", false), // 07:59 CET
            ("2026-10-25T07:00:00Z", true),  // 08:00 CET
        ] {
            assert_eq!(value(&eight, "rps", now) > 0.0, on, "Berlin {now}");
        }
        // A start in the skipped hour happens when the clocks resume…
        let skipped = daily("Europe/Berlin", "30 2 * * *", "10m");
        assert_eq!(value(&skipped, "rps", "2026-03-29T00:59:00Z"), 0.0);
        assert_eq!(
            value(&skipped, "rps", "2026-03-29T01:00:00Z"),
            1.0,
            "03:00 CEST"
        );
        assert_eq!(value(&skipped, "rps", "2026-03-29T01:10:00Z"), 0.0);
        // …and a start in the repeated hour happens once.
        let repeated = daily("Europe/Berlin", "30 2 * * *", "10m");
        assert_eq!(
            value(&repeated, "rps", "2026-10-25T00:35:00Z"),
            1.0,
            "02:35 CEST"
        );
        assert_eq!(
            value(&repeated, "rps", "2026-10-25T01:35:00Z"),
            0.0,
            "02:35 CET again"
        );
        // America/New_York: 2026-03-08 02:00 EST → 03:00 EDT; 2026-11-01 02:00 EDT → 01:00 EST.
        let nine = daily("America/New_York", "0 9 * * *", "8h");
        assert_eq!(
            value(&nine, "rps", "2026-03-07T14:00:00Z"),
            1.0,
            "09:00 EST"
        );
        assert_eq!(
            value(&nine, "rps", "2026-03-08T13:00:00Z"),
            1.0,
            "09:00 EDT"
        );
        assert_eq!(
            value(&nine, "rps", "2026-03-08T12:59:00Z"),
            0.0,
            "08:59 EDT"
        );
        assert_eq!(
            value(&nine, "rps", "2026-11-01T13:00:00Z"),
            0.0,
            "08:00 EST"
        );
        assert_eq!(
            value(&nine, "rps", "2026-11-01T14:00:00Z"),
            1.0,
            "09:00 EST"
        );
        // A window across the change lasts its real duration: 02:00–03:00 EDT→EST.
        let overnight = daily("America/New_York", "0 0 * * *", "3h");
        assert_eq!(
            value(&overnight, "rps", "2026-11-01T06:59:00Z"),
            1.0,
            "01:59 EST, 2h59m in"
        );
        assert_eq!(
            value(&overnight, "rps", "2026-11-01T07:00:00Z"),
            0.0,
            "02:00 EST, 3 h after"
        );
    }

    #[test]
    fn configs_are_checked_with_the_field_named() {
        for (config, want) in [
            (r#"{"timeZone": "Mars/Olympus", "windows": []}"#, "timeZone"),
            (
                r#"{"timeZone": "UTC", "windows": []}"#,
                "`windows` is empty",
            ),
            (
                r#"{"timeZone": "UTC", "windows": [{"cron": "* *", "duration": "1h", "minReplicas": 1}]}"#,
                "windows[0]",
            ),
            (
                r#"{"timeZone": "UTC", "windows": [{"cron": "* * * * *", "duration": "25h", "minReplicas": 1}]}"#,
                "longer than 24h",
            ),
            (
                r#"{"timeZone": "UTC", "windows": [{"cron": "* * * * *", "duration": "soon", "minReplicas": 1}]}"#,
                "duration",
            ),
            (
                r#"{"timeZone": "UTC", "windows": [{"cron": "* * * * *", "duration": "1h", "metric": "rps"}]}"#,
                "either",
            ),
            (
                r#"{"timeZone": "UTC", "windows": [{"cron": "* * * * *", "duration": "1h", "metric": "rps", "value": 1, "minReplicas": 2}]}"#,
                "either",
            ),
            (
                r#"{"timeZone": "UTC", "windows": [{"cron": "* * * * *", "duration": "1h", "metric": "rps", "value": -1}]}"#,
                "≥ 0",
            ),
        ] {
            let err = harness::validate_predictor_config::<Schedule>(config).unwrap_err();
            assert!(err.contains(want), "{config}: {err}");
        }
        assert!(harness::validate_predictor_config::<Schedule>(BUSINESS).is_ok());
    }
}
