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

use std::path::PathBuf;

use anyhow::Result;
use cryoprune_jobs::curate::{self, CurateConfig};

use super::args::ComputeArgs;
use crate::printer::Printer;

#[derive(clap::Args)]
#[command(
    about = "Keep the micrographs a multi-label model finds no rejected tag on",
    after_help = super::examples(include_str!("curate.rs"))
)]
pub struct Args {
    #[command(flatten)]
    compute: ComputeArgs,
    /// Model directory of a multi-label model trained on micrographs with tags.
    #[arg(long)]
    model: PathBuf,
    /// Micrographs (globs, quoted), one RELION micrographs STAR file, or one cryoSPARC
    /// exposures .cs (micrograph_blob/path; paths found as the project folder would).
    #[arg(long, required = true, num_args = 1..)]
    micrographs: Vec<String>,
    /// Tags that reject a micrograph, comma-separated (default: every tag of the model).
    #[arg(long, value_delimiter = ',')]
    reject: Vec<String>,
    /// One probability threshold for every tag instead of the model's own per tag.
    #[arg(long)]
    threshold: Option<f32>,
    /// Output folder: micrographs.star and rejected.star (exposures.cs and
    /// rejected_exposures.cs for a .cs; micrographs.txt and micrographs.star for a glob),
    /// tags.csv, report.html.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let cfg = CurateConfig {
        compute: args.compute.into(),
        model: args.model,
        micrographs: args.micrographs,
        reject: args.reject,
        threshold: args.threshold,
        out: args.out,
    };
    curate::run(&cfg, &Printer::default())?;
    Ok(())
}
