//! The training recipe, one for `train`, `fewshot` and the labelling page: the network and
//! optimiser settings (defaults stated here once), building the network from its starting
//! weights, training, and the pick context fitted beside it.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use cryoprune_image::augment::Augment;
use cryoprune_image::extract::{EdgePolicy, ParticleNorm};
use cryoprune_image::fourier::Cutoff;
use cryoprune_image::normalize::MicrographNorm;
use cryoprune_model::{load_backbone, Arch, ClassifierConfig, HeadConfig, PickContext, PickFacts};
use cryoprune_model::{Backbone, Classifier, Pretrained};
use cryoprune_train::modeldir::{sha256_hex, ModelSpec};
use cryoprune_train::prep::Preprocessing;
use cryoprune_train::schedule::Schedule;
use cryoprune_train::trainer::{score, Scored};
use cryoprune_train::{dataset, Dataset, EpochStats, TrainConfig};
use serde::{Deserialize, Serialize};

use crate::compute::Compute;
use crate::events::{Event, Events};
use crate::labels::{LabelSource, LabelsConfig};
use crate::{invalid, Error, Result};

/// How many augmented passes over the training picks make an epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Repeats {
    Fixed(usize),
    /// Enough passes for [`Repeats::AUTO_BATCHES`] batches.
    Auto,
}

impl Repeats {
    pub const AUTO_BATCHES: usize = 5;

    pub fn passes(self, picks: usize, batch: usize) -> usize {
        match self {
            Repeats::Fixed(n) => n.max(1),
            Repeats::Auto => (Self::AUTO_BATCHES * batch).div_ceil(picks.max(1)).max(1),
        }
    }
}

impl FromStr for Repeats {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "auto" {
            return Ok(Repeats::Auto);
        }
        match s.parse::<usize>() {
            Ok(n) if n >= 1 => Ok(Repeats::Fixed(n)),
            _ => Err(format!("`{s}`: expected a count of at least 1, or auto")),
        }
    }
}

impl fmt::Display for Repeats {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Repeats::Fixed(n) => write!(f, "{n}"),
            Repeats::Auto => f.write_str("auto"),
        }
    }
}
cryoprune_image::serde_as_text!(Repeats);

/// Whether a whole micrograph's power spectrum goes beside it as a second input plane
/// (crystalline ice, drift and thick ice show there and not in the binned micrograph).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpectrumInput {
    /// On for tables of micrographs (`micrograph,labels`, a micrographs STAR), off otherwise.
    #[default]
    Auto,
    On,
    Off,
}

impl FromStr for SpectrumInput {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "on" => Ok(Self::On),
            "off" => Ok(Self::Off),
            _ => Err(format!("`{s}`: expected auto, on or off")),
        }
    }
}

impl fmt::Display for SpectrumInput {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::On => "on",
            Self::Off => "off",
        })
    }
}
cryoprune_image::serde_as_text!(SpectrumInput);

/// How the network is fine-tuned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Recipe {
    /// Every layer from the first epoch (or the head alone for `freeze_epochs`, then every
    /// layer at a tenth of the schedule's rate).
    #[default]
    Standard,
    /// Seed 001's two-stage transfer: the head alone for `freeze_epochs` (5 unless given) at
    /// one-cycle up to `lr`, then every layer at one-cycle up to `unfrozen_lr`.
    TwoStage,
}

impl FromStr for Recipe {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "standard" => Ok(Self::Standard),
            "two-stage" => Ok(Self::TwoStage),
            _ => Err(format!("recipe `{s}`: expected standard or two-stage")),
        }
    }
}

impl fmt::Display for Recipe {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Self::Standard => "standard",
            Self::TwoStage => "two-stage",
        })
    }
}
cryoprune_image::serde_as_text!(Recipe);

/// The learning-rate schedule's shape; its rates come from [`NetConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleKind {
    /// × gamma every `step_every` epochs (the paper's).
    Step,
    OneCycle,
    Exp,
}

impl FromStr for ScheduleKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "step" => Ok(Self::Step),
            "onecycle" => Ok(Self::OneCycle),
            "exp" => Ok(Self::Exp),
            _ => Err(format!("schedule `{s}`: expected step, onecycle or exp")),
        }
    }
}

impl fmt::Display for ScheduleKind {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Self::Step => "step",
            Self::OneCycle => "onecycle",
            Self::Exp => "exp",
        })
    }
}
cryoprune_image::serde_as_text!(ScheduleKind);

