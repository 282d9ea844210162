//! Flags shared by several commands, each turned into the library's typed config at once. Every
//! default is the library's, stated once in its config's `Default`.

use std::path::PathBuf;

use cryoprune_formats::PickFormat;
use cryoprune_image::extract::EdgePolicy;
use cryoprune_image::fourier::Cutoff;
use cryoprune_image::normalize::MicrographNorm;
use cryoprune_jobs::labels::LabelsConfig;
use cryoprune_jobs::recipe::{
    Augmentations, ClassWeights, NetConfig, PrepConfig, Recipe, Repeats, ScheduleKind,
    SpectrumInput,
};
use cryoprune_jobs::ComputeConfig;
use cryoprune_model::Arch;

/// `--device` and `--threads`, the same for every command that runs a network.
#[derive(clap::Args, Debug, Clone)]
pub struct ComputeArgs {
    /// Compute device: cpu, cuda[:N] or wgpu.
    #[arg(long, default_value_t = ComputeConfig::default().device)]
    pub device: String,
    /// Threads for extraction and the CPU backend; 0 = all cores.
    #[arg(long, default_value_t = ComputeConfig::default().threads)]
    pub threads: usize,
}

impl From<ComputeArgs> for ComputeConfig {
    fn from(a: ComputeArgs) -> Self {
        ComputeConfig {
            device: a.device,
            threads: a.threads,
        }
    }
}

/// The picks a command works on and the micrographs they were made on.
#[derive(clap::Args, Debug, Clone)]
pub struct PickArgs {
    /// Micrographs the picks were made on (globs, quoted): MRC, TIFF, PNG or JPEG.
    #[arg(long, required = true, num_args = 1..)]
    pub micrographs: Vec<String>,
    /// Pick files or folders of them, in one format (STAR, .cs, .box, .cbox, Topaz .txt, CSV).
    #[arg(long, required = true, num_args = 1..)]
    pub picks: Vec<PathBuf>,
    /// Pick format when the extension does not tell.
    #[arg(long)]
    pub format: Option<PickFormat>,
}

/// Where a command's labelled particles come from.
#[derive(clap::Args, Debug, Clone)]
pub struct LabelArgs {
    /// Micrographs the labels were picked on (globs, quoted).
    #[arg(long, num_args = 1..)]
    pub micrographs: Vec<String>,
    /// Labels: a CSV (micrograph,x,y,label), any pick file with a label column, a particle STAR
    /// (index@stack images, label column; no micrographs needed), a folder with one
    /// sub-folder of particle images per class, or a CSV image,labels of images (PNG, TIFF,
    /// JPEG, MRC; paths relative to the CSV) with any number of `;`-separated labels each (a
    /// micrographs STAR with _cryopruneLabels likewise).
    #[arg(long, required = true, num_args = 1..)]
    pub labels: Vec<PathBuf>,
    /// Label file format when the extension does not tell.
    #[arg(long)]
    pub format: Option<PickFormat>,
    /// Particle images given as --labels (class folder or particle STAR) have the opposite
    /// contrast to the micrographs, as RELION's Extract writes them by default.
    #[arg(long)]
    pub images_inverted: bool,
}

impl From<LabelArgs> for LabelsConfig {
    fn from(a: LabelArgs) -> Self {
        LabelsConfig {
            micrographs: a.micrographs,
            labels: a.labels,
            format: a.format,
            images_inverted: a.images_inverted,
        }
    }
}

/// How particles are cut for the network (recorded in model.json).
#[derive(clap::Args, Debug, Clone)]
pub struct PrepArgs {
    /// Box size in micrograph pixels (about 1.5× the particle diameter).
    #[arg(long = "box")]
    pub box_size: Option<usize>,
    /// Network input size; boxes are Fourier-resampled to it.
    #[arg(long, default_value_t = PrepConfig::default().input_size)]
    pub input_size: usize,
    /// Micrograph normalisation: none, meanstd or robust[:LOW,HIGH] (percentile clip first).
    #[arg(long, default_value_t = PrepConfig::default().normalize)]
    pub normalize: MicrographNorm,
    /// Micrograph low-pass: a resolution (20A; a bare number is Å) or a fraction of Nyquist
    /// (0.5nyquist).
    #[arg(long)]
    pub lowpass: Option<Cutoff>,
    /// Pixel size in Å for an Å low-pass, instead of the micrographs' headers.
    #[arg(long)]
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

impl From<PrepArgs> for PrepConfig {
    fn from(a: PrepArgs) -> Self {
        PrepConfig {
            box_size: a.box_size,
            input_size: a.input_size,
            normalize: a.normalize,
            lowpass: a.lowpass,
            angpix: a.angpix,
            invert: a.invert,
            edge: a.edge,
            spectrum: a.spectrum,
        }
    }
}

/// The network and training knobs. The defaults of --arch, --input-size, --epochs and --repeats
/// are the best found within about a minute of training on 2 CPU cores on the EMPIAR-10017
/// benchmark (BENCHMARKS.md); the optimiser, schedule, batch and augmentation are the paper's.
#[derive(clap::Args, Debug, Clone)]
pub struct NetArgs {
    /// Network: small, efficientnet-lite0, resnet18, resnet34, resnet50, topaz-resnet16 (≥ 91 px).
    #[arg(long, default_value_t = NetConfig::default().arch)]
    pub arch: Arch,
    /// Starting weights: cryo (the cryo-EM backbone built into cryoprune, small network only;
    /// other networks start from ImageNet), imagenet, a .pth/.pt/.safetensors checkpoint, a
    /// Hugging Face hub name (resnet18.tv_in1k or timm/...), topaz:resnet16_u64.sav (for
    /// topaz-resnet16) or none. Downloads happen once.
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
    /// Loss weight per class (in the sorted class order), comma-separated, or `balanced`. For
    /// images with label sets: the weight of each label's positives (`balanced`: its
    /// negatives over its positives), which lifts rare labels; `--pos-weight` says the same.
    #[arg(long, alias = "pos-weight")]
    pub class_weights: Option<ClassWeights>,
    /// Epochs with the backbone frozen (head only); the rest train everything at lr/10. As many
    /// as --epochs: a linear probe on features computed once (not with --augment rotate).
    #[arg(long, default_value_t = NetConfig::default().freeze_epochs)]
    pub freeze_epochs: usize,
    /// Augmentations: any of flip, rot90, rotate (comma-separated), or none.
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

impl From<NetArgs> for NetConfig {
    fn from(a: NetArgs) -> Self {
        NetConfig {
            arch: a.arch,
            pretrained: a.pretrained,
            branches: a.branches,
            branch_weights: a.branch_weights,
            mean_of_branches: a.mean_of_branches,
            epochs: a.epochs,
            batch: a.batch,
            repeats: a.repeats,
            schedule: a.schedule,
            lr: a.lr,
            final_lr: a.final_lr,
            step_every: a.step_every,
            gamma: a.gamma,
            momentum: a.momentum,
            weight_decay: a.weight_decay,
            class_weights: a.class_weights,
            freeze_epochs: a.freeze_epochs,
            augment: a.augment,
            recipe: a.recipe,
            unfrozen_lr: a.unfrozen_lr,
        }
    }
}
