//! The deep picker, as the cryoSPARC guide to supervised picker training describes it: train on
//! a few micrographs' picks ([`train`]), pick every micrograph ([`pick`]), and score any
//! picker's picks against the truth ([`evaluate`]).

pub mod evaluate;
pub mod pick;

use std::path::{Path, PathBuf};
use std::time::Instant;

use cryoprune_formats::{read_micrograph, PickFormat, PickSet};
use cryoprune_image::fourier::Cutoff;
use cryoprune_image::normalize::MicrographNorm;
use cryoprune_image::Image;
use cryoprune_model::picker::{PickerArch, PickerNet};
use cryoprune_model::{Arch, Pretrained};
use cryoprune_train::diagnose::{loss_tail, LossTail};
use cryoprune_train::matching::Point;
use cryoprune_train::picker::{
    Example, MicrographFit, PickerTraining, PixelLoss, Preparation, Prepared,
};
use cryoprune_train::pickerdir::{PickerDir, PickerRecord, PickerSpec};
use cryoprune_train::EpochStats;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::compute::ComputeConfig;
use crate::events::{Event, Events};
use crate::inputs::{check_outputs, micrograph_paths, pair_with_micrographs};
use crate::recipe::StartingWeights;
use crate::{check_interrupted, invalid, Context, Result};

/// `picker train`'s settings; the defaults are the guide's starting points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PickerTrainConfig {
    pub compute: ComputeConfig,
    pub micrographs: Vec<String>,
    /// Manual or cleaned picks of those micrographs.
    pub picks: Vec<PathBuf>,
    pub format: Option<PickFormat>,
    /// Particle diameter in Å (needs the pixel size) ...
    pub particle_diameter: Option<f64>,
    /// ... or the box in pixels, about 1.5 diameters.
    pub box_size: Option<usize>,
    /// Å per pixel, instead of the micrographs' headers.
    pub angpix: Option<f64>,
    /// The network: `fcn` (the picker's own, from scratch) or `small` (the classifier's small
    /// network, from the shipped cryo-EM backbone unless `pretrained` says otherwise).
    pub network: PickerArch,
    /// The small network's starting weights: `cryo` (the default), `none`, or a backbone file
    /// from `cryoprune pretrain`.
    pub pretrained: Option<String>,
    /// The network's first stages kept as pretrained; by default [`FROZEN_STAGES`] when it
    /// starts from a backbone, none from scratch.
    pub freeze: Option<usize>,
    /// Binning factor; by default the particle spans [`PickerArch::particle_pixels`] binned
    /// pixels (12 for `fcn`, 32 for `small`).
    pub bin: Option<f64>,
    pub lowpass: Option<Cutoff>,
    /// Robust micrograph normalisation (percentile clip first); otherwise mean and deviation.
    pub normalize: bool,
    pub lr: f64,
    pub final_lr: f64,
    pub batch: usize,
    pub epochs: usize,
    pub class_weights: bool,
    /// Train positive-unlabelled: pixels without a pick are unlabelled, not background (for
    /// picks that miss particles); needs `expected_particles`.
    pub positive_unlabelled: bool,
    /// Particles per micrograph there really are (on average), for the positive-unlabelled
    /// prior.
    pub expected_particles: Option<f64>,
    /// Micrographs held out to choose the epoch, and to choose the threshold with the training
    /// ones; by default a fifth (at least 1).
    pub validation: Option<usize>,
    /// Target blob radius in pixels; a quarter of the diameter by default.
    pub target_radius: Option<f64>,
    /// Picks closer than this many pixels are one; half the diameter by default.
    pub min_distance: Option<f64>,
    /// Patch side in binned pixels.
    pub patch: usize,
    /// Views of each micrograph (of its 8 rotations and flips) whose score maps `pick`
    /// averages; the threshold is chosen on the same. By default
    /// [`PickerArch::default_views`].
    pub views: Option<u8>,
    pub seed: u64,
    pub out: PathBuf,
}

