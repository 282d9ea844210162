//! The train job: fine-tune a network on labelled picks and write a model directory.

use std::path::PathBuf;

use cryoprune_model::exposure_context::ExposureContext;
use cryoprune_model::PickContext;

use cryoprune_train::diagnose::{diagnose, unlearnt_labels, Task};
use cryoprune_train::modeldir::{HeldOut, ModelDir, ModelSpec, TrainingFiles, TrainingRecord};
use cryoprune_train::multilabel;
use cryoprune_train::sampling::{
    draw_shots, folds as deal_folds, split_fraction, subsample, Split,
};
use cryoprune_train::trainer::Scored;
use cryoprune_train::Dataset;
use serde::{Deserialize, Serialize};

use crate::adapt::{adapt, UnlabelledConfig};
use crate::compute::{Compute, ComputeConfig};
use crate::events::{EpochStats, Event, Events};
use crate::labels::{class_counts, LabelsConfig};
use crate::recipe::{
    context_for, fit, fit_context, fit_with, with_context, Fitted, NetConfig, PrepConfig, Start,
    StartingWeights,
};
use crate::{invalid, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct TrainJobConfig {
    #[command(flatten)]
    pub compute: ComputeConfig,
    #[command(flatten)]
    pub labels: LabelsConfig,
    /// Train on K labelled picks per class (drawn with --seed); the rest validate.
    #[arg(long, conflicts_with = "val_fraction")]
    pub shots: Option<usize>,
    /// Without --shots: the share of each class held out for validation.
    #[arg(long, default_value_t = TrainJobConfig::default().val_fraction)]
    pub val_fraction: f64,
    /// Instead of holding out --val-fraction: cross-validate in N folds. N networks each learn
    /// from all folds but one and score the one left out, so every label is a validation pick
    /// (the figures, the pick context's weights and prune's --prior dataset rest on all of
    /// them, not on a fifth); the model then learns from every label and keeps its last epoch.
    /// Images with label sets (micrographs to curate) are dealt into the folds at random, and
    /// each label's threshold and the measured statistics' weights come from the folds' scores.
    /// Training takes N + 1 times as long. 0: hold out --val-fraction.
    #[arg(long, default_value_t = TrainJobConfig::default().folds)]
    pub folds: usize,
    /// Images with label sets only: train N networks, each holding out its own random
    /// --val-fraction of the images (seeds --seed to --seed + N - 1), and keep them all as the
    /// model. Its probabilities are the mean of theirs, each label's threshold the mean of the
    /// thresholds each chose on its own held-out images: a threshold chosen on a few dozen
    /// micrographs moves with which ones they were, and the mean of several moves less.
    /// Training takes N times as long, curating N times the network's share. 1: one network.
    #[arg(long, default_value_t = TrainJobConfig::default().ensemble, conflicts_with = "folds")]
    pub ensemble: usize,
    /// Per-epoch validation uses at most this many held-out picks (all are scored at the end).
    #[arg(long, default_value_t = TrainJobConfig::default().val_max)]
    pub val_max: usize,
    #[command(flatten)]
    pub prep: PrepConfig,
    #[command(flatten)]
    pub net: NetConfig,
    /// Classify on the image alone. By default what the box does not show is combined with the
    /// network's evidence: the picker's score, when the labelled picks carry one, and the pick's
    /// distance from the micrograph edge; for whole micrographs, their measured statistics
    /// (particle band, spectrum anisotropy and lattice spots, contrast).
    #[arg(long)]
    pub image_only: bool,
    #[command(flatten)]
    pub unlabelled: UnlabelledConfig,
    #[arg(long, default_value_t = TrainJobConfig::default().seed)]
    pub seed: u64,
    /// Output model directory.
    #[arg(long)]
    pub out: PathBuf,
}

impl Default for TrainJobConfig {
    fn default() -> Self {
        Self {
            compute: ComputeConfig::default(),
            labels: LabelsConfig::default(),
            shots: None,
            val_fraction: 0.2,
            folds: 0,
            ensemble: 1,
            val_max: 400,
            prep: PrepConfig::default(),
            net: NetConfig::default(),
            image_only: false,
            unlabelled: UnlabelledConfig::default(),
            seed: 0,
            out: PathBuf::new(),
        }
    }
}

/// Held-out picks of a class below which the validation figures are called rough.
pub(crate) const FEW_HELD_OUT: usize = 10;

/// Labels of a class below which it is warned about: a few-shot network needs a handful of each
/// class to learn it at all (the paper's fewest is 10).
const FEW_LABELS: usize = 5;

/// Trains and writes the model directory; returns what model.json records.
pub fn run(cfg: &TrainJobConfig, events: &dyn Events) -> Result<ModelSpec> {
    crate::inputs::ensure_folder_possible("--out", &cfg.out)?;
    let inputs: Vec<PathBuf> = cfg
        .labels
        .labels
        .iter()
        .chain(&cfg.unlabelled.picks)
        .cloned()
        .collect();
    if let Some(input) = ModelDir::new(&cfg.out).first_replaced(&inputs) {
        invalid!(
            "--out {}: the model would be saved over {}, an input; choose another folder",
            cfg.out.display(),
            input.display()
        );
    }
    if !(0.0..1.0).contains(&cfg.val_fraction) {
        invalid!(
            "--val-fraction {}: expected the share of each class held out, from 0 to below 1",
            cfg.val_fraction
        );
    }
    // One fold would train on nothing it could score; it was read as 0, silently.
    if cfg.folds == 1 {
        invalid!("--folds 1: cross-validating takes at least 2 folds (0 holds out --val-fraction)");
    }
    let compute = cfg.compute.start(events)?;
    compute.install(events, || {
        // Fetched before the particles are cut, so a failed download fails fast.
        let weights = StartingWeights::resolve(&cfg.net.pretrained, cfg.net.arch, events)?;
        let pre = cfg.prep.preprocessing(&cfg.labels.source())?;
        let data = cfg.labels.dataset(None, &pre, compute.threads, events)?;
        if cfg.ensemble == 0 {
            invalid!("--ensemble 0: the model needs at least one network");
        }
        if data.is_multi_label() {
            return train_label_sets(cfg, data, weights, pre, &compute, events);
        }
        if cfg.ensemble > 1 {
            invalid!(
                "--ensemble {}: ensembles are of models of images with label sets (micrographs \
                 to curate); a classifier of picks cross-validates with --folds",
                cfg.ensemble
            );
        }
        let all: Vec<usize> = (0..data.len()).collect();
        for (class, &n) in data.classes.iter().zip(&data.counts()) {
            // Every pick of the class was left out when cutting (outside its micrograph): the
            // model trained on without it and called every pick the other class.
            if n == 0 {
                invalid!(
                    "class `{class}` has no labelled pick left once the picks were cut (the \
                     lines above say which were left out): a network cannot learn a class it \
                     never sees; correct those picks' coordinates or leave the class out"
                );
            }
            if n < FEW_LABELS {
                events.warn(format!(
                    "class `{class}` has {}: the network learns next to nothing of a class \
                     that rare, and will seldom call a pick {class}; label at least 10 picks of \
                     it, or merge it into another class",
                    crate::count(n, "label")
                ));
            }
        }
        let folds = fold_count(cfg, &data)?;
        let pseudo = cfg.unlabelled.pseudo_labels;
        if pseudo > 0 && !cfg.unlabelled.is_on() {
            invalid!(
                "--pseudo-labels {pseudo} chooses among the picks you did not label: give them \
                 with --unlabelled PICKS"
            );
        }
        if pseudo > 0 && folds.is_some() {
            invalid!(
                "--pseudo-labels with --folds: the folds would validate on pseudo-labels; hold \
                 labels out instead (--val-fraction or --shots)"
            );
        }
        let split = match (cfg.shots, folds) {
            (Some(k), _) => draw_shots(&data.labels, &data.classes, &all, k, cfg.seed)?,
            // Every label trains the model; the folds hold each out once.
            (None, Some(_)) => Split {
                train: all.clone(),
                rest: Vec::new(),
            },
            (None, None) => split_fraction(
                &data.labels,
                &data.classes,
                &all,
                cfg.val_fraction,
                cfg.seed,
            ),
        };
        if split.train.is_empty() {
            invalid!("no labelled picks left for training");
        }
        let train_set = data.subset(&split.train);
        let held_out = data.subset(&split.rest);
        if let Some(k) = folds {
            events.note(format!(
                "{} labelled picks ({}) in {k} folds: {k} networks each learn from all folds \
                 but one and score the one left out (the validation figures, the pick \
                 context's weights and prune's --prior dataset come from those scores), then \
                 the model learns from all of them",
                train_set.len(),
                class_counts(&train_set)
            ));
        } else if held_out.is_empty() {
            events.note(
                "every labelled pick trains, none is held out: the last epoch is kept, nothing \
                 measures the model, and prune's threshold advice and --prior dataset need \
                 its own --labels (label more picks than --shots, or raise --val-fraction)"
                    .into(),
            );
        } else if let Some(fewest) = held_out
            .counts()
            .into_iter()
            .min()
            .filter(|&n| n < FEW_HELD_OUT)
        {
            // One standard error of an accuracy near 0.8: what the figures below can be off by.
            let error = (0.8 * 0.2 / held_out.len() as f64).sqrt();
            events.note(format!(
                "only {} picks are held out ({fewest} of the rarest class): the validation \
                 figures can be off by about ±{error:.2}, and the best epoch is chosen on them; \
                 more labels make both firmer, and --folds 5 scores every label",
                held_out.len()
            ));
        }
        let context = if cfg.image_only {
            None
        } else {
            context_for(&train_set, events)
        };
        let (start, adaptation, adapted_picks) =
            if cfg.unlabelled.is_on() && cfg.unlabelled.epochs > 0 {
                let adapted = adapt(
                    &cfg.unlabelled,
                    &cfg.labels.micrographs,
                    &pre,
                    &cfg.net,
                    weights.path.as_deref(),
                    cfg.seed,
                    &compute,
                    events,
                )?;
                (
                    Start::Backbone(Box::new(adapted.backbone)),
                    Some(adapted.record),
                    Some(adapted.picks),
                )
            } else {
                if !cfg.unlabelled.is_on() && !cfg.labels.micrographs.is_empty() {
                    events.note(
                    "the picks you did not label can help: --unlabelled PICKS adapts the network \
                     to these micrographs before the labels (about 40 s on 2 cores)"
                        .into(),
                );
                }
                (Start::Weights(weights.path.as_deref()), None, None)
            };
        // Cross-validated, the picks scored are the training picks themselves (None).
        let (
            Candidate {
                fitted,
                context,
                scored,
            },
            held,
            train_set,
            pseudo_counts,
        ) = match folds {
            Some(k) => {
                let cv = cross_validate(cfg, k, start, &train_set, context, &compute, events)?;
                (cv, None, train_set, None)
            }
            None => {
                let epoch_picks = subsample(
                    &held_out.labels,
                    data.classes.len(),
                    &(0..held_out.len()).collect::<Vec<_>>(),
                    cfg.val_max,
                    cfg.seed,
                );
                let held = Held {
                    epoch: held_out.subset(&epoch_picks),
                    epoch_picks,
                    all: held_out,
                };
                events.note(format!(
                    "training on {} picks ({}), validating on {} held out",
                    train_set.len(),
                    class_counts(&train_set),
                    held.all.len()
                ));
                // The second fit's pick context is the first's, fitted on your labels alone: the
                // pseudo-labels were chosen by it and would only confirm it.
                let again = (pseudo > 0).then(|| (start.clone(), context.clone()));
                let mut c = candidate(cfg, start, &train_set, context, &held, &compute, events)?;
                let mut train_set = train_set;
                let mut counts = None;
                if let Some((start, context)) = again {
                    let pool = match adapted_picks {
                        Some(picks) => Dataset {
                            classes: data.classes.clone(),
                            ..picks
                        },
                        None => cfg.unlabelled.pool(
                            &cfg.labels.micrographs,
                            &pre,
                            &data.classes,
                            compute.threads,
                            events,
                        )?,
                    };
                    let (chosen, per_class) =
                        pseudo_labels(&c, &pool, &data, pseudo, pre.box_size, &compute, events)?;
                    train_set = train_set.concat(&chosen);
                    c = candidate(cfg, start, &train_set, context, &held, &compute, events)?;
                    counts = Some(per_class);
                }
                (c, Some(held.all), train_set, counts)
            }
        };
        let held_out = held.as_ref().unwrap_or(&train_set);
        if !held_out.is_empty() {
            let whose = match folds {
                Some(k) => format!(
                    "every labelled pick, scored by the network of the {k} that did not learn it"
                ),
                None => format!("{} held-out picks", held_out.len()),
            };
            events.output(format!(
                "validation ({whose}):\n{}",
                scored.report.to_text()
            ));
        }
        let mut counts = vec![0; data.classes.len()];
        for &p in &scored.predicted {
            counts[p] += 1;
        }
        let counts = (!held_out.is_empty()).then_some(counts.as_slice());
        let training = TrainingRecord {
            shots: cfg.shots,
            folds,
            validation: (!held_out.is_empty()).then(|| scored.report.clone()),
            adaptation,
            pseudo_labels: pseudo_counts,
            ..record(
                cfg, &fitted, &train_set, held_out, counts, None, &compute, events,
            )
        };
        let spec = ModelSpec {
            pick_context: context,
            ..spec_of(&fitted, &data, pre, &weights, training)
        };
        save(
            cfg,
            &fitted,
            spec,
            HeldOut::Classes(held_out, &scored),
            events,
        )
    })
}

/// Trains a multi-label model on images with label sets: `--val-fraction` of the images, drawn
/// at random, validate (every label is rare somewhere, so no per-class split applies), or with
/// `--folds` every image does, scored by a network that did not learn it; each label's
/// threshold is the one with the best F1 on them.
fn train_label_sets(
    cfg: &TrainJobConfig,
    data: Dataset,
    weights: StartingWeights,
    pre: cryoprune_train::prep::Preprocessing,
    compute: &Compute,
    events: &dyn Events,
) -> Result<ModelSpec> {
    if cfg.shots.is_some() {
        invalid!(
            "--shots draws labelled picks per class; images with label sets are split by \
             --val-fraction or --folds"
        );
    }
    if cfg.unlabelled.is_on() {
        invalid!("--unlabelled adapts to picks on micrographs; images with label sets have none");
    }
    let everywhere: Vec<&str> = data
        .classes
        .iter()
        .zip(data.counts())
        .filter(|&(_, n)| n == data.len())
        .map(|(name, _)| name.as_str())
        .collect();
    if !everywhere.is_empty() {
        events.warn(format!(
            "`{}` is on every one of the {} images: nothing shows what an image without it \
             looks like, so the model will find it on every image; add images without it (an \
             image with no label counts) or leave it out",
            everywhere.join("`, `"),
            data.len()
        ));
    }
    if cfg.ensemble >= 2 {
        return label_set_ensemble(cfg, &data, &weights, pre, compute, events);
    }
    let start = Start::Weights(weights.path.as_deref());
    // Held out, the split; cross-validated, every image trains and validates.
    let (fitted, split, probs, exposure, folds) = if cfg.folds >= 2 {
        if data.len() < 2 * cfg.folds {
            invalid!(
                "--folds {} needs at least {} images (two a fold); there are {}",
                cfg.folds,
                2 * cfg.folds,
                data.len()
            );
        }
        events.note(format!(
            "{} images (carried by: {}) in {} folds: {} networks each learn from all folds but \
             one and score the one left out (the validation figures, each label's threshold and \
             the weights of the measured statistics come from those scores), then the model \
             learns from all of them",
            data.len(),
            class_counts(&data),
            cfg.folds,
            cfg.folds
        ));
        let (fitted, probs, exposure) =
            label_set_folds(cfg, cfg.folds, start, &data, compute, events)?;
        (fitted, None, probs, exposure, Some(cfg.folds))
    } else {
        let (train_idx, val_idx) = split_images(data.len(), cfg.val_fraction, cfg.seed);
        let (train_set, held_out) = (data.subset(&train_idx), data.subset(&val_idx));
        events.note(format!(
            "training on {} images (carried by: {}), validating on {} held out",
            train_set.len(),
            class_counts(&train_set),
            held_out.len()
        ));
        let (fitted, probs, exposure) =
            fit_held_out(cfg, start, &train_set, &held_out, cfg.seed, compute, events)?;
        events.note(format!(
            "trained in {:.1} s; best epoch {} kept",
            fitted.seconds, fitted.best_epoch
        ));
        (fitted, Some((train_set, held_out)), probs, exposure, None)
    };
    let (train_set, held_out) = split.as_ref().map_or((&data, &data), |(t, h)| (t, h));
    let truth = held_out.label_sets();
    let (thresholds, report) = if held_out.is_empty() {
        events.note(format!(
            "every image trains, none is held out: each label's threshold stays {} and nothing \
             measures the model (raise --val-fraction)",
            multilabel::UNCHOSEN_THRESHOLD
        ));
        (
            vec![multilabel::UNCHOSEN_THRESHOLD; data.classes.len()],
            None,
        )
    } else {
        let thresholds = multilabel::choose_thresholds(truth, &probs);
        let report = multilabel::evaluate(truth, &probs, &thresholds, &data.classes);
        let whose = match folds {
            Some(k) => format!(
                "all {} images, each scored by the network of the {k} that did not learn it",
                held_out.len()
            ),
            None => format!("{} held-out images", held_out.len()),
        };
        events.output(format!(
            "validation ({whose}; each label's threshold was chosen on them, so `evaluate` on \
             other images measures it fairly):\n{}",
            report.to_text()
        ));
        (thresholds, Some(report))
    };
    let training = TrainingRecord {
        folds,
        ..record(
            cfg, &fitted, train_set, held_out, None, report, compute, events,
        )
    };
    let spec = ModelSpec {
        thresholds: Some(thresholds.clone()),
        exposure_context: exposure,
        ..spec_of(&fitted, &data, pre, &weights, training)
    };
    let validation = HeldOut::Labels(held_out, &probs, &thresholds);
    save(cfg, &fitted, spec, validation, events)
}

/// A multi-label network fitted on `train` and validated on `held`, with the kept epoch's
/// probabilities on the held-out images (none when none is held out), combined with their
/// measured statistics unless `--image-only`, and the statistics' regression that combined
/// them.
fn fit_held_out(
    cfg: &TrainJobConfig,
    start: Start,
    train: &Dataset,
    held: &Dataset,
    seed: u64,
    compute: &Compute,
    events: &dyn Events,
) -> Result<(Fitted, Vec<Vec<f32>>, Option<ExposureContext>)> {
    let fitted = fit(&cfg.net, start, train, held, seed, compute, events)?;
    let mut probs = fitted.val_probs.clone().unwrap_or_default();
    let exposure = match cfg.image_only {
        true => None,
        false => exposure_context(train, held, &mut probs, events),
    };
    Ok((fitted, probs, exposure))
}

/// An ensemble of multi-label networks: each learns as the held-out recipe teaches one, on its
/// own random split (seed `--seed` + its index), and fits its own measured statistics'
/// regression and thresholds on its held-out images. The model is all of them: the mean of
/// their probabilities, the mean of their thresholds. On 150 simulated micrographs the
/// thresholds one network chose on its 38 held-out ones moved its test macro-F1 by up to 0.02
/// with which 38 they were; five networks' averaged moved it less and scored 0.01 above their
/// mean (BENCHMARKS.md, curating micrographs).
fn label_set_ensemble(
    cfg: &TrainJobConfig,
    data: &Dataset,
    weights: &StartingWeights,
    pre: cryoprune_train::prep::Preprocessing,
    compute: &Compute,
    events: &dyn Events,
) -> Result<ModelSpec> {
    let n = cfg.ensemble;
    events.note(format!(
        "{} images (carried by: {}): {n} networks, each learning from a different random {:.0}% \
         of them and choosing its thresholds on the rest; the model's probabilities are the \
         mean of theirs, each label's threshold the mean of theirs",
        data.len(),
        class_counts(data),
        100.0 * (1.0 - cfg.val_fraction)
    ));
    let start = Start::Weights(weights.path.as_deref());
    let mut thresholds = vec![0.0f32; data.classes.len()];
    // Per image, the sum of the held-out scores of the networks that held it out, and how many.
    let mut held_sums: Vec<(Vec<f32>, usize)> =
        vec![(vec![0.0; data.classes.len()], 0); data.len()];
    let mut members = Vec::with_capacity(n);
    // The first network's training images, for the record; the others' are dropped as they go.
    let mut first_train = None;
    for m in 0..n {
        let seed = cfg.seed + m as u64;
        let (train_idx, val_idx) = split_images(data.len(), cfg.val_fraction, seed);
        if val_idx.is_empty() {
            invalid!(
                "--ensemble: each network chooses its thresholds on the images it holds out, \
                 and --val-fraction {} holds out none",
                cfg.val_fraction
            );
        }
        let (train_set, held) = (data.subset(&train_idx), data.subset(&val_idx));
        let (fitted, probs, exposure) =
            fit_held_out(cfg, start.clone(), &train_set, &held, seed, compute, events)?;
        let chosen = multilabel::choose_thresholds(held.label_sets(), &probs);
        let own = multilabel::evaluate(held.label_sets(), &probs, &chosen, &data.classes);
        events.note(format!(
            "network {} of {n}: trained in {:.1} s, best epoch {}; macro-F1 {:.3} on its {} \
             held-out images at its own thresholds",
            m + 1,
            fitted.seconds,
            fitted.best_epoch,
            own.macro_f1,
            held.len()
        ));
        for (t, c) in thresholds.iter_mut().zip(&chosen) {
            *t += c / n as f32;
        }
        for (&i, p) in val_idx.iter().zip(&probs) {
            let (sum, count) = &mut held_sums[i];
            sum.iter_mut().zip(p).for_each(|(s, v)| *s += v);
            *count += 1;
        }
        members.push((fitted, exposure));
        first_train.get_or_insert(train_set);
    }
    // An image held out by several networks is scored once, by their mean, as the model
    // scores a new one (each network held out by itself would count it several times).
    let (held_idx, held_probs): (Vec<usize>, Vec<Vec<f32>>) = held_sums
        .into_iter()
        .enumerate()
        .filter(|(_, (_, count))| *count > 0)
        .map(|(i, (sum, count))| (i, sum.into_iter().map(|v| v / count as f32).collect()))
        .unzip();
    let held = data.subset(&held_idx);
    let report = multilabel::evaluate(held.label_sets(), &held_probs, &thresholds, &data.classes);
    events.output(format!(
        "validation ({} of the {} images, those one network or more held out, each scored by \
         the mean of the networks that held it out, at the model's mean thresholds):\n{}",
        held.len(),
        data.len(),
        report.to_text()
    ));
    let seconds: f64 = members.iter().map(|(f, _)| f.seconds).sum();
    let (first, exposure) = members.remove(0);
    let train_set = first_train.expect("an ensemble has a first network");
    let dir = ModelDir::new(&cfg.out);
    let others = members
        .into_iter()
        .enumerate()
        .map(|(i, (fitted, ctx))| dir.save_member(&fitted.model, i + 2, ctx))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let training = TrainingRecord {
        ensemble: Some(n),
        seconds,
        ..record(
            cfg,
            &first,
            &train_set,
            &held,
            None,
            Some(report),
            compute,
            events,
        )
    };
    let spec = ModelSpec {
        thresholds: Some(thresholds.clone()),
        exposure_context: exposure,
        members: others,
        ..spec_of(&first, data, pre, weights, training)
    };
    save(
        cfg,
        &first,
        spec,
        HeldOut::Labels(&held, &held_probs, &thresholds),
        events,
    )
}

/// Cross-validation of a multi-label model: `k` networks each learn from all folds of images
/// but one (dealt at random: a label set has no one class to stratify by) and score the fold
/// left out, keeping their last epoch; for whole micrographs a regression on the measured
/// statistics of the same folds weighs the fold's facts. On those scores the network's weight
/// per label is fitted against the facts, and they come back combined, for the thresholds.
/// Then a network and a regression learn from every image. With 150 micrographs a held-out
/// quarter leaves each threshold to 37 of them, and which 37 moved the thresholds' F1 by
/// several points (BENCHMARKS.md, curating micrographs).
fn label_set_folds(
    cfg: &TrainJobConfig,
    k: usize,
    start: Start,
    data: &Dataset,
    compute: &Compute,
    events: &dyn Events,
) -> Result<(Fitted, Vec<Vec<f32>>, Option<ExposureContext>)> {
    let all: Vec<usize> = (0..data.len()).collect();
    let folds = deal_folds(&vec![0; data.len()], 1, &all, k, cfg.seed);
    let measured = !cfg.image_only && !data.exposure.is_empty();
    let names = cryoprune_image::exposure::FACTS;
    // Per fold, the regression fitted on its training images (where none could be, the
    // regression on every image stands in).
    let FoldScores {
        mut probs,
        judge_of,
        judges,
        curves,
        seconds,
    } = score_folds(cfg, &folds, &start, data, compute, events, |train| {
        measured
            .then(|| ExposureContext::fit(&names, &train.exposure, train.label_sets()).ok())
            .flatten()
    })?;
    let mut exposure = None;
    if measured {
        match ExposureContext::fit(&names, &data.exposure, data.label_sets()) {
            Ok(mut ctx) => {
                let evidence: Vec<Vec<f64>> = (0..data.len())
                    .map(|i| {
                        judges[judge_of[i]]
                            .as_ref()
                            .unwrap_or(&ctx)
                            .evidence(&data.exposure[i])
                    })
                    .collect();
                let used = ctx.fit_image_weights_to(&probs, &evidence, data.label_sets());
                note_image_weights(
                    &ctx,
                    &data.classes,
                    used,
                    &format!("the folds' scores of {used} micrographs"),
                    events,
                );
                for (p, e) in probs.iter_mut().zip(&evidence) {
                    ctx.combine_evidence(p, e);
                }
                exposure = Some(ctx);
            }
            Err(why) => events.note(format!(
                "the micrographs' measured statistics are not used: {why}"
            )),
        }
    }
    let fitted = fit_on_all(cfg, start, data, seconds, &curves, compute, events)?;
    Ok((fitted, probs, exposure))
}

/// For whole micrographs, the regression of each label on their measured statistics, fitted on
/// the training micrographs; the network's weight per label is fitted on the held-out ones,
/// whose probabilities (`probs`) it then combines in place, so thresholds are chosen on what the
/// model will output.
pub(crate) fn exposure_context(
    train: &Dataset,
    held: &Dataset,
    probs: &mut [Vec<f32>],
    events: &dyn Events,
) -> Option<ExposureContext> {
    if train.exposure.is_empty() {
        return None;
    }
    let names = cryoprune_image::exposure::FACTS;
    let mut ctx = match ExposureContext::fit(&names, &train.exposure, train.label_sets()) {
        Ok(ctx) => ctx,
        Err(why) => {
            events.note(format!(
                "the micrographs' measured statistics are not used: {why}"
            ));
            return None;
        }
    };
    let used = ctx.fit_image_weights(probs, &held.exposure, held.label_sets());
    note_image_weights(
        &ctx,
        &train.classes,
        used,
        &format!("{used} held-out micrographs"),
        events,
    );
    for (p, f) in probs.iter_mut().zip(&held.exposure) {
        ctx.combine(p, f);
    }
    Some(ctx)
}

/// Says how the network's log-odds are weighted against the measured statistics per label,
/// fitted to `used` micrographs (`fitted_to`: which, and whose scores).
fn note_image_weights(
    ctx: &ExposureContext,
    classes: &[String],
    used: usize,
    fitted_to: &str,
    events: &dyn Events,
) {
    let weights: Vec<String> = classes
        .iter()
        .zip(ctx.image_weights())
        .map(|(label, w)| format!("{label} {w:.2}"))
        .collect();
    events.note(format!(
        "measured statistics ({}) combined with the network, its log-odds weighted per label \
         ({}){}",
        cryoprune_image::exposure::FACTS.join(", "),
        weights.join(", "),
        match used {
            0 => " (too few held-out micrographs to fit the weights)".to_string(),
            _ => format!(" to fit {fitted_to} best"),
        }
    ));
}

/// model.json of `fitted`, trained on `data` cut as `pre` says, from `weights`.
fn spec_of(
    fitted: &Fitted,
    data: &Dataset,
    pre: cryoprune_train::prep::Preprocessing,
    weights: &StartingWeights,
    training: TrainingRecord,
) -> ModelSpec {
    ModelSpec {
        pretrained_sha256: weights.sha256.clone(),
        ..ModelSpec::new(
            data.classes.clone(),
            fitted.network.clone(),
            pre,
            weights.described.clone(),
            training,
            None,
        )
    }
}

/// Writes the model directory: weights, `spec` (completed with their hash), curves and the
/// held-out examples.
fn save(
    cfg: &TrainJobConfig,
    fitted: &Fitted,
    mut spec: ModelSpec,
    validation: HeldOut,
    events: &dyn Events,
) -> Result<ModelSpec> {
    let files = TrainingFiles {
        history: &fitted.history,
        validation,
    };
    ModelDir::new(&cfg.out).save(&fitted.model, &mut spec, &files)?;
    events.note(format!("model written to {}", cfg.out.display()));
    Ok(spec)
}

/// What model.json records of any training run, the diagnosis of its curves and of a
/// multi-label model's validation `labels` (printed) among it; `counts` are the held-out picks
/// per predicted class, where there is one class each.
#[allow(clippy::too_many_arguments)]
fn record(
    cfg: &TrainJobConfig,
    fitted: &Fitted,
    train_set: &Dataset,
    held_out: &Dataset,
    counts: Option<&[usize]>,
    labels: Option<multilabel::MultiReport>,
    compute: &Compute,
    events: &dyn Events,
) -> TrainingRecord {
    let task = if train_set.is_multi_label() {
        Task::LabelSets
    } else {
        Task::Classes(counts)
    };
    let mut findings = diagnose(&fitted.history, task, &train_set.classes);
    findings.extend(labels.as_ref().map(unlearnt_labels).unwrap_or_default());
    if findings.is_empty() {
        events.output("diagnosis: the curves look healthy.".into());
    }
    for f in &findings {
        events.output(format!("diagnosis: {f}"));
    }
    TrainingRecord {
        config: Some(fitted.config.clone()),
        shots: None,
        train_picks: train_set.len(),
        class_counts: train_set.counts(),
        validation_picks: held_out.len(),
        folds: None,
        best_epoch: fitted.best_epoch,
        seconds: fitted.seconds,
        device: compute.device.description.clone(),
        validation: None,
        label_validation: labels,
        diagnosis: findings,
        labels: cfg.labels.labels.clone(),
        adaptation: None,
        ensemble: None,
        pseudo_labels: None,
    }
}

/// `n` images split at random (seeded) into training and validation, `fraction` of them (at
/// least one, when there are two or more) validating; both in ascending order.
fn split_images(n: usize, fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    let held = if n < 2 || fraction <= 0.0 {
        0
    } else {
        ((n as f64 * fraction).round() as usize).clamp(1, n - 1)
    };
    let (mut val, mut train) = (order[..held].to_vec(), order[held..].to_vec());
    val.sort_unstable();
    train.sort_unstable();
    (train, val)
}

/// The held-out labelled picks: all are scored at the end, `epoch` (at `epoch_picks` of `all`)
/// every epoch and to weigh the image against the pick context.
struct Held {
    all: Dataset,
    epoch_picks: Vec<usize>,
    epoch: Dataset,
}

/// The folds to cross-validate in, when asked for (not with --shots, whose draw says what
/// trains); no more than the rarest class has picks.
fn fold_count(cfg: &TrainJobConfig, data: &Dataset) -> Result<Option<usize>> {
    if cfg.shots.is_some() || cfg.folds < 2 {
        return Ok(None);
    }
    let fewest = data.counts().into_iter().min().unwrap_or(0);
    if fewest < 2 {
        invalid!(
            "--folds {} needs at least 2 labelled picks of every class; the rarest has {fewest}",
            cfg.folds
        );
    }
    Ok(Some(cfg.folds.min(fewest)))
}

/// Cross-validation: `k` networks each learn from all folds but one, with a
/// pick context fitted on the same picks, and score the fold left out; those scores weigh the
/// image against the context and are the validation figures. Then a network learns from every
/// label. The folds keep their last epoch as it must (nothing is left to choose by), so their
/// scores are of the same recipe; their validation curves, averaged, stand in its history.
fn cross_validate(
    cfg: &TrainJobConfig,
    k: usize,
    start: Start,
    data: &Dataset,
    mut context: Option<PickContext>,
    compute: &Compute,
    events: &dyn Events,
) -> Result<Candidate> {
    let all: Vec<usize> = (0..data.len()).collect();
    let folds = deal_folds(&data.labels, data.classes.len(), &all, k, cfg.seed);
    let facts = data.facts();
    // Per fold, the pick context fitted on its training picks, which judges that fold's facts
    // (where none could be fitted, the context on every label does).
    let FoldScores {
        probs,
        judge_of,
        mut judges,
        curves,
        seconds,
    } = score_folds(cfg, &folds, &start, data, compute, events, |train| {
        context
            .as_ref()
            .and_then(|_| fit_context(train, |facts| facts).ok())
    })?;
    let image_only = Scored::of(probs, data);
    let scored = match &mut context {
        None => image_only,
        Some(ctx) => {
            let judge = |i: usize| judges[judge_of[i]].as_ref().unwrap_or(&*ctx);
            let likelihoods: Vec<Vec<f64>> = (0..data.len())
                .map(|i| judge(i).log_likelihood(&facts[i]))
                .collect();
            let n = ctx.fit_weights_with(&image_only.probs, &likelihoods, &data.labels);
            if n > 0 {
                events.note(format!(
                    "pick context: the network's log-probabilities weighted {:.2}, the context's \
                     {:.2} (best fit to the folds' scores of {n} picks)",
                    ctx.image_weight, ctx.context_weight
                ));
            }
            // Each fold's context combines its picks at the weights fitted on all of them.
            for judge in judges.iter_mut().flatten() {
                judge.image_weight = ctx.image_weight;
                judge.context_weight = ctx.context_weight;
            }
            let judge = |i: usize| judges[judge_of[i]].as_ref().unwrap_or(&*ctx);
            let probs = image_only
                .probs
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let mut p = p.clone();
                    judge(i).combine(&mut p, &facts[i]);
                    p
                })
                .collect();
            let combined = Scored::of(probs, data);
            events.note(format!(
                "macro-F1 of the folds' scores of {} labelled picks: {:.3} on the image alone, \
                 {:.3} with the pick context",
                data.len(),
                image_only.report.macro_f1,
                combined.report.macro_f1
            ));
            combined
        }
    };
    let fitted = fit_on_all(cfg, start, data, seconds, &curves, compute, events)?;
    Ok(Candidate {
        fitted,
        context,
        scored,
    })
}

