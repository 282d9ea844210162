//! The training loop: SGD with momentum (dampening 0, as PyTorch and the paper), a per-iteration
//! learning-rate schedule, the weighted multi-branch cross-entropy (binary cross-entropy per
//! label for a multi-label set), optional two-stage transfer (head only with the backbone
//! frozen, then everything at a tenth of the rate), and per-epoch validation that keeps the best
//! epoch by macro-F1 (or only records the curves, keeping the last).

use std::ops::ControlFlow;
use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::activation::{log_sigmoid, log_softmax};
use burn::tensor::{Device, Tensor, TensorData};
use cryoprune_image::augment::Augment;
use cryoprune_model::infer::batch_tensor;
use cryoprune_model::{Classifier, FusedNet, HeadConfig, PickContext, Predictor, Readout};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::dataset::{Dataset, TargetsBuf};
use crate::schedule::Schedule;
use crate::Error;
use crate::{metrics, multilabel};
use cryoprune_model::backprop::{CpuTrainer, Loss, SgdStep, Targets};

/// Every knob of a training run, resolved for one training set. It has no defaults of its own:
/// cryoprune's are `cryoprune_jobs::recipe::NetConfig`'s, stated there once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch: usize,
    /// Passes over the training set per epoch, each with fresh augmentation. With 10 shots per
    /// class one pass is a single SGD step; repeating gives the optimiser steps to take.
    pub repeats: usize,
    pub schedule: Schedule,
    pub momentum: f64,
    pub weight_decay: f64,
    /// Loss weight per class (of a multi-label set: of each label's positives); `None` = equal.
    pub class_weights: Option<Vec<f32>>,
    /// Epochs with the backbone frozen (head only); later epochs train everything at rate/10.
    /// Frozen for every epoch, with flips and quarter turns only, it is a linear probe on
    /// features computed once (see `Probe`).
    pub freeze_epochs: usize,
    /// Two-stage transfer with a schedule per stage: `schedule` then runs over the frozen
    /// epochs alone and this over the later ones (instead of `schedule` over the whole run at
    /// a tenth of its rate once unfrozen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unfrozen: Option<Schedule>,
    pub head: HeadConfig,
    #[serde(with = "augment_serde")]
    pub augment: Augment,
    pub seed: u64,
    /// Keep the last epoch's network even with validation (which then only records the curves):
    /// cross-validation's folds, so that they are scored as the model trained on every label,
    /// which has nothing to choose its epoch by, is kept.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_last: bool,
    /// Label smoothing ε of the training loss (see `Loss`); 0 trains on the labels as given.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub label_smoothing: f32,
}

fn is_zero(v: &f32) -> bool {
    *v == 0.0
}

mod augment_serde {
    use cryoprune_image::augment::Augment;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Plain {
        flip: bool,
        rot90: bool,
        rotate: bool,
    }

    pub fn serialize<S: Serializer>(a: &Augment, s: S) -> Result<S::Ok, S::Error> {
        Plain {
            flip: a.flip,
            rot90: a.rot90,
            rotate: a.rotate,
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Augment, D::Error> {
        let p = Plain::deserialize(d)?;
        Ok(Augment {
            flip: p.flip,
            rot90: p.rot90,
            rotate: p.rotate,
        })
    }
}

/// One epoch's numbers. For a multi-label set the accuracies are the share of label decisions
/// (at probability 0.5) that are right, and the validation macro-F1 is the mean over labels of
/// each label's best F1 over thresholds, since the thresholds are chosen after training.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochStats {
    pub epoch: usize,
    pub lr: f64,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    pub val_macro_f1: Option<f64>,
    pub seconds: f64,
}

impl EpochStats {
    /// The header of the table [`EpochStats::row`] writes a line of.
    pub const HEADER: &'static str =
        "epoch      lr  train loss  train acc  val loss  val acc  val F1   time";

