//! `cryoprune train`: fine-tune a network on a few labelled picks per class and write a model
//! directory (weights, model.json with every preprocessing parameter, training curves, the
//! validation picks with their probabilities, and a plain-words diagnosis). Images listed with
//! any number of labels each (a CSV `image,labels`, labels `;`-separated) train a multi-label
//! model instead: a sigmoid per label, binary cross-entropy, and each label's threshold chosen
//! for the best F1 on the held-out images.
//!
//! ```text
//! cryoprune train --micrographs 'Micrographs/*.mrc' --labels labels.csv --box 180 --out model/
//! cryoprune train --labels Select/job012/particles.star --images-inverted --val-fraction 0.3 --out model/
//! cryoprune train --micrographs 'Micrographs/*.mrc' --labels labels.csv --box 180 --unlabelled AutoPick/job006/Micrographs/ --out model/
//! cryoprune train --labels images/train.csv --input-size 128 --class-weights balanced --val-fraction 0.2 --out tagger/
//! ```

use std::path::PathBuf;

use anyhow::Result;
use cryoprune_jobs::adapt::UnlabelledConfig;
use cryoprune_jobs::train::{self, TrainJobConfig};

use super::args::{ComputeArgs, LabelArgs, NetArgs, PrepArgs};
use crate::printer::Printer;

#[derive(clap::Args)]
#[command(
    about = "Fine-tune a classifier on labelled picks and write a model directory",
    after_help = super::examples(include_str!("train.rs"))
)]
pub struct Args {
    #[command(flatten)]
    compute: ComputeArgs,
    #[command(flatten)]
    labels: LabelArgs,
    /// Train on K labelled picks per class (drawn with --seed); the rest validate.
    #[arg(long, conflicts_with = "val_fraction")]
    shots: Option<usize>,
    /// Without --shots: the share of each class held out for validation.
    #[arg(long, default_value_t = TrainJobConfig::default().val_fraction)]
    val_fraction: f64,
    /// Per-epoch validation uses at most this many held-out picks (all are scored at the end).
    #[arg(long, default_value_t = TrainJobConfig::default().val_max)]
    val_max: usize,
    #[command(flatten)]
    prep: PrepArgs,
    #[command(flatten)]
    net: NetArgs,
    /// Classify on the image alone. By default what the box does not show is combined with the
    /// network's evidence: the picker's score, when the labelled picks carry one, and the pick's
    /// distance from the micrograph edge; for whole micrographs, their measured statistics
    /// (particle band, spectrum anisotropy and lattice spots, contrast).
    #[arg(long)]
    image_only: bool,
    #[command(flatten)]
    unlabelled: UnlabelledArgs,
    #[arg(long, default_value_t = TrainJobConfig::default().seed)]
    seed: u64,
    /// Output model directory.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let cfg = TrainJobConfig {
        compute: args.compute.into(),
        labels: args.labels.into(),
        shots: args.shots,
        val_fraction: args.val_fraction,
        val_max: args.val_max,
        prep: args.prep.into(),
        net: args.net.into(),
        image_only: args.image_only,
        unlabelled: args.unlabelled.into(),
        seed: args.seed,
        out: args.out,
    };
    train::run(&cfg, &Printer::default())?;
    Ok(())
}

/// `--unlabelled` and its limits, for train and fewshot (which takes them from here).
#[derive(clap::Args, Debug, Clone)]
pub struct UnlabelledArgs {
    /// Pick files or folders without labels on these micrographs (any format prune reads):
    /// before the labels, the network learns to tell them from random places on the same
    /// micrographs, which adapts it to this dataset's particles and noise.
    #[arg(long, num_args = 1..)]
    pub unlabelled: Vec<PathBuf>,
    /// With --unlabelled: use about this many of them (from micrographs spread over the set).
    #[arg(long, default_value_t = UnlabelledConfig::default().max_picks)]
    pub unlabelled_max: usize,
    /// With --unlabelled: epochs of the adaptation.
    #[arg(long, default_value_t = UnlabelledConfig::default().epochs)]
    pub unlabelled_epochs: usize,
}

impl From<UnlabelledArgs> for UnlabelledConfig {
    fn from(a: UnlabelledArgs) -> Self {
        UnlabelledConfig {
            picks: a.unlabelled,
            max_picks: a.unlabelled_max,
            epochs: a.unlabelled_epochs,
            ..UnlabelledConfig::default()
        }
    }
}
