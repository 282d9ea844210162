//! Max pooling and the global average, on a batch's feature maps.

use burn::nn::pool::MaxPool2d;
use burn::nn::PaddingConfig2d;

use rayon::prelude::*;

use super::Maps;

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

    pub fn forward(&self, x: &Maps) -> Maps {
        self.forward_with_argmax(x).0
    }

    /// The pooled maps and, for each output, the index of its window's winner within its plane
    /// (the first of equal values), which training needs to send the gradient back.
    pub(crate) fn forward_with_argmax(&self, x: &Maps) -> (Maps, Vec<u32>) {
        let [kh, kw] = self.kernel;
        let [sy, sx] = self.stride;
        let [pt, pb, pl, pr] = self.pad;
        let oh = (x.h + pt + pb - kh) / sy + 1;
        let ow = (x.w + pl + pr - kw) / sx + 1;
        let mut out = Maps::zeros(x.c, x.n, oh, ow);
        let mut arg = vec![0u32; out.data.len()];
        out.data
            .par_chunks_exact_mut(oh * ow)
            .zip(arg.par_chunks_exact_mut(oh * ow))
            .zip(x.data.par_chunks_exact(x.h * x.w))
            .for_each(|((dst, idx), src)| {
                for (oy, (row, idx)) in dst
                    .chunks_exact_mut(ow)
                    .zip(idx.chunks_exact_mut(ow))
                    .enumerate()
                {
                    let y0 = (oy * sy).saturating_sub(pt);
                    let y1 = (oy * sy + kh).saturating_sub(pt).min(x.h);
                    for (ox, (d, i)) in row.iter_mut().zip(idx).enumerate() {
                        let x0 = (ox * sx).saturating_sub(pl);
                        let x1 = (ox * sx + kw).saturating_sub(pl).min(x.w);
                        let (mut m, mut best) = (f32::NEG_INFINITY, y0 * x.w + x0);
                        for y in y0..y1 {
                            for (j, &v) in src[y * x.w + x0..y * x.w + x1].iter().enumerate() {
                                // Selects, not a branch: which pixel wins is as good as random.
                                let better = v > m;
                                m = if better { v } else { m };
                                best = if better { y * x.w + x0 + j } else { best };
                            }
                        }
                        *d = m;
                        *i = best as u32;
                    }
                }
            });
        (out, arg)
    }
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
