//! Max pooling and the global average, on a batch's feature maps.

use std::ops::Range;

use burn::nn::pool::MaxPool2d;
use burn::nn::PaddingConfig2d;
use rayon::prelude::*;

use super::{vectorized, Maps};

/// A max pool; padded positions never win (PyTorch and burn pad with -inf).
#[derive(Debug, Clone)]
pub struct MaxPool {
    kernel: [usize; 2],
    stride: [usize; 2],
    /// (top, bottom, left, right)
    pad: [usize; 4],
}

impl MaxPool {
    pub fn new(pool: &MaxPool2d) -> Self {
        assert_eq!(pool.dilation, [1, 1], "dilated max pool");
        assert!(!pool.ceil_mode, "ceil-mode max pool");
        let pad = match pool.padding {
            PaddingConfig2d::Explicit(top, left, bottom, right) => [top, bottom, left, right],
            PaddingConfig2d::Valid => [0; 4],
            PaddingConfig2d::Same => panic!("'same' padding on a max pool"),
        };
        Self {
            kernel: pool.kernel_size,
            stride: pool.stride,
            pad,
        }
    }

    fn out_size(&self, x: &Maps) -> (usize, usize) {
        let ([kh, kw], [sy, sx], [pt, pb, pl, pr]) = (self.kernel, self.stride, self.pad);
        ((x.h + pt + pb - kh) / sy + 1, (x.w + pl + pr - kw) / sx + 1)
    }

    /// The input rows and columns output (oy, ox) pools over; padding is left out.
    #[inline(always)]
    fn window(&self, x: &Maps, oy: usize, ox: usize) -> (Range<usize>, Range<usize>) {
        let ([kh, kw], [sy, sx], [pt, _, pl, _]) = (self.kernel, self.stride, self.pad);
        let rows = (oy * sy).saturating_sub(pt)..(oy * sy + kh).saturating_sub(pt).min(x.h);
        let cols = (ox * sx).saturating_sub(pl)..(ox * sx + kw).saturating_sub(pl).min(x.w);
        (rows, cols)
    }

    /// Whether the windows are 2 × 2 at stride 2 without padding (the small network's pools):
    /// none needs clamping, so input rows pair up and no window's bounds are worked out per
    /// output (that bookkeeping made pooling 3-4% of `train`'s time in perf).
    fn is_pairs(&self) -> bool {
        self.kernel == [2, 2] && self.stride == [2, 2] && self.pad == [0; 4]
    }

    pub fn forward(&self, x: &Maps) -> Maps {
        let (oh, ow) = self.out_size(x);
        let mut out = Maps::zeros(x.c, x.n, oh, ow);
        if self.is_pairs() {
            out.data
                .par_chunks_exact_mut(oh * ow)
                .zip(x.data.par_chunks_exact(x.h * x.w))
                .for_each(|(dst, src)| {
                    vectorized(
                        #[inline(always)]
                        || {
                            for (oy, row) in dst.chunks_exact_mut(ow).enumerate() {
                                let (top, bottom) = pair_rows(src, x.w, oy, ow);
                                for ((d, t), b) in row
                                    .iter_mut()
                                    .zip(top.chunks_exact(2))
                                    .zip(bottom.chunks_exact(2))
                                {
                                    // Seeded with -inf as the generic window is, so an
                                    // all-NaN window pools to the same value.
                                    *d = f32::NEG_INFINITY.max(t[0]).max(t[1]).max(b[0]).max(b[1]);
                                }
                            }
                        },
                    )
                });
            return out;
        }
        out.data
            .par_chunks_exact_mut(oh * ow)
            .zip(x.data.par_chunks_exact(x.h * x.w))
            .for_each(|(dst, src)| {
                for (oy, row) in dst.chunks_exact_mut(ow).enumerate() {
                    for (ox, d) in row.iter_mut().enumerate() {
                        let (rows, cols) = self.window(x, oy, ox);
                        let mut m = f32::NEG_INFINITY;
                        for y in rows {
                            for &v in &src[y * x.w + cols.start..y * x.w + cols.end] {
                                m = m.max(v);
                            }
                        }
                        *d = m;
                    }
                }
            });
        out
    }

