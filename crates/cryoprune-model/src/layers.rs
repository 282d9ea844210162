//! The one building block every backbone repeats: a bias-free convolution followed by batch norm.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor};

/// Convolution without bias plus batch norm; torchvision and the EfficientNet port both pair them
/// this way, and BN's shift makes a convolution bias redundant.
#[derive(Module, Debug)]
pub struct ConvBn {
    pub conv: Conv2d,
    pub bn: BatchNorm,
}

/// How to build a [`ConvBn`].
#[derive(Debug, Clone)]
pub struct ConvBnConfig {
    pub channels: [usize; 2],
    pub kernel: usize,
    pub stride: usize,
    pub groups: usize,
    pub padding: PaddingConfig2d,
    /// BatchNorm epsilon: 1e-5 in torchvision, 1e-3 in the TensorFlow-born EfficientNets.
    pub eps: f64,
}

impl ConvBnConfig {
    /// A `kernel`×`kernel` convolution with symmetric padding `kernel / 2` (torchvision style).
    pub fn new(c_in: usize, c_out: usize, kernel: usize, stride: usize) -> Self {
        let p = kernel / 2;
        Self {
            channels: [c_in, c_out],
            kernel,
            stride,
            groups: 1,
            padding: PaddingConfig2d::Explicit(p, p, p, p),
            eps: 1e-5,
        }
    }

    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }

    pub fn padding(mut self, padding: PaddingConfig2d) -> Self {
        self.padding = padding;
        self
    }

    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    pub fn init(&self, device: &Device) -> ConvBn {
        ConvBn {
            conv: self.conv(device),
            bn: self.bn(device),
        }
    }

    /// The convolution alone, for networks whose checkpoints name it apart from its norm.
    pub fn conv(&self, device: &Device) -> Conv2d {
        Conv2dConfig::new(self.channels, [self.kernel, self.kernel])
            .with_stride([self.stride, self.stride])
            .with_groups(self.groups)
            .with_padding(self.padding.clone())
            .with_bias(false)
            .init(device)
    }

    /// The batch norm alone.
    pub fn bn(&self, device: &Device) -> BatchNorm {
        BatchNormConfig::new(self.channels[1])
            .with_epsilon(self.eps)
            .init(device)
    }
}

impl ConvBn {
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.bn.forward(self.conv.forward(x))
    }
}

/// Fits a first convolution to inputs of `planes` channels. An RGB stem is first summed to one
/// channel: exactly the response to a gray image repeated into R, G and B. One channel becomes
/// several by repeating its kernels scaled by 1/√planes, so a second plane of the same spread
/// (a micrograph's normalised power spectrum beside the micrograph) starts out seen through the
/// pretrained filters without changing the spread of the response the next layers expect.
pub fn conv_to_planes(mut conv: Conv2d, planes: usize) -> Conv2d {
    let mut w = conv.weight.val();
    let have = w.dims()[1];
    if have == planes {
        return conv;
    }
    if have != 1 {
        w = w.sum_dim(1);
    }
    if planes > 1 {
        w = w.repeat_dim(1, planes) / (planes as f32).sqrt();
    }
    conv.weight = Param::from_tensor(w.detach());
    conv
}

/// Global average over the spatial axes: [N, C, H, W] -> [N, C].
pub fn global_pool(x: Tensor<4>) -> Tensor<2> {
    let [n, c, _, _] = x.dims();
    x.mean_dim(3).mean_dim(2).reshape([n, c])
}
