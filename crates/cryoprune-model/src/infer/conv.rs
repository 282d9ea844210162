//! A convolution with its batch norm folded in and its activation (and an optional residual
//! sum) applied as the output is written: one pass over memory where burn's layer-by-layer
//! inference makes four (convolution, normalisation, residual add, activation).
//!
//! Dense convolutions cut the batch's output pixels into tiles, gather each tile's input patches
//! (im2col) into a buffer that stays in the core's cache, and multiply it by the weights with the
//! `gemm` crate, whose kernels are chosen at run time for the CPU (AVX2/FMA, AVX-512, NEON).
//! Depthwise convolutions (EfficientNet) have too little work per output for a matrix product
//! and run as direct loops instead.

use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, PaddingConfig2d};
use gemm::Parallelism;
use rayon::prelude::*;

use super::{vectorized, Maps};
use crate::layers::ConvBn;

/// Floats of im2col tile a convolution aims for: 128 Ki floats (512 KiB), about a core's L2.
const TILE_FLOATS: usize = 128 * 1024;
/// Fewest output pixels per tile: below this the matrix product spends more time packing the
/// weights than multiplying them.
const MIN_TILE: usize = 128;
/// Most partial sums a weight gradient keeps: enough to share the tiles among many cores.
const PARTIALS: usize = 32;
/// Floats of a weight gradient each worker adds up over the partial sums at a time.
const REDUCE_CHUNK: usize = 4096;
/// Floats per vector of the widest kernels gemm picks (AVX-512).
const SIMD_ROWS: usize = 16;
/// The longest block of k gemm multiplies without cutting it, whatever the matrix shape.
const GEMM_MAX_KC: usize = 512;
/// Output rows shorter than this are gathered pixel by pixel rather than copied row by row.
const SHORT_ROW: usize = 16;

thread_local! {
    /// Each worker's im2col tile, kept from one convolution to the next: a fresh 512 KiB buffer
    /// per tile is memory the allocator maps and the kernel faults in again every time. Taken
    /// out while in use, so a worker that picks up another tile meanwhile gets its own.
    static COLUMNS: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Output pixels per im2col tile of `k` rows, out of `total`.
fn tile_pixels(k: usize, total: usize) -> usize {
    let pixels = (TILE_FLOATS / k).max(MIN_TILE);
    // gemm copies ("packs") a column-major operand whose row count is not a whole number of
    // vectors; tiles of whole vectors (16 floats for AVX-512, two for AVX2) are multiplied
    // where im2col wrote them.
    (pixels - pixels % SIMD_ROWS).min(total.max(1))
}

/// Work items a training convolution aims for at least; below it, output channels are cut into
/// chunks too. Each chunk gathers its tile's patches again: on 2 cores 16 items cost more than
/// they gained (ResNet-18 and -50 at 64 px), 4 gained most.
const MIN_ITEMS: usize = 4;

/// Chunks of a training convolution's `outs` output channels, from the sizes alone: one where
/// there are tiles enough, else as many as bring the items to [`MIN_ITEMS`], each at least one
/// vector of channels. The deep layers of ResNet-18 on 64 px inputs are one tile of 96 pixels
/// over the batch, and without the chunks their products ran on one core: the training path
/// may not let gemm split a product itself, as that changes the order of its sums with the
/// thread count; these chunks depend on the sizes alone.
fn output_chunks(tiles: usize, outs: usize) -> usize {
    if tiles >= MIN_ITEMS {
        return 1;
    }
    MIN_ITEMS.div_ceil(tiles).min(outs / SIMD_ROWS).max(1)
}

/// What follows the (folded) convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    None,
    Relu,
    Relu6,
}

impl Act {
    #[inline]
    pub(crate) fn apply(self, v: f32) -> f32 {
        match self {
            Act::None => v,
            Act::Relu => v.max(0.0),
            Act::Relu6 => v.clamp(0.0, 6.0),
        }
    }
}

