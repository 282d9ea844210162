//! A small network for CPUs: four stages of two 3×3 convolutions and a 2×2 max-pool, widths
//! 16-32-64-128 (0.29 M parameters), or twice those in the wide variant (1.2 M). Plain dense
//! convolutions suit CPU kernels better than depthwise ones.

use burn::module::Module;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use crate::layers::{ConvBn, ConvBnConfig};

/// The first stage's width; each later stage doubles it.
pub const BASE_WIDTH: usize = 16;
/// The wide variant's first-stage width: four times the multiply-adds of the default.
pub const WIDE_BASE_WIDTH: usize = 32;
const STAGES: u32 = 4;

/// Channels of the last feature map for a first-stage width of `base`.
pub const fn out_channels(base: usize) -> usize {
    base << (STAGES - 1)
}

/// The smallest input that survives the three 2×2 pools with a pixel left.
pub const MIN_INPUT: usize = 1 << (STAGES - 1);

#[derive(Module, Debug)]
pub struct Stage {
    pub a: ConvBn,
    pub b: ConvBn,
}

#[derive(Module, Debug)]
pub struct SmallNet {
    pub stages: Vec<Stage>,
    pub pool: MaxPool2d,
}

impl SmallNet {
    /// A fresh network whose first stage is `base` channels wide.
    pub fn new(in_channels: usize, base: usize, device: &Device) -> Self {
        let mut c_in = in_channels;
        let stages = (0..STAGES)
            .map(|i| {
                let w = base << i;
                let s = Stage {
                    a: ConvBnConfig::new(c_in, w, 3, 1).init(device),
                    b: ConvBnConfig::new(w, w, 3, 1).init(device),
                };
                c_in = w;
                s
            })
            .collect();
        Self {
            stages,
            pool: MaxPool2dConfig::new([2, 2]).init(),
        }
    }

    pub fn forward(&self, mut x: Tensor<4>) -> Tensor<4> {
        let last = self.stages.len() - 1;
        for (i, stage) in self.stages.iter().enumerate() {
            x = relu(stage.b.forward(relu(stage.a.forward(x))));
            // The last stage keeps its resolution: the head pools globally anyway.
            if i < last {
                x = self.pool.forward(x);
            }
        }
        x
    }
}
