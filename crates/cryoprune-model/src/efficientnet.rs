//! EfficientNet-Lite0: EfficientNet-B0 made friendly to integer hardware (ReLU6, no
//! squeeze-excitation, fixed stem and head). Field names follow the lukemelas-style PyTorch port
//! with the leading underscores dropped (`_blocks.3._depthwise_conv` is `blocks.3.depthwise_conv`).
//! Padding is TensorFlow's "SAME" (asymmetric on strided layers), which the port reproduces
//! and its ImageNet weights were trained with.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, PaddingConfig2d};
use burn::tensor::activation::relu6;
use burn::tensor::{Device, Tensor};

use crate::layers::{conv_to_planes, ConvBnConfig};

/// TensorFlow's BatchNorm epsilon, kept by the port.
const BN_EPS: f64 = 1e-3;

/// (repeats, kernel, stride, expansion, in, out) per stage of Lite0.
const STAGES: [(usize, usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
];

/// Channels of the last feature map.
pub const OUT_CHANNELS: usize = 1280;

fn conv_bn(c_in: usize, c_out: usize, kernel: usize, stride: usize) -> ConvBnConfig {
    ConvBnConfig::new(c_in, c_out, kernel, stride)
        .padding(PaddingConfig2d::Same)
        .eps(BN_EPS)
}

/// Inverted residual: 1×1 expansion, depthwise k×k, 1×1 projection, identity skip when shapes
/// allow.
#[derive(Module, Debug)]
pub struct MbConv {
    pub expand_conv: Option<Conv2d>,
    pub bn0: Option<BatchNorm>,
    pub depthwise_conv: Conv2d,
    pub bn1: BatchNorm,
    pub project_conv: Conv2d,
    pub bn2: BatchNorm,
    pub skip: bool,
}

impl MbConv {
    fn new(
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        expand: usize,
        device: &Device,
    ) -> Self {
        let mid = c_in * expand;
        let expansion = (expand != 1).then(|| conv_bn(c_in, mid, 1, 1));
        let depthwise = conv_bn(mid, mid, kernel, stride).groups(mid);
        let project = conv_bn(mid, c_out, 1, 1);
        Self {
            expand_conv: expansion.as_ref().map(|c| c.conv(device)),
            bn0: expansion.as_ref().map(|c| c.bn(device)),
            depthwise_conv: depthwise.conv(device),
            bn1: depthwise.bn(device),
            project_conv: project.conv(device),
            bn2: project.bn(device),
            skip: stride == 1 && c_in == c_out,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut y = x.clone();
        if let (Some(conv), Some(bn)) = (&self.expand_conv, &self.bn0) {
            y = relu6(bn.forward(conv.forward(y)));
        }
        y = relu6(self.bn1.forward(self.depthwise_conv.forward(y)));
        y = self.bn2.forward(self.project_conv.forward(y));
        if self.skip {
            y = y + x;
        }
        y
    }
}

/// The EfficientNet-Lite0 feature extractor, up to and including the 1280-channel head conv.
#[derive(Module, Debug)]
pub struct EfficientNetLite0 {
    pub conv_stem: Conv2d,
    pub bn0: BatchNorm,
    pub blocks: Vec<MbConv>,
    pub conv_head: Conv2d,
    pub bn1: BatchNorm,
}

impl EfficientNetLite0 {
    pub fn new(in_channels: usize, device: &Device) -> Self {
        let stem = conv_bn(in_channels, 32, 3, 2);
        let head = conv_bn(320, OUT_CHANNELS, 1, 1);
        let mut blocks = Vec::new();
        for (repeats, kernel, stride, expand, c_in, c_out) in STAGES {
            for i in 0..repeats {
                let (c_in, stride) = if i == 0 { (c_in, stride) } else { (c_out, 1) };
                blocks.push(MbConv::new(c_in, c_out, kernel, stride, expand, device));
            }
        }
        Self {
            conv_stem: stem.conv(device),
            bn0: stem.bn(device),
            blocks,
            conv_head: head.conv(device),
            bn1: head.bn(device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = relu6(self.bn0.forward(self.conv_stem.forward(x)));
        for block in &self.blocks {
            x = block.forward(x);
        }
        relu6(self.bn1.forward(self.conv_head.forward(x)))
    }

    pub fn with_planes(mut self, planes: usize) -> Self {
        self.conv_stem = conv_to_planes(self.conv_stem, planes);
        self
    }
}