/// How the input is padded: fixed amounts, or TensorFlow's "same" worked out per input size
/// exactly as burn's `PaddingConfig2d::Same` does.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pad {
    /// (top, bottom, left, right)
    Fixed([usize; 4]),
    Same,
}

/// A 2-D convolution with batch norm folded into its weights and bias.
#[derive(Debug, Clone)]
pub struct FusedConv {
    pub(crate) c_in: usize,
    pub(crate) c_out: usize,
    pub(crate) kernel: [usize; 2],
    pub(crate) stride: [usize; 2],
    dilation: [usize; 2],
    pub(crate) groups: usize,
    pad: Pad,
    /// [c_out, c_in / groups, kh, kw], BN scale applied.
    weight: Vec<f32>,
    bias: Vec<f32>,
    act: Act,
    /// Whether a matrix product may split its own work among threads when there are fewer
    /// tiles than threads. The training path says no: gemm's split changes the order of the
    /// sums, and its weights must not depend on the thread count.
    split_products: bool,
}

pub(crate) fn floats<const D: usize>(t: burn::tensor::Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("converted to f32")
}

/// (before, after) padding of TensorFlow's "same" for one axis.
fn same_padding(kernel: usize, stride: usize, size: usize) -> (usize, usize) {
    let out = size.div_ceil(stride);
    let total = (out.saturating_sub(1) * stride + kernel).saturating_sub(size);
    (total / 2, total - total / 2)
}

impl FusedConv {
    /// Folds `bn` (inference statistics) into `conv`: y = gamma (conv(x) + b - mean) /
    /// sqrt(var + eps) + beta is a convolution with weights scaled per output channel.
    pub fn new(conv: &Conv2d, bn: Option<&BatchNorm>, act: Act) -> Self {
        let weight = floats(conv.weight.val());
        let [c_out, per_group, kh, kw] = conv.weight.val().dims();
        let mut bias = conv
            .bias
            .as_ref()
            .map_or_else(|| vec![0.0; c_out], |b| floats(b.val()));
        let mut weight = weight;
        if let Some(bn) = bn {
            let gamma = floats(bn.gamma.val());
            let beta = floats(bn.beta.val());
            let mean = floats(bn.running_mean.value());
            let var = floats(bn.running_var.value());
            let per_out = per_group * kh * kw;
            for o in 0..c_out {
                let scale = gamma[o] / (var[o] as f64 + bn.epsilon).sqrt() as f32;
                weight[o * per_out..(o + 1) * per_out]
                    .iter_mut()
                    .for_each(|w| *w *= scale);
                bias[o] = (bias[o] - mean[o]) * scale + beta[o];
            }
        }
        let pad = match conv.padding {
            PaddingConfig2d::Same => Pad::Same,
            PaddingConfig2d::Valid => Pad::Fixed([0; 4]),
            PaddingConfig2d::Explicit(top, left, bottom, right) => {
                Pad::Fixed([top, bottom, left, right])
            }
        };
        Self {
            c_in: per_group * conv.groups,
            c_out,
            kernel: [kh, kw],
            stride: conv.stride,
            dilation: conv.dilation,
            groups: conv.groups,
            pad,
            weight,
            bias,
            act,
            split_products: true,
        }
    }

    /// A bias-free convolution, dense (one group) or depthwise, from its weights ([c_out,
    /// c_in / groups, kh, kw]) whose matrix products never split among threads: the shape of
    /// every convolution the CPU training path runs, forward and (as convolutions of the output
    /// gradient) backward.
    pub(crate) fn training(
        [c_in, c_out]: [usize; 2],
        kernel: [usize; 2],
        stride: [usize; 2],
        pad: Pad,
        groups: usize,
        weight: Vec<f32>,
    ) -> Self {
        assert!(
            groups == 1 || (groups == c_in && groups == c_out),
            "dense or depthwise"
        );
        assert_eq!(
            weight.len(),
            c_out * c_in / groups * kernel[0] * kernel[1],
            "weight shape"
        );
        Self {
            c_in,
            c_out,
            kernel,
            stride,
            dilation: [1, 1],
            groups,
            pad,
            weight,
            bias: vec![0.0; c_out],
            act: Act::None,
            split_products: false,
        }
    }

