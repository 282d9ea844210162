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
use cryoprune_jobs::relion::{self, RelionPickConfig, Version};
use cryoprune_jobs::ComputeConfig;

use crate::printer::Printer;

#[derive(clap::Args)]
#[command(
    about = "Pick RELION micrographs with a cryoprune picker as an External job",
    after_help = crate::commands::examples(include_str!("pick.rs"))
)]
pub struct Args {
    /// The job folder RELION gives (External/jobNNN/).
    #[arg(long = "o")]
    job: PathBuf,
    /// Micrographs STAR (RELION's input micrographs node).
    #[arg(long = "in_mics")]
    in_mics: PathBuf,
    /// Threads (RELION's "Number of threads").
    #[arg(long = "j", default_value_t = 0)]
    threads: usize,
    /// Where RELION waits for the exit files (the job folder; default --o).
    #[arg(long = "pipeline_control")]
    pipeline_control: Option<PathBuf>,
    /// Picker directory written by `cryoprune picker train` (relative to the project folder).
    #[arg(long)]
    model: PathBuf,
    /// Score (log-odds) a pick needs; default: the picker's best-F1 threshold.
    #[arg(long)]
    threshold: Option<f64>,
    /// Picks closer than this many pixels are one particle; default: the picker's.
    #[arg(long = "min_distance")]
    min_distance: Option<f64>,
    /// RELION version, 3.1, 4 or 5 (default: read off default_pipeline.star, else 4/5).
    #[arg(long = "relion_version")]
    relion_version: Option<Version>,
    /// Compute device: `cpu`, `cuda` (`cuda:N` for the N-th GPU) or `wgpu`.
    #[arg(long, default_value_t = ComputeConfig::default().device)]
    device: String,
}

pub fn run(a: Args) -> Result<()> {
    let cfg = RelionPickConfig {
        job: a.job,
        control: a.pipeline_control,
        in_mics: a.in_mics,
        version: a.relion_version,
        pick: PickConfig {
            compute: ComputeConfig {
                device: a.device,
                threads: a.threads,
            },
            model: a.model,
            threshold: a.threshold,
            min_distance: a.min_distance,
            ..PickConfig::default()
        },
    };
    relion::run_pick(&cfg, &Printer::default())?;
    Ok(())
}
