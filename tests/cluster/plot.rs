//! A small SVG line chart for the results files: panels stacked over one x axis (time since the
//! start, as the soak plots it, or a count, as the rollouts are), a line per series, vertical
//! markers (the soak's faults) and shaded bands (its warm-up and judged windows).

use std::fmt::Write as _;

const WIDTH: f64 = 960.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 64.0;
const PANEL_HEIGHT: f64 = 170.0;
/// Room above each panel for its title.
const PANEL_GAP: f64 = 36.0;
const BOTTOM: f64 = 44.0;

/// The whole chart.
pub(crate) struct Chart {
    pub(crate) title: String,
    /// The end of the x axis (it starts at 0): seconds, or a count with `x_label`.
    pub(crate) x_max: f64,
    /// What the x axis counts, if not seconds since the processes started.
    pub(crate) x_label: Option<&'static str>,
    pub(crate) panels: Vec<Panel>,
    pub(crate) markers: Vec<Marker>,
    /// What the markers' colours mean; markers are drawn in these colours only.
    pub(crate) marker_legend: Vec<(&'static str, &'static str)>,
    /// Shaded spans of time: from, to (seconds), colour, label.
    pub(crate) bands: Vec<(f64, f64, &'static str, &'static str)>,
}

/// One panel: a value axis from 0 and the lines on it.
pub(crate) struct Panel {
    title: &'static str,
    pub(crate) lines: Vec<Line>,
}

impl Panel {
    pub(crate) fn new(title: &'static str) -> Panel {
        Panel {
            title,
            lines: Vec::new(),
        }
    }
}

/// A series: points (seconds, value), drawn in `color`; `label` names it in the legend.
pub(crate) struct Line {
    pub(crate) label: Option<String>,
    pub(crate) color: &'static str,
    pub(crate) dashed: bool,
    pub(crate) points: Vec<(f64, f64)>,
}

/// A vertical line across every panel at `at` seconds.
pub(crate) struct Marker {
    pub(crate) at: f64,
    pub(crate) color: &'static str,
}

/// Up to about `count` round tick values from 0 to at least `max`: steps of 1, 2 or 5 times a
/// power of ten.
fn ticks(max: f64, count: f64) -> Vec<f64> {
    let max = if max > 0.0 { max } else { 1.0 };
    let rough = max / count;
    let power = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|&step| step >= rough)
        .unwrap_or(10.0 * power);
    let steps = (max / step).ceil() as usize;
    (0..=steps).map(|i| i as f64 * step).collect()
}

/// Pixels per bucket in [`thin`].
const BUCKET: f64 = 2.0;

