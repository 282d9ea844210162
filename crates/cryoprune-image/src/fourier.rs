//! 2D Fourier transforms of real images, low-pass filtering and resampling by Fourier cropping
//! or padding (binning by any factor >= 1, not only integers).
//!
//! Conventions: the forward transform is unnormalised and the inverse divides by the number of
//! pixels, as NumPy's `rfft2`/`irfft2`. Spatial frequencies are given as a fraction of Nyquist
//! (0.5 cycles per pixel = 1.0), so a cutoff means the same on every image size.

use std::sync::Arc;

use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

use crate::image::Image;
use crate::{Error, Result};

pub type C32 = Complex<f32>;

/// The half-plane spectrum of a real `nx` x `ny` image: `kx` in `0..=nx/2`, every `ky`.
/// Stored column-major (`data[kx * ny + ky]`) so the transforms along y run on contiguous memory.
#[derive(Debug, Clone)]
pub struct Spectrum {
    pub nx: usize,
    pub ny: usize,
    pub data: Vec<C32>,
}

/// Index `k` of an `n`-point transform as a signed frequency (`n/2` counts as negative for even
/// `n`, as in `numpy.fft.fftfreq`).
#[inline]
pub fn signed_freq(k: usize, n: usize) -> isize {
    if 2 * k < n {
        k as isize
    } else {
        k as isize - n as isize
    }
}

impl Spectrum {
    /// The all-zero spectrum of an `nx` × `ny` image: a buffer to transform into.
    pub fn zeros(nx: usize, ny: usize) -> Spectrum {
        Spectrum {
            nx,
            ny,
            data: vec![C32::new(0.0, 0.0); (nx / 2 + 1) * ny],
        }
    }

    pub fn hx(&self) -> usize {
        self.nx / 2 + 1
    }

    #[inline]
    pub fn at(&self, kx: usize, ky: usize) -> C32 {
        self.data[kx * self.ny + ky]
    }

    /// Spatial frequency of bin (kx, ky) as a fraction of Nyquist.
    #[inline]
    pub fn radius(&self, kx: usize, ky: usize) -> f64 {
        let fx = kx as f64 / self.nx as f64;
        let fy = signed_freq(ky, self.ny) as f64 / self.ny as f64;
        2.0 * (fx * fx + fy * fy).sqrt()
    }

    /// Multiplies every bin by a gain that depends only on its frequency (fraction of Nyquist).
    pub fn apply_radial(&mut self, gain: impl Fn(f64) -> f32) {
        let ny = self.ny;
        for kx in 0..self.hx() {
            for ky in 0..ny {
                let g = gain(self.radius(kx, ky));
                self.data[kx * ny + ky] *= g;
            }
        }
    }

    /// The spectrum of the same image resampled onto `mx` x `my` pixels: frequencies both grids
    /// hold are copied, the rest are dropped (cropping) or zero (padding). A Nyquist bin of a
    /// changed axis is left at zero because it stands for both +n/2 and -n/2 and cannot be split
    /// between them without guessing. Scaled so that pixel values (the mean, the amplitude of a
    /// kept sinusoid) are unchanged.
    pub fn resized(&self, mx: usize, my: usize) -> Spectrum {
        let (nx, ny) = (self.nx, self.ny);
        let hmx = mx / 2 + 1;
        let mut data = vec![C32::new(0.0, 0.0); hmx * my];
        let scale = (mx * my) as f32 / (nx * ny) as f32;
        let hx = self.hx();
        for kx in 0..hmx.min(hx) {
            if mx != nx && (2 * kx >= nx || 2 * kx >= mx) {
                continue;
            }
            for j in 0..my {
                let src = if my == ny {
                    j
                } else {
                    let s = signed_freq(j, my);
                    let twice = 2 * s.unsigned_abs();
                    if twice >= ny || twice >= my {
                        continue;
                    }
                    s.rem_euclid(ny as isize) as usize
                };
                data[kx * my + j] = self.data[kx * ny + src] * scale;
            }
        }
        Spectrum {
            nx: mx,
            ny: my,
            data,
        }
    }
}

