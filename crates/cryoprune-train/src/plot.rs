//! Training curves as a PNG: loss on the left, accuracy and macro-F1 on the right.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::trainer::EpochStats;
use crate::Error;

const W: u32 = 1100;
const H: u32 = 420;

fn fonts() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // The bundled font always parses; a failure would only lose the text.
        let _ = register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
    });
}

fn series(history: &[EpochStats], f: impl Fn(&EpochStats) -> Option<f64>) -> Vec<(f64, f64)> {
    history
        .iter()
        .filter_map(|h| f(h).filter(|v| v.is_finite()).map(|v| (h.epoch as f64, v)))
        .collect()
}

type Lines<'a> = Vec<(&'a str, RGBColor, Vec<(f64, f64)>)>;

fn panel(
    area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    title: &str,
    y_max: f64,
    epochs: usize,
    lines: Lines,
    best: usize,
) -> Result<(), String> {
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d(1f64..(epochs.max(2) as f64), 0f64..y_max)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(LineSeries::new(
            [(best as f64, 0.0), (best as f64, y_max)],
            ShapeStyle::from(&RGBColor(150, 150, 150)).stroke_width(1),
        ))
        .map_err(|e| e.to_string())?
        .label(format!("best epoch ({best})"))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], RGBColor(150, 150, 150)));
    for (name, color, points) in lines {
        if points.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Draws the curves of `history` (best epoch marked) to a PNG at `path`, atomically. `f1` names
/// what the F1 line measures (a classifier's validation macro-F1, a picker's validation picks).
pub fn training_curves(
    history: &[EpochStats],
    best_epoch: usize,
    f1: &str,
    path: &Path,
) -> Result<(), Error> {
    fonts();
    let mut rgb = vec![255u8; (W * H * 3) as usize];
    let epochs = history.len();
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| Error::Plot(e.to_string()))?;
        let (left, right) = root.split_horizontally(W / 2);
        let train_loss = series(history, |h| Some(h.train_loss));
        let val_loss = series(history, |h| h.val_loss);
        let loss_max = train_loss
            .iter()
            .chain(&val_loss)
            .map(|p| p.1)
            .fold(0.1, f64::max)
            * 1.1;
        let blue = RGBColor(31, 119, 180);
        let orange = RGBColor(255, 127, 14);
        let green = RGBColor(44, 160, 44);
        panel(
            &left,
            "loss",
            loss_max,
            epochs,
            vec![
                ("train", blue, train_loss),
                ("validation", orange, val_loss),
            ],
            best_epoch,
        )
        .map_err(Error::Plot)?;
        let lines = vec![
            (
                "train accuracy",
                blue,
                series(history, |h| Some(h.train_accuracy)),
            ),
            (
                "validation accuracy",
                orange,
                series(history, |h| h.val_accuracy),
            ),
            (f1, green, series(history, |h| h.val_macro_f1)),
        ];
        panel(&right, "accuracy and F1", 1.05, epochs, lines, best_epoch).map_err(Error::Plot)?;
        root.present().map_err(|e| Error::Plot(e.to_string()))?;
    }
    let img = image::RgbImage::from_raw(W, H, rgb).expect("buffer has W×H×3 bytes");
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| Error::Plot(format!("{}: {e}", path.display())))?;
    cryoprune_formats::atomic::write_atomic(path, |w| w.write_all(&png))
        .map_err(|e| Error::Plot(e.to_string()))
}

/// Precision against recall, one line per named curve (points in order of falling threshold),
/// as PNG bytes.
pub fn precision_recall(curves: &[(String, Vec<(f64, f64)>)]) -> Result<Vec<u8>, Error> {
    fonts();
    let (w, h) = (640u32, 520u32);
    let mut rgb = vec![255u8; (w * h * 3) as usize];
    let colors = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
    ];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        let draw = || -> Result<(), String> {
            root.fill(&WHITE).map_err(|e| e.to_string())?;
            let mut chart = ChartBuilder::on(&root)
                .caption("precision-recall", ("sans-serif", 20))
                .margin(14)
                .x_label_area_size(40)
                .y_label_area_size(50)
                .build_cartesian_2d(0f64..1.0, 0f64..1.02)
                .map_err(|e| e.to_string())?;
            chart
                .configure_mesh()
                .x_desc("recall")
                .y_desc("precision")
                .label_style(("sans-serif", 14))
                .draw()
                .map_err(|e| e.to_string())?;
            for (i, (name, points)) in curves.iter().enumerate() {
                let color = colors[i % colors.len()];
                chart
                    .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                    .map_err(|e| e.to_string())?
                    .label(name.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2))
                    });
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 14))
                .position(SeriesLabelPosition::LowerLeft)
                .draw()
                .map_err(|e| e.to_string())?;
            root.present().map_err(|e| e.to_string())
        };
        draw().map_err(Error::Plot)?;
    }
    let img = image::RgbImage::from_raw(w, h, rgb).expect("buffer has w×h×3 bytes");
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| Error::Plot(e.to_string()))?;
    Ok(png)
}

/// Histograms of each class's probability over all picks, one panel per class, with the
/// threshold marked when one is given. Counts are linear: a log scale would fill in the empty
/// middle that shows a confident model. Returns PNG bytes.
pub fn probability_histograms(
    classes: &[String],
    probs: &[Vec<f64>],
    threshold: Option<f64>,
) -> Result<Vec<u8>, Error> {
    fonts();
    const BINS: usize = 20;
    let panel_w = 360u32;
    let (w, h) = (panel_w * classes.len().max(1) as u32, 300u32);
    let mut rgb = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| Error::Plot(e.to_string()))?;
        let panels = root.split_evenly((1, classes.len().max(1)));
        for (c, area) in panels.iter().enumerate().take(classes.len()) {
            let mut counts = [0usize; BINS];
            for v in probs.get(c).into_iter().flatten() {
                counts[((v * BINS as f64) as usize).min(BINS - 1)] += 1;
            }
            let top = (*counts.iter().max().unwrap_or(&1)).max(1) as f64 * 1.1;
            let mut chart = ChartBuilder::on(area)
                .caption(format!("p({})", classes[c]), ("sans-serif", 18))
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(52)
                .build_cartesian_2d(0f64..1f64, 0f64..top)
                .map_err(|e| Error::Plot(e.to_string()))?;
            chart
                .configure_mesh()
                .y_desc("picks")
                .y_label_formatter(&|v| format!("{v:.0}"))
                .label_style(("sans-serif", 13))
                .draw()
                .map_err(|e| Error::Plot(e.to_string()))?;
            let blue = RGBColor(31, 119, 180);
            chart
                .draw_series(counts.iter().enumerate().map(|(i, &n)| {
                    let x0 = i as f64 / BINS as f64;
                    Rectangle::new(
                        [(x0, 0.0), (x0 + 1.0 / BINS as f64, n as f64)],
                        blue.filled(),
                    )
                }))
                .map_err(|e| Error::Plot(e.to_string()))?;
            if let Some(t) = threshold {
                chart
                    .draw_series(LineSeries::new(
                        [(t, 0.0), (t, top)],
                        RGBColor(200, 30, 30).stroke_width(2),
                    ))
                    .map_err(|e| Error::Plot(e.to_string()))?;
            }
        }
        root.present().map_err(|e| Error::Plot(e.to_string()))?;
    }
    let img = image::RgbImage::from_raw(w, h, rgb).expect("buffer has w×h×3 bytes");
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| Error::Plot(format!("histogram PNG: {e}")))?;
    Ok(png)
}
