//! Hand-written SVG charts (no plotting crate): horizontal bars for
//! throughput, and lines of latency percentiles against offered rate on a
//! logarithmic latency axis. Opens in any browser.

use std::fmt::Write;

const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];
const DASHES: [&str; 3] = ["", "6,3", "2,2"];

pub fn color(i: usize) -> &'static str {
    COLORS[i % COLORS.len()]
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A chart's title, at the top left of its box.
fn chart_title(title: &str, x: f64, y: f64) -> String {
    format!(
        r#"<text x="{x}" y="{}" font-size="14" font-weight="bold">{}</text>"#,
        y + 14.0,
        escape(title)
    )
}

/// A horizontal bar chart in the box (x, y, width, height).
pub fn bars(
    title: &str,
    unit: &str,
    items: &[(String, f64)],
    x: f64,
    y: f64,
    width: f64,
    height: f64,
) -> String {
    let mut svg = chart_title(title, x, y);
    let max = items.iter().map(|(_, v)| *v).fold(0.0, f64::max).max(1e-9);
    let label_w = 150.0;
    let bar_area = width - label_w - 110.0;
    let row = ((height - 24.0) / items.len().max(1) as f64).min(30.0);
    for (i, (label, value)) in items.iter().enumerate() {
        let ry = y + 24.0 + i as f64 * row;
        let w = bar_area * value / max;
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" font-size="12" text-anchor="end">{}</text><rect x="{}" y="{}" width="{w:.1}" height="{:.1}" fill="{}"/><text x="{}" y="{}" font-size="12">{} {}</text>"#,
            x + label_w - 6.0,
            ry + row * 0.6,
            escape(label),
            x + label_w,
            ry + row * 0.15,
            row * 0.7,
            color(i),
            x + label_w + w + 6.0,
            ry + row * 0.6,
            human(*value),
            escape(unit)
        );
    }
    svg
}

/// One line of a latency chart: (offered rate per s, latency ms) points.
pub struct Series {
    pub label: String,
    pub color: usize,
    pub dash: usize,
    pub points: Vec<(f64, f64)>,
}

/// The plot area of a latency chart and its scales: offered rate (linear)
/// across, latency (log, ms) up.
struct Plot {
    px: f64,
    py: f64,
    pw: f64,
    ph: f64,
    x_max: f64,
    log_lo: f64,
    log_hi: f64,
}

impl Plot {
    /// Scales that hold every point, in the box (x, y, width, height).
    fn new(all: &[(f64, f64)], x: f64, y: f64, width: f64, height: f64) -> Plot {
        let x_max = all.iter().map(|p| p.0).fold(0.0, f64::max).max(1.0) * 1.05;
        let lo = all
            .iter()
            .map(|p| p.1)
            .fold(f64::INFINITY, f64::min)
            .max(0.001);
        let hi = all.iter().map(|p| p.1).fold(0.0, f64::max).max(lo * 10.0);
        Plot {
            px: x + 60.0,
            py: y + 30.0,
            pw: width - 230.0,
            ph: height - 70.0,
            x_max,
            log_lo: lo.log10().floor(),
            log_hi: hi.log10().ceil(),
        }
    }

    fn sx(&self, v: f64) -> f64 {
        self.px + self.pw * v / self.x_max
    }

    fn sy(&self, v: f64) -> f64 {
        let span = (self.log_hi - self.log_lo).max(1e-9);
        self.py + self.ph - self.ph * (v.max(1e-6).log10() - self.log_lo) / span
    }

