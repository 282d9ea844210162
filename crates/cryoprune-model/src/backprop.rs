//! Training on the CPU without burn's autodiff. burn's CPU backend records every tensor
//! operation of a step and replays it backwards, converting layouts and making a pass over
//! memory per operation (measured: 3.3× PyTorch's step time on the small network;
//! BENCHMARKS.md).
//! [`CpuTrainer`] runs every backbone cryoprune builds (the small network, ResNet-18/34/50,
//! EfficientNet-Lite0, Topaz's ResNet16) and the multi-loss head as a graph of layers that keep
//! what their backward needs: convolutions as im2col and matrix products (the inference path's,
//! in `FusedConv`) or, depthwise, as direct loops; the input gradient as convolutions of the
//! output gradient with the flipped weights, one per stride phase so that strided layers spend
//! nothing on zeros; batch norm with batch statistics, or a bias; residual sums, cropped
//! shortcuts and max pools that remember their winners; SGD fused into one pass per parameter.
//! burn stays the reference (the tests compare every parameter after two steps) and the path
//! for every other device.
//!
//! Every reduction runs in an order fixed by the data, never by the thread pool, so a seeded run
//! gives the same weights bit for bit on any number of threads.

use std::mem::MaybeUninit;

use burn::module::{Param, RunningState};
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Linear};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::SgdConfig;
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

use crate::classifier::{Backbone, Classifier};
use crate::efficientnet::{EfficientNetLite0, MbConv};
use crate::infer::conv::{floats, Act, FusedConv, Pad};
use crate::infer::net::crop;
use crate::infer::net::linear;
use crate::infer::pool::{global_average, max_pool_backward, MaxPool};
use crate::infer::{vectorized, Maps};
use crate::layers::ConvBn;
use crate::picker::PickerNet;
use crate::resnet::{Block, Downsample, ResNet};
use crate::small::SmallNet;
use crate::topaz::TopazResNet16;

/// One SGD step's settings: momentum with dampening 0, weight decay added to the gradient (as
/// burn's and PyTorch's SGD).
#[derive(Debug, Clone, Copy)]
pub struct SgdStep {
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
}

impl SgdStep {
    /// burn's SGD with the same momentum and weight decay (the rate is given at each step): the
    /// optimiser of every network the CPU path does not train, and its reference.
    pub fn burn(&self) -> SgdConfig {
        SgdConfig::new()
            .with_momentum(Some(MomentumConfig {
                momentum: self.momentum,
                dampening: 0.0,
                nesterov: false,
            }))
            .with_weight_decay((self.weight_decay > 0.0).then_some(WeightDecayConfig {
                penalty: self.weight_decay as f32,
            }))
    }
}

/// The weighted multi-branch loss a step minimises: Σ_b w_b · loss(branch b).
#[derive(Debug, Clone, Copy)]
pub struct Loss<'a> {
    /// Per class. For [`Targets::Classes`] the weight of each class in the cross-entropy
    /// (PyTorch's `weight`); for [`Targets::Labels`] the weight of each label's positives in
    /// its binary cross-entropy (PyTorch's `pos_weight`), which lifts a rare label.
    pub class_weights: &'a [f32],
    /// Per head branch.
    pub branch_weights: &'a [f32],
    /// Label smoothing ε: each target becomes (1 − ε)·target + ε/classes for one class per
    /// image, (1 − ε)·target + ε/2 for each label's yes/no. 0 is the plain loss.
    pub smoothing: f32,
}

impl Loss<'_> {
    /// The smoothed target of class `j` for an image of class `y`, of `classes`: without
    /// smoothing exactly 1 and 0.
    pub fn class_target(&self, j: usize, y: usize, classes: usize) -> f32 {
        let off = self.smoothing / classes as f32;
        if j == y {
            1.0 - self.smoothing + off
        } else {
            off
        }
    }

    /// The smoothed target of one label's yes (1) or no (0): without smoothing `y` itself.
    pub fn label_target(&self, y: f32) -> f32 {
        y * (1.0 - self.smoothing) + self.smoothing / 2.0
    }
}

/// What each image of a batch should be called.
#[derive(Debug, Clone, Copy)]
pub enum Targets<'a> {
    /// One class per image: softmax cross-entropy, Σ w_y·(−log p_y) / Σ w_y.
    Classes(&'a [usize]),
    /// Any number of labels per image, [n, labels] flattened, 1 for a label the image carries
    /// and 0 for one it does not: binary cross-entropy on each label's sigmoid, averaged over
    /// every image and label (PyTorch's `BCEWithLogitsLoss` with `pos_weight`).
    Labels(&'a [f32]),
}

impl Targets<'_> {
    pub fn len(&self, classes: usize) -> usize {
        match self {
            Targets::Classes(c) => c.len(),
            Targets::Labels(l) => l.len() / classes.max(1),
        }
    }

    /// `scale` times `loss`'s loss of one branch's logits ([n, classes] flattened), and its
    /// gradient with respect to them. (The scale enters each term first, so a single-label step
    /// rounds as it always has and a pretraining run still reproduces its weights.)
    pub fn loss(&self, logits: &[f32], classes: usize, loss: &Loss, scale: f32) -> (f32, Vec<f32>) {
        let class_weights = loss.class_weights;
        let mut d_logits = vec![0.0; logits.len()];
        let mut value = 0.0;
        match *self {
            Targets::Classes(labels) => {
                let total: f32 = labels.iter().map(|&l| class_weights[l]).sum();
                for ((row, d), &y) in logits
                    .chunks_exact(classes)
                    .zip(d_logits.chunks_exact_mut(classes))
                    .zip(labels)
                {
                    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                    let sum: f32 = row.iter().map(|&v| (v - max).exp()).sum();
                    let log_norm = max + sum.ln();
                    let share = scale * (class_weights[y] / total);
                    // Without smoothing the terms off the label are exact zeros: the sum is the
                    // plain loss to the last bit.
                    let target = |j: usize| loss.class_target(j, y, classes);
                    value += share
                        * row
                            .iter()
                            .enumerate()
                            .map(|(j, &v)| target(j) * (log_norm - v))
                            .sum::<f32>();
                    for (j, (d, &v)) in d.iter_mut().zip(row).enumerate() {
                        *d = share * ((v - log_norm).exp() - target(j));
                    }
                }
            }
            Targets::Labels(targets) => {
                let count = logits.len().max(1) as f32 / scale;
                for (j, ((&x, &y), d)) in logits
                    .iter()
                    .zip(targets)
                    .zip(d_logits.iter_mut())
                    .enumerate()
                {
                    let y = loss.label_target(y);
                    let w = class_weights[j % classes];
                    // log σ(x) and log(1 − σ(x)) = log σ(−x), without overflow for any x.
                    let log_sig = |v: f32| -((-v).max(0.0) + (-v.abs()).exp().ln_1p());
                    value -= (w * y * log_sig(x) + (1.0 - y) * log_sig(-x)) / count;
                    let p = 1.0 / (1.0 + (-x).exp());
                    *d = (p * (w * y + 1.0 - y) - w * y) / count;
                }
            }
        }
        (value, d_logits)
    }
}

/// What a step reports.
pub struct StepOutput {
    pub loss: f32,
    /// Branch 1's logits, [n, classes] flattened (the picker's: [n, h, w]).
    pub logits: Vec<f32>,
}

struct Weights {
    value: Vec<f32>,
    grad: Vec<f32>,
    velocity: Option<Vec<f32>>,
}

