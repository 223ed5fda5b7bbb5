//! Forecasts between the predictors and the decider: checked, the
//! predictor's and the schedule's combined by max, and the reserved
//! `replicas` forecast turned into a floor for the safety layer.

use crate::runtime::bindings::{ForecastPoint, MetricForecast};

use super::MAX_FORECAST_POINTS;

/// The forecast metric whose values are replica counts to keep at least
/// (a schedule's minimum replicas), not a load for the decider to size for.
pub const REPLICAS: &str = "replicas";

/// Refuses a forecast with too many points or non-finite values.
pub(super) fn check(forecasts: &[MetricForecast]) -> Result<(), String> {
    for f in forecasts {
        if f.points.len() > MAX_FORECAST_POINTS {
            return Err(format!(
                "forecast of `{}` has {} points (most {MAX_FORECAST_POINTS})",
                f.name,
                f.points.len()
            ));
        }
        if let Some(p) = f
            .points
            .iter()
            .find(|p| !p.value.is_finite() || !p.time_ms.is_finite())
        {
            return Err(format!(
                "forecast of `{}` holds a non-finite value ({}) at {}",
                f.name, p.value, p.time_ms
            ));
        }
    }
    Ok(())
}

/// `a` and `b` combined metric by metric: a metric in one only is taken as
/// it is; a metric in both gets, at every time either has a point, the
/// larger of the two values, each series holding its value between points
/// (and its first value before it).
pub(super) fn combine_by_max(
    a: Vec<MetricForecast>,
    b: Vec<MetricForecast>,
) -> Vec<MetricForecast> {
    let mut out = a;
    for theirs in b {
        match out.iter_mut().find(|f| f.name == theirs.name) {
            None => out.push(theirs),
            Some(ours) => {
                let mut times: Vec<f64> = ours
                    .points
                    .iter()
                    .chain(&theirs.points)
                    .map(|p| p.time_ms)
                    .collect();
                times.sort_by(f64::total_cmp);
                times.dedup();
                ours.points = times
                    .into_iter()
                    .map(|t| ForecastPoint {
                        time_ms: t,
                        value: held(&ours.points, t).max(held(&theirs.points, t)),
                    })
                    .collect();
            }
        }
    }
    out
}

/// The value a series holds at `t`: its last point at or before `t`, or its first.
fn held(points: &[ForecastPoint], t: f64) -> f64 {
    points
        .iter()
        .filter(|p| p.time_ms <= t)
        .max_by(|a, b| a.time_ms.total_cmp(&b.time_ms))
        .or_else(|| points.iter().min_by(|a, b| a.time_ms.total_cmp(&b.time_ms)))
        .map_or(f64::NEG_INFINITY, |p| p.value)
}

/// The most replicas the `replicas` forecast asks for between `from` and `to` (ms).
pub(super) fn floor(forecasts: &[MetricForecast], from: f64, to: f64) -> Option<u32> {
    let f = forecasts.iter().find(|f| f.name == REPLICAS)?;
    let peak = f
        .points
        .iter()
        .filter(|p| p.time_ms >= from && p.time_ms <= to)
        .map(|p| p.value)
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))?;
    (peak > 0.0).then(|| peak.ceil().min(f64::from(u32::MAX)) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, points: &[(f64, f64)]) -> MetricForecast {
        MetricForecast {
            name: name.into(),
            points: points
                .iter()
                .map(|&(time_ms, value)| ForecastPoint { time_ms, value })
                .collect(),
        }
    }

    fn values(f: &MetricForecast) -> Vec<(f64, f64)> {
        f.points.iter().map(|p| (p.time_ms, p.value)).collect()
    }

    #[test]
    fn the_larger_forecast_wins_at_every_point() {
        let predicted = vec![series("rps", &[(0.0, 10.0), (15.0, 12.0), (30.0, 14.0)])];
        let scheduled = vec![
            series("rps", &[(0.0, 0.0), (15.0, 40.0), (30.0, 0.0)]),
            series("replicas", &[(0.0, 3.0)]),
        ];
        let combined = combine_by_max(predicted, scheduled);
        assert_eq!(
            values(&combined[0]),
            [(0.0, 10.0), (15.0, 40.0), (30.0, 14.0)]
        );
        assert_eq!(combined[1].name, "replicas", "a metric of one side is kept");
        // Points at other times: each side holds its value in between.
        let offset = combine_by_max(
            vec![series("rps", &[(0.0, 10.0), (20.0, 30.0)])],
            vec![series("rps", &[(10.0, 20.0)])],
        );
        assert_eq!(
            values(&offset[0]),
            [(0.0, 20.0), (10.0, 20.0), (20.0, 30.0)]
        );
    }

    #[test]
    fn the_floor_is_the_peak_within_the_horizon() {
        let f = vec![series("replicas", &[(0.0, 2.0), (60.0, 7.2), (120.0, 9.0)])];
        assert_eq!(floor(&f, 0.0, 60.0), Some(8));
        assert_eq!(floor(&f, 0.0, 200.0), Some(9));
        assert_eq!(floor(&[series("rps", &[(0.0, 5.0)])], 0.0, 60.0), None);
        assert_eq!(floor(&[series("replicas", &[(0.0, 0.0)])], 0.0, 60.0), None);
    }
}