    /// Exchanges the weights with `weight` (same length): the training path lends its current
    /// weights to the convolution for a pass instead of copying them.
    pub(crate) fn swap_weight(&mut self, weight: &mut Vec<f32>) {
        assert_eq!(weight.len(), self.weight.len(), "weight shape");
        std::mem::swap(&mut self.weight, weight);
    }

    /// [`Self::new`] for a convolution and batch norm paired in a [`ConvBn`].
    pub fn from_conv_bn(c: &ConvBn, act: Act) -> Self {
        Self::new(&c.conv, Some(&c.bn), act)
    }

    /// (top, bottom, left, right) padding of an `h` × `w` input.
    pub(crate) fn padding(&self, h: usize, w: usize) -> [usize; 4] {
        match self.pad {
            Pad::Fixed(p) => p,
            Pad::Same => {
                let (t, b) = same_padding(self.kernel[0], self.stride[0], h);
                let (l, r) = same_padding(self.kernel[1], self.stride[1], w);
                [t, b, l, r]
            }
        }
    }

    /// (output rows, output columns, padding) for an `h` × `w` input.
    pub(crate) fn out_size(&self, h: usize, w: usize) -> (usize, usize, [usize; 4]) {
        let p = self.padding(h, w);
        let span = |k: usize, d: usize| d * (k - 1) + 1;
        let oh = (h + p[0] + p[1] - span(self.kernel[0], self.dilation[0])) / self.stride[0] + 1;
        let ow = (w + p[2] + p[3] - span(self.kernel[1], self.dilation[1])) / self.stride[1] + 1;
        (oh, ow, p)
    }

    /// act(conv(x) + bias [+ residual]) for a batch.
    pub fn forward(&self, x: &Maps, residual: Option<&Maps>) -> Maps {
        assert_eq!(x.c, self.c_in, "input channels");
        let (oh, ow, pad) = self.out_size(x.h, x.w);
        if let Some(r) = residual {
            assert_eq!(
                (r.c, r.n, r.h, r.w),
                (self.c_out, x.n, oh, ow),
                "residual shape"
            );
        }
        if self.groups == self.c_in && self.groups == self.c_out && self.groups > 1 {
            let mut out = Maps::zeros(self.c_out, x.n, oh, ow);
            self.depthwise(x, &mut out, pad, residual);
            return out;
        }
        // The matrix products write every output element before anything reads it, so the
        // maps are not zeroed first (that pass was 2-3% of `train` in perf).
        let len = self.c_out * x.n * oh * ow;
        let mut data = Vec::with_capacity(len);
        self.dense(
            x,
            SharedOut(data.as_mut_ptr()),
            (x.n, oh, ow),
            pad,
            residual,
        );
        // SAFETY: `dense` wrote all `len` elements (its tiles cover every pixel of every
        // output channel, the first block of each product with the destination unread).
        unsafe { data.set_len(len) };
        Maps {
            c: self.c_out,
            n: x.n,
            h: oh,
            w: ow,
            data,
        }
    }

    /// Adds the bias (and residual) of output channel `o` to `values` and applies the activation.
    #[inline(always)]
    fn finish(&self, o: usize, values: &mut [f32], residual: Option<&[f32]>) {
        let b = self.bias[o];
        let act = self.act;
        match residual {
            Some(r) => values
                .iter_mut()
                .zip(r)
                .for_each(|(v, &add)| *v = act.apply(*v + b + add)),
            None => values.iter_mut().for_each(|v| *v = act.apply(*v + b)),
        }
    }

    fn is_pointwise(&self, pad: [usize; 4]) -> bool {
        self.kernel == [1, 1] && self.stride == [1, 1] && pad == [0; 4]
    }