impl Weights {
    fn new(value: Vec<f32>) -> Self {
        let grad = vec![0.0; value.len()];
        Self {
            value,
            grad,
            velocity: None,
        }
    }

    /// grad += decay·value; velocity = momentum·velocity + grad (grad alone on the first step);
    /// value -= lr·velocity.
    fn step(&mut self, sgd: &SgdStep) {
        let (lr, decay, momentum) = (sgd.lr as f32, sgd.weight_decay as f32, sgd.momentum as f32);
        let first = self.velocity.is_none();
        let velocity = self
            .velocity
            .get_or_insert_with(|| vec![0.0; self.value.len()]);
        for ((v, g), m) in self.value.iter_mut().zip(&self.grad).zip(velocity) {
            let g = *v * decay + *g;
            *m = if first { g } else { g + *m * momentum };
            *v -= *m * lr;
        }
    }

    /// `param` with these values, its id and shape kept.
    fn write<const D: usize>(&self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|t| {
            let shape = t.shape();
            Tensor::from_data(TensorData::new(self.value.clone(), shape), &t.device())
        })
    }
}

/// A convolution (dense or depthwise), batch norm on the batch's statistics or a bias, an
/// optional residual sum and an activation: the layer every network the CPU path trains is made
/// of.
struct ConvLayer {
    /// The convolution's geometry (channels, kernel, stride, groups, padding); the current
    /// weights are lent to it for each pass.
    conv: FusedConv,
    act: Act,
    weight: Weights,
    norm: Norm,
}

/// What follows a layer's convolution, before the residual sum and the activation.
enum Norm {
    Batch(BatchNormState),
    /// A bias per output channel (Topaz's convolutions), or nothing (a projection).
    Bias(Option<Weights>),
}

/// Batch norm's parameters and running statistics.
struct BatchNormState {
    gamma: Weights,
    beta: Weights,
    running_mean: Vec<f32>,
    running_var: Vec<f32>,
    eps: f64,
    momentum: f64,
}

/// What a [`ConvLayer`]'s backward needs from its forward.
struct Saved {
    /// The normalised convolution output (with batch norm).
    xhat: Option<Maps>,
    /// 1/√(var + eps) per channel.
    inv_std: Vec<f32>,
    /// The layer's output (after the residual sum and the activation).
    out: Maps,
}

/// One axis of one phase of a strided convolution's input gradient (see
/// [`ConvLayer::input_grad`]): the kernel taps that reach inputs at `r + stride·i`, in the order
/// of the output gradient rows they read, and the padding that makes a stride-1 correlation read
/// them.
struct Phase {
    taps: Vec<usize>,
    before: usize,
    after: usize,
    /// Inputs of this phase along the axis.
    count: usize,
}

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
fn moments(row: &[f32]) -> (f64, f64) {
    lane_sums(row, row, |v, _| (v, v.map(|v| v * v)))
}

/// (Σd·x, Σd).
#[inline(always)]
fn dot_and_sum(d: &[f32], x: &[f32]) -> (f64, f64) {
    lane_sums(d, x, |d, x| (std::array::from_fn(|l| d[l] * x[l]), d))
}

/// Σd.
#[inline(always)]
fn sum(d: &[f32]) -> f64 {
    lane_sums(d, d, |d, _| (d, [0.0; LANES])).0
}

/// Zeroes the gradient `d` where `clamped(v)` is true of the matching `v` (the activation's
/// output, or its input recomputed), as selects, not branches: the mask is as good as random,
/// and a mispredicted branch per element costs more than the pass.
#[inline(always)]
fn mask(d: &mut [f32], v: &[f32], clamped: impl Fn(f32) -> bool) {
    for (d, &v) in d.iter_mut().zip(v) {
        *d = if clamped(v) { 0.0 } else { *d };
    }
}

/// `row` normalised in place, (x − mean)·inv, and act(γx̂ + β [+ residual]) written to `dst`
/// (every element; it need not hold anything before); one loop per activation so that none
/// decides per element.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn normalize(
    row: &mut [f32],
    dst: &mut [MaybeUninit<f32>],
    residual: Option<&[f32]>,
    (mean, inv): (f32, f32),
    (g, b): (f32, f32),
    act: Act,
) {
    #[inline(always)]
    fn with(
        row: &mut [f32],
        dst: &mut [MaybeUninit<f32>],
        residual: Option<&[f32]>,
        (mean, inv, g, b): (f32, f32, f32, f32),
        f: impl Fn(f32) -> f32,
    ) {
        match residual {
            Some(res) => {
                for ((v, o), &add) in row.iter_mut().zip(dst).zip(res) {
                    *v = (*v - mean) * inv;
                    o.write(f(*v * g + b + add));
                }
            }
            None => {
                for (v, o) in row.iter_mut().zip(dst) {
                    *v = (*v - mean) * inv;
                    o.write(f(*v * g + b));
                }
            }
        }
    }
    let k = (mean, inv, g, b);
    match act {
        Act::None => with(row, dst, residual, k, |v| v),
        Act::Relu => with(row, dst, residual, k, |v| Act::Relu.apply(v)),
        Act::Relu6 => with(row, dst, residual, k, |v| Act::Relu6.apply(v)),
    }
}

/// The phases of one axis for a convolution of `kernel` taps, `stride` and `before` padding from
/// `size` inputs to `outputs`; None when a phase would need negative padding.
fn phases(
    kernel: usize,
    stride: usize,
    before: usize,
    size: usize,
    outputs: usize,
) -> Option<Vec<Phase>> {
    (0..stride)
        .map(|r| {
            // Output o reads input o·stride + k − before, so input r + stride·i gets tap k from
            // output i + (r + before − k)/stride whenever that divides.
            let taps: Vec<usize> = (0..kernel)
                .rev()
                .filter(|&k| (r + before).abs_diff(k) % stride == 0)
                .collect();
            let count = size.saturating_sub(r).div_ceil(stride);
            let Some(&first) = taps.first() else {
                return Some(Phase {
                    taps,
                    before: 0,
                    after: 0,
                    count,
                });
            };
            // The first tap reads output i − lead.
            let lead = first.checked_sub(r + before)? / stride;
            let after = (count + taps.len() - 1).saturating_sub(outputs + lead);
            Some(Phase {
                taps,
                before: lead,
                after,
                count,
            })
        })
        .collect()
}

impl ConvLayer {
    /// None for a convolution the CPU path does not train (grouped but not depthwise, dilated,
    /// biased before a batch norm, or strided in a way whose input gradient needs cropping).
    fn new(conv: &Conv2d, bn: Option<&BatchNorm>, act: Act) -> Option<Self> {
        let [c_out, per_group, kh, kw] = conv.weight.val().dims();
        let groups = conv.groups;
        let c_in = per_group * groups;
        let pad = match conv.padding {
            burn::nn::PaddingConfig2d::Explicit(top, left, bottom, right) => {
                Pad::Fixed([top, bottom, left, right])
            }
            burn::nn::PaddingConfig2d::Valid => Pad::Fixed([0; 4]),
            burn::nn::PaddingConfig2d::Same => Pad::Same,
        };
        let shape = groups == 1 || (groups == c_in && groups == c_out);
        let plain = shape && conv.dilation == [1, 1] && !(bn.is_some() && conv.bias.is_some());
        let weight = floats(conv.weight.val());
        let norm = match bn {
            Some(bn) => Norm::Batch(BatchNormState {
                gamma: Weights::new(floats(bn.gamma.val())),
                beta: Weights::new(floats(bn.beta.val())),
                running_mean: floats(bn.running_mean.value()),
                running_var: floats(bn.running_var.value()),
                eps: bn.epsilon,
                momentum: bn.momentum,
            }),
            None => Norm::Bias(conv.bias.as_ref().map(|b| Weights::new(floats(b.val())))),
        };
        let layer = Self {
            conv: FusedConv::training(
                [c_in, c_out],
                [kh, kw],
                conv.stride,
                pad,
                groups,
                weight.clone(),
            ),
            act,
            weight: Weights::new(weight),
            norm,
        };
        (plain && layer.transposable()).then_some(layer)
    }

