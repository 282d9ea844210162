//! The CPU training path against burn's autodiff: the same network, batch and SGD settings must
//! move every parameter and every batch-norm statistic alike, and the same steps must give the
//! same weights bit for bit on any number of threads.

use std::collections::BTreeMap;

use burn::module::Module;
use burn::nn::conv::Conv2dConfig;
use burn::nn::pool::MaxPool2dConfig;
use burn::nn::PaddingConfig2d;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use cryoprune_model::backprop::{CpuTrainer, Loss, PickerTrainer, SgdStep, Targets};
use cryoprune_model::classifier::to_safetensors;
use cryoprune_model::efficientnet::{EfficientNetLite0, MbConv};
use cryoprune_model::head::Head;
use cryoprune_model::infer::batch_tensor;
use cryoprune_model::layers::ConvBnConfig;
use cryoprune_model::picker::{PickerArch, PickerNet};
use cryoprune_model::resnet::{Block, Downsample, ResNet};
use cryoprune_model::small::{SmallNet, BASE_WIDTH};
use cryoprune_model::topaz::{Resid, TopazResNet16};
use cryoprune_model::Backbone;
use cryoprune_model::{Arch, Classifier, ClassifierConfig, HeadConfig};
use cryoprune_train::trainer::multi_loss;
use rand::{Rng, SeedableRng};

/// burn's random state is one per process; the tests of this file draw from it one at a time.
static RANDOM_STATE: std::sync::Mutex<()> = std::sync::Mutex::new(());

const SIZE: usize = 20;
const RESNET_SIZE: usize = 32;
const LABELS: [usize; 5] = [0, 2, 1, 2, 0];
const CLASS_WEIGHTS: [f32; 3] = [1.0, 2.0, 0.5];
const SGD: SgdStep = SgdStep {
    lr: 0.05,
    momentum: 0.9,
    weight_decay: 1e-3,
};

fn images(seed: u64, size: usize) -> Vec<Vec<f32>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..LABELS.len())
        .map(|_| {
            (0..size * size)
                .map(|_| rng.random_range(-2.0..2.0f32))
                .collect()
        })
        .collect()
}

/// What a test trains: one of cryoprune's networks, or a ResNet built small.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Network {
    Arch(Arch),
    /// A stem, a max pool and two residual blocks (the second strided, both with projected
    /// shortcuts), a few channels wide.
    MiniResNet {
        bottleneck: bool,
    },
    /// EfficientNet's layers ("same" padding, depthwise 3×3 and strided 5×5, ReLU6, an
    /// expansion, a skip), a few channels wide.
    MiniEfficientNet,
    /// Topaz's ResNet16 layers (unpadded biased convolutions without batch norm, cropped and
    /// subsampled or projected shortcuts), a few channels wide.
    MiniTopaz,
}

fn model(net: Network, branches: usize, seed: u64) -> Classifier {
    let device = Device::flex().autodiff();
    device.seed(seed);
    let arch = match net {
        Network::Arch(arch) => arch,
        Network::MiniResNet { bottleneck } => return mini_resnet(bottleneck, branches, &device),
        Network::MiniEfficientNet => return mini_efficientnet(branches, &device),
        Network::MiniTopaz => return mini_topaz(branches, &device),
    };
    ClassifierConfig {
        in_channels: 1,
        arch,
        classes: 3,
        head: HeadConfig::new(branches),
    }
    .init(&device)
}

