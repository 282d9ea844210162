//! `cryoprune merge`: join the outputs of `prune --shard I/N` or `extract --shard I/N` runs (one
//! SLURM array task each) into what one run would have written. Run it where the shards ran,
//! after all of them (`--dependency=afterok`); examples/slurm/ has the scripts.
//!
//! ```text
//! cryoprune merge --in pruned_0 pruned_1 pruned_2 --out pruned/ --scores scores.csv --report report.html
//! cryoprune merge --in shards/pruned_* --out pruned/
//! cryoprune merge --in particles_0.mrcs particles_1.mrcs --out particles.mrcs
//! ```

use anyhow::Result;
use cryoprune_jobs::shard::{self, MergeConfig};

use crate::printer::Printer;

#[derive(clap::Args)]
#[command(
    about = "Join the outputs of prune or extract shards (--shard I/N) as one run would write them",
    after_help = super::examples(include_str!("merge.rs"))
)]
pub struct Args {
    #[command(flatten)]
    cfg: MergeConfig,
}

pub fn run(args: Args) -> Result<()> {
    shard::merge(&args.cfg, &Printer::default())?;
    Ok(())
}