    /// The pooled maps and, for each output, the index of its window's winner within its plane
    /// (the first pixel equal to the maximum), which training needs to send the gradient back.
    /// The winner is kept as the maximum is, by selects, in the same pass: which pixel wins is
    /// as good as random, and searching for it afterwards branched wrongly so often that
    /// ResNet's 3 × 3 stem pool took 4.5 ms of a 99 ms training step. A window of NaN and -inf
    /// alone sends its gradient to its first pixel.
    pub(crate) fn forward_with_argmax(&self, x: &Maps) -> (Maps, Vec<u32>) {
        if self.is_pairs() {
            return self.pairs_with_argmax(x);
        }
        let (oh, ow) = self.out_size(x);
        let mut out = Maps::zeros(x.c, x.n, oh, ow);
        let mut arg = vec![0u32; out.data.len()];
        out.data
            .par_chunks_exact_mut(oh * ow)
            .zip(arg.par_chunks_exact_mut(oh * ow))
            .zip(x.data.par_chunks_exact(x.h * x.w))
            .for_each(|((dst, idx), src)| {
                vectorized(
                    #[inline(always)]
                    || {
                        for (q, (d, i)) in dst.iter_mut().zip(idx.iter_mut()).enumerate() {
                            let (rows, cols) = self.window(x, q / ow, q % ow);
                            let first = (rows.start * x.w + cols.start) as u32;
                            let (mut m, mut at) = (f32::NEG_INFINITY, first);
                            for y in rows {
                                let row = y * x.w;
                                for c in cols.clone() {
                                    (m, at) = keep_max((m, at), (src[row + c], (row + c) as u32));
                                }
                            }
                            (*d, *i) = (m, at);
                        }
                    },
                )
            });
        (out, arg)
    }

    /// [`Self::forward_with_argmax`] of 2 × 2 windows at stride 2, in one pass. The winner is
    /// kept as the maximum is, by selects: which of four pixels wins is as good as random, and
    /// searching for it afterwards branched wrongly so often that it took ten times the pooling.
    /// A window of NaN and -inf alone sends its gradient to its first pixel.
    fn pairs_with_argmax(&self, x: &Maps) -> (Maps, Vec<u32>) {
        let (oh, ow) = self.out_size(x);
        let mut out = Maps::zeros(x.c, x.n, oh, ow);
        let mut arg = vec![0u32; out.data.len()];
        let w = x.w;
        out.data
            .par_chunks_exact_mut(oh * ow)
            .zip(arg.par_chunks_exact_mut(oh * ow))
            .zip(x.data.par_chunks_exact(x.h * w))
            .for_each(|((dst, idx), src)| {
                vectorized(
                    #[inline(always)]
                    || {
                        for (oy, (row, irow)) in dst
                            .chunks_exact_mut(ow)
                            .zip(idx.chunks_exact_mut(ow))
                            .enumerate()
                        {
                            let (top, bottom) = pair_rows(src, w, oy, ow);
                            let p0 = 2 * oy * w;
                            for (ox, ((d, i), (t, b))) in row
                                .iter_mut()
                                .zip(irow.iter_mut())
                                .zip(top.chunks_exact(2).zip(bottom.chunks_exact(2)))
                                .enumerate()
                            {
                                let (p, below) = ((p0 + 2 * ox) as u32, (p0 + w + 2 * ox) as u32);
                                let window =
                                    [(t[0], p), (t[1], p + 1), (b[0], below), (b[1], below + 1)];
                                let (mut m, mut at) = (f32::NEG_INFINITY, p);
                                for next in window {
                                    (m, at) = keep_max((m, at), next);
                                }
                                (*d, *i) = (m, at);
                            }
                        }
                    },
                )
            });
        (out, arg)
    }
}

