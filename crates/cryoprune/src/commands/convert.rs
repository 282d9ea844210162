//! `cryoprune convert`: move picks between RELION, cryoSPARC, EMAN, crYOLO, Topaz and CSV.
//! Centres are exact across formats (EMAN and crYOLO corners are converted with the box size;
//! cryoSPARC fractions with the micrograph size). Converting to the input's own format keeps
//! every column, so it doubles as a safe copy.
//!
//! ```text
//! cryoprune convert --in topaz_picks/ --to star --out coords/picks.star
//! cryoprune convert --in cryolo/CBOX/ --to cs --micrographs 'Micrographs/*.mrc' --out picks.cs
//! cryoprune convert --in particles.star --to box --box 180 --out box_files/
//! ```

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use cryoprune_formats::{micrograph_shape, PickFormat, PickSet, WriteOptions};

#[derive(clap::Args)]
#[command(
    about = "Convert picks between STAR, .cs, .box, .cbox, Topaz txt and CSV",
    after_help = super::examples(include_str!("convert.rs"))
)]
pub struct Args {
    /// Pick files or folders of them (one format).
    #[arg(long = "in", required = true, num_args = 1..)]
    input: Vec<PathBuf>,
    /// Target format: star, cs, box, cbox, topaz or csv.
    #[arg(long, value_parser = parse_format)]
    to: PickFormat,
    /// Output file (with the target's extension) or folder (one file per micrograph).
    #[arg(long)]
    out: PathBuf,
    /// Box size in pixels, for targets that store corners (.box, .cbox) when the input has none.
    #[arg(long = "box")]
    box_size: Option<f64>,
    /// Micrographs (glob, quoted): sizes for .cs and a check that picks lie inside them.
    #[arg(long, num_args = 1..)]
    micrographs: Vec<String>,
    /// Input format when the extension does not tell (e.g. `.txt` that is not Topaz).
    #[arg(long, value_parser = parse_format)]
    format: Option<PickFormat>,
    /// Multiply coordinates by this factor (picks made on binned micrographs).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
}

pub fn parse_format(s: &str) -> Result<PickFormat, String> {
    PickFormat::from_name(s)
        .ok_or_else(|| format!("unknown format `{s}`; expected star, cs, box, cbox, topaz or csv"))
}

pub fn run(args: Args) -> Result<()> {
    let mut set = PickSet::read(&args.input, args.format)?;
    if args.scale != 1.0 {
        set.scale(args.scale);
    }
    let mut opts = WriteOptions {
        box_size: args.box_size,
        ..Default::default()
    };
    if !args.micrographs.is_empty() {
        let mics = super::expand_globs(&args.micrographs)?;
        let report = super::pair_with_micrographs(&set, &mics, "not checked against a micrograph");
        let mut shapes = HashMap::new();
        for (p, m) in report.pairs {
            let (nx, ny) = micrograph_shape(&mics[m])
                .with_context(|| format!("reading the size of {}", mics[m].display()))?;
            let outside = set.micrographs[p]
                .picks
                .iter()
                .filter(|k| k.x < 0.0 || k.y < 0.0 || k.x >= nx as f64 || k.y >= ny as f64)
                .count();
            if outside > 0 {
                tracing::warn!(
                    "{outside} of {} picks on `{}` lie outside its {nx}x{ny} pixels (wrong --scale, or picks from another micrograph?)",
                    set.micrographs[p].picks.len(),
                    set.micrographs[p].micrograph
                );
            }
            shapes.insert(set.micrographs[p].micrograph.clone(), (nx, ny));
        }
        opts.micrograph_shapes = shapes;
    }
    let written = set.write(args.to, &args.out, &opts)?;
    eprintln!(
        "wrote {} picks on {} micrographs as {:?} to {} file{} under {}",
        set.len(),
        set.micrographs.len(),
        args.to,
        written.len(),
        if written.len() == 1 { "" } else { "s" },
        args.out.display()
    );
    Ok(())
}
