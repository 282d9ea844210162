//! A trained [`Classifier`] rebuilt from fused layers, mirroring each architecture's forward pass
//! in `resnet.rs`, `efficientnet.rs`, `small.rs` and `head.rs` step for step.

use burn::nn::Linear;

use super::conv::{floats, Act, FusedConv};
use super::pool::{global_average, MaxPool};
use super::Maps;
use crate::classifier::{Backbone, Classifier};
use crate::head::Readout;

/// Input pixels per pass through the network. Our networks' largest feature map holds at most 24
/// values per input pixel (EfficientNet's first expanded stage), so a pass's maps stay within a
/// few hundred MB however large the batch the caller hands over (ResNet-18 at 224 px on a
/// 256-image batch reached 3.9 GB before this), while a pass still spans enough images for the
/// deep layers' weights to be reused across them.
const CHUNK_PIXELS: usize = 1 << 20;

/// A fully connected layer (burn stores the weight as [inputs, outputs]).
#[derive(Debug, Clone)]
struct Dense {
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl Dense {
    fn new(l: &Linear) -> Self {
        let [_, outputs] = l.weight.val().dims();
        Self {
            weight: floats(l.weight.val()),
            bias: l
                .bias
                .as_ref()
                .map_or_else(|| vec![0.0; outputs], |b| floats(b.val())),
        }
    }

    fn forward(&self, x: &[f32]) -> Vec<f32> {
        linear(&self.weight, &self.bias, x)
    }
}

/// bias + x·weight for one input row `x`, with the weight [inputs, outputs] as burn stores it.
pub(crate) fn linear(weight: &[f32], bias: &[f32], x: &[f32]) -> Vec<f32> {
    let mut out = bias.to_vec();
    for (&xi, row) in x.iter().zip(weight.chunks_exact(bias.len())) {
        out.iter_mut().zip(row).for_each(|(o, &w)| *o += xi * w);
    }
    out
}

#[derive(Debug, Clone)]
struct ResBlock {
    conv1: FusedConv,
    conv2: FusedConv,
    conv3: Option<FusedConv>,
    downsample: Option<FusedConv>,
}

#[derive(Debug, Clone)]
struct MbBlock {
    expand: Option<FusedConv>,
    depthwise: FusedConv,
    project: FusedConv,
    skip: bool,
}

#[derive(Debug, Clone)]
enum Body {
    ResNet {
        stem: FusedConv,
        pool: MaxPool,
        blocks: Vec<ResBlock>,
    },
    EfficientNet {
        stem: FusedConv,
        blocks: Vec<MbBlock>,
        head: FusedConv,
    },
    Small {
        stages: Vec<(FusedConv, FusedConv)>,
        pool: MaxPool,
    },
    Topaz {
        conv_in: FusedConv,
        blocks: Vec<TopazBlock>,
        conv_out: FusedConv,
    },
}

/// Topaz's residual block: the shortcut is the input cropped by the two unpadded 3×3s, then
/// projected or subsampled to the output's grid (see `topaz.rs`).
#[derive(Debug, Clone)]
struct TopazBlock {
    conv0: FusedConv,
    conv1: FusedConv,
    proj: Option<FusedConv>,
    stride: usize,
}

/// `x` less `edge` pixels on every side, every `stride`-th row and column of the rest.
pub(crate) fn crop(x: &Maps, edge: usize, stride: usize) -> Maps {
    let (h, w) = (x.h - 2 * edge, x.w - 2 * edge);
    let (oh, ow) = (h.div_ceil(stride), w.div_ceil(stride));
    let mut out = Maps::zeros(x.c, x.n, oh, ow);
    for (plane, dst) in x
        .data
        .chunks_exact(x.h * x.w)
        .zip(out.data.chunks_exact_mut(oh * ow))
    {
        for (i, row) in dst.chunks_exact_mut(ow).enumerate() {
            let src = &plane[(edge + i * stride) * x.w + edge..];
            for (j, v) in row.iter_mut().enumerate() {
                *v = src[j * stride];
            }
        }
    }
    out
}

/// One head branch: optional 1×1 bottlenecks, global average, fully connected.
#[derive(Debug, Clone)]
struct Branch {
    reduce: Vec<FusedConv>,
    fc: Dense,
}

/// A classifier for CPU inference: batch norms folded into the convolutions, activations and
/// residual sums applied as each convolution writes its output.
#[derive(Debug, Clone)]
pub struct FusedNet {
    body: Body,
    branches: Vec<Branch>,
    classes: usize,
}

impl FusedNet {
    pub fn new(model: &Classifier) -> Self {
        let body = match &model.backbone {
            Backbone::ResNet(r) => Body::ResNet {
                stem: FusedConv::new(&r.conv1, Some(&r.bn1), Act::Relu),
                pool: MaxPool::new(&r.maxpool),
                blocks: r
                    .layer1
                    .iter()
                    .chain(&r.layer2)
                    .chain(&r.layer3)
                    .chain(&r.layer4)
                    // Every convolution but the downsample ends in a ReLU; the block's last one
                    // adds the shortcut before its ReLU (see `features`).
                    .map(|b| ResBlock {
                        conv1: FusedConv::new(&b.conv1, Some(&b.bn1), Act::Relu),
                        conv2: FusedConv::new(&b.conv2, Some(&b.bn2), Act::Relu),
                        conv3: b
                            .conv3
                            .as_ref()
                            .zip(b.bn3.as_ref())
                            .map(|(c, n)| FusedConv::new(c, Some(n), Act::Relu)),
                        downsample: b
                            .downsample
                            .as_ref()
                            .map(|d| FusedConv::new(&d.conv, Some(&d.bn), Act::None)),
                    })
                    .collect(),
            },
            Backbone::EfficientNet(e) => Body::EfficientNet {
                stem: FusedConv::new(&e.conv_stem, Some(&e.bn0), Act::Relu6),
                blocks: e
                    .blocks
                    .iter()
                    .map(|b| MbBlock {
                        expand: b
                            .expand_conv
                            .as_ref()
                            .zip(b.bn0.as_ref())
                            .map(|(c, n)| FusedConv::new(c, Some(n), Act::Relu6)),
                        depthwise: FusedConv::new(&b.depthwise_conv, Some(&b.bn1), Act::Relu6),
                        project: FusedConv::new(&b.project_conv, Some(&b.bn2), Act::None),
                        skip: b.skip,
                    })
                    .collect(),
                head: FusedConv::new(&e.conv_head, Some(&e.bn1), Act::Relu6),
            },
            Backbone::Small(s) => Body::Small {
                stages: s
                    .stages
                    .iter()
                    .map(|st| {
                        (
                            FusedConv::from_conv_bn(&st.a, Act::Relu),
                            FusedConv::from_conv_bn(&st.b, Act::Relu),
                        )
                    })
                    .collect(),
                pool: MaxPool::new(&s.pool),
            },
            Backbone::Topaz(t) => Body::Topaz {
                conv_in: FusedConv::new(&t.conv_in, None, Act::Relu),
                blocks: t
                    .blocks
                    .iter()
                    .map(|b| TopazBlock {
                        conv0: FusedConv::new(&b.conv0, None, Act::Relu),
                        conv1: FusedConv::new(&b.conv1, None, Act::Relu),
                        proj: b.proj.as_ref().map(|p| FusedConv::new(p, None, Act::None)),
                        stride: b.stride,
                    })
                    .collect(),
                conv_out: FusedConv::new(&t.conv_out, None, Act::Relu),
            },
        };
        let h = &model.head;
        let fused = |c| FusedConv::from_conv_bn(c, Act::Relu);
        let mut branches = vec![Branch {
            reduce: Vec::new(),
            fc: Dense::new(&h.fc),
        }];
        if let (Some(r), Some(fc)) = (&h.reduce2, &h.fc2) {
            branches.push(Branch {
                reduce: vec![fused(r)],
                fc: Dense::new(fc),
            });
        }
        if let (Some(a), Some(b), Some(fc)) = (&h.reduce3a, &h.reduce3b, &h.fc3) {
            branches.push(Branch {
                reduce: vec![fused(a), fused(b)],
                fc: Dense::new(fc),
            });
        }
        let classes = branches[0].fc.bias.len();
        Self {
            body,
            branches,
            classes,
        }
    }

