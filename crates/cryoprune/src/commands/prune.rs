//! `cryoprune prune`: classify every pick with a trained model and write the kept picks back in
//! the picker's own format, each input file to a file of the same name under OUT, with the
//! predicted class and each class's probability added. What each format gets:
//! STAR (RELION, crYOLO `.cbox`) new columns `_cryopruneClass` and `_cryopruneP_<class>`;
//! cryoSPARC `.cs` new fields `cryoprune/class` and `cryoprune/p_<class>`; CSV, Topaz `.txt` and
//! old-style `.cbox` new columns `cryoprune_class` and `cryoprune_p_<class>`; EMAN `.box`, whose
//! readers take five columns at most, gets the probability of the kept classes as its 5th
//! column. Every other column of the input is kept as it was.
//!
//! Each output file is written under a temporary name and renamed when complete, as soon as all
//! its micrographs are done, so a run stopped at any moment leaves whole files; with
//! `--skip-existing` a rerun then does only what is missing.
//!
//! ```text
//! cryoprune prune --model model/ --micrographs 'Micrographs/*.mrc' --picks autopick/ --out pruned/ --report report.html
//! cryoprune prune --model model/ --micrographs 'J5/motioncorrected/*.mrc' --picks picked_particles.cs --out pruned/ --threshold 0.7 --scores scores.csv
//! cryoprune prune --model model/ --micrographs 'Micrographs/*.mrc' --picks CBOX/ --out pruned/ --keep particle --write-rejected --skip-existing
//! ```

use std::path::PathBuf;

use anyhow::Result;
use cryoprune_jobs::prune::{self, Prior, PruneConfig};
use cryoprune_jobs::shard::Shard;

use super::args::{ComputeArgs, PickArgs};
use crate::printer::Printer;

#[derive(clap::Args)]
#[command(
    about = "Classify every pick and write the kept ones in the picker's own format",
    after_help = super::examples(include_str!("prune.rs"))
)]
pub struct Args {
    #[command(flatten)]
    compute: ComputeArgs,
    /// Model directory written by `cryoprune train`.
    #[arg(long)]
    model: PathBuf,
    #[command(flatten)]
    input: PickArgs,
    /// Multiply pick coordinates by this factor (picks made on binned micrographs).
    #[arg(long, default_value_t = PruneConfig::default().scale)]
    scale: f64,
    /// Output folder; each input file gives a file of the same name here. A single input file
    /// may also be pruned to a file path with the same extension.
    #[arg(long)]
    out: PathBuf,
    /// Classes to keep (default: the class named particle, particles or good).
    #[arg(long, num_args = 1..)]
    keep: Vec<String>,
    /// Keep a pick when the probability of the kept classes is at least this; without it, a
    /// pick is kept when its most probable class is a kept one.
    #[arg(long)]
    threshold: Option<f64>,
    /// Also write the rejected picks, in the same format, under OUT/rejected/.
    #[arg(long)]
    write_rejected: bool,
    /// STAR outputs get only columns RELION knows (the kept probability as
    /// _rlnAutopickFigureOfMerit), not the _cryoprune* class and probability columns.
    #[arg(long)]
    relion_columns: bool,
    /// STAR picks: write one coordinate STAR per micrograph under --out, where
    /// relion_preprocess --coord_dir OUT/ --coord_suffix .star finds them.
    #[arg(long)]
    per_micrograph: bool,
    /// Write every pick with its class and probabilities as CSV here.
    #[arg(long)]
    scores: Option<PathBuf>,
    /// Write a self-contained HTML report here (PNG overlays go in a folder beside it).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Labelled picks for the threshold advisor (default: the model's validation picks).
    #[arg(long, num_args = 1..)]
    labels: Vec<PathBuf>,
    /// Precision the threshold advisor aims for.
    #[arg(long, default_value_t = PruneConfig::default().target_precision)]
    target_precision: f64,
    /// Leave input files whose output already exists alone (reruns, new micrographs only).
    #[arg(long)]
    skip_existing: bool,
    /// Particles per network batch.
    #[arg(long, default_value_t = PruneConfig::default().batch)]
    batch: usize,
    /// Classify on the image alone, ignoring the pick context (picker score, distance from the
    /// edge) the model was trained to combine with it: for picks from another picker, or with
    /// no scores.
    #[arg(long)]
    image_only: bool,
    /// How common the kept classes are assumed to be when each pick is decided: `dataset`
    /// estimates it on a sample of these picks (with the error rates of the labelled picks the
    /// advisor uses), `training` keeps the mix of the training picks (half and half after
    /// `--shots`), or a share such as 0.85. A model trained on balanced labels otherwise assumes
    /// half of a good picker's picks are junk and rejects real particles whenever unsure.
    #[arg(long, default_value_t = PruneConfig::default().prior)]
    prior: Prior,
    /// Only the I-th of every N micrographs (sorted, from 0), for array task I; see `merge`.
    #[arg(long, value_name = "I/N")]
    shard: Option<Shard>,
}

pub fn run(args: Args) -> Result<()> {
    let cfg = PruneConfig {
        compute: args.compute.into(),
        model: args.model,
        micrographs: args.input.micrographs,
        picks: args.input.picks,
        format: args.input.format,
        scale: args.scale,
        out: args.out,
        keep: args.keep,
        threshold: args.threshold,
        write_rejected: args.write_rejected,
        relion_columns: args.relion_columns,
        per_micrograph: args.per_micrograph,
        scores: args.scores,
        report: args.report,
        labels: args.labels,
        target_precision: args.target_precision,
        skip_existing: args.skip_existing,
        batch: args.batch,
        image_only: args.image_only,
        prior: args.prior,
        shard: args.shard,
    };
    prune::run(&cfg, &Printer::default())?;
    Ok(())
}
