//! `cryoprune relion`: cryoprune's jobs as RELION External jobs. RELION runs the program in the
//! project folder with `--o External/jobNNN/`, its input nodes and the job's parameters, then
//! waits for the exit file; each job writes its outputs in that RELION version's layout and
//! `RELION_OUTPUT_NODES.star`, so the next RELION job takes them as inputs.

use std::path::PathBuf;

use anyhow::Result;
use cryoprune_jobs::relion::Version;
use cryoprune_jobs::ComputeConfig;

mod pick;
mod prune;

#[derive(clap::Args)]
#[command(about = "Run a cryoprune job as a RELION External job")]
pub struct Args {
    #[command(subcommand)]
    job: Job,
}

#[derive(clap::Subcommand)]
enum Job {
    Prune(prune::Args),
    Pick(pick::Args),
}

pub fn run(args: Args) -> Result<()> {
    match args.job {
        Job::Prune(a) => prune::run(a),
        Job::Pick(a) => pick::run(a),
    }
}

/// The arguments RELION gives every External job, and the device.
#[derive(clap::Args)]
struct JobArgs {
    /// The job folder RELION gives (External/jobNNN/).
    #[arg(long = "o")]
    job: PathBuf,
    /// Threads (RELION's "Number of threads").
    #[arg(long = "j", default_value_t = 0)]
    threads: usize,
    /// Where RELION waits for the exit files (the job folder; default --o).
    #[arg(long = "pipeline_control")]
    pipeline_control: Option<PathBuf>,
    /// RELION version, 3.1, 4 or 5 (default: read off default_pipeline.star or the inputs).
    #[arg(long = "relion_version")]
    relion_version: Option<Version>,
    /// Compute device: `cpu`, `cuda` (`cuda:N` for the N-th GPU) or `wgpu`.
    #[arg(long, default_value_t = ComputeConfig::default().device)]
    device: String,
}

impl JobArgs {
    fn compute(&self) -> ComputeConfig {
        ComputeConfig {
            device: self.device.clone(),
            threads: self.threads,
        }
    }
}