    /// Grouped (usually one group) convolution: the batch's output pixels, all images in a row,
    /// are cut into tiles; each tile's input patches (im2col) are multiplied by the weights, so
    /// that weights are read once per tile, not once per image, and each tile is finished
    /// (bias, residual, activation) while it is still in cache.
    fn dense(
        &self,
        x: &Maps,
        dst: SharedOut,
        (n, oh, ow): (usize, usize, usize),
        pad: [usize; 4],
        residual: Option<&Maps>,
    ) {
        let in_g = self.c_in / self.groups;
        let out_g = self.c_out / self.groups;
        let k = in_g * self.kernel[0] * self.kernel[1];
        let total = n * oh * ow;
        let tile = tile_pixels(k, total);
        let tiles = total.div_ceil(tile);
        let par = if self.split_products && tiles < rayon::current_num_threads() {
            Parallelism::Rayon(0)
        } else {
            Parallelism::None
        };
        let chunks = if self.split_products {
            1
        } else {
            output_chunks(tiles, out_g)
        };
        let per_chunk = out_g.div_ceil(chunks);
        let geometry = (oh, ow);
        // Compiled for this CPU's vector width: im2col and the finishing pass run inside.
        (0..tiles * chunks).into_par_iter().for_each(|item| {
            vectorized(
                #[inline(always)]
                || {
                    let mut col = COLUMNS.take();
                    let (t, chunk) = (item / chunks, item % chunks);
                    let q0 = t * tile;
                    let pixels = tile.min(total - q0);
                    let outs = chunk * per_chunk..((chunk + 1) * per_chunk).min(out_g);
                    for g in 0..self.groups {
                        let input =
                            &x.data[g * in_g * x.plane_all()..(g + 1) * in_g * x.plane_all()];
                        let w = &self.weight[g * out_g * k..(g + 1) * out_g * k];
                        let tile = Tile {
                            input,
                            channels: in_g,
                            x,
                            pad,
                            out: geometry,
                            q0,
                            pixels,
                        };
                        let (cols, cols_row) = self.columns(&tile, &mut col);
                        let w = &w[outs.start * k..outs.end * k];
                        // SAFETY: items cover disjoint pixel ranges [q0, q0 + pixels) of
                        // disjoint output channels, so no two threads write the same element;
                        // `dst` outlives the loop.
                        unsafe {
                            let base = dst.get().add(g * out_g * total);
                            let (first, n) = (base.add(outs.start * total), outs.len());
                            matmul(first, total, q0, pixels, n, k, cols, cols_row, w, par);
                            for o in outs.clone() {
                                let oc = g * out_g + o;
                                let values = std::slice::from_raw_parts_mut(
                                    base.add(o * total + q0),
                                    pixels,
                                );
                                let r = residual.map(|r| &r.data[oc * total + q0..][..pixels]);
                                self.finish(oc, values, r);
                            }
                        }
                    }
                    COLUMNS.set(col);
                },
            )
        });
    }