/// Full-size ResNets cannot be compared with burn element by element after training steps: among
/// their millions of activations a few lie within rounding of zero, the two implementations'
/// rounding puts them on different sides of a ReLU (or makes a different max-pool winner), and
/// that pixel's gradient then differs outright; batch norms over a handful of values (5 images at
/// 1 × 1 in the last stage) magnify rounding by up to 1/√eps. Measured: ResNet-34 and -50 after
/// one step differ by 1e-4 to 1e-2, erratically by layer and seed. A ResNet of the same layers,
/// a few channels wide, has too few activations for either, and checks every layer kind at 1e-4.
fn mini_resnet(bottleneck: bool, branches: usize, device: &Device) -> Classifier {
    let conv_bn = |c_in, c_out, kernel, stride| {
        let c = ConvBnConfig::new(c_in, c_out, kernel, stride);
        (c.conv(device), c.bn(device))
    };
    let block = |c_in: usize, width: usize, stride: usize| {
        let c_out = if bottleneck { 4 * width } else { width };
        let ((conv1, bn1), (conv2, bn2)) = if bottleneck {
            (conv_bn(c_in, width, 1, 1), conv_bn(width, width, 3, stride))
        } else {
            (conv_bn(c_in, width, 3, stride), conv_bn(width, width, 3, 1))
        };
        let (conv3, bn3) = if bottleneck {
            let (c, b) = conv_bn(width, c_out, 1, 1);
            (Some(c), Some(b))
        } else {
            (None, None)
        };
        let (conv, bn) = conv_bn(c_in, c_out, 1, stride);
        Block {
            conv1,
            bn1,
            conv2,
            bn2,
            conv3,
            bn3,
            downsample: Some(Downsample { conv, bn }),
        }
    };
    let (conv1, bn1) = conv_bn(1, 6, 7, 2);
    let (width, expansion) = (4, if bottleneck { 4 } else { 1 });
    let backbone = ResNet {
        conv1,
        bn1,
        maxpool: MaxPool2dConfig::new([3, 3])
            .with_strides([2, 2])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(),
        layer1: vec![block(6, width, 1)],
        layer2: vec![block(width * expansion, width, 2)],
        layer3: Vec::new(),
        layer4: Vec::new(),
    };
    Classifier {
        backbone: Backbone::ResNet(backbone),
        head: Head::new(width * expansion, 3, branches, device),
    }
}

/// Every tensor of the network (batch-norm statistics included) by name, as saving writes them:
/// a running statistic's update that burn still holds pending is not there.
fn tensors<M: burn::store::ModuleSnapshot>(model: &M) -> BTreeMap<String, Vec<f32>> {
    let bytes = to_safetensors(model).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, values)
        })
        .collect()
}

/// The multi-loss of `model` on a batch, through burn's autodiff.
fn burn_loss(
    model: &Classifier,
    refs: &[&[f32]],
    size: usize,
    head: &HeadConfig,
    targets: Targets,
    smoothing: f32,
) -> Tensor<1> {
    let device = Device::flex().autodiff();
    let loss = Loss {
        class_weights: &CLASS_WEIGHTS,
        branch_weights: &head.branch_weights,
        smoothing,
    };
    multi_loss(
        model.forward(batch_tensor(refs, size, &device)),
        targets,
        loss,
        &device,
    )
}

fn max_abs(v: impl Iterator<Item = f32>) -> f32 {
    v.fold(0.0, |m, x| m.max(x.abs()))
}

/// Two steps through burn and through the CPU path from the same weights; every parameter's
/// change (and every statistic) must agree to a relative 1e-4.
fn mini_efficientnet(branches: usize, device: &Device) -> Classifier {
    let conv_bn = |c_in, c_out, kernel, stride, groups| {
        let c = ConvBnConfig::new(c_in, c_out, kernel, stride)
            .padding(PaddingConfig2d::Same)
            .groups(groups)
            .eps(1e-3);
        (c.conv(device), c.bn(device))
    };
    let (conv_stem, bn0) = conv_bn(1, 8, 3, 2, 1);
    let (depthwise_conv, bn1) = conv_bn(8, 8, 3, 1, 8);
    let (project_conv, bn2) = conv_bn(8, 8, 1, 1, 1);
    let plain = MbConv {
        expand_conv: None,
        bn0: None,
        depthwise_conv,
        bn1,
        project_conv,
        bn2,
        skip: true,
    };
    let (expand_conv, bn0_expand) = conv_bn(8, 16, 1, 1, 1);
    let (depthwise_conv, bn1) = conv_bn(16, 16, 5, 2, 16);
    let (project_conv, bn2) = conv_bn(16, 12, 1, 1, 1);
    let expanded = MbConv {
        expand_conv: Some(expand_conv),
        bn0: Some(bn0_expand),
        depthwise_conv,
        bn1,
        project_conv,
        bn2,
        skip: false,
    };
    let (conv_head, bn1) = conv_bn(12, 16, 1, 1, 1);
    let backbone = EfficientNetLite0 {
        conv_stem,
        bn0,
        blocks: vec![plain, expanded],
        conv_head,
        bn1,
    };
    Classifier {
        backbone: Backbone::EfficientNet(backbone),
        head: Head::new(16, 3, branches, device),
    }
}

