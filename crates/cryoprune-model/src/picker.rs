//! The deep picker's network: fully convolutional, so one pass over a binned micrograph gives a
//! particle score at every `stride`-th pixel. Stages of convolutions with a 2×2 max pool between
//! each and the next, and a 1×1 convolution to one log-odds per output pixel. Two networks:
//!
//! - `fcn`, the picker's own: two 32-channel convolutions at full resolution see the fine
//!   texture, a pool halves the map, four 64-channel convolutions gather the context of a
//!   particle and its surroundings (a 24-pixel receptive field: twice the particle's diameter at
//!   the binning `picker train` chooses for it);
//! - `small`, the classifier's small network (four stages, stride 8, a 68-pixel receptive field)
//!   started from a pretrained backbone, so the picker begins from features that already tell
//!   particles from carbon, ice and aggregates; the micrograph is binned so a particle spans
//!   about what it spanned in the backbone's 64-px boxes.
//!
//! Convolutions are padded, so the map lines up with the micrograph; `score_map` cuts large
//! micrographs into tiles with a margin of half the receptive field so the padding never
//! reaches a pixel whose score is kept.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::infer::conv::{Act, FusedConv};
use crate::infer::pool::MaxPool;
use crate::infer::Maps;
use crate::layers::{ConvBn, ConvBnConfig};
use crate::pretrained::{load_backbone, LoadError};
use crate::small::SmallNet;
use crate::{Arch, Backbone};

/// Which network picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum PickerArch {
    #[serde(rename = "fcn")]
    Fcn,
    /// Better than `fcn` on EMPIAR-10017 and on simulated data, and faster to pick with its one
    /// view (BENCHMARKS.md, "The deep picker").
    #[default]
    #[serde(rename = "small")]
    Small,
}

impl PickerArch {
    /// The name picker.json records (the first picker's, kept so its folders still load).
    pub fn name(self) -> &'static str {
        match self {
            PickerArch::Fcn => "picker-fcn-24",
            PickerArch::Small => "small",
        }
    }

    /// Binned pixels a particle's diameter spans by default: the `fcn`'s 24-pixel receptive
    /// field sees the particle and a ring of context at 12; the small network's pretraining
    /// boxes held a particle at 1/2.5 to 1/1.2 of 64 px, 26-53 px, so 32 lies inside.
    pub fn particle_pixels(self) -> f64 {
        match self {
            PickerArch::Fcn => 12.0,
            PickerArch::Small => 32.0,
        }
    }

    /// Views of each micrograph whose scores `pick` averages by default. For `fcn`, on
    /// EMPIAR-10017's validation micrographs, best F1 0.789, 0.794, 0.796, 0.796 for 1, 2, 4, 8
    /// views: 4 has the gain at half the time of 8. For `small` one view picks as well as four
    /// (F1 0.856 against 0.859 on EMPIAR-10017, 0.965 against 0.959 simulated) in a quarter of
    /// the time (BENCHMARKS.md).
    pub fn default_views(self) -> u8 {
        match self {
            PickerArch::Fcn => 4,
            PickerArch::Small => 1,
        }
    }
}

impl FromStr for PickerArch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fcn" | "picker-fcn-24" => Ok(PickerArch::Fcn),
            "small" => Ok(PickerArch::Small),
            _ => Err(format!("picker network `{s}`: expected fcn or small")),
        }
    }
}

impl fmt::Display for PickerArch {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            PickerArch::Fcn => "fcn",
            PickerArch::Small => "small",
        })
    }
}

#[derive(Module, Debug)]
pub struct PickerNet {
    /// At the input's resolution.
    pub early: Vec<ConvBn>,
    pub pool: MaxPool2d,
    /// After the first pool.
    pub late: Vec<ConvBn>,
    /// Each after one more pool (none in the `fcn`).
    pub deeper: Vec<Vec<ConvBn>>,
    /// 1×1 to one log-odds, with a bias.
    pub out: Conv2d,
}