    /// This epoch as a line of a fixed-width table, for a terminal or a log.
    pub fn row(&self) -> String {
        let opt = |v: Option<f64>, digits: usize| v.map_or("-".into(), |v| format!("{v:.digits$}"));
        format!(
            "{:5}  {:.0e}  {:10.4}  {:9.3}  {:8}  {:7}  {:6}  {:4.1}s",
            self.epoch,
            self.lr,
            self.train_loss,
            self.train_accuracy,
            opt(self.val_loss, 4),
            opt(self.val_accuracy, 3),
            opt(self.val_macro_f1, 3),
            self.seconds
        )
    }
}

pub struct Trained {
    /// The network of the best epoch (by validation macro-F1; the last epoch without validation),
    /// ready for inference.
    pub model: Classifier,
    pub history: Vec<EpochStats>,
    /// 1-based.
    pub best_epoch: usize,
    /// The best epoch's class probabilities on the validation set, in its order (none without
    /// one): what scoring those picks again would give, already paid for.
    pub val_probs: Option<Vec<Vec<f32>>>,
    pub seconds: f64,
}

/// Weighted cross-entropy as PyTorch computes it, Σ w_y·(−log p_y) / Σ w_y, against targets
/// smoothed by ε: (1 − ε) on the label and ε/classes on every class, weighted by the label's
/// class weight (where classes weigh alike, PyTorch's `label_smoothing`).
fn cross_entropy(logits: Tensor<2>, labels: &[usize], loss: &Loss, device: &Device) -> Tensor<1> {
    let [n, k] = logits.dims();
    let weights = loss.class_weights;
    let mut target = vec![0f32; n * k];
    let total: f32 = labels.iter().map(|&l| weights[l]).sum();
    for (row, &l) in target.chunks_exact_mut(k).zip(labels) {
        let share = weights[l] / total;
        for (j, t) in row.iter_mut().enumerate() {
            *t = share * loss.class_target(j, l, k);
        }
    }
    let target = Tensor::<2>::from_data(TensorData::new(target, [n, k]), device);
    (log_softmax(logits, 1) * target).sum().neg()
}

/// Binary cross-entropy on each label's sigmoid, averaged over images and labels, each label's
/// positives weighted (PyTorch's `BCEWithLogitsLoss(pos_weight=…)`), each target smoothed by ε
/// towards ½.
fn binary_cross_entropy(
    logits: Tensor<2>,
    targets: &[f32],
    loss: &Loss,
    device: &Device,
) -> Tensor<1> {
    let [n, k] = logits.dims();
    let smoothed: Vec<f32> = targets.iter().map(|&y| loss.label_target(y)).collect();
    let positive: Vec<f32> = smoothed
        .iter()
        .enumerate()
        .map(|(j, &y)| loss.class_weights[j % k] * y)
        .collect();
    let negative: Vec<f32> = smoothed.iter().map(|&y| 1.0 - y).collect();
    let tensor = |v: Vec<f32>| Tensor::<2>::from_data(TensorData::new(v, [n, k]), device);
    let (positive, negative) = (tensor(positive), tensor(negative));
    (log_sigmoid(logits.clone()) * positive + log_sigmoid(logits.neg()) * negative)
        .mean()
        .neg()
}

/// The multi-loss: Σ_b w_b · loss(branch b), with the class weights and the smoothing inside
/// each branch's loss.
pub fn multi_loss(
    logits: Vec<Tensor<2>>,
    targets: Targets,
    loss: Loss,
    device: &Device,
) -> Tensor<1> {
    logits
        .into_iter()
        .zip(loss.branch_weights)
        .map(|(l, &w)| {
            let branch = match targets {
                Targets::Classes(labels) => cross_entropy(l, labels, &loss, device),
                Targets::Labels(t) => binary_cross_entropy(l, t, &loss, device),
            };
            branch.mul_scalar(w)
        })
        .reduce(|a, b| a + b)
        .expect("at least one branch")
}

/// Right decisions among a batch's main-branch logits ([n, classes] flattened), and how many
/// decisions there were: one class per image, or one yes/no per label.
fn right_decisions(logits: &[f32], targets: &TargetsBuf, classes: usize) -> (usize, usize) {
    match targets {
        TargetsBuf::Classes(labels) => {
            let right = logits
                .chunks_exact(classes)
                .zip(labels)
                .filter(|(row, &l)| argmax(row) == l)
                .count();
            (right, labels.len())
        }
        TargetsBuf::Labels(t) => {
            let right = logits
                .iter()
                .zip(t)
                .filter(|(&x, &y)| (x > 0.0) == (y > 0.5))
                .count();
            (right, t.len())
        }
    }
}

/// Class (or label) probabilities of every image of `data` (inference mode), batch by batch.
pub fn predict(
    model: &Classifier,
    data: &Dataset,
    batch: usize,
    readout: Readout,
    device: &Device,
) -> Vec<Vec<f32>> {
    let k = data.classes.len();
    let predictor = Predictor::new(model, device);
    let mut out = Vec::with_capacity(data.len());
    for start in (0..data.len()).step_by(batch.max(1)) {
        let end = (start + batch).min(data.len());
        let imgs: Vec<&[f32]> = (start..end).map(|i| data.image(i)).collect();
        let v = predictor.probabilities(&imgs, data.size, readout);
        out.extend(v.chunks_exact(k).map(|c| c.to_vec()));
    }
    out
}

/// A model's probabilities on labelled data, its predicted classes and their scores.
pub struct Scored {
    pub probs: Vec<Vec<f32>>,
    pub predicted: Vec<usize>,
    pub report: metrics::Report,
}

/// Runs `model` over labelled `data` and scores the predictions against the labels.
pub fn score(model: &Classifier, data: &Dataset, readout: Readout, device: &Device) -> Scored {
    Scored::of(predict(model, data, 64, readout, device), data)
}

impl Scored {
    /// Class probabilities of `data`'s examples, scored against its labels.
    pub fn of(probs: Vec<Vec<f32>>, data: &Dataset) -> Scored {
        let predicted: Vec<usize> = probs.iter().map(|p| argmax(p)).collect();
        let report = metrics::evaluate(&data.labels, &predicted, &data.classes);
        Scored {
            probs,
            predicted,
            report,
        }
    }

