//! Cutting particles out of a micrograph, RELION's way.
//!
//! Centring: a pick at (x, y) falls on pixel (trunc x, trunc y), as `relion_preprocess` casts
//! its coordinates to integers, and that pixel becomes pixel (B/2, B/2) of the B x B box
//! (integer division, so odd and even boxes agree with RELION and with `numpy.fft.fftshift`).
//! A STAR that keeps fractional coordinates therefore gives RELION the very boxes we cut.
//! Resampling to the output size S is done by Fourier cropping or padding about that centre, so
//! the particle centre lands on (S/2, S/2) whatever B and S are.
//!
//! Order of operations, as in `relion_preprocess`: window, resample, normalise (a plane fitted
//! to the background outside a circle subtracted, then that background brought to zero mean and
//! unit variance), invert.

use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

use crate::fourier::{lowpass_in_place, roll, Fft2, LowPass, Spectrum};
use crate::image::Image;
use crate::normalize::{self, MicrographNorm, Stats};
use crate::{Error, Result};

/// The largest box or output side accepted: far above any particle (a 4096² micrograph is one
/// box), far below a box whose buffers would exhaust memory (`--box 100000` asked for 40 GB).
pub const MAX_BOX: usize = 8192;

/// What to do with a pick whose box reaches past the micrograph edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgePolicy {
    /// Leave the pick out (RELION's behaviour).
    Skip,
    /// Fill the missing pixels with the micrograph mean.
    PadMean,
    /// Fill the missing pixels with Gaussian noise of the micrograph's mean and deviation, so the
    /// filled part looks like ice rather than a flat band a network could key on.
    PadNoise,
    /// Repeat the nearest micrograph pixel, as `relion_preprocess` fills a box at the edge.
    PadEdge,
}

/// Per-particle normalisation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParticleNorm {
    None,
    /// Zero mean and unit variance of the pixels farther than `radius` (output pixels) from the
    /// centre, as `relion_preprocess --norm --bg_radius`; with `ramp`, a least-squares plane
    /// through those pixels is subtracted first, as RELION does unless told `--no_ramp`.
    Relion {
        radius: f64,
        ramp: bool,
    },
}

impl ParticleNorm {
    /// The background radius RELION's Extract job passes for a box of `box_size` micrograph
    /// pixels written at `out_size`: 75% of half the box, rescaled, truncated to whole pixels.
    pub fn relion_radius(box_size: usize, out_size: usize) -> f64 {
        let radius = 0.75 * box_size as f64 / 2.0;
        let rescaled = if out_size != box_size {
            radius * out_size as f64 / box_size as f64
        } else {
            radius
        };
        rescaled.trunc()
    }

    /// RELION's default for particles of `out_size` cut from boxes of `box_size`: its radius,
    /// ramp subtracted.
    pub fn relion_default(box_size: usize, out_size: usize) -> ParticleNorm {
        ParticleNorm::Relion {
            radius: Self::relion_radius(box_size, out_size),
            ramp: true,
        }
    }

    /// The background radius a network's inputs are normalised with unless model.json says
    /// otherwise: 75% of half the input side, not truncated.
    pub fn input_radius(input_size: usize) -> f64 {
        0.375 * input_size as f64
    }

    /// How a network's inputs of side `input_size` are normalised by default: the background
    /// outside [`Self::input_radius`], no ramp (models record only the radius).
    pub fn input_default(input_size: usize) -> ParticleNorm {
        ParticleNorm::Relion {
            radius: Self::input_radius(input_size),
            ramp: false,
        }
    }
}

/// Micrograph-level preparation done once before any box is cut.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MicrographPrep {
    pub norm: MicrographNorm,
    pub lowpass: Option<LowPass>,
}

