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

use anyhow::Result;
use cryoprune_jobs::prune::{self, PruneConfig};

use crate::printer::Printer;

#[derive(clap::Args)]
#[command(
    about = "Classify every pick and write the kept ones in the picker's own format",
    after_help = super::examples(include_str!("prune.rs"))
)]
pub struct Args {
    #[command(flatten)]
    cfg: PruneConfig,
}

pub fn run(args: Args) -> Result<()> {
    prune::run(&args.cfg, &Printer::default())?;
    Ok(())
}
