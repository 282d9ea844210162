//! Training the default network on the CPU without burn's autodiff. burn's CPU backend records
//! every tensor operation of a step and replays it backwards, converting layouts and making a
//! pass over memory per operation (measured: 3.3× PyTorch's step time on the small network;
//! BENCHMARKS.md).
//! [`CpuTrainer`] runs the small network and the multi-loss head as a fixed sequence of layers
//! that keep what their backward needs: convolutions as im2col and matrix products (the
//! inference path's, in [`FusedConv`]), the input gradient as the convolution of the output
//! gradient with the flipped weights, batch norm with batch statistics, and SGD fused into one
//! pass per parameter. burn stays the reference (the tests compare every parameter after a step)
//! and the path for every other network and device.
//!
//! Every reduction runs in an order fixed by the data, never by the thread pool, so a seeded run
//! gives the same weights bit for bit on any number of threads.

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Linear};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::SgdConfig;
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

use crate::classifier::{Backbone, Classifier};
use crate::infer::conv::{floats, FusedConv};
use crate::infer::net::linear;
use crate::infer::pool::global_average;
use crate::infer::Maps;
use crate::layers::ConvBn;

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

/// The weighted multi-branch cross-entropy a step minimises.
#[derive(Debug, Clone, Copy)]
pub struct Loss<'a> {
    /// Per class.
    pub class_weights: &'a [f32],
    /// Per head branch.
    pub branch_weights: &'a [f32],
}

/// What a step reports.
pub struct StepOutput {
    pub loss: f32,
    /// Branch 1's logits, [n, classes] flattened.
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

/// Convolution (stride 1, padded to keep the size), batch norm on the batch's statistics, ReLU:
/// the only layer the small network and the head are made of.
struct ConvBnRelu {
    c_in: usize,
    c_out: usize,
    kernel: usize,
    weight: Weights,
    gamma: Weights,
    beta: Weights,
    running_mean: Vec<f32>,
    running_var: Vec<f32>,
    eps: f64,
    momentum: f64,
}

/// What a [`ConvBnRelu`]'s backward needs from its forward.
struct Saved {
    /// The normalised convolution output.
    xhat: Maps,
    /// 1/√(var + eps) per channel.
    inv_std: Vec<f32>,
    /// The layer's output (after ReLU).
    out: Maps,
}

impl ConvBnRelu {
    /// None for a layer the CPU path does not train (strided, grouped, biased, unpadded).
    fn new(conv: &Conv2d, bn: &BatchNorm) -> Option<Self> {
        let [c_out, c_in, kh, kw] = conv.weight.val().dims();
        let p = kh / 2;
        let plain = kh == kw
            && kh % 2 == 1
            && conv.stride == [1, 1]
            && conv.dilation == [1, 1]
            && conv.groups == 1
            && conv.bias.is_none()
            && conv.padding == burn::nn::PaddingConfig2d::Explicit(p, p, p, p);
        plain.then(|| Self {
            c_in,
            c_out,
            kernel: kh,
            weight: Weights::new(floats(conv.weight.val())),
            gamma: Weights::new(floats(bn.gamma.val())),
            beta: Weights::new(floats(bn.beta.val())),
            running_mean: floats(bn.running_mean.value()),
            running_var: floats(bn.running_var.value()),
            eps: bn.epsilon,
            momentum: bn.momentum,
        })
    }

    fn from_conv_bn(c: &ConvBn) -> Option<Self> {
        Self::new(&c.conv, &c.bn)
    }

    fn conv(&self) -> FusedConv {
        FusedConv::plain(
            self.c_in,
            self.c_out,
            self.kernel,
            self.weight.value.clone(),
        )
    }

    /// The convolution that maps an output gradient to the input gradient: weights transposed
    /// between input and output channels and turned by 180°.
    fn conv_transposed(&self) -> FusedConv {
        let kk = self.kernel * self.kernel;
        let mut flipped = vec![0.0; self.weight.value.len()];
        for o in 0..self.c_out {
            for i in 0..self.c_in {
                let src = &self.weight.value[(o * self.c_in + i) * kk..][..kk];
                let dst = &mut flipped[(i * self.c_out + o) * kk..][..kk];
                dst.iter_mut()
                    .zip(src.iter().rev())
                    .for_each(|(d, &s)| *d = s);
            }
        }
        FusedConv::plain(self.c_out, self.c_in, self.kernel, flipped)
    }

