//! `cryoprune relion pick`: pick with a deep picker from `cryoprune picker train` as a RELION
//! External job (executable `cryoprune relion pick`; input: micrographs; parameter `model`,
//! optionally `threshold`, `min_distance`). It writes a coordinate file per micrograph where
//! RELION's Extract looks for it, the coordinates node of that RELION version (a 4/5 index or a
//! 3.1 suffix node), a PDF log and the exit file RELION waits for.
//!
//! ```text
//! cryoprune relion pick --o External/job014/ --in_mics CtfFind/job003/micrographs_ctf.star --model cryoprune_picker --j 8
//! cryoprune relion pick --o External/job015/ --in_mics CtfFind/job003/micrographs_ctf.star --model cryoprune_picker --threshold 2.5 --min_distance 60
//! ```

use std::path::PathBuf;

use anyhow::Result;
use cryoprune_jobs::picker::pick::PickConfig;
use cryoprune_jobs::relion::{self, RelionPickConfig};

use crate::printer::Printer;

#[derive(clap::Args)]
#[command(
    about = "Pick RELION micrographs with a cryoprune picker as an External job",
    after_help = crate::commands::examples(include_str!("pick.rs"))
)]
pub struct Args {
    #[command(flatten)]
    relion: super::JobArgs,
    /// Micrographs STAR (RELION's input micrographs node).
    #[arg(long = "in_mics")]
    in_mics: PathBuf,
    /// Picker directory written by `cryoprune picker train` (relative to the project folder).
    #[arg(long)]
    model: PathBuf,
    /// Score (log-odds) a pick needs; default: the picker's best-F1 threshold.
    #[arg(long)]
    threshold: Option<f64>,
    /// Picks closer than this many pixels are one particle; default: the picker's.
    #[arg(long = "min_distance")]
    min_distance: Option<f64>,
}

pub fn run(a: Args) -> Result<()> {
    let cfg = RelionPickConfig {
        job: a.relion.job.clone(),
        control: a.relion.pipeline_control.clone(),
        in_mics: a.in_mics,
        version: a.relion.relion_version,
        pick: PickConfig {
            compute: a.relion.compute(),
            model: a.model,
            threshold: a.threshold,
            min_distance: a.min_distance,
            ..PickConfig::default()
        },
    };
    relion::run_pick(&cfg, &Printer::default())?;
    Ok(())
}
