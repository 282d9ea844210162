//! `cryoprune label`: label picks on a local web page at the address (127.0.0.1, secret token) it
//! prints. The labels CSV is rewritten after every change and is what `train` takes; with enough
//! labels the page trains `train`'s network in the background and shows its doubts first.
//!
//! ```text
//! cryoprune label --micrographs 'Micrographs/*.mrc' --picks autopick/ --box 180 --out labels.csv
//! cryoprune label --micrographs 'mics/*.jpg' --picks topaz.txt --box 180 --classes particle,carbon,ice --out labels.csv --port 8765
//! cryoprune label --micrographs 'Micrographs/*.mrc' --picks autopick/ --box 180 --model model/ --out labels.csv
//! ```

use std::path::PathBuf;

use anyhow::Result;
use cryoprune_jobs::label::{self, LabelConfig};

use super::args::{ComputeArgs, NetArgs, PickArgs, PrepArgs};
use crate::printer::Printer;

#[derive(clap::Args)]
#[command(
    about = "Label picks by class on a local web page (writes the labels CSV train reads)",
    after_help = super::examples(include_str!("label.rs"))
)]
pub struct Args {
    #[command(flatten)]
    input: PickArgs,
    #[command(flatten)]
    prep: PrepArgs,
    /// The labels CSV (micrograph,x,y,label); an existing one is read and continued.
    #[arg(long)]
    out: PathBuf,
    /// Classes, comma-separated, in key order.
    #[arg(long, value_delimiter = ',', default_values_t = LabelConfig::default().classes)]
    classes: Vec<String>,
    /// Port on 127.0.0.1 (default: a free one).
    #[arg(long, default_value_t = LabelConfig::default().port)]
    port: u16,
    /// A model from `train`: the gallery shows the picks it is least sure of first.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Labels of every class before the page trains a model in the background (0: never).
    #[arg(long, default_value_t = LabelConfig::default().train_after)]
    train_after: usize,
    /// How the gallery measures doubt: margin (top two classes) or entropy (all classes).
    #[arg(long, default_value_t = LabelConfig::default().uncertainty)]
    uncertainty: label::Uncertainty,
    #[command(flatten)]
    net: NetArgs,
    #[command(flatten)]
    compute: ComputeArgs,
}

pub fn run(args: Args) -> Result<()> {
    let cfg = LabelConfig {
        micrographs: args.input.micrographs,
        picks: args.input.picks,
        format: args.input.format,
        prep: args.prep.into(),
        out: args.out,
        classes: args.classes,
        port: args.port,
        model: args.model,
        train_after: args.train_after,
        uncertainty: args.uncertainty,
        net: args.net.into(),
        compute: args.compute.into(),
        ..LabelConfig::default()
    };
    label::run(&cfg, &Printer::default())?;
    Ok(())
}