    fn from_conv_bn(c: &ConvBn, act: Act) -> Option<Self> {
        Self::new(&c.conv, Some(&c.bn), act)
    }

    /// Whether every phase of the input gradient is a convolution with non-negative padding,
    /// for inputs of any size ("same" padding depends on the size's remainder by the stride).
    fn transposable(&self) -> bool {
        let [sy, sx] = self.conv.stride;
        (sy.max(sx)..3 * sy.max(sx)).all(|size| {
            let pad = self.conv.padding(size, size);
            phases(self.conv.kernel[0], sy, pad[0], size, 1).is_some()
                && phases(self.conv.kernel[1], sx, pad[2], size, 1).is_some()
        })
    }

    /// `f` of the convolution holding the current weights.
    fn with_conv<R>(&mut self, f: impl FnOnce(&FusedConv) -> R) -> R {
        self.conv.swap_weight(&mut self.weight.value);
        let r = f(&self.conv);
        self.conv.swap_weight(&mut self.weight.value);
        r
    }

    /// The gradient at the input (`h` × `w` maps) from `dy` at the convolution's output. Input
    /// pixels of one phase (row r + stride·i, column q + stride·j) are reached by a fixed subset
    /// of the kernel's taps, so each phase's gradient is a stride-1 convolution of `dy` with
    /// those taps turned by 180° and channels transposed; the phases are interleaved. No work is
    /// spent on the zeros a dilated output gradient would hold; with stride 1 there is one phase
    /// and it is the whole gradient.
    fn input_grad(&self, dy: &Maps, h: usize, w: usize) -> Maps {
        let [kh, kw] = self.conv.kernel;
        let [sy, sx] = self.conv.stride;
        let pad = self.conv.padding(h, w);
        let rows = phases(kh, sy, pad[0], h, dy.h).expect("checked when built");
        let cols = phases(kw, sx, pad[2], w, dy.w).expect("checked when built");
        // A depthwise layer's input gradient is depthwise too: channel c from channel c alone.
        let (per_out, per_in) = if self.conv.groups > 1 {
            (1, 1)
        } else {
            (self.conv.c_out, self.conv.c_in)
        };
        let mut dx: Option<Maps> = None;
        for (r, row) in rows.iter().enumerate() {
            for (q, col) in cols.iter().enumerate() {
                if row.taps.is_empty() || col.taps.is_empty() || row.count * col.count == 0 {
                    continue;
                }
                let (th, tw) = (row.taps.len(), col.taps.len());
                let t = th * tw;
                let len = self.conv.c_in * per_out * t;
                let mut weight = Vec::with_capacity(len);
                // The phase's taps as offsets into one filter, in the order they are written.
                let taps: Vec<usize> = row
                    .taps
                    .iter()
                    .flat_map(|&ky| col.taps.iter().map(move |&kx| ky * kw + kx))
                    .collect();
                // A transpose of the weights (output and input channels swapped): in blocks of
                // input and output channels, so that neither the reads nor the writes stride
                // through memory one channel at a time (ResNet-18's 512-channel layers made
                // that a cache miss per tap), and in parallel over input channels. Written
                // into unzeroed memory: the blocks cover every element.
                const IN_BLOCK: usize = 16;
                const OUT_BLOCK: usize = 64;
                weight.spare_capacity_mut()[..len]
                    .par_chunks_mut(IN_BLOCK * per_out * t)
                    .enumerate()
                    .for_each(|(ib, rows)| {
                        for o0 in (0..per_out).step_by(OUT_BLOCK) {
                            for (ii, block) in rows.chunks_exact_mut(per_out * t).enumerate() {
                                let i = ib * IN_BLOCK + ii;
                                for o in o0..(o0 + OUT_BLOCK).min(per_out) {
                                    let from = if self.conv.groups > 1 { i } else { o };
                                    let src = &self.weight.value
                                        [(from * per_in + i % per_in) * kh * kw..][..kh * kw];
                                    for (d, &tap) in block[o * t..(o + 1) * t].iter_mut().zip(&taps)
                                    {
                                        d.write(src[tap]);
                                    }
                                }
                            }
                        }
                    });
                // SAFETY: the chunks cover all `len` elements, and each was written above.
                unsafe { weight.set_len(len) };
                let pad = [row.before, row.after, col.before, col.after];
                let conv = FusedConv::training(
                    [self.conv.c_out, self.conv.c_in],
                    [th, tw],
                    [1, 1],
                    Pad::Fixed(pad),
                    self.conv.groups,
                    weight,
                );
                let part = conv.forward(dy, None);
                if (sy, sx, part.h, part.w) == (1, 1, h, w) {
                    return part;
                }
                dx.get_or_insert_with(|| Maps::zeros(self.conv.c_in, dy.n, h, w))
                    .data
                    .par_chunks_exact_mut(h * w)
                    .zip(part.data.par_chunks_exact(part.h * part.w))
                    .for_each(|(dst, src)| {
                        for i in 0..row.count {
                            let src = &src[i * part.w..][..col.count];
                            let dst = &mut dst[(r + sy * i) * w..][..w];
                            for (j, &v) in src.iter().enumerate() {
                                dst[q + sx * j] = v;
                            }
                        }
                    });
            }
        }
        dx.unwrap_or_else(|| Maps::zeros(self.conv.c_in, dy.n, h, w))
    }