/// At most two points per [`BUCKET`] pixels of `points` (pixel coordinates, in time order): the
/// lowest and the highest of each bucket, in the order they came, so a long series draws the
/// same spikes in a fraction of the points.
fn thin(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut kept = Vec::new();
    let mut start = 0;
    while start < points.len() {
        let bucket = (points[start].0 / BUCKET).floor();
        let end = start
            + points[start..]
                .iter()
                .take_while(|(px, _)| (px / BUCKET).floor() == bucket)
                .count();
        let slice = &points[start..end];
        let by_y = |a: &&(f64, f64), b: &&(f64, f64)| a.1.total_cmp(&b.1);
        let low = slice.iter().enumerate().min_by(|a, b| by_y(&a.1, &b.1));
        let high = slice.iter().enumerate().max_by(|a, b| by_y(&a.1, &b.1));
        if let (Some((i, &low)), Some((j, &high))) = (low, high) {
            match i.cmp(&j) {
                std::cmp::Ordering::Less => kept.extend([low, high]),
                std::cmp::Ordering::Greater => kept.extend([high, low]),
                std::cmp::Ordering::Equal => kept.push(low),
            }
        }
        start = end;
    }
    kept
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn number(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

impl Chart {
    /// The chart as an SVG document.
    pub(crate) fn svg(&self) -> String {
        let panels = self.panels.len() as f64;
        let height = TOP + panels * (PANEL_GAP + PANEL_HEIGHT) + BOTTOM;
        let plot_width = WIDTH - LEFT - RIGHT;
        let x_max = self.x_max.max(1.0);
        let minutes = self.x_label.is_none() && x_max > 180.0;
        let unit = if minutes { 60.0 } else { 1.0 };
        let x_ticks = ticks(x_max / unit, 10.0);
        let x_end = x_ticks.last().copied().unwrap_or(1.0) * unit;
        let x = |seconds: f64| LEFT + seconds.clamp(0.0, x_end) / x_end * plot_width;

        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(
            svg,
            r#"<rect width="{WIDTH}" height="{height}" fill="white"/>"#
        );
        let _ = writeln!(
            svg,
            r#"<text x="{LEFT}" y="20" font-size="15" font-weight="bold">{}</text>"#,
            escape(&self.title)
        );
        self.legend(&mut svg);

        for (index, panel) in self.panels.iter().enumerate() {
            let top = TOP + index as f64 * (PANEL_GAP + PANEL_HEIGHT) + PANEL_GAP;
            let bottom = top + PANEL_HEIGHT;
            let y_max_seen = panel
                .lines
                .iter()
                .flat_map(|line| line.points.iter().map(|&(_, v)| v))
                .fold(0.0f64, f64::max);
            let y_ticks = ticks(y_max_seen * 1.05, 4.0);
            let y_end = y_ticks.last().copied().unwrap_or(1.0);
            let y = |value: f64| bottom - value.max(0.0) / y_end * PANEL_HEIGHT;
            let _ = writeln!(
                svg,
                r#"<text x="{LEFT}" y="{}" font-weight="bold">{}</text>"#,
                top - 8.0,
                escape(panel.title)
            );
            for &(from, to, color, label) in &self.bands {
                let opacity = if label == "warm-up" { 0.07 } else { 0.18 };
                let _ = writeln!(
                    svg,
                    r#"<rect x="{:.1}" y="{top}" width="{:.1}" height="{PANEL_HEIGHT}" fill="{color}" fill-opacity="{opacity}" stroke="{color}" stroke-opacity="0.6"><title>{}</title></rect>"#,
                    x(from),
                    (x(to) - x(from)).max(0.0),
                    escape(label)
                );
            }
            for &tick in &y_ticks {
                let _ = writeln!(
                    svg,
                    r##"<line x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#dddddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                    LEFT + plot_width,
                    y(tick),
                    y(tick),
                    LEFT - 6.0,
                    y(tick) + 4.0,
                    number(tick)
                );
            }
            // One path per marker colour.
            for &(_, color) in &self.marker_legend {
                let path: String = self
                    .markers
                    .iter()
                    .filter(|marker| marker.color == color)
                    .map(|marker| format!("M{:.1} {top}V{bottom}", x(marker.at)))
                    .collect();
                if !path.is_empty() {
                    let _ = writeln!(
                        svg,
                        r#"<path d="{path}" stroke="{color}" stroke-opacity="0.45"/>"#
                    );
                }
            }
            for line in &panel.lines {
                if line.points.is_empty() {
                    continue;
                }
                let pixels: Vec<(f64, f64)> = line
                    .points
                    .iter()
                    .map(|&(at, value)| (x(at), y(value)))
                    .collect();
                let points: Vec<String> = thin(&pixels)
                    .iter()
                    .map(|(px, py)| format!("{px:.1},{py:.1}"))
                    .collect();
                let dash = if line.dashed {
                    r#" stroke-dasharray="4 3""#
                } else {
                    ""
                };
                let _ = writeln!(
                    svg,
                    r#"<polyline fill="none" stroke="{}" stroke-width="1.5"{dash} points="{}"/>"#,
                    line.color,
                    points.join(" ")
                );
            }
            let _ = writeln!(
                svg,
                r##"<rect x="{LEFT}" y="{top}" width="{plot_width}" height="{PANEL_HEIGHT}" fill="none" stroke="#333333"/>"##
            );
        }

        let axis = TOP + panels * (PANEL_GAP + PANEL_HEIGHT);
        for &tick in &x_ticks {
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
                x(tick * unit),
                axis + 16.0,
                number(tick)
            );
        }
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            LEFT + plot_width / 2.0,
            axis + 36.0,
            match self.x_label {
                Some(label) => label,
                None if minutes => "minutes since the processes started",
                None => "seconds since the processes started",
            }
        );
        svg.push_str("</svg>\n");
        svg
    }

    /// One row under the title: each labelled line, each marker colour, each band.
    fn legend(&self, svg: &mut String) {
        let mut entries: Vec<(Swatch, &str)> = Vec::new();
        for line in self.panels.iter().flat_map(|panel| &panel.lines) {
            if let Some(label) = &line.label
                && !entries.iter().any(|(_, seen)| seen == label)
            {
                entries.push((Swatch::Line(line.color), label));
            }
        }
        for &(label, color) in &self.marker_legend {
            entries.push((Swatch::Marker(color), label));
        }
        for &(_, _, color, label) in &self.bands {
            // Both windows share one entry.
            let (label, opacity) = if label == "warm-up" {
                (label, 0.15)
            } else {
                ("judged windows", 0.3)
            };
            if !entries.iter().any(|(_, seen)| *seen == label) {
                entries.push((Swatch::Band(color, opacity), label));
            }
        }
        let mut x = LEFT;
        let y = 42.0;
        for (swatch, label) in entries {
            let _ = match swatch {
                Swatch::Line(color) => write!(
                    svg,
                    r#"<line x1="{x}" x2="{}" y1="{y}" y2="{y}" stroke="{color}" stroke-width="2"/>"#,
                    x + 16.0
                ),
                Swatch::Marker(color) => write!(
                    svg,
                    r#"<line x1="{0}" x2="{0}" y1="{1}" y2="{2}" stroke="{color}" stroke-width="2"/>"#,
                    x + 8.0,
                    y - 7.0,
                    y + 7.0
                ),
                Swatch::Band(color, opacity) => write!(
                    svg,
                    r#"<rect x="{x}" y="{}" width="16" height="12" fill="{color}" fill-opacity="{opacity}"/>"#,
                    y - 6.0
                ),
            };
            let _ = writeln!(
                svg,
                r#"<text x="{}" y="{}">{}</text>"#,
                x + 22.0,
                y + 4.0,
                escape(label)
            );
            x += 30.0 + 7.0 * label.len() as f64;
        }
    }
}

