//! A whole micrograph's measured statistics: the numbers curation tools judge exposures by.
//!
//! cryoSPARC's Curate Exposures and MicAssess's users decide on measurements (CTF fit, relative
//! ice thickness, motion, particle counts), not on a binned picture alone, because what makes a
//! micrograph bad lives mostly at frequencies and scales that binning throws away. A network
//! trained on a hundred micrographs learns those cues poorly; measured directly, each is one
//! number, and a regression on the user's labels decides which ones matter for which label.
//!
//! Every fact is a ratio within the micrograph, so a detector's gain, counting or not, and the
//! file's scale do not change it. Frequencies are in units of the micrograph's Nyquist.

use crate::fourier::{signed_freq, Fft2, Spectrum};
use crate::image::Image;
use crate::normalize::{stats, Stats};
use crate::power::hann;

/// The facts, in the order [`measure`] returns them.
pub const FACTS: [&str; 15] = [
    "particle-band",
    "anisotropy",
    "lattice-spots",
    "coarse-contrast",
    "kurtosis",
    "skewness",
    "blobs-small",
    "blobs-large",
    "band-kurtosis-small",
    "band-kurtosis-medium",
    "band-kurtosis-large",
    "clumps-small",
    "clumps-large",
    "coarse-outlier",
    "band-kurtosis-large-q1",
];

/// Inner and outer box radii (px) of the three bands [`band_kurtosis`] looks at: a factor of
/// two apart, so particles from about 10 to 160 px across fall in one of them.
const KURTOSIS_BANDS: [(usize, usize); 3] = [(2, 10), (4, 20), (8, 40)];

/// Side of the tiles the spectra are taken from: small enough for many tiles on a micrograph,
/// large enough to resolve Thon rings and lattice spots.
const TILE: usize = 256;
/// At most this many tiles per axis: 64 tiles already give spectra smooth to a few per cent.
const MAX_TILES_PER_AXIS: usize = 8;
/// Tiles smaller than this hold too few frequencies to measure anything.
const MIN_TILE: usize = 16;
/// Rings per Nyquist for the lattice-spot median.
const RINGS: f64 = 64.0;

/// Measures `img`:
/// - `particle-band`: ln of the median over tiles of the tile's mean power at 0.04-0.3 Nyquist
///   (where particles and their Thon rings are) over its noise floor (the median at 0.8-0.95):
///   particles, and contrast, present or not. The median ignores the tiles on carbon or
///   contamination.
/// - `anisotropy`: how far the averaged spectrum's excess over the floor at 0.1-0.35 Nyquist
///   varies with direction (its cos 2θ amplitude over its mean): drift fades the rings across one
///   direction only.
/// - `lattice-spots`: ln of the highest ratio of a frequency's power to its ring's median beyond
///   0.3 Nyquist: crystalline ice's sharp spots.
/// - `coarse-contrast`: ln of the standard deviation of the normalised micrograph binned to about
///   128 px: carbon, contamination and ice gradients, against flat ice.
/// - `kurtosis`, `skewness` of the normalised micrograph binned to about 512 px: dense blobs of
///   contamination and aggregates make heavy, one-sided tails.
/// - `blobs-small`, `blobs-large`: how unevenly the power at a particle's scale is spread over
///   windows of 48 and 96 px (particles of about 15-40 and 30-80 px): the 90th percentile of
///   the windows' ln(band power / finest-scale power) over their median. Particles are local,
///   so the windows holding one stand out; the ice's own scattering and the shot noise are the
///   same everywhere, and the ratio to the finest scale cancels how thick the ice is locally.
///   A spectrum cannot tell particles from the ice's Thon rings; this can.
/// - `band-kurtosis-small`, `-medium`, `-large`: the median over 256-px tiles of the excess
///   kurtosis of the micrograph band-passed (a difference of box means of radius 2 and 10, 4
///   and 20, or 8 and 40 px). Shot noise and the ice's own scattering are Gaussian at these
///   scales, whatever the dose, the ice's thickness, the defocus or the CTF, so their excess
///   kurtosis is 0; particles are separate objects, each with its own edges and density, and
///   make the band's values heavy-tailed. The median over tiles leaves out the carbon and
///   contamination tiles, whose edges are heavy-tailed too. Where blobs-small and -large need
///   particles to be spread unevenly, this sees a field packed evenly with them.
/// - `clumps-small`, `-large`: the strongest blob, two to three particles wide, in the map of
///   the particle band's local power (see `clumps`): an aggregate is several particles
///   piled together, so its patch of particle-scale power is bigger and stronger than any one
///   particle's, where particles crowd by chance only loosely. A blob detector (the Hessian's
///   determinant) answers to compact patches and not to lines, so carbon edges and the rims
///   of contamination do not count; neither does anything near the contamination itself.
///   For particles of about 30 and 60 px across.
/// - `coarse-outlier`: how far the most extreme patch of the micrograph, binned to about 256
///   px and smoothed, lies from the rest (see `coarse_outlier`): ice contamination is denser
///   than anything else on a grid, and after binning it stands many robust deviations from
///   the median however thick the ice, where `kurtosis` (a moment of the whole micrograph)
///   fades as thick ice and its gradients add variance.
/// - `band-kurtosis-large-q1`: the largest band's kurtosis in the first quartile of the tiles
///   instead of their median. Carbon can cover most of a micrograph, and then the median tile
///   is carbon, heavy-tailed whether particles are on the ice beside it or not; the quartile
///   still reads the open ice. The smaller bands' quartiles are left out: there a quarter of
///   the tiles of a crowded micrograph can be nearly empty ice, and in measurement they told
///   empty micrographs less well than the median.
///
/// An image too small for a spectrum (under 16 px a side) has 0 for the spectral facts; a flat
/// image has 0 for every fact.
pub fn measure(img: &Image) -> [f64; 15] {
    let (band, aniso, spots) = spectral(img).unwrap_or((0.0, 0.0, 0.0));
    let (coarse, kurt, skew) = textural(img).unwrap_or((0.0, 0.0, 0.0));
    let table = summed_area(img);
    let small = blob_spread(img, &table, 2, 10, 48);
    let large = blob_spread(img, &table, 4, 20, 96);
    let [(k0, _), (k1, _), (k2, k2_quartile)] =
        KURTOSIS_BANDS.map(|(fine, coarse)| band_kurtosis(img, &table, fine, coarse));
    let [c0, c1] = [1, 2].map(|scale| clumps(img, &table, scale));
    let outlier = coarse_outlier(img);
    [
        band,
        aniso,
        spots,
        coarse,
        kurt,
        skew,
        small,
        large,
        k0,
        k1,
        k2,
        c0,
        c1,
        outlier,
        k2_quartile,
    ]
}