/// Refuses a learning rate of 0 or less (SGD never moves, or climbs) and a negative weight
/// decay (it grows the weights): runs that would be spent diverging, for minutes or hours.
pub(crate) fn check_rates(rates: &[(&str, f64)], weight_decay: Option<f64>) -> Result<()> {
    for &(flag, rate) in rates {
        if !(rate > 0.0 && rate.is_finite()) {
            invalid!("{flag} is a learning rate above 0, not {rate}");
        }
    }
    if let Some(decay) = weight_decay.filter(|d| !(*d >= 0.0 && d.is_finite())) {
        invalid!("--weight-decay is 0 or more, not {decay}");
    }
    Ok(())
}

/// Loss weight per class: given (in the sorted class order) or scikit-learn's "balanced".
#[derive(Debug, Clone, PartialEq)]
pub enum ClassWeights {
    Balanced,
    Given(Vec<f32>),
}

impl FromStr for ClassWeights {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "balanced" {
            return Ok(Self::Balanced);
        }
        let bad = || format!("class weights `{s}`: expected numbers of 0 or more, or `balanced`");
        let weights = s
            .split(',')
            .map(|v| v.trim().parse::<f32>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| bad())?;
        // A negative weight would train the network to get that class wrong.
        if weights.iter().any(|w| !(w.is_finite() && *w >= 0.0))
            || weights.iter().all(|w| *w == 0.0)
        {
            return Err(bad());
        }
        Ok(Self::Given(weights))
    }
}

impl fmt::Display for ClassWeights {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Self::Balanced => f.write_str("balanced"),
            Self::Given(w) => {
                let w: Vec<String> = w.iter().map(f32::to_string).collect();
                f.write_str(&w.join(","))
            }
        }
    }
}
cryoprune_image::serde_as_text!(ClassWeights);

impl ClassWeights {
    /// The weight of each class, given the training picks per class.
    pub fn resolve(&self, classes: &[String], counts: &[usize]) -> Result<Vec<f32>> {
        match self {
            // n / (k · n_c), scikit-learn's "balanced".
            Self::Balanced => {
                let n: usize = counts.iter().sum();
                Ok(counts
                    .iter()
                    .map(|&c| n as f32 / (classes.len() * c.max(1)) as f32)
                    .collect())
            }
            Self::Given(w) if w.len() != classes.len() => invalid!(
                "--class-weights has {} values for {} classes ({})",
                w.len(),
                classes.len(),
                classes.join(", ")
            ),
            Self::Given(w) => Ok(w.clone()),
        }
    }
}

/// Training augmentations: any of flip, rot90, rotate, or none.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Augmentations(pub Augment);

impl FromStr for Augmentations {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut a = Augment::NONE;
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "none" => {}
                "flip" => a.flip = true,
                "rot90" => a.rot90 = true,
                "rotate" => a.rotate = true,
                _ => {
                    return Err(format!(
                        "augmentation `{part}`: expected flip, rot90, rotate or none"
                    ))
                }
            }
        }
        Ok(Self(a))
    }
}

impl fmt::Display for Augmentations {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let a = &self.0;
        let names: Vec<&str> = [(a.flip, "flip"), (a.rot90, "rot90"), (a.rotate, "rotate")]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect();
        f.write_str(if names.is_empty() { "none" } else { "" })?;
        f.write_str(&names.join(","))
    }
}
cryoprune_image::serde_as_text!(Augmentations);