impl Default for PickerTrainConfig {
    fn default() -> Self {
        Self {
            compute: ComputeConfig::default(),
            micrographs: Vec::new(),
            picks: Vec::new(),
            format: None,
            particle_diameter: None,
            box_size: None,
            angpix: None,
            network: PickerArch::default(),
            pretrained: None,
            freeze: None,
            bin: None,
            lowpass: None,
            normalize: true,
            // Chosen on the validation micrographs of EMPIAR-10017 and of simulated data (F1
            // 0.790 and 0.954 against 0.780 and 0.943 for the guide's 0.01 → 0.001), with
            // batch norm in every layer (BENCHMARKS.md).
            lr: 0.05,
            final_lr: 0.005,
            batch: 8,
            epochs: 30,
            class_weights: true,
            positive_unlabelled: false,
            expected_particles: None,
            validation: None,
            target_radius: None,
            min_distance: None,
            patch: 128,
            views: None,
            seed: 0,
            out: PathBuf::new(),
        }
    }
}

/// The pretrained stages `picker train` keeps by default: the first of the small network's
/// four, at full resolution, whose edge and blob filters any micrograph shares. Measured on
/// six sets (BENCHMARKS.md): level on the easy ones, better on the hardest, a fifth less
/// training time; keeping two ranked the hard sets better still but cost the easy ones 0.01.
pub const FROZEN_STAGES: usize = 1;

/// The normalisation `--normalize on|off` stands for.
pub fn normalization(robust: bool) -> MicrographNorm {
    if robust {
        MicrographNorm::Robust {
            low: 1.0,
            high: 99.0,
        }
    } else {
        MicrographNorm::MeanStd
    }
}

/// A micrograph read, with non-finite pixels replaced, and its pixel size.
pub(crate) fn load(path: &Path) -> Result<(Image, Option<f64>)> {
    let mic = read_micrograph(path).context_with(|| format!("reading {}", path.display()))?;
    let px = mic.pixel_size.map(f64::from);
    let mut image: Image = mic.into();
    cryoprune_image::pipeline::replace_nonfinite(&mut image.data);
    Ok((image, px))
}

pub fn train(cfg: &PickerTrainConfig, events: &dyn Events) -> Result<PickerSpec> {
    let started = Instant::now();
    let mics = micrograph_paths(&cfg.micrographs)?;
    let mut inputs = mics.clone();
    inputs.extend(cfg.picks.iter().cloned());
    check_outputs(&[], Some(("--out", &cfg.out)), &inputs)?;
    crate::recipe::check_rates(&[("--lr", cfg.lr), ("--final-lr", cfg.final_lr)], None)?;
    crate::check_counts(&[("--epochs", cfg.epochs), ("--batch", cfg.batch)])?;
    if let Some(v) = cfg.views.filter(|v| !(1..=8).contains(v)) {
        invalid!("--views {v}: a micrograph has 8 rotations and flips; give 1 to 8");
    }
    let set = PickSet::read(&cfg.picks, cfg.format)?;
    let report = pair_with_micrographs(&set, &mics, "they are not used", events);
    if report.pairs.is_empty() {
        return Err(crate::inputs::no_match(&set, &mics));
    }
    if report.pairs.len() < 2 {
        invalid!(
            "{} micrograph(s) have picks; training needs at least 2 (one to validate on)",
            report.pairs.len()
        );
    }
    let compute = cfg.compute.start(events)?;
    compute.install(events, || {
        train_on(cfg, &set, &report.pairs, &mics, started, events)
    })
}

/// The network `picker train` starts from, what picker.json says about its weights, and
/// whether they were pretrained.
fn initial_network(
    cfg: &PickerTrainConfig,
    events: &dyn Events,
) -> Result<(PickerNet, String, bool)> {
    match cfg.network {
        PickerArch::Fcn => match cfg
            .pretrained
            .as_deref()
            .map(Pretrained::parse)
            .transpose()?
        {
            None | Some(Pretrained::None) => {
                let start = Pretrained::None.describe(None);
                events.note(format!("starting weights: {start}"));
                Ok((PickerNet::seeded(PickerArch::Fcn, cfg.seed), start, false))
            }
            Some(_) => invalid!(
                "--pretrained {}: the fcn network trains from scratch; pretrained backbones fit \
                 --network small",
                cfg.pretrained.as_deref().unwrap_or_default()
            ),
        },
        PickerArch::Small => {
            let spec = cfg.pretrained.as_deref().unwrap_or("cryo");
            let weights = StartingWeights::resolve(spec, Arch::Small, events)?;
            let net = PickerNet::small_from(weights.path.as_deref(), cfg.seed)?;
            let start = match weights.sha256 {
                Some(sha) => format!("{} (SHA-256 {sha})", weights.described),
                None => weights.described,
            };
            Ok((net, start, weights.path.is_some()))
        }
    }
}