fn mini_topaz(branches: usize, device: &Device) -> Classifier {
    let conv =
        |c_in, c_out, kernel| Conv2dConfig::new([c_in, c_out], [kernel, kernel]).init(device);
    let backbone = TopazResNet16 {
        conv_in: conv(1, 4, 7),
        blocks: vec![Resid::new(4, 4, 2, device), Resid::new(4, 8, 2, device)],
        conv_out: conv(8, 6, 5),
    };
    Classifier {
        backbone: Backbone::Topaz(backbone),
        head: Head::new(6, 3, branches, device),
    }
}

/// The images a test network is trained on: 20 px, more where the network needs it.
fn input_size(net: Network) -> usize {
    match net {
        Network::Arch(Arch::ResNet18) => RESNET_SIZE,
        // Odd maps after the stem, for "same" padding's uneven split.
        Network::MiniEfficientNet => 22,
        // 34 after the 7×7, 15 and 6 after the strided blocks, 2 after the 5×5.
        Network::MiniTopaz => 40,
        _ => SIZE,
    }
}

/// Every parameter's change over the steps (every statistic's value) of `mine` is `theirs`'s
/// to a relative 1e-4.
fn assert_moved_alike(
    theirs: &BTreeMap<String, Vec<f32>>,
    mine: &BTreeMap<String, Vec<f32>>,
    before: &BTreeMap<String, Vec<f32>>,
    trained: bool,
    what: &str,
) {
    assert_eq!(theirs.len(), mine.len());
    for (name, b) in theirs {
        let o = &mine[name];
        let start = &before[name];
        let statistic = name.contains("running");
        // Parameters: compare the change two steps made, which is what the gradients decide.
        let (ours_d, theirs_d): (Vec<f32>, Vec<f32>) = if statistic {
            (o.clone(), b.clone())
        } else {
            (
                o.iter().zip(start).map(|(a, s)| a - s).collect(),
                b.iter().zip(start).map(|(a, s)| a - s).collect(),
            )
        };
        let scale = max_abs(theirs_d.iter().copied());
        let err = max_abs(ours_d.iter().zip(&theirs_d).map(|(a, b)| a - b));
        if statistic && trained {
            assert_ne!(o, start, "{name}: a trained layer's statistic did not move");
        }
        if scale == 0.0 {
            assert_eq!(err, 0.0, "{name}: burn left it, the CPU path moved it");
            continue;
        }
        // A change far smaller than the parameter itself is only known to the parameter's
        // rounding: allow a few units in the last place of the largest value. A shift that a
        // later batch norm removes (the bias of a layer without activation before a 1×1
        // convolution and its norm) has a gradient of exactly 0: both sides move it by rounding
        // noise of ~1e-10, where real changes here are ~1e-3.
        let rounding = (4.0 * f32::EPSILON * max_abs(b.iter().copied())).max(1e-8);
        assert!(
            err <= (1e-4 * scale).max(rounding),
            "{name} ({what}): relative error {}",
            err / scale
        );
    }
}

fn compare(net: Network, branches: usize, train_backbone: bool) {
    compare_on(
        net,
        branches,
        train_backbone,
        Targets::Classes(&LABELS),
        0.0,
    );
}

/// Five images, three labels: each image carries a different set, one none and one all.
const LABEL_SETS: [f32; 15] = [1., 0., 0., 0., 1., 1., 0., 0., 0., 1., 1., 1., 0., 1., 0.];

fn compare_on(
    net: Network,
    branches: usize,
    train_backbone: bool,
    targets: Targets,
    smoothing: f32,
) {
    let _random = RANDOM_STATE.lock().unwrap_or_else(|e| e.into_inner());
    let size = input_size(net);
    let mut reference = model(net, branches, 3 + branches as u64);
    if !train_backbone {
        reference.backbone = reference.backbone.freeze();
    }
    let before = tensors(&reference);
    let mut ours = CpuTrainer::new(&reference).expect("the network trains on the CPU");
    let head = HeadConfig::new(branches);
    let mut optim = SGD.burn().init();
    for step in 0..2 {
        let batch = images(step, size);
        let refs: Vec<&[f32]> = batch.iter().map(|v| v.as_slice()).collect();
        let loss = burn_loss(&reference, &refs, size, &head, targets, smoothing);
        let burn_loss = loss.clone().into_scalar::<f32>();
        let grads = GradientsParams::from_grads(loss.backward(), &reference);
        reference = optim.step(SGD.lr, reference, grads);
        let out = ours.step(
            &refs,
            size,
            targets,
            Loss {
                class_weights: &CLASS_WEIGHTS,
                branch_weights: &head.branch_weights,
                smoothing,
            },
            &SGD,
            train_backbone,
        );
        assert!(
            (out.loss - burn_loss).abs() <= 1e-5 * burn_loss.abs(),
            "step {step}: loss {} against burn's {burn_loss}",
            out.loss
        );
    }
    let theirs = tensors(&reference.valid());
    let mine = tensors(&ours.write(model(net, branches, 99)));
    let what =
        format!("{net:?}, {branches} branches, backbone trained {train_backbone}, {targets:?}");
    assert_moved_alike(&theirs, &mine, &before, train_backbone, &what);
    if !train_backbone {
        for name in before.keys().filter(|k| k.starts_with("backbone")) {
            assert_eq!(
                mine[name], before[name],
                "{name}: the frozen backbone moved"
            );
        }
    }
}

