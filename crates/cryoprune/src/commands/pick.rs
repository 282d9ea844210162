//! `cryoprune pick`: pick particles on whole micrographs with a picker from `picker train`.
//! Each micrograph is prepared as in training, scored by the network in tiles, and the score
//! map's peaks become picks (none closer than the suppression distance), scored by their
//! log-odds, in any pick format and ready for `prune`.
//!
//! ```text
//! cryoprune pick --model picker/ --micrographs 'Micrographs/*.mrc' --out picks/ --format star
//! cryoprune pick --model picker/ --micrographs 'mics/*.jpg' --out picks.cs --threshold 1.5
//! cryoprune pick --model picker/ --micrographs 'other/*.mrc' --angpix 0.83 --out boxes/ --format box --skip-existing
//! ```

use std::path::PathBuf;

use anyhow::Result;
use cryoprune_formats::PickFormat;
use cryoprune_jobs::picker::pick::{self, PickConfig};
use cryoprune_jobs::ComputeConfig;

use crate::printer::Printer;

#[derive(clap::Args)]
#[command(
    about = "Pick particles on micrographs with a trained picker",
    after_help = super::examples(include_str!("pick.rs"))
)]
pub struct Args {
    /// Picker directory written by `cryoprune picker train`.
    #[arg(long)]
    model: PathBuf,
    /// Micrographs (globs, quoted), or one list of them (a RELION micrographs STAR, or
    /// cryoSPARC exposures .cs or a job folder with them).
    #[arg(long, required = true, num_args = 1..)]
    micrographs: Vec<String>,
    /// A folder (one file per micrograph; STARs with an autopick.star index of them, as
    /// RELION's AutoPick writes) or, for star, cs and csv, one file.
    #[arg(long)]
    out: PathBuf,
    /// star, cs, box, cbox, topaz or csv (default: --out's extension, else star).
    #[arg(long)]
    format: Option<PickFormat>,
    /// Score (log-odds) a pick needs; default: the picker's best-F1 threshold.
    #[arg(long, value_parser = cryoprune_jobs::finite)]
    threshold: Option<f64>,
    /// Picks closer than this many pixels are one particle; default: the picker's.
    #[arg(long, value_parser = cryoprune_jobs::positive)]
    min_distance: Option<f64>,
    /// Box size written into .box and .cbox files (default: 1.5 particle diameters).
    #[arg(long = "box")]
    box_size: Option<usize>,
    /// Å per pixel of these micrographs, instead of their headers. Micrographs of another pixel
    /// size than the picker's training micrographs are binned to the scale it learnt.
    #[arg(long, value_parser = cryoprune_jobs::positive)]
    angpix: Option<f64>,
    /// Leave micrographs whose output file exists.
    #[arg(long)]
    skip_existing: bool,
    /// Threads; 0 = all cores.
    #[arg(long, default_value_t = ComputeConfig::default().threads)]
    threads: usize,
}

pub fn run(args: Args) -> Result<()> {
    let cfg = PickConfig {
        compute: ComputeConfig {
            threads: args.threads,
            ..ComputeConfig::default()
        },
        model: args.model,
        micrographs: args.micrographs,
        out: args.out,
        format: args.format,
        threshold: args.threshold,
        min_distance: args.min_distance,
        box_size: args.box_size,
        angpix: args.angpix,
        skip_existing: args.skip_existing,
    };
    pick::run(&cfg, &Printer::default())?;
    Ok(())
}
