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

use anyhow::Result;
use cryoprune_jobs::convert::{self, ConvertConfig};

use crate::printer::Printer;

#[derive(clap::Args)]
#[command(
    about = "Convert picks between STAR, .cs, .box, .cbox, Topaz txt and CSV",
    after_help = super::examples(include_str!("convert.rs"))
)]
pub struct Args {
    #[command(flatten)]
    cfg: ConvertConfig,
}

pub fn run(args: Args) -> Result<()> {
    convert::run(&args.cfg, &Printer::default())?;
    Ok(())
}
