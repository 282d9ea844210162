//! Micrographs for people to look at: binned for display, contrast-stretched as a cryo-EM viewer
//! does, with coloured circles at picks; written as PNG.

use std::path::Path;

use crate::fourier::{bin, lowpass, LowPass};
use crate::normalize::percentiles;
use crate::{Error, Image, Result};

/// A circle to draw: centre in micrograph pixels and its colour.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    pub x: f64,
    pub y: f64,
    pub colour: [u8; 3],
}

/// Renders `image` binned to at most `max_size` pixels, low-passed for display and clipped to
/// the 1st-99th percentiles, with circles of `radius` micrograph pixels at the marks.
pub fn render(image: &Image, marks: &[Mark], radius: f64, max_size: usize) -> ::image::RgbImage {
    let factor = (image.nx.max(image.ny) as f64 / max_size.max(1) as f64).max(1.0);
    let small = bin(image, factor).expect("factor >= 1").image;
    let shown = lowpass(&small, &LowPass::new(0.5));
    let grey = stretch(&shown.data);
    let mut out = ::image::RgbImage::new(shown.nx as u32, shown.ny as u32);
    for (px, &g) in out.pixels_mut().zip(&grey) {
        *px = ::image::Rgb([g, g, g]);
    }
    let r = radius / factor;
    for m in marks {
        let (cx, cy) = (m.x / factor, m.y / factor);
        let steps = (2.0 * std::f64::consts::PI * r * 2.0).max(16.0) as usize;
        for k in 0..steps {
            let a = k as f64 / steps as f64 * std::f64::consts::TAU;
            for w in [-0.5, 0.0, 0.5] {
                let (x, y) = (cx + (r + w) * a.cos(), cy + (r + w) * a.sin());
                if x >= 0.0 && y >= 0.0 && (x as u32) < out.width() && (y as u32) < out.height() {
                    out.put_pixel(x as u32, y as u32, ::image::Rgb(m.colour));
                }
            }
        }
    }
    out
}

/// A single-channel image (row-major, `nx` wide) as an 8-bit grey PNG, clipped to its
/// 1st-99th percentiles.
pub fn grey_png(data: &[f32], nx: usize) -> Result<Vec<u8>> {
    grey8_png(&stretch(data), nx)
}

/// Values mapped to 0-255 between their 1st and 99th percentiles, clipped outside.
pub fn stretch(data: &[f32]) -> Vec<u8> {
    let lim = percentiles(data, &[1.0, 99.0]);
    let (lo, hi) = (lim[0] as f32, lim[1] as f32);
    data.iter()
        .map(|&v| (((v - lo) / (hi - lo).max(1e-12)).clamp(0.0, 1.0) * 255.0) as u8)
        .collect()
}

/// 8-bit grey pixels (row-major, `nx` wide) as PNG.
pub fn grey8_png(data: &[u8], nx: usize) -> Result<Vec<u8>> {
    let ny = data.len() / nx.max(1);
    let img = ::image::GrayImage::from_raw(nx as u32, ny as u32, data[..nx * ny].to_vec())
        .expect("nx * ny pixels");
    encode(&::image::DynamicImage::ImageLuma8(img))
}

/// PNG bytes of an image; grey when nothing is coloured (a third of the size).
pub fn png_bytes(img: &::image::RgbImage) -> Result<Vec<u8>> {
    let rgb = ::image::DynamicImage::ImageRgb8(img.clone());
    let is_grey = img.pixels().all(|p| p[0] == p[1] && p[1] == p[2]);
    let img = if is_grey {
        ::image::DynamicImage::ImageLuma8(rgb.to_luma8())
    } else {
        rgb
    };
    encode(&img)
}

/// JPEG bytes of an image: a noisy micrograph compresses ten times better than as PNG, which
/// matters for a report that inlines several.
pub fn jpeg_bytes(img: &::image::RgbImage, quality: u8) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    ::image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality)
        .encode_image(img)
        .map_err(|e| Error::Parameter(format!("cannot encode JPEG: {e}")))?;
    Ok(bytes)
}

fn encode(img: &::image::DynamicImage) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        ::image::ImageFormat::Png,
    )
    .map_err(|e| Error::Parameter(format!("cannot encode PNG: {e}")))?;
    Ok(bytes)
}

/// Writes a PNG atomically.
pub fn write_png(path: &Path, img: &::image::RgbImage) -> Result<()> {
    let bytes = png_bytes(img)?;
    cryoprune_formats::atomic::write_atomic(path, |w| w.write_all(&bytes))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_are_drawn_in_their_colour_on_a_binned_grey_image() {
        let img = Image::from_fn(400, 200, |x, y| ((x * 7 + y * 13) % 11) as f32);
        let marks = [Mark {
            x: 100.0,
            y: 100.0,
            colour: [0, 255, 0],
        }];
        let out = render(&img, &marks, 20.0, 100);
        assert_eq!((out.width(), out.height()), (100, 50));
        // The circle passes 5 binned pixels right of the centre (25, 25).
        assert_eq!(out.get_pixel(30, 25).0, [0, 255, 0]);
        let p = out.get_pixel(25, 25).0;
        assert!(p[0] == p[1] && p[1] == p[2]);
        let bytes = png_bytes(&out).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
    }
}