/// Cells per side of the map [`coarse_outlier`] looks at (at most): a contamination of a
/// tenth of a micron is still a few cells across on a 4096-px micrograph at 1 Å/px.
const OUTLIER_CELLS: usize = 256;
/// The smoothing of that map (Gaussian σ, cells): what is left of the noise after binning
/// averages away, a blob of a few cells does not.
const OUTLIER_SIGMA: f64 = 1.5;
/// Cells left out along each border (3% of the side): motion correction and denoisers leave
/// stripes at the edges that are not on the specimen, 6-7 of 256 cells wide on EMPIAR-10017's
/// denoised micrographs, where they were the most extreme patch until left out.
const OUTLIER_BORDER: usize = 8;

/// See [`measure`]: ln of the largest |v − median| / (1.4826 × MAD) over the map of the
/// micrograph binned to at most [`OUTLIER_CELLS`] a side and smoothed by [`OUTLIER_SIGMA`]
/// cells, its border left out; either sign, so that inverted contrast measures the same. At
/// least ln 1 = 0; 0 for a map under 16 cells a side or without spread.
fn coarse_outlier(img: &Image) -> f64 {
    let Stats { mean, std } = stats(&img.data);
    let b = img.nx.max(img.ny).div_ceil(OUTLIER_CELLS).max(1);
    let (mx, my) = (img.nx / b, img.ny / b);
    if !(std > 0.0 && std.is_finite()) || mx.min(my) < 16 {
        return 0.0;
    }
    let map = binned(img, b, mean, std);
    let map = Image::new(mx, my, map.iter().map(|&v| v as f32).collect());
    let [g, _, _] = gaussian_kernels(OUTLIER_SIGMA);
    let smooth = convolve(&map, &g, &g);
    let inner: Vec<f64> = (OUTLIER_BORDER..my - OUTLIER_BORDER)
        .flat_map(|y| (OUTLIER_BORDER..mx - OUTLIER_BORDER).map(move |x| (x, y)))
        .map(|(x, y)| smooth[y * mx + x])
        .collect();
    let mid = median(&mut inner.clone());
    let mut spread: Vec<f64> = inner.iter().map(|v| (v - mid).abs()).collect();
    let mad = 1.4826 * median(&mut spread);
    if mad <= 0.0 || !mad.is_finite() {
        return 0.0;
    }
    // The median reordered the deviations; their largest is the same.
    let far = spread.iter().copied().fold(0.0, f64::max);
    (far / mad).max(1.0).ln()
}