/// How the legend shows an entry.
enum Swatch {
    Line(&'static str),
    Marker(&'static str),
    Band(&'static str, f64),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_maximum() {
        assert_eq!(ticks(9.0, 4.0), [0.0, 5.0, 10.0]);
        assert_eq!(
            ticks(31.0, 10.0),
            [0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0]
        );
        assert_eq!(ticks(0.0, 4.0), [0.0, 0.5, 1.0]);
    }

    #[test]
    fn thinning_keeps_each_buckets_extremes_in_order() {
        let points = [
            (0.0, 5.0),
            (0.5, 9.0),
            (1.0, 1.0),
            (1.5, 5.0),
            (2.0, 3.0),
            (9.0, 4.0),
        ];
        assert_eq!(
            thin(&points),
            [(0.5, 9.0), (1.0, 1.0), (2.0, 3.0), (9.0, 4.0)]
        );
    }

    #[test]
    fn a_chart_is_one_svg_document_with_every_line_and_marker() {
        let mut panel = Panel::new("RSS (MiB)");
        panel.lines.push(Line {
            label: Some("long-1".into()),
            color: "#1f77b4",
            dashed: false,
            points: vec![(0.0, 10.0), (30.0, 11.0), (60.0, 11.0)],
        });
        let chart = Chart {
            title: "a & b".into(),
            x_max: 60.0,
            x_label: None,
            panels: vec![panel],
            markers: vec![Marker {
                at: 10.0,
                color: "#d62728",
            }],
            marker_legend: vec![("SIGKILL", "#d62728")],
            bands: vec![(0.0, 20.0, "#000000", "warm-up")],
        };
        let svg = chart.svg();
        assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("a &amp; b"));
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert!(svg.contains("long-1") && svg.contains("SIGKILL") && svg.contains("warm-up"));
        assert!(svg.contains("seconds since the processes started"));
        let counted = Chart {
            x_label: Some("rollout"),
            ..chart
        };
        assert!(counted.svg().contains(">rollout</text>"));
    }
}