    /// Probabilities [n, classes] for `images` (each `channels` × `size` × `size`,
    /// row-major): branch 1's, or the mean of every branch's.
    pub fn probabilities(
        &self,
        images: &[&[f32]],
        channels: usize,
        size: usize,
        readout: Readout,
    ) -> Vec<f32> {
        let mut logits = self.logits(images, channels, size);
        let used = if readout.mean_of_branches {
            logits.len()
        } else {
            1
        };
        let mut probs = vec![0.0; images.len() * self.classes];
        for branch in &mut logits[..used] {
            for (p, l) in probs
                .chunks_exact_mut(self.classes)
                .zip(branch.chunks_exact_mut(self.classes))
            {
                readout.activate(l);
                for (p, s) in p.iter_mut().zip(l.iter()) {
                    *p += s / used as f32;
                }
            }
        }
        probs
    }

    /// Every head branch's logits ([n, classes] flattened), main branch first.
    pub fn logits(&self, images: &[&[f32]], channels: usize, size: usize) -> Vec<Vec<f32>> {
        let mut out = vec![Vec::with_capacity(images.len() * self.classes); self.branches.len()];
        let chunk = (CHUNK_PIXELS / (size * size).max(1)).max(1);
        for part in images.chunks(chunk) {
            for (all, branch) in out.iter_mut().zip(self.chunk_logits(part, channels, size)) {
                all.extend(branch);
            }
        }
        out
    }

