//! Line charts as standalone SVG, for `bench ... --plot`: a cost against a size, one line
//! per series, the x axis logarithmic (sizes grow by factors). No dependency: a few dozen
//! elements of text, viewable in any browser.

use std::fmt::Write as _;

/// One line of a chart: a name for the legend and its points (x > 0).
pub(crate) struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A chart: its title, the axes' labels and the series.
pub(crate) struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
}

/// The plot area's size and its margins (the legend's, on the right, fits the longest name).
const PLOT_WIDTH: f64 = 460.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 80.0;
const TOP: f64 = 48.0;
const BOTTOM: f64 = 64.0;
/// Width of a character of the 12 px sans-serif text, about (for the legend's margin).
const CHAR_WIDTH: f64 = 7.0;
const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
];

/// `text` safe inside an SVG element or attribute.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A round step for about `ticks` intervals up to `max` (1, 2 or 5 times a power of ten).
fn step(max: f64, ticks: f64) -> f64 {
    let raw = (max / ticks).max(f64::MIN_POSITIVE);
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * power)
}

/// A size as an x tick label: whole thousands as "10k", otherwise rounded.
fn size_label(x: f64) -> String {
    if x >= 1000.0 && (x / 1000.0).fract() == 0.0 {
        format!("{}k", x / 1000.0)
    } else {
        label(x)
    }
}

