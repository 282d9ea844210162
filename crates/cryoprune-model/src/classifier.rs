//! A backbone plus the multi-loss head: the network every cryoprune command trains or runs.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use burn::module::Module;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::efficientnet::{self, EfficientNetLite0};
use crate::head::{Head, HeadConfig, Readout};
use crate::layers::conv_to_planes;
use crate::resnet::{ResNet, ResNetDepth};
use crate::small::{self, SmallNet};
use crate::topaz::{self, TopazResNet16};

/// The architectures cryoprune can build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Arch {
    #[serde(rename = "resnet18")]
    ResNet18,
    #[serde(rename = "resnet34")]
    ResNet34,
    #[serde(rename = "resnet50")]
    ResNet50,
    #[serde(rename = "efficientnet-lite0")]
    EfficientNetLite0,
    #[serde(rename = "small")]
    Small,
    /// The small network with twice the channels in every stage.
    #[serde(rename = "small-wide")]
    SmallWide,
    /// Topaz's ResNet16 (`units=64`), for starting from Topaz's general picking models.
    #[serde(rename = "topaz-resnet16")]
    TopazResNet16,
}

impl Arch {
    pub const ALL: [Arch; 7] = [
        Arch::ResNet18,
        Arch::ResNet34,
        Arch::ResNet50,
        Arch::EfficientNetLite0,
        Arch::Small,
        Arch::SmallWide,
        Arch::TopazResNet16,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Arch::ResNet18 => "resnet18",
            Arch::ResNet34 => "resnet34",
            Arch::ResNet50 => "resnet50",
            Arch::EfficientNetLite0 => "efficientnet-lite0",
            Arch::Small => "small",
            Arch::SmallWide => "small-wide",
            Arch::TopazResNet16 => "topaz-resnet16",
        }
    }

    /// Channels of the feature map the head sees.
    pub fn feature_channels(self) -> usize {
        match self {
            Arch::ResNet18 => ResNetDepth::R18.out_channels(),
            Arch::ResNet34 => ResNetDepth::R34.out_channels(),
            Arch::ResNet50 => ResNetDepth::R50.out_channels(),
            Arch::EfficientNetLite0 => efficientnet::OUT_CHANNELS,
            Arch::Small => small::out_channels(small::BASE_WIDTH),
            Arch::SmallWide => small::out_channels(small::WIDE_BASE_WIDTH),
            Arch::TopazResNet16 => topaz::OUT_CHANNELS,
        }
    }

    /// Whether ImageNet-style pretrained weights exist for this architecture at all.
    pub fn has_pretrained(self) -> bool {
        !matches!(self, Arch::Small | Arch::SmallWide | Arch::TopazResNet16)
    }

    /// The smallest input the network takes (Topaz's ResNet16 pads nothing; the small
    /// networks' unpadded pools halve it three times; the others pad every stride).
    pub fn min_input(self) -> usize {
        match self {
            Arch::TopazResNet16 => topaz::RECEPTIVE_FIELD,
            Arch::Small | Arch::SmallWide => small::MIN_INPUT,
            _ => 1,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Arch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.to_ascii_lowercase().replace('_', "-");
        Arch::ALL
            .into_iter()
            .find(|a| a.name() == lower)
            .ok_or_else(|| {
                let names: Vec<_> = Arch::ALL.iter().map(|a| a.name()).collect();
                format!(
                    "unknown architecture '{s}'; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// The feature extractor, one of the supported architectures.
// One backbone exists per run, so the size gap between variants costs nothing worth boxing for.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Backbone {
    ResNet(ResNet),
    EfficientNet(EfficientNetLite0),
    Small(SmallNet),
    Topaz(TopazResNet16),
}

impl Backbone {
    pub fn new(arch: Arch, in_channels: usize, device: &Device) -> Self {
        match arch {
            Arch::ResNet18 => Self::ResNet(ResNet::new(ResNetDepth::R18, in_channels, device)),
            Arch::ResNet34 => Self::ResNet(ResNet::new(ResNetDepth::R34, in_channels, device)),
            Arch::ResNet50 => Self::ResNet(ResNet::new(ResNetDepth::R50, in_channels, device)),
            Arch::EfficientNetLite0 => {
                Self::EfficientNet(EfficientNetLite0::new(in_channels, device))
            }
            Arch::Small => Self::Small(SmallNet::new(in_channels, small::BASE_WIDTH, device)),
            Arch::SmallWide => {
                Self::Small(SmallNet::new(in_channels, small::WIDE_BASE_WIDTH, device))
            }
            Arch::TopazResNet16 => Self::Topaz(TopazResNet16::new(in_channels, device)),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Self::ResNet(m) => m.forward(x),
            Self::EfficientNet(m) => m.forward(x),
            Self::Small(m) => m.forward(x),
            Self::Topaz(m) => m.forward(x),
        }
    }

    /// Fits the first convolution to `planes` input channels (see
    /// [`crate::layers::conv_to_planes`]): an RGB stem to grayscale, a grayscale stem to a
    /// micrograph with its power spectrum.
    pub fn with_planes(self, planes: usize) -> Self {
        match self {
            Self::ResNet(m) => Self::ResNet(m.with_planes(planes)),
            Self::EfficientNet(m) => Self::EfficientNet(m.with_planes(planes)),
            Self::Small(mut m) => {
                m.stages[0].a.conv = conv_to_planes(m.stages[0].a.conv.clone(), planes);
                Self::Small(m)
            }
            Self::Topaz(mut m) => {
                m.conv_in = conv_to_planes(m.conv_in, planes);
                Self::Topaz(m)
            }
        }
    }
}

/// What a [`Classifier`] is made of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierConfig {
    pub arch: Arch,
    /// Planes per input image: 1, or 2 for a micrograph and its power spectrum.
    #[serde(default = "one")]
    pub in_channels: usize,
    pub classes: usize,
    pub head: HeadConfig,
}

fn one() -> usize {
    1
}

impl ClassifierConfig {
    /// A classifier with fresh weights.
    pub fn init(&self, device: &Device) -> Classifier {
        self.init_with(Backbone::new(self.arch, self.in_channels, device), device)
    }

    /// A classifier on an existing (for example pretrained) backbone, its stem fitted to the
    /// input's planes; the head is always fresh.
    pub fn init_with(&self, backbone: Backbone, device: &Device) -> Classifier {
        Classifier {
            backbone: backbone.with_planes(self.in_channels),
            head: Head::new(
                self.arch.feature_channels(),
                self.classes,
                self.head.branches,
                device,
            ),
        }
    }
}

#[derive(Module, Debug)]
pub struct Classifier {
    pub backbone: Backbone,
    pub head: Head,
}

impl Classifier {
    /// Logits of every head branch for a batch [N, 1, S, S], main branch first.
    pub fn forward(&self, x: Tensor<4>) -> Vec<Tensor<2>> {
        self.head.forward(self.backbone.forward(x))
    }

    /// The backbone's features of a batch [N, 1, S, S] averaged over the image, [N, channels]:
    /// what the head's first layer sees.
    pub fn embedding(&self, x: Tensor<4>) -> Tensor<2> {
        let f = self.backbone.forward(x);
        let [n, c, _, _] = f.dims();
        f.mean_dim(3).mean_dim(2).reshape([n, c])
    }

    /// Probabilities [N, classes]: the main branch's, or the mean of all branches'.
    pub fn probabilities(&self, x: Tensor<4>, readout: Readout) -> Tensor<2> {
        self.head.probabilities(self.backbone.forward(x), readout)
    }
}

/// A module's weights as safetensors bytes (every tensor, batch-norm statistics included). The
/// same weights give the same bytes, so the SHA-256 a model directory records means the weights.
pub fn to_safetensors<M: ModuleSnapshot>(module: &M) -> Result<Vec<u8>, String> {
    let mut store = SafetensorsStore::from_bytes(None);
    module.save_into(&mut store).map_err(|e| e.to_string())?;
    sorted_header(store.get_bytes().map_err(|e| e.to_string())?)
}

/// `bytes` with the safetensors header's keys in sorted order. burn writes its metadata from a
/// hash map, in an order that changes from run to run; the tensors' data (and their offsets,
/// which the header states explicitly) stay as they are.
fn sorted_header(bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    let bad = || "safetensors bytes without a valid header".to_string();
    let len: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(bad)?;
    let end = usize::try_from(u64::from_le_bytes(len))
        .ok()
        .and_then(|n| n.checked_add(8))
        .filter(|&end| end <= bytes.len())
        .ok_or_else(bad)?;
    let header: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..end]).map_err(|e| e.to_string())?;
    let header: BTreeMap<String, BTreeMap<String, serde_json::Value>> = header
        .into_iter()
        .map(|(k, v)| Ok((k, serde_json::from_value(v).map_err(|e| e.to_string())?)))
        .collect::<Result<_, String>>()?;
    let mut json = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
    // The format pads the header with spaces so the data starts 8-byte aligned.
    json.resize(json.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + json.len() + bytes.len() - end);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&bytes[end..]);
    Ok(out)
}

