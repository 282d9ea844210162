//! `cryoprune relion prune`: prune as a RELION External job (executable `cryoprune relion prune`;
//! inputs: coordinates or particles, and micrographs; parameter `model`, optionally `threshold`,
//! `keep`, `prior`, `image_only`). It writes the pruned picks in that RELION version's layout,
//! `RELION_OUTPUT_NODES.star`, a PDF log and the exit file RELION waits for.
//!
//! ```text
//! cryoprune relion prune --o External/job012/ --in_mics CtfFind/job003/micrographs_ctf.star --in_coords AutoPick/job006/coords_suffix_autopick.star --model cryoprune_model --j 8
//! cryoprune relion prune --o External/job012/ --in_mics CtfFind/job003/micrographs_ctf.star --in_coords AutoPick/job006/autopick.star --model cryoprune_model --threshold 0.6
//! cryoprune relion prune --o External/job013/ --in_parts Extract/job007/particles.star --model cryoprune_model --prior 0.85
//! ```

use std::path::PathBuf;

use anyhow::Result;
use cryoprune_jobs::prune::{Prior, PruneConfig};
use cryoprune_jobs::relion::{self, RelionPruneConfig};

use crate::printer::Printer;

#[derive(clap::Args)]
#[command(
    about = "Prune RELION coordinates or particles as an External job",
    after_help = crate::commands::examples(include_str!("prune.rs"))
)]
pub struct Args {
    #[command(flatten)]
    relion: super::JobArgs,
    /// Micrographs STAR (RELION's input micrographs node).
    #[arg(long = "in_mics")]
    in_mics: Option<PathBuf>,
    /// Coordinates: a 3.1 `coords_suffix_*.star` or a 4/5 `autopick.star`-style index.
    #[arg(long = "in_coords")]
    in_coords: Option<PathBuf>,
    /// Particles STAR to prune instead of coordinates.
    #[arg(long = "in_parts")]
    in_parts: Option<PathBuf>,
    /// Model directory written by `cryoprune train` (relative to the project folder).
    #[arg(long)]
    model: PathBuf,
    /// Keep a pick when the probability of the kept classes is at least this.
    #[arg(long)]
    threshold: Option<f64>,
    /// Classes to keep, comma-separated (default: the class named particle).
    #[arg(long, value_delimiter = ',')]
    keep: Vec<String>,
    /// How common the kept classes are assumed to be: dataset, training or a share.
    #[arg(long, default_value_t = PruneConfig::default().prior)]
    prior: Prior,
    /// Yes: classify on the image alone (picks from another picker than the model's).
    #[arg(long = "image_only", default_value = "no", value_parser = relion::yes_no, action = clap::ArgAction::Set)]
    image_only: bool,
}

pub fn run(a: Args) -> Result<()> {
    let cfg = RelionPruneConfig {
        job: a.relion.job.clone(),
        control: a.relion.pipeline_control.clone(),
        in_mics: a.in_mics,
        in_coords: a.in_coords,
        in_parts: a.in_parts,
        version: a.relion.relion_version,
        prune: PruneConfig {
            compute: a.relion.compute(),
            model: a.model,
            keep: a.keep,
            threshold: a.threshold,
            image_only: a.image_only,
            prior: a.prior,
            ..PruneConfig::default()
        },
    };
    relion::run(&cfg, &Printer::default())?;
    Ok(())
}