fn train_on(
    cfg: &PickerTrainConfig,
    set: &PickSet,
    pairs: &[(usize, usize)],
    mics: &[PathBuf],
    started: Instant,
    events: &dyn Events,
) -> Result<PickerSpec> {
    events.note(format!("network {}", cfg.network));
    let (net, start, pretrained) = initial_network(cfg, events)?;
    let frozen_stages = match cfg.freeze {
        None if pretrained => FROZEN_STAGES.min(net.stages()),
        None => 0,
        Some(n) if n > 0 && !pretrained => invalid!(
            "--freeze {n}: the network starts from scratch, so it has no learnt stages to keep; \
             give --freeze 0, or start from a backbone (--network small --pretrained cryo)"
        ),
        Some(n) if n > net.stages() => invalid!(
            "--freeze {n}: the {} network has {} stages",
            cfg.network,
            net.stages()
        ),
        Some(n) => n,
    };
    if frozen_stages > 0 {
        events.note(format!(
            "the first {frozen_stages} of the network's {} stages keep their pretrained weights",
            net.stages()
        ));
    }
    // Sizes given in Å need the pixel size before the micrographs are prepared: only then is
    // the first one read for its header here (it is decoded again below, binned).
    let in_angstrom =
        cfg.particle_diameter.is_some() || matches!(cfg.lowpass, Some(Cutoff::Angstrom(_)));
    let early = match cfg.angpix {
        Some(px) => Some(px),
        None if in_angstrom => load(&mics[pairs[0].1])?.1,
        None => None,
    };
    let diameter = match (cfg.particle_diameter, cfg.box_size) {
        (Some(a), _) => match early {
            Some(px) if px > 0.0 => a / px,
            _ => invalid!(
                "--particle-diameter is in Å and the micrographs state no pixel size: give --angpix, or --box in pixels"
            ),
        },
        (None, Some(b)) => b as f64 / 1.5,
        (None, None) => invalid!("give --particle-diameter (Å) or --box (pixels)"),
    };
    let bin = cfg
        .bin
        .unwrap_or((diameter / cfg.network.particle_pixels()).max(1.0));
    let lowpass_fraction = match cfg.lowpass {
        Some(c) => Some(c.nyquist_fraction(early.map(|px| px * bin))?),
        None => None,
    };
    let prep = Preparation {
        bin,
        lowpass: lowpass_fraction,
        normalize: normalization(cfg.normalize),
    };
    let mut order: Vec<(usize, usize)> = pairs.to_vec();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(cfg.seed));
    let n_val = cfg.validation.unwrap_or((order.len() / 5).max(1));
    if n_val >= order.len() {
        invalid!(
            "--validation {n_val} leaves no training micrograph of the {} with picks",
            order.len()
        );
    }
    events.note(format!(
        "particle diameter {diameter:.1} px; micrographs binned by {bin:.2}; {} training and {n_val} validation micrographs",
        order.len() - n_val
    ));
    events.emit(Event::Started {
        total: order.len() as u64,
        unit: "micrographs",
    });
    let read: Vec<(Example, Option<f64>)> = order
        .par_iter()
        .map(|&(g, m)| {
            let (image, header) = load(&mics[m])?;
            // A box in another unit (Å, or pixels of unbinned micrographs) would otherwise train
            // on targets that cover the whole micrograph and save a picker that finds nothing.
            if diameter >= image.nx.min(image.ny) as f64 {
                invalid!(
                    "the particle is {diameter:.0} px across (from --box or --particle-diameter) \
                     and {} is {}x{} px: give the size in pixels of these micrographs",
                    mics[m].display(),
                    image.nx,
                    image.ny
                );
            }
            let prepared = Prepared::new(&image, &prep, net.stride())?;
            events.emit(Event::Advanced(1));
            let example = Example {
                name: mics[m].display().to_string(),
                prepared,
                picks: set.micrographs[g]
                    .picks
                    .iter()
                    .map(|p| (p.x, p.y))
                    .collect(),
            };
            Ok((example, header))
        })
        .collect::<Result<_>>()?;
    events.emit(Event::Finished);
    let (examples, headers): (Vec<Example>, Vec<Option<f64>>) = read.into_iter().unzip();
    // Kept so that `pick` can bring micrographs of another pixel size to this scale: the first
    // micrograph's header, as read while they were prepared.
    let first = order.iter().position(|&o| o == pairs[0]);
    let angpix = early.or_else(|| first.and_then(|i| headers[i]));
    // One pixel size is recorded for `pick` to scale to: headers that disagree make it a guess.
    if let (None, Some(px)) = (cfg.angpix, angpix) {
        let (lo, hi) = headers
            .iter()
            .flatten()
            .fold((px, px), |(lo, hi), &h| (lo.min(h), hi.max(h)));
        if hi > lo * 1.01 {
            events.warn(format!(
                "the training micrographs' headers give pixel sizes from {lo:.3} to {hi:.3} Å; the \
                 picker records {px:.3} Å (the first's), which pick scales other micrographs to: \
                 give --angpix if that is not the pixel size the picks were made at"
            ));
        }
    }
    let (val, train) = examples.split_at(n_val);
    let picks_per_micrograph =
        train.iter().map(|e| e.picks.len()).sum::<usize>() as f64 / train.len() as f64;
    let loss = match (cfg.positive_unlabelled, cfg.expected_particles) {
        (false, _) => PixelLoss::CrossEntropy,
        (true, Some(n)) if n > 0.0 => {
            let completeness = (picks_per_micrograph / n).min(1.0);
            events.note(format!(
                "positive-unlabelled: the picks hold {:.0}% of the {n} particles expected per micrograph",
                100.0 * completeness
            ));
            PixelLoss::PositiveUnlabelled { completeness }
        }
        (true, _) => invalid!(
            "--loss pu needs --expected-particles: about how many particles a micrograph holds"
        ),
    };
    let settings = PickerTraining {
        epochs: cfg.epochs,
        lr: cfg.lr,
        final_lr: cfg.final_lr,
        batch: cfg.batch,
        patch: cfg.patch,
        class_weights: cfg.class_weights,
        loss,
        target_radius: cfg.target_radius.unwrap_or(diameter / 4.0),
        min_distance: cfg.min_distance.unwrap_or(diameter / 2.0),
        match_radius: diameter / 2.0,
        momentum: 0.9,
        weight_decay: 1e-4,
        seed: cfg.seed,
        views: cfg.views.unwrap_or(cfg.network.default_views()),
        frozen_stages,
    };
    let mut interrupted = false;
    let trained = cryoprune_train::picker::train(net, train, val, &settings, |stats| {
        events.emit(Event::Epoch(stats.clone()));
        interrupted = check_interrupted().is_err();
        if interrupted || events.cancelled() {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    });
    check_interrupted()?;
    events.note(format!(
        "target blobs cover {:.2}% of the training micrographs' score-map pixels{}",
        100.0 * trained.positive_fraction,
        if cfg.class_weights {
            "; weighted to balance the rest"
        } else {
            ""
        }
    ));
    for finding in diagnose(
        &trained.history,
        trained.best_epoch,
        trained.validation.as_ref(),
        &trained.micrographs,
    ) {
        events.warn(finding);
    }
    let record = PickerRecord {
        train_micrographs: train.iter().map(|e| e.name.clone()).collect(),
        validation_micrographs: val.iter().map(|e| e.name.clone()).collect(),
        train_picks: train.iter().map(|e| e.picks.len()).sum(),
        epochs: trained.history.len(),
        best_epoch: trained.best_epoch,
        lr: cfg.lr,
        final_lr: cfg.final_lr,
        batch: cfg.batch,
        patch: cfg.patch,
        class_weights: cfg.class_weights,
        loss: match loss {
            PixelLoss::CrossEntropy => "bce".into(),
            PixelLoss::PositiveUnlabelled { completeness } => {
                format!("pu (picks hold {completeness:.3} of the particles)")
            }
        },
        frozen_stages,
        seed: cfg.seed,
        match_radius: settings.match_radius,
        validation: trained.validation,
        validation_average_precision: trained.validation_ap,
        train_at_threshold: Some(trained.training),
        seconds: started.elapsed().as_secs_f64(),
    };
    let mut spec = PickerSpec {
        format_version: 0,
        kind: String::new(),
        network: cfg.network.name().into(),
        pretrained: start,
        particle_diameter: diameter,
        angpix,
        bin,
        lowpass: cfg.lowpass.map(|c| c.to_string()),
        lowpass_fraction,
        normalize: prep.normalize,
        target_radius: settings.target_radius,
        min_distance: settings.min_distance,
        threshold: trained.threshold,
        views: settings.views,
        training: record,
        weights_file: String::new(),
        weights_sha256: String::new(),
    };
    PickerDir::new(&cfg.out).save(&trained.net, &mut spec, &trained.history)?;
    let t = &trained.training;
    let validation = trained.validation.map_or(String::new(), |v| {
        format!(
            "; validation micrographs: precision {:.3}, recall {:.3}, F1 {:.3}, average precision {}",
            v.precision,
            v.recall,
            v.f1,
            trained
                .validation_ap
                .map_or("-".into(), |a| format!("{a:.3}"))
        )
    });
    events.output(format!(
        "picker saved to {} (best epoch {} of {}); threshold {:.3}, the best F1 over the training and validation micrographs; at it, training micrographs: precision {:.3}, recall {:.3}, F1 {:.3}{validation}",
        cfg.out.display(),
        trained.best_epoch,
        trained.history.len(),
        spec.threshold,
        t.precision,
        t.recall,
        t.f1,
    ));
    Ok(spec)
}

