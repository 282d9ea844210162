//! `cryoprune fewshot`: the PickerOptimizer evaluation protocol. For every cell (network ×
//! variant × shots), N models are trained on independent random draws of K labelled picks per
//! class and scored on the labelled picks not drawn (or on --test-labels). Writes a markdown
//! table of mean ± sd macro-F1 and accuracy (the layout of the paper's Tables 2-3) and JSON with
//! every trial. Resumable: trials already in the JSON are not redone. Images with label sets
//! (`image,labels`, `micrograph,labels`) draw K images with and K without each label, and are
//! scored by macro-F1, micro-F1 and exact match at thresholds chosen on held-out images.
//!
//! ```text
//! cryoprune fewshot --micrographs 'mics/*.jpg' --labels labels.csv --box 180 --shots 10,20,30 --trials 5 --out fewshot/
//! cryoprune fewshot --micrographs mics/14_33_35.jpg mics/15_17_31.jpg --labels topaz.csv --test-micrographs mics/15_30_21.jpg mics/15_33_42.jpg --test-labels topaz.csv --box 180 --archs efficientnet-lite0,resnet18 --variants scratch,pretrained,pretrained-single-loss --weights efficientnet-lite0=efficientnet-lite0.pth --out bench/
//! cryoprune fewshot --micrographs 'mics/*.jpg' --labels labels.csv --box 180 --variants scratch,scratch-adapted --unlabelled picks/ --out fewshot/
//! cryoprune fewshot --labels curation/micrograph_tags.csv --input-size 128 --shots 10,30 --variants scratch,pretrained --out fewshot_tags/
//! ```

use std::path::PathBuf;

use anyhow::Result;
use cryoprune_jobs::fewshot::{self, FewshotConfig, Variant};
use cryoprune_model::Arch;

use super::args::{ComputeArgs, LabelArgs, NetArgs, PrepArgs};
use super::train::UnlabelledArgs;
use crate::printer::Printer;

#[derive(clap::Args)]
#[command(
    about = "Few-shot protocol: mean ± sd macro-F1 over random draws of K labels per class",
    after_help = super::examples(include_str!("fewshot.rs"))
)]
pub struct Args {
    #[command(flatten)]
    compute: ComputeArgs,
    #[command(flatten)]
    labels: LabelArgs,
    /// Separate test labels; default: the labelled picks not drawn.
    #[arg(long, num_args = 1..)]
    test_labels: Vec<PathBuf>,
    /// Micrographs of --test-labels; default: --micrographs.
    #[arg(long, num_args = 1..)]
    test_micrographs: Vec<String>,
    /// Shots per class, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = FewshotConfig::default().shots)]
    shots: Vec<usize>,
    /// Draws per cell.
    #[arg(long, default_value_t = FewshotConfig::default().trials)]
    trials: usize,
    /// Variants: scratch or pretrained, then optionally -adapted (adapted to --unlabelled
    /// first), then optionally -single-loss (a one-branch head).
    #[arg(long, value_delimiter = ',', default_values_t = FewshotConfig::default().variants)]
    variants: Vec<Variant>,
    /// Networks to compare, comma-separated (overrides --arch).
    #[arg(long, value_delimiter = ',')]
    archs: Vec<Arch>,
    /// Pretrained weights per network: ARCH=PATH or ARCH=HUB-NAME (repeatable), or one for --arch;
    /// a network without any gets its ImageNet weights (downloaded once, then cached).
    #[arg(long = "weights", num_args = 1..)]
    weights: Vec<String>,
    #[command(flatten)]
    prep: PrepArgs,
    #[command(flatten)]
    net: NetArgs,
    /// Per-epoch validation uses at most this many held-out picks.
    #[arg(long, default_value_t = FewshotConfig::default().val_max)]
    val_max: usize,
    #[command(flatten)]
    unlabelled: UnlabelledArgs,
    /// Base seed; trial t uses seed + t, so every variant of a trial sees the same draw.
    #[arg(long, default_value_t = FewshotConfig::default().seed)]
    seed: u64,
    /// Output folder for results.json and results.md.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let cfg = FewshotConfig {
        compute: args.compute.into(),
        labels: args.labels.into(),
        test_labels: args.test_labels,
        test_micrographs: args.test_micrographs,
        shots: args.shots,
        trials: args.trials,
        variants: args.variants,
        archs: args.archs,
        weights: args.weights,
        prep: args.prep.into(),
        net: args.net.into(),
        val_max: args.val_max,
        unlabelled: args.unlabelled.into(),
        seed: args.seed,
        out: args.out,
    };
    fewshot::run(&cfg, &Printer::default())?;
    Ok(())
}