/// Fills `module` from safetensors `bytes`; every tensor must be there and fit.
pub fn load_safetensors<M: ModuleSnapshot>(module: &mut M, bytes: Vec<u8>) -> Result<(), String> {
    let mut store = SafetensorsStore::from_bytes(Some(bytes));
    let result = module.load_from(&mut store).map_err(|e| e.to_string())?;
    if !result.errors.is_empty() || !result.missing.is_empty() {
        return Err(format!(
            "the weights do not fit the network ({} missing, {} errors)",
            result.missing.len(),
            result.errors.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_weights_give_the_same_bytes_and_load_back() {
        let device = Device::flex();
        let config = ClassifierConfig {
            in_channels: 1,
            arch: Arch::Small,
            classes: 2,
            head: HeadConfig::new(2),
        };
        let model = config.init(&device);
        let first = to_safetensors(&model).unwrap();
        for _ in 0..5 {
            assert!(to_safetensors(&model).unwrap() == first, "bytes changed");
        }
        let (_, header) = safetensors::SafeTensors::read_metadata(&first).unwrap();
        assert_eq!(header.metadata().as_ref().unwrap()["producer"], "burn");
        assert!(safetensors::SafeTensors::deserialize(&first).is_ok());
        let mut copy = config.init(&device);
        load_safetensors(&mut copy, first.clone()).unwrap();
        assert!(
            to_safetensors(&copy).unwrap() == first,
            "a loaded copy differs"
        );
        assert!(sorted_header(vec![1, 2, 3]).is_err());
    }
}