/// The running (maximum, winner) after pixel `q` of value `v`, by selects, not a branch: which
/// pixel wins is as good as random. Strictly greater, so the first of equal maxima wins and NaN
/// never does.
#[inline(always)]
fn keep_max((m, at): (f32, u32), (v, q): (f32, u32)) -> (f32, u32) {
    let wins = v > m;
    (if wins { v } else { m }, if wins { q } else { at })
}

/// Output row `oy`'s two input rows of a 2 × 2, stride 2 pool, each cut to `ow` pairs.
#[inline(always)]
fn pair_rows(plane: &[f32], w: usize, oy: usize, ow: usize) -> (&[f32], &[f32]) {
    (
        &plane[2 * oy * w..][..2 * ow],
        &plane[(2 * oy + 1) * w..][..2 * ow],
    )
}

/// The gradient of a max pool at its input (shaped `like`) from `dy` at its output: each
/// output's gradient goes to its window's winner.
pub(crate) fn max_pool_backward(dy: &Maps, arg: &[u32], like: &Maps) -> Maps {
    let mut dx = Maps::zeros(like.c, like.n, like.h, like.w);
    let plane = dy.h * dy.w;
    dx.data
        .par_chunks_exact_mut(like.h * like.w)
        .zip(dy.data.par_chunks_exact(plane))
        .zip(arg.par_chunks_exact(plane))
        .for_each(|((dst, d), idx)| {
            for (&i, &v) in idx.iter().zip(d) {
                dst[i as usize] += v;
            }
        });
    dx
}

/// The mean of each map: [c, n, h, w] -> [n, c].
pub fn global_average(x: &Maps) -> Vec<f32> {
    let pixels = (x.h * x.w) as f32;
    let mut out = vec![0.0; x.n * x.c];
    for (i, plane) in x.data.chunks_exact(x.h * x.w).enumerate() {
        let (c, b) = (i / x.n, i % x.n);
        out[b * x.c + c] = plane.iter().sum::<f32>() / pixels;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Max pool and winners by the definition: every window in full, first maximum wins.
    fn naive(pool: &MaxPool, x: &Maps) -> (Vec<f32>, Vec<u32>) {
        let (oh, ow) = pool.out_size(x);
        let (mut out, mut arg) = (Vec::new(), Vec::new());
        for plane in x.data.chunks_exact(x.h * x.w) {
            for oy in 0..oh {
                for ox in 0..ow {
                    let (rows, cols) = pool.window(x, oy, ox);
                    let pixels: Vec<usize> = rows
                        .flat_map(|y| cols.clone().map(move |c| y * x.w + c))
                        .collect();
                    let m = pixels
                        .iter()
                        .fold(f32::NEG_INFINITY, |m, &p| m.max(plane[p]));
                    out.push(m);
                    arg.push(pixels.into_iter().find(|&p| plane[p] == m).unwrap() as u32);
                }
            }
        }
        (out, arg)
    }

    #[test]
    fn paired_and_generic_pools_equal_the_definition_with_ties_and_odd_sizes() {
        let pools = [
            MaxPool {
                kernel: [2, 2],
                stride: [2, 2],
                pad: [0; 4],
            },
            MaxPool {
                kernel: [3, 3],
                stride: [2, 2],
                pad: [1; 4],
            },
        ];
        for (h, w) in [(8, 8), (7, 9), (5, 4)] {
            let mut x = Maps::zeros(3, 2, h, w);
            // Few distinct values, so windows hold ties; one all-negative plane.
            for (i, v) in x.data.iter_mut().enumerate() {
                *v = ((i * 7919) % 5) as f32 - if i < h * w { 9.0 } else { 2.0 };
            }
            for pool in &pools {
                let (want, want_arg) = naive(pool, &x);
                assert_eq!(pool.forward(&x).data, want, "{:?} on {h}x{w}", pool.kernel);
                let (out, arg) = pool.forward_with_argmax(&x);
                assert_eq!((out.data, arg), (want, want_arg));
            }
        }
    }
}
