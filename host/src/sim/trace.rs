//! Traffic traces: CSV files of `t_seconds,rps[,more signals…]` at a fixed step.

use std::path::Path;

/// Why a trace could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("cannot read trace {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("trace line {line}: {message}")]
    Invalid { line: usize, message: String },
    #[error("trace has fewer than two rows; it needs at least two to know its step")]
    TooShort,
}

/// A request-rate trace at a fixed step.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// Where it came from, for reports.
    pub name: String,
    /// Seconds between rows.
    pub step_s: u64,
    /// Requests per second, averaged over each step.
    pub rps: Vec<f64>,
    /// Further signals after `rps` (for example `cpu`, `memory`), by column name:
    /// policies see them under these names.
    pub signals: Vec<Signal>,
}

/// One more column of a trace: a signal other than the request rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    pub name: String,
    /// One value per step, like `rps`.
    pub values: Vec<f64>,
}

/// Most signal columns a trace may have besides `rps`.
const MAX_SIGNALS: usize = 16;

impl Trace {
    /// Reads a trace file.
    pub fn from_file(path: &Path) -> Result<Self, TraceError> {
        let text = std::fs::read_to_string(path).map_err(|source| TraceError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        Self::parse(&name, &text)
    }

    /// Parses trace text: a `t_seconds,rps` header, optionally followed by
    /// more signal columns (`t_seconds,rps,cpu,memory`), then rows whose
    /// times start at 0 and increase by one fixed whole number of seconds.
    pub fn parse(name: &str, text: &str) -> Result<Self, TraceError> {
        let invalid = |line: usize, message: String| TraceError::Invalid { line, message };
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let columns: Vec<String> = match lines.next() {
            Some((i, h)) => {
                let columns: Vec<String> = h.split(',').map(|c| c.trim().to_string()).collect();
                if columns.len() < 2 || columns[0] != "t_seconds" || columns[1] != "rps" {
                    return Err(invalid(
                        i + 1,
                        format!("expected the header `t_seconds,rps` (then any signal columns), found `{h}`"),
                    ));
                }
                check_signal_names(&columns[2..]).map_err(|m| invalid(i + 1, m))?;
                columns
            }
            None => return Err(TraceError::TooShort),
        };
        let mut times = Vec::new();
        let mut rps = Vec::new();
        let mut signals: Vec<Signal> = columns[2..]
            .iter()
            .map(|name| Signal {
                name: name.clone(),
                values: Vec::new(),
            })
            .collect();
        for (i, line) in lines {
            let n = i + 1;
            let cells: Vec<&str> = line.split(',').map(str::trim).collect();
            if cells.len() != columns.len() {
                return Err(invalid(
                    n,
                    format!(
                        "expected {} values (`{}`), found `{line}`",
                        columns.len(),
                        columns.join(",")
                    ),
                ));
            }
            let t: f64 = cells[0]
                .parse()
                .map_err(|_| invalid(n, format!("`{}` is not a number of seconds", cells[0])))?;
            for (k, cell) in cells[1..].iter().enumerate() {
                let what = if k == 0 {
                    "a request rate"
                } else {
                    "a signal value"
                };
                let v: f64 = cell
                    .parse()
                    .map_err(|_| invalid(n, format!("`{cell}` is not {what}")))?;
                if !(v.is_finite() && v >= 0.0) {
                    let column = &columns[k + 1];
                    return Err(invalid(
                        n,
                        if k == 0 {
                            format!("request rate must be a finite number ≥ 0, got {v}")
                        } else {
                            format!("`{column}` must be a finite number ≥ 0, got {v}")
                        },
                    ));
                }
                match k {
                    0 => rps.push(v),
                    _ => signals[k - 1].values.push(v),
                }
            }
            times.push((n, t));
        }
        if rps.len() < 2 {
            return Err(TraceError::TooShort);
        }
        let step = times[1].1 - times[0].1;
        if times[0].1 != 0.0 {
            return Err(invalid(
                times[0].0,
                format!("times must start at 0, got {}", times[0].1),
            ));
        }
        if !(step >= 1.0 && step.fract() == 0.0) {
            return Err(invalid(
                times[1].0,
                format!("the step must be a whole number of seconds ≥ 1, got {step}"),
            ));
        }
        for (k, &(n, t)) in times.iter().enumerate() {
            if t != k as f64 * step {
                return Err(invalid(
                    n,
                    format!(
                        "expected t = {} (fixed step {step} s), got {t}",
                        k as f64 * step
                    ),
                ));
            }
        }
        Ok(Trace {
            name: name.to_string(),
            step_s: step as u64,
            rps,
            signals,
        })
    }

    /// The value of signal `k` (an index into [`Trace::signals`]) during second `t`.
    pub fn signal_at(&self, k: usize, t: u64) -> f64 {
        self.at(&self.signals[k].values, t)
    }

    /// Length of the trace in seconds.
    pub fn duration_s(&self) -> u64 {
        self.step_s * self.rps.len() as u64
    }

    /// The request rate during second `t`.
    pub fn rps_at(&self, t: u64) -> f64 {
        self.at(&self.rps, t)
    }

    /// The value of a column (one per step) during second `t`; the last one past the end.
    fn at(&self, values: &[f64], t: u64) -> f64 {
        values[((t / self.step_s) as usize).min(values.len() - 1)]
    }

    /// The highest request rate in the trace.
    pub fn peak(&self) -> f64 {
        self.rps.iter().copied().fold(0.0, f64::max)
    }
}

/// Signal columns become metric names: they must be usable as such, and
/// must not shadow the metrics the replay computes itself.
fn check_signal_names(names: &[String]) -> Result<(), String> {
    if names.len() > MAX_SIGNALS {
        return Err(format!(
            "at most {MAX_SIGNALS} signal columns after `rps`, found {}",
            names.len()
        ));
    }
    for (k, name) in names.iter().enumerate() {
        let usable = !name.is_empty()
            && name.len() <= 63
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !usable {
            return Err(format!(
                "signal column `{name}`: use letters, digits, `_`, `-` or `.` (at most 63)"
            ));
        }
        if super::METRICS.contains(&name.as_str()) || names[..k].contains(name) {
            return Err(format!(
                "signal column `{name}` appears twice or shadows a replay metric"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_fixed_step_trace() {
        let t = Trace::parse("x", "t_seconds,rps\n0,1.5\n10,2\n20,0\n").unwrap();
        assert_eq!(
            (t.step_s, t.rps.clone(), t.duration_s()),
            (10, vec![1.5, 2.0, 0.0], 30)
        );
        assert_eq!(t.rps_at(19), 2.0);
        assert_eq!(t.rps_at(1000), 0.0);
    }

    #[test]
    fn signal_columns_are_kept_by_name() {
        let t = Trace::parse("x", "t_seconds,rps,cpu,memory\n0,1,0.5,200\n10,2,0.7,210\n").unwrap();
        assert_eq!(t.rps, vec![1.0, 2.0]);
        let names: Vec<&str> = t.signals.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["cpu", "memory"]);
        assert_eq!((t.signal_at(0, 15), t.signal_at(1, 3)), (0.7, 200.0));
    }

    #[test]
    fn rejects_bad_traces_with_the_line() {
        for (text, needle) in [
            ("time,rps\n0,1\n60,2", "line 1: expected the header"),
            (
                "t_seconds,rps,cpu\n0,1,2\n60,2",
                "line 3: expected 3 values",
            ),
            ("t_seconds,rps,cpu\n0,1,2\n60,2,-1", "line 3: `cpu` must be"),
            (
                "t_seconds,rps,utilization\n0,1,2\n60,2,1",
                "shadows a replay metric",
            ),
            ("t_seconds,rps,a b\n0,1,2\n60,2,1", "signal column `a b`"),
            (
                "t_seconds,rps\n0,1\n60,x",
                "line 3: `x` is not a request rate",
            ),
            (
                "t_seconds,rps\n0,1\n60,2\n100,3",
                "line 4: expected t = 120",
            ),
            ("t_seconds,rps\n0,1\n60,-2", "line 3: request rate must be"),
            ("t_seconds,rps\n5,1\n65,2", "times must start at 0"),
            ("t_seconds,rps\n0,1", "fewer than two rows"),
        ] {
            let e = Trace::parse("x", text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }
}