/// The network and training knobs. The defaults of --arch, --input-size, --epochs and --repeats
/// are the best found within about a minute of training on 2 CPU cores on the EMPIAR-10017
/// benchmark (BENCHMARKS.md); the optimiser, schedule, batch and augmentation are the paper's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct NetConfig {
    /// Network: small, small-wide, efficientnet-lite0, resnet18, resnet34, resnet50,
    /// topaz-resnet16 (≥ 91 px).
    #[arg(long, default_value_t = NetConfig::default().arch)]
    pub arch: Arch,
    /// Starting weights: cryo (the cryo-EM backbone built into cryoprune, small network only;
    /// other networks start from ImageNet), imagenet, a .pth/.pt/.safetensors checkpoint, a
    /// model folder from `train` (its backbone: a model of an earlier dataset of the same
    /// network, the head learnt afresh), a Hugging Face hub name (resnet18.tv_in1k or
    /// timm/...), topaz:resnet16_u64.sav (for topaz-resnet16) or none. Downloads happen once.
    #[arg(long, default_value_t = NetConfig::default().pretrained)]
    pub pretrained: String,
    /// Branches of the multi-loss head (1-3).
    #[arg(long, default_value_t = NetConfig::default().branches)]
    pub branches: usize,
    /// Loss weight per branch, comma-separated (default 1 for the main branch, 0.5 others).
    #[arg(long, value_delimiter = ',')]
    pub branch_weights: Option<Vec<f32>>,
    /// Predict with the mean of the branches instead of the main branch.
    #[arg(long)]
    pub mean_of_branches: bool,
    /// Epochs (the paper's recipe: 30 with --repeats 1).
    #[arg(long, default_value_t = NetConfig::default().epochs)]
    pub epochs: usize,
    #[arg(long, default_value_t = NetConfig::default().batch)]
    pub batch: usize,
    /// Passes over the labelled picks per epoch, each freshly augmented; `auto` repeats them
    /// until an epoch has at least 5 batches, so few shots still get optimiser steps.
    #[arg(long, default_value_t = NetConfig::default().repeats)]
    pub repeats: Repeats,
    /// Learning-rate schedule: step (×gamma every --step-every epochs), onecycle or exp.
    #[arg(long, default_value_t = NetConfig::default().schedule)]
    pub schedule: ScheduleKind,
    /// Initial (peak, for onecycle) learning rate.
    #[arg(long, default_value_t = NetConfig::default().lr)]
    pub lr: f64,
    /// Final learning rate of onecycle and exp.
    #[arg(long, default_value_t = NetConfig::default().final_lr)]
    pub final_lr: f64,
    #[arg(long, default_value_t = NetConfig::default().step_every)]
    pub step_every: usize,
    #[arg(long, default_value_t = NetConfig::default().gamma)]
    pub gamma: f64,
    #[arg(long, default_value_t = NetConfig::default().momentum)]
    pub momentum: f64,
    #[arg(long, default_value_t = NetConfig::default().weight_decay)]
    pub weight_decay: f64,
    /// Label smoothing ε (0 to <1): the loss aims at 1 − ε on each image's class and ε spread
    /// over all classes (of each label's yes/no: ε/2 from certainty), so that a network trained
    /// on a few labels does not grow surer than it is right.
    #[arg(long, default_value_t = NetConfig::default().label_smoothing)]
    pub label_smoothing: f32,
    /// Loss weight per class (in the sorted class order), comma-separated, or `balanced`. For
    /// images with label sets: the weight of each label's positives (`balanced`: its
    /// negatives over its positives), which lifts rare labels; `--pos-weight` says the same.
    #[arg(long, alias = "pos-weight")]
    pub class_weights: Option<ClassWeights>,
    /// Epochs with the backbone frozen (head only); the rest train everything at lr/10. As many
    /// as --epochs: a linear probe on features computed once (not with --augment rotate).
    #[arg(long, default_value_t = NetConfig::default().freeze_epochs)]
    pub freeze_epochs: usize,
    /// Augmentations: any of flip, rot90, rotate (comma-separated), or none. `rotate` turns by
    /// any angle with bilinear interpolation, which smooths the noise that dominates a particle
    /// image: the network then learns noise the unrotated boxes it classifies do not have
    /// (macro-F1 0.06-0.11 lower at 10-20 labels per class, BENCHMARKS.md).
    #[arg(long, default_value_t = NetConfig::default().augment)]
    pub augment: Augmentations,
    /// standard, or two-stage: the head alone for --freeze-epochs (5 unless given) at
    /// one-cycle up to --lr, then every layer at one-cycle up to --unfrozen-lr (ResNet
    /// transfer as the multi-label report trained it).
    #[arg(long, default_value_t = NetConfig::default().recipe)]
    pub recipe: Recipe,
    /// Peak learning rate of the second stage of --recipe two-stage.
    #[arg(long, default_value_t = NetConfig::default().unfrozen_lr)]
    pub unfrozen_lr: f64,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            arch: Arch::Small,
            pretrained: "cryo".into(),
            branches: 2,
            branch_weights: None,
            mean_of_branches: false,
            epochs: 15,
            batch: 24,
            repeats: Repeats::Auto,
            schedule: ScheduleKind::Step,
            lr: 0.01,
            final_lr: 1e-4,
            step_every: 7,
            gamma: 0.1,
            momentum: 0.9,
            weight_decay: 0.0,
            label_smoothing: 0.0,
            class_weights: None,
            freeze_epochs: 0,
            augment: Augmentations(Augment {
                flip: true,
                rot90: true,
                ..Augment::NONE
            }),
            recipe: Recipe::Standard,
            unfrozen_lr: 1e-3,
        }
    }
}