    /// In training mode batch norm uses the batch's statistics and moves its running ones;
    /// otherwise (a frozen layer, as burn runs one) it uses the running statistics. `residual`
    /// is added before the activation.
    fn forward(&mut self, x: &Maps, residual: Option<&Maps>, training: bool) -> Saved {
        let mut z = self.with_conv(|c| c.forward(x, None));
        let m = z.plane_all();
        let act = self.act;
        let bn = match &mut self.norm {
            Norm::Batch(bn) => bn,
            Norm::Bias(bias) => {
                // act(z + b [+ residual]) in place: backward needs only the output.
                z.data
                    .par_chunks_exact_mut(m)
                    .enumerate()
                    .for_each(|(c, row)| {
                        let b = bias.as_ref().map_or(0.0, |b| b.value[c]);
                        let res = residual.map(|r| &r.data[c * m..(c + 1) * m]);
                        for (i, v) in row.iter_mut().enumerate() {
                            *v = act.apply(*v + b + res.map_or(0.0, |r| r[i]));
                        }
                    });
                return Saved {
                    xhat: None,
                    inv_std: Vec::new(),
                    out: z,
                };
            }
        };
        let (mean, inv_std): (Vec<f32>, Vec<f32>) = if training {
            // One pass in f64 (Σv, Σv²): the variance loses nothing a float would keep, and the
            // map is read once instead of twice.
            let stats: Vec<(f32, f32)> = z
                .data
                .par_chunks_exact(m)
                .map(|row| {
                    let (sum, squares) = vectorized(
                        #[inline(always)]
                        || moments(row),
                    );
                    let mean = sum / m as f64;
                    (
                        (mean) as f32,
                        (squares / m as f64 - mean * mean).max(0.0) as f32,
                    )
                })
                .collect();
            let keep = (1.0 - bn.momentum) as f32;
            let take = bn.momentum as f32;
            for (c, &(mean, var)) in stats.iter().enumerate() {
                bn.running_mean[c] = bn.running_mean[c] * keep + mean * take;
                bn.running_var[c] = bn.running_var[c] * keep + var * take;
            }
            stats
                .iter()
                .map(|&(mean, var)| (mean, (1.0 / (var as f64 + bn.eps).sqrt()) as f32))
                .unzip()
        } else {
            let inv_std = bn
                .running_var
                .iter()
                .map(|&v| (1.0 / (v as f64 + bn.eps).sqrt()) as f32)
                .collect();
            (bn.running_mean.clone(), inv_std)
        };
        // Normalise in place and write act(γx̂ + β [+ residual]) beside it, in one pass; the
        // output is not zeroed first (another pass over the largest maps).
        let mut data = Vec::with_capacity(z.data.len());
        let bn = &*bn;
        z.data
            .par_chunks_exact_mut(m)
            .zip(data.spare_capacity_mut().par_chunks_exact_mut(m))
            .enumerate()
            .for_each(|(c, (row, dst))| {
                let res = residual.map(|r| &r.data[c * m..(c + 1) * m]);
                let stats = (mean[c], inv_std[c]);
                let affine = (bn.gamma.value[c], bn.beta.value[c]);
                vectorized(
                    #[inline(always)]
                    || normalize(row, dst, res, stats, affine, act),
                )
            });
        // SAFETY: the chunks cover all z.data.len() elements, and `normalize` wrote each.
        unsafe { data.set_len(z.data.len()) };
        let out = Maps { data, ..z };
        Saved {
            xhat: Some(z),
            inv_std,
            out,
        }
    }

    /// Sets this layer's gradients from the gradient at its output; returns the gradient at its
    /// input `x` when asked, and at its residual when it had one.
    fn backward(
        &mut self,
        x: &Maps,
        saved: &Saved,
        mut dy: Maps,
        want_dx: bool,
        residual: bool,
    ) -> (Option<Maps>, Option<Maps>) {
        let m = dy.plane_all();
        let act = self.act;
        // The activation passes the gradient where its output is not clamped; the same pass
        // sums what the norm's gradients need: (Σd·x̂, Σd) with batch norm, (0, Σd) without.
        let sums: Vec<(f32, f32)> = dy
            .data
            .par_chunks_exact_mut(m)
            .enumerate()
            .map(|(c, d)| {
                let out = &saved.out.data[c * m..(c + 1) * m];
                let xhat = saved.xhat.as_ref().map(|x| &x.data[c * m..(c + 1) * m]);
                // Without a residual the activation's input is γx̂ + β, recomputed bit for bit
                // from x̂, so the mask needs no pass over the output.
                let affine = match (&self.norm, xhat) {
                    (Norm::Batch(bn), Some(xhat)) if !residual => {
                        Some((bn.gamma.value[c], bn.beta.value[c], xhat))
                    }
                    _ => None,
                };
                let (dgamma, dbeta) = vectorized(
                    #[inline(always)]
                    || {
                        match (act, affine) {
                            (Act::None, _) => {}
                            (Act::Relu, Some((g, b, x))) => mask(d, x, |x| x * g + b <= 0.0),
                            (Act::Relu6, Some((g, b, x))) => mask(d, x, |x| {
                                let v = x * g + b;
                                v <= 0.0 || v >= 6.0
                            }),
                            (Act::Relu, None) => mask(d, out, |o| o <= 0.0),
                            (Act::Relu6, None) => mask(d, out, |o| o <= 0.0 || o >= 6.0),
                        }
                        match xhat {
                            Some(xhat) => dot_and_sum(d, xhat),
                            None => (0.0, sum(d)),
                        }
                    },
                );
                (dgamma as f32, dbeta as f32)
            })
            .collect();
        let d_residual = residual.then(|| dy.clone());
        match (&mut self.norm, &saved.xhat) {
            (Norm::Batch(bn), Some(xhat)) => {
                // dz = γ/(σ·m) · (m·dy − Σdy − x̂·Σ(dy·x̂)), the batch-norm input gradient.
                dy.data
                    .par_chunks_exact_mut(m)
                    .zip(xhat.data.par_chunks_exact(m))
                    .enumerate()
                    .for_each(|(c, (d, xhat))| {
                        let (dgamma, dbeta) = sums[c];
                        let scale = bn.gamma.value[c] * saved.inv_std[c] / m as f32;
                        vectorized(
                            #[inline(always)]
                            || {
                                for (d, &xh) in d.iter_mut().zip(xhat) {
                                    *d = scale * (m as f32 * *d - dbeta - xh * dgamma);
                                }
                            },
                        )
                    });
                bn.gamma.grad = sums.iter().map(|s| s.0).collect();
                bn.beta.grad = sums.iter().map(|s| s.1).collect();
            }
            (Norm::Bias(Some(bias)), _) => bias.grad = sums.iter().map(|s| s.1).collect(),
            _ => {}
        }
        self.weight.grad = self.with_conv(|c| c.weight_grad(x, &dy));
        let dx = want_dx.then(|| self.input_grad(&dy, x.h, x.w));
        (dx, d_residual)
    }

    fn weights(&mut self) -> Vec<&mut Weights> {
        let mut all = vec![&mut self.weight];
        match &mut self.norm {
            Norm::Batch(bn) => all.extend([&mut bn.gamma, &mut bn.beta]),
            Norm::Bias(bias) => all.extend(bias.as_mut()),
        }
        all
    }

    /// `conv` with the trained weights (and bias, where the layer has one).
    fn write_conv(&self, mut conv: Conv2d) -> Conv2d {
        conv.weight = self.weight.write(conv.weight);
        if let Norm::Bias(Some(b)) = &self.norm {
            conv.bias = conv.bias.map(|p| b.write(p));
        }
        conv
    }

    fn write(&self, conv: Conv2d, bn: BatchNorm) -> (Conv2d, BatchNorm) {
        let Norm::Batch(state) = &self.norm else {
            panic!("a layer built without its batch norm written with one");
        };
        let mut bn = bn;
        bn.gamma = state.gamma.write(bn.gamma);
        bn.beta = state.beta.write(bn.beta);
        let device = bn.running_mean.value().device();
        let fresh = |values: &[f32]| {
            RunningState::new(Tensor::from_data(
                TensorData::new(values.to_vec(), [self.conv.c_out]),
                &device,
            ))
        };
        // New states rather than an update of the old: burn's clones of a module share its
        // running states, so updating them would change every network kept from an earlier
        // epoch (the picker's best epoch was saved with the last epoch's statistics).
        bn.running_mean = fresh(&state.running_mean);
        bn.running_var = fresh(&state.running_var);
        (self.write_conv(conv), bn)
    }

    fn write_conv_bn(&self, c: ConvBn) -> ConvBn {
        let (conv, bn) = self.write(c.conv, c.bn);
        ConvBn { conv, bn }
    }
}

