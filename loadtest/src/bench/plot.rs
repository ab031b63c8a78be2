//! The SVG plot of latency percentiles per target (closed loop and fixed rate side by
//! side, log scale, medians over the rounds).

use super::report::{BenchResults, LatencySpread};
use crate::load::group;
use plotters::prelude::*;

const PERCENTILES: [&str; 4] = ["p50", "p90", "p99", "p99.9"];

fn values(l: &LatencySpread) -> [f64; 4] {
    [l.p50.median, l.p90.median, l.p99.median, l.p999.median]
}

/// Renders the plot as an SVG document.
pub fn render_svg(r: &BenchResults) -> Result<String, String> {
    let err = |e: DrawingAreaErrorKind<std::io::Error>| format!("plot: {e}");
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (1200, 520)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let panels = root.split_evenly((1, 2));
        let titles = [
            format!(
                "Closed loop, {} connections (median of {} rounds)",
                r.settings.connections, r.settings.rounds
            ),
            format!(
                "Fixed rate, {} req/s (median of {} rounds)",
                group(r.settings.rate.round() as u64),
                r.settings.rounds
            ),
        ];
        for (i, panel) in panels.iter().enumerate() {
            let rate = i == 1;
            let series: Vec<(&str, [f64; 4])> = r
                .targets
                .iter()
                .filter_map(|t| {
                    let l = if rate {
                        t.summary.rate_latency_us
                    } else {
                        t.summary.closed_latency_us
                    }?;
                    Some((t.name.as_str(), values(&l)))
                })
                .filter(|(_, v)| v.iter().all(|x| x.is_finite() && *x > 0.0))
                .collect();
            if series.is_empty() {
                continue;
            }
            let lo = series
                .iter()
                .flat_map(|(_, v)| v.iter().copied())
                .fold(f64::INFINITY, f64::min);
            let hi = series
                .iter()
                .flat_map(|(_, v)| v.iter().copied())
                .fold(0.0, f64::max);
            let (lo, hi) = ((lo * 0.7).max(0.1), (hi * 1.5).max(lo * 2.0));
            let mut chart = ChartBuilder::on(panel)
                .caption(&titles[i], ("sans-serif", 17))
                .margin(12)
                .x_label_area_size(35)
                .y_label_area_size(65)
                // An i32 range is inclusive here: 0..3 is the four percentiles.
                .build_cartesian_2d((0i32..3).into_segmented(), (lo..hi).log_scale())
                .map_err(err)?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_label_formatter(&|v| {
                    let i = match v {
                        SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => *i,
                        SegmentValue::Last => return String::new(),
                    };
                    PERCENTILES
                        .get(usize::try_from(i).unwrap_or(usize::MAX))
                        .map(|s| s.to_string())
                        .unwrap_or_default()
                })
                .y_label_formatter(&|v| format!("{v:.0}"))
                .y_desc("latency (µs, log scale)")
                .draw()
                .map_err(err)?;
            for (k, (name, v)) in series.iter().enumerate() {
                let color = Palette99::pick(k).to_rgba();
                let points: Vec<(SegmentValue<i32>, f64)> = (0..4)
                    .map(|x| (SegmentValue::CenterOf(x), v[x as usize]))
                    .collect();
                chart
                    .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                    .map_err(err)?
                    .label(*name)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
                chart
                    .draw_series(
                        points
                            .into_iter()
                            .map(|p| Circle::new(p, 3, color.filled())),
                    )
                    .map_err(err)?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::super::report::{BenchResults, LatencySpread, Summary, TargetResult};
    use crate::stats::Spread;

    fn spread(v: f64) -> Spread {
        Spread::of(&[v]).unwrap()
    }

    #[test]
    fn svg_names_every_target() {
        let l = |b: f64| LatencySpread {
            p50: spread(b),
            p90: spread(b * 2.0),
            p99: spread(b * 4.0),
            p999: spread(b * 8.0),
        };
        let t = |name: &str, b: f64| TargetResult {
            name: name.into(),
            description: String::new(),
            baseline: None,
            proxied: false,
            runs: vec![],
            summary: Summary {
                closed_latency_us: Some(l(b * 10.0)),
                rate_latency_us: Some(l(b)),
                ..Summary::default()
            },
        };
        let mut r = BenchResults {
            targets: vec![t("direct", 20.0), t("nginx", 50.0), t("meshproxy", 45.0)],
            ..BenchResults::default()
        };
        r.settings.rate = 5000.0;
        r.settings.rounds = 3;
        let svg = super::render_svg(&r).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100.min(svg.len())]);
        for name in ["direct", "nginx", "meshproxy", "p99.9", "5,000 req/s"] {
            assert!(svg.contains(name), "no {name} in the SVG");
        }
    }

    #[test]
    fn empty_results_still_render() {
        let svg = super::render_svg(&BenchResults::default()).unwrap();
        assert!(svg.contains("</svg>"));
    }
}