impl NetConfig {
    pub fn head(&self) -> Result<HeadConfig> {
        let mut head = HeadConfig::new(self.branches);
        if let Some(w) = &self.branch_weights {
            head.branch_weights = w.clone();
        }
        head.mean_of_branches = self.mean_of_branches;
        head.validate().map_err(Error::Invalid)?;
        Ok(head)
    }

    /// The trainer's settings for training on `train`: a multi-label head for a multi-label
    /// set, whose `balanced` class weights weigh each label's positives by its negatives.
    pub fn train_config(&self, train: &Dataset, seed: u64) -> Result<TrainConfig> {
        if !(0.0..1.0).contains(&self.label_smoothing) {
            invalid!(
                "--label-smoothing is a share from 0 to below 1, not {}",
                self.label_smoothing
            );
        }
        // SGD's momentum of 1 or more never forgets a step: it diverges, after minutes.
        if !(0.0..1.0).contains(&self.momentum) {
            invalid!("--momentum is from 0 to below 1, not {}", self.momentum);
        }
        check_rates(
            &[("--lr", self.lr), ("--unfrozen-lr", self.unfrozen_lr)],
            Some(self.weight_decay),
        )?;
        // Both were read as 1 before, silently: a batch of one pick trains another network.
        crate::check_counts(&[("--batch", self.batch), ("--step-every", self.step_every)])?;
        let counts = train.counts();
        let (freeze_epochs, unfrozen) = match self.recipe {
            Recipe::Standard => (self.freeze_epochs, None),
            Recipe::TwoStage => {
                let freeze = if self.freeze_epochs == 0 {
                    5
                } else {
                    self.freeze_epochs
                };
                if freeze >= self.epochs {
                    invalid!(
                        "--recipe two-stage trains the head alone for {freeze} epochs, then \
                         every layer: give more --epochs than that (not {})",
                        self.epochs
                    );
                }
                let second = Schedule::OneCycle {
                    initial: self.unfrozen_lr,
                    final_lr: self.unfrozen_lr / 100.0,
                };
                (freeze, Some(second))
            }
        };
        let schedule = match (self.recipe, self.schedule) {
            (Recipe::TwoStage, _) => Schedule::OneCycle {
                initial: self.lr,
                final_lr: self.lr / 100.0,
            },
            (_, ScheduleKind::Step) => Schedule::Step {
                initial: self.lr,
                every: self.step_every,
                gamma: self.gamma,
            },
            (_, ScheduleKind::OneCycle) => Schedule::OneCycle {
                initial: self.lr,
                final_lr: self.final_lr,
            },
            (_, ScheduleKind::Exp) => Schedule::Exp {
                initial: self.lr,
                final_lr: self.final_lr,
            },
        };
        Ok(TrainConfig {
            epochs: self.epochs,
            batch: self.batch,
            repeats: self.repeats.passes(train.len(), self.batch),
            schedule,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            class_weights: match (&self.class_weights, &train.multi) {
                (None, _) => None,
                (Some(ClassWeights::Balanced), Some(truth)) => Some(
                    cryoprune_train::multilabel::balanced_pos_weights(truth, train.classes.len()),
                ),
                (Some(w), _) => Some(w.resolve(&train.classes, &counts)?),
            },
            freeze_epochs,
            unfrozen,
            head: HeadConfig {
                multi_label: train.is_multi_label(),
                ..self.head()?
            },
            augment: self.augment.0,
            seed,
            keep_last: false,
            label_smoothing: self.label_smoothing,
        })
    }
}

/// How particles are cut for the network (recorded in model.json as [`Preprocessing`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct PrepConfig {
    /// Box size in micrograph pixels (1.5-2.5× the particle diameter); particle images (class
    /// folders, particle STARs) need none.
    #[arg(long = "box")]
    pub box_size: Option<usize>,
    /// Network input size; boxes are Fourier-resampled to it.
    #[arg(long, default_value_t = PrepConfig::default().input_size)]
    pub input_size: usize,
    /// Micrograph normalisation: none, meanstd or `robust[:LOW,HIGH]` (percentile clip first).
    #[arg(long, default_value_t = PrepConfig::default().normalize)]
    pub normalize: MicrographNorm,
    /// Micrograph low-pass: a resolution (20A; a bare number is Å) or a fraction of Nyquist
    /// (0.5nyquist).
    #[arg(long)]
    pub lowpass: Option<Cutoff>,
    /// Pixel size in Å for an Å low-pass, instead of the micrographs' headers.
    #[arg(long, value_parser = crate::positive)]
    pub angpix: Option<f64>,
    /// Invert contrast before the network.
    #[arg(long)]
    pub invert: bool,
    /// Boxes past the micrograph edge: skip, pad-mean or pad-noise.
    #[arg(long, default_value_t = PrepConfig::default().edge)]
    pub edge: EdgePolicy,
    /// Whole micrographs: their power spectrum as a second input (auto: for micrograph tables).
    #[arg(long, default_value_t = PrepConfig::default().spectrum)]
    pub spectrum: SpectrumInput,
}

