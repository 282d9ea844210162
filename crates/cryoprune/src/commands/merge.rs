//! `cryoprune merge`: join the outputs of `prune --shard I/N` or `extract --shard I/N` runs (one
//! SLURM array task each) into what one run would have written. Run it where the shards ran,
//! after all of them (`--dependency=afterok`); examples/slurm/ has the scripts.
//!
//! ```text
//! cryoprune merge --in pruned_0 pruned_1 pruned_2 --out pruned/ --scores scores.csv --report report.html
//! cryoprune merge --in shards/pruned_* --out pruned/
//! cryoprune merge --in particles_0.mrcs particles_1.mrcs --out particles.mrcs
//! ```

use std::path::PathBuf;

use anyhow::Result;
use cryoprune_jobs::shard::{self, MergeConfig};

use crate::printer::Printer;

#[derive(clap::Args)]
#[command(
    about = "Join the outputs of prune or extract shards (--shard I/N) into one run's",
    after_help = super::examples(include_str!("merge.rs"))
)]
pub struct Args {
    /// Each shard's --out: prune folders, or extract stacks (.mrcs).
    #[arg(long = "in", required = true, num_args = 1..)]
    inputs: Vec<PathBuf>,
    /// Where one run's --out would be: a prune folder (or file), or an extract stack.
    #[arg(long)]
    out: PathBuf,
    /// Prune: every pick's class and probabilities as CSV, as `prune --scores`.
    #[arg(long)]
    scores: Option<PathBuf>,
    /// Prune: the HTML report, as `prune --report`.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Extract: the particle STAR; default: --out with the extension .star.
    #[arg(long)]
    star: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let cfg = MergeConfig {
        inputs: args.inputs,
        out: args.out,
        scores: args.scores,
        report: args.report,
        star: args.star,
    };
    shard::merge(&cfg, &Printer::default())?;
    Ok(())
}
