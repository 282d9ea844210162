//! Topaz's ResNet16 (Bepler et al. 2019), the network of its general particle-picking models
//! (`resnet16_u64`), so they can start a fine-tuning. Their weights are GPL-3.0 and trained on
//! many real datasets; cryoprune does not ship them but loads them from a path the user gives
//! (`--pretrained topaz:PATH`).
//!
//! The layout follows Topaz's `ResNet16(units=64, bn=False)` layer for layer, so its state dict
//! loads by name: a 7×7 convolution, seven residual blocks (the first and fifth stride 2, the
//! fifth widening 64 → 128 through a 1×1 projection), a 5×5 convolution to 256 features. No
//! padding anywhere: the network is fully convolutional with a 91-pixel receptive field, so a
//! 91-px input gives one feature vector and larger inputs a map, every 4 px, which the head
//! pools.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::activation::relu;
use burn::tensor::{s, Device, Tensor};

/// Channels of the last feature map.
pub const OUT_CHANNELS: usize = 256;
/// Input pixels one output feature sees.
pub const RECEPTIVE_FIELD: usize = 91;

/// A residual block: 3×3, ReLU, 3×3 (strided), plus the input cropped to the output's window
/// (projected by a 1×1 convolution where the width changes, else subsampled), then ReLU.
#[derive(Module, Debug)]
pub struct Resid {
    pub conv0: Conv2d,
    pub conv1: Conv2d,
    pub proj: Option<Conv2d>,
    pub stride: usize,
}

impl Resid {
    pub fn new(c_in: usize, c_out: usize, stride: usize, device: &Device) -> Self {
        Self {
            conv0: Conv2dConfig::new([c_in, c_in], [3, 3]).init(device),
            conv1: Conv2dConfig::new([c_in, c_out], [3, 3])
                .with_stride([stride, stride])
                .init(device),
            proj: (c_in != c_out).then(|| {
                Conv2dConfig::new([c_in, c_out], [1, 1])
                    .with_stride([stride, stride])
                    .with_bias(false)
                    .init(device)
            }),
            stride,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self.conv1.forward(relu(self.conv0.forward(x.clone())));
        let [_, _, h, w] = x.dims();
        // Each unpadded 3×3 trims one pixel per side.
        let x = x.slice(s![.., .., 2..h - 2, 2..w - 2]);
        let x = match &self.proj {
            Some(p) => p.forward(x),
            None if self.stride > 1 => x.slice(s![.., .., ..;self.stride, ..;self.stride]),
            None => x,
        };
        relu(y + x)
    }
}

#[derive(Module, Debug)]
pub struct TopazResNet16 {
    pub conv_in: Conv2d,
    pub blocks: Vec<Resid>,
    pub conv_out: Conv2d,
}

impl TopazResNet16 {
    pub fn new(in_channels: usize, device: &Device) -> Self {
        let u = 64;
        let blocks = [(u, u, 2), (u, u, 1), (u, u, 1), (u, u, 1), (u, 2 * u, 2)]
            .into_iter()
            .chain([(2 * u, 2 * u, 1), (2 * u, 2 * u, 1)])
            .map(|(i, o, s)| Resid::new(i, o, s, device))
            .collect();
        Self {
            conv_in: Conv2dConfig::new([in_channels, u], [7, 7]).init(device),
            blocks,
            conv_out: Conv2dConfig::new([2 * u, OUT_CHANNELS], [5, 5]).init(device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = relu(self.conv_in.forward(x));
        for b in &self.blocks {
            x = b.forward(x);
        }
        relu(self.conv_out.forward(x))
    }
}

/// Topaz's state-dict names (`features.features.N.…`, layer N of its `nn.Sequential`) to ours.
pub fn key_patterns() -> Vec<(String, String)> {
    let mut p = vec![(
        r"^features\.features\.0\.conv\.".to_string(),
        "conv_in.".to_string(),
    )];
    for n in 1..=7 {
        p.push((
            format!(r"^features\.features\.{n}\."),
            format!("blocks.{}.", n - 1),
        ));
    }
    p.push((r"^features\.features\.8\.conv\.".into(), "conv_out.".into()));
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_receptive_field_gives_one_feature_and_larger_inputs_a_map_every_4_px() {
        let device = Device::flex();
        let net = TopazResNet16::new(1, &device);
        let x = Tensor::<4>::zeros([1, 1, RECEPTIVE_FIELD, RECEPTIVE_FIELD], &device);
        assert_eq!(net.forward(x).dims(), [1, OUT_CHANNELS, 1, 1]);
        let x = Tensor::<4>::zeros([2, 1, 99, 99], &device);
        assert_eq!(net.forward(x).dims(), [2, OUT_CHANNELS, 3, 3]);
    }
}