/// A fully connected layer; burn stores the weight as [inputs, outputs].
struct Dense {
    inputs: usize,
    outputs: usize,
    weight: Weights,
    bias: Weights,
}

impl Dense {
    fn new(l: &Linear) -> Option<Self> {
        let [inputs, outputs] = l.weight.val().dims();
        Some(Self {
            inputs,
            outputs,
            weight: Weights::new(floats(l.weight.val())),
            bias: Weights::new(floats(l.bias.as_ref()?.val())),
        })
    }

    /// x [n, inputs] -> [n, outputs].
    fn forward(&self, x: &[f32]) -> Vec<f32> {
        x.chunks_exact(self.inputs)
            .flat_map(|row| linear(&self.weight.value, &self.bias.value, row))
            .collect()
    }

    /// Sets the gradients from dy [n, outputs] at input x; returns dx [n, inputs].
    fn backward(&mut self, x: &[f32], dy: &[f32]) -> Vec<f32> {
        let (i_n, o_n) = (self.inputs, self.outputs);
        self.weight.grad.fill(0.0);
        self.bias.grad.fill(0.0);
        let mut dx = vec![0.0; x.len()];
        for ((xr, dr), dxr) in x
            .chunks_exact(i_n)
            .zip(dy.chunks_exact(o_n))
            .zip(dx.chunks_exact_mut(i_n))
        {
            self.bias
                .grad
                .iter_mut()
                .zip(dr)
                .for_each(|(g, &d)| *g += d);
            for ((&xi, g), (w, dxi)) in xr
                .iter()
                .zip(self.weight.grad.chunks_exact_mut(o_n))
                .zip(self.weight.value.chunks_exact(o_n).zip(dxr.iter_mut()))
            {
                g.iter_mut().zip(dr).for_each(|(g, &d)| *g += xi * d);
                *dxi = w.iter().zip(dr).map(|(&w, &d)| w * d).sum();
            }
        }
        dx
    }

    fn write(&self, l: Linear) -> Linear {
        let Linear { weight, bias } = l;
        Linear {
            weight: self.weight.write(weight),
            bias: bias.map(|b| self.bias.write(b)),
        }
    }
}

/// The gradient of [`global_average`]: each map's share of dy [n, c], spread over its pixels.
fn global_average_backward(dy: &[f32], like: &Maps) -> Maps {
    let mut dx = Maps::zeros(like.c, like.n, like.h, like.w);
    let pixels = (like.h * like.w) as f32;
    for (i, plane) in dx.data.chunks_exact_mut(like.h * like.w).enumerate() {
        plane.fill(dy[(i % like.n) * like.c + i / like.n] / pixels);
    }
    dx
}

/// One step of a backbone: a layer or the max pool, reading nodes of the graph (node 0 is the
/// input images, node i + 1 the output of op i).
#[derive(Debug, Clone, Copy)]
enum Op {
    /// `layers[layer]` on node `input`, with node `residual` added before its activation.
    Conv {
        layer: usize,
        input: usize,
        residual: Option<usize>,
    },
    Pool {
        input: usize,
    },
    /// Node `input` less `edge` pixels on every side, every `stride`-th row and column of the
    /// rest: the shortcut of Topaz's unpadded blocks.
    Crop {
        input: usize,
        edge: usize,
        stride: usize,
    },
}

/// What an op's forward kept: a layer's saved state, the pooled maps with their winners, or the
/// cropped maps.
enum Record {
    Conv(Saved),
    Pool(Maps, Vec<u32>),
    Crop(Maps),
}

impl Record {
    fn out(&self) -> &Maps {
        match self {
            Record::Conv(s) => &s.out,
            Record::Pool(m, _) | Record::Crop(m) => m,
        }
    }
}

/// The gradient of [`crop`] at its input (shaped `like`): each kept pixel's gradient goes back
/// to where it was taken from, the rest is zero.
fn crop_backward(dy: &Maps, like: &Maps, edge: usize, stride: usize) -> Maps {
    let mut dx = Maps::zeros(like.c, like.n, like.h, like.w);
    dx.data
        .par_chunks_exact_mut(like.h * like.w)
        .zip(dy.data.par_chunks_exact(dy.h * dy.w))
        .for_each(|(plane, d)| {
            for (i, row) in d.chunks_exact(dy.w).enumerate() {
                let dst = &mut plane[(edge + i * stride) * like.w + edge..];
                for (j, &v) in row.iter().enumerate() {
                    dst[j * stride] = v;
                }
            }
        });
    dx
}

/// A backbone as a graph of [`ConvLayer`] layers, crops and at most one kind of max pool: a
/// chain for the small network, blocks with shortcuts for the others.
struct Body {
    layers: Vec<ConvLayer>,
    ops: Vec<Op>,
    pool: Option<MaxPool>,
    /// Layers `..frozen` (a prefix, in the order built) keep their weights: no gradient is
    /// computed for them or through them, and the step leaves them as they are.
    frozen: usize,
}

fn node<'a>(i: usize, images: &'a Maps, records: &'a [Record]) -> &'a Maps {
    i.checked_sub(1).map_or(images, |p| records[p].out())
}

/// Adds `g` into the gradient gathered at a node so far.
fn accumulate(slot: &mut Option<Maps>, g: Maps) {
    match slot {
        Some(sum) => sum.data.iter_mut().zip(&g.data).for_each(|(a, &b)| *a += b),
        None => *slot = Some(g),
    }
}

impl Body {
    fn small(net: &SmallNet) -> Option<Self> {
        let mut body = Self::empty(Some(MaxPool::new(&net.pool)));
        let last = net.stages.len() - 1;
        for (i, stage) in net.stages.iter().enumerate() {
            body.conv(ConvLayer::from_conv_bn(&stage.a, Act::Relu)?, None);
            body.conv(ConvLayer::from_conv_bn(&stage.b, Act::Relu)?, None);
            if i < last {
                body.push(Op::Pool {
                    input: body.ops.len(),
                });
            }
        }
        Some(body)
    }

    fn resnet(net: &ResNet) -> Option<Self> {
        let mut body = Self::empty(Some(MaxPool::new(&net.maxpool)));
        body.conv(ConvLayer::new(&net.conv1, Some(&net.bn1), Act::Relu)?, None);
        body.push(Op::Pool {
            input: body.ops.len(),
        });
        for block in resnet_blocks(net) {
            let x = body.ops.len();
            let identity = match &block.downsample {
                Some(d) => body.conv(ConvLayer::new(&d.conv, Some(&d.bn), Act::None)?, None),
                None => x,
            };
            body.conv_on(
                ConvLayer::new(&block.conv1, Some(&block.bn1), Act::Relu)?,
                x,
                None,
            );
            match (&block.conv3, &block.bn3) {
                (Some(conv3), Some(bn3)) => {
                    body.conv(
                        ConvLayer::new(&block.conv2, Some(&block.bn2), Act::Relu)?,
                        None,
                    );
                    body.conv(ConvLayer::new(conv3, Some(bn3), Act::Relu)?, Some(identity));
                }
                _ => {
                    body.conv(
                        ConvLayer::new(&block.conv2, Some(&block.bn2), Act::Relu)?,
                        Some(identity),
                    );
                }
            }
        }
        Some(body)
    }