/// Planned forward and inverse transforms for one image size, with their scratch space. Planning
/// costs far more than a small transform, so a worker keeps one per size it meets.
pub struct Fft2 {
    nx: usize,
    ny: usize,
    r2c: Arc<dyn RealToComplex<f32>>,
    c2r: Arc<dyn ComplexToReal<f32>>,
    col_fwd: Arc<dyn Fft<f32>>,
    col_inv: Arc<dyn Fft<f32>>,
    rows: Vec<C32>,
    scratch: Vec<C32>,
}

impl Fft2 {
    pub fn new(nx: usize, ny: usize) -> Fft2 {
        assert!(nx > 0 && ny > 0, "FFT of an empty image");
        let mut real = RealFftPlanner::<f32>::new();
        let mut complex = FftPlanner::<f32>::new();
        let r2c = real.plan_fft_forward(nx);
        let c2r = real.plan_fft_inverse(nx);
        let col_fwd = complex.plan_fft_forward(ny);
        let col_inv = complex.plan_fft_inverse(ny);
        let scratch_len = r2c
            .get_scratch_len()
            .max(c2r.get_scratch_len())
            .max(col_fwd.get_inplace_scratch_len())
            .max(col_inv.get_inplace_scratch_len());
        Fft2 {
            nx,
            ny,
            r2c,
            c2r,
            col_fwd,
            col_inv,
            rows: vec![C32::new(0.0, 0.0); (nx / 2 + 1) * ny],
            scratch: vec![C32::new(0.0, 0.0); scratch_len],
        }
    }

    pub fn shape(&self) -> (usize, usize) {
        (self.nx, self.ny)
    }

    /// Forward transform of `data` (row-major `nx` x `ny`).
    pub fn forward(&mut self, data: &[f32]) -> Spectrum {
        let mut out = Spectrum::zeros(self.nx, self.ny);
        self.forward_into(&mut data.to_vec(), &mut out);
        out
    }

    /// Forward transform into an existing spectrum of this size; `data` serves as working space
    /// and is left unspecified (saves copying an image the caller no longer needs).
    pub fn forward_into(&mut self, data: &mut [f32], out: &mut Spectrum) {
        self.forward_columns(data, out, self.nx / 2 + 1);
    }

    /// Forward transform of only the lowest `columns` frequencies along x (`kx < columns`); the
    /// other columns of `out` are left unspecified, as is `data`. Resampling to a smaller size
    /// reads no more, and skipping the rest saves most of the work along y.
    pub fn forward_columns(&mut self, data: &mut [f32], out: &mut Spectrum, columns: usize) {
        let (nx, ny) = (self.nx, self.ny);
        assert_eq!(data.len(), nx * ny, "image size does not match the plan");
        assert_eq!(
            (out.nx, out.ny),
            (nx, ny),
            "spectrum size does not match the plan"
        );
        let hx = nx / 2 + 1;
        let columns = columns.min(hx);
        let rs = self.r2c.get_scratch_len();
        for (y, row) in data.chunks_exact_mut(nx).enumerate() {
            self.r2c
                .process_with_scratch(
                    row,
                    &mut self.rows[y * hx..(y + 1) * hx],
                    &mut self.scratch[..rs],
                )
                .expect("buffer sizes come from the plan");
        }
        transpose_cols(&self.rows, ny, hx, columns, &mut out.data);
        let cs = self.col_fwd.get_inplace_scratch_len();
        self.col_fwd
            .process_with_scratch(&mut out.data[..columns * ny], &mut self.scratch[..cs]);
    }

    /// Inverse transform; `spec` is used as working space.
    pub fn inverse(&mut self, spec: &mut Spectrum) -> Image {
        let mut out = Image::zeros(self.nx, self.ny);
        self.inverse_into(spec, &mut out.data);
        out
    }