    /// The gradient of the loss with respect to this (one-group) convolution's weights, given its
    /// input `x` and the gradient `dy` at its output: Σ over pixels of dy ⊗ input patch. Each tile
    /// of pixels makes its own partial sum and the partials are added in tile order, and tiles do
    /// not depend on the thread count, so the result is the same bit for bit on any pool.
    pub(crate) fn weight_grad(&self, x: &Maps, dy: &Maps) -> Vec<f32> {
        let (oh, ow, pad) = self.out_size(x.h, x.w);
        assert_eq!(
            (dy.c, dy.n, dy.h, dy.w),
            (self.c_out, x.n, oh, ow),
            "gradient shape"
        );
        if self.groups > 1 {
            return self.depthwise_weight_grad(x, dy, pad);
        }
        let k = self.c_in * self.kernel[0] * self.kernel[1];
        let total = dy.plane_all();
        // Tiles of at least as many pixels as output channels: each partial sum (c_out × k) is
        // then no larger than the tile's columns, where deep layers' wide kernels would
        // otherwise make them the bigger traffic.
        let tile = tile_pixels(k, total).max(self.c_out.min(total));
        let tiles = total.div_ceil(tile);
        // Consecutive tiles share a partial, so there are at most PARTIALS of them however
        // large the batch; the grouping depends on the sizes alone, never on the threads.
        let per_partial = tiles.div_ceil(PARTIALS);
        // gemm multiplies with the longer side of the sum as its rows, and for [c_out, k] that
        // means packing every tile's columns (k × pixels) first: for a layer of few output
        // channels that copy is as costly as the product (the small network's 16- and
        // 32-channel layers), so it sums [k, c_out] instead, packing dy's rows (c_out ×
        // pixels), and transposes the sum once. Wider layers keep the columns' packing: their
        // products reuse it across many channels, and the other way measured slower.
        let transposed = self.c_out <= 2 * SIMD_ROWS && k >= self.c_out;
        let (dst_cs, dst_rs) = if transposed {
            (self.c_out as isize, 1)
        } else {
            (1, k as isize)
        };
        let partials: Vec<Vec<f32>> = (0..tiles.div_ceil(per_partial))
            .into_par_iter()
            .map(|p| {
                vectorized(
                    #[inline(always)]
                    || {
                        let mut col = COLUMNS.take();
                        // Not zeroed: the first tile's product writes it whole.
                        let mut part = Vec::<f32>::with_capacity(self.c_out * k);
                        let first = p * per_partial;
                        for t in first..((p + 1) * per_partial).min(tiles) {
                            let q0 = t * tile;
                            let pixels = tile.min(total - q0);
                            let tile = Tile {
                                input: &x.data,
                                channels: self.c_in,
                                x,
                                pad,
                                out: (oh, ow),
                                q0,
                                pixels,
                            };
                            let (cols, cols_row) = self.columns(&tile, &mut col);
                            // SAFETY: dst is part ([k, c_out] row-major, its capacity),
                            // written by the first tile and accumulated into by the others;
                            // lhs reads dy's rows [q0, q0 + pixels) of every channel, rhs the
                            // tile's k columns of `pixels`.
                            unsafe {
                                gemm::gemm(
                                    self.c_out,
                                    k,
                                    pixels,
                                    part.as_mut_ptr(),
                                    dst_cs,
                                    dst_rs,
                                    t != first,
                                    dy.data.as_ptr().add(q0),
                                    1,
                                    total as isize,
                                    cols.as_ptr(),
                                    cols_row as isize,
                                    1,
                                    if t == first { 0.0 } else { 1.0 },
                                    1.0,
                                    false,
                                    false,
                                    false,
                                    Parallelism::None,
                                );
                                part.set_len(self.c_out * k);
                            }
                        }
                        COLUMNS.set(col);
                        part
                    },
                )
            })
            .collect();
        let mut parts = partials.into_iter();
        let mut sum = parts.next().unwrap_or_else(|| vec![0.0; self.c_out * k]);
        let rest: Vec<Vec<f32>> = parts.collect();
        sum.par_chunks_mut(REDUCE_CHUNK)
            .enumerate()
            .for_each(|(i, dst)| {
                for part in &rest {
                    let src = &part[i * REDUCE_CHUNK..][..dst.len()];
                    dst.iter_mut().zip(src).for_each(|(s, p)| *s += p);
                }
            });
        if !transposed {
            return sum;
        }
        let mut grad = vec![0.0; sum.len()];
        grad.par_chunks_mut(k).enumerate().for_each(|(o, row)| {
            for (j, g) in row.iter_mut().enumerate() {
                *g = sum[j * self.c_out + o];
            }
        });
        grad
    }

