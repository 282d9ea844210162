//! Our forward passes against PyTorch's on the same weights (`../shared/data/reference`): the real
//! ImageNet EfficientNet-Lite0 from a legacy `.pth`, and a seeded ResNet-18 from a zip `.pth`
//! stored in fp16. Both must agree to 1e-4 relative error (float32 gets near 1e-5), through burn's
//! layers and through the fused CPU path that cryoprune's commands run.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::store::{ModuleSnapshot, PytorchStore};
use burn::tensor::{Device, Tensor, TensorData};
use cryoprune_model::efficientnet::EfficientNetLite0;
use cryoprune_model::head::Head;
use cryoprune_model::layers::global_pool;
use cryoprune_model::pretrained::{cast_to_f32, load_into};
use cryoprune_model::resnet::{ResNet, ResNetDepth};
use cryoprune_model::{Arch, Backbone, Classifier, FusedNet};

fn shared(rel: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .join(rel);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipping: {} not present", p.display());
        None
    }
}

struct Reference {
    bytes: Vec<u8>,
}

impl Reference {
    fn tensor<const D: usize>(&self, name: &str, device: &Device) -> Tensor<D> {
        let st = safetensors::SafeTensors::deserialize(&self.bytes).unwrap();
        let view = st.tensor(name).unwrap();
        assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Tensor::from_data(TensorData::new(values, view.shape().to_vec()), device)
    }
}

fn relative_error<const D: usize>(ours: Tensor<D>, reference: Tensor<D>) -> f64 {
    let diff = (ours - reference.clone())
        .powi_scalar(2)
        .sum()
        .into_scalar::<f32>() as f64;
    let norm = reference.powi_scalar(2).sum().into_scalar::<f32>() as f64;
    (diff / norm).sqrt()
}

/// The ImageNet classifier, which our backbones leave out, loaded on its own.
fn load_fc(path: &Path, prefix: &str, device: &Device, inputs: usize) -> Linear {
    let mut fc = LinearConfig::new(inputs, 1000).init(device);
    let mut store = PytorchStore::from_file(path)
        .with_regex("^(weight|bias)$")
        .with_key_remapping(format!("^{prefix}\\."), "")
        .allow_partial(true);
    let r = fc.load_from(&mut store).unwrap();
    assert_eq!(r.applied.len(), 2, "{:?}", r);
    cast_to_f32(&mut fc).unwrap();
    fc
}

/// The fused CPU path ([`FusedNet`]) on the same backbone and ImageNet classifier: its logits
/// against the reference's.
fn fused_error(backbone: Backbone, fc: Linear, reference: &Reference, device: &Device) -> f64 {
    let model = Classifier {
        backbone,
        head: Head {
            fc,
            reduce2: None,
            fc2: None,
            reduce3a: None,
            reduce3b: None,
            fc3: None,
        },
    };
    let input: Vec<f32> = reference
        .tensor::<4>("input", device)
        .into_data()
        .try_into_vec()
        .unwrap();
    let images: Vec<&[f32]> = input.chunks_exact(3 * 224 * 224).collect();
    let logits = FusedNet::new(&model).logits(&images, 3, 224).remove(0);
    let ours = Tensor::<2>::from_data(TensorData::new(logits, [2, 1000]), device);
    relative_error(ours, reference.tensor("logits", device))
}

fn argmax_rows(t: Tensor<2>) -> Vec<i64> {
    t.argmax(1)
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .unwrap()
}

#[test]
fn efficientnet_lite0_matches_pytorch() {
    let (Some(weights), Some(io)) = (
        shared("weights/efficientnet-lite0/efficientnet-lite0-57934424.pth"),
        shared("reference/efficientnet_lite0_io.safetensors"),
    ) else {
        return;
    };
    let device = Device::flex();
    let reference = Reference {
        bytes: std::fs::read(io).unwrap(),
    };
    let mut net = EfficientNetLite0::new(3, &device);
    let report = load_into(&mut net, Arch::EfficientNetLite0, &weights).unwrap();
    // 296 entries: the backbone's 294 (running stats included) plus the ImageNet fc.
    assert_eq!(
        report.unused,
        vec!["fc.bias".to_string(), "fc.weight".to_string()]
    );
    let net = net.no_grad();
    let fc = load_fc(&weights, "_fc", &device, 1280);

    let input = reference.tensor::<4>("input", &device);
    let features = net.forward(input);
    let pooled = global_pool(features.clone());
    let logits = fc.forward(pooled.clone());

    let e_features = relative_error(features, reference.tensor("features", &device));
    let e_pooled = relative_error(pooled, reference.tensor("pooled", &device));
    let e_logits = relative_error(logits.clone(), reference.tensor("logits", &device));
    eprintln!("EfficientNet-Lite0 relative errors: features {e_features:.2e}, pooled {e_pooled:.2e}, logits {e_logits:.2e}");
    assert!(e_features < 1e-4 && e_pooled < 1e-4 && e_logits < 1e-4);
    assert_eq!(
        argmax_rows(logits),
        vec![285, 967],
        "Egyptian cat and espresso"
    );
    let e_fused = fused_error(Backbone::EfficientNet(net), fc, &reference, &device);
    eprintln!("EfficientNet-Lite0 fused CPU path: logits relative error {e_fused:.2e}");
    assert!(e_fused < 1e-4);
}

#[test]
fn resnet18_fp16_zip_matches_pytorch() {
    let (Some(weights), Some(io)) = (
        shared("reference/resnet18_random_fp16.pth"),
        shared("reference/resnet18_random_io.safetensors"),
    ) else {
        return;
    };
    let device = Device::flex();
    let reference = Reference {
        bytes: std::fs::read(io).unwrap(),
    };
    let mut net = ResNet::new(ResNetDepth::R18, 3, &device);
    let report = load_into(&mut net, Arch::ResNet18, &weights).unwrap();
    assert_eq!(
        report.unused,
        vec!["fc.bias".to_string(), "fc.weight".to_string()]
    );
    let net = net.no_grad();
    let fc = load_fc(&weights, "fc", &device, 512);

    let logits = fc.forward(global_pool(
        net.clone().forward(reference.tensor::<4>("input", &device)),
    ));
    let e = relative_error(logits.clone(), reference.tensor("logits", &device));
    eprintln!("ResNet-18 (fp16 checkpoint) logits relative error {e:.2e}");
    assert!(e < 1e-4);
    assert_eq!(logits.dims(), [2, 1000]);
    let e_fused = fused_error(Backbone::ResNet(net), fc, &reference, &device);
    eprintln!("ResNet-18 fused CPU path: logits relative error {e_fused:.2e}");
    assert!(e_fused < 1e-4);
}
