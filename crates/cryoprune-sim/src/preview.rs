//! PNG previews: the micrograph binned for display, contrast-stretched as a cryo-EM viewer
//! does, with a circle at each pick coloured by its truth label.

use std::path::Path;

use cryoprune_image::fourier::{bin, LowPass};
use cryoprune_image::normalize::percentiles;
use cryoprune_image::Image;

use crate::scene::{Label, TruthPick};
use crate::{Error, Result};

pub fn colour(label: Label) -> [u8; 3] {
    match label {
        Label::Particle => [40, 220, 60],
        Label::Carbon => [240, 60, 40],
        Label::Ice => [60, 140, 255],
        Label::Aggregate => [250, 200, 30],
        Label::Empty => [220, 60, 220],
    }
}

/// Renders the preview: binned to at most `max_size` pixels, low-passed for display, clipped to
/// the 1st-99th percentiles; circles of `radius` micrograph pixels at the picks (no circles when
/// `picks` is empty).
pub fn render(image: &Image, picks: &[TruthPick], radius: f64, max_size: usize) -> image::RgbImage {
    let factor = (image.nx.max(image.ny) as f64 / max_size as f64).max(1.0);
    let small = bin(image, factor).expect("factor >= 1").image;
    let shown = cryoprune_image::fourier::lowpass(&small, &LowPass::new(0.5));
    let lim = percentiles(&shown.data, &[1.0, 99.0]);
    let (lo, hi) = (lim[0] as f32, lim[1] as f32);
    let mut out = image::RgbImage::new(shown.nx as u32, shown.ny as u32);
    for (x, y, px) in out.enumerate_pixels_mut() {
        let v = ((shown.get(x as usize, y as usize) - lo) / (hi - lo).max(1e-12)).clamp(0.0, 1.0);
        let g = (v * 255.0) as u8;
        *px = image::Rgb([g, g, g]);
    }
    let r = radius / factor;
    for p in picks {
        let (cx, cy) = (p.x / factor, p.y / factor);
        let steps = (2.0 * std::f64::consts::PI * r * 2.0).max(16.0) as usize;
        for k in 0..steps {
            let a = k as f64 / steps as f64 * std::f64::consts::TAU;
            for w in [-0.5, 0.0, 0.5] {
                let (x, y) = (cx + (r + w) * a.cos(), cy + (r + w) * a.sin());
                if x >= 0.0 && y >= 0.0 && (x as u32) < out.width() && (y as u32) < out.height() {
                    out.put_pixel(x as u32, y as u32, image::Rgb(colour(p.label)));
                }
            }
        }
    }
    out
}

/// Writes a preview PNG atomically; grey when nothing is coloured (a third of the size).
pub fn write(path: &Path, img: &image::RgbImage) -> Result<()> {
    let mut bytes = Vec::new();
    let rgb = image::DynamicImage::ImageRgb8(img.clone());
    let grey = img.pixels().all(|p| p[0] == p[1] && p[1] == p[2]);
    let img = if grey {
        image::DynamicImage::ImageLuma8(rgb.to_luma8())
    } else {
        rgb
    };
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|e| Error::Input(format!("{}: cannot encode PNG: {e}", path.display())))?;
    cryoprune_formats::atomic::write_atomic(path, |w| w.write_all(&bytes))?;
    Ok(())
}