    /// The backbone's feature map of each image, [c, h, w] row-major, and those dimensions.
    pub fn backbone_features(
        &self,
        images: &[&[f32]],
        channels: usize,
        size: usize,
    ) -> (Vec<Vec<f32>>, [usize; 3]) {
        let mut out = Vec::with_capacity(images.len());
        let mut dims = [0; 3];
        let chunk = (CHUNK_PIXELS / (size * size).max(1)).max(1);
        for part in images.chunks(chunk) {
            let m = self.features(Maps::stack(part, channels, size));
            dims = [m.c, m.h, m.w];
            let plane = m.h * m.w;
            for b in 0..m.n {
                let mut f = Vec::with_capacity(m.c * plane);
                for c in 0..m.c {
                    let at = (c * m.n + b) * plane;
                    f.extend_from_slice(&m.data[at..at + plane]);
                }
                out.push(f);
            }
        }
        (out, dims)
    }

    fn chunk_logits(&self, images: &[&[f32]], channels: usize, size: usize) -> Vec<Vec<f32>> {
        let features = self.features(Maps::stack(images, channels, size));
        self.branches
            .iter()
            .map(|branch| {
                let mut m = None;
                for r in &branch.reduce {
                    m = Some(r.forward(m.as_ref().unwrap_or(&features), None));
                }
                let pooled = global_average(m.as_ref().unwrap_or(&features));
                let width = pooled.len() / images.len().max(1);
                pooled
                    .chunks_exact(width)
                    .flat_map(|row| branch.fc.forward(row))
                    .collect()
            })
            .collect()
    }