impl PickerNet {
    /// The `fcn` network, freshly initialised.
    pub fn new(device: &Device) -> Self {
        let early = vec![
            ConvBnConfig::new(1, 32, 5, 1).init(device),
            ConvBnConfig::new(32, 32, 3, 1).init(device),
        ];
        let late = [(32, 64), (64, 64), (64, 64), (64, 64)]
            .into_iter()
            .map(|(i, o)| ConvBnConfig::new(i, o, 3, 1).init(device))
            .collect();
        Self {
            early,
            pool: MaxPool2dConfig::new([2, 2]).init(),
            late,
            deeper: Vec::new(),
            out: Conv2dConfig::new([64, 1], [1, 1]).init(device),
        }
    }

    /// The small network's stages (their weights, pretrained or not) under a fresh 1×1 output.
    pub fn from_small(net: SmallNet, device: &Device) -> Self {
        let channels = net.stages.last().map_or(1, |s| s.b.conv.weight.dims()[0]);
        let mut stages = net.stages.into_iter().map(|s| vec![s.a, s.b]);
        let early = stages.next().expect("the small network has four stages");
        let late = stages.next().expect("the small network has four stages");
        let deeper: Vec<Vec<ConvBn>> = stages.collect();
        Self {
            early,
            pool: net.pool,
            late,
            deeper,
            out: Conv2dConfig::new([channels, 1], [1, 1]).init(device),
        }
    }

    /// The `small` network from the backbone in `path` (`cryoprune pretrain`'s, or the shipped
    /// one), or drawn afresh without one, on the CPU; the output layer is drawn from `seed`.
    pub fn small_from(path: Option<&Path>, seed: u64) -> Result<Self, LoadError> {
        let device = Device::flex();
        device.seed(seed);
        let small = match path {
            None => SmallNet::new(1, crate::small::BASE_WIDTH, &device),
            Some(p) => match load_backbone(Arch::Small, p, &device)?.0 {
                Backbone::Small(small) => small,
                _ => {
                    return Err(LoadError::Shape {
                        path: p.to_path_buf(),
                        arch: Arch::Small,
                        message: "not a small network".into(),
                    })
                }
            },
        };
        Ok(Self::from_small(small, &device))
    }

    /// A network of `arch` on the CPU (where the picker trains and runs), its weights drawn from
    /// burn's process-wide generator seeded with `seed`.
    pub fn seeded(arch: PickerArch, seed: u64) -> Self {
        let device = Device::flex();
        device.seed(seed);
        match arch {
            PickerArch::Fcn => Self::new(&device),
            PickerArch::Small => {
                Self::from_small(SmallNet::new(1, crate::small::BASE_WIDTH, &device), &device)
            }
        }
    }

    /// The stages: `early`, `late`, then each of `deeper`.
    pub fn stages(&self) -> usize {
        2 + self.deeper.len()
    }

    /// Convolutions in the first `stages` stages (all of them past the last; the output layer
    /// is never among them).
    pub fn stage_layers(&self, stages: usize) -> usize {
        [&self.early, &self.late]
            .into_iter()
            .chain(&self.deeper)
            .take(stages)
            .map(Vec::len)
            .sum()
    }

    /// Input pixels per output pixel along each axis.
    pub fn stride(&self) -> usize {
        2 << self.deeper.len()
    }

    /// Input pixels one output sees along each axis.
    pub fn receptive_field(&self) -> usize {
        // Each k × k convolution widens the field by k − 1 input steps, each pool by one.
        let widen = |convs: &[ConvBn], jump: usize| -> usize {
            convs
                .iter()
                .map(|c| (c.conv.weight.dims()[2] - 1) * jump)
                .sum()
        };
        let (mut rf, mut jump) = (1 + widen(&self.early, 1), 1);
        for stage in std::iter::once(&self.late).chain(&self.deeper) {
            rf += jump;
            jump *= 2;
            rf += widen(stage, jump);
        }
        rf
    }