/// Summed-area table of `img`, (nx + 1) × (ny + 1), row-major.
fn summed_area(img: &Image) -> Vec<f64> {
    let w = img.nx + 1;
    let mut s = vec![0.0f64; w * (img.ny + 1)];
    for y in 0..img.ny {
        let mut row = 0.0;
        for (x, &v) in img.row(y).iter().enumerate() {
            row += v as f64;
            s[(y + 1) * w + x + 1] = s[y * w + x + 1] + row;
        }
    }
    s
}

/// See [`measure`]: the band is the difference of box means of radius `fine` and `coarse`
/// px, the finest scale what a 3 × 3 box mean takes away, over windows `window` px wide;
/// `table` is the image's [`summed_area`].
/// 0 when the image holds fewer than 16 windows or no power.
fn blob_spread(img: &Image, table: &[f64], fine: usize, coarse: usize, window: usize) -> f64 {
    let (mx, my) = (img.nx / window, img.ny / window);
    if mx * my < 16 {
        return 0.0;
    }
    let mean = |x, y, r| box_mean(img, table, x, y, r);
    let mut band = vec![0.0f64; mx * my];
    let mut finest = vec![0.0f64; mx * my];
    for y in 0..my * window {
        for x in 0..mx * window {
            let i = (y / window) * mx + x / window;
            let m1 = mean(x, y, 1);
            band[i] += (mean(x, y, fine) - mean(x, y, coarse)).powi(2);
            finest[i] += (img.get(x, y) as f64 - m1).powi(2);
        }
    }
    let mut q: Vec<f64> = band
        .iter()
        .zip(&finest)
        .filter(|(b, f)| **b > 0.0 && **f > 0.0)
        .map(|(b, f)| (b / f).ln())
        .collect();
    if q.len() < 16 {
        return 0.0;
    }
    let high = q.len() * 9 / 10;
    let p90 = *q.select_nth_unstable_by(high, f64::total_cmp).1;
    p90 - median(&mut q)
}

/// Mean of `img` over the box of radius `r` around (x, y), cut to the image; `table` is the
/// image's [`summed_area`].
fn box_mean(img: &Image, table: &[f64], x: usize, y: usize, r: usize) -> f64 {
    let w = img.nx + 1;
    let (x0, y0) = (x.saturating_sub(r), y.saturating_sub(r));
    let (x1, y1) = ((x + r + 1).min(img.nx), (y + r + 1).min(img.ny));
    let sum = table[y1 * w + x1] - table[y0 * w + x1] - table[y1 * w + x0] + table[y0 * w + x0];
    sum / ((x1 - x0) * (y1 - y0)) as f64
}

/// See [`measure`]: the median and the first quartile over tiles of the excess kurtosis of
/// the difference of box means of radius `fine` and `coarse`; `table` is the image's
/// [`summed_area`]. 0 when the image is smaller than a few outer boxes or the band is flat.
fn band_kurtosis(img: &Image, table: &[f64], fine: usize, coarse: usize) -> (f64, f64) {
    let t = TILE.min(img.nx).min(img.ny);
    if t < 4 * coarse {
        return (0.0, 0.0);
    }
    let mut band = vec![0.0f64; t * t];
    let mut per_tile = Vec::new();
    let (xs, ys) = (starts(img.nx, t), starts(img.ny, t));
    for &y0 in &ys {
        for &x0 in &xs {
            for (i, b) in band.iter_mut().enumerate() {
                let (x, y) = (x0 + i % t, y0 + i / t);
                *b = box_mean(img, table, x, y, fine) - box_mean(img, table, x, y, coarse);
            }
            let (_, var, _, fourth) = moments(&band);
            if var > 0.0 {
                per_tile.push(fourth / (var * var) - 3.0);
            }
        }
    }
    if per_tile.is_empty() {
        return (0.0, 0.0);
    }
    let quarter = (per_tile.len() - 1) / 4;
    let quartile = *per_tile.select_nth_unstable_by(quarter, f64::total_cmp).1;
    (median(&mut per_tile), quartile)
}

/// Cells of the [`clumps`] map per side of a blob's Gaussian (σ), and so the blob's size: an
/// aggregate of a few particles is two to three particles across.
const CLUMP_SIGMA: usize = 8;