    fn efficientnet(net: &EfficientNetLite0) -> Option<Self> {
        let mut body = Self::empty(None);
        body.conv(
            ConvLayer::new(&net.conv_stem, Some(&net.bn0), Act::Relu6)?,
            None,
        );
        for block in &net.blocks {
            let x = body.ops.len();
            if let (Some(conv), Some(bn)) = (&block.expand_conv, &block.bn0) {
                body.conv(ConvLayer::new(conv, Some(bn), Act::Relu6)?, None);
            }
            body.conv(
                ConvLayer::new(&block.depthwise_conv, Some(&block.bn1), Act::Relu6)?,
                None,
            );
            let project = ConvLayer::new(&block.project_conv, Some(&block.bn2), Act::None)?;
            body.conv(project, block.skip.then_some(x));
        }
        body.conv(
            ConvLayer::new(&net.conv_head, Some(&net.bn1), Act::Relu6)?,
            None,
        );
        Some(body)
    }

    fn topaz(net: &TopazResNet16) -> Option<Self> {
        let mut body = Self::empty(None);
        body.conv(ConvLayer::new(&net.conv_in, None, Act::Relu)?, None);
        for block in &net.blocks {
            let x = body.ops.len();
            // Each unpadded 3×3 trims one pixel per side: the shortcut is cropped by two.
            let shortcut = match &block.proj {
                Some(proj) => {
                    body.push(Op::Crop {
                        input: x,
                        edge: 2,
                        stride: 1,
                    });
                    body.conv(ConvLayer::new(proj, None, Act::None)?, None)
                }
                None => body.push(Op::Crop {
                    input: x,
                    edge: 2,
                    stride: block.stride,
                }),
            };
            body.conv_on(ConvLayer::new(&block.conv0, None, Act::Relu)?, x, None);
            body.conv(
                ConvLayer::new(&block.conv1, None, Act::Relu)?,
                Some(shortcut),
            );
        }
        body.conv(ConvLayer::new(&net.conv_out, None, Act::Relu)?, None);
        Some(body)
    }

    /// The deep picker: a chain ending in its 1×1 log-odds layer.
    fn picker(net: &PickerNet) -> Option<Self> {
        let mut body = Self::empty(Some(MaxPool::new(&net.pool)));
        for c in &net.early {
            body.conv(ConvLayer::from_conv_bn(c, Act::Relu)?, None);
        }
        for stage in std::iter::once(&net.late).chain(&net.deeper) {
            body.push(Op::Pool {
                input: body.ops.len(),
            });
            for c in stage {
                body.conv(ConvLayer::from_conv_bn(c, Act::Relu)?, None);
            }
        }
        body.conv(ConvLayer::new(&net.out, None, Act::None)?, None);
        Some(body)
    }

    fn empty(pool: Option<MaxPool>) -> Self {
        Self {
            layers: Vec::new(),
            ops: Vec::new(),
            pool,
            frozen: 0,
        }
    }

    /// The weights the step updates: every layer's but the frozen prefix's.
    fn trainable(&mut self) -> impl Iterator<Item = &mut Weights> {
        self.layers
            .iter_mut()
            .skip(self.frozen)
            .flat_map(|l| l.weights())
    }

    /// Appends `op`; returns its output's node.
    fn push(&mut self, op: Op) -> usize {
        self.ops.push(op);
        self.ops.len()
    }

    /// Appends `layer` on the last node; returns its output's node.
    fn conv(&mut self, layer: ConvLayer, residual: Option<usize>) -> usize {
        self.conv_on(layer, self.ops.len(), residual)
    }

    fn conv_on(&mut self, layer: ConvLayer, input: usize, residual: Option<usize>) -> usize {
        self.ops.push(Op::Conv {
            layer: self.layers.len(),
            input,
            residual,
        });
        self.layers.push(layer);
        self.ops.len()
    }

    fn forward(&mut self, images: &Maps, training: bool) -> Vec<Record> {
        let mut records: Vec<Record> = Vec::with_capacity(self.ops.len());
        for &op in &self.ops {
            let record = match op {
                Op::Conv {
                    layer,
                    input,
                    residual,
                } => {
                    let x = node(input, images, &records);
                    let r = residual.map(|r| node(r, images, &records));
                    Record::Conv(self.layers[layer].forward(x, r, training))
                }
                Op::Crop {
                    input,
                    edge,
                    stride,
                } => Record::Crop(crop(node(input, images, &records), edge, stride)),
                Op::Pool { input } => {
                    let pool = self.pool.as_ref().expect("a pool op has its pool");
                    let (maps, arg) = pool.forward_with_argmax(node(input, images, &records));
                    Record::Pool(maps, arg)
                }
            };
            records.push(record);
        }
        records
    }

    /// Sets every layer's gradients from `d_features` at the last node, consuming the records.
    fn backward(&mut self, images: &Maps, mut records: Vec<Record>, d_features: Maps) {
        let mut grads: Vec<Option<Maps>> = (0..=self.ops.len()).map(|_| None).collect();
        grads[self.ops.len()] = Some(d_features);
        for i in (0..self.ops.len()).rev() {
            let record = records.pop().expect("one record per op");
            let Some(d) = grads[i + 1].take() else {
                continue;
            };
            match (self.ops[i], record) {
                (
                    Op::Conv {
                        layer,
                        input,
                        residual,
                    },
                    Record::Conv(saved),
                ) => {
                    if layer < self.frozen {
                        continue;
                    }
                    // The first trainable layer's input gradient would only reach frozen ones.
                    let want_dx = input > 0 && layer > self.frozen;
                    let x = node(input, images, &records);
                    let (dx, dr) =
                        self.layers[layer].backward(x, &saved, d, want_dx, residual.is_some());
                    if let (Some(r), Some(dr)) = (residual, dr) {
                        accumulate(&mut grads[r], dr);
                    }
                    if let Some(dx) = dx {
                        accumulate(&mut grads[input], dx);
                    }
                }
                (Op::Pool { input }, Record::Pool(_, arg)) if input > 0 => {
                    let x = node(input, images, &records);
                    accumulate(&mut grads[input], max_pool_backward(&d, &arg, x));
                }
                (
                    Op::Crop {
                        input,
                        edge,
                        stride,
                    },
                    Record::Crop(_),
                ) if input > 0 => {
                    let x = node(input, images, &records);
                    accumulate(&mut grads[input], crop_backward(&d, x, edge, stride));
                }
                _ => {}
            }
        }
    }
}

/// A ResNet's residual blocks in order.
fn resnet_blocks(net: &ResNet) -> impl Iterator<Item = &Block> {
    net.layer1
        .iter()
        .chain(&net.layer2)
        .chain(&net.layer3)
        .chain(&net.layer4)
}

/// One head branch: 1×1 bottlenecks (none for branch 1), global average, fully connected.
struct Branch {
    reduce: Vec<ConvLayer>,
    fc: Dense,
}

/// A backbone and the multi-loss head, ready to train on the CPU.
pub struct CpuTrainer {
    body: Body,
    branches: Vec<Branch>,
    classes: usize,
}