    /// [`Self::weight_grad`] of a depthwise convolution: each channel's filter on its own, the
    /// sums over images and rows in order.
    fn depthwise_weight_grad(&self, x: &Maps, dy: &Maps, pad: [usize; 4]) -> Vec<f32> {
        assert_eq!(self.groups, self.c_in, "depthwise");
        let [kh, kw] = self.kernel;
        let [sy, sx] = self.stride;
        let (h, w, oh, ow) = (x.h, x.w, dy.h, dy.w);
        let per_channel: Vec<Vec<f32>> = (0..self.c_out)
            .into_par_iter()
            .map(|c| {
                vectorized(
                    #[inline(always)]
                    || {
                        let mut g = vec![0f32; kh * kw];
                        for b in 0..x.n {
                            let plane = &x.data[(c * x.n + b) * h * w..][..h * w];
                            let d = &dy.data[(c * dy.n + b) * oh * ow..][..oh * ow];
                            for (oy, drow) in d.chunks_exact(ow).enumerate() {
                                for ky in 0..kh {
                                    let iy = (oy * sy + ky) as isize - pad[0] as isize;
                                    if iy < 0 || iy >= h as isize {
                                        continue;
                                    }
                                    let src = &plane[iy as usize * w..][..w];
                                    for kx in 0..kw {
                                        let offset_x = kx as isize - pad[2] as isize;
                                        let (lo, hi) = valid_range(ow, sx, offset_x, w);
                                        if lo >= hi {
                                            continue;
                                        }
                                        let start = ((lo * sx) as isize + offset_x) as usize;
                                        let acc: f32 = if sx == 1 {
                                            drow[lo..hi]
                                                .iter()
                                                .zip(&src[start..])
                                                .map(|(a, b)| a * b)
                                                .sum()
                                        } else {
                                            drow[lo..hi]
                                                .iter()
                                                .enumerate()
                                                .map(|(j, a)| a * src[start + j * sx])
                                                .sum()
                                        };
                                        g[ky * kw + kx] += acc;
                                    }
                                }
                            }
                        }
                        g
                    },
                )
            })
            .collect();
        per_channel.concat()
    }

