//! `cryoprune evaluate`: score a trained model on labelled picks: accuracy, macro-F1,
//! per-class precision/recall/F1 and the confusion matrix, printed and as JSON. Particles are cut
//! exactly as model.json says training cut them. A multi-label model is scored on images with
//! label sets at its thresholds: per label precision/recall/F1, macro- and micro-F1 and the
//! share of images with every label right.
//!
//! ```text
//! cryoprune evaluate --model model/ --micrographs 'Micrographs/*.mrc' --labels test_labels.csv
//! cryoprune evaluate --model model/ --micrographs 'mics/*.jpg' --labels labels/topaz.csv --json eval.json --predictions errors.csv
//! cryoprune evaluate --model model/ --labels held_out_by_class/ --device cuda
//! cryoprune evaluate --model tagger/ --labels images/test.csv --predictions tags.csv
//! ```

use std::path::PathBuf;

use anyhow::Result;
use cryoprune_jobs::evaluate::{self, EvaluateConfig};

use super::args::{ComputeArgs, LabelArgs};
use crate::printer::Printer;

#[derive(clap::Args)]
#[command(
    about = "Score a trained model on labelled picks (accuracy, macro-F1, per class, confusion)",
    after_help = super::examples(include_str!("evaluate.rs"))
)]
pub struct Args {
    #[command(flatten)]
    compute: ComputeArgs,
    /// Model directory written by `cryoprune train`.
    #[arg(long)]
    model: PathBuf,
    #[command(flatten)]
    labels: LabelArgs,
    /// Write every labelled particle with its prediction and class probabilities as CSV here.
    #[arg(long)]
    predictions: Option<PathBuf>,
    /// Write the scores as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Classify on the image alone, ignoring the pick context (picker score, distance from the
    /// edge) or the measured micrograph statistics the model was trained to combine with it.
    #[arg(long)]
    image_only: bool,
}

pub fn run(args: Args) -> Result<()> {
    let cfg = EvaluateConfig {
        compute: args.compute.into(),
        model: args.model,
        labels: args.labels.into(),
        predictions: args.predictions,
        json: args.json,
        image_only: args.image_only,
    };
    evaluate::run(&cfg, &Printer::default())?;
    Ok(())
}