    /// Inverse transform into `out` (row-major `nx` x `ny`); `spec` is used as working space.
    pub fn inverse_into(&mut self, spec: &mut Spectrum, out: &mut [f32]) {
        let (nx, ny) = (self.nx, self.ny);
        assert_eq!(
            (spec.nx, spec.ny),
            (nx, ny),
            "spectrum size does not match the plan"
        );
        assert_eq!(out.len(), nx * ny, "output size does not match the plan");
        let hx = nx / 2 + 1;
        let cs = self.col_inv.get_inplace_scratch_len();
        self.col_inv
            .process_with_scratch(&mut spec.data, &mut self.scratch[..cs]);
        transpose(&spec.data, hx, ny, &mut self.rows);
        let rs = self.c2r.get_scratch_len();
        let norm = 1.0 / (nx * ny) as f32;
        for y in 0..ny {
            let row = &mut self.rows[y * hx..(y + 1) * hx];
            // The DC and Nyquist bins of a real row are real; rounding leaves a tiny imaginary part
            // that the real-output transform would otherwise reject.
            row[0].im = 0.0;
            if nx % 2 == 0 {
                row[hx - 1].im = 0.0;
            }
            let dst = &mut out[y * nx..(y + 1) * nx];
            self.c2r
                .process_with_scratch(row, dst, &mut self.scratch[..rs])
                .expect("imaginary parts of DC and Nyquist were cleared");
            for v in dst.iter_mut() {
                *v *= norm;
            }
        }
    }
}

/// `dst[c * rows + r] = src[r * cols + c]`, in tiles so both sides stay in cache.
fn transpose<T: Copy>(src: &[T], rows: usize, cols: usize, dst: &mut [T]) {
    transpose_cols(src, rows, cols, cols, dst);
}

/// The transpose of the first `keep` columns only.
fn transpose_cols<T: Copy>(src: &[T], rows: usize, cols: usize, keep: usize, dst: &mut [T]) {
    const TILE: usize = 32;
    for r0 in (0..rows).step_by(TILE) {
        let r1 = (r0 + TILE).min(rows);
        for c0 in (0..keep).step_by(TILE) {
            let c1 = (c0 + TILE).min(keep);
            for r in r0..r1 {
                for c in c0..c1 {
                    dst[c * rows + r] = src[r * cols + c];
                }
            }
        }
    }
}

/// Where a low-pass filter starts to cut.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cutoff {
    /// A resolution in Å; needs the pixel size.
    Angstrom(f64),
    /// A fraction of Nyquist (1.0 = 0.5 cycles per pixel).
    Nyquist(f64),
}

impl Cutoff {
    /// The cutoff as a fraction of Nyquist for images of this pixel size (Å).
    pub fn nyquist_fraction(self, pixel_size: Option<f64>) -> Result<f64> {
        match self {
            Cutoff::Nyquist(f) if f > 0.0 && f.is_finite() => Ok(f),
            Cutoff::Nyquist(f) => Err(Error::Parameter(format!(
                "low-pass cutoff {f} must be a positive fraction of Nyquist"
            ))),
            Cutoff::Angstrom(a) if !(a > 0.0 && a.is_finite()) => Err(Error::Parameter(format!(
                "low-pass cutoff {a} Å must be a positive resolution"
            ))),
            Cutoff::Angstrom(a) => match pixel_size {
                Some(px) if px > 0.0 => Ok(2.0 * px / a),
                _ => Err(Error::NoPixelSize),
            },
        }
    }
}

/// A low-pass filter with a raised-cosine edge: gain 1 below `cutoff - width/2`, 0 above
/// `cutoff + width/2`, 0.5 at `cutoff` (all as fractions of Nyquist). A soft edge avoids the
/// ringing around particles that a hard cutoff causes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LowPass {
    pub cutoff: f64,
    pub width: f64,
}

impl LowPass {
    /// Default edge width, as a fraction of Nyquist.
    pub const DEFAULT_WIDTH: f64 = 0.05;

    pub fn new(cutoff: f64) -> LowPass {
        LowPass {
            cutoff,
            width: Self::DEFAULT_WIDTH,
        }
    }