/// See [`measure`]: the square root of the largest scale-normalised determinant of the
/// Hessian, where both curvatures are negative (a compact maximum, not a ridge), of the map
/// of ln(local power of the band between box means of radius 2 × `scale` and 8 × `scale` px),
/// on a grid of 4 × `scale` px, Gaussian σ [`CLUMP_SIGMA`] cells. Cells within 2σ of coarse
/// density 4 robust deviations from the micrograph's median (contamination, carbon) or σ of
/// the border are left out. 0 when the image holds fewer than 4σ cells a side or no power.
fn clumps(img: &Image, table: &[f64], scale: usize) -> f64 {
    let step = 4 * scale;
    let (gx, gy) = (img.nx / step, img.ny / step);
    let sigma = CLUMP_SIGMA;
    if gx.min(gy) < 4 * sigma {
        return 0.0;
    }
    let band = Image::from_fn(img.nx, img.ny, |x, y| {
        let b = box_mean(img, table, x, y, 2 * scale) - box_mean(img, table, x, y, 8 * scale);
        (b * b) as f32
    });
    let power_table = summed_area(&band);
    let centre = |i: usize| i * step + step / 2;
    let mut power = Vec::with_capacity(gx * gy);
    let mut coarse = Vec::with_capacity(gx * gy);
    for y in 0..gy {
        for x in 0..gx {
            let (px, py) = (centre(x), centre(y));
            power.push(box_mean(&band, &power_table, px, py, 6 * scale));
            coarse.push(box_mean(img, table, px, py, 28 * scale));
        }
    }
    let mean_power = power.iter().sum::<f64>() / power.len() as f64;
    if !(mean_power > 0.0 && mean_power.is_finite()) {
        return 0.0;
    }
    let mut map: Vec<f64> = power
        .iter()
        .map(|p| p.max(1e-9 * mean_power).ln())
        .collect();
    // Relative to the median, so that the cut kernels' small sums cannot make the result
    // depend on the micrograph's gain (which adds a constant to the logarithm).
    let m = median(&mut map.clone());
    map.iter_mut().for_each(|v| *v -= m);

    // Contamination and carbon: far from the median in coarse density, and their surroundings.
    let mid = median(&mut coarse.clone());
    let mut spread: Vec<f64> = coarse.iter().map(|c| (c - mid).abs()).collect();
    let mad = median(&mut spread);
    let flagged = Image::from_fn(gx, gy, |x, y| {
        (mad > 0.0 && (coarse[y * gx + x] - mid).abs() >= 4.0 * mad) as u8 as f32
    });
    let flagged_table = summed_area(&flagged);
    let near_flagged = |x, y| box_mean(&flagged, &flagged_table, x, y, 2 * sigma) > 0.0;

    let [g, d1, d2] = gaussian_kernels(sigma as f64);
    let map = Image::new(gx, gy, map.iter().map(|&v| v as f32).collect());
    let hxx = convolve(&map, &d2, &g);
    let hyy = convolve(&map, &g, &d2);
    let hxy = convolve(&map, &d1, &d1);
    let norm = (sigma * sigma) as f64;
    let mut best = 0.0f64;
    for y in sigma..gy - sigma {
        for x in sigma..gx - sigma {
            let i = y * gx + x;
            let (a, b, c) = (hxx[i], hyy[i], hxy[i]);
            if a < 0.0 && b < 0.0 && !near_flagged(x, y) {
                best = best.max((a * b - c * c) * norm * norm);
            }
        }
    }
    best.sqrt()
}

