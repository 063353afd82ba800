//! Loss-curve plots as SVG (plotters' SVG backend: no fonts or image libraries needed): one run's
//! training and validation loss against steps and wall-clock seconds ([`plot_loss`]), and several
//! runs overlaid against training tokens ([`plot_compare`]). The loss axis is logarithmic, so the
//! late part of a run is not squashed under the first steps' high loss; step and token axes have
//! integer labels.

use crate::metrics::MetricsRecord;
use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// One line of a panel: its legend label, colour, points (x, loss), and whether each point gets
/// a marker (validation points are few).
struct Series {
    label: String,
    color: RGBColor,
    points: Vec<(f64, f64)>,
    markers: bool,
}

/// The colours of compared runs, in order.
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

fn points(
    records: &[MetricsRecord],
    x: impl Fn(&MetricsRecord) -> f64,
    y: impl Fn(&MetricsRecord) -> Option<f32>,
) -> Vec<(f64, f64)> {
    records
        .iter()
        .filter_map(|r| {
            y(r).filter(|l| l.is_finite() && *l > 0.0)
                .map(|l| (x(r), l as f64))
        })
        .collect()
}

/// Draws `records` into an SVG file at `path`: the loss against steps (left) and wall-clock
/// seconds (right), training loss as a line, validation loss as a line with markers (the step-0
/// evaluation included).
pub fn plot_loss(records: &[MetricsRecord], path: &Path, title: &str) -> Result<()> {
    let root = SVGBackend::new(path, (1200, 480)).into_drawing_area();
    let root = titled(&root, title, path)?;
    let panels = root.split_evenly((1, 2));
    let train = |x: fn(&MetricsRecord) -> f64| Series {
        label: "train".into(),
        color: BLUE,
        points: points(records, x, |r| r.train_loss),
        markers: false,
    };
    let val = |x: fn(&MetricsRecord) -> f64| Series {
        label: "validation".into(),
        color: RED,
        points: points(records, x, |r| r.val_loss),
        markers: true,
    };
    let by_step = |r: &MetricsRecord| r.step as f64;
    let by_wall = |r: &MetricsRecord| r.wall_s;
    draw_panel(
        &panels[0],
        vec![train(by_step), val(by_step)],
        "step",
        "loss (nats/token, log scale)",
    )?;
    draw_panel(
        &panels[1],
        vec![train(by_wall), val(by_wall)],
        "wall-clock seconds",
        "loss (nats/token, log scale)",
    )?;
    root.present()
        .map_err(|e| anyhow!("plot {}: {e:?}", path.display()))?;
    Ok(())
}

/// Overlays several runs (name, records) in one SVG: training loss (left) and validation loss
/// (right) against training tokens, one colour per run.
pub fn plot_compare(runs: &[(String, Vec<MetricsRecord>)], path: &Path, title: &str) -> Result<()> {
    let root = SVGBackend::new(path, (1200, 480)).into_drawing_area();
    let root = titled(&root, title, path)?;
    let panels = root.split_evenly((1, 2));
    let by_tokens = |r: &MetricsRecord| r.tokens as f64;
    let series = |val: bool| -> Vec<Series> {
        runs.iter()
            .enumerate()
            .map(|(i, (name, recs))| Series {
                label: name.clone(),
                color: PALETTE[i % PALETTE.len()],
                points: points(recs, by_tokens, |r| if val { r.val_loss } else { r.train_loss }),
                markers: val,
            })
            .collect()
    };
    draw_panel(
        &panels[0],
        series(false),
        "training tokens",
        "train loss (nats/token, log scale)",
    )?;
    draw_panel(
        &panels[1],
        series(true),
        "training tokens",
        "validation loss (nats/token, log scale)",
    )?;
    root.present()
        .map_err(|e| anyhow!("plot {}: {e:?}", path.display()))?;
    Ok(())
}

fn titled<'a>(root: &Area<'a>, title: &str, path: &Path) -> Result<Area<'a>> {
    let err = |e: &dyn std::fmt::Debug| anyhow!("plot {}: {e:?}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    root.titled(title, ("sans-serif", 22)).map_err(|e| err(&e))
}

/// An axis label for a count (steps, tokens, seconds): an integer, or with a k/M/G suffix for large
/// values ("100", "2500", "1.5M"), never "100.0".
pub fn count_label(x: f64) -> String {
    let a = x.abs();
    let (v, suffix) = if a >= 1e9 {
        (x / 1e9, "G")
    } else if a >= 1e6 {
        (x / 1e6, "M")
    } else if a >= 1e5 {
        return format!("{}k", (x / 1e3).round() as i64);
    } else {
        return format!("{}", x.round() as i64);
    };
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}{suffix}")
}

/// An x-axis label on an axis spanning `span`: a count (see [`count_label`]) when the span is
/// large enough for integer ticks, else one or two decimals (short runs' seconds).
pub fn axis_label(x: f64, span: f64) -> String {
    if span >= 20.0 {
        count_label(x)
    } else if span >= 2.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// A loss-axis label with three significant digits, trailing zeros dropped ("0.35", "4.48", "10").
pub fn loss_label(y: f64) -> String {
    let s = if y >= 100.0 {
        format!("{y:.0}")
    } else if y >= 10.0 {
        format!("{y:.1}")
    } else if y >= 1.0 {
        format!("{y:.2}")
    } else {
        format!("{y:.3}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn draw_panel(area: &Area<'_>, series: Vec<Series>, x_label: &str, y_label: &str) -> Result<()> {
    let err = |e: &dyn std::fmt::Debug| anyhow!("plot: {e:?}");
    let all = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in all {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 1.0, 10.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    // The loss axis is linear in ln(loss), labelled with the loss itself: plotters' own log axis
    // puts its ticks at powers of ten, so the narrow ranges of loss curves got no labels. 5% of
    // the range as a margin above and below.
    let (l0, l1) = (y0.ln(), y1.ln());
    let pad = ((l1 - l0) * 0.05).max(0.01);
    let span = x1 - x0;
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(x0..x1, (l0 - pad)..(l1 + pad))
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .x_label_formatter(&|x| axis_label(*x, span))
        .y_label_formatter(&|y| loss_label(y.exp()))
        .draw()
        .map_err(|e| err(&e))?;
    for s in series {
        let color = s.color;
        let points: Vec<(f64, f64)> = s.points.iter().map(|&(x, y)| (x, y.ln())).collect();
        let width = if s.markers { 2 } else { 1 };
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(width)))
            .map_err(|e| err(&e))?
            .label(s.label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        if s.markers {
            chart
                .draw_series(points.into_iter().map(|p| Circle::new(p, 3, color.filled())))
                .map_err(|e| err(&e))?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_integers_or_short_decimals() {
        assert_eq!(count_label(100.0), "100");
        assert_eq!(count_label(0.0), "0");
        assert_eq!(count_label(2500.0), "2500");
        assert_eq!(count_label(1_500_000.0), "1.5M");
        assert_eq!(count_label(250_000.0), "250k");
        assert_eq!(loss_label(0.35), "0.35");
        assert_eq!(loss_label(2.5), "2.5");
        assert_eq!(loss_label(10.0), "10");
        assert_eq!(loss_label(3.0), "3");
        assert_eq!(loss_label(4.4817), "4.48");
        assert_eq!(axis_label(40.0, 40.0), "40");
        assert_eq!(axis_label(0.5, 1.2), "0.50");
        assert_eq!(axis_label(2.5, 8.0), "2.5");
    }
}
