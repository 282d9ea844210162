//! The training machinery on tiny problems: backward passes against finite differences, and a
//! small network that must fit a small labelled set perfectly.

use std::ops::ControlFlow;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use cryoprune_image::augment::Augment;
use cryoprune_model::backprop::{Loss, Targets};
use cryoprune_model::head::Head;
use cryoprune_model::{Arch, ClassifierConfig, HeadConfig, Readout};
use cryoprune_train::schedule::Schedule;
use cryoprune_train::trainer::{argmax, multi_loss, predict};
use cryoprune_train::{multilabel, train, Dataset, Origin, TrainConfig};

/// burn's random state is one per process, and the tests of a file run in parallel: a test that
/// draws from it while another has just seeded it changes the other's weights (which once put a
/// ReLU kink under a probed value here). Tests that draw hold this for their whole run.
static RANDOM_STATE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The gradient burn's autodiff gives the head's input for the multi-loss on `targets` (with
/// three branches: 1×1 convolutions, batch norm, ReLU, pooling, linear layers and the class-
/// and branch-weighted loss are all on the path) against central differences.
fn head_and_loss_gradients_match_finite_differences(targets: Targets, smoothing: f32) {
    let _random = RANDOM_STATE.lock().unwrap_or_else(|e| e.into_inner());
    let device = Device::flex().autodiff();
    // Seeded weights and input: unseeded ones now and then put a ReLU kink within eps of a
    // probed value, where central differences are wrong by construction.
    device.seed(11);
    let head = Head::new(6, 3, 3, &device);
    let class_w = [1.0f32, 2.0, 0.5];
    let branch_w = [1.0f32, 0.5, 0.25];
    let loss = Loss {
        class_weights: &class_w,
        branch_weights: &branch_w,
        smoothing,
    };
    let values: Vec<f32> = {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        (0..4 * 6 * 3 * 3)
            .map(|_| rng.random_range(-1.7..1.7f32))
            .collect()
    };
    let x0 = Tensor::<4>::from_data(TensorData::new(values.clone(), [4, 6, 3, 3]), &device);
    let loss_at = |v: &[f32]| -> f64 {
        let x = Tensor::<4>::from_data(TensorData::new(v.to_vec(), [4, 6, 3, 3]), &device);
        multi_loss(head.forward(x), targets, loss, &device).into_scalar::<f32>() as f64
    };
    let x = x0.require_grad();
    let grads = multi_loss(head.forward(x.clone()), targets, loss, &device).backward();
    let analytic: Vec<f32> = x
        .grad(&grads)
        .unwrap()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let eps = 1e-2f32;
    let (mut num2, mut diff2) = (0.0f64, 0.0f64);
    for i in (0..values.len()).step_by(7) {
        let mut up = values.clone();
        up[i] += eps;
        let mut down = values.clone();
        down[i] -= eps;
        let numeric = (loss_at(&up) - loss_at(&down)) / (2.0 * eps as f64);
        num2 += numeric * numeric;
        diff2 += (numeric - analytic[i] as f64).powi(2);
    }
    let rel = (diff2 / num2).sqrt();
    assert!(rel < 1e-2, "relative gradient error {rel:.2e}");
}

#[test]
fn head_and_cross_entropy_gradients_match_finite_differences() {
    head_and_loss_gradients_match_finite_differences(Targets::Classes(&[0, 2, 1, 2]), 0.0);
    head_and_loss_gradients_match_finite_differences(Targets::Classes(&[0, 2, 1, 2]), 0.1);
}

#[test]
fn head_and_binary_cross_entropy_gradients_match_finite_differences() {
    // Four images, three labels: none, one, two and all three carried.
    let labels = [0., 0., 0., 1., 0., 0., 0., 1., 1., 1., 1., 1.];
    head_and_loss_gradients_match_finite_differences(Targets::Labels(&labels), 0.0);
    head_and_loss_gradients_match_finite_differences(Targets::Labels(&labels), 0.1);
}

/// Bright discs vs. rings on noise: easy to tell apart, impossible without learning.
fn discs_and_rings(n_per_class: usize, size: usize, seed: u64) -> Dataset {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut images = Vec::new();
    let mut labels = Vec::new();
    let c = size as f32 / 2.0;
    for i in 0..2 * n_per_class {
        let class = i % 2;
        let r0 = rng.random_range(3.0..5.0f32);
        for y in 0..size {
            for x in 0..size {
                let r = ((x as f32 - c).powi(2) + (y as f32 - c).powi(2)).sqrt();
                let signal = if class == 0 {
                    (r < r0) as u8 as f32
                } else {
                    ((r - r0).abs() < 1.0) as u8 as f32
                };
                images.push(signal + rng.random_range(-0.5..0.5f32));
            }
        }
        labels.push(class);
    }
    Dataset {
        size,
        channels: 1,
        images,
        origins: labels
            .iter()
            .map(|_| Origin {
                micrograph: "synthetic".into(),
                x: 0.0,
                y: 0.0,
                score: None,
                edge: None,
            })
            .collect(),
        labels,
        classes: vec!["disc".into(), "ring".into()],
        multi: None,
        exposure: Vec::new(),
    }
}

/// Batches of 8 with flips and quarter turns, a two-branch head, one pass an epoch.
fn flips_and_turns() -> TrainConfig {
    TrainConfig {
        epochs: 1,
        batch: 8,
        schedule: Schedule::Step {
            initial: 0.05,
            every: 10,
            gamma: 0.1,
        },
        augment: Augment {
            flip: true,
            rot90: true,
            rotate: false,
        },
        repeats: 1,
        momentum: 0.9,
        weight_decay: 0.0,
        class_weights: None,
        freeze_epochs: 0,
        unfrozen: None,
        head: HeadConfig::new(2),
        seed: 0,
        keep_last: false,
        label_smoothing: 0.0,
    }
}

#[test]
fn small_network_fits_a_small_labelled_set() {
    let _random = RANDOM_STATE.lock().unwrap_or_else(|e| e.into_inner());
    let device = Device::flex().autodiff();
    let data = discs_and_rings(8, 16, 1);
    let cfg = TrainConfig {
        epochs: 25,
        schedule: Schedule::OneCycle {
            initial: 0.05,
            final_lr: 1e-3,
        },
        ..flips_and_turns()
    };
    let model = ClassifierConfig {
        in_channels: 1,
        arch: Arch::Small,
        classes: 2,
        head: HeadConfig::new(2),
    }
    .init(&device);
    let trained = train(model, &data, None, &cfg, &device, |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    let last = trained.history.last().unwrap();
    assert!(
        last.train_loss < 0.1,
        "final training loss {}",
        last.train_loss
    );
    assert_eq!(
        trained.best_epoch, 25,
        "without validation the last epoch is kept"
    );
    let probs = predict(
        &trained.model,
        &data,
        8,
        Readout::single_label(false),
        &Device::flex(),
    );
    let correct = probs
        .iter()
        .zip(&data.labels)
        .filter(|(p, &l)| argmax(p) == l)
        .count();
    assert_eq!(correct, data.len(), "the training set is fitted exactly");
    // And it generalises to fresh draws of the same two shapes.
    let fresh = discs_and_rings(20, 16, 2);
    let probs = predict(
        &trained.model,
        &fresh,
        16,
        Readout::single_label(false),
        &Device::flex(),
    );
    let correct = probs
        .iter()
        .zip(&fresh.labels)
        .filter(|(p, &l)| argmax(p) == l)
        .count();
    assert!(correct >= 36, "{correct}/40 fresh images right");
}

/// With the backbone frozen for the whole run the head trains on stored features (a linear
/// probe): the backbone comes back as it went in, and each epoch's validation, taken on those
/// features, is what the returned model scores on the same picks. Topaz's network, which has no
/// batch norm: a freshly initialised batch-normed one has running statistics that mean nothing
/// yet, so its inference-mode features all but vanish.
#[test]
fn a_frozen_backbone_trains_its_head_on_stored_features() {
    let _random = RANDOM_STATE.lock().unwrap_or_else(|e| e.into_inner());
    let device = Device::flex().autodiff();
    let data = discs_and_rings(8, 91, 1);
    let val = discs_and_rings(10, 91, 2);
    let cfg = TrainConfig {
        epochs: 6,
        repeats: 2,
        freeze_epochs: 6,
        ..flips_and_turns()
    };
    let model = ClassifierConfig {
        in_channels: 1,
        arch: Arch::TopazResNet16,
        classes: 2,
        head: HeadConfig::new(2),
    }
    .init(&device);
    let before = model.valid().backbone;
    let trained = train(model, &data, Some(&val), &cfg, &device, |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    let x = Tensor::<4>::random(
        [2, 1, 91, 91],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &Device::flex(),
    );
    assert_eq!(
        trained.model.backbone.forward(x.clone()).into_data(),
        before.forward(x).into_data(),
        "the frozen backbone changed"
    );
    let first = &trained.history[0];
    let last = trained.history.last().unwrap();
    assert!(last.train_loss < first.train_loss, "{:?}", trained.history);
    let best = &trained.history[trained.best_epoch - 1];
    let probs = predict(
        &trained.model,
        &val,
        8,
        Readout::single_label(false),
        &Device::flex(),
    );
    let nll = probs
        .iter()
        .zip(&val.labels)
        .map(|(p, &l)| -(p[l].max(1e-7) as f64).ln())
        .sum::<f64>()
        / val.len() as f64;
    let recorded = best.val_loss.unwrap();
    assert!((nll - recorded).abs() < 1e-4, "{nll} against {recorded}");
}

/// Noisy images that may hold a bright disc at the centre, a dark bar across the bottom, both or
/// neither: two labels, each image carrying any set of them.
fn discs_and_bars(n: usize, size: usize, seed: u64) -> Dataset {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut data = Dataset::empty_multi_label(size, vec!["disc".into(), "bar".into()]);
    let c = size as f32 / 2.0;
    for i in 0..n {
        // Every combination in turn, so each label is carried by half the images.
        let (disc, bar) = (i % 2 == 1, (i / 2) % 2 == 1);
        let r0 = rng.random_range(3.0..5.0f32);
        for y in 0..size {
            for x in 0..size {
                let r = ((x as f32 - c).powi(2) + (y as f32 - c).powi(2)).sqrt();
                let mut v = rng.random_range(-0.5..0.5f32);
                if disc && r < r0 {
                    v += 1.0;
                }
                if bar && (2..4).contains(&y) {
                    v -= 1.0;
                }
                data.images.push(v);
            }
        }
        data.labels.push(0);
        data.origins.push(Origin {
            micrograph: "synthetic".into(),
            x: 0.0,
            y: 0.0,
            score: None,
            edge: None,
        });
        data.multi.as_mut().unwrap().push(vec![disc, bar]);
    }
    data
}

#[test]
fn a_multi_label_head_learns_every_label_and_its_threshold() {
    let _random = RANDOM_STATE.lock().unwrap_or_else(|e| e.into_inner());
    let device = Device::flex().autodiff();
    let (data, val) = (discs_and_bars(24, 16, 3), discs_and_bars(16, 16, 4));
    let mut head = HeadConfig::new(2);
    head.multi_label = true;
    // Flips only: a quarter turn would move the bar to a side.
    let cfg = TrainConfig {
        epochs: 20,
        schedule: Schedule::OneCycle {
            initial: 0.05,
            final_lr: 1e-3,
        },
        augment: Augment {
            rot90: false,
            ..flips_and_turns().augment
        },
        head: head.clone(),
        ..flips_and_turns()
    };
    let model = ClassifierConfig {
        in_channels: 1,
        arch: Arch::Small,
        classes: 2,
        head: head.clone(),
    }
    .init(&device);
    let trained = train(model, &data, Some(&val), &cfg, &device, |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    let best = &trained.history[trained.best_epoch - 1];
    assert!(best.val_macro_f1.unwrap() > 0.9, "{best:?}");
    let truth = |d: &Dataset| d.multi.clone().unwrap();
    let thresholds =
        multilabel::choose_thresholds(&truth(&val), trained.val_probs.as_ref().unwrap());
    let fresh = discs_and_bars(40, 16, 5);
    let probs = predict(&trained.model, &fresh, 16, head.readout(), &Device::flex());
    // Sigmoids, not a softmax: an image with both labels has both probabilities high.
    assert!(probs
        .iter()
        .zip(truth(&fresh))
        .any(|(p, t)| t == [true, true] && p[0] > 0.5 && p[1] > 0.5));
    let report = multilabel::evaluate(&truth(&fresh), &probs, &thresholds, &fresh.classes);
    assert!(
        report.macro_f1 > 0.9 && report.exact_match > 0.8,
        "{}",
        report.to_text()
    );

    // A single-label head refuses a multi-label set.
    let single = ClassifierConfig {
        in_channels: 1,
        arch: Arch::Small,
        classes: 2,
        head: HeadConfig::new(2),
    }
    .init(&device);
    let cfg = TrainConfig {
        head: HeadConfig::new(2),
        ..cfg
    };
    assert!(train(single, &data, None, &cfg, &device, |_| {
        ControlFlow::Continue(())
    })
    .is_err());
}

#[test]
fn two_stages_each_run_their_own_schedule() {
    let _random = RANDOM_STATE.lock().unwrap_or_else(|e| e.into_inner());
    let device = Device::flex().autodiff();
    let data = discs_and_rings(8, 16, 1);
    // Head only for 2 epochs at one-cycle 0.01, then everything for 3 at one-cycle 0.001.
    let cfg = TrainConfig {
        epochs: 5,
        freeze_epochs: 2,
        schedule: Schedule::OneCycle {
            initial: 0.01,
            final_lr: 1e-4,
        },
        unfrozen: Some(Schedule::OneCycle {
            initial: 1e-3,
            final_lr: 1e-5,
        }),
        ..flips_and_turns()
    };
    let model = ClassifierConfig {
        in_channels: 1,
        arch: Arch::Small,
        classes: 2,
        head: HeadConfig::new(2),
    }
    .init(&device);
    let before = model.valid().backbone;
    let trained = train(model, &data, None, &cfg, &device, |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    // Each epoch reports its last step's rate: each stage ends at its own final rate.
    let lr: Vec<f64> = trained.history.iter().map(|h| h.lr).collect();
    assert!(
        (lr[1] - 1e-4).abs() < 1e-12 && (lr[4] - 1e-5).abs() < 1e-12,
        "{lr:?}"
    );
    assert!(lr[2] < 1e-3 && lr[2] > lr[4], "{lr:?}");
    let x = Tensor::<4>::random(
        [2, 1, 16, 16],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &Device::flex(),
    );
    assert_ne!(
        trained.model.backbone.forward(x.clone()).into_data(),
        before.forward(x).into_data(),
        "the second stage trains the backbone"
    );
}