    /// In training mode batch norm uses the batch's statistics and moves its running ones;
    /// otherwise (a frozen layer, as burn runs one) it uses the running statistics.
    fn forward(&mut self, x: &Maps, training: bool) -> Saved {
        let mut xhat = self.conv().forward(x, None);
        let m = xhat.plane_all();
        let (mean, inv_std): (Vec<f32>, Vec<f32>) = if training {
            // One pass in f64 (Σv, Σv²): the variance loses nothing a float would keep, and the
            // map is read once instead of twice.
            let stats: Vec<(f32, f32)> = xhat
                .data
                .par_chunks_exact(m)
                .map(|row| {
                    let (mut sum, mut squares) = (0f64, 0f64);
                    for &v in row {
                        let v = v as f64;
                        sum += v;
                        squares += v * v;
                    }
                    let mean = sum / m as f64;
                    (
                        (mean) as f32,
                        (squares / m as f64 - mean * mean).max(0.0) as f32,
                    )
                })
                .collect();
            let keep = (1.0 - self.momentum) as f32;
            let take = self.momentum as f32;
            for (c, &(mean, var)) in stats.iter().enumerate() {
                self.running_mean[c] = self.running_mean[c] * keep + mean * take;
                self.running_var[c] = self.running_var[c] * keep + var * take;
            }
            stats
                .iter()
                .map(|&(mean, var)| (mean, (1.0 / (var as f64 + self.eps).sqrt()) as f32))
                .unzip()
        } else {
            let inv_std = self
                .running_var
                .iter()
                .map(|&v| (1.0 / (v as f64 + self.eps).sqrt()) as f32)
                .collect();
            (self.running_mean.clone(), inv_std)
        };
        // Normalise in place and write γx̂ + β through ReLU beside it, in one pass.
        let mut out = Maps {
            data: vec![0.0; xhat.data.len()],
            ..xhat
        };
        xhat.data
            .par_chunks_exact_mut(m)
            .zip(out.data.par_chunks_exact_mut(m))
            .enumerate()
            .for_each(|(c, (row, dst))| {
                let (mean, inv) = (mean[c], inv_std[c]);
                let (g, b) = (self.gamma.value[c], self.beta.value[c]);
                for (v, o) in row.iter_mut().zip(dst) {
                    *v = (*v - mean) * inv;
                    *o = (*v * g + b).max(0.0);
                }
            });
        Saved { xhat, inv_std, out }
    }

    /// Sets this layer's gradients from the gradient at its output; returns the gradient at its
    /// input `x` when asked.
    fn backward(&mut self, x: &Maps, saved: &Saved, mut dy: Maps, want_dx: bool) -> Option<Maps> {
        let m = dy.plane_all();
        let sums: Vec<(f32, f32)> = dy
            .data
            .par_chunks_exact_mut(m)
            .zip(saved.out.data.par_chunks_exact(m))
            .zip(saved.xhat.data.par_chunks_exact(m))
            .map(|((d, out), xhat)| {
                let (mut dgamma, mut dbeta) = (0f64, 0f64);
                for ((d, &o), &xh) in d.iter_mut().zip(out).zip(xhat) {
                    if o <= 0.0 {
                        *d = 0.0;
                    }
                    dgamma += (*d * xh) as f64;
                    dbeta += *d as f64;
                }
                (dgamma as f32, dbeta as f32)
            })
            .collect();
        // dz = γ/(σ·m) · (m·dy − Σdy − x̂·Σ(dy·x̂)), the batch-norm input gradient.
        dy.data
            .par_chunks_exact_mut(m)
            .zip(saved.xhat.data.par_chunks_exact(m))
            .enumerate()
            .for_each(|(c, (d, xhat))| {
                let (dgamma, dbeta) = sums[c];
                let scale = self.gamma.value[c] * saved.inv_std[c] / m as f32;
                for (d, &xh) in d.iter_mut().zip(xhat) {
                    *d = scale * (m as f32 * *d - dbeta - xh * dgamma);
                }
            });
        self.gamma.grad = sums.iter().map(|s| s.0).collect();
        self.beta.grad = sums.iter().map(|s| s.1).collect();
        self.weight.grad = self.conv().weight_grad(x, &dy);
        want_dx.then(|| self.conv_transposed().forward(&dy, None))
    }

    fn weights(&mut self) -> [&mut Weights; 3] {
        [&mut self.weight, &mut self.gamma, &mut self.beta]
    }