    /// The frame, a grid line per decade of latency, the rate's ticks and its label.
    fn axes(&self, svg: &mut String, rate_unit: &str) {
        let Plot { px, py, pw, ph, .. } = *self;
        let _ = write!(
            svg,
            r##"<rect x="{px}" y="{py}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>"##
        );
        let mut decade = self.log_lo;
        while decade <= self.log_hi {
            let v = 10f64.powf(decade);
            let gy = self.sy(v);
            let _ = write!(
                svg,
                r##"<line x1="{px}" y1="{gy:.1}" x2="{}" y2="{gy:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" font-size="11" text-anchor="end">{} ms</text>"##,
                px + pw,
                px - 4.0,
                gy + 4.0,
                human(v)
            );
            decade += 1.0;
        }
        for i in 0..=4 {
            let v = self.x_max * i as f64 / 4.0;
            let _ = write!(
                svg,
                r#"<text x="{:.1}" y="{}" font-size="11" text-anchor="middle">{}</text>"#,
                self.sx(v),
                py + ph + 16.0,
                human(v)
            );
        }
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" font-size="12" text-anchor="middle">offered rate ({}/s, open loop)</text>"#,
            px + pw / 2.0,
            py + ph + 34.0,
            escape(rate_unit)
        );
    }

    /// The `i`-th series: its line, a dot per point, its legend entry.
    fn series(&self, svg: &mut String, i: usize, s: &Series) {
        let points: Vec<String> = s
            .points
            .iter()
            .map(|(vx, vy)| format!("{:.1},{:.1}", self.sx(*vx), self.sy(*vy)))
            .collect();
        let stroke = color(s.color);
        let dash = DASHES[s.dash % DASHES.len()];
        let _ = write!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{stroke}" stroke-width="2" stroke-dasharray="{dash}"/>"#,
            points.join(" ")
        );
        for (vx, vy) in &s.points {
            let _ = write!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{stroke}"/>"#,
                self.sx(*vx),
                self.sy(*vy)
            );
        }
        let (px, pw) = (self.px, self.pw);
        let ly = self.py + 10.0 + i as f64 * 16.0;
        let _ = write!(
            svg,
            r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{stroke}" stroke-width="2" stroke-dasharray="{dash}"/><text x="{}" y="{}" font-size="11">{}</text>"#,
            px + pw + 10.0,
            px + pw + 34.0,
            px + pw + 38.0,
            ly + 4.0,
            escape(&s.label)
        );
    }
}

/// Latency (log scale, ms) against offered rate (linear), in the box;
/// `rate_unit` names what the rate counts (e.g. "checkouts").
pub fn latency_lines(
    title: &str,
    rate_unit: &str,
    series: &[Series],
    x: f64,
    y: f64,
    width: f64,
    height: f64,
) -> String {
    let mut svg = chart_title(title, x, y);
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .collect();
    if all.is_empty() {
        let _ = write!(
            svg,
            r#"<text x="{x}" y="{}" font-size="12">no open-loop phases</text>"#,
            y + 40.0
        );
        return svg;
    }
    let plot = Plot::new(&all, x, y, width, height);
    plot.axes(&mut svg, rate_unit);
    for (i, s) in series.iter().enumerate() {
        plot.series(&mut svg, i, s);
    }
    svg
}

/// A whole document from panels.
pub fn document(title: &str, subtitle: &str, width: f64, height: f64, body: &str) -> String {
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/><text x="20" y="28" font-size="18" font-weight="bold">{}</text><text x="20" y="48" font-size="12" fill="#555">{}</text>{body}</svg>"##,
        escape(title),
        escape(subtitle)
    )
}

/// 1234567 -> "1.23M", 0.25 -> "0.25".
pub fn human(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v == 0.0 {
        "0".into()
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_well_formed_svg() {
        let b = bars(
            "t",
            "req/s",
            &[("a<b".into(), 10.0), ("c".into(), 5.0)],
            0.0,
            0.0,
            600.0,
            100.0,
        );
        let l = latency_lines(
            "lat",
            "checkouts",
            &[Series {
                label: "p99".into(),
                color: 0,
                dash: 1,
                points: vec![(100.0, 0.5), (200.0, 3.0)],
            }],
            0.0,
            120.0,
            600.0,
            300.0,
        );
        let doc = document("T", "s", 600.0, 420.0, &format!("{b}{l}"));
        assert!(doc.starts_with("<svg") && doc.ends_with("</svg>"));
        assert!(doc.contains("a&lt;b") && doc.contains("polyline"));
        assert!(
            doc.contains("offered rate (checkouts/s, open loop)"),
            "the axis names the rate's unit"
        );
        assert_eq!(
            doc.matches("<rect").count(),
            4,
            "background, 2 bars, plot frame"
        );
        assert_eq!(human(1_234_567.0), "1.23M");
        assert_eq!(human(45_300.0), "45.3k");
    }
}