impl CpuTrainer {
    /// None when the CPU path cannot train `model` (a layer of a kind none of cryoprune's
    /// networks has, such as a dilated convolution); burn trains it then.
    pub fn new(model: &Classifier) -> Option<Self> {
        let body = match &model.backbone {
            Backbone::Small(small) => Body::small(small)?,
            Backbone::ResNet(resnet) => Body::resnet(resnet)?,
            Backbone::EfficientNet(net) => Body::efficientnet(net)?,
            Backbone::Topaz(net) => Body::topaz(net)?,
        };
        let h = &model.head;
        let mut branches = vec![Branch {
            reduce: Vec::new(),
            fc: Dense::new(&h.fc)?,
        }];
        if let (Some(r), Some(fc)) = (&h.reduce2, &h.fc2) {
            branches.push(Branch {
                reduce: vec![ConvLayer::from_conv_bn(r, Act::Relu)?],
                fc: Dense::new(fc)?,
            });
        }
        if let (Some(a), Some(b), Some(fc)) = (&h.reduce3a, &h.reduce3b, &h.fc3) {
            branches.push(Branch {
                reduce: vec![
                    ConvLayer::from_conv_bn(a, Act::Relu)?,
                    ConvLayer::from_conv_bn(b, Act::Relu)?,
                ],
                fc: Dense::new(fc)?,
            });
        }
        let classes = branches[0].fc.outputs;
        Some(Self {
            body,
            branches,
            classes,
        })
    }

    /// One SGD step on a batch of `size` × `size` images (each [channels, size, size]): forward
    /// in training mode (batch norms on the batch's statistics, which also move their running
    /// statistics), the multi-loss, backward, update. With `train_backbone` false the backbone
    /// is frozen as burn freezes a module: its batch norms use their running statistics and
    /// only the head learns (the first stage of two-stage transfer).
    pub fn step(
        &mut self,
        images: &[&[f32]],
        size: usize,
        targets: Targets,
        loss: Loss,
        sgd: &SgdStep,
        train_backbone: bool,
    ) -> StepOutput {
        let n = images.len();
        assert_eq!(targets.len(self.classes), n, "one target per image");
        let channels = crate::infer::planes(images, size);
        let images = Maps::stack(images, channels, size);
        let records = self.body.forward(&images, train_backbone);
        let features = records.last().expect("a backbone has layers").out();

        // The head: every branch's logits, the loss, and the gradient at the features.
        let mut loss_value = 0f32;
        let mut main_logits = Vec::new();
        let mut d_features = Maps::zeros(features.c, features.n, features.h, features.w);
        for (b, branch) in self.branches.iter_mut().enumerate() {
            // Each bottleneck's input is the features or the bottleneck before it.
            let mut branch_saved: Vec<Saved> = Vec::new();
            for layer in &mut branch.reduce {
                let x = branch_saved.last().map_or(features, |s| &s.out);
                let s = layer.forward(x, None, true);
                branch_saved.push(s);
            }
            let x = branch_saved.last().map_or(features, |s| &s.out);
            let pooled = global_average(x);
            let logits = branch.fc.forward(&pooled);
            let w_b = loss.branch_weights[b];
            let (branch_loss, d_logits) = targets.loss(&logits, self.classes, &loss, w_b);
            loss_value += branch_loss;
            let d_pooled = branch.fc.backward(&pooled, &d_logits);
            let mut d = global_average_backward(&d_pooled, x);
            for (i, layer) in branch.reduce.iter_mut().enumerate().rev() {
                let x = i.checked_sub(1).map_or(features, |p| &branch_saved[p].out);
                d = layer
                    .backward(x, &branch_saved[i], d, true, false)
                    .0
                    .expect("asked for dx");
            }
            d_features
                .data
                .iter_mut()
                .zip(&d.data)
                .for_each(|(a, &b)| *a += b);
            if b == 0 {
                main_logits = logits;
            }
        }

        if train_backbone {
            self.body.backward(&images, records, d_features);
        }
        let mut params: Vec<&mut Weights> = Vec::new();
        for branch in &mut self.branches {
            for layer in &mut branch.reduce {
                params.extend(layer.weights());
            }
            params.extend([&mut branch.fc.weight, &mut branch.fc.bias]);
        }
        if train_backbone {
            params.extend(self.body.trainable());
        }
        params.into_par_iter().for_each(|p| p.step(sgd));
        StepOutput {
            loss: loss_value,
            logits: main_logits,
        }
    }

    /// `model` (the network this trainer was built from, or a copy) with the trained weights
    /// and batch-norm statistics.
    pub fn write(&self, model: Classifier) -> Classifier {
        let Classifier { backbone, head } = model;
        let mut layers = self.body.layers.iter();
        let backbone = match backbone {
            Backbone::Small(mut small) => {
                small.stages = small
                    .stages
                    .into_iter()
                    .map(|mut s| {
                        s.a = next_layer(&mut layers).write_conv_bn(s.a);
                        s.b = next_layer(&mut layers).write_conv_bn(s.b);
                        s
                    })
                    .collect();
                Backbone::Small(small)
            }
            Backbone::ResNet(mut net) => {
                (net.conv1, net.bn1) = next_layer(&mut layers).write(net.conv1, net.bn1);
                for stage in [
                    &mut net.layer1,
                    &mut net.layer2,
                    &mut net.layer3,
                    &mut net.layer4,
                ] {
                    *stage = std::mem::take(stage)
                        .into_iter()
                        .map(|b| write_block(b, &mut layers))
                        .collect();
                }
                Backbone::ResNet(net)
            }
            Backbone::EfficientNet(mut net) => {
                (net.conv_stem, net.bn0) = next_layer(&mut layers).write(net.conv_stem, net.bn0);
                net.blocks = std::mem::take(&mut net.blocks)
                    .into_iter()
                    .map(|b| write_mbconv(b, &mut layers))
                    .collect();
                (net.conv_head, net.bn1) = next_layer(&mut layers).write(net.conv_head, net.bn1);
                Backbone::EfficientNet(net)
            }
            Backbone::Topaz(mut net) => {
                net.conv_in = next_layer(&mut layers).write_conv(net.conv_in);
                net.blocks = std::mem::take(&mut net.blocks)
                    .into_iter()
                    .map(|mut b| {
                        b.proj = b.proj.map(|p| next_layer(&mut layers).write_conv(p));
                        b.conv0 = next_layer(&mut layers).write_conv(b.conv0);
                        b.conv1 = next_layer(&mut layers).write_conv(b.conv1);
                        b
                    })
                    .collect();
                net.conv_out = next_layer(&mut layers).write_conv(net.conv_out);
                Backbone::Topaz(net)
            }
        };
        let mut head = head;
        let mut branches = self.branches.iter();
        let main = branches.next().expect("branch 1");
        head.fc = main.fc.write(head.fc);
        if let Some(b) = branches.next() {
            head.reduce2 = head.reduce2.map(|r| b.reduce[0].write_conv_bn(r));
            head.fc2 = head.fc2.map(|f| b.fc.write(f));
        }
        if let Some(b) = branches.next() {
            head.reduce3a = head.reduce3a.map(|r| b.reduce[0].write_conv_bn(r));
            head.reduce3b = head.reduce3b.map(|r| b.reduce[1].write_conv_bn(r));
            head.fc3 = head.fc3.map(|f| b.fc.write(f));
        }
        Classifier { backbone, head }
    }
}

/// The deep picker on the CPU: a log-odds per output pixel, trained by any loss over the pixels
/// (the caller's: a weighted cross-entropy, or a positive-unlabelled risk).
pub struct PickerTrainer {
    body: Body,
}

impl PickerTrainer {
    /// A trainer for `net` whose first `frozen_stages` stages (see
    /// [`PickerNet::stage_layers`]) keep their weights; their batch norms still follow each
    /// batch, so their statistics adapt to the micrographs.
    pub fn new(net: &PickerNet, frozen_stages: usize) -> Option<Self> {
        let mut body = Body::picker(net)?;
        body.frozen = net.stage_layers(frozen_stages);
        Some(Self { body })
    }