#[test]
fn every_parameter_moves_as_burn_moves_it_with_one_two_and_three_branches() {
    for branches in 1..=3 {
        compare(Network::Arch(Arch::Small), branches, true);
    }
    compare(Network::Arch(Arch::SmallWide), 2, true);
}

#[test]
fn binary_cross_entropy_on_label_sets_moves_every_parameter_as_burn_moves_it() {
    compare_on(
        Network::Arch(Arch::Small),
        2,
        true,
        Targets::Labels(&LABEL_SETS),
        0.0,
    );
    compare_on(
        Network::MiniResNet { bottleneck: false },
        3,
        true,
        Targets::Labels(&LABEL_SETS),
        0.0,
    );
    compare_on(
        Network::Arch(Arch::Small),
        1,
        false,
        Targets::Labels(&LABEL_SETS),
        0.0,
    );
}

#[test]
fn smoothed_labels_move_every_parameter_as_burn_moves_them() {
    let small = Network::Arch(Arch::Small);
    compare_on(small, 2, true, Targets::Classes(&LABELS), 0.1);
    compare_on(small, 1, true, Targets::Labels(&LABEL_SETS), 0.2);
}

#[test]
fn a_frozen_backbone_stays_as_burn_keeps_it_and_the_head_learns_alike() {
    compare(Network::Arch(Arch::Small), 2, false);
    compare(Network::Arch(Arch::ResNet18), 1, false);
}

#[test]
fn resnet_blocks_strided_convolutions_and_shortcuts_move_as_burn_moves_them() {
    compare(Network::MiniResNet { bottleneck: false }, 1, true);
    compare(Network::MiniResNet { bottleneck: true }, 3, true);
}

#[test]
fn efficientnet_depthwise_and_same_padded_layers_move_as_burn_moves_them() {
    compare(Network::MiniEfficientNet, 2, true);
    compare(Network::MiniEfficientNet, 1, false);
}

#[test]
fn topaz_unpadded_biased_layers_and_cropped_shortcuts_move_as_burn_moves_them() {
    compare(Network::MiniTopaz, 2, true);
}

#[test]
fn the_same_steps_give_the_same_weights_on_any_number_of_threads() {
    let _random = RANDOM_STATE.lock().unwrap_or_else(|e| e.into_inner());
    let head = HeadConfig::new(2);
    for net in [
        Network::Arch(Arch::Small),
        Network::MiniResNet { bottleneck: true },
        Network::MiniEfficientNet,
        Network::MiniTopaz,
    ] {
        let start = model(net, 2, 5);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut ours = CpuTrainer::new(&start).unwrap();
                for step in 0..3 {
                    let batch = images(10 + step, input_size(net));
                    let refs: Vec<&[f32]> = batch.iter().map(|v| v.as_slice()).collect();
                    let loss = Loss {
                        class_weights: &CLASS_WEIGHTS,
                        branch_weights: &head.branch_weights,
                        smoothing: 0.0,
                    };
                    ours.step(
                        &refs,
                        input_size(net),
                        Targets::Classes(&LABELS),
                        loss,
                        &SGD,
                        true,
                    );
                }
                ours.write(start.valid())
            })
        };
        let run = |threads| to_safetensors(&run(threads)).unwrap();
        let one = run(1);
        assert!(
            one == run(2) && one == run(3),
            "{net:?}: weights differ by thread count"
        );
    }
}