/// A Gaussian of deviation `sigma`, cut at 3σ and summing to 1, and its first and second
/// derivatives.
fn gaussian_kernels(sigma: f64) -> [Vec<f64>; 3] {
    let r = (3.0 * sigma).ceil() as isize;
    let g: Vec<f64> = (-r..=r)
        .map(|x| (-(x * x) as f64 / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f64 = g.iter().sum();
    let g: Vec<f64> = g.iter().map(|v| v / total).collect();
    let s2 = sigma * sigma;
    let d1 = (-r..=r)
        .zip(&g)
        .map(|(x, v)| -(x as f64) / s2 * v)
        .collect();
    let d2 = (-r..=r)
        .zip(&g)
        .map(|(x, v)| ((x * x) as f64 / s2 - 1.0) / s2 * v)
        .collect();
    [g, d1, d2]
}

/// `img` convolved with `along_x` along rows and `along_y` along columns (odd lengths, centred),
/// mirrored at the borders (the kernels no longer than twice the image).
fn convolve(img: &Image, along_x: &[f64], along_y: &[f64]) -> Vec<f64> {
    let (nx, ny) = (img.nx, img.ny);
    let mirror = |i: isize, n: usize| {
        let n = n as isize;
        let i = if i < 0 { -i - 1 } else { i };
        (if i >= n { 2 * n - i - 1 } else { i }).clamp(0, n - 1) as usize
    };
    // Rows: each padded once with its mirror image, then a dot product per pixel.
    let r = (along_x.len() / 2) as isize;
    let mut rows = vec![0.0f64; nx * ny];
    let mut padded = vec![0.0f64; nx + along_x.len() - 1];
    for y in 0..ny {
        let row = img.row(y);
        for (i, p) in padded.iter_mut().enumerate() {
            *p = row[mirror(i as isize - r, nx)] as f64;
        }
        for (x, out) in rows[y * nx..(y + 1) * nx].iter_mut().enumerate() {
            *out = along_x.iter().zip(&padded[x..]).map(|(w, v)| w * v).sum();
        }
    }
    // Columns: each output row a weighted sum of whole input rows.
    let r = (along_y.len() / 2) as isize;
    let mut out = vec![0.0f64; nx * ny];
    for y in 0..ny {
        let target = &mut out[y * nx..(y + 1) * nx];
        for (j, w) in along_y.iter().enumerate() {
            let from = mirror(y as isize + j as isize - r, ny);
            for (o, v) in target.iter_mut().zip(&rows[from * nx..(from + 1) * nx]) {
                *o += w * v;
            }
        }
    }
    out
}

/// The median of `v` (not empty); reorders it.
fn median(v: &mut [f64]) -> f64 {
    let mid = v.len() / 2;
    *v.select_nth_unstable_by(mid, f64::total_cmp).1
}

/// Starts of at most [`MAX_TILES_PER_AXIS`] tiles `t` wide, not overlapping, spread evenly
/// over an axis `len` long.
fn starts(len: usize, t: usize) -> Vec<usize> {
    let count = (len / t).clamp(1, MAX_TILES_PER_AXIS);
    if count == 1 {
        return vec![(len - t) / 2];
    }
    (0..count).map(|i| i * (len - t) / (count - 1)).collect()
}

fn spectral(img: &Image) -> Option<(f64, f64, f64)> {
    let t = TILE.min(img.nx).min(img.ny);
    if t < MIN_TILE {
        return None;
    }
    let mut fft = Fft2::new(t, t);
    let mut spec = Spectrum::zeros(t, t);
    let hx = spec.hx();
    let hann = hann(t);
    // Per half-plane frequency (column-major, as the spectrum stores it): radius in Nyquist
    // units and direction, as cos 2θ and sin 2θ (a spectrum's direction is modulo 180°).
    let geometry: Vec<(f64, f64, f64)> = (0..hx * t)
        .map(|i| {
            let (fx, fy) = ((i / t) as f64, signed_freq(i % t, t) as f64);
            let r = 2.0 * fx.hypot(fy) / t as f64;
            let theta = fy.atan2(fx);
            (r, (2.0 * theta).cos(), (2.0 * theta).sin())
        })
        .collect();
    let within = |lo: f64, hi: f64| {
        let g = &geometry;
        move |i: &usize| g[*i].0 > lo && g[*i].0 < hi
    };
    let floor_at: Vec<usize> = (0..hx * t).filter(within(0.8, 0.95)).collect();
    let band_at: Vec<usize> = (0..hx * t).filter(within(0.04, 0.3)).collect();
    if floor_at.is_empty() || band_at.is_empty() {
        return None;
    }
    let mut tile = vec![0.0f32; t * t];
    let mut power = vec![0.0f64; hx * t];
    let mut average = vec![0.0f64; hx * t];
    let mut excess = Vec::new();
    let (xs, ys) = (starts(img.nx, t), starts(img.ny, t));
    for &y0 in &ys {
        for &x0 in &xs {
            let mean = (0..t)
                .map(|y| {
                    img.row(y0 + y)[x0..x0 + t]
                        .iter()
                        .map(|&v| v as f64)
                        .sum::<f64>()
                })
                .sum::<f64>()
                / (t * t) as f64;
            for y in 0..t {
                for (x, &v) in img.row(y0 + y)[x0..x0 + t].iter().enumerate() {
                    tile[y * t + x] = (v - mean as f32) * hann[x] * hann[y];
                }
            }
            fft.forward_into(&mut tile, &mut spec);
            for (p, c) in power.iter_mut().zip(&spec.data) {
                *p = c.norm_sqr() as f64;
            }
            let mut floor: Vec<f64> = floor_at.iter().map(|&i| power[i]).collect();
            // One tile's power at one frequency is exponentially distributed, and the median
            // of an exponential is ln 2 of its mean; the median keeps lattice spots out.
            let floor = median(&mut floor) / std::f64::consts::LN_2;
            if floor > 0.0 {
                let band = band_at.iter().map(|&i| power[i]).sum::<f64>() / band_at.len() as f64;
                excess.push(band / floor);
            }
            average.iter_mut().zip(&power).for_each(|(a, p)| *a += p);
        }
    }
    let mut floor: Vec<f64> = floor_at.iter().map(|&i| average[i]).collect();
    let floor = median(&mut floor);
    if excess.is_empty() || floor <= 0.0 {
        return None;
    }
    let band = median(&mut excess).ln();

    let ring_at: Vec<usize> = (0..hx * t).filter(within(0.1, 0.35)).collect();
    let (mut sum, mut c2, mut s2) = (0.0, 0.0, 0.0);
    for &i in &ring_at {
        let v = average[i] / floor;
        sum += v;
        c2 += v * geometry[i].1;
        s2 += v * geometry[i].2;
    }
    let n = ring_at.len().max(1) as f64;
    // Relative to the excess over the floor, not the whole power: drift takes away signal, and
    // the noise floor would dilute that on a noisy micrograph. The excess is bounded below, so
    // a micrograph with almost no signal does not divide by almost nothing.
    let aniso = (c2 / n).hypot(s2 / n) / (sum / n - 1.0).max(0.02);

    let rings = (RINGS as usize) + 2;
    let ring_of = |r: f64| ((r * RINGS) as usize).min(rings - 1);
    let mut by_ring: Vec<Vec<f64>> = vec![Vec::new(); rings];
    for (i, g) in geometry.iter().enumerate() {
        by_ring[ring_of(g.0)].push(average[i]);
    }
    let ring_median: Vec<f64> = by_ring
        .into_iter()
        .map(|mut v| if v.is_empty() { 0.0 } else { median(&mut v) })
        .collect();
    let spots = geometry
        .iter()
        .enumerate()
        .filter(|(_, g)| g.0 > 0.3 && g.0 < 1.0)
        .filter_map(|(i, g)| {
            let m = ring_median[ring_of(g.0)];
            (m > 0.0).then(|| average[i] / m)
        })
        .fold(1.0f64, f64::max)
        .ln();
    Some((band, aniso, spots))
}

/// Block means of `img` in blocks of `b` × `b`, standardised by the image's mean and deviation.
fn binned(img: &Image, b: usize, mean: f64, sd: f64) -> Vec<f64> {
    let (mx, my) = (img.nx / b, img.ny / b);
    let mut out = vec![0.0f64; mx * my];
    for y in 0..my * b {
        for (x, &v) in img.row(y)[..mx * b].iter().enumerate() {
            out[(y / b) * mx + x / b] += v as f64;
        }
    }
    let area = (b * b) as f64;
    out.iter_mut().for_each(|v| *v = (*v / area - mean) / sd);
    out
}

/// Mean and second, third and fourth central moments of `v`.
fn moments(v: &[f64]) -> (f64, f64, f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let central = |k: i32| v.iter().map(|x| (x - m).powi(k)).sum::<f64>() / n;
    (m, central(2), central(3), central(4))
}

fn textural(img: &Image) -> Option<(f64, f64, f64)> {
    let Stats { mean, std } = stats(&img.data);
    if !(std > 0.0 && std.is_finite()) {
        return None;
    }
    let side = img.nx.max(img.ny);
    let coarse = binned(img, (side / 128).max(1), mean, std);
    let coarse_sd = moments(&coarse).1.sqrt().max(1e-12).ln();
    let (_, var, third, fourth) = moments(&binned(img, (side / 512).max(1), mean, std));
    if var <= 0.0 {
        return Some((coarse_sd, 0.0, 0.0));
    }
    Some((coarse_sd, fourth / (var * var), third / var.powf(1.5)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    fn noise(n: usize, seed: u64) -> Image {
        let mut rng = StdRng::seed_from_u64(seed);
        // Sums of uniforms: close enough to Gaussian, and white.
        Image::from_fn(n, n, |_, _| (0..4).map(|_| rng.random::<f32>() - 0.5).sum())
    }

    /// `img` plus `amp` × a smooth random field: blobs about `scale` px across (a sum of
    /// Gaussian bumps at random places), standing for particles.
    fn with_blobs(img: &Image, amp: f32, count: usize, scale: f64, seed: u64) -> Image {
        let mut rng = StdRng::seed_from_u64(seed);
        let centres: Vec<(f64, f64)> = (0..count)
            .map(|_| {
                (
                    rng.random_range(0.0..img.nx as f64),
                    rng.random_range(0.0..img.ny as f64),
                )
            })
            .collect();
        let mut out = img.clone();
        for (cx, cy) in centres {
            let r = (3.0 * scale) as isize;
            for dy in -r..=r {
                for dx in -r..=r {
                    let (x, y) = (cx as isize + dx, cy as isize + dy);
                    if x < 0 || y < 0 || x >= img.nx as isize || y >= img.ny as isize {
                        continue;
                    }
                    let d2 = ((x as f64 - cx).powi(2) + (y as f64 - cy).powi(2)) / (scale * scale);
                    out.data[y as usize * img.nx + x as usize] += amp * (-d2 / 2.0).exp() as f32;
                }
            }
        }
        out
    }

    /// `img` plus `amp` × white noise (from `seed`) summed over `side` × `side` boxes and
    /// divided by `side`: Gaussian, and correlated over `side` px.
    fn with_coloured(img: &Image, amp: f32, side: usize, seed: u64) -> Image {
        let other = noise(img.nx.max(img.ny), seed);
        Image::from_fn(img.nx, img.ny, |x, y| {
            let mut sum = 0.0;
            for dy in 0..side {
                for dx in 0..side {
                    sum += other.get((x + dx).min(img.nx - 1), (y + dy).min(img.ny - 1));
                }
            }
            img.get(x, y) + amp * sum / side as f32
        })
    }

    #[test]
    fn local_blobs_spread_the_band_power_and_a_coloured_background_does_not() {
        let base = noise(1024, 11);
        let blobs = with_blobs(&base, 0.6, 500, 5.0, 12);
        // The same kind of power everywhere: white noise blurred over 7 × 7, like the ice's
        // own scattering through a CTF.
        let coloured = with_coloured(&base, 0.8, 7, 13);
        let (plain, blobs, coloured) = (measure(&base), measure(&blobs), measure(&coloured));
        // Both raise the power at the particle scale...
        assert!(blobs[0] > plain[0] + 0.1 && coloured[0] > plain[0] + 0.1);
        // ...but only the blobs do so unevenly.
        for k in [6, 7] {
            assert!(
                blobs[k] > coloured[k] + 0.05 && blobs[k] > plain[k] + 0.1,
                "fact {k}: {blobs:?} with blobs, {coloured:?} coloured, {plain:?} plain"
            );
        }
    }

    #[test]
    fn separate_objects_make_the_band_heavy_tailed_and_gaussian_noise_does_not() {
        let base = noise(1024, 21);
        // Coloured Gaussian noise, as thick ice and the CTF make it: correlated, not heavy-tailed.
        let coloured = with_coloured(&base, 1.0, 5, 22);
        // A field packed evenly with faint objects, about 16 per 64-px square.
        let packed = with_blobs(&base, 0.5, 4000, 4.0, 23);
        let (plain, coloured, packed) = (measure(&base), measure(&coloured), measure(&packed));
        for k in 8..11 {
            assert!(
                plain[k].abs() < 0.15 && coloured[k].abs() < 0.15,
                "fact {k}: {} plain, {} coloured",
                plain[k],
                coloured[k]
            );
        }
        // Sixteen tiles' medians: Gaussian noise scatters by a few hundredths.
        assert!(packed[8] > 0.5 && packed[9] > 0.5, "{packed:?}");
    }

    #[test]
    fn the_quartile_reads_the_open_ice_where_carbon_covers_most_tiles() {
        let n = 1024;
        let base = noise(n, 41);
        // Dense, strong structure over the left 640 px (twelve of the sixteen 256-px tiles in
        // part or whole), as carbon film with its texture and edges is: heavy-tailed anyway.
        let carbon = with_blobs(&base, 4.0, 300, 10.0, 42);
        let on_carbon = |img: &Image| {
            Image::from_fn(n, n, |x, y| {
                if x < 640 {
                    carbon.get(x, y)
                } else {
                    img.get(x, y)
                }
            })
        };
        let empty = measure(&on_carbon(&base));
        // A few particles on the open ice too, at the largest band's scale.
        let full = measure(&on_carbon(&with_blobs(&base, 1.5, 60, 8.0, 43)));
        // The median tile is carbon, heavy-tailed though no particle is anywhere...
        assert!(empty[10] > 1.0, "{empty:?}");
        // ...where the first quartile reads the open ice: Gaussian when it is empty (one
        // tile's kurtosis at this scale scatters by a few tenths), heavy-tailed when not.
        assert!(empty[14].abs() < 0.3, "{empty:?}");
        assert!(full[14] > empty[14] + 1.0, "{empty:?} / {full:?}");
    }

    #[test]
    fn particles_raise_the_particle_band_and_scale_does_not_matter() {
        let base = noise(512, 1);
        let empty = measure(&base);
        let full = measure(&with_blobs(&base, 1.5, 400, 3.0, 2));
        assert!(full[0] > empty[0] + 0.5, "{} vs {}", full[0], empty[0]);
        // White noise: band and floor hold the same power.
        assert!(empty[0].abs() < 0.2, "{}", empty[0]);
        let scaled = Image::new(
            512,
            512,
            base.data.iter().map(|v| 250.0 * v + 1e4).collect(),
        );
        for (a, b) in measure(&scaled).iter().zip(&empty) {
            assert!((a - b).abs() < 1e-3 * b.abs().max(1.0), "{a} vs {b}");
        }
    }

    #[test]
    fn a_smear_along_one_direction_shows_as_anisotropy() {
        let img = with_blobs(&noise(512, 3), 1.5, 600, 2.0, 4);
        // Averaging along x over 9 px: what a steady drift does to the signal.
        let smeared = Image::from_fn(512, 512, |x, y| {
            (0..9).map(|k| img.get((x + k).min(511), y)).sum::<f32>() / 9.0
        });
        let noisy = Image::new(
            512,
            512,
            smeared
                .data
                .iter()
                .zip(&noise(512, 5).data)
                .map(|(s, n)| s + 0.3 * n)
                .collect(),
        );
        let (still, drifted) = (measure(&img)[1], measure(&noisy)[1]);
        assert!(
            drifted > 2.0 * still && drifted > 0.3,
            "{still} vs {drifted}"
        );
    }

    #[test]
    fn a_lattice_shows_as_spots_and_contamination_as_contrast() {
        let base = noise(512, 6);
        let lattice = Image::from_fn(512, 512, |x, y| {
            base.get(x, y) + 0.2 * (std::f32::consts::TAU * (x as f32 / 3.1 + y as f32 / 7.3)).cos()
        });
        let (plain, spotted) = (measure(&base), measure(&lattice));
        assert!(
            spotted[2] > plain[2] + 2.0,
            "{} vs {}",
            plain[2],
            spotted[2]
        );
        // Three big dense blobs: contrast at the coarse scale, and a heavy, one-sided tail.
        let blobs = with_blobs(&base, 6.0, 3, 25.0, 7);
        let m = measure(&blobs);
        assert!(m[3] > plain[3] + 1.0, "{} vs {}", plain[3], m[3]);
        assert!(
            m[4] > plain[4] + 1.0 && m[5] > plain[5] + 0.5,
            "{m:?} vs {plain:?}"
        );
    }

    #[test]
    fn a_dense_patch_stands_out_through_thick_ice_and_either_contrast() {
        let n = 1024;
        // Thick ice: more noise, and a gradient across the micrograph.
        let thick = with_coloured(&noise(n, 31), 1.5, 9, 32);
        let thick = Image::from_fn(n, n, |x, y| thick.get(x, y) + (x + y) as f32 / n as f32);
        // A contamination 50 px across: ice piled up, far denser than a particle.
        let dirty = Image::from_fn(n, n, |x, y| {
            let r = ((x as f32 - 300.0).powi(2) + (y as f32 - 600.0).powi(2)).sqrt();
            thick.get(x, y) - if r < 25.0 { 8.0 } else { 0.0 }
        });
        let inverted = Image::from_fn(n, n, |x, y| -dirty.get(x, y));
        // A stripe along the border, where edge artefacts live, is left out.
        let edge = Image::from_fn(n, n, |x, y| {
            thick.get(x, y) - if x < 24 { 8.0 } else { 0.0 }
        });
        let [clean, dirty, inverted, edge] = [&thick, &dirty, &inverted, &edge].map(measure);
        assert!(
            dirty[13] > clean[13] + 1.0,
            "{} vs {}",
            dirty[13],
            clean[13]
        );
        let turned = (dirty[13] - inverted[13]).abs();
        assert!(turned < 0.05, "{} vs {} inverted", dirty[13], inverted[13]);
        assert!(
            (edge[13] - clean[13]).abs() < 0.2,
            "{} vs {}",
            edge[13],
            clean[13]
        );
    }

    #[test]
    fn small_flat_and_oblong_images_give_finite_facts() {
        for img in [
            Image::zeros(5, 5),
            Image::filled(300, 300, 2.0),
            noise(12, 8),
            Image::from_fn(700, 40, |x, y| ((x * 7 + y * 3) % 11) as f32),
        ] {
            let m = measure(&img);
            assert!(m.iter().all(|v| v.is_finite()), "{m:?}");
        }
        assert_eq!(measure(&Image::filled(300, 300, 2.0)), [0.0; 15]);
    }
}