    fn write(&self, c: ConvBn) -> ConvBn {
        let ConvBn { mut conv, mut bn } = c;
        conv.weight = self.weight.write(conv.weight);
        bn.gamma = self.gamma.write(bn.gamma);
        bn.beta = self.beta.write(bn.beta);
        let device = bn.running_mean.value().device();
        for (state, values) in [
            (&bn.running_mean, &self.running_mean),
            (&bn.running_var, &self.running_var),
        ] {
            state.update(Tensor::from_data(
                TensorData::new(values.clone(), [self.c_out]),
                &device,
            ));
            // burn keeps an update pending until the state is read in sync; saving and the
            // inference path read the stored value, which this makes current.
            state.value_sync();
        }
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

/// 2×2 max pool of stride 2 (odd trailing rows and columns dropped, as burn's), with the index of
/// each window's winner within its plane; the first of equal values wins.
fn max_pool(x: &Maps) -> (Maps, Vec<u32>) {
    let (oh, ow) = (x.h / 2, x.w / 2);
    let mut out = Maps::zeros(x.c, x.n, oh, ow);
    let mut arg = vec![0u32; out.data.len()];
    out.data
        .par_chunks_exact_mut(oh * ow)
        .zip(arg.par_chunks_exact_mut(oh * ow))
        .zip(x.data.par_chunks_exact(x.h * x.w))
        .for_each(|((dst, idx), src)| {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut best = (2 * oy) * x.w + 2 * ox;
                    for i in [best + 1, best + x.w, best + x.w + 1] {
                        if src[i] > src[best] {
                            best = i;
                        }
                    }
                    dst[oy * ow + ox] = src[best];
                    idx[oy * ow + ox] = best as u32;
                }
            }
        });
    (out, arg)
}

fn max_pool_backward(dy: &Maps, arg: &[u32], like: &Maps) -> Maps {
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

/// The input of backbone layer `i`: see [`CpuTrainer::step`].
fn layer_input<'a>(
    i: usize,
    images: &'a Maps,
    saved: &'a [Saved],
    pooled: &'a [Option<(Maps, Vec<u32>)>],
) -> &'a Maps {
    match i.checked_sub(1) {
        None => images,
        Some(p) => pooled[p].as_ref().map_or(&saved[p].out, |(maps, _)| maps),
    }
}

/// One head branch: 1×1 bottlenecks (none for branch 1), global average, fully connected.
struct Branch {
    reduce: Vec<ConvBnRelu>,
    fc: Dense,
}

/// The small network and the multi-loss head, ready to train on the CPU.
pub struct CpuTrainer {
    /// The backbone's convolutions in order; a 2×2 max pool follows every second one but the last.
    convs: Vec<ConvBnRelu>,
    branches: Vec<Branch>,
    classes: usize,
}

impl CpuTrainer {
    /// None when the CPU path cannot train `model` (only the small network is built here; every
    /// other architecture trains through burn).
    pub fn new(model: &Classifier) -> Option<Self> {
        let Backbone::Small(small) = &model.backbone else {
            return None;
        };
        let pool = &small.pool;
        if pool.kernel_size != [2, 2] || pool.stride != [2, 2] || pool.dilation != [1, 1] {
            return None;
        }
        if pool.padding != burn::nn::PaddingConfig2d::Valid || pool.ceil_mode {
            return None;
        }
        let convs = small
            .stages
            .iter()
            .flat_map(|s| [&s.a, &s.b])
            .map(ConvBnRelu::from_conv_bn)
            .collect::<Option<Vec<_>>>()?;
        let h = &model.head;
        let mut branches = vec![Branch {
            reduce: Vec::new(),
            fc: Dense::new(&h.fc)?,
        }];
        if let (Some(r), Some(fc)) = (&h.reduce2, &h.fc2) {
            branches.push(Branch {
                reduce: vec![ConvBnRelu::from_conv_bn(r)?],
                fc: Dense::new(fc)?,
            });
        }
        if let (Some(a), Some(b), Some(fc)) = (&h.reduce3a, &h.reduce3b, &h.fc3) {
            branches.push(Branch {
                reduce: vec![ConvBnRelu::from_conv_bn(a)?, ConvBnRelu::from_conv_bn(b)?],
                fc: Dense::new(fc)?,
            });
        }
        let classes = branches[0].fc.outputs;
        Some(Self {
            convs,
            branches,
            classes,
        })
    }