/// A full-size network through one step: the loss burn computes, and every tensor written back
/// moved (so each layer trained and went back to its place).
fn full_size(arch: Arch) {
    let _random = RANDOM_STATE.lock().unwrap_or_else(|e| e.into_inner());
    // 2 × 2 maps in the last stage: batch norms over 20 values, not 5 (see `mini_resnet`);
    // Topaz's network sees 91 px.
    let size = if arch == Arch::TopazResNet16 { 95 } else { 64 };
    let start = model(Network::Arch(arch), 1, 8);
    let before = tensors(&start);
    let head = HeadConfig::new(1);
    let batch = images(0, size);
    let refs: Vec<&[f32]> = batch.iter().map(|v| v.as_slice()).collect();
    let burn_loss =
        burn_loss(&start, &refs, size, &head, Targets::Classes(&LABELS), 0.0).into_scalar::<f32>();
    let mut ours = CpuTrainer::new(&start).expect("the network trains on the CPU");
    let loss = Loss {
        class_weights: &CLASS_WEIGHTS,
        branch_weights: &head.branch_weights,
        smoothing: 0.0,
    };
    let out = ours.step(&refs, size, Targets::Classes(&LABELS), loss, &SGD, true);
    assert!(
        (out.loss - burn_loss).abs() <= 1e-4 * burn_loss.abs(),
        "{arch}: loss {} against burn's {burn_loss}",
        out.loss
    );
    let after = tensors(&ours.write(start.valid()));
    for (name, values) in &before {
        if !name.ends_with("num_batches_tracked") {
            assert_ne!(&after[name], values, "{arch}: {name} did not move");
        }
    }
}

#[test]
fn full_size_resnet50_efficientnet_and_topaz_train_every_layer_from_burns_loss() {
    full_size(Arch::ResNet50);
    full_size(Arch::EfficientNetLite0);
    full_size(Arch::TopazResNet16);
}

/// The picker's per-pixel weighted cross-entropy, through burn's autodiff.
fn picker_loss(
    net: &PickerNet,
    refs: &[&[f32]],
    size: usize,
    targets: &[f32],
    weights: &[f32],
) -> Tensor<1> {
    let device = Device::flex().autodiff();
    let z = net
        .forward(batch_tensor(refs, size, &device))
        .flatten::<1>(0, 3);
    let n = targets.len();
    let y = Tensor::<1>::from_data(
        burn::tensor::TensorData::new(targets.to_vec(), [n]),
        &device,
    );
    let w = Tensor::<1>::from_data(
        burn::tensor::TensorData::new(weights.to_vec(), [n]),
        &device,
    );
    let total: f32 = weights.iter().sum();
    // log(1 + e^z) − y·z
    let per_pixel = burn::tensor::activation::softplus(z.clone(), 1.0) - y * z;
    (per_pixel * w).sum() / total
}

fn picker_moves_as_burn_moves_it(arch: PickerArch) {
    let _random = RANDOM_STATE.lock().unwrap_or_else(|e| e.into_inner());
    let device = Device::flex().autodiff();
    device.seed(11);
    let size = 24;
    let mut reference = match arch {
        PickerArch::Fcn => PickerNet::new(&device),
        PickerArch::Small => PickerNet::from_small(SmallNet::new(1, BASE_WIDTH, &device), &device),
    };
    let s = reference.stride();
    let before = tensors(&reference);
    let mut ours = PickerTrainer::new(&reference, 0).expect("the picker trains on the CPU");
    let mut optim = SGD.burn().init();
    let outputs = LABELS.len() * (size / s) * (size / s);
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    for step in 0..2 {
        let batch = images(step, size);
        let refs: Vec<&[f32]> = batch.iter().map(|v| v.as_slice()).collect();
        let targets: Vec<f32> = (0..outputs)
            .map(|_| f32::from(rng.random_bool(0.1)))
            .collect();
        // Some pixels left out, as the padded margin is.
        let weights: Vec<f32> = (0..outputs)
            .map(|i| {
                if i % 7 == 0 {
                    0.0
                } else {
                    1.0 + targets[i] * 4.0
                }
            })
            .collect();
        let loss = picker_loss(&reference, &refs, size, &targets, &weights);
        let burn_loss = loss.clone().into_scalar::<f32>();
        let grads = GradientsParams::from_grads(loss.backward(), &reference);
        reference = optim.step(SGD.lr, reference, grads);
        let loss = |z: &[f32]| cryoprune_train::picker::cross_entropy(z, &targets, &weights);
        let mine = ours.step(&refs, size, loss, &SGD).loss;
        assert!(
            (mine - burn_loss).abs() <= 1e-5 * burn_loss.abs(),
            "step {step}: loss {mine} against burn's {burn_loss}"
        );
    }
    let theirs = tensors(&reference.valid());
    let mine = tensors(&ours.write(PickerNet::seeded(arch, 0)));
    assert!(
        theirs.values().zip(before.values()).all(|(a, b)| a != b),
        "every tensor moves"
    );
    assert_moved_alike(&theirs, &mine, &before, true, arch.name());
}