impl Default for PrepConfig {
    fn default() -> Self {
        Self {
            box_size: None,
            input_size: 64,
            normalize: MicrographNorm::ROBUST,
            lowpass: None,
            angpix: None,
            invert: false,
            edge: EdgePolicy::PadNoise,
            spectrum: SpectrumInput::Auto,
        }
    }
}

impl PrepConfig {
    /// The preprocessing to record for labels from `source`.
    pub fn preprocessing(&self, source: &LabelSource) -> Result<Preprocessing> {
        let box_size = match (self.box_size, source.is_images()) {
            (Some(b), _) => b,
            (None, true) => self.input_size,
            (None, false) => invalid!(
                "--box is required with micrographs and picks (the box size in micrograph pixels)"
            ),
        };
        // Only a table of whole images has a spectrum to give; `auto` reads its header to learn
        // whether they are micrographs.
        let table = match source {
            LabelSource::ImageTable(table) => Some(table),
            _ => None,
        };
        let spectrum = match (self.spectrum, table) {
            (SpectrumInput::Auto, Some(table)) => dataset::lists_micrographs(table),
            (SpectrumInput::On, Some(_)) => true,
            (SpectrumInput::On, None) => invalid!(
                "--spectrum on puts a whole image's power spectrum beside it: it needs a table of \
                 images with label sets (micrograph,labels), not particle boxes"
            ),
            (SpectrumInput::Auto | SpectrumInput::Off, _) => false,
        };
        Ok(Preprocessing {
            box_size,
            input_size: self.input_size,
            normalize: self.normalize,
            lowpass: self.lowpass,
            angpix: self.angpix,
            particle_radius: Some(ParticleNorm::input_radius(self.input_size)),
            invert: self.invert,
            edge: self.edge,
            spectrum,
        })
    }
}

/// Where the backbone starts: parsed, fetched when it is a download, and described.
pub struct StartingWeights {
    pub path: Option<PathBuf>,
    /// What model.json records.
    pub described: String,
    /// SHA-256 of the file at `path`.
    pub sha256: Option<String>,
}

impl StartingWeights {
    /// Resolves `spec` for `arch` (downloading once into the cache), so a failed download
    /// fails before any particle is cut.
    pub fn resolve(spec: &str, arch: Arch, events: &dyn Events) -> Result<StartingWeights> {
        let mut pretrained = Pretrained::parse(spec)?;
        let shipped = Pretrained::shipped_for(arch);
        if pretrained == Pretrained::Cryo && shipped.is_none() {
            events.note(format!(
                "no cryo-EM backbone ships for {arch} (only for the small network): starting \
                 from its ImageNet weights"
            ));
            pretrained = Pretrained::ImageNet;
        }
        if matches!(pretrained, Pretrained::Topaz(_)) && arch != Arch::TopazResNet16 {
            invalid!(
                "--pretrained {spec} is a Topaz model: train Topaz's network with --arch \
                 topaz-resnet16 and an input of at least 91 px (--input-size 96)"
            );
        }
        let path = pretrained.path(arch)?;
        let sha256 = match &path {
            Some(p) => Some(sha256_hex(
                &std::fs::read(p).map_err(|e| Error::Io(p.clone(), e))?,
            )),
            None => None,
        };
        let described = pretrained.describe(path.as_deref());
        // One line for every start, so each job says once what it started from.
        let said = match (&pretrained, shipped, &sha256) {
            (Pretrained::Cryo, Some(w), _) => format!(
                "cryoprune's cryo-EM backbone {} (SHA-256 {}…; --pretrained none trains from \
                 scratch)",
                w.name,
                &w.sha256[..16]
            ),
            (Pretrained::ImageNet, _, None) => format!("none ({arch} has no ImageNet weights)"),
            (_, _, Some(sha)) => format!("{described} (SHA-256 {}…)", &sha[..16]),
            (_, _, None) => described.clone(),
        };
        events.note(format!("starting weights: {said}"));
        Ok(StartingWeights {
            described,
            path,
            sha256,
        })
    }
}