impl MicrographPrep {
    /// Applies the low-pass filter, then the normalisation.
    pub fn apply(&self, image: &mut Image) {
        if let Some(filter) = &self.lowpass {
            lowpass_in_place(image, filter);
        }
        self.norm.apply(image);
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExtractConfig {
    /// Box size in micrograph pixels.
    pub box_size: usize,
    /// Size of the particles written (resampled from `box_size`).
    pub out_size: usize,
    pub edge: EdgePolicy,
    pub norm: ParticleNorm,
    pub invert: bool,
    /// Seed for `EdgePolicy::PadNoise`; the noise of a pick depends only on the seed, the
    /// micrograph's seed offset and the pick's index, never on thread scheduling.
    pub seed: u64,
}

impl ExtractConfig {
    /// A box of `box_size` pixels kept at that size, edge picks skipped, RELION's default
    /// normalisation (its radius, ramp subtracted), no inversion.
    pub fn new(box_size: usize) -> ExtractConfig {
        ExtractConfig {
            box_size,
            out_size: box_size,
            edge: EdgePolicy::Skip,
            norm: ParticleNorm::relion_default(box_size, box_size),
            invert: false,
            seed: 0,
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.box_size < 2 || self.out_size < 2 {
            return Err(Error::Parameter(format!(
                "box size {} and output size {} must be at least 2 pixels",
                self.box_size, self.out_size
            )));
        }
        if self.box_size > MAX_BOX || self.out_size > MAX_BOX {
            return Err(Error::Parameter(format!(
                "box size {} and output size {} px: at most {MAX_BOX} px (a typo? each worker holds several boxes of this size)",
                self.box_size, self.out_size
            )));
        }
        if let ParticleNorm::Relion { radius, .. } = self.norm {
            let half = self.out_size as f64 / 2.0;
            // The farthest pixel from the centre is the corner at (-S/2, -S/2).
            if radius.is_nan() || radius < 0.0 || radius * radius >= 2.0 * half * half {
                return Err(Error::Parameter(format!(
                    "background radius {radius} leaves no background pixels in a {} px box",
                    self.out_size
                )));
            }
        }
        Ok(())
    }
}

/// The particles cut from one micrograph.
#[derive(Debug, Clone, Default)]
pub struct Extracted {
    /// `kept.len()` images of `out_size²` pixels, one after another.
    pub data: Vec<f32>,
    /// Index into the pick list of each particle in `data`.
    pub kept: Vec<usize>,
    /// Picks whose box reached past the edge and were padded (indices into the pick list).
    pub padded: Vec<usize>,
    /// Picks left out because their box reached past the edge (`EdgePolicy::Skip`).
    pub skipped_edge: Vec<usize>,
    /// Picks left out because their centre is not on the micrograph at all (or not a number).
    pub outside: Vec<usize>,
}

/// Cuts boxes; holds the FFT plans and buffers for one box and output size, so a worker thread
/// keeps one and reuses it for every micrograph.
pub struct Extractor {
    cfg: ExtractConfig,
    fwd: Option<(Fft2, Fft2, Spectrum)>,
    centred: Vec<f32>,
    shifted: Vec<f32>,
    small: Vec<f32>,
    background: Vec<usize>,
    /// The inverse of the normal equations' matrix of a plane a·x + b·y + c fitted to the
    /// background pixels (x, y from the box centre), when the ramp is subtracted: it depends
    /// on the geometry alone.
    ramp: Option<[[f64; 3]; 3]>,
}

impl Extractor {
    pub fn new(cfg: ExtractConfig) -> Result<Extractor> {
        cfg.validate()?;
        let (b, s) = (cfg.box_size, cfg.out_size);
        let fwd = (b != s).then(|| (Fft2::new(b, b), Fft2::new(s, s), Spectrum::zeros(b, b)));
        let c = (s / 2) as f64;
        let at = |i: usize| ((i % s) as f64 - c, (i / s) as f64 - c);
        let (background, ramp): (Vec<usize>, _) = match cfg.norm {
            ParticleNorm::None => (Vec::new(), None),
            ParticleNorm::Relion { radius, ramp } => {
                let bg: Vec<usize> = (0..s * s)
                    .filter(|&i| {
                        let (dx, dy) = at(i);
                        dx * dx + dy * dy > radius * radius
                    })
                    .collect();
                let inverse = if ramp {
                    let mut m = [[0.0; 3]; 3];
                    for &i in &bg {
                        let (x, y) = at(i);
                        let v = [x, y, 1.0];
                        for (r, &vr) in m.iter_mut().zip(&v) {
                            for (e, &vc) in r.iter_mut().zip(&v) {
                                *e += vr * vc;
                            }
                        }
                    }
                    Some(invert3(m).ok_or_else(|| {
                        Error::Parameter(format!(
                            "background radius {radius} leaves too few background pixels in a {s} px box to fit a ramp"
                        ))
                    })?)
                } else {
                    None
                };
                (bg, inverse)
            }
        };
        Ok(Extractor {
            cfg,
            fwd,
            centred: vec![0.0; b * b],
            shifted: vec![0.0; b * b],
            small: vec![0.0; s * s],
            background,
            ramp,
        })
    }

    pub fn config(&self) -> &ExtractConfig {
        &self.cfg
    }

    /// Cuts a box around every pick (x = column, y = row, micrograph pixels). `stream`
    /// separates the noise of different micrographs.
    pub fn extract(&mut self, mic: &Image, picks: &[(f64, f64)], stream: u64) -> Extracted {
        let s = self.cfg.out_size;
        // Reserve for every pick only up to a modest size: with a box larger than the micrograph
        // every pick may be skipped, and picks x size² could be far more than is ever kept.
        let mut out = Extracted {
            data: Vec::with_capacity((picks.len() * s * s).min(1 << 24)),
            ..Extracted::default()
        };
        // The micrograph's statistics cost a pass over every pixel; only padding needs them.
        let mut stats = None;
        for (i, &(x, y)) in picks.iter().enumerate() {
            let (cx, cy) = (x.trunc(), y.trunc());
            if !(cx >= 0.0 && cy >= 0.0 && cx < mic.nx as f64 && cy < mic.ny as f64) {
                out.outside.push(i);
                continue;
            }
            let (cx, cy) = (cx as i64, cy as i64);
            let inside = self.window(mic, cx, cy);
            if !inside {
                if self.cfg.edge == EdgePolicy::Skip {
                    out.skipped_edge.push(i);
                    continue;
                }
                if self.cfg.edge == EdgePolicy::PadEdge {
                    self.pad_edge(mic, cx, cy);
                } else {
                    let st = *stats.get_or_insert_with(|| normalize::stats(&mic.data));
                    self.pad(mic, cx, cy, st, stream, i as u64);
                }
                out.padded.push(i);
            }
            let start = out.data.len();
            out.data.resize(start + s * s, 0.0);
            self.finish(&mut out.data[start..]);
            out.kept.push(i);
        }
        out
    }

    /// Copies the box centred on (cx, cy) into `centred`; returns false (leaving the missing
    /// pixels unset) when part of it lies off the micrograph.
    fn window(&mut self, mic: &Image, cx: i64, cy: i64) -> bool {
        let b = self.cfg.box_size as i64;
        let (x0, y0) = (cx - b / 2, cy - b / 2);
        let (nx, ny) = (mic.nx as i64, mic.ny as i64);
        let inside = x0 >= 0 && y0 >= 0 && x0 + b <= nx && y0 + b <= ny;
        let bx0 = (-x0).max(0);
        let bx1 = (nx - x0).min(b);
        for by in 0..b {
            let my = y0 + by;
            if my < 0 || my >= ny || bx0 >= bx1 {
                continue;
            }
            let src = &mic.row(my as usize)[(x0 + bx0) as usize..(x0 + bx1) as usize];
            let row = (by * b) as usize;
            self.centred[row + bx0 as usize..row + bx1 as usize].copy_from_slice(src);
        }
        inside
    }

    fn pad(&mut self, mic: &Image, cx: i64, cy: i64, stats: Stats, stream: u64, pick: u64) {
        let b = self.cfg.box_size as i64;
        let (x0, y0) = (cx - b / 2, cy - b / 2);
        let mut rng = rand::rngs::StdRng::seed_from_u64(
            self.cfg.seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ pick.rotate_left(32),
        );
        let noise = Normal::new(stats.mean as f32, stats.std as f32).ok();
        let noisy = self.cfg.edge == EdgePolicy::PadNoise;
        for by in 0..b {
            for bx in 0..b {
                let (mx, my) = (x0 + bx, y0 + by);
                if mx >= 0 && my >= 0 && mx < mic.nx as i64 && my < mic.ny as i64 {
                    continue;
                }
                self.centred[(by * b + bx) as usize] = match (&noise, noisy) {
                    (Some(n), true) => n.sample(&mut rng),
                    _ => stats.mean as f32,
                };
            }
        }
    }

    /// Fills the box centred on (cx, cy) with the nearest micrograph pixel everywhere: what
    /// `relion_preprocess` writes where a box reaches past the edge.
    fn pad_edge(&mut self, mic: &Image, cx: i64, cy: i64) {
        let b = self.cfg.box_size as i64;
        let (x0, y0) = (cx - b / 2, cy - b / 2);
        let (nx, ny) = (mic.nx as i64, mic.ny as i64);
        for by in 0..b {
            let row = mic.row((y0 + by).clamp(0, ny - 1) as usize);
            for bx in 0..b {
                self.centred[(by * b + bx) as usize] = row[(x0 + bx).clamp(0, nx - 1) as usize];
            }
        }
    }

    /// Resamples, normalises and inverts the box in `centred` into `dst` (`out_size²`).
    fn finish(&mut self, dst: &mut [f32]) {
        let (b, s) = (self.cfg.box_size, self.cfg.out_size);
        match &mut self.fwd {
            None => dst.copy_from_slice(&self.centred),
            Some((fwd, inv, spec)) => {
                // Roll the box so its centre pixel is the transform origin (ifftshift), crop or
                // pad the spectrum, and roll back about the new centre (fftshift).
                roll(&self.centred, b, b - b / 2, &mut self.shifted);
                fwd.forward_columns(&mut self.shifted, spec, s / 2 + 1);
                let mut resized = spec.resized(s, s);
                inv.inverse_into(&mut resized, &mut self.small);
                roll(&self.small, s, s / 2, dst);
            }
        }
        if let Some(inverse) = &self.ramp {
            subtract_plane(dst, s, &self.background, inverse);
        }
        if let ParticleNorm::Relion { .. } = self.cfg.norm {
            let st = normalize::stats_of(self.background.iter().map(|&i| dst[i]));
            normalize::scale(dst, st);
        }
        if self.cfg.invert {
            for v in dst.iter_mut() {
                *v = -*v;
            }
        }
    }
}

/// Subtracts from the `s` × `s` image the least-squares plane through its `background` pixels,
/// given the inverse of the normal equations' matrix (RELION's `subtractBackgroundRamp`).
fn subtract_plane(img: &mut [f32], s: usize, background: &[usize], inverse: &[[f64; 3]; 3]) {
    let c = (s / 2) as f64;
    let mut rhs = [0.0f64; 3];
    for &i in background {
        let z = img[i] as f64;
        rhs[0] += ((i % s) as f64 - c) * z;
        rhs[1] += ((i / s) as f64 - c) * z;
        rhs[2] += z;
    }
    let [a, b, k] = inverse.map(|row| row.iter().zip(&rhs).map(|(m, r)| m * r).sum::<f64>());
    for (y, row) in img.chunks_exact_mut(s).enumerate() {
        let base = b * (y as f64 - c) + k;
        for (x, v) in row.iter_mut().enumerate() {
            *v = (*v as f64 - (a * (x as f64 - c) + base)) as f32;
        }
    }
}

/// The inverse of a 3 × 3 matrix, or None when it is singular.
fn invert3(m: [[f64; 3]; 3]) -> Option<[[f64; 3]; 3]> {
    let cof = |r: usize, c: usize| {
        let (r1, r2) = ((r + 1) % 3, (r + 2) % 3);
        let (c1, c2) = ((c + 1) % 3, (c + 2) % 3);
        m[r1][c1] * m[r2][c2] - m[r1][c2] * m[r2][c1]
    };
    let det: f64 = (0..3).map(|c| m[0][c] * cof(0, c)).sum();
    let scale = m.iter().flatten().fold(0.0f64, |a, v| a.max(v.abs()));
    if det.abs() <= 1e-12 * scale.powi(3) {
        return None;
    }
    // The inverse is the transposed cofactor matrix over the determinant.
    Some(std::array::from_fn(|r| {
        std::array::from_fn(|c| cof(c, r) / det)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dots(nx: usize, ny: usize, at: &[(usize, usize)]) -> Image {
        let mut img = Image::zeros(nx, ny);
        for &(x, y) in at {
            img.set(x, y, 1.0);
        }
        img
    }

    fn no_norm(box_size: usize, out_size: usize) -> ExtractConfig {
        ExtractConfig {
            out_size,
            norm: ParticleNorm::None,
            ..ExtractConfig::new(box_size)
        }
    }

    fn particle(e: &Extracted, k: usize, s: usize) -> Image {
        Image::new(s, s, e.data[k * s * s..(k + 1) * s * s].to_vec())
    }

    #[test]
    fn dot_lands_on_the_box_centre_for_even_odd_and_resampled_boxes() {
        let at = [(40, 50), (101, 77), (63, 64), (150, 120)];
        let mic = dots(200, 180, &at);
        let picks: Vec<(f64, f64)> = at.iter().map(|&(x, y)| (x as f64, y as f64)).collect();
        for (b, s) in [
            (32, 32),
            (33, 33),
            (32, 16),
            (33, 17),
            (31, 12),
            (30, 45),
            (40, 25),
        ] {
            let mut ex = Extractor::new(no_norm(b, s)).unwrap();
            let got = ex.extract(&mic, &picks, 0);
            assert_eq!(got.kept.len(), at.len(), "box {b} -> {s}");
            for k in 0..at.len() {
                let p = particle(&got, k, s);
                assert_eq!(p.argmax(), (s / 2, s / 2), "box {b} -> {s}, pick {k}");
            }
        }
    }

    #[test]
    fn fractional_picks_fall_on_their_truncated_pixel_as_in_relion() {
        let mic = dots(64, 64, &[(20, 30)]);
        let mut ex = Extractor::new(no_norm(16, 16)).unwrap();
        let got = ex.extract(&mic, &[(20.99, 30.5), (20.0, 30.0), (19.6, 30.4)], 0);
        assert_eq!(particle(&got, 0, 16).argmax(), (8, 8));
        assert_eq!(particle(&got, 1, 16).argmax(), (8, 8));
        // 19.6 is column 19: the dot sits one to the right of the centre.
        assert_eq!(particle(&got, 2, 16).argmax(), (9, 8));
    }

    #[test]
    fn pad_edge_repeats_the_nearest_micrograph_pixel() {
        let mic = Image::from_fn(30, 20, |x, y| (x + 100 * y) as f32);
        let cfg = ExtractConfig {
            edge: EdgePolicy::PadEdge,
            ..no_norm(8, 8)
        };
        let got = Extractor::new(cfg)
            .unwrap()
            .extract(&mic, &[(1.0, 18.0)], 0);
        assert_eq!(got.padded, vec![0]);
        let p = particle(&got, 0, 8);
        // Box pixel (bx, by) is micrograph (bx - 3, by + 14), clamped into 30 x 20.
        for by in 0..8 {
            for bx in 0..8 {
                let (x, y) = ((bx as i64 - 3).clamp(0, 29), (by as i64 + 14).clamp(0, 19));
                assert_eq!(p.get(bx, by), (x + 100 * y) as f32, "({bx}, {by})");
            }
        }
    }

    #[test]
    fn the_ramp_removes_a_background_plane_before_normalising() {
        // A particle with a faint pattern, alone and on a tilted background (carbon, an ice
        // gradient).
        let mic = |tilt: f64| {
            Image::from_fn(100, 100, move |x, y| {
                let d = ((x as f64 - 50.0).powi(2) + (y as f64 - 50.0).powi(2)).sqrt();
                let pattern = ((x * 13 + y * 7) % 5) as f64;
                let plane = tilt * (0.8 * x as f64 - 0.5 * y as f64) + 40.0;
                (if d < 10.0 { 50.0 } else { 0.0 } + plane + pattern) as f32
            })
        };
        let cut = |tilt, ramp| {
            let cfg = ExtractConfig {
                norm: ParticleNorm::Relion { radius: 15.0, ramp },
                ..ExtractConfig::new(40)
            };
            Extractor::new(cfg)
                .unwrap()
                .extract(&mic(tilt), &[(50.0, 50.0)], 0)
                .data
        };
        let largest = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0, f32::max)
        };
        // With the ramp, a plane added to the micrograph changes nothing...
        let flat = cut(0.0, true);
        assert!(largest(&flat, &cut(1.0, true)) < 1e-3);
        // ...and what is left of the background has no slope in x or y.
        let bg =
            (0..1600).filter(|i| ((i % 40) as f64 - 20.0).hypot((i / 40) as f64 - 20.0) > 15.0);
        let (sx, sy) = bg.fold((0.0, 0.0), |(sx, sy), i| {
            let v = flat[i] as f64;
            (
                sx + v * ((i % 40) as f64 - 20.0),
                sy + v * ((i / 40) as f64 - 20.0),
            )
        });
        assert!(sx.abs() < 1e-2 && sy.abs() < 1e-2, "{sx} {sy}");
        // Without it, the plane shows.
        assert!(largest(&cut(0.0, false), &cut(1.0, false)) > 0.5);
    }

    #[test]
    fn relion_radius_is_truncated_as_relion_passes_it() {
        assert_eq!(ParticleNorm::relion_radius(180, 180), 67.0);
        assert_eq!(ParticleNorm::relion_radius(64, 64), 24.0);
        assert_eq!(ParticleNorm::relion_radius(180, 64), 24.0);
        assert_eq!(ParticleNorm::relion_radius(250, 99), 37.0);
    }

    #[test]
    fn box_is_the_window_of_the_micrograph() {
        let mic = Image::from_fn(50, 40, |x, y| (x + 100 * y) as f32);
        let mut ex = Extractor::new(no_norm(6, 6)).unwrap();
        let got = ex.extract(&mic, &[(10.0, 20.0)], 0);
        let p = particle(&got, 0, 6);
        // Pixel (0, 0) of the box is (x - 3, y - 3) of the micrograph.
        assert_eq!(p.get(0, 0), (7 + 100 * 17) as f32);
        assert_eq!(p.get(3, 3), (10 + 100 * 20) as f32);
        assert_eq!(p.get(5, 4), (12 + 100 * 21) as f32);
    }

    #[test]
    fn edge_policy_skips_or_pads_and_reports_which() {
        let mic = Image::from_fn(64, 64, |x, y| ((x * 7 + y * 3) % 11) as f32);
        let st = normalize::stats(&mic.data);
        let picks = [
            (32.0, 32.0),
            (3.0, 32.0),
            (32.0, 62.0),
            (-5.0, 10.0),
            (f64::NAN, 1.0),
        ];
        let mut skip = Extractor::new(no_norm(16, 16)).unwrap();
        let got = skip.extract(&mic, &picks, 0);
        assert_eq!(got.kept, vec![0]);
        assert_eq!(got.skipped_edge, vec![1, 2]);
        assert_eq!(got.outside, vec![3, 4]);

        let mut pad = Extractor::new(ExtractConfig {
            edge: EdgePolicy::PadMean,
            ..no_norm(16, 16)
        })
        .unwrap();
        let got = pad.extract(&mic, &picks, 0);
        assert_eq!(got.kept, vec![0, 1, 2]);
        assert_eq!(got.padded, vec![1, 2]);
        let p = particle(&got, 1, 16);
        // Pick at x = 3: box columns 0..5 lie at x = -5..-1, off the micrograph.
        assert_eq!(p.get(0, 8), st.mean as f32);
        assert_eq!(p.get(4, 8), st.mean as f32);
        assert_eq!(p.get(5, 8), mic.get(0, 32));
    }

    #[test]
    fn noise_padding_has_the_micrograph_statistics_and_is_reproducible() {
        let mic = Image::from_fn(64, 64, |x, y| ((x * 7 + y * 3) % 11) as f32 * 2.0 + 5.0);
        let st = normalize::stats(&mic.data);
        let cfg = ExtractConfig {
            edge: EdgePolicy::PadNoise,
            seed: 7,
            ..no_norm(64, 64)
        };
        let a = Extractor::new(cfg).unwrap().extract(&mic, &[(0.0, 0.0)], 3);
        let b = Extractor::new(cfg).unwrap().extract(&mic, &[(0.0, 0.0)], 3);
        assert_eq!(a.data, b.data);
        // Three quarters of a 64-box at the corner is padding.
        let p = particle(&a, 0, 64);
        let pad: Vec<f32> = (0..64 * 32).map(|i| p.data[i]).collect();
        let ps = normalize::stats(&pad);
        assert!((ps.mean - st.mean).abs() < 0.1 * st.std, "{ps:?} vs {st:?}");
        assert!((ps.std / st.std - 1.0).abs() < 0.1, "{ps:?} vs {st:?}");
        let c = Extractor::new(cfg).unwrap().extract(&mic, &[(0.0, 0.0)], 4);
        assert_ne!(a.data, c.data, "another micrograph gets other noise");
    }

    #[test]
    fn relion_norm_gives_zero_mean_unit_variance_background() {
        let mic = Image::from_fn(100, 100, |x, y| {
            let d = ((x as f64 - 50.0).powi(2) + (y as f64 - 50.0).powi(2)).sqrt();
            (if d < 10.0 { 50.0 } else { 0.0 }) + 3.0 * ((x * 13 + y * 7) % 5) as f64 + 100.0
        } as f32);
        let cfg = ExtractConfig {
            norm: ParticleNorm::Relion {
                radius: 15.0,
                ramp: false,
            },
            ..ExtractConfig::new(40)
        };
        let mut ex = Extractor::new(cfg).unwrap();
        let got = ex.extract(&mic, &[(50.0, 50.0)], 0);
        let p = particle(&got, 0, 40);
        let bg: Vec<f32> = (0..1600)
            .filter(|i| ((i % 40) as f64 - 20.0).hypot((i / 40) as f64 - 20.0) > 15.0)
            .map(|i| p.data[i])
            .collect();
        let s = normalize::stats(&bg);
        assert!(s.mean.abs() < 1e-5 && (s.std - 1.0).abs() < 1e-5, "{s:?}");
        // The particle stays bright against its background.
        assert!(p.get(20, 20) > 5.0);

        let inverted = Extractor::new(ExtractConfig {
            invert: true,
            ..cfg
        })
        .unwrap()
        .extract(&mic, &[(50.0, 50.0)], 0);
        for (a, b) in got.data.iter().zip(&inverted.data) {
            assert_eq!(*a, -*b);
        }
    }

    #[test]
    fn resampled_box_equals_the_binned_band_limited_window() {
        // A band-limited periodic micrograph: the 40 -> 16 box must equal the analytic wave at
        // the scaled positions, measured from the centre pixel.
        let n = 200;
        let wave = |x: f64, y: f64| {
            (2.0 * std::f64::consts::PI * (x * 5.0 / 40.0 + y * 3.0 / 40.0)).cos()
                + 0.5 * (2.0 * std::f64::consts::PI * y * 2.0 / 40.0).sin()
        };
        let mic = Image::from_fn(n, n, |x, y| wave(x as f64, y as f64) as f32);
        let mut ex = Extractor::new(no_norm(40, 16)).unwrap();
        let got = ex.extract(&mic, &[(100.0, 90.0)], 0);
        let p = particle(&got, 0, 16);
        let f = 40.0 / 16.0;
        for y in 0..16 {
            for x in 0..16 {
                let want = wave(100.0 + (x as f64 - 8.0) * f, 90.0 + (y as f64 - 8.0) * f);
                assert!((p.get(x, y) as f64 - want).abs() < 1e-4, "({x},{y})");
            }
        }
    }

    #[test]
    fn bad_parameters_are_errors() {
        assert!(Extractor::new(ExtractConfig::new(1)).is_err());
        let huge = Extractor::new(ExtractConfig::new(100_000)).err().unwrap();
        assert!(huge.to_string().contains("at most 8192 px"), "{huge}");
        let cfg = ExtractConfig {
            norm: ParticleNorm::Relion {
                radius: 30.0,
                ramp: true,
            },
            ..ExtractConfig::new(40)
        };
        assert!(Extractor::new(cfg).is_err());
    }

    #[test]
    fn lowpass_prep_runs_before_normalisation() {
        let mut img = Image::from_fn(64, 64, |x, _| if x % 2 == 0 { 10.0 } else { 12.0 });
        MicrographPrep {
            norm: MicrographNorm::None,
            lowpass: Some(LowPass::new(0.5)),
        }
        .apply(&mut img);
        // The Nyquist stripes are gone; the mean stays.
        assert!(img.data.iter().all(|&v| (v - 11.0).abs() < 1e-4));
    }
}