    pub fn gain(&self, r: f64) -> f32 {
        let lo = self.cutoff - self.width / 2.0;
        let hi = self.cutoff + self.width / 2.0;
        if r <= lo {
            1.0
        } else if r >= hi {
            0.0
        } else {
            (0.5 * (1.0 + (std::f64::consts::PI * (r - lo) / self.width).cos())) as f32
        }
    }

    pub fn apply(&self, spec: &mut Spectrum) {
        spec.apply_radial(|r| self.gain(r));
    }
}

/// Low-pass filters a whole image.
pub fn lowpass(image: &Image, filter: &LowPass) -> Image {
    let mut out = image.clone();
    lowpass_in_place(&mut out, filter);
    out
}

/// Low-pass filters an image in place (no second image-sized buffer besides the spectrum).
pub fn lowpass_in_place(image: &mut Image, filter: &LowPass) {
    let mut fft = Fft2::new(image.nx, image.ny);
    let mut spec = Spectrum::zeros(image.nx, image.ny);
    fft.forward_into(&mut image.data, &mut spec);
    filter.apply(&mut spec);
    fft.inverse_into(&mut spec, &mut image.data);
}

/// Resamples an image onto `mx` x `my` pixels by Fourier cropping (smaller) or padding (larger).
/// Pixel (0, 0) stays at the origin: pixel `i` of the result lies at `i * nx / mx` of the input.
pub fn resize(image: &Image, mx: usize, my: usize) -> Image {
    let mut spec = Fft2::new(image.nx, image.ny).forward(&image.data);
    let mut small = spec.resized(mx, my);
    spec.data = Vec::new();
    Fft2::new(mx, my).inverse(&mut small)
}

/// Resamples a square image to `m` x `m` about its centre: pixel (n/2, n/2) lands on
/// (m/2, m/2), as extraction centres particles.
pub fn resize_centred(image: &Image, m: usize) -> Image {
    let n = image.nx;
    assert_eq!(n, image.ny, "centred resampling needs a square image");
    let mut shifted = Image::zeros(n, n);
    roll(&image.data, n, n - n / 2, &mut shifted.data);
    let r = resize(&shifted, m, m);
    let mut out = Image::zeros(m, m);
    roll(&r.data, m, m / 2, &mut out.data);
    out
}

/// `dst[(y + k) % n][(x + k) % n] = src[y][x]` for an `n` x `n` image: a cyclic shift by `k` on
/// both axes. Shifting by `n - n/2` moves the centre pixel to the origin (`ifftshift`), by
/// `n/2` back again (`fftshift`).
pub fn roll(src: &[f32], n: usize, k: usize, dst: &mut [f32]) {
    for y in 0..n {
        let dy = (y + k) % n;
        let row = &src[y * n..(y + 1) * n];
        let out = &mut dst[dy * n..(dy + 1) * n];
        out[k..].copy_from_slice(&row[..n - k]);
        out[..k].copy_from_slice(&row[n - k..]);
    }
}

/// An image binned by Fourier cropping, with the factor actually applied on each axis (the
/// requested factor rounded so that the new size is whole pixels).
#[derive(Debug, Clone)]
pub struct Binned {
    pub image: Image,
    pub factor_x: f64,
    pub factor_y: f64,
}

/// The side [`bin`] gives an image side of `n` pixels binned by `factor`.
pub fn binned_size(n: usize, factor: f64) -> usize {
    ((n as f64 / factor).round() as usize).max(1)
}