/// A trained network with what training learnt beside it.
pub struct Fitted {
    pub model: Classifier,
    pub network: ClassifierConfig,
    pub config: TrainConfig,
    pub history: Vec<EpochStats>,
    /// 1-based.
    pub best_epoch: usize,
    /// The kept network's probabilities on the validation set (none without one).
    pub val_probs: Option<Vec<Vec<f32>>>,
    pub seconds: f64,
}

/// Where a fit's backbone starts.
#[derive(Clone)]
pub enum Start<'a> {
    /// Fresh weights, or a checkpoint on disk (see [`StartingWeights`]).
    Weights(Option<&'a std::path::Path>),
    /// A backbone in memory: another fit's, adapted to the dataset.
    Backbone(Box<Backbone>),
}

/// Trains `net` from `start` on `train`, choosing the best epoch on `val`; every epoch is
/// reported as an [`Event::Epoch`].
pub fn fit(
    net: &NetConfig,
    start: Start,
    train: &Dataset,
    val: &Dataset,
    seed: u64,
    compute: &Compute,
    events: &dyn Events,
) -> Result<Fitted> {
    fit_with(
        net.arch,
        net.train_config(train, seed)?,
        start,
        train,
        val,
        compute,
        events,
    )
}

/// [`fit`] with the trainer's settings resolved already (and changed where the caller needs).
pub fn fit_with(
    arch: Arch,
    config: TrainConfig,
    start: Start,
    train: &Dataset,
    val: &Dataset,
    compute: &Compute,
    events: &dyn Events,
) -> Result<Fitted> {
    let least = arch.min_input();
    if train.size < least {
        invalid!(
            "{} sees no less than {least} px: give --input-size {least} or more (not {})",
            arch,
            train.size
        );
    }
    // burn draws the fresh layers' weights from a process-wide generator: seeded, the seed
    // decides them too (loading a backbone draws before the head does).
    let device = compute.device.device.clone().autodiff();
    device.seed(config.seed);
    let backbone = match start {
        Start::Weights(None) => None,
        Start::Weights(Some(path)) => {
            let (backbone, report) = load_backbone(arch, path, &device)?;
            events.note(format!(
                "loaded {} pretrained tensors from {}",
                report.applied,
                path.display()
            ));
            Some(backbone)
        }
        Start::Backbone(backbone) => Some(*backbone),
    };
    let network = ClassifierConfig {
        in_channels: train.channels,
        arch,
        classes: train.classes.len(),
        head: config.head.clone(),
    };
    let model = match backbone {
        None => network.init(&device),
        Some(backbone) => network.init_with(backbone, &device),
    };
    let val = (!val.is_empty()).then_some(val);
    let trained = cryoprune_train::train(model, train, val, &config, &device, |s| {
        events.emit(Event::Epoch(s.clone()));
        if events.cancelled() {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    })?;
    Ok(Fitted {
        model: trained.model,
        network,
        config,
        history: trained.history,
        best_epoch: trained.best_epoch,
        val_probs: trained.val_probs,
        seconds: trained.seconds,
    })
}

impl Fitted {
    /// The network's probabilities on labelled `data`, on the image alone.
    pub fn score(&self, data: &Dataset, compute: &Compute) -> Scored {
        score(
            &self.model,
            data,
            self.config.head.readout(),
            &compute.device.device,
        )
    }

    /// [`Self::score`] on `data` whose examples at `val_at` are the validation set the fit
    /// chose its epoch on, in that order: those are not run through the network again.
    pub fn score_reusing_validation(
        &self,
        data: &Dataset,
        val_at: &[usize],
        compute: &Compute,
    ) -> Scored {
        let Some(known) = &self.val_probs else {
            return self.score(data, compute);
        };
        assert_eq!(known.len(), val_at.len(), "one index per validation pick");
        let mut probs = vec![Vec::new(); data.len()];
        for (&i, p) in val_at.iter().zip(known) {
            probs[i] = p.clone();
        }
        let rest: Vec<usize> = (0..data.len()).filter(|&i| probs[i].is_empty()).collect();
        if !rest.is_empty() {
            let fresh = self.score(&data.subset(&rest), compute).probs;
            for (i, p) in rest.into_iter().zip(fresh) {
                probs[i] = p;
            }
        }
        Scored::of(probs, data)
    }
}

/// The pick context fitted on the training picks' facts as `view` sees them (all of them, or
/// the picker's score alone), or why no fact can serve.
pub fn fit_context(
    train: &Dataset,
    view: impl Fn(PickFacts) -> PickFacts,
) -> Result<PickContext, String> {
    let facts: Vec<PickFacts> = train.facts().into_iter().map(view).collect();
    PickContext::fit(&facts, &train.labels, train.classes.len()).map_err(|e| e.to_string())
}

/// The pick context for a model trained on `train`, saying on `events` what it combines (or
/// why nothing), for `train` and the labelling page.
pub fn context_for(train: &Dataset, events: &dyn Events) -> Option<PickContext> {
    match fit_context(train, |f| f) {
        Ok(ctx) => {
            let facts: Vec<&str> = ctx.facts().map(|f| f.describe()).collect();
            events.note(format!(
                "pick context: {} combined with the image, calibrated on {} training picks",
                facts.join(" and "),
                train.len()
            ));
            let scored = train.origins.iter().filter(|o| o.score.is_some()).count();
            if scored > 0 && scored < train.len() {
                events.note(format!(
                    "pick context: the picker's score not used, {} of {} training picks have none",
                    train.len() - scored,
                    train.len()
                ));
            }
            Some(ctx)
        }
        Err(why) => {
            events.note(format!(
                "pick context not used ({why}); classifying on the image alone"
            ));
            None
        }
    }
}

/// The network's scores `image_only` of labelled `data` with each pick's context combined
/// (then both macro-F1s are reported, so the context's share of the result is plain).
pub fn with_context(
    image_only: Scored,
    data: &Dataset,
    context: Option<&PickContext>,
    events: &dyn Events,
) -> Result<Scored> {
    let Some(ctx) = context else {
        return Ok(image_only);
    };
    let combined = image_only.with_context(data, ctx)?;
    if !data.is_empty() {
        events.note(format!(
            "macro-F1 on {} labelled picks: {:.3} on the image alone, {:.3} with the pick context",
            data.len(),
            image_only.report.macro_f1,
            combined.report.macro_f1
        ));
    }
    Ok(combined)
}

/// A trained model's scores on `labels`, cut as its model.json says, with `context` combined
/// when given: evaluate's, and prune's threshold advisor's with `--labels`.
pub fn score_labels(
    labels: &LabelsConfig,
    model: &Classifier,
    spec: &ModelSpec,
    context: Option<&PickContext>,
    compute: &Compute,
    events: &dyn Events,
) -> Result<(Dataset, Scored)> {
    let data = labels.dataset(
        Some(&spec.classes),
        &spec.preprocessing,
        compute.threads,
        events,
    )?;
    if data.is_multi_label() {
        invalid!(
            "the model chooses one class per particle; images with label sets are scored by a \
             multi-label model (train one on them)"
        );
    }
    let image_only = score(
        model,
        &data,
        spec.network.head.readout(),
        &compute.device.device,
    );
    let scored = with_context(image_only, &data, context, events)?;
    Ok((data, scored))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_repeats_give_five_batches() {
        assert_eq!("auto".parse(), Ok(Repeats::Auto));
        assert_eq!("3".parse(), Ok(Repeats::Fixed(3)));
        assert!("0".parse::<Repeats>().is_err());
        // 10 shots × 2 classes: 6 passes = 120 picks = 5 batches of 24.
        assert_eq!(Repeats::Auto.passes(20, 24), 6);
        assert_eq!(Repeats::Auto.passes(60, 24), 2);
        assert_eq!(Repeats::Auto.passes(1000, 24), 1);
        assert_eq!(Repeats::Fixed(4).passes(1000, 24), 4);
    }

    #[test]
    fn settings_have_one_spelling_in_text_and_json() {
        let net = NetConfig {
            class_weights: Some("1,2.5".parse().unwrap()),
            repeats: Repeats::Fixed(3),
            schedule: ScheduleKind::OneCycle,
            augment: "rotate,flip".parse().unwrap(),
            ..NetConfig::default()
        };
        let json = serde_json::to_value(&net).unwrap();
        assert_eq!(json["class_weights"], "1,2.5");
        assert_eq!(json["repeats"], "3");
        assert_eq!(json["schedule"], "onecycle");
        assert_eq!(json["augment"], "flip,rotate");
        assert_eq!(json["arch"], "small");
        let back: NetConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back, net);
        // Missing fields take the defaults, stated once.
        let partial: NetConfig = serde_json::from_str(r#"{"epochs": 3}"#).unwrap();
        assert_eq!(partial.epochs, 3);
        assert_eq!(partial.repeats, NetConfig::default().repeats);
        assert_eq!("none".parse::<Augmentations>().unwrap().to_string(), "none");
        assert!("mirror".parse::<Augmentations>().is_err());
        assert!("a,b".parse::<ClassWeights>().is_err());
        for bad in ["-1,1", "0,0", "NaN,1", "inf,1"] {
            assert!(bad.parse::<ClassWeights>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_spectrum_is_only_for_tables_of_whole_images() {
        let dir = tempfile::tempdir().unwrap();
        let table = |name: &str, header: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, format!("{header}\na.png,ice\n")).unwrap();
            LabelSource::ImageTable(path)
        };
        let spectrum = |setting: &str, source: &LabelSource| {
            PrepConfig {
                spectrum: setting.parse().unwrap(),
                ..PrepConfig::default()
            }
            .preprocessing(source)
            .map(|p| p.spectrum)
        };
        let micrographs = table("tags.csv", "micrograph,labels");
        let images = table("images.csv", "image,labels");
        assert!(spectrum("auto", &micrographs).unwrap());
        assert!(!spectrum("auto", &images).unwrap());
        assert!(spectrum("on", &images).unwrap());
        assert!(!spectrum("off", &micrographs).unwrap());
        let folder = LabelSource::ClassFolder(dir.path().to_path_buf());
        assert!(!spectrum("auto", &folder).unwrap());
        let err = spectrum("on", &folder).unwrap_err().to_string();
        assert!(
            err.contains("it needs a table of images with label sets (micrograph,labels)"),
            "{err}"
        );
        assert!("sometimes".parse::<SpectrumInput>().is_err());
    }

    #[test]
    fn class_weights_resolve_against_the_classes() {
        let classes: Vec<String> = ["junk", "particle"].map(String::from).to_vec();
        let w = ClassWeights::Balanced.resolve(&classes, &[10, 30]).unwrap();
        assert_eq!(w, vec![2.0, 40.0 / 60.0]);
        let err = ClassWeights::Given(vec![1.0])
            .resolve(&classes, &[1, 1])
            .unwrap_err()
            .to_string();
        assert!(err.contains("1 values for 2 classes"), "{err}");
        let picks = Dataset {
            labels: [[0; 10], [1; 10]].concat(),
            ..Dataset::empty(64, classes.clone())
        };
        let cfg = NetConfig::default().train_config(&picks, 4).unwrap();
        assert_eq!((cfg.epochs, cfg.repeats, cfg.seed), (15, 6, 4));
        assert!(!cfg.head.multi_label);
        // Label sets: a multi-label head, and `balanced` weighs each label's positives.
        let mut sets = Dataset::empty_multi_label(64, classes);
        sets.labels = vec![0; 4];
        sets.multi = Some(vec![
            vec![true, false],
            vec![false, false],
            vec![false, true],
            vec![false, false],
        ]);
        let net = NetConfig {
            class_weights: Some(ClassWeights::Balanced),
            ..NetConfig::default()
        };
        let cfg = net.train_config(&sets, 4).unwrap();
        assert!(cfg.head.multi_label);
        assert_eq!(cfg.class_weights, Some(vec![3.0, 3.0]));
        // Seed 001's two stages: 5 epochs of the head at one-cycle 0.01, then every layer at
        // one-cycle 0.001.
        let two = NetConfig {
            recipe: "two-stage".parse().unwrap(),
            ..NetConfig::default()
        };
        let cfg = two.train_config(&sets, 4).unwrap();
        assert_eq!(cfg.freeze_epochs, 5);
        assert_eq!(
            (cfg.schedule, cfg.unfrozen),
            (
                Schedule::OneCycle {
                    initial: 0.01,
                    final_lr: 1e-4
                },
                Some(Schedule::OneCycle {
                    initial: 1e-3,
                    final_lr: 1e-5
                })
            )
        );
        let short = NetConfig { epochs: 5, ..two };
        assert!(short.train_config(&sets, 4).is_err());
        for share in [-0.1, 1.0] {
            let net = NetConfig {
                label_smoothing: share,
                ..NetConfig::default()
            };
            let err = net.train_config(&sets, 4).unwrap_err().to_string();
            assert!(err.contains("--label-smoothing is a share"), "{err}");
        }
    }
}