    /// These scores with each pick's context (its picker score, its distance from the edge)
    /// combined into the probabilities.
    pub fn with_context(&self, data: &Dataset, context: &PickContext) -> Result<Scored, Error> {
        let mut probs = self.probs.clone();
        for (p, o) in probs.iter_mut().zip(&data.origins) {
            let facts = o.facts();
            if let Some(fact) = context.missing(&facts) {
                return Err(Error::Labels(format!(
                    "{}: the pick at ({}, {}) lacks {}, which the model combines with the image \
                     (--image-only classifies on the image alone)",
                    o.micrograph,
                    o.x,
                    o.y,
                    fact.describe()
                )));
            }
            context.combine(p, &facts);
        }
        Ok(Scored::of(probs, data))
    }
}

pub fn argmax(p: &[f32]) -> usize {
    p.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 {
                (i, v)
            } else {
                best
            }
        })
        .0
}

/// Backbone features computed once, for a run whose backbone stays frozen throughout and whose
/// augmentation has finitely many views (flips and quarter turns): the head then trains on the
/// stored features of a randomly drawn view, a linear probe, instead of running the backbone at
/// every step. The backbone runs in inference mode here (batch norms use their running
/// statistics), as a frozen feature extractor should.
struct Probe {
    /// Per training image, the features of each of its views, [c·h·w] each.
    train: Vec<Vec<Vec<f32>>>,
    /// Per validation image, its features.
    val: Vec<Vec<f32>>,
    dims: [usize; 3],
}

impl Probe {
    fn new(
        model: &Classifier,
        train: &Dataset,
        val: Option<&Dataset>,
        cfg: &TrainConfig,
        device: &Device,
    ) -> Option<Probe> {
        if cfg.freeze_epochs < cfg.epochs {
            return None;
        }
        let views: Vec<Vec<Vec<f32>>> = (0..train.len())
            .map(|i| cfg.augment.views_planes(train.image(i), train.size))
            .collect::<Option<_>>()?;
        let inference = model.valid();
        let device = device.clone().without_autodiff();
        let fused = (device == Device::flex()).then(|| FusedNet::new(&inference));
        let mut dims = [0; 3];
        let mut features = |images: Vec<&[f32]>| -> Vec<Vec<f32>> {
            if let Some(net) = &fused {
                let (out, d) = net.backbone_features(&images, train.channels, train.size);
                dims = d;
                return out;
            }
            let mut out = Vec::with_capacity(images.len());
            for chunk in images.chunks(32) {
                let f = inference
                    .backbone
                    .forward(batch_tensor(chunk, train.size, &device));
                let [n, c, h, w] = f.dims();
                dims = [c, h, w];
                let flat: Vec<f32> = f
                    .into_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .expect("converted to f32");
                out.extend(flat.chunks_exact(flat.len() / n).map(|v| v.to_vec()));
            }
            out
        };
        let per_image = views.first().map_or(1, |v| v.len());
        let flat: Vec<&[f32]> = views.iter().flatten().map(|v| v.as_slice()).collect();
        let all = features(flat);
        let train_features = all.chunks(per_image).map(|c| c.to_vec()).collect();
        let val_features = match val {
            Some(v) => features((0..v.len()).map(|i| v.image(i)).collect()),
            None => Vec::new(),
        };
        Some(Probe {
            train: train_features,
            val: val_features,
            dims,
        })
    }

