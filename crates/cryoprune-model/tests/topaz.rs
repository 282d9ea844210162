//! Topaz's general picking model (`resnet16_u64.sav`, a legacy PyTorch pickle in
//! `../shared/data/weights/topaz`) loaded into our ResNet16 gives the features Topaz's own
//! network gives in PyTorch (`fixtures/topaz_resnet16_u64.json`, written by Topaz 0.3.20 from the
//! same input), through `--pretrained topaz:PATH`'s loader.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use cryoprune_model::{load_backbone, Arch, Backbone, Pretrained};

#[test]
fn topaz_resnet16_loads_by_name_and_matches_pytorch() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/weights/topaz/resnet16_u64.sav");
    if !path.exists() {
        eprintln!("skipping: {} not present", path.display());
        return;
    }
    let spec = format!("topaz:{}", path.display());
    assert_eq!(
        Pretrained::parse(&spec).unwrap(),
        Pretrained::Topaz(path.clone())
    );
    assert!(Pretrained::parse("topaz:/no/such/model.sav").is_err());

    let device = Device::flex();
    let (backbone, report) = load_backbone(Arch::TopazResNet16, &path, &device).unwrap();
    assert!(matches!(backbone, Backbone::Topaz(_)));
    // 2 + 7 × 4 + 1 projection + 2 tensors; Topaz's own 1-logit classifier is not ours.
    assert_eq!(report.applied, 33);
    let mut unused = report.unused.clone();
    unused.sort();
    assert_eq!(unused, ["classifier.bias", "classifier.weight"]);

    let reference: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/topaz_resnet16_u64.json")).unwrap();
    let expected: Vec<f32> = reference["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let (n, size) = (2usize, 99usize);
    let mut input = Vec::with_capacity(n * size * size);
    for b in 0..n {
        for i in 0..size {
            for j in 0..size {
                let (bf, fi, fj) = (b as f64, i as f64, j as f64);
                let v = (0.13 * fi + 0.7 * bf).sin() * (0.09 * fj).cos()
                    + 0.3 * (0.031 * fi * fj).sin();
                input.push(v as f32);
            }
        }
    }
    let x = Tensor::<4>::from_data(TensorData::new(input, [n, 1, size, size]), &device);
    let out = backbone.forward(x);
    assert_eq!(out.dims(), [2, 256, 3, 3]);
    let ours: Vec<f32> = out
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap();
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    for (a, e) in ours.iter().zip(&expected) {
        diff += f64::from(a - e).powi(2);
        norm += f64::from(*e).powi(2);
    }
    let relative = (diff / norm).sqrt();
    assert!(norm > 1.0, "the reference features are all zero");
    assert!(relative < 1e-4, "relative error {relative}");
}
