//! `cryoprune label`: label picks on a local web page at the address (127.0.0.1, secret token) it
//! prints. The labels CSV is rewritten after every change and is what `train` takes; with enough
//! labels the page trains `train`'s network in the background (the classes weighted as balanced
//! unless `--class-weights` is given) and, once it learnt from a label per kind of pick, shows its
//! doubts first.
//!
//! ```text
//! cryoprune label --micrographs 'Micrographs/*.mrc' --picks autopick/ --box 180 --out labels.csv
//! cryoprune label --micrographs 'mics/*.jpg' --picks topaz.txt --box 180 --classes particle,carbon,ice --out labels.csv --port 8765
//! cryoprune label --micrographs 'Micrographs/*.mrc' --picks autopick/ --box 180 --model model/ --out labels.csv
//! ```

use anyhow::Result;
use cryoprune_jobs::label::{self, LabelConfig};

use crate::printer::Printer;

#[derive(clap::Args)]
#[command(
    about = "Label picks by class on a local web page (writes the labels CSV train reads)",
    after_help = super::examples(include_str!("label.rs"))
)]
pub struct Args {
    #[command(flatten)]
    cfg: LabelConfig,
}

pub fn run(args: Args) -> Result<()> {
    label::run(&args.cfg, &Printer::default())?;
    Ok(())
}