    fn tensor(&self, rows: Vec<&[f32]>, device: &Device) -> Tensor<4> {
        let [c, h, w] = self.dims;
        let n = rows.len();
        Tensor::from_data(TensorData::new(rows.concat(), [n, c, h, w]), device)
    }
}

/// Trains `model` (built on `device`, which must have autodiff) on `train`, validating on `val`.
/// After each epoch `on_epoch` may break to stop: then [`Error::Stopped`].
pub fn train(
    mut model: Classifier,
    train: &Dataset,
    val: Option<&Dataset>,
    cfg: &TrainConfig,
    device: &Device,
    mut on_epoch: impl FnMut(&EpochStats) -> ControlFlow<()>,
) -> Result<Trained, Error> {
    if train.is_empty() {
        return Err(Error::Config("no training examples".into()));
    }
    if cfg.epochs == 0 {
        return Err(Error::Config(
            "--epochs 0: the model is the network after an epoch, so give at least 1".into(),
        ));
    }
    cfg.head.validate().map_err(Error::Config)?;
    if cfg.head.multi_label != train.is_multi_label()
        || val.is_some_and(|v| v.is_multi_label() != train.is_multi_label())
    {
        return Err(Error::Config(
            "a multi-label head trains on multi-label sets only, and a single-label head on \
             single-label sets only"
                .into(),
        ));
    }
    let readout = cfg.head.readout();
    let k = train.classes.len();
    let weights = match &cfg.class_weights {
        Some(w) if w.len() != k => {
            return Err(Error::Config(format!(
                "{} class weights given for {k} classes",
                w.len()
            )))
        }
        Some(w) => w.clone(),
        None => vec![1.0; k],
    };
    let loss = Loss {
        class_weights: &weights,
        branch_weights: &cfg.head.branch_weights,
        smoothing: cfg.label_smoothing,
    };
    let device = device.clone().autodiff();
    // The rate is the schedule's, set at each step.
    let sgd = SgdStep {
        lr: 0.0,
        momentum: cfg.momentum,
        weight_decay: cfg.weight_decay,
    };
    let mut optim = sgd.burn().init();
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let batch = cfg.batch.max(1);
    let per_epoch = (train.len() * cfg.repeats.max(1)).div_ceil(batch);
    let total = per_epoch * cfg.epochs;
    let started = Instant::now();
    let mut history = Vec::with_capacity(cfg.epochs);
    // (validation score, 1-based epoch, network, its validation probabilities)
    type Best = (f64, usize, Classifier, Option<Vec<Vec<f32>>>);
    let mut best: Option<Best> = None;
    let mut it = 0;
    if cfg.freeze_epochs > 0 {
        model.backbone = model.backbone.freeze();
    }
    let probe = Probe::new(&model, train, val.filter(|v| !v.is_empty()), cfg, &device);
    // On the CPU every network trains through cryoprune's own backward pass, 2-3x faster than
    // burn's autodiff (BENCHMARKS.md); burn trains on other devices and for the probe.
    let mut fast = match &probe {
        None if device.clone().without_autodiff() == Device::flex() => CpuTrainer::new(&model),
        _ => None,
    };
    for epoch in 0..cfg.epochs {
        let t0 = Instant::now();
        if cfg.freeze_epochs > 0 && epoch == cfg.freeze_epochs {
            model.backbone = model.backbone.unfreeze();
        }
        let frozen = cfg.freeze_epochs > 0 && epoch < cfg.freeze_epochs;
        let stage_scale = if cfg.freeze_epochs > 0 && !frozen {
            0.1
        } else {
            1.0
        };
        let stage_start = per_epoch * cfg.freeze_epochs;
        let mut order: Vec<usize> = (0..cfg.repeats.max(1))
            .flat_map(|_| 0..train.len())
            .collect();
        order.shuffle(&mut rng);
        let (mut loss_sum, mut correct, mut decided, mut seen) = (0.0, 0usize, 0usize, 0usize);
        let mut lr = 0.0;
        for chunk in order.chunks(batch) {
            lr = match &cfg.unfrozen {
                Some(_) if frozen => cfg.schedule.rate(epoch, it, stage_start),
                Some(second) if cfg.freeze_epochs > 0 => second.rate(
                    epoch - cfg.freeze_epochs,
                    it - stage_start,
                    total - stage_start,
                ),
                _ => cfg.schedule.rate(epoch, it, total) * stage_scale,
            };
            it += 1;
            let targets = train.targets(chunk);
            let mut augmented = || -> Vec<Vec<f32>> {
                chunk
                    .iter()
                    .map(|&i| {
                        cfg.augment
                            .apply_planes(train.image(i), train.size, &mut rng)
                    })
                    .collect()
            };
            let (l_value, pred) = if let Some(fast) = &mut fast {
                let batch = augmented();
                let refs: Vec<&[f32]> = batch.iter().map(|v| v.as_slice()).collect();
                let sgd = SgdStep { lr, ..sgd };
                let out = fast.step(&refs, train.size, targets.as_targets(), loss, &sgd, !frozen);
                (out.loss as f64, out.logits)
            } else {
                let logits = match &probe {
                    Some(p) => {
                        let rows: Vec<&[f32]> = chunk
                            .iter()
                            .map(|&i| {
                                let views = &p.train[i];
                                views[rng.random_range(0..views.len())].as_slice()
                            })
                            .collect();
                        model.head.forward(p.tensor(rows, &device))
                    }
                    None => {
                        let batch = augmented();
                        let refs: Vec<&[f32]> = batch.iter().map(|v| v.as_slice()).collect();
                        model.forward(batch_tensor(&refs, train.size, &device))
                    }
                };
                let main = logits[0].clone();
                let l = multi_loss(logits, targets.as_targets(), loss, &device);
                let l_value = l.clone().into_scalar::<f32>() as f64;
                if l_value.is_finite() {
                    let grads = GradientsParams::from_grads(l.backward(), &model);
                    model = optim.step(lr, model, grads);
                }
                let main: Vec<f32> = main
                    .into_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .expect("converted to f32");
                (l_value, main)
            };
            if !l_value.is_finite() {
                return Err(Error::Diverged {
                    epoch: epoch + 1,
                    lr,
                });
            }
            let (right, decisions) = right_decisions(&pred, &targets, k);
            correct += right;
            decided += decisions;
            loss_sum += l_value * chunk.len() as f64;
            seen += chunk.len();
        }
        let mut stats = EpochStats {
            epoch: epoch + 1,
            lr,
            train_loss: loss_sum / seen as f64,
            train_accuracy: correct as f64 / decided as f64,
            val_loss: None,
            val_accuracy: None,
            val_macro_f1: None,
            seconds: 0.0,
        };
        // The network as trained so far, for validation and as the best epoch's candidate.
        let inference = match &fast {
            Some(f) => f.write(model.valid()),
            None => model.valid(),
        };
        let (score, val_probs) = match val.filter(|v| !v.is_empty()) {
            Some(v) => {
                let plain = device.clone().without_autodiff();
                let probs = match &probe {
                    Some(p) => {
                        let rows = p.val.iter().map(|f| f.as_slice()).collect();
                        let probs = inference
                            .head
                            .probabilities(p.tensor(rows, &plain), readout);
                        let flat = probs
                            .into_data()
                            .convert::<f32>()
                            .try_into_vec::<f32>()
                            .expect("converted to f32");
                        flat.chunks_exact(k).map(|c| c.to_vec()).collect()
                    }
                    None => predict(&inference, v, 64, readout, &plain),
                };
                let (nll, accuracy, macro_f1) = match &v.multi {
                    None => {
                        let predicted: Vec<usize> = probs.iter().map(|p| argmax(p)).collect();
                        let report = metrics::evaluate(&v.labels, &predicted, &v.classes);
                        let nll = probs
                            .iter()
                            .zip(&v.labels)
                            .map(|(p, &l)| -(p[l].max(1e-7) as f64).ln())
                            .sum::<f64>()
                            / v.len() as f64;
                        (nll, report.accuracy, report.macro_f1)
                    }
                    Some(truth) => multilabel::validation_figures(truth, &probs),
                };
                stats.val_loss = Some(nll);
                stats.val_accuracy = Some(accuracy);
                stats.val_macro_f1 = Some(macro_f1);
                (macro_f1, Some(probs))
            }
            None => (epoch as f64, None),
        };
        stats.seconds = t0.elapsed().as_secs_f64();
        if on_epoch(&stats).is_break() {
            return Err(Error::Stopped);
        }
        history.push(stats);
        // Ties go to the later epoch: more training at equal validation is the better bet.
        if cfg.keep_last || best.as_ref().is_none_or(|(s, ..)| score >= *s) {
            best = Some((score, epoch + 1, inference, val_probs));
        }
    }
    let (_, best_epoch, best_model, val_probs) = best.expect("at least one epoch");
    Ok(Trained {
        model: best_model,
        history,
        best_epoch,
        val_probs,
        seconds: started.elapsed().as_secs_f64(),
    })
}