    /// [n, 1, h, w] → log-odds [n, 1, h/s, w/s] for the stride s (burn's layers: the reference
    /// for the CPU paths).
    pub fn forward(&self, mut x: Tensor<4>) -> Tensor<4> {
        for c in &self.early {
            x = relu(c.forward(x));
        }
        for stage in std::iter::once(&self.late).chain(&self.deeper) {
            x = self.pool.forward(x);
            for c in stage {
                x = relu(c.forward(x));
            }
        }
        self.out.forward(x)
    }
}

/// A score map: log-odds per output pixel; output (i, j) covers input pixels si..si+s, sj..sj+s
/// for the network's stride s.
#[derive(Debug, Clone)]
pub struct ScoreMap {
    pub w: usize,
    pub h: usize,
    pub data: Vec<f32>,
}

impl ScoreMap {
    pub fn at(&self, x: usize, y: usize) -> f32 {
        self.data[y * self.w + x]
    }
}

/// [`PickerNet`] for inference on the CPU: batch norms folded into the convolutions.
pub struct FusedPicker {
    early: Vec<FusedConv>,
    pool: MaxPool,
    /// `late`, then each of `deeper`, each after a pool.
    stages: Vec<Vec<FusedConv>>,
    out: FusedConv,
    stride: usize,
    receptive_field: usize,
}

impl FusedPicker {
    pub fn new(net: &PickerNet) -> Self {
        let fused = |c: &ConvBn| FusedConv::from_conv_bn(c, Act::Relu);
        Self {
            early: net.early.iter().map(fused).collect(),
            pool: MaxPool::new(&net.pool),
            stages: std::iter::once(&net.late)
                .chain(&net.deeper)
                .map(|s| s.iter().map(fused).collect())
                .collect(),
            out: FusedConv::new(&net.out, None, Act::None),
            stride: net.stride(),
            receptive_field: net.receptive_field(),
        }
    }

    pub fn stride(&self) -> usize {
        self.stride
    }

    pub fn receptive_field(&self) -> usize {
        self.receptive_field
    }

    /// Log-odds of a batch of `h` × `w` inputs (sides multiples of the stride s): [n, h/s, w/s]
    /// in one buffer.
    pub fn forward(&self, x: Maps) -> Maps {
        let mut x = x;
        for c in &self.early {
            x = c.forward(&x, None);
        }
        for stage in &self.stages {
            x = self.pool.forward(&x);
            for c in stage {
                x = c.forward(&x, None);
            }
        }
        self.out.forward(&x, None)
    }

