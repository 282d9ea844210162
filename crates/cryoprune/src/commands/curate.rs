//! `cryoprune curate`: decide which micrographs to keep with a multi-label model trained on
//! whole micrographs (`train --labels micrograph_tags.csv`): every micrograph is tagged (carbon,
//! ice, aggregate, empty, thick ice, crystalline ice, drift, or whatever the model learnt), and
//! one carrying a rejected tag is left out. A RELION micrographs STAR comes back with every
//! block and column it had, less the rejected rows (rejected.star holds them); a cryoSPARC
//! exposures .cs likewise with every field (exposures.cs, rejected_exposures.cs); a glob gives a
//! list and a fresh STAR. tags.csv has every micrograph's probabilities; report.html shows the
//! most confident and the borderline micrographs of each tag.
//!
//! ```text
//! cryoprune curate --model curator/ --micrographs CtfFind/job004/micrographs_ctf.star --out Curate/
//! cryoprune curate --model curator/ --micrographs 'Micrographs/*.mrc' --reject carbon,thick-ice,drift --out curated/
//! cryoprune curate --model curator/ --micrographs 'Micrographs/*.mrc' --threshold 0.7 --out curated/
//! ```

use anyhow::Result;
use cryoprune_jobs::curate::{self, CurateConfig};

use crate::printer::Printer;

#[derive(clap::Args)]
#[command(
    about = "Keep the micrographs a multi-label model finds no rejected tag on",
    after_help = super::examples(include_str!("curate.rs"))
)]
pub struct Args {
    #[command(flatten)]
    cfg: CurateConfig,
}

pub fn run(args: Args) -> Result<()> {
    curate::run(&args.cfg, &Printer::default())?;
    Ok(())
}
