//! Micrograph normalisation: plain mean/std, and a robust variant that clips to percentiles first
//! so that hot pixels, ice and carbon edges do not set the scale for the whole image.

use crate::image::Image;

/// Mean and population standard deviation (NumPy's `ddof=0`), accumulated in `f64` because a
/// 4096² micrograph sums 16 million values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub mean: f64,
    pub std: f64,
}

pub fn stats(data: &[f32]) -> Stats {
    stats_of(data.iter().copied())
}

pub fn stats_of(values: impl Iterator<Item = f32>) -> Stats {
    // Shifted sums keep the variance accurate when the mean is large against the spread
    // (counting-mode micrographs store values around 10⁴ with a std of ~10²).
    let mut n = 0u64;
    let mut shift = 0.0f64;
    let mut sum = 0.0f64;
    let mut sum_sq = 0.0f64;
    for v in values {
        if n == 0 {
            shift = v as f64;
        }
        let d = v as f64 - shift;
        sum += d;
        sum_sq += d * d;
        n += 1;
    }
    if n == 0 {
        return Stats {
            mean: 0.0,
            std: 0.0,
        };
    }
    let mean_d = sum / n as f64;
    let var = (sum_sq / n as f64 - mean_d * mean_d).max(0.0);
    Stats {
        mean: shift + mean_d,
        std: var.sqrt(),
    }
}

/// The `p`-th percentile (0..=100) with NumPy's default linear interpolation between the two
/// nearest ranks. Copies the data once; O(n).
pub fn percentile(data: &[f32], p: f64) -> f64 {
    percentiles(data, &[p])[0]
}

/// Several percentiles from one copy of the data.
pub fn percentiles(data: &[f32], ps: &[f64]) -> Vec<f64> {
    assert!(!data.is_empty(), "percentile of no values");
    let mut work = data.to_vec();
    let last = (work.len() - 1) as f64;
    ps.iter()
        .map(|&p| {
            let rank = p.clamp(0.0, 100.0) / 100.0 * last;
            let lo = rank.floor() as usize;
            let hi = rank.ceil() as usize;
            let a = nth(&mut work, lo) as f64;
            let b = if hi == lo {
                a
            } else {
                nth(&mut work, hi) as f64
            };
            a + (b - a) * (rank - lo as f64)
        })
        .collect()
}

fn nth(work: &mut [f32], k: usize) -> f32 {
    *work.select_nth_unstable_by(k, |a, b| a.total_cmp(b)).1
}

/// How a whole micrograph is scaled before anything else reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MicrographNorm {
    None,
    /// Zero mean, unit standard deviation over every pixel.
    MeanStd,
    /// Clip to the `low`..`high` percentiles, then zero mean and unit standard deviation of the
    /// clipped image.
    Robust {
        low: f64,
        high: f64,
    },
}

impl MicrographNorm {
    pub fn apply(&self, image: &mut Image) {
        match *self {
            MicrographNorm::None => {}
            MicrographNorm::MeanStd => {
                let s = stats(&image.data);
                scale(&mut image.data, s);
            }
            MicrographNorm::Robust { low, high } => {
                let lim = percentiles(&image.data, &[low, high]);
                let (lo, hi) = (lim[0] as f32, lim[1] as f32);
                for v in &mut image.data {
                    *v = v.clamp(lo, hi);
                }
                let s = stats(&image.data);
                scale(&mut image.data, s);
            }
        }
    }
}

/// Subtracts the mean and divides by the standard deviation; a constant image (std 0) is only
/// centred, since dividing would turn it into NaN.
pub fn scale(data: &mut [f32], s: Stats) {
    let mean = s.mean as f32;
    let inv = if s.std > 0.0 {
        (1.0 / s.std) as f32
    } else {
        1.0
    };
    for v in data {
        *v = (*v - mean) * inv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_match_closed_form() {
        // 0..n has mean (n-1)/2 and variance (n²-1)/12.
        let n = 1001usize;
        let data: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let s = stats(&data);
        assert!((s.mean - 500.0).abs() < 1e-9);
        let var = ((n * n - 1) as f64) / 12.0;
        assert!((s.std - var.sqrt()).abs() < 1e-9);
    }

    #[test]
    fn stats_stay_accurate_with_a_large_offset() {
        let data: Vec<f32> = (0..10_000)
            .map(|i| 20_000.0 + if i % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        let s = stats(&data);
        assert!((s.mean - 20_000.0).abs() < 1e-9);
        assert!((s.std - 1.0).abs() < 1e-9);
    }

    #[test]
    fn percentiles_interpolate_like_numpy() {
        // numpy.percentile([1, 2, 3, 4], [0, 25, 50, 90, 100]) = [1, 1.75, 2.5, 3.7, 4]
        let data = [4.0f32, 1.0, 3.0, 2.0];
        let got = percentiles(&data, &[0.0, 25.0, 50.0, 90.0, 100.0]);
        let want = [1.0, 1.75, 2.5, 3.7, 4.0];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-9, "{got:?}");
        }
    }

    #[test]
    fn mean_std_gives_zero_mean_unit_variance() {
        let mut img = Image::from_fn(64, 48, |x, y| (x * 3 + y * y) as f32 * 0.5 + 100.0);
        MicrographNorm::MeanStd.apply(&mut img);
        let s = stats(&img.data);
        assert!(s.mean.abs() < 1e-5 && (s.std - 1.0).abs() < 1e-5, "{s:?}");
    }

    #[test]
    fn robust_norm_ignores_outliers() {
        // A Gaussian-like background plus a few hot pixels: the hot pixels must not set the scale.
        let mut img = Image::from_fn(100, 100, |x, y| ((x * 7 + y * 13) % 17) as f32);
        for i in 0..5 {
            img.set(i, 0, 1e6);
        }
        let mut plain = img.clone();
        MicrographNorm::MeanStd.apply(&mut plain);
        MicrographNorm::Robust {
            low: 1.0,
            high: 99.0,
        }
        .apply(&mut img);
        let s = stats(&img.data);
        assert!(s.mean.abs() < 1e-5 && (s.std - 1.0).abs() < 1e-5);
        // After clipping, the hot pixels sit at the top of the normal range, not 70 sigma out.
        assert!(img.get(0, 0) < 2.0, "{}", img.get(0, 0));
        assert!(plain.get(0, 0) > 40.0);
    }

    #[test]
    fn constant_image_is_centred_not_nan() {
        let mut img = Image::filled(8, 8, 3.0);
        MicrographNorm::MeanStd.apply(&mut img);
        assert!(img.data.iter().all(|&v| v == 0.0));
    }
}