#[test]
fn a_picker_kept_from_an_earlier_epoch_keeps_its_own_statistics() {
    let _random = RANDOM_STATE.lock().unwrap_or_else(|e| e.into_inner());
    let size = 24;
    let net = PickerNet::seeded(PickerArch::Small, 3);
    let outputs = LABELS.len() * (size / net.stride()) * (size / net.stride());
    let mut trainer = PickerTrainer::new(&net, 0).expect("the picker trains on the CPU");
    let step = |trainer: &mut PickerTrainer, seed: u64| {
        let batch = images(seed, size);
        let refs: Vec<&[f32]> = batch.iter().map(|v| v.as_slice()).collect();
        let targets: Vec<f32> = (0..outputs).map(|i| f32::from(i % 5 == 0)).collect();
        let weights = vec![1.0; outputs];
        let loss = |z: &[f32]| cryoprune_train::picker::cross_entropy(z, &targets, &weights);
        trainer.step(&refs, size, loss, &SGD);
    };
    step(&mut trainer, 1);
    let net = trainer.write(net);
    // What the picker's training keeps as its best epoch.
    let kept = net.clone();
    let then = tensors(&kept);
    step(&mut trainer, 2);
    let net = trainer.write(net);
    assert_eq!(
        tensors(&kept),
        then,
        "the kept network is as it was written"
    );
    let now = tensors(&net);
    for name in then.keys().filter(|k| k.contains("running")) {
        assert_ne!(now[name], then[name], "{name} moved with the second step");
    }
}

#[test]
fn frozen_stages_keep_their_weights_and_the_rest_moves_as_without_them() {
    let _random = RANDOM_STATE.lock().unwrap_or_else(|e| e.into_inner());
    let size = 24;
    let net = PickerNet::seeded(PickerArch::Small, 4);
    assert_eq!(net.stage_layers(2), 4, "two convolutions a stage");
    let outputs = LABELS.len() * (size / net.stride()) * (size / net.stride());
    let batch = images(3, size);
    let refs: Vec<&[f32]> = batch.iter().map(|v| v.as_slice()).collect();
    let targets: Vec<f32> = (0..outputs).map(|i| f32::from(i % 3 == 0)).collect();
    let weights = vec![1.0; outputs];
    let stepped = |frozen: usize| {
        let mut trainer = PickerTrainer::new(&net, frozen).expect("the picker trains on the CPU");
        let loss = |z: &[f32]| cryoprune_train::picker::cross_entropy(z, &targets, &weights);
        trainer.step(&refs, size, loss, &SGD);
        tensors(&trainer.write(net.clone()))
    };
    let before = tensors(&net);
    let (free, frozen) = (stepped(0), stepped(2));
    let in_frozen = |name: &str| name.starts_with("early.") || name.starts_with("late.");
    let mut checked = [0usize; 3];
    for (name, was) in &before {
        if name.contains("running") {
            // Batch norms follow the batch either way: their statistics adapt to the data.
            assert_eq!(frozen[name], free[name], "{name}");
            continue;
        }
        if in_frozen(name) {
            assert_eq!(&frozen[name], was, "{name} is frozen and stays");
            assert_ne!(&free[name], was, "{name} moves when not frozen");
            checked[0] += 1;
        } else {
            // The first step's gradients above the frozen stages do not depend on them.
            assert_eq!(
                frozen[name], free[name],
                "{name} moves as without the freeze"
            );
            assert_ne!(&frozen[name], was, "{name} moves");
            checked[1] += 1;
        }
        checked[2] += 1;
    }
    assert!(
        checked[0] > 0 && checked[1] > 0,
        "both kinds checked: {checked:?}"
    );
}

#[test]
fn the_picker_moves_as_burn_moves_it() {
    picker_moves_as_burn_moves_it(PickerArch::Fcn);
}

#[test]
fn the_small_picker_moves_as_burn_moves_it() {
    picker_moves_as_burn_moves_it(PickerArch::Small);
}
