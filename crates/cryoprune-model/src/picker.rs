//! The deep picker's network: fully convolutional, so one pass over a binned micrograph gives a
//! particle score at every other pixel. Two 32-channel convolutions at full resolution see the
//! fine texture, a 2×2 max pool halves the map, four 64-channel convolutions gather the context
//! of a particle and its surroundings (a 24-pixel receptive field: twice the particle's diameter
//! at the binning `picker train` chooses), and a 1×1 convolution gives one log-odds per pixel.
//! Convolutions are padded, so the map lines up with the micrograph; `score_map` cuts large
//! micrographs into tiles with a margin of half the receptive field so the padding never
//! reaches a pixel whose score is kept.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use crate::infer::conv::{Act, FusedConv};
use crate::infer::pool::MaxPool;
use crate::infer::Maps;
use crate::layers::{ConvBn, ConvBnConfig};

/// Input pixels per output pixel along each axis.
pub const STRIDE: usize = 2;
/// Input pixels one output sees.
pub const RECEPTIVE_FIELD: usize = 24;

#[derive(Module, Debug)]
pub struct PickerNet {
    /// At the input's resolution.
    pub early: Vec<ConvBn>,
    pub pool: MaxPool2d,
    /// After the pool.
    pub late: Vec<ConvBn>,
    /// 1×1 to one log-odds, with a bias.
    pub out: Conv2d,
}

impl PickerNet {
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
            pool: MaxPool2dConfig::new([STRIDE, STRIDE]).init(),
            late,
            out: Conv2dConfig::new([64, 1], [1, 1]).init(device),
        }
    }

    /// A network on the CPU (where the picker trains and runs), its weights drawn from burn's
    /// process-wide generator seeded with `seed`.
    pub fn seeded(seed: u64) -> Self {
        let device = Device::flex();
        device.seed(seed);
        Self::new(&device)
    }

    /// [n, 1, h, w] → log-odds [n, 1, h/2, w/2] (burn's layers: the reference for the CPU paths).
    pub fn forward(&self, mut x: Tensor<4>) -> Tensor<4> {
        for c in &self.early {
            x = relu(c.forward(x));
        }
        x = self.pool.forward(x);
        for c in &self.late {
            x = relu(c.forward(x));
        }
        self.out.forward(x)
    }
}

/// A score map: log-odds per output pixel; output (i, j) covers input pixels 2i..2i+2, 2j..2j+2.
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
    late: Vec<FusedConv>,
    out: FusedConv,
}

impl FusedPicker {
    pub fn new(net: &PickerNet) -> Self {
        let fused = |c: &ConvBn| FusedConv::from_conv_bn(c, Act::Relu);
        Self {
            early: net.early.iter().map(fused).collect(),
            pool: MaxPool::new(&net.pool),
            late: net.late.iter().map(fused).collect(),
            out: FusedConv::new(&net.out, None, Act::None),
        }
    }

    /// Log-odds of a batch of `h` × `w` inputs (even sides): [n, h/2, w/2] in one buffer.
    pub fn forward(&self, x: Maps) -> Maps {
        let mut x = x;
        for c in &self.early {
            x = c.forward(&x, None);
        }
        x = self.pool.forward(&x);
        for c in &self.late {
            x = c.forward(&x, None);
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
        let tile = tile.max(STRIDE).next_multiple_of(STRIDE);
        let margin = (RECEPTIVE_FIELD / 2).next_multiple_of(STRIDE);
        let side = tile + 2 * margin;
        let (ow, oh) = (w.div_ceil(STRIDE), h.div_ceil(STRIDE));
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
            let (m, t) = (margin / STRIDE, tile / STRIDE);
            for (b, &(x0, y0)) in group.iter().enumerate() {
                let plane = &y.data[b * th * tw..(b + 1) * th * tw];
                let (ox0, oy0) = (x0 / STRIDE, y0 / STRIDE);
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
        let net = PickerNet::new(&device);
        let (w, h) = (64, 48);
        let img = image(w, h);
        let x = Tensor::<4>::from_data(TensorData::new(img.clone(), [1, 1, h, w]), &device);
        let reference = floats(net.forward(x));
        assert_eq!(reference.len(), (w / 2) * (h / 2));
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
        let map = fused.score_map(&img, w, h, 16, 3);
        assert_eq!((map.w, map.h), (w / 2, h / 2));
        let m = RECEPTIVE_FIELD / 2 / STRIDE;
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

    #[test]
    fn odd_sides_give_a_score_for_every_pixel_pair() {
        let net = PickerNet::new(&Device::flex());
        let (w, h) = (37, 21);
        let map = FusedPicker::new(&net).score_map(&image(w, h), w, h, 32, 4);
        assert_eq!((map.w, map.h), (19, 11));
        assert!(map.data.iter().all(|v| v.is_finite()));
    }
}
