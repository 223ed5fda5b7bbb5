//! An SVG plot of a comparison: one row per set-up with the load, the ready
//! capacity, the clairvoyant limit's capacity and the replica count over the
//! whole trace, and beside it a zoom on one episode, with the seconds that
//! violated the SLO shaded.

use std::fmt::Write as _;

use super::{Point, Report, Summary};

const WIDTH: f64 = 1400.0;
const MARGIN: f64 = 60.0;
const FULL: f64 = 820.0;
const GAP: f64 = 130.0;
const PANEL: f64 = 200.0;
/// Space above a panel for its title and below it for the time axis.
const TITLE: f64 = 34.0;
const AXIS: f64 = 34.0;
/// Most buckets drawn per panel; longer series are bucketed.
const MAX_POINTS: usize = 900;

const LOAD: &str = "#222222";
const CAPACITY: &str = "#1f77b4";
const LIMIT_CAPACITY: &str = "#2ca02c";
const REPLICAS: &str = "#ff7f0e";
const VIOLATION: &str = "#d62728";

/// A span of the trace, in seconds from its start: `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from_s: u64,
    pub to_s: u64,
}

/// Renders the report as a standalone SVG document; the zoom shows `zoom`,
/// or the episode with the most SLO-violation seconds across the set-ups.
pub fn render_svg(report: &Report, zoom: Option<Window>) -> String {
    let limit = report.limit_series.as_slice();
    let rows: Vec<(&Summary, &[Point])> = report
        .setups
        .iter()
        .zip(report.series.iter().map(Vec::as_slice))
        .collect();
    let duration = report.trace.duration_seconds.max(1);
    let whole = Window {
        from_s: 0,
        to_s: duration,
    };
    let zoom = zoom.unwrap_or_else(|| worst_episode(&rows, duration));
    let all: Vec<&[Point]> = rows.iter().map(|(_, s)| *s).chain([limit]).collect();
    let (whole_scales, zoom_scales) = (Scales::within(&all, whole), Scales::within(&all, zoom));

    let row_height = TITLE + PANEL + AXIS;
    let height = rows.len().max(1) as f64 * row_height + 60.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let baseline = report.setups.first();
    for (i, (summary, series)) in rows.iter().enumerate() {
        let top = 10.0 + i as f64 * row_height + TITLE;
        let _ = writeln!(
            svg,
            r#"<text x="{MARGIN}" y="{}" font-weight="bold">{}</text>"#,
            top - 8.0,
            escape(&title(summary, baseline))
        );
        let zoom_left = MARGIN + FULL + GAP;
        let zoom_width = WIDTH - zoom_left - MARGIN;
        let _ = writeln!(
            svg,
            r#"<text x="{zoom_left}" y="{}">zoom: {} – {}</text>"#,
            top - 8.0,
            clock(zoom.from_s),
            clock(zoom.to_s)
        );
        for (left, width, window, scales) in [
            (MARGIN, FULL, whole, &whole_scales),
            (zoom_left, zoom_width, zoom, &zoom_scales),
        ] {
            let area = Area {
                left,
                top,
                width,
                window,
            };
            panel(&mut svg, &area, scales, series, limit);
        }
    }
    legend(&mut svg, height - 20.0);
    svg.push_str("</svg>\n");
    svg
}

/// Where a panel is drawn and which span of the trace it shows.
struct Area {
    left: f64,
    top: f64,
    width: f64,
    window: Window,
}

impl Area {
    fn x(&self, t: u64) -> f64 {
        let span = (self.window.to_s - self.window.from_s).max(1) as f64;
        self.left + (t.saturating_sub(self.window.from_s) as f64 / span) * self.width
    }
}

/// The vertical scales the panels of one span share, so set-ups compare at a glance.
struct Scales {
    rps: f64,
    replicas: f64,
}

impl Scales {
    /// Scales that fit every series inside `window`.
    fn within(series: &[&[Point]], window: Window) -> Self {
        let inside = || {
            series
                .iter()
                .flat_map(|s| s.iter())
                .filter(move |p| p.t_s >= window.from_s && p.t_s < window.to_s)
        };
        Scales {
            rps: inside()
                .map(|p| p.load_rps.max(p.ready_capacity_rps))
                .fold(1e-9, f64::max),
            replicas: inside().map(|p| p.replicas).max().unwrap_or(1).max(1) as f64,
        }
    }
}

