//! `cryoprune evaluate`: score a trained model on labelled picks: accuracy, macro-F1,
//! per-class precision/recall/F1 and the confusion matrix, printed and as JSON. Particles are cut
//! exactly as model.json says training cut them.
//!
//! ```text
//! cryoprune evaluate --model model/ --micrographs 'Micrographs/*.mrc' --labels test_labels.csv
//! cryoprune evaluate --model model/ --micrographs 'mics/*.jpg' --labels labels/topaz.csv --json eval.json --predictions errors.csv
//! cryoprune evaluate --model model/ --labels held_out_by_class/ --device cuda
//! ```

use std::path::PathBuf;

use anyhow::Result;
use cryoprune_formats::atomic::write_atomic;
use cryoprune_model::modeldir;

use super::learning::{self, ComputeArgs, LabelArgs};

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
    /// edge) the model was trained to combine with it.
    #[arg(long)]
    image_only: bool,
}

pub fn run(args: Args) -> Result<()> {
    let (compute, threads) = args.compute.start()?;
    let (model, spec) = modeldir::load(&args.model, &compute.device)?;
    let data = args.labels.dataset(
        &args.labels.source(),
        Some(&spec.classes),
        &spec.preprocessing,
        threads,
    )?;
    let scored = learning::score_labelled(
        &model,
        &data,
        spec.network.head.mean_of_branches,
        spec.pick_context.as_ref().filter(|_| !args.image_only),
        &compute,
    )?;
    let report = &scored.report;
    println!("{}", report.to_text());
    if let Some(path) = &args.predictions {
        learning::write_predictions(path, &data, &scored)?;
        eprintln!("per-particle predictions written to {}", path.display());
    }
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(report)?;
        write_atomic(path, |w| w.write_all(&json))?;
        eprintln!("scores written to {}", path.display());
    }
    Ok(())
}