/// The `n` picks of each class in `pool` that the trained `model` is surest of, among those it
/// calls that class, labelled so, and how many per class. Picks within a quarter box of a
/// labelled one in `labelled` (training or validation) are that pick, and are left out. Ranked
/// with the pick context where every pool pick has its facts, else on the image alone.
///
/// Why: a few labels leave most of the network's features unconstrained, and the user's own
/// picks are the data it will classify. The picks it is surest of are, where it has learnt
/// anything, nearly all right, and learning them as labels spreads what the labels taught over
/// the dataset (self-training). Where the model is near chance its surest picks are not right
/// either, and they teach it its own mistakes (BENCHMARKS.md, pseudo-labels).
fn pseudo_labels(
    model: &Candidate,
    pool: &Dataset,
    labelled: &Dataset,
    n: usize,
    box_size: usize,
    compute: &Compute,
    events: &dyn Events,
) -> Result<(Dataset, Vec<usize>)> {
    use cryoprune_formats::names::stem;
    let mut taken: std::collections::HashMap<String, Vec<(f64, f64)>> = Default::default();
    for o in &labelled.origins {
        taken
            .entry(stem(&o.micrograph))
            .or_default()
            .push((o.x, o.y));
    }
    let near = (0.25 * box_size as f64).powi(2);
    let free: Vec<usize> = (0..pool.len())
        .filter(|&i| {
            let o = &pool.origins[i];
            taken.get(&stem(&o.micrograph)).is_none_or(|at| {
                at.iter()
                    .all(|&(x, y)| (x - o.x).powi(2) + (y - o.y).powi(2) > near)
            })
        })
        .collect();
    let beside = pool.len() - free.len();
    let pool = pool.subset(&free);
    let image = model.fitted.score(&pool, compute);
    let scored = match &model.context {
        Some(ctx)
            if pool
                .origins
                .iter()
                .all(|o| ctx.missing(&o.facts()).is_none()) =>
        {
            image.with_context(&pool, ctx)?
        }
        Some(_) => {
            events.note(
                "pseudo-labels: the unlabelled picks lack a fact the pick context combines (the \
                 picker's score?): ranked on the image alone"
                    .into(),
            );
            image
        }
        None => image,
    };
    let mut chosen = Vec::new();
    let mut labels = Vec::new();
    let mut per_class = Vec::new();
    for c in 0..pool.classes.len() {
        let mut of: Vec<usize> = (0..pool.len())
            .filter(|&i| scored.predicted[i] == c)
            .collect();
        of.sort_by(|&a, &b| scored.probs[b][c].total_cmp(&scored.probs[a][c]));
        of.truncate(n);
        per_class.push(of.len());
        labels.extend(std::iter::repeat_n(c, of.len()));
        chosen.extend(of);
    }
    let mut set = pool.subset(&chosen);
    set.labels = labels;
    events.note(format!(
        "pseudo-labels: of {} unlabelled picks ({beside} more lie on labelled ones), the model \
         was surest of these, now learnt as labels: {}",
        pool.len(),
        pool.classes
            .iter()
            .zip(&per_class)
            .map(|(name, k)| format!("{k} {name}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok((set, per_class))
}

/// The folds' scores: per image its probabilities from the network that held it out and
/// that fold's index; per fold what `judge` fitted on its training images, and its validation
/// curve; the seconds the folds took to train.
struct FoldScores<J> {
    probs: Vec<Vec<f32>>,
    judge_of: Vec<usize>,
    judges: Vec<Option<J>>,
    curves: Vec<Vec<EpochStats>>,
    seconds: f64,
}

/// Trains a network per fold of `folds` (every image of `data` but the fold's), scores the fold
/// with it, and fits `judge` to the fold's training images, under one progress bar.
fn score_folds<J>(
    cfg: &TrainJobConfig,
    folds: &[Vec<usize>],
    start: &Start,
    data: &Dataset,
    compute: &Compute,
    events: &dyn Events,
    judge: impl Fn(&Dataset) -> Option<J>,
) -> Result<FoldScores<J>> {
    let mut scores = FoldScores {
        probs: vec![Vec::new(); data.len()],
        judge_of: vec![0; data.len()],
        judges: Vec::with_capacity(folds.len()),
        curves: Vec::with_capacity(folds.len()),
        seconds: 0.0,
    };
    events.emit(Event::Started {
        total: (folds.len() * cfg.net.epochs) as u64,
        unit: "epochs of the folds",
    });
    for (f, fold) in folds.iter().enumerate() {
        let (mut fitted, train, held) = fit_fold(cfg, f, fold, start, data, compute, events)?;
        scores.seconds += fitted.seconds;
        let scored = match fitted.val_probs.take() {
            Some(probs) => probs,
            None => fitted.score(&held, compute).probs,
        };
        for (&i, p) in fold.iter().zip(scored) {
            scores.probs[i] = p;
            scores.judge_of[i] = f;
        }
        scores.judges.push(judge(&train));
        scores.curves.push(fitted.history);
    }
    events.emit(Event::Finished);
    Ok(scores)
}

/// Fold `f` of a cross-validation: a network learns from every image of `data` but `fold`'s
/// (sorted) and keeps its last epoch (nothing is left to choose one by); returns it with the
/// images it learnt from and those it scores. A failed fit ends the folds' progress.
fn fit_fold(
    cfg: &TrainJobConfig,
    f: usize,
    fold: &[usize],
    start: &Start,
    data: &Dataset,
    compute: &Compute,
    events: &dyn Events,
) -> Result<(Fitted, Dataset, Dataset)> {
    let rest: Vec<usize> = (0..data.len())
        .filter(|i| fold.binary_search(i).is_err())
        .collect();
    let (train, held) = (data.subset(&rest), data.subset(fold));
    let fitted = cfg
        .net
        .train_config(&train, cfg.seed.wrapping_add(1 + f as u64))
        .and_then(|mut config| {
            config.keep_last = true;
            fit_with(
                cfg.net.arch,
                config,
                start.clone(),
                &train,
                &held,
                compute,
                &FoldEvents(events),
            )
        });
    if fitted.is_err() {
        events.emit(Event::Finished);
    }
    Ok((fitted?, train, held))
}

/// After the folds (their `curves`, `seconds` of training in all): the network on all of
/// `data`, keeping its last epoch as the folds kept theirs, its history the folds' validation
/// curves averaged epoch by epoch (it has nothing left to validate on).
fn fit_on_all(
    cfg: &TrainJobConfig,
    start: Start,
    data: &Dataset,
    seconds: f64,
    curves: &[Vec<EpochStats>],
    compute: &Compute,
    events: &dyn Events,
) -> Result<Fitted> {
    let mut fitted = fit(
        &cfg.net,
        start,
        data,
        &data.subset(&[]),
        cfg.seed,
        compute,
        events,
    )?;
    let what = if data.is_multi_label() {
        "images"
    } else {
        "labels"
    };
    events.note(format!(
        "trained on all {} {what} in {:.1} s (the {} folds took {seconds:.1} s); its last epoch \
         kept, as the folds kept theirs",
        data.len(),
        fitted.seconds,
        curves.len()
    ));
    for (e, stats) in fitted.history.iter_mut().enumerate() {
        let mean = |of: fn(&EpochStats) -> Option<f64>| {
            let v: Vec<f64> = curves
                .iter()
                .filter_map(|c| c.get(e).and_then(of))
                .collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        };
        stats.val_loss = mean(|s| s.val_loss);
        stats.val_accuracy = mean(|s| s.val_accuracy);
        stats.val_macro_f1 = mean(|s| s.val_macro_f1);
    }
    Ok(fitted)
}

/// A fold's events: its epochs advance the folds' progress, its notes (the same for every
/// fold) are left out, and cancelling stops it as it stops any fit.
struct FoldEvents<'a>(&'a dyn Events);

impl Events for FoldEvents<'_> {
    fn emit(&self, event: Event) {
        match event {
            Event::Epoch(_) => self.0.emit(Event::Advanced(1)),
            Event::Warning(text) => self.0.warn(text),
            _ => {}
        }
    }

    fn cancelled(&self) -> bool {
        self.0.cancelled()
    }
}

/// A trained network, its pick context with the image weighted, and its held-out scores.
struct Candidate {
    fitted: Fitted,
    context: Option<PickContext>,
    scored: Scored,
}

fn candidate(
    cfg: &TrainJobConfig,
    start: Start,
    train_set: &Dataset,
    mut context: Option<PickContext>,
    held: &Held,
    compute: &Compute,
    events: &dyn Events,
) -> Result<Candidate> {
    let fitted = fit(
        &cfg.net,
        start,
        train_set,
        &held.epoch,
        cfg.seed,
        compute,
        events,
    )?;
    events.note(format!(
        "trained in {:.1} s; best epoch {} kept",
        fitted.seconds, fitted.best_epoch
    ));
    // The network scores every held-out pick once; the weights are fitted on the
    // epoch-validation picks among them.
    let image_only = fitted.score_reusing_validation(&held.all, &held.epoch_picks, compute);
    if let Some(ctx) = &mut context {
        let probs: Vec<Vec<f32>> = held
            .epoch_picks
            .iter()
            .map(|&i| image_only.probs[i].clone())
            .collect();
        let n = ctx.fit_weights(&probs, &held.epoch.facts(), &held.epoch.labels);
        if n > 0 {
            events.note(format!(
                "pick context: the network's log-probabilities weighted {:.2}, the context's {:.2} (best fit to {n} validation picks)",
                ctx.image_weight, ctx.context_weight
            ));
        }
    }
    let scored = with_context(image_only, &held.all, context.as_ref(), events)?;
    Ok(Candidate {
        fitted,
        context,
        scored,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_are_asked_for_and_no_more_than_the_rarest_class_has() {
        let mut data = Dataset::empty(1, vec!["junk".into(), "particle".into()]);
        data.labels = vec![0, 0, 0, 1, 1, 1, 1, 1, 1];
        let cfg = |folds: usize, shots: Option<usize>| TrainJobConfig {
            folds,
            shots,
            ..TrainJobConfig::default()
        };
        assert_eq!(
            fold_count(&cfg(0, None), &data).unwrap(),
            None,
            "the default"
        );
        assert_eq!(fold_count(&cfg(2, None), &data).unwrap(), Some(2));
        assert_eq!(fold_count(&cfg(5, None), &data).unwrap(), Some(3));
        assert_eq!(fold_count(&cfg(5, Some(2)), &data).unwrap(), None);
        data.labels = vec![0, 1, 1];
        let err = fold_count(&cfg(5, None), &data).unwrap_err().to_string();
        assert!(err.contains("the rarest has 1"), "{err}");
    }
}