/// The guide's reading of the curves, in its words: what went wrong and which knob to turn.
/// `best_epoch` is 1-based, `validation` the validation micrographs' picks at the threshold
/// and `micrographs` each labelled micrograph's.
fn diagnose(
    history: &[EpochStats],
    best_epoch: usize,
    validation: Option<&Point>,
    micrographs: &[MicrographFit],
) -> Vec<String> {
    let mut out = Vec::new();
    let Some(last) = history.last() else {
        return out;
    };
    let accuracy = last.val_accuracy.unwrap_or(last.train_accuracy);
    if history
        .iter()
        .any(|h| !h.train_loss.is_finite() || h.train_loss >= 1000.0)
    {
        out.push(
            "Underfitting: the loss reached the 1000s or NaN. Raise the learning rates (--lr, \
             --final-lr) a little at a time, then tune --epochs."
                .into(),
        );
        return out;
    }
    if accuracy <= 0.6 {
        out.push(format!(
            "Underfitting: balanced pixel accuracy {:.0}% (≤ 60%). Raise the learning rates \
             (--lr, --final-lr), then tune --epochs to where the loss stops falling.",
            100.0 * accuracy
        ));
    }
    if let Some(LossTail {
        best_val: best,
        val_end: end,
        train_drop,
    }) = loss_tail(history)
    {
        if end > 1.2 * best && train_drop > 0.0 {
            out.push(format!(
                "Overfitting: the validation loss rose from {best:.3} to {end:.3} while the \
                 training loss fell. Raise the final learning rate (--final-lr) or train fewer \
                 epochs; the best epoch ({best_epoch}) was kept."
            ));
        }
    }
    for fit in cryoprune_train::picker::outlying_micrographs(micrographs) {
        out.push(format!(
            "{}: {} picks, but the picker finds {} particles there at its threshold, many more \
             per pick than on the other micrographs. Look at it: either its picks are \
             incomplete (complete them, or leave the micrograph out: particles without a pick \
             are taught as background), or something on it looks like particles to the picker.",
            fit.name, fit.picks, fit.point.picks
        ));
    }
    if validation.is_some_and(|p| p.true_positives == 0) {
        out.push(
            "The model outputs no particles on the validation micrographs. Keep class weights \
             on (--class-weights on) and lower the initial learning rate (--lr)."
                .into(),
        );
    }
    if history.len() >= 4 {
        let n = history.len();
        let recent = history[n - 1].train_loss;
        let before = history[n - 4].train_loss;
        if recent < 0.9 * before && best_epoch == n {
            out.push(
                "The loss was still falling and the last epoch was the best: more --epochs may \
                 help."
                    .into(),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(epoch: usize, train_loss: f64, val_loss: f64, val_accuracy: f64) -> EpochStats {
        EpochStats {
            epoch,
            lr: 0.01,
            train_loss,
            train_accuracy: 0.8,
            val_loss: Some(val_loss),
            val_accuracy: Some(val_accuracy),
            val_macro_f1: Some(0.8),
            seconds: 1.0,
        }
    }

    fn point(picks: usize, true_positives: usize, truth: usize) -> Point {
        let precision = true_positives as f64 / picks.max(1) as f64;
        let recall = true_positives as f64 / truth as f64;
        Point {
            threshold: Some(1.0),
            picks,
            true_positives,
            precision,
            recall,
            f1: 2.0 * true_positives as f64 / (picks + truth) as f64,
        }
    }

    fn fit(name: &str, picks: usize, found: usize) -> MicrographFit {
        MicrographFit {
            name: name.into(),
            picks,
            point: point(found, found.min(picks), picks),
        }
    }

    /// Ten epochs whose losses level off together (training 0.5 → 0.23, validation 0.6 →
    /// 0.33), at 85% balanced accuracy.
    fn healthy() -> Vec<EpochStats> {
        (1..=10)
            .map(|e| epoch(e, 0.2 + 0.3 / e as f64, 0.3 + 0.3 / e as f64, 0.85))
            .collect()
    }

    fn found(findings: &[String], start: &str) -> bool {
        findings.iter().any(|f| f.starts_with(start))
    }

    #[test]
    fn healthy_curves_give_no_findings() {
        let good = point(100, 90, 100);
        assert!(diagnose(&healthy(), 10, Some(&good), &[]).is_empty());
        assert!(diagnose(&[], 0, None, &[]).is_empty());
    }

    #[test]
    fn a_loss_in_the_thousands_or_nan_is_underfitting_and_nothing_else() {
        for bad in [f64::NAN, 1500.0] {
            let mut h = healthy();
            h[2].train_loss = bad;
            let findings = diagnose(&h, 10, Some(&point(0, 0, 100)), &[]);
            assert_eq!(findings.len(), 1, "{findings:?}");
            assert!(findings[0].starts_with("Underfitting: the loss reached the 1000s or NaN"));
        }
    }

    #[test]
    fn accuracy_at_chance_is_underfitting() {
        let mut h = healthy();
        h[9].val_accuracy = Some(0.55);
        let findings = diagnose(&h, 10, Some(&point(100, 90, 100)), &[]);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(findings[0].starts_with("Underfitting: balanced pixel accuracy 55% (≤ 60%)"));
    }

    #[test]
    fn validation_loss_rising_while_training_falls_is_overfitting() {
        // Validation is best at epoch 4 (0.30), then climbs to 0.60.
        let h: Vec<EpochStats> = (1..=10)
            .map(|e| {
                let val = if e <= 4 {
                    0.6 - 0.075 * e as f64
                } else {
                    0.3 + 0.05 * (e - 4) as f64
                };
                epoch(e, 0.5 / e as f64, val, 0.8)
            })
            .collect();
        let findings = diagnose(&h, 4, Some(&point(100, 80, 100)), &[]);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(
            findings[0].starts_with("Overfitting: the validation loss rose from 0.300 to 0.600")
        );
        assert!(findings[0].contains("the best epoch (4) was kept"));
    }

    #[test]
    fn no_particles_on_validation_says_so() {
        let findings = diagnose(&healthy(), 10, Some(&point(0, 0, 120)), &[]);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(found(&findings, "The model outputs no particles"));
        // Without validation micrographs there is nothing to say it from.
        assert!(diagnose(&healthy(), 10, None, &[]).is_empty());
    }

    #[test]
    fn a_loss_still_falling_at_the_best_last_epoch_asks_for_more_epochs() {
        let h: Vec<EpochStats> = (1..=10)
            .map(|e| epoch(e, 1.0 / e as f64, 1.2 / e as f64, 0.8))
            .collect();
        let good = point(100, 90, 100);
        let findings = diagnose(&h, 10, Some(&good), &[]);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(found(&findings, "The loss was still falling"));
        // Not when an earlier epoch was kept.
        assert!(diagnose(&h, 8, Some(&good), &[]).is_empty());
    }

    #[test]
    fn a_micrograph_with_far_more_particles_than_picks_is_named() {
        let mut fits: Vec<MicrographFit> = (0..5)
            .map(|i| fit(&format!("even_{i}"), 100, 105))
            .collect();
        fits.push(fit("sparse", 50, 120));
        let findings = diagnose(&healthy(), 10, Some(&point(100, 90, 100)), &fits);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(findings[0].starts_with(
            "sparse: 50 picks, but the picker finds 120 particles there at its threshold"
        ));
    }
}
