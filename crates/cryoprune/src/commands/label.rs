//! `cryoprune label`: label picks on a local web page, at the address (127.0.0.1, with a secret
//! token) it prints; over ssh, forward the port. Keys 1-9 label, `z` undoes, `0` clears. The
//! labels CSV is rewritten after every change, read on restart, and what `train` takes.
//!
//! ```text
//! cryoprune label --micrographs 'Micrographs/*.mrc' --picks autopick/ --box 180 --out labels.csv
//! cryoprune label --micrographs 'mics/*.jpg' --picks topaz.txt --box 180 --classes particle,carbon,ice --out labels.csv --port 8765
//! cryoprune label --micrographs 'Micrographs/*.mrc' --picks autopick/ --box 180 --model model/ --out labels.csv
//! ```

use std::path::PathBuf;

use anyhow::Result;
use cryoprune_jobs::label::{self, LabelConfig};

use super::args::PickArgs;
use crate::printer::Printer;

#[derive(clap::Args)]
#[command(
    about = "Label picks by class on a local web page (writes the labels CSV train reads)",
    after_help = super::examples(include_str!("label.rs"))
)]
pub struct Args {
    #[command(flatten)]
    input: PickArgs,
    /// Box size in micrograph pixels, as `train --box`.
    #[arg(long = "box")]
    box_size: usize,
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
}

pub fn run(args: Args) -> Result<()> {
    let cfg = LabelConfig {
        micrographs: args.input.micrographs,
        picks: args.input.picks,
        format: args.input.format,
        box_size: args.box_size,
        out: args.out,
        classes: args.classes,
        port: args.port,
        model: args.model,
        ..LabelConfig::default()
    };
    label::run(&cfg, &Printer::default())?;
    Ok(())
}