    /// One SGD step on `size` × `size` patches. `loss` takes the log-odds ([n, size/s, size/s]
    /// in one buffer, s the network's stride) and gives the loss and its gradient at each; the
    /// step returns the loss and the log-odds before the update.
    pub fn step(
        &mut self,
        patches: &[&[f32]],
        size: usize,
        loss: impl FnOnce(&[f32]) -> (f32, Vec<f32>),
        sgd: &SgdStep,
    ) -> StepOutput {
        let images = Maps::stack(patches, 1, size);
        let records = self.body.forward(&images, true);
        let last = records.last().expect("the picker has layers").out();
        let (n, h, w) = (last.n, last.h, last.w);
        let logits = last.data.clone();
        let (value, grad) = loss(&logits);
        assert_eq!(grad.len(), logits.len(), "one gradient per output pixel");
        let d = Maps {
            c: 1,
            n,
            h,
            w,
            data: grad,
        };
        self.body.backward(&images, records, d);
        let params: Vec<&mut Weights> = self.body.trainable().collect();
        params.into_par_iter().for_each(|p| p.step(sgd));
        StepOutput {
            loss: value,
            logits,
        }
    }

    /// `net` (the network this trainer was built from, or a copy) with the trained weights and
    /// batch-norm statistics.
    pub fn write(&self, mut net: PickerNet) -> PickerNet {
        let mut layers = self.body.layers.iter();
        net.early = std::mem::take(&mut net.early)
            .into_iter()
            .map(|c| next_layer(&mut layers).write_conv_bn(c))
            .collect();
        net.late = std::mem::take(&mut net.late)
            .into_iter()
            .map(|c| next_layer(&mut layers).write_conv_bn(c))
            .collect();
        net.deeper = std::mem::take(&mut net.deeper)
            .into_iter()
            .map(|stage| {
                stage
                    .into_iter()
                    .map(|c| next_layer(&mut layers).write_conv_bn(c))
                    .collect()
            })
            .collect();
        net.out = next_layer(&mut layers).write_conv(net.out);
        net
    }
}

fn next_layer<'a>(layers: &mut std::slice::Iter<'a, ConvLayer>) -> &'a ConvLayer {
    layers.next().expect("one trained layer per convolution")
}

/// `block` with the trained weights of its layers, taken from `layers` in the order
/// [`Body::resnet`] built them.
fn write_block(mut block: Block, layers: &mut std::slice::Iter<ConvLayer>) -> Block {
    if let Some(d) = block.downsample.take() {
        let (conv, bn) = next_layer(layers).write(d.conv, d.bn);
        block.downsample = Some(Downsample { conv, bn });
    }
    (block.conv1, block.bn1) = next_layer(layers).write(block.conv1, block.bn1);
    (block.conv2, block.bn2) = next_layer(layers).write(block.conv2, block.bn2);
    if let (Some(conv), Some(bn)) = (block.conv3.take(), block.bn3.take()) {
        let (conv, bn) = next_layer(layers).write(conv, bn);
        (block.conv3, block.bn3) = (Some(conv), Some(bn));
    }
    block
}

/// `block` with the trained weights of its layers, in the order [`Body::efficientnet`] built them.
fn write_mbconv(mut block: MbConv, layers: &mut std::slice::Iter<ConvLayer>) -> MbConv {
    if let (Some(conv), Some(bn)) = (block.expand_conv.take(), block.bn0.take()) {
        let (conv, bn) = next_layer(layers).write(conv, bn);
        (block.expand_conv, block.bn0) = (Some(conv), Some(bn));
    }
    (block.depthwise_conv, block.bn1) = next_layer(layers).write(block.depthwise_conv, block.bn1);
    (block.project_conv, block.bn2) = next_layer(layers).write(block.project_conv, block.bn2);
    block
}

#[cfg(test)]
mod tests {
    use burn::nn::PaddingConfig2d;
    use burn::tensor::Device;

    use super::*;
    use crate::layers::ConvBnConfig;

    /// The input gradient by its definition: every output pixel's gradient, times each tap's
    /// weight, added at the input pixel that tap read.
    fn naive_input_grad(layer: &ConvLayer, dy: &Maps, h: usize, w: usize) -> Maps {
        let [kh, kw] = layer.conv.kernel;
        let [sy, sx] = layer.conv.stride;
        let pad = layer.conv.padding(h, w);
        let per_group = layer.conv.c_in / layer.conv.groups;
        let out_per_group = layer.conv.c_out / layer.conv.groups;
        let mut dx = Maps::zeros(layer.conv.c_in, dy.n, h, w);
        for o in 0..layer.conv.c_out {
            for j in 0..per_group {
                let i = o / out_per_group * per_group + j;
                for b in 0..dy.n {
                    for oy in 0..dy.h {
                        for ox in 0..dy.w {
                            let d = dy.data[((o * dy.n + b) * dy.h + oy) * dy.w + ox];
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let iy = (oy * sy + ky) as isize - pad[0] as isize;
                                    let ix = (ox * sx + kx) as isize - pad[2] as isize;
                                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                        continue;
                                    }
                                    let wgt = layer.weight.value
                                        [((o * per_group + j) * kh + ky) * kw + kx];
                                    dx.data
                                        [((i * dy.n + b) * h + iy as usize) * w + ix as usize] +=
                                        wgt * d;
                                }
                            }
                        }
                    }
                }
            }
        }
        dx
    }

    #[test]
    fn strided_input_gradients_by_phases_equal_the_definition() {
        let device = Device::flex();
        // (kernel, stride, same padding, depthwise, input size): odd and even sizes, strides
        // that leave phases without taps (1×1 of stride 2) and uneven "same" padding.
        let cases = [
            (3, 1, false, false, 9),
            (3, 2, false, false, 9),
            (3, 2, false, false, 10),
            (1, 2, false, false, 7),
            (7, 2, false, false, 12),
            (5, 3, false, false, 13),
            (3, 2, true, false, 10),
            (5, 2, true, false, 11),
            (5, 2, true, true, 11),
            (3, 1, true, true, 8),
        ];
        for (kernel, stride, same, depthwise, size) in cases {
            let (c_in, c_out) = if depthwise { (4, 4) } else { (3, 5) };
            let mut config = ConvBnConfig::new(c_in, c_out, kernel, stride);
            if same {
                config = config.padding(PaddingConfig2d::Same);
            }
            if depthwise {
                config = config.groups(c_in);
            }
            let c = config.init(&device);
            let layer = ConvLayer::new(&c.conv, Some(&c.bn), Act::None).expect("trainable");
            let x = Maps::zeros(c_in, 2, size, size);
            let (oh, ow, _) = layer.conv.out_size(size, size);
            let dy = Maps {
                c: c_out,
                n: 2,
                h: oh,
                w: ow,
                data: (0..c_out * 2 * oh * ow)
                    .map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0)
                    .collect(),
            };
            let ours = layer.input_grad(&dy, x.h, x.w);
            let reference = naive_input_grad(&layer, &dy, size, size);
            let scale = reference.data.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (a, b) in ours.data.iter().zip(&reference.data) {
                assert!(
                    (a - b).abs() <= 1e-5 * scale,
                    "kernel {kernel}, stride {stride}, same {same}, depthwise {depthwise}, size \
                     {size}: {a} against {b}"
                );
            }
        }
    }
}
