//! Cron expressions of five fields — minute, hour, day of month, month, day
//! of week — as crontab(5) reads them: `*`, numbers, ranges `a-b`, lists
//! `a,b`, steps `*/n` and `a-b/n`, month and weekday names (`JAN`, `MON`),
//! weekday 0 or 7 for Sunday; when both day fields are restricted, a day
//! matching either one matches.

/// A parsed cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    day_restricted: bool,
    weekday_restricted: bool,
}

/// The local wall-clock fields a cron expression is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fields {
    pub minute: u32,
    pub hour: u32,
    pub day: u32,
    pub month: u32,
    /// 0 = Sunday … 6 = Saturday.
    pub weekday: u32,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl Cron {
    /// Parses `text`, naming the field that is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(format!(
                "`{text}` is not a cron expression of 5 fields (minute hour day month weekday)"
            ));
        }
        let field = |i: usize, name: &str, min: u32, max: u32, names: &[&str]| {
            bits(parts[i], min, max, names).map_err(|e| format!("`{text}`: {name}: {e}"))
        };
        let minutes = field(0, "minute", 0, 59, &[])?;
        let hours = field(1, "hour", 0, 23, &[])?;
        let days = field(2, "day of month", 1, 31, &[])?;
        let months = field(3, "month", 1, 12, &MONTHS)?;
        let mut weekdays = field(4, "day of week", 0, 7, &WEEKDAYS)?;
        // 7 is Sunday too.
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1;
        }
        Ok(Cron {
            minutes,
            hours: hours as u32,
            days: days as u32,
            months: months as u16,
            weekdays: (weekdays & 0x7f) as u8,
            day_restricted: parts[2] != "*",
            weekday_restricted: parts[4] != "*",
        })
    }

    /// Whether a start falls on this local minute.
    pub fn matches(&self, f: Fields) -> bool {
        let day = self.days & (1 << f.day) != 0;
        let weekday = self.weekdays & (1 << f.weekday) != 0;
        let day_ok = match (self.day_restricted, self.weekday_restricted) {
            (true, true) => day || weekday,
            (true, false) => day,
            (false, true) => weekday,
            (false, false) => true,
        };
        self.minutes & (1 << f.minute) != 0
            && self.hours & (1 << f.hour) != 0
            && self.months & (1 << f.month) != 0
            && day_ok
    }
}

/// The set of values a field allows, as bits.
fn bits(text: &str, min: u32, max: u32, names: &[&str]) -> Result<u64, String> {
    let mut out = 0u64;
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .map_err(|_| format!("step `{s}` is not a number"))?;
                if step == 0 {
                    return Err("a step of 0".into());
                }
                (r, step)
            }
            None => (item, 1),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, min, max, names)?, value(b, min, max, names)?)
        } else {
            let v = value(range, min, max, names)?;
            // `5/15` means from 5 to the end, every 15.
            (v, if item.contains('/') { max } else { v })
        };
        if lo > hi {
            return Err(format!("range `{range}` runs backwards"));
        }
        for v in (lo..=hi).step_by(step as usize) {
            out |= 1 << v;
        }
    }
    Ok(out)
}

fn value(text: &str, min: u32, max: u32, names: &[&str]) -> Result<u32, String> {
    let v = match names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        // Names count from the field's first value: JAN is 1, SUN is 0.
        Some(i) => i as u32 + min,
        None => text
            .parse()
            .map_err(|_| format!("`{text}` is not a number or a name"))?,
    };
    if (min..=max).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is outside {min}..={max}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: u32, hour: u32, day: u32, month: u32, weekday: u32) -> Fields {
        Fields {
            minute,
            hour,
            day,
            month,
            weekday,
        }
    }

    #[test]
    fn fields_ranges_lists_steps_and_names() {
        let c = Cron::parse("*/15 8-18 * * MON-FRI").unwrap();
        assert!(c.matches(at(0, 8, 3, 6, 1)));
        assert!(c.matches(at(45, 18, 3, 6, 5)));
        assert!(!c.matches(at(10, 8, 3, 6, 1)));
        assert!(!c.matches(at(0, 19, 3, 6, 1)));
        assert!(!c.matches(at(0, 9, 3, 6, 6)), "Saturday");
        let c = Cron::parse("30 19 1,15 jan,JUL 7").unwrap();
        assert!(
            c.matches(at(30, 19, 1, 1, 2)),
            "day 1 matches though Tuesday"
        );
        assert!(c.matches(at(30, 19, 9, 7, 0)), "a Sunday in July matches");
        assert!(!c.matches(at(30, 19, 9, 8, 0)), "not in August");
        let c = Cron::parse("5/20 * * * *").unwrap();
        assert!(c.matches(at(5, 0, 1, 1, 0)) && c.matches(at(45, 0, 1, 1, 0)));
        assert!(!c.matches(at(0, 0, 1, 1, 0)));
    }

    #[test]
    fn bad_expressions_name_the_field() {
        for (text, want) in [
            ("* * * *", "5 fields"),
            ("60 * * * *", "minute"),
            ("* 24 * * *", "hour"),
            ("* * 0 * *", "day of month"),
            ("* * * FOO *", "month"),
            ("* * * * 8", "day of week"),
            ("*/0 * * * *", "step of 0"),
            ("5-1 * * * *", "backwards"),
        ] {
            let err = Cron::parse(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
