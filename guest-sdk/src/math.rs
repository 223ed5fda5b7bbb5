//! Numeric helpers that most forecasting and sizing policies need.

/// Exponentially weighted moving average of `values` (oldest first) with
/// smoothing factor `alpha` in (0, 1]; `None` for no values.
pub fn ewma(values: impl IntoIterator<Item = f64>, alpha: f64) -> Option<f64> {
    values.into_iter().fold(None, |level, v| match level {
        None => Some(v),
        Some(l) => Some(alpha * v + (1.0 - alpha) * l),
    })
}

/// A straight line `y = slope * x + intercept`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Line {
    pub slope: f64,
    pub intercept: f64,
}

impl Line {
    /// The line's value at `x`.
    pub fn at(&self, x: f64) -> f64 {
        self.slope * x + self.intercept
    }
}

/// Ordinary least-squares fit of `(x, y)` points; `None` with fewer than two
/// points or when all `x` are equal.
pub fn least_squares(points: &[(f64, f64)]) -> Option<Line> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    // Centre x and y first: timestamps are ~1e12 ms and squaring them raw
    // loses every significant digit of the slope.
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for &(x, y) in points {
        let dx = x - mean_x;
        sxy += dx * (y - mean_y);
        sxx += dx * dx;
    }
    if sxx == 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    Some(Line {
        slope,
        intercept: mean_y - slope * mean_x,
    })
}

/// The `q`-quantile (0 ≤ q ≤ 1) of `values`, interpolating linearly between
/// the closest ranks; `None` for no values or `q` out of range.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ewma_weights_recent_values() {
        assert_eq!(ewma([], 0.5), None);
        assert_eq!(ewma([4.0], 0.5), Some(4.0));
        // 0 → 0.5*10 + 0.5*0 = 5 → 0.5*20 + 0.5*5 = 12.5
        assert_eq!(ewma([0.0, 10.0, 20.0], 0.5), Some(12.5));
        assert_eq!(ewma([1.0, 2.0, 3.0], 1.0), Some(3.0));
    }

    #[test]
    fn least_squares_recovers_a_line_at_epoch_scale() {
        let t0 = 1.7e12;
        let pts: Vec<_> = (0..50)
            .map(|i| {
                let x = t0 + i as f64 * 15_000.0;
                (x, 0.002 * (x - t0) + 7.0)
            })
            .collect();
        let line = least_squares(&pts).unwrap();
        assert!((line.slope - 0.002).abs() < 1e-12, "{line:?}");
        assert!((line.at(t0) - 7.0).abs() < 1e-6, "{line:?}");
    }

    #[test]
    fn least_squares_needs_spread() {
        assert_eq!(least_squares(&[(1.0, 2.0)]), None);
        assert_eq!(least_squares(&[(1.0, 2.0), (1.0, 3.0)]), None);
    }

    #[test]
    fn quantile_interpolates() {
        let v = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(quantile(&v, 0.0), Some(1.0));
        assert_eq!(quantile(&v, 1.0), Some(4.0));
        assert_eq!(quantile(&v, 0.5), Some(2.5));
        assert_eq!(quantile(&v, 1.5), None);
        assert_eq!(quantile(&[], 0.5), None);
    }
}