    /// The score map of a whole `w` × `h` image (row-major), computed in tiles of `tile` pixels
    /// (even) with a margin of half the receptive field, zero beyond the image (its mean, once
    /// normalised). Tiles go through the network `batch` at a time, so memory stays bounded
    /// whatever the micrograph's size.
    pub fn score_map(
        &self,
        image: &[f32],
        w: usize,
        h: usize,
        tile: usize,
        batch: usize,
    ) -> ScoreMap {
        let stride = self.stride;
        let tile = tile.max(stride).next_multiple_of(stride);
        let margin = (self.receptive_field / 2).next_multiple_of(stride);
        let side = tile + 2 * margin;
        let (ow, oh) = (w.div_ceil(stride), h.div_ceil(stride));
        let mut out = ScoreMap {
            w: ow,
            h: oh,
            data: vec![0.0; ow * oh],
        };
        let origins: Vec<(usize, usize)> = (0..h.div_ceil(tile))
            .flat_map(|ty| (0..w.div_ceil(tile)).map(move |tx| (tx * tile, ty * tile)))
            .collect();
        for group in origins.chunks(batch.max(1)) {
            let mut x = Maps::zeros(1, group.len(), side, side);
            for (b, &(x0, y0)) in group.iter().enumerate() {
                let plane = &mut x.data[b * side * side..(b + 1) * side * side];
                for sy in 0..side {
                    let Some(y) = (y0 + sy).checked_sub(margin).filter(|&y| y < h) else {
                        continue;
                    };
                    let first = margin.saturating_sub(x0);
                    let last = (w + margin - x0).min(side);
                    if first < last {
                        let src = y * w + x0 + first - margin;
                        plane[sy * side + first..sy * side + last]
                            .copy_from_slice(&image[src..src + last - first]);
                    }
                }
            }
            let y = self.forward(x);
            let (th, tw) = (y.h, y.w);
            let (m, t) = (margin / stride, tile / stride);
            for (b, &(x0, y0)) in group.iter().enumerate() {
                let plane = &y.data[b * th * tw..(b + 1) * th * tw];
                let (ox0, oy0) = (x0 / stride, y0 / stride);
                for i in 0..t.min(oh - oy0) {
                    let cols = t.min(ow - ox0);
                    let dst = (oy0 + i) * ow + ox0;
                    let src = (m + i) * tw + m;
                    out.data[dst..dst + cols].copy_from_slice(&plane[src..src + cols]);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::conv::floats;
    use burn::tensor::TensorData;

    fn image(w: usize, h: usize) -> Vec<f32> {
        (0..w * h)
            .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * ((i % 13) as f32 / 6.0))
            .collect()
    }

    #[test]
    fn fused_inference_matches_burn_and_tiles_agree_with_one_pass() {
        let device = Device::flex();
        for (net, (w, h)) in [
            (PickerNet::new(&device), (64, 48)),
            (PickerNet::seeded(PickerArch::Small, 2), (160, 96)),
        ] {
            let s = net.stride();
            let img = image(w, h);
            let x = Tensor::<4>::from_data(TensorData::new(img.clone(), [1, 1, h, w]), &device);
            let reference = floats(net.forward(x));
            assert_eq!(reference.len(), (w / s) * (h / s));
            let fused = FusedPicker::new(&net);
            let one = fused.forward(Maps {
                c: 1,
                n: 1,
                h,
                w,
                data: img.clone(),
            });
            for (a, b) in one.data.iter().zip(&reference) {
                assert!((a - b).abs() < 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
            }
            // Tiles: every kept output is further than half the receptive field from a tile's
            // padded edge, so it equals the whole-image pass wherever the image's own edge is
            // that far away too.
            let map = fused.score_map(&img, w, h, 2 * s, 3);
            assert_eq!((map.w, map.h), (w / s, h / s));
            let m = (net.receptive_field() / 2).div_ceil(s);
            for y in m..map.h - m {
                for x in m..map.w - m {
                    let (a, b) = (map.at(x, y), one.data[y * map.w + x]);
                    assert!(
                        (a - b).abs() < 1e-4 * (1.0 + b.abs()),
                        "({x},{y}) {a} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn strides_and_receptive_fields_follow_the_layers() {
        let fcn = PickerNet::new(&Device::flex());
        assert_eq!((fcn.stride(), fcn.receptive_field()), (2, 24));
        let small = PickerNet::seeded(PickerArch::Small, 0);
        assert_eq!((small.stride(), small.receptive_field()), (8, 68));
        for arch in [PickerArch::Fcn, PickerArch::Small] {
            assert_eq!(arch.name().parse::<PickerArch>(), Ok(arch));
            assert_eq!(arch.to_string().parse::<PickerArch>(), Ok(arch));
        }
        assert!("resnet".parse::<PickerArch>().is_err());
    }

    #[test]
    fn odd_sides_give_a_score_for_every_output_pixel() {
        for arch in [PickerArch::Fcn, PickerArch::Small] {
            let net = PickerNet::seeded(arch, 1);
            let s = net.stride();
            let (w, h) = (37, 21);
            let map = FusedPicker::new(&net).score_map(&image(w, h), w, h, 32, 4);
            assert_eq!((map.w, map.h), (w.div_ceil(s), h.div_ceil(s)));
            assert!(map.data.iter().all(|v| v.is_finite()));
        }
    }
}
