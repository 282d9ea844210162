//! `cryoprune evaluate-picks`: score any picker's picks against true particle centres:
//! one-to-one matching within a radius (greedy by score), precision, recall and F1 at a
//! threshold and at the best one, average precision, and a precision-recall plot.
//!
//! ```text
//! cryoprune evaluate-picks --picks picks/ --truth truth/ --radius 54
//! cryoprune evaluate-picks --picks topaz/ --format topaz --truth manual.star --radius 40 --threshold 0 --plot pr.png
//! cryoprune evaluate-picks --picks autopick.star --truth truth/ --radius 54 --json scores.json
//! ```

use std::path::PathBuf;

use anyhow::Result;
use cryoprune_formats::PickFormat;
use cryoprune_jobs::picker::evaluate::{self, EvaluatePicksConfig};

use crate::printer::Printer;

#[derive(clap::Args)]
#[command(
    about = "Score picks against true particle centres (precision, recall, F1, AP)",
    after_help = super::examples(include_str!("evaluate_picks.rs"))
)]
pub struct Args {
    /// The picks to score: files or folders, one format.
    #[arg(long, required = true, num_args = 1..)]
    picks: Vec<PathBuf>,
    /// Format of --picks when the extension does not tell.
    #[arg(long)]
    format: Option<PickFormat>,
    /// True particle centres: files or folders, one format.
    #[arg(long, required = true, num_args = 1..)]
    truth: Vec<PathBuf>,
    /// Format of --truth when the extension does not tell.
    #[arg(long)]
    truth_format: Option<PickFormat>,
    /// A pick within this many pixels of a true centre finds it (e.g. the particle radius).
    #[arg(long)]
    radius: f64,
    /// Score only picks with a score of at least this (default: every pick).
    #[arg(long)]
    threshold: Option<f64>,
    /// Write the scores as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the precision-recall curve as PNG here.
    #[arg(long)]
    plot: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let cfg = EvaluatePicksConfig {
        picks: args.picks,
        format: args.format,
        truth: args.truth,
        truth_format: args.truth_format,
        radius: args.radius,
        threshold: args.threshold,
        json: args.json,
        plot: args.plot,
    };
    evaluate::run(&cfg, &Printer::default())?;
    Ok(())
}