fn panel(svg: &mut String, area: &Area, scales: &Scales, series: &[Point], limit: &[Point]) {
    let (top, bottom) = (area.top, area.top + PANEL);
    let y_rps = |v: f64| bottom - (v / scales.rps) * PANEL;
    let y_rep = |v: f64| bottom - (v / scales.replicas) * PANEL;
    let w = area.window;
    let shown = |s: &[Point]| -> Vec<Point> {
        let inside: Vec<Point> = s
            .iter()
            .copied()
            .filter(|p| p.t_s >= w.from_s && p.t_s < w.to_s)
            .collect();
        bucket(&inside)
    };
    let buckets = shown(series);
    // Shade first, so the lines stay on top.
    for (k, b) in buckets.iter().enumerate() {
        if b.slo_violation_s > 0 {
            let end = buckets.get(k + 1).map_or(w.to_s, |n| n.t_s);
            let x0 = area.x(b.t_s);
            let _ = writeln!(
                svg,
                r#"<rect x="{x0:.1}" y="{top}" width="{:.1}" height="{PANEL}" fill="{VIOLATION}" fill-opacity="0.25"/>"#,
                (area.x(end) - x0).max(0.8)
            );
        }
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{}" y="{top}" width="{}" height="{PANEL}" fill="none" stroke="#999"/>"##,
        area.left, area.width
    );
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="end">{:.0} rps</text>"#,
        area.left - 4.0,
        top + 10.0,
        scales.rps
    );
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}">{:.0} pods</text>"#,
        area.left + area.width + 4.0,
        top + 10.0,
        scales.replicas
    );
    time_axis(svg, area, bottom);
    let limit = shown(limit);
    line(
        svg,
        LIMIT_CAPACITY,
        Some("4 3"),
        limit
            .iter()
            .map(|b| (area.x(b.t_s), y_rps(b.ready_capacity_rps))),
    );
    line(
        svg,
        CAPACITY,
        None,
        buckets
            .iter()
            .map(|b| (area.x(b.t_s), y_rps(b.ready_capacity_rps))),
    );
    line(
        svg,
        LOAD,
        None,
        buckets.iter().map(|b| (area.x(b.t_s), y_rps(b.load_rps))),
    );
    line(
        svg,
        REPLICAS,
        None,
        buckets
            .iter()
            .map(|b| (area.x(b.t_s), y_rep(f64::from(b.replicas)))),
    );
}

/// Ticks at a round spacing that gives at most about eight labels.
fn time_axis(svg: &mut String, area: &Area, bottom: f64) {
    const SPACINGS: [u64; 11] = [
        60, 300, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200, 86_400, 172_800,
    ];
    let span = area.window.to_s - area.window.from_s;
    let most = if area.width < 400.0 { 4 } else { 8 };
    let spacing = SPACINGS
        .iter()
        .copied()
        .find(|s| span / s <= most)
        .unwrap_or(604_800);
    let mut t = area.window.from_s.div_ceil(spacing) * spacing;
    while t <= area.window.to_s {
        let x = area.x(t);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{bottom}" x2="{x:.1}" y2="{}" stroke="#999"/><text x="{x:.1}" y="{}" text-anchor="middle" fill="#555">{}</text>"##,
            bottom + 5.0,
            bottom + 18.0,
            clock(t)
        );
        t += spacing;
    }
}

/// Time since the trace began: `d2 06:00` (day 2, 06:00 into it), or `06:00` on day 1.
fn clock(t: u64) -> String {
    let (day, rest) = (t / 86_400, t % 86_400);
    let hm = format!("{:02}:{:02}", rest / 3600, rest % 3600 / 60);
    if day == 0 {
        hm
    } else {
        format!("d{} {hm}", day + 1)
    }
}

/// The panel's title: the set-up's summary and its ratios to the baseline and the limit.
fn title(s: &Summary, baseline: Option<&Summary>) -> String {
    let vs = |v: f64, b: f64| {
        if b > 0.0 {
            format!(
                ", {:.2}× {}",
                v / b,
                baseline.map_or("", |b| b.setup.as_str())
            )
        } else {
            String::new()
        }
    };
    let (slo, cost, actions) = match baseline.filter(|b| b.setup != s.setup) {
        Some(b) => (
            vs(
                s.slo_violation_seconds as f64,
                b.slo_violation_seconds as f64,
            ),
            vs(s.pod_hours, b.pod_hours),
            vs(f64::from(s.scale_actions), f64::from(b.scale_actions)),
        ),
        None => Default::default(),
    };
    let limit = s
        .pod_hours_vs_limit
        .map_or_else(String::new, |r| format!(", {r:.2}× limit"));
    format!(
        "{} — SLO-violation {} s{slo} · {:.1} pod-hours{cost}{limit} · {} actions{actions}",
        s.setup, s.slo_violation_seconds, s.pod_hours, s.scale_actions
    )
}