    /// One SGD step on a batch of grayscale `size` × `size` images: forward in training mode
    /// (batch norms on the batch's statistics, which also move their running statistics), the
    /// multi-loss, backward, update. With `train_backbone` false the backbone is frozen as burn
    /// freezes a module: its batch norms use their running statistics and only the head learns
    /// (the first stage of two-stage transfer).
    pub fn step(
        &mut self,
        images: &[&[f32]],
        size: usize,
        labels: &[usize],
        loss: Loss,
        sgd: &SgdStep,
        train_backbone: bool,
    ) -> StepOutput {
        let n = images.len();
        assert_eq!(labels.len(), n, "one label per image");
        let images = Maps {
            c: 1,
            n,
            h: size,
            w: size,
            data: images.concat(),
        };
        // Forward. A layer's input is the images, the pooled output before it, or the output
        // of the layer before it, which its saved state already holds.
        let mut saved: Vec<Saved> = Vec::with_capacity(self.convs.len());
        let mut pooled: Vec<Option<(Maps, Vec<u32>)>> = Vec::with_capacity(self.convs.len());
        let last = self.convs.len() - 1;
        for (i, conv) in self.convs.iter_mut().enumerate() {
            let s = conv.forward(layer_input(i, &images, &saved, &pooled), train_backbone);
            pooled.push((i % 2 == 1 && i < last).then(|| max_pool(&s.out)));
            saved.push(s);
        }
        let features = &saved[last].out;

        // The head: every branch's logits, the loss, and the gradient at the features.
        let total_weight: f32 = labels.iter().map(|&l| loss.class_weights[l]).sum();
        let mut loss_value = 0f32;
        let mut main_logits = Vec::new();
        let mut d_features = Maps::zeros(features.c, features.n, features.h, features.w);
        for (b, branch) in self.branches.iter_mut().enumerate() {
            let mut branch_inputs = Vec::new();
            let mut branch_saved = Vec::new();
            let mut x = features.clone();
            for layer in &mut branch.reduce {
                let s = layer.forward(&x, true);
                branch_inputs.push(std::mem::replace(&mut x, s.out.clone()));
                branch_saved.push(s);
            }
            let pooled = global_average(&x);
            let logits = branch.fc.forward(&pooled);
            let w_b = loss.branch_weights[b];
            let mut d_logits = vec![0.0; logits.len()];
            for ((row, d), &y) in logits
                .chunks_exact(self.classes)
                .zip(d_logits.chunks_exact_mut(self.classes))
                .zip(labels)
            {
                let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                let sum: f32 = row.iter().map(|&v| (v - max).exp()).sum();
                let log_norm = max + sum.ln();
                let share = loss.class_weights[y] / total_weight;
                loss_value += w_b * share * (log_norm - row[y]);
                for (j, (d, &v)) in d.iter_mut().zip(row).enumerate() {
                    let onehot = if j == y { 1.0 } else { 0.0 };
                    *d = w_b * share * ((v - log_norm).exp() - onehot);
                }
            }
            let d_pooled = branch.fc.backward(&pooled, &d_logits);
            let mut d = global_average_backward(&d_pooled, &x);
            for ((layer, x), s) in branch
                .reduce
                .iter_mut()
                .zip(&branch_inputs)
                .zip(&branch_saved)
                .rev()
            {
                d = layer.backward(x, s, d, true).expect("asked for dx");
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
            let mut d = d_features;
            for i in (0..self.convs.len()).rev() {
                if let Some((_, arg)) = &pooled[i] {
                    d = max_pool_backward(&d, arg, &saved[i].out);
                }
                let x = layer_input(i, &images, &saved, &pooled);
                match self.convs[i].backward(x, &saved[i], d, i > 0) {
                    Some(dx) => d = dx,
                    None => break,
                }
            }
        }
        let mut params: Vec<&mut Weights> = Vec::new();
        for branch in &mut self.branches {
            for layer in &mut branch.reduce {
                params.extend(layer.weights());
            }
            params.extend([&mut branch.fc.weight, &mut branch.fc.bias]);
        }
        if train_backbone {
            for layer in &mut self.convs {
                params.extend(layer.weights());
            }
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
        let Backbone::Small(mut small) = backbone else {
            panic!("CpuTrainer::write needs the small network it was built from");
        };
        let mut convs = self.convs.iter();
        small.stages = small
            .stages
            .into_iter()
            .map(|mut s| {
                s.a = convs.next().expect("one layer per conv").write(s.a);
                s.b = convs.next().expect("one layer per conv").write(s.b);
                s
            })
            .collect();
        let mut head = head;
        let mut branches = self.branches.iter();
        let main = branches.next().expect("branch 1");
        head.fc = main.fc.write(head.fc);
        if let Some(b) = branches.next() {
            head.reduce2 = head.reduce2.map(|r| b.reduce[0].write(r));
            head.fc2 = head.fc2.map(|f| b.fc.write(f));
        }
        if let Some(b) = branches.next() {
            head.reduce3a = head.reduce3a.map(|r| b.reduce[0].write(r));
            head.reduce3b = head.reduce3b.map(|r| b.reduce[1].write(r));
            head.fc3 = head.fc3.map(|f| b.fc.write(f));
        }
        Classifier {
            backbone: Backbone::Small(small),
            head,
        }
    }
}
