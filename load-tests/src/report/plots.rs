//! SVG charts drawn with `plotters`, returned as strings to embed in the HTML report.

use crate::stats::percentile;
use crate::timeline::Bin;
use anyhow::anyhow;
use plotters::prelude::*;

const SIZE: (u32, u32) = (820, 320);
const FONT: &str = "sans-serif";

/// A histogram's bars: `counts[i]` values fell in `[lo + i*width, lo + (i+1)*width)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Bars {
    pub lo: f64,
    pub width: f64,
    pub counts: Vec<u64>,
    /// Values above the drawn range (beyond the 99.9th percentile), left out so that a few
    /// outliers do not squash the shape of the rest.
    pub hidden_above: u64,
}

/// `n` equal bars from the minimum to the 99.9th percentile.
pub fn bars(values: &[f64], n: usize) -> Bars {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    let (Some(&lo), Some(hi)) = (sorted.first(), percentile(&sorted, 99.9)) else {
        return Bars {
            lo: 0.0,
            width: 1.0,
            counts: vec![0; n.max(1)],
            hidden_above: 0,
        };
    };
    let n = n.max(1);
    let width = if hi > lo {
        (hi - lo) / n as f64
    } else {
        lo.abs().max(1.0) / n as f64
    };
    let mut counts = vec![0; n];
    let mut hidden_above = 0;
    for v in sorted {
        if v > hi {
            hidden_above += 1;
        } else {
            counts[(((v - lo) / width) as usize).min(n - 1)] += 1;
        }
    }
    Bars {
        lo,
        width,
        counts,
        hidden_above,
    }
}

/// A histogram of `values` (e.g. latencies in ms).
pub fn histogram(values: &[f64], title: &str, x_desc: &str) -> anyhow::Result<String> {
    let bars = bars(values, 50);
    let x_end = bars.lo + bars.width * bars.counts.len() as f64;
    let y_end = bars.counts.iter().copied().max().unwrap_or(0).max(1) as f64 * 1.1;
    let caption = match bars.hidden_above {
        0 => title.to_owned(),
        n => format!("{title} ({n} above {x_end:.1} not shown)"),
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, (FONT, 16))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(bars.lo..x_end, 0f64..y_end)
            .map_err(draw_error)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc("requests")
            .disable_x_mesh()
            .draw()
            .map_err(draw_error)?;
        let style = RGBColor(66, 110, 190).mix(0.75).filled();
        chart
            .draw_series(bars.counts.iter().enumerate().map(|(i, count)| {
                let x0 = bars.lo + i as f64 * bars.width;
                Rectangle::new([(x0, 0.0), (x0 + bars.width, *count as f64)], style)
            }))
            .map_err(draw_error)?;
        root.present().map_err(draw_error)?;
    }
    Ok(svg)
}

/// p50, p99 and max latency of successes per time bin.
pub fn latency_over_time(timeline: &[Bin]) -> anyhow::Result<String> {
    let series: [Series; 3] = [
        ("p50", RGBColor(66, 110, 190), |b| b.p50_ms),
        ("p99", RGBColor(220, 120, 30), |b| b.p99_ms),
        ("max", RGBColor(190, 50, 50), |b| b.max_ms),
    ];
    lines(
        timeline,
        "Latency over time (successes, by completion time)",
        "latency ms",
        &series,
    )
}

/// Successes and failures per second per time bin.
pub fn throughput_over_time(timeline: &[Bin]) -> anyhow::Result<String> {
    let series: [Series; 2] = [
        ("ok/s", RGBColor(40, 150, 70), |b| Some(b.ok_rps)),
        ("errors/s", RGBColor(190, 50, 50), |b| Some(b.error_rps)),
    ];
    lines(timeline, "Throughput over time", "requests/s", &series)
}

type Series<'a> = (&'a str, RGBColor, fn(&Bin) -> Option<f64>);

fn lines(timeline: &[Bin], title: &str, y_desc: &str, series: &[Series]) -> anyhow::Result<String> {
    let x_end = timeline.last().map_or(1.0, |b| b.t_s + b.width_s).max(0.1);
    let y_max = timeline
        .iter()
        .flat_map(|b| series.iter().filter_map(move |(_, _, get)| get(b)))
        .fold(0.0, f64::max);
    let y_end = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 16))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..x_end, 0f64..y_end)
            .map_err(draw_error)?;
        chart
            .configure_mesh()
            .x_desc("seconds since start")
            .y_desc(y_desc)
            .draw()
            .map_err(draw_error)?;
        for (name, color, get) in series {
            let points = timeline
                .iter()
                .filter_map(|b| get(b).map(|y| (b.t_s + b.width_s / 2.0, y)));
            let color = *color;
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(draw_error)?
                .label(*name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .draw()
            .map_err(draw_error)?;
        root.present().map_err(draw_error)?;
    }
    Ok(svg)
}

fn draw_error(error: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing a chart: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_cover_the_sample_and_hide_only_the_far_tail() {
        let mut values: Vec<f64> = (0..1000).map(f64::from).collect();
        values.push(1_000_000.0);
        let b = bars(&values, 10);
        assert_eq!(b.counts.iter().sum::<u64>() + b.hidden_above, 1001);
        assert_eq!(b.hidden_above, 1);
        assert_eq!(b.lo, 0.0);
    }

    #[test]
    fn bars_of_a_constant_or_empty_sample() {
        assert_eq!(bars(&[5.0, 5.0], 4).counts.iter().sum::<u64>(), 2);
        assert_eq!(bars(&[], 4).counts, vec![0; 4]);
    }

    #[test]
    fn charts_render_as_svg() {
        let svg = histogram(&[1.0, 2.0, 2.5, 9.0], "Latency", "ms").unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("Latency"));
        let bins = crate::timeline::timeline(&[], 1.0);
        assert!(latency_over_time(&bins).unwrap().contains("<svg"));
        assert!(throughput_over_time(&bins).unwrap().contains("ok/s"));
    }
}
