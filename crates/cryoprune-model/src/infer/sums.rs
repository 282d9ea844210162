//! Sums of long rows of floats in f64, in an order fixed by the row alone: batch norm's
//! statistics and gradients, whatever the thread count.

/// LANES running sums of two series: independent lanes break the chain of dependent additions
/// (f64 adds would otherwise run one per few cycles), and combine in a fixed order.
const LANES: usize = 8;

/// (Σa, Σb) over `term(x, y)` for the pairs of `xs` and `ys` (equal lengths), with [`LANES`]
/// lanes: each chunk is widened to f64 as a whole and summed lane by lane, which the compiler
/// turns into vector instructions.
#[inline(always)]
fn lane_sums(
    xs: &[f32],
    ys: &[f32],
    term: impl Fn([f64; LANES], [f64; LANES]) -> ([f64; LANES], [f64; LANES]),
) -> (f64, f64) {
    assert_eq!(xs.len(), ys.len());
    let (xc, x_rest) = xs.as_chunks::<LANES>();
    let (yc, y_rest) = ys.as_chunks::<LANES>();
    let (mut a, mut b) = ([0f64; LANES], [0f64; LANES]);
    let mut add = |x: [f64; LANES], y: [f64; LANES]| {
        let (p, q) = term(x, y);
        for l in 0..LANES {
            a[l] += p[l];
            b[l] += q[l];
        }
    };
    for (x, y) in xc.iter().zip(yc) {
        add(x.map(f64::from), y.map(f64::from));
    }
    // The remainder, zero-padded to a chunk: every term here is 0 at 0.
    let (mut x, mut y) = ([0f64; LANES], [0f64; LANES]);
    for (l, (&xv, &yv)) in x_rest.iter().zip(y_rest).enumerate() {
        (x[l], y[l]) = (xv as f64, yv as f64);
    }
    add(x, y);
    (a.iter().sum(), b.iter().sum())
}

/// (Σv, Σv²) of a row.
#[inline(always)]
pub(crate) fn moments(row: &[f32]) -> (f64, f64) {
    lane_sums(row, row, |v, _| (v, v.map(|v| v * v)))
}

/// (Σd·x, Σd).
#[inline(always)]
pub(crate) fn dot_and_sum(d: &[f32], x: &[f32]) -> (f64, f64) {
    lane_sums(d, x, |d, x| (std::array::from_fn(|l| d[l] * x[l]), d))
}

/// Σd.
#[inline(always)]
pub(crate) fn sum(d: &[f32]) -> f64 {
    lane_sums(d, d, |d, _| (d, [0.0; LANES])).0
}
