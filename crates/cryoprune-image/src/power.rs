//! A micrograph's power spectrum as an image a network can read beside the micrograph itself.
//!
//! Binning a micrograph to a network's input size keeps what is large (carbon, ice blobs,
//! aggregates) and throws away exactly the frequencies where crystalline ice (the hexagonal
//! lattice's spots near 3.7-3.9 Å), drift (Thon rings cut off along one direction) and thick
//! ice (rings drowned in noise) show. The spectrum is therefore computed at full resolution, as
//! a Welch average of windowed tiles of the network's input size, so its pixels span every
//! frequency up to the micrograph's Nyquist whatever the micrograph's size.
//!
//! The zero frequency sits at pixel (n/2, n/2), where every augmentation keeps its centre: a
//! flip or turn of the micrograph is the same flip or turn of its spectrum, so one random
//! transform serves both channels. Log power, then zero mean and unit deviation: a
//! micrograph's overall scale (counting or not, gain) does not matter.

use crate::fourier::{Fft2, Spectrum};
use crate::image::Image;

/// At most this many tiles per axis: beyond about 400 tiles the average no longer changes
/// visibly, and a 4096² micrograph would otherwise cost 4,000 transforms.
const MAX_TILES_PER_AXIS: usize = 20;

/// Planned transforms and window for spectra of one size; one per worker.
pub struct PowerSpectrum {
    size: usize,
    fft: Fft2,
    window: Vec<f32>,
    tile: Vec<f32>,
    spec: Spectrum,
}

impl PowerSpectrum {
    /// Spectra `size` × `size` pixels (at least 4).
    pub fn new(size: usize) -> PowerSpectrum {
        let size = size.max(4);
        let hann = hann(size);
        let window = (0..size * size)
            .map(|i| hann[i % size] * hann[i / size])
            .collect();
        PowerSpectrum {
            size,
            fft: Fft2::new(size, size),
            window,
            tile: vec![0.0; size * size],
            spec: Spectrum::zeros(size, size),
        }
    }

    /// The normalised log power spectrum of `img`, zero frequency at (n/2, n/2). An image
    /// smaller than the spectrum along an axis is tiled once along it, zero-padded.
    pub fn of(&mut self, img: &Image) -> Image {
        let n = self.size;
        let hx = n / 2 + 1;
        let mut power = vec![0.0f64; hx * n];
        let (tw, th) = (img.nx.min(n), img.ny.min(n));
        let xs = tile_starts(img.nx, tw);
        let ys = tile_starts(img.ny, th);
        for &y0 in &ys {
            for &x0 in &xs {
                self.tile.fill(0.0);
                let mut sum = 0.0f64;
                for y in 0..th {
                    sum += img.row(y0 + y)[x0..x0 + tw]
                        .iter()
                        .map(|&v| v as f64)
                        .sum::<f64>();
                }
                let mean = (sum / (tw * th) as f64) as f32;
                for y in 0..th {
                    let src = &img.row(y0 + y)[x0..x0 + tw];
                    for (x, &v) in src.iter().enumerate() {
                        // A small tile keeps the whole window, stretched over the tile's size.
                        let w = self.window[(y * n / th) * n + x * n / tw];
                        self.tile[y * n + x] = (v - mean) * w;
                    }
                }
                self.fft.forward_into(&mut self.tile, &mut self.spec);
                for (p, c) in power.iter_mut().zip(&self.spec.data) {
                    *p += c.norm_sqr() as f64;
                }
            }
        }
        // The half plane (column-major, kx < hx) unfolded to the full plane, centred.
        let c = (n / 2) as isize;
        let at = |kx: isize, ky: isize| -> f64 {
            let (kx, ky) = if kx < 0 { (-kx, -ky) } else { (kx, ky) };
            let ky = ky.rem_euclid(n as isize) as usize;
            power[kx as usize * n + ky]
        };
        let mut log: Vec<f64> = (0..n * n)
            .map(|i| {
                let (x, y) = ((i % n) as isize - c, (i / n) as isize - c);
                // kx = -n/2 has no partner in the half plane; for even n it is +n/2's.
                let kx = if x == -(n as isize) / 2 && n.is_multiple_of(2) {
                    -x
                } else {
                    x
                };
                at(kx, y)
            })
            .collect();
        // Tiles lose their mean, so the zero frequency holds nothing: it takes its
        // neighbours' level rather than a spike of -∞.
        let centre = (c as usize) * n + c as usize;
        log[centre] = (log[centre - 1] + log[centre + 1] + log[centre - n] + log[centre + n]) / 4.0;
        let floor = log.iter().cloned().fold(0.0f64, f64::max) * 1e-12 + f64::MIN_POSITIVE;
        log.iter_mut().for_each(|p| *p = (*p + floor).ln());
        let mean = log.iter().sum::<f64>() / log.len() as f64;
        let var = log.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / log.len() as f64;
        let std = if var > 0.0 { var.sqrt() } else { 1.0 };
        Image::new(
            n,
            n,
            log.iter().map(|v| ((v - mean) / std) as f32).collect(),
        )
    }
}

