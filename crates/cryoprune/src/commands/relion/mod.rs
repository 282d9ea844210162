//! `cryoprune relion`: cryoprune's jobs as RELION External jobs. RELION runs the program in the
//! project folder with `--o External/jobNNN/`, its input nodes and the job's parameters, then
//! waits for the exit file; each job writes its outputs in that RELION version's layout and
//! `RELION_OUTPUT_NODES.star`, so the next RELION job takes them as inputs.

use anyhow::Result;

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
