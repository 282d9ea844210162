//! `cryoprune info`: what a file holds — MRC header, image size, STAR blocks, `.cs` fields, picks
//! per micrograph — for any file cryoprune reads, and what a model or picker folder learnt from
//! and how it scored. Use it first when a dataset misbehaves.
//!
//! ```text
//! cryoprune info Micrographs/mic_0001.mrc Extract/job012/particles.star
//! cryoprune info AutoPick/job006/ cryosparc_P1_J4_picked_particles.cs
//! cryoprune info --json topaz_picks.txt model/ > summary.json
//! ```

use std::path::PathBuf;

use anyhow::Result;
use cryoprune_jobs::info::{describe, to_text};

#[derive(clap::Args)]
#[command(
    about = "Summarise micrographs, stacks, pick files (header, size, pixel size, counts) and model folders",
    after_help = super::examples(include_str!("info.rs"))
)]
pub struct Args {
    /// Files to describe: .mrc/.mrcs/.map, .tif/.png/.jpg, .star, .cs, .box, .cbox, .txt, .csv;
    /// a folder of pick files (or a RELION picking job's); or a model folder from `train` or
    /// picker folder from `picker train`
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Print one JSON object per file instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let mut failed = 0;
    for f in &args.files {
        match describe(f) {
            Ok(v) if args.json => println!("{}", serde_json::to_string(&v)?),
            Ok(v) => println!("{}", to_text(&v)),
            Err(e) => {
                eprintln!("error: {e:#}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} files could not be read", args.files.len());
    }
    Ok(())
}
