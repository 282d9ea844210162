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

use anyhow::Result;
use cryoprune_jobs::evaluate::{self, EvaluateConfig};

use crate::printer::Printer;

#[derive(clap::Args)]
#[command(
    about = "Score a trained model on labelled picks (accuracy, macro-F1, per class, confusion)",
    after_help = super::examples(include_str!("evaluate.rs"))
)]
pub struct Args {
    #[command(flatten)]
    cfg: EvaluateConfig,
}

pub fn run(args: Args) -> Result<()> {
    evaluate::run(&args.cfg, &Printer::default())?;
    Ok(())
}
