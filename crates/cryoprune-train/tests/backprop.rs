//! The CPU training path against burn's autodiff: the same network, batch and SGD settings must
//! move every parameter and every batch-norm statistic alike, and the same steps must give the
//! same weights bit for bit on any number of threads.

use std::collections::BTreeMap;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::Device;
use cryoprune_model::backprop::{CpuTrainer, Loss, SgdStep};
use cryoprune_model::classifier::to_safetensors;
use cryoprune_model::infer::batch_tensor;
use cryoprune_model::{Arch, Classifier, ClassifierConfig, HeadConfig};
use cryoprune_train::trainer::multi_loss;
use rand::{Rng, SeedableRng};

/// burn's random state is one per process; the tests of this file draw from it one at a time.
static RANDOM_STATE: std::sync::Mutex<()> = std::sync::Mutex::new(());

const SIZE: usize = 20;
const LABELS: [usize; 5] = [0, 2, 1, 2, 0];
const CLASS_WEIGHTS: [f32; 3] = [1.0, 2.0, 0.5];
const SGD: SgdStep = SgdStep {
    lr: 0.05,
    momentum: 0.9,
    weight_decay: 1e-3,
};

fn images(seed: u64) -> Vec<Vec<f32>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..LABELS.len())
        .map(|_| {
            (0..SIZE * SIZE)
                .map(|_| rng.random_range(-2.0..2.0f32))
                .collect()
        })
        .collect()
}

fn model(branches: usize, seed: u64) -> Classifier {
    let device = Device::flex().autodiff();
    device.seed(seed);
    ClassifierConfig {
        arch: Arch::Small,
        classes: 3,
        head: HeadConfig::new(branches),
    }
    .init(&device)
}

/// Every tensor of the network (batch-norm statistics included) by name, as saving writes them:
/// a running statistic's update that burn still holds pending is not there.
fn tensors(model: &Classifier) -> BTreeMap<String, Vec<f32>> {
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

fn max_abs(v: impl Iterator<Item = f32>) -> f32 {
    v.fold(0.0, |m, x| m.max(x.abs()))
}

/// Two steps through burn and through the CPU path from the same weights; every parameter's
/// change (and every statistic) must agree to a relative 1e-4.
fn compare(branches: usize, train_backbone: bool) {
    let _random = RANDOM_STATE.lock().unwrap_or_else(|e| e.into_inner());
    let device = Device::flex().autodiff();
    let mut reference = model(branches, 3 + branches as u64);
    if !train_backbone {
        reference.backbone = reference.backbone.freeze();
    }
    let before = tensors(&reference);
    let mut ours = CpuTrainer::new(&reference).expect("the small network trains on the CPU");
    let head = HeadConfig::new(branches);
    let mut optim = SGD.burn().init();
    for step in 0..2 {
        let batch = images(step);
        let refs: Vec<&[f32]> = batch.iter().map(|v| v.as_slice()).collect();
        let loss = multi_loss(
            reference.forward(batch_tensor(&refs, SIZE, &device)),
            &LABELS,
            &CLASS_WEIGHTS,
            &head.branch_weights,
            &device,
        );
        let burn_loss = loss.clone().into_scalar::<f32>();
        let grads = GradientsParams::from_grads(loss.backward(), &reference);
        reference = optim.step(SGD.lr, reference, grads);
        let out = ours.step(
            &refs,
            SIZE,
            &LABELS,
            Loss {
                class_weights: &CLASS_WEIGHTS,
                branch_weights: &head.branch_weights,
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
    let mine = tensors(&ours.write(model(branches, 99)));
    assert_eq!(theirs.len(), mine.len());
    for (name, b) in &theirs {
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
        if statistic && train_backbone {
            assert_ne!(o, start, "{name}: a trained layer's statistic did not move");
        }
        if scale == 0.0 {
            assert_eq!(err, 0.0, "{name}: burn left it, the CPU path moved it");
            continue;
        }
        // A change far smaller than the parameter itself is only known to the parameter's
        // rounding: allow a few units in the last place of the largest value.
        let rounding = 4.0 * f32::EPSILON * max_abs(b.iter().copied());
        assert!(
            err <= (1e-4 * scale).max(rounding),
            "{name} ({branches} branches, backbone trained {train_backbone}): relative error {}",
            err / scale
        );
    }
    if !train_backbone {
        let first = before
            .keys()
            .find(|k| k.ends_with("stages.0.a.conv.weight"))
            .expect("the first convolution's weight");
        assert_eq!(mine[first], before[first], "the frozen backbone moved");
    }
}

#[test]
fn every_parameter_moves_as_burn_moves_it_with_one_two_and_three_branches() {
    for branches in 1..=3 {
        compare(branches, true);
    }
}

#[test]
fn a_frozen_backbone_stays_as_burn_keeps_it_and_the_head_learns_alike() {
    compare(2, false);
}

#[test]
fn the_same_steps_give_the_same_weights_on_any_number_of_threads() {
    let _random = RANDOM_STATE.lock().unwrap_or_else(|e| e.into_inner());
    let start = model(2, 5);
    let head = HeadConfig::new(2);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut ours = CpuTrainer::new(&start).unwrap();
            for step in 0..3 {
                let batch = images(10 + step);
                let refs: Vec<&[f32]> = batch.iter().map(|v| v.as_slice()).collect();
                let loss = Loss {
                    class_weights: &CLASS_WEIGHTS,
                    branch_weights: &head.branch_weights,
                };
                ours.step(&refs, SIZE, &LABELS, loss, &SGD, true);
            }
            ours.write(start.valid())
        })
    };
    let run = |threads| to_safetensors(&run(threads)).unwrap();
    let one = run(1);
    assert!(
        one == run(2) && one == run(3),
        "weights differ by thread count"
    );
}
