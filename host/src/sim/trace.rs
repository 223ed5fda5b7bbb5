//! Traffic traces: CSV files of `t_seconds,rps` at a fixed step.

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
}

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

    /// Parses trace text: a `t_seconds,rps` header, then rows whose times
    /// start at 0 and increase by one fixed whole number of seconds.
    pub fn parse(name: &str, text: &str) -> Result<Self, TraceError> {
        let invalid = |line: usize, message: String| TraceError::Invalid { line, message };
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        match lines.next() {
            Some((_, h)) if h.trim().replace(' ', "") == "t_seconds,rps" => {}
            Some((i, h)) => {
                return Err(invalid(
                    i + 1,
                    format!("expected the header `t_seconds,rps`, found `{h}`"),
                ))
            }
            None => return Err(TraceError::TooShort),
        }
        let mut times = Vec::new();
        let mut rps = Vec::new();
        for (i, line) in lines {
            let n = i + 1;
            let (t, r) = line
                .split_once(',')
                .ok_or_else(|| invalid(n, format!("expected `t_seconds,rps`, found `{line}`")))?;
            let t: f64 = t
                .trim()
                .parse()
                .map_err(|_| invalid(n, format!("`{t}` is not a number of seconds")))?;
            let r: f64 = r
                .trim()
                .parse()
                .map_err(|_| invalid(n, format!("`{r}` is not a request rate")))?;
            if !(r.is_finite() && r >= 0.0) {
                return Err(invalid(
                    n,
                    format!("request rate must be a finite number ≥ 0, got {r}"),
                ));
            }
            times.push((n, t));
            rps.push(r);
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
        })
    }

    /// Length of the trace in seconds.
    pub fn duration_s(&self) -> u64 {
        self.step_s * self.rps.len() as u64
    }

    /// The request rate during second `t`.
    pub fn rps_at(&self, t: u64) -> f64 {
        self.rps[((t / self.step_s) as usize).min(self.rps.len() - 1)]
    }

    /// The highest request rate in the trace.
    pub fn peak(&self) -> f64 {
        self.rps.iter().copied().fold(0.0, f64::max)
    }
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
    fn rejects_bad_traces_with_the_line() {
        for (text, needle) in [
            ("time,rps\n0,1\n60,2", "line 1: expected the header"),
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