    /// The tile's input patches as a matrix product's columns, [k, pixels] with the row stride
    /// returned: a pointwise convolution's input rows as they are (pixels contiguous over the
    /// whole batch), otherwise gathered into `col`.
    #[inline(always)]
    fn columns<'a>(&self, tile: &Tile<'a>, col: &'a mut Vec<f32>) -> (&'a [f32], usize) {
        if self.is_pointwise(tile.pad) {
            return (&tile.input[tile.q0..], tile.x.plane_all());
        }
        col.resize(
            tile.channels * self.kernel[0] * self.kernel[1] * tile.pixels,
            0.0,
        );
        self.im2col(tile, col);
        (col, tile.pixels)
    }

    /// Fills `col` ([k, pixels], row-major) with the input patches of the tile's output pixels;
    /// padding reads as zero.
    #[inline(always)]
    fn im2col(&self, tile: &Tile, col: &mut [f32]) {
        let Tile {
            input,
            channels,
            x,
            pad,
            out: (oh, ow),
            q0,
            pixels,
        } = *tile;
        if ow < SHORT_ROW {
            return self.im2col_gather(tile, col);
        }
        let [kh, kw] = self.kernel;
        let [sy, sx] = self.stride;
        let [dy, dx] = self.dilation;
        let (h, w) = (x.h, x.w);
        // The tile as runs of one output row: (image, output row, first column, end column).
        let mut runs = Vec::new();
        let mut q = q0;
        while q < q0 + pixels {
            let (row, ox0) = (q / ow, q % ow);
            let ox1 = ow.min(ox0 + q0 + pixels - q);
            runs.push((row / oh, row % oh, ox0, ox1));
            q += ox1 - ox0;
        }
        for c in 0..channels {
            for ky in 0..kh {
                for kx in 0..kw {
                    let r = (c * kh + ky) * kw + kx;
                    let mut dst = &mut col[r * pixels..(r + 1) * pixels];
                    let offset_x = (kx * dx) as isize - pad[2] as isize;
                    let (lo, hi) = valid_range(ow, sx, offset_x, w);
                    for &(b, oy, ox0, ox1) in &runs {
                        let (seg, rest) = dst.split_at_mut(ox1 - ox0);
                        dst = rest;
                        let iy = (oy * sy + ky * dy) as isize - pad[0] as isize;
                        let (lo, hi) = (lo.clamp(ox0, ox1), hi.clamp(ox0, ox1));
                        if iy < 0 || iy >= h as isize || lo >= hi {
                            seg.fill(0.0);
                            continue;
                        }
                        let src = &input[((c * x.n + b) * h + iy as usize) * w..][..w];
                        seg[..lo - ox0].fill(0.0);
                        seg[hi - ox0..].fill(0.0);
                        let start = ((lo * sx) as isize + offset_x) as usize;
                        let seg = &mut seg[lo - ox0..hi - ox0];
                        if sx == 1 {
                            seg.copy_from_slice(&src[start..start + seg.len()]);
                        } else {
                            for (j, d) in seg.iter_mut().enumerate() {
                                *d = src[start + j * sx];
                            }
                        }
                    }
                }
            }
        }
    }

    /// [`Self::im2col`] for maps whose rows are too short for a copy per row to pay: the source
    /// of every (kernel position, pixel) is worked out once per tile, then gathered per channel.
    #[inline(always)]
    fn im2col_gather(&self, tile: &Tile, col: &mut [f32]) {
        let [kh, kw] = self.kernel;
        let [sy, sx] = self.stride;
        let [dy, dx] = self.dilation;
        let ((oh, ow), (h, w), pad) = (tile.out, (tile.x.h, tile.x.w), tile.pad);
        let span = tile.q0..tile.q0 + tile.pixels;
        // Offsets within one channel's [n, h, w] block; padding points past its end.
        let block = tile.x.plane_all();
        let mut sources = Vec::with_capacity(kh * kw * tile.pixels);
        for ky in 0..kh {
            for kx in 0..kw {
                sources.extend(span.clone().map(|q| {
                    let (b, oy, ox) = (q / (oh * ow), q / ow % oh, q % ow);
                    let iy = (oy * sy + ky * dy) as isize - pad[0] as isize;
                    let ix = (ox * sx + kx * dx) as isize - pad[2] as isize;
                    if iy < 0 || iy >= h as isize || ix < 0 || ix >= w as isize {
                        block
                    } else {
                        (b * h + iy as usize) * w + ix as usize
                    }
                }));
            }
        }
        let rows = col.chunks_exact_mut(kh * kw * tile.pixels);
        for (c, rows) in rows.take(tile.channels).enumerate() {
            let src = &tile.input[c * block..(c + 1) * block];
            for (d, &i) in rows.iter_mut().zip(&sources) {
                *d = src.get(i).copied().unwrap_or(0.0);
            }
        }
    }

    /// One k×k filter per channel, accumulated row by row, each (channel, image) plane on its own.
    fn depthwise(&self, x: &Maps, out: &mut Maps, pad: [usize; 4], residual: Option<&Maps>) {
        let [kh, kw] = self.kernel;
        let [sy, sx] = self.stride;
        let [dy, dx] = self.dilation;
        let (h, w, oh, ow) = (x.h, x.w, out.h, out.w);
        let n = x.n;
        out.data
            .par_chunks_exact_mut(oh * ow)
            .enumerate()
            .for_each(|(i, dst)| {
                vectorized(
                    #[inline(always)]
                    || {
                        let c = i / n;
                        let plane = &x.data[i * h * w..(i + 1) * h * w];
                        let filter = &self.weight[c * kh * kw..(c + 1) * kh * kw];
                        for (oy, row) in dst.chunks_exact_mut(ow).enumerate() {
                            for ky in 0..kh {
                                let iy = (oy * sy + ky * dy) as isize - pad[0] as isize;
                                if iy < 0 || iy >= h as isize {
                                    continue;
                                }
                                let src = &plane[iy as usize * w..(iy as usize + 1) * w];
                                for kx in 0..kw {
                                    let wgt = filter[ky * kw + kx];
                                    let offset_x = (kx * dx) as isize - pad[2] as isize;
                                    let (lo, hi) = valid_range(ow, sx, offset_x, w);
                                    if lo >= hi {
                                        continue;
                                    }
                                    let start = ((lo * sx) as isize + offset_x) as usize;
                                    if sx == 1 {
                                        for (d, &s) in row[lo..hi].iter_mut().zip(&src[start..]) {
                                            *d += wgt * s;
                                        }
                                    } else {
                                        for (j, d) in row[lo..hi].iter_mut().enumerate() {
                                            *d += wgt * src[start + j * sx];
                                        }
                                    }
                                }
                            }
                        }
                        let r = residual.map(|r| &r.data[i * oh * ow..(i + 1) * oh * ow]);
                        self.finish(c, dst, r);
                    },
                )
            });
    }
}

