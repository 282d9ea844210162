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

use anyhow::Result;
use cryoprune_jobs::train::{self, TrainJobConfig};

use crate::printer::Printer;

#[derive(clap::Args)]
#[command(
    about = "Fine-tune a classifier on labelled picks and write a model directory",
    after_help = super::examples(include_str!("train.rs"))
)]
pub struct Args {
    #[command(flatten)]
    cfg: TrainJobConfig,
}

pub fn run(args: Args) -> Result<()> {
    train::run(&args.cfg, &Printer::default())?;
    Ok(())
}
