//! `cryoprune evaluate-picks`: score any picker's picks against true particle centres:
//! one-to-one matching within a radius (greedy by score), precision, recall and F1 at a
//! threshold and at the best one, average precision, and a precision-recall plot.
//!
//! ```text
//! cryoprune evaluate-picks --picks picks/ --truth truth/ --radius 54
//! cryoprune evaluate-picks --picks topaz/ --format topaz --truth manual.star --radius 40 --threshold 0 --plot pr.png
//! cryoprune evaluate-picks --picks autopick.star --truth truth/ --radius 54 --json scores.json
//! ```

use anyhow::Result;
use cryoprune_jobs::picker::evaluate::{self, EvaluatePicksConfig};

use crate::printer::Printer;

#[derive(clap::Args)]
#[command(
    about = "Score picks against true particle centres (precision, recall, F1, AP)",
    after_help = super::examples(include_str!("evaluate_picks.rs"))
)]
pub struct Args {
    #[command(flatten)]
    cfg: EvaluatePicksConfig,
}

pub fn run(args: Args) -> Result<()> {
    evaluate::run(&args.cfg, &Printer::default())?;
    Ok(())
}