/// A number as a tick label: whole from 10 up, otherwise without needless decimals.
fn label(x: f64) -> String {
    if x.fract() == 0.0 || x.abs() >= 10.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

impl Chart {
    /// The chart as an SVG document. Points with x ≤ 0 or a non-finite coordinate are left
    /// out (the x axis is logarithmic).
    pub(crate) fn svg(&self) -> String {
        let usable = |&(x, y): &(f64, f64)| x > 0.0 && x.is_finite() && y.is_finite();
        let points: Vec<(f64, f64)> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().copied().filter(usable))
            .collect();
        let (mut x_min, mut x_max) = points
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &(x, _)| {
                (lo.min(x), hi.max(x))
            });
        if points.is_empty() {
            (x_min, x_max) = (1.0, 10.0);
        }
        let (lx_min, mut lx_max) = (x_min.log10(), x_max.log10());
        if lx_max - lx_min < 1e-9 {
            lx_max = lx_min + 1.0;
        }
        let y_top = points.iter().map(|&(_, y)| y).fold(0.0f64, f64::max);
        let y_step = step(if y_top > 0.0 { y_top } else { 1.0 }, 5.0);
        let y_max = (y_top / y_step).ceil().max(1.0) * y_step;
        let longest = self
            .series
            .iter()
            .map(|s| s.name.chars().count())
            .max()
            .unwrap_or(0);
        let right = 60.0 + longest as f64 * CHAR_WIDTH;
        let (w, h) = (PLOT_WIDTH, HEIGHT - TOP - BOTTOM);
        let width = LEFT + w + right;
        let px = |x: f64| LEFT + (x.log10() - lx_min) / (lx_max - lx_min) * w;
        let py = |y: f64| TOP + h - y / y_max * h;

        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{HEIGHT}" viewBox="0 0 {width} {HEIGHT}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(
            s,
            r#"<rect width="{width}" height="{HEIGHT}" fill="white"/>"#
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="24" text-anchor="middle" font-size="15">{}</text>"#,
            LEFT + w / 2.0,
            escape(&self.title)
        );
        // Grid and ticks: y every step; x at each distinct x of the data.
        let mut y = 0.0;
        while y <= y_max + y_step / 2.0 {
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="#ddd"/><text x="{2}" y="{3:.1}" text-anchor="end">{4}</text>"##,
                py(y),
                LEFT + w,
                LEFT - 6.0,
                py(y) + 4.0,
                label(y)
            );
            y += y_step;
        }
        let mut xs: Vec<f64> = points.iter().map(|&(x, _)| x).collect();
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        for x in xs {
            let _ = writeln!(
                s,
                r##"<line x1="{0:.1}" y1="{TOP}" x2="{0:.1}" y2="{1:.1}" stroke="#eee"/><text x="{0:.1}" y="{2:.1}" text-anchor="middle">{3}</text>"##,
                px(x),
                TOP + h,
                TOP + h + 18.0,
                size_label(x)
            );
        }
        let _ = writeln!(
            s,
            r##"<rect x="{LEFT}" y="{TOP}" width="{w}" height="{h}" fill="none" stroke="#444"/>"##
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{} (log scale)</text>"#,
            LEFT + w / 2.0,
            HEIGHT - 18.0,
            escape(&self.x_label)
        );
        let _ = writeln!(
            s,
            r#"<text x="18" y="{0}" text-anchor="middle" transform="rotate(-90 18 {0})">{1}</text>"#,
            TOP + h / 2.0,
            escape(&self.y_label)
        );
        for (i, series) in self.series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let mut line: Vec<(f64, f64)> = series.points.iter().copied().filter(usable).collect();
            line.sort_by(|a, b| a.0.total_cmp(&b.0));
            let coords: Vec<String> = line
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
                coords.join(" ")
            );
            for &(x, y) in &line {
                let _ = writeln!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#,
                    px(x),
                    py(y)
                );
            }
            let ly = TOP + 12.0 + i as f64 * 20.0;
            let _ = writeln!(
                s,
                r#"<line x1="{0}" y1="{1}" x2="{2}" y2="{1}" stroke="{color}" stroke-width="2"/><text x="{3}" y="{4}">{5}</text>"#,
                LEFT + w + 12.0,
                ly,
                LEFT + w + 32.0,
                LEFT + w + 38.0,
                ly + 4.0,
                escape(&series.name)
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_has_a_line_per_series_and_escapes_its_text() {
        let chart = Chart {
            title: "cost <of> \"search\" & more\u{1b}[2J".into(),
            x_label: "articles".into(),
            y_label: "ms".into(),
            series: vec![
                Series {
                    name: "p50".into(),
                    points: vec![(1000.0, 0.1), (100_000.0, 1.6), (10_000.0, 0.3)],
                },
                Series {
                    name: "p99 <b>".into(),
                    points: vec![(1000.0, 0.3), (0.0, 9.0), (10_000.0, f64::NAN)],
                },
            ],
        };
        let svg = chart.svg();
        assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        // Unusable points (x = 0, NaN) are left out; the rest drawn in x order.
        assert_eq!(svg.matches("<circle").count(), 4);
        assert!(svg.contains("cost &lt;of&gt; &quot;search&quot; &amp; more [2J"));
        assert!(svg.contains("p99 &lt;b&gt;") && !svg.contains("<b>"));
        assert!(!svg.contains('\u{1b}'));
        for tick in [">1k<", ">10k<", ">100k<"] {
            assert!(svg.contains(tick), "{tick}");
        }
        // Points in x order: 1k, 10k, 100k left to right.
        let line = svg.lines().find(|l| l.contains("<polyline")).unwrap_or("");
        let xs: Vec<f64> = line
            .split("points=\"")
            .nth(1)
            .unwrap_or("")
            .split(['"', ' '])
            .filter_map(|p| p.split(',').next()?.parse().ok())
            .collect();
        assert_eq!(xs.len(), 3, "{line}");
        assert!(xs.windows(2).all(|w| w[0] < w[1]), "{line}");
        // Nothing to draw is still a chart.
        let empty = Chart {
            title: "none".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            series: Vec::new(),
        };
        assert!(empty.svg().contains("</svg>"));
    }

    #[test]
    fn steps_are_round() {
        assert_eq!(step(9.0, 5.0), 2.0);
        assert_eq!(step(1.6, 5.0), 0.5);
        assert_eq!(step(870.0, 5.0), 200.0);
        assert_eq!(label(0.5), "0.5");
        assert_eq!(label(2.0), "2");
        assert_eq!(label(1500.0), "1500");
        assert_eq!(size_label(19.54), "20");
        assert_eq!(size_label(100_000.0), "100k");
    }
}
