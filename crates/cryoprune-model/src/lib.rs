//! cryoprune's networks, generic over burn's run-time device: ResNet-18/34/50 and
//! EfficientNet-Lite0 that load ImageNet checkpoints, a small network for CPUs, the
//! PickerOptimizer multi-loss head, fused CPU inference, pretrained weights and the pick
//! context.

pub mod backprop;
pub mod classifier;
pub mod device;
pub mod efficientnet;
pub mod exposure_context;
pub mod head;
pub mod hub;
pub mod infer;
pub mod layers;
pub mod pick_context;
pub mod picker;
pub mod pretrained;
pub mod resnet;
pub mod small;
pub mod topaz;

pub use classifier::{Arch, Backbone, Classifier, ClassifierConfig};
pub use device::{select as select_device, Compute};
pub use head::{HeadConfig, Readout};
pub use infer::{FusedNet, Predictor};
pub use pick_context::{PickContext, PickFacts};
pub use pretrained::{load_backbone, LoadReport, Pretrained};
