//! A small network trained from scratch, for CPUs: four stages of two 3×3 convolutions and a 2×2
//! max-pool, widths 16-32-64-128; 0.29 M parameters. Plain dense convolutions suit CPU kernels
//! better than depthwise ones, and there is nothing to fine-tune, so it starts from scratch.

use burn::module::Module;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use crate::layers::{ConvBn, ConvBnConfig};

const WIDTHS: [usize; 4] = [16, 32, 64, 128];

/// Channels of the last feature map.
pub const OUT_CHANNELS: usize = 128;

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
    pub fn new(in_channels: usize, device: &Device) -> Self {
        let mut c_in = in_channels;
        let stages = WIDTHS
            .iter()
            .map(|&w| {
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
