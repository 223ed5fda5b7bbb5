//! An SVG plot of a comparison: one panel per set-up with the load, the
//! ready capacity and the replica count over time.

use std::fmt::Write as _;

use super::{Point, Report};

const WIDTH: f64 = 1200.0;
const PANEL: f64 = 220.0;
const MARGIN: f64 = 50.0;
/// Most points drawn per line; longer series are bucketed.
const MAX_POINTS: usize = 1200;

/// Renders the report's time series as a standalone SVG document.
pub fn render_svg(report: &Report) -> String {
    let n = report.series.len().max(1) as f64;
    let height = n * (PANEL + MARGIN) + MARGIN;
    let rps_max = report
        .series
        .iter()
        .flat_map(|(_, s)| s.iter().map(|p| p.load_rps.max(p.ready_capacity_rps)))
        .fold(1.0, f64::max);
    let replicas_max = report
        .series
        .iter()
        .flat_map(|(_, s)| s.iter().map(|p| p.replicas))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let duration = report.trace.duration_seconds.max(1) as f64;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    for (i, (name, series)) in report.series.iter().enumerate() {
        let top = MARGIN + i as f64 * (PANEL + MARGIN);
        let x = |t: u64| MARGIN + (t as f64 / duration) * (WIDTH - 2.0 * MARGIN);
        let y_rps = |v: f64| top + PANEL - (v / rps_max) * PANEL;
        let y_rep = |v: f64| top + PANEL - (v / replicas_max) * PANEL;
        let _ = writeln!(
            svg,
            r#"<text x="{MARGIN}" y="{}" font-weight="bold">{}</text>"#,
            top - 8.0,
            escape(name)
        );
        let _ = writeln!(
            svg,
            r##"<rect x="{MARGIN}" y="{top}" width="{}" height="{PANEL}" fill="none" stroke="#999"/>"##,
            WIDTH - 2.0 * MARGIN
        );
        let _ = writeln!(
            svg,
            r#"<text x="4" y="{}">{:.0} rps</text>"#,
            top + 12.0,
            rps_max
        );
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}">{replicas_max:.0} pods</text>"#,
            WIDTH - MARGIN + 4.0,
            top + 12.0
        );
        let buckets = bucket(series);
        line(
            &mut svg,
            "#1f77b4",
            buckets
                .iter()
                .map(|b| (x(b.t_s), y_rps(b.ready_capacity_rps))),
        );
        line(
            &mut svg,
            "#222222",
            buckets.iter().map(|b| (x(b.t_s), y_rps(b.load_rps))),
        );
        line(
            &mut svg,
            "#ff7f0e",
            buckets
                .iter()
                .map(|b| (x(b.t_s), y_rep(f64::from(b.replicas)))),
        );
    }
    let legend_y = height - 15.0;
    for (k, (label, colour)) in [
        ("load (rps)", "#222222"),
        ("ready capacity (rps)", "#1f77b4"),
        ("replicas (right scale)", "#ff7f0e"),
    ]
    .iter()
    .enumerate()
    {
        let lx = MARGIN + k as f64 * 220.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{lx}" y1="{0}" x2="{1}" y2="{0}" stroke="{colour}" stroke-width="2"/><text x="{2}" y="{3}">{label}</text>"#,
            legend_y,
            lx + 24.0,
            lx + 30.0,
            legend_y + 4.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// Reduces a series to at most [`MAX_POINTS`] buckets, keeping what matters
/// visually: the highest load and replicas, and the lowest ready capacity.
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
        })
        .collect()
}

fn line(svg: &mut String, colour: &str, points: impl Iterator<Item = (f64, f64)>) {
    let coords: Vec<String> = points.map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    let _ = writeln!(
        svg,
        r#"<polyline fill="none" stroke="{colour}" stroke-width="1" points="{}"/>"#,
        coords.join(" ")
    );
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