/// Bins by any factor >= 1: the new size is `round(n / factor)` on each axis. Coordinates map
/// as `x' = x / factor_x`, pixel sizes as `px' = px * factor_x`.
pub fn bin(image: &Image, factor: f64) -> Result<Binned> {
    if !(factor >= 1.0 && factor.is_finite()) {
        return Err(Error::Parameter(format!(
            "binning factor {factor} must be a number >= 1"
        )));
    }
    let (mx, my) = (binned_size(image.nx, factor), binned_size(image.ny, factor));
    Ok(Binned {
        image: resize(image, mx, my),
        factor_x: image.nx as f64 / mx as f64,
        factor_y: image.ny as f64 / my as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    /// A sum of cosines with integer frequencies (cycles per image) so the image is periodic
    /// and its spectrum has exactly these bins.
    fn waves(
        nx: usize,
        ny: usize,
        comps: &[(f64, f64, f64, f64)],
    ) -> impl Fn(f64, f64) -> f64 + '_ {
        move |x, y| {
            comps
                .iter()
                .map(|&(a, fx, fy, ph)| {
                    a * (2.0 * PI * (fx * x / nx as f64 + fy * y / ny as f64) + ph).cos()
                })
                .sum()
        }
    }

    fn max_abs_diff(a: &Image, f: impl Fn(usize, usize) -> f64) -> f64 {
        let mut worst = 0.0f64;
        for y in 0..a.ny {
            for x in 0..a.nx {
                worst = worst.max((a.get(x, y) as f64 - f(x, y)).abs());
            }
        }
        worst
    }

    #[test]
    fn roll_is_ifftshift_and_fftshift() {
        // numpy: ifftshift([0,1,2,3,4]) = [2,3,4,0,1]; fftshift([0,1,2,3]) = [2,3,0,1].
        let src: Vec<f32> = (0..25).map(|i| (i % 5) as f32).collect();
        let mut dst = vec![0.0; 25];
        roll(&src, 5, 5 - 5 / 2, &mut dst);
        assert_eq!(&dst[..5], &[2.0, 3.0, 4.0, 0.0, 1.0]);
        let src: Vec<f32> = (0..16).map(|i| (i % 4) as f32).collect();
        let mut dst = vec![0.0; 16];
        roll(&src, 4, 4 / 2, &mut dst);
        assert_eq!(&dst[..4], &[2.0, 3.0, 0.0, 1.0]);
    }

    #[test]
    fn forward_then_inverse_is_identity_for_odd_and_even_sizes() {
        for (nx, ny) in [(16, 16), (15, 9), (12, 7), (1, 5)] {
            let img = Image::from_fn(nx, ny, |x, y| ((x * 31 + y * 17) % 13) as f32 - 6.0);
            let mut fft = Fft2::new(nx, ny);
            let mut spec = fft.forward(&img.data);
            let back = fft.inverse(&mut spec);
            let d = max_abs_diff(&back, |x, y| img.get(x, y) as f64);
            assert!(d < 1e-4, "{nx}x{ny}: {d}");
        }
    }

    #[test]
    fn spectrum_puts_a_cosine_in_its_bin() {
        let (nx, ny) = (32, 24);
        let comps = [(1.0, 3.0, -5.0, 0.0)];
        let f = waves(nx, ny, &comps);
        let img = Image::from_fn(nx, ny, |x, y| f(x as f64, y as f64) as f32);
        let spec = Fft2::new(nx, ny).forward(&img.data);
        // cos splits into two conjugate bins of weight n/2; the half plane keeps (3, -5).
        let peak = spec.at(3, ny - 5);
        assert!((peak.re - (nx * ny) as f32 / 2.0).abs() < 1e-2, "{peak}");
        let total: f32 = spec.data.iter().map(|c| c.norm()).sum();
        assert!((total - peak.norm()).abs() < 1e-1);
    }

    #[test]
    fn lowpass_keeps_low_and_removes_high_frequencies() {
        let (nx, ny) = (128, 96);
        // Radii as a fraction of Nyquist: (8,0) -> 0.125; (40,30) -> 2*sqrt(.3125²+.3125²) = 0.88.
        let low = [(1.0, 8.0, 0.0, 0.3)];
        let high = [(0.7, 40.0, 30.0, 1.1)];
        let all = [low[0], high[0]];
        let f = waves(nx, ny, &all);
        let img = Image::from_fn(nx, ny, |x, y| f(x as f64, y as f64) as f32);
        let out = lowpass(&img, &LowPass::new(0.5));
        let keep = waves(nx, ny, &low);
        let d = max_abs_diff(&out, |x, y| keep(x as f64, y as f64));
        assert!(d < 1e-4, "{d}");
    }

    #[test]
    fn lowpass_edge_is_a_raised_cosine() {
        let filt = LowPass {
            cutoff: 0.5,
            width: 0.2,
        };
        assert_eq!(filt.gain(0.39), 1.0);
        assert!((filt.gain(0.5) - 0.5).abs() < 1e-6);
        assert!((filt.gain(0.45) - (0.5 * (1.0 + (PI * 0.5 / 2.0).cos())) as f32).abs() < 1e-6);
        assert_eq!(filt.gain(0.61), 0.0);
        // A wave on the edge comes out scaled by the gain at its radius.
        let (n, k) = (100usize, 24.0);
        let comps = [(1.0, k, 0.0, 0.0)];
        let f = waves(n, n, &comps);
        let img = Image::from_fn(n, n, |x, y| f(x as f64, y as f64) as f32);
        let g = filt.gain(2.0 * k / n as f64) as f64;
        let out = lowpass(&img, &filt);
        let d = max_abs_diff(&out, |x, y| g * f(x as f64, y as f64));
        assert!(d < 1e-4 && g > 0.1 && g < 0.9, "{d} {g}");
    }

    #[test]
    fn cutoff_in_angstrom_uses_the_pixel_size() {
        // 20 Å at 2.5 Å/px: Nyquist is 5 Å, so the cutoff is a quarter of Nyquist.
        let f = Cutoff::Angstrom(20.0).nyquist_fraction(Some(2.5)).unwrap();
        assert!((f - 0.25).abs() < 1e-12);
        assert!(matches!(
            Cutoff::Angstrom(20.0).nyquist_fraction(None),
            Err(Error::NoPixelSize)
        ));
        assert!(Cutoff::Nyquist(-1.0).nyquist_fraction(None).is_err());
    }

    #[test]
    fn binning_a_band_limited_image_is_exact_for_non_integer_factors() {
        let (nx, ny) = (200, 150);
        // All frequencies below the new Nyquist (new size 128 x 96 -> < 64 and < 48 cycles).
        let comps = [
            (2.0, 0.0, 0.0, 0.0),
            (1.0, 5.0, 3.0, 0.4),
            (0.5, -20.0, 11.0, 2.0),
            (0.8, 60.0, -45.0, 1.0),
        ];
        let f = waves(nx, ny, &comps);
        let img = Image::from_fn(nx, ny, |x, y| f(x as f64, y as f64) as f32);
        let b = bin(&img, 1.5625).unwrap();
        assert_eq!((b.image.nx, b.image.ny), (128, 96));
        assert!((b.factor_x - 1.5625).abs() < 1e-12 && (b.factor_y - 1.5625).abs() < 1e-12);
        let d = max_abs_diff(&b.image, |x, y| {
            f(x as f64 * b.factor_x, y as f64 * b.factor_y)
        });
        assert!(d < 1e-4, "{d}");
    }

    #[test]
    fn binning_by_a_factor_that_does_not_divide_rounds_the_size() {
        let img = Image::from_fn(101, 50, |x, _| x as f32);
        let b = bin(&img, 3.0).unwrap();
        assert_eq!((b.image.nx, b.image.ny), (34, 17));
        assert!((b.factor_x - 101.0 / 34.0).abs() < 1e-12);
        assert!(bin(&img, 0.5).is_err());
        assert!(bin(&img, f64::NAN).is_err());
    }

    #[test]
    fn padding_then_cropping_returns_the_band_limited_image() {
        let (nx, ny) = (40, 30);
        let comps = [(1.0, 3.0, 2.0, 0.2), (0.3, -7.0, 9.0, 0.0)];
        let f = waves(nx, ny, &comps);
        let img = Image::from_fn(nx, ny, |x, y| f(x as f64, y as f64) as f32);
        let big = resize(&img, 64, 45);
        let d = max_abs_diff(&big, |x, y| {
            f(x as f64 * nx as f64 / 64.0, y as f64 * ny as f64 / 45.0)
        });
        assert!(d < 1e-4, "{d}");
        let back = resize(&big, nx, ny);
        assert!(max_abs_diff(&back, |x, y| img.get(x, y) as f64) < 1e-4);
    }
}