/// The span with the most SLO-violation seconds summed over the set-ups:
/// a twelfth of the trace, between one and six hours.
fn worst_episode(rows: &[(&Summary, &[Point])], duration: u64) -> Window {
    let span = (duration / 12).clamp(3600, 6 * 3600).min(duration);
    let mut per_tick: Vec<(u64, u64)> = Vec::new();
    for (_, series) in rows {
        for (k, p) in series.iter().enumerate() {
            match per_tick.get_mut(k) {
                Some(slot) => slot.1 += u64::from(p.slo_violation_s),
                None => per_tick.push((p.t_s, u64::from(p.slo_violation_s))),
            }
        }
    }
    let (mut best, mut best_sum, mut sum, mut first) = (0, 0, 0, 0);
    for (k, &(t, v)) in per_tick.iter().enumerate() {
        sum += v;
        while per_tick[first].0 + span <= t {
            sum -= per_tick[first].1;
            first += 1;
        }
        if sum > best_sum {
            (best, best_sum) = (k, sum);
        }
    }
    let to = per_tick
        .get(best)
        .map_or(span, |p| p.0 + 1)
        .max(span)
        .min(duration);
    Window {
        from_s: to - span,
        to_s: to,
    }
}

fn legend(svg: &mut String, y: f64) {
    let items = [
        ("load (rps)", LOAD, None),
        ("ready capacity (rps)", CAPACITY, None),
        ("limit's ready capacity", LIMIT_CAPACITY, Some("4 3")),
        ("replicas (right scale)", REPLICAS, None),
    ];
    let mut x = MARGIN;
    for (label, colour, dash) in items {
        let dash = dash.map_or_else(String::new, |d| format!(r#" stroke-dasharray="{d}""#));
        let _ = writeln!(
            svg,
            r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{colour}" stroke-width="2"{dash}/><text x="{}" y="{}">{label}</text>"#,
            x + 24.0,
            x + 30.0,
            y + 4.0
        );
        x += 210.0;
    }
    let _ = writeln!(
        svg,
        r#"<rect x="{x}" y="{}" width="24" height="10" fill="{VIOLATION}" fill-opacity="0.25"/><text x="{}" y="{}">SLO violated</text>"#,
        y - 5.0,
        x + 30.0,
        y + 4.0
    );
}

/// Reduces a series to at most [`MAX_POINTS`] buckets, keeping what matters
/// visually: the highest load and replicas, the lowest ready capacity, and
/// every violating second.
fn bucket(series: &[Point]) -> Vec<Point> {
    let size = series.len().div_ceil(MAX_POINTS).max(1);
    series
        .chunks(size)
        .map(|c| Point {
            t_s: c[0].t_s,
            load_rps: c.iter().map(|p| p.load_rps).fold(0.0, f64::max),
            ready_capacity_rps: c
                .iter()
                .map(|p| p.ready_capacity_rps)
                .fold(f64::INFINITY, f64::min),
            replicas: c.iter().map(|p| p.replicas).max().unwrap_or(0),
            slo_violation_s: c.iter().map(|p| p.slo_violation_s).sum(),
        })
        .collect()
}

fn line(
    svg: &mut String,
    colour: &str,
    dash: Option<&str>,
    points: impl Iterator<Item = (f64, f64)>,
) {
    let coords: Vec<String> = points.map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    let dash = dash.map_or_else(String::new, |d| format!(r#" stroke-dasharray="{d}""#));
    let _ = writeln!(
        svg,
        r#"<polyline fill="none" stroke="{colour}" stroke-width="1"{dash} points="{}"/>"#,
        coords.join(" ")
    );
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(t_s: u64, slo_violation_s: u32) -> Point {
        Point {
            t_s,
            load_rps: 1.0,
            ready_capacity_rps: 1.0,
            replicas: 1,
            slo_violation_s,
        }
    }

    #[test]
    fn the_zoom_finds_the_span_with_the_most_violations() {
        // Two days at 15 s ticks; violations around 30 h, more of them in one set-up.
        let day2: Vec<Point> = (0..11_520)
            .map(|k| point(k * 15, u32::from((7200..7240).contains(&k))))
            .collect();
        let quiet: Vec<Point> = (0..11_520).map(|k| point(k * 15, 0)).collect();
        let s = Summary::new("x");
        let w = worst_episode(&[(&s, &day2), (&s, &quiet)], 172_800);
        assert_eq!(w.to_s - w.from_s, 14_400);
        assert!(w.from_s <= 7200 * 15 && w.to_s > 7239 * 15, "{w:?}");
    }

    #[test]
    fn clock_labels_name_the_day_after_the_first() {
        assert_eq!(clock(6 * 3600 + 300), "06:05");
        assert_eq!(clock(86_400 + 3600), "d2 01:00");
    }
}
