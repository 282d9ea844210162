//! `cryoprune demo`: the main job end to end on built-in data, with nothing downloaded. It
//! simulates a small dataset (micrographs with particles, carbon, ice, aggregates and the picks a
//! real picker would make, with the truth of each), labels 30 picks per class from the truth as
//! a user would (particle or junk, from the first two thirds of the micrographs only), trains
//! (adapting the network to all the picks first), prunes every pick, and scores the kept picks against the truth. Each step is the real job,
//! and its command line is printed so it can be run by hand.
//!
//! ```text
//! cryoprune demo
//! cryoprune demo --out demo_run/
//! cryoprune demo --fast --out /tmp/demo
//! ```

use anyhow::Result;
use cryoprune_jobs::demo::{self, DemoConfig};

use crate::printer::Printer;

#[derive(clap::Args)]
#[command(
    about = "Run the main job end to end on built-in data (no network, no files needed)",
    after_help = super::examples(include_str!("demo.rs"))
)]
pub struct Args {
    #[command(flatten)]
    cfg: DemoConfig,
}

pub fn run(args: Args) -> Result<()> {
    demo::run(&args.cfg, &Printer::default())?;
    Ok(())
}
