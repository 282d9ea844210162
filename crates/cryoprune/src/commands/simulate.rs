//! `cryoprune simulate`: realistic micrographs with the truth known. Particles are projections
//! of a map, an atomic model or a built-in shape in random orientations, with carbon film, ice
//! contamination, aggregates and empty ice, a CTF and noise at a set SNR; the picks are those a
//! real picker would make (most particles, plus false picks on the junk), each with its truth,
//! and every particle's centre (particles.csv) for scoring pickers. micrograph_tags.csv gives
//! each micrograph's tags (carbon, ice, aggregate, empty, thick-ice, crystalline-ice, drift) as
//! labels `train` reads, the truth for curating micrographs; `--defects` adds the last four.
//!
//! ```text
//! cryoprune simulate --out sim/ --count 20 --preset realistic --seed 1
//! cryoprune simulate --out sim/ --map ref_model.mrc --pixel 3.54 --format cs --count 50
//! cryoprune simulate --out sim/ --model 6NY1.pdb --size 2048 --preset hard --format box
//! cryoprune simulate --out curation/ --count 100 --defects all=0.25 --no-previews
//! ```

use anyhow::Result;

use cryoprune_jobs::simulate::{self, SimulateConfig};

use crate::printer::Printer;

#[derive(clap::Args)]
#[command(
    about = "Simulate micrographs with particles, junk, CTF and noise, and picker-like picks with truth",
    after_help = super::examples(include_str!("simulate.rs"))
)]
pub struct Args {
    #[command(flatten)]
    cfg: SimulateConfig,
}

pub fn run(args: Args) -> Result<()> {
    simulate::run(&args.cfg, &Printer::default())?;
    Ok(())
}
