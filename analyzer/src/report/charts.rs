//! The HTML report's SVG charts, drawn with plotters.

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use super::budget::Unit;
use super::units;
use super::{Bucket, TimePoint};

const BLUE: RGBColor = RGBColor(0x2b, 0x6c, 0xb0);
const ORANGE: RGBColor = RGBColor(0xdd, 0x6b, 0x20);
const RED: RGBColor = RGBColor(0xc5, 0x30, 0x30);
const GREY: RGBColor = RGBColor(0x4a, 0x55, 0x68);
const FONT: &str = "sans-serif";

/// A chart that could not be drawn says why instead.
type Svg = Result<String, String>;

fn err(e: impl std::fmt::Display) -> String {
    format!("drawing a chart: {e}")
}

/// Live bytes (area) and RSS (line) against time.
pub(crate) fn memory_over_time(points: &[TimePoint], peak: (i64, u64)) -> Svg {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 320)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let max_x = points.last().map_or(1, |p| p.ts_ns).max(1) as f64;
        let max_y = points
            .iter()
            .map(|p| p.live_bytes.max(p.rss_bytes.unwrap_or(0)))
            .max()
            .unwrap_or(1)
            .max(1) as f64
            * 1.08;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(80)
            .build_cartesian_2d(0f64..max_x, 0f64..max_y)
            .map_err(err)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE.mix(0.0))
            .x_desc("time since the trace started")
            .x_label_formatter(&|x| units::nanoseconds(*x))
            .y_label_formatter(&|y| units::bytes(*y))
            .label_style((FONT, 12))
            .axis_desc_style((FONT, 13))
            .draw()
            .map_err(err)?;
        let live: Vec<(f64, f64)> =
            points.iter().map(|p| (p.ts_ns as f64, p.live_bytes as f64)).collect();
        chart
            .draw_series(
                AreaSeries::new(live, 0.0, BLUE.mix(0.25)).border_style(BLUE.stroke_width(2)),
            )
            .map_err(err)?
            .label("live heap bytes")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 16, y + 5)], BLUE.mix(0.5).filled()));
        if points.iter().any(|p| p.rss_bytes.is_some()) {
            let rss: Vec<(f64, f64)> = points
                .iter()
                .filter_map(|p| p.rss_bytes.map(|r| (p.ts_ns as f64, r as f64)))
                .collect();
            chart
                .draw_series(LineSeries::new(rss, ORANGE.stroke_width(2)))
                .map_err(err)?
                .label("resident set size (RSS)")
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], ORANGE.stroke_width(2))
                });
        }
        chart
            .draw_series(std::iter::once(Circle::new(
                (peak.0 as f64, peak.1 as f64),
                4,
                RED.filled(),
            )))
            .map_err(err)?
            .label(format!("peak: {}", units::bytes(peak.1 as f64)))
            .legend(|(x, y)| Circle::new((x + 8, y), 4, RED.filled()));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FONT, 12))
            .background_style(WHITE.mix(0.85))
            .border_style(GREY.mix(0.4))
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Allocations per log2 bucket.
pub(crate) fn histogram(buckets: &[Bucket], unit: Unit, x_desc: &str) -> Svg {
    let mut svg = String::new();
    if buckets.is_empty() {
        return Err("no allocations to draw".into());
    }
    {
        let root = SVGBackend::with_string(&mut svg, (440, 280)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let n = buckets.len();
        let max_y = buckets.iter().map(|b| b.allocations).max().unwrap_or(1).max(1) as f64 * 1.1;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d((0..n).into_segmented(), 0f64..max_y)
            .map_err(err)?;
        let label = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => buckets
                .get(*i)
                .map_or(String::new(), |b| units::format(b.lower as f64, unit).replace(' ', "")),
            SegmentValue::Last => String::new(),
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(WHITE.mix(0.0))
            .x_labels(n.min(12))
            .x_label_formatter(&label)
            .y_label_formatter(&|y| units::count(*y))
            .x_desc(x_desc)
            .y_desc("allocations")
            .label_style((FONT, 11))
            .axis_desc_style((FONT, 12))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(buckets.iter().enumerate().map(|(i, b)| {
                Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0.0),
                        (SegmentValue::Exact(i + 1), b.allocations as f64),
                    ],
                    BLUE.mix(0.75).filled(),
                )
            }))
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Horizontal bars, largest on top: each item's name above its bar, the
/// value at the bar's end.
pub(crate) fn top_bars(items: &[(String, u64)], color_leak: bool) -> Svg {
    if items.is_empty() {
        return Err("nothing to draw".into());
    }
    let mut svg = String::new();
    {
        let n = items.len();
        let height = 36 + 38 * n as u32;
        let root = SVGBackend::with_string(&mut svg, (900, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let max_x = items.iter().map(|i| i.1).max().unwrap_or(1).max(1) as f64 * 1.12;
        // Row i (from the top) spans y in [n-1-i, n-i): name above, bar below.
        let mut chart = ChartBuilder::on(&root)
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(0)
            .build_cartesian_2d(0f64..max_x, 0f64..n as f64)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .disable_y_axis()
            .light_line_style(WHITE.mix(0.0))
            .x_label_formatter(&|x| units::bytes(*x))
            .label_style((FONT, 11))
            .draw()
            .map_err(err)?;
        let color = if color_leak { RED } else { BLUE };
        let base = |i: usize| (n - 1 - i) as f64;
        chart
            .draw_series(items.iter().enumerate().map(|(i, (_, v))| {
                Rectangle::new(
                    [(0.0, base(i) + 0.08), (*v as f64, base(i) + 0.5)],
                    color.mix(0.7).filled(),
                )
            }))
            .map_err(err)?;
        chart
            .draw_series(items.iter().enumerate().map(|(i, (name, _))| {
                Text::new(
                    shorten(name, 140),
                    (max_x * 0.002, base(i) + 0.95),
                    (FONT, 12).into_font().color(&BLACK),
                )
            }))
            .map_err(err)?;
        chart
            .draw_series(items.iter().enumerate().map(|(i, (_, v))| {
                Text::new(
                    format!(" {}", units::bytes(*v as f64)),
                    (*v as f64, base(i) + 0.45),
                    (FONT, 11).into_font().color(&GREY),
                )
            }))
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// `s` cut to `max` characters with an ellipsis in the middle, keeping the
/// function name at the end.
fn shorten(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.to_string();
    }
    let tail: String = s.chars().skip(n - (max - 1) * 2 / 3).collect();
    let head: String = s.chars().take(max - 1 - tail.chars().count()).collect();
    format!("{head}…{tail}")
}
