//! `cryoprune convert`: move picks between RELION, cryoSPARC, EMAN, crYOLO, Topaz and CSV.
//! Centres are exact across formats (EMAN and crYOLO corners are converted with the box size;
//! cryoSPARC fractions with the micrograph size). Converting to the input's own format keeps
//! every column, so it doubles as a safe copy.
//!
//! ```text
//! cryoprune convert --in topaz_picks/ --to star --out coords/picks.star
//! cryoprune convert --in cryolo/CBOX/ --to cs --micrographs 'Micrographs/*.mrc' --out picks.cs
//! cryoprune convert --in particles.star --to box --box 180 --out box_files/
//! ```

use std::path::PathBuf;

use anyhow::Result;
use cryoprune_formats::PickFormat;
use cryoprune_jobs::convert::{self, ConvertConfig};

use crate::printer::Printer;

#[derive(clap::Args)]
#[command(
    about = "Convert picks between STAR, .cs, .box, .cbox, Topaz txt and CSV",
    after_help = super::examples(include_str!("convert.rs"))
)]
pub struct Args {
    /// Pick files or folders of them (one format).
    #[arg(long = "in", required = true, num_args = 1..)]
    input: Vec<PathBuf>,
    /// Target format: star, cs, box, cbox, topaz or csv.
    #[arg(long)]
    to: PickFormat,
    /// Output file (with the target's extension) or folder (one file per micrograph).
    #[arg(long)]
    out: PathBuf,
    /// Box size in pixels, for targets that store corners (.box, .cbox) when the input has none.
    #[arg(long = "box")]
    box_size: Option<f64>,
    /// Micrographs (glob, quoted): sizes for .cs and a check that picks lie inside them.
    #[arg(long, num_args = 1..)]
    micrographs: Vec<String>,
    /// Input format when the extension does not tell (e.g. `.txt` that is not Topaz).
    #[arg(long)]
    format: Option<PickFormat>,
    /// Multiply coordinates by this factor (picks made on binned micrographs).
    #[arg(long, default_value_t = ConvertConfig::default().scale)]
    scale: f64,
}

pub fn run(args: Args) -> Result<()> {
    let cfg = ConvertConfig {
        input: args.input,
        to: args.to,
        out: args.out,
        box_size: args.box_size,
        micrographs: args.micrographs,
        format: args.format,
        scale: args.scale,
    };
    convert::run(&cfg, &Printer::default())?;
    Ok(())
}
