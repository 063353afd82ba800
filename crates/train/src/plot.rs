//! The loss-curve plot: training and validation loss against steps (left) and against wall-clock
//! seconds (right), as SVG (plotters' SVG backend: no fonts or image libraries needed).

use crate::metrics::MetricsRecord;
use anyhow::{anyhow, Result};
use plotters::prelude::*;
use std::path::Path;

/// Draws `records` into an SVG file at `path`.
pub fn plot_loss(records: &[MetricsRecord], path: &Path, title: &str) -> Result<()> {
    let root = SVGBackend::new(path, (1200, 480)).into_drawing_area();
    root.fill(&WHITE)
        .map_err(|e| anyhow!("plot {}: {e:?}", path.display()))?;
    let root = root
        .titled(title, ("sans-serif", 22))
        .map_err(|e| anyhow!("plot {}: {e:?}", path.display()))?;
    let panels = root.split_evenly((1, 2));
    draw_panel(&panels[0], records, |r| r.step as f64, "step")?;
    draw_panel(&panels[1], records, |r| r.wall_s, "wall-clock seconds")?;
    root.present()
        .map_err(|e| anyhow!("plot {}: {e:?}", path.display()))?;
    Ok(())
}

fn draw_panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    records: &[MetricsRecord],
    x_of: impl Fn(&MetricsRecord) -> f64,
    x_label: &str,
) -> Result<()> {
    let err = |e: &dyn std::fmt::Debug| anyhow!("plot: {e:?}");
    let train: Vec<(f64, f64)> = records
        .iter()
        .filter_map(|r| {
            r.train_loss
                .filter(|l| l.is_finite())
                .map(|l| (x_of(r), l as f64))
        })
        .collect();
    let val: Vec<(f64, f64)> = records
        .iter()
        .filter_map(|r| r.val_loss.filter(|l| l.is_finite()).map(|l| (x_of(r), l as f64)))
        .collect();
    let all = train.iter().chain(val.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in all {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-3);
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc("loss (nats/token)")
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .draw_series(LineSeries::new(train, &BLUE))
        .map_err(|e| err(&e))?
        .label("train")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart
        .draw_series(LineSeries::new(val.clone(), RED.stroke_width(2)))
        .map_err(|e| err(&e))?
        .label("validation")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    chart
        .draw_series(val.into_iter().map(|p| Circle::new(p, 3, RED.filled())))
        .map_err(|e| err(&e))?;
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    Ok(())
}
