//! ResNet-18/34/50 with torchvision's parameter names (`conv1`, `bn1`, `layer1.0.conv1`,
//! `layer2.0.downsample.0`, ...), so torchvision and timm checkpoints load without a name map
//! beyond `downsample.{0,1}` -> `downsample.{conv,bn}`.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use crate::layers::{conv_to_planes, ConvBnConfig};

/// Which ResNet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResNetDepth {
    R18,
    R34,
    R50,
}

impl ResNetDepth {
    fn blocks(self) -> [usize; 4] {
        match self {
            Self::R18 => [2, 2, 2, 2],
            Self::R34 | Self::R50 => [3, 4, 6, 3],
        }
    }

    fn bottleneck(self) -> bool {
        self == Self::R50
    }

    /// Channels of the last feature map.
    pub fn out_channels(self) -> usize {
        if self.bottleneck() {
            2048
        } else {
            512
        }
    }
}

/// The 1×1 strided projection on a block's shortcut when its shape changes.
#[derive(Module, Debug)]
pub struct Downsample {
    pub conv: Conv2d,
    pub bn: BatchNorm,
}

/// A residual block: two 3×3 convolutions (basic) or 1×1, 3×3, 1×1 (bottleneck, stride on the
/// 3×3 as in torchvision's "v1.5").
#[derive(Module, Debug)]
pub struct Block {
    pub conv1: Conv2d,
    pub bn1: BatchNorm,
    pub conv2: Conv2d,
    pub bn2: BatchNorm,
    pub conv3: Option<Conv2d>,
    pub bn3: Option<BatchNorm>,
    pub downsample: Option<Downsample>,
}

impl Block {
    fn new(c_in: usize, width: usize, stride: usize, bottleneck: bool, device: &Device) -> Self {
        let c_out = if bottleneck { width * 4 } else { width };
        let (first, second) = if bottleneck {
            (
                ConvBnConfig::new(c_in, width, 1, 1),
                ConvBnConfig::new(width, width, 3, stride),
            )
        } else {
            (
                ConvBnConfig::new(c_in, width, 3, stride),
                ConvBnConfig::new(width, width, 3, 1),
            )
        };
        let third = bottleneck.then(|| ConvBnConfig::new(width, c_out, 1, 1));
        let downsample = (stride != 1 || c_in != c_out).then(|| {
            let cfg = ConvBnConfig::new(c_in, c_out, 1, stride);
            Downsample {
                conv: cfg.conv(device),
                bn: cfg.bn(device),
            }
        });
        Self {
            conv1: first.conv(device),
            bn1: first.bn(device),
            conv2: second.conv(device),
            bn2: second.bn(device),
            conv3: third.as_ref().map(|c| c.conv(device)),
            bn3: third.as_ref().map(|c| c.bn(device)),
            downsample,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = match &self.downsample {
            Some(d) => d.bn.forward(d.conv.forward(x.clone())),
            None => x.clone(),
        };
        let mut y = relu(self.bn1.forward(self.conv1.forward(x)));
        y = self.bn2.forward(self.conv2.forward(y));
        if let (Some(conv3), Some(bn3)) = (&self.conv3, &self.bn3) {
            y = bn3.forward(conv3.forward(relu(y)));
        }
        relu(y + identity)
    }
}

/// The ResNet feature extractor (everything before torchvision's `avgpool`/`fc`).
#[derive(Module, Debug)]
pub struct ResNet {
    pub conv1: Conv2d,
    pub bn1: BatchNorm,
    pub maxpool: MaxPool2d,
    pub layer1: Vec<Block>,
    pub layer2: Vec<Block>,
    pub layer3: Vec<Block>,
    pub layer4: Vec<Block>,
}

impl ResNet {
    pub fn new(depth: ResNetDepth, in_channels: usize, device: &Device) -> Self {
        let stem = ConvBnConfig::new(in_channels, 64, 7, 2);
        let bottleneck = depth.bottleneck();
        let expansion = if bottleneck { 4 } else { 1 };
        let mut c_in = 64;
        let mut stage = |width: usize, n: usize, stride: usize| -> Vec<Block> {
            (0..n)
                .map(|i| {
                    let b = Block::new(
                        c_in,
                        width,
                        if i == 0 { stride } else { 1 },
                        bottleneck,
                        device,
                    );
                    c_in = width * expansion;
                    b
                })
                .collect()
        };
        let [n1, n2, n3, n4] = depth.blocks();
        let layer1 = stage(64, n1, 1);
        let layer2 = stage(128, n2, 2);
        let layer3 = stage(256, n3, 2);
        let layer4 = stage(512, n4, 2);
        Self {
            conv1: stem.conv(device),
            bn1: stem.bn(device),
            maxpool: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            layer1,
            layer2,
            layer3,
            layer4,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = self
            .maxpool
            .forward(relu(self.bn1.forward(self.conv1.forward(x))));
        for block in self
            .layer1
            .iter()
            .chain(&self.layer2)
            .chain(&self.layer3)
            .chain(&self.layer4)
        {
            x = block.forward(x);
        }
        x
    }

    pub fn with_planes(mut self, planes: usize) -> Self {
        self.conv1 = conv_to_planes(self.conv1, planes);
        self
    }
}