/// The periodic Hann window of `n` points: it tapers a tile to zero at its edges, so a tile's
/// borders do not add a cross of false power to its spectrum.
pub(crate) fn hann(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let t = std::f64::consts::TAU * i as f64 / n as f64;
            (0.5 - 0.5 * t.cos()) as f32
        })
        .collect()
}

/// Starts of tiles `t` wide along an axis `len` long: half-overlapping, evenly spread over the
/// whole axis, at most [`MAX_TILES_PER_AXIS`].
fn tile_starts(len: usize, t: usize) -> Vec<usize> {
    let span = len - t;
    let step = (t / 2).max(1);
    let count = (span.div_ceil(step) + 1).min(MAX_TILES_PER_AXIS);
    if count == 1 {
        return vec![0];
    }
    (0..count).map(|i| i * span / (count - 1)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wave(nx: usize, ny: usize, kx: f64, ky: f64) -> Image {
        Image::from_fn(nx, ny, |x, y| {
            (std::f64::consts::TAU * (kx * x as f64 + ky * y as f64)).cos() as f32
        })
    }

    fn brightest(img: &Image, skip_centre: bool) -> (usize, usize) {
        let n = img.nx;
        let mut best = (0, 0, f32::MIN);
        for y in 0..n {
            for x in 0..n {
                let near = x.abs_diff(n / 2) <= 1 && y.abs_diff(n / 2) <= 1;
                if !(skip_centre && near) && img.get(x, y) > best.2 {
                    best = (x, y, img.get(x, y));
                }
            }
        }
        (best.0, best.1)
    }

    #[test]
    fn a_plane_wave_lights_its_frequency_and_its_mirror() {
        // 8 cycles per 32 px along x and 4 along y on a 200 × 150 image, spectrum 32 px.
        let img = wave(200, 150, 8.0 / 32.0, 4.0 / 32.0);
        let s = PowerSpectrum::new(32).of(&img);
        let (x, y) = brightest(&s, true);
        let (dx, dy) = (x as isize - 16, y as isize - 16);
        assert!(
            (dx, dy) == (8, 4) || (dx, dy) == (-8, -4),
            "peak at offset ({dx}, {dy})"
        );
        assert!((s.get(16 + 8, 16 + 4) - s.get(16 - 8, 16 - 4)).abs() < 1e-4);
        let mean = s.data.iter().sum::<f32>() / s.data.len() as f32;
        let var = s.data.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / s.data.len() as f32;
        assert!(mean.abs() < 1e-4 && (var - 1.0).abs() < 1e-3);
    }

    #[test]
    fn a_turned_image_has_a_turned_spectrum_and_scale_does_not_matter() {
        let img = wave(96, 96, 3.0 / 16.0, 1.0 / 16.0);
        let turned = crate::augment::rot90(&img, 1);
        let mut power = PowerSpectrum::new(16);
        let a = crate::augment::rot90(&power.of(&img), 1);
        let b = power.of(&turned);
        assert_eq!(brightest(&a, true), brightest(&b, true));
        let scaled = Image::new(96, 96, img.data.iter().map(|v| 1e4 * v + 7.0).collect());
        let c = power.of(&scaled);
        let d = power.of(&img);
        assert!(c
            .data
            .iter()
            .zip(&d.data)
            .all(|(p, q)| (p - q).abs() < 1e-3));
    }

    #[test]
    fn images_smaller_than_the_spectrum_and_flat_images_give_finite_values() {
        let mut power = PowerSpectrum::new(32);
        for img in [
            wave(20, 50, 0.25, 0.0),
            Image::filled(64, 64, 3.0),
            Image::zeros(5, 5),
        ] {
            let s = power.of(&img);
            assert_eq!((s.nx, s.ny), (32, 32));
            assert!(s.data.iter().all(|v| v.is_finite()));
        }
        assert_eq!(tile_starts(32, 32), vec![0]);
        assert_eq!(tile_starts(64, 32), vec![0, 16, 32]);
        let many = tile_starts(4096, 128);
        assert_eq!((many.len(), many[0], *many.last().unwrap()), (20, 0, 3968));
    }
}