    fn features(&self, mut x: Maps) -> Maps {
        match &self.body {
            Body::ResNet { stem, pool, blocks } => {
                x = pool.forward(&stem.forward(&x, None));
                for b in blocks {
                    let identity = b.downsample.as_ref().map(|d| d.forward(&x, None));
                    let shortcut = identity.as_ref().unwrap_or(&x);
                    let y = b.conv1.forward(&x, None);
                    x = match &b.conv3 {
                        Some(c3) => c3.forward(&b.conv2.forward(&y, None), Some(shortcut)),
                        None => b.conv2.forward(&y, Some(shortcut)),
                    };
                }
                x
            }
            Body::EfficientNet { stem, blocks, head } => {
                x = stem.forward(&x, None);
                for b in blocks {
                    let y = match &b.expand {
                        Some(e) => e.forward(&x, None),
                        None => x.clone(),
                    };
                    let y = b.depthwise.forward(&y, None);
                    x = b.project.forward(&y, b.skip.then_some(&x));
                }
                head.forward(&x, None)
            }
            Body::Small { stages, pool } => {
                let last = stages.len() - 1;
                for (i, (a, b)) in stages.iter().enumerate() {
                    x = b.forward(&a.forward(&x, None), None);
                    if i < last {
                        x = pool.forward(&x);
                    }
                }
                x
            }
            Body::Topaz {
                conv_in,
                blocks,
                conv_out,
            } => {
                x = conv_in.forward(&x, None);
                for b in blocks {
                    let h = b.conv0.forward(&x, None);
                    let shortcut = match &b.proj {
                        Some(p) => p.forward(&crop(&x, 2, 1), None),
                        None => crop(&x, 2, b.stride),
                    };
                    x = b.conv1.forward(&h, Some(&shortcut));
                }
                conv_out.forward(&x, None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::module::{Module, ModuleMapper, Param};
    use burn::tensor::{Device, Distribution, Tensor};

    use super::*;
    use crate::classifier::{Arch, ClassifierConfig};
    use crate::head::HeadConfig;

    /// Gives every vector (biases, batch-norm scales, shifts, running means and variances)
    /// values in [0.5, 1.5], so that folding the batch norms is really exercised.
    struct Perturb;

    impl ModuleMapper for Perturb {
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if D != 1 {
                return p;
            }
            p.map(|t| {
                let device = t.device();
                Tensor::random(t.shape(), Distribution::Uniform(0.5, 1.5), &device)
            })
        }
    }

    fn relative_error(ours: &[f32], reference: &[f32]) -> f64 {
        assert_eq!(ours.len(), reference.len());
        let diff: f64 = ours
            .iter()
            .zip(reference)
            .map(|(&a, &b)| ((a - b) as f64).powi(2))
            .sum();
        let norm: f64 = reference.iter().map(|&b| (b as f64).powi(2)).sum();
        (diff / norm).sqrt()
    }

    fn check(arch: Arch, channels: usize, size: usize) {
        let device = Device::flex();
        let config = ClassifierConfig {
            in_channels: channels,
            arch,
            classes: 3,
            head: HeadConfig::new(3),
        };
        let model = config.init(&device).map(&mut Perturb);
        let n = 3;
        let x = Tensor::<4>::random(
            [n, channels, size, size],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let pixels: Vec<f32> = x.clone().into_data().try_into_vec().unwrap();
        let images: Vec<&[f32]> = pixels.chunks_exact(channels * size * size).collect();
        let net = FusedNet::new(&model);

        let reference: Vec<Vec<f32>> = model
            .forward(x.clone())
            .into_iter()
            .map(|l| l.into_data().try_into_vec().unwrap())
            .collect();
        for (b, logits) in net.logits(&images, channels, size).iter().enumerate() {
            let e = relative_error(logits, &reference[b]);
            assert!(
                e < 1e-5,
                "{arch} branch {b}: {logits:?} vs {:?}",
                reference[b]
            );
        }
        for (mean_of_branches, multi_label) in [(false, false), (true, false), (true, true)] {
            let readout = Readout {
                mean_of_branches,
                multi_label,
            };
            let want: Vec<f32> = model
                .probabilities(x.clone(), readout)
                .into_data()
                .try_into_vec()
                .unwrap();
            let got = net.probabilities(&images, channels, size, readout);
            let worst = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(worst < 1e-5, "{arch} {readout:?}: {worst}");
        }
    }

    #[test]
    fn a_batch_larger_than_one_pass_gives_each_image_its_own_result() {
        let device = Device::flex();
        let model = ClassifierConfig {
            in_channels: 1,
            arch: Arch::Small,
            classes: 2,
            head: HeadConfig::new(2),
        }
        .init(&device)
        .map(&mut Perturb);
        let net = FusedNet::new(&model);
        let size = 64;
        let n = CHUNK_PIXELS / (size * size) + 7;
        let pixels: Vec<f32> = (0..n * size * size)
            .map(|i| ((i * 7919) % 1013) as f32 / 1013.0 - 0.5)
            .collect();
        let images: Vec<&[f32]> = pixels.chunks_exact(size * size).collect();
        let together = net.probabilities(&images, 1, size, Readout::single_label(true));
        assert_eq!(together.len(), n * 2);
        for i in [0, n / 2, n - 1] {
            let alone = net.probabilities(&images[i..i + 1], 1, size, Readout::single_label(true));
            let diff = (alone[0] - together[2 * i])
                .abs()
                .max((alone[1] - together[2 * i + 1]).abs());
            assert!(
                diff < 1e-5,
                "image {i}: {alone:?} vs {:?}",
                &together[2 * i..2 * i + 2]
            );
        }
    }

    /// `prune --skip-existing` classifies what is left of a killed run, in other batches than
    /// the unbroken run: the same pick must get the same bits whatever shares its batch.
    #[test]
    fn an_image_gets_the_same_bits_in_any_batch() {
        let device = Device::flex();
        // 32 px: the small network's last layers hold 16 and 4 pixels per image with k up to
        // 1152, ResNet-18's last maps are 1 × 1 (one pixel per image through 1 × 1 shortcuts).
        for (arch, size) in [(Arch::Small, 32), (Arch::Small, 40), (Arch::ResNet18, 32)] {
            let model = ClassifierConfig {
                in_channels: 1,
                arch,
                classes: 3,
                head: HeadConfig::new(3),
            }
            .init(&device)
            .map(&mut Perturb);
            let net = FusedNet::new(&model);
            let n = 23;
            let pixels: Vec<f32> = (0..n * size * size)
                .map(|i| ((i * 7919) % 1013) as f32 / 1013.0 - 0.5)
                .collect();
            let images: Vec<&[f32]> = pixels.chunks_exact(size * size).collect();
            let together = net.probabilities(&images, 1, size, Readout::single_label(true));
            for len in [1, 2, 3, 7, 10] {
                for start in (0..n - len).step_by(len.max(2) - 1) {
                    let part = net.probabilities(
                        &images[start..start + len],
                        1,
                        size,
                        Readout::single_label(true),
                    );
                    assert_eq!(
                        part.iter().map(|p| p.to_bits()).collect::<Vec<_>>(),
                        together[3 * start..3 * (start + len)]
                            .iter()
                            .map(|p| p.to_bits())
                            .collect::<Vec<_>>(),
                        "{arch:?} {size} px, images {start}..{}",
                        start + len
                    );
                }
            }
        }
    }

    #[test]
    fn small_net_matches_burn() {
        check(Arch::Small, 1, 40);
        check(Arch::SmallWide, 1, 40);
    }

    #[test]
    fn resnet18_matches_burn() {
        check(Arch::ResNet18, 3, 48);
    }

    #[test]
    fn resnet50_matches_burn() {
        check(Arch::ResNet50, 1, 33);
    }

    #[test]
    fn efficientnet_lite0_matches_burn() {
        // An odd size makes the strided "same" paddings asymmetric.
        check(Arch::EfficientNetLite0, 1, 45);
    }

    #[test]
    fn topaz_resnet16_matches_burn() {
        // 97 px: the stride-2 blocks meet odd sizes, where crop and subsample must agree with
        // the strided convolution on the last row.
        check(Arch::TopazResNet16, 1, 97);
    }
}