/// One tile of a dense convolution: output pixels `q0..q0 + pixels` of the batch (numbered image
/// by image, row by row) on an `out` = (rows, columns) grid, read from one group's `channels`
/// input channels (`input`, laid out as `x`) padded by `pad` = (top, bottom, left, right).
#[derive(Clone, Copy)]
struct Tile<'a> {
    input: &'a [f32],
    channels: usize,
    x: &'a Maps,
    pad: [usize; 4],
    out: (usize, usize),
    q0: usize,
    pixels: usize,
}

/// The output's base pointer, shared by the threads that write disjoint tiles of it.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: see `dense`: every thread writes only its own tile's elements.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    // A method, not `.0`: closures capture the field alone, and a bare pointer is not Sync.
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// The output columns `[lo, hi)` whose input column `o * stride + offset` lies in `[0, size)`.
fn valid_range(out: usize, stride: usize, offset: isize, size: usize) -> (usize, usize) {
    let lo = if offset >= 0 {
        0
    } else {
        ((-offset) as usize).div_ceil(stride)
    };
    let limit = size as isize - offset;
    let hi = if limit <= 0 {
        0
    } else {
        (limit as usize).div_ceil(stride).min(out)
    };
    (lo.min(hi), hi)
}

/// dst[o * dst_plane + p0 + p] = sum_k w[o, k] * cols[k * cols_row + p] for p < pixels: every
/// operand is stored with pixels (or k) contiguous, the column-major layout gemm's kernels
/// prefer.
///
/// A pixel's sum must not depend on the tile it falls in, or a pick's probability would change
/// with the other picks in its batch (and a resumed `prune` would write other numbers than an
/// unbroken one). gemm's kernels add the products of one block of k in order, but the blocks
/// depend on the matrix shape (k is cut at 512 below 65 pixels, elsewhere as the cache
/// suggests), and a single pixel with contiguous columns takes a matrix-vector kernel that
/// sums in another order. So k is cut here, by its size alone, into blocks gemm never cuts
/// again, and a one-pixel tile is spread to a stride gemm multiplies like any other.
///
/// # Safety
/// `dst` must be valid for writes at every `o * dst_plane + p0 + p`, o < outs, p < pixels.
#[allow(clippy::too_many_arguments)]
unsafe fn matmul(
    dst: *mut f32,
    dst_plane: usize,
    p0: usize,
    pixels: usize,
    outs: usize,
    k: usize,
    cols: &[f32],
    cols_row: usize,
    w: &[f32],
    par: Parallelism,
) {
    assert!(p0 + pixels <= dst_plane);
    assert!(cols.len() >= (k - 1) * cols_row + pixels && w.len() >= outs * k);
    let spread: Vec<f32>;
    let (cols, cols_row) = if cols_row == 1 {
        spread = cols[..k].iter().flat_map(|&v| [v, 0.0]).collect();
        (&spread[..], 2)
    } else {
        (cols, cols_row)
    };
    let blocks = k.div_ceil(GEMM_MAX_KC);
    let block = k.div_ceil(blocks);
    for k0 in (0..k).step_by(block) {
        let kb = block.min(k - k0);
        let first = k0 == 0;
        // SAFETY: the asserts keep the reads inside `cols` and `w`; the caller vouches for
        // `dst`.
        unsafe {
            gemm::gemm(
                pixels,
                outs,
                kb,
                dst.add(p0),
                dst_plane as isize,
                1,
                !first,
                cols.as_ptr().add(k0 * cols_row),
                cols_row as isize,
                1,
                w.as_ptr().add(k0),
                k as isize,
                1,
                if first { 0.0 } else { 1.0 },
                1.0,
                false,
                false,
                false,
                par,
            );
        }
    }
}
